//! The run: the first connection (which must succeed), the ramp-up, the warm-up and
//! the window; one task per connection (`conn`).

use std::{
    cell::{Cell, RefCell},
    io,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use crate::{
    cli::{secs, Protocol, RunConfig},
    conn::connection,
    procfs::{clk_tck, nofile_limit, ProcSample},
    progress,
    report::{Report, ReportInput},
    sse::State,
};

/// Every read lands here first (one buffer for all connections).
const SCRATCH_BYTES: usize = 256 * 1024;
/// How long the first connection may take past `--connect-timeout` to get its answer.
const FIRST_HEAD_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Ramp,
    Warmup,
    Window,
    Done,
}

/// What every connection task shares (one thread: `Rc` and `RefCell`).
pub(crate) struct Run {
    pub(crate) addr: SocketAddr,
    pub(crate) protocol: Protocol,
    /// The HTTP/1.1 request.
    pub(crate) request: Vec<u8>,
    authority: String,
    path: String,
    headers: Vec<(String, String)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) source_ips: usize,
    pub(crate) conns: usize,
    pub(crate) phase: Cell<Phase>,
    /// When the phase began, and when it ends (timed phases).
    pub(crate) phase_times: Cell<(Instant, Option<Instant>)>,
    pub(crate) scratch: RefCell<Box<[u8]>>,
    pub(crate) state: RefCell<State>,
}

impl Run {
    fn new(cfg: &RunConfig) -> Self {
        let t = &cfg.target;
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
            t.path, t.authority
        );
        for (name, value) in &cfg.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Self {
            addr: t.addr,
            protocol: cfg.protocol,
            request: request.into_bytes(),
            authority: t.authority.clone(),
            path: t.path.clone(),
            headers: cfg.headers.clone(),
            connect_timeout: secs(cfg.connect_timeout),
            source_ips: cfg.source_ips,
            conns: cfg.conns,
            phase: Cell::new(Phase::Ramp),
            phase_times: Cell::new((Instant::now(), None)),
            scratch: RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
            state: RefCell::new(State::new(cfg.scenario, cfg.fields.clone(), cfg.conns)),
        }
    }

    /// The h2c request.
    pub(crate) fn h2_request(&self) -> Result<http::Request<()>, Failure> {
        let mut req = http::Request::get(format!("http://{}{}", self.authority, self.path))
            .header("accept", "text/event-stream")
            .header("cache-control", "no-cache");
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req.body(())
            .map_err(|e| Failure::Http(format!("request: {e}")))
    }

    fn set_phase(&self, phase: Phase, lasts: Option<Duration>) {
        let now = Instant::now();
        self.phase.set(phase);
        self.phase_times.set((now, lasts.map(|d| now + d)));
    }
}

/// Why a connection failed or ended.
pub(crate) enum Failure {
    Connect(String),
    Http(String),
    Io(io::Error),
    Protocol(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Http(e) => write!(f, "http: {e}"),
            Failure::Io(e) => write!(f, "read/write: {e}"),
            Failure::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

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
    first_connection(&run, &cfg.target.url).await?;
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
async fn first_connection(run: &Rc<Run>, url: &str) -> Result<(), String> {
    tokio::task::spawn_local(connection(run.clone(), 0));
    let deadline = Instant::now() + run.connect_timeout + FIRST_HEAD_WAIT;
    while run.state.borrow().resolved() == 0 {
        if Instant::now() >= deadline {
            run.set_phase(Phase::Done, None);
            return Err(format!(
                "{url}: no response head within {:?}",
                run.connect_timeout + FIRST_HEAD_WAIT
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
