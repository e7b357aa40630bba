//! The reference server for the load-generator benchmarks: the demo's `/stream`,
//! `/idle` and `/fanout` (same wire format, see `CONTRACT.md`), written the way axum
//! 0.8 users write SSE today, with `axum::response::sse::{Sse, Event, KeepAlive}` and a
//! `tokio::sync::broadcast` channel. It does not use tower-sse.
//!
//! ```text
//! cargo run --release --example axum_ref                 # axum's Sse
//! FLOOR=1 cargo run --release --example axum_ref         # hand-written bodies
//! PORT=0 FANOUT_MS=1 cargo run --release --example axum_ref
//! ```
//!
//! | request | axum (default) | `FLOOR=1` |
//! |---|---|---|
//! | `GET /stream?hb_ms=H` | `Sse` over an endless `stream::iter` of events whose data the payload function writes through `Event::into_data_writer` (`STREAM_EVENTS=owned`: `Event::default().data(payload)`), `KeepAlive` every H ms (default 15000, `0`: none) | one body that writes 900 events (~64 KiB) into each frame, digits by `itoa`; no heartbeat (it is never idle) |
//! | `GET /idle?hb_ms=H` | `Sse` over `stream::pending()` with `KeepAlive` every H ms (default 1000) | one body with a `tokio::time::Interval`, answering each tick with the same static `:\n\n` frame |
//! | `GET /fanout` | `Sse` over `BroadcastStream<String>` (lagged receivers skip what they lost), each subscriber encoding its own `Event`, `KeepAlive` 15 s | one body over `BroadcastStream<Bytes>` of events encoded once by the publisher: every delivery is the same shared frame |
//! | `GET /health` | `ok` | `ok` |
//!
//! `/stream` event N is `data: {"seq":N,"pad":"xx…x"}` with the JSON padded to exactly
//! 64 bytes; `/fanout` publishes `{"seq":N,"ts_ns":T}` every `FANOUT_MS` ms (default
//! 100) to a channel of 1024 events, like the demo. Both payloads are built by the
//! demo's own functions (`examples/shared/payload.rs`), so that the comparison measures
//! the SSE paths only.
//!
//! The server is the demo's: `tower_sse::server::Server` (hyper-util's `auto::Builder`,
//! HTTP/1.1 and h2c) with the demo's settings (a 64 KiB HTTP/1 write buffer, the same
//! jemalloc allocator, request timeouts, `TCP_NODELAY`, keepalive, `TCP_NOTSENT_LOWAT`, the h2 send buffer, a
//! listen backlog of 4096), on `127.0.0.1:$PORT` (default 3000, `0` picks a free port);
//! it serves the axum `Router` as any tower service. `axum::serve` would differ in all
//! of these (a builder with hyper's defaults per connection, a write buffer of up to
//! ~400 KiB, no header timer; see BENCHMARKS.md, "A fair comparison"). It prints
//! `listening on http://127.0.0.1:PORT` once it accepts connections and exits on
//! SIGINT or SIGTERM without waiting for open streams (axum's graceful shutdown would
//! wait for endless streams).

use std::{
    convert::Infallible,
    io::{self, Write as _},
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderValue, Response, Uri},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse,
    },
    routing::get,
    Router,
};
use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::stream;
use http_body::Frame;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::broadcast,
    time::{Interval, MissedTickBehavior},
};
use tokio_stream::{wrappers::BroadcastStream, Stream, StreamExt as _};
use tower_sse::server::Server;

// The `/stream` and `/fanout` payloads, built by the demo's functions.
#[path = "shared/payload.rs"]
mod payload;
// jemalloc, in both servers.
#[path = "shared/alloc.rs"]
mod alloc;

use payload::STREAM_DATA_LEN;

const FANOUT_CAPACITY: usize = 1024;
/// Events per frame in the floor `/stream` body.
const FLOOR_EVENTS_PER_FRAME: usize = 900;

#[derive(Clone)]
struct Topics {
    /// axum: what users typically broadcast, the data as a `String`.
    text: broadcast::Sender<String>,
    /// floor: whole encoded events, shared.
    encoded: broadcast::Sender<Bytes>,
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let port: u16 = env_number("PORT", 3000)?;
    let fanout_ms: u64 = env_number("FANOUT_MS", 100)?;
    let floor = std::env::var("FLOOR").is_ok_and(|v| v == "1");

    let topics = Topics {
        text: broadcast::channel(FANOUT_CAPACITY).0,
        encoded: broadcast::channel(FANOUT_CAPACITY).0,
    };
    tokio::spawn(publish_ticks(
        topics.clone(),
        Duration::from_millis(fanout_ms.max(1)),
        floor,
    ));

    let app = if floor {
        Router::new()
            .route("/stream", get(floor_stream))
            .route("/idle", get(floor_idle))
            .route("/fanout", get(floor_fanout))
    } else {
        Router::new()
            .route("/stream", get(stream_handler))
            .route("/idle", get(idle))
            .route("/fanout", get(fanout))
    }
    .route("/health", get(|| async { "ok\n" }))
    .with_state(topics);

    // The demo's server (`tower_sse::server::Server`) with the demo's settings, so
    // that only the SSE path differs: a 64 KiB HTTP/1 write queue lets hyper write up
    // to 64 KiB of axum's one-event frames at once (the demo's frames are 12 KiB, one
    // at a time, whatever the queue).
    let server = Server::bind((std::net::Ipv4Addr::LOCALHOST, port))
        .await?
        .http1_max_buf_size(64 * 1024)
        .shutdown_grace(Duration::ZERO);
    println!("listening on http://{}", server.local_addr()?);
    io::stdout().flush()?;

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    server.serve(app, stop).await
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> io::Result<T> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.trim().parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}={v:?}: not a number"),
            )
        }),
    }
}

