//! Helpers shared by the black-box tests: a real hyper server on `127.0.0.1:0`
//! serving an [`SseLayer`] over a handler, a raw TCP client that sees the exact bytes
//! on the wire (HTTP/1.1 chunks de-chunked by hand), a reqwest client, and event
//! sources that count what they produce and report when they are dropped.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_core::Stream;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    sync::{oneshot, Notify},
    task::JoinHandle,
};
use tower::ServiceBuilder;
use tower_sse::{BoxError, Encode, Event, SseLayer, SseResponse};

/// The longest any single step of a test may take before the test fails (instead
/// of hanging on a bug).
pub(crate) const STEP: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`STEP`].
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds, failing the test after
/// [`STEP`]. For conditions that no notification tells about (a counter).
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// Knobs of the test server's sockets and hyper, to make its buffers small and known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerOptions {
    /// `SO_SNDBUF` of the accepted sockets (set on the listener, inherited).
    pub(crate) send_buffer: Option<u32>,
    /// hyper's HTTP/1 `max_buf_size` (its write buffer cap; at least 8192).
    pub(crate) max_buf_size: Option<usize>,
}

/// A hyper server (auto: HTTP/1.1 and h2c) on `127.0.0.1:0`, one task per connection,
/// every connection watched by hyper-util's [`GracefulShutdown`].
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT{path}`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and runs hyper-util's graceful shutdown; resolves when every
    /// connection has finished.
    pub(crate) async fn graceful_shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task panicked");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `svc` (a tower service answering `Response<B>`) with default options.
pub(crate) async fn serve<S, B>(svc: S) -> TestServer
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(svc, ServerOptions::default()).await
}

/// Serves `svc` with the given socket and hyper options.
pub(crate) async fn serve_with<S, B>(svc: S, opts: ServerOptions) -> TestServer
where
    S: tower::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = opts.send_buffer {
        socket.set_send_buffer_size(size).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(128).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(max) = opts.max_buf_size {
            builder.http1().max_buf_size(max);
        }
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { continue };
                    let conn = builder
                        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc.clone()))
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        graceful.shutdown().await;
    });
    TestServer {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Serves `layer` around `handler`, a function from the request to an [`SseResponse`].
pub(crate) async fn serve_sse<F, Fut, St, T, E>(layer: SseLayer, handler: F) -> TestServer
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SseResponse<St>> + Send + 'static,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    serve_sse_with(layer, ServerOptions::default(), handler).await
}

/// [`serve_sse`] with socket and hyper options.
pub(crate) async fn serve_sse_with<F, Fut, St, T, E>(
    layer: SseLayer,
    opts: ServerOptions,
    handler: F,
) -> TestServer
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = SseResponse<St>> + Send + 'static,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<Incoming>| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
    serve_with(svc, opts).await
}

// ---------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// SSE text on the wire
// ---------------------------------------------------------------------------

/// Splits SSE text into its blocks (events or comments), each without its final
/// blank line. Panics if the text does not end with a complete block.
pub(crate) fn blocks(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    assert!(
        text.ends_with("\n\n"),
        "SSE text does not end with a blank line: {:?}",
        &text[text.len().saturating_sub(80)..]
    );
    text[..text.len() - 2].split("\n\n").collect()
}

/// Whether a block is a comment-only block (a comment heartbeat).
pub(crate) fn is_comment(block: &str) -> bool {
    block.lines().all(|line| line.starts_with(':'))
}

/// The value of field `name` in a block, if present (first occurrence).
pub(crate) fn field<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.lines().find_map(|line| {
        let (n, v) = line.split_once(':').unwrap_or((line, ""));
        (n == name).then(|| v.strip_prefix(' ').unwrap_or(v))
    })
}

/// Asserts the SSE framing rules of the contract on a body: no `\r` anywhere, and the
/// body is a sequence of blocks each ending with an empty line.
pub(crate) fn assert_framing(body: &[u8]) {
    assert!(
        !body.contains(&b'\r'),
        "a \\r on the wire: {:?}",
        String::from_utf8_lossy(body)
    );
    let text = std::str::from_utf8(body).expect("the body is UTF-8");
    for block in blocks(text) {
        assert!(
            !block.is_empty(),
            "an empty block (stray blank line) in {text:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Event sources
// ---------------------------------------------------------------------------

/// Set when the value that owns it is dropped; lets a test see that the layer
/// dropped an event source.
#[derive(Clone, Default)]
pub(crate) struct DropFlag {
    inner: Arc<(AtomicBool, Notify)>,
}

impl DropFlag {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A guard that sets this flag when dropped.
    pub(crate) fn guard(&self) -> DropGuard {
        DropGuard(self.clone())
    }

    pub(crate) fn is_set(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Resolves once the guard was dropped.
    pub(crate) async fn dropped(&self) {
        loop {
            let notified = self.inner.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Sets its [`DropFlag`] when dropped.
pub(crate) struct DropGuard(DropFlag);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.inner.0.store(true, Ordering::SeqCst);
        self.0.inner.1.notify_waiters();
    }
}

/// A stream that carries a [`DropGuard`]: its flag is set when the stream is dropped.
pub(crate) struct Guarded<St> {
    stream: Pin<Box<St>>,
    _guard: DropGuard,
}

impl<St> Guarded<St> {
    pub(crate) fn new(stream: St, flag: &DropFlag) -> Self {
        Self {
            stream: Box::pin(stream),
            _guard: flag.guard(),
        }
    }
}

impl<St: Stream> Stream for Guarded<St> {
    type Item = St::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<St::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

/// 1 KiB of `x`.
pub(crate) fn kib_payload() -> String {
    "x".repeat(1024)
}

/// An event `id: n`, `data: <1 KiB of x>`: 1036 to 1044 bytes on the wire.
pub(crate) fn kib_event(n: u64) -> Event {
    Event::new().id(n.to_string()).unwrap().data(kib_payload())
}

/// A source of `total` events (`id` 1, 2, …), always ready, that counts how many it
/// has produced in `produced`. It returns `Pending` once every 32 items (waking itself
/// at once) so that it shares its thread like a real source would.
pub(crate) struct Counting<F> {
    next: u64,
    total: u64,
    produced: Arc<AtomicU64>,
    make: F,
    since_yield: u32,
}

impl<F: Fn(u64) -> Event> Counting<F> {
    pub(crate) fn new(total: u64, produced: Arc<AtomicU64>, make: F) -> Self {
        Self {
            next: 1,
            total,
            produced,
            make,
            since_yield: 0,
        }
    }
}

impl<F: Fn(u64) -> Event + Unpin> Stream for Counting<F> {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.next > self.total {
            return Poll::Ready(None);
        }
        if self.since_yield >= 32 {
            self.since_yield = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.since_yield += 1;
        let n = self.next;
        self.next += 1;
        let event = (self.make)(n);
        self.produced.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(Ok(event)))
    }
}

/// A stream that yields `items` and then stays pending forever (an open stream with
/// nothing more to say).
pub(crate) fn then_pending<T: Send + 'static>(
    items: Vec<T>,
) -> impl Stream<Item = T> + Send + Unpin + 'static {
    use futures_util::StreamExt;
    futures_util::stream::iter(items).chain(futures_util::stream::pending())
}

/// Response bytes collected into one buffer.
pub(crate) fn concat(chunks: &[Vec<u8>]) -> Vec<u8> {
    chunks.iter().flatten().copied().collect()
}

/// Parses all of `bytes` with eventsource-stream.
pub(crate) async fn parse_all(bytes: Vec<u8>) -> Vec<eventsource_stream::Event> {
    use eventsource_stream::Eventsource;
    use futures_util::TryStreamExt;
    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from(bytes))])
        .eventsource()
        .try_collect()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// In process: the response body driven frame by frame
// ---------------------------------------------------------------------------

/// The response of `layer` around a handler answering `SseResponse::new(stream)`,
/// called in process (no socket): for tests that drive the body frame by frame,
/// on tokio's paused clock where time matters.
pub(crate) async fn sse_body<St, T, E>(
    layer: SseLayer,
    stream: St,
) -> Pin<Box<tower_sse::SseBody<St>>>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    sse_body_of(layer, SseResponse::new(stream)).await
}

/// Like [`sse_body`], for a handler answering `response`.
pub(crate) async fn sse_body_of<St, T, E>(
    layer: SseLayer,
    response: SseResponse<St>,
) -> Pin<Box<tower_sse::SseBody<St>>>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    use tower::ServiceExt;
    // `service_fn` needs `FnMut`; hand the response over through an Option.
    let mut response = Some(response);
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |_req: Request<()>| {
            let response = response.take().expect("called once");
            async move { Ok::<_, Infallible>(response) }
        });
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Box::pin(res.into_body())
}

/// The next data frame of `body`, or `None` at its end. Panics on a body error.
pub(crate) async fn next_frame<B>(body: &mut Pin<Box<B>>) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes> + ?Sized,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let frame = body.frame().await?.expect("body error");
    Some(frame.into_data().expect("a data frame"))
}

// ---------------------------------------------------------------------------
// A server of counted sources over small buffers (overflow, queue depth)
// ---------------------------------------------------------------------------

/// `SO_SNDBUF` of the server socket and `SO_RCVBUF` of a client that stops reading
/// (Linux doubles both): small, so that such a client blocks the server soon.
pub(crate) const SMALL_SOCKET_BUFFER: u32 = 8 * 1024;
/// hyper's HTTP/1 write buffer cap for that server (its minimum).
pub(crate) const SMALL_HYPER_BUFFER: usize = 8 * 1024;

/// What [`serve_counted`] started.
pub(crate) struct CountedServer {
    pub(crate) server: TestServer,
    pub(crate) stats: tower_sse::SseStats,
    /// Events produced by all sources so far.
    pub(crate) produced: Arc<AtomicU64>,
    /// Set when the (last) source is dropped.
    pub(crate) source_dropped: DropFlag,
}

/// Serves `layer` over [`SMALL_SOCKET_BUFFER`] sockets and a [`SMALL_HYPER_BUFFER`]
/// hyper buffer; each request streams `total` events made by `make` (counted in
/// `produced`), then, with `then_pending`, stays open without ending.
pub(crate) async fn serve_counted(
    layer: SseLayer,
    total: u64,
    make: fn(u64) -> Event,
    then_pending: bool,
) -> CountedServer {
    use futures_util::StreamExt as _;
    let stats = layer.stats();
    let produced = Arc::new(AtomicU64::new(0));
    let source_dropped = DropFlag::new();
    let opts = ServerOptions {
        send_buffer: Some(SMALL_SOCKET_BUFFER),
        max_buf_size: Some(SMALL_HYPER_BUFFER),
    };
    let server = serve_sse_with(layer, opts, {
        let produced = produced.clone();
        let source_dropped = source_dropped.clone();
        move |_req| {
            let source = Counting::new(total, produced.clone(), make);
            let source = if then_pending {
                source.chain(futures_util::stream::pending()).boxed()
            } else {
                source.boxed()
            };
            let source = Guarded::new(source, &source_dropped);
            async move { SseResponse::new(source) }
        }
    })
    .await;
    CountedServer {
        server,
        stats,
        produced,
        source_dropped,
    }
}

/// A client with a [`SMALL_SOCKET_BUFFER`] that sends its request to `/` and then
/// reads only when the test says so.
pub(crate) async fn client_that_stops_reading(server: &TestServer) -> RawClient {
    let mut client = RawClient::connect_with_recv_buffer(server.addr, SMALL_SOCKET_BUFFER).await;
    client.get("/", &[]).await;
    client
}
