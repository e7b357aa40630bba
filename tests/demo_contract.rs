//! The demo server (`examples/demo.rs`) checked from outside against its HTTP contract
//! (CONTRACT.md): the compiled example is started as a child process on an ephemeral
//! port and spoken to over HTTP/1.1 and HTTP/2 with reqwest and eventsource-stream.
//!
//! The example is built first with `cargo build --example demo` in the profile of this
//! test binary (quick when it is up to date).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use eventsource_stream::{Event as SseEvent, Eventsource as _};
use futures_util::StreamExt as _;
use reqwest::{header, Client, Response, StatusCode, Version};
use support::demo::Demo;

/// Patience for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(10);
/// The contract: the process exits within 5 s of SIGINT/SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------

fn http1() -> Client {
    Client::builder()
        .no_proxy()
        .http1_only()
        .connect_timeout(WAIT)
        .build()
        .unwrap()
}

fn http2() -> Client {
    Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .connect_timeout(WAIT)
        .build()
        .unwrap()
}

async fn get(client: &Client, url: &str) -> Response {
    tokio::time::timeout(WAIT, client.get(url).send())
        .await
        .expect("response headers in time")
        .expect("request")
}

/// GET `url` with `Last-Event-ID: id`.
async fn get_after(client: &Client, url: &str, id: &str) -> Response {
    tokio::time::timeout(WAIT, client.get(url).header("last-event-id", id).send())
        .await
        .expect("response headers in time")
        .expect("request")
}

/// The headers every SSE response carries.
#[track_caller]
fn assert_sse_headers(res: &Response) {
    assert_eq!(res.status(), StatusCode::OK, "{}", res.url());
    let headers = res.headers();
    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type == "text/event-stream" || content_type == "text/event-stream; charset=utf-8",
        "content-type {content_type:?}"
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
    assert_eq!(headers["x-accel-buffering"], "no");
    assert!(
        headers.get(header::CONTENT_LENGTH).is_none(),
        "no content-length"
    );
}

/// Every line ends with a single `\n` and no `\r` anywhere.
#[track_caller]
fn assert_lf_only(wire: &[u8]) {
    assert!(
        !wire.contains(&b'\r'),
        "a \\r on the wire: {:?}",
        String::from_utf8_lossy(wire)
    );
}

/// The whole body of a finite SSE response, checked for framing.
async fn sse_body(res: Response) -> Vec<u8> {
    assert_sse_headers(&res);
    let body = tokio::time::timeout(WAIT, res.bytes())
        .await
        .expect("the stream ends in time")
        .expect("the stream ends cleanly")
        .to_vec();
    assert_lf_only(&body);
    assert!(
        body.is_empty() || body.ends_with(b"\n\n"),
        "the last block ends with an empty line: {:?}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// Parses wire bytes the way a third-party client does.
async fn parse(wire: &[u8]) -> Vec<SseEvent> {
    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::copy_from_slice(wire))])
        .eventsource()
        .map(|event| event.expect("a well-formed event"))
        .collect()
        .await
}

/// Reads an endless response until `done(bytes so far)`, within `within`.
async fn read_until(res: Response, within: Duration, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + within;
    let mut body = res.bytes_stream();
    let mut wire = Vec::new();
    while !done(&wire) {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(Ok(chunk))) => wire.extend_from_slice(&chunk),
            Ok(Some(Err(err))) => panic!("the stream failed: {err}"),
            Ok(None) => panic!(
                "the stream ended early after {:?}",
                String::from_utf8_lossy(&wire)
            ),
            Err(_) => panic!(
                "not done within {within:?}; got {:?}",
                String::from_utf8_lossy(&wire)
            ),
        }
    }
    wire
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn blocks(wire: &[u8]) -> usize {
    count(wire, b"\n\n")
}

/// Heartbeats only: every block is a comment.
#[track_caller]
fn assert_only_comments(wire: &[u8]) {
    assert_lf_only(wire);
    let text = std::str::from_utf8(wire).unwrap();
    for line in text.split('\n').filter(|line| !line.is_empty()) {
        assert!(line.starts_with(':'), "not a comment: {line:?} in {text:?}");
    }
}

