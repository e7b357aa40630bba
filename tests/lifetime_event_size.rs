//! Two per-stream limits: `SseLayer::max_lifetime` (a stream ends cleanly after a
//! jittered lifetime, so that the client reconnects) and `SseLayer::max_event_bytes`
//! (an event too large on the wire is skipped and counted, the stream goes on).
//!
//! Timing is on tokio's paused clock (virtual time, exact and independent of the
//! machine's load), over a real hyper server where the bytes on the wire matter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use eventsource_stream::Eventsource;
use futures_core::Stream;
use futures_util::StreamExt;
use support::{
    body::{next_frame, sse_body},
    client::{http_client, Chunk, RawClient},
    server::{serve_sse, TestServer},
    sources::{then_pending, DropFlag, Guarded},
    span_capture::{self, Capture},
    wait_until,
    wire::{blocks, concat, parse_all},
    within,
};
use tokio::time::Instant;
use tower_sse::{Encode, EncodedEvent, Event, Message, Overflow, SseLayer, SseResponse, SseStats};
use tracing_subscriber::prelude::*;

// ---------------------------------------------------------------------------------
// max_lifetime
// ---------------------------------------------------------------------------------

const LIFETIME: Duration = Duration::from_secs(1);
/// Events at 0, 400 and 800 ms fall before any deadline (within [900, 1000] ms); the
/// next, at 1200 ms, after every one.
const PERIOD: Duration = Duration::from_millis(400);

/// `id: n`, `data: tick n`.
fn tick(n: u64) -> Event {
    Event::new().id_u64(n).data(format!("tick {n}"))
}

fn tick_bytes(ns: std::ops::RangeInclusive<u64>) -> Vec<u8> {
    ns.flat_map(|n| tick(n).encode().into_bytes().to_vec())
        .collect()
}

/// An endless slow source: tick 1 at once, then one tick every [`PERIOD`].
fn ticks(flag: &DropFlag) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let interval = tokio::time::interval(PERIOD);
    let source = futures_util::stream::unfold((interval, 1u64), |(mut interval, n)| async move {
        interval.tick().await;
        Some((Ok(tick(n)), (interval, n + 1)))
    });
    Guarded::new(source, flag)
}

struct TickServer {
    server: TestServer,
    stats: SseStats,
    /// One flag per stream opened.
    flags: Arc<Mutex<Vec<DropFlag>>>,
}

async fn tick_server(layer: SseLayer) -> TickServer {
    let stats = layer.stats();
    let flags = Arc::new(Mutex::new(Vec::new()));
    let server = serve_sse(layer, {
        let flags = flags.clone();
        move |_req| {
            let flag = DropFlag::new();
            flags.lock().unwrap().push(flag.clone());
            let source = ticks(&flag);
            async move { SseResponse::new(source) }
        }
    })
    .await;
    TickServer {
        server,
        stats,
        flags,
    }
}

async fn open(server: &TestServer) -> RawClient {
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    client
}

