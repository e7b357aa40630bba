//! HTTP/1.1 or h2c on a plain TCP connection, told apart by peeking at its first
//! bytes, then served by hyper's own connection for that protocol.
//!
//! hyper-util's `auto` builder reads the first bytes itself and hands them back to
//! hyper through a rewinding wrapper: hyper's first read then returns those 24 bytes
//! only, and its read buffer, which it sizes to exactly 8 KiB, is reallocated to 16 KiB
//! for the rest of the request head, for the connection's lifetime. Peeking
//! consumes nothing, so hyper reads the head into one 8 KiB buffer. Each connection is
//! boxed on its own, so an HTTP/1.1 connection's task does not carry the size of an
//! HTTP/2 one.

use std::{io, time::Duration};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::{net::TcpStream, time::Instant};

use super::settings::Settings;

/// What a client sends first on an h2c connection (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How often a connection that sent part of the preface is looked at again.
const PARTIAL_RETRY: Duration = Duration::from_millis(5);

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    H2c,
}

/// hyper's builder for each protocol, with the server's settings.
#[derive(Clone)]
pub(crate) struct Builders {
    pub(crate) h1: http1::Builder,
    pub(crate) h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    pub(crate) fn new(settings: &Settings) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(settings.request_timeout)
            .max_buf_size(settings.http1_max_buf_size);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_send_buf_size(settings.http2_max_send_buf_size)
            .max_concurrent_streams(settings.http2_max_concurrent_streams);
        Self { h1, h2 }
    }
}

/// The protocol of `tcp` from its first bytes, without reading them: `None` if the
/// client closed before sending any, or did not complete the h2c preface before
/// `deadline`.
pub(crate) async fn detect(tcp: &TcpStream, deadline: Instant) -> io::Result<Option<Protocol>> {
    let mut first = [0u8; H2_PREFACE.len()];
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
            Ok(n) => n?,
            Err(_) => return Ok(None),
        };
        match classify(&first[..n]) {
            Some(protocol) => return Ok(Some(protocol)),
            None if n == 0 => return Ok(None),
            // A part of the preface: the rest is on its way (peeking again at once
            // would spin, the socket stays readable).
            None if Instant::now() + PARTIAL_RETRY >= deadline => return Ok(None),
            None => tokio::time::sleep(PARTIAL_RETRY).await,
        }
    }
}

/// `Some` once `first` tells: the whole preface (h2c) or a byte that differs from it
/// (HTTP/1.1); `None` while it is empty or a part of the preface.
fn classify(first: &[u8]) -> Option<Protocol> {
    if first.is_empty() {
        None
    } else if !H2_PREFACE.starts_with(first) {
        Some(Protocol::Http1)
    } else if first.len() == H2_PREFACE.len() {
        Some(Protocol::H2c)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_http1_from_h2c_by_the_first_bytes() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"G"), Some(Protocol::Http1));
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Protocol::Http1));
        assert_eq!(classify(H2_PREFACE), Some(Protocol::H2c));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(b""), None);
    }

    #[tokio::test]
    async fn peeks_without_consuming() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let later = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
            client
        };
        let (detected, _client) = tokio::join!(detect(&server, deadline), later);
        assert_eq!(detected.unwrap(), Some(Protocol::H2c));
        let mut read = [0u8; 24];
        server.read_exact(&mut read).await.unwrap();
        assert_eq!(&read[..], H2_PREFACE);
    }
}
