use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;
use tokio::{
    sync::OwnedSemaphorePermit,
    task::AbortHandle,
    time::{Instant, Sleep},
};
use tracing::Span;

use crate::{
    buffer::{pump, Queue},
    heartbeat::HeartbeatTimer,
    layer::Config,
    response::Slot,
    BoxError, Encode, Error, Heartbeat,
};

pin_project! {
    /// The body of a response made by [`SseLayer`](crate::SseLayer): the event stream
    /// encoded as `text/event-stream`, or the body of a response passed through.
    ///
    /// Its size is always unknown (so no `content-length`), each frame carries every
    /// event that was ready (up to [`max_frame_bytes`](crate::SseLayer::max_frame_bytes)),
    /// and dropping it (the client left) drops the event source at once.
    pub struct SseBody<St> {
        #[pin]
        kind: BodyKind<St>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<St> {
        Events { #[pin] events: EventsBody<St> },
        Other { #[pin] body: UnsyncBoxBody<Bytes, BoxError> },
        /// Made by `SseResponse::into_http`: the stream waits in the slot for a layer
        /// or, on first poll, is served with the default settings.
        Deferred { slot: Slot },
    }
}

impl<St> SseBody<St> {
    pub(crate) fn events(events: EventsBody<St>) -> Self {
        Self {
            kind: BodyKind::Events { events },
        }
    }

    pub(crate) fn other(body: UnsyncBoxBody<Bytes, BoxError>) -> Self {
        Self {
            kind: BodyKind::Other { body },
        }
    }

    pub(crate) fn deferred(slot: Slot) -> Self {
        Self {
            kind: BodyKind::Deferred { slot },
        }
    }
}

/// An empty body, passed through like any other: what middleware in front of the
/// layer (tower-http's auth, CORS and timeout layers) answers with when it refuses a
/// request itself.
impl<St> Default for SseBody<St> {
    fn default() -> Self {
        Self::other(UnsyncBoxBody::default())
    }
}

impl<St> fmt::Debug for SseBody<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            BodyKind::Events { .. } => "SseBody::Events",
            BodyKind::Other { .. } => "SseBody::Other",
            BodyKind::Deferred { .. } => "SseBody::Deferred",
        })
    }
}

impl<St, T, E> Body for SseBody<St>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut kind = self.project().kind;
        match kind.as_mut().project() {
            BodyKindProj::Events { events } => events.poll_frame(cx),
            BodyKindProj::Other { body } => body.poll_frame(cx),
            BodyKindProj::Deferred { slot } => {
                let Some((stream, heartbeat)) = slot.take() else {
                    return Poll::Ready(None);
                };
                let config = crate::layer::default_config();
                let heartbeat = match &heartbeat {
                    Some(chosen) => chosen.as_ref(),
                    None => config.heartbeat.as_ref(),
                };
                // The slot only ever holds a `BoxEventStream`, but this body is generic:
                // serve it through a body of that type.
                let events = EventsBody::new(stream, config.clone(), heartbeat, Span::none(), None);
                kind.set(BodyKind::Other {
                    body: UnsyncBoxBody::new(SseBody::events(events)),
                });
                match kind.project() {
                    BodyKindProj::Other { body } => body.poll_frame(cx),
                    _ => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Events { events } => events.done,
            BodyKind::Other { body } => body.is_end_stream(),
            BodyKind::Deferred { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Events { .. } => SizeHint::default(),
            BodyKind::Other { body } => body.size_hint(),
            BodyKind::Deferred { .. } => SizeHint::default(),
        }
    }
}

/// Where a pumped stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueueState {
    Open,
    /// The source ended; what is queued still goes out.
    Ended,
    /// The client was dropped as too slow, for this reason.
    Disconnected(Error),
    /// The body was dropped: the queue is empty and takes nothing more.
    Closed,
}

/// Per-connection state shared with the layer (for shutdown) and the pump task.
pub(crate) struct Conn {
    pub(crate) waker: AtomicWaker,
    /// Only pumped streams have a queue; boxed so that others stay small.
    queue: Option<Box<Mutex<Queue>>>,
}

impl Conn {
    /// Whether a task drains the source into a queue.
    pub(crate) fn pumped(&self) -> bool {
        self.queue.is_some()
    }

    /// The queue of a pumped stream. Only called in pump mode.
    pub(crate) fn lock_queue(&self) -> MutexGuard<'_, Queue> {
        match &self.queue {
            Some(queue) => queue.lock().unwrap_or_else(PoisonError::into_inner),
            None => unreachable!("lock_queue on a stream without a queue"),
        }
    }
}

/// Too-large events skipped in one poll of a direct body before it yields.
const SKIPS_PER_POLL: usize = 128;

