//! Every connection's parser (response head, framing, SSE lines) and what the lines
//! add to the counters.

use std::time::{Duration, Instant};

use crate::{
    failure::Failure,
    http1::{self, Framing, MAX_HEAD_BYTES},
    scenarios::{leading_u64, trim_start, Fields, Scenario},
    stats::{Counters, Histogram},
};

/// An SSE line longer than this is a protocol error.
const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Connecting,
    Open,
    Failed,
    Closed,
}

/// One connection's parser state and counters.
pub(crate) struct Conn {
    pub(crate) status: Status,
    framing: Framing,
    /// The start of a line that a read or a chunk cut.
    line: Vec<u8>,
    /// The event being read has a `data` line.
    has_data: bool,
    /// The event being read is a heartbeat (its `event` field is `--heartbeat-event`).
    hb_event: bool,
    /// The event being read has an `event` field.
    typed: bool,
    /// The sequence number expected next.
    next_seq: Option<u64>,
    pub(crate) last_hb: Option<Instant>,
    /// When the last `fanout` event arrived.
    last_event: Option<Instant>,
    /// When the response head arrived.
    pub(crate) opened_at: Option<Instant>,
    pub(crate) hb_in_window: u64,
    pub(crate) max_gap: Duration,
}

impl Conn {
    fn new() -> Self {
        Self {
            status: Status::Connecting,
            framing: Framing::Head(Vec::new()),
            line: Vec::new(),
            has_data: false,
            hb_event: false,
            typed: false,
            next_seq: None,
            last_hb: None,
            last_event: None,
            hb_in_window: 0,
            max_gap: Duration::ZERO,
            opened_at: None,
        }
    }
}

pub(crate) enum Feed {
    More,
    End,
    Failed(Failure),
}

/// Everything measured, for all connections.
pub(crate) struct State {
    scenario: Scenario,
    fields: Fields,
    pub(crate) conns: Vec<Conn>,
    pub(crate) opened: usize,
    /// Connections whose TCP handshake completed (the response head may not have come).
    pub(crate) tcp_connected: usize,
    /// Connections open when the window started (the denominator of per-connection
    /// figures).
    pub(crate) open_at_window_start: usize,
    pub(crate) connect_failed: usize,
    pub(crate) http_failed: usize,
    pub(crate) closed: usize,
    pub(crate) closed_in_window: usize,
    pub(crate) fail_samples: Vec<String>,
    pub(crate) close_samples: Vec<String>,
    pub(crate) window_start: Option<Instant>,
    pub(crate) w: Counters,
    pub(crate) gaps: Histogram,
    pub(crate) latency: Histogram,
    /// `fanout`: the time between two events of one connection (a gap that ends in
    /// the window): how long delivery stopped, if it did.
    pub(crate) event_gaps: Histogram,
    /// The highest `fanout` seq seen on any connection, and what it was when the window
    /// started: how many events the server published in the window.
    pub(crate) max_seq: Option<u64>,
    pub(crate) max_seq_at_window_start: Option<u64>,
}

impl State {
    pub(crate) fn new(scenario: Scenario, fields: Fields, conns: usize) -> Self {
        Self {
            scenario,
            fields,
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
            event_gaps: Histogram::new(),
            max_seq: None,
            max_seq_at_window_start: None,
        }
    }

    pub(crate) fn resolved(&self) -> usize {
        self.opened + self.connect_failed + self.http_failed
    }

    /// The response of connection `id` was accepted (h2c: its head was checked).
    pub(crate) fn open(&mut self, id: usize, now: Instant) {
        let conn = &mut self.conns[id];
        conn.framing = Framing::ToEnd;
        conn.status = Status::Open;
        conn.opened_at = Some(now);
        self.opened += 1;
    }

    /// Feeds `data`, just read from HTTP/1.1 connection `id`, through its parser.
    pub(crate) fn feed(
        &mut self,
        id: usize,
        data: &[u8],
        in_window: bool,
        now: Instant,
        now_ns: u64,
    ) -> Feed {
        if in_window {
            self.w.wire_bytes += data.len() as u64;
        }
        let mut data = data;
        if let Framing::Head(head) = &mut self.conns[id].framing {
            let searched_from = head.len().saturating_sub(3);
            head.extend_from_slice(data);
            let Some(end) = memchr::memmem::find(&head[searched_from..], b"\r\n\r\n") else {
                if head.len() > MAX_HEAD_BYTES {
                    return Feed::Failed(Failure::Http("response head too long".into()));
                }
                return Feed::More;
            };
            let end = searched_from + end + 4;
            let framing = match http1::parse_head(&head[..end]) {
                Ok(framing) => framing,
                Err(err) => return Feed::Failed(Failure::Http(err)),
            };
            // What came after the head, as an offset into `data`.
            data = &data[data.len() - (head.len() - end)..];
            self.open(id, now);
            self.conns[id].framing = framing;
        }
        self.body(id, data, in_window, now, now_ns, false)
    }

