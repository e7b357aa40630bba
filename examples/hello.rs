//! The smallest useful tower-sse server: a counter over hyper, one event per second.
//!
//! ```sh
//! cargo run --example hello
//! curl -N http://127.0.0.1:3000/          # events
//! curl -N -H 'Last-Event-ID: 41' http://127.0.0.1:3000/   # resumes at 42
//! ```

use std::{convert::Infallible, time::Duration};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio_stream::{wrappers::IntervalStream, Stream, StreamExt};
use tower::ServiceBuilder;
use tower_sse::{Event, LastEventId, SseLayer, SseResponse};

async fn handler(
    req: Request<Incoming>,
) -> Result<SseResponse<impl Stream<Item = Result<Event, Infallible>> + Send>, Infallible> {
    if req.uri().path() != "/" {
        let not_found = Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(String::from("not found\n"))
            .unwrap_or_default();
        return Ok(SseResponse::other(not_found));
    }
    let after: u64 = req
        .extensions()
        .get::<LastEventId>()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    Ok(SseResponse::new(counter(after)))
}

fn counter(after: u64) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let mut n = after;
    IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).map(move |_| {
        n += 1;
        Ok(Event::new().id_u64(n).data(format!("tick {n}")))
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let svc = ServiceBuilder::new()
        .layer(SseLayer::new().heartbeat(Duration::from_secs(15)))
        .service_fn(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let svc = TowerToHyperService::new(svc.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
