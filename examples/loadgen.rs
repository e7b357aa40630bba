//! A load generator for servers that follow `CONTRACT.md` (the demo's `/stream`,
//! `/idle` and `/fanout`): it opens N HTTP/1.1 connections to `127.0.0.1`, parses every
//! byte of every response, and measures a steady-state window after the ramp-up and a
//! warm-up. With `--pid` it also reads the server's cost during the window from `/proc`.
//! `benches/run.sh` drives it; see the end of `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:3000 \
//!     --scenario stream|idle|fanout --conns N --secs S --warmup W \
//!     [--hb-ms H] [--pid SERVER_PID] [--json] [--rate CONNS_PER_S] [--fanout-ms F] \
//!     [--connect-timeout SECS] [--source-ips N] [--tag KEY=VALUE]...
//! ```
//!
//! | scenario | request | measured in the window |
//! |---|---|---|
//! | `stream` | `GET /stream` (`?hb_ms=H` if given) | events/s, MB/s, every event checked: exactly `{"seq":N,"pad":"x…x"}` of 64 bytes, N continuous from 0 |
//! | `idle` | `GET /idle?hb_ms=H` (H default 1000) | heartbeats per connection against `window / H`, gaps between heartbeats p50/p99/max, connections late (a gap over 1.5 H, the open gap at the end included) or silent (none in the window); only connections open for the whole window are judged |
//! | `fanout` | `GET /fanout` | deliveries, missed (gaps in `seq`; and tower-sse's `: lagged N` comments), latency from `ts_ns` to the parse p50/p90/p99/max, events published in the window (the highest `seq` seen: a publisher that shares an overloaded runtime publishes less often than `FANOUT_MS`) |
//!
//! With `--pid`, the server's CPU time, write syscalls (`syscw`) and bytes (`wchar`)
//! from `/proc/PID/io` (same user or root) are differenced over the window, and
//! `VmRSS` from `/proc/PID/status` is read before the first connection and at the end
//! of the window. CPU time is `utime + stime` from `/proc/PID/stat` (clock ticks of
//! `getconf CLK_TCK`, 100 if that fails: 10 ms resolution), and the same with
//! nanosecond resolution from `/proc/PID/task/*/schedstat`, which is used unless it is
//! well below the ticks (a thread ended in between). `schedstat` also gives the time
//! the server spent runnable but waiting for a CPU: on a shared machine, how much other
//! processes got in the way (`server_wait_pct`; the same for the load generator).
//! Costs are reported per event, per heartbeat or per delivery (the scenario's unit)
//! and per connection.
//!
//! Output: a table on stderr, and with `--json` one JSON object on one line on stdout
//! (every `--tag` becomes a field of it). Without `--json` the table goes to stdout.
//!
//! How it works: one thread (a current-thread tokio runtime; pin it with `taskset`),
//! one task per connection. Connections open at most `--rate` per second (default
//! 2000), from source addresses `127.0.0.2` to `127.0.0.(1 + N)` (`--source-ips`,
//! default 32; `0`: the kernel's choice from `127.0.0.1`), because Linux's search for a
//! free ephemeral port slows down to milliseconds per `connect` with ~15 000
//! connections from one address. Every read goes into one shared 256 KiB buffer
//! (borrowed only inside `poll_read`), so 19 000 idle connections cost little memory.
//! A small state machine decodes `Transfer-Encoding: chunked` (or a body read to the
//! end) and feeds an SSE line parser. Failures to connect, non-200 answers, protocol
//! errors and connections that end are counted, never fatal. Everything has a
//! deadline: the ramp-up gives up on connections still pending after
//! `conns / rate + connect-timeout + 5 s`, and a watchdog thread ends the process if
//! the run overstays its budget by 10 s.
//!
//! Only `127.0.0.1` (or `localhost`, which means the same) is accepted as a target.

