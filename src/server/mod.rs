//! A small production server: a tower service (with [`SseLayer`](crate::SseLayer))
//! served over hyper, HTTP/1.1 and HTTP/2 (h2c) on one port, or HTTPS with feature
//! `tls` (see [TLS](#tls)). Feature `server`.
//!
//! ```no_run
//! use std::{convert::Infallible, time::Duration};
//!
//! use http::Request;
//! use tokio_stream::{wrappers::IntervalStream, StreamExt as _};
//! use tower::ServiceBuilder;
//! use tower_sse::{server::{RequestBody, Server}, Event, SseLayer, SseResponse};
//!
//! async fn ticks(_req: Request<RequestBody>) -> Result<SseResponse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, Infallible> {
//!     let mut n = 0u64;
//!     let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1)))
//!         .map(move |_| { n += 1; Ok(Event::new().id_u64(n).data(format!("tick {n}"))) });
//!     Ok(SseResponse::new(ticks))
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let sse = SseLayer::new();
//!     let streams = sse.shutdown_handle();
//!     let app = ServiceBuilder::new().layer(sse).service_fn(ticks);
//!     let server = Server::bind("127.0.0.1:3000")
//!         .await?
//!         // At shutdown every open stream ends with this hint, so browsers come back
//!         // (to another instance) in 2 s.
//!         .streams(streams, Event::new().retry(Duration::from_secs(2)));
//!     println!("listening on http://{}", server.local_addr()?);
//!     server
//!         .serve(app, async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!         .await
//! }
//! ```
//!
//! # What it does for you
//!
//! | concern | behaviour | setting (default) |
//! |---|---|---|
//! | silent connections | a connection that has not sent a complete request head within the request timeout is closed (the first request and every later one on a kept-alive HTTP/1 connection) | [`request_timeout`](Server::request_timeout) (10 s) |
//! | slow bodies | a request body not fully received within the request timeout (from its head) is answered `408`, and the service's future is dropped: a handler that acts only on the complete body does nothing | the same |
//! | connections | at most this many open; past it a connection is still answered at once: an SSE request (one that accepts `text/event-stream`) gets the *shed answer* (status 200, the SSE headers, one `retry: R` with R jittered between 1 and 3 × [`shed_retry`](Server::shed_retry), at least 1 s, then the end: `EventSource` comes back later), any other `503`; then it is closed. 64 such answers at a time; beyond them a connection is closed at once | [`max_connections`](Server::max_connections) (the open-files soft limit minus 128, read from `/proc/self/limits`; 896 where that cannot be read) |
//! | out of file descriptors | the accept loop pauses (10 ms, doubling to 500 ms) instead of spinning, and logs (`tracing`, `warn`) at most once a second | |
//! | small writes | `TCP_NODELAY` | |
//! | dead peers | TCP keepalive and `TCP_USER_TIMEOUT` (Linux), see below | [`tcp_keepalive`](Server::tcp_keepalive) (30 s, 10 s, 3), [`tcp_user_timeout`](Server::tcp_user_timeout) (30 s) |
//! | kernel memory | `TCP_NOTSENT_LOWAT` (Linux), optionally `SO_SNDBUF`, see below | [`tcp_notsent_lowat`](Server::tcp_notsent_lowat) (16 KiB), [`send_buffer_size`](Server::send_buffer_size) (none) |
//! | stalled readers | the write gate: an SSE body on an HTTP/1.1 connection makes no frame while hyper still holds the last one (a frame handed to hyper closes the gate, hyper's flush of everything it holds opens it), so a client that stops reading holds one frame and nothing more | always on for HTTP/1.1 (TLS too); HTTP/2 streams are not gated |
//! | frame size | each SSE frame is at most 12 KiB (and the layer's [`max_frame_bytes`](crate::SseLayer::max_frame_bytes)); on Linux, over plain HTTP/1.1, a busy stream's next frame may be as large as the socket takes at once (`TCP_INFO`: the peer's window not in flight plus the low-water mark's room) once the client has acknowledged 256 KiB, so a reader that keeps up gets up to 64 KiB per write and a stalled one holds one small frame (see below; the demo's stalled `/stream` reader: 13.7 KiB of RSS) | on, with [`tcp_notsent_lowat`](Server::tcp_notsent_lowat) set; otherwise 12 KiB frames |
//! | server memory | hyper's HTTP/1 write buffer and HTTP/2 per-stream send buffer | [`http1_max_buf_size`](Server::http1_max_buf_size) (64 KiB), [`http2_max_send_buf_size`](Server::http2_max_send_buf_size) (16 KiB), [`http2_max_concurrent_streams`](Server::http2_max_concurrent_streams) (200) |
//! | shutdown | when the signal future resolves: stop accepting, end the layer's open streams ([`streams`](Server::streams)), let every connection finish its responses, drop those still open after the grace period; then [`serve`](Server::serve) returns | [`shutdown_grace`](Server::shutdown_grace) (3 s) |
//!
//! # When a dead peer is found
//!
//! A client that vanishes without closing its connection (an unplugged laptop, a NAT
//! that forgot the connection) is found by the kernel, not by the application:
//!
//! - **a stream that writes** (events, or heartbeats every `H`): the first write after
//!   the peer died is never acknowledged, and `TCP_USER_TIMEOUT` `U` aborts the
//!   connection `U` after it; the stream ends at its next poll. Within **`H + U`** (plus
//!   one retransmission interval): 15 s + 30 s = 45 s with the layer's default heartbeat.
//! - **a connection that writes nothing**: keepalive probes start after `T` idle, one
//!   every `I`; the kernel aborts at the first probe time at which no ack came for `U`
//!   and a probe is out: within about **`max(T, U) + I`**, 40 s by default. Without
//!   `TCP_USER_TIMEOUT` (not Linux) it is `T + I × retries`, 60 s by default.
//!
//! Without these options Linux finds such a peer only when it stops retransmitting
//! (about 15 minutes) or never (an idle connection).
//!
//! # Memory per stalled connection
//!
//! A client that stops reading holds, in the server:
//!
//! - the layer's buffer ([`BufferLimits`](crate::BufferLimits)) and the frame being
//!   sent;
//! - **HTTP/1**: the one frame hyper could not write (the write gate). Its size is what
//!   the socket was measured to take when it was made (Linux, plain TCP), so a reader
//!   that stops mid-stream leaves the kernel a frame it takes whole and the server the
//!   next, small one; at most 12 KiB where nothing is measured. Without the gate
//!   (`axum::serve`, your own hyper loop) hyper takes body frames while it holds less
//!   than its write buffer limit, socket writable or not, so up to that plus one frame;
//! - **HTTP/2**: per stream, at most [`http2_max_send_buf_size`](Server::http2_max_send_buf_size)
//!   plus one body frame (h2 takes a whole frame once any send capacity is free), times
//!   at most [`http2_max_concurrent_streams`](Server::http2_max_concurrent_streams) streams
//!   per connection;
//! - **the kernel**: what is queued and not yet sent stops growing at
//!   [`tcp_notsent_lowat`](Server::tcp_notsent_lowat) plus the one write that crossed
//!   it (at most a 64 KiB segment); a stalled reader's window is closed, so nothing is
//!   in flight. Measured on loopback with 16 KiB (`tests/server.rs`): 17 KiB queued
//!   per stalled connection, against 3.6 MiB without it (autotuning up to
//!   `net.ipv4.tcp_wmem`'s maximum); a plain socket writing 64 KiB at a time: 46 KiB,
//!   at 1.2 GB/s for a reading client instead of 1.7. Elsewhere than Linux, set
//!   [`send_buffer_size`](Server::send_buffer_size).
//!
//! An idle connection (an SSE stream between heartbeats) costs about 19 KiB of heap,
//! of which 12 KiB resident with glibc's allocator (8 KiB with jemalloc), most of it
//! hyper's two 8 KiB HTTP/1 buffers (`benches/memory.sh`, BENCHMARKS.md). A
//! plain-TCP connection's protocol is found by peeking at its first bytes, so hyper's
//! read buffer stays at 8 KiB (hyper-util's `auto` builder makes it 16 KiB), and each
//! connection's state is allocated for its protocol only.
//!
//! # TLS
//!
//! With feature `tls`, [`Server::tls`] serves HTTPS with a rustls configuration
//! (`tls_config_from_pem` loads one from PEM files), offering HTTP/2 and HTTP/1.1 by
//! ALPN. Browsers speak HTTP/2 only over TLS, and over HTTP/1.1 they open at most six
//! connections per origin: a page with more than six `EventSource`s stalls unless it is
//! served over HTTPS (HTTP/2 carries them all on one connection, up to
//! [`http2_max_concurrent_streams`](Server::http2_max_concurrent_streams)). The TLS
//! handshake must be done within the request timeout and counts against
//! `max_connections`; every other setting above applies as it is.
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::convert::Infallible;
//!
//! use tower::ServiceBuilder;
//! use tower_sse::{server::{tls_config_from_pem, Server}, Event, SseLayer, SseResponse};
//!
//! let app = ServiceBuilder::new().layer(SseLayer::new()).service_fn(|_req| async {
//!     let hello = tokio_stream::iter([Ok::<_, Infallible>(Event::new().data("hello"))]);
//!     Ok::<_, Infallible>(SseResponse::new(hello))
//! });
//! let server = Server::bind("0.0.0.0:8443")
//!     .await?
//!     .tls(tls_config_from_pem("/etc/tls/fullchain.pem", "/etc/tls/key.pem")?);
//! println!("listening on https://{}", server.local_addr()?);
//! server
//!     .serve(app, async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!     .await?;
//! # Ok(()) }
//! # #[cfg(not(feature = "tls"))]
//! # fn main() {}
//! ```
//!
//! Without the feature, put a TLS-terminating proxy in front.

