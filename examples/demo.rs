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
//! | `GET /stream?hb_ms=H` | endless 72-byte events, as fast as the client reads |
//! | `GET /idle?hb_ms=H` | no events, a heartbeat every H ms (default 1000) |
//! | `GET /fanout` | the shared topic: `{"seq":N,"ts_ns":T}` every `FANOUT_MS` ms, and `/publish` |
//! | `POST /publish` | publishes the UTF-8 body (at most 1 MiB) to `/fanout`, 204 |
//!
//! Environment: `HOST` (default `127.0.0.1`), `PORT` (default 3000, `0` picks a free
//! port; the `listening on …` line shows the actual one), `FANOUT_MS` (default 100).
//! SIGINT or SIGTERM ends every open stream (with a `retry: 1000` hint) and exits.
//!
//! # Structure
//!
//! One tower service, [`route`], answers every request except `/fanout` (whose events
//! are encoded once and shared, so its stream has another item type). The heartbeat
//! interval is a setting of the layer, and endpoints differ in it, so `route` is wrapped
//! in one [`SseLayer`] per interval; the wrapped services are made once and cached
//! ([`Services`]). Every layer is a clone of one base layer, so they all share its
//! statistics and its one [`ShutdownHandle`].

use std::{
    collections::HashMap,
    convert::Infallible,
    error::Error as StdError,
    io::{self, Write as _},
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    task::{ready, Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::{
    net::{TcpListener, TcpSocket},
    signal::unix::{signal, SignalKind},
    sync::broadcast,
    time::{Interval, MissedTickBehavior},
};
use tokio_stream::{
    wrappers::{errors::BroadcastStreamRecvError, BroadcastStream},
    Stream,
};
use tower::{Layer as _, ServiceExt as _};
use tower_sse::{
    BufferLimits, EncodedEvent, Event, LastEventId, Overflow, ShutdownHandle, SseLayer,
    SseResponse, SseService,
};

const DEFAULT_PORT: u16 = 3000;
/// Pending connections the kernel queues for `accept` (load generators open thousands).
const BACKLOG: u32 = 4096;

/// Heartbeat intervals, in milliseconds.
const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
const HEARTBEAT_ENDPOINT_MS: u64 = 200;
const STREAM_HEARTBEAT_MS: u64 = 15_000;
const IDLE_HEARTBEAT_MS: u64 = 1_000;
/// The longest interval a query may ask for: one day.
const MAX_MS: u64 = 86_400_000;
/// Distinct heartbeat intervals whose services are cached; others are built per request.
const MAX_CACHED_INTERVALS: usize = 64;

const DEFAULT_EVENTS: u64 = 5;
const DEFAULT_SLOW_EVENTS: u64 = 1_000;
const SLOW_EVENT_BYTES: usize = 1024;
/// The `/slow` connection's buffer. With `Overflow::Wait` the layer polls the source only
/// when the socket takes bytes, so a slow reader holds at most one frame (these caps)
/// in server memory and the source simply waits.
const SLOW_BUFFER: BufferLimits = BufferLimits::new(64, 64 * 1024);

/// `/stream` data is exactly this long: `data: ` + 64 + `\n\n` = 72 bytes on the wire.
const STREAM_DATA_LEN: usize = 64;
/// The most padding a `/stream` payload needs (a one-digit `seq`).
const STREAM_PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const _: () = assert!(STREAM_PAD.len() == STREAM_DATA_LEN - r#"{"seq":0,"pad":""}"#.len());

const DEFAULT_FANOUT_MS: u64 = 100;
/// Events a `/fanout` subscriber may fall behind before it loses the oldest.
const FANOUT_CAPACITY: usize = 1024;
/// The largest `/publish` body.
const MAX_PUBLISH_BYTES: usize = 1 << 20;
/// How much of a too-large `/publish` body is read and discarded before answering 413,
/// so that the client gets the answer instead of a reset connection.
const MAX_DISCARD_BYTES: usize = 4 << 20;

/// How long open connections get to finish after SIGINT/SIGTERM (the process must exit
/// within 5 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

const PAGE: &str = include_str!("demo_page.html");

type BoxError = Box<dyn StdError + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let port = env_number("PORT", DEFAULT_PORT.into(), u16::MAX.into())?;
    let port = u16::try_from(port)?;
    let fanout_ms = env_number("FANOUT_MS", DEFAULT_FANOUT_MS, MAX_MS)?.max(1);

    // Every layer below is a clone of this one (with its own heartbeat or buffer), so
    // they all share its stats and this one shutdown handle.
    let base = SseLayer::new();
    let shutdown: ShutdownHandle = base.shutdown_handle();

    let (topic, _) = broadcast::channel(FANOUT_CAPACITY);
    tokio::spawn(publish_ticks(
        topic.clone(),
        Duration::from_millis(fanout_ms),
    ));

    let app = Arc::new(App {
        topic: topic.clone(),
    });
    let router = tower::service_fn(move |req| route(app.clone(), req));
    let fanout = base.layer(tower::service_fn(move |_req: Request<Incoming>| {
        let events = Fanout(BroadcastStream::new(topic.subscribe()));
        async move { Ok::<_, Infallible>(SseResponse::new(events)) }
    }));
    let services = Arc::new(Services::new(base, router, fanout));

    // The whole server: pick the layered service for the request, call it.
    let front = move |req: Request<Incoming>| {
        let target = services.target(&req);
        async move {
            match target {
                Target::Events(svc) => svc.oneshot(req).await.map(|res| res.map(Either::Left)),
                Target::Fanout(svc) => svc.oneshot(req).await.map(|res| res.map(Either::Right)),
            }
        }
    };

    let listener = bind(&host, port).await?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    println!("listening on http://{}", listener.local_addr()?);
    io::stdout().flush()?;

    // HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port. No limit on
    // connections; the timer enables hyper's 30 s limit on reading request headers.
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1().timer(TokioTimer::new());
    http.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    // Events are small writes that should leave at once.
                    let _ = tcp.set_nodelay(true);
                    let svc = hyper::service::service_fn(front.clone());
                    let conn = http.serve_connection(TokioIo::new(tcp), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        // A client that goes away is not an error worth reporting.
                        let _ = conn.await;
                    });
                }
                Err(err) => {
                    // Out of file descriptors, typically: back off instead of spinning.
                    eprintln!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    drop(listener);
    // End every open SSE stream (and any that opens from now on), telling browsers to
    // come back in a second; then let hyper finish the connections.
    shutdown.shutdown_with(Event::new().retry(Duration::from_millis(1000)));
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
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

/// A listener on the first address `host` resolves to, with a deep accept queue.
async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last_err = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(err) => last_err = Some(err),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "HOST resolves to no address")
    }))
}