/// A stream with `max_lifetime(1 s)` ends cleanly after ticks 1 to 3 (and the retry
/// hint, if `retry` is set); a stream of a layer without it is still open after that
/// and gets tick 4.
async fn lifetime_ends_the_stream_cleanly(overflow: Overflow, retry: Option<Duration>) {
    let mut with = SseLayer::new()
        .no_heartbeat()
        .on_overflow(overflow)
        .max_lifetime(LIFETIME);
    if let Some(retry) = retry {
        with = with.lifetime_retry(retry);
    }
    let without = SseLayer::new().no_heartbeat().on_overflow(overflow);
    let with = tick_server(with).await;
    let without = tick_server(without).await;

    let mut expiring = open(&with.server).await;
    let mut control = open(&without.server).await;

    let (chunks, end) = tokio::time::timeout(Duration::from_secs(5), expiring.read_to_end())
        .await
        .expect("the stream ends at its lifetime");
    assert_eq!(end, Chunk::End, "a clean end of the body, not an abort");
    let body = concat(&chunks);
    let mut want = tick_bytes(1..=3);
    if let Some(retry) = retry {
        want.extend_from_slice(format!("retry: {}\n\n", retry.as_millis()).as_bytes());
    }
    assert_eq!(
        String::from_utf8_lossy(&body),
        String::from_utf8_lossy(&want)
    );
    // What a client library makes of it: three whole events.
    let events = parse_all(body).await;
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.id.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(got, [("1", "tick 1"), ("2", "tick 2"), ("3", "tick 3")]);

    assert_eq!(with.stats.streams_expired(), 1);
    assert_eq!(with.stats.events_sent(), 3 + u64::from(retry.is_some()));
    let flag = with.flags.lock().unwrap()[0].clone();
    within("the expired stream's source to be dropped", flag.dropped()).await;
    wait_until("the expired stream to close", || {
        with.stats.open_streams() == 0
    })
    .await;

    // The stream without a lifetime goes on past that point: tick 4 (due at 1.2 s)
    // arrives after the other stream ended.
    let mut seen = Vec::new();
    while !seen.ends_with(&tick_bytes(4..=4)) {
        match control.read_chunk().await {
            Chunk::Data(data) => seen.extend(data),
            end => panic!("the stream without a lifetime ended: {end:?}"),
        }
    }
    assert_eq!(seen, tick_bytes(1..=4));
    assert_eq!(without.stats.streams_expired(), 0);
    assert_eq!(without.stats.open_streams(), 1);
    assert!(!without.flags.lock().unwrap()[0].is_set());
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_a_stream_cleanly_after_the_events_sent_so_far() {
    lifetime_ends_the_stream_cleanly(Overflow::Wait, None).await;
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_a_stream_cleanly_through_the_buffer() {
    lifetime_ends_the_stream_cleanly(Overflow::DropOldest, None).await;
}

#[tokio::test(start_paused = true)]
async fn lifetime_retry_hint_is_the_last_event() {
    lifetime_ends_the_stream_cleanly(Overflow::Wait, Some(Duration::from_millis(1500))).await;
}

#[tokio::test(start_paused = true)]
async fn lifetime_retry_hint_is_the_last_event_through_the_buffer() {
    lifetime_ends_the_stream_cleanly(Overflow::DropOldest, Some(Duration::from_millis(1500))).await;
}

/// Streams opened at the same instant end at different instants, all within the last
/// tenth of the lifetime.
async fn lifetimes_are_jittered(layer: SseLayer) {
    const STREAMS: usize = 8;
    let max = Duration::from_secs(10);
    let layer = layer.no_heartbeat().max_lifetime(max);
    let stats = layer.stats();
    let start = Instant::now();
    let mut ends = Vec::new();
    for _ in 0..STREAMS {
        let source = then_pending(vec![Ok::<_, Infallible>(Event::new().data("hi"))]);
        let mut body = sse_body(layer.clone(), source).await;
        ends.push(tokio::spawn(async move {
            assert_eq!(
                next_frame(&mut body).await.as_deref(),
                Some(&b"data: hi\n\n"[..])
            );
            assert_eq!(next_frame(&mut body).await, None, "a clean end");
            Instant::now()
        }));
    }
    assert_eq!(Instant::now(), start, "all opened at the same instant");
    let mut lifetimes = Vec::new();
    for end in ends {
        let end = tokio::time::timeout(max * 2, end)
            .await
            .expect("every stream ends at its lifetime");
        lifetimes.push(end.unwrap() - start);
    }
    for lifetime in &lifetimes {
        // tokio's timer rounds a deadline up to its next millisecond tick.
        assert!(
            *lifetime >= max * 9 / 10 && *lifetime <= max + Duration::from_millis(1),
            "{lifetimes:?}"
        );
    }
    let mut distinct = lifetimes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), STREAMS, "{lifetimes:?}");
    assert_eq!(stats.streams_expired(), STREAMS as u64);
}

#[tokio::test(start_paused = true)]
async fn streams_opened_together_expire_at_different_instants() {
    lifetimes_are_jittered(SseLayer::new()).await;
}

#[tokio::test(start_paused = true)]
async fn streams_opened_together_expire_at_different_instants_through_the_buffer() {
    lifetimes_are_jittered(SseLayer::new().on_overflow(Overflow::DropNewest)).await;
}

