//! Overflow policies against a deliberately slow reader: a raw TCP client with a
//! small receive buffer that reads nothing for a while, while the source produces
//! many 1 KiB events as fast as it can. The server's socket send buffer and hyper's
//! write buffer are made small too, so every byte in flight is accounted for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use support::{
    backpressure::{
        client_that_stops_reading, serve_counted, CountedServer, SMALL_HYPER_BUFFER,
        SMALL_SOCKET_BUFFER,
    },
    client::{Chunk, RawClient},
    server::{serve_sse, TestServer},
    sources::kib_event,
    wire::{blocks, concat, field},
    within,
};
use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseResponse};

/// Events the source produces in each test: ~3 MiB, far more than fits in flight.
const TOTAL: u64 = 3000;
/// `SO_SNDBUF` of the server socket and `SO_RCVBUF` of the client (Linux doubles both).
const SOCKET_BUFFER: u32 = SMALL_SOCKET_BUFFER;
/// hyper's HTTP/1 write buffer cap (its minimum).
const HYPER_BUFFER: usize = SMALL_HYPER_BUFFER;
/// The layer's per-connection buffer.
const LIMITS: BufferLimits = BufferLimits::new(16, 16 * 1024);
/// The layer's frame cap.
const MAX_FRAME: usize = 4 * 1024;
/// An upper bound of one event on the wire: `id: NNNN\ndata: <1024 x>\n\n`.
const EVENT_MAX: usize = 4 + 4 + 1 + 6 + 1024 + 2;

/// The most events that can be produced and neither delivered nor dropped: the
/// layer's queue, the frame being built and the one hyper holds, hyper's write
/// buffer, and both kernel socket buffers (counted twice over: Linux doubles the
/// requested size and we do not rely on its exact accounting).
fn in_flight_bound(queue_events: usize) -> u64 {
    let frame = MAX_FRAME + EVENT_MAX;
    let kernel = 2 * 2 * (2 * SOCKET_BUFFER as usize);
    let bytes = 2 * frame + HYPER_BUFFER + kernel;
    (queue_events + bytes / EVENT_MAX + 2) as u64
}

fn layer(policy: Overflow) -> SseLayer {
    SseLayer::new()
        .no_heartbeat()
        .buffer(LIMITS)
        .max_frame_bytes(MAX_FRAME)
        .on_overflow(policy)
        .gap_event(|dropped| {
            Event::new()
                .event("gap")
                .expect("a constant name")
                .data(dropped.to_string())
        })
}

type Setup = CountedServer;

async fn setup(layer: SseLayer, total: u64) -> Setup {
    serve_counted(layer, total, kib_event, false).await
}

async fn slow_client(server: &TestServer) -> RawClient {
    client_that_stops_reading(server).await
}

/// Waits (bounded) until `produced` stops moving: unchanged over 200 ms.
async fn until_steady(produced: &AtomicU64) -> u64 {
    within("the producer to settle", async {
        let mut last = produced.load(Ordering::SeqCst);
        let mut steady = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = produced.load(Ordering::SeqCst);
            if now == last {
                steady += 1;
                if steady == 10 {
                    return now;
                }
            } else {
                steady = 0;
                last = now;
            }
        }
    })
    .await
}

/// What the client read: event ids in order, and gap events (their position as
/// "after this many events" and their count).
#[derive(Debug, Default)]
struct Received {
    ids: Vec<u64>,
    gaps: Vec<(usize, u64)>,
}

impl Received {
    fn add(&mut self, chunk: &[u8]) {
        let text = std::str::from_utf8(chunk).unwrap();
        for block in blocks(text) {
            if field(block, "event") == Some("gap") {
                let n = field(block, "data").unwrap().parse().unwrap();
                self.gaps.push((self.ids.len(), n));
            } else {
                let id = field(block, "id").unwrap_or_else(|| panic!("{block:?}"));
                assert_eq!(field(block, "data").unwrap().len(), 1024);
                self.ids.push(id.parse().unwrap());
            }
        }
    }

