//! One topic per connection (`{i}` in the URL) and `sse-loadgen publish`, against the
//! Python fixture's `/topic?id=K` and `POST /publish?topic=K`: every publish reaches
//! the one subscriber of its topic, in order, with its latency measured.

mod support;

use support::{measure, num, python_server};

#[test]
fn a_topic_per_connection_and_a_publisher_spread_over_them() {
    let server = python_server();
    let sub_url = format!("{}/topic?id=user:{{i}}", server.base);
    // Four subscribers on user:10 .. user:13, measuring for 5 s from their first
    // connection; the publisher starts after 1.5 s and publishes for 2 s.
    let subscribers = std::thread::spawn(move || {
        measure(&[
            "fanout",
            &sub_url,
            "-c",
            "4",
            "--id-start",
            "10",
            "-d",
            "5",
            "-w",
            "0",
        ])
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pub_url = format!("{}/publish?topic=user:{{i}}", server.base);
    let p = measure(&[
        "publish",
        &pub_url,
        "--rate",
        "40",
        "-d",
        "2",
        "--id-start",
        "10",
        "--id-count",
        "4",
        "-c",
        "2",
    ]);
    let s = subscribers.join().expect("the subscribers' thread");
    assert_eq!(num(&p, "publishes"), 80.0);
    assert_eq!(num(&p, "published"), 80.0, "{p}");
    assert_eq!(num(&p, "publish_failed"), 0.0);
    assert!(num(&p, "post_us_p99") > 0.0);
    assert_eq!(num(&s, "connected"), 4.0);
    // Each subscriber is on its own topic: 20 events each, numbered 0..19.
    assert_eq!(num(&s, "deliveries"), 80.0, "{s}");
    assert_eq!(num(&s, "missed"), 0.0);
    assert_eq!(num(&s, "out_of_order"), 0.0);
    assert_eq!(num(&s, "bad_events"), 0.0, "every body has seq and ts_ns");
    assert!(num(&s, "lat_us_max") >= num(&s, "lat_us_p50"));
    // Four publishes per topic every 100 ms at 40/s: events 100 ms apart.
    assert!(num(&s, "event_gap_ms_max") >= num(&s, "event_gap_ms_p50"));
}

/// A publisher whose server refuses: every publish is counted as failed, with why.
#[test]
fn publish_failures_are_counted() {
    let server = python_server();
    let url = format!("{}/elsewhere", server.base);
    let p = measure(&["publish", &url, "--rate", "20", "-d", "0.5"]);
    assert_eq!(num(&p, "published"), 0.0);
    assert_eq!(num(&p, "publish_failed"), 10.0);
    let samples = p["fail_samples"].to_string();
    assert!(samples.contains("the server answered 404"), "{samples}");
}
