//! gRPC (tonic 0.14) and SSE on one port, composed as in `examples/tonic.rs`: tonic's
//! `Routes` as an axum `Router`, merged with an SSE route under `SseLayer`, served by
//! `axum::serve` (HTTP/1.1 and h2c). Real clients: tonic's `Channel` with the generated
//! `grpc.health.v1` client, reqwest + eventsource-stream for SSE.
#![cfg(feature = "axum")]

use std::{
    convert::Infallible,
    future::{Future, IntoFuture},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Body,
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use eventsource_stream::Eventsource;
use futures_util::{future::join_all, stream::BoxStream, StreamExt};
use tokio::{sync::oneshot, task::JoinHandle};
use tokio_stream::{wrappers::IntervalStream, Stream};
use tonic::{service::Routes, transport::Channel, Code, Streaming};
use tonic_health::{
    pb::{
        health_check_response::ServingStatus as Wire, health_client::HealthClient,
        HealthCheckRequest, HealthCheckResponse,
    },
    server::{health_reporter, HealthReporter},
    ServingStatus,
};
use tower_sse::{Event, LastEventId, ShutdownHandle, SseLayer, SseResponse, SseStats};

const EVENTS_SERVICE: &str = "tower_sse.Events";
const WAIT: Duration = Duration::from_secs(5);

/// Every wait in these tests is bounded.
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

// ---- the server: the example's composition, with a faster tick ----

fn events(
    last: Option<LastEventId>,
    period: Duration,
) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut n: u64 = last.and_then(|id| id.parse().ok()).unwrap_or(0);
    let ticks = IntervalStream::new(tokio::time::interval(period)).map(move |_| {
        n += 1;
        let event = Event::new().data(format!("tick {n}"));
        Ok(event.clone().id(n.to_string()).unwrap_or(event))
    });
    SseResponse::new(ticks)
}

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

fn app(grpc: Routes, sse: SseLayer, period: Duration) -> Router {
    let sse_routes = Router::new()
        .route(
            "/events",
            get(move |last: Option<LastEventId>| async move { events(last, period) }),
        )
        .route_layer(sse);
    grpc.into_axum_router()
        .merge(sse_routes)
        .route("/", get(|| async { "index" }))
        .fallback(fallback)
}

