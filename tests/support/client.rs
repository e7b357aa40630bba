//! HTTP clients: reqwest ones that ignore the environment's proxy settings, and a raw
//! TCP HTTP/1.1 client that sees the exact bytes on the wire (chunks de-chunked by
//! hand).

use std::net::SocketAddr;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use super::within;

/// A reqwest client that ignores any proxy settings of the environment.
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// An HTTP/2 (prior knowledge, h2c) reqwest client.
pub(crate) fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// A response head read off the wire.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// The value of header `name` (case-insensitive), if present once or more.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One unit of an HTTP/1.1 chunked body as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// A data chunk (hyper writes one per body frame).
    Data(Vec<u8>),
    /// The terminating zero-size chunk: the body ended cleanly.
    End,
    /// The connection closed (or was reset) before the terminating chunk.
    Closed,
}

/// A raw TCP HTTP/1.1 client: writes requests by hand and reads the exact bytes.
pub(crate) struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl RawClient {
    /// Connects to `addr`.
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
        Self::from_stream(tcp)
    }

    /// Connects with a small `SO_RCVBUF` (set before connecting, so the TCP window
    /// is small too): a client that stops reading soon fills up.
    pub(crate) async fn connect_with_recv_buffer(addr: SocketAddr, size: u32) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(size).unwrap();
        let tcp = within("connect", socket.connect(addr)).await.unwrap();
        Self::from_stream(tcp)
    }

    fn from_stream(tcp: TcpStream) -> Self {
        Self {
            tcp,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Sends `GET path` with the given extra header lines.
    pub(crate) async fn get(&mut self, path: &str, headers: &[(&str, &str)]) {
        let mut req =
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\naccept: text/event-stream\r\n");
        for (name, value) in headers {
            req.push_str(&format!("{name}: {value}\r\n"));
        }
        req.push_str("\r\n");
        self.send(req.as_bytes()).await;
    }

    /// Writes raw bytes.
    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        within("write request", self.tcp.write_all(bytes))
            .await
            .unwrap();
    }

    /// Reads more bytes into the buffer; `false` at end of stream (or reset).
    async fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        match within("read from socket", self.tcp.read(&mut chunk)).await {
            Ok(0) | Err(_) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Bytes read from the socket and not yet handed out.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The client's own address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap()
    }

    /// Reads whatever bytes come next (buffered ones first); 0 at the end of stream.
    pub(crate) async fn read_raw(&mut self, out: &mut [u8]) -> usize {
        if self.buf.is_empty() && !self.fill().await {
            return 0;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        n
    }

    /// Reads up to and including the next `\r\n`, returning the line without it.
    async fn line(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads `n` bytes.
    async fn exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads the status line and headers.
    pub(crate) async fn read_head(&mut self) -> Head {
        let status_line = self
            .line()
            .await
            .expect("connection closed before the head");
        let status_line = String::from_utf8(status_line).unwrap();
        let mut parts = status_line.split(' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
        let status = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = self.line().await.expect("connection closed in the head");
            if line.is_empty() {
                break;
            }
            let line = String::from_utf8(line).unwrap();
            let (name, value) = line.split_once(':').unwrap();
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        Head { status, headers }
    }

    /// Reads the next chunk of a chunked body.
    pub(crate) async fn read_chunk(&mut self) -> Chunk {
        let Some(size_line) = self.line().await else {
            return Chunk::Closed;
        };
        let size_line = String::from_utf8(size_line).unwrap();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                match self.line().await {
                    Some(line) if line.is_empty() => return Chunk::End,
                    Some(_) => {}
                    None => return Chunk::Closed,
                }
            }
        }
        let Some(data) = self.exact(size).await else {
            return Chunk::Closed;
        };
        match self.exact(2).await {
            Some(crlf) => assert_eq!(crlf, b"\r\n", "chunk not followed by CRLF"),
            None => return Chunk::Closed,
        }
        Chunk::Data(data)
    }

    /// Reads chunks until the body ends, returning the data chunks and how it ended.
    pub(crate) async fn read_to_end(&mut self) -> (Vec<Vec<u8>>, Chunk) {
        let mut chunks = Vec::new();
        loop {
            match self.read_chunk().await {
                Chunk::Data(data) => chunks.push(data),
                end => return (chunks, end),
            }
        }
    }
}