#[tokio::test(start_paused = true)]
async fn what_is_queued_at_the_deadline_still_goes_out_through_the_buffer() {
    // The pump queues five events; the client reads nothing until after the deadline.
    let layer = SseLayer::new()
        .no_heartbeat()
        .on_overflow(Overflow::DropOldest)
        .max_lifetime(LIFETIME)
        .lifetime_retry(Duration::from_secs(1));
    let stats = layer.stats();
    let flag = DropFlag::new();
    let source = Guarded::new(
        then_pending((1..=5).map(|n| Ok::<_, Infallible>(tick(n))).collect()),
        &flag,
    );
    let mut body = sse_body(layer, source).await;
    tokio::time::sleep(LIFETIME * 2).await;
    let mut text = Vec::new();
    tokio::time::timeout(LIFETIME, async {
        while let Some(frame) = next_frame(&mut body).await {
            text.extend_from_slice(&frame);
        }
    })
    .await
    .expect("the stream ends");
    let mut want = tick_bytes(1..=5);
    want.extend_from_slice(b"retry: 1000\n\n");
    assert_eq!(
        String::from_utf8_lossy(&text),
        String::from_utf8_lossy(&want)
    );
    assert_eq!(stats.streams_expired(), 1);
    assert_eq!(stats.events_dropped(), 0);
    within("the source to be dropped", flag.dropped()).await;
}

