//! Graceful shutdown of open streams.
//!
//! hyper's graceful shutdown waits for every response body to end, and an SSE body
//! never ends by itself. [`ShutdownHandle::shutdown`] ends every open stream of the
//! layer: each sends the optional last event (typically a `retry:` hint telling the
//! browser when to come back) and then ends cleanly, so the server's own graceful
//! shutdown can finish. Streams that open afterwards end at once the same way.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_sse::{Event, SseLayer};
//!
//! # async fn run() {
//! let layer = SseLayer::new();
//! let shutdown = layer.shutdown_handle();
//! // ... serve with `layer` ...
//! tokio::signal::ctrl_c().await.ok();
//! shutdown.shutdown_with(Event::new().retry(Duration::from_secs(5)));
//! shutdown.wait_closed().await; // every stream has ended
//! # }
//! ```

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::{body::Conn, stats::Counters, Event};

/// State shared by a layer, its clones, its services and their streams.
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) stats: Counters,
    shutting_down: AtomicBool,
    last_event: Mutex<Option<Bytes>>,
    conns: Mutex<Slab>,
    closed: Notify,
    /// Shared heartbeat tickers, by interval (`Heartbeat::shared_ticker`). Held by
    /// their streams: a ticker stops with its last stream, so intervals chosen per
    /// request (by clients, even) cannot pile up tasks that tick forever.
    tickers: Mutex<Vec<(std::time::Duration, Weak<crate::heartbeat::Ticker>)>>,
}

/// Open streams, by slot; a freed slot is reused.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Arc<Conn>>>,
    free: Vec<usize>,
    len: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn register(&self, conn: Arc<Conn>) -> usize {
        self.stats.opened();
        let mut slab = lock(&self.conns);
        slab.len += 1;
        if let Some(key) = slab.free.pop() {
            slab.slots[key] = Some(conn);
            key
        } else {
            slab.slots.push(Some(conn));
            slab.slots.len() - 1
        }
    }

    pub(crate) fn unregister(&self, key: usize) {
        self.stats.closed();
        let mut slab = lock(&self.conns);
        if let Some(slot) = slab.slots.get_mut(key) {
            if slot.take().is_some() {
                slab.free.push(key);
                slab.len -= 1;
            }
        }
        let empty = slab.len == 0;
        drop(slab);
        if empty {
            self.closed.notify_waiters();
        }
    }

    /// The ticker of this layer for `interval`, started on first use.
    pub(crate) fn ticker(&self, interval: std::time::Duration) -> Arc<crate::heartbeat::Ticker> {
        let mut tickers = lock(&self.tickers);
        let mut found = None;
        // Forget the tickers no stream holds any more and those whose runtime shut
        // down (a layer used from a new runtime gets a new one).
        tickers.retain(|(i, weak)| match weak.upgrade() {
            Some(ticker) if ticker.is_alive() => {
                if *i == interval {
                    found = Some(ticker);
                }
                true
            }
            _ => false,
        });
        if let Some(ticker) = found {
            return ticker;
        }
        let ticker = crate::heartbeat::Ticker::start(interval);
        tickers.push((interval, Arc::downgrade(&ticker)));
        ticker
    }

    #[inline]
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub(crate) fn last_event(&self) -> Option<Bytes> {
        lock(&self.last_event).clone()
    }

    fn shutdown(&self, last: Option<Bytes>) {
        *lock(&self.last_event) = last;
        self.shutting_down.store(true, Ordering::Release);
        let conns: Vec<Arc<Conn>> = lock(&self.conns).slots.iter().flatten().cloned().collect();
        for conn in conns {
            conn.waker.wake();
        }
    }
}

/// Ends the open streams of an [`SseLayer`](crate::SseLayer); see the
/// [module docs](self). Cheap to clone.
///
/// ```
/// let layer = tower_sse::SseLayer::new();
/// let handle = layer.shutdown_handle();
/// assert!(!handle.is_shutdown());
/// assert_eq!(handle.open_streams(), 0);
/// ```
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Ends every open stream, and every stream that opens later, after the bytes it
    /// has already queued for the socket.
    pub fn shutdown(&self) {
        self.shared.shutdown(None);
    }

    /// Like [`shutdown`](Self::shutdown), but each stream sends `last` before it ends
    /// (for instance `Event::new().retry(…)`, telling browsers when to reconnect).
    pub fn shutdown_with(&self, last: Event) {
        self.shared.shutdown(Some(last.encode().into_bytes()));
    }

    /// Whether shutdown was triggered.
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// The number of streams still open.
    pub fn open_streams(&self) -> usize {
        lock(&self.shared.conns).len
    }

    /// Resolves once no stream is open.
    pub async fn wait_closed(&self) {
        loop {
            let mut notified = std::pin::pin!(self.shared.closed.notified());
            notified.as_mut().enable();
            if self.open_streams() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("is_shutdown", &self.is_shutdown())
            .field("open_streams", &self.open_streams())
            .finish()
    }
}