// ---------------------------------------------------------------------------------
// Layers and routing
// ---------------------------------------------------------------------------------

/// A heartbeat setting, the key of the service cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Beat {
    Off,
    Every(u64),
}

impl Beat {
    fn layer(self, base: &SseLayer) -> SseLayer {
        match self {
            Beat::Off => base.clone().no_heartbeat(),
            Beat::Every(ms) => base.clone().heartbeat(Duration::from_millis(ms)),
        }
    }
}

/// `route` wrapped in one layer per heartbeat interval, `/slow`'s layer with its small
/// buffer, and the `/fanout` service.
struct Services<R, F> {
    base: SseLayer,
    router: R,
    by_beat: Mutex<HashMap<Beat, SseService<R>>>,
    slow: SseService<R>,
    fanout: SseService<F>,
}

/// Where a request goes.
enum Target<R, F> {
    Events(SseService<R>),
    Fanout(SseService<F>),
}

impl<R: Clone, F: Clone> Services<R, F> {
    fn new(base: SseLayer, router: R, fanout: SseService<F>) -> Self {
        let slow = base
            .clone()
            .buffer(SLOW_BUFFER)
            .on_overflow(Overflow::Wait)
            .layer(router.clone());
        let services = Self {
            base,
            router,
            by_beat: Mutex::new(HashMap::new()),
            slow,
            fanout,
        };
        for ms in [
            DEFAULT_HEARTBEAT_MS,
            HEARTBEAT_ENDPOINT_MS,
            STREAM_HEARTBEAT_MS,
            IDLE_HEARTBEAT_MS,
        ] {
            services.events(Beat::Every(ms));
        }
        services.events(Beat::Off);
        services
    }

    /// The router behind a layer with heartbeat `beat`.
    fn events(&self, beat: Beat) -> SseService<R> {
        let mut cache = self.by_beat.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(svc) = cache.get(&beat) {
            return svc.clone();
        }
        let svc = beat.layer(&self.base).layer(self.router.clone());
        // A client choosing intervals must not grow the cache without bound.
        if cache.len() < MAX_CACHED_INTERVALS {
            cache.insert(beat, svc.clone());
        }
        svc
    }

