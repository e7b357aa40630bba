//! The per-connection bounded buffer between the event source and the socket.
//!
//! hyper polls a response body only while the connection can take more bytes, so a
//! client that reads slowly stops the body from being polled. What happens to the
//! event source then is the [`Overflow`] policy:
//!
//! | policy | the source is | memory | the client sees |
//! |---|---|---|---|
//! | [`Overflow::Wait`] (default) | not polled until the client reads (backpressure) | one frame | every event |
//! | [`Overflow::DropOldest`] | drained into the buffer; oldest events dropped when full | the buffer's caps | the newest events, and a gap marker |
//! | [`Overflow::DropNewest`] | drained into the buffer; new events dropped when full | the buffer's caps | the oldest events, and a gap marker |
//! | [`Overflow::Disconnect`] | drained into the buffer; the connection is ended when full | the buffer's caps | a closed connection; it reconnects with `Last-Event-ID` |
//!
//! The buffer is bounded both in events and in bytes ([`BufferLimits`]). With
//! `Wait` and no stall timeout, the body polls the source itself and encodes straight
//! into the outgoing frame: there is no queue and no extra task, and what the stream
//! holds is one frame of at most `min(max_frame_bytes, limits.bytes())` bytes. The other policies
//! (and [`SseLayer::stall_timeout`](crate::SseLayer::stall_timeout)) need the source
//! to be drained while the socket is full, so the stream gets a small task that moves
//! encoded events into the bounded queue; it is aborted, and the source dropped, as
//! soon as the response body is dropped.
//!
//! Dropped events are never silent: they are counted per connection (in the tracing
//! span) and in [`SseStats`](crate::SseStats), and with
//! [`SseLayer::gap_event`](crate::SseLayer::gap_event) the client receives an event
//! that marks the gap where it happened, so it can resync.
//!
//! What waits in the buffers is visible too: [`SseStats::queued_events`] and
//! [`SseStats::queued_bytes`] add up the buffers of all the layer's open streams
//! right now, and each stream's span records its high-water mark as `max_queued`.
//!
//! [`SseStats::queued_events`]: crate::SseStats::queued_events
//! [`SseStats::queued_bytes`]: crate::SseStats::queued_bytes
//!
//! ```
//! use tower_sse::{BufferLimits, Overflow, SseLayer};
//!
//! let layer = SseLayer::new()
//!     .buffer(BufferLimits::new(256, 1 << 20)) // at most 256 events and 1 MiB
//!     .on_overflow(Overflow::DropOldest);
//! ```

use std::{
    collections::VecDeque,
    future::{poll_fn, Future},
    pin::pin,
    sync::Arc,
    task::{Poll, Waker},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::time::Instant;

use crate::{
    body::{Conn, QueueState},
    layer::Config,
    shutdown::Shared,
    BoxError, Encode, Error,
};

/// Caps on what one connection may hold: a number of events and a number of bytes.
///
/// The default is 256 events and 1 MiB.
///
/// ```
/// let limits = tower_sse::BufferLimits::new(64, 256 * 1024);
/// assert_eq!(limits.events(), 64);
/// assert_eq!(limits.bytes(), 256 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    events: usize,
    bytes: usize,
}

impl BufferLimits {
    /// At most `events` events and `bytes` bytes (both raised to at least 1).
    pub const fn new(events: usize, bytes: usize) -> Self {
        Self {
            events: if events == 0 { 1 } else { events },
            bytes: if bytes == 0 { 1 } else { bytes },
        }
    }

    /// The cap on buffered events.
    pub const fn events(&self) -> usize {
        self.events
    }

    /// The cap on buffered bytes (encoded).
    pub const fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self::new(256, 1 << 20)
    }
}

/// What to do when a connection's buffer is full; see the [module docs](self).
///
/// ```
/// use tower_sse::{Overflow, SseLayer};
/// let layer = SseLayer::new().on_overflow(Overflow::Disconnect);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Stop polling the source until the client has read (backpressure).
    #[default]
    Wait,
    /// Drop the oldest buffered events to make room.
    DropOldest,
    /// Drop the incoming event.
    DropNewest,
    /// End the connection and drop everything it buffered.
    Disconnect,
}

#[derive(Debug)]
enum Entry {
    Event(Bytes),
    /// Events lost at this point of the stream.
    Gap(u64),
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// `n` events were dropped (the incoming one or older ones).
    Dropped(u64),
    Disconnected,
    /// The stream is gone (its body was dropped): nothing is queued any more.
    Closed,
}