fn events_wire(ids: std::ops::RangeInclusive<u64>) -> String {
    ids.map(|i| format!("id: {i}\nevent: tick\ndata: {{\"n\":{i}}}\n\n"))
        .collect()
}

// ---------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn events_are_exact() {
    let demo = Demo::start().await;
    let client = http1();

    let wire = sse_body(get(&client, &demo.url("/events?count=3")).await).await;
    assert_eq!(String::from_utf8(wire).unwrap(), events_wire(1..=3));

    // Defaults: 5 events, no pause.
    let wire = sse_body(get(&client, &demo.url("/events")).await).await;
    let events = parse(&wire).await;
    assert_eq!(events.len(), 5);
    for (i, event) in (1..).zip(&events) {
        assert_eq!(event.id, i.to_string());
        assert_eq!(event.event, "tick");
        let data: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data, serde_json::json!({ "n": i }));
    }

    let wire = sse_body(get(&client, &demo.url("/events?count=0")).await).await;
    assert!(wire.is_empty());

    // Paced: the first at once, the second a second later. Checked by order, not by
    // clock: once event 1 is in, nothing else is for a while, then event 2 and the end.
    let res = get(&client, &demo.url("/events?count=2&interval_ms=1000")).await;
    let mut body = res.bytes_stream();
    let first = events_wire(1..=1).into_bytes();
    let mut wire = Vec::new();
    while wire.len() < first.len() {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("event 1 at once")
            .expect("stream open")
            .unwrap();
        wire.extend_from_slice(&chunk);
    }
    assert_eq!(wire, first, "event 1 alone");
    let early = tokio::time::timeout(Duration::from_millis(300), body.next()).await;
    assert!(
        early.is_err(),
        "event 2 is paced, not sent with event 1: {early:?}"
    );
    while let Some(chunk) = tokio::time::timeout(WAIT, body.next())
        .await
        .expect("event 2 and the end in time")
    {
        wire.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(wire).unwrap(), events_wire(1..=2));
}

#[tokio::test]
async fn multiline_data_keeps_framing() {
    let demo = Demo::start().await;
    let wire = sse_body(get(&http1(), &demo.url("/multiline")).await).await;
    assert_eq!(
        String::from_utf8(wire.clone()).unwrap(),
        "data: line one\ndata: line two\ndata: line three\n\n\
         data: a\ndata: b\ndata: c\n\n"
    );
    let events = parse(&wire).await;
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["line one\nline two\nline three", "a\nb\nc"]);
}

#[tokio::test]
async fn resume_after_last_event_id() {
    let demo = Demo::start().await;
    let client = http1();
    let url = demo.url("/resume");

    let wire = sse_body(get_after(&client, &url, "7").await).await;
    assert_eq!(
        String::from_utf8(wire.clone()).unwrap(),
        "id: 8\ndata: 8\n\nid: 9\ndata: 9\n\nid: 10\ndata: 10\n\n"
    );
    let ids: Vec<String> = parse(&wire).await.into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["8", "9", "10"]);

    let all = sse_body(get(&client, &url).await).await;
    let events = parse(&all).await;
    assert_eq!(events.len(), 10);
    for (i, event) in (1..=10).zip(&events) {
        assert_eq!(
            (event.id.as_str(), event.data.as_str()),
            (&*i.to_string(), &*i.to_string())
        );
    }

    assert!(sse_body(get_after(&client, &url, "10").await)
        .await
        .is_empty());
    // Not a number: from the start.
    assert_eq!(sse_body(get_after(&client, &url, "junk").await).await, all);
}

