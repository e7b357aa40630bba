//! Counters shared by every stream of a layer, and [`SseStats`], their public view.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

/// The counters behind [`SseStats`]. Streams add to them once per body frame, not
/// once per event, so busy streams on different cores rarely touch the same line.
/// The two queue gauges are the exception: a pumped stream's queue moves them by
/// what it gained or lost each time it changes (a push, a frame taken, a clear).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    open: AtomicU64,
    opened: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    heartbeats: AtomicU64,
    dropped: AtomicU64,
    overflowed: AtomicU64,
    stalled: AtomicU64,
    source_errors: AtomicU64,
    source_panics: AtomicU64,
    rejected: AtomicU64,
    shed: AtomicU64,
    expired: AtomicU64,
    too_large: AtomicU64,
    /// Events waiting in the queues of open (pumped) streams; gaps not counted.
    queued_events: AtomicU64,
    /// Encoded bytes of those events.
    queued_bytes: AtomicU64,
    /// Streams given a `max_lifetime` so far: numbers them for their jitter.
    lifetimes: AtomicU64,
    /// The stream-lifetime histogram of the layer's `SseMetrics`, once one is made.
    #[cfg(feature = "metrics")]
    lifetime_histogram: std::sync::OnceLock<::metrics::Histogram>,
}

