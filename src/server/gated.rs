//! The transport of an HTTP/1 connection, wired to the connection's [`WriteGate`]:
//! a write that returns `Pending`, or takes less than it was offered, closes it; a
//! flush that completes opens it.
//!
//! hyper flushes its transport only once it has written out everything it holds, so
//! between the two an SSE body on this connection makes no frame (see `crate::gate`):
//! hyper never holds the rest of one frame and the whole of the next.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::gate::WriteGate;

/// `io`, with its writes reported to `gate` (none without one).
#[derive(Debug)]
pub(crate) struct GatedIo<T> {
    io: T,
    gate: Option<WriteGate>,
}

impl<T> GatedIo<T> {
    pub(crate) fn new(io: T, gate: Option<WriteGate>) -> Self {
        Self { io, gate }
    }

    /// Closes the gate unless the transport took all of the `len` bytes offered.
    fn wrote(&self, polled: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        let short = match &polled {
            Poll::Ready(Ok(n)) => *n < len,
            Poll::Ready(Err(_)) => false,
            Poll::Pending => true,
        };
        if let (Some(gate), true) = (&self.gate, short) {
            gate.close();
        }
        polled
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GatedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GatedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(polled, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(polled, bufs.iter().map(|buf| buf.len()).sum())
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        if let (Some(gate), Poll::Ready(Ok(()))) = (&self.gate, &polled) {
            gate.open();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
