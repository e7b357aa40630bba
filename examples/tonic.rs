//! gRPC and Server-Sent Events on one port: a tonic 0.14 service (`grpc.health.v1.Health`
//! from `tonic-health`) and an SSE route served by [`SseLayer`], side by side in one
//! axum 0.8 `Router`, served by `axum::serve` (HTTP/1.1 and cleartext HTTP/2 on the
//! same socket).
//!
//! ```sh
//! cargo run --example tonic --features axum     # PORT=3000
//! curl -N http://127.0.0.1:3000/events          # SSE over HTTP/1.1
//! curl -N --http2-prior-knowledge http://127.0.0.1:3000/events   # ... or over h2c
//! grpc-health-probe -addr=127.0.0.1:3000        # gRPC, if you have it
//! # no gRPC tool at hand? A raw Health/Check with curl; the answer ends in 08 01 (SERVING):
//! printf '\0\0\0\0\0' | curl -s --http2-prior-knowledge -H 'content-type: application/grpc' \
//!   -H 'te: trailers' --data-binary @- http://127.0.0.1:3000/grpc.health.v1.Health/Check | od -An -tx1
//! ```
//!
//! # How it fits together
//!
//! tonic 0.14's [`Routes`] is a thin wrapper around an axum 0.8 `Router` (one route per
//! gRPC service, `/{package.Service}/{*rest}`), and [`Routes::into_axum_router`] hands
//! it over. The SSE routes are an ordinary axum `Router` whose streaming routes get the
//! layer with `route_layer`, so gRPC responses never pass through it. `merge` joins
//! the two; since both sides are plain axum routers, anything axum can do (state,
//! middleware, more routes) works on either side.
//!
//! The alternatives:
//!
//! - a hand-written tower service that dispatches on `content-type: application/grpc`
//!   between tonic's `Routes` and an `SseLayer`-wrapped service: more code (a body type
//!   to unify, `poll_ready` of two services), and it redoes what the router does by
//!   path;
//! - tonic's own `Server` (`accept_http1(true)`, `add_routes(Routes::from(router))`)
//!   can serve the same merged router if you want its HTTP/2 and TCP settings; not
//!   exercised here.
//!
//! gRPC needs HTTP/2; clients such as tonic's `Channel` speak it in cleartext with
//! "prior knowledge" (h2c). `axum::serve` detects the HTTP/2 preface per connection
//! when axum's `http1` and `http2` features are both on; hyper-util's
//! `server::conn::auto::Builder` does the same if you run your own accept loop.
//!
//! # Shutdown
//!
//! `axum::serve`'s graceful shutdown stops accepting and then waits for every request
//! in flight, and neither an SSE stream nor a gRPC server-streaming call such as
//! `Watch` ends by itself. So on ctrl-c, before that wait:
//!
//! - the health reporter sets every status to `NOT_SERVING` and then clears it, which
//!   ends each `Watch` stream after it has delivered `NOT_SERVING`;
//! - the layer's [`ShutdownHandle`](tower_sse::ShutdownHandle) ends every open SSE
//!   stream after a `retry:` hint (and any stream that opens later at once).
//!
//! The wait is still bounded, for streaming calls of services that have no such
//! handle.
//!
//! Unknown paths: a gRPC request gets `UNIMPLEMENTED` (tonic's own fallback would
//! answer every non-gRPC request with an empty `200` too), anything else a `404`.

use std::{convert::Infallible, future::IntoFuture, time::Duration};

use axum::{
    body::Body,
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tokio_stream::{wrappers::IntervalStream, Stream, StreamExt};
use tonic::service::Routes;
use tonic_health::{server::health_reporter, ServingStatus};
use tower_sse::{Event, LastEventId, SseLayer, SseResponse};

/// The name under which the SSE feed reports its health over gRPC.
const EVENTS_SERVICE: &str = "tower_sse.Events";

/// One `tick` per second, numbered from where the client left off.
async fn events(
    last: Option<LastEventId>,
) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut n: u64 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
    let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).map(move |_| {
        n += 1;
        let event = Event::new().data(format!("tick {n}"));
        // Digits never contain a line break.
        Ok(event.clone().id(n.to_string()).unwrap_or(event))
    });
    SseResponse::new(ticks)
}

/// `UNIMPLEMENTED` for gRPC requests, `404` for everything else.
async fn fallback(headers: HeaderMap) -> Response {
    let grpc = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        tonic::Status::unimplemented("no such service").into_http::<Body>()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

/// gRPC services and SSE routes in one router.
fn app(grpc: Routes, sse: SseLayer) -> Router {
    let sse_routes = Router::new().route("/events", get(events)).route_layer(sse);
    grpc.into_axum_router()
        .merge(sse_routes)
        .route(
            "/",
            get(|| async { "gRPC: grpc.health.v1.Health; SSE: GET /events\n" }),
        )
        .fallback(fallback)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (mut health, health_service) = health_reporter();
    health
        .set_service_status(EVENTS_SERVICE, ServingStatus::Serving)
        .await;

    let sse = SseLayer::new().heartbeat(Duration::from_secs(15));
    let sse_shutdown = sse.shutdown_handle();
    let app = app(Routes::new(health_service), sse);

    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000u16);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );

    let _ = tokio::signal::ctrl_c().await;
    println!("shutting down");
    // gRPC: health watchers see NOT_SERVING, then their Watch streams end.
    for service in ["", EVENTS_SERVICE] {
        health
            .set_service_status(service, ServingStatus::NotServing)
            .await;
        health.clear_service_status(service).await;
    }
    // SSE: without this, the graceful shutdown would wait for the open streams forever.
    sse_shutdown.shutdown_with(Event::new().retry(Duration::from_secs(2)));
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(served) => served?,
        Err(_) => {
            eprintln!("requests still open after 10 s; exiting anyway");
            Ok(())
        }
    }
}
