//! `tower_sse::metrics` seen through a recorder (metrics-util's `DebuggingRecorder`,
//! installed for the test's thread): the exact values after a known traffic pattern,
//! labels that keep two layers apart, and a `topic` label that stays bounded.
#![cfg(all(feature = "metrics", feature = "hub"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tokio::time::Instant;
use tower::{service_fn, Layer as _, ServiceExt as _};
use tower_sse::{
    hub::Hub,
    metrics::{HubMetrics, SseMetrics},
    BufferLimits, Event, Overflow, SseLayer, SseResponse, StreamLimit,
};

/// A snapshot keyed by `name{label=value,…}` (labels sorted), e.g.
/// `sse_events_dropped_total{layer=a,reason=overflow}`.
fn snapshot(snapshotter: &Snapshotter) -> BTreeMap<String, DebugValue> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[track_caller]
fn counter(snap: &BTreeMap<String, DebugValue>, key: &str) -> u64 {
    match snap.get(key) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{key}: expected a counter, got {other:?}"),
    }
}

#[track_caller]
fn gauge(snap: &BTreeMap<String, DebugValue>, key: &str) -> f64 {
    match snap.get(key) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{key}: expected a gauge, got {other:?}"),
    }
}

#[track_caller]
fn histogram(snap: &BTreeMap<String, DebugValue>, key: &str) -> Vec<f64> {
    match snap.get(key) {
        Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
        other => panic!("{key}: expected a histogram, got {other:?}"),
    }
}

/// Reads frames of `body` until their bytes end with `end`.
async fn read_until<B>(body: &mut B, end: &[u8]) -> Vec<u8>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut seen = Vec::new();
    while !seen.ends_with(end) {
        let frame = body.frame().await.expect("a frame").unwrap();
        if let Ok(data) = frame.into_data() {
            seen.extend_from_slice(&data);
        }
    }
    seen
}

