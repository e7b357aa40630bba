//! tower_governor (the per-IP request-rate limiter axum users pick) in front of the SSE
//! routes, with the layer's per-client stream cap behind it: the README's example,
//! served by `axum::serve` with `ConnectInfo`. Both turn a client away with the shed
//! answer (200, `retry:`, end), never a `429` that `EventSource` would take as fatal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, routing::get, Router};
use futures_util::StreamExt;
use http::{request::Parts, Request, StatusCode};
use support::{client::http_client, within};
use tower::ServiceBuilder;
use tower_governor::{governor::GovernorConfigBuilder, GovernorError, GovernorLayer};
use tower_sse::{BoxEventStream, Event, PerKeyLimit, SseLayer, SseResponse, SseStats};

/// The README's app: `/events` (an endless stream) behind the stream cap per client
/// IP address (2) and, in front, tower_governor (a burst of 3 requests per IP, then one
/// more per minute) whose refusal is the shed answer.
fn app() -> (Router, SseStats) {
    // At most 2 open streams per client IP address, read from axum's `ConnectInfo`.
    let client_ip = |req: &Parts| {
        let info = req.extensions.get::<ConnectInfo<SocketAddr>>()?;
        Some(info.0.ip())
    };
    let sse = SseLayer::new().max_streams_per_key(PerKeyLimit::shed(2, client_ip));
    let stats = sse.stats();
    let events = ServiceBuilder::new()
        .layer(sse)
        .service_fn(|_req: Request<_>| async {
            let ticks = tokio_stream::iter(1..)
                .map(|n: u64| Ok::<_, Infallible>(Event::new().data(n.to_string())));
            let ticks = ticks.then(|tick| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tick
            });
            Ok::<_, Infallible>(SseResponse::new(ticks))
        });

    // A burst of 3 requests per IP address, then one more every 60 s.
    let rate = GovernorConfigBuilder::default()
        .per_second(60)
        .burst_size(3)
        .finish()
        .unwrap();
    let governor = GovernorLayer::new(Arc::new(rate)).error_handler(|err| match err {
        // Over the rate: the shed answer, so that `EventSource` comes back (a 429 is
        // fatal to it) after the time the governor asks for (at least 1 s).
        GovernorError::TooManyRequests { wait_time, .. } => {
            SseResponse::<BoxEventStream>::shed(Duration::from_secs(wait_time))
                .into_http()
                .map(axum::body::Body::new)
        }
        other => other.into(),
    });
    let router = Router::new()
        .route_service("/events", events)
        .route_layer(governor)
        .route("/health", get(|| async { "ok" }));
    (router, stats)
}

/// The retry of a shed answer, or `None` if `res` is not one.
async fn shed_retry(res: reqwest::Response) -> Option<u64> {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let body = within("shed body", res.text()).await.unwrap();
    body.strip_prefix("retry: ")?
        .strip_suffix("\n\n")?
        .parse()
        .ok()
}

#[tokio::test]
async fn governor_in_front_and_the_per_client_cap_behind_both_answer_with_the_shed_answer() {
    let (router, stats) = app();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await.unwrap();
    });
    let client = http_client();
    let get = || within("response head", client.get(&url).send());

    // Requests 1 and 2: streams, under both limits.
    let mut open = Vec::new();
    for _ in 0..2 {
        let res = get().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut body = res.bytes_stream();
        assert_eq!(
            &within("a tick", body.next()).await.unwrap().unwrap()[..],
            b"data: 1\n\n"
        );
        open.push(body);
    }
    // Request 3: within the rate, over the per-client cap: the layer sheds it.
    let retry = shed_retry(get().await.unwrap())
        .await
        .expect("the layer's shed answer");
    assert!(retry >= 1000, "{retry}");
    assert_eq!(stats.streams_shed(), 1);
    // Request 4: over the rate: the governor answers, with the shed answer too.
    let retry = shed_retry(get().await.unwrap())
        .await
        .expect("the governor's shed answer");
    assert!(retry >= 1000, "{retry}");
    assert_eq!(stats.streams_shed(), 1, "the layer never saw request 4");
    assert_eq!(stats.open_streams(), 2);
    server.abort();
}
