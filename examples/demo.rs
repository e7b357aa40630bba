//! The tower-sse demo server: the HTTP contract that browsers, third-party SSE clients
//! and load generators check the crate against, built only from its public API.
//!
//! ```text
//! cargo run --release --example demo            # PORT=3000, HOST=127.0.0.1
//! curl -N 'http://127.0.0.1:3000/events?count=3'
//! curl -N --http2-prior-knowledge http://127.0.0.1:3000/stream | head -c 720
//! curl -d 'hello' http://127.0.0.1:3000/publish  # arrives on /fanout
//! ```
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | a page showing `/events?count=1000000&interval_ms=1000` live |
//! | `GET /events?count=N&interval_ms=M` | N `tick` events (default 5), M ms apart (default 0) |
//! | `GET /multiline` | two events with multi-line data |
//! | `GET /resume` | ids 1..=10, after the request's `Last-Event-ID` |
//! | `GET /heartbeat?ms=H` | no events, a heartbeat every H ms (default 200) |
//! | `GET /retry` | `retry: 1500` and `data: ok` |
//! | `GET /slow?count=N` | N events of 1 KiB (default 1000), as fast as the client reads |
//! | `GET /health` | `200 ok`, not SSE |
//! | `GET /stream?hb_ms=H` | endless 72-byte events, as fast as the client reads; `hb_ms=0`: no heartbeat |
//! | `GET /idle?hb_ms=H` | no events, a heartbeat every H ms (default 1000; `0`: none) |
//! | `GET /fanout` | the shared topic: `{"seq":N,"ts_ns":T}` every `FANOUT_MS` ms, and `/publish`; resumes after `Last-Event-ID` |
//! | `POST /publish` | publishes the UTF-8 body (at most 1 MiB) to `/fanout`, 204 |
//! | `GET /fanout?topic=A&topic=B…` | topics A, B, … on one stream, `event: <topic>`, one resumable id |
//! | `POST /publish?topic=A` | publishes the body to topic A, 204 |
//! | `GET /metrics` | the layer's and the hub's metrics in Prometheus text, and `demo_connections_accepted_total` |
//! | `GET /fanout?…&pane=P` | the same stream, which `POST /cut?pane=P` can end (the page's "cut" button; not in the contract) |
//! | `POST /cut?pane=P` | ends the open `/fanout` streams of pane P as a network cut would, 204 (none open: 404) |
//!
//! Every other SSE endpoint sends a heartbeat after 15 s of silence (the layer's
//! default). Bad query parameters get a 400, unknown paths a 404.
//!
//! Environment: `HOST` (default `127.0.0.1`), `PORT` (default 3000, `0` picks a free
//! port; the `listening on …` line shows the actual one), `FANOUT_MS` (default 100),
//! `FANOUT_COALESCE_MS` (default 30: an event published within 30 ms of the last
//! delivery waits for the end of those 30 ms and goes out with the others; `0`: every
//! event at once), `REQUEST_TIMEOUT_MS` (default 10000: a connection has this long to
//! send a request head, a request its whole body, else `408`), `MAX_CONNECTIONS`
//! (default: the open-files limit minus 128; past it an SSE request gets a `retry:` and
//! the end, any other a `503`). The server is [`Server`] (the crate's `server` feature).
//! With `TLS_CERT` and `TLS_KEY` (PEM file paths) it serves HTTPS instead, HTTP/2 and
//! HTTP/1.1 by ALPN (the crate's `tls` feature), and prints `listening on https://…`.
//! SIGINT or SIGTERM ends every open stream (with a `retry: 1000` hint) and exits.
//!
//! # Structure
//!
//! One [`SseLayer`] wraps one `service_fn`, [`route`]. Every SSE answer streams an
//! [`Events`], and an endpoint whose heartbeat differs from the layer's sets its own
//! with [`SseResponse::heartbeat`] or [`SseResponse::no_heartbeat`]. Their events are
//! encoded by the layer as they are sent ([`Message::Event`]), except `/fanout`'s and
//! `/stream`'s: `/stream` yields frame-direct [`DataEvent`]s (`DataEvent::custom`, a
//! payload type that writes itself), whose data the layer writes straight into the
//! outgoing frame (`STREAM_EVENTS=owned`: an
//! `Event::new().data(String)` per event instead, for comparison), so an [`Events`]
//! item is an [`Either`] of the two kinds.
//!
//! `/fanout` is a topic of a [`Hub`] (the crate's `hub` feature, which the examples
//! get through the crate's dev-dependency on itself): the ticker task and `POST
//! /publish` call [`Hub::publish`], which encodes each event once, gives it the next
//! id of the topic (`0`, `1`, `2`, …) and keeps it in a bounded history; each `GET
//! /fanout` is a [`Subscription`], a cursor into that history that yields the shared
//! bytes ([`Message::Encoded`]). A browser that reconnects sends the last id it saw
//! and gets the events it missed, then the live ones, with no duplicate and no gap.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    io::{self, Write as _},
    ops::RangeInclusive,
    pin::Pin,
    sync::{Mutex, OnceLock, PoisonError},
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::oneshot,
    time::{Interval, MissedTickBehavior},
};
use tokio_stream::Stream;
use tower::Layer as _;
use tower_sse::{
    event::{CustomData, Either},
    hub::{History, Hub, Lag, MultiSubscription, Resume, Subscription},
    server::{tls_config_from_pem, RequestBody, Server},
    BoxError, BufferLimits, DataEvent, Event, Heartbeat, LastEventId, Message, Overflow, SseLayer,
    SseResponse,
};
use tower_sse::{limit, PerKeyLimit, StreamLimit};

