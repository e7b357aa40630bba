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
//! The transport may also cap the next frame (`frame_cap`): on Linux it measures, when
//! a full frame was written, how much more the socket takes at once (`server::room`),
//! so that a busy stream's frames grow past what a stalled reader may hold only while
//! the kernel takes them whole.
//!
//! The gate travels in the request's extensions (put there by the `server` feature's
//! `Server`); a body without one is never gated, nor is one whose connection's
//! transport did not arm the gate (HTTP/2, where hyper polls each stream's body on
//! its own and flushes for all of them).

use std::{
    sync::{
        atomic::{AtomicU8, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use atomic_waker::AtomicWaker;

/// No transport reports to the gate (an HTTP/2 connection): it never closes.
const UNARMED: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;
/// Closed by a frame that filled its cap: the stream is busy.
const CLOSED_FULL: u8 = 3;

/// One connection's gate; clones share it.
#[derive(Clone, Default)]
pub(crate) struct WriteGate(Arc<Inner>);

struct Inner {
    state: AtomicU8,
    /// The body waiting for the gate to open.
    waker: AtomicWaker,
    /// The next frame's cap in bytes, set by the transport before it opens the gate.
    frame_cap: AtomicUsize,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            state: AtomicU8::new(UNARMED),
            waker: AtomicWaker::new(),
            frame_cap: AtomicUsize::new(usize::MAX),
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

    /// A frame was handed to hyper; `full` if it filled its cap. An unarmed gate stays
    /// open.
    pub(crate) fn close(&self, full: bool) {
        let closed = if full { CLOSED_FULL } else { CLOSED };
        let _ = self
            .0
            .state
            .compare_exchange(OPEN, closed, Ordering::AcqRel, Ordering::Acquire);
    }

    /// While the gate is closed, whether the frame that closed it filled its cap;
    /// `None` while it is open.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn closed_by_full_frame(&self) -> Option<bool> {
        match self.0.state.load(Ordering::Acquire) {
            CLOSED => Some(false),
            CLOSED_FULL => Some(true),
            _ => None,
        }
    }

    /// Caps the next frame at `bytes`; the transport sets it before it opens the gate.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn set_frame_cap(&self, bytes: usize) {
        self.0.frame_cap.store(bytes, Ordering::Relaxed);
    }

    /// The next frame's cap: `usize::MAX` unless the transport set one.
    #[inline]
    pub(crate) fn frame_cap(&self) -> usize {
        self.0.frame_cap.load(Ordering::Relaxed)
    }

    /// The transport has written everything it was given: wakes a waiting body.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn open(&self) {
        let state = &self.0.state;
        let opened = state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
            (now >= CLOSED).then_some(OPEN)
        });
        if opened.is_ok() {
            self.0.waker.wake();
        }
    }

    fn is_closed(&self) -> bool {
        self.0.state.load(Ordering::Acquire) >= CLOSED
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
        gate.close(true);
        assert!(gate.poll_open(&mut cx).is_ready());
        assert_eq!(gate.closed_by_full_frame(), None);
        gate.arm();
        gate.close(false);
        assert_eq!(gate.closed_by_full_frame(), Some(false));
        assert!(gate.poll_open(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(gate.poll_open(&mut cx).is_ready());
        // Opening an open gate wakes nobody.
        gate.open();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // A full frame closes it too, and says so until it opens.
        gate.close(true);
        assert_eq!(gate.closed_by_full_frame(), Some(true));
        assert!(gate.poll_open(&mut cx).is_pending());
        gate.open();
        assert_eq!(gate.closed_by_full_frame(), None);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        assert!(gate.poll_open(&mut cx).is_ready());
    }

    #[test]
    fn the_frame_cap_is_unbounded_until_the_transport_sets_one() {
        let gate = WriteGate::new();
        assert_eq!(gate.frame_cap(), usize::MAX);
        let transport = gate.clone();
        transport.set_frame_cap(4096);
        assert_eq!(gate.frame_cap(), 4096);
    }
}
