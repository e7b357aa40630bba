//! The demo's `GET /metrics` (CONTRACT.md) checked over HTTP: Prometheus text
//! exposition whose numbers move with the traffic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, time::Duration};

use futures_util::StreamExt as _;
use reqwest::{header, Client, StatusCode};

mod support;
use support::demo::Demo;

/// Patience for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(10);

/// The series CONTRACT.md asks for: open streams, events and bytes sent, heartbeats,
/// dropped events, shed requests, per-topic subscribers.
const CONTRACT_NAMES: [&str; 7] = [
    "sse_streams_open",
    "sse_events_sent_total",
    "sse_bytes_sent_total",
    "sse_heartbeats_sent_total",
    "sse_events_dropped_total",
    "sse_requests_shed_total",
    "sse_hub_subscribers",
];

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .connect_timeout(WAIT)
        .build()
        .unwrap()
}

/// Every sample of a Prometheus text exposition, keyed by `name{labels}` as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "twice: {line:?}"
        );
    }
    samples
}

/// `GET /metrics`, checked for its status and content type, parsed.
async fn scrape(client: &Client, demo: &Demo) -> BTreeMap<String, f64> {
    let res = tokio::time::timeout(WAIT, client.get(demo.url("/metrics")).send())
        .await
        .expect("answer in time")
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4"
    );
    parse(&res.text().await.unwrap())
}

/// The value of the series named `name` (no labels), or of `name{labels}`.
#[track_caller]
fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_the_traffic() {
    let demo = Demo::start().await;
    let client = client();
    let before = scrape(&client, &demo).await;
    for name in CONTRACT_NAMES {
        assert!(
            before
                .keys()
                .any(|series| series == name || series.starts_with(&format!("{name}{{"))),
            "{name} missing from {before:#?}"
        );
    }
    assert_eq!(value(&before, "sse_streams_open"), 0.0);

    // Three events, read to the end.
    let body = client
        .get(demo.url("/events?count=3"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body.starts_with(b"id: 1\n"), "{body:?}");
    // A subscriber of the hub's `fanout` topic, kept open.
    let fanout = client.get(demo.url("/fanout")).send().await.unwrap();
    let mut fanout = fanout.bytes_stream();
    tokio::time::timeout(WAIT, fanout.next())
        .await
        .expect("a fanout tick in time")
        .expect("a chunk")
        .unwrap();

    // The `/events` stream leaves the gauge when hyper drops its body, which can be
    // just after the client saw its end.
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let after = scrape(&client, &demo).await;
        if value(&after, "sse_streams_open") == 1.0 || tokio::time::Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let sent = value(&after, "sse_events_sent_total") - value(&before, "sse_events_sent_total");
    assert!(sent >= 4.0, "3 events and a tick at least: {sent}");
    let bytes = value(&after, "sse_bytes_sent_total") - value(&before, "sse_bytes_sent_total");
    assert!(bytes >= body.len() as f64, "{bytes} < {}", body.len());
    assert_eq!(
        value(&after, "sse_streams_opened_total") - value(&before, "sse_streams_opened_total"),
        2.0
    );
    assert_eq!(value(&after, "sse_streams_open"), 1.0, "the fanout stream");
    assert_eq!(value(&after, "sse_hub_subscribers{topic=\"fanout\"}"), 1.0);
    assert!(value(&after, "sse_hub_published_total{topic=\"fanout\"}") >= 1.0);
    // The `/events` stream closed: its lifetime is in the histogram.
    assert!(value(&after, "sse_stream_lifetime_seconds_count") >= 1.0);
}