// The `/stream` and `/fanout` payloads, built as in the axum reference.
#[path = "shared/payload.rs"]
mod payload;
// jemalloc, in both servers.
#[path = "shared/alloc.rs"]
mod alloc;

const DEFAULT_PORT: u16 = 3000;
/// The layer's frame cap, its default. On HTTP/1 the server's write gate keeps one
/// frame at a time in hyper, and on Linux the server caps each frame at what the
/// socket takes at once (12 KiB until the client is warm and after a quiet spell), so
/// a stalled reader holds one small frame (RELIABILITY.md, "Memory per connection")
/// while a reader that keeps up gets 64 KiB frames (BENCHMARKS.md, "Frames sized to
/// the socket").
const DEFAULT_FRAME_BYTES: u64 = 64 * 1024;
/// hyper's HTTP/1 write queue limit, the axum reference's too (a fair comparison runs
/// both on the same settings): with the write gate hyper holds one SSE frame at a time
/// whatever this is; it bounds what other responses queue.
const DEFAULT_HTTP1_MAX_BUF: u64 = 64 * 1024;
/// `REQUEST_TIMEOUT_MS`'s default: a connection has this long to send a request head,
/// a request its whole body.
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// The longest interval a query or `FANOUT_MS` may ask for: one day.
const MAX_MS: u64 = 86_400_000;

const DEFAULT_EVENTS: u64 = 5;
const DEFAULT_SLOW_EVENTS: u64 = 1_000;
const SLOW_EVENT_BYTES: usize = 1024;

const DEFAULT_FANOUT_MS: u64 = 100;
/// `/fanout` subscribers are woken at most once per this window ([`Hub::coalesce`]):
/// at `FANOUT_MS=100` every event still goes out at once; at `FANOUT_MS=1` each
/// subscriber gets about 30 events per write instead of one (see `BENCHMARKS.md`).
const DEFAULT_FANOUT_COALESCE_MS: u64 = 30;
/// The hub topic behind `/fanout` and `/publish`.
const FANOUT_TOPIC: &str = "fanout";
/// The `/fanout` history: the newest events kept for replay, at most this many and at
/// most this many bytes (more than the largest `/publish` event, 1 MiB and its
/// field names). A subscriber further behind has lost events.
const FANOUT_HISTORY: History = History::new(1024, 8 << 20);
/// The largest `/publish` body.
const MAX_PUBLISH_BYTES: usize = 1 << 20;
/// How much of a too-large `/publish` body is read and discarded before answering 413,
/// so that the client gets the answer instead of a reset connection.
const MAX_DISCARD_BYTES: usize = 4 << 20;

/// How long open connections get to finish after SIGINT/SIGTERM (the process must exit
/// within 5 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

const PAGE: &str = include_str!("demo_page.html");

