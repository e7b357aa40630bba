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
//! `Server`); a body without one is never gated, nor is one whose connection's
//! transport did not arm the gate (HTTP/2, where hyper polls each stream's body on
//! its own and flushes for all of them).

use std::{
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;

/// No transport reports to the gate (an HTTP/2 connection): it never closes.
const UNARMED: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

/// One connection's gate; clones share it.
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Arc<Inner>);

struct Inner {
    state: AtomicU8,
    /// The body waiting for the gate to open.
    waker: AtomicWaker,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(UNARMED),
            waker: AtomicWaker::new(),
        }
    }
}

impl WriteGate {
    /// A gate that stays open until a transport arms it.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A transport that opens the gate once hyper has flushed reports to it.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn arm(&self) {
        self.0.state.store(OPEN, Ordering::Release);
    }

    /// A frame was handed to hyper. An unarmed gate stays open.
    pub(crate) fn close(&self) {
        let _ = self
            .0
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The transport has written everything it was given: wakes a waiting body.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn open(&self) {
        let opened =
            self.0
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire);
        if opened.is_ok() {
            self.0.waker.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.0.state.load(Ordering::Acquire) == CLOSED
    }

    /// `Ready` while the gate is open; otherwise `Pending`, woken when it opens.
    #[inline]
    pub(crate) fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.is_closed() {
            return Poll::Ready(());
        }
        self.0.waker.register(cx.waker());
        // Opened meanwhile: its wake may have missed the registration.
        if self.is_closed() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGate")
            .field("closed", &self.is_closed())
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
        // Unarmed (no transport reports to it): never closed.
        gate.close();
        assert!(gate.poll_open(&mut cx).is_ready());
        gate.arm();
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