impl Counters {
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
        self.opened.fetch_add(1, Relaxed);
    }
    /// A stream closed after `lifetime` open; recorded in the lifetime histogram, if
    /// an `SseMetrics` made one (once per stream, not per event).
    pub(crate) fn closed(&self, lifetime: std::time::Duration) {
        self.open.fetch_sub(1, Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(histogram) = self.lifetime_histogram.get() {
            histogram.record(lifetime.as_secs_f64());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = lifetime;
    }
    pub(crate) fn sent(&self, events: u64, bytes: u64) {
        if events > 0 {
            self.events.fetch_add(events, Relaxed);
        }
        self.bytes.fetch_add(bytes, Relaxed);
    }
    pub(crate) fn heartbeat(&self, bytes: u64) {
        self.heartbeats.fetch_add(1, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
    pub(crate) fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }
    pub(crate) fn overflowed(&self) {
        self.overflowed.fetch_add(1, Relaxed);
    }
    pub(crate) fn stalled(&self) {
        self.stalled.fetch_add(1, Relaxed);
    }
    pub(crate) fn source_error(&self) {
        self.source_errors.fetch_add(1, Relaxed);
    }
    pub(crate) fn source_panic(&self) {
        self.source_panics.fetch_add(1, Relaxed);
    }
    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }
    /// Counts a shed answer; its number (0, 1, 2, … per layer) jitters its `retry:`.
    pub(crate) fn shed(&self) -> u64 {
        self.shed.fetch_add(1, Relaxed)
    }
    pub(crate) fn expired(&self) {
        self.expired.fetch_add(1, Relaxed);
    }
    pub(crate) fn too_large(&self) {
        self.too_large.fetch_add(1, Relaxed);
    }
    /// Moves the queue gauges from what one queue held (`from`: events, bytes) to
    /// what it holds now (`to`). Called under that queue's lock, so the gauges never
    /// see a queue over its caps; no atomic operation when nothing changed.
    pub(crate) fn requeued(&self, from: (usize, usize), to: (usize, usize)) {
        shift(&self.queued_events, from.0, to.0);
        shift(&self.queued_bytes, from.1, to.1);
    }
    /// A number for a stream that gets a lifetime: 0, 1, 2, … per layer.
    pub(crate) fn next_lifetime(&self) -> u64 {
        self.lifetimes.fetch_add(1, Relaxed)
    }
}

/// Adds `to - from` to `gauge` (which may be negative).
#[inline]
fn shift(gauge: &AtomicU64, from: usize, to: usize) {
    if to > from {
        gauge.fetch_add((to - from) as u64, Relaxed);
    } else if from > to {
        gauge.fetch_sub((from - to) as u64, Relaxed);
    }
}

/// A live view of a layer's counters, cheap to clone. Every reader sees the same
/// numbers; they are updated as streams write.
///
/// ```
/// let layer = tower_sse::SseLayer::new();
/// let stats = layer.stats();
/// assert_eq!(stats.open_streams(), 0);
/// assert_eq!(stats.events_dropped(), 0);
/// println!("{stats:?}");
/// ```
#[derive(Clone)]
pub struct SseStats {
    counters: Arc<Counters>,
}

impl SseStats {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        Self { counters }
    }

    /// Records every stream of this layer that closes from now on in `histogram`
    /// (its lifetime in seconds), unless a histogram was given before.
    #[cfg(feature = "metrics")]
    pub(crate) fn bind_lifetimes(&self, histogram: ::metrics::Histogram) {
        let _ = self.counters.lifetime_histogram.set(histogram);
    }

    fn get(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        f(&self.counters).load(Relaxed)
    }

    /// SSE streams open now.
    pub fn open_streams(&self) -> u64 {
        self.get(|c| &c.open)
    }
    /// SSE streams opened since the layer was made.
    pub fn streams_opened(&self) -> u64 {
        self.get(|c| &c.opened)
    }
    /// Events handed to hyper (gap and final events included, heartbeats not).
    pub fn events_sent(&self) -> u64 {
        self.get(|c| &c.events)
    }
    /// Bytes handed to hyper, heartbeats included.
    pub fn bytes_sent(&self) -> u64 {
        self.get(|c| &c.bytes)
    }
    /// Heartbeats handed to hyper.
    pub fn heartbeats_sent(&self) -> u64 {
        self.get(|c| &c.heartbeats)
    }
    /// Events dropped by [`Overflow::DropOldest`](crate::Overflow::DropOldest) or
    /// [`Overflow::DropNewest`](crate::Overflow::DropNewest).
    pub fn events_dropped(&self) -> u64 {
        self.get(|c| &c.dropped)
    }
    /// Connections ended by [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    pub fn overflow_disconnects(&self) -> u64 {
        self.get(|c| &c.overflowed)
    }
    /// Connections ended by [`SseLayer::stall_timeout`](crate::SseLayer::stall_timeout).
    pub fn stall_disconnects(&self) -> u64 {
        self.get(|c| &c.stalled)
    }
    /// Streams ended by an error from their source.
    pub fn source_errors(&self) -> u64 {
        self.get(|c| &c.source_errors)
    }
    /// Streams ended because their source panicked while it was polled. The panic
    /// ends that response only, as if the source had ended (the events it yielded
    /// before go out, then the end; no [`on_error`](crate::SseLayer::on_error)
    /// event), and is logged at `ERROR`; the connection, the other streams and the
    /// server go on.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use futures_util::StreamExt as _;
    /// use http::Request;
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_sse::{Event, SseLayer, SseResponse};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = SseLayer::new();
    /// let stats = layer.stats();
    /// let svc = layer.layer(service_fn(|_req: Request<()>| async {
    ///     let events = tokio_stream::iter(0..3).map(|i| {
    ///         assert!(i < 2, "a bug in the handler");
    ///         Ok::<_, Infallible>(Event::new().data(i.to_string()))
    ///     });
    ///     Ok::<_, Infallible>(SseResponse::new(events))
    /// }));
    /// let res = svc.oneshot(Request::new(())).await.unwrap();
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(&body[..], b"data: 0\n\ndata: 1\n\n");
    /// assert_eq!(stats.source_panics(), 1);
    /// # }
    /// ```
    pub fn source_panics(&self) -> u64 {
        self.get(|c| &c.source_panics)
    }
    /// Streams refused with `503` by [`StreamLimit::reject`](crate::StreamLimit::reject)
    /// or [`PerKeyLimit::reject`](crate::PerKeyLimit::reject). Sheds are counted apart,
    /// by [`streams_shed`](Self::streams_shed).
    pub fn streams_rejected(&self) -> u64 {
        self.get(|c| &c.rejected)
    }
    /// Streams answered with the [shed answer](crate::limit#the-shed-answer) (200, a
    /// `retry:`, end) by [`StreamLimit::shed`](crate::StreamLimit::shed) or
    /// [`PerKeyLimit::shed`](crate::PerKeyLimit::shed); not counted as opened.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_streams(tower_sse::StreamLimit::shed(100));
    /// assert_eq!(layer.stats().streams_shed(), 0);
    /// ```
    pub fn streams_shed(&self) -> u64 {
        self.get(|c| &c.shed)
    }
    /// Streams ended cleanly because they reached
    /// [`SseLayer::max_lifetime`](crate::SseLayer::max_lifetime).
    pub fn streams_expired(&self) -> u64 {
        self.get(|c| &c.expired)
    }
    /// Events skipped because their encoded size exceeded
    /// [`SseLayer::max_event_bytes`](crate::SseLayer::max_event_bytes).
    pub fn events_too_large(&self) -> u64 {
        self.get(|c| &c.too_large)
    }
    /// Events waiting right now in the per-connection buffers of this layer's open
    /// streams: taken from the source, not yet handed to hyper. A gauge, not a
    /// counter: it rises as a stream's task queues events, falls as the body takes
    /// them out into a frame or the [`Overflow`](crate::Overflow) policy drops them,
    /// and a stream's remaining events leave it when the stream ends or is dropped
    /// (client gone, disconnect, shutdown, lifetime). Gap markers are not events
    /// until they go out as a [gap event](crate::SseLayer::gap_event).
    ///
    /// Only pumped streams have a buffer (an [`Overflow`](crate::Overflow) other
    /// than `Wait`, or a [`stall_timeout`](crate::SseLayer::stall_timeout)); in
    /// direct mode (`Wait` without a stall timeout) the body encodes straight into
    /// the outgoing frame, nothing waits, and this stays 0. Each stream's high-water
    /// mark is recorded in its `tracing` span as `max_queued`.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::Request;
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseResponse};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = SseLayer::new()
    ///     .buffer(BufferLimits::new(4, 1 << 20))
    ///     .on_overflow(Overflow::DropNewest);
    /// let stats = layer.stats();
    /// let svc = layer.layer(service_fn(|_req: Request<()>| async {
    ///     let events = (0..10).map(|i| Ok::<_, Infallible>(Event::new().data(i.to_string())));
    ///     Ok::<_, Infallible>(SseResponse::new(tokio_stream::iter(events)))
    /// }));
    /// let res = svc.oneshot(Request::new(())).await.unwrap();
    /// // Nobody reads the body yet: the stream's task fills its buffer, then drops.
    /// while stats.events_dropped() < 6 {
    ///     tokio::task::yield_now().await;
    /// }
    /// assert_eq!(stats.queued_events(), 4);
    ///
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(&body[..], b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n");
    /// assert_eq!(stats.queued_events(), 0);
    /// # }
    /// ```
    pub fn queued_events(&self) -> u64 {
        self.get(|c| &c.queued_events)
    }
    /// The encoded size (bytes on the wire) of the events counted by
    /// [`queued_events`](Self::queued_events): what the layer's streams hold in
    /// their buffers right now. Per stream it stays within
    /// [`BufferLimits::bytes`](crate::BufferLimits::bytes), except for an event
    /// larger than that cap let through alone under `Wait` with a stall timeout,
    /// and a source's last events (the one waiting for room, the
    /// [`on_error`](crate::SseLayer::on_error) event), which are queued past the
    /// caps. Like `queued_events`, a gauge, and 0 in direct mode.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::Request;
    /// use http_body_util::BodyExt;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseResponse};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = SseLayer::new()
    ///     .buffer(BufferLimits::new(4, 1 << 20))
    ///     .on_overflow(Overflow::DropOldest);
    /// let stats = layer.stats();
    /// let svc = layer.layer(service_fn(|_req: Request<()>| async {
    ///     let events = (0..10).map(|i| Ok::<_, Infallible>(Event::new().data(i.to_string())));
    ///     Ok::<_, Infallible>(SseResponse::new(tokio_stream::iter(events)))
    /// }));
    /// let res = svc.oneshot(Request::new(())).await.unwrap();
    /// while stats.events_dropped() < 6 {
    ///     tokio::task::yield_now().await;
    /// }
    /// // The newest four events wait, `data: 6\n\n` to `data: 9\n\n`: 9 bytes each.
    /// assert_eq!(stats.queued_bytes(), 4 * 9);
    ///
    /// drop(res); // the client left: what its stream held is gone
    /// assert_eq!(stats.queued_bytes(), 0);
    /// # }
    /// ```
    pub fn queued_bytes(&self) -> u64 {
        self.get(|c| &c.queued_bytes)
    }
}

impl fmt::Debug for SseStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseStats")
            .field("open_streams", &self.open_streams())
            .field("streams_opened", &self.streams_opened())
            .field("events_sent", &self.events_sent())
            .field("bytes_sent", &self.bytes_sent())
            .field("heartbeats_sent", &self.heartbeats_sent())
            .field("events_dropped", &self.events_dropped())
            .field("overflow_disconnects", &self.overflow_disconnects())
            .field("stall_disconnects", &self.stall_disconnects())
            .field("source_errors", &self.source_errors())
            .field("source_panics", &self.source_panics())
            .field("streams_rejected", &self.streams_rejected())
            .field("streams_shed", &self.streams_shed())
            .field("streams_expired", &self.streams_expired())
            .field("events_too_large", &self.events_too_large())
            .field("queued_events", &self.queued_events())
            .field("queued_bytes", &self.queued_bytes())
            .finish()
    }
}
