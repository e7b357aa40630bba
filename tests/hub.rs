//! The fan-out hub (feature `hub`) checked from outside: subscriptions polled in
//! process where the point is what they yield (shared bytes, lag), and otherwise
//! subscriptions served by an [`SseLayer`] on a real hyper server and read over HTTP
//! by reqwest + eventsource-stream or by the raw client (exact bytes, clean end).
//!
//! Ids: the hub numbers each topic's events `0, 1, 2, …`, so the ids a client sees
//! are the order of publication.
#![cfg(feature = "hub")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use eventsource_stream::{Event as SseEvent, EventStreamError, Eventsource as _};
use futures_core::Stream;
use futures_util::{stream, StreamExt as _};
use http::Request;
use hyper::body::Incoming;
use support::{
    client::{http_client, Chunk, RawClient},
    server::{serve_sse_with, ServerOptions, TestServer},
    wait_until,
    wire::{blocks, concat, field},
    within,
};
use tower_sse::{
    hub::{History, Hub, Lag, Resume, Subscription, TopicStats},
    BufferLimits, Event, LastEventId, Message, Overflow, SseLayer, SseResponse,
};

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

const TOPIC: &str = "t";

/// Event `n` as the tests publish it: data `e<n>`, the id left to the hub.
fn event(n: u64) -> Event {
    Event::new().data(format!("e{n}"))
}

/// Publishes events `range` to `topic`, checking the id the hub gave each one.
async fn publish_range(hub: &Hub, topic: &str, range: std::ops::Range<u64>) {
    for n in range {
        let published = hub.publish(topic, event(n)).await.unwrap();
        assert_eq!(published.seq, n);
        assert_eq!(&*published.id, n.to_string());
    }
}

fn stats(hub: &Hub, topic: &str) -> TopicStats {
    hub.topic_stats(topic)
        .unwrap_or_else(|| panic!("topic {topic:?} exists"))
}

fn subscribers(hub: &Hub, topic: &str) -> usize {
    hub.topic_stats(topic).map_or(0, |s| s.subscribers)
}

async fn wait_subscribers(hub: &Hub, topic: &str, n: usize) {
    wait_until(&format!("{n} subscribers of {topic:?}"), || {
        subscribers(hub, topic) == n
    })
    .await;
}

/// The source an [`App`] answers with: an optional refresh event, then the
/// subscription.
type HubStream =
    stream::Chain<stream::Iter<std::vec::IntoIter<Result<Message, Infallible>>>, Subscription>;

/// The `Last-Event-ID` a subscription was asked for and how it started.
type Started = (Option<String>, Resume);

/// A handler serving one hub topic: it subscribes with the request's `Last-Event-ID`,
/// records how the subscription started and, when asked to, sends a client whose id
/// is unknown a `refresh` event before the live events.
#[derive(Clone)]
struct App {
    hub: Hub,
    /// The `Last-Event-ID` and [`Resume`] of every subscription, in order.
    resumes: Arc<Mutex<Vec<Started>>>,
    refresh: bool,
}

impl App {
    fn new(hub: Hub) -> Self {
        Self {
            hub,
            resumes: Arc::default(),
            refresh: false,
        }
    }

    fn with_refresh(hub: Hub) -> Self {
        Self {
            refresh: true,
            ..Self::new(hub)
        }
    }

    async fn handle(self, last: Option<LastEventId>) -> SseResponse<HubStream> {
        let sub = self.hub.subscribe(TOPIC, last.as_ref()).await;
        let resume = sub.resume();
        self.resumes
            .lock()
            .unwrap()
            .push((last.map(LastEventId::into_string), resume));
        let mut first = Vec::new();
        if self.refresh && resume == Resume::Unknown {
            // What a real handler would send: the whole current state. Here, how many
            // events the topic has had.
            let published = self.hub.topic_stats(TOPIC).map_or(0, |s| s.published);
            let refresh = Event::new()
                .event("refresh")
                .unwrap()
                .data(format!("published {published}"));
            first.push(Ok(Message::Event(refresh)));
        }
        SseResponse::new(stream::iter(first).chain(sub))
    }

    async fn serve(&self, layer: SseLayer) -> TestServer {
        self.serve_with(layer, ServerOptions::default()).await
    }

    async fn serve_with(&self, layer: SseLayer, opts: ServerOptions) -> TestServer {
        let app = self.clone();
        serve_sse_with(layer, opts, move |req: Request<Incoming>| {
            let last = req.extensions().get::<LastEventId>().cloned();
            app.clone().handle(last)
        })
        .await
    }

    fn resumes(&self) -> Vec<Started> {
        self.resumes.lock().unwrap().clone()
    }
}