pin_project! {
    #[project = SourceProj]
    enum Source<St> {
        /// `Wait` without stall timeout: the body polls the source itself.
        Direct { #[pin] stream: St },
        /// Drained by a task into the connection's queue.
        Pumped,
        Done,
    }
}

/// Counts for the connection's span, and what was already added to the layer's stats.
#[derive(Debug, Default)]
struct ConnStats {
    events: u64,
    bytes: u64,
    heartbeats: u64,
}

/// Unregisters the stream, stops its pump and records its span when dropped.
struct Guard {
    config: Arc<Config>,
    conn: Arc<Conn>,
    key: usize,
    pump: Option<AbortHandle>,
    /// The `StreamLimit` permit, released when the stream ends.
    _permit: Option<OwnedSemaphorePermit>,
    stats: ConnStats,
    span: Span,
    opened: std::time::Instant,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        // What the queue still holds leaves the layer's gauges before the stream
        // counts as closed; the pump, if it is still running, can add nothing more.
        let (dropped, max_queued) = if self.conn.queue.is_some() {
            let mut queue = self.conn.lock_queue();
            queue.close();
            (queue.dropped, queue.max_events as u64)
        } else {
            (0, 0)
        };
        self.config.shared.unregister(self.key);
        let span = &self.span;
        let lifetime = self.opened.elapsed();
        span.record("dropped", dropped);
        span.record("max_queued", max_queued);
        span.record("events", self.stats.events);
        span.record("bytes", self.stats.bytes);
        span.record("heartbeats", self.stats.heartbeats);
        span.record("lifetime_ms", lifetime.as_millis() as u64);
        tracing::debug!(
            parent: span,
            events = self.stats.events,
            bytes = self.stats.bytes,
            heartbeats = self.stats.heartbeats,
            dropped,
            max_queued,
            lifetime_ms = lifetime.as_millis() as u64,
            "sse stream closed"
        );
    }
}

/// Why the source was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It was not: the source is polled.
    No,
    /// Shutdown was seen; the shutdown's last event ends the stream.
    Shutdown,
    /// The stream reached its `max_lifetime`; the `lifetime_retry` hint ends it.
    Expired,
}

/// `max` minus a jitter of up to 10 % of it, for the stream numbered `n` (0, 1, 2, …
/// per layer): `n` times 2^64 / φ (Fibonacci hashing), whose top 32 bits are a fraction
/// that spreads consecutive numbers evenly over `[0, 1)`. Deterministic and cheap.
pub(crate) fn jittered_lifetime(max: Duration, n: u64) -> Duration {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let fraction = u128::from(n.wrapping_mul(GOLDEN) >> 32);
    // At most u64::MAX s in ns / 10 × 2^32 < 2^125: no overflow.
    let jitter = (max.as_nanos() / 10 * fraction) >> 32;
    let secs = u64::try_from(jitter / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(jitter % 1_000_000_000).unwrap_or(0);
    max.saturating_sub(Duration::new(secs, nanos))
}

pin_project! {
    pub(crate) struct EventsBody<St> {
        #[pin]
        source: Source<St>,
        frame: BytesMut,
        // `frame` ends with one encoded event that goes out in the next frame.
        carried: bool,
        heartbeat: Option<HeartbeatTimer>,
        // Fires at the stream's `max_lifetime` (jittered); `None` without one, and once
        // it fired.
        lifetime: Option<Pin<Box<Sleep>>>,
        // Shutdown or the lifetime was seen: the source is stopped, what is encoded
        // drains.
        stop: Stop,
        done: bool,
        guard: Guard,
    }
}

/// Stops the source: aborts the pump (what it queued still goes out) or drops the
/// source polled in place.
fn stop_source<St>(mut source: Pin<&mut Source<St>>, pump: &mut Option<AbortHandle>, conn: &Conn) {
    if let Some(pump) = pump.take() {
        pump.abort();
        let mut queue = conn.lock_queue();
        if queue.state == QueueState::Open {
            queue.state = QueueState::Ended;
        }
    } else if let SourceProj::Direct { .. } = source.as_mut().project() {
        source.set(Source::Done);
    }
}

impl<St, T, E> EventsBody<St>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    pub(crate) fn new(
        stream: St,
        config: Arc<Config>,
        heartbeat: Option<&Heartbeat>,
        span: Span,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        // Pumping needs a runtime to spawn on; without one, fall back to backpressure.
        let runtime = config
            .pumped()
            .then(tokio::runtime::Handle::try_current)
            .and_then(Result::ok);
        let conn = Arc::new(Conn {
            waker: AtomicWaker::new(),
            queue: runtime
                .as_ref()
                .map(|_| Box::new(Mutex::new(Queue::new(config.shared.clone())))),
        });
        let key = config.shared.register(conn.clone());
        let (source, pump) = match runtime {
            Some(runtime) => {
                let interval = heartbeat.map(Heartbeat::interval);
                let task = runtime.spawn(pump(stream, conn.clone(), config.clone(), interval));
                (Source::Pumped, Some(task.abort_handle()))
            }
            None => {
                if config.pumped() {
                    tracing::warn!("no tokio runtime to drain the source: using backpressure");
                }
                (Source::Direct { stream }, None)
            }
        };
        // Likewise no lifetime timer without a runtime. A deadline past what an
        // `Instant` can hold is no deadline.
        let lifetime = config
            .max_lifetime
            .filter(|_| tokio::runtime::Handle::try_current().is_ok())
            .and_then(|max| {
                let lifetime = jittered_lifetime(max, config.shared.stats.next_lifetime());
                Instant::now().checked_add(lifetime)
            })
            .map(|deadline| Box::pin(tokio::time::sleep_until(deadline)));
        Self {
            source,
            frame: BytesMut::new(),
            carried: false,
            // A timer needs a tokio runtime with time enabled; without one, no heartbeat.
            heartbeat: heartbeat
                .filter(|_| tokio::runtime::Handle::try_current().is_ok())
                .map(|hb| HeartbeatTimer::new(hb, &config.shared)),
            lifetime,
            stop: Stop::No,
            done: false,
            guard: Guard {
                config,
                conn,
                key,
                pump,
                _permit: permit,
                stats: ConnStats::default(),
                span,
                opened: std::time::Instant::now(),
            },
        }
    }
}

