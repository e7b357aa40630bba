//! Counters shared by every stream of a layer.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
};

use crate::shutdown::Shared;

/// The counters behind [`SseStats`]. Streams add to them once per body frame, not
/// once per event, so busy streams on different cores rarely touch the same line.
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
    rejected: AtomicU64,
    expired: AtomicU64,
    too_large: AtomicU64,
    /// Streams given a `max_lifetime` so far: numbers them for their jitter.
    lifetimes: AtomicU64,
}

impl Counters {
    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Relaxed);
        self.opened.fetch_add(1, Relaxed);
    }
    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Relaxed);
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
    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }
    pub(crate) fn expired(&self) {
        self.expired.fetch_add(1, Relaxed);
    }
    pub(crate) fn too_large(&self) {
        self.too_large.fetch_add(1, Relaxed);
    }
    /// A number for a stream that gets a lifetime: 0, 1, 2, … per layer.
    pub(crate) fn next_lifetime(&self) -> u64 {
        self.lifetimes.fetch_add(1, Relaxed)
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
    shared: Arc<Shared>,
}

impl SseStats {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn get(&self, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        f(&self.shared.stats).load(Relaxed)
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
    /// Streams refused with `503` by [`StreamLimit::reject`](crate::StreamLimit::reject).
    pub fn streams_rejected(&self) -> u64 {
        self.get(|c| &c.rejected)
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
            .field("streams_rejected", &self.streams_rejected())
            .field("streams_expired", &self.streams_expired())
            .field("events_too_large", &self.events_too_large())
            .finish()
    }
}
