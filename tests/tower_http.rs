//! tower-http and tower middleware in front of `SseLayer` (outer layer first, then
//! `SseLayer`, then the handler), over a real hyper server and reqwest: auth, CORS,
//! compression, timeouts, rate and concurrency limits.
//!
//! `ValidateRequestHeaderLayer`, `CorsLayer` and `TimeoutLayer` need a response body
//! that is `Default` (for the 401, the preflight answer and the 408 they make
//! themselves). `SseBody` is not `Default`, so those tests box the body between the
//! outer layer and `SseLayer` ([`boxed`]).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    io::Write as _,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_core::Stream;
use futures_util::StreamExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use support::{
    client::http_client,
    server::{serve, TestServer},
    sources::then_pending,
    within,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{IntervalStream, UnboundedReceiverStream};
use tower::{
    buffer::BufferLayer,
    limit::{ConcurrencyLimitLayer, RateLimitLayer},
    ServiceBuilder,
};
use tower_http::{
    compression::{predicate::SizeAbove, CompressionLayer},
    cors::{AllowOrigin, CorsLayer},
    timeout::TimeoutLayer,
    validate_request::ValidateRequestHeaderLayer,
};
use tower_sse::{BoxError, Event, SseLayer, SseResponse, StreamLimit};

/// The event source type every handler here answers with.
type Source = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// The sending side of a [`driven`] source.
type Feed = mpsc::UnboundedSender<Event>;

/// Where the handler hands each new source's [`Feed`] to the test.
type Feeds = mpsc::UnboundedReceiver<Feed>;

/// A source the test drives: it yields exactly what the test sends on its feed, when
/// the test sends it, and ends when the feed is dropped. The feed goes to the test
/// through `feeds`.
fn driven(feeds: &mpsc::UnboundedSender<Feed>) -> Source {
    let (feed, events) = mpsc::unbounded_channel();
    feeds.send(feed).unwrap();
    Box::pin(UnboundedReceiverStream::new(events).map(Ok))
}

/// The next source's feed, once the handler has made it.
async fn next_feed(feeds: &mut Feeds) -> Feed {
    within("the handler to build a source", feeds.recv())
        .await
        .unwrap()
}

/// `data: {data}` with `id: {id}`.
fn event(id: u64, data: &str) -> Event {
    Event::new()
        .id(id.to_string())
        .unwrap()
        .data(data.to_owned())
}

/// Boxes a response body: puts `SseBody` behind layers that need a `Default` body.
fn boxed<B>(res: Response<B>) -> Response<UnsyncBoxBody<Bytes, BoxError>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    res.map(|body| body.map_err(Into::into).boxed_unsync())
}

/// Parsed SSE events of a response body, as a client sees them.
type Events = Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, String>> + Send>>;

fn events(res: reqwest::Response) -> Events {
    Box::pin(
        res.bytes_stream()
            .eventsource()
            .map(|item| item.map_err(|err| err.to_string())),
    )
}

/// Events of a gzip-encoded response body, decompressed as each frame arrives.
fn gunzipped_events(res: reqwest::Response) -> Events {
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    let plain = res.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        decoder.write_all(&chunk)?;
        decoder.flush()?;
        Ok::<_, std::io::Error>(Bytes::from(std::mem::take(decoder.get_mut())))
    });
    Box::pin(
        plain
            .eventsource()
            .map(|item| item.map_err(|err| err.to_string())),
    )
}

