//! gRPC and Server-Sent Events on one port, with no web framework: `SseLayer` wraps a
//! small tower service that sends gRPC requests to tonic 0.14's [`Routes`] and every
//! other request to an SSE handler, served by `tower_sse::server::Server` (HTTP/1.1 and
//! cleartext HTTP/2 on the same socket). `examples/tonic.rs` does the same through an
//! axum `Router`.
//!
//! ```sh
//! cargo run --example tonic_direct --features server   # PORT=3000
//! curl -N http://127.0.0.1:3000/events                  # SSE over HTTP/1.1
//! curl -N --http2-prior-knowledge http://127.0.0.1:3000/events   # ... or over h2c
//! grpc-health-probe -addr=127.0.0.1:3000                # gRPC, if you have it
//! ```
//!
//! # How it fits together
//!
//! ```text
//! Server ─▶ SseLayer ─▶ GrpcOrSse ─┬─ content-type: application/grpc ─▶ tonic Routes
//!                                  └─ anything else ─▶ events(): /events, /, 404
//! ```
//!
//! [`GrpcOrSse`] answers an [`SseResponse`]: an event stream for `GET /events`, and
//! [`SseResponse::other`] around every other response, gRPC's included. The layer
//! passes those through untouched (status, headers, body frames and the gRPC
//! trailers): no SSE header is added, no stream is counted, no heartbeat is sent; only
//! the event streams get the layer's buffer, heartbeats, limits and shutdown.
//!
//! The layer wraps the whole service, so it also reads `Last-Event-ID` for the SSE
//! handler ([`LastEventId`] in the request's extensions).
//!
//! # Shutdown
//!
//! At ctrl-c the health reporter sets every status to `NOT_SERVING` and then clears it
//! (each gRPC `Watch` stream gets `NOT_SERVING`, then ends); then the server stops
//! accepting, ends the open SSE streams after a `retry:` hint (`Server::streams`) and
//! waits for the connections to finish (at most its grace period, 3 s).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header::CONTENT_TYPE, Method, Request, Response, StatusCode};
use http_body_util::Full;
use tokio_stream::{wrappers::IntervalStream, Stream, StreamExt};
use tonic::service::Routes;
use tonic_health::{server::HealthReporter, ServingStatus};
use tower::{Layer, Service};
use tower_sse::{server::Server, BoxError, Event, LastEventId, SseLayer, SseResponse, SseService};

/// The name under which the SSE feed reports its health over gRPC.
pub(crate) const EVENTS_SERVICE: &str = "tower_sse.Events";

/// The SSE handler's event stream.
pub(crate) type Ticks = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// gRPC requests (`content-type: application/grpc…`) to tonic's `Routes`, every other
/// request to [`events`].
#[derive(Clone)]
pub(crate) struct GrpcOrSse {
    grpc: Routes,
    period: Duration,
}

impl<B> Service<Request<B>> for GrpcOrSse
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = SseResponse<Ticks>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The SSE handler is always ready; tonic's router says for itself.
        Service::<Request<B>>::poll_ready(&mut self.grpc, cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let grpc = req
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            let call = self.grpc.call(req);
            // Not SSE: the layer passes it through as it is, trailers included.
            Box::pin(async move { Ok(SseResponse::other(call.await?)) })
        } else {
            let answer = events(&req, self.period);
            Box::pin(async move { Ok(answer) })
        }
    }
}

/// `GET /events`: a `tick` every `period`, numbered on from the client's
/// `Last-Event-ID`; `GET /`: a line of text; anything else: `404`.
pub(crate) fn events<B>(req: &Request<B>, period: Duration) -> SseResponse<Ticks> {
    let text = |status: StatusCode, text: &'static str| {
        let mut res = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *res.status_mut() = status;
        SseResponse::other(res)
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/events") => {
            let last = req.extensions().get::<LastEventId>();
            let mut n: u64 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
            let ticks: Ticks = Box::pin(IntervalStream::new(tokio::time::interval(period)).map(
                move |_| {
                    n += 1;
                    Ok(Event::new().id_u64(n).data(format!("tick {n}")))
                },
            ));
            SseResponse::new(ticks)
        }
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "gRPC: grpc.health.v1.Health; SSE: GET /events\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The whole service: the layer around the dispatch.
pub(crate) fn app(grpc: Routes, sse: SseLayer, period: Duration) -> SseService<GrpcOrSse> {
    sse.layer(GrpcOrSse { grpc, period })
}

/// What to do when the server is asked to stop, before it stops accepting: every gRPC
/// health status to `NOT_SERVING`, then cleared, which ends the `Watch` streams.
pub(crate) async fn grpc_not_serving(health: &mut HealthReporter) {
    for service in ["", EVENTS_SERVICE] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        health.clear_service_status(service).await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (mut health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(EVENTS_SERVICE, ServingStatus::Serving)
        .await;

    let sse = SseLayer::new().heartbeat(Duration::from_secs(15));
    let streams = sse.shutdown_handle();
    let app = app(Routes::new(health_service), sse, Duration::from_secs(1));

    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000u16);
    let server = Server::bind(("127.0.0.1", port))
        .await?
        .streams(streams, Event::new().retry(Duration::from_secs(2)));
    println!("listening on http://{}", server.local_addr()?);
    let stop = async move {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
        grpc_not_serving(&mut health).await;
    };
    server.serve(app, stop).await
}
