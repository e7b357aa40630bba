//! What one open stream holds of its layer, released when the stream's body drops.

use std::sync::{Arc, Mutex};

use atomic_waker::AtomicWaker;
use tokio::task::AbortHandle;
use tracing::Span;

use super::span::{self, Totals};
use crate::{buffer::Queue, config::Config, limit::Permit, state::LayerState, sync::lock};

/// One stream's place in its layer: registered (and counted as open) while it
/// lives; when dropped it stops its pump, empties its queue, unregisters, releases
/// its limits' permits and records its span.
pub(super) struct Guard {
    pub(super) config: Arc<Config>,
    pub(super) state: Arc<LayerState>,
    /// Wakes the body: registered with shutdown, woken by the pump.
    pub(super) waker: Arc<AtomicWaker>,
    key: usize,
    /// The queue of a pumped stream.
    pub(super) queue: Option<Arc<Mutex<Queue>>>,
    /// The pump task, until it is stopped.
    pub(super) pump: Option<AbortHandle>,
    /// Its places under the `StreamLimit` and `PerKeyLimit`, released when the stream ends.
    _permit: Permit,
    totals: Totals,
    pub(super) span: Span,
    /// tokio's clock, so that a paused clock (tests) measures lifetimes too.
    opened: tokio::time::Instant,
}

impl Guard {
    /// Registers a new stream with its layer.
    pub(super) fn open(
        config: Arc<Config>,
        state: Arc<LayerState>,
        queue: Option<Arc<Mutex<Queue>>>,
        span: Span,
        permit: Permit,
    ) -> Self {
        let waker = Arc::new(AtomicWaker::new());
        state.counters.opened();
        let key = state.streams.register(waker.clone());
        Self {
            config,
            state,
            waker,
            key,
            queue,
            pump: None,
            _permit: permit,
            totals: Totals::default(),
            span,
            opened: tokio::time::Instant::now(),
        }
    }

    /// `events` events in `bytes` bytes went to hyper.
    #[inline]
    pub(super) fn sent(&mut self, events: u64, bytes: u64) {
        self.totals.events += events;
        self.totals.bytes += bytes;
        self.state.counters.sent(events, bytes);
    }

    /// A heartbeat of `bytes` bytes went to hyper.
    pub(super) fn heartbeat_sent(&mut self, bytes: u64) {
        self.totals.heartbeats += 1;
        self.totals.bytes += bytes;
        self.state.counters.heartbeat(bytes);
    }

    /// Stops the pump, if any; what it queued still goes out.
    pub(super) fn stop_pump(&mut self) {
        if let (Some(pump), Some(queue)) = (self.pump.take(), &self.queue) {
            pump.abort();
            lock(queue).end();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(pump) = self.pump.take() {
            pump.abort();
        }
        // What the queue still holds leaves the layer's gauges before the stream
        // counts as closed; the pump, if it is still running, can add nothing more.
        let (dropped, max_queued) = match &self.queue {
            Some(queue) => lock(queue).close(),
            None => (0, 0),
        };
        let lifetime = self.opened.elapsed();
        self.state.counters.closed(lifetime);
        self.state.streams.unregister(self.key);
        let closed = span::Closed {
            totals: self.totals,
            dropped,
            max_queued: max_queued as u64,
            lifetime,
        };
        span::closed(&self.span, &closed);
    }
}