/// `name=N` from the query, `default` when absent or not a number.
fn param(uri: &Uri, name: &str, default: u64) -> u64 {
    uri.query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------
// axum's Sse, as users write it
// ---------------------------------------------------------------------------------

fn with_keep_alive<S>(sse: Sse<S>, hb_ms: u64) -> axum::response::Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    if hb_ms == 0 {
        sse.into_response()
    } else {
        sse.keep_alive(KeepAlive::new().interval(Duration::from_millis(hb_ms)))
            .into_response()
    }
}

async fn stream_handler(uri: Uri) -> axum::response::Response {
    let hb_ms = param(&uri, "hb_ms", 15_000);
    if payload::owned_stream_events() {
        let events = stream::iter(0u64..).map(|seq| Ok(owned_event(seq)));
        return with_keep_alive(Sse::new(events), hb_ms);
    }
    let events = stream::iter(0u64..).map(|seq| Ok(written_event(seq)));
    with_keep_alive(Sse::new(events), hb_ms)
}

/// `/stream` event `seq`, its data written by the demo's payload function straight
/// into the event's buffer (axum's `Event::into_data_writer`), as the demo writes it
/// straight into the frame.
fn written_event(seq: u64) -> Event {
    let mut writer = Event::default().into_data_writer();
    // axum's writer takes any text.
    let _ = payload::write_stream_payload(seq, &mut writer);
    writer.into_event()
}

/// `/stream` event `seq` with `STREAM_EVENTS=owned`: the payload as a `String`, copied
/// into the event (as the demo's `STREAM_EVENTS=owned` moves it into its `Event`).
fn owned_event(seq: u64) -> Event {
    Event::default().data(payload::stream_payload(seq))
}

async fn idle(uri: Uri) -> axum::response::Response {
    let nothing = stream::pending::<Result<Event, Infallible>>();
    with_keep_alive(Sse::new(nothing), param(&uri, "hb_ms", 1_000))
}

async fn fanout(State(topics): State<Topics>) -> axum::response::Response {
    let events = BroadcastStream::new(topics.text.subscribe())
        .filter_map(|msg| msg.ok().map(|data| Ok(Event::default().data(data))));
    with_keep_alive(Sse::new(events), 15_000)
}

/// Publishes `{"seq":N,"ts_ns":T}` every `every`, forever (T taken just before, by
/// the demo's `fanout_payload`).
async fn publish_ticks(topics: Topics, every: Duration, floor: bool) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    loop {
        ticks.tick().await;
        let data = payload::fanout_payload(seq);
        // No subscriber: nobody to deliver to.
        if floor {
            let _ = topics
                .encoded
                .send(Bytes::from(format!("data: {data}\n\n")));
        } else {
            let _ = topics.text.send(data);
        }
        seq = seq.wrapping_add(1);
    }
}

// ---------------------------------------------------------------------------------
// The floor: hand-written bodies on the same server
// ---------------------------------------------------------------------------------

fn sse_response<B>(body: B) -> axum::response::Response
where
    B: http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let mut res = Response::new(Body::new(body));
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    res
}

async fn floor_stream() -> axum::response::Response {
    sse_response(FloorStream {
        seq: 0,
        buf: BytesMut::new(),
    })
}

async fn floor_idle(uri: Uri) -> axum::response::Response {
    let tick = match param(&uri, "hb_ms", 1_000) {
        0 => None,
        ms => {
            let every = Duration::from_millis(ms);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            Some(tick)
        }
    };
    sse_response(FloorIdle { tick })
}

async fn floor_fanout(State(topics): State<Topics>) -> axum::response::Response {
    sse_response(FloorFanout {
        rx: BroadcastStream::new(topics.encoded.subscribe()),
    })
}

/// Endless `/stream` events, [`FLOOR_EVENTS_PER_FRAME`] per frame.
struct FloorStream {
    seq: u64,
    buf: BytesMut,
}

impl http_body::Body for FloorStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const PAD: &[u8; STREAM_DATA_LEN] =
            b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        let this = &mut *self;
        this.buf
            .reserve(FLOOR_EVENTS_PER_FRAME * (STREAM_DATA_LEN + 8));
        for _ in 0..FLOOR_EVENTS_PER_FRAME {
            // The digits as the servers' payload function writes them (`itoa`).
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(this.seq).as_bytes();
            let pad = STREAM_DATA_LEN - r#"{"seq":,"pad":""}"#.len() - digits.len();
            this.buf.put_slice(br#"data: {"seq":"#);
            this.buf.put_slice(digits);
            this.buf.put_slice(br#","pad":""#);
            this.buf.put_slice(&PAD[..pad]);
            this.buf.put_slice(b"\"}\n\n");
            this.seq = this.seq.wrapping_add(1);
        }
        Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))))
    }
}

/// No events; the same static comment at every tick.
struct FloorIdle {
    tick: Option<Interval>,
}

impl http_body::Body for FloorIdle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(tick) = self.tick.as_mut() else {
            return Poll::Pending;
        };
        ready!(tick.poll_tick(cx));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":\n\n")))))
    }
}

/// Shared pre-encoded events from the broadcast channel, one frame each.
struct FloorFanout {
    rx: BroadcastStream<Bytes>,
}

impl http_body::Body for FloorFanout {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            match ready!(Pin::new(&mut self.rx).poll_next(cx)) {
                Some(Ok(event)) => return Poll::Ready(Some(Ok(Frame::data(event)))),
                // Lagged: skip what was lost, like the axum version.
                Some(Err(_)) => {}
                None => return Poll::Ready(None),
            }
        }
    }
}