/// The counter of accepted connections in `/metrics`.
const CONNECTIONS_METRIC: &str = "demo_connections_accepted_total";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = u16::try_from(env_number("PORT", DEFAULT_PORT.into(), u16::MAX.into())?)?;
    let fanout_ms = env_number("FANOUT_MS", DEFAULT_FANOUT_MS, MAX_MS)?.max(1);

    // A subscriber that falls behind the whole history gets a `: lagged N` comment
    // where the lost events were and goes on with the oldest one still kept.
    let lag = Lag::event(|lost| Event::new().comment(format!("lagged {lost}")));
    // With REDIS_URL, instances share `/fanout` (and its history) through Redis
    // Streams; without it the hub lives in this process.
    let hub = match std::env::var("REDIS_URL") {
        Ok(url) => {
            // Several comma-separated URLs: the nodes of a Redis Cluster.
            let redis = if url.contains(',') {
                tower_sse::hub::RedisBackplane::cluster(url.split(',')).await?
            } else {
                tower_sse::hub::RedisBackplane::connect(url.as_str()).await?
            };
            let redis = redis.max_len(1024);
            Hub::with_backplane(redis, FANOUT_HISTORY, lag)
        }
        Err(_) => Hub::with(FANOUT_HISTORY, lag),
    };
    let coalesce_ms = env_number("FANOUT_COALESCE_MS", DEFAULT_FANOUT_COALESCE_MS, 1000)?;
    let hub = hub.coalesce(Duration::from_millis(coalesce_ms));
    // The first tick goes out now, before the server accepts anybody: no client can see
    // a later event before it. The ticker task publishes the others.
    publish_tick(&hub, 0).await;
    tokio::spawn(publish_ticks(hub.clone(), Duration::from_millis(fanout_ms)));

    // The buffer is a setting of the layer, so it is the same for every endpoint; it is
    // chosen for `/slow`. With `Overflow::Wait` the layer polls a source only when the
    // socket takes bytes, so a slow reader holds the frames hyper queued (see below) and
    // its source simply waits. The heartbeat is the default, 15 s.
    // `MAX_FRAME_BYTES` and `HTTP1_MAX_BUF` (not in the contract) are for
    // benches/memory.sh and benches/run.sh, which measure the trade-off.
    let frame = env_number("MAX_FRAME_BYTES", DEFAULT_FRAME_BYTES, 1 << 24)?;
    let sse = SseLayer::new()
        .buffer(BufferLimits::new(64, 64 * 1024))
        .on_overflow(Overflow::Wait)
        .max_frame_bytes(frame.max(1) as usize);
    let sse = stream_caps(sse)?;
    let shutdown = sse.shutdown_handle();
    install_metrics(&sse, &hub)?;
    let app = sse.layer(tower::service_fn(move |req| route(hub.clone(), req)));

    // HTTP/1.1 and h2c on one port, with the request timeout, the connection cap (by
    // default the fd limit minus 128; past it an answer at once), TCP keepalive, user
    // timeout and a bounded send buffer: `tower_sse::server`'s defaults, and its write
    // gate: hyper holds one SSE frame of a connection at a time.
    let request_timeout = env_number("REQUEST_TIMEOUT_MS", DEFAULT_REQUEST_TIMEOUT_MS, MAX_MS)?;
    let mut server = Server::bind((host.as_str(), port))
        .await?
        .request_timeout(Duration::from_millis(request_timeout.max(1)))
        .http1_max_buf_size(
            env_number("HTTP1_MAX_BUF", DEFAULT_HTTP1_MAX_BUF, 1 << 24)?.max(8192) as usize,
        )
        // At SIGINT/SIGTERM every open SSE stream (and any that opens from now on) ends,
        // telling browsers to come back in a second.
        .streams(shutdown, Event::new().retry(Duration::from_millis(1000)))
        .shutdown_grace(SHUTDOWN_GRACE);
    if std::env::var_os("MAX_CONNECTIONS").is_some() {
        let max = env_number("MAX_CONNECTIONS", 0, u32::MAX.into())?;
        server = server.max_connections(usize::try_from(max)?);
    }
    let (server, https) = with_tls(server)?;
    // Every accepted connection, counted (`/metrics`): ten `EventSource`s over HTTPS
    // share one HTTP/2 connection, over HTTP/1.1 they need ten.
    let server = server.on_accept(|_| metrics::counter!(CONNECTIONS_METRIC).increment(1));
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let addr = server.local_addr()?;
    if https {
        println!("listening on https://{addr}");
    } else {
        println!("listening on http://{addr}");
    }
    io::stdout().flush()?;
    let stop = async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
    };
    server.serve(app, stop).await?;
    Ok(())
}

/// With `TLS_CERT` and `TLS_KEY` (PEM file paths; both or neither), HTTPS: HTTP/2 and
/// HTTP/1.1 offered by ALPN. Returns the server and whether it serves HTTPS.
fn with_tls(server: Server) -> Result<(Server, bool), BoxError> {
    match (std::env::var_os("TLS_CERT"), std::env::var_os("TLS_KEY")) {
        (Some(cert), Some(key)) => Ok((server.tls(tls_config_from_pem(cert, key)?), true)),
        (None, None) => Ok((server, false)),
        _ => Err("TLS_CERT and TLS_KEY go together: set both (PEM file paths) or neither".into()),
    }
}

