//! sse-loadgen against a server that has nothing to do with tower-sse: the ~35 lines of
//! Python (standard library only) in `tests/fixtures/sse_server.py`. Each scenario,
//! the errors a user meets, and a plot from the results.

mod support;

use support::{loadgen, measure, num, python_server, temp_dir};

/// Heartbeats every 200 ms: the median gap is near the interval, every connection
/// heard some, and the verdict fields are there.
#[test]
fn idle_heartbeat_gaps_match_the_interval() {
    let server = python_server();
    let url = format!("{}/idle?hb_ms=200", server.base);
    let pid = server.pid().to_string();
    let r = measure(&[
        "idle",
        &url,
        "-c",
        "20",
        "-d",
        "2",
        "-w",
        "0.5",
        "--heartbeat-ms",
        "200",
        "--pid",
        &pid,
    ]);
    assert_eq!(num(&r, "connected"), 20.0);
    assert!(num(&r, "heartbeats") > 0.0);
    assert_eq!(num(&r, "silent_conns"), 0.0);
    let p50 = num(&r, "gap_ms_p50");
    // The gap between two heartbeats of one connection is the interval, seen through
    // two schedulers: within the tool's own "late" bound of 1.5 intervals.
    assert!(
        (100.0..=300.0).contains(&p50),
        "gap p50 {p50} ms against 200 ms"
    );
    assert!(num(&r, "gap_ms_p99") >= p50 && num(&r, "gap_ms_max") >= num(&r, "gap_ms_p99"));
    num(&r, "late_conns");
    // --pid: the server's CPU and memory were sampled.
    assert!(num(&r, "server_rss_kb") > 0.0);
    num(&r, "server_cpu_s");
}

/// A server whose keep-alive is an event: silent connections unless told its type.
#[test]
fn idle_heartbeat_events() {
    let server = python_server();
    let url = format!("{}/idle?hb_ms=100&event=1", server.base);
    let common = [
        "idle",
        &url,
        "-c",
        "5",
        "-d",
        "1",
        "-w",
        "0.3",
        "--heartbeat-ms",
        "100",
    ];
    let r = measure(&common);
    assert_eq!(
        num(&r, "silent_conns"),
        5.0,
        "comments only: no heartbeat heard"
    );
    assert!(num(&r, "events_unexpected") > 0.0);
    let r = measure(&[&common[..], &["--heartbeat-event", "ping"]].concat());
    assert_eq!(num(&r, "silent_conns"), 0.0);
    assert_eq!(num(&r, "events_unexpected"), 0.0);
    assert!(num(&r, "heartbeats") > 0.0);
}

#[test]
fn stream_counts_events_and_bytes() {
    let server = python_server();
    let url = format!("{}/stream", server.base);
    let r = measure(&["stream", &url, "-c", "2", "-d", "1", "-w", "0.3"]);
    assert!(num(&r, "events_per_s") > 0.0);
    assert!(num(&r, "mb_per_s") > 0.0);
    assert_eq!(num(&r, "bad_events"), 0.0, "every event has a seq");
    assert_eq!(num(&r, "missed") + num(&r, "out_of_order"), 0.0);
}

#[test]
fn fanout_latency_from_a_custom_field() {
    let server = python_server();
    let url = format!("{}/fanout", server.base);
    let r = measure(&[
        "fanout",
        &url,
        "-c",
        "5",
        "-d",
        "1",
        "-w",
        "0.3",
        "--ts-field",
        "ts_ms",
        "--ts-unit",
        "ms",
        "--publish-ms",
        "20",
    ]);
    assert!(num(&r, "deliveries") > 0.0);
    assert_eq!(num(&r, "bad_events"), 0.0, "every event has a ts_ms");
    assert!(num(&r, "lat_us_p50") >= 0.0 && num(&r, "lat_us_max") >= num(&r, "lat_us_p50"));
    num(&r, "missed");
}

/// The Markdown table on stdout by default; JSON in a file with --json.
#[test]
fn markdown_and_json_file() {
    let server = python_server();
    let url = format!("{}/idle?hb_ms=100", server.base);
    let file = temp_dir().join("idle.json");
    let file_arg = file.to_str().expect("utf-8 path");
    let out = loadgen(&[
        "idle", &url, "-c", "3", "-d", "1", "-w", "0.2", "--hb-ms", "100", "--json", file_arg,
    ]);
    assert!(out.status.success());
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.starts_with("## sse-loadgen idle: "), "{md}");
    assert!(md.contains("| metric | value |\n|---|---|\n"), "{md}");
    assert!(md.contains("| gap_ms_p50 | "), "{md}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("the JSON file"))
            .expect("the file is JSON");
    assert_eq!(json["scenario"], "idle");
    assert_eq!(num(&json, "connected"), 3.0);
}

/// What a user sees when the URL is wrong: one line saying why, exit status 1.
#[test]
fn clear_errors_and_exit_status() {
    let server = python_server();
    let refused = {
        // A port nobody listens on: bound, then closed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        format!("http://127.0.0.1:{port}/stream")
    };
    for (url, expected) in [
        (refused, "Connection refused"),
        (
            format!("{}/missing", server.base),
            "the server answered 404 Not Found, not 200",
        ),
        (
            format!("{}/html", server.base),
            "content-type is \"text/html\", not text/event-stream",
        ),
    ] {
        let out = loadgen(&["stream", &url, "-c", "50", "-d", "1", "--format", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(
            stderr.contains("sse-loadgen: error: ") && stderr.contains(expected),
            "{url}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "no result on stdout");
    }
    let out = loadgen(&["idle", "http://127.0.0.1:1/"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing --heartbeat-ms is a usage error"
    );
}

/// `plot` makes an SVG from JSON results: one line per series (the `server` tag).
#[test]
fn plot_makes_an_svg() {
    let server = python_server();
    let dir = temp_dir();
    let mut files = Vec::new();
    for (conns, tag) in [
        ("1", "server=py"),
        ("3", "server=py"),
        ("2", "server=other"),
    ] {
        let file = dir.join(format!("stream-{conns}.json"));
        let url = format!("{}/stream", server.base);
        let out = loadgen(&[
            "stream",
            &url,
            "-c",
            conns,
            "-d",
            "0.5",
            "-w",
            "0.1",
            "-q",
            "--tag",
            tag,
            "--json",
            file.to_str().expect("utf-8 path"),
        ]);
        assert!(out.status.success());
        files.push(file.to_str().expect("utf-8 path").to_owned());
    }
    let svg = dir.join("events.svg");
    let mut args = vec!["plot", "-o", svg.to_str().expect("utf-8 path")];
    args.extend(files.iter().map(String::as_str));
    let out = loadgen(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).expect("the SVG was written");
    assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(text.trim_end().ends_with("</svg>"));
    assert_eq!(text.matches("<polyline").count(), 2, "one line per server");
    assert_eq!(text.matches("<circle").count(), 3, "one point per result");
    assert!(text.contains(">events_per_s<"));
}
