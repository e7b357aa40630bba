//! Graceful shutdown: `ShutdownHandle` ends open streams (after an optional last
//! event) so that hyper-util's `GracefulShutdown` can complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use support::{
    client::{h2_client, http_client, Chunk, RawClient},
    server::{serve_sse, TestServer},
    sources::{then_pending, DropFlag, Guarded},
    wait_until,
    wire::concat,
    within,
};
use tower_sse::{Event, Overflow, ShutdownHandle, SseLayer, SseResponse, SseStats};

struct Setup {
    server: TestServer,
    handle: ShutdownHandle,
    stats: SseStats,
    /// One flag per stream opened, in order.
    flags: Arc<std::sync::Mutex<Vec<DropFlag>>>,
}

/// Every stream sends `data: hello` and then stays open.
async fn setup(layer: SseLayer) -> Setup {
    let handle = layer.shutdown_handle();
    let stats = layer.stats();
    let flags = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = serve_sse(layer, {
        let flags = flags.clone();
        move |_req| {
            let flag = DropFlag::new();
            flags.lock().unwrap().push(flag.clone());
            let source = Guarded::new(
                then_pending(vec![Ok::<_, Infallible>(Event::new().data("hello"))]),
                &flag,
            );
            async move { SseResponse::new(source) }
        }
    })
    .await;
    Setup {
        server,
        handle,
        stats,
        flags,
    }
}

fn retry() -> Event {
    Event::new().retry(Duration::from_millis(1500))
}

async fn open_streams_end_with_the_retry_event(layer: SseLayer) {
    let setup = setup(layer).await;

    // Three clients: raw HTTP/1.1, reqwest HTTP/1.1 and reqwest h2c.
    let mut raw = RawClient::connect(setup.server.addr).await;
    raw.get("/", &[]).await;
    assert_eq!(raw.read_head().await.status, 200);
    assert_eq!(
        raw.read_chunk().await,
        Chunk::Data(b"data: hello\n\n".to_vec())
    );
    let mut bodies = Vec::new();
    for client in [http_client(), h2_client()] {
        let res = within("response", client.get(setup.server.url("/")).send())
            .await
            .unwrap();
        let mut body = res.bytes_stream();
        let first = within("first frame", body.next()).await.unwrap().unwrap();
        assert_eq!(&first[..], b"data: hello\n\n");
        bodies.push(body);
    }
    assert_eq!(setup.handle.open_streams(), 3);
    assert_eq!(setup.stats.open_streams(), 3);
    assert!(!setup.handle.is_shutdown());

    setup.handle.shutdown_with(retry());
    assert!(setup.handle.is_shutdown());

    // Each client sees the retry line, then a clean end of the stream.
    let (rest, end) = raw.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert_eq!(concat(&rest), b"retry: 1500\n\n");
    for mut body in bodies {
        let mut rest = Vec::new();
        while let Some(frame) = within("frame", body.next()).await {
            rest.extend_from_slice(&frame.expect("a clean end, not an error"));
        }
        assert_eq!(rest, b"retry: 1500\n\n");
    }

    within("wait_closed", setup.handle.wait_closed()).await;
    assert_eq!(setup.handle.open_streams(), 0);
    assert_eq!(setup.stats.open_streams(), 0);
    let flags = setup.flags.lock().unwrap().clone();
    assert_eq!(flags.len(), 3);
    for flag in flags {
        within("the source to be dropped", flag.dropped()).await;
    }
    within(
        "hyper's graceful shutdown",
        setup.server.graceful_shutdown(),
    )
    .await;
}

#[tokio::test]
async fn shutdown_with_retry_ends_open_streams_and_graceful_shutdown_completes() {
    open_streams_end_with_the_retry_event(SseLayer::new()).await;
}

#[tokio::test]
async fn shutdown_with_retry_ends_open_streams_through_the_buffer() {
    open_streams_end_with_the_retry_event(SseLayer::new().on_overflow(Overflow::DropOldest)).await;
}

#[tokio::test]
async fn hyper_graceful_shutdown_waits_until_the_streams_are_ended() {
    let setup = setup(SseLayer::new()).await;
    let mut raw = RawClient::connect(setup.server.addr).await;
    raw.get("/", &[]).await;
    raw.read_head().await;
    assert_eq!(
        raw.read_chunk().await,
        Chunk::Data(b"data: hello\n\n".to_vec())
    );

    let mut graceful = tokio::spawn(setup.server.graceful_shutdown());
    // An SSE body never ends by itself: hyper alone cannot finish.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut graceful).await;
    assert!(
        early.is_err(),
        "graceful shutdown finished with a stream open"
    );

    setup.handle.shutdown();
    let (rest, end) = raw.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert!(rest.is_empty(), "no last event was asked for: {rest:?}");
    within("hyper's graceful shutdown", graceful).await.unwrap();
    within("wait_closed", setup.handle.wait_closed()).await;
}

#[tokio::test]
async fn streams_opened_after_shutdown_end_at_once_with_the_last_event() {
    let setup = setup(SseLayer::new()).await;
    setup.handle.shutdown_with(retry());
    for _ in 0..2 {
        let mut raw = RawClient::connect(setup.server.addr).await;
        raw.get("/", &[]).await;
        assert_eq!(raw.read_head().await.status, 200);
        let (chunks, end) = raw.read_to_end().await;
        assert_eq!(end, Chunk::End);
        assert_eq!(concat(&chunks), b"retry: 1500\n\n");
    }
    within("wait_closed", setup.handle.wait_closed()).await;
    assert_eq!(setup.stats.streams_opened(), 2);
}

#[tokio::test]
async fn wait_closed_resolves_at_once_without_streams_and_handles_are_shared_by_clones() {
    let layer = SseLayer::new();
    let clone = layer.clone();
    within("wait_closed", layer.shutdown_handle().wait_closed()).await;
    clone.shutdown_handle().shutdown();
    assert!(layer.shutdown_handle().is_shutdown());
}

#[tokio::test]
async fn wait_closed_resolves_only_when_the_last_stream_closes() {
    let setup = setup(SseLayer::new()).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut raw = RawClient::connect(setup.server.addr).await;
        raw.get("/", &[]).await;
        raw.read_head().await;
        raw.read_chunk().await;
        clients.push(raw);
    }
    let closed = Arc::new(AtomicUsize::new(0));
    let waiter = tokio::spawn({
        let handle = setup.handle.clone();
        let closed = closed.clone();
        async move {
            handle.wait_closed().await;
            closed.fetch_add(1, Ordering::SeqCst);
        }
    });
    drop(clients.pop());
    wait_until("one stream to close", || setup.handle.open_streams() == 1).await;
    tokio::task::yield_now().await;
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "resolved with a stream open"
    );
    drop(clients.pop());
    within("wait_closed", waiter).await.unwrap();
    assert_eq!(setup.handle.open_streams(), 0);
}