/// `MAX_STREAMS` and `MAX_STREAMS_PER_CLIENT` (per IP address), when set: past
/// either, the shed answer (200, a jittered `retry:` of 2 to 10 s, end), which an
/// `EventSource` honours by coming back.
fn stream_caps(sse: SseLayer) -> Result<SseLayer, BoxError> {
    let cap = |name| match std::env::var_os(name) {
        None => Ok(None),
        Some(_) => env_number(name, 0, u32::MAX.into()).map(|n| Some(n as usize)),
    };
    let sse = match cap("MAX_STREAMS")? {
        Some(max) => sse.max_streams(StreamLimit::shed(max)),
        None => sse,
    };
    Ok(match cap("MAX_STREAMS_PER_CLIENT")? {
        Some(max) => sse.max_streams_per_key(PerKeyLimit::shed(max, limit::client_ip)),
        None => sse,
    })
}

/// A number from the environment, `default` when unset.
fn env_number(name: &str, default: u64, max: u64) -> Result<u64, BoxError> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("{name}={value:?}: expected a number up to {max}").into()),
        },
        Err(err) => Err(format!("{name}: {err}").into()),
    }
}

// ---------------------------------------------------------------------------------
// GET /metrics
// ---------------------------------------------------------------------------------

/// What `GET /metrics` renders: the layer's and the hub's metrics (the crate's
/// `metrics` feature), read at scrape time, in Prometheus text.
struct DemoMetrics {
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
    sse: tower_sse::metrics::SseMetrics,
    hub: tower_sse::metrics::HubMetrics,
}

static METRICS: OnceLock<DemoMetrics> = OnceLock::new();

/// Installs the Prometheus recorder, then binds the layer's and the hub's metrics to it.
fn install_metrics(sse: &SseLayer, hub: &Hub) -> Result<(), BoxError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let lifetime = Matcher::Full("sse_stream_lifetime_seconds".to_owned());
    let buckets = [0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0];
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(lifetime, &buckets)?
        .install_recorder()?;
    // Without a scrape, the recorder would keep every stream's lifetime sample.
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let metrics = DemoMetrics {
        prometheus,
        sse: tower_sse::metrics::SseMetrics::new(sse.stats()),
        // At most 20 `topic` labels; every other topic is summed under `topic="other"`.
        hub: tower_sse::metrics::HubMetrics::new(hub.clone()).max_topics(20),
    };
    let _ = METRICS.set(metrics);
    Ok(())
}

fn render_metrics() -> Answer {
    let Some(metrics) = METRICS.get() else {
        return not_found();
    };
    metrics.sse.record();
    metrics.hub.record();
    alloc::record();
    let body = metrics.prometheus.render();
    text(StatusCode::OK, "text/plain; version=0.0.4", body)
}

// ---------------------------------------------------------------------------------
// The router
// ---------------------------------------------------------------------------------

type Answer = SseResponse<Events>;

/// Every endpoint, by method and path.
async fn route(hub: Hub, req: Request<RequestBody>) -> Result<Answer, Infallible> {
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/fanout") => fanout(&hub, &req).await,
        (&Method::GET, "/metrics") => render_metrics(),
        (&Method::GET, _) => get(&req).unwrap_or_else(BadParam::answer),
        (&Method::POST, "/publish") => publish(&hub, req).await,
        (&Method::POST, "/cut") => cut(req.uri().query()),
        _ => not_found(),
    })
}

