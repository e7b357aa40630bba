//! tower_governor (a per-IP request rate) in front of the SSE routes, and the layer's
//! per-client stream cap behind it, in axum 0.8. Both refuse with the shed answer (200,
//! the SSE headers, `retry:`, the end), which `EventSource` honours by coming back
//! later; tower_governor's own `429` would be fatal to it.
//!
//! ```sh
//! cargo run --example governor        # http://127.0.0.1:3000/events
//! ```
//!
//! The code below this comment is the README's example, word for word
//! (`tests/governor.rs` checks that, and runs `app`).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use axum::{extract::ConnectInfo, Router};
use http::{request::Parts, Request};
use tower::ServiceBuilder;
use tower_governor::{governor::GovernorConfigBuilder, GovernorError, GovernorLayer};
use tower_sse::{BoxEventStream, Event, PerKeyLimit, SseLayer, SseResponse, StreamLimit};

/// At most 10,000 open streams, and 4 per client IP address (from axum's `ConnectInfo`).
pub fn sse_layer() -> SseLayer {
    let client_ip = |req: &Parts| Some(req.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip());
    SseLayer::new()
        .max_streams(StreamLimit::shed(10_000))
        .max_streams_per_key(PerKeyLimit::shed(4, client_ip))
}

/// `/events` behind `sse`, and tower_governor in front: a burst of 10 requests per IP
/// address, then one every 2 s; over that, the shed answer.
pub fn app(sse: SseLayer) -> Router {
    let events = ServiceBuilder::new()
        .layer(sse)
        .service_fn(|_req: Request<_>| async {
            let events = tokio_stream::pending::<Result<Event, Infallible>>();
            Ok::<_, Infallible>(SseResponse::new(events))
        });
    let rate = GovernorConfigBuilder::default()
        .per_second(2)
        .burst_size(10)
        .finish()
        .expect("a valid rate");
    let governor = GovernorLayer::new(Arc::new(rate)).error_handler(|err| match err {
        GovernorError::TooManyRequests { wait_time, .. } => {
            SseResponse::<BoxEventStream>::shed(Duration::from_secs(wait_time))
                .into_http()
                .map(axum::body::Body::new)
        }
        other => other.into(),
    });
    Router::new()
        .route_service("/events", events)
        .route_layer(governor)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let app = app(sse_layer()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}
