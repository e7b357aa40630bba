//! The run: the first connection (which must succeed), the ramp-up, the warm-up and
//! the window; one task per connection (`conn`).

use std::{
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    cli::{secs, RunConfig},
    conn::connection,
    procfs::{clk_tck, nofile_limit, ProcSample},
    progress,
    report::{Report, ReportInput},
    shared::{Phase, Run},
};
/// How long the first connection may take past `--connect-timeout` to get its answer
/// (at least; two heartbeat intervals if longer: some servers send the head with the
/// first bytes of the body).
const FIRST_HEAD_WAIT: Duration = Duration::from_secs(10);

/// Measures; `Err`: the run could not measure anything (the message says why).
pub(crate) async fn run(cfg: &RunConfig, ramp_budget: Duration) -> Result<Report, String> {
    let clk_tck = clk_tck();
    let nofile = nofile_limit();
    let run = Rc::new(Run::new(cfg));
    let server_before_ramp = cfg.pid.and_then(|pid| ProcSample::read(pid, clk_tck));
    let pid_missing = cfg.pid.is_some() && server_before_ramp.is_none();
    if !cfg.quiet {
        progress::spawn(run.clone(), cfg.scenario);
    }
    let head_wait = FIRST_HEAD_WAIT.max(Duration::from_millis(2 * cfg.hb_ms.unwrap_or(0)));
    first_connection(&run, &cfg.target.url, head_wait).await?;
    let ramp_start = Instant::now();
    ramp(&run, cfg.rate, ramp_start + ramp_budget).await;
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    let (pending_after_ramp, no_head_after_ramp, opened) = {
        let state = run.state.borrow();
        let no_head = state
            .tcp_connected
            .saturating_sub(state.opened + state.http_failed);
        (cfg.conns - state.resolved(), no_head, state.opened)
    };
    if opened == 0 {
        run.set_phase(Phase::Done, None);
        return Err("no connection opened".into());
    }

    run.set_phase(Phase::Warmup, Some(secs(cfg.warmup)));
    tokio::time::sleep(secs(cfg.warmup)).await;

    let server_start = cfg.pid.and_then(|pid| ProcSample::read(pid, clk_tck));
    let self_start = ProcSample::read_self(clk_tck);
    let t0 = Instant::now();
    run.set_phase(Phase::Window, Some(secs(cfg.secs)));
    {
        let mut state = run.state.borrow_mut();
        state.window_start = Some(t0);
        state.open_at_window_start = state.opened - state.closed;
        state.max_seq_at_window_start = state.max_seq;
    }
    tokio::time::sleep(secs(cfg.secs)).await;
    run.set_phase(Phase::Done, None);
    let t1 = Instant::now();
    let server_end = cfg.pid.and_then(|pid| ProcSample::read(pid, clk_tck));
    let self_end = ProcSample::read_self(clk_tck);

    let state = run.state.borrow();
    Ok(Report::build(&ReportInput {
        cfg,
        state: &state,
        window: t1 - t0,
        window_end: t1,
        ramp_s,
        pending_after_ramp,
        no_head_after_ramp,
        nofile,
        clk_tck,
        pid_missing,
        server: (server_before_ramp, server_start, server_end),
        loadgen: (self_start, self_end),
    }))
}

/// Opens connection 0 alone: if the server is not there, or does not answer 200 with
/// `text/event-stream`, the run stops here with the reason.
async fn first_connection(run: &Rc<Run>, url: &str, head_wait: Duration) -> Result<(), String> {
    tokio::task::spawn_local(connection(run.clone(), 0));
    let deadline = Instant::now() + run.connect_timeout + head_wait;
    while run.state.borrow().resolved() == 0 {
        if Instant::now() >= deadline {
            run.set_phase(Phase::Done, None);
            return Err(format!(
                "{url}: no response head within {:?}",
                run.connect_timeout + head_wait
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let state = run.state.borrow();
    if state.opened == 0 {
        run.set_phase(Phase::Done, None);
        let why = state.fail_samples.first().map_or("failed", String::as_str);
        return Err(format!("{url}: {why}"));
    }
    Ok(())
}

/// Opens connections 1.. at most `rate` per second, until all are open or failed, or
/// the deadline.
async fn ramp(run: &Rc<Run>, rate: f64, deadline: Instant) {
    let conns = run.conns;
    let start = Instant::now();
    {
        let run = run.clone();
        tokio::task::spawn_local(async move {
            // Every millisecond, start the connections that are due by then (one timer
            // per connection would start one per turn of a busy event loop).
            let mut started = 1;
            while started < conns {
                let due = ((start.elapsed().as_secs_f64() * rate) as usize + 2).min(conns);
                for id in started..due {
                    tokio::task::spawn_local(connection(run.clone(), id));
                }
                started = started.max(due);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    while run.state.borrow().resolved() < conns && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