/// The `GET` endpoints but `/fanout`.
fn get(req: &Request<RequestBody>) -> Result<Answer, BadParam> {
    let query = req.uri().query();
    let answer = match req.uri().path() {
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/health" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/events" => {
            let count = param(query, "count", u64::MAX)?.unwrap_or(DEFAULT_EVENTS);
            let pace = match param(query, "interval_ms", MAX_MS)?.unwrap_or(0) {
                0 => None,
                ms => {
                    let mut pace = tokio::time::interval(Duration::from_millis(ms));
                    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    Some(pace)
                }
            };
            SseResponse::new(Events::counted(1..=count, tick_event, pace))
        }
        "/multiline" => SseResponse::new(Events::list(vec![
            Event::new().data("line one\nline two\nline three"),
            Event::new().data("a\r\nb\rc"),
        ])),
        "/resume" => {
            // From the start when the client has no `Last-Event-ID` or not a number.
            let after = req
                .extensions()
                .get::<LastEventId>()
                .and_then(|id| id.as_str().trim().parse::<u64>().ok())
                .unwrap_or(0);
            let ids = after.saturating_add(1)..=10;
            let resumed = |i| numbered(i).data(i.to_string());
            SseResponse::new(Events::counted(ids, resumed, None))
        }
        "/heartbeat" => heartbeat(SseResponse::new(Events::Silent), query, "ms", 200, false)?,
        "/retry" => SseResponse::new(Events::list(vec![Event::new()
            .retry(Duration::from_millis(1500))
            .data("ok")])),
        "/slow" => {
            let count = param(query, "count", u64::MAX)?.unwrap_or(DEFAULT_SLOW_EVENTS);
            let slow = |i| numbered(i).data(slow_data());
            SseResponse::new(Events::counted(1..=count, slow, None))
        }
        "/stream" => {
            let res = SseResponse::new(if payload::owned_stream_events() {
                Events::SeqOwned(0)
            } else {
                Events::Seq(0)
            });
            heartbeat(res, query, "hb_ms", 15_000, true)?
        }
        "/idle" => {
            let res = SseResponse::new(Events::Silent);
            heartbeat(res, query, "hb_ms", 1_000, true)?
        }
        _ => not_found(),
    };
    Ok(answer)
}

/// `GET /fanout`: a subscription to the topic. With the `Last-Event-ID` of a browser
/// that reconnects (the layer puts it in the request's extensions), it starts with the
/// events published since that one, from the history.
async fn fanout(hub: &Hub, req: &Request<RequestBody>) -> Answer {
    let last_event_id = req.extensions().get::<LastEventId>().cloned();
    let cut = match pane_cut(req.uri().query()) {
        Ok(cut) => cut,
        Err(msg) => return bad_request(msg),
    };
    match topics(req.uri().query()) {
        Ok(None) => {}
        Ok(Some(topics)) => {
            return fanout_topics(hub, &topics, last_event_id.as_ref(), cut).await;
        }
        Err(msg) => return bad_request(msg),
    }
    let subscription = hub.subscribe(FANOUT_TOPIC, last_event_id.as_ref()).await;
    let first = match subscription.resume() {
        Resume::Live | Resume::Replay { .. } => None,
        // The id is older than the history (or from before a restart): events were
        // lost. An application would send its whole state here; the demo says so.
        Resume::Unknown => Some(Event::new().comment("unknown Last-Event-ID: events missed")),
    };
    SseResponse::new(Events::cuttable(
        Events::Fanout {
            first,
            subscription,
        },
        cut,
    ))
}

/// `GET /fanout?topic=A&topic=B…`: one stream of several topics, each event named
/// after its topic; the ids resume every topic at once.
async fn fanout_topics(
    hub: &Hub,
    topics: &[String],
    last: Option<&LastEventId>,
    cut: Option<oneshot::Receiver<()>>,
) -> Answer {
    let subscription = match hub.subscribe_many(topics, last).await {
        Ok(subscription) => subscription,
        Err(err) => return bad_request(format!("{err}\n")),
    };
    let unknown: Vec<&str> = subscription
        .resumes()
        .filter(|(_, resume)| *resume == Resume::Unknown)
        .map(|(topic, _)| topic)
        .collect();
    let first = (!unknown.is_empty()).then(|| {
        Event::new().comment(format!(
            "unknown Last-Event-ID: events missed in {}",
            unknown.join(" ")
        ))
    });
    SseResponse::new(Events::cuttable(
        Events::Topics {
            first,
            subscription,
        },
        cut,
    ))
}

/// The most topics on one `/fanout` stream, and the longest topic name.
const MAX_TOPICS: usize = 64;
const MAX_TOPIC_LEN: usize = 128;

/// The `topic=…` values of `query` (percent-decoded), `None` without any: 1 to 64
/// names of 1 to 128 characters from `[A-Za-z0-9_.:-]`, else the 400 message.
fn topics(query: Option<&str>) -> Result<Option<Vec<String>>, String> {
    let mut topics = Vec::new();
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "topic" {
            continue;
        }
        let name = percent_decoded(value).filter(|name| {
            (1..=MAX_TOPIC_LEN).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        });
        let Some(name) = name else {
            return Err(format!(
                "query parameter `topic`: expected 1 to {MAX_TOPIC_LEN} characters \
                 from [A-Za-z0-9_.:-]\n"
            ));
        };
        topics.push(name);
    }
    match topics.len() {
        0 => Ok(None),
        1..=MAX_TOPICS => Ok(Some(topics)),
        n => Err(format!("{n} topics: at most {MAX_TOPICS}\n")),
    }
}

