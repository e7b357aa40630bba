//! Workloads shared by the criterion benches (`benches/encode.rs`) and the
//! instruction-count harness (`benches/callgrind.rs`), so that both measure exactly
//! the same thing.
//!
//! Each side gets the same input: `&'static str` field values (tower-sse keeps them
//! borrowed, axum copies them into its event buffer while building; that is how each
//! library works, not an artefact of the bench). The `*_owned` variants hand both
//! libraries freshly made `String`s instead.
#![allow(dead_code)] // each bench target uses a subset

use std::{
    convert::Infallible,
    pin::{pin, Pin},
    task::{Context, Poll},
};

use axum::response::{
    sse::{Event as AxumEvent, KeepAlive, Sse},
    IntoResponse,
};
use bytes::{Bytes, BytesMut};
use futures_util::{stream, task::noop_waker_ref, StreamExt as _};
use http::Request;
use http_body::Body as _;
use http_body_util::BodyExt;
use tower::{service_fn, Layer, ServiceExt};
use tower_sse::{event::DataEvent, Encode, Event, SseLayer, SseResponse};

// The demo's `/stream` payload builder (`examples/shared/payload.rs`), the one the
// axum reference uses too.
#[path = "../../examples/shared/payload.rs"]
mod payload;

pub(crate) use payload::{stream_payload, write_stream_payload, StreamPayload};

/// `id` of the typical event.
pub(crate) const ID: &str = "12345";
/// `event` name of the typical event.
pub(crate) const NAME: &str = "tick";
/// 64 bytes of JSON-like data, no line break.
pub(crate) const DATA: &str = r#"{"seq":12345,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
/// 64 bytes over four lines, separated by `\n`, `\r\n` and a lone `\r`.
pub(crate) const MULTILINE: &str =
    "{\"seq\":12345,\n\"a\":\"one\",\r\n\"b\":\"two\",\r\"c\":\"xxxxxxxxxxxxxxxxxxxx\"}";
/// Events in one body for the `body_frames` workloads.
pub(crate) const BODY_EVENTS: usize = 10_000;
/// Wire size of one body event (`data: <DATA>\n\n`).
pub(crate) const BODY_EVENT_LEN: usize = 72;

const _: () = assert!(DATA.len() == 64 && MULTILINE.len() == 64);
const _: () = assert!(BODY_EVENT_LEN == "data: ".len() + DATA.len() + 2);

/// The typical event, tower-sse.
#[inline]
pub(crate) fn tower_event(data: &'static str) -> Event {
    Event::new()
        .id(ID)
        .and_then(|e| e.event(NAME))
        .map(|e| e.data(data))
        .unwrap_or_else(|err| panic!("constant fields are valid: {err}"))
}

/// The typical event with freshly made owned `id` and `data`, tower-sse (moved in).
#[inline]
pub(crate) fn tower_event_owned((id, data): (String, String)) -> Event {
    Event::new()
        .id(id)
        .and_then(|e| e.event(NAME))
        .map(|e| e.data(data))
        .unwrap_or_else(|err| panic!("constant fields are valid: {err}"))
}

/// The typical event, axum. Building it writes every field into the event's buffer:
/// all that is left to do is the final `\n` and `freeze` (axum's private `finalize`).
#[inline]
pub(crate) fn axum_event(data: &str) -> AxumEvent {
    AxumEvent::default().id(ID).event(NAME).data(data)
}

/// The typical event from owned `id` and `data`, axum (borrowed and copied).
#[inline]
pub(crate) fn axum_event_owned(fields: &(String, String)) -> AxumEvent {
    AxumEvent::default()
        .id(&fields.0)
        .event(NAME)
        .data(&fields.1)
}

/// Fresh owned fields for the `*_owned` variants (made outside the timed code).
pub(crate) fn owned_fields() -> (String, String) {
    (ID.to_owned(), DATA.to_owned())
}

/// A frame buffer as the layer uses it: many events appended, then split off as one
/// frame. The benches append one event and then clear, keeping the capacity.
pub(crate) fn frame_buffer() -> BytesMut {
    BytesMut::with_capacity(64 * 1024)
}