use std::{
    cell::{Cell, RefCell},
    fmt::Write as _,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    pin::Pin,
    rc::Rc,
    task::{ready, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Map, Value};
use tokio::{
    io::{AsyncRead as _, AsyncWriteExt as _, ReadBuf},
    net::{TcpSocket, TcpStream},
    task::LocalSet,
};

/// Every read lands here first (one buffer for all connections).
const SCRATCH_BYTES: usize = 256 * 1024;
/// A response head longer than this is a protocol error.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// An SSE line longer than this is a protocol error.
const MAX_LINE_BYTES: usize = 1 << 20;
/// `/stream` data is exactly this long.
const STREAM_DATA_LEN: usize = 64;
/// A heartbeat gap over this many heartbeat intervals makes a connection late.
const LATE_FACTOR: f64 = 1.5;
/// Failure messages kept for the report (the first few of each kind).
const MAX_SAMPLES: usize = 3;

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg == "help" => {
            println!("{USAGE}");
            return;
        }
        Err(msg) => {
            eprintln!("loadgen: {msg}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    // The run's whole budget: ramp-up, warm-up, window, and some slack to report.
    let ramp_budget = args.ramp_budget();
    let budget = ramp_budget + secs(args.warmup) + secs(args.secs) + Duration::from_secs(5);
    std::thread::spawn(move || {
        std::thread::sleep(budget + Duration::from_secs(10));
        eprintln!("loadgen: watchdog: still running after {budget:?} + 10 s; giving up");
        std::process::exit(3);
    });

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let report = LocalSet::new().block_on(&rt, run(args, ramp_budget));
    let table = report.table();
    if report.json {
        eprint!("{table}");
        println!("{}", Value::Object(report.fields));
    } else {
        print!("{table}");
    }
    // 19 000 open sockets and their tasks: let the kernel clean up.
    std::process::exit(0);
}

const USAGE: &str = "usage: loadgen --url http://127.0.0.1:PORT --scenario stream|idle|fanout \
--conns N --secs S --warmup W [--hb-ms H] [--pid SERVER_PID] [--json] [--rate CONNS_PER_S] \
[--fanout-ms F] [--connect-timeout SECS] [--source-ips N] [--tag KEY=VALUE]...";

// ---------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Stream,
    Idle,
    Fanout,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Stream => "stream",
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
        }
    }

    /// What the server's cost is divided by.
    fn unit(self) -> &'static str {
        match self {
            Scenario::Stream => "event",
            Scenario::Idle => "heartbeat",
            Scenario::Fanout => "delivery",
        }
    }
}

struct Args {
    addr: SocketAddr,
    scenario: Scenario,
    conns: usize,
    secs: f64,
    warmup: f64,
    hb_ms: Option<u64>,
    pid: Option<u32>,
    json: bool,
    rate: f64,
    fanout_ms: Option<u64>,
    connect_timeout: f64,
    source_ips: usize,
    tags: Vec<(String, String)>,
}

impl Args {
    fn parse(mut it: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut url = None;
        let mut scenario = None;
        let mut conns = None;
        let mut secs = 10.0;
        let mut warmup = 2.0;
        let mut hb_ms = None;
        let mut pid = None;
        let mut json = false;
        let mut rate = 2000.0;
        let mut fanout_ms = None;
        let mut connect_timeout = 5.0;
        let mut source_ips = 32;
        let mut tags = Vec::new();
        while let Some(flag) = it.next() {
            if flag == "--json" {
                json = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                return Err("help".to_owned());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--url" => url = Some(value),
                "--scenario" => {
                    scenario = Some(match value.as_str() {
                        "stream" => Scenario::Stream,
                        "idle" => Scenario::Idle,
                        "fanout" => Scenario::Fanout,
                        _ => return Err(format!("unknown scenario {value:?}")),
                    });
                }
                "--conns" => conns = Some(number::<usize>(&flag, &value)?),
                "--secs" => secs = number::<f64>(&flag, &value)?,
                "--warmup" => warmup = number::<f64>(&flag, &value)?,
                "--hb-ms" => hb_ms = Some(number::<u64>(&flag, &value)?),
                "--pid" => pid = Some(number::<u32>(&flag, &value)?),
                "--rate" => rate = number::<f64>(&flag, &value)?,
                "--fanout-ms" => fanout_ms = Some(number::<u64>(&flag, &value)?),
                "--connect-timeout" => connect_timeout = number::<f64>(&flag, &value)?,
                "--source-ips" => source_ips = number::<usize>(&flag, &value)?,
                "--tag" => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("--tag {value:?}: expected KEY=VALUE"))?;
                    tags.push((k.to_owned(), v.to_owned()));
                }
                _ => return Err(format!("unknown option {flag:?}")),
            }
        }
        let url = url.ok_or("--url is required")?;
        let scenario = scenario.ok_or("--scenario is required")?;
        let conns = conns.ok_or("--conns is required")?;
        if conns == 0 {
            return Err("--conns must be at least 1".to_owned());
        }
        for (name, v) in [("--secs", secs), ("--warmup", warmup)] {
            if !(0.0..=3600.0).contains(&v) {
                return Err(format!("{name} {v}: expected 0 to 3600 seconds"));
            }
        }
        if secs <= 0.0 {
            return Err("--secs must be above 0".to_owned());
        }
        if !(rate >= 1.0 && rate.is_finite()) {
            return Err("--rate must be at least 1 connection per second".to_owned());
        }
        if !(0.1..=60.0).contains(&connect_timeout) {
            return Err("--connect-timeout: expected 0.1 to 60 seconds".to_owned());
        }
        if source_ips > 250 {
            return Err("--source-ips: at most 250 (127.0.0.2 to 127.0.0.251)".to_owned());
        }
        if hb_ms == Some(0) && scenario == Scenario::Idle {
            return Err("--hb-ms 0: an idle connection without heartbeats measures nothing".into());
        }
        Ok(Self {
            addr: parse_url(&url)?,
            scenario,
            conns,
            secs,
            warmup,
            hb_ms,
            pid,
            json,
            rate,
            fanout_ms,
            connect_timeout,
            source_ips,
            tags,
        })
    }

    fn path(&self) -> String {
        match (self.scenario, self.hb_ms) {
            (Scenario::Stream, None) => "/stream".to_owned(),
            (Scenario::Stream, Some(h)) => format!("/stream?hb_ms={h}"),
            (Scenario::Idle, h) => format!("/idle?hb_ms={}", h.unwrap_or(1000)),
            (Scenario::Fanout, _) => "/fanout".to_owned(),
        }
    }

    /// How long connecting may take before the pending ones count as failed.
    fn ramp_budget(&self) -> Duration {
        secs(self.conns as f64 / self.rate + self.connect_timeout + 5.0)
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: not a number"))
}