/// `text` with its `%XX` escapes decoded; `None` if one is malformed or the result is
/// not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next()?, bytes.next()?];
        out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
    }
    String::from_utf8(out).ok()
}

/// `res` with a heartbeat every `name=…` ms from the query (`default_ms` when absent).
/// With `zero_is_off`, `0` turns heartbeats off; otherwise it is rejected.
fn heartbeat(
    res: Answer,
    query: Option<&str>,
    name: &'static str,
    default_ms: u64,
    zero_is_off: bool,
) -> Result<Answer, BadParam> {
    match param(query, name, MAX_MS)?.unwrap_or(default_ms) {
        0 if zero_is_off => Ok(res.no_heartbeat()),
        0 => Err(BadParam { name, max: MAX_MS }),
        ms => {
            let heartbeat = Heartbeat::new(Duration::from_millis(ms));
            Ok(res.heartbeat(if per_stream_timer() {
                heartbeat.per_stream_timer()
            } else {
                heartbeat
            }))
        }
    }
}

/// `HEARTBEAT=timer` in the environment: a heartbeat timer per stream
/// (`Heartbeat::per_stream_timer`) instead of the default shared ticker, for the
/// benchmarks that compare the two designs.
fn per_stream_timer() -> bool {
    static TIMER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TIMER.get_or_init(|| std::env::var("HEARTBEAT").is_ok_and(|v| v == "timer"))
}

/// `POST /publish`: the body, if UTF-8 and at most 1 MiB, becomes one event's data on
/// the `/fanout` topic.
async fn publish(hub: &Hub, req: Request<RequestBody>) -> Answer {
    // `?topic=A`: that topic (exactly one, named as `/fanout` takes them).
    let topic = match topics(req.uri().query()) {
        Ok(None) => FANOUT_TOPIC.to_owned(),
        Ok(Some(mut topics)) if topics.len() == 1 => topics.remove(0),
        Ok(Some(_)) => return bad_request("one `topic` at most\n"),
        Err(msg) => return bad_request(msg),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|len| len.to_str().ok())
        .and_then(|len| len.parse::<u64>().ok());
    if declared.is_some_and(|len| len > (MAX_PUBLISH_BYTES + MAX_DISCARD_BYTES) as u64) {
        // Not worth reading: answer now (hyper then closes the connection).
        return too_large();
    }
    let mut body = req.into_body();
    let bytes = match Limited::new(&mut body, MAX_PUBLISH_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => {
            discard(&mut body).await;
            return too_large();
        }
        Err(_) => return bad_request("could not read the request body\n"),
    };
    let Ok(data) = String::from_utf8(Vec::from(bytes)) else {
        return bad_request("the request body is not UTF-8\n");
    };
    // Encoded once by the hub; every subscriber gets the same bytes. (An in-process hub
    // never fails; a hub with a backplane can.)
    if let Err(err) = hub.publish(&topic, Event::new().data(data)).await {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("{err}\n"),
        );
    }
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    SseResponse::other(res)
}

/// Reads and drops what remains of a too-large body (bounded in bytes and time).
async fn discard(body: &mut RequestBody) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut left = MAX_DISCARD_BYTES;
        while let Some(Ok(frame)) = body.frame().await {
            let len = frame.data_ref().map_or(0, Bytes::len);
            if len >= left {
                break;
            }
            left -= len;
        }
    })
    .await;
}

fn too_large() -> Answer {
    let msg = "the request body is larger than 1 MiB\n";
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "text/plain; charset=utf-8",
        msg,
    )
}

fn bad_request(msg: impl Into<Bytes>) -> Answer {
    text(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", msg)
}

fn not_found() -> Answer {
    text(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "not found\n",
    )
}

/// A response that is not SSE: the layer passes it through.
fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    SseResponse::other(res)
}

/// A query parameter that is present but not an acceptable number.
struct BadParam {
    name: &'static str,
    max: u64,
}

impl BadParam {
    fn answer(self) -> Answer {
        let Self { name, max } = self;
        bad_request(format!(
            "query parameter `{name}`: expected a whole number from 0 to {max}\n"
        ))
    }
}

/// The number `name=…` in `query`: `None` when absent (the first occurrence counts).
fn param(query: Option<&str>, name: &'static str, max: u64) -> Result<Option<u64>, BadParam> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            return match value.parse::<u64>() {
                Ok(n) if n <= max => Ok(Some(n)),
                _ => Err(BadParam { name, max }),
            };
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------
// The page's "cut the connection" button: GET /fanout?…&pane=P, POST /cut?pane=P
// ---------------------------------------------------------------------------------