/// axum's public path from an `Event` to bytes: an `Sse` response whose body is
/// polled for one frame per event. The response (headers, boxed body) is built once;
/// each [`AxumFrames::next`] builds one event in the stream, finalizes it and returns
/// the frame's bytes, which is the per-event work of a long-lived axum SSE stream.
pub(crate) struct AxumFrames {
    body: axum::body::Body,
}

impl AxumFrames {
    pub(crate) fn new(data: &'static str) -> Self {
        let events = stream::repeat_with(move || Ok::<_, Infallible>(axum_event(data)));
        Self {
            body: Sse::new(events).into_response().into_body(),
        }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> Bytes {
        let mut cx = Context::from_waker(noop_waker_ref());
        match Pin::new(&mut self.body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(bytes) => bytes,
                Err(_) => panic!("axum sse frames are data frames"),
            },
            other => panic!("always-ready stream, got {other:?}"),
        }
    }
}

/// axum's one-shot path: a whole `Sse` response around a one-event stream, then its
/// single body frame. Adds the response, header map and boxed body to every event.
pub(crate) fn axum_oneshot_response(data: &'static str) -> Bytes {
    let events = stream::once(std::future::ready(Ok::<_, Infallible>(axum_event(data))));
    let mut body = Sse::new(events).into_response().into_body();
    let mut cx = Context::from_waker(noop_waker_ref());
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(bytes) => bytes,
            Err(_) => panic!("axum sse frames are data frames"),
        },
        other => panic!("always-ready stream, got {other:?}"),
    }
}

/// What a drained body carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    pub(crate) frames: usize,
    pub(crate) bytes: usize,
}

async fn drain<B>(body: B) -> Drained
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut drained = Drained {
        frames: 0,
        bytes: 0,
    };
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    drained.frames += 1;
                    drained.bytes += data.len();
                }
            }
            Err(err) => panic!("body error: {err:?}"),
        }
    }
    drained
}

/// tower-sse end to end: `SseLayer` around a `service_fn` answering with an
/// always-ready stream of `n` 72-byte events, called with `oneshot`, body drained with
/// `BodyExt::frame`. `heartbeat`: the default 15 s heartbeat, else `no_heartbeat()`.
pub(crate) async fn tower_body(n: usize, heartbeat: bool) -> Drained {
    let layer = if heartbeat {
        SseLayer::new()
    } else {
        SseLayer::new().no_heartbeat()
    };
    tower_body_with(layer, n).await
}

/// A busy body with `Heartbeat::shared_ticker()` (15 s).
pub(crate) async fn tower_body_ticker(n: usize) -> Drained {
    let heartbeat = tower_sse::Heartbeat::new(std::time::Duration::from_secs(15)).shared_ticker();
    tower_body_with(SseLayer::new().heartbeat(heartbeat), n).await
}

async fn tower_body_with(layer: SseLayer, n: usize) -> Drained {
    let svc = layer.layer(service_fn(move |_req: Request<()>| async move {
        let events = stream::repeat_with(|| Ok::<_, Infallible>(Event::new().data(DATA))).take(n);
        Ok::<_, Infallible>(SseResponse::new(events))
    }));
    let response = match svc.oneshot(Request::new(())).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    drain(response.into_body()).await
}

/// axum end to end: `Sse` over the same always-ready stream of `n` 72-byte events,
/// `into_response`, body drained with `BodyExt::frame`. `keep_alive`: with
/// `KeepAlive::new()` (15 s), else none.
pub(crate) async fn axum_body(n: usize, keep_alive: bool) -> Drained {
    let events =
        stream::repeat_with(|| Ok::<_, Infallible>(AxumEvent::default().data(DATA))).take(n);
    let response = if keep_alive {
        Sse::new(events)
            .keep_alive(KeepAlive::new())
            .into_response()
    } else {
        Sse::new(events).into_response()
    };
    drain(response.into_body()).await
}

