//! `tower_sse::test_util::SseReader` on the bodies users test: a tower service called
//! with `oneshot` on tokio's paused clock (heartbeats and timeouts in virtual time),
//! axum's `Router` in process, a hyper client and reqwest over a real socket, and the
//! reconnect with `Last-Event-ID`; and what it reports when a body is not what a test
//! expects.
#![cfg(all(feature = "test-util", feature = "axum"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{convert::Infallible, time::Duration};

use axum::{routing::get, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use support::{client::http_client, server::serve_sse, sources::then_pending};
use tokio::time::Instant;
use tokio_stream::Stream;
use tower::{ServiceBuilder, ServiceExt};
use tower_sse::{
    test_util::{Item, MessageEvent, ReadErrorKind, SseReader},
    Event, Heartbeat, LastEventId, SseLayer, SseResponse,
};

/// Events with ids `after + 1 ..= 10`, `after` read from the request's `Last-Event-ID`.
fn numbers(
    last: Option<&LastEventId>,
) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
    let after: u64 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
    let events = (after + 1..=10).map(|n| Ok(Event::new().id_u64(n).data(format!("n={n}"))));
    SseResponse::new(tokio_stream::iter(events))
}

fn numbered(range: std::ops::RangeInclusive<u64>) -> Vec<MessageEvent> {
    range
        .map(|n| MessageEvent::new(format!("n={n}")).with_id(n.to_string()))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn on_the_paused_clock_an_hour_of_heartbeats_takes_no_real_time() {
    let real = std::time::Instant::now();
    let layer =
        SseLayer::new().heartbeat(Heartbeat::new(Duration::from_secs(15)).per_stream_timer());
    let stats = layer.stats();
    let shutdown = layer.shutdown_handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<()>| async {
            let first = vec![Ok::<_, Infallible>(
                Event::new().id("1").unwrap().data("hello"),
            )];
            Ok::<_, Infallible>(SseResponse::new(then_pending(first)))
        });
    let res = svc.oneshot(Request::new(())).await.unwrap();
    let mut reader = SseReader::from_response(res).unwrap();

    let start = Instant::now();
    let first = reader
        .next_event_within(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first, MessageEvent::new("hello").with_id("1"));
    for n in 1..=240u32 {
        let comment = reader
            .expect_heartbeat_within(Duration::from_secs(16))
            .await
            .unwrap();
        assert_eq!(comment, "");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(15) * n,
            "heartbeat {n}"
        );
    }
    assert_eq!(stats.heartbeats_sent(), 240);
    // Between heartbeats, nothing: a wait shorter than the interval times out.
    let err = reader
        .expect_heartbeat_within(Duration::from_secs(14))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.to_string(), "no heartbeat within 14s");
    // ... and loses nothing: the heartbeat due then is the next item.
    assert_eq!(
        reader.next_item().await.unwrap(),
        Some(Item::Comment(String::new()))
    );

    shutdown.shutdown_with(Event::new().retry(Duration::from_millis(1500)));
    assert_eq!(reader.read_to_end().await.unwrap(), []);
    assert_eq!(reader.retry(), Some(Duration::from_millis(1500)));
    assert_eq!(reader.last_event_id(), "1");
    println!(
        "an hour of virtual heartbeats took {:?} of real time",
        real.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_where_a_heartbeat_is_expected_is_an_error_that_names_it() {
    let svc = ServiceBuilder::new()
        .layer(SseLayer::new().heartbeat(Duration::from_secs(15)))
        .service_fn(|_req: Request<()>| async {
            let events = vec![Ok::<_, Infallible>(
                Event::new().event("tick").unwrap().data("1"),
            )];
            Ok::<_, Infallible>(SseResponse::new(then_pending(events)))
        });
    let body = svc.oneshot(Request::new(())).await.unwrap().into_body();
    let mut reader = SseReader::new(body);
    let err = reader
        .expect_heartbeat_within(Duration::from_secs(16))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ReadErrorKind::UnexpectedEvent);
    assert_eq!(
        err.to_string(),
        r#"expected a heartbeat comment, got event `tick` (id ""): "1""#
    );
}