/// Layer `a`: three events, one too large (skipped), a heartbeat on the paused clock,
/// and one request over its stream limit. Layer `b`: ten events into a buffer of four
/// that drops the newest. Every value is then exactly what the traffic made.
#[tokio::test(start_paused = true)]
async fn a_known_traffic_pattern_gives_exact_values() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);

    let a = SseLayer::new()
        .heartbeat(Duration::from_secs(1))
        .max_event_bytes(32)
        .max_streams(StreamLimit::reject(1));
    let b = SseLayer::new()
        .no_heartbeat()
        .buffer(BufferLimits::new(4, 1 << 20))
        .on_overflow(Overflow::DropNewest);
    let (a_stats, b_stats) = (a.stats(), b.stats());
    let a_metrics = SseMetrics::with_labels(a.stats(), &[("layer", "a")]);
    let b_metrics = SseMetrics::with_labels(b.stats(), &[("layer", "b")]);

    let a_svc = a.layer(service_fn(|_req: Request<()>| async {
        let events = [
            "0".to_owned(),
            "1".to_owned(),
            "2".to_owned(),
            "x".repeat(100),
        ]
        .map(|data| Ok::<_, Infallible>(Event::new().data(data)));
        let events = futures_util::StreamExt::chain(
            tokio_stream::iter(events),
            futures_util::stream::pending(),
        );
        Ok::<_, Infallible>(SseResponse::new(events))
    }));
    let opened = Instant::now();
    let mut a_body = a_svc
        .clone()
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .into_body();
    let wire = read_until(&mut a_body, b":\n\n").await;
    assert_eq!(&wire[..], b"data: 0\n\ndata: 1\n\ndata: 2\n\n:\n\n");
    let shed = a_svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let lifetime = opened.elapsed().as_secs_f64();
    drop(a_body);

    let b_svc = b.layer(service_fn(|_req: Request<()>| async {
        let events = (0..10).map(|i| Ok::<_, Infallible>(Event::new().data(i.to_string())));
        Ok::<_, Infallible>(SseResponse::new(tokio_stream::iter(events)))
    }));
    let b_res = b_svc.oneshot(Request::new(())).await.unwrap();
    while b_stats.events_dropped() < 6 {
        tokio::task::yield_now().await;
    }
    let b_wire = b_res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&b_wire[..], b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n");
    assert_eq!((a_stats.open_streams(), b_stats.open_streams()), (0, 0));

    a_metrics.record();
    b_metrics.record();
    let snap = snapshot(&snapshotter);
    let expected_a = [
        ("sse_streams_opened_total", 1),
        ("sse_events_sent_total", 3),
        ("sse_bytes_sent_total", 27 + 3),
        ("sse_heartbeats_sent_total", 1),
        ("sse_requests_shed_total", 1),
        ("sse_source_errors_total", 0),
        ("sse_streams_expired_total", 0),
    ];
    let expected_b = [
        ("sse_streams_opened_total", 1),
        ("sse_events_sent_total", 4),
        ("sse_bytes_sent_total", 36),
        ("sse_heartbeats_sent_total", 0),
        ("sse_requests_shed_total", 0),
        ("sse_source_errors_total", 0),
        ("sse_streams_expired_total", 0),
    ];
    for (layer, expected) in [("a", expected_a), ("b", expected_b)] {
        for (name, value) in expected {
            assert_eq!(
                counter(&snap, &format!("{name}{{layer={layer}}}")),
                value,
                "{layer} {name}"
            );
        }
        for name in ["sse_streams_open", "sse_queued_events", "sse_queued_bytes"] {
            assert_eq!(
                gauge(&snap, &format!("{name}{{layer={layer}}}")),
                0.0,
                "{layer} {name}"
            );
        }
    }
    let reasons = [
        ("sse_events_dropped_total{layer=a,reason=overflow}", 0),
        ("sse_events_dropped_total{layer=a,reason=too_large}", 1),
        ("sse_events_dropped_total{layer=b,reason=overflow}", 6),
        ("sse_events_dropped_total{layer=b,reason=too_large}", 0),
        ("sse_disconnects_total{layer=a,reason=overflow}", 0),
        ("sse_disconnects_total{layer=a,reason=stall}", 0),
        ("sse_disconnects_total{layer=b,reason=overflow}", 0),
        ("sse_disconnects_total{layer=b,reason=stall}", 0),
    ];
    for (key, value) in reasons {
        assert_eq!(counter(&snap, key), value, "{key}");
    }
    // One sample per stream that opened, its time open on the paused clock.
    assert!(lifetime >= 1.0, "a heartbeat interval went by: {lifetime}");
    assert_eq!(
        histogram(&snap, "sse_stream_lifetime_seconds{layer=a}"),
        [lifetime]
    );
    assert_eq!(
        histogram(&snap, "sse_stream_lifetime_seconds{layer=b}"),
        [0.0]
    );
    // Nothing without the layers' labels: two layers never share a series.
    assert!(
        snap.keys().all(|key| key.contains("layer=")),
        "{:?}",
        snap.keys()
    );
}

/// A stream open at `record` time shows in the gauge; a stream that is still open
/// records no lifetime yet.
#[tokio::test]
async fn the_open_streams_gauge_follows_streams() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let layer = SseLayer::new();
    let sse_metrics = SseMetrics::new(layer.stats());
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        let events = futures_util::stream::pending::<Result<Event, Infallible>>();
        Ok::<_, Infallible>(SseResponse::new(events))
    }));
    let open: Vec<_> =
        futures_util::future::join_all((0..3).map(|_| svc.clone().oneshot(Request::new(())))).await;

    sse_metrics.record();
    let snap = snapshot(&snapshotter);
    assert_eq!(gauge(&snap, "sse_streams_open{}"), 3.0);
    assert_eq!(counter(&snap, "sse_streams_opened_total{}"), 3);
    assert_eq!(
        histogram(&snap, "sse_stream_lifetime_seconds{}"),
        Vec::<f64>::new()
    );

    drop(open);
    sse_metrics.record();
    let snap = snapshot(&snapshotter);
    assert_eq!(gauge(&snap, "sse_streams_open{}"), 0.0);
    assert_eq!(histogram(&snap, "sse_stream_lifetime_seconds{}").len(), 3);
}

