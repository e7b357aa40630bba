//! tower-sse on an axum 0.8 `Router`: handlers return `SseResponse`, the layer serves
//! the streaming routes, `Option<LastEventId>` resumes, and SIGINT ends open streams.
//!
//! ```sh
//! cargo run --example axum --features axum
//! curl -N http://127.0.0.1:3000/ticks
//! curl -N -H 'Last-Event-ID: 5' http://127.0.0.1:3000/ticks
//! ```

use std::{convert::Infallible, time::Duration};

use axum::{routing::get, Router};
use tokio_stream::{wrappers::IntervalStream, Stream, StreamExt};
use tower_sse::{Event, LastEventId, Overflow, SseLayer, SseResponse};

/// One event per second, numbered from where the client left off.
async fn ticks(
    last: Option<LastEventId>,
) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut n: u64 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
    let stream =
        IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).map(move |_| {
            n += 1;
            Ok(Event::new().id_u64(n).data(format!("tick {n}")))
        });
    SseResponse::new(stream)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let sse = SseLayer::new()
        .heartbeat(Duration::from_secs(15))
        .on_overflow(Overflow::DropOldest);
    let shutdown = sse.shutdown_handle();
    let app = Router::new()
        .route("/ticks", get(ticks))
        .route_layer(sse)
        .route("/", get(|| async { "try GET /ticks\n" }));

    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000u16);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Without this, axum's graceful shutdown would wait for the open streams forever.
            shutdown.shutdown_with(Event::new().retry(Duration::from_secs(2)));
        })
        .await
}
