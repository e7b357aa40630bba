//! tower-sse inside axum 0.8: the layer on a route, `IntoResponse` alone, the
//! `Option<LastEventId>` extractor, and non-SSE routes untouched; read with
//! `test_util::SseReader`.
#![cfg(all(feature = "axum", feature = "test-util"))]

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{routing::get, Router};
use tokio_stream::Stream;
use tower_sse::{
    test_util::{MessageEvent, SseReader},
    Event, LastEventId, SseLayer, SseResponse,
};

async fn numbers(
    last: Option<LastEventId>,
) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
    let from = last
        .and_then(|id| id.parse::<u64>().ok())
        .map_or(1, |n| n + 1);
    SseResponse::new(tokio_stream::iter((from..=5).map(|n| {
        Ok(Event::new()
            .id(n.to_string())
            .map(|e| e.data(format!("n={n}")))
            .unwrap_or_default())
    })))
}

/// Never yields: only heartbeats.
async fn quiet() -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
    SseResponse::new(tokio_stream::pending())
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The response head and every event of a GET of `url`, with `Last-Event-ID: last`.
async fn events(url: String, last: Option<&str>) -> (http::response::Parts, Vec<MessageEvent>) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(last) = last {
        req = req.header("last-event-id", last);
    }
    let res = http::Response::from(req.send().await.unwrap());
    let (head, body) = res.into_parts();
    let mut reader = SseReader::new(body).timeout(Duration::from_secs(5));
    (head, reader.read_to_end().await.unwrap())
}

fn expected(from: u64) -> Vec<MessageEvent> {
    (from..=5)
        .map(|n| MessageEvent::new(format!("n={n}")).with_id(n.to_string()))
        .collect()
}

#[tokio::test]
async fn route_layer_serves_the_handlers_stream_with_the_layers_settings() {
    let sse = SseLayer::new();
    let stats = sse.stats();
    let app = Router::new()
        .route("/numbers", get(numbers))
        .route_layer(sse)
        .route("/plain", get(|| async { "plain" }));
    let addr = serve(app).await;

    let (head, got) = events(format!("http://{addr}/numbers"), None).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["content-type"], "text/event-stream");
    assert_eq!(head.headers["cache-control"], "no-cache, no-transform");
    assert_eq!(head.headers["x-accel-buffering"], "no");
    assert!(head.headers.get("content-length").is_none());
    assert_eq!(got, expected(1));
    // The layer, not the default settings, served it.
    assert_eq!(stats.streams_opened(), 1);
    assert_eq!(stats.events_sent(), 5);

    let plain = reqwest::get(format!("http://{addr}/plain")).await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_ne!(plain.headers()["content-type"], "text/event-stream");
    assert_eq!(plain.text().await.unwrap(), "plain");
}

#[tokio::test]
async fn last_event_id_extractor_resumes_with_and_without_the_layer() {
    let app = Router::new()
        .route("/layered", get(numbers))
        .route_layer(SseLayer::new())
        .route("/bare", get(numbers));
    let addr = serve(app).await;
    for path in ["layered", "bare"] {
        let (_, got) = events(format!("http://{addr}/{path}"), Some("3")).await;
        assert_eq!(got, expected(4), "{path}");
    }
}

#[tokio::test]
async fn into_response_alone_is_a_complete_sse_response() {
    let app = Router::new().route("/bare", get(numbers));
    let addr = serve(app).await;
    let (head, got) = events(format!("http://{addr}/bare"), None).await;
    assert_eq!(head.headers["content-type"], "text/event-stream");
    assert_eq!(head.headers["x-accel-buffering"], "no");
    assert_eq!(got, expected(1));
}

#[tokio::test]
async fn layer_heartbeats_and_shutdown_reach_axum_routes() {
    let sse = SseLayer::new().heartbeat(Duration::from_millis(30));
    let shutdown = sse.shutdown_handle();
    let app = Router::new().route("/quiet", get(quiet)).route_layer(sse);
    let addr = serve(app).await;

    let res = reqwest::get(format!("http://{addr}/quiet")).await.unwrap();
    let mut reader = SseReader::from_response(http::Response::from(res))
        .unwrap()
        .timeout(Duration::from_secs(5));
    // Two heartbeats, then shutdown ends the stream after its last event.
    for _ in 0..2 {
        let comment = reader
            .expect_heartbeat_within(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(comment, "");
    }
    shutdown.shutdown_with(Event::new().retry(Duration::from_millis(1500)));
    let rest = reader.read_to_end().await.unwrap();
    assert_eq!(rest, []);
    assert_eq!(reader.retry(), Some(Duration::from_millis(1500)));
    tokio::time::timeout(Duration::from_secs(5), shutdown.wait_closed())
        .await
        .expect("all streams closed");
}