#[tokio::test]
async fn retry_hint_then_one_event() {
    let demo = Demo::start().await;
    let wire = sse_body(get(&http1(), &demo.url("/retry")).await).await;
    let text = String::from_utf8(wire.clone()).unwrap();
    assert!(text.lines().any(|line| line == "retry: 1500"), "{text:?}");
    assert_eq!(text, "retry: 1500\ndata: ok\n\n");
    let events = parse(&wire).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].data, "ok");
    assert_eq!(events[0].retry, Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn heartbeat_endpoint_sends_comments() {
    let demo = Demo::start().await;
    let client = http1();

    let res = get(&client, &demo.url("/heartbeat?ms=50")).await;
    assert_sse_headers(&res);
    // Their pacing is checked on tokio's paused clock (tests/heartbeat*.rs) and from
    // outside by the load generator (heartbeat gaps, BENCHMARKS.md).
    let wire = read_until(res, WAIT, |wire| blocks(wire) >= 3).await;
    assert_only_comments(&wire);

    // Default interval: 200 ms.
    let res = get(&client, &demo.url("/heartbeat")).await;
    assert_sse_headers(&res);
    let wire = read_until(res, Duration::from_secs(2), |wire| blocks(wire) >= 2).await;
    assert_only_comments(&wire);
}

#[tokio::test]
async fn idle_sends_heartbeats() {
    let demo = Demo::start().await;
    let res = get(&http1(), &demo.url("/idle?hb_ms=50")).await;
    assert_sse_headers(&res);
    let wire = read_until(res, WAIT, |wire| blocks(wire) >= 3).await;
    assert_only_comments(&wire);
}

/// The first `n` `/stream` events, each exactly 72 bytes with the right `seq`.
#[track_caller]
fn assert_stream_events(wire: &[u8], n: usize) {
    assert_lf_only(wire);
    for (seq, event) in wire.chunks_exact(72).take(n).enumerate() {
        let event = std::str::from_utf8(event).unwrap();
        let payload = event
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("event {seq} is not one 72-byte data line: {event:?}"));
        assert_eq!(payload.len(), 64);
        let json: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(json["seq"], seq as u64, "{payload}");
        let pad = json["pad"].as_str().unwrap();
        assert!(pad.bytes().all(|b| b == b'x'), "{payload}");
        assert_eq!(json.as_object().unwrap().len(), 2, "{payload}");
    }
}

#[tokio::test]
async fn stream_events_are_72_bytes() {
    let demo = Demo::start().await;
    for (client, query) in [(http1(), ""), (http1(), "?hb_ms=0"), (http2(), "?hb_ms=50")] {
        let res = get(&client, &demo.url(&format!("/stream{query}"))).await;
        assert_sse_headers(&res);
        // Past seq 9 and 99, where the padding gets shorter.
        let n = 120;
        let wire = read_until(res, WAIT, |wire| wire.len() >= 72 * n).await;
        assert_stream_events(&wire, n);
    }
}

#[tokio::test]
async fn slow_events_are_1_kib_and_memory_stays_bounded() {
    let demo = Demo::start().await;
    let client = http1();

    let wire = sse_body(get(&client, &demo.url("/slow?count=50")).await).await;
    let events = parse(&wire).await;
    assert_eq!(events.len(), 50);
    for (i, event) in (1..).zip(&events) {
        assert_eq!(event.id, i.to_string());
        assert_eq!(event.data.len(), 1024);
    }

    // A client that reads nothing while the source could produce ~1 GiB.
    let before = demo.rss_kib();
    let stalled = get(&client, &demo.url("/slow?count=1000000")).await;
    assert_sse_headers(&stalled);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = demo.rss_kib();
    assert!(
        after.saturating_sub(before) < 64 * 1024,
        "server memory grew from {before} KiB to {after} KiB"
    );
    // It still gets its events, in order, when it reads.
    let wire = read_until(stalled, WAIT, |wire| blocks(wire) >= 100).await;
    assert_lf_only(&wire);
    let first = parse(&wire).await;
    assert_eq!(first[0].id, "1");
    assert_eq!(first[99].id, "100");
}

