//! sse-loadgen against this workspace's servers: the demo (`examples/demo.rs`) and the
//! axum reference (`examples/axum_ref.rs`), both built by the test (the same
//! `cargo build --example` as the root package's tests) and run as child processes on
//! free ports. HTTP/1.1 and h2c.

mod support;

use support::{example_server, measure, num};

#[test]
fn demo_every_scenario_over_http1_and_h2c() {
    let demo = example_server("demo", &[("FANOUT_MS", "50")]);
    let pid = demo.pid().to_string();
    for http in ["1.1", "h2c"] {
        let url = format!("{}/stream", demo.base);
        let r = measure(&[
            "stream", &url, "-c", "2", "-d", "1", "-w", "0.3", "--http", http, "--pid", &pid,
        ]);
        assert_eq!(r["http"], http);
        assert!(num(&r, "events_per_s") > 0.0, "{http}");
        assert_eq!(
            num(&r, "bad_events") + num(&r, "missed") + num(&r, "out_of_order"),
            0.0,
            "{http}"
        );
        assert!(
            num(&r, "server_cpu_s") > 0.0,
            "{http}: the demo worked during the window"
        );
        num(&r, "server_cpu_ns_per_unit");
        num(&r, "server_rss_kb_per_conn");

        let url = format!("{}/idle?hb_ms=100", demo.base);
        let r = measure(&[
            "idle",
            &url,
            "-c",
            "20",
            "-d",
            "1",
            "-w",
            "0.3",
            "--http",
            http,
            "--heartbeat-ms",
            "100",
        ]);
        assert_eq!(num(&r, "connected"), 20.0, "{http}");
        assert!(num(&r, "heartbeats") > 0.0, "{http}");
        num(&r, "gap_ms_p99");
    }
    let url = format!("{}/fanout", demo.base);
    let r = measure(&[
        "fanout",
        &url,
        "-c",
        "10",
        "-d",
        "1",
        "-w",
        "0.3",
        "--publish-ms",
        "50",
    ]);
    assert!(num(&r, "deliveries") > 0.0);
    assert_eq!(num(&r, "bad_events"), 0.0, "every /fanout event has ts_ns");
    num(&r, "lat_us_p99");
    num(&r, "published_per_s");
}

#[test]
fn axum_reference_stream_and_idle() {
    let axum = example_server("axum_ref", &[]);
    let url = format!("{}/stream", axum.base);
    let r = measure(&["stream", &url, "-c", "2", "-d", "1", "-w", "0.3"]);
    assert!(num(&r, "events_per_s") > 0.0);
    assert_eq!(num(&r, "bad_events") + num(&r, "missed"), 0.0);
    let url = format!("{}/idle?hb_ms=100", axum.base);
    let r = measure(&[
        "idle",
        &url,
        "-c",
        "20",
        "-d",
        "1",
        "-w",
        "0.3",
        "--heartbeat-ms",
        "100",
        "--http",
        "h2c",
    ]);
    assert_eq!(num(&r, "connected"), 20.0);
    assert!(num(&r, "heartbeats") > 0.0);
}
