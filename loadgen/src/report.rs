//! The result: one JSON object (every field) and a Markdown table (the rows worth
//! reading).

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use serde_json::{json, Map, Value};

use crate::{
    cli::{Protocol, RunConfig},
    procfs::ProcSample,
    scenarios::Scenario,
    sse::{State, Status},
};

pub(crate) struct ReportInput<'a> {
    pub(crate) cfg: &'a RunConfig,
    pub(crate) state: &'a State,
    pub(crate) window: Duration,
    pub(crate) window_end: Instant,
    pub(crate) ramp_s: f64,
    pub(crate) pending_after_ramp: usize,
    pub(crate) no_head_after_ramp: usize,
    pub(crate) nofile: Option<u64>,
    pub(crate) clk_tck: f64,
    pub(crate) pid_missing: bool,
    pub(crate) server: (Option<ProcSample>, Option<ProcSample>, Option<ProcSample>),
    pub(crate) loadgen: (Option<ProcSample>, Option<ProcSample>),
}

pub(crate) struct Report {
    pub(crate) fields: Map<String, Value>,
    /// `(label, value)` rows of the table.
    rows: Vec<(String, String)>,
}

impl Report {
    /// An empty report (`publish` fills its own).
    pub(crate) fn new() -> Self {
        Report {
            fields: Map::new(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn build(input: &ReportInput<'_>) -> Self {
        let cfg = input.cfg;
        let window_s = input.window.as_secs_f64();
        let mut r = Report::new();
        r.settings(input, window_s);
        r.connections(input);
        let w = &input.state.w;
        r.put("wire_bytes", json!(w.wire_bytes), None);
        r.put("body_bytes", json!(w.body_bytes), None);
        r.put("bad_events", json!(w.bad_events), None);
        r.put("out_of_order", json!(w.out_of_order), None);
        let units = match cfg.scenario {
            Scenario::Stream => r.stream(input, window_s),
            Scenario::Idle => r.idle(input, window_s),
            Scenario::Fanout => r.fanout(input, window_s),
        };
        r.put("unit", json!(cfg.scenario.unit()), None);
        r.put("units", json!(units), None);
        r.server_cost(input, units, window_s);
        r.loadgen_cost(input, window_s);
        r
    }

    fn settings(&mut self, input: &ReportInput<'_>, window_s: f64) {
        let cfg = input.cfg;
        self.put("tool", json!("sse-loadgen"), None);
        self.put("version", json!(env!("CARGO_PKG_VERSION")), None);
        for (k, v) in &cfg.tags {
            self.fields.insert(k.clone(), Value::String(v.clone()));
        }
        self.put("scenario", json!(cfg.scenario.name()), None);
        self.put("url", json!(cfg.target.url), None);
        self.put("path", json!(cfg.target.path), None);
        let http = match cfg.protocol {
            Protocol::Http1 => "1.1",
            Protocol::H2c => "h2c",
        };
        self.put("http", json!(http), None);
        self.put("conns", json!(cfg.conns), None);
        self.put(
            "window_s",
            json!(round(window_s, 3)),
            Some(format!("{window_s:.2} s")),
        );
        self.put("warmup_s", json!(cfg.warmup), None);
        let ramp = input.ramp_s;
        self.put(
            "ramp_s",
            json!(round(ramp, 3)),
            Some(format!("{ramp:.2} s")),
        );
        self.put("rate", json!(cfg.rate), None);
        if let Some(h) = cfg.hb_ms {
            self.put("hb_ms", json!(h), Some(format!("{h} ms expected")));
        }
        if let Some(f) = cfg.publish_ms {
            self.put("publish_ms", json!(f), None);
        }
        self.put("nofile_limit", json!(input.nofile), None);
        self.put("clk_tck", json!(input.clk_tck), None);
    }

    fn connections(&mut self, input: &ReportInput<'_>) {
        let (cfg, state) = (input.cfg, input.state);
        let open_at_end = state
            .conns
            .iter()
            .filter(|c| c.status == Status::Open)
            .count();
        let shown = format!("{} of {}", state.opened, cfg.conns);
        self.put("connected", json!(state.opened), Some(shown));
        let (connect, http) = (state.connect_failed, state.http_failed);
        self.put("connect_failed", json!(connect), None);
        self.put("http_failed", json!(http), None);
        if connect + http > 0 {
            let shown = format!("{} (connect {connect}, answer {http})", connect + http);
            self.rows.push(("failed".into(), shown));
        }
        let pending = input.pending_after_ramp;
        let shown = (pending > 0).then(|| {
            format!(
                "{pending} ({} of them connected, waiting for the response head)",
                input.no_head_after_ramp
            )
        });
        self.put("pending_after_ramp", json!(pending), shown);
        self.put("closed", json!(state.closed), None);
        let closed = state.closed_in_window;
        self.put(
            "closed_in_window",
            json!(closed),
            (closed > 0).then(|| closed.to_string()),
        );
        self.put("open_at_end", json!(open_at_end), None);
        let open = state.open_at_window_start;
        self.put("open_at_window_start", json!(open), Some(open.to_string()));
        for (key, samples) in [
            ("fail_samples", &state.fail_samples),
            ("close_samples", &state.close_samples),
        ] {
            if !samples.is_empty() {
                self.put(key, json!(samples), Some(samples.join("; ")));
            }
        }
    }

    fn stream(&mut self, input: &ReportInput<'_>, window_s: f64) -> u64 {
        let w = &input.state.w;
        let per_s = |n: u64| n as f64 / window_s;
        self.put("events", json!(w.events), None);
        let eps = per_s(w.events);
        self.put(
            "events_per_s",
            json!(round(eps, 1)),
            Some(si(eps, "events/s")),
        );
        let per_conn = eps / input.state.open_at_window_start.max(1) as f64;
        self.put("events_per_s_per_conn", json!(round(per_conn, 2)), None);
        let mbs = per_s(w.body_bytes) / 1e6;
        self.put(
            "mb_per_s",
            json!(round(mbs, 3)),
            Some(format!("{mbs:.2} MB/s (SSE body)")),
        );
        let wire = per_s(w.wire_bytes) / 1e6;
        self.put(
            "wire_mb_per_s",
            json!(round(wire, 3)),
            Some(format!("{wire:.2} MB/s (TCP payload)")),
        );
        let seq = &input.cfg.fields.seq_name;
        self.put("seq_gaps", json!(w.seq_gaps), None);
        let shown = format!("{} in {} gaps of `{seq}`", w.missed, w.seq_gaps);
        self.put("missed", json!(w.missed), Some(shown));
        if w.bad_events > 0 {
            self.rows.push((
                "bad_events".into(),
                format!("{} without `{seq}`", w.bad_events),
            ));
        }
        self.put("heartbeats", json!(w.heartbeats), None);
        w.events
    }

    fn fanout(&mut self, input: &ReportInput<'_>, window_s: f64) -> u64 {
        let (state, w) = (input.state, &input.state.w);
        self.put("deliveries", json!(w.events), None);
        let dps = w.events as f64 / window_s;
        self.put(
            "deliveries_per_s",
            json!(round(dps, 1)),
            Some(si(dps, "deliveries/s")),
        );
        if let Some(f) = input.cfg.publish_ms {
            let expected = state.open_at_window_start as f64 * window_s * 1000.0 / f as f64;
            self.put("deliveries_expected", json!(round(expected, 0)), None);
            let ratio = w.events as f64 / expected.max(1.0);
            self.put(
                "delivery_ratio",
                json!(round(ratio, 4)),
                Some(format!("{ratio:.3} of every {f} ms")),
            );
        }
        self.put("seq_gaps", json!(w.seq_gaps), None);
        self.put(
            "missed",
            json!(w.missed),
            Some(format!("{} in {} gaps", w.missed, w.seq_gaps)),
        );
        self.put("lagged_comments", json!(w.lagged_comments), None);
        self.put("lagged_reported", json!(w.lagged_reported), None);
        if let (Some(a), Some(b)) = (state.max_seq_at_window_start, state.max_seq) {
            let published = b.saturating_sub(a);
            let pps = published as f64 / window_s;
            self.put("published", json!(published), None);
            let shown = format!("{pps:.0} events/s published (seen by the subscribers)");
            self.put("published_per_s", json!(round(pps, 1)), Some(shown));
            let expected = state.open_at_window_start as f64 * published as f64;
            let ratio = w.events as f64 / expected.max(1.0);
            self.put("delivered_per_published", json!(round(ratio, 4)), None);
        }
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            let v = state
                .latency
                .quantile(q)
                .map(|ns| round(ns as f64 / 1e3, 1));
            self.put(
                &format!("lat_us_{name}"),
                json!(v),
                v.map(|v| format!("{v} µs")),
            );
        }
        let max = (state.latency.total > 0).then(|| round(state.latency.max as f64 / 1e3, 1));
        self.put("lat_us_max", json!(max), max.map(|v| format!("{v} µs")));
        let gaps = &state.event_gaps;
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let v = gaps.quantile(q).map(|ns| round(ns as f64 / 1e6, 1));
            self.put(&format!("event_gap_ms_{name}"), json!(v), None);
        }
        let max = (gaps.total > 0).then(|| round(gaps.max as f64 / 1e6, 1));
        let shown = max.map(|v| format!("{v} ms between two events of a connection"));
        self.put("event_gap_ms_max", json!(max), shown);
        if w.bad_events > 0 {
            let ts = &input.cfg.fields.ts_name;
            self.rows.push((
                "bad_events".into(),
                format!("{} without `{ts}`", w.bad_events),
            ));
        }
        w.events
    }

    /// A JSON field, and a table row if `shown`.
    pub(crate) fn put(&mut self, key: &str, value: Value, shown: Option<String>) {
        if let Some(shown) = shown {
            self.rows.push((key.to_owned(), shown));
        }
        self.fields.insert(key.to_owned(), value);
    }

    /// The JSON object on one line.
    pub(crate) fn json(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }

    /// A heading, a line of settings and the table.
    pub(crate) fn markdown(&self) -> String {
        let f = |k: &str| self.fields.get(k).cloned().unwrap_or(Value::Null);
        let text = |k: &str| f(k).as_str().unwrap_or("?").to_owned();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "## sse-loadgen {}: {}\n",
            text("scenario"),
            text("url")
        );
        let _ = writeln!(
            out,
            "{} connections over {}, {} s warm-up, measured for {} s.\n",
            f("conns"),
            if text("http") == "h2c" {
                "h2c"
            } else {
                "HTTP/1.1"
            },
            f("warmup_s"),
            f("window_s")
        );
        let _ = writeln!(out, "| metric | value |\n|---|---|");
        for (k, v) in &self.rows {
            let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
        }
        out
    }
}

pub(crate) fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

fn si(v: f64, unit: &str) -> String {
    if v >= 1e6 {
        format!("{:.2} M {unit}", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k {unit}", v / 1e3)
    } else {
        format!("{v:.1} {unit}")
    }
}