/// The bounded queue of one connection (pump mode).
///
/// `events` and `bytes` count the `Entry::Event`s only (a gap is no event until it
/// goes out), and every change to them is passed on to the layer's queue gauges
/// ([`Counters::requeued`](crate::stats::Counters::requeued)) under the queue's lock.
/// What is left when the stream closes, or when the queue is dropped, is taken off
/// the gauges too.
pub(crate) struct Queue {
    entries: VecDeque<Entry>,
    events: usize,
    bytes: usize,
    /// The most events this queue held at once: the span's `max_queued`.
    pub(crate) max_events: usize,
    /// The layer's state, for its queue gauges.
    shared: Arc<Shared>,
    pub(crate) state: QueueState,
    /// When the body last handed a frame to hyper, or when the queue last became
    /// non-empty, whichever is later: the stall clock.
    pub(crate) since: Instant,
    pub(crate) last_delivery: Instant,
    /// Events this connection dropped so far.
    pub(crate) dropped: u64,
    pump_waker: Option<Waker>,
}

impl Queue {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let now = Instant::now();
        Self {
            entries: VecDeque::new(),
            events: 0,
            bytes: 0,
            max_events: 0,
            shared,
            state: QueueState::Open,
            since: now,
            last_delivery: now,
            dropped: 0,
            pump_waker: None,
        }
    }

    fn is_full(&self, limits: BufferLimits) -> bool {
        self.events >= limits.events || self.bytes >= limits.bytes
    }

    fn fits(&self, len: usize, limits: BufferLimits) -> bool {
        self.events < limits.events && self.bytes + len <= limits.bytes
    }

    fn mark_gap_back(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        match self.entries.back_mut() {
            Some(Entry::Gap(m)) => *m += n,
            _ => self.entries.push_back(Entry::Gap(n)),
        }
    }

    fn mark_gap_front(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        match self.entries.front_mut() {
            Some(Entry::Gap(m)) => *m += n,
            _ => self.entries.push_front(Entry::Gap(n)),
        }
    }

    /// Queues `bytes` under `policy`; never grows past `limits`.
    pub(crate) fn push(&mut self, bytes: Bytes, limits: BufferLimits, policy: Overflow) -> Pushed {
        if matches!(self.state, QueueState::Closed | QueueState::Disconnected(_)) {
            // The pump can still be running when the stream is dropped (an abort
            // takes effect at its next await): what it pushes then goes nowhere.
            return Pushed::Closed;
        }
        let before = self.held();
        let pushed = self.push_inner(bytes, limits, policy);
        match pushed {
            Pushed::Dropped(n) => self.dropped += n,
            // `disconnect` took what was held off the gauges already.
            Pushed::Disconnected => return pushed,
            Pushed::Queued | Pushed::Closed => {}
        }
        self.max_events = self.max_events.max(self.events);
        self.shared.stats.requeued(before, self.held());
        pushed
    }

    /// The events and bytes held, as the gauges count them.
    fn held(&self) -> (usize, usize) {
        (self.events, self.bytes)
    }

    /// Empties the queue and takes what it held off the gauges.
    fn clear(&mut self) {
        let before = self.held();
        self.entries = VecDeque::new();
        self.events = 0;
        self.bytes = 0;
        self.shared.stats.requeued(before, (0, 0));
    }

    fn push_inner(&mut self, bytes: Bytes, limits: BufferLimits, policy: Overflow) -> Pushed {
        let len = bytes.len();
        let mut dropped = 0;
        if !self.fits(len, limits) {
            match policy {
                // The pump only pushes under `Wait` when there is room; an event larger
                // than the whole buffer is let through alone so the stream can go on.
                Overflow::Wait if self.events == 0 => {}
                Overflow::Wait | Overflow::DropNewest => {
                    self.mark_gap_back(1);
                    return Pushed::Dropped(1);
                }
                Overflow::DropOldest => {
                    // Gaps already marked in front move forward with the new one.
                    let mut carried = 0;
                    while !self.fits(len, limits) {
                        match self.entries.pop_front() {
                            Some(Entry::Event(old)) => {
                                self.events -= 1;
                                self.bytes -= old.len();
                                dropped += 1;
                            }
                            Some(Entry::Gap(n)) => carried += n,
                            None => break,
                        }
                    }
                    if !self.fits(len, limits) {
                        // Larger than the whole buffer: it is dropped too.
                        self.mark_gap_front(carried + dropped + 1);
                        return Pushed::Dropped(dropped + 1);
                    }
                    self.mark_gap_front(carried + dropped);
                }
                Overflow::Disconnect => {
                    self.disconnect(Error::overflow());
                    return Pushed::Disconnected;
                }
            }
        }
        if self.entries.is_empty() {
            self.since = Instant::now();
        }
        self.events += 1;
        self.bytes += len;
        self.entries.push_back(Entry::Event(bytes));
        if dropped > 0 {
            Pushed::Dropped(dropped)
        } else {
            Pushed::Queued
        }
    }

    /// Ends the connection and frees everything it held.
    pub(crate) fn disconnect(&mut self, why: Error) {
        self.clear();
        self.state = QueueState::Disconnected(why);
    }

    /// The stream is gone: frees what is left, and refuses any later push.
    pub(crate) fn close(&mut self) {
        self.clear();
        self.state = QueueState::Closed;
    }

    /// Moves events into `frame` until it holds `max_bytes` or `max_events`; a gap
    /// becomes `gap(n)`'s event, or nothing. Returns the number of events moved.
    pub(crate) fn take_into(
        &mut self,
        frame: &mut BytesMut,
        max_bytes: usize,
        max_events: usize,
        gap: Option<&crate::layer::GapFn>,
    ) -> usize {
        let before = self.held();
        let mut taken = 0;
        while taken < max_events && frame.len() < max_bytes {
            match self.entries.pop_front() {
                Some(Entry::Event(bytes))
                    if frame.len() + bytes.len() > max_bytes && !frame.is_empty() =>
                {
                    // It would overflow this frame: it starts the next.
                    self.entries.push_front(Entry::Event(bytes));
                    break;
                }
                Some(Entry::Event(bytes)) => {
                    self.events -= 1;
                    self.bytes -= bytes.len();
                    frame.extend_from_slice(&bytes);
                    taken += 1;
                }
                Some(Entry::Gap(n)) => {
                    if let Some(gap) = gap {
                        gap(n).encode_to(frame);
                        taken += 1;
                    }
                }
                None => break,
            }
        }
        self.shared.stats.requeued(before, self.held());
        if let Some(waker) = self.pump_waker.take() {
            waker.wake();
        }
        taken
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The instant at which the client counts as stalled, if it has anything to receive.
    fn stall_deadline(&self, timeout: Duration, heartbeat: Option<Duration>) -> Option<Instant> {
        if !self.entries.is_empty() {
            Some(self.since.max(self.last_delivery) + timeout)
        } else {
            heartbeat.map(|hb| self.last_delivery + hb + timeout)
        }
    }
}