    fn dropped(&self) -> u64 {
        self.gaps.iter().map(|(_, n)| n).sum()
    }

    /// Ids strictly increase, and every jump in ids is exactly a gap event's count.
    fn assert_gaps_mark_every_jump(&self) {
        let mut prev = 0;
        let mut gaps = self.gaps.iter().peekable();
        for (i, &id) in self.ids.iter().enumerate() {
            let mut marked = 0;
            while let Some(&&(at, n)) = gaps.peek() {
                if at != i {
                    break;
                }
                marked += n;
                gaps.next();
            }
            assert!(id > prev, "ids not increasing: {prev} then {id}");
            assert_eq!(
                id - prev - 1,
                marked,
                "jump {prev} -> {id} with gap count {marked}"
            );
            prev = id;
        }
        let trailing: u64 = gaps.map(|(_, n)| n).sum();
        assert_eq!(
            TOTAL - prev,
            trailing,
            "events after {prev} not marked as dropped"
        );
    }
}

/// Reads the whole body, checking after each chunk that produced-but-undelivered
/// (and not dropped) events stay within `bound`.
async fn read_all(client: &mut RawClient, setup: &Setup, bound: u64) -> (Received, Chunk) {
    let mut received = Received::default();
    loop {
        match client.read_chunk().await {
            Chunk::Data(chunk) => {
                received.add(&chunk);
                let produced = setup.produced.load(Ordering::SeqCst);
                let accounted = received.ids.len() as u64 + setup.stats.events_dropped();
                assert!(
                    produced <= accounted + bound,
                    "{produced} produced, {accounted} delivered or dropped, bound {bound}"
                );
            }
            end => return (received, end),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_holds_the_source_back_and_delivers_every_event_in_order() {
    let setup = setup(layer(Overflow::Wait), TOTAL).await;
    let mut client = slow_client(&setup.server).await;
    let held = until_steady(&setup.produced).await;
    let bound = in_flight_bound(0);
    assert!(held < TOTAL, "the producer was not held back");
    assert!(held <= bound, "{held} events in flight, bound {bound}");

    assert_eq!(client.read_head().await.status, 200);
    let (received, end) = read_all(&mut client, &setup, bound).await;
    assert_eq!(end, Chunk::End);
    assert_eq!(received.ids, (1..=TOTAL).collect::<Vec<_>>());
    assert!(received.gaps.is_empty());
    assert_eq!(setup.stats.events_dropped(), 0);
    assert_eq!(setup.stats.events_sent(), TOTAL);
}

/// Lets the source run to its end while the client reads nothing, then reads
/// everything: for the policies that drain the source into the buffer.
async fn drop_policy_run(policy: Overflow) -> (Setup, Received) {
    let setup = setup(layer(policy), TOTAL).await;
    let mut client = slow_client(&setup.server).await;
    // The source is drained whatever the client does, and dropped at its end.
    within("the source to end", setup.source_dropped.dropped()).await;
    assert_eq!(setup.produced.load(Ordering::SeqCst), TOTAL);
    assert!(setup.stats.events_dropped() > 0, "{:?}", setup.stats);

    assert_eq!(client.read_head().await.status, 200);
    let bound = in_flight_bound(LIMITS.events());
    let (received, end) = read_all(&mut client, &setup, bound).await;
    assert_eq!(end, Chunk::End, "the stream ends cleanly after the gap");

    // Nothing silent: every event was delivered or counted as dropped, and the gap
    // events carry exactly the dropped counts, where the ids jump.
    received.assert_gaps_mark_every_jump();
    assert_eq!(received.dropped(), setup.stats.events_dropped());
    assert_eq!(received.ids.len() as u64 + received.dropped(), TOTAL);
    // Memory stayed bounded: all the client got was held somewhere between the
    // source and the client's socket when the source ended.
    assert!(
        received.ids.len() as u64 <= bound,
        "{} events were held in flight, bound {bound}",
        received.ids.len()
    );
    assert_eq!(setup.stats.overflow_disconnects(), 0);
    (setup, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest_and_marks_the_gap_with_the_dropped_count() {
    let (_setup, received) = drop_policy_run(Overflow::DropOldest).await;
    assert_eq!(
        received.ids.last(),
        Some(&TOTAL),
        "the newest event is kept"
    );
    assert!(!received.gaps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_keeps_the_oldest_and_marks_the_gap_with_the_dropped_count() {
    let (_setup, received) = drop_policy_run(Overflow::DropNewest).await;
    assert!(
        received.ids.last().unwrap() < &TOTAL,
        "the newest events are dropped"
    );
    // The events before the gap are the first ones, without a hole.
    let (at, _) = received.gaps[0];
    assert_eq!(received.ids[..at], (1..=at as u64).collect::<Vec<_>>()[..]);
    assert_eq!(
        received.gaps.last().unwrap().0,
        received.ids.len(),
        "a gap marks the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_ends_the_connection_of_a_slow_client() {
    let setup = setup(layer(Overflow::Disconnect), TOTAL).await;
    let mut client = slow_client(&setup.server).await;
    support::wait_until("an overflow disconnect", || {
        setup.stats.overflow_disconnects() == 1
    })
    .await;
    within("the source to be dropped", setup.source_dropped.dropped()).await;
    let produced = setup.produced.load(Ordering::SeqCst);
    let bound = in_flight_bound(LIMITS.events()) + 1;
    assert!(produced <= bound, "{produced} produced, bound {bound}");

    assert_eq!(client.read_head().await.status, 200);
    let (received, end) = read_all(&mut client, &setup, bound).await;
    assert_eq!(end, Chunk::Closed, "the connection is cut, no clean end");
    assert!(received.gaps.is_empty());
    let n = received.ids.len() as u64;
    assert_eq!(received.ids, (1..=n).collect::<Vec<_>>());
    assert!(n < produced);
    assert_eq!(setup.stats.events_dropped(), 0);
    assert_eq!(setup.stats.overflow_disconnects(), 1);
    support::wait_until("the stream to close", || setup.stats.open_streams() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_timeout_disconnects_a_client_that_stops_reading() {
    // Capped by count (the byte cap is far away), so the buffer fills on events.
    let layer = layer(Overflow::Wait)
        .buffer(BufferLimits::new(16, 1 << 20))
        .stall_timeout(Duration::from_millis(200));
    let setup = setup(layer, TOTAL).await;
    let mut client = slow_client(&setup.server).await;
    support::wait_until("a stall disconnect", || {
        setup.stats.stall_disconnects() == 1
    })
    .await;
    within("the source to be dropped", setup.source_dropped.dropped()).await;
    assert!(setup.produced.load(Ordering::SeqCst) < TOTAL);

    assert_eq!(client.read_head().await.status, 200);
    let (received, end) = read_all(&mut client, &setup, in_flight_bound(LIMITS.events())).await;
    assert_eq!(end, Chunk::Closed, "the connection is cut, no clean end");
    assert_eq!(received.ids.first(), Some(&1));
    assert!(received.ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(setup.stats.stall_disconnects(), 1);
    assert_eq!(setup.stats.overflow_disconnects(), 0);
    support::wait_until("the stream to close", || setup.stats.open_streams() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_timeout_spares_a_client_that_keeps_reading() {
    let layer = SseLayer::new()
        .no_heartbeat()
        .stall_timeout(Duration::from_millis(400));
    let stats = layer.stats();
    let server = serve_sse(layer, |_req| async {
        use futures_util::StreamExt;
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
            Duration::from_millis(5),
        ));
        let events = ticks
            .take(200)
            .enumerate()
            .map(|(i, _)| Ok::<_, std::convert::Infallible>(kib_event(i as u64 + 1)));
        SseResponse::new(events)
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    let mut received = Received::default();
    let end = loop {
        match client.read_chunk().await {
            Chunk::Data(chunk) => received.add(&chunk),
            end => break end,
        }
    };
    assert_eq!(end, Chunk::End);
    assert_eq!(received.ids, (1..=200).collect::<Vec<_>>());
    assert_eq!(stats.stall_disconnects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_with_a_stall_timeout_holds_the_source_back_and_never_drops() {
    // With a stall timeout, `Wait` runs through the buffer (16 events or 16 KiB:
    // for 1 KiB events the byte cap binds first, so an event may not fit while the
    // buffer is not yet full): the source must wait for room, never lose the event.
    let layer = layer(Overflow::Wait).stall_timeout(Duration::from_secs(30));
    let setup = setup(layer, TOTAL).await;
    let mut client = slow_client(&setup.server).await;
    let held = until_steady(&setup.produced).await;
    let bound = in_flight_bound(LIMITS.events());
    assert!(held < TOTAL, "the producer was not held back");
    assert!(held <= bound, "{held} events in flight, bound {bound}");

    assert_eq!(client.read_head().await.status, 200);
    let (received, end) = read_all(&mut client, &setup, bound).await;
    assert_eq!(end, Chunk::End);
    assert_eq!(setup.stats.events_dropped(), 0, "{:?}", setup.stats);
    assert!(received.gaps.is_empty());
    assert_eq!(received.ids, (1..=TOTAL).collect::<Vec<_>>());
    assert_eq!(setup.stats.stall_disconnects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_timeout_disconnects_a_stalled_client_after_its_source_ended() {
    // The source's 200 events fit in the buffer and the sockets, so it ends at once;
    // the client never reads what is buffered for it.
    let layer = layer(Overflow::Wait)
        .buffer(BufferLimits::new(1000, 1 << 20))
        .stall_timeout(Duration::from_millis(200));
    let setup = setup(layer, 200).await;
    let mut client = slow_client(&setup.server).await;
    within("the source to end", setup.source_dropped.dropped()).await;
    support::wait_until("a stall disconnect", || {
        setup.stats.stall_disconnects() == 1
    })
    .await;

    assert_eq!(client.read_head().await.status, 200);
    let (received, end) = read_all(&mut client, &setup, in_flight_bound(1000)).await;
    assert_eq!(end, Chunk::Closed, "the connection is cut, no clean end");
    assert!(received.ids.len() < 200);
    support::wait_until("the stream to close", || setup.stats.open_streams() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_sent_counts_the_gap_events_handed_to_hyper() {
    // SseStats::events_sent: "Events handed to hyper (gap and final events included,
    // heartbeats not)".
    let (setup, received) = drop_policy_run(Overflow::DropOldest).await;
    assert!(!received.gaps.is_empty());
    assert_eq!(
        setup.stats.events_sent(),
        (received.ids.len() + received.gaps.len()) as u64,
        "{} events and {} gap events received",
        received.ids.len(),
        received.gaps.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_the_buffered_events_before_the_last_event() {
    let layer = layer(Overflow::DropOldest);
    let handle = layer.shutdown_handle();
    let setup = setup(layer, TOTAL).await;
    let mut client = slow_client(&setup.server).await;
    // The source has ended; its last events wait in the buffer for the slow client.
    within("the source to end", setup.source_dropped.dropped()).await;
    handle.shutdown_with(Event::new().retry(Duration::from_secs(1)));

    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    let body = concat(&chunks);
    let events = body
        .strip_suffix(b"retry: 1000\n\n")
        .expect("the retry event comes last");
    let mut received = Received::default();
    received.add(events);
    // Nothing lost silently: what the buffer held was delivered, not discarded.
    received.assert_gaps_mark_every_jump();
    assert_eq!(received.ids.last(), Some(&TOTAL));
    assert_eq!(
        received.ids.len() as u64 + setup.stats.events_dropped(),
        TOTAL,
        "{} received, {:?}",
        received.ids.len(),
        setup.stats
    );
    within("wait_closed", handle.wait_closed()).await;
}