type SseStream =
    Pin<Box<dyn Stream<Item = Result<SseEvent, EventStreamError<reqwest::Error>>> + Send>>;

/// An SSE request to `url` (with `Last-Event-ID: last` if given), parsed by
/// eventsource-stream.
async fn connect(client: &reqwest::Client, url: &str, last: Option<&str>) -> SseStream {
    let mut req = client.get(url).header("accept", "text/event-stream");
    if let Some(id) = last {
        req = req.header("last-event-id", id);
    }
    let res = within("response head", req.send()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    Box::pin(res.bytes_stream().eventsource())
}

/// The next event, or `None` at the end of the stream.
async fn next_event(events: &mut SseStream) -> Option<SseEvent> {
    within("the next event", events.next())
        .await
        .map(|event| event.expect("a well-formed event stream"))
}

/// The next `n` events, each a published one (`id: k`, `data: e<k>`); their ids.
async fn next_ids(events: &mut SseStream, n: usize) -> Vec<u64> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let event = next_event(events).await.expect("an event, not the end");
        ids.push(published_id(&event));
    }
    ids
}

/// The id of a published event, checking that its data matches.
fn published_id(event: &SseEvent) -> u64 {
    assert_eq!(event.event, "message", "a published event: {event:?}");
    let id: u64 = event.id.parse().expect("a hub-assigned id");
    assert_eq!(event.data, format!("e{id}"));
    id
}

/// Raw SSE blocks read until one has `id: last`; the text of all of them.
async fn raw_until_id(client: &mut RawClient, last: u64) -> String {
    let needle = format!("id: {last}\n");
    let mut text = String::new();
    while !text.contains(&needle) {
        match client.read_chunk().await {
            Chunk::Data(data) => text.push_str(std::str::from_utf8(&data).unwrap()),
            end => panic!("the stream ended ({end:?}) before id {last}: {text:?}"),
        }
    }
    text
}

/// The next item of a subscription polled in process, `None` at its end.
async fn next_message(sub: &mut Subscription) -> Option<Message> {
    within("the subscription's next item", sub.next())
        .await
        .map(|item| item.unwrap_or_else(|never: Infallible| match never {}))
}

/// Its next item, which must be an event encoded by the hub; its bytes.
async fn next_encoded(sub: &mut Subscription) -> bytes::Bytes {
    match next_message(sub).await {
        Some(Message::Encoded(encoded)) => encoded.into_bytes(),
        other => panic!("expected an encoded event, got {other:?}"),
    }
}

/// Whether `sub` has nothing to yield now.
fn is_pending(sub: &mut Subscription) -> bool {
    futures_util::FutureExt::now_or_never(sub.next()).is_none()
}

/// A small xorshift generator, seeded per client: reproducible "random" points.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

// ---------------------------------------------------------------------------------
// Encode once
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn each_event_is_encoded_once_and_every_subscription_shares_its_bytes() {
    let hub = Hub::new();
    let mut subs = Vec::new();
    for _ in 0..100 {
        subs.push(hub.subscribe(TOPIC, None).await);
    }
    assert!(subs.iter().all(|sub| sub.resume() == Resume::Live));
    assert_eq!(stats(&hub, TOPIC).subscribers, 100);

    let big = "x".repeat(4096);
    let events = [
        Event::new().data("small"),
        Event::new().event("big").unwrap().data(big.clone()),
        Event::new().data("multi\nline"),
    ];
    for event in events {
        hub.publish(TOPIC, event).await.unwrap();
    }
    let expected = [
        "id: 0\ndata: small\n\n".to_owned(),
        format!("id: 1\nevent: big\ndata: {big}\n\n"),
        "id: 2\ndata: multi\ndata: line\n\n".to_owned(),
    ];
    for want in &expected {
        let mut shared: Option<(*const u8, usize)> = None;
        for sub in &mut subs {
            let bytes = next_encoded(sub).await;
            assert_eq!(&bytes[..], want.as_bytes());
            let this = (bytes.as_ptr(), bytes.len());
            // One allocation for everybody: the same pointer and length, not a copy.
            assert_eq!(*shared.get_or_insert(this), this, "bytes were copied");
        }
    }
    for sub in &mut subs {
        assert!(is_pending(sub), "nothing more was published");
    }
    let stats = stats(&hub, TOPIC);
    assert_eq!(stats.published, 3);
    assert_eq!(stats.history_events, 3);
    assert_eq!(
        stats.history_bytes,
        expected.iter().map(String::len).sum::<usize>()
    );
}

