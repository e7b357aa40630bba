//! One `tracing` span per stream; when the stream closes it records what it sent.

mod support;

use std::{convert::Infallible, time::Duration};

use http::Request;
use http_body_util::BodyExt;
use support::span_capture::{self, Capture};
use tower::{service_fn, Layer, ServiceExt};
use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseResponse};
use tracing_subscriber::prelude::*;

async fn run_stream(layer: SseLayer, events: usize, path: &str, last_event_id: Option<&str>) {
    let svc = layer.layer(service_fn(move |_req: Request<()>| async move {
        let items = (0..events).map(|i| Ok::<_, Infallible>(Event::new().data(i.to_string())));
        Ok::<_, Infallible>(SseResponse::new(tokio_stream::iter(items)))
    }));
    let mut req = Request::builder().uri(path);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let res = svc.oneshot(req.body(()).unwrap()).await.unwrap();
    let body = tokio::time::timeout(Duration::from_secs(5), res.into_body().collect())
        .await
        .expect("stream ends")
        .unwrap()
        .to_bytes();
    assert_eq!(
        body.len(),
        (0..events).map(|i| i.to_string().len() + 8).sum::<usize>()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn each_stream_gets_a_span_that_records_its_counts_when_it_closes() {
    let capture = Capture::default();
    let _guard = span_capture::set_default(
        tracing_subscriber::registry().with(
            capture
                .clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
        ),
    );

    run_stream(SseLayer::new(), 3, "/prices", Some("41")).await;
    run_stream(SseLayer::new(), 5, "/news", None).await;

    let spans = capture.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "one span per stream: {spans:?}");
    let prices = &spans[0];
    assert_eq!(prices["path"], "/prices");
    assert_eq!(prices["last_event_id"], "41");
    assert_eq!(prices["events"], "3");
    assert_eq!(prices["bytes"], (3 * 9).to_string());
    assert_eq!(prices["heartbeats"], "0");
    assert_eq!(prices["dropped"], "0");
    assert!(prices.contains_key("lifetime_ms"));
    assert_eq!(spans[1]["path"], "/news");
    assert_eq!(spans[1]["events"], "5");

    let closes = capture.closes.lock().unwrap().clone();
    assert_eq!(closes.len(), 2);
    assert_eq!(closes[0]["events"], "3");
}

#[tokio::test(flavor = "current_thread")]
async fn a_stream_that_drops_events_records_the_count_in_its_span() {
    let capture = Capture::default();
    let _guard = span_capture::set_default(
        tracing_subscriber::registry().with(
            capture
                .clone()
                .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
        ),
    );

    // The source is drained into a 4-event buffer before the body is ever polled:
    // with DropNewest the rest is dropped and counted.
    let layer = SseLayer::new()
        .buffer(BufferLimits::new(4, 1 << 20))
        .on_overflow(Overflow::DropNewest);
    let stats = layer.stats();
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        let items = (0..100).map(|i| Ok::<_, Infallible>(Event::new().data(i.to_string())));
        Ok::<_, Infallible>(SseResponse::new(tokio_stream::iter(items)))
    }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    // Let the pump run to the end of the source before reading.
    tokio::time::timeout(Duration::from_secs(5), async {
        while stats.events_dropped() < 96 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the pump drains the source");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n");

    let spans = capture.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["dropped"], "96");
    assert_eq!(spans[0]["events"], "4");
}

/// The race that once failed CI: this thread's subscriber is set first, then a thread
/// without one is the first to reach the layer's span. Its spans are not captured;
/// this thread's still are. (Run alone, with no other test's subscriber alive, this
/// failed before `span_capture::set_default` kept a second dispatcher alive.)
#[tokio::test(flavor = "current_thread")]
async fn a_thread_without_a_subscriber_reaching_the_span_first_does_not_hide_it_here() {
    let capture = Capture::default();
    let _guard = span_capture::set_default(tracing_subscriber::registry().with(capture.clone()));

    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_stream(SseLayer::new(), 1, "/elsewhere", None));
    })
    .join()
    .unwrap();
    run_stream(SseLayer::new(), 2, "/here", None).await;

    let spans = capture.take_spans();
    let paths: Vec<&str> = spans.iter().map(|s| s["path"].as_str()).collect();
    assert_eq!(paths, ["/here"], "{spans:?}");
}
