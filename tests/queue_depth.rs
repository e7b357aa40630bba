//! Per-connection queue depth, as a user sees it: [`SseStats::queued_events`] and
//! [`SseStats::queued_bytes`] (what waits in the buffers of the open streams right
//! now) and the stream span's `max_queued` (its high-water mark), over a real hyper
//! server. A frozen client (small receive buffer, reads nothing) against small
//! server-side buffers makes a stream's queue fill up and stay full.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use support::{
    backpressure::{client_that_stops_reading, serve_counted, CountedServer},
    body::sse_body,
    client::{Chunk, RawClient},
    server::TestServer,
    sources::{kib_payload, Counting},
    span_capture::{self, Capture},
    wait_until,
    wire::{blocks, concat, field},
    within,
};
use tokio::task::JoinHandle;
use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseStats};
use tracing_subscriber::prelude::*;

/// The per-connection buffer: 16 events (the byte cap is far away).
const QUEUE: u64 = 16;
const LIMITS: BufferLimits = BufferLimits::new(QUEUE as usize, 1 << 20);
/// Events a finite source produces: ~3 MiB, far more than the sockets and hyper hold.
const TOTAL: u64 = 3000;
/// An endless source, in practice (ids keep their 8 digits).
const ENDLESS: u64 = 99_999_999;

/// `id: NNNNNNNN`, 1 KiB of data: every event has the same encoded size.
fn event(n: u64) -> Event {
    Event::new()
        .id(format!("{n:08}"))
        .unwrap()
        .data(kib_payload())
}

/// The encoded size of every [`event`].
fn event_size() -> u64 {
    event(1).encoded_len() as u64
}

fn layer(policy: Overflow) -> SseLayer {
    SseLayer::new()
        .no_heartbeat()
        .buffer(LIMITS)
        .on_overflow(policy)
}

fn gauges(stats: &SseStats) -> (u64, u64) {
    (stats.queued_events(), stats.queued_bytes())
}

/// `events` full-size events in the queues, as the gauges report them.
fn queued(events: u64) -> (u64, u64) {
    (events, events * event_size())
}

type Setup = CountedServer;

/// Serves `layer` over sockets with small buffers; each request streams `total`
/// [`event`]s, then (with `then_pending`) stays open without ending.
async fn setup(layer: SseLayer, total: u64, then_pending: bool) -> Setup {
    serve_counted(layer, total, event, then_pending).await
}

/// A client that sends its request and then reads nothing.
async fn frozen_client(server: &TestServer) -> RawClient {
    client_that_stops_reading(server).await
}