#[tokio::test]
async fn an_event_with_its_own_id_keeps_it() {
    let hub = Hub::new();
    let mut sub = hub.subscribe(TOPIC, None).await;
    let published = hub
        .publish(TOPIC, Event::new().id("order-17").unwrap().data("a"))
        .await
        .unwrap();
    assert_eq!((&*published.id, published.seq), ("order-17", 0));
    assert_eq!(
        &next_encoded(&mut sub).await[..],
        b"id: order-17\ndata: a\n\n"
    );
    // A client that saw it resumes after it.
    hub.publish(TOPIC, event(1)).await.unwrap();
    let resumed = hub
        .subscribe(TOPIC, Some(&LastEventId::new("order-17")))
        .await;
    assert_eq!(resumed.resume(), Resume::Replay { missed: 1 });
}

// ---------------------------------------------------------------------------------
// Many subscribers over HTTP
// ---------------------------------------------------------------------------------

/// `clients` HTTP subscribers of `app`'s topic, each reading `events` events while
/// they are published, `pause` after every `every` publishes (none: a yield); the
/// ids each one received.
async fn http_subscribers_read(
    app: &App,
    clients: usize,
    events: u64,
    every: u64,
    pause: Option<Duration>,
) -> Vec<Vec<u64>> {
    let server = app.serve(SseLayer::new()).await;
    let url = server.url("/");
    let client = http_client();
    let mut streams = Vec::new();
    for _ in 0..clients {
        streams.push(connect(&client, &url, None).await);
    }
    wait_subscribers(&app.hub, TOPIC, clients).await;
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut events_of| {
            tokio::spawn(async move { next_ids(&mut events_of, events as usize).await })
        })
        .collect();
    for n in 0..events {
        app.hub.publish(TOPIC, event(n)).await.unwrap();
        if n % every == 0 {
            match pause {
                Some(pause) => tokio::time::sleep(pause).await,
                None => tokio::task::yield_now().await,
            }
        }
    }
    let mut received = Vec::new();
    for reader in readers {
        received.push(within("a reader", reader).await.unwrap());
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_http_subscribers_each_receive_every_event_in_order() {
    const CLIENTS: usize = 50;
    const EVENTS: u64 = 200;
    let hub = Hub::new();
    let app = App::new(hub.clone());
    let received = http_subscribers_read(&app, CLIENTS, EVENTS, 20, None).await;
    let want: Vec<u64> = (0..EVENTS).collect();
    assert_eq!(received.len(), CLIENTS);
    for ids in received {
        assert_eq!(ids, want);
    }
    assert!(app
        .resumes()
        .iter()
        .all(|resume| *resume == (None, Resume::Live)));
    let stats = stats(&hub, TOPIC);
    assert_eq!((stats.published, stats.lagged), (EVENTS, 0));
}

// ---------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_known_last_event_id_replays_what_was_missed_then_goes_live() {
    let hub = Hub::new();
    publish_range(&hub, TOPIC, 0..5).await;

    // In process.
    let mut sub = hub.subscribe(TOPIC, Some(&LastEventId::new("2"))).await;
    assert_eq!(sub.resume(), Resume::Replay { missed: 2 });
    assert_eq!(&next_encoded(&mut sub).await[..], b"id: 3\ndata: e3\n\n");
    assert_eq!(&next_encoded(&mut sub).await[..], b"id: 4\ndata: e4\n\n");
    assert!(is_pending(&mut sub));
    // The newest id: nothing missed.
    let latest = hub.subscribe(TOPIC, Some(&LastEventId::new("4"))).await;
    assert_eq!(latest.resume(), Resume::Replay { missed: 0 });
    drop((sub, latest));

    // Over HTTP.
    let app = App::new(hub.clone());
    let server = app.serve(SseLayer::new()).await;
    let mut events = connect(&http_client(), &server.url("/"), Some("2")).await;
    assert_eq!(next_ids(&mut events, 2).await, [3, 4]);
    publish_range(&hub, TOPIC, 5..7).await;
    assert_eq!(next_ids(&mut events, 2).await, [5, 6]);
    assert_eq!(
        app.resumes(),
        [(Some("2".to_owned()), Resume::Replay { missed: 2 })]
    );
}

