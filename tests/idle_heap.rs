//! Heap per idle SSE connection through `tower_sse::server::Server`, counted by
//! dhat as the test binary's allocator: what hyper, the server and the layer keep for
//! a connection between heartbeats (BENCHMARKS.md, "Memory per idle connection").
//!
//! Release demo, heaptrack: 19.4 KiB per connection, of which hyper's two 8 KiB HTTP/1
//! buffers are 16.4. Behind hyper-util's `auto` builder hyper's read buffer grew to
//! 16 KiB and the task carried HTTP/2's state too (34 KiB per connection); this test
//! fails on either. The bound is loose enough for a debug build's larger futures.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use http::Request;
use tower::Layer as _;
use tower_sse::{
    server::{RequestBody, Server},
    Event, SseLayer, SseResponse,
};

use support::within;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Connections opened before the baseline (the runtime's and the allocator's first
/// allocations), and then measured.
const WARM: usize = 50;
const MEASURED: usize = 400;
/// Heap per idle connection at most: hyper's 8 KiB read buffer and 8 KiB head buffer,
/// and 8 KiB for the rest (a task, hyper's connection, the layer's stream).
const MAX_PER_CONN: usize = 24 * 1024;

/// An idle stream: no events, a heartbeat every 30 s (never due here).
async fn idle(
    _req: Request<RequestBody>,
) -> Result<SseResponse<futures_util::stream::Pending<Result<Event, Infallible>>>, Infallible> {
    Ok(SseResponse::new(futures_util::stream::pending()))
}

/// Opens an HTTP/1.1 connection (blocking std socket: no heap on this side), asks for
/// the stream and reads until the response head has arrived.
fn open(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /idle HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 1024];
    let mut len = 0;
    while !head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut head[len..]).unwrap();
        assert!(n > 0, "closed before the response head");
        len += n;
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{:?}", &head[..len]);
    tcp
}

#[test]
fn an_idle_connection_keeps_less_than_24_kib_of_heap() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sse = SseLayer::new().heartbeat(Duration::from_secs(30));
    let app = sse.layer(tower::service_fn(idle));
    let server = runtime.block_on(Server::bind("127.0.0.1:0")).unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.serve(app, std::future::pending()));

    let mut held: Vec<TcpStream> = (0..WARM).map(|_| open(addr)).collect();
    settle(&runtime);
    let before = dhat::HeapStats::get();
    held.extend((0..MEASURED).map(|_| open(addr)));
    settle(&runtime);
    let after = dhat::HeapStats::get();

    let per_conn = (after.curr_bytes - before.curr_bytes) / MEASURED;
    let blocks = (after.curr_blocks - before.curr_blocks) as f64 / MEASURED as f64;
    println!("heap per idle connection: {per_conn} bytes in {blocks:.1} blocks");
    assert!(
        per_conn <= MAX_PER_CONN,
        "{per_conn} bytes of heap per idle connection (at most {MAX_PER_CONN})"
    );
    drop(held);
    runtime.shutdown_timeout(Duration::from_secs(1));
}

/// Lets the server's tasks finish what they do after answering (a bounded wait).
fn settle(runtime: &tokio::runtime::Runtime) {
    runtime.block_on(within("the server settles", async {
        for _ in 0..10 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }));
}