/// The runtime the body workloads run on (tower-sse's heartbeat and axum's
/// `KeepAlive` need tokio's timer).
/// Takes `n` heartbeats from an idle tower-sse body (the source never yields) on a
/// paused clock: each `frame().await` auto-advances to the next heartbeat. With
/// `Heartbeat::per_stream_timer()` (15 s), the design axum's `KeepAlive` also uses.
pub(crate) async fn tower_idle_heartbeats(n: usize) -> Drained {
    tower_idle_heartbeats_with(SseLayer::new().heartbeat(per_stream_timer()), n).await
}

/// The same with the default, `Heartbeat::shared_ticker()` (15 s): with a single
/// stream, each of its heartbeats costs the ticker's 8 ticks per interval.
pub(crate) async fn tower_idle_heartbeats_ticker(n: usize) -> Drained {
    let heartbeat = tower_sse::Heartbeat::new(std::time::Duration::from_secs(15)).shared_ticker();
    tower_idle_heartbeats_with(SseLayer::new().heartbeat(heartbeat), n).await
}

fn per_stream_timer() -> tower_sse::Heartbeat {
    tower_sse::Heartbeat::new(std::time::Duration::from_secs(15)).per_stream_timer()
}

async fn tower_idle_heartbeats_with(layer: SseLayer, n: usize) -> Drained {
    let svc = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(SseResponse::new(
            stream::pending::<Result<Event, Infallible>>(),
        ))
    }));
    let response = match svc.oneshot(Request::new(())).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    take_frames(response.into_body(), n).await
}

/// `conns` idle streams, each on its own task (as hyper runs connections), each taking
/// `n` heartbeats; `kind` is "timer" (`Heartbeat::per_stream_timer()`), "ticker"
/// (the default, `Heartbeat::shared_ticker()`) or "axum" (`KeepAlive::new()`).
pub(crate) async fn idle_many(kind: &'static str, conns: usize, n: usize) -> usize {
    let layer = match kind {
        "ticker" => SseLayer::new().heartbeat(
            tower_sse::Heartbeat::new(std::time::Duration::from_secs(15)).shared_ticker(),
        ),
        _ => SseLayer::new().heartbeat(per_stream_timer()),
    };
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let layer = layer.clone();
        tasks.push(tokio::spawn(async move {
            if kind == "axum" {
                return axum_idle_keep_alive(n).await.frames;
            }
            tower_idle_heartbeats_with(layer, n).await.frames
        }));
    }
    let mut frames = 0;
    for task in tasks {
        frames += task.await.unwrap_or(0);
    }
    frames
}

/// The same for axum's `Sse` with `KeepAlive::new()` (15 s).
pub(crate) async fn axum_idle_keep_alive(n: usize) -> Drained {
    let events = stream::pending::<Result<AxumEvent, Infallible>>();
    let body = Sse::new(events)
        .keep_alive(KeepAlive::new())
        .into_response()
        .into_body();
    take_frames(body, n).await
}

async fn take_frames<B>(body: B, n: usize) -> Drained
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    let mut drained = Drained {
        frames: 0,
        bytes: 0,
    };
    while drained.frames < n {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    drained.frames += 1;
                    drained.bytes += data.len();
                }
            }
            other => panic!("an idle body yields heartbeats forever, got {other:?}"),
        }
    }
    drained
}

/// A current-thread runtime whose clock is paused (and auto-advances when idle).
pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap_or_else(|err| panic!("tokio runtime: {err}"))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|err| panic!("tokio runtime: {err}"))
}

