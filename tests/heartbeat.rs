//! Heartbeats: over a real socket (counts and order only, never elapsed times) and
//! in process on tokio's paused clock (exact virtual times), read there with
//! `test_util::SseReader`.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{convert::Infallible, sync::Arc, time::Duration};

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use support::{
    body::{sse_body, sse_body_of},
    client::{http_client, Chunk, RawClient},
    server::serve_sse,
    sources::then_pending,
    wire::{blocks, concat},
    within,
};
use tokio::{sync::Notify, time::Instant};
use tower_sse::{
    test_util::{Item, MessageEvent, ReadError, SseReader},
    Event, Heartbeat, Overflow, SseLayer, SseResponse,
};

/// Event 1 at once, event 2 once `release` is notified, then the end.
fn paused_source(
    release: Arc<Notify>,
) -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures_util::stream::iter([Ok(Event::new().data("1"))]).chain(futures_util::stream::once(
        async move {
            release.notified().await;
            Ok(Event::new().data("2"))
        },
    ))
}

/// Reads chunks until one satisfies `stop`, returning all read so far.
async fn read_until(client: &mut RawClient, mut stop: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    loop {
        match client.read_chunk().await {
            Chunk::Data(data) => {
                let done = stop(&data);
                chunks.push(data);
                if done {
                    return chunks;
                }
            }
            end => panic!("body ended early ({end:?}) after {chunks:?}"),
        }
    }
}