    /// Picks the service for `req`. A bad parameter gets the default layer; `route`
    /// then answers 400.
    fn target(&self, req: &Request<Incoming>) -> Target<R, F> {
        let default = Beat::Every(DEFAULT_HEARTBEAT_MS);
        if req.method() != Method::GET {
            return Target::Events(self.events(default));
        }
        let query = req.uri().query();
        let beat = match req.uri().path() {
            "/fanout" => return Target::Fanout(self.fanout.clone()),
            "/slow" => return Target::Events(self.slow.clone()),
            "/heartbeat" => heartbeat_param(query, "ms", HEARTBEAT_ENDPOINT_MS, false),
            "/stream" => heartbeat_param(query, "hb_ms", STREAM_HEARTBEAT_MS, true),
            "/idle" => heartbeat_param(query, "hb_ms", IDLE_HEARTBEAT_MS, true),
            _ => Ok(default),
        };
        Target::Events(self.events(beat.unwrap_or(default)))
    }
}

// ---------------------------------------------------------------------------------
// The router
// ---------------------------------------------------------------------------------

/// State shared by the handlers.
struct App {
    /// The `/fanout` topic.
    topic: broadcast::Sender<EncodedEvent>,
}

type Answer = SseResponse<Events>;

/// Every endpoint but `/fanout`, by method and path.
async fn route(app: Arc<App>, req: Request<Incoming>) -> Result<Answer, Infallible> {
    if req.method() == Method::POST && req.uri().path() == "/publish" {
        return Ok(publish(&app, req).await);
    }
    if req.method() != Method::GET {
        return Ok(not_found());
    }
    let query = req.uri().query();
    let answer = match req.uri().path() {
        "/" => text(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/health" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/events" => ticks(query).unwrap_or_else(BadParam::answer),
        "/multiline" => SseResponse::new(Events::list(vec![
            Event::new().data("line one\nline two\nline three"),
            Event::new().data("a\r\nb\rc"),
        ])),
        "/resume" => resume(req.extensions().get::<LastEventId>()),
        "/heartbeat" => silent(heartbeat_param(query, "ms", HEARTBEAT_ENDPOINT_MS, false)),
        "/retry" => SseResponse::new(Events::list(vec![Event::new()
            .retry(Duration::from_millis(1500))
            .data("ok")])),
        "/slow" => slow(query).unwrap_or_else(BadParam::answer),
        "/stream" => match heartbeat_param(query, "hb_ms", STREAM_HEARTBEAT_MS, true) {
            Ok(_) => SseResponse::new(Events::Seq(0)),
            Err(bad) => bad.answer(),
        },
        "/idle" => silent(heartbeat_param(query, "hb_ms", IDLE_HEARTBEAT_MS, true)),
        _ => not_found(),
    };
    Ok(answer)
}

/// `/events`: `count` tick events, `interval_ms` apart, the first at once.
fn ticks(query: Option<&str>) -> Result<Answer, BadParam> {
    let count = param(query, "count", u64::MAX)?.unwrap_or(DEFAULT_EVENTS);
    let interval_ms = param(query, "interval_ms", MAX_MS)?.unwrap_or(0);
    let interval = (interval_ms > 0).then(|| {
        let mut interval = tokio::time::interval(Duration::from_millis(interval_ms));
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval
    });
    Ok(SseResponse::new(Events::Ticks {
        next: 1,
        left: count,
        interval,
    }))
}

/// `/resume`: ids 1..=10, starting after the client's `Last-Event-ID` (from the start
/// when it has none, or one that is not a number).
fn resume(last: Option<&LastEventId>) -> Answer {
    let after = last
        .and_then(|id| id.as_str().trim().parse::<u64>().ok())
        .unwrap_or(0);
    let events = (after.saturating_add(1)..=10)
        .map(|i| numbered(i).data(i.to_string()))
        .collect();
    SseResponse::new(Events::list(events))
}

/// `/slow`: `count` events of 1 KiB data each.
fn slow(query: Option<&str>) -> Result<Answer, BadParam> {
    let count = param(query, "count", u64::MAX)?.unwrap_or(DEFAULT_SLOW_EVENTS);
    Ok(SseResponse::new(Events::Slow {
        next: 1,
        left: count,
    }))
}

/// `/heartbeat` and `/idle`: no events; the layer sends the heartbeats.
fn silent(beat: Result<Beat, BadParam>) -> Answer {
    match beat {
        Ok(_) => SseResponse::new(Events::Silent),
        Err(bad) => bad.answer(),
    }
}

/// `POST /publish`: the body, if UTF-8 and at most 1 MiB, becomes one event's data on
/// the `/fanout` topic.
async fn publish(app: &App, req: Request<Incoming>) -> Answer {
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
        Err(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "could not read the request body\n",
            )
        }
    };
    let Ok(data) = String::from_utf8(Vec::from(bytes)) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "the request body is not UTF-8\n",
        );
    };
    // Encoded once here; every subscriber gets the same bytes. With no subscriber the
    // send fails, and there is nobody to tell.
    let _ = app.topic.send(Event::new().data(data).encode());
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::NO_CONTENT;
    SseResponse::other(res)
}