/// 1,000 topics, the first 30 with 1..=30 subscribers: with `max_topics(10)` only
/// the ten busiest get a `topic` label, everything else is summed under `other`, and
/// the sums still add up to the whole hub.
#[tokio::test]
async fn the_topic_label_stays_bounded_with_a_thousand_topics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let hub = Hub::new();
    let hub_metrics = HubMetrics::new(hub.clone()).max_topics(10);
    for i in 0..1000 {
        hub.publish(&format!("t{i}"), Event::new().data("x"))
            .await
            .unwrap();
    }
    let mut subscriptions = Vec::new();
    for i in 0..30u64 {
        for _ in 0..=i {
            subscriptions.push(hub.subscribe(&format!("t{i}"), None).await);
        }
    }

    hub_metrics.record();
    let snap = snapshot(&snapshotter);
    assert_eq!(gauge(&snap, "sse_hub_topics{}"), 1000.0);
    let labels: Vec<&str> = snap
        .keys()
        .filter_map(|key| key.strip_prefix("sse_hub_subscribers{topic="))
        .map(|rest| rest.trim_end_matches('}'))
        .collect();
    let mut expected: Vec<String> = (20..30).map(|i| format!("t{i}")).collect();
    expected.push("other".to_owned());
    expected.sort();
    assert_eq!(labels, expected);
    for name in [
        "sse_hub_subscribers",
        "sse_hub_published_total",
        "sse_hub_lagged_total",
        "sse_hub_history_events",
        "sse_hub_history_bytes",
    ] {
        let series = snap
            .keys()
            .filter(|k| k.starts_with(&format!("{name}{{")))
            .count();
        assert_eq!(series, 11, "{name}");
    }
    assert_eq!(gauge(&snap, "sse_hub_subscribers{topic=t29}"), 30.0);
    assert_eq!(
        gauge(&snap, "sse_hub_subscribers{topic=other}"),
        (1..=20).sum::<u64>() as f64
    );
    assert_eq!(counter(&snap, "sse_hub_published_total{topic=t29}"), 1);
    assert_eq!(counter(&snap, "sse_hub_published_total{topic=other}"), 990);
    assert_eq!(gauge(&snap, "sse_hub_history_events{topic=other}"), 990.0);
}

/// Counters go up by what happened since the last `record`, whichever label the
/// topic lands in: a topic that leaves the top keeps counting under `other`, and its
/// own label's gauges fall to 0.
#[tokio::test]
async fn a_topic_that_leaves_the_top_counts_under_other() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let hub = Hub::new();
    let hub_metrics = HubMetrics::new(hub.clone()).max_topics(1);
    let first = hub.subscribe("first", None).await;
    let _second = hub.subscribe("second", None).await;
    hub.publish("first", Event::new().data("x")).await.unwrap();
    hub.publish("second", Event::new().data("x")).await.unwrap();
    hub_metrics.record();
    let snap = snapshot(&snapshotter);
    // Tied on subscribers and publishes: by name.
    assert_eq!(gauge(&snap, "sse_hub_subscribers{topic=first}"), 1.0);
    assert_eq!(counter(&snap, "sse_hub_published_total{topic=first}"), 1);
    assert_eq!(counter(&snap, "sse_hub_published_total{topic=other}"), 1);

    drop(first);
    let _more = hub.subscribe("second", None).await;
    for _ in 0..3 {
        hub.publish("first", Event::new().data("y")).await.unwrap();
    }
    hub_metrics.record();
    // The debugging recorder hands out what counters gained since its last snapshot.
    let snap = snapshot(&snapshotter);
    assert_eq!(gauge(&snap, "sse_hub_subscribers{topic=second}"), 2.0);
    assert_eq!(gauge(&snap, "sse_hub_subscribers{topic=first}"), 0.0);
    assert_eq!(counter(&snap, "sse_hub_published_total{topic=first}"), 0);
    assert_eq!(counter(&snap, "sse_hub_published_total{topic=other}"), 3);
}

/// An allow-list: the listed topics get their label, every other one is `other`.
#[tokio::test]
async fn a_topic_label_map_is_an_allow_list() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let hub = Hub::new();
    let hub_metrics = HubMetrics::new(hub.clone())
        .labels(&[("hub", "main")])
        .topic_label(|topic| (topic == "prices").then(|| topic.to_owned()));
    let mut subscriptions = Vec::new();
    for topic in ["prices", "user:1", "user:2", "user:3"] {
        subscriptions.push(hub.subscribe(topic, None).await);
    }
    hub_metrics.record();
    let snap = snapshot(&snapshotter);
    let series: Vec<&String> = snap
        .keys()
        .filter(|k| k.starts_with("sse_hub_subscribers{"))
        .collect();
    assert_eq!(
        series,
        [
            "sse_hub_subscribers{hub=main,topic=other}",
            "sse_hub_subscribers{hub=main,topic=prices}"
        ]
    );
    assert_eq!(
        gauge(&snap, "sse_hub_subscribers{hub=main,topic=other}"),
        3.0
    );
}