#[tokio::test]
async fn axum_router_in_process_and_the_reconnect_with_last_event_id() {
    let app = Router::new()
        .route(
            "/numbers",
            get(|last: Option<LastEventId>| async move { numbers(last.as_ref()) }),
        )
        .route_layer(SseLayer::new());

    let req = Request::get("/numbers")
        .body(axum::body::Body::empty())
        .unwrap();
    let mut reader = SseReader::from_response(app.clone().oneshot(req).await.unwrap()).unwrap();
    assert_eq!(reader.collect(4).await.unwrap(), numbered(1..=4));
    assert_eq!(reader.last_event_id(), "4");

    // The request a reconnecting EventSource sends.
    let req = reader
        .reconnect(Request::get("/numbers"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(req.headers()["last-event-id"], "4");
    let mut resumed = SseReader::from_response(app.oneshot(req).await.unwrap()).unwrap();
    assert_eq!(resumed.read_to_end().await.unwrap(), numbered(5..=10));
}

#[tokio::test]
async fn hyper_client_and_reqwest_over_a_socket() {
    let server = serve_sse(SseLayer::new(), |req| async move {
        numbers(req.extensions().get::<LastEventId>())
    })
    .await;

    let hyper = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::get(server.url("/")).body(Empty::new()).unwrap();
    let mut reader = SseReader::from_response(hyper.request(req).await.unwrap()).unwrap();
    assert_eq!(reader.collect(3).await.unwrap(), numbered(1..=3));
    let req = reader
        .reconnect(Request::get(server.url("/")))
        .body(Empty::new())
        .unwrap();
    let mut reader = SseReader::from_response(hyper.request(req).await.unwrap()).unwrap();
    assert_eq!(reader.read_to_end().await.unwrap(), numbered(4..=10));

    // reqwest: its response converts into an `http::Response` of a body.
    let res = http_client()
        .get(server.url("/"))
        .header("last-event-id", "8")
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::from_response(http::Response::from(res)).unwrap();
    assert_eq!(reader.read_to_end().await.unwrap(), numbered(9..=10));
}

#[tokio::test]
async fn a_response_that_is_not_sse_is_refused_with_its_status_and_type() {
    let svc = ServiceBuilder::new()
        .layer(SseLayer::new())
        .service_fn(|_req: Request<()>| async {
            let res = http::Response::builder()
                .status(404)
                .header("content-type", "text/plain")
                .body(http_body_util::Full::new(Bytes::from("no such topic")))
                .unwrap();
            Ok::<_, Infallible>(SseResponse::<
                tokio_stream::Pending<Result<Event, Infallible>>,
            >::other(res))
        });
    let res = svc.oneshot(Request::new(())).await.unwrap();
    let err = SseReader::from_response(res).unwrap_err();
    assert_eq!(err.kind(), ReadErrorKind::NotSse);
    assert_eq!(
        err.to_string(),
        r#"not an SSE response: status 404 Not Found, content-type "text/plain""#
    );
}

#[tokio::test]
async fn a_body_cut_inside_an_event_or_failing_is_reported() {
    let cut = http_body_util::Full::new(Bytes::from("data: 1\n\ndata: 2\n"));
    let mut reader = SseReader::new(cut);
    assert_eq!(
        reader.next_event().await.unwrap(),
        Some(MessageEvent::new("1"))
    );
    let err = reader.next_event().await.unwrap_err();
    assert_eq!(err.kind(), ReadErrorKind::Incomplete);
    assert_eq!(reader.next_event().await.unwrap(), None);

    let frames = [
        Ok(http_body::Frame::data(Bytes::from("data: 1\n\n"))),
        Err(std::io::Error::other("connection reset")),
    ];
    let failing = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut reader = SseReader::new(failing);
    let err = reader.collect(2).await.unwrap_err();
    assert_eq!(err.kind(), ReadErrorKind::Body);
    assert_eq!(
        err.to_string(),
        "the response body failed: connection reset"
    );
    assert!(std::error::Error::source(&err).is_some());

    let short = http_body_util::Full::new(Bytes::from("data: 1\n\n"));
    let err = SseReader::new(short).collect(2).await.unwrap_err();
    assert_eq!(err.kind(), ReadErrorKind::Ended);
    assert_eq!(err.to_string(), "the stream ended before event 2 of 2");
}

#[test]
fn the_reader_is_send_and_its_error_send_and_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync + 'static>() {}
    send::<SseReader<tower_sse::SseBody<tower_sse::BoxEventStream>>>();
    send::<SseReader<axum::body::Body>>();
    send_sync::<tower_sse::test_util::ReadError>();
    send_sync::<MessageEvent>();
}
