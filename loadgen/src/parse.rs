//! Parsing: HTTP/1.1 response head, chunked body, SSE lines; and what is counted.

use std::time::{Duration, Instant};

use crate::{
    args::Scenario,
    histogram::Histogram,
    run::{Failure, Phase},
};

/// A response head longer than this is a protocol error.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// An SSE line longer than this is a protocol error.
const MAX_LINE_BYTES: usize = 1 << 20;
/// `/stream` data is exactly this long.
const STREAM_DATA_LEN: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
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
pub(crate) struct Conn {
    pub(crate) status: Status,
    body: Body,
    /// The start of a line that a read or a chunk cut.
    line: Vec<u8>,
    /// The event being read has a `data` line.
    has_data: bool,
    /// The `seq` expected next (`/stream` starts at 0; `/fanout` at whatever comes first).
    next_seq: Option<u64>,
    pub(crate) last_hb: Option<Instant>,
    /// When the response head arrived.
    pub(crate) opened_at: Option<Instant>,
    pub(crate) hb_in_window: u64,
    pub(crate) max_gap: Duration,
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

pub(crate) enum Feed {
    More,
    End,
    Failed(Failure),
}

/// Everything measured, for all connections.
pub(crate) struct State {
    scenario: Scenario,
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
    /// The highest `/fanout` seq seen on any connection, and what it was when the window
    /// started: how many events the server published in the window (its publisher
    /// shares the runtime and publishes less often than `FANOUT_MS` when overloaded).
    pub(crate) max_seq: Option<u64>,
    pub(crate) max_seq_at_window_start: Option<u64>,
}

/// Counted during the window only.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) wire_bytes: u64,
    pub(crate) body_bytes: u64,
    pub(crate) events: u64,
    pub(crate) bad_events: u64,
    pub(crate) seq_gaps: u64,
    pub(crate) missed: u64,
    pub(crate) out_of_order: u64,
    pub(crate) heartbeats: u64,
    pub(crate) lagged_comments: u64,
    pub(crate) lagged_reported: u64,
    other_comments: u64,
}

impl State {
    pub(crate) fn new(scenario: Scenario, conns: usize) -> Self {
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

    pub(crate) fn resolved(&self) -> usize {
        self.opened + self.connect_failed + self.http_failed
    }

    /// Feeds `data`, just read from connection `id`, through its parser.
    pub(crate) fn feed(
        &mut self,
        id: usize,
        data: &[u8],
        phase: Phase,
        now: Instant,
        now_ns: u64,
    ) -> Feed {
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
}