struct Server {
    addr: SocketAddr,
    health: HealthReporter,
    sse: ShutdownHandle,
    stats: SseStats,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start() -> Self {
        let (health, health_service) = health_reporter();
        health
            .set_service_status(EVENTS_SERVICE, ServingStatus::Serving)
            .await;
        let layer = SseLayer::new().heartbeat(Duration::from_millis(200));
        let (sse, stats) = (layer.shutdown_handle(), layer.stats());
        let app = app(
            Routes::new(health_service),
            layer,
            Duration::from_millis(20),
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Self {
            addr,
            health,
            sse,
            stats,
            stop: Some(stop),
            served,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn grpc(&self) -> HealthClient<Channel> {
        let channel = within(
            "gRPC connect",
            Channel::from_shared(self.url("")).unwrap().connect(),
        )
        .await
        .unwrap();
        HealthClient::new(channel)
    }

    /// The example's ctrl-c sequence.
    async fn shut_down(&mut self) {
        for service in ["", EVENTS_SERVICE] {
            self.health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
            self.health.clear_service_status(service).await;
        }
        self.sse
            .shutdown_with(Event::new().retry(Duration::from_secs(2)));
        let _ = self.stop.take().unwrap().send(());
    }
}

async fn check(client: &mut HealthClient<Channel>, service: &str) -> Result<Wire, tonic::Status> {
    let req = HealthCheckRequest {
        service: service.into(),
    };
    let res = within("gRPC Check", client.check(req)).await?;
    Ok(res.into_inner().status())
}

async fn next_status(watch: &mut Streaming<HealthCheckResponse>) -> Wire {
    within("Watch update", watch.message())
        .await
        .unwrap()
        .expect("Watch open")
        .status()
}

// ---- the SSE client ----

fn http1() -> reqwest::Client {
    reqwest::Client::new()
}

fn h2c() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

type Events = BoxStream<
    'static,
    Result<eventsource_stream::Event, eventsource_stream::EventStreamError<reqwest::Error>>,
>;

struct Sse {
    version: reqwest::Version,
    events: Events,
    /// Every byte received, for what eventsource-stream does not surface (`retry:`).
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Sse {
    async fn open(client: &reqwest::Client, url: String, last: Option<&str>) -> Self {
        let mut req = client.get(url);
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        let res = within("SSE response head", req.send()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let version = res.version();
        let raw = Arc::new(Mutex::new(Vec::new()));
        let tee = raw.clone();
        let events = res
            .bytes_stream()
            .inspect(move |chunk| {
                if let Ok(chunk) = chunk {
                    tee.lock().unwrap().extend_from_slice(chunk);
                }
            })
            .eventsource()
            .boxed();
        Self {
            version,
            events,
            raw,
        }
    }

    async fn take(&mut self, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let event = within("SSE event", self.events.next())
                .await
                .expect("stream open")
                .unwrap();
            out.push((event.id, event.data));
        }
        out
    }

    /// Reads to the end; the events left and every byte received.
    async fn finish(mut self) -> (Vec<(String, String)>, String) {
        let mut rest = Vec::new();
        while let Some(event) = within("SSE end", self.events.next()).await {
            let event = event.unwrap();
            rest.push((event.id, event.data));
        }
        let raw = String::from_utf8(self.raw.lock().unwrap().clone()).unwrap();
        (rest, raw)
    }
}

fn ticks(ids: std::ops::RangeInclusive<u64>) -> Vec<(String, String)> {
    ids.map(|n| (n.to_string(), format!("tick {n}"))).collect()
}

// ---- tests ----

#[tokio::test]
async fn one_port_serves_grpc_health_and_sse_events() {
    let server = Server::start().await;

    let mut grpc = server.grpc().await;
    assert_eq!(check(&mut grpc, "").await.unwrap(), Wire::Serving);
    assert_eq!(
        check(&mut grpc, EVENTS_SERVICE).await.unwrap(),
        Wire::Serving
    );
    let unknown = check(&mut grpc, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut sse = Sse::open(&http1(), server.url("/events"), None).await;
    assert_eq!(sse.version, reqwest::Version::HTTP_11);
    assert_eq!(sse.take(3).await, ticks(1..=3));

    // SSE over h2c, as gRPC uses, resuming after Last-Event-ID.
    let mut sse2 = Sse::open(&h2c(), server.url("/events"), Some("7")).await;
    assert_eq!(sse2.version, reqwest::Version::HTTP_2);
    assert_eq!(sse2.take(3).await, ticks(8..=10));
    assert_eq!(server.sse.open_streams(), 2);
    assert_eq!(server.stats.streams_opened(), 2);

    // Plain routes pass the layer by; unknown paths: 404 for HTTP, UNIMPLEMENTED for gRPC.
    let res = within("GET /", http1().get(server.url("/")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "index");
    let res = within("GET /nope", http1().get(server.url("/nope")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = within(
        "gRPC call to an unknown service",
        h2c()
            .post(server.url("/no.Such/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8; 5])
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.headers()["grpc-status"], "12");
}

#[tokio::test]
async fn grpc_calls_succeed_while_sse_streams_are_open() {
    let server = Server::start().await;
    let grpc = server.grpc().await;
    let mut h1 = Sse::open(&http1(), server.url("/events"), None).await;
    let mut h2 = Sse::open(&h2c(), server.url("/events"), Some("100")).await;
    assert_eq!(h1.take(1).await, ticks(1..=1));
    assert_eq!(h2.take(1).await, ticks(101..=101));

    // The SSE streams keep flowing while gRPC calls come and go, concurrently.
    let calls = async {
        for _ in 0..5 {
            let batch = join_all((0..10).map(|i| {
                let mut grpc = grpc.clone();
                async move {
                    let service = if i % 2 == 0 { "" } else { EVENTS_SERVICE };
                    check(&mut grpc, service).await
                }
            }))
            .await;
            for status in batch {
                assert_eq!(status.unwrap(), Wire::Serving);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let (got1, got2, ()) = tokio::join!(h1.take(10), h2.take(10), calls);
    assert_eq!(got1, ticks(2..=11));
    assert_eq!(got2, ticks(102..=111));
    assert_eq!(server.sse.open_streams(), 2);

    // And the other way round: closing an SSE stream leaves gRPC alone.
    drop(h1);
    within("the closed stream is unregistered", async {
        while server.sse.open_streams() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(check(&mut grpc.clone(), "").await.unwrap(), Wire::Serving);
    assert_eq!(h2.take(1).await, ticks(112..=112));
}

#[tokio::test]
async fn grpc_watch_stream_alongside_an_sse_stream() {
    let server = Server::start().await;
    let mut grpc = server.grpc().await;
    let watch = HealthCheckRequest {
        service: EVENTS_SERVICE.into(),
    };
    let mut watch = within("gRPC Watch", grpc.watch(watch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, Wire::Serving);

    let mut sse = Sse::open(&http1(), server.url("/events"), None).await;
    assert_eq!(sse.take(2).await, ticks(1..=2));

    server
        .health
        .set_service_status(EVENTS_SERVICE, ServingStatus::NotServing)
        .await;
    assert_eq!(next_status(&mut watch).await, Wire::NotServing);
    assert_eq!(sse.take(2).await, ticks(3..=4));

    // Ending the SSE streams leaves the gRPC stream open.
    server
        .sse
        .shutdown_with(Event::new().retry(Duration::from_millis(1500)));
    let (_, raw) = sse.finish().await;
    assert!(raw.ends_with("\n\nretry: 1500\n\n"), "{raw:?}");
    within("SSE streams closed", server.sse.wait_closed()).await;

    server
        .health
        .set_service_status(EVENTS_SERVICE, ServingStatus::Serving)
        .await;
    assert_eq!(next_status(&mut watch).await, Wire::Serving);
    assert_eq!(check(&mut grpc, "").await.unwrap(), Wire::Serving);

    // A stream opened after the layer's shutdown ends at once, with the last event.
    let late = Sse::open(&http1(), server.url("/events"), None).await;
    let (events, raw) = late.finish().await;
    assert_eq!(events, []);
    assert_eq!(raw, "retry: 1500\n\n");
}

#[tokio::test]
async fn graceful_shutdown_ends_sse_and_watch_streams_and_stops_the_server() {
    let mut server = Server::start().await;
    let mut grpc = server.grpc().await;
    let mut watch = within("gRPC Watch", grpc.watch(HealthCheckRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, Wire::Serving);
    let mut h1 = Sse::open(&http1(), server.url("/events"), None).await;
    let mut h2 = Sse::open(&h2c(), server.url("/events"), None).await;
    assert_eq!(h1.take(2).await, ticks(1..=2));
    assert_eq!(h2.take(2).await, ticks(1..=2));

    server.shut_down().await;

    // The gRPC watcher hears NOT_SERVING, then its stream ends with status OK.
    assert_eq!(next_status(&mut watch).await, Wire::NotServing);
    let end = within("Watch end", watch.message()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    // The SSE streams end after the retry hint.
    for sse in [h1, h2] {
        let (_, raw) = sse.finish().await;
        assert!(raw.ends_with("\n\nretry: 2000\n\n"), "{raw:?}");
    }
    within("SSE streams closed", server.sse.wait_closed()).await;

    // Nothing holds the graceful shutdown, though the gRPC client is still connected.
    within("server stopped", &mut server.served)
        .await
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
    drop(grpc);
}
