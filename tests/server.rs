//! `tower_sse::server::Server` over real sockets on 127.0.0.1: the request timeout
//! (silent connections closed, slow bodies answered 408), the connection cap and its
//! immediate answers, graceful shutdown, and the socket options it sets.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_core::Stream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use tokio::{io::AsyncReadExt as _, net::TcpStream, sync::oneshot, task::JoinHandle};
use tower::Layer as _;
use tower_sse::{
    server::{RequestBody, Server},
    Event, SseLayer, SseResponse, SseStats,
};

use support::{
    client::{h2_client, Chunk, RawClient},
    sources::then_pending,
    wire::{blocks, concat, field, parse_all},
    within,
};

type Events = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// What the test service saw.
#[derive(Default)]
struct Seen {
    /// `/publish` calls.
    called: AtomicUsize,
    /// `/publish` bodies received complete.
    published: Mutex<Vec<Bytes>>,
}

/// A [`Server`] on `127.0.0.1:0` running in a task, serving `/sse` (one event, then
/// open), `/publish` (collects the body) and `/health`.
struct Running {
    addr: SocketAddr,
    seen: Arc<Seen>,
    stats: SseStats,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start(configure: impl FnOnce(Server) -> Server) -> Self {
        let seen = Arc::new(Seen::default());
        let sse = SseLayer::new();
        let stats = sse.stats();
        let server = Server::bind("127.0.0.1:0").await.unwrap().streams(
            sse.shutdown_handle(),
            Event::new().retry(Duration::from_millis(1000)),
        );
        let server = configure(server);
        let addr = server.local_addr().unwrap();
        let service_seen = seen.clone();
        let app = sse.layer(tower::service_fn(move |req| {
            let seen = service_seen.clone();
            async move { Ok::<_, Infallible>(route(&seen, req).await) }
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.serve(app, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            seen,
            stats,
            stop: Some(stop),
            done,
        }
    }

    /// Triggers shutdown and waits for `serve` to return.
    async fn stop(mut self) -> io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        within("serve returns after shutdown", self.done)
            .await
            .unwrap()
    }
}

async fn route(seen: &Seen, req: Request<RequestBody>) -> SseResponse<Events> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/sse") => {
            let events: Events = Box::pin(then_pending(vec![Ok(Event::new().data("hello"))]));
            SseResponse::new(events)
        }
        (&Method::GET, "/endless") => {
            // 1 KiB events, always ready: as fast as the socket takes them.
            let data = "x".repeat(1024);
            let events: Events = Box::pin(futures_util::stream::repeat_with(move || {
                Ok(Event::new().data(data.clone()))
            }));
            SseResponse::new(events)
        }
        (&Method::POST, "/publish") => {
            seen.called.fetch_add(1, Ordering::SeqCst);
            match req.into_body().collect().await {
                Ok(body) => {
                    seen.published.lock().unwrap().push(body.to_bytes());
                    plain(StatusCode::NO_CONTENT, "")
                }
                Err(err) => plain(StatusCode::BAD_REQUEST, format!("{err}\n")),
            }
        }
        _ => plain(StatusCode::OK, "ok\n"),
    }
}

fn plain(status: StatusCode, body: impl Into<Bytes>) -> SseResponse<Events> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    SseResponse::other(res)
}

