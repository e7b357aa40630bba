//! `StreamLimit` over a real hyper server and reqwest: `reject` answers one stream
//! too many with `503` and `retry-after` and drops its source unpolled, `wait` holds
//! its response until a stream ends; responses passed through never count.
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

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_core::Stream;
use futures_util::StreamExt;
use http::{header, Response, StatusCode};
use http_body::Frame;
use http_body_util::{Full, StreamBody};
use support::{
    client::http_client,
    server::{serve_sse, TestServer},
    sources::{then_pending, DropFlag, DropGuard},
    within,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower_sse::{Event, SseLayer, SseResponse, SseStats, StreamLimit};

/// What the test knows of one source the handler built.
struct Probe {
    /// Sends the source's events; dropping it ends the source.
    feed: mpsc::UnboundedSender<Event>,
    /// Set once the layer polled the source.
    polled: Arc<AtomicBool>,
    /// Set when the layer dropped the source.
    dropped: DropFlag,
}

/// A source the test drives through its [`Probe`].
struct Probed {
    events: UnboundedReceiverStream<Event>,
    polled: Arc<AtomicBool>,
    _guard: DropGuard,
}

impl Stream for Probed {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.polled.store(true, Ordering::SeqCst);
        self.events.poll_next_unpin(cx).map(|event| event.map(Ok))
    }
}

fn probed(probes: &mpsc::UnboundedSender<Probe>) -> Probed {
    let (feed, events) = mpsc::unbounded_channel();
    let polled = Arc::new(AtomicBool::new(false));
    let dropped = DropFlag::new();
    let source = Probed {
        events: UnboundedReceiverStream::new(events),
        polled: polled.clone(),
        _guard: dropped.guard(),
    };
    probes
        .send(Probe {
            feed,
            polled,
            dropped,
        })
        .unwrap();
    source
}

/// The server: `/plain` answers a short text response, `/plain-open` a text response
/// whose body stays open, and anything else streams a [`Probed`] source (no
/// heartbeats: only the test's events go out).
async fn server(limit: StreamLimit) -> (TestServer, SseStats, mpsc::UnboundedReceiver<Probe>) {
    type PlainBody =
        StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>>;
    let layer = SseLayer::new().no_heartbeat().max_streams(limit);
    let stats = layer.stats();
    let (probes_tx, probes) = mpsc::unbounded_channel();
    let server = serve_sse(layer, move |req| {
        let res = match req.uri().path() {
            "/plain" => SseResponse::other(Response::new(Full::new(Bytes::from("plain\n")))),
            "/plain-open" => {
                let frames: PlainBody = StreamBody::new(Box::pin(then_pending(vec![Ok(
                    Frame::data(Bytes::from("plain\n")),
                )])));
                SseResponse::other(Response::new(frames))
            }
            _ => SseResponse::new(probed(&probes_tx)),
        };
        async move { res }
    })
    .await;
    (server, stats, probes)
}

type Events = Pin<Box<dyn Stream<Item = eventsource_stream::Event> + Send>>;

fn events(res: reqwest::Response) -> Events {
    Box::pin(res.bytes_stream().eventsource().map(|item| item.unwrap()))
}

async fn next_event(events: &mut Events, what: &str) -> eventsource_stream::Event {
    within(what, events.next())
        .await
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
}

async fn get(url: &str) -> reqwest::Response {
    within("response head", http_client().get(url).send())
        .await
        .unwrap()
}

async fn next_probe(probes: &mut mpsc::UnboundedReceiver<Probe>) -> Probe {
    within("the handler to build a source", probes.recv())
        .await
        .unwrap()
}

/// Opens a stream and checks that an event sent on its source arrives.
async fn open_stream(url: &str, probes: &mut mpsc::UnboundedReceiver<Probe>) -> (Events, Probe) {
    let res = get(url).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let probe = next_probe(probes).await;
    let mut events = events(res);
    probe.feed.send(Event::new().data("hello")).unwrap();
    assert_eq!(
        next_event(&mut events, "the first event").await.data,
        "hello"
    );
    (events, probe)
}

