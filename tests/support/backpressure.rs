//! A server of counted sources over small buffers, and a client that stops reading:
//! such a client blocks the server soon (the overflow and queue-depth tests).

use std::sync::{atomic::AtomicU64, Arc};

use tower_sse::{Event, SseLayer, SseResponse};

use super::{
    client::RawClient,
    server::{serve_sse_with, ServerOptions, TestServer},
    sources::{Counting, DropFlag, Guarded},
};

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
