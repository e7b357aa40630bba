//! [`WriteGate`]: one frame at a time in hyper's write queue.
//!
//! hyper's HTTP/1 connection takes body frames while its write queue holds less than
//! its buffer limit, whether or not the socket took the last write; for a client that
//! stopped reading, that is the frame the socket refused, the next one, and the one
//! being built in the body. With a gate, a body that hands hyper a frame closes the
//! gate, and the server's transport opens it once hyper has written out everything it
//! holds (hyper flushes the transport only then; see `server::gated`). While it is
//! closed the body makes no frame, so hyper holds at most one frame of an SSE stream:
//! a stalled reader keeps that one frame in the server and nothing more
//! (RELIABILITY.md, "Memory per connection"). A reader that keeps up loses nothing:
//! hyper writes each frame with one `writev` either way.
//!
//! The gate travels in the request's extensions (put there by the `server` feature's
//! `Server` for HTTP/1 connections); a body without one is never gated.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;

/// One connection's gate; clones share it.
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Arc<Inner>);

#[derive(Default)]
struct Inner {
    closed: AtomicBool,
    /// The body waiting for the gate to open.
    waker: AtomicWaker,
}

impl WriteGate {
    /// An open gate.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A frame was handed to hyper, or the transport refused a write.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn close(&self) {
        self.0.closed.store(true, Ordering::Release);
    }

    /// The transport has written everything it was given: wakes a waiting body.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn open(&self) {
        if self.0.closed.swap(false, Ordering::AcqRel) {
            self.0.waker.wake();
        }
    }

    /// `Ready` while the gate is open; otherwise `Pending`, woken when it opens.
    #[inline]
    pub(crate) fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.0.closed.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        // Opened meanwhile: its wake may have missed the registration.
        if self.0.closed.load(Ordering::Acquire) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGate")
            .field("closed", &self.0.closed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Wake, Waker},
    };

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_closed_gate_waits_and_wakes_once_opened() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let gate = WriteGate::new();
        assert!(gate.poll_open(&mut cx).is_ready());
        gate.close();
        assert!(gate.poll_open(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(gate.poll_open(&mut cx).is_ready());
        // Opening an open gate wakes nobody.
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