#[tokio::test]
async fn reject_answers_503_with_retry_after_beyond_the_cap_and_drops_that_source_unpolled() {
    let limit = StreamLimit::reject(2).retry_after(Duration::from_secs(7));
    let (server, stats, mut probes) = server(limit).await;
    let url = server.url("/events");

    let (a, probe_a) = open_stream(&url, &mut probes).await;
    let (mut b, probe_b) = open_stream(&url, &mut probes).await;
    assert_eq!(stats.open_streams(), 2);

    let res = get(&url).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        within("503 body", res.text()).await.unwrap(),
        "too many open streams\n"
    );
    // The handler built a third source; the layer dropped it without polling it.
    let c = next_probe(&mut probes).await;
    within("the rejected source to be dropped", c.dropped.dropped()).await;
    assert!(
        !c.polled.load(Ordering::SeqCst),
        "the rejected source was polled"
    );
    assert!(c.feed.is_closed());
    assert_eq!(stats.streams_rejected(), 1);
    assert_eq!(stats.open_streams(), 2);
    assert!(!probe_a.dropped.is_set() && !probe_b.dropped.is_set());

    // One client leaves: the server notices, drops its source, then frees its slot.
    drop(a);
    within("the first source to be dropped", probe_a.dropped.dropped()).await;
    // The slot is released just after the source is dropped, on the server's task:
    // retry (bounded) until a new stream is accepted.
    let mut refused_meanwhile = 0;
    let res = within("a new stream to be accepted", async {
        loop {
            let res = get(&url).await;
            if res.status() == StatusCode::OK {
                return res;
            }
            assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
            refused_meanwhile += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The accepted stream's source is the last one the handler built.
    let mut d = next_probe(&mut probes).await;
    while let Ok(later) = probes.try_recv() {
        d = later;
    }
    let mut d_events = events(res);
    d.feed.send(Event::new().data("for d")).unwrap();
    assert_eq!(next_event(&mut d_events, "d's event").await.data, "for d");
    assert!(d.polled.load(Ordering::SeqCst));
    assert_eq!(stats.open_streams(), 2);
    assert_eq!(stats.streams_rejected(), 1 + refused_meanwhile);

    // The stream that stayed is untouched.
    probe_b.feed.send(Event::new().data("for b")).unwrap();
    assert_eq!(next_event(&mut b, "b's event").await.data, "for b");
}

#[tokio::test]
async fn responses_passed_through_never_take_a_stream_slot() {
    let (server, stats, mut probes) = server(StreamLimit::reject(1)).await;

    // A passed-through response whose body stays open takes no slot...
    let plain_open = get(&server.url("/plain-open")).await;
    assert_eq!(plain_open.status(), StatusCode::OK);
    let mut plain_body = plain_open.bytes_stream();
    let first = within("plain frame", plain_body.next()).await.unwrap();
    assert_eq!(&first.unwrap()[..], b"plain\n");

    // ...nor do short ones, even many.
    for _ in 0..5 {
        let res = get(&server.url("/plain")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(within("plain body", res.text()).await.unwrap(), "plain\n");
    }

    // So the one SSE slot is free.
    let (_a, _probe_a) = open_stream(&server.url("/events"), &mut probes).await;
    assert_eq!(stats.open_streams(), 1);

    // With the slot taken, passed-through responses still go through.
    for _ in 0..3 {
        let res = get(&server.url("/plain")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(stats.streams_rejected(), 0);

    // Only another SSE stream is refused.
    let res = get(&server.url("/events")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stats.streams_rejected(), 1);
    assert_eq!(stats.streams_opened(), 1);
    assert_eq!(stats.open_streams(), 1);
    drop(plain_body);
}

#[tokio::test]
async fn wait_holds_the_response_head_until_a_stream_ends() {
    let (server, stats, mut probes) = server(StreamLimit::wait(2)).await;
    let url = server.url("/events");

    let (mut a, probe_a) = open_stream(&url, &mut probes).await;
    let (mut b, probe_b) = open_stream(&url, &mut probes).await;
    assert_eq!(stats.open_streams(), 2);

    let mut third = tokio::spawn(http_client().get(&url).send());
    // The handler builds the third source at once; its response waits for a slot.
    let c = next_probe(&mut probes).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut third)
            .await
            .is_err(),
        "the third response head arrived while two streams were open"
    );
    assert!(
        !c.polled.load(Ordering::SeqCst),
        "a waiting source was polled"
    );
    assert!(!c.dropped.is_set(), "a waiting source was dropped");
    assert_eq!(stats.open_streams(), 2);
    assert_eq!(stats.streams_rejected(), 0);

    // The first source finishes: its stream ends, and the third response goes out.
    probe_a.feed.send(Event::new().data("last of a")).unwrap();
    drop(probe_a.feed);
    assert_eq!(next_event(&mut a, "a's last event").await.data, "last of a");
    assert!(
        within("a's stream to end", a.next()).await.is_none(),
        "a's stream went on"
    );

    let res = within("the third response head", third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut c_events = events(res);
    c.feed.send(Event::new().data("for c")).unwrap();
    assert_eq!(next_event(&mut c_events, "c's event").await.data, "for c");
    assert_eq!(stats.open_streams(), 2);
    assert_eq!(stats.streams_opened(), 3);

    // The stream that stayed is untouched.
    probe_b.feed.send(Event::new().data("for b")).unwrap();
    assert_eq!(next_event(&mut b, "b's event").await.data, "for b");
}
