//! The bounded queue of one pumped stream, and the rule for filling a frame.
//!
//! The queue owns its state: the pump pushes, the body takes frames and reports
//! heartbeats, and every change to what it holds moves the layer's queue gauges
//! ([`Counters::requeued`]) under the queue's lock, so they never drift.

use std::{collections::VecDeque, sync::Arc, task::Waker, time::Duration};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{BufferLimits, Overflow};
use crate::{error::SlowClientError, event::Event, stats::Counters};

/// No cap: for the last events of a source, which go out even if the buffer is full.
pub(crate) const UNBOUNDED: BufferLimits = BufferLimits::new(usize::MAX, usize::MAX);

/// Whether an event of `len` bytes goes into a frame that already holds `filled`
/// bytes, with frames capped at `max`: it does if it fits, and always into an empty
/// frame (an event larger than a frame goes out alone). Otherwise it starts the next.
#[inline]
pub(crate) fn fits_frame(filled: usize, len: usize, max: usize) -> bool {
    filled == 0 || filled + len <= max
}

#[derive(Debug)]
enum Entry {
    Event(Bytes),
    /// Events lost at this point of the stream.
    Gap(u64),
}

/// Where a pumped stream stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    /// The source ended (or was stopped); what is queued still goes out.
    Ended,
    /// The client was dropped as too slow, for this reason.
    Disconnected(SlowClientError),
    /// The stream is gone: the queue is empty and takes nothing more.
    Closed,
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

/// What the body found when it came for a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Take {
    /// The frame holds this many events (gap events included).
    Frame(usize),
    /// Nothing to send yet.
    Empty,
    /// The source ended and everything went out.
    Ended,
    /// The client was disconnected as too slow.
    Disconnected(SlowClientError),
}

/// The bounded queue of one stream (pump mode).
///
/// `events` and `bytes` count the `Entry::Event`s only (a gap is no event until it
/// goes out), and every change to them is passed on to the layer's queue gauges
/// under the queue's lock. What is left when the stream closes, or when the queue is
/// dropped, is taken off the gauges too.
#[derive(Debug)]
pub(crate) struct Queue {
    entries: VecDeque<Entry>,
    events: usize,
    bytes: usize,
    /// The most events this queue held at once: the span's `max_queued`.
    max_events: usize,
    /// The layer's counters, for the queue gauges.
    counters: Arc<Counters>,
    state: State,
    /// When the queue last became non-empty.
    since: Instant,
    /// When the body last handed a frame (or a heartbeat) to hyper.
    last_delivery: Instant,
    /// Events this stream dropped so far.
    dropped: u64,
    pump_waker: Option<Waker>,
}

impl Queue {
    pub(crate) fn new(counters: Arc<Counters>) -> Self {
        let now = Instant::now();
        Self {
            entries: VecDeque::new(),
            events: 0,
            bytes: 0,
            max_events: 0,
            counters,
            state: State::Open,
            since: now,
            last_delivery: now,
            dropped: 0,
            pump_waker: None,
        }
    }

    /// Whether the queue is at one of its caps.
    pub(crate) fn is_full(&self, limits: BufferLimits) -> bool {
        self.events >= limits.events() || self.bytes >= limits.bytes()
    }