/// Reads and drops what remains of a too-large body (bounded in bytes and time).
async fn discard(body: &mut Incoming) {
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
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        "text/plain; charset=utf-8",
        "the request body is larger than 1 MiB\n",
    )
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
        text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            format!("query parameter `{name}`: expected a whole number from 0 to {max}\n"),
        )
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

/// A heartbeat interval in milliseconds from the query (`default_ms` when absent).
/// With `zero_is_off`, `0` turns heartbeats off; otherwise it is rejected.
fn heartbeat_param(
    query: Option<&str>,
    name: &'static str,
    default_ms: u64,
    zero_is_off: bool,
) -> Result<Beat, BadParam> {
    match param(query, name, MAX_MS)?.unwrap_or(default_ms) {
        0 if zero_is_off => Ok(Beat::Off),
        0 => Err(BadParam { name, max: MAX_MS }),
        ms => Ok(Beat::Every(ms)),
    }
}

// ---------------------------------------------------------------------------------
// Event sources
// ---------------------------------------------------------------------------------

/// The event source of every endpoint behind `route`. A plain enum rather than a boxed
/// stream: every variant is always ready (or paced by its own timer), so the layer
/// fills whole frames from it without a virtual call or an allocation per poll.
enum Events {
    /// A fixed list of events, then the end.
    List(std::vec::IntoIter<Event>),
    /// `/events`: `left` more tick events from id `next`, paced by `interval` if set.
    Ticks {
        next: u64,
        left: u64,
        interval: Option<Interval>,
    },
    /// `/slow`: `left` more 1 KiB events from id `next`.
    Slow { next: u64, left: u64 },
    /// `/stream`: endless 72-byte events, numbered from this one.
    Seq(u64),
    /// No events ever; the layer sends heartbeats and ends the stream at shutdown.
    Silent,
}

impl Events {
    fn list(events: Vec<Event>) -> Self {
        Self::List(events.into_iter())
    }
}

impl Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let event = match self.get_mut() {
            Events::List(events) => events.next(),
            Events::Ticks {
                next,
                left,
                interval,
            } => {
                if *left == 0 {
                    None
                } else {
                    if let Some(interval) = interval {
                        ready!(interval.poll_tick(cx));
                    }
                    let i = *next;
                    *next = i.wrapping_add(1);
                    *left -= 1;
                    Some(tick_event(i))
                }
            }
            Events::Slow { next, left } => {
                if *left == 0 {
                    None
                } else {
                    let i = *next;
                    *next = i.wrapping_add(1);
                    *left -= 1;
                    Some(numbered(i).data(slow_data()))
                }
            }
            Events::Seq(seq) => {
                let event = seq_event(*seq);
                *seq = seq.wrapping_add(1);
                Some(event)
            }
            Events::Silent => return Poll::Pending,
        };
        Poll::Ready(event.map(Ok))
    }
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

/// `/stream` event `seq`: `{"seq":N,"pad":"xx…x"}`, exactly 64 bytes, built with one
/// allocation of exactly that size; the layer encodes it into the outgoing frame.
fn seq_event(seq: u64) -> Event {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = seq;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let mut data = String::with_capacity(STREAM_DATA_LEN);
    data.push_str("{\"seq\":");
    data.extend(digits.iter().copied().map(char::from));
    data.push_str(",\"pad\":\"");
    data.push_str(&STREAM_PAD[digits.len() - 1..]);
    data.push_str("\"}");
    debug_assert_eq!(data.len(), STREAM_DATA_LEN);
    Event::new().data(data)
}

/// A `/fanout` subscription. The topic keeps the last [`FANOUT_CAPACITY`] events; a
/// subscriber further behind loses the oldest, gets a `: lagged N` comment where they
/// were, and carries on with the oldest event still there.
struct Fanout(BroadcastStream<EncodedEvent>);

impl Stream for Fanout {
    type Item = Result<EncodedEvent, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(
            match ready!(Pin::new(&mut self.get_mut().0).poll_next(cx)) {
                Some(Ok(event)) => Some(Ok(event)),
                Some(Err(BroadcastStreamRecvError::Lagged(n))) => {
                    Some(Ok(Event::new().comment(format!("lagged {n}")).encode()))
                }
                None => None,
            },
        )
    }
}

/// Publishes `{"seq":N,"ts_ns":T}` to the topic every `every`, forever.
async fn publish_ticks(topic: broadcast::Sender<EncodedEvent>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    loop {
        ticks.tick().await;
        let ts_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let event = Event::new()
            .data(format!("{{\"seq\":{seq},\"ts_ns\":{ts_ns}}}"))
            .encode();
        // No subscriber: nobody to deliver to.
        let _ = topic.send(event);
        seq = seq.wrapping_add(1);
    }
}
