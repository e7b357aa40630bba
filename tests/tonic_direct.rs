//! `examples/tonic_direct.rs` itself (its `app`, compiled in here): `SseLayer` wrapping
//! a tower service that sends gRPC to tonic's `Routes` and the rest to an SSE handler,
//! served by `tower_sse::server::Server`. Real clients on the one port: tonic's
//! `Channel` with the generated `grpc.health.v1` client, and reqwest (HTTP/1.1 and
//! h2c) read by `test_util::SseReader`.
#![cfg(all(feature = "server", feature = "test-util"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../examples/tonic_direct.rs"]
#[allow(dead_code)]
mod example;

use std::{net::SocketAddr, time::Duration};

use example::EVENTS_SERVICE;
use futures_util::future::join_all;
use support::{
    client::{h2_client, http_client},
    wait_until, within,
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{service::Routes, transport::Channel, Code, Streaming};
use tonic_health::{
    pb::{
        health_check_response::ServingStatus as Wire, health_client::HealthClient,
        HealthCheckRequest, HealthCheckResponse,
    },
    server::{health_reporter, HealthReporter},
    ServingStatus,
};
use tower_sse::{
    server::Server,
    test_util::{MessageEvent, SseReader},
    Event, ShutdownHandle, SseLayer, SseStats,
};

struct Running {
    addr: SocketAddr,
    health: HealthReporter,
    streams: ShutdownHandle,
    stats: SseStats,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
}

/// The example's `main`, on a free port, with a 20 ms tick and a 200 ms heartbeat.
async fn start() -> Running {
    let (health, health_service) = health_reporter();
    health
        .set_service_status(EVENTS_SERVICE, ServingStatus::Serving)
        .await;
    let sse = SseLayer::new().heartbeat(Duration::from_millis(200));
    let (streams, stats) = (sse.shutdown_handle(), sse.stats());
    let app = example::app(Routes::new(health_service), sse, Duration::from_millis(20));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener)
        .streams(streams.clone(), Event::new().retry(Duration::from_secs(2)));
    let (stop, stopped) = oneshot::channel::<()>();
    let mut reporter = health.clone();
    let served = tokio::spawn(server.serve(app, async move {
        let _ = stopped.await;
        example::grpc_not_serving(&mut reporter).await;
    }));
    Running {
        addr,
        health,
        streams,
        stats,
        stop: Some(stop),
        served,
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn grpc(&self) -> HealthClient<Channel> {
        let channel = Channel::from_shared(self.url("")).unwrap();
        HealthClient::new(within("gRPC connect", channel.connect()).await.unwrap())
    }

    /// An SSE stream read by `SseReader`, after checking its version and head.
    async fn sse(
        &self,
        client: &reqwest::Client,
        last: Option<&str>,
    ) -> (reqwest::Version, SseReader<reqwest::Body>) {
        let mut req = client.get(self.url("/events"));
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        let res = within("SSE head", req.send()).await.unwrap();
        let version = res.version();
        (
            version,
            SseReader::from_response(http::Response::from(res)).unwrap(),
        )
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

fn ticks(ids: std::ops::RangeInclusive<u64>) -> Vec<MessageEvent> {
    ids.map(|n| MessageEvent::new(format!("tick {n}")).with_id(n.to_string()))
        .collect()
}

#[tokio::test]
async fn grpc_and_sse_share_one_port_and_grpc_passes_the_layer_untouched() {
    let server = start().await;

    let mut grpc = server.grpc().await;
    assert_eq!(check(&mut grpc, "").await.unwrap(), Wire::Serving);
    assert_eq!(
        check(&mut grpc, EVENTS_SERVICE).await.unwrap(),
        Wire::Serving
    );
    let unknown = check(&mut grpc, "no.such.Service").await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let (version, mut h1) = server.sse(&http_client(), None).await;
    assert_eq!(version, reqwest::Version::HTTP_11);
    assert_eq!(h1.collect(3).await.unwrap(), ticks(1..=3));
    // Over h2c, as gRPC uses, resuming after Last-Event-ID.
    let (version, mut h2) = server.sse(&h2_client(), Some("7")).await;
    assert_eq!(version, reqwest::Version::HTTP_2);
    assert_eq!(h2.collect(3).await.unwrap(), ticks(8..=10));
    // Only the SSE requests are the layer's streams: the gRPC calls are not counted.
    assert_eq!(server.stats.streams_opened(), 2);
    assert_eq!(server.streams.open_streams(), 2);

    // A gRPC response as tonic made it: no SSE header added, the status in trailers.
    let res = within(
        "gRPC call to an unknown method",
        h2_client()
            .post(server.url("/no.Such/Method"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(vec![0u8; 5])
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "12"); // UNIMPLEMENTED
    assert!(res.headers().get("x-accel-buffering").is_none());
    assert!(res.headers().get("cache-control").is_none());

    // Plain responses of the SSE side pass through too.
    let res = within("GET /", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-accel-buffering").is_none());
    assert!(res
        .text()
        .await
        .unwrap()
        .starts_with("gRPC: grpc.health.v1.Health"));
    let res = within("GET /nope", http_client().get(server.url("/nope")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(server.stats.streams_opened(), 2);
}

#[tokio::test]
async fn grpc_calls_and_a_watch_stream_run_while_sse_streams_flow() {
    let server = start().await;
    let grpc = server.grpc().await;
    let watch = HealthCheckRequest {
        service: EVENTS_SERVICE.into(),
    };
    let mut watch = within("gRPC Watch", grpc.clone().watch(watch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, Wire::Serving);
    let (_, mut h1) = server.sse(&http_client(), None).await;
    let (_, mut h2) = server.sse(&h2_client(), Some("100")).await;
    assert_eq!(h1.collect(1).await.unwrap(), ticks(1..=1));
    assert_eq!(h2.collect(1).await.unwrap(), ticks(101..=101));

    // 50 gRPC calls, 10 at a time, while both SSE streams go on.
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
        }
    };
    let (got1, got2, ()) = tokio::join!(h1.collect(10), h2.collect(10), calls);
    assert_eq!(got1.unwrap(), ticks(2..=11));
    assert_eq!(got2.unwrap(), ticks(102..=111));

    server
        .health
        .set_service_status(EVENTS_SERVICE, ServingStatus::NotServing)
        .await;
    assert_eq!(next_status(&mut watch).await, Wire::NotServing);
    assert_eq!(h1.collect(2).await.unwrap(), ticks(12..=13));

    // Closing an SSE stream leaves gRPC alone.
    drop(h1);
    wait_until("the closed stream is unregistered", || {
        server.streams.open_streams() == 1
    })
    .await;
    assert_eq!(check(&mut grpc.clone(), "").await.unwrap(), Wire::Serving);
    assert_eq!(h2.collect(1).await.unwrap(), ticks(112..=112));
}

#[tokio::test]
async fn shutdown_ends_the_watch_and_sse_streams_and_the_server_returns() {
    let mut server = start().await;
    let mut grpc = server.grpc().await;
    let mut watch = within("gRPC Watch", grpc.watch(HealthCheckRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, Wire::Serving);
    let (_, mut h1) = server.sse(&http_client(), None).await;
    let (_, mut h2) = server.sse(&h2_client(), None).await;
    assert_eq!(h1.collect(2).await.unwrap(), ticks(1..=2));
    assert_eq!(h2.collect(2).await.unwrap(), ticks(1..=2));

    server.stop.take().unwrap().send(()).unwrap();

    // The gRPC watcher hears NOT_SERVING, then its stream ends with status OK.
    assert_eq!(next_status(&mut watch).await, Wire::NotServing);
    let end = within("Watch end", watch.message()).await.unwrap();
    assert!(end.is_none(), "{end:?}");
    // The SSE streams end after the server's retry hint.
    for mut sse in [h1, h2] {
        let _ = sse.read_to_end().await.unwrap();
        assert_eq!(sse.retry(), Some(Duration::from_secs(2)));
    }
    within("server stopped", &mut server.served)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.streams.open_streams(), 0);
    drop(grpc);
}
