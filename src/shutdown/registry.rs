//! The open streams of a layer, as shutdown sees them: a waker each.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex,
};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use tokio::sync::Notify;

use crate::sync::{lock, Slab};

/// The wakers of a layer's open streams, the shutdown flag and the last event that
/// shutdown sends. A stream registers its waker when it opens and checks
/// [`is_shutting_down`](Self::is_shutting_down) each time it is polled; shutdown sets
/// the flag and wakes every registered stream.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    shutting_down: AtomicBool,
    last_event: Mutex<Option<Bytes>>,
    streams: Mutex<Slab<Arc<AtomicWaker>>>,
    closed: Notify,
}

impl Registry {
    /// Registers an open stream by the waker that wakes its body; returns its key.
    pub(crate) fn register(&self, waker: Arc<AtomicWaker>) -> usize {
        lock(&self.streams).insert(waker)
    }

    /// The stream of `key` ended.
    pub(crate) fn unregister(&self, key: usize) {
        let mut streams = lock(&self.streams);
        streams.remove(key);
        let empty = streams.len() == 0;
        drop(streams);
        if empty {
            self.closed.notify_waiters();
        }
    }

    /// How many streams are open.
    pub(crate) fn open(&self) -> usize {
        lock(&self.streams).len()
    }

    #[inline]
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The event each stream sends before it ends for shutdown, if any.
    pub(crate) fn last_event(&self) -> Option<Bytes> {
        lock(&self.last_event).clone()
    }

    /// Sets the flag (after `last`) and wakes every open stream.
    pub(crate) fn shutdown(&self, last: Option<Bytes>) {
        *lock(&self.last_event) = last;
        self.shutting_down.store(true, Ordering::Release);
        let wakers: Vec<Arc<AtomicWaker>> = lock(&self.streams).iter().cloned().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves once no stream is open.
    pub(crate) async fn wait_closed(&self) {
        loop {
            let mut notified = std::pin::pin!(self.closed.notified());
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}
