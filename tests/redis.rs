//! The hub's Redis backplane (feature `redis`) against real `redis-server` processes.
//!
//! Every test starts its own `redis-server` (Debian's package; `scripts/test.sh`
//! installs it) on a free loopback port with a temporary directory and no persistence,
//! so tests are independent and can kill and restart Redis. `REDIS_SERVER_BIN` names
//! the binary if it is not `redis-server` on the `PATH`. Without one, the tests fail:
//! they never skip.
//!
//! Two [`Hub`]s in one process stand for two instances sharing one Redis, each behind
//! an [`SseLayer`] on its own HTTP server, read by a raw SSE client over reqwest.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use http::{HeaderValue, Response};
use tower_sse::{
    hub::{History, Hub, Lag, RedisBackplane, Resume, Subscription},
    Event, LastEventId, Message, SseLayer, SseResponse,
};

use support::{
    client::http_client,
    hub::publish,
    redis_server::Redis,
    server::{serve_sse, TestServer},
    within, STEP,
};

// ---------------------------------------------------------------------------------
// A redis-server of the test's own
// ---------------------------------------------------------------------------------

impl Redis {
    /// A plain connection for looking into Redis.
    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        within(
            "connect to redis",
            client.get_multiplexed_async_connection(),
        )
        .await
        .expect("connect to redis")
    }

    /// `XLEN` of `topic`'s stream.
    async fn xlen(&self, topic: &str) -> u64 {
        let mut conn = self.conn().await;
        redis::cmd("XLEN")
            .arg(format!("tower-sse:{{{topic}}}"))
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// Channels with subscribers now (`PUBSUB CHANNELS`).
    async fn channels(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        let mut channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query_async(&mut conn)
            .await
            .unwrap();
        channels.sort();
        channels
    }
}

// ---------------------------------------------------------------------------------
// Instances and clients
// ---------------------------------------------------------------------------------

/// The layer of every test server: a heartbeat every 100 ms, to see that a stream is
/// alive while nothing is published.
fn layer() -> SseLayer {
    SseLayer::new().heartbeat(Duration::from_millis(100))
}

/// An instance: `GET /{topic}` subscribes to the hub's topic (with the request's
/// `Last-Event-ID`) and says how in the `x-resume` header.
async fn serve(hub: &Hub) -> TestServer {
    let hub = hub.clone();
    serve_sse(layer(), move |req| {
        let hub = hub.clone();
        async move {
            let topic = req.uri().path().trim_start_matches('/').to_owned();
            let last = req.extensions().get::<LastEventId>().cloned();
            let sub = hub.subscribe(&topic, last.as_ref()).await;
            let resume = format!("{:?}", sub.resume());
            let mut res = Response::new(sub);
            res.headers_mut()
                .insert("x-resume", HeaderValue::from_str(&resume).unwrap());
            SseResponse::from_response(res)
        }
    })
    .await
}

/// What an SSE client reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Event {
        id: Option<String>,
        data: String,
    },
    /// A block of comments only: a heartbeat.
    Heartbeat,
}

/// A raw SSE client: every block on the wire, heartbeats included.
struct Client {
    resume: String,
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buf: BytesMut,
    blocks: VecDeque<Item>,
}

impl Client {
    async fn get(server: &TestServer, topic: &str, last_event_id: Option<&str>) -> Self {
        let mut req = http_client().get(server.url(&format!("/{topic}")));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let res = within("response headers", req.send()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Self {
            resume: res.headers()["x-resume"].to_str().unwrap().to_owned(),
            body: Box::pin(res.bytes_stream()),
            buf: BytesMut::new(),
            blocks: VecDeque::new(),
        }
    }

    /// The next block; panics if the stream ends or nothing comes within [`STEP`].
    async fn next(&mut self) -> Item {
        loop {
            if let Some(item) = self.blocks.pop_front() {
                return item;
            }
            let chunk = within("the next SSE block", self.body.next())
                .await
                .expect("the stream is still open")
                .expect("reading the stream");
            self.buf.extend_from_slice(&chunk);
            while let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = self.buf.split_to(end + 2);
                self.blocks.push_back(parse(&block[..end]));
            }
        }
    }