use std::{
    fmt,
    future::Future,
    io,
    net::SocketAddr,
    pin::pin,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream, ToSocketAddrs},
    sync::{watch, Notify, OwnedSemaphorePermit, Semaphore},
};
use tower_service::Service;

use self::{
    conn::{Phase, Watch},
    gated::GatedIo,
    protocol::{Builders, Protocol},
    service::Adapter,
    settings::{Keepalive, Settings, SHED_SLOTS},
    socket::Accept,
};
use crate::{error::BoxError, event::Event, gate::WriteGate, shutdown::ShutdownHandle};

mod body;
mod conn;
mod gated;
mod protocol;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod room;
mod service;
mod settings;
mod shed;
mod socket;
#[cfg(feature = "tls")]
mod tls;

pub use self::body::{BodyError, RequestBody};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use self::tls::{tls_config_from_pem, PemError, TlsError, ALPN_PROTOCOLS};
/// The rustls this crate's [`Server::tls`] takes a configuration of (feature `tls`).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;

/// A hook run on each accepted socket.
type OnAccept = Arc<dyn Fn(&TcpStream) + Send + Sync>;

/// Serves a tower service over HTTP/1.1 and h2c, or HTTPS with feature `tls`
/// ([`Server::tls`]); see the [module docs](self) for what it does and its defaults.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use std::time::Duration;
/// use tower_sse::server::Server;
///
/// let server = Server::bind("0.0.0.0:8080")
///     .await?
///     .request_timeout(Duration::from_secs(5))
///     .max_connections(50_000);
/// # Ok(()) }
/// ```
pub struct Server {
    listener: TcpListener,
    settings: Settings,
    streams: Option<(ShutdownHandle, Event)>,
    on_accept: Option<OnAccept>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Server {
    /// A server listening on the first address `addr` resolves to that can be bound
    /// (`SO_REUSEADDR`, a backlog of 4096).
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Self::from_listener(socket::bind(addr).await?))
    }

    /// A server on a listener that is already bound (for instance on port 0, or one
    /// handed over by systemd as a `std::net::TcpListener`, see
    /// [`from_std`](Self::from_std)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let server = tower_sse::server::Server::from_listener(listener);
    /// assert_ne!(server.local_addr()?.port(), 0);
    /// # Ok(()) }
    /// ```
    pub fn from_listener(listener: TcpListener) -> Self {
        Self {
            listener,
            settings: Settings::default(),
            streams: None,
            on_accept: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// A server on a bound `std` listener (made non-blocking here). Must be called
    /// within a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let server = tower_sse::server::Server::from_std(listener)?;
    /// # Ok(()) }
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        Ok(Self::from_listener(TcpListener::from_std(listener)?))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The builder methods: each takes and returns the server.
impl Server {
    /// How long a connection may take to send a complete request head, and a request
    /// its whole body (`REQUEST_TIMEOUT_MS` in shared/CONTRACT.md). Default 10 s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .request_timeout(Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// At most this many open connections (`MAX_CONNECTIONS`); past it, connections
    /// are answered at once and closed (see the [module docs](self)). Default: the
    /// process's open-files soft limit minus 128. Keep at least 128 descriptors free
    /// under the limit for those answers and the rest of the process.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .max_connections(10_000);
    /// # Ok(()) }
    /// ```
    pub fn max_connections(mut self, max: usize) -> Self {
        self.settings.max_connections = max.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// TCP keepalive: the first probe after `time` without traffic, then one every
    /// `interval`, `retries` of them (the last two are ignored where the system does
    /// not let a socket set them). Default 30 s, 10 s, 3. See the
    /// [module docs](self#when-a-dead-peer-is-found).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .tcp_keepalive(Some((Duration::from_secs(60), Duration::from_secs(15), 4)));
    /// # Ok(()) }
    /// ```
    pub fn tcp_keepalive(mut self, keepalive: Option<(Duration, Duration, u32)>) -> Self {
        self.settings.keepalive = keepalive.map(|(time, interval, retries)| Keepalive {
            time,
            interval,
            retries,
        });
        self
    }

    /// `TCP_USER_TIMEOUT` (Linux and Android; ignored elsewhere): how long sent data
    /// may stay unacknowledged before the kernel aborts the connection. Default 30 s.
    /// `None` leaves the system's default (about 15 minutes of retransmissions).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .tcp_user_timeout(Some(Duration::from_secs(20)));
    /// # Ok(()) }
    /// ```
    pub fn tcp_user_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.user_timeout = timeout;
        self
    }

    /// `TCP_NOTSENT_LOWAT` (Linux and Android; ignored elsewhere): the kernel takes
    /// more bytes from the server only while fewer than this are queued and not yet
    /// sent. This bounds what a client that stops reading holds in the kernel without
    /// limiting the bytes in flight, so throughput is kept. Default 16 KiB; see
    /// [memory per stalled connection](self#memory-per-stalled-connection).
    ///
    /// It is also what lets the server size frames to the socket on Linux (the
    /// "frame size" row of [what it does for you](self#what-it-does-for-you)): with
    /// `None` the kernel's send buffer, not this mark, bounds what it holds unsent,
    /// and every SSE frame is at most 12 KiB.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .tcp_notsent_lowat(Some(32 * 1024));
    /// # Ok(()) }
    /// ```
    pub fn tcp_notsent_lowat(mut self, bytes: Option<u32>) -> Self {
        self.settings.notsent_lowat = bytes;
        self
    }

    /// `SO_SNDBUF` of each connection: a hard cap on the kernel's send queue (Linux:
    /// at most twice this, its bookkeeping included), in flight or not. Default `None`
    /// (the kernel's autotuning, bounded by [`tcp_notsent_lowat`](Self::tcp_notsent_lowat)
    /// for a stalled reader). A small value limits throughput to about this much per
    /// round trip, and on loopback (64 KiB segments, delayed ACKs) 32 KiB cut a
    /// connection from 1.7 GB/s to 2 MB/s (the demo's `/stream`: 1.5 MB/s): prefer the
    /// low-water mark.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .send_buffer_size(Some(256 * 1024));
    /// # Ok(()) }
    /// ```
    pub fn send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.settings.send_buffer = bytes;
        self
    }

    /// hyper's HTTP/1 buffer limit (what it queues for writing, and the largest request
    /// head it reads). Default 64 KiB; at least 8 KiB (smaller values are raised).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .http1_max_buf_size(128 * 1024);
    /// # Ok(()) }
    /// ```
    pub fn http1_max_buf_size(mut self, bytes: usize) -> Self {
        self.settings.http1_max_buf_size = bytes.max(8 * 1024);
        self
    }

    /// The most an HTTP/2 stream buffers before it stops taking body frames (plus the
    /// one frame it took last). Default 16 KiB (hyper's: 400 KiB).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .http2_max_send_buf_size(64 * 1024);
    /// # Ok(()) }
    /// ```
    pub fn http2_max_send_buf_size(mut self, bytes: usize) -> Self {
        self.settings.http2_max_send_buf_size = bytes;
        self
    }

    /// The most concurrent streams per HTTP/2 connection. Default 200.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .http2_max_concurrent_streams(100);
    /// # Ok(()) }
    /// ```
    pub fn http2_max_concurrent_streams(mut self, max: u32) -> Self {
        self.settings.http2_max_concurrent_streams = max;
        self
    }

    /// How long connections get to finish after shutdown began; those still open then
    /// are dropped. Default 3 s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .shutdown_grace(Duration::from_secs(10));
    /// # Ok(()) }
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// The shortest `retry:` of the shed answer (jittered up to 3 times this, never
    /// under 1 s). Default 1 s.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .shed_retry(Duration::from_secs(5));
    /// # Ok(()) }
    /// ```
    pub fn shed_retry(mut self, retry: Duration) -> Self {
        self.settings.shed_retry = retry;
        self
    }

    /// At shutdown, end the layer's open streams with `last` (typically a `retry:`
    /// hint), so that the connections can finish: an SSE response never ends by
    /// itself ([`ShutdownHandle::shutdown_with`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// # use std::time::Duration;
    /// use tower_sse::{Event, SseLayer};
    ///
    /// let sse = SseLayer::new();
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .streams(sse.shutdown_handle(), Event::new().retry(Duration::from_secs(1)));
    /// # Ok(()) }
    /// ```
    pub fn streams(mut self, handle: ShutdownHandle, last: Event) -> Self {
        self.streams = Some((handle, last));
        self
    }

    /// Runs `hook` on each accepted socket, after the server set its options and
    /// before any byte is read: to set more options (`IP_TOS`, `SO_MARK`), to log, or
    /// to check them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
    /// let server = tower_sse::server::Server::bind("127.0.0.1:0").await?
    ///     .on_accept(|tcp| {
    ///         let _ = tcp.set_ttl(64);
    ///     });
    /// # Ok(()) }
    /// ```
    pub fn on_accept(mut self, hook: impl Fn(&TcpStream) + Send + Sync + 'static) -> Self {
        self.on_accept = Some(Arc::new(hook));
        self
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What the accept loop hands each connection.
struct Shared<S> {
    service: S,
    settings: Settings,
    http: auto::Builder<TokioExecutor>,
    /// hyper's builders for TCP connections, whose protocol is peeked at.
    builders: Arc<Builders>,
    connections: Arc<Semaphore>,
    shed: Arc<Semaphore>,
    phase: watch::Sender<Phase>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<tls::Tls>>,
}

impl Server {
    /// Serves `service` until `signal` resolves, then shuts down gracefully (see the
    /// [module docs](self)) and returns once every connection is closed.
    ///
    /// The service takes `http::Request<`[`RequestBody`]`>`; its response body is any
    /// `http_body::Body<Data = Bytes>` (an [`SseBody`](crate::SseBody), axum's
    /// `Body`, …). Errors accepting connections are handled here (paused and logged),
    /// so this returns `Ok`.
    pub async fn serve<S, B, F>(self, service: S, signal: F) -> io::Result<()>
    where
        S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        F: Future<Output = ()>,
    {
        let Server {
            listener,
            settings,
            streams,
            on_accept,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        let http = http_builder(&settings);
        let shared = Shared {
            #[cfg(feature = "tls")]
            tls: tls.map(|config| Arc::new(tls::Tls::new(config, &http))),
            http,
            builders: Arc::new(Builders::new(&settings)),
            connections: Arc::new(Semaphore::new(settings.max_connections)),
            shed: Arc::new(Semaphore::new(SHED_SLOTS)),
            phase: watch::channel(Phase::Running).0,
            service,
            settings,
        };
        let mut signal = pin!(signal);
        let mut accept = Accept::default();
        loop {
            let tcp = tokio::select! {
                biased;
                () = &mut signal => break,
                tcp = accept.next(&listener) => tcp,
            };
            if let Err(err) = socket::configure(&tcp, &shared.settings) {
                tracing::debug!("setting socket options failed: {err}");
            }
            if let Some(hook) = &on_accept {
                hook(&tcp);
            }
            shared.dispatch(tcp);
        }
        drop(listener);
        shut_down(&shared.phase, streams, shared.settings.shutdown_grace).await;
        Ok(())
    }
}

/// hyper's connection settings.
fn http_builder(settings: &Settings) -> auto::Builder<TokioExecutor> {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.request_timeout)
        .max_buf_size(settings.http1_max_buf_size);
    http.http2()
        .timer(TokioTimer::new())
        .max_send_buf_size(settings.http2_max_send_buf_size)
        .max_concurrent_streams(settings.http2_max_concurrent_streams);
    http
}

impl<S, B> Shared<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    /// Serves `tcp` in its own task: with the service under the cap, with the shed
    /// answer past it, or not at all past the shed answers' slots.
    fn dispatch(&self, tcp: TcpStream) {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            self.serve_connection(tcp, permit);
        } else if let Ok(permit) = self.shed.clone().try_acquire_owned() {
            self.shed_connection(tcp, permit);
        }
    }

    /// Serves the service on `tcp` (over TLS with feature `tls` and a configuration).
    /// The client's address goes into every request's extensions, as a `SocketAddr`
    /// ([`limit::client_ip`](crate::limit::client_ip) reads it).
    fn serve_connection(&self, tcp: TcpStream, permit: OwnedSemaphorePermit) {
        let started = Arc::new(AtomicBool::new(false));
        // Frames are small until a transport measures room for more (`gated`, `room`).
        let gate = WriteGate::new();
        gate.set_frame_cap(settings::UNMEASURED_FRAME);
        let adapter = Adapter::new(
            self.service.clone(),
            self.settings.request_timeout,
            started.clone(),
            tcp.peer_addr().ok(),
            gate.clone(),
        );
        let watch = self.watch(started, None);
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.clone() {
            tokio::spawn(async move {
                tls.serve(tcp, adapter, watch, Some(gate)).await;
                drop(permit);
            });
            return;
        }
        let (builders, lowat) = (self.builders.clone(), self.settings.notsent_lowat);
        tokio::spawn(async move {
            serve_tcp(tcp, adapter, &builders, watch, (gate, lowat)).await;
            drop(permit);
        });
    }

    fn shed_connection(&self, tcp: TcpStream, permit: OwnedSemaphorePermit) {
        let answered = Arc::new(Notify::new());
        let notify = answered.clone();
        let retry = self.settings.shed_retry;
        let service = hyper::service::service_fn(move |req| {
            notify.notify_one();
            std::future::ready(Ok::<_, std::convert::Infallible>(shed::answer(&req, retry)))
        });
        let watch = self.watch(Arc::new(AtomicBool::new(false)), Some(answered));
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.clone() {
            tokio::spawn(async move {
                tls.serve(tcp, service, watch, None).await;
                drop(permit);
            });
            return;
        }
        let conn = Box::pin(
            self.http
                .serve_connection(TokioIo::new(tcp), service)
                .into_owned(),
        );
        tokio::spawn(async move {
            conn::drive(conn, watch).await;
            drop(permit);
        });
    }

    /// What a connection's task watches: `started` (set by its service at the first
    /// request head), the head deadline, the server's phase, and `answered` past the cap.
    fn watch(&self, started: Arc<AtomicBool>, answered: Option<Arc<Notify>>) -> Watch {
        Watch {
            started,
            head_timeout: self.settings.request_timeout,
            phase: self.phase.subscribe(),
            answered,
        }
    }
}

/// A plain TCP connection: HTTP/1.1 or h2c (peeked at, nothing consumed: see
/// `protocol`), each served by hyper's connection for its protocol, boxed on its own.
/// A client that sends nothing is closed at the head deadline, as by `conn::drive`.
/// An HTTP/1.1 connection's writes work `gate` and size its frames by the socket's
/// room under `TCP_NOTSENT_LOWAT` at `lowat` (see `gated`).
async fn serve_tcp<S>(
    tcp: TcpStream,
    adapter: S,
    builders: &Builders,
    watch: Watch,
    (gate, lowat): (WriteGate, Option<u32>),
) where
    S: hyper::service::HttpService<hyper::body::Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as http_body::Body>::Data: Send,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let deadline = tokio::time::Instant::now() + watch.head_timeout;
    let detected = tokio::select! {
        detected = protocol::detect(&tcp, deadline) => detected,
        _ = conn::stopping(watch.phase.clone()) => Ok(None),
    };
    match detected {
        Ok(Some(Protocol::Http1)) => {
            let io = TokioIo::new(GatedIo::new(tcp, Some(gate)).sized_by_socket(lowat));
            let conn = Box::pin(builders.h1.serve_connection(io, adapter));
            conn::drive(conn, watch).await;
        }
        Ok(Some(Protocol::H2c)) => {
            let io = TokioIo::new(tcp);
            let conn = Box::pin(builders.h2.serve_connection(io, adapter));
            conn::drive(conn, watch).await;
        }
        Ok(None) | Err(_) => {}
    }
}

/// Ends the layer's streams, asks every connection to finish, and waits for them (for
/// at most `grace`, then drops them).
async fn shut_down(
    phase: &watch::Sender<Phase>,
    streams: Option<(ShutdownHandle, Event)>,
    grace: Duration,
) {
    if let Some((handle, last)) = streams {
        handle.shutdown_with(last);
    }
    phase.send_replace(Phase::Graceful);
    if tokio::time::timeout(grace, phase.closed()).await.is_err() {
        tracing::warn!(
            open = phase.receiver_count(),
            "connections still open after {grace:?}; closing them"
        );
        phase.send_replace(Phase::Force);
        let _ = tokio::time::timeout(Duration::from_secs(1), phase.closed()).await;
    }
}