/// A publisher task publishes without pause while clients hang up after a random
/// number of events and come back with their `Last-Event-ID`: across all their
/// connections every client sees each id exactly once, in order (no duplicate and
/// no gap at any replay/live seam).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_clients_see_every_id_once_across_the_seams() {
    const CLIENTS: u64 = 8;
    const EVENTS: u64 = 3000;
    let hub = Hub::with_history(History::new(100_000, 64 << 20));
    let app = App::new(hub.clone());
    let server = app.serve(SseLayer::new()).await;
    let url = server.url("/");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = http_client();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c + 1));
                let mut seen: Vec<u64> = Vec::new();
                let mut connections = 0u32;
                while seen.last() != Some(&(EVENTS - 1)) {
                    let last = seen.last().map(u64::to_string);
                    let mut events = connect(&client, &url, last.as_deref()).await;
                    connections += 1;
                    // Hang up after 0 to 40 events (0: at once, right after connecting).
                    for _ in 0..rng.below(41) {
                        let event = next_event(&mut events).await.expect("a live stream");
                        let id = published_id(&event);
                        seen.push(id);
                        if id == EVENTS - 1 {
                            break;
                        }
                    }
                }
                (seen, connections)
            })
        })
        .collect();

    // The first connection of every client is live: wait for them before publishing
    // so that every client sees id 0.
    wait_until("every client connected", || {
        app.resumes().len() >= CLIENTS as usize
    })
    .await;
    let publisher = tokio::spawn({
        let hub = hub.clone();
        async move {
            for n in 0..EVENTS {
                hub.publish(TOPIC, event(n)).await.unwrap();
                if n % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    });
    within("the publisher", publisher).await.unwrap();

    let want: Vec<u64> = (0..EVENTS).collect();
    let mut reconnects = 0;
    for client in clients {
        let (seen, connections) = within("a client", client).await.unwrap();
        if let Some(i) = seen.windows(2).position(|w| w[1] != w[0] + 1) {
            panic!("ids {} then {} across a seam", seen[i], seen[i + 1]);
        }
        assert_eq!(seen, want);
        reconnects += connections - 1;
    }
    assert!(reconnects >= 100, "only {reconnects} reconnects");
    // Each reconnect found its id in the history.
    let resumes = app.resumes();
    for (last, resume) in &resumes {
        match (last, resume) {
            (None, Resume::Live) | (Some(_), Resume::Replay { .. }) => {}
            other => panic!("unexpected start {other:?}"),
        }
    }
    assert_eq!(
        resumes.iter().filter(|(last, _)| last.is_some()).count(),
        reconnects as usize
    );
    assert_eq!(stats(&hub, TOPIC).lagged, 0);
}

#[tokio::test]
async fn an_unknown_or_expired_id_is_reported_and_the_handler_refreshes_first() {
    // Keeps only the 3 newest events: after 10, ids 0..=6 are gone.
    let hub = Hub::with_history(History::new(3, 1 << 20));
    publish_range(&hub, TOPIC, 0..10).await;
    for id in ["0", "6", "not-an-id", ""] {
        let sub = hub.subscribe(TOPIC, Some(&LastEventId::new(id))).await;
        assert_eq!(sub.resume(), Resume::Unknown, "Last-Event-ID {id:?}");
    }
    let sub = hub.subscribe(TOPIC, Some(&LastEventId::new("7"))).await;
    assert_eq!(sub.resume(), Resume::Replay { missed: 2 });
    drop(sub);

    let app = App::with_refresh(hub.clone());
    let server = app.serve(SseLayer::new()).await;
    let client = http_client();
    let mut events = connect(&client, &server.url("/"), Some("5")).await;
    let refresh = next_event(&mut events).await.unwrap();
    assert_eq!(refresh.event, "refresh");
    assert_eq!(refresh.data, "published 10");
    // Then only live events (nothing from the history: the refresh covers it).
    publish_range(&hub, TOPIC, 10..12).await;
    assert_eq!(next_ids(&mut events, 2).await, [10, 11]);

    // A known id gets no refresh: the missed events instead.
    let mut events = connect(&client, &server.url("/"), Some("9")).await;
    assert_eq!(next_ids(&mut events, 2).await, [10, 11]);
    assert_eq!(
        app.resumes(),
        [
            (Some("5".to_owned()), Resume::Unknown),
            (Some("9".to_owned()), Resume::Replay { missed: 2 }),
        ]
    );
}

// ---------------------------------------------------------------------------------
// Lag
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn lag_end_ends_a_subscription_that_fell_behind_the_history() {
    let hub = Hub::with(History::new(4, 1 << 20), Lag::End);
    let mut laggard = hub.subscribe(TOPIC, None).await;
    let mut keeping_up = hub.subscribe(TOPIC, None).await;
    publish_range(&hub, TOPIC, 0..2).await;
    for sub in [&mut laggard, &mut keeping_up] {
        assert_eq!(&next_encoded(sub).await[..], b"id: 0\ndata: e0\n\n");
    }
    // Exactly the history's worth behind: still fine.
    publish_range(&hub, TOPIC, 2..5).await;
    let mut ids = Vec::new();
    for _ in 1..5 {
        ids.push(next_encoded(&mut keeping_up).await);
    }
    assert_eq!(&ids[3][..], b"id: 4\ndata: e4\n\n");
    // One more: the laggard's next event (id 1) is gone.
    publish_range(&hub, TOPIC, 5..6).await;
    assert_eq!(stats(&hub, TOPIC).lagged, 0, "lag is seen when polled");
    assert!(
        next_message(&mut laggard).await.is_none(),
        "the stream ends"
    );
    assert!(
        next_message(&mut laggard).await.is_none(),
        "and stays ended"
    );
    assert_eq!(stats(&hub, TOPIC).lagged, 1);
    // The other subscription is unaffected.
    assert_eq!(
        &next_encoded(&mut keeping_up).await[..],
        b"id: 5\ndata: e5\n\n"
    );
    drop(laggard);
    assert_eq!(stats(&hub, TOPIC).subscribers, 1);
}

#[tokio::test]
async fn lag_event_reports_the_exact_number_lost_then_goes_on() {
    let gap = Lag::event(|lost| Event::new().event("gap").unwrap().data(lost.to_string()));
    let hub = Hub::with(History::new(4, 1 << 20), gap);
    let mut sub = hub.subscribe(TOPIC, None).await;
    publish_range(&hub, TOPIC, 0..10).await;
    // Ids 0..=5 are gone; 6..=9 are kept.
    match next_message(&mut sub).await {
        Some(Message::Event(gap)) => {
            assert_eq!(gap.event_str(), Some("gap"));
            assert_eq!(gap.data_str(), Some("6"));
        }
        other => panic!("expected the gap event, got {other:?}"),
    }
    for n in 6..10 {
        let want = format!("id: {n}\ndata: e{n}\n\n");
        assert_eq!(&next_encoded(&mut sub).await[..], want.as_bytes());
    }
    assert!(is_pending(&mut sub));
    publish_range(&hub, TOPIC, 10..11).await;
    assert_eq!(&next_encoded(&mut sub).await[..], b"id: 10\ndata: e10\n\n");
    assert_eq!(stats(&hub, TOPIC).lagged, 1);

    // Lagging again is counted again, with its own count.
    publish_range(&hub, TOPIC, 11..20).await;
    match next_message(&mut sub).await {
        Some(Message::Event(gap)) => assert_eq!(gap.data_str(), Some("5")),
        other => panic!("expected the gap event, got {other:?}"),
    }
    assert_eq!(stats(&hub, TOPIC).lagged, 2);
}

/// The test runs on one thread, so the server cannot poll the subscription while the
/// test publishes a burst without yielding: the subscriber falls behind for certain.
#[tokio::test(flavor = "current_thread")]
async fn over_http_lag_end_ends_the_response_cleanly() {
    let hub = Hub::with(History::new(4, 1 << 20), Lag::End);
    let app = App::new(hub.clone());
    let server = app.serve(SseLayer::new().no_heartbeat()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    wait_subscribers(&hub, TOPIC, 1).await;

    publish_range(&hub, TOPIC, 0..1).await;
    assert_eq!(raw_until_id(&mut client, 0).await, "id: 0\ndata: e0\n\n");
    publish_range(&hub, TOPIC, 1..10).await;
    // The terminating chunk: a clean end the browser answers by reconnecting.
    let (chunks, end) = within("the end", client.read_to_end()).await;
    assert_eq!(end, Chunk::End);
    assert!(chunks.is_empty(), "nothing after the lag: {chunks:?}");
    assert_eq!(stats(&hub, TOPIC).lagged, 1);
    wait_subscribers(&hub, TOPIC, 0).await;
}

#[tokio::test(flavor = "current_thread")]
async fn over_http_lag_event_sends_the_gap_then_the_kept_events() {
    let gap = Lag::event(|lost| Event::new().event("gap").unwrap().data(lost.to_string()));
    let hub = Hub::with(History::new(4, 1 << 20), gap);
    let app = App::new(hub.clone());
    let server = app.serve(SseLayer::new().no_heartbeat()).await;
    let mut events = connect(&http_client(), &server.url("/"), None).await;
    wait_subscribers(&hub, TOPIC, 1).await;

    publish_range(&hub, TOPIC, 0..1).await;
    assert_eq!(next_ids(&mut events, 1).await, [0]);
    publish_range(&hub, TOPIC, 1..10).await;
    let gap = next_event(&mut events).await.unwrap();
    assert_eq!((gap.event.as_str(), gap.data.as_str()), ("gap", "5"));
    assert_eq!(next_ids(&mut events, 4).await, [6, 7, 8, 9]);
    publish_range(&hub, TOPIC, 10..11).await;
    assert_eq!(next_ids(&mut events, 1).await, [10]);
    assert_eq!(stats(&hub, TOPIC).lagged, 1);
}

/// A client that reads nothing at all, on small socket buffers, while 1 KiB events
/// are published well past the history: the publisher never waits for it, the other
/// subscribers get every event, and the frozen client, once it reads, gets what was
/// in flight, in order, then a clean end ([`Lag::End`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_http_subscriber_blocks_neither_the_publisher_nor_the_others() {
    const READERS: usize = 10;
    const EVENTS: u64 = 2000;
    const HISTORY: usize = 512;
    let hub = Hub::with(History::new(HISTORY, 4 << 20), Lag::End);
    let app = App::new(hub.clone());
    let opts = ServerOptions {
        send_buffer: Some(4096),
        max_buf_size: Some(8192),
    };
    let server = app.serve_with(SseLayer::new().no_heartbeat(), opts).await;

    let mut frozen = RawClient::connect_with_recv_buffer(server.addr, 4096).await;
    frozen.get("/", &[]).await;
    assert_eq!(frozen.read_head().await.status, 200);
    let client = http_client();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut events = connect(&client, &server.url("/"), None).await;
        readers.push(tokio::spawn(async move {
            next_ids(&mut events, EVENTS as usize).await
        }));
    }
    wait_subscribers(&hub, TOPIC, READERS + 1).await;

    let payload = "x".repeat(1024);
    for n in 0..EVENTS {
        // Ready at the first poll every time: publishing never waits for a subscriber.
        let publish = hub.publish(TOPIC, event(n).comment(payload.clone()));
        futures_util::FutureExt::now_or_never(publish)
            .expect("publish completes without waiting")
            .unwrap();
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let want: Vec<u64> = (0..EVENTS).collect();
    for reader in readers {
        assert_eq!(within("a reader", reader).await.unwrap(), want);
    }
    assert_eq!(
        stats(&hub, TOPIC).lagged,
        0,
        "the frozen client was never polled"
    );

    // Now it reads: what was in flight, from id 0 on without a hole, then the end.
    let (chunks, end) = within("the frozen client's response", frozen.read_to_end()).await;
    assert_eq!(end, Chunk::End);
    let text = String::from_utf8(concat(&chunks)).unwrap();
    let ids: Vec<u64> = blocks(&text)
        .iter()
        .map(|block| field(block, "id").unwrap().parse().unwrap())
        .collect();
    assert!(
        !ids.is_empty() && ids.len() < HISTORY,
        "{} events",
        ids.len()
    );
    assert_eq!(ids, (0..ids.len() as u64).collect::<Vec<_>>());
    assert_eq!(stats(&hub, TOPIC).lagged, 1);
}

// ---------------------------------------------------------------------------------
// Topics
// ---------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn topics_live_while_subscribed_or_remembered_and_are_forgotten_after() {
    let age = Duration::from_secs(10);
    let hub = Hub::with_history(History::new(100, 1 << 20).max_age(age));
    assert!(hub.topics().is_empty());
    assert!(hub.topic_stats("a").is_none());

    // Created on demand by a subscription, with readable counts.
    let a1 = hub.subscribe("a", None).await;
    let a2 = hub.subscribe("a", None).await;
    assert_eq!(hub.topics(), ["a"]);
    assert_eq!(
        (stats(&hub, "a").subscribers, stats(&hub, "a").published),
        (2, 0)
    );
    // ... or by a publication.
    hub.publish("b", event(0)).await.unwrap();
    let mut topics = hub.topics();
    topics.sort();
    assert_eq!(topics, ["a", "b"]);
    assert_eq!(stats(&hub, "b").subscribers, 0);
    assert_eq!(stats(&hub, "b").history_events, 1);

    // "a" has no history: gone with its last subscriber.
    drop(a1);
    assert_eq!(stats(&hub, "a").subscribers, 1);
    drop(a2);
    assert!(hub.topic_stats("a").is_none());

    // "c" has history: its last subscriber leaving while the history lasts keeps it,
    // with its ids, for a client that comes back within the age.
    let c = hub.subscribe("c", None).await;
    publish_range(&hub, "c", 0..3).await;
    drop(c);
    assert_eq!(stats(&hub, "c").subscribers, 0);
    tokio::time::advance(age / 2).await;
    let back = hub.subscribe("c", Some(&LastEventId::new("0"))).await;
    assert_eq!(back.resume(), Resume::Replay { missed: 2 });
    // Its last subscriber leaving after the history has expired forgets it.
    tokio::time::advance(age).await;
    drop(back);
    assert!(hub.topic_stats("c").is_none());
    assert!(!hub.topics().contains(&"c".to_owned()));

    // A topic that is forgotten starts again from id 0.
    let published = hub.publish("c", event(0)).await.unwrap();
    assert_eq!(published.seq, 0);
}