/// `http://127.0.0.1:PORT` (a trailing `/` is fine); any other host is refused.
fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url {url:?}: only http:// is supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("--url {url:?}: the port is required"))?;
    if host != "127.0.0.1" && host != "localhost" {
        return Err(format!(
            "--url {url:?}: only 127.0.0.1 is a permitted target"
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("--url {url:?}: bad port"))?;
    Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

// ---------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Warmup,
    Window,
    Done,
}

/// What every connection task shares (one thread: `Rc` and `RefCell`).
struct Run {
    addr: SocketAddr,
    request: Vec<u8>,
    connect_timeout: Duration,
    source_ips: usize,
    phase: Cell<Phase>,
    scratch: RefCell<Box<[u8]>>,
    state: RefCell<State>,
}

async fn run(args: Args, ramp_budget: Duration) -> Report {
    let clk_tck = clk_tck();
    let nofile = nofile_limit();
    let path = args.path();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n",
        args.addr
    );
    let run = Rc::new(Run {
        addr: args.addr,
        request: request.into_bytes(),
        connect_timeout: secs(args.connect_timeout),
        source_ips: args.source_ips,
        phase: Cell::new(Phase::Ramp),
        scratch: RefCell::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
        state: RefCell::new(State::new(args.scenario, args.conns)),
    });
    let server_before_ramp = args.pid.and_then(|pid| ProcSample::read(pid, clk_tck));
    let pid_missing = args.pid.is_some() && server_before_ramp.is_none();

    // Ramp-up: at most `rate` new connections per second.
    let ramp_start = Instant::now();
    let ramp_deadline = ramp_start + ramp_budget;
    {
        let run = run.clone();
        let rate = args.rate;
        let conns = args.conns;
        tokio::task::spawn_local(async move {
            // Every millisecond, start the connections that are due by then (one timer
            // per connection would start one per turn of a busy event loop).
            let mut started = 0;
            while started < conns {
                let due = ((ramp_start.elapsed().as_secs_f64() * rate) as usize + 1).min(conns);
                for id in started..due {
                    tokio::task::spawn_local(connection(run.clone(), id));
                }
                started = started.max(due);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    }
    loop {
        let resolved = run.state.borrow().resolved();
        if resolved >= args.conns || Instant::now() >= ramp_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ramp_s = ramp_start.elapsed().as_secs_f64();
    let (pending_after_ramp, no_head_after_ramp) = {
        let state = run.state.borrow();
        (
            args.conns - state.resolved(),
            state
                .tcp_connected
                .saturating_sub(state.opened + state.http_failed),
        )
    };

    run.phase.set(Phase::Warmup);
    tokio::time::sleep(secs(args.warmup)).await;

    // The window.
    let server_start = args.pid.and_then(|pid| ProcSample::read(pid, clk_tck));
    let self_start = ProcSample::read_self(clk_tck);
    let t0 = Instant::now();
    run.phase.set(Phase::Window);
    {
        let mut state = run.state.borrow_mut();
        state.window_start = Some(t0);
        state.open_at_window_start = state.opened - state.closed;
        state.max_seq_at_window_start = state.max_seq;
    }
    tokio::time::sleep(secs(args.secs)).await;
    run.phase.set(Phase::Done);
    let t1 = Instant::now();
    let server_end = args.pid.and_then(|pid| ProcSample::read(pid, clk_tck));
    let self_end = ProcSample::read_self(clk_tck);
    let window = t1 - t0;

    let state = run.state.borrow();
    Report::build(&ReportInput {
        args: &args,
        path: &path,
        state: &state,
        window,
        window_end: t1,
        ramp_s,
        pending_after_ramp,
        no_head_after_ramp,
        nofile,
        clk_tck,
        pid_missing,
        server: (server_before_ramp, server_start, server_end),
        loadgen: (self_start, self_end),
    })
}

/// One connection: connect, send the request, parse everything until it ends.
async fn connection(run: Rc<Run>, id: usize) {
    let result = drive(&run, id).await;
    let phase = run.phase.get();
    let mut state = run.state.borrow_mut();
    let conn = &mut state.conns[id];
    let was_open = conn.status == Status::Open;
    let failure = result.err();
    if was_open {
        conn.status = Status::Closed;
        if phase != Phase::Done {
            state.closed += 1;
            if phase == Phase::Window {
                state.closed_in_window += 1;
            }
            let msg = failure.map_or_else(|| "end of response".to_owned(), |f| f.to_string());
            sample(&mut state.close_samples, msg);
        }
    } else if conn.status == Status::Connecting {
        conn.status = Status::Failed;
        let failure = failure.unwrap_or(Failure::Http("response ended before the head".into()));
        match failure {
            Failure::Connect(_) => state.connect_failed += 1,
            Failure::Http(_) | Failure::Io(_) | Failure::Protocol(_) => state.http_failed += 1,
        }
        sample(&mut state.fail_samples, failure.to_string());
    }
}

enum Failure {
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

fn sample(samples: &mut Vec<String>, msg: String) {
    if samples.len() < MAX_SAMPLES && !samples.contains(&msg) {
        samples.push(msg);
    }
}

async fn drive(run: &Run, id: usize) -> Result<(), Failure> {
    let mut tcp = match tokio::time::timeout(run.connect_timeout, connect(run, id)).await {
        Err(_) => return Err(Failure::Connect("timed out".into())),
        Ok(Err(err)) => return Err(Failure::Connect(err.to_string())),
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    run.state.borrow_mut().tcp_connected += 1;
    tcp.write_all(&run.request).await.map_err(Failure::Io)?;
    loop {
        // `poll_read` borrows the shared buffer only while it runs (never across an
        // await), and after a read shorter than the buffer tokio clears the socket's
        // readiness: one `read` per wake-up, not a second one to see `EAGAIN`.
        let feed = std::future::poll_fn(|cx| {
            let mut scratch = run.scratch.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut tcp).poll_read(cx, &mut buf)).map_err(Failure::Io)?;
            let data = buf.filled();
            if data.is_empty() {
                return Poll::Ready(Ok(Feed::End));
            }
            let mut state = run.state.borrow_mut();
            Poll::Ready(Ok(state.feed(
                id,
                data,
                run.phase.get(),
                Instant::now(),
                unix_ns(),
            )))
        })
        .await?;
        match feed {
            Feed::More => {}
            Feed::End => return Ok(()),
            Feed::Failed(f) => return Err(f),
        }
    }
}

/// Connects from source address `127.0.0.(2 + id % source_ips)` (from `127.0.0.1`
/// with `source_ips` 0). With tens of thousands of connections from one source address
/// to one port, Linux's search for a free ephemeral port (`__inet_hash_connect`) grows
/// with the ports in use and ends up dominating the ramp-up; a port chosen by `bind`
/// for each of several addresses stays cheap. Every address of 127/8 is loopback.
async fn connect(run: &Run, id: usize) -> io::Result<TcpStream> {
    if run.source_ips == 0 {
        return TcpStream::connect(run.addr).await;
    }
    let socket = TcpSocket::new_v4()?;
    let host = 2 + (id % run.source_ips) as u32;
    let source = Ipv4Addr::from(u32::from(Ipv4Addr::LOCALHOST) & 0xff00_0000 | host);
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    socket.connect(run.addr).await
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

// ---------------------------------------------------------------------------------
// Parsing: HTTP/1.1 response head, chunked body, SSE lines
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Connecting,
    Open,
    Failed,
    Closed,
}

enum Body {
    /// Reading the response head (the bytes so far).
    Head(Vec<u8>),
    Chunked(Chunk),
    /// No `Transfer-Encoding`: the body runs to the end of the connection.
    ToEnd,
}

#[derive(Clone, Copy)]
enum Chunk {
    /// Hex digits of the chunk size so far.
    Size(u64),
    /// Chunk extensions, up to the end of the size line.
    Ext(u64),
    /// Bytes left in the current chunk.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataCr,
    DataLf,
    /// The last chunk was seen.
    Done,
}

/// One connection's parser state and counters.
struct Conn {
    status: Status,
    body: Body,
    /// The start of a line that a read or a chunk cut.
    line: Vec<u8>,
    /// The event being read has a `data` line.
    has_data: bool,
    /// The `seq` expected next (`/stream` starts at 0; `/fanout` at whatever comes first).
    next_seq: Option<u64>,
    last_hb: Option<Instant>,
    /// When the response head arrived.
    opened_at: Option<Instant>,
    hb_in_window: u64,
    max_gap: Duration,
}

impl Conn {
    fn new() -> Self {
        Self {
            status: Status::Connecting,
            body: Body::Head(Vec::new()),
            line: Vec::new(),
            has_data: false,
            next_seq: None,
            last_hb: None,
            hb_in_window: 0,
            max_gap: Duration::ZERO,
            opened_at: None,
        }
    }
}

enum Feed {
    More,
    End,
    Failed(Failure),
}

/// Everything measured, for all connections.
struct State {
    scenario: Scenario,
    conns: Vec<Conn>,
    opened: usize,
    /// Connections whose TCP handshake completed (the response head may not have come).
    tcp_connected: usize,
    /// Connections open when the window started (the denominator of per-connection
    /// figures).
    open_at_window_start: usize,
    connect_failed: usize,
    http_failed: usize,
    closed: usize,
    closed_in_window: usize,
    fail_samples: Vec<String>,
    close_samples: Vec<String>,
    window_start: Option<Instant>,
    w: Counters,
    gaps: Histogram,
    latency: Histogram,
    /// The highest `/fanout` seq seen on any connection, and what it was when the window
    /// started: how many events the server published in the window (its publisher
    /// shares the runtime and publishes less often than `FANOUT_MS` when overloaded).
    max_seq: Option<u64>,
    max_seq_at_window_start: Option<u64>,
}

/// Counted during the window only.
#[derive(Default)]
struct Counters {
    wire_bytes: u64,
    body_bytes: u64,
    events: u64,
    bad_events: u64,
    seq_gaps: u64,
    missed: u64,
    out_of_order: u64,
    heartbeats: u64,
    lagged_comments: u64,
    lagged_reported: u64,
    other_comments: u64,
}

impl State {
    fn new(scenario: Scenario, conns: usize) -> Self {
        Self {
            scenario,
            conns: (0..conns).map(|_| Conn::new()).collect(),
            opened: 0,
            tcp_connected: 0,
            open_at_window_start: 0,
            connect_failed: 0,
            http_failed: 0,
            closed: 0,
            closed_in_window: 0,
            fail_samples: Vec::new(),
            close_samples: Vec::new(),
            window_start: None,
            w: Counters::default(),
            gaps: Histogram::new(),
            latency: Histogram::new(),
            max_seq: None,
            max_seq_at_window_start: None,
        }
    }

    fn resolved(&self) -> usize {
        self.opened + self.connect_failed + self.http_failed
    }

    /// Feeds `data`, just read from connection `id`, through its parser.
    fn feed(&mut self, id: usize, data: &[u8], phase: Phase, now: Instant, now_ns: u64) -> Feed {
        let in_window = phase == Phase::Window;
        if in_window {
            self.w.wire_bytes += data.len() as u64;
        }
        let mut ctx = Ctx {
            scenario: self.scenario,
            in_window,
            now,
            now_ns,
            w: &mut self.w,
            gaps: &mut self.gaps,
            latency: &mut self.latency,
            max_seq: &mut self.max_seq,
        };
        let conn = &mut self.conns[id];
        let mut data = data;
        if let Body::Head(head) = &mut conn.body {
            let searched_from = head.len().saturating_sub(3);
            head.extend_from_slice(data);
            let Some(end) = memchr::memmem::find(&head[searched_from..], b"\r\n\r\n") else {
                if head.len() > MAX_HEAD_BYTES {
                    return Feed::Failed(Failure::Http("response head too long".into()));
                }
                return Feed::More;
            };
            let end = searched_from + end + 4;
            let body = match parse_head(&head[..end]) {
                Ok(body) => body,
                Err(err) => return Feed::Failed(Failure::Http(err)),
            };
            // What came after the head, as an offset into `data`.
            let consumed = data.len() - (head.len() - end);
            data = &data[consumed..];
            conn.body = body;
            conn.status = Status::Open;
            conn.opened_at = Some(now);
            self.opened += 1;
        }
        match &mut conn.body {
            Body::Head(_) => unreachable!("the head was parsed above"),
            Body::ToEnd => {
                if in_window {
                    ctx.w.body_bytes += data.len() as u64;
                }
                match sse(conn, data, &mut ctx) {
                    Ok(()) => Feed::More,
                    Err(e) => Feed::Failed(Failure::Protocol(e)),
                }
            }
            Body::Chunked(_) => match chunked(conn, data, &mut ctx) {
                Ok(true) => Feed::End,
                Ok(false) => Feed::More,
                Err(e) => Feed::Failed(Failure::Protocol(e)),
            },
        }
    }
}

/// The per-read context of the parser.
struct Ctx<'a> {
    scenario: Scenario,
    in_window: bool,
    now: Instant,
    now_ns: u64,
    w: &'a mut Counters,
    gaps: &'a mut Histogram,
    latency: &'a mut Histogram,
    max_seq: &'a mut Option<u64>,
}

/// Status 200 and the body's framing, from a complete response head.
fn parse_head(head: &[u8]) -> Result<Body, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    if code != "200" {
        return Err(format!("status {status_line:?}"));
    }
    let mut chunked = false;
    let mut event_stream = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.contains("chunked");
        } else if name.eq_ignore_ascii_case("content-type") {
            event_stream = value.starts_with("text/event-stream");
        } else if name.eq_ignore_ascii_case("content-length") {
            return Err("an SSE response with content-length".into());
        }
    }
    if !event_stream {
        return Err("content-type is not text/event-stream".into());
    }
    Ok(if chunked {
        Body::Chunked(Chunk::Size(0))
    } else {
        Body::ToEnd
    })
}

