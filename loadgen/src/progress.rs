//! The progress bar on stderr (only when stderr is a terminal, and not with --quiet).

use std::{
    io::{IsTerminal as _, Write as _},
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    scenarios::Scenario,
    shared::{Phase, Run},
};

const EVERY: Duration = Duration::from_millis(200);
const WIDTH: usize = 30;

/// Draws the bar until the run is done (then [`clear`] removes it).
pub(crate) fn spawn(run: Rc<Run>, scenario: Scenario) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    tokio::task::spawn_local(async move {
        while run.phase.get() != Phase::Done {
            let line = line(&run, scenario);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            drop(err);
            tokio::time::sleep(EVERY).await;
        }
    });
}

/// Clears the bar's line.
pub(crate) fn clear() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}

fn line(run: &Run, scenario: Scenario) -> String {
    let state = run.state.borrow();
    let (since, until) = run.phase_times.get();
    let now = Instant::now();
    let open = state.opened - state.closed;
    let failed = state.connect_failed + state.http_failed;
    match run.phase.get() {
        Phase::Ramp => format!(
            "connecting {} {}/{}  failed {failed}",
            bar(state.resolved() as f64 / run.conns as f64),
            state.opened,
            run.conns
        ),
        Phase::Warmup => {
            let (done, total) = times(since, until, now);
            format!(
                "warm-up    {} {done:.1}/{total:.1} s  open {open}",
                bar(done / total.max(1e-9))
            )
        }
        Phase::Window | Phase::Done => {
            let (done, total) = times(since, until, now);
            let (what, n) = match scenario {
                Scenario::Stream => ("events/s", state.w.events),
                Scenario::Idle => ("heartbeats/s", state.w.heartbeats),
                Scenario::Fanout => ("deliveries/s", state.w.events),
            };
            let rate = n as f64 / done.max(1e-3);
            format!(
                "measuring  {} {done:.1}/{total:.1} s  open {open}  {rate:.0} {what}",
                bar(done / total.max(1e-9))
            )
        }
    }
}

fn times(since: Instant, until: Option<Instant>, now: Instant) -> (f64, f64) {
    let total = until.map_or(0.0, |u| (u - since).as_secs_f64());
    (
        now.saturating_duration_since(since)
            .as_secs_f64()
            .min(total),
        total,
    )
}

fn bar(fraction: f64) -> String {
    let full = ((fraction.clamp(0.0, 1.0) * WIDTH as f64) as usize).min(WIDTH);
    format!("[{}{}]", "#".repeat(full), "-".repeat(WIDTH - full))
}
