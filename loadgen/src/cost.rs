//! The server's cost over the window (with --pid) and the load generator's own:
//! CPU time, run-queue wait, RSS, syscalls; per unit (event, heartbeat, delivery) and
//! per connection.

use serde_json::json;

use crate::{
    procfs::ProcSample,
    report::{round, Report, ReportInput},
    sse::Status,
};

impl Report {
    pub(crate) fn server_cost(&mut self, input: &ReportInput<'_>, units: u64, window_s: f64) {
        let Some(pid) = input.cfg.pid else {
            return;
        };
        self.put("server_pid", json!(pid), None);
        if input.pid_missing {
            let msg = "no /proc entry for --pid at the start";
            self.put("server_error", json!(msg), Some(msg.into()));
        }
        let (before, start, end) = input.server;
        let (Some(start), Some(end)) = (start, end) else {
            let msg = "server gone during the run";
            self.put("server_error", json!(msg), Some(msg.into()));
            return;
        };
        let conns = input.state.open_at_window_start.max(1) as f64;
        let units = units.max(1) as f64;
        self.server_cpu(&start, &end, units, conns, window_s, input);
        self.put(
            "server_rss_kb",
            json!(end.rss_kb),
            Some(format!("{} KiB", end.rss_kb)),
        );
        if let Some(before) = before {
            let open_at_end = input
                .state
                .conns
                .iter()
                .filter(|c| c.status == Status::Open)
                .count()
                .max(1) as f64;
            self.put("server_rss_kb_before", json!(before.rss_kb), None);
            let per = end.rss_kb.saturating_sub(before.rss_kb) as f64 / open_at_end;
            self.put(
                "server_rss_kb_per_conn",
                json!(round(per, 3)),
                Some(format!(
                    "{per:.2} KiB (growth since before the first connection)"
                )),
            );
        }
        self.server_syscalls(&start, &end, units, conns, window_s, input);
    }

    fn server_cpu(
        &mut self,
        start: &ProcSample,
        end: &ProcSample,
        units: f64,
        conns: f64,
        window_s: f64,
        input: &ReportInput<'_>,
    ) {
        let (cpu, source) = cpu_between(start, end);
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
        if let Some(wait) = wait_pct(start, end, window_s) {
            self.put(
                "server_wait_pct",
                json!(round(wait, 1)),
                Some(format!("{wait:.0}% of the window runnable but not running")),
            );
        }
        let unit = input.cfg.scenario.unit();
        let per_unit_ns = cpu * 1e9 / units;
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
    }

    fn server_syscalls(
        &mut self,
        start: &ProcSample,
        end: &ProcSample,
        units: f64,
        conns: f64,
        window_s: f64,
        input: &ReportInput<'_>,
    ) {
        let unit = input.cfg.scenario.unit();
        let diff = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        let reads = diff(start.syscr, end.syscr);
        let writes = diff(start.syscw, end.syscw);
        if let Some(writes) = writes {
            self.put("server_syscw", json!(writes), None);
            let per = writes as f64 / units;
            self.put(
                "server_syscw_per_unit",
                json!(round(per, 4)),
                Some(format!("{per:.3} per {unit}")),
            );
        }
        if let Some(reads) = reads {
            self.put("server_syscr", json!(reads), None);
        }
        if let (Some(r), Some(w)) = (reads, writes) {
            let per = (r + w) as f64 / units;
            self.put("server_syscalls_per_unit", json!(round(per, 4)), None);
            let per_conn = (r + w) as f64 / conns / window_s;
            self.put(
                "server_syscalls_per_conn_s",
                json!(round(per_conn, 4)),
                Some(format!(
                    "{per_conn:.3} read+write syscalls per connection-second"
                )),
            );
        } else {
            self.put(
                "server_syscalls",
                json!(null),
                Some("unknown (/proc/PID/io is readable by the same user or root only)".into()),
            );
        }
        if let Some(bytes) = diff(start.wchar, end.wchar) {
            self.put("server_wchar", json!(bytes), None);
            self.put(
                "server_wchar_per_unit",
                json!(round(bytes as f64 / units, 2)),
                None,
            );
        }
    }

    pub(crate) fn loadgen_cost(&mut self, input: &ReportInput<'_>, window_s: f64) {
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