    fn fits(&self, len: usize, limits: BufferLimits) -> bool {
        self.events < limits.events() && self.bytes + len <= limits.bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pump has nothing left to do: the client is gone, or the source
    /// ended and either everything went out or no stall watchdog is watching.
    pub(crate) fn pump_done(&self, watching: bool) -> bool {
        match self.state {
            State::Disconnected(_) | State::Closed => true,
            State::Ended => self.is_empty() || !watching,
            State::Open => false,
        }
    }

    /// Whether the source is done (only the client is watched now).
    pub(crate) fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The source ended or was stopped: what is queued still goes out, then the end.
    pub(crate) fn end(&mut self) {
        if self.state == State::Open {
            self.state = State::Ended;
        }
    }

    /// The source's last events (`held`, waiting for room, and `last`, the
    /// `on_error` event) go in past the caps, then the queue ends.
    pub(crate) fn finish(&mut self, held: Option<Bytes>, last: Option<Bytes>) {
        for bytes in held.into_iter().chain(last) {
            self.push(bytes, UNBOUNDED, Overflow::Wait);
        }
        self.end();
    }

    /// Under `Wait`: queues `bytes` if there is room (or the queue is empty: an
    /// event larger than the whole buffer goes alone), or gives it back.
    pub(crate) fn push_if_room(
        &mut self,
        bytes: Bytes,
        limits: BufferLimits,
    ) -> Result<Pushed, Bytes> {
        if self.is_empty() || self.fits(bytes.len(), limits) {
            Ok(self.push(bytes, limits, Overflow::Wait))
        } else {
            Err(bytes)
        }
    }

    /// Queues `bytes` under `policy`; never grows past `limits`.
    pub(crate) fn push(&mut self, bytes: Bytes, limits: BufferLimits, policy: Overflow) -> Pushed {
        if matches!(self.state, State::Closed | State::Disconnected(_)) {
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
        self.counters.requeued(before, self.held());
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
        self.counters.requeued(before, (0, 0));
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
                    dropped = self.evict_for(len, limits);
                    if !self.fits(len, limits) {
                        // Larger than the whole buffer: it is dropped too.
                        self.mark_gap_front(1);
                        return Pushed::Dropped(dropped + 1);
                    }
                }
                Overflow::Disconnect => {
                    self.disconnect(SlowClientError::overflow());
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

    /// Drops the oldest events until `len` more bytes fit (or nothing is left), and
    /// marks the gap in front; returns how many were dropped. Gaps already marked in
    /// front move forward with the new one.
    fn evict_for(&mut self, len: usize, limits: BufferLimits) -> u64 {
        let (mut carried, mut dropped) = (0, 0);
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
        self.mark_gap_front(carried + dropped);
        dropped
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

    /// Ends the stream as too slow and frees everything it held.
    pub(crate) fn disconnect(&mut self, why: SlowClientError) {
        self.clear();
        self.state = State::Disconnected(why);
    }

    /// The stream is gone: frees what is left and refuses any later push. Returns the
    /// events this stream dropped and the most it held at once, for its span.
    pub(crate) fn close(&mut self) -> (u64, usize) {
        self.clear();
        self.state = State::Closed;
        (self.dropped, self.max_events)
    }

    /// The body's turn: moves events into `frame` (up to `max_bytes` and
    /// `max_events`; a gap becomes `gap(n)`'s event, or nothing), and wakes the pump.
    pub(crate) fn take_frame(
        &mut self,
        frame: &mut BytesMut,
        max_bytes: usize,
        max_events: usize,
        gap: Option<&dyn Fn(u64) -> Event>,
    ) -> Take {
        if let State::Disconnected(why) = &self.state {
            return Take::Disconnected(why.clone());
        }
        let taken = self.take_into(frame, max_bytes, max_events, gap);
        if !frame.is_empty() {
            self.last_delivery = Instant::now();
            Take::Frame(taken)
        } else if self.state == State::Ended && self.is_empty() {
            Take::Ended
        } else {
            Take::Empty
        }
    }

    fn take_into(
        &mut self,
        frame: &mut BytesMut,
        max_bytes: usize,
        max_events: usize,
        gap: Option<&dyn Fn(u64) -> Event>,
    ) -> usize {
        let before = self.held();
        let mut taken = 0;
        while taken < max_events && frame.len() < max_bytes {
            match self.entries.pop_front() {
                Some(Entry::Event(bytes)) if !fits_frame(frame.len(), bytes.len(), max_bytes) => {
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
        self.counters.requeued(before, self.held());
        if let Some(waker) = self.pump_waker.take() {
            waker.wake();
        }
        taken
    }

    /// A heartbeat went out at `at`: the client is still reading.
    pub(crate) fn delivered(&mut self, at: Instant) {
        self.last_delivery = at;
    }

    /// The pump waits for room (or for the client): the next frame taken wakes it.
    pub(crate) fn park_pump(&mut self, waker: &Waker) {
        self.pump_waker = Some(waker.clone());
    }

    /// The instant at which the client counts as stalled: `timeout` after the later of
    /// the last delivery and the moment the queue last became non-empty, if it has
    /// anything to receive; else `timeout` after the heartbeat that is due next.
    pub(crate) fn stall_deadline(
        &self,
        timeout: Duration,
        heartbeat: Option<Duration>,
    ) -> Option<Instant> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: u8) -> Bytes {
        Bytes::from(vec![n; 10])
    }

    fn drain(q: &mut Queue) -> Vec<u8> {
        let mut frame = BytesMut::new();
        let gap = |n: u64| crate::Event::new().comment(format!("gap {n}"));
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

    fn gauges(counters: &Arc<Counters>) -> (u64, u64) {
        let stats = crate::SseStats::new(counters.clone());
        (stats.queued_events(), stats.queued_bytes())
    }

    #[tokio::test]
    async fn the_gauges_follow_pushes_evictions_frames_and_gaps() {
        let shared = Arc::new(Counters::default());
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
        let shared = Arc::new(Counters::default());
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
        assert_eq!(a.state, State::Closed);
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
        assert_eq!(q.state, State::Disconnected(SlowClientError::overflow()));
        assert!(q.is_empty());
        assert_eq!(gauges(&q.counters), (0, 0));
        assert_eq!(q.push(ev(3), limits, Overflow::Disconnect), Pushed::Closed);
        assert_eq!(gauges(&q.counters), (0, 0));
    }
}