    /// Feeds body bytes of connection `id` (after its head) to the SSE parser; h2c
    /// DATA frames come here directly (`count_wire`).
    pub(crate) fn body(
        &mut self,
        id: usize,
        data: &[u8],
        in_window: bool,
        now: Instant,
        now_ns: u64,
        count_wire: bool,
    ) -> Feed {
        if in_window && count_wire {
            self.w.wire_bytes += data.len() as u64;
        }
        let mut ctx = Ctx {
            scenario: self.scenario,
            fields: &self.fields,
            in_window,
            now,
            now_ns,
            w: &mut self.w,
            gaps: &mut self.gaps,
            latency: &mut self.latency,
            event_gaps: &mut self.event_gaps,
            max_seq: &mut self.max_seq,
        };
        let conn = &mut self.conns[id];
        let result = match conn.framing {
            Framing::Head(_) => Err("body before the head"),
            Framing::ToEnd => sse(conn, data, &mut ctx).map(|()| false),
            Framing::Chunked(mut chunk) => {
                let done = http1::dechunk(&mut chunk, data, |piece| sse(conn, piece, &mut ctx));
                conn.framing = Framing::Chunked(chunk);
                done
            }
        };
        match result {
            Ok(true) => Feed::End,
            Ok(false) => Feed::More,
            Err(e) => Feed::Failed(Failure::Protocol(e)),
        }
    }
}

/// The per-read context of the parser.
struct Ctx<'a> {
    scenario: Scenario,
    fields: &'a Fields,
    in_window: bool,
    now: Instant,
    now_ns: u64,
    w: &'a mut Counters,
    gaps: &'a mut Histogram,
    latency: &'a mut Histogram,
    event_gaps: &'a mut Histogram,
    max_seq: &'a mut Option<u64>,
}

/// Splits body bytes into SSE lines (a line may span reads and chunks).
fn sse(conn: &mut Conn, mut data: &[u8], ctx: &mut Ctx<'_>) -> Result<(), &'static str> {
    if ctx.in_window {
        ctx.w.body_bytes += data.len() as u64;
    }
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
        dispatch(conn, ctx);
        return;
    }
    if let Some(comment) = line.strip_prefix(b":") {
        let comment = trim_start(comment);
        if let Some(n) = comment.strip_prefix(b"lagged") {
            // A server telling a lagging subscriber how much it lost (tower-sse's demo).
            if ctx.in_window {
                ctx.w.lagged_comments += 1;
                ctx.w.lagged_reported += leading_u64(trim_start(n)).map_or(0, |(n, _)| n);
            }
        } else {
            heartbeat(conn, ctx);
        }
        return;
    }
    if let Some(event_type) = line.strip_prefix(b"event:") {
        let event_type = event_type.strip_prefix(b" ").unwrap_or(event_type);
        conn.typed = true;
        conn.hb_event = ctx.fields.is_heartbeat(Some(event_type));
        return;
    }
    let Some(data) = line.strip_prefix(b"data:") else {
        // `id`, `retry` and unknown fields: not measured.
        return;
    };
    let data = data.strip_prefix(b" ").unwrap_or(data);
    // One event may have several data lines: the first is read.
    if std::mem::replace(&mut conn.has_data, true) {
        return;
    }
    match ctx.scenario {
        Scenario::Stream => stream_data(conn, data, ctx),
        Scenario::Fanout => fanout_data(conn, data, ctx),
        // Counted at the end of the event unless it is a heartbeat.
        Scenario::Idle => {}
    }
}

/// The end of an event (a blank line): an event, a heartbeat event, or nothing.
fn dispatch(conn: &mut Conn, ctx: &mut Ctx<'_>) {
    let heartbeat_event =
        conn.hb_event || (!conn.typed && conn.has_data && ctx.fields.is_heartbeat(None));
    if heartbeat_event {
        heartbeat(conn, ctx);
    } else if conn.has_data && ctx.in_window {
        ctx.w.events += 1;
    }
    conn.has_data = false;
    conn.hb_event = false;
    conn.typed = false;
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

/// The sequence number, if the data has one.
fn stream_data(conn: &mut Conn, data: &[u8], ctx: &mut Ctx<'_>) {
    match ctx.fields.seq(data) {
        Some(seq) => check_seq(conn, seq, ctx),
        None if ctx.in_window => ctx.w.bad_events += 1,
        None => {}
    }
}

/// The latency is now minus the publish time; the sequence number finds missed events.
fn fanout_data(conn: &mut Conn, data: &[u8], ctx: &mut Ctx<'_>) {
    let (seq, ts_ns) = (ctx.fields.seq(data), ctx.fields.ts_ns(data));
    if ctx.in_window {
        match ts_ns {
            Some(ts) => ctx.latency.record(ctx.now_ns.saturating_sub(ts)),
            None => ctx.w.bad_events += 1,
        }
        if let Some(last) = conn.last_event {
            ctx.event_gaps
                .record(duration_ns(ctx.now.saturating_duration_since(last)));
        }
    }
    conn.last_event = Some(ctx.now);
    if let Some(seq) = seq {
        if ctx.max_seq.is_none_or(|max| seq > max) {
            *ctx.max_seq = Some(seq);
        }
        check_seq(conn, seq, ctx);
    }
}

fn check_seq(conn: &mut Conn, seq: u64, ctx: &mut Ctx<'_>) {
    if let Some(expected) = conn.next_seq {
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

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