impl<St, T, E> EventsBody<St>
where
    St: Stream<Item = Result<T, E>>,
    T: Encode,
    E: Into<BoxError>,
{
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let guard = &mut *this.guard;
        let config = &*guard.config;
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if *this.stop == Stop::No {
                // Stop the source; what is already encoded still goes out, then the
                // shutdown's last event or the lifetime's `retry:` hint, then the end
                // of the stream.
                if config.shared.is_shutting_down() {
                    *this.stop = Stop::Shutdown;
                    stop_source(this.source.as_mut(), &mut guard.pump, &guard.conn);
                } else if this
                    .lifetime
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
                {
                    *this.lifetime = None;
                    *this.stop = Stop::Expired;
                    stop_source(this.source.as_mut(), &mut guard.pump, &guard.conn);
                    config.shared.stats.expired();
                    guard.span.record("expired", true);
                    tracing::debug!(parent: &guard.span, "sse stream reached its max_lifetime");
                }
            }

            let max_bytes = config.max_frame_bytes.min(config.limits.bytes());
            let max_events = config.limits.events();
            let frame = &mut *this.frame;
            // An event carried over from the last poll is already in `frame`.
            let mut events = usize::from(std::mem::take(this.carried));
            let mut split_at = usize::MAX;
            let mut ended = false;
            // Events skipped as too large in this poll: an always-ready source of them
            // must not keep this poll going forever.
            let mut skipped = 0;
            match this.source.as_mut().project() {
                SourceProj::Direct { mut stream } => {
                    // Nothing waits in a queue here: ready events go straight into the
                    // frame hyper takes, so only its size is capped.
                    while frame.len() < max_bytes && skipped < SKIPS_PER_POLL {
                        match stream.as_mut().poll_next(cx) {
                            Poll::Ready(Some(Ok(item))) => {
                                let before = frame.len();
                                item.encode_to(frame);
                                if config.event_too_large(frame.len() - before) {
                                    frame.truncate(before);
                                    if frame.capacity() > max_bytes.saturating_mul(2) {
                                        // Do not keep the room the skipped event took.
                                        *frame = BytesMut::from(&frame[..]);
                                    }
                                    skipped += 1;
                                    continue;
                                }
                                if frame.len() > max_bytes && before > 0 {
                                    // It would overflow this frame: it starts the next.
                                    *this.carried = true;
                                    split_at = before;
                                    break;
                                }
                                events += 1;
                            }
                            Poll::Ready(Some(Err(err))) => {
                                if let Some(last) = config.source_error(err.into()) {
                                    last.encode_to(frame);
                                    events += 1;
                                }
                                ended = true;
                                break;
                            }
                            Poll::Ready(None) => {
                                ended = true;
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                }
                SourceProj::Pumped => {
                    let mut queue = guard.conn.lock_queue();
                    if let QueueState::Disconnected(err) = &queue.state {
                        let err = err.clone();
                        drop(queue);
                        *this.done = true;
                        return Poll::Ready(Some(Err(err.into())));
                    }
                    events = queue.take_into(frame, max_bytes, max_events, config.gap.as_ref());
                    if !frame.is_empty() {
                        queue.last_delivery = Instant::now();
                    } else if queue.state == QueueState::Ended && queue.is_empty() {
                        ended = true;
                    } else {
                        guard.conn.waker.register(cx.waker());
                    }
                }
                SourceProj::Done => ended = true,
            }
            if ended {
                this.source.set(Source::Done);
            }

            if !frame.is_empty() {
                let full = *this.carried
                    || frame.len() >= max_bytes
                    || (guard.conn.pumped() && events >= max_events);
                let bytes = if *this.carried {
                    frame.split_to(split_at).freeze()
                } else {
                    frame.split().freeze()
                };
                if !full {
                    // A quiet stream does not keep spare frame capacity alive.
                    *frame = BytesMut::new();
                }
                if let Some(hb) = this.heartbeat.as_mut() {
                    hb.wrote();
                }
                guard.stats.events += events as u64;
                guard.stats.bytes += bytes.len() as u64;
                config.shared.stats.sent(events as u64, bytes.len() as u64);
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if ended {
                *this.done = true;
                let last = match *this.stop {
                    Stop::No => None,
                    Stop::Shutdown => config.shared.last_event(),
                    Stop::Expired => config.lifetime_retry.clone(),
                };
                if let Some(last) = last {
                    guard.stats.events += 1;
                    guard.stats.bytes += last.len() as u64;
                    config.shared.stats.sent(1, last.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(last))));
                }
                return Poll::Ready(None);
            }

            if let Some(timer) = this.heartbeat.as_mut() {
                if timer.poll_due(cx).is_ready() {
                    let bytes = timer.bytes().clone();
                    if guard.conn.pumped() {
                        guard.conn.lock_queue().last_delivery = timer.last_write();
                    }
                    guard.stats.heartbeats += 1;
                    guard.stats.bytes += bytes.len() as u64;
                    config.shared.stats.heartbeat(bytes.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(bytes))));
                }
            }
            guard.conn.waker.register(cx.waker());
            if skipped >= SKIPS_PER_POLL {
                // The source may have more ready: come back after other tasks ran.
                cx.waker().wake_by_ref();
            }
            if *this.stop != Stop::No || !config.shared.is_shutting_down() {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What the layer keeps per idle stream in direct mode: the body (inline in
    /// hyper's connection state), the shared `Conn` and the heartbeat `Sleep`.
    #[test]
    fn per_stream_state_stays_under_one_kib() {
        type St = futures_core::stream::BoxStream<
            'static,
            Result<crate::Event, std::convert::Infallible>,
        >;
        let body = std::mem::size_of::<EventsBody<St>>();
        let conn = std::mem::size_of::<Conn>() + 2 * std::mem::size_of::<usize>();
        let sleep = std::mem::size_of::<tokio::time::Sleep>();
        let slab_slot = std::mem::size_of::<Option<Arc<Conn>>>();
        let total = body + conn + sleep + slab_slot;
        assert!(
            total < 1024,
            "body {body} + conn {conn} + sleep {sleep} = {total}"
        );
    }
}

#[cfg(test)]
mod lifetime_tests {
    use super::*;

    #[test]
    fn jittered_lifetimes_differ_and_stay_within_the_last_tenth() {
        for max in [
            Duration::from_secs(1),
            Duration::from_secs(3600),
            Duration::from_millis(7),
        ] {
            let lifetimes: Vec<Duration> = (0..16).map(|n| jittered_lifetime(max, n)).collect();
            for (n, lifetime) in lifetimes.iter().enumerate() {
                assert!(
                    *lifetime <= max && *lifetime >= max * 9 / 10,
                    "stream {n}: {lifetime:?} of {max:?}"
                );
            }
            let mut distinct = lifetimes.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), lifetimes.len(), "{lifetimes:?}");
        }
    }

    #[test]
    fn jitter_spreads_consecutive_streams_over_the_whole_tenth() {
        let max = Duration::from_secs(100);
        let mut jitters: Vec<Duration> = (0..64).map(|n| max - jittered_lifetime(max, n)).collect();
        jitters.sort();
        // 64 streams over 10 s: no gap between neighbours much wider than 10 s / 64.
        let widest = jitters.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest < Duration::from_millis(500), "{widest:?}");
        assert!(jitters[63] > Duration::from_secs(9), "{jitters:?}");
    }

    #[test]
    fn extreme_lifetimes_do_not_overflow() {
        assert_eq!(jittered_lifetime(Duration::ZERO, 5), Duration::ZERO);
        let max = jittered_lifetime(Duration::MAX, u64::MAX);
        assert!(max >= Duration::MAX / 10 * 9);
    }
}