/// A source that is always ready: the body never waits on it, and still sees its
/// deadline (the clock is moved by hand, since a busy runtime never lets it advance).
async fn lifetime_ends_a_busy_stream(overflow: Overflow) {
    let source = futures_util::stream::iter((1u64..).map(|n| Ok::<_, Infallible>(tick(n))));
    let layer = SseLayer::new()
        .no_heartbeat()
        .on_overflow(overflow)
        .max_frame_bytes(256)
        .max_lifetime(LIFETIME);
    let stats = layer.stats();
    let mut body = sse_body(layer, source).await;
    let mut frames = 0;
    let mut text = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        frames += 1;
        text.push_str(std::str::from_utf8(&frame).unwrap());
        assert!(frames < 1000, "still open after {frames} frames");
        tokio::time::advance(Duration::from_millis(50)).await;
    }
    // Not before 0.9 s: at least 18 frames 50 ms apart.
    assert!(frames >= 18, "{frames} frames");
    assert_eq!(stats.streams_expired(), 1);
    let blocks = blocks(&text);
    assert!(blocks.len() >= frames, "{blocks:?}");
    if overflow == Overflow::Wait {
        // Backpressure: every tick, in order, each whole.
        for (i, block) in blocks.iter().enumerate() {
            let n = i + 1;
            assert_eq!(*block, format!("id: {n}\ndata: tick {n}"));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_a_busy_stream_too() {
    lifetime_ends_a_busy_stream(Overflow::Wait).await;
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_a_busy_stream_too_through_the_buffer() {
    lifetime_ends_a_busy_stream(Overflow::DropOldest).await;
}

/// A minimal executor: the body polled on a thread without any tokio runtime.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

#[test]
fn without_a_runtime_there_is_no_lifetime_timer() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    // Outside tokio a timer could not even be made: the stream simply has no lifetime.
    let layer = SseLayer::new().max_lifetime(Duration::ZERO);
    let stats = layer.stats();
    let svc =
        tower::ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: http::Request<()>| async {
                let items = (1..=3).map(|n| Ok::<_, Infallible>(tick(n)));
                Ok::<_, Infallible>(SseResponse::new(futures_util::stream::iter(items)))
            });
    let body = block_on(async {
        let res = svc.oneshot(http::Request::new(())).await.unwrap();
        res.into_body().collect().await.unwrap().to_bytes()
    });
    assert_eq!(&body[..], &tick_bytes(1..=3)[..]);
    assert_eq!(stats.streams_expired(), 0);
}

// ---------------------------------------------------------------------------------
// max_event_bytes
// ---------------------------------------------------------------------------------

const LIMIT: usize = 64;

/// An event `id: <id>`, `data: xxx…` of exactly `len` bytes on the wire.
fn event_of_len(id: &'static str, len: usize) -> Event {
    let base = Event::new().id(id).unwrap().data("x").encoded_len() - 1;
    let event = Event::new().id(id).unwrap().data("x".repeat(len - base));
    assert_eq!(event.encoded_len(), len);
    event
}

/// Serves a finite source of `items` and returns what eventsource-stream parses off
/// the wire (the stream ends after the items).
async fn received<T>(layer: SseLayer, items: Vec<T>) -> Vec<eventsource_stream::Event>
where
    T: Encode + Clone + Send + Sync + 'static,
{
    let server = serve_sse(layer, move |_req| {
        let items = items.clone();
        async move {
            SseResponse::new(futures_util::stream::iter(
                items.into_iter().map(Ok::<_, Infallible>),
            ))
        }
    })
    .await;
    let res = within("response", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let events: Vec<_> = within(
        "the stream to end",
        res.bytes_stream().eventsource().collect::<Vec<_>>(),
    )
    .await;
    events.into_iter().map(|e| e.unwrap()).collect()
}

fn ids(events: &[eventsource_stream::Event]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

/// Small (exactly at the limit), too large (one byte over), small.
async fn too_large_event_is_skipped<T>(overflow: Overflow, into: impl Fn(Event) -> T)
where
    T: Encode + Clone + Send + Sync + 'static,
{
    let layer = SseLayer::new()
        .no_heartbeat()
        .on_overflow(overflow)
        .max_event_bytes(LIMIT);
    let stats = layer.stats();
    let items = vec![
        into(event_of_len("1", LIMIT)),
        into(event_of_len("2", LIMIT + 1)),
        into(event_of_len("3", LIMIT)),
    ];
    let events = received(layer, items).await;
    assert_eq!(ids(&events), ["1", "3"]);
    for event in &events {
        assert_eq!(event.data.len(), LIMIT - 14);
    }
    assert_eq!(stats.events_too_large(), 1);
    assert_eq!(stats.events_sent(), 2);
    assert_eq!(stats.source_errors(), 0);
}

#[tokio::test]
async fn too_large_event_is_skipped_and_the_stream_goes_on() {
    too_large_event_is_skipped(Overflow::Wait, |e| e).await;
}

#[tokio::test]
async fn too_large_event_is_skipped_through_the_buffer() {
    too_large_event_is_skipped(Overflow::DropOldest, |e| e).await;
}

#[tokio::test]
async fn too_large_encoded_event_is_skipped() {
    too_large_event_is_skipped(Overflow::Wait, |e| e.encode()).await;
}

#[tokio::test]
async fn too_large_encoded_event_is_skipped_through_the_buffer() {
    too_large_event_is_skipped(Overflow::DropNewest, |e| e.encode()).await;
}

#[tokio::test]
async fn too_large_messages_of_either_kind_are_skipped() {
    for overflow in [Overflow::Wait, Overflow::DropOldest] {
        let layer = SseLayer::new()
            .no_heartbeat()
            .on_overflow(overflow)
            .max_event_bytes(LIMIT);
        let stats = layer.stats();
        let items: Vec<Message> = vec![
            event_of_len("1", LIMIT).into(),
            event_of_len("2", LIMIT + 1).encode().into(),
            event_of_len("3", LIMIT).encode().into(),
            event_of_len("4", 10 * LIMIT).into(),
            event_of_len("5", 20).into(),
        ];
        let events = received(layer, items).await;
        assert_eq!(ids(&events), ["1", "3", "5"], "{overflow:?}");
        assert_eq!(stats.events_too_large(), 2, "{overflow:?}");
    }
}

async fn floods_of_too_large_events_are_skipped(overflow: Overflow) {
    // Always ready, far more skipped events than one poll handles, some of them far
    // larger than a frame: the small ones in between still go out, in order.
    let layer = SseLayer::new()
        .no_heartbeat()
        .on_overflow(overflow)
        .max_frame_bytes(1024)
        .max_event_bytes(LIMIT);
    let stats = layer.stats();
    let mut items: Vec<EncodedEvent> = vec![event_of_len("first", LIMIT).encode()];
    items.extend((0..1000).map(|_| event_of_len("big", LIMIT * 2).encode()));
    items.push(event_of_len("huge", 256 * 1024).encode());
    items.push(event_of_len("middle", LIMIT).encode());
    items.extend((0..300).map(|_| event_of_len("big", LIMIT * 2).encode()));
    items.push(event_of_len("last", LIMIT).encode());
    let events = received(layer, items).await;
    assert_eq!(ids(&events), ["first", "middle", "last"]);
    assert_eq!(stats.events_too_large(), 1301);
}

#[tokio::test]
async fn floods_of_too_large_events_are_skipped_in_order() {
    floods_of_too_large_events_are_skipped(Overflow::Wait).await;
}

#[tokio::test]
async fn floods_of_too_large_events_are_skipped_in_order_through_the_buffer() {
    floods_of_too_large_events_are_skipped(Overflow::DropOldest).await;
}

#[tokio::test]
async fn an_endless_run_of_too_large_events_does_not_hold_the_thread() {
    use http_body::Body;
    // Always ready and never sendable: one poll of the body must still return.
    let source = futures_util::stream::repeat_with(|| Ok::<_, Infallible>(tick(1)));
    let layer = SseLayer::new().no_heartbeat().max_event_bytes(8);
    let stats = layer.stats();
    let mut body = sse_body(layer, source).await;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let polled = body.as_mut().poll_frame(&mut cx).is_pending();
        let _ = tx.send(polled);
    });
    let pending = rx.recv_timeout(support::STEP).expect("poll_frame returned");
    assert!(pending);
    assert!(stats.events_too_large() > 0);
}

#[tokio::test]
async fn a_zero_limit_lets_no_event_through() {
    for overflow in [Overflow::Wait, Overflow::DropOldest] {
        let layer = SseLayer::new()
            .no_heartbeat()
            .on_overflow(overflow)
            .max_event_bytes(0);
        let stats = layer.stats();
        let server = serve_sse(layer, |_req| async {
            let items = (1..=3).map(|n| Ok::<_, Infallible>(tick(n)));
            SseResponse::new(futures_util::stream::iter(items))
        })
        .await;
        let mut client = open(&server).await;
        let (chunks, end) = client.read_to_end().await;
        assert_eq!(end, Chunk::End, "{overflow:?}");
        assert!(chunks.is_empty(), "{overflow:?}: {chunks:?}");
        assert_eq!(stats.events_too_large(), 3, "{overflow:?}");
        assert_eq!(stats.events_sent(), 0, "{overflow:?}");
    }
}

#[tokio::test]
async fn without_a_limit_large_events_go_out() {
    let layer = SseLayer::new().no_heartbeat();
    let stats = layer.stats();
    let items = vec![event_of_len("1", 1 << 20), event_of_len("2", LIMIT)];
    let events = received(layer, items).await;
    assert_eq!(ids(&events), ["1", "2"]);
    assert_eq!(stats.events_too_large(), 0);
}

// ---------------------------------------------------------------------------------
// tracing
// ---------------------------------------------------------------------------------

#[tokio::test(flavor = "current_thread")]
async fn the_warning_names_the_size_and_the_limit_not_the_content() {
    let capture = Capture::default();
    let _guard = span_capture::set_default(tracing_subscriber::registry().with(capture.clone()));
    for overflow in [Overflow::Wait, Overflow::DropOldest] {
        let layer = SseLayer::new()
            .no_heartbeat()
            .on_overflow(overflow)
            .max_event_bytes(LIMIT);
        let secret = Event::new().data(format!("s3cr3t {}", "x".repeat(100)));
        let size = secret.encoded_len();
        let source = futures_util::stream::iter([Ok::<_, Infallible>(secret)]);
        let mut body = sse_body(layer, source).await;
        assert_eq!(next_frame(&mut body).await, None);

        let warnings = capture.take_warnings();
        assert_eq!(warnings.len(), 1, "{overflow:?}: {warnings:?}");
        assert_eq!(warnings[0]["size"], size.to_string());
        assert_eq!(warnings[0]["limit"], LIMIT.to_string());
        for value in warnings[0].values() {
            assert!(!value.contains("s3cr3t"), "{value}");
        }
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_expired_stream_says_so_in_its_span() {
    let capture = Capture::default();
    let _guard = span_capture::set_default(tracing_subscriber::registry().with(capture.clone()));
    let expired = |spans: &[HashMap<String, String>]| {
        spans
            .iter()
            .filter_map(|r| r.get("expired").cloned())
            .collect::<Vec<_>>()
    };

    let source = then_pending(Vec::<Result<Event, Infallible>>::new());
    let mut body = sse_body(SseLayer::new().max_lifetime(LIFETIME), source).await;
    let end = tokio::time::timeout(LIFETIME * 2, next_frame(&mut body)).await;
    assert_eq!(end.expect("the stream ends at its lifetime"), None);
    drop(body);
    let records = capture.take_spans();
    assert_eq!(expired(&records), ["true"]);
    // The span's other fields are still recorded when the stream closes.
    assert!(records.iter().any(|r| r.contains_key("lifetime_ms")));

    // A stream that ends otherwise records no `expired`.
    let source = futures_util::stream::iter([Ok::<_, Infallible>(tick(1))]);
    let mut body = sse_body(SseLayer::new().max_lifetime(LIFETIME), source).await;
    assert!(next_frame(&mut body).await.is_some());
    assert_eq!(next_frame(&mut body).await, None);
    drop(body);
    let records = capture.take_spans();
    assert!(records.iter().any(|r| r.contains_key("lifetime_ms")));
    assert!(expired(&records).is_empty(), "{records:?}");
}