#[tokio::test]
async fn fanout_delivers_increasing_seq() {
    let demo = Demo::start_with(&[("FANOUT_MS", "20")]).await;
    let res = get(&http1(), &demo.url("/fanout")).await;
    assert_sse_headers(&res);
    let wire = read_until(res, WAIT, |wire| blocks(wire) >= 10).await;
    assert_lf_only(&wire);
    let events = parse(&wire).await;
    assert!(events.len() >= 10);
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut last: Option<(u64, u64)> = None;
    for event in &events {
        let json: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        let seq = json["seq"].as_u64().unwrap();
        let ts = json["ts_ns"].as_u64().unwrap();
        assert!(
            now_ns.abs_diff(ts) < 60_000_000_000,
            "ts_ns {ts} vs now {now_ns}"
        );
        if let Some((last_seq, last_ts)) = last {
            assert_eq!(seq, last_seq + 1, "consecutive seq: {:?}", event.data);
            assert!(ts >= last_ts);
        }
        last = Some((seq, ts));
    }
}

#[tokio::test]
async fn publish_reaches_fanout_exactly() {
    // Ticks once at start, then not for an hour: only published events arrive.
    let demo = Demo::start_with(&[("FANOUT_MS", "3600000")]).await;
    let client = http1();
    let subscriber = get(&client, &demo.url("/fanout")).await;
    assert_sse_headers(&subscriber);

    let publish = |body: Vec<u8>| {
        let client = client.clone();
        let url = demo.url("/publish");
        async move {
            let res = tokio::time::timeout(WAIT, client.post(url).body(body).send())
                .await
                .expect("publish answered in time")
                .expect("publish request");
            res.status()
        }
    };

    let text = "line one\r\nline two\rline three\nünïcödé ✓ 🚀 \"quoted\" ";
    assert_eq!(publish(text.into()).await, StatusCode::NO_CONTENT);
    // Not UTF-8, and one byte too large: refused, not published.
    let refused = publish(vec![b'o', b'k', 0xff, 0xfe]).await;
    assert!(refused.is_client_error(), "{refused}");
    let refused = publish(vec![b'a'; (1 << 20) + 1]).await;
    assert!(refused.is_client_error(), "{refused}");
    // Exactly 1 MiB is fine.
    assert_eq!(publish(vec![b'b'; 1 << 20]).await, StatusCode::NO_CONTENT);
    assert_eq!(publish(b"after".to_vec()).await, StatusCode::NO_CONTENT);

    let wire = read_until(subscriber, WAIT, |wire| wire.ends_with(b"data: after\n\n")).await;
    assert_lf_only(&wire);
    // The contract is about the data: leave out the ids the server may give events.
    let wire: Vec<u8> = wire
        .split_inclusive(|&b| b == b'\n')
        .filter(|line| !line.starts_with(b"id: "))
        .flatten()
        .copied()
        .collect();
    // The start-up tick (seq 0) normally goes out before anyone subscribes; skip it if
    // this subscriber was quicker.
    let mut wire = &wire[..];
    while wire.starts_with(b"data: {\"seq\":") {
        let end = wire.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        wire = &wire[end..];
    }
    let mib = "b".repeat(1 << 20);
    let expected = format!(
        "data: line one\ndata: line two\ndata: line three\ndata: ünïcödé ✓ 🚀 \"quoted\" \n\n\
         data: {mib}\n\ndata: after\n\n"
    );
    // (Not assert_eq: a failure would print two MiB.)
    if wire != expected.as_bytes() {
        let at = wire
            .iter()
            .zip(expected.as_bytes())
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "fanout wire differs at byte {at} (got {} bytes, expected {}): {:?}",
            wire.len(),
            expected.len(),
            String::from_utf8_lossy(&wire[at.saturating_sub(40)..(at + 40).min(wire.len())])
        );
    }
    let data: Vec<String> = parse(wire).await.into_iter().map(|e| e.data).collect();
    assert_eq!(data.len(), 3);
    assert_eq!(
        data[0],
        "line one\nline two\nline three\nünïcödé ✓ 🚀 \"quoted\" "
    );
    assert!(data[1] == mib, "the 1 MiB event arrives whole");
    assert_eq!(data[2], "after");
}