// ---------------------------------------------------------------------------------
// Behind each overflow policy
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_works_behind_every_overflow_policy() {
    const EVENTS: u64 = 100;
    for policy in [
        Overflow::Wait,
        Overflow::DropOldest,
        Overflow::DropNewest,
        Overflow::Disconnect,
    ] {
        let hub = Hub::new();
        let app = App::new(hub.clone());
        let server = app.serve(SseLayer::new().on_overflow(policy)).await;
        let client = http_client();
        let mut first = connect(&client, &server.url("/"), None).await;
        let mut second = connect(&client, &server.url("/"), None).await;
        wait_subscribers(&hub, TOPIC, 2).await;
        let readers = [&mut first, &mut second].map(|events| next_ids(events, EVENTS as usize));
        let publish = async {
            publish_range(&hub, TOPIC, 0..EVENTS).await;
        };
        let (ids, ()) = tokio::join!(futures_util::future::join_all(readers), publish);
        let want: Vec<u64> = (0..EVENTS).collect();
        assert_eq!(ids, [want.clone(), want], "{policy:?}");

        // Replay works the same behind the policy.
        let mut resumed = connect(&client, &server.url("/"), Some("89")).await;
        assert_eq!(
            next_ids(&mut resumed, 10).await,
            (90..100).collect::<Vec<_>>(),
            "{policy:?}"
        );
        drop((first, second, resumed));
        wait_subscribers(&hub, TOPIC, 0).await;
    }
}

