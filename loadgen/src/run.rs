//! The run: ramp-up, warm-up and window; one task per connection.

use std::{
    cell::{Cell, RefCell},
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    pin::Pin,
    rc::Rc,
    task::{ready, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use tokio::{
    io::{AsyncRead as _, AsyncWriteExt as _, ReadBuf},
    net::{TcpSocket, TcpStream},
};

use crate::{
    args::{secs, Args},
    parse::{Feed, State, Status},
    proc::{clk_tck, nofile_limit, ProcSample},
    report::{Report, ReportInput},
};

/// Every read lands here first (one buffer for all connections).
const SCRATCH_BYTES: usize = 256 * 1024;
/// Failure messages kept for the report (the first few of each kind).
const MAX_SAMPLES: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
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

pub(crate) async fn run(args: Args, ramp_budget: Duration) -> Report {
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