#[tokio::test]
async fn plain_endpoints_and_errors() {
    let demo = Demo::start().await;
    let client = http1();

    let health = get(&client, &demo.url("/health")).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert!(!health.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let body = health.bytes().await.unwrap();
    assert!(!body.is_empty() && body.len() < 100);

    let page = get(&client, &demo.url("/")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("new EventSource(\"/events?count=1000000&interval_ms=1000\")"));

    for path in ["/nope", "/events/", "/EVENTS", "/publish", "/favicon.ico"] {
        let res = get(&client, &demo.url(path)).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
    for path in ["/events", "/health", "/fanout"] {
        let res = client.post(demo.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    for path in [
        "/events?count=abc",
        "/events?count=-1",
        "/events?interval_ms=1.5",
        "/events?interval_ms=99999999999999999999999",
        "/slow?count=",
        "/heartbeat?ms=0",
        "/stream?hb_ms=x",
        "/idle?hb_ms=18446744073709551615",
    ] {
        let res = get(&client, &demo.url(path)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "GET {path}");
    }
    // Still up.
    let res = get(&client, &demo.url("/health")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let demo = Demo::start().await;
    let client = http2();

    let health = get(&client, &demo.url("/health")).await;
    assert_eq!(health.version(), Version::HTTP_2);
    assert_eq!(health.status(), StatusCode::OK);

    let res = get(&client, &demo.url("/events?count=3")).await;
    assert_eq!(res.version(), Version::HTTP_2);
    let wire = sse_body(res).await;
    assert_eq!(String::from_utf8(wire).unwrap(), events_wire(1..=3));

    let wire = sse_body(get(&client, &demo.url("/multiline")).await).await;
    assert_eq!(parse(&wire).await.len(), 2);

    let res = get(&client, &demo.url("/idle?hb_ms=50")).await;
    assert_eq!(res.version(), Version::HTTP_2);
    assert_sse_headers(&res);
    let wire = read_until(res, WAIT, |wire| blocks(wire) >= 2).await;
    assert_only_comments(&wire);
}

// ---------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------

/// Reads an open stream to its end; returns its last bytes.
async fn read_to_end(res: Response) -> Vec<u8> {
    tokio::time::timeout(EXIT_WITHIN, res.bytes())
        .await
        .expect("the stream ends after the signal")
        .expect("the stream ends cleanly")
        .to_vec()
}

#[tokio::test]
async fn sigterm_ends_streams_and_exits_zero() {
    let mut demo = Demo::start().await;
    let idle = get(&http1(), &demo.url("/idle?hb_ms=60000")).await;
    assert_sse_headers(&idle);
    let idle_h2 = get(&http2(), &demo.url("/idle?hb_ms=60000")).await;
    assert_sse_headers(&idle_h2);
    let ticks = get(
        &http1(),
        &demo.url("/events?count=1000000&interval_ms=1000"),
    )
    .await;
    assert_sse_headers(&ticks);

    demo.signal("TERM");
    let (idle, idle_h2, ticks) =
        tokio::join!(read_to_end(idle), read_to_end(idle_h2), read_to_end(ticks));
    // Each stream ends with the reconnection hint.
    for wire in [&idle, &idle_h2, &ticks] {
        assert_lf_only(wire);
        assert!(
            wire.ends_with(b"retry: 1000\n\n"),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    // `exit_status` fails the test if the process has not exited within EXIT_WITHIN.
    let status = demo.exit_status(EXIT_WITHIN).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn sigint_exits_zero() {
    let mut demo = Demo::start().await;
    let res = get(&http1(), &demo.url("/health")).await;
    assert_eq!(res.status(), StatusCode::OK);
    demo.signal("INT");
    let status = demo.exit_status(EXIT_WITHIN).await;
    assert!(status.success(), "exit status {status}");
}