/// The highest gauge values seen by a task that samples them every millisecond.
struct Peak {
    events: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Peak {
    fn watch(stats: &SseStats) -> Self {
        let events = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let stats = stats.clone();
            let (events, bytes) = (events.clone(), bytes.clone());
            async move {
                loop {
                    events.fetch_max(stats.queued_events(), Ordering::SeqCst);
                    bytes.fetch_max(stats.queued_bytes(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        Self {
            events,
            bytes,
            task,
        }
    }

    fn get(&self) -> (u64, u64) {
        (
            self.events.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
        )
    }

    /// Asserts the gauges never went over `events` events (and their bytes).
    fn assert_at_most(&self, events: u64) {
        let (e, b) = self.get();
        assert!(
            e <= events && b <= events * event_size(),
            "the gauges peaked at {e} events / {b} bytes, cap {events} events"
        );
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the gauges read `want`.
async fn wait_for_gauges(what: &str, stats: &SseStats, want: (u64, u64)) {
    wait_until(&format!("{what}: gauges {want:?}"), || {
        gauges(stats) == want
    })
    .await;
}

/// The event ids in a chunk of SSE text.
fn ids(chunk: &[u8]) -> Vec<u64> {
    let text = std::str::from_utf8(chunk).unwrap();
    blocks(text)
        .iter()
        .filter_map(|block| field(block, "id"))
        .map(|id| id.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_queue_fills_to_its_cap_and_empties_when_the_client_leaves() {
    let setup = setup(layer(Overflow::DropOldest), ENDLESS, false).await;
    let stats = &setup.stats;
    let peak = Peak::watch(stats);
    assert_eq!(gauges(stats), (0, 0));

    let client = frozen_client(&setup.server).await;
    wait_for_gauges("the queue to fill", stats, queued(QUEUE)).await;
    // The source keeps going, evicting the oldest events: the queue stays at its cap.
    let then = setup.produced.load(Ordering::SeqCst);
    wait_until("2000 more events produced", || {
        setup.produced.load(Ordering::SeqCst) > then + 2000
    })
    .await;
    assert!(stats.events_dropped() > 0, "{stats:?}");
    wait_for_gauges("the queue to stay full", stats, queued(QUEUE)).await;
    peak.assert_at_most(QUEUE);
    assert_eq!(stats.open_streams(), 1);

    drop(client);
    wait_for_gauges("the stream's queue to be freed", stats, (0, 0)).await;
    within("the source to be dropped", setup.source_dropped.dropped()).await;
    wait_until("the stream to close", || stats.open_streams() == 0).await;
    // The pump is gone with its source: nothing it did late left a trace.
    assert_eq!(gauges(stats), (0, 0), "{stats:?}");
    peak.assert_at_most(QUEUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_queue_is_bounded_per_stream_and_summed_over_streams() {
    let setup = setup(layer(Overflow::DropNewest), TOTAL, false).await;
    let stats = &setup.stats;
    let peak = Peak::watch(stats);

    let first = frozen_client(&setup.server).await;
    wait_for_gauges("the first queue to fill", stats, queued(QUEUE)).await;
    // The newest events are dropped while the queue holds its cap.
    wait_until("1000 events dropped", || stats.events_dropped() > 1000).await;
    wait_for_gauges("the queue to stay full", stats, queued(QUEUE)).await;
    peak.assert_at_most(QUEUE);

    let second = frozen_client(&setup.server).await;
    wait_for_gauges("both queues to fill", stats, queued(2 * QUEUE)).await;
    wait_until("both sources to end", || {
        setup.produced.load(Ordering::SeqCst) == 2 * TOTAL
    })
    .await;
    wait_for_gauges("both queues to stay full", stats, queued(2 * QUEUE)).await;
    peak.assert_at_most(2 * QUEUE);

    drop(first);
    wait_until("the first stream to close", || stats.open_streams() == 1).await;
    wait_for_gauges("the first queue to be freed", stats, queued(QUEUE)).await;
    drop(second);
    wait_until("the second stream to close", || stats.open_streams() == 0).await;
    wait_for_gauges("both queues to be freed", stats, (0, 0)).await;
    peak.assert_at_most(2 * QUEUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_mode_queues_nothing() {
    // `Wait` without a stall timeout: the body polls the source itself.
    let setup = setup(layer(Overflow::Wait), TOTAL, false).await;
    let stats = &setup.stats;
    let peak = Peak::watch(stats);

    let mut client = frozen_client(&setup.server).await;
    // Held back by the frozen client: the producer stops well before its end
    // (unchanged over 20 samples in a row).
    let (mut last, mut steady) = (0, 0);
    wait_until("the producer to be held back", || {
        let now = setup.produced.load(Ordering::SeqCst);
        steady = if now > 0 && now == last {
            steady + 1
        } else {
            0
        };
        last = now;
        steady >= 20
    })
    .await;
    assert!(last < TOTAL, "the producer was not held back");
    assert_eq!(gauges(stats), (0, 0));

    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    let received: usize = chunks.iter().map(|c| ids(c).len()).sum();
    assert_eq!(received as u64, TOTAL);
    wait_until("the stream to close", || stats.open_streams() == 0).await;
    assert_eq!(gauges(stats), (0, 0));
    assert_eq!(peak.get(), (0, 0), "direct mode queued something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_events_leave_the_queue_while_the_stream_stays_open() {
    // The source says its 3000 events and then nothing, without ending.
    let setup = setup(layer(Overflow::DropOldest), TOTAL, true).await;
    let stats = &setup.stats;
    let peak = Peak::watch(stats);

    let mut client = frozen_client(&setup.server).await;
    wait_until("the source to be drained", || {
        setup.produced.load(Ordering::SeqCst) == TOTAL
    })
    .await;
    wait_for_gauges("the queue to hold the newest events", stats, queued(QUEUE)).await;

    // The client reads until it has the newest event: the queue was delivered.
    assert_eq!(client.read_head().await.status, 200);
    let mut last = 0;
    while last != TOTAL {
        match client.read_chunk().await {
            Chunk::Data(chunk) => last = ids(&chunk).last().copied().unwrap_or(last),
            end => panic!("the stream ended early: {end:?}"),
        }
    }
    wait_for_gauges("the delivered events to leave the queue", stats, (0, 0)).await;
    assert_eq!(stats.open_streams(), 1, "the stream is still open");

    drop(client);
    wait_until("the stream to close", || stats.open_streams() == 0).await;
    within("the source to be dropped", setup.source_dropped.dropped()).await;
    assert_eq!(gauges(stats), (0, 0));
    peak.assert_at_most(QUEUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_normally_leaves_the_gauges_at_zero() {
    let setup = setup(layer(Overflow::DropNewest), TOTAL, false).await;
    let stats = &setup.stats;
    let peak = Peak::watch(stats);

    let mut client = frozen_client(&setup.server).await;
    within("the source to end", setup.source_dropped.dropped()).await;
    wait_for_gauges("the queue to be full", stats, queued(QUEUE)).await;

    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End, "a clean end of the body");
    let received: Vec<u64> = chunks.iter().flat_map(|c| ids(c)).collect();
    assert_eq!(received.len() as u64 + stats.events_dropped(), TOTAL);
    wait_until("the stream to close", || stats.open_streams() == 0).await;
    wait_for_gauges("the queue to be delivered", stats, (0, 0)).await;
    peak.assert_at_most(QUEUE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delivers_the_queue_and_leaves_the_gauges_at_zero() {
    let layer = layer(Overflow::DropOldest);
    let handle = layer.shutdown_handle();
    let setup = setup(layer, ENDLESS, false).await;
    let stats = &setup.stats;

    let mut client = frozen_client(&setup.server).await;
    wait_for_gauges("the queue to fill", stats, queued(QUEUE)).await;
    handle.shutdown_with(Event::new().retry(Duration::from_secs(1)));

    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert!(concat(&chunks).ends_with(b"retry: 1000\n\n"));
    within("wait_closed", handle.wait_closed()).await;
    within("the source to be dropped", setup.source_dropped.dropped()).await;
    wait_for_gauges("the queue to be delivered", stats, (0, 0)).await;
}

/// A client disconnected as too slow: its queue is freed at once, whenever hyper
/// notices the connection is gone.
async fn disconnect_frees_the_queue(layer: SseLayer, disconnects: fn(&SseStats) -> u64) {
    let setup = setup(layer, ENDLESS, false).await;
    let stats = &setup.stats;
    let peak = Peak::watch(stats);

    let client = frozen_client(&setup.server).await;
    wait_until("a disconnect", || disconnects(stats) == 1).await;
    within("the source to be dropped", setup.source_dropped.dropped()).await;
    wait_for_gauges("the queue to be freed", stats, (0, 0)).await;
    drop(client);
    wait_until("the stream to close", || stats.open_streams() == 0).await;
    assert_eq!(gauges(stats), (0, 0), "{stats:?}");
    let (events, _) = peak.get();
    assert!(events <= QUEUE, "{events} events queued, cap {QUEUE}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_disconnect_frees_the_queue() {
    disconnect_frees_the_queue(layer(Overflow::Disconnect), SseStats::overflow_disconnects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_disconnect_frees_the_queue() {
    let layer = layer(Overflow::Wait).stall_timeout(Duration::from_millis(200));
    disconnect_frees_the_queue(layer, SseStats::stall_disconnects).await;
}

/// In process, on one thread: the body is dropped while its stream's task (busy
/// with an endless source) has not run since; what the queue held leaves the gauges
/// with the body, not whenever that task is cleaned up.
#[tokio::test(flavor = "current_thread")]
async fn the_gauges_drop_with_the_body_not_later() {
    let layer = layer(Overflow::DropOldest);
    let stats = layer.stats();
    let produced = Arc::new(AtomicU64::new(0));
    let body = sse_body(layer, Counting::new(ENDLESS, produced, event)).await;
    within("the queue to fill", async {
        while gauges(&stats) != queued(QUEUE) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(stats.open_streams(), 1);
    drop(body);
    assert_eq!(stats.open_streams(), 0);
    assert_eq!(gauges(&stats), (0, 0), "{stats:?}");
    // The task, aborted, runs no more: nothing comes back.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(gauges(&stats), (0, 0), "{stats:?}");
}

// ---------------------------------------------------------------------------
// The span's `max_queued`
// ---------------------------------------------------------------------------

/// Waits for the next closed `sse` span and returns its fields.
async fn next_closed(capture: &Capture, seen: &mut usize) -> HashMap<String, String> {
    wait_until("a stream's span to close", || {
        capture.spans.lock().unwrap().len() > *seen
    })
    .await;
    *seen += 1;
    capture.spans.lock().unwrap()[*seen - 1].clone()
}

/// One thread for the server, its streams' tasks and the test, so that the
/// subscriber set for this thread sees every span.
#[tokio::test(flavor = "current_thread")]
async fn the_span_records_the_queue_high_water_mark() {
    let capture = Capture::default();
    let _guard = span_capture::set_default(tracing_subscriber::registry().with(capture.clone()));
    let mut seen = 0;

    // A frozen client: the queue fills to its cap, and the stream closes when the
    // client leaves.
    let served = setup(layer(Overflow::DropOldest), ENDLESS, false).await;
    let client = frozen_client(&served.server).await;
    wait_for_gauges("the queue to fill", &served.stats, queued(QUEUE)).await;
    drop(client);
    let span = next_closed(&capture, &mut seen).await;
    assert_eq!(span["max_queued"], QUEUE.to_string(), "{span:?}");
    assert_ne!(span["dropped"], "0", "{span:?}");
    wait_for_gauges("the queue to be freed", &served.stats, (0, 0)).await;
    drop(served);

    // A client that reads everything: some events waited, never more than the cap.
    let served = setup(layer(Overflow::DropNewest), 200, false).await;
    let mut client = RawClient::connect(served.server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    let (_, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    let span = next_closed(&capture, &mut seen).await;
    let max: u64 = span["max_queued"].parse().unwrap();
    assert!((1..=QUEUE).contains(&max), "{span:?}");
    drop(served);

    // Direct mode: nothing is queued.
    let served = setup(layer(Overflow::Wait), 200, false).await;
    let mut client = RawClient::connect(served.server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    let (_, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    let span = next_closed(&capture, &mut seen).await;
    assert_eq!(span["max_queued"], "0", "{span:?}");
    assert_eq!(span["events"], "200", "{span:?}");
}