/// With [`Overflow::DropOldest`] the layer drains the subscription into its own
/// bounded buffer, so a client that does not read never lags behind the hub: the
/// layer drops (and marks the gap) instead, and the hub's `lagged` stays 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_drop_oldest_a_frozen_client_loses_events_in_the_layer_not_the_hub() {
    const EVENTS: u64 = 1000;
    let hub = Hub::new();
    let app = App::new(hub.clone());
    let layer = SseLayer::new()
        .no_heartbeat()
        .buffer(BufferLimits::new(16, 64 * 1024))
        .max_frame_bytes(4096)
        .on_overflow(Overflow::DropOldest)
        .gap_event(|dropped| Event::new().event("gap").unwrap().data(dropped.to_string()));
    let stats_of_layer = layer.stats();
    let opts = ServerOptions {
        send_buffer: Some(4096),
        max_buf_size: Some(8192),
    };
    let server = app.serve_with(layer, opts).await;
    let mut frozen = RawClient::connect_with_recv_buffer(server.addr, 4096).await;
    frozen.get("/", &[]).await;
    assert_eq!(frozen.read_head().await.status, 200);
    wait_subscribers(&hub, TOPIC, 1).await;

    let payload = "x".repeat(1024);
    for n in 0..EVENTS {
        hub.publish(TOPIC, event(n).comment(payload.clone()))
            .await
            .unwrap();
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    wait_until("the layer dropped events", || {
        stats_of_layer.events_dropped() > 0
    })
    .await;

    let text = raw_until_id(&mut frozen, EVENTS - 1).await;
    let mut last: Option<u64> = None;
    let (mut received, mut gaps) = (0u64, 0u64);
    let mut missing = 0u64;
    for block in blocks(&text) {
        if field(block, "event") == Some("gap") {
            gaps += field(block, "data").unwrap().parse::<u64>().unwrap();
            continue;
        }
        let id: u64 = field(block, "id").unwrap().parse().unwrap();
        let expected = last.map_or(0, |last| last + 1);
        assert!(id >= expected, "id {id} after {last:?}");
        missing += id - expected;
        last = Some(id);
        received += 1;
    }
    assert_eq!(last, Some(EVENTS - 1));
    assert!(gaps > 0, "events were dropped");
    assert_eq!(missing, gaps, "every hole is marked by a gap with its size");
    assert_eq!(received + gaps, EVENTS);
    assert_eq!(stats(&hub, TOPIC).lagged, 0);
}

