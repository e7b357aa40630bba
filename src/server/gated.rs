//! The transport of an HTTP/1 connection, wired to the connection's [`WriteGate`]: it
//! arms the gate, and a flush that completes opens it. On Linux, over plain TCP with
//! `TCP_NOTSENT_LOWAT`, it also caps the next frame at what the socket takes at once
//! (see `room`) before it opens the gate.
//!
//! An SSE body closes the gate with every frame it hands hyper, and hyper flushes its
//! transport only once it has written out everything it holds, so between the two the
//! body makes no frame (see `crate::gate`): hyper never holds the rest of one frame and
//! the whole of the next.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::gate::WriteGate;

/// `io`, with its flushes reported to `gate` (none without one).
#[derive(Debug)]
pub(crate) struct GatedIo<T> {
    io: T,
    gate: Option<WriteGate>,
    /// `io`'s socket and its `TCP_NOTSENT_LOWAT`, to cap frames by (see `room`).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    room: Option<(std::os::fd::RawFd, u32)>,
}

impl<T> GatedIo<T> {
    /// Arms `gate`: from now on it closes and opens with this transport.
    pub(crate) fn new(io: T, gate: Option<WriteGate>) -> Self {
        if let Some(gate) = &gate {
            gate.arm();
        }
        Self {
            io,
            gate,
            #[cfg(any(target_os = "linux", target_os = "android"))]
            room: None,
        }
    }

    /// Before it opens the gate, caps the next frame by the socket's room.
    #[inline]
    fn cap_next_frame(&self, gate: &WriteGate) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let (Some((fd, lowat)), Some(full)) = (self.room, gate.closed_by_full_frame()) {
            gate.set_frame_cap(super::room::next_frame_cap(fd, lowat, full));
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = gate;
    }
}

impl GatedIo<tokio::net::TcpStream> {
    /// Caps each frame by what the socket takes at once, with `TCP_NOTSENT_LOWAT` at
    /// `lowat` (Linux and Android; without a low-water mark the kernel's send buffer,
    /// not the mark, bounds what it holds unsent, and frames are not capped).
    pub(crate) fn sized_by_socket(self, lowat: Option<u32>) -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let (Some(_), Some(lowat)) = (&self.gate, lowat) {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&self.io);
            return Self {
                room: Some((fd, lowat)),
                ..self
            };
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = lowat;
        self
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        if let (Some(gate), Poll::Ready(Ok(()))) = (&self.gate, &polled) {
            self.cap_next_frame(gate);
            gate.open();
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };

    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::{Event, SseLayer, SseResponse};

    /// What the kernel would hold: the client's end of an in-memory pipe this big.
    const PIPE: usize = 4096;
    const FRAME: usize = 1024;
    const EVENT: usize = 108;

    /// Serves an endless stream of `EVENT`-byte events in `FRAME`-byte frames over a
    /// pipe whose client sends a request and never reads; returns the bytes of events
    /// the source made once it stopped being polled.
    async fn made_for_a_stalled_reader(gate: Option<WriteGate>) -> usize {
        let made = Arc::new(AtomicUsize::new(0));
        let count = made.clone();
        let sse = SseLayer::new().max_frame_bytes(FRAME).no_heartbeat();
        let inner = tower::service_fn(move |_req: http::Request<hyper::body::Incoming>| {
            let count = count.clone();
            let events = futures_util::stream::repeat_with(move || {
                count.fetch_add(EVENT, Ordering::Relaxed);
                Ok::<_, Infallible>(Event::new().data("x".repeat(EVENT - 8)))
            });
            std::future::ready(Ok::<_, Infallible>(SseResponse::new(events)))
        });
        let service = tower_layer::Layer::layer(&sse, inner);
        let request_gate = gate.clone();
        let hyper_service = hyper::service::service_fn(move |mut req| {
            if let Some(gate) = &request_gate {
                req.extensions_mut().insert(gate.clone());
            }
            service.clone().oneshot(req)
        });
        let (mut client, server) = tokio::io::duplex(PIPE);
        let io = TokioIo::new(GatedIo::new(server, gate));
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(8192)
            .serve_connection(io, hyper_service);
        let conn = tokio::spawn(conn);
        client
            .write_all(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        // Until the source has not been polled for 10 looks in a row (5 s at most).
        let (mut last, mut same) = (usize::MAX, 0);
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = made.load(Ordering::Relaxed);
            same = if now == last { same + 1 } else { 0 };
            last = now;
            if same == 10 {
                break;
            }
        }
        assert_eq!(same, 10, "the source never stopped: {last} bytes made");
        conn.abort();
        last
    }

    #[tokio::test]
    async fn a_stalled_reader_holds_one_frame_in_hyper() {
        let gated = made_for_a_stalled_reader(Some(WriteGate::new())).await;
        let ungated = made_for_a_stalled_reader(None).await;
        // The pipe, the frame hyper could not write, and the event that did not fit
        // in it (the response head takes part of the pipe).
        assert!(gated <= PIPE + FRAME + EVENT, "gated: {gated} bytes made");
        // Without the gate hyper takes more frames while it holds less than its
        // buffer limit, and the body builds one more (here 8,856 bytes against 4,968).
        assert!(
            ungated >= gated + 2 * FRAME,
            "ungated: {ungated}, gated: {gated}"
        );
    }
}