/// Checks, before anything is timed, that both libraries produce what the benches
/// claim they produce.
pub(crate) fn sanity_check() {
    let tower = tower_event(DATA).encode().into_bytes();
    let axum = AxumFrames::new(DATA).next();
    assert_eq!(tower, axum, "typical event: same wire bytes");
    assert_eq!(
        &tower[..],
        format!("id: {ID}\nevent: {NAME}\ndata: {DATA}\n\n").as_bytes()
    );
    let mut buf = frame_buffer();
    tower_event(DATA).encode_to(&mut buf);
    assert_eq!(&buf[..], &tower[..]);
    assert_eq!(axum_oneshot_response(DATA), tower);
    assert_eq!(
        tower_event_owned(owned_fields()).encode().into_bytes(),
        tower
    );

    let rt = runtime();
    let want = BODY_EVENTS * BODY_EVENT_LEN;
    for heartbeat in [true, false] {
        let got = rt.block_on(tower_body(BODY_EVENTS, heartbeat));
        assert_eq!(got.bytes, want, "tower-sse body, heartbeat {heartbeat}");
        let got = rt.block_on(axum_body(BODY_EVENTS, heartbeat));
        assert_eq!(got.bytes, want, "axum body, keep-alive {heartbeat}");
        assert_eq!(got.frames, BODY_EVENTS, "axum: one frame per event");
        let idle = paused_runtime();
        assert_eq!(
            idle.block_on(tower_idle_heartbeats(3)).bytes,
            3 * 3,
            "tower-sse: three 3-byte heartbeats"
        );
        assert_eq!(
            idle.block_on(axum_idle_keep_alive(3)).bytes,
            3 * 3,
            "axum: three 3-byte comments"
        );
    }
}

/// Fan-out: `subs` subscriber bodies, each on its own task, and `n` events published
/// one at a time; each publish waits until every subscriber has its frame. `kind` is
/// "hub" (tower-sse `Hub` behind `SseLayer`: encoded once, shared `Bytes`) or "axum"
/// (axum `Sse` over `tokio::sync::broadcast` of the data `String`, an `Event` built and
/// encoded per subscriber, the way axum users write it). Returns deliveries.
pub(crate) async fn fanout(kind: &'static str, subs: usize, n: usize) -> usize {
    use std::sync::Arc;
    use tokio::sync::{broadcast, Barrier};

    const PAYLOAD: &str = r#"{"seq":123456,"ts_ns":1732550400000000000}"#;
    let hub = tower_sse::hub::Hub::new();
    let (tx, _) = broadcast::channel::<String>(1024);
    let layer = SseLayer::new();
    // Each round: every subscriber takes one frame, then meets the publisher.
    let barrier = Arc::new(Barrier::new(subs + 1));
    let mut tasks = Vec::with_capacity(subs);
    for _ in 0..subs {
        let barrier = barrier.clone();
        let task = match kind {
            "hub" => {
                let mut sub = Some(hub.subscribe("t", None).await);
                let svc = layer.clone().layer(service_fn(move |_req: Request<()>| {
                    let sub = sub.take();
                    async move { Ok::<_, Infallible>(SseResponse::new(stream::iter(sub).flatten())) }
                }));
                let body = match svc.oneshot(Request::new(())).await {
                    Ok(res) => res.into_body(),
                    Err(never) => match never {},
                };
                tokio::spawn(take_rounds(body, n, barrier))
            }
            _ => {
                let rx = tokio_stream::wrappers::BroadcastStream::new(tx.subscribe());
                let events = rx.filter_map(|item| {
                    std::future::ready(
                        item.ok()
                            .map(|data| Ok::<_, Infallible>(AxumEvent::default().data(data))),
                    )
                });
                let body = Sse::new(events)
                    .keep_alive(KeepAlive::new())
                    .into_response()
                    .into_body();
                tokio::spawn(take_rounds(body, n, barrier))
            }
        };
        tasks.push(task);
    }
    for _ in 0..n {
        if kind == "hub" {
            let _ = hub.publish("t", Event::new().data(PAYLOAD)).await;
        } else {
            let _ = tx.send(PAYLOAD.to_owned());
        }
        barrier.wait().await;
    }
    let mut deliveries = 0;
    for task in tasks {
        deliveries += task.await.unwrap_or(0);
    }
    deliveries
}

async fn take_rounds<B>(body: B, n: usize, barrier: std::sync::Arc<tokio::sync::Barrier>) -> usize
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = pin!(body);
    for round in 0..n {
        match body.frame().await {
            Some(Ok(_)) => {}
            other => panic!("round {round}: {other:?}"),
        }
        barrier.wait().await;
    }
    n
}

