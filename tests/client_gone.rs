//! The event source is dropped as soon as the client goes away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::StreamExt;
use support::{
    client::{http_client, Chunk, RawClient},
    server::{serve_sse, TestServer},
    sources::{DropFlag, Guarded},
    within,
};
use tower_sse::{Event, Overflow, SseLayer, SseResponse, SseStats};

/// An endless source: one event every 10 ms.
fn ticking() -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_millis(10)))
        .enumerate()
        .map(|(i, _)| Ok(Event::new().data(i.to_string())))
}

/// An open source that never says anything.
fn silent() -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures_util::stream::pending()
}

async fn guarded_server<St>(layer: SseLayer, source: fn() -> St) -> (TestServer, SseStats, DropFlag)
where
    St: futures_core::Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let stats = layer.stats();
    let flag = DropFlag::new();
    let server = serve_sse(layer, {
        let flag = flag.clone();
        move |_req| {
            let source = Guarded::new(source(), &flag);
            async move { SseResponse::new(source) }
        }
    })
    .await;
    (server, stats, flag)
}

async fn raw_client_leaves(layer: SseLayer, read_an_event: bool) {
    let (server, stats, flag) = if read_an_event {
        guarded_server(layer, ticking).await
    } else {
        guarded_server(layer, silent).await
    };
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    if read_an_event {
        assert!(matches!(client.read_chunk().await, Chunk::Data(_)));
    }
    support::wait_until("the stream to open", || stats.open_streams() == 1).await;
    assert!(
        !flag.is_set(),
        "the source was dropped while the client was there"
    );

    drop(client);
    within("the source to be dropped", flag.dropped()).await;
    support::wait_until("the stream to close", || stats.open_streams() == 0).await;
}

#[tokio::test]
async fn source_is_dropped_when_the_client_disconnects() {
    raw_client_leaves(SseLayer::new(), true).await;
}

#[tokio::test]
async fn source_is_dropped_when_the_client_disconnects_through_the_buffer() {
    raw_client_leaves(SseLayer::new().on_overflow(Overflow::DropOldest), true).await;
}

#[tokio::test]
async fn silent_source_is_dropped_when_the_client_disconnects() {
    raw_client_leaves(SseLayer::new().no_heartbeat(), false).await;
}

#[tokio::test]
async fn silent_source_is_dropped_when_the_client_disconnects_through_the_buffer() {
    raw_client_leaves(
        SseLayer::new()
            .no_heartbeat()
            .on_overflow(Overflow::DropOldest),
        false,
    )
    .await;
}

#[tokio::test]
async fn source_is_dropped_when_a_reqwest_client_drops_the_response() {
    let (server, stats, flag) = guarded_server(SseLayer::new(), ticking).await;
    let res = within("response", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    let mut body = res.bytes_stream();
    within("a frame", body.next()).await.unwrap().unwrap();
    assert!(!flag.is_set());
    drop(body);
    within("the source to be dropped", flag.dropped()).await;
    support::wait_until("the stream to close", || stats.open_streams() == 0).await;
}

/// Always ready, never `Pending` (like `futures::stream::repeat`, or an iterator
/// over a large backlog), until its own deadline: then it ends and records that it
/// ran out by itself (so that a regression fails the test instead of hanging it).
struct AlwaysReady {
    n: u64,
    deadline: std::time::Instant,
    ran_out: Arc<AtomicBool>,
}

impl futures_core::Stream for AlwaysReady {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if std::time::Instant::now() >= self.deadline {
            self.ran_out.store(true, Ordering::SeqCst);
            return Poll::Ready(None);
        }
        self.n += 1;
        Poll::Ready(Some(Ok(Event::new().data(self.n.to_string()))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_ready_source_is_dropped_when_the_client_disconnects_through_the_buffer() {
    // The buffer's task drains the source; it must still let the connection run and
    // be stopped when the client leaves.
    let ran_out = Arc::new(AtomicBool::new(false));
    let flag = DropFlag::new();
    let layer = SseLayer::new().on_overflow(Overflow::DropOldest);
    let server = serve_sse(layer, {
        let flag = flag.clone();
        let ran_out = ran_out.clone();
        move |_req| {
            let source = AlwaysReady {
                n: 0,
                deadline: std::time::Instant::now() + Duration::from_secs(3),
                ran_out: ran_out.clone(),
            };
            let source = Guarded::new(source, &flag);
            async move { SseResponse::new(source) }
        }
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    assert!(matches!(client.read_chunk().await, Chunk::Data(_)));
    assert!(
        !ran_out.load(Ordering::SeqCst),
        "the first events only came once the source ran out"
    );
    drop(client);
    within("the source to be dropped", flag.dropped()).await;
    assert!(
        !ran_out.load(Ordering::SeqCst),
        "the source was not dropped when the client left: it ran out by itself"
    );
}