#[tokio::test]
async fn heartbeat_comments_arrive_between_events_while_the_source_is_paused() {
    let release = Arc::new(Notify::new());
    let layer = SseLayer::new().heartbeat(Duration::from_millis(50));
    let stats = layer.stats();
    let server = serve_sse(layer, {
        let release = release.clone();
        move |_req| {
            let release = release.clone();
            async move { SseResponse::new(paused_source(release)) }
        }
    })
    .await;

    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    // Wait (bounded) for a heartbeat, then let the source go on.
    let mut chunks = read_until(&mut client, |c| c == b":\n\n").await;
    release.notify_one();
    let (rest, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    chunks.extend(rest);

    for chunk in &chunks {
        assert!(chunk == b":\n\n" || !chunk.starts_with(b":"), "{chunk:?}");
    }
    let body = String::from_utf8(concat(&chunks)).unwrap();
    let blocks = blocks(&body);
    assert_eq!(blocks.first(), Some(&"data: 1"), "{blocks:?}");
    assert_eq!(blocks.last(), Some(&"data: 2"), "{blocks:?}");
    let middle = &blocks[1..blocks.len() - 1];
    assert!(
        !middle.is_empty(),
        "no heartbeat between the events: {blocks:?}"
    );
    assert!(middle.iter().all(|b| *b == ":"), "{blocks:?}");
    assert_eq!(stats.heartbeats_sent(), middle.len() as u64);
    assert_eq!(stats.events_sent(), 2);
}

#[tokio::test]
async fn custom_heartbeat_comment_is_sent_as_written() {
    let release = Arc::new(Notify::new());
    let layer = SseLayer::new()
        .heartbeat(Heartbeat::new(Duration::from_millis(50)).comment("keep-alive\nstill here"));
    let server = serve_sse(layer, {
        let release = release.clone();
        move |_req| {
            let release = release.clone();
            async move { SseResponse::new(paused_source(release)) }
        }
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    let chunks = read_until(&mut client, |c| c.starts_with(b":")).await;
    assert_eq!(
        chunks.last().unwrap(),
        b": keep-alive\n: still here\n\n",
        "{chunks:?}"
    );
    release.notify_one();
}

#[tokio::test]
async fn heartbeat_as_a_named_event_is_seen_by_eventsource_clients() {
    let release = Arc::new(Notify::new());
    let ping = Event::new().event("ping").unwrap().data("");
    let layer = SseLayer::new().heartbeat(Heartbeat::new(Duration::from_millis(50)).event(ping));
    let server = serve_sse(layer, {
        let release = release.clone();
        move |_req| {
            let release = release.clone();
            async move { SseResponse::new(paused_source(release)) }
        }
    })
    .await;

    let res = within("response", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    let mut events = res.bytes_stream().eventsource();
    let mut seen = Vec::new();
    loop {
        let event = within("an event", events.next()).await.unwrap().unwrap();
        let is_ping = event.event == "ping";
        seen.push((event.event, event.data));
        if is_ping {
            break;
        }
    }
    release.notify_one();
    while let Some(event) = within("an event", events.next()).await {
        let event = event.unwrap();
        seen.push((event.event, event.data));
    }

    assert_eq!(
        seen.first().unwrap(),
        &("message".to_owned(), "1".to_owned())
    );
    assert_eq!(
        seen.last().unwrap(),
        &("message".to_owned(), "2".to_owned())
    );
    let middle = &seen[1..seen.len() - 1];
    assert!(!middle.is_empty(), "{seen:?}");
    for (name, data) in middle {
        assert_eq!((name.as_str(), data.as_str()), ("ping", ""));
    }
}

#[tokio::test]
async fn no_heartbeat_sends_none_while_the_source_is_quiet() {
    let release = Arc::new(Notify::new());
    // A short interval first, so that a `no_heartbeat` that did not take would show.
    let layer = SseLayer::new()
        .heartbeat(Duration::from_millis(10))
        .no_heartbeat();
    let stats = layer.stats();
    let server = serve_sse(layer, {
        let release = release.clone();
        move |_req| {
            let release = release.clone();
            async move { SseResponse::new(paused_source(release)) }
        }
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    assert_eq!(
        client.read_chunk().await,
        Chunk::Data(b"data: 1\n\n".to_vec())
    );
    // A quiet window of 30 would-be intervals, then the next event.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    let (rest, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert_eq!(rest, vec![b"data: 2\n\n".to_vec()]);
    assert_eq!(stats.heartbeats_sent(), 0);
}

// ---------------------------------------------------------------------------
// Paused clock, in process
// ---------------------------------------------------------------------------

/// Events every 10 ms (virtual), `count` of them.
fn ticking(count: usize) -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send {
    tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(Duration::from_millis(10)))
        .take(count)
        .enumerate()
        .map(|(i, _)| Ok(Event::new().data(i.to_string())))
}

async fn no_heartbeat_while_events_flow(layer: SseLayer) {
    let stats = layer.stats();
    let body = sse_body(layer.heartbeat(Duration::from_millis(50)), ticking(100)).await;
    let mut reader = SseReader::new(body);
    let data: Vec<String> = reader
        .read_to_end()
        .await
        .unwrap()
        .iter()
        .map(|event| event.data().to_owned())
        .collect();
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(data, expected, "lost events");
    assert_eq!(reader.comments_read(), 0, "heartbeats between the events");
    assert_eq!(stats.heartbeats_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_while_events_flow_faster_than_the_interval() {
    no_heartbeat_while_events_flow(SseLayer::new()).await;
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_while_events_flow_faster_than_the_interval_through_the_buffer() {
    no_heartbeat_while_events_flow(SseLayer::new().on_overflow(Overflow::DropOldest)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_stream_sends_one_heartbeat_per_interval() {
    // A comment every 15 s, from the exact per-stream timer (the default shared ticker
    // is within 1/8 interval: tests/heartbeat_ticker.rs).
    let layer =
        SseLayer::new().heartbeat(Heartbeat::new(Heartbeat::DEFAULT_INTERVAL).per_stream_timer());
    let stats = layer.stats();
    let body = sse_body(layer, then_pending(Vec::<Result<Event, Infallible>>::new())).await;
    let mut reader = SseReader::new(body);
    let start = Instant::now();
    for n in 1..=4u32 {
        let comment = reader
            .expect_heartbeat_within(Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(comment, "", "the default heartbeat is a bare `:`");
        let elapsed = start.elapsed();
        let due = Heartbeat::DEFAULT_INTERVAL * n;
        assert!(
            elapsed >= due && elapsed < due + Duration::from_millis(5),
            "heartbeat {n} at {elapsed:?}, due at {due:?}"
        );
    }
    assert_eq!(stats.heartbeats_sent(), 4);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_is_due_one_interval_after_the_last_event() {
    // Events at 0 ms and 40 ms, then silence: the heartbeat is due at 90 ms, not 50 ms.
    let source = futures_util::stream::iter([Ok::<_, Infallible>(Event::new().data("a"))])
        .chain(futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            Ok(Event::new().data("b"))
        }))
        .chain(futures_util::stream::pending());
    let start = Instant::now();
    let exact = Heartbeat::new(Duration::from_millis(50)).per_stream_timer();
    let mut reader = SseReader::new(sse_body(SseLayer::new().heartbeat(exact), source).await);
    let mut items = Vec::new();
    for _ in 0..4 {
        let item = reader
            .next_item()
            .await
            .unwrap()
            .expect("the stream is open");
        items.push((item, start.elapsed().as_millis()));
    }
    let event = |data: &str| Item::Event(MessageEvent::new(data));
    let heartbeat = Item::Comment(String::new());
    assert_eq!(
        items,
        [
            (event("a"), 0),
            (event("b"), 40),
            (heartbeat.clone(), 90),
            (heartbeat, 140)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_pause_in_the_source_is_filled_with_heartbeats() {
    // Event at 0 ms, next at 200 ms, heartbeat every 50 ms: 50, 100 and 150 ms
    // certainly, 200 ms if the heartbeat wins the tie with the event.
    let source = futures_util::stream::iter([Ok::<_, Infallible>(Event::new().data("1"))]).chain(
        futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(Event::new().data("2"))
        }),
    );
    let body = sse_body(SseLayer::new().heartbeat(Duration::from_millis(50)), source).await;
    let mut reader = SseReader::new(body).timeout(Duration::from_secs(1));
    let mut items = Vec::new();
    while let Some(item) = reader.next_item().await.unwrap() {
        items.push(item);
    }
    assert_eq!(items.first(), Some(&Item::Event(MessageEvent::new("1"))));
    assert_eq!(items.last(), Some(&Item::Event(MessageEvent::new("2"))));
    let heartbeats = &items[1..items.len() - 1];
    assert!(heartbeats.iter().all(Item::is_comment), "{items:?}");
    assert!((3..=4).contains(&heartbeats.len()), "{items:?}");
}

#[tokio::test(start_paused = true)]
async fn no_heartbeat_sends_nothing_for_an_hour() {
    let layer = SseLayer::new()
        .heartbeat(Duration::from_millis(10))
        .no_heartbeat();
    let stats = layer.stats();
    let body = sse_body(
        layer,
        then_pending(vec![Ok::<_, Infallible>(Event::new().data("only"))]),
    )
    .await;
    let mut reader = SseReader::new(body).timeout(Duration::from_secs(3600));
    assert_eq!(
        reader.next_item().await.unwrap(),
        Some(Item::Event(MessageEvent::new("only")))
    );
    let next = reader.next_item().await;
    assert!(next.as_ref().is_err_and(ReadError::is_timeout), "{next:?}");
    assert_eq!(stats.heartbeats_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_response_can_set_its_own_heartbeat() {
    let layer = SseLayer::new().no_heartbeat();
    let response = SseResponse::new(then_pending(Vec::<Result<Event, Infallible>>::new()))
        .heartbeat(
            Heartbeat::new(Duration::from_millis(50))
                .comment("mine")
                .per_stream_timer(),
        );
    let mut reader = SseReader::new(sse_body_of(layer, response).await);
    let start = Instant::now();
    let comment = reader
        .expect_heartbeat_within(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(comment, "mine");
    assert_eq!(start.elapsed().as_millis(), 50);
}

#[tokio::test(start_paused = true)]
async fn a_response_can_turn_the_layers_heartbeat_off() {
    let layer = SseLayer::new().heartbeat(Duration::from_millis(10));
    let stats = layer.stats();
    let response =
        SseResponse::new(then_pending(Vec::<Result<Event, Infallible>>::new())).no_heartbeat();
    let mut reader = SseReader::new(sse_body_of(layer, response).await);
    let next = reader
        .expect_heartbeat_within(Duration::from_secs(3600))
        .await;
    assert!(next.as_ref().is_err_and(ReadError::is_timeout), "{next:?}");
    assert_eq!(stats.heartbeats_sent(), 0);
}