// ---------------------------------------------------------------------------------
// Events built straight into the frame (`DataEvent`) against `Event::new().data(String)`
// and axum, with the data made per event as a handler makes it.
// ---------------------------------------------------------------------------------

/// The `seq` of the `/stream`-like typical event: its payload is [`DATA`].
pub(crate) const SEQ: u64 = 12345;

/// The typical event as a handler makes it with an owned `String`: the demo's
/// `/stream` payload (one exact allocation), then `Event::new().id(..).event(..).data(..)`.
#[inline]
pub(crate) fn tower_string_event(seq: u64) -> Event {
    Event::new()
        .id(ID)
        .and_then(|e| e.event(NAME))
        .map(|e| e.data(stream_payload(seq)))
        .unwrap_or_else(|err| panic!("constant fields are valid: {err}"))
}

/// The same event with its data written straight into the frame by the same payload
/// writer: `DataEvent::from_fn`, no `String`.
#[inline]
pub(crate) fn tower_data_event(
    seq: u64,
) -> DataEvent<impl tower_sse::event::Data + Clone + Send + 'static> {
    DataEvent::from_fn(move |w| write_stream_payload(seq, w))
        .id(ID)
        .and_then(|e| e.event(NAME))
        .unwrap_or_else(|err| panic!("constant fields are valid: {err}"))
}

/// The same event with its data written by a type that writes itself
/// (`DataEvent::custom`, the demo's `/stream`): the same payload function, called from
/// the encoder without a closure or `fn` pointer in between.
#[inline]
pub(crate) fn tower_custom_event(
    seq: u64,
) -> DataEvent<tower_sse::event::CustomData<StreamPayload>> {
    DataEvent::custom(StreamPayload(seq))
        .id(ID)
        .and_then(|e| e.event(NAME))
        .unwrap_or_else(|err| panic!("constant fields are valid: {err}"))
}

/// The same event, axum, from the same `String` (copied into axum's event buffer).
#[inline]
pub(crate) fn axum_string_event(seq: u64) -> AxumEvent {
    AxumEvent::default()
        .id(ID)
        .event(NAME)
        .data(stream_payload(seq))
}

/// What an LLM token stream sends, thousands per second per connection.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub(crate) struct Token {
    pub(crate) token: &'static str,
}

/// `{"token":"hi"}`.
pub(crate) const TOKEN: Token = Token { token: "hi" };

/// The token event with `Event::json_data` (serialized into a `String`).
#[inline]
pub(crate) fn tower_json_event(token: Token) -> Event {
    Event::new()
        .json_data(&token)
        .unwrap_or_else(|err| panic!("a token serializes: {err}"))
}

/// The token event with `DataEvent::json` (serialized straight into the frame).
#[inline]
pub(crate) fn tower_json_data_event(token: Token) -> DataEvent<tower_sse::event::JsonData<Token>> {
    DataEvent::json(token)
}

/// The token event, axum's `Event::json_data` (serialized into the event's buffer).
#[inline]
pub(crate) fn axum_json_event(token: Token) -> AxumEvent {
    AxumEvent::default()
        .json_data(token)
        .unwrap_or_else(|err| panic!("a token serializes: {err}"))
}

/// Appends `event` to a reused frame buffer, as the layer does (the buffer is cleared
/// first, keeping its capacity).
#[inline]
pub(crate) fn encode_into<T: Encode>(buf: &mut BytesMut, event: &T) {
    buf.clear();
    event.encode_to(buf);
}

/// axum frames from any event maker (see [`AxumFrames`]).
pub(crate) fn axum_frames_with<F>(mut make: F) -> AxumFrames
where
    F: FnMut() -> AxumEvent + Send + 'static,
{
    let events = stream::repeat_with(move || Ok::<_, Infallible>(make()));
    AxumFrames {
        body: Sse::new(events).into_response().into_body(),
    }
}