/// Reads until the server closes the connection (EOF or reset), returning the bytes.
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_request_timeout() {
    let server = Running::start(|s| s.request_timeout(Duration::from_millis(300))).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Half a request head, then nothing (slowloris).
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // HTTP/2's preface and nothing more.
    let mut h2 = TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut h2, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();

    let closed = within(
        "the server closes the silent connection",
        read_until_closed(&mut silent),
    )
    .await;
    assert!(closed.is_empty(), "{:?}", String::from_utf8_lossy(&closed));
    let closed = within(
        "the server closes the slow head",
        read_until_closed(&mut partial),
    )
    .await;
    // hyper may answer 408 before closing; nothing else.
    assert!(
        closed.is_empty() || closed.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&closed)
    );
    within(
        "the server closes the idle h2 connection",
        read_until_closed(&mut h2),
    )
    .await;

    // A connection that sends its request in time is served.
    let mut client = RawClient::connect(server.addr).await;
    client.get("/health", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_slow_body_gets_408_and_is_not_published() {
    let server = Running::start(|s| s.request_timeout(Duration::from_millis(300))).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // Ten bytes announced, three sent.
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp,
        b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc",
    )
    .await
    .unwrap();
    let answer = within(
        "the server answers the slow body",
        read_until_closed(&mut tcp),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{answer}"
    );
    assert_eq!(
        server.seen.called.load(Ordering::SeqCst),
        1,
        "the handler was called"
    );
    assert!(
        server.seen.published.lock().unwrap().is_empty(),
        "nothing published"
    );

    // A body that arrives in time is published.
    let mut client = RawClient::connect(server.addr).await;
    client
        .send(b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello")
        .await;
    assert_eq!(client.read_head().await.status, 204);
    assert_eq!(
        *server.seen.published.lock().unwrap(),
        [Bytes::from("hello")]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn past_max_connections_an_sse_request_gets_the_shed_answer_and_others_503() {
    let server = Running::start(|s| s.max_connections(1)).await;
    // The one connection allowed: an open stream.
    let mut open = RawClient::connect(server.addr).await;
    open.get("/sse", &[]).await;
    assert_eq!(open.read_head().await.status, 200);
    assert!(matches!(open.read_chunk().await, Chunk::Data(_)));

    // An EventSource-like request past the cap: 200, SSE headers, one retry, the end.
    let mut shed = RawClient::connect(server.addr).await;
    shed.get("/sse", &[]).await;
    let head = shed.read_head().await;
    assert_eq!(head.status, 200);
    assert!(head
        .get("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(head.get("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(head.get("content-length"), None);
    let (chunks, end) = shed.read_to_end().await;
    assert!(matches!(end, Chunk::End), "the response ends");
    let body = String::from_utf8(concat(&chunks)).unwrap();
    let blocks = blocks(&body);
    assert_eq!(blocks.len(), 1, "{body:?}");
    let retry: u64 = field(blocks[0], "retry").unwrap().parse().unwrap();
    assert!(retry >= 1000, "{retry}");
    // No event for a client to dispatch: only the reconnection time.
    assert!(parse_all(body.clone().into_bytes()).await.is_empty());
    let mut rest = Vec::new();
    let _ = within("the shed connection is closed", async {
        let mut chunk = [0u8; 64];
        loop {
            match shed.read_raw(&mut chunk).await {
                0 => break,
                n => rest.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(rest.is_empty());

    // Any other request past the cap: 503, then closed.
    assert_eq!(health(server.addr).await, "503");

    // Once the open connection is gone, there is room again.
    drop(open);
    within("a slot is free again", async {
        while health(server.addr).await != "200" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    server.stop().await.unwrap();
}

/// The status code of `GET /health` (without `accept: text/event-stream`) on a new
/// connection, which the server then closes.
async fn health(addr: SocketAddr) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut tcp,
        b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let answer = within("an answer at once", read_until_closed(&mut tcp)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");
    answer[9..12].to_owned()
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams_and_serve_returns() {
    let server = Running::start(|s| s).await;
    let mut stream = RawClient::connect(server.addr).await;
    stream.get("/sse", &[]).await;
    assert_eq!(stream.read_head().await.status, 200);
    assert!(matches!(stream.read_chunk().await, Chunk::Data(_)));

    let stopped = tokio::spawn(server.stop());
    let (chunks, end) = stream.read_to_end().await;
    assert!(matches!(end, Chunk::End), "the stream ends cleanly");
    let body = String::from_utf8(concat(&chunks)).unwrap();
    assert_eq!(field(blocks(&body)[0], "retry"), Some("1000"), "{body:?}");
    within("serve returns", stopped).await.unwrap().unwrap();
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge_on_the_same_port() {
    let server = Running::start(|s| s).await;
    let res = h2_client()
        .get(format!("http://{}/health", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn accepted_sockets_get_nodelay_keepalive_user_timeout_and_send_queue_bounds() {
    #[derive(Debug, Default, Clone)]
    struct Options {
        nodelay: bool,
        keepalive: bool,
        idle: Duration,
        interval: Duration,
        retries: u32,
        user_timeout: Option<Duration>,
        send_buffer: usize,
        notsent_lowat: u32,
    }
    let seen = Arc::new(Mutex::new(None::<Options>));
    let hook_seen = seen.clone();
    let server = Running::start(move |s| {
        s.tcp_keepalive(Some((Duration::from_secs(20), Duration::from_secs(5), 4)))
            .tcp_user_timeout(Some(Duration::from_secs(25)))
            .send_buffer_size(Some(16 * 1024))
            .on_accept(move |tcp| {
                let sock = socket2::SockRef::from(tcp);
                *hook_seen.lock().unwrap() = Some(Options {
                    nodelay: sock.tcp_nodelay().unwrap(),
                    keepalive: sock.keepalive().unwrap(),
                    idle: sock.tcp_keepalive_time().unwrap(),
                    interval: sock.tcp_keepalive_interval().unwrap(),
                    retries: sock.tcp_keepalive_retries().unwrap(),
                    user_timeout: sock.tcp_user_timeout().unwrap(),
                    send_buffer: sock.send_buffer_size().unwrap(),
                    notsent_lowat: sock.tcp_notsent_lowat().unwrap(),
                });
            })
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/health", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    let options = seen.lock().unwrap().clone().expect("the hook ran");
    assert!(options.nodelay);
    assert!(options.keepalive);
    assert_eq!(options.idle, Duration::from_secs(20));
    assert_eq!(options.interval, Duration::from_secs(5));
    assert_eq!(options.retries, 4);
    assert_eq!(options.user_timeout, Some(Duration::from_secs(25)));
    // Linux reports twice the size asked for (its bookkeeping included).
    assert_eq!(options.send_buffer, 32 * 1024);
    // The default low-water mark of unsent bytes.
    assert_eq!(options.notsent_lowat, 16 * 1024);
    server.stop().await.unwrap();
}

/// On Linux the server sizes a busy stream's frames by what the socket takes at once
/// (`TCP_INFO`): at most 12 KiB until the client has acknowledged 256 KiB, then as much
/// as the peer's window and the low-water mark take, up to the layer's 64 KiB cap.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_a_reader_that_keeps_up_grow_to_what_the_socket_takes() {
    let server = Running::start(|s| s).await;
    let mut client = open_endless(&server).await;
    let sizes = read_chunks(&mut client, 8 << 20).await;
    // A frame that starts before 200 KiB of body was made before the client could
    // have acknowledged 256 KiB (head and chunk sizes included).
    let cold = sizes.iter().filter(|(at, _)| *at < 200 * 1024);
    assert!(cold.clone().all(|(_, len)| *len <= 12 * 1024), "{sizes:?}");
    assert!(cold.count() >= 16, "{sizes:?}");
    let largest = sizes.iter().map(|(_, len)| *len).max().unwrap();
    assert!(largest > 12 * 1024, "frames never grew: {sizes:?}");
    assert!(largest <= 64 * 1024, "{sizes:?}");
    println!("{} frames; largest {} KiB", sizes.len(), largest / 1024);
    server.stop().await.unwrap();
}

/// A client that read 4 MiB (its frames grown to 64 KiB) and stopped: the server
/// holds at most one small frame of its stream, because each frame was sized to what
/// the socket took at once. Measured from outside: the bytes the layer handed hyper,
/// less those the client read, those in its receive queue and those in the server's
/// send queue (`ss`), plus at most the chunk framing of the queued bytes.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_after_large_frames_leaves_one_small_frame_in_the_server() {
    let server = Running::start(|s| s).await;
    let mut client = open_endless(&server).await;
    let sizes = read_chunks(&mut client, 4 << 20).await;
    let read: usize = sizes.iter().map(|(_, len)| len).sum();
    let largest = sizes.iter().map(|(_, len)| *len).max().unwrap_or(0);
    assert!(largest > 12 * 1024, "frames never grew: {largest}");
    // The client reads nothing more; wait until the layer hands hyper nothing more.
    let sent = settled("the stream stops", || server.stats.bytes_sent()).await;
    let client_port = client.local_addr().port();
    let queued = client.buffered() as u64
        + recv_queue(client_port, server.addr)
        + send_queue(server.addr, client_port);
    // Chunks of at least 3 KiB (frames are filled to a cap of at least 4 KiB), each
    // with at most 12 bytes of framing. The queues hold that framing too, so `queued`
    // alone can exceed `sent - read`: add the bound before subtracting.
    let framing = 12 * (queued / 3072 + 1);
    let held = (sent + framing)
        .checked_sub(read as u64 + queued)
        .unwrap_or_else(|| panic!("queued {queued} > sent {sent} - read {read} + {framing}"));
    println!(
        "largest frame {} KiB; held in the server after the stall: {held} bytes (queued \
         in the kernel and the client: {queued})",
        largest / 1024
    );
    assert!(held <= 16 * 1024, "{held} bytes held");
    server.stop().await.unwrap();
}

/// The kernel's receive and send queues (`Recv-Q`, `Send-Q`: unread bytes, and unsent
/// or unacknowledged ones) of the established connection from local port `local` to
/// port `remote` on 127.0.0.1, as `ss` (iproute2) reports them.
fn queues(local: u16, remote: u16) -> (u64, u64) {
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", "established"])
        .arg(format!("( sport = :{local} and dport = :{remote} )"))
        .output()
        .expect("running `ss` (iproute2 is needed)");
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no such socket: {text:?}"));
    let mut columns = line.split_whitespace().map(|n| n.parse().unwrap());
    (columns.next().unwrap(), columns.next().unwrap())
}

/// The client-side kernel receive queue of the connection from `client_port`.
fn recv_queue(client_port: u16, server: SocketAddr) -> u64 {
    queues(client_port, server.port()).0
}

/// The server-side kernel send queue of the connection from `client_port`.
fn send_queue(server: SocketAddr, client_port: u16) -> u64 {
    queues(server.port(), client_port).1
}

/// Opens `/endless` on `server` and reads the response head.
async fn open_endless(server: &Running) -> RawClient {
    let mut client = RawClient::connect(server.addr).await;
    client.get("/endless", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    client
}

/// Reads body chunks until at least `bytes` of body came, and returns each chunk's
/// offset in the body and its length.
async fn read_chunks(client: &mut RawClient, bytes: usize) -> Vec<(usize, usize)> {
    let (mut sizes, mut offset) = (Vec::new(), 0);
    while offset < bytes {
        let Chunk::Data(data) = client.read_chunk().await else {
            panic!("the endless stream ended");
        };
        sizes.push((offset, data.len()));
        offset += data.len();
    }
    sizes
}

/// Opens `/endless`, stops reading, and returns the server's kernel send queue once
/// it stopped growing.
async fn stalled_send_queue(server: &Running) -> u64 {
    let client = open_endless(server).await;
    let client_port = client.local_addr().port();
    // The client reads nothing more.
    settled("the send queue stops growing", || {
        send_queue(server.addr, client_port)
    })
    .await
}

/// Samples `value` every 100 ms until it is the same 5 times in a row, and returns it.
async fn settled(what: &str, value: impl Fn() -> u64) -> u64 {
    within(what, async {
        let (mut last, mut same) = (u64::MAX, 0);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = value();
            same = if now == last { same + 1 } else { 0 };
            last = now;
            if same == 5 {
                return now;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_stalled_reader_holds_at_most_64_kib_in_the_kernel_send_queue() {
    let server = Running::start(|s| s).await;
    let bounded = stalled_send_queue(&server).await;
    println!(
        "kernel send queue of a stalled reader: {} KiB (TCP_NOTSENT_LOWAT 16 KiB)",
        bounded / 1024
    );
    assert!(bounded <= 64 * 1024, "{bounded} bytes");
    server.stop().await.unwrap();

    // Without the low-water mark, autotuning lets the queue grow far beyond.
    let server = Running::start(|s| s.tcp_notsent_lowat(None)).await;
    let unbounded = stalled_send_queue(&server).await;
    println!("without it: {} KiB", unbounded / 1024);
    assert!(unbounded > 4 * bounded, "{unbounded} bytes");
    server.stop().await.unwrap();
}