impl Drop for Queue {
    /// A queue dropped with events in it (its stream closes it first, so this is
    /// only a safety net) leaves nothing on the gauges.
    fn drop(&mut self) {
        self.clear();
    }
}

/// Drains `source` into the connection's queue until the source ends, the client is
/// disconnected, or the task is aborted (the body was dropped, or shutdown). With a
/// stall timeout it keeps watching the client until the queue is delivered.
pub(crate) async fn pump<St, T, E>(
    source: St,
    conn: Arc<Conn>,
    config: Arc<Config>,
    heartbeat: Option<Duration>,
) where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    // An always-ready source would keep this task busy forever: hand the worker back
    // after this many events, so other tasks run and an abort takes effect.
    const EVENTS_PER_POLL: usize = 128;
    let mut source = pin!(Some(source));
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);
    let mut watchdog = config
        .stall_timeout
        .map(|_| Box::pin(tokio::time::sleep_until(far())));
    let wait = config.overflow == Overflow::Wait;
    // Under `Wait`, an event that does not fit waits here for room.
    let mut held: Option<Bytes> = None;
    poll_fn(|cx| {
        let mut budget = EVENTS_PER_POLL;
        loop {
            let mut queue = conn.lock_queue();
            match queue.state {
                QueueState::Disconnected(_) | QueueState::Closed => return Poll::Ready(()),
                QueueState::Ended if queue.is_empty() || watchdog.is_none() => {
                    return Poll::Ready(())
                }
                _ => {}
            }
            if let (Some(sleep), Some(timeout)) = (watchdog.as_mut(), config.stall_timeout) {
                let deadline = queue.stall_deadline(timeout, heartbeat);
                if deadline.is_some_and(|d| d <= Instant::now()) {
                    queue.disconnect(Error::stall());
                    drop(queue);
                    config.shared.stats.stalled();
                    tracing::debug!("sse client stalled; disconnecting");
                    conn.waker.wake();
                    return Poll::Ready(());
                }
                let deadline = deadline.unwrap_or_else(far);
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
            }
            let blocked = if queue.state == QueueState::Ended {
                // Only watching the client now.
                true
            } else if let Some(bytes) = held.take() {
                if queue.is_empty() || queue.fits(bytes.len(), config.limits) {
                    queue.push(bytes, config.limits, Overflow::Wait);
                    drop(queue);
                    conn.waker.wake();
                    continue;
                }
                held = Some(bytes);
                true
            } else {
                wait && queue.is_full(config.limits)
            };
            if blocked {
                queue.pump_waker = Some(cx.waker().clone());
                drop(queue);
                if let Some(sleep) = watchdog.as_mut() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                }
                return Poll::Pending;
            }
            drop(queue);
            if budget == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let Some(stream) = source.as_mut().as_pin_mut() else {
                return Poll::Ready(());
            };
            match stream.poll_next(cx) {
                Poll::Ready(Some(Ok(item))) => {
                    budget -= 1;
                    let bytes = item.into_bytes();
                    if config.event_too_large(bytes.len()) {
                        continue;
                    }
                    if wait {
                        held = Some(bytes);
                        continue;
                    }
                    let pushed = conn
                        .lock_queue()
                        .push(bytes, config.limits, config.overflow);
                    conn.waker.wake();
                    match pushed {
                        Pushed::Queued => {}
                        Pushed::Closed => return Poll::Ready(()),
                        Pushed::Dropped(n) => {
                            config.shared.stats.dropped(n);
                            tracing::debug!(dropped = n, "sse buffer full; events dropped");
                        }
                        Pushed::Disconnected => {
                            config.shared.stats.overflowed();
                            tracing::debug!("sse buffer full; disconnecting the client");
                            return Poll::Ready(());
                        }
                    }
                }
                Poll::Ready(end) => {
                    let last = match end {
                        Some(Err(err)) => config.source_error(err.into()),
                        _ => None,
                    };
                    source.set(None);
                    let mut queue = conn.lock_queue();
                    if let Some(bytes) = held.take() {
                        queue.push(bytes, UNBOUNDED, Overflow::Wait);
                    }
                    if let Some(last) = last {
                        // The last event goes out even if the buffer is full.
                        queue.push(last.into_bytes(), UNBOUNDED, Overflow::Wait);
                    }
                    if queue.state == QueueState::Open {
                        queue.state = QueueState::Ended;
                    }
                    drop(queue);
                    conn.waker.wake();
                }
                Poll::Pending => {
                    if let Some(sleep) = watchdog.as_mut() {
                        if sleep.as_mut().poll(cx).is_ready() {
                            continue;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    })
    .await;
}

const UNBOUNDED: BufferLimits = BufferLimits::new(usize::MAX, usize::MAX);

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    fn drain(q: &mut Queue) -> Vec<u8> {
        let mut frame = BytesMut::new();
        let gap = |n: u64| crate::Event::new().comment(format!("gap {n}"));
        let gap: crate::layer::GapFn = Arc::new(gap);
        q.take_into(&mut frame, usize::MAX, usize::MAX, Some(&gap));
        frame.to_vec()
    }

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_marks_the_gap_first() {
        let mut q = Queue::new(Arc::default());
        let limits = BufferLimits::new(2, 1000);
        assert_eq!(q.push(ev(1), limits, Overflow::DropOldest), Pushed::Queued);
        assert_eq!(q.push(ev(2), limits, Overflow::DropOldest), Pushed::Queued);
        assert_eq!(
            q.push(ev(3), limits, Overflow::DropOldest),
            Pushed::Dropped(1)
        );
        assert_eq!(
            q.push(ev(4), limits, Overflow::DropOldest),
            Pushed::Dropped(1)
        );
        let mut want = b": gap 2\n\n".to_vec();
        want.extend([3; 10]);
        want.extend([4; 10]);
        assert_eq!(drain(&mut q), want);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn drop_newest_keeps_the_oldest_and_marks_the_gap_after_them() {
        let mut q = Queue::new(Arc::default());
        let limits = BufferLimits::new(10, 25);
        assert_eq!(q.push(ev(1), limits, Overflow::DropNewest), Pushed::Queued);
        assert_eq!(q.push(ev(2), limits, Overflow::DropNewest), Pushed::Queued);
        assert_eq!(
            q.push(ev(3), limits, Overflow::DropNewest),
            Pushed::Dropped(1)
        );
        assert_eq!(
            q.push(ev(4), limits, Overflow::DropNewest),
            Pushed::Dropped(1)
        );
        let mut want = vec![1; 10];
        want.extend([2; 10]);
        want.extend(b": gap 2\n\n");
        assert_eq!(drain(&mut q), want);
    }

    fn gauges(shared: &Arc<Shared>) -> (u64, u64) {
        let stats = crate::SseStats::new(shared.clone());
        (stats.queued_events(), stats.queued_bytes())
    }

    #[tokio::test]
    async fn the_gauges_follow_pushes_evictions_frames_and_gaps() {
        let shared = Arc::new(Shared::default());
        let mut q = Queue::new(shared.clone());
        let limits = BufferLimits::new(2, 1000);
        q.push(ev(1), limits, Overflow::DropOldest);
        assert_eq!(gauges(&shared), (1, 10));
        q.push(ev(2), limits, Overflow::DropOldest);
        q.push(ev(3), limits, Overflow::DropOldest);
        q.push(Bytes::from(vec![4; 30]), limits, Overflow::DropOldest);
        // Two evicted (a gap marker in front, not counted), two held.
        assert_eq!(gauges(&shared), (2, 40));
        assert_eq!(q.max_events, 2);
        let mut frame = BytesMut::new();
        assert_eq!(q.take_into(&mut frame, usize::MAX, 1, None), 1);
        assert_eq!(gauges(&shared), (1, 30));
        // An event larger than the whole buffer evicts everything and is dropped.
        let small = BufferLimits::new(2, 20);
        q.push(Bytes::from(vec![5; 21]), small, Overflow::DropOldest);
        assert_eq!(gauges(&shared), (0, 0));
        assert!(!q.is_empty(), "the gap marker stays");
        q.push(ev(6), small, Overflow::DropNewest);
        q.push(ev(7), small, Overflow::DropNewest);
        q.push(ev(8), small, Overflow::DropNewest);
        assert_eq!(gauges(&shared), (2, 20));
        drain(&mut q);
        assert_eq!(gauges(&shared), (0, 0));
        assert_eq!(q.max_events, 2);
    }

    #[tokio::test]
    async fn a_closed_or_dropped_queue_leaves_nothing_on_the_gauges() {
        let shared = Arc::new(Shared::default());
        let limits = BufferLimits::new(8, 1000);
        let mut a = Queue::new(shared.clone());
        let mut b = Queue::new(shared.clone());
        a.push(ev(1), limits, Overflow::DropOldest);
        a.push(ev(2), limits, Overflow::DropOldest);
        b.push(ev(3), limits, Overflow::DropNewest);
        assert_eq!(gauges(&shared), (3, 30));
        a.close();
        assert_eq!(gauges(&shared), (1, 10));
        // A pump still running after the stream closed adds nothing.
        assert_eq!(a.push(ev(4), limits, Overflow::DropOldest), Pushed::Closed);
        assert_eq!(a.push(ev(4), UNBOUNDED, Overflow::Wait), Pushed::Closed);
        assert_eq!(gauges(&shared), (1, 10));
        assert_eq!(a.state, QueueState::Closed);
        drop(b);
        assert_eq!(gauges(&shared), (0, 0));
        drop(a);
        assert_eq!(gauges(&shared), (0, 0));
    }

    #[tokio::test]
    async fn disconnect_frees_everything() {
        let mut q = Queue::new(Arc::default());
        let limits = BufferLimits::new(1, 1000);
        assert_eq!(q.push(ev(1), limits, Overflow::Disconnect), Pushed::Queued);
        assert_eq!(
            q.push(ev(2), limits, Overflow::Disconnect),
            Pushed::Disconnected
        );
        assert_eq!(q.state, QueueState::Disconnected(Error::overflow()));
        assert!(q.is_empty());
        assert_eq!(gauges(&q.shared), (0, 0));
        assert_eq!(q.push(ev(3), limits, Overflow::Disconnect), Pushed::Closed);
        assert_eq!(gauges(&q.shared), (0, 0));
    }
}