/// A busy tower-sse body (15 s heartbeat, as the demo's `/stream`) over `n` events
/// made by `make(seq)`.
pub(crate) async fn tower_body_of<T, F>(n: usize, make: F) -> Drained
where
    T: Encode + Send + 'static,
    F: Fn(u64) -> T + Send + Sync + Clone + 'static,
{
    let svc = SseLayer::new().layer(service_fn(move |_req: Request<()>| {
        let make = make.clone();
        async move {
            let events = stream::iter(0..n as u64).map(move |seq| Ok::<_, Infallible>(make(seq)));
            Ok::<_, Infallible>(SseResponse::new(events))
        }
    }));
    let response = match svc.oneshot(Request::new(())).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    drain(response.into_body()).await
}

/// axum's `Sse` with `KeepAlive` (15 s) over `n` events made by `make(seq)`.
pub(crate) async fn axum_body_of<F>(n: usize, make: F) -> Drained
where
    F: Fn(u64) -> AxumEvent + Send + 'static,
{
    let events = stream::iter(0..n as u64).map(move |seq| Ok::<_, Infallible>(make(seq)));
    let response = Sse::new(events)
        .keep_alive(KeepAlive::new())
        .into_response();
    drain(response.into_body()).await
}

/// Checks that the three ways to make each event give the same bytes.
pub(crate) fn data_event_sanity_check() {
    let string = tower_string_event(SEQ).encode().into_bytes();
    assert_eq!(
        &string[..],
        format!("id: {ID}\nevent: {NAME}\ndata: {DATA}\n\n").as_bytes()
    );
    let data = tower_data_event(SEQ)
        .encode()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(data.as_bytes(), &string);
    let custom = tower_custom_event(SEQ)
        .encode()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(custom.as_bytes(), &string);
    assert_eq!(axum_frames_with(|| axum_string_event(SEQ)).next(), string);

    let json = tower_json_event(TOKEN).encode().into_bytes();
    assert_eq!(&json[..], b"data: {\"token\":\"hi\"}\n\n");
    let data = tower_json_data_event(TOKEN)
        .encode()
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(data.as_bytes(), &json);
    assert_eq!(axum_frames_with(|| axum_json_event(TOKEN)).next(), json);

    let rt = runtime();
    let want = BODY_EVENTS * BODY_EVENT_LEN;
    let got = rt.block_on(tower_body_of(BODY_EVENTS, |seq| {
        Event::new().data(stream_payload(seq))
    }));
    assert_eq!(got.bytes, want);
    let got = rt.block_on(tower_body_of(BODY_EVENTS, |seq| {
        DataEvent::from_fn(move |w| write_stream_payload(seq, w))
    }));
    assert_eq!(got.bytes, want);
    let got = rt.block_on(tower_body_of(BODY_EVENTS, |seq| {
        DataEvent::custom(StreamPayload(seq))
    }));
    assert_eq!(got.bytes, want);
    let got = rt.block_on(axum_body_of(BODY_EVENTS, |seq| {
        AxumEvent::default().data(stream_payload(seq))
    }));
    assert_eq!(got.bytes, want);
}

/// `count` hub operations with `topics` topics of one subscriber each already in the
/// hub: `"publish"` publishes to existing topics spread over all of them, `"subscribe"`
/// subscribes to a new topic and leaves it. Returns the operations done.
pub(crate) fn hub_topics(op: &'static str, topics: usize, count: usize) -> usize {
    runtime().block_on(async {
        let hub = tower_sse::hub::Hub::new();
        let names: Vec<String> = (0..topics).map(|i| format!("user:{i:06}")).collect();
        let mut subs = Vec::with_capacity(topics);
        for name in &names {
            subs.push(hub.subscribe(name, None).await);
        }
        for k in 0..count {
            if op == "publish" {
                let topic = &names[(k * 7919) % topics];
                let published = hub.publish(topic, Event::new().data("hello")).await;
                std::hint::black_box(published.is_ok());
            } else {
                let topic = format!("new:{k:09}");
                drop(std::hint::black_box(hub.subscribe(&topic, None).await));
            }
        }
        drop(subs);
        count
    })
}