// ---------------------------------------------------------------------------------
// Coalescing (`Hub::coalesce`)
// ---------------------------------------------------------------------------------

/// Publishes `e0`…`e4` at 0, 1, 2, 25 and 27 ms (tokio's paused clock) to a hub with
/// `window`, and returns when one subscriber received each, from the start.
async fn delivery_times(window: Duration) -> Vec<(String, Duration)> {
    let hub = Hub::new().coalesce(window);
    let mut sub = hub.subscribe(TOPIC, None).await;
    let start = tokio::time::Instant::now();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..5 {
            let bytes = next_encoded(&mut sub).await;
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            got.push((field(&text, "data").unwrap().to_owned(), start.elapsed()));
        }
        got
    });
    for (n, at_ms) in [(0, 0), (1, 1), (2, 2), (3, 25), (4, 27)] {
        tokio::time::sleep_until(start + Duration::from_millis(at_ms)).await;
        hub.publish(TOPIC, event(n)).await.unwrap();
    }
    within("the reader", reader).await.unwrap()
}

fn at(data: &str, ms: u64) -> (String, Duration) {
    (data.to_owned(), Duration::from_millis(ms))
}

#[tokio::test(start_paused = true)]
async fn a_coalescing_window_wakes_subscribers_once_per_window_and_never_delays_a_quiet_topic() {
    // Without a window, every event is delivered when it is published.
    let immediate = delivery_times(Duration::ZERO).await;
    assert_eq!(
        immediate,
        [
            at("e0", 0),
            at("e1", 1),
            at("e2", 2),
            at("e3", 25),
            at("e4", 27)
        ]
    );
    // With 10 ms: e0 opens a window and goes out at once; e1 and e2 wait for its end
    // (10 ms) and go out together; e3 comes after a quiet window (the last wake was
    // at 10 ms) and goes out at once; e4, 2 ms later, waits for 35 ms.
    let coalesced = delivery_times(Duration::from_millis(10)).await;
    assert_eq!(
        coalesced,
        [
            at("e0", 0),
            at("e1", 10),
            at("e2", 10),
            at("e3", 25),
            at("e4", 35)
        ]
    );
}