/// The open `/fanout` streams that asked to be cuttable (`pane=P`), by pane. Not part of
/// the contract: `POST /cut?pane=P` ends them the way a network cut does (the response
/// just stops), so that the page shows its `EventSource` coming back by itself with
/// `Last-Event-ID` and getting the events it missed from the topic's history.
static PANES: Mutex<BTreeMap<String, Vec<oneshot::Sender<()>>>> = Mutex::new(BTreeMap::new());

/// The `pane=…` value of `query` (percent-decoded, named as topics are), `None` without
/// one; else the 400 message.
fn pane(query: Option<&str>) -> Result<Option<String>, String> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("pane="))
    else {
        return Ok(None);
    };
    percent_decoded(value)
        .filter(|name| {
            (1..=MAX_TOPIC_LEN).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        })
        .map(Some)
        .ok_or_else(|| {
            format!(
                "query parameter `pane`: expected 1 to {MAX_TOPIC_LEN} characters \
                 from [A-Za-z0-9_.:-]\n"
            )
        })
}

/// With `pane=P` in `query`, registers a stream of pane P and returns what ends it.
fn pane_cut(query: Option<&str>) -> Result<Option<oneshot::Receiver<()>>, String> {
    let Some(pane) = pane(query)? else {
        return Ok(None);
    };
    let (cut, cut_rx) = oneshot::channel();
    let mut panes = PANES.lock().unwrap_or_else(PoisonError::into_inner);
    // Forget the streams that ended by themselves: the map holds open streams only.
    panes.retain(|_, cuts| {
        cuts.retain(|cut| !cut.is_closed());
        !cuts.is_empty()
    });
    panes.entry(pane).or_default().push(cut);
    Ok(Some(cut_rx))
}

/// `POST /cut?pane=P`: ends the open streams of pane P (204), 404 when none is open.
fn cut(query: Option<&str>) -> Answer {
    let pane = match pane(query) {
        Ok(Some(pane)) => pane,
        Ok(None) => return bad_request("query parameter `pane` missing\n"),
        Err(msg) => return bad_request(msg),
    };
    let cuts = PANES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&pane)
        .unwrap_or_default();
    let ended = cuts.into_iter().filter_map(|cut| cut.send(()).ok()).count();
    if ended == 0 {
        let msg = "no open stream of this pane\n";
        return text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", msg);
    }
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    SseResponse::other(res)
}

// ---------------------------------------------------------------------------------
// Event sources
// ---------------------------------------------------------------------------------

/// The event source of every SSE endpoint. A plain enum rather than a boxed stream:
/// the layer polls it without a virtual call. Every variant but `Fanout` makes its
/// events only when polled, and a `Fanout` subscription is only a cursor into the
/// topic's history, so with `Overflow::Wait` nothing piles up for a slow reader.
enum Events {
    /// A fixed list of events, then the end.
    List(std::vec::IntoIter<Event>),
    /// `make(id)` for each id in turn, paced by `pace` if set, then the end.
    Counted {
        ids: RangeInclusive<u64>,
        make: fn(u64) -> Event,
        pace: Option<Interval>,
    },
    /// `/stream`: endless 72-byte events, numbered from this one, always ready, their
    /// data written into the frame.
    Seq(u64),
    /// `/stream` with `STREAM_EVENTS=owned`: the same events, each an `Event` that owns
    /// its data as a `String`.
    SeqOwned(u64),
    /// No events ever; the layer sends heartbeats and ends the stream at shutdown.
    Silent,
    /// A `/fanout` subscription, after `first` if set. The topic keeps the newest
    /// events ([`FANOUT_HISTORY`]); a subscriber further behind loses the oldest, gets
    /// a `: lagged N` comment where they were, and carries on with the oldest event
    /// still there.
    Fanout {
        first: Option<Event>,
        subscription: Subscription,
    },
    /// A `/fanout?topic=…` subscription to several topics, after `first` if set.
    Topics {
        first: Option<Event>,
        subscription: MultiSubscription,
    },
    /// A `/fanout?…&pane=P` stream: `events` until `POST /cut?pane=P` (then `None`),
    /// then the end.
    Cuttable {
        events: Box<Events>,
        cut: Option<oneshot::Receiver<()>>,
    },
}

impl Events {
    fn list(events: Vec<Event>) -> Self {
        Self::List(events.into_iter())
    }

