//! What the run and every connection task share (one thread: `Rc` and `RefCell`):
//! the request, the phase, the read buffer, the parser state.

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::{
    cli::{secs, Protocol, RunConfig},
    failure::Failure,
    ids::{Ids, PLACEHOLDER},
    sse::State,
};

/// Every read lands here first (one buffer for all connections).
const SCRATCH_BYTES: usize = 256 * 1024;

/// Where the run is: only what arrives in the `Window` is counted.
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
    /// The HTTP/1.1 request (with `{i}` in its path when `per_conn`).
    request: Vec<u8>,
    /// The path has `{i}`: each connection's request is made from the template.
    per_conn: bool,
    pub(crate) ids: Ids,
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
    pub(crate) fn new(cfg: &RunConfig) -> Self {
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
            per_conn: t.path.contains(PLACEHOLDER),
            ids: cfg.ids,
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

    /// The HTTP/1.1 request of connection `id` (`{i}` in the path: its id).
    pub(crate) fn request(&self, id: usize) -> Cow<'_, [u8]> {
        if !self.per_conn {
            return Cow::Borrowed(&self.request);
        }
        let text = String::from_utf8_lossy(&self.request);
        Cow::Owned(self.ids.expand(&text, id as u64).into_owned().into_bytes())
    }

    /// The h2c request of connection `id`.
    pub(crate) fn h2_request(&self, id: usize) -> Result<http::Request<()>, Failure> {
        let path = self.ids.expand(&self.path, id as u64);
        let mut req = http::Request::get(format!("http://{}{path}", self.authority))
            .header("accept", "text/event-stream")
            .header("cache-control", "no-cache");
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        req.body(())
            .map_err(|e| Failure::Http(format!("request: {e}")))
    }

    pub(crate) fn set_phase(&self, phase: Phase, lasts: Option<Duration>) {
        let now = Instant::now();
        self.phase.set(phase);
        self.phase_times.set((now, lasts.map(|d| now + d)));
    }
}