#[tokio::test]
async fn events_within_a_window_reach_the_socket_in_one_chunk() {
    let hub = Hub::new().coalesce(Duration::from_millis(300));
    let app = App::new(hub.clone());
    let server = app.serve(SseLayer::new()).await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    wait_subscribers(&hub, TOPIC, 1).await;

    // Published at once after a quiet spell: alone in its chunk.
    hub.publish(TOPIC, event(0)).await.unwrap();
    let Chunk::Data(first) = client.read_chunk().await else {
        panic!("a chunk with e0");
    };
    assert_eq!(first, b"id: 0\ndata: e0\n\n");
    // Four events 2 ms apart: the subscriber is not woken until the window ends, then
    // reads all four and the layer writes them as one HTTP chunk.
    for n in 1..5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        hub.publish(TOPIC, event(n)).await.unwrap();
    }
    let Chunk::Data(rest) = client.read_chunk().await else {
        panic!("a chunk with e1..e4");
    };
    assert_eq!(
        std::str::from_utf8(&rest).unwrap(),
        "id: 1\ndata: e1\n\nid: 2\ndata: e2\n\nid: 3\ndata: e3\n\nid: 4\ndata: e4\n\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_window_http_subscribers_still_receive_every_event_in_order() {
    const CLIENTS: usize = 20;
    const EVENTS: u64 = 300;
    let app = App::new(Hub::new().coalesce(Duration::from_millis(5)));
    let pause = Some(Duration::from_millis(1));
    let received = http_subscribers_read(&app, CLIENTS, EVENTS, 3, pause).await;
    let want: Vec<u64> = (0..EVENTS).collect();
    assert_eq!(received.len(), CLIENTS);
    for ids in received {
        assert_eq!(ids, want);
    }
}

/// The end of a window is a task on the runtime of the publish that opened it. If that
/// runtime shuts down first, the next publish wakes the subscribers itself.
#[test]
fn a_window_whose_runtime_shut_down_does_not_strand_the_subscribers() {
    let window = Duration::from_millis(20);
    let hub = Hub::new().coalesce(window);
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    first.block_on(async {
        hub.publish(TOPIC, event(0)).await.unwrap(); // opens a window
        hub.publish(TOPIC, event(1)).await.unwrap(); // schedules its end on `first`
    });
    drop(first); // the scheduled wake never runs

    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    second.block_on(async {
        let mut sub = hub.subscribe(TOPIC, Some(&LastEventId::new("1"))).await;
        // No timeout inside the reader: its timer would wake it and hide a lost wake.
        let reader = tokio::spawn(async move {
            match sub.next().await {
                Some(Ok(Message::Encoded(encoded))) => encoded.into_bytes(),
                other => panic!("expected an encoded event, got {other:?}"),
            }
        });
        tokio::task::yield_now().await; // the reader parks
                                        // Well past the end of the dead window.
        tokio::time::sleep(window * 3).await;
        hub.publish(TOPIC, event(2)).await.unwrap();
        let bytes = within("a wake after the dead window", reader)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"id: 2\ndata: e2\n\n");
    });
}