    /// The next event, skipping heartbeats (within [`STEP`] in all).
    async fn event(&mut self) -> (String, String) {
        within("the next event", async {
            loop {
                if let Item::Event { id, data } = self.next().await {
                    return (id.expect("every hub event has an id"), data);
                }
            }
        })
        .await
    }

    /// `n` events.
    async fn events(&mut self, n: usize) -> Vec<(String, String)> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.event().await);
        }
        events
    }
}

fn parse(block: &[u8]) -> Item {
    let text = std::str::from_utf8(block).unwrap();
    let (mut id, mut data, mut fields) = (None, Vec::new(), 0);
    for line in text.split('\n') {
        if line.starts_with(':') {
            continue;
        }
        fields += 1;
        let (name, value) = line
            .split_once(": ")
            .unwrap_or((line.trim_end_matches(':'), ""));
        match name {
            "id" => {
                assert!(id.is_none(), "one id line per event: {text:?}");
                id = Some(value.to_owned());
            }
            "data" => data.push(value),
            _ => {}
        }
    }
    if fields == 0 {
        Item::Heartbeat
    } else {
        Item::Event {
            id,
            data: data.join("\n"),
        }
    }
}

/// A Redis stream id as numbers.
fn stream_id(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("<ms>-<seq>");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// The next event of a subscription as its raw bytes.
async fn next_bytes(sub: &mut Subscription) -> Bytes {
    match within("an event", sub.next()).await {
        Some(Ok(Message::Encoded(event))) => event.into_bytes(),
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_one_instance_reaches_subscribers_on_the_other() {
    let redis = Redis::start().await;
    let a = redis.hub().await;
    let b = redis.hub().await;
    let (server_a, server_b) = (serve(&a).await, serve(&b).await);
    let mut on_a = Client::get(&server_a, "news", None).await;
    let mut on_b = Client::get(&server_b, "news", None).await;
    assert_eq!(
        (on_a.resume.as_str(), on_b.resume.as_str()),
        ("Live", "Live")
    );

    let mut published = Vec::new();
    for (i, hub) in [&a, &b, &a, &a, &b].into_iter().enumerate() {
        let data = format!("event {i}");
        published.push((publish(hub, "news", data.clone()).await, data));
    }
    let seen_on_a = on_a.events(5).await;
    let seen_on_b = on_b.events(5).await;
    // Redis gave the ids; both instances send the same events, ids and order.
    assert_eq!(seen_on_b, published);
    assert_eq!(seen_on_a, published);
    assert!(published
        .windows(2)
        .all(|w| stream_id(&w[0].0) < stream_id(&w[1].0)));

    // The publishing hub kept nothing locally: its subscriber's copy came from Redis.
    let stats = a.topic_stats("news").unwrap();
    assert_eq!((stats.subscribers, stats.published), (1, 5));
    assert_eq!(redis.xlen("news").await, 5);

    // An id set on the event is replaced by Redis's: one id line on the wire.
    let mut sub = b.subscribe("news", None).await;
    let id = within(
        "publish",
        a.publish("news", Event::new().id("mine").unwrap().data("x")),
    )
    .await
    .unwrap()
    .id;
    assert_eq!(
        next_bytes(&mut sub).await,
        Bytes::from(format!("id: {id}\ndata: x\n\n"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_two_instances_give_one_order() {
    let redis = Redis::start().await;
    let a = redis.hub().await;
    let b = redis.hub().await;
    let mut on_a = a.subscribe("t", None).await;
    let mut on_b = b.subscribe("t", None).await;
    let publisher = |hub: Hub, name: &'static str| {
        tokio::spawn(async move {
            for i in 0..100 {
                publish(&hub, "t", format!("{name}{i}")).await;
            }
        })
    };
    let (pa, pb) = (publisher(a.clone(), "a"), publisher(b.clone(), "b"));
    let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        seen_a.push(next_bytes(&mut on_a).await);
        seen_b.push(next_bytes(&mut on_b).await);
    }
    pa.await.unwrap();
    pb.await.unwrap();
    assert_eq!(seen_a, seen_b);
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    for name in ["a", "b"] {
        // Each publisher's events in its own order.
        let mine: Vec<String> = seen_a
            .iter()
            .map(text)
            .filter_map(|t| t.split("data: ").nth(1).map(|d| d.trim_end().to_owned()))
            .filter(|d| d.starts_with(name))
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("{name}{i}")).collect();
        assert_eq!(mine, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_to_another_instance_resumes_without_gap_or_duplicate() {
    let redis = Redis::start().await;
    let a = redis.hub().await;
    // B keeps only 3 events per topic itself: the id the client saw on A is not among
    // them, so B must fetch from Redis and then join its own history at the seam.
    let b = Hub::redis(redis.url().as_str(), History::new(3, 1 << 20))
        .await
        .unwrap();
    let (server_a, server_b) = (serve(&a).await, serve(&b).await);
    let mut keeper_b = b.subscribe("t", None).await;

    let mut client = Client::get(&server_a, "t", None).await;
    let mut ids = Vec::new();
    for i in 1..=4 {
        ids.push(publish(&a, "t", i.to_string()).await);
        next_bytes(&mut keeper_b).await;
    }
    let seen = client.events(4).await;
    let last_seen = seen[3].0.clone();
    drop(client); // the client goes away...
    for i in 5..=8 {
        ids.push(publish(&a, "t", i.to_string()).await);
        next_bytes(&mut keeper_b).await;
    }
    // B's own history now holds 6, 7, 8; the client saw 4 (on A).
    assert_eq!(b.topic_stats("t").unwrap().history_events, 3);

    // ...and comes back to B.
    let mut client = Client::get(&server_b, "t", Some(&last_seen)).await;
    assert_eq!(client.resume, "Replay { missed: 4 }");
    ids.push(publish(&b, "t", "9").await);
    let got = client.events(5).await;
    let expected: Vec<(String, String)> = (5..=9)
        .map(|i| (ids[i - 1].clone(), i.to_string()))
        .collect();
    assert_eq!(got, expected, "no gap, no duplicate across the seam");
    ids.push(publish(&a, "t", "10").await);
    assert_eq!(client.event().await, (ids[9].clone(), "10".to_owned()));

    // An id still in B's history: replayed from there.
    let mut local = Client::get(&server_b, "t", Some(&ids[7])).await;
    assert_eq!(local.resume, "Replay { missed: 2 }");
    assert_eq!(
        local.events(2).await,
        vec![
            (ids[8].clone(), "9".to_owned()),
            (ids[9].clone(), "10".to_owned())
        ]
    );

    // A third instance that has never seen the topic: its reader starts with this
    // subscription, the replay comes from Redis, and what is published next arrives.
    let c = redis.hub().await;
    let server_c = serve(&c).await;
    let mut fresh = Client::get(&server_c, "t", Some(&last_seen)).await;
    assert_eq!(fresh.resume, "Replay { missed: 6 }");
    ids.push(publish(&a, "t", "11").await);
    let got: Vec<String> = fresh
        .events(7)
        .await
        .into_iter()
        .map(|(_, data)| data)
        .collect();
    assert_eq!(got, ["5", "6", "7", "8", "9", "10", "11"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_older_than_redis_keeps_is_unknown() {
    let redis = Redis::start().await;
    // MAXLEN ~ 10: Redis trims whole nodes of 100 entries, so it keeps 10 to ~110.
    let hub = Hub::redis(redis.url().as_str(), History::new(10, 1 << 20))
        .await
        .unwrap();
    let server = serve(&hub).await;
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(publish(&hub, "t", i.to_string()).await);
    }
    let kept = redis.xlen("t").await;
    assert!((10..300).contains(&kept), "XLEN {kept}");

    // The first id was trimmed away: unknown, only new events follow.
    let mut client = Client::get(&server, "t", Some(&ids[0])).await;
    assert_eq!(client.resume, "Unknown");
    let next = publish(&hub, "t", "new").await;
    assert_eq!(client.event().await, (next.clone(), "new".to_owned()));

    // The last kept ones replay.
    let sub = hub
        .subscribe("t", Some(&LastEventId::new(ids[295].clone())))
        .await;
    assert_eq!(sub.resume(), Resume::Replay { missed: 5 });
    let sub = hub.subscribe("t", Some(&LastEventId::new(next))).await;
    assert_eq!(sub.resume(), Resume::Replay { missed: 0 });
    // Not ids Redis gave out.
    for bogus in ["nope", "5", "0-0", "1-0", "01-0", ""] {
        let sub = hub.subscribe("t", Some(&LastEventId::new(bogus))).await;
        assert_eq!(sub.resume(), Resume::Unknown, "{bogus:?}");
    }
}

/// Waits until Redis has exactly `expected` subscribed channels.
async fn wait_channels(redis: &Redis, expected: &[&str], what: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let channels = redis.channels().await;
        if channels == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: channels {channels:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_subscribed_while_it_has_local_subscribers() {
    let redis = Redis::start().await;
    let hub = redis.hub().await;
    assert!(redis.channels().await.is_empty());
    let first = hub.subscribe("t", None).await;
    let second = hub.subscribe("t", None).await;
    let other = hub.subscribe("u", None).await;
    // One channel per topic, not per subscriber.
    wait_channels(&redis, &["tower-sse:{t}", "tower-sse:{u}"], "both topics").await;
    drop(first);
    drop(other);
    assert!(
        hub.topic_stats("u").is_none(),
        "released with its last subscriber"
    );
    wait_channels(&redis, &["tower-sse:{t}"], "`u` unsubscribed").await;
    drop(second);
    assert!(hub.topics().is_empty());
    wait_channels(&redis, &[], "every topic unsubscribed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_fast_without_hanging() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let started = Instant::now();
    let err = within("Hub::redis", Hub::redis(url.as_str(), History::default()))
        .await
        .expect_err("no redis there");
    assert!(err.to_string().starts_with("hub publish failed"), "{err}");
    let backplane = RedisBackplane::from_client(redis::Client::open(url.as_str()).unwrap())
        .timeout(Duration::from_millis(300));
    let hub = Hub::with_backplane(backplane, History::default(), Lag::End);
    assert!(within("publish", hub.publish("t", Event::new().data("x")))
        .await
        .is_err());
    // Subscribing still works (the stream just waits); a resume cannot be checked.
    let sub = within(
        "subscribe",
        hub.subscribe("t", Some(&LastEventId::new("1-0"))),
    )
    .await;
    assert_eq!(sub.resume(), Resume::Unknown);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_never_answers_is_bounded_by_the_timeout() {
    // Accepts connections and never answers (a hung server, a black-holed network).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let url = format!("redis://127.0.0.1:{port}/");

    let started = Instant::now();
    assert!(
        within("Hub::redis", Hub::redis(url.as_str(), History::default()))
            .await
            .is_err()
    );
    let connect_failed_in = started.elapsed();
    // Hub::redis's timeout: 2 s.
    assert!(
        connect_failed_in >= Duration::from_millis(1900)
            && connect_failed_in < Duration::from_millis(3000),
        "{connect_failed_in:?}"
    );

    let backplane = RedisBackplane::from_client(redis::Client::open(url.as_str()).unwrap())
        .timeout(Duration::from_millis(300));
    let hub = Hub::with_backplane(backplane, History::default(), Lag::End);
    let started = Instant::now();
    assert!(within("publish", hub.publish("t", Event::new().data("x")))
        .await
        .is_err());
    let publish_failed_in = started.elapsed();
    assert!(
        publish_failed_in < Duration::from_millis(1000),
        "{publish_failed_in:?}"
    );
    let started = Instant::now();
    let sub = within(
        "subscribe",
        hub.subscribe("t", Some(&LastEventId::new("1-0"))),
    )
    .await;
    assert_eq!(sub.resume(), Resume::Unknown);
    let subscribe_took = started.elapsed();
    // Waiting for the reader's start (one timeout), then the replay (another).
    assert!(
        subscribe_took < Duration::from_millis(1500),
        "{subscribe_took:?}"
    );
    eprintln!(
        "silent redis: Hub::redis failed in {connect_failed_in:?}, publish (timeout 300 ms) \
         in {publish_failed_in:?}, subscribe with an id took {subscribe_took:?}"
    );
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_stream() {
    let mut redis = Redis::start().await;
    let a = redis.hub().await;
    let b = redis.hub().await;
    let server_b = serve(&b).await;
    let mut client = Client::get(&server_b, "t", None).await;
    let e1 = publish(&a, "t", "before").await;
    assert_eq!(client.event().await, (e1.clone(), "before".to_owned()));

    // Redis dies.
    redis.kill();
    let started = Instant::now();
    let err = within(
        "publish while down",
        a.publish("t", Event::new().data("lost")),
    )
    .await
    .expect_err("publish fails while redis is down");
    let failed_in = started.elapsed();
    // Hub::redis's timeout is 2 s; a refused connection fails much sooner.
    assert!(
        failed_in < Duration::from_millis(2500),
        "{failed_in:?}: {err}"
    );
    // The open stream stays open: heartbeats go on, no event, no end.
    let mut heartbeats = 0;
    let down_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < down_until {
        assert_eq!(client.next().await, Item::Heartbeat);
        heartbeats += 1;
    }
    assert!(heartbeats >= 10, "{heartbeats} heartbeats in 3 s");
    // Resuming while Redis is down: from B's own history if the id is there, else
    // unknown (Redis cannot be asked).
    let sub = within(
        "subscribe",
        b.subscribe("t", Some(&LastEventId::new(e1.clone()))),
    )
    .await;
    assert_eq!(sub.resume(), Resume::Replay { missed: 0 });
    let elsewhere = within(
        "subscribe",
        b.subscribe("u", Some(&LastEventId::new(e1.clone()))),
    )
    .await;
    assert_eq!(elsewhere.resume(), Resume::Unknown);
    drop((sub, elsewhere));

    // Redis comes back on the same port, empty (no persistence).
    redis.restart().await;
    let back = Instant::now();
    // A publishes as soon as it can: B's reader is still waiting to retry, and
    // catches up from its last id when it does.
    let e2 = tokio::time::timeout(STEP, async {
        loop {
            match a.publish("t", Event::new().data("after")).await {
                Ok(published) => break published.id.to_string(),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("publish works again once Redis is back");
    let publish_ok_after = back.elapsed();
    let e3 = publish(&a, "t", "after 2").await;
    assert_eq!(client.event().await, (e2.clone(), "after".to_owned()));
    let delivered_after = back.elapsed();
    assert_eq!(client.event().await, (e3.clone(), "after 2".to_owned()));
    // The new stream's ids start from Redis's clock: still after the old ones.
    assert!(stream_id(&e1) < stream_id(&e2));
    eprintln!(
        "redis restart: publish failed in {failed_in:?} while down; publish ok {publish_ok_after:?} \
         and delivered on the other instance {delivered_after:?} after the restart"
    );

    // The history before the restart is gone: resuming from e1 is unknown; from e2 it
    // replays.
    // Redis lost the history before the restart: on an instance that did not keep
    // the topic, resuming from e1 is unknown, from e2 it replays. B, whose reader saw
    // e1, e2 and e3 in a row, still resumes from e1 out of its own history.
    assert_eq!(redis.xlen("t").await, 2);
    let c = redis.hub().await;
    let after_e1 = c.subscribe("t", Some(&LastEventId::new(e1.clone()))).await;
    assert_eq!(after_e1.resume(), Resume::Unknown);
    let after_e2 = c.subscribe("t", Some(&LastEventId::new(e2))).await;
    assert_eq!(after_e2.resume(), Resume::Replay { missed: 1 });
    let on_b = b.subscribe("t", Some(&LastEventId::new(e1))).await;
    assert_eq!(on_b.resume(), Resume::Replay { missed: 2 });
}