/// The next event, failing the test if none comes within `support::STEP`.
async fn next_event(events: &mut Events, what: &str) -> eventsource_stream::Event {
    within(what, events.next())
        .await
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
        .unwrap()
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = http_client().get(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    within("response head", req.send()).await.unwrap()
}

// ---------------------------------------------------------------------------
// Auth
// ---------------------------------------------------------------------------

/// Bearer auth in front of the layer; the handler counts the sources it builds.
// `bearer` is deprecated ("too basic to be useful in real applications") but is
// what people reach for first; `custom` validators sit in the same place.
#[allow(deprecated)]
async fn auth_server() -> (TestServer, Arc<AtomicUsize>) {
    let built = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(ValidateRequestHeaderLayer::bearer("secret"))
        .map_response(boxed)
        .layer(SseLayer::new())
        .service_fn({
            let built = built.clone();
            move |_req: Request<Incoming>| {
                built.fetch_add(1, Ordering::SeqCst);
                let source: Source =
                    Box::pin(then_pending(vec![Ok(event(1, "one")), Ok(event(2, "two"))]));
                async move { Ok::<_, Infallible>(SseResponse::new(source)) }
            }
        });
    (serve(svc).await, built)
}

#[tokio::test]
async fn bearer_auth_answers_401_before_any_stream_starts_and_never_builds_the_source() {
    let (server, built) = auth_server().await;
    let url = server.url("/events");
    for headers in [
        &[][..],
        &[("authorization", "Bearer wrong")][..],
        &[("authorization", "Basic c2VjcmV0")][..],
        &[("authorization", "secret")][..],
    ] {
        let res = get(&url, headers).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_ne!(
            res.headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/event-stream"[..]),
            "{headers:?}"
        );
        let body = within("401 body", res.bytes()).await.unwrap();
        assert!(body.is_empty(), "{body:?}");
    }
    assert_eq!(
        built.load(Ordering::SeqCst),
        0,
        "a source was built for an unauthorized request"
    );
}

#[tokio::test]
async fn bearer_auth_lets_the_right_token_stream_events() {
    let (server, built) = auth_server().await;
    let res = get(
        &server.url("/events"),
        &[("authorization", "Bearer secret")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut events = events(res);
    let first = next_event(&mut events, "event 1").await;
    let second = next_event(&mut events, "event 2").await;
    assert_eq!((first.id.as_str(), first.data.as_str()), ("1", "one"));
    assert_eq!((second.id.as_str(), second.data.as_str()), ("2", "two"));
    assert_eq!(built.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------

const ORIGIN: &str = "https://app.example";

async fn cors_server() -> (TestServer, Arc<AtomicUsize>) {
    let built = Arc::new(AtomicUsize::new(0));
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list([HeaderValue::from_static(ORIGIN)]))
        .allow_methods([Method::GET])
        .allow_headers([header::HeaderName::from_static("last-event-id")]);
    let svc = ServiceBuilder::new()
        .layer(cors)
        .map_response(boxed)
        .layer(SseLayer::new())
        .service_fn({
            let built = built.clone();
            move |_req: Request<Incoming>| {
                built.fetch_add(1, Ordering::SeqCst);
                let source: Source =
                    Box::pin(then_pending(vec![Ok(event(1, "one")), Ok(event(2, "two"))]));
                async move { Ok::<_, Infallible>(SseResponse::new(source)) }
            }
        });
    (serve(svc).await, built)
}

#[tokio::test]
async fn cors_allows_the_origin_on_the_sse_response_and_events_still_arrive() {
    let (server, _built) = cors_server().await;
    let res = get(&server.url("/events"), &[("origin", ORIGIN)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert_eq!(headers[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache, no-transform");
    assert!(
        headers
            .get_all(header::VARY)
            .iter()
            .any(|v| v.to_str().unwrap().contains("origin")),
        "{headers:?}"
    );
    let mut events = events(res);
    assert_eq!(next_event(&mut events, "event 1").await.data, "one");
    assert_eq!(next_event(&mut events, "event 2").await.data, "two");

    // Another origin still gets the stream (CORS is enforced by the browser), but
    // without the header that would let a page read it.
    let res = get(
        &server.url("/events"),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}

#[tokio::test]
async fn cors_preflight_is_answered_in_front_without_calling_the_handler() {
    let (server, built) = cors_server().await;
    let req = http_client()
        .request(Method::OPTIONS, server.url("/events"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id");
    let res = within("preflight", req.send()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let headers = res.headers();
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET");
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
        "last-event-id"
    );
    assert!(headers.get(header::CONTENT_TYPE).is_none(), "{headers:?}");
    assert_eq!(
        built.load(Ordering::SeqCst),
        0,
        "the preflight reached the handler"
    );

    // The actual request that follows streams.
    let res = get(
        &server.url("/events"),
        &[("origin", ORIGIN), ("last-event-id", "0")],
    )
    .await;
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    let mut events = events(res);
    assert_eq!(next_event(&mut events, "event 1").await.data, "one");
    assert_eq!(built.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

/// `/plain` answers 4 KiB of text (not SSE); anything else streams a [`driven`]
/// source, with no heartbeats, so only the test's events ever go out.
async fn compressed_server<P>(compression: CompressionLayer<P>) -> (TestServer, Feeds)
where
    P: tower_http::compression::Predicate + Send + Sync + 'static,
{
    let (feeds_tx, feeds) = mpsc::unbounded_channel();
    let svc = ServiceBuilder::new()
        .layer(compression)
        .layer(SseLayer::new().no_heartbeat())
        .service_fn(move |req: Request<Incoming>| {
            let res = if req.uri().path() == "/plain" {
                SseResponse::other(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "text/plain")
                        .body(Full::new(Bytes::from("hello ".repeat(700))))
                        .unwrap(),
                )
            } else {
                SseResponse::new(driven(&feeds_tx))
            };
            async move { Ok::<_, Infallible>(res) }
        });
    (serve(svc).await, feeds)
}

/// Sends three events, each only after the client has received the one before: a
/// layer that held an event back until more came (or the stream ended) would make
/// this time out.
async fn events_arrive_one_by_one(events: &mut Events, feed: &Feed) {
    for n in 1..=3 {
        feed.send(event(n, &format!("event {n}"))).unwrap();
        let got = next_event(events, &format!("event {n} while the source is open")).await;
        assert_eq!(got.id, n.to_string());
        assert_eq!(got.data, format!("event {n}"));
    }
    assert!(!feed.is_closed(), "the source was dropped");
}

#[tokio::test]
async fn default_compression_leaves_sse_uncompressed_and_events_arrive_one_by_one() {
    let (server, mut feeds) = compressed_server(CompressionLayer::new()).await;
    let res = get(&server.url("/events"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    // tower-http's DefaultPredicate excludes `text/event-stream`.
    assert!(
        res.headers().get(header::CONTENT_ENCODING).is_none(),
        "{:?}",
        res.headers()
    );
    let feed = next_feed(&mut feeds).await;
    let mut events = events(res);
    events_arrive_one_by_one(&mut events, &feed).await;
}

#[tokio::test]
async fn default_compression_still_compresses_other_responses_of_the_same_service() {
    let (server, _feeds) = compressed_server(CompressionLayer::new()).await;
    let res = get(&server.url("/plain"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    let body = within("body", res.bytes()).await.unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
        .unwrap();
    assert_eq!(plain, "hello ".repeat(700));
}

/// With a predicate that does compress `text/event-stream`, the body is gzip, and
/// (with async-compression's encoder flushing whenever its input is pending) each
/// event still reaches the client before the source produces the next.
#[tokio::test]
async fn compressing_sse_with_a_custom_predicate_still_delivers_events_one_by_one() {
    let (server, mut feeds) =
        compressed_server(CompressionLayer::new().compress_when(SizeAbove::new(0))).await;
    let res = get(&server.url("/events"), &[("accept-encoding", "gzip")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
    assert!(res.headers().get(header::CONTENT_LENGTH).is_none());
    let feed = next_feed(&mut feeds).await;
    let mut events = gunzipped_events(res);
    events_arrive_one_by_one(&mut events, &feed).await;
}

// ---------------------------------------------------------------------------
// Timeout
// ---------------------------------------------------------------------------

/// A 100 ms timeout in front; `/slow` takes 500 ms to answer, anything else streams
/// 6 events 50 ms apart (300 ms) and ends.
async fn timeout_server() -> TestServer {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(100),
        ))
        .map_response(boxed)
        .layer(SseLayer::new())
        .service_fn(|req: Request<Incoming>| async move {
            if req.uri().path() == "/slow" {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let period = Duration::from_millis(50);
            let ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let source: Source = Box::pin(
                IntervalStream::new(ticks)
                    .take(6)
                    .enumerate()
                    .map(|(i, _)| Ok(event(i as u64 + 1, "tick"))),
            );
            Ok::<_, Infallible>(SseResponse::new(source))
        });
    serve(svc).await
}

#[tokio::test]
async fn timeout_layer_does_not_cut_a_stream_that_outlives_it() {
    let server = timeout_server().await;
    let res = get(&server.url("/events"), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let all: Vec<_> = within("the whole stream", events(res).collect::<Vec<_>>()).await;
    let ids: Vec<String> = all.into_iter().map(|e| e.unwrap().id).collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
}

#[tokio::test]
async fn timeout_layer_still_answers_408_to_a_handler_slower_than_it() {
    let server = timeout_server().await;
    let res = get(&server.url("/slow"), &[]).await;
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
}

// ---------------------------------------------------------------------------
// Rate and concurrency limits
// ---------------------------------------------------------------------------

/// Opens a stream, checks it is SSE and that its first event arrives.
async fn open_stream(url: &str, feeds: &mut Feeds, first: &str) -> (Events, Feed) {
    let res = get(url, &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let feed = next_feed(feeds).await;
    let mut events = events(res);
    feed.send(event(1, first)).unwrap();
    assert_eq!(next_event(&mut events, first).await.data, first);
    (events, feed)
}

#[tokio::test]
async fn tower_concurrency_limit_of_one_does_not_cap_open_streams() {
    let (feeds_tx, mut feeds) = mpsc::unbounded_channel();
    let layer = SseLayer::new();
    let stats = layer.stats();
    let svc = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(layer)
        .service_fn(move |_req: Request<Incoming>| {
            let source = driven(&feeds_tx);
            async move { Ok::<_, Infallible>(SseResponse::new(source)) }
        });
    let server = serve(svc).await;
    let url = server.url("/events");

    let (mut a, feed_a) = open_stream(&url, &mut feeds, "a1").await;
    // The limit's permit went back when the first response's head was ready.
    let (mut b, feed_b) = open_stream(&url, &mut feeds, "b1").await;
    assert_eq!(stats.open_streams(), 2);

    // Both are live at once.
    feed_a.send(event(2, "a2")).unwrap();
    feed_b.send(event(2, "b2")).unwrap();
    assert_eq!(next_event(&mut a, "a2").await.data, "a2");
    assert_eq!(next_event(&mut b, "b2").await.data, "b2");
    assert_eq!(stats.open_streams(), 2);
}

#[tokio::test]
async fn stream_limit_of_one_caps_open_streams_where_concurrency_limit_does_not() {
    let (feeds_tx, mut feeds) = mpsc::unbounded_channel();
    let layer = SseLayer::new().max_streams(StreamLimit::reject(1));
    let stats = layer.stats();
    let svc = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(layer)
        .service_fn(move |_req: Request<Incoming>| {
            let source = driven(&feeds_tx);
            async move { Ok::<_, Infallible>(SseResponse::new(source)) }
        });
    let server = serve(svc).await;
    let url = server.url("/events");

    let (mut a, feed_a) = open_stream(&url, &mut feeds, "a1").await;
    let res = get(&url, &[]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().get(header::RETRY_AFTER).is_some());
    assert_eq!(stats.open_streams(), 1);
    assert_eq!(stats.streams_rejected(), 1);

    // The open one is untouched.
    feed_a.send(event(2, "a2")).unwrap();
    assert_eq!(next_event(&mut a, "a2").await.data, "a2");
}

#[tokio::test]
async fn tower_rate_limit_in_front_lets_streams_through_and_does_not_cap_open_ones() {
    let (feeds_tx, mut feeds) = mpsc::unbounded_channel();
    let layer = SseLayer::new();
    let stats = layer.stats();
    // One request per 100 ms; `Buffer` makes the rate limiter `Clone`.
    let svc = ServiceBuilder::new()
        .layer(BufferLayer::new(16))
        .layer(RateLimitLayer::new(1, Duration::from_millis(100)))
        .layer(layer)
        .service_fn(move |_req: Request<Incoming>| {
            let source = driven(&feeds_tx);
            async move { Ok::<_, Infallible>(SseResponse::new(source)) }
        });
    let server = serve(svc).await;
    let url = server.url("/events");

    let mut open = Vec::new();
    for name in ["a", "b", "c", "d"] {
        open.push(open_stream(&url, &mut feeds, &format!("{name}1")).await);
    }
    assert_eq!(stats.open_streams(), 4);
    for (i, (events, feed)) in open.iter_mut().enumerate() {
        let data = format!("second event of stream {i}");
        feed.send(event(2, &data)).unwrap();
        assert_eq!(next_event(events, &data).await.data, data);
    }
    assert_eq!(stats.open_streams(), 4);
    assert_eq!(stats.streams_opened(), 4);
}

/// No adapter needed: `SseBody` is `Default`, which tower-http's auth, CORS and
/// timeout layers need to answer by themselves.
#[tokio::test]
#[allow(deprecated)]
async fn auth_cors_and_timeout_sit_directly_in_front_of_sse_layer() {
    let (feeds_tx, mut feeds) = mpsc::unbounded_channel();
    let svc = ServiceBuilder::new()
        .layer(ValidateRequestHeaderLayer::bearer("secret"))
        .layer(CorsLayer::new().allow_origin(AllowOrigin::list([HeaderValue::from_static(ORIGIN)])))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(100),
        ))
        .layer(SseLayer::new())
        .service_fn(move |_req: Request<Incoming>| {
            let source = driven(&feeds_tx);
            async move { Ok::<_, Infallible>(SseResponse::new(source)) }
        });
    let server = serve(svc).await;
    let res = get(&server.url("/events"), &[]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(within("401 body", res.bytes()).await.unwrap().is_empty());
    let res = get(
        &server.url("/events"),
        &[("authorization", "Bearer secret"), ("origin", ORIGIN)],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], ORIGIN);
    let feed = next_feed(&mut feeds).await;
    let mut events = events(res);
    tokio::time::sleep(Duration::from_millis(150)).await; // past the timeout
    feed.send(event(1, "late")).unwrap();
    assert_eq!(
        next_event(&mut events, "event after the timeout")
            .await
            .data,
        "late"
    );
}