/// Decodes chunked framing and feeds the chunks' data to the SSE parser. `Ok(true)`:
/// the last chunk came.
fn chunked(conn: &mut Conn, mut data: &[u8], ctx: &mut Ctx<'_>) -> Result<bool, &'static str> {
    let Body::Chunked(mut state) = conn.body else {
        unreachable!("called for chunked bodies only")
    };
    while !data.is_empty() {
        match state {
            Chunk::Data(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                let (now, rest) = data.split_at(take);
                if ctx.in_window {
                    ctx.w.body_bytes += take as u64;
                }
                sse(conn, now, ctx)?;
                data = rest;
                let left = left - take as u64;
                state = if left == 0 {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            Chunk::Done => {
                conn.body = Body::Chunked(Chunk::Done);
                return Ok(true);
            }
            _ => {}
        }
        let b = data[0];
        data = &data[1..];
        state = match (state, b) {
            (Chunk::Size(n), b'\n') | (Chunk::Ext(n), b'\n') => {
                if n == 0 {
                    Chunk::Done
                } else {
                    Chunk::Data(n)
                }
            }
            (Chunk::Size(n), b'\r' | b';' | b' ' | b'\t') | (Chunk::Ext(n), _) => Chunk::Ext(n),
            (Chunk::Size(n), _) => {
                let digit = (b as char).to_digit(16).ok_or("bad chunk size")?;
                if n >> 60 != 0 {
                    return Err("chunk size too large");
                }
                Chunk::Size(n << 4 | u64::from(digit))
            }
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataCr | Chunk::DataLf, b'\n') => Chunk::Size(0),
            (Chunk::DataCr | Chunk::DataLf, _) => return Err("no CRLF after chunk data"),
            (Chunk::Data(_) | Chunk::Done, _) => unreachable!("handled above"),
        };
    }
    let done = matches!(state, Chunk::Done);
    conn.body = Body::Chunked(state);
    Ok(done)
}

/// Splits body bytes into SSE lines (a line may span reads and chunks).
fn sse(conn: &mut Conn, mut data: &[u8], ctx: &mut Ctx<'_>) -> Result<(), &'static str> {
    while let Some(i) = memchr::memchr(b'\n', data) {
        if conn.line.is_empty() {
            line(conn, &data[..i], ctx);
        } else {
            let mut held = std::mem::take(&mut conn.line);
            held.extend_from_slice(&data[..i]);
            line(conn, &held, ctx);
            held.clear();
            conn.line = held;
        }
        data = &data[i + 1..];
    }
    if !data.is_empty() {
        if conn.line.len() + data.len() > MAX_LINE_BYTES {
            return Err("SSE line too long");
        }
        conn.line.extend_from_slice(data);
    }
    Ok(())
}

/// One SSE line, without its `\n`.
fn line(conn: &mut Conn, line: &[u8], ctx: &mut Ctx<'_>) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        if conn.has_data {
            conn.has_data = false;
            if ctx.in_window {
                ctx.w.events += 1;
            }
        }
        return;
    }
    if let Some(comment) = line.strip_prefix(b":") {
        let comment = comment.strip_prefix(b" ").unwrap_or(comment);
        if let Some(n) = comment.strip_prefix(b"lagged") {
            // tower-sse's demo tells a lagging `/fanout` subscriber how much it lost.
            if ctx.in_window {
                ctx.w.lagged_comments += 1;
                ctx.w.lagged_reported += leading_u64(trim_start(n)).map_or(0, |(n, _)| n);
            }
        } else if comment.is_empty() || ctx.scenario != Scenario::Fanout {
            heartbeat(conn, ctx);
        } else if ctx.in_window {
            ctx.w.other_comments += 1;
        }
        return;
    }
    let Some(data) = line.strip_prefix(b"data:") else {
        // `id`, `event`, `retry` and unknown fields: not used by these endpoints.
        return;
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    conn.has_data = true;
    match ctx.scenario {
        Scenario::Stream => stream_data(conn, data, ctx),
        Scenario::Fanout => fanout_data(conn, data, ctx),
        Scenario::Idle => {
            if ctx.in_window {
                ctx.w.bad_events += 1;
            }
        }
    }
}

fn heartbeat(conn: &mut Conn, ctx: &mut Ctx<'_>) {
    if ctx.in_window {
        ctx.w.heartbeats += 1;
        conn.hb_in_window += 1;
        if let Some(last) = conn.last_hb {
            let gap = ctx.now.saturating_duration_since(last);
            ctx.gaps.record(duration_ns(gap));
            conn.max_gap = conn.max_gap.max(gap);
        }
    }
    conn.last_hb = Some(ctx.now);
}

/// `{"seq":N,"pad":"xx…x"}`, exactly 64 bytes, N continuing the connection's count.
fn stream_data(conn: &mut Conn, data: &[u8], ctx: &mut Ctx<'_>) {
    let parsed = (data.len() == STREAM_DATA_LEN)
        .then(|| data.strip_prefix(br#"{"seq":"#))
        .flatten()
        .and_then(leading_u64)
        .and_then(|(seq, rest)| {
            let pad = rest.strip_prefix(br#","pad":""#)?.strip_suffix(br#""}"#)?;
            pad.iter().all(|&b| b == b'x').then_some(seq)
        });
    let Some(seq) = parsed else {
        if ctx.in_window {
            ctx.w.bad_events += 1;
        }
        return;
    };
    check_seq(conn, seq, Some(0), ctx);
}

/// `{"seq":N,"ts_ns":T}`: the latency is now minus T.
fn fanout_data(conn: &mut Conn, data: &[u8], ctx: &mut Ctx<'_>) {
    let parsed = data
        .strip_prefix(br#"{"seq":"#)
        .and_then(leading_u64)
        .and_then(|(seq, rest)| {
            let (ts, rest) = leading_u64(rest.strip_prefix(br#","ts_ns":"#)?)?;
            (rest == b"}").then_some((seq, ts))
        });
    let Some((seq, ts_ns)) = parsed else {
        if ctx.in_window {
            ctx.w.bad_events += 1;
        }
        return;
    };
    if ctx.in_window {
        ctx.latency.record(ctx.now_ns.saturating_sub(ts_ns));
    }
    if ctx.max_seq.map_or(true, |max| seq > max) {
        *ctx.max_seq = Some(seq);
    }
    check_seq(conn, seq, None, ctx);
}

fn check_seq(conn: &mut Conn, seq: u64, first: Option<u64>, ctx: &mut Ctx<'_>) {
    if let Some(expected) = conn.next_seq.or(first) {
        if seq != expected && ctx.in_window {
            if seq > expected {
                ctx.w.seq_gaps += 1;
                ctx.w.missed += seq - expected;
            } else {
                ctx.w.out_of_order += 1;
            }
        }
    }
    conn.next_seq = Some(seq.wrapping_add(1));
}

/// The decimal number at the start of `s`, and what follows it.
fn leading_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &s[..digits] {
        n = n * 10 + u64::from(b - b'0');
    }
    Some((n, &s[digits..]))
}

fn trim_start(s: &[u8]) -> &[u8] {
    let spaces = s.iter().take_while(|b| **b == b' ').count();
    &s[spaces..]
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------
// A log-linear histogram (64 buckets per power of two: under 1.6% error)
// ---------------------------------------------------------------------------------

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let shift = exp - SUB_BITS;
        let mantissa = (v >> shift) as usize & (SUB - 1);
        ((shift as usize + 1) << SUB_BITS) + mantissa
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = ((SUB + (i & (SUB - 1))) as u64) << shift;
        low + ((1u64 << shift) >> 1)
    }

    fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0..=1), `None` when empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

// ---------------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct ProcSample {
    /// `utime + stime` of the process (threads that ended included), in seconds.
    cpu_s: f64,
    /// The sum of the live threads' run time from `/proc/PID/task/*/schedstat`, in
    /// nanoseconds: the same quantity, without the 10 ms resolution of clock ticks.
    sched_ns: Option<u64>,
    /// The live threads' time spent runnable but waiting for a CPU (second field of
    /// `schedstat`), in nanoseconds: on a shared machine, how much others got in the way.
    wait_ns: Option<u64>,
    rss_kb: u64,
    threads: u64,
    syscw: Option<u64>,
    wchar: Option<u64>,
}

impl ProcSample {
    fn read(pid: u32, clk_tck: f64) -> Option<Self> {
        Self::read_dir(&format!("/proc/{pid}"), clk_tck)
    }

    fn read_self(clk_tck: f64) -> Option<Self> {
        Self::read_dir("/proc/self", clk_tck)
    }

    fn read_dir(dir: &str, clk_tck: f64) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        // The command name may contain spaces and parentheses: fields start after the
        // last `)`. Field 3 (state) is index 0 here; utime is field 14, stime 15,
        // num_threads 20.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let threads: u64 = fields.get(17)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let rss_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        let io = std::fs::read_to_string(format!("{dir}/io")).ok();
        let sched = schedstat(dir);
        let io_field = |name: &str| {
            io.as_deref()?
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        Some(Self {
            cpu_s: (utime + stime) as f64 / clk_tck,
            sched_ns: sched.map(|s| s.0),
            wait_ns: sched.map(|s| s.1),
            rss_kb,
            threads,
            syscw: io_field("syscw:"),
            wchar: io_field("wchar:"),
        })
    }
}

/// The run time and run-queue wait of every live thread of the process, summed
/// (nanoseconds).
fn schedstat(dir: &str) -> Option<(u64, u64)> {
    let (mut run, mut wait) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("{dir}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that ended between the listing and the read: skip it.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let mut fields = text.split_whitespace();
        run += fields.next()?.parse::<u64>().ok()?;
        wait += fields.next()?.parse::<u64>().ok()?;
    }
    Some((run, wait))
}

/// Clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`; 100, the value on
/// every Linux this runs on, if that fails).
fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// This process's soft limit on open files (`/proc/self/limits`).
fn nofile_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

// ---------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------

struct ReportInput<'a> {
    args: &'a Args,
    path: &'a str,
    state: &'a State,
    window: Duration,
    window_end: Instant,
    ramp_s: f64,
    pending_after_ramp: usize,
    no_head_after_ramp: usize,
    nofile: Option<u64>,
    clk_tck: f64,
    pid_missing: bool,
    server: (Option<ProcSample>, Option<ProcSample>, Option<ProcSample>),
    loadgen: (Option<ProcSample>, Option<ProcSample>),
}

struct Report {
    json: bool,
    fields: Map<String, Value>,
    /// `(label, value)` rows of the human table.
    rows: Vec<(String, String)>,
}

impl Report {
    fn build(input: &ReportInput<'_>) -> Self {
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

    fn table(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_event(seq: u64) -> String {
        let digits = seq.to_string();
        let pad = "x".repeat(STREAM_DATA_LEN - 17 - digits.len());
        format!("data: {{\"seq\":{digits},\"pad\":\"{pad}\"}}\n\n")
    }

    /// A chunked response with heartbeats and `/stream` events, fed in pieces of every
    /// size from 1 byte: the same counts each time.
    #[test]
    fn chunked_sse_in_any_pieces() {
        let mut body = String::new();
        let mut payload = 0;
        for chunk in [
            stream_event(0) + &stream_event(1),
            ":\n\n".to_owned(),
            stream_event(2),
            stream_event(3) + ": hb\n\n" + &stream_event(4),
        ] {
            payload += chunk.len();
            body += &format!("{:x};ext=1\r\n{chunk}\r\n", chunk.len());
        }
        body += "0\r\n\r\n";
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        let wire = format!("{head}{body}");
        for piece in 1..=wire.len() {
            let mut state = State::new(Scenario::Stream, 1);
            let now = Instant::now();
            let mut end = false;
            for bytes in wire.as_bytes().chunks(piece) {
                match state.feed(0, bytes, Phase::Window, now, 0) {
                    Feed::More => {}
                    Feed::End => end = true,
                    Feed::Failed(f) => panic!("piece {piece}: {f}"),
                }
            }
            assert!(end, "piece {piece}: the last chunk was not seen");
            assert_eq!(state.opened, 1);
            assert_eq!(state.w.events, 5, "piece {piece}");
            assert_eq!(state.w.heartbeats, 2, "piece {piece}");
            assert_eq!(
                state.w.bad_events + state.w.seq_gaps + state.w.out_of_order,
                0
            );
            assert_eq!(state.w.body_bytes, payload as u64, "piece {piece}");
        }
    }

    #[test]
    fn gaps_and_latency() {
        let mut state = State::new(Scenario::Fanout, 1);
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";
        let now = Instant::now();
        let ns = 1_000_000_000;
        let body = format!(
            "{head}data: {{\"seq\":7,\"ts_ns\":{}}}\n\ndata: {{\"seq\":10,\"ts_ns\":{}}}\n\n: lagged 2\n\n",
            ns - 1000,
            ns - 3000
        );
        assert!(matches!(
            state.feed(0, body.as_bytes(), Phase::Window, now, ns),
            Feed::More
        ));
        assert_eq!(state.w.events, 2);
        assert_eq!((state.w.seq_gaps, state.w.missed), (1, 2));
        assert_eq!((state.w.lagged_comments, state.w.lagged_reported), (1, 2));
        assert_eq!(state.latency.max, 3000);
        assert_eq!(state.max_seq, Some(10));
    }

    #[test]
    fn non_200_fails() {
        let mut state = State::new(Scenario::Idle, 1);
        let head = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        assert!(matches!(
            state.feed(0, head, Phase::Ramp, Instant::now(), 0),
            Feed::Failed(Failure::Http(_))
        ));
    }

    #[test]
    fn only_loopback() {
        assert!(parse_url("http://127.0.0.1:3000").is_ok());
        assert!(parse_url("http://localhost:3000/").is_ok());
        assert!(parse_url("http://10.0.0.1:3000").is_err());
        assert!(parse_url("http://example.com:80").is_err());
        assert!(parse_url("https://127.0.0.1:3000").is_err());
    }

    #[test]
    fn histogram_buckets_round_trip() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            1000,
            123_456_789,
            u64::MAX / 3,
        ] {
            let i = Histogram::index(v);
            let mid = Histogram::value(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.02, "{v} -> bucket {i} -> {mid}");
        }
    }
}
