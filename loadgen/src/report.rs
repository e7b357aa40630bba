//! The report: one JSON object and a table.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use serde_json::{json, Map, Value};

use crate::{
    args::{Args, Scenario},
    parse::{State, Status},
    proc::ProcSample,
};

/// A heartbeat gap over this many heartbeat intervals makes a connection late.
const LATE_FACTOR: f64 = 1.5;

pub(crate) struct ReportInput<'a> {
    pub(crate) args: &'a Args,
    pub(crate) path: &'a str,
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
    pub(crate) json: bool,
    pub(crate) fields: Map<String, Value>,
    /// `(label, value)` rows of the human table.
    pub(crate) rows: Vec<(String, String)>,
}

impl Report {
    pub(crate) fn build(input: &ReportInput<'_>) -> Self {
        let ReportInput { args, state, .. } = input;
        let window_s = input.window.as_secs_f64();
        let mut r = Report {
            json: args.json,
            fields: Map::new(),
            rows: Vec::new(),
        };
        for (k, v) in &args.tags {
            r.fields.insert(k.clone(), Value::String(v.clone()));
        }
        r.put("scenario", json!(args.scenario.name()), None);
        r.put("path", json!(input.path), None);
        r.put("conns", json!(args.conns), None);
        r.put(
            "window_s",
            json!(round(window_s, 3)),
            Some(format!("{window_s:.2} s")),
        );
        r.put("warmup_s", json!(args.warmup), None);
        r.put(
            "ramp_s",
            json!(round(input.ramp_s, 3)),
            Some(format!("{:.2} s", input.ramp_s)),
        );
        r.put("rate", json!(args.rate), None);
        if let Some(h) = args
            .hb_ms
            .or((args.scenario == Scenario::Idle).then_some(1000))
        {
            r.put("hb_ms", json!(h), None);
        }
        if let Some(f) = args.fanout_ms {
            r.put("fanout_ms", json!(f), None);
        }
        r.put("nofile_limit", json!(input.nofile), None);
        r.put("clk_tck", json!(input.clk_tck), None);

        // Connections.
        let open_at_end = state
            .conns
            .iter()
            .filter(|c| c.status == Status::Open)
            .count();
        r.put(
            "connected",
            json!(state.opened),
            Some(format!("{} of {}", state.opened, args.conns)),
        );
        r.put("connect_failed", json!(state.connect_failed), None);
        r.put("http_failed", json!(state.http_failed), None);
        r.put(
            "pending_after_ramp",
            json!(input.pending_after_ramp),
            (input.pending_after_ramp > 0).then(|| {
                format!(
                    "{} ({} of them connected, waiting for the response head)",
                    input.pending_after_ramp, input.no_head_after_ramp
                )
            }),
        );
        r.put("closed", json!(state.closed), None);
        r.put("closed_in_window", json!(state.closed_in_window), None);
        r.put("open_at_end", json!(open_at_end), None);
        r.put(
            "open_at_window_start",
            json!(state.open_at_window_start),
            Some(format!(
                "{} open when the window started",
                state.open_at_window_start
            )),
        );
        if !state.fail_samples.is_empty() {
            r.put(
                "fail_samples",
                json!(state.fail_samples),
                Some(state.fail_samples.join("; ")),
            );
        }
        if !state.close_samples.is_empty() {
            r.put(
                "close_samples",
                json!(state.close_samples),
                Some(state.close_samples.join("; ")),
            );
        }

        let w = &state.w;
        let per_s = |n: u64| n as f64 / window_s;
        r.put("wire_bytes", json!(w.wire_bytes), None);
        r.put("body_bytes", json!(w.body_bytes), None);
        r.put("bad_events", json!(w.bad_events), None);
        r.put("out_of_order", json!(w.out_of_order), None);

        let units = match args.scenario {
            Scenario::Stream => {
                r.put("events", json!(w.events), None);
                let eps = per_s(w.events);
                r.put(
                    "events_per_s",
                    json!(round(eps, 1)),
                    Some(si(eps, "events/s")),
                );
                let mbs = per_s(w.body_bytes) / 1e6;
                r.put(
                    "mb_per_s",
                    json!(round(mbs, 3)),
                    Some(format!("{mbs:.1} MB/s (SSE body)")),
                );
                let wire = per_s(w.wire_bytes) / 1e6;
                r.put(
                    "wire_mb_per_s",
                    json!(round(wire, 3)),
                    Some(format!("{wire:.1} MB/s (TCP payload)")),
                );
                r.put("seq_gaps", json!(w.seq_gaps), None);
                r.put("missed", json!(w.missed), None);
                r.put("heartbeats", json!(w.heartbeats), None);
                w.events
            }
            Scenario::Idle => {
                r.idle(input, window_s);
                w.heartbeats
            }
            Scenario::Fanout => {
                r.put("deliveries", json!(w.events), None);
                let dps = per_s(w.events);
                r.put(
                    "deliveries_per_s",
                    json!(round(dps, 1)),
                    Some(si(dps, "deliveries/s")),
                );
                if let Some(f) = args.fanout_ms {
                    let expected = state.open_at_window_start as f64 * window_s * 1000.0 / f as f64;
                    r.put("deliveries_expected", json!(round(expected, 0)), None);
                    let ratio = w.events as f64 / expected.max(1.0);
                    r.put(
                        "delivery_ratio",
                        json!(round(ratio, 4)),
                        Some(format!("{ratio:.3}")),
                    );
                }
                r.put("seq_gaps", json!(w.seq_gaps), None);
                r.put(
                    "missed",
                    json!(w.missed),
                    Some(format!("{} in {} gaps", w.missed, w.seq_gaps)),
                );
                r.put("lagged_comments", json!(w.lagged_comments), None);
                r.put("lagged_reported", json!(w.lagged_reported), None);
                if let (Some(a), Some(b)) = (state.max_seq_at_window_start, state.max_seq) {
                    let published = b.saturating_sub(a);
                    let pps = published as f64 / window_s;
                    r.put("published", json!(published), None);
                    r.put(
                        "published_per_s",
                        json!(round(pps, 1)),
                        Some(format!(
                            "{pps:.0} events/s published (seen by the subscribers)"
                        )),
                    );
                    let expected = state.open_at_window_start as f64 * published as f64;
                    let ratio = w.events as f64 / expected.max(1.0);
                    r.put("delivered_per_published", json!(round(ratio, 4)), None);
                }
                for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
                    let v = state
                        .latency
                        .quantile(q)
                        .map(|ns| round(ns as f64 / 1e3, 1));
                    r.put(
                        &format!("lat_us_{name}"),
                        json!(v),
                        v.map(|v| format!("{v} µs")),
                    );
                }
                let max =
                    (state.latency.total > 0).then(|| round(state.latency.max as f64 / 1e3, 1));
                r.put("lat_us_max", json!(max), max.map(|v| format!("{v} µs")));
                w.events
            }
        };
        r.put("unit", json!(args.scenario.unit()), None);
        r.put("units", json!(units), None);
        r.server_cost(input, units, window_s);
        r.loadgen_cost(input, window_s);
        r
    }

    /// Heartbeats per connection, gaps, late and silent connections.
    fn idle(&mut self, input: &ReportInput<'_>, window_s: f64) {
        let state = input.state;
        let hb_ms = input.args.hb_ms.unwrap_or(1000) as f64;
        let expected = window_s * 1000.0 / hb_ms;
        let late_after = Duration::from_secs_f64(hb_ms * LATE_FACTOR / 1000.0);
        let (mut late, mut silent, mut open, mut hb) = (0u64, 0u64, 0u64, 0u64);
        let mut opened_in_window = 0u64;
        let mut min_hb = u64::MAX;
        let mut max_gap = Duration::ZERO;
        for c in &state.conns {
            if c.status != Status::Open {
                continue;
            }
            // Judged only if open for the whole window.
            let whole_window =
                matches!((c.opened_at, state.window_start), (Some(o), Some(t0)) if o <= t0);
            if !whole_window {
                opened_in_window += 1;
                continue;
            }
            open += 1;
            hb += c.hb_in_window;
            min_hb = min_hb.min(c.hb_in_window);
            // The gap still open at the end of the window counts too.
            let since = state
                .window_start
                .map(|t0| c.last_hb.map_or(t0, |t| t.max(t0)));
            let trailing = since.map_or(Duration::ZERO, |t| {
                input.window_end.saturating_duration_since(t)
            });
            let worst = c.max_gap.max(trailing);
            max_gap = max_gap.max(worst);
            if c.hb_in_window == 0 {
                silent += 1;
            } else if worst > late_after {
                late += 1;
            }
        }
        self.put("heartbeats", json!(state.w.heartbeats), None);
        self.put("hb_judged_conns", json!(open), None);
        self.put("opened_in_window", json!(opened_in_window), None);
        self.put("hb_expected_per_conn", json!(round(expected, 2)), None);
        let mean = if open == 0 {
            0.0
        } else {
            hb as f64 / open as f64
        };
        self.put(
            "hb_per_conn",
            json!(round(mean, 3)),
            Some(format!("{mean:.2} (expected {expected:.2})")),
        );
        self.put(
            "hb_per_conn_min",
            json!(if open == 0 { 0 } else { min_hb }),
            None,
        );
        let ratio = mean / expected.max(1e-9);
        self.put("hb_ratio", json!(round(ratio, 4)), None);
        let hbs = state.w.heartbeats as f64 / window_s;
        self.put(
            "heartbeats_per_s",
            json!(round(hbs, 1)),
            Some(si(hbs, "heartbeats/s")),
        );
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let v = state.gaps.quantile(q).map(|ns| round(ns as f64 / 1e6, 2));
            self.put(
                &format!("gap_ms_{name}"),
                json!(v),
                v.map(|v| format!("{v} ms")),
            );
        }
        let max = round(max_gap.as_secs_f64() * 1e3, 2);
        self.put(
            "gap_ms_max",
            json!(max),
            Some(format!("{max} ms (open gaps included)")),
        );
        self.put("late_conns", json!(late), None);
        self.put("silent_conns", json!(silent), None);
        self.put("events_unexpected", json!(state.w.bad_events), None);
    }

    fn server_cost(&mut self, input: &ReportInput<'_>, units: u64, window_s: f64) {
        let Some(pid) = input.args.pid else {
            return;
        };
        self.put("server_pid", json!(pid), None);
        if input.pid_missing {
            self.put(
                "server_error",
                json!("no /proc entry for --pid at the start"),
                Some("no /proc entry for --pid".into()),
            );
        }
        let (before, start, end) = input.server;
        let (Some(start), Some(end)) = (start, end) else {
            self.put(
                "server_error",
                json!("server gone during the run"),
                Some("server gone during the run".into()),
            );
            return;
        };
        let conns = input.state.open_at_window_start.max(1) as f64;
        let open_at_end = input
            .state
            .conns
            .iter()
            .filter(|c| c.status == Status::Open)
            .count()
            .max(1) as f64;
        let units_f = units.max(1) as f64;
        let (cpu, source) = cpu_between(&start, &end);
        self.put(
            "server_cpu_s",
            json!(round(cpu, 4)),
            Some(format!("{cpu:.3} s ({source})")),
        );
        let ticks = (end.cpu_s - start.cpu_s).max(0.0);
        self.put("server_cpu_s_ticks", json!(round(ticks, 3)), None);
        self.put("server_cpu_source", json!(source), None);
        let pct = cpu / window_s * 100.0;
        self.put(
            "server_cpu_pct",
            json!(round(pct, 1)),
            Some(format!("{pct:.0}% of one core")),
        );
        self.put("server_threads", json!(end.threads), None);
        if let Some(wait) = wait_pct(&start, &end, window_s) {
            self.put(
                "server_wait_pct",
                json!(round(wait, 1)),
                Some(format!("{wait:.0}% of the window runnable but not running")),
            );
        }
        self.put(
            "server_rss_kb",
            json!(end.rss_kb),
            Some(format!("{} KiB", end.rss_kb)),
        );
        if let Some(before) = before {
            self.put("server_rss_kb_before", json!(before.rss_kb), None);
            let per = end.rss_kb.saturating_sub(before.rss_kb) as f64 / open_at_end;
            self.put(
                "server_rss_kb_per_conn",
                json!(round(per, 3)),
                Some(format!("{per:.2} KiB")),
            );
        }
        let per_unit_ns = cpu * 1e9 / units_f;
        let unit = input.args.scenario.unit();
        self.put(
            "server_cpu_ns_per_unit",
            json!(round(per_unit_ns, 1)),
            Some(format!("{per_unit_ns:.0} ns per {unit}")),
        );
        let per_conn_s = cpu * 1e6 / conns / window_s;
        self.put(
            "server_cpu_us_per_conn_s",
            json!(round(per_conn_s, 3)),
            Some(format!("{per_conn_s:.2} µs per connection-second")),
        );
        if let (Some(a), Some(b)) = (start.syscw, end.syscw) {
            let writes = b.saturating_sub(a);
            self.put("server_syscw", json!(writes), None);
            let per = writes as f64 / units_f;
            self.put(
                "server_syscw_per_unit",
                json!(round(per, 4)),
                Some(format!("{per:.3} per {unit}")),
            );
        }
        if let (Some(a), Some(b)) = (start.wchar, end.wchar) {
            let bytes = b.saturating_sub(a);
            self.put("server_wchar", json!(bytes), None);
            let per = bytes as f64 / units_f;
            self.put("server_wchar_per_unit", json!(round(per, 2)), None);
        }
    }

    fn loadgen_cost(&mut self, input: &ReportInput<'_>, window_s: f64) {
        let (Some(start), Some(end)) = input.loadgen else {
            return;
        };
        let pct = cpu_between(&start, &end).0 / window_s * 100.0;
        let note = if pct > 90.0 {
            format!("{pct:.0}% of one core: the load generator may be the bottleneck")
        } else {
            format!("{pct:.0}% of one core")
        };
        self.put("loadgen_cpu_pct", json!(round(pct, 1)), Some(note));
        if let Some(wait) = wait_pct(&start, &end, window_s) {
            self.put(
                "loadgen_wait_pct",
                json!(round(wait, 1)),
                Some(format!("{wait:.0}% of the window runnable but not running")),
            );
        }
        self.put("loadgen_rss_kb", json!(end.rss_kb), None);
    }

    /// A JSON field, and a table row if `shown`.
    fn put(&mut self, key: &str, value: Value, shown: Option<String>) {
        if let Some(shown) = shown {
            self.rows.push((key.to_owned(), shown));
        }
        self.fields.insert(key.to_owned(), value);
    }

    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let scenario = self
            .fields
            .get("scenario")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let conns = self.fields.get("conns").cloned().unwrap_or(Value::Null);
        let _ = writeln!(out, "== loadgen {scenario}, {conns} connections");
        for (k, v) in &self.rows {
            let _ = writeln!(out, "  {k:<width$}  {v}");
        }
        out
    }
}

/// CPU seconds between two samples: from `schedstat` (nanoseconds) unless it is well
/// below `utime + stime` (a thread ended in between), else from the clock ticks.
fn cpu_between(start: &ProcSample, end: &ProcSample) -> (f64, &'static str) {
    let ticks = (end.cpu_s - start.cpu_s).max(0.0);
    match (start.sched_ns, end.sched_ns) {
        (Some(a), Some(b)) if b >= a => {
            let sched = (b - a) as f64 / 1e9;
            if sched >= ticks * 0.9 - 0.02 {
                (sched, "schedstat")
            } else {
                (ticks, "stat ticks")
            }
        }
        _ => (ticks, "stat ticks"),
    }
}

/// Run-queue wait between two samples, in percent of the window.
fn wait_pct(start: &ProcSample, end: &ProcSample, window_s: f64) -> Option<f64> {
    let (a, b) = (start.wait_ns?, end.wait_ns?);
    Some(b.saturating_sub(a) as f64 / 1e9 / window_s * 100.0)
}

fn round(v: f64, digits: i32) -> f64 {
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
