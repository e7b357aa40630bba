//! [`SseLayer`]: the settings, with a builder method each.

use std::{fmt, sync::Arc, time::Duration};

use tower_layer::Layer;

use crate::{
    buffer::{BufferLimits, Overflow},
    config::Config,
    error::BoxError,
    event::Event,
    heartbeat::Heartbeat,
    limit::{PerKeyLimit, StreamLimit},
    service::SseService,
    shutdown::ShutdownHandle,
    state::LayerState,
    stats::SseStats,
};

/// A [`Layer`] that turns a service answering with event streams into a service
/// answering with `text/event-stream` responses.
///
/// The inner service answers with an [`SseResponse`](crate::SseResponse): a stream of
/// `Result<T, E>` where `T` is an [`Event`] or an
/// [`EncodedEvent`](crate::EncodedEvent), or an ordinary response that the layer passes
/// through untouched. Layers made by cloning one `SseLayer` share its
/// [`stats`](SseLayer::stats) and [`shutdown handle`](SseLayer::shutdown_handle).
///
/// | setting | default |
/// |---|---|
/// | [`heartbeat`](Self::heartbeat) | a `:` comment after 15 s of silence |
/// | [`buffer`](Self::buffer) | 256 events, 1 MiB |
/// | [`on_overflow`](Self::on_overflow) | [`Overflow::Wait`] (backpressure) |
/// | [`max_frame_bytes`](Self::max_frame_bytes) | 64 KiB of ready events per body frame |
/// | [`stall_timeout`](Self::stall_timeout) | none |
/// | [`gap_event`](Self::gap_event) | none (gaps are counted and traced) |
/// | [`on_error`](Self::on_error) | none (the stream ends after a source error) |
/// | [`max_streams`](Self::max_streams) | no limit |
/// | [`max_streams_per_key`](Self::max_streams_per_key) | no limit |
/// | [`max_lifetime`](Self::max_lifetime) | none (a stream stays open until its source ends or the client leaves) |
/// | [`lifetime_retry`](Self::lifetime_retry) | none (no `retry:` hint when a stream reaches its lifetime) |
/// | [`max_event_bytes`](Self::max_event_bytes) | no limit |
///
/// # Example
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use http::Request;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseResponse};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(
///         SseLayer::new()
///             .heartbeat(Duration::from_secs(15))
///             .buffer(BufferLimits::new(256, 1 << 20))
///             .on_overflow(Overflow::DropOldest),
///     )
///     .service_fn(|_req: Request<String>| async {
///         let events = tokio_stream::iter(1..=3)
///             .map(|i| Event::new().data(i.to_string()))
///             .map(Ok::<_, Infallible>);
///         Ok::<_, Infallible>(SseResponse::<_>::new(events))
///     });
/// # use tokio_stream::StreamExt as _;
///
/// let res = svc.oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
/// # }
/// ```
#[derive(Clone)]
pub struct SseLayer {
    config: Config,
    state: Arc<LayerState>,
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseLayer {
    /// A layer with the defaults listed [above](SseLayer).
    pub fn new() -> Self {
        Self {
            config: Config::default(),
            state: Arc::default(),
        }
    }

    /// Sends a heartbeat after `heartbeat`'s interval of silence: a `Duration` (comment
    /// heartbeat) or a [`Heartbeat`] (custom comment, or an event).
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = tower_sse::SseLayer::new().heartbeat(Duration::from_secs(30));
    /// ```
    pub fn heartbeat(mut self, heartbeat: impl Into<Heartbeat>) -> Self {
        self.config.heartbeat = Some(heartbeat.into());
        self
    }

    /// Turns heartbeats off.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().no_heartbeat();
    /// ```
    pub fn no_heartbeat(mut self) -> Self {
        self.config.heartbeat = None;
        self
    }

    /// Caps what one connection buffers, in events and in bytes.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().buffer(tower_sse::BufferLimits::new(64, 64 * 1024));
    /// ```
    pub fn buffer(mut self, limits: BufferLimits) -> Self {
        self.config.limits = limits;
        self
    }

    /// What to do when a slow client's buffer is full; see [`Overflow`].
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().on_overflow(tower_sse::Overflow::DropNewest);
    /// ```
    pub fn on_overflow(mut self, policy: Overflow) -> Self {
        self.config.overflow = policy;
        self
    }

    /// The most bytes of ready events coalesced into one body frame (hyper writes a
    /// frame with as few system calls as it can). An event larger than this still goes
    /// out, in a frame of its own. Default 64 KiB; never more than the buffer's byte cap.
    ///
    /// The frame is also the unit of what a client that stops reading holds. Served by
    /// [`server::Server`](crate::server::Server) (feature `server`), an HTTP/1.1
    /// connection's write gate keeps one frame at a time in hyper: a stalled reader
    /// holds one frame (allocated at 9/8 of its cap) and the connection's own state,
    /// and nothing more; and the server caps each frame further, at 12 KiB, or on
    /// Linux over plain TCP at what the socket takes at once, so a reader that keeps up
    /// gets frames of this cap and a stalled one holds a small one (13.7 KiB of RSS per
    /// stalled reader of the demo's `/stream`, with this cap at 64 KiB). Served otherwise
    /// (`axum::serve`, your own hyper loop), hyper keeps taking frames while its write
    /// queue holds less than its buffer limit: up to that limit plus two frames. Over
    /// HTTP/2, up to two frames plus h2's send buffer per stream (see [`BufferLimits`]).
    /// Bigger frames mean fewer writes on a fast connection (RELIABILITY.md, "Memory
    /// per connection"; BENCHMARKS.md, "Frames sized to the socket").
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_frame_bytes(16 * 1024);
    /// ```
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame_bytes = bytes.max(1);
        self
    }

    /// Ends the connection of a client that has accepted nothing (heartbeats included)
    /// for `timeout` while it had something to receive, and drops its source and buffer.
    ///
    /// hyper polls the body only while the socket takes bytes, so the connection itself
    /// closes when hyper next polls it; the source and the buffered events are freed
    /// at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = tower_sse::SseLayer::new().stall_timeout(Duration::from_secs(30));
    /// ```
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.config.stall_timeout = Some(timeout.min(Heartbeat::MAX_INTERVAL));
        self
    }

    /// Sends `gap(n)` where `n` events were dropped, so the client can resync or
    /// reconnect with `Last-Event-ID`.
    ///
    /// ```
    /// use tower_sse::{Event, Overflow, SseLayer};
    ///
    /// let layer = SseLayer::new()
    ///     .on_overflow(Overflow::DropOldest)
    ///     .gap_event(|dropped| {
    ///         Event::new()
    ///             .event("gap")
    ///             .expect("a constant name without line breaks")
    ///             .data(dropped.to_string())
    ///     });
    /// ```
    pub fn gap_event<F>(mut self, gap: F) -> Self
    where
        F: Fn(u64) -> Event + Send + Sync + 'static,
    {
        self.config.gap = Some(Arc::new(gap));
        self
    }

    /// Maps an error from the source to a last event sent before the stream ends.
    /// The error is logged through `tracing` either way.
    ///
    /// ```
    /// use tower_sse::{Event, SseLayer};
    ///
    /// let layer = SseLayer::new().on_error(|err| Some(Event::new().comment(format!("error: {err}"))));
    /// ```
    pub fn on_error<F>(mut self, f: F) -> Self
    where
        F: Fn(&BoxError) -> Option<Event> + Send + Sync + 'static,
    {
        self.config.on_error = Some(Arc::new(f));
        self
    }

    /// Caps the streams open at once through this layer (and its clones made after
    /// this call); see [`StreamLimit`]. [`StreamLimit::shed`] is the way for browsers:
    /// a stream over the cap gets the [shed answer](crate::limit#the-shed-answer) and
    /// the `EventSource` comes back by itself.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_streams(tower_sse::StreamLimit::shed(1000));
    /// ```
    pub fn max_streams(mut self, limit: StreamLimit) -> Self {
        self.config.limit = Some(limit);
        self
    }

    /// Caps the streams open at once per key (the client's IP address, a user) through
    /// this layer (and its clones made after this call); see [`PerKeyLimit`]. Applies
    /// together with [`max_streams`](Self::max_streams): a stream must fit under both.
    /// The key is taken from the request in [`SseService`]'s `call`; the place under the
    /// cap is taken when the response turns out to be SSE, and held by its body.
    ///
    /// ```
    /// use tower_sse::{limit, PerKeyLimit, SseLayer};
    /// let layer = SseLayer::new().max_streams_per_key(PerKeyLimit::shed(4, limit::client_ip));
    /// ```
    pub fn max_streams_per_key(mut self, limit: PerKeyLimit) -> Self {
        self.config.per_key = Some(limit);
        self
    }

    /// Ends each stream cleanly once it has been open about `lifetime`, so that the
    /// client reconnects (an `EventSource` does so by itself, sending its
    /// `Last-Event-ID`): a way to rebalance long-lived connections across instances and
    /// to re-check authorization periodically. Default: none.
    ///
    /// When a stream's time is up, its source is no longer polled (and is dropped);
    /// what was already encoded or buffered still goes out, then the
    /// [`lifetime_retry`](Self::lifetime_retry) hint if one is set, then a clean end of
    /// the body (no error). [`SseStats::streams_expired`] counts these streams and the
    /// stream's `tracing` span records `expired = true`.
    ///
    /// So that streams opened at the same moment do not all reconnect at the same
    /// moment, each stream's lifetime is `lifetime` minus a jitter of up to 10 % of it:
    /// the streams of a layer are numbered as they open, and the jitter is that number
    /// hashed (a multiplication by the 64-bit golden ratio), which spreads any run of
    /// consecutive streams evenly over `[0.9, 1.0] × lifetime`. It is deterministic, not
    /// random.
    ///
    /// Streams without the setting cost nothing for it; with it, each stream has one
    /// timer. The timer needs a tokio runtime with time enabled, as heartbeats do: a
    /// stream started outside any tokio runtime gets no lifetime. A zero `lifetime` ends each
    /// stream at the next tick of tokio's timer (a millisecond), after at most the
    /// events that were ready at once. A lifetime too long for an `Instant` is none.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = tower_sse::SseLayer::new()
    ///     .max_lifetime(Duration::from_secs(30 * 60))
    ///     .lifetime_retry(Duration::from_secs(2));
    /// ```
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = Some(lifetime);
        self
    }

    /// The reconnection delay sent as a last `retry: <ms>` event by a stream that
    /// reached its [`max_lifetime`](Self::max_lifetime), just before it ends. Default:
    /// none (the stream ends without an extra event, and the browser reconnects after
    /// its current reconnection time, about 3 s unless the stream set one). Has no
    /// effect without `max_lifetime`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = tower_sse::SseLayer::new()
    ///     .max_lifetime(Duration::from_secs(3600))
    ///     .lifetime_retry(Duration::from_millis(500));
    /// ```
    pub fn lifetime_retry(mut self, retry: Duration) -> Self {
        self.config.lifetime_retry = Some(Event::new().retry(retry).encode().into_bytes());
        self
    }

    /// Skips any event from the source whose encoded size (the bytes on the wire:
    /// field names, values, line breaks and the final blank line) is more than `bytes`.
    /// The stream goes on with the next event; [`SseStats::events_too_large`] counts the
    /// skipped events and a `tracing` warning gives each one's size and the limit (never
    /// its content). Applies to [`Event`]s, [`EncodedEvent`](crate::EncodedEvent)s and
    /// [`Message`](crate::Message)s alike. Default: no limit.
    ///
    /// The limit is taken as is: `0` lets no event through (the stream then carries only
    /// heartbeats). Events the layer makes itself (heartbeats, [gap
    /// events](Self::gap_event), the [`on_error`](Self::on_error) event, the
    /// [shutdown](crate::ShutdownHandle::shutdown_with) event, the
    /// [`lifetime_retry`](Self::lifetime_retry) hint) are not checked.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_event_bytes(64 * 1024);
    /// ```
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.config.max_event_bytes = bytes;
        self
    }

    /// Counters shared by every stream of this layer (and of its clones).
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new();
    /// assert_eq!(layer.stats().open_streams(), 0);
    /// ```
    pub fn stats(&self) -> SseStats {
        SseStats::new(self.state.counters.clone())
    }

    /// A handle that ends every open stream of this layer (and of its clones).
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new();
    /// let shutdown = layer.shutdown_handle();
    /// shutdown.shutdown();
    /// assert!(shutdown.is_shutdown());
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle::new(self.state.streams.clone())
    }
}

impl fmt::Debug for SseLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseLayer")
            .field("heartbeat", &self.config.heartbeat)
            .field("limits", &self.config.limits)
            .field("overflow", &self.config.overflow)
            .field("max_frame_bytes", &self.config.max_frame_bytes)
            .field("stall_timeout", &self.config.stall_timeout)
            .field("gap_event", &self.config.gap.is_some())
            .field("on_error", &self.config.on_error.is_some())
            .field(
                "max_streams",
                &self.config.limit.as_ref().map(StreamLimit::max),
            )
            .field(
                "max_streams_per_key",
                &self.config.per_key.as_ref().map(PerKeyLimit::max),
            )
            .field("max_lifetime", &self.config.max_lifetime)
            .field("lifetime_retry", &self.config.lifetime_retry.is_some())
            .field(
                "max_event_bytes",
                &Some(self.config.max_event_bytes).filter(|&b| b != usize::MAX),
            )
            .finish()
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = SseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseService::new(inner, Arc::new(self.config.clone()), self.state.clone())
    }
}