    fn counted(ids: RangeInclusive<u64>, make: fn(u64) -> Event, pace: Option<Interval>) -> Self {
        Self::Counted { ids, make, pace }
    }

    /// `events`, ended when `cut` fires, if set.
    fn cuttable(events: Events, cut: Option<oneshot::Receiver<()>>) -> Self {
        match cut {
            Some(cut) => Self::Cuttable {
                events: Box::new(events),
                cut: Some(cut),
            },
            None => events,
        }
    }
}

impl Stream for Events {
    type Item = Result<Item, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let message = match self.get_mut() {
            Events::Seq(seq) => {
                let event = DataEvent::custom(payload::StreamPayload(*seq));
                *seq = seq.wrapping_add(1);
                return Poll::Ready(Some(Ok(Either::Right(event))));
            }
            Events::List(events) => events.next().map(Message::Event),
            Events::Counted { ids, make, pace } => {
                if let (false, Some(pace)) = (ids.is_empty(), pace) {
                    ready!(pace.poll_tick(cx));
                }
                ids.next().map(|id| Message::Event(make(id)))
            }
            Events::SeqOwned(seq) => {
                let event = seq_event(*seq);
                *seq = seq.wrapping_add(1);
                Some(Message::Event(event))
            }
            Events::Silent => return Poll::Pending,
            Events::Fanout {
                first,
                subscription,
            } => match first.take() {
                Some(event) => Some(Message::Event(event)),
                // The hub's items: the shared bytes ([`Message::Encoded`], not encoded
                // again) and the lag comment.
                None => return left(Pin::new(subscription).poll_next(cx)),
            },
            Events::Topics {
                first,
                subscription,
            } => match first.take() {
                Some(event) => Some(Message::Event(event)),
                None => return left(Pin::new(subscription).poll_next(cx)),
            },
            Events::Cuttable { events, cut } => {
                let now = match cut {
                    Some(cut) => Future::poll(Pin::new(cut), cx).is_ready(),
                    None => true,
                };
                if now {
                    *cut = None;
                    return Poll::Ready(None);
                }
                return Pin::new(&mut **events).poll_next(cx);
            }
        };
        Poll::Ready(message.map(|message| Ok(Either::Left(message))))
    }
}

/// What [`Events`] yields: a [`Message`], or a `/stream` event written into the frame
/// by the payload function the axum reference writes its events with.
type Item = Either<Message, DataEvent<CustomData<payload::StreamPayload>>>;

/// A hub subscription's poll, as an [`Events`] poll.
fn left(
    polled: Poll<Option<Result<Message, Infallible>>>,
) -> Poll<Option<Result<Item, Infallible>>> {
    polled.map(|next| next.map(|message| message.map(Either::Left)))
}

/// An event with id `n`. A decimal number has no line break or NUL, so `id` cannot fail.
fn numbered(n: u64) -> Event {
    Event::new().id(n.to_string()).unwrap_or_default()
}

/// `/events` event `i`: `id: i`, `event: tick`, `data: {"n":i}`.
fn tick_event(i: u64) -> Event {
    // A constant name without a line break: `event` cannot fail.
    numbered(i)
        .event("tick")
        .unwrap_or_default()
        .data(format!("{{\"n\":{i}}}"))
}

/// `/slow` data: 1 KiB, made once.
fn slow_data() -> &'static str {
    static DATA: OnceLock<String> = OnceLock::new();
    DATA.get_or_init(|| "x".repeat(SLOW_EVENT_BYTES))
}

/// `/stream` event `seq`: `{"seq":N,"pad":"xx…x"}`, exactly 64 bytes, built by the
/// payload function the axum reference uses too; the layer encodes it into the
/// outgoing frame.
fn seq_event(seq: u64) -> Event {
    Event::new().data(payload::stream_payload(seq))
}

/// Publishes ticks `1`, `2`, … to the topic, one every `every` (tick 0 is published
/// at start-up), forever.
async fn publish_ticks(hub: Hub, every: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq: u64 = 1;
    loop {
        ticks.tick().await;
        publish_tick(&hub, seq).await;
        seq = seq.wrapping_add(1);
    }
}

/// Publishes tick `seq`: `{"seq":N,"ts_ns":T}`, T taken just before.
async fn publish_tick(hub: &Hub, seq: u64) {
    let event = Event::new().data(payload::fanout_payload(seq));
    // Kept in the history even with no subscriber, for clients that reconnect.
    if let Err(err) = hub.publish(FANOUT_TOPIC, event).await {
        eprintln!("publishing tick {seq} failed: {err}");
    }
}
