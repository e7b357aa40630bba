//! The `idle` scenario's verdict: heartbeats per connection against the expected
//! interval, gaps p50/p99/max, late and silent connections.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    report::{round, Report, ReportInput},
    sse::{State, Status},
};

/// A heartbeat gap over this many heartbeat intervals makes a connection late.
pub(crate) const LATE_FACTOR: f64 = 1.5;

/// The connections open for the whole window, judged.
#[derive(Default)]
struct Judged {
    /// Connections judged (open for the whole window).
    open: u64,
    /// Connections that opened after the window started (not judged).
    opened_in_window: u64,
    heartbeats: u64,
    min_per_conn: Option<u64>,
    /// The longest gap, the one still open at the end of the window included.
    max_gap: Duration,
    late: u64,
    silent: u64,
}

fn judge(state: &State, window_end: Instant, late_after: Duration) -> Judged {
    let mut j = Judged::default();
    let Some(t0) = state.window_start else {
        return j;
    };
    for c in state.conns.iter().filter(|c| c.status == Status::Open) {
        if c.opened_at.is_none_or(|o| o > t0) {
            j.opened_in_window += 1;
            continue;
        }
        j.open += 1;
        j.heartbeats += c.hb_in_window;
        j.min_per_conn = Some(
            j.min_per_conn
                .map_or(c.hb_in_window, |m| m.min(c.hb_in_window)),
        );
        // The gap still open at the end of the window counts too.
        let since = c.last_hb.map_or(t0, |t| t.max(t0));
        let worst = c.max_gap.max(window_end.saturating_duration_since(since));
        j.max_gap = j.max_gap.max(worst);
        if c.hb_in_window == 0 {
            j.silent += 1;
        } else if worst > late_after {
            j.late += 1;
        }
    }
    j
}

impl Report {
    /// Returns the heartbeats counted (the unit of the server's cost).
    pub(crate) fn idle(&mut self, input: &ReportInput<'_>, window_s: f64) -> u64 {
        let state = input.state;
        let hb_ms = input.cfg.hb_ms.unwrap_or(1000) as f64;
        let expected = window_s * 1000.0 / hb_ms;
        let late_after = Duration::from_secs_f64(hb_ms * LATE_FACTOR / 1000.0);
        let j = judge(state, input.window_end, late_after);
        self.put("heartbeats", json!(state.w.heartbeats), None);
        self.put("hb_judged_conns", json!(j.open), None);
        self.put("opened_in_window", json!(j.opened_in_window), None);
        self.put("hb_expected_per_conn", json!(round(expected, 2)), None);
        let mean = j.heartbeats as f64 / j.open.max(1) as f64;
        let shown = format!("{mean:.2} (expected {expected:.2})");
        self.put("hb_per_conn", json!(round(mean, 3)), Some(shown));
        self.put("hb_per_conn_min", json!(j.min_per_conn.unwrap_or(0)), None);
        self.put("hb_ratio", json!(round(mean / expected.max(1e-9), 4)), None);
        let hbs = state.w.heartbeats as f64 / window_s;
        self.put(
            "heartbeats_per_s",
            json!(round(hbs, 1)),
            Some(format!("{hbs:.1} heartbeats/s")),
        );
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let v = state.gaps.quantile(q).map(|ns| round(ns as f64 / 1e6, 2));
            self.put(
                &format!("gap_ms_{name}"),
                json!(v),
                v.map(|v| format!("{v} ms")),
            );
        }
        let max = round(j.max_gap.as_secs_f64() * 1e3, 2);
        self.put(
            "gap_ms_max",
            json!(max),
            Some(format!("{max} ms (open gaps included)")),
        );
        let late_ms = hb_ms * LATE_FACTOR;
        let shown = format!("{} of {} (a gap over {late_ms:.0} ms)", j.late, j.open);
        self.put("late_conns", json!(j.late), Some(shown));
        let shown = format!("{} of {} (no heartbeat in the window)", j.silent, j.open);
        self.put("silent_conns", json!(j.silent), Some(shown));
        let events = state.w.events;
        self.put(
            "events_unexpected",
            json!(events),
            (events > 0).then(|| events.to_string()),
        );
        state.w.heartbeats
    }
}
