//! The shed answer and the per-key cap over a real hyper server: a stream over a
//! `StreamLimit::shed` or `PerKeyLimit::shed` cap gets `200`, the SSE headers, exactly
//! one jittered `retry:` of at least 1000 ms and the end (what `EventSource` honours
//! by coming back); the per-key cap counts per key, frees a place when a stream ends
//! or its client leaves, and keeps no entry for a key without an open stream;
//! `reject` still answers `503`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use futures_util::StreamExt;
use http::{request::Parts, Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use support::{
    client::{h2_client, http_client, Chunk, Head, RawClient},
    wait_until,
    wire::{concat, parse_all},
    within,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::{wrappers::WatchStream, Stream};
use tower::{ServiceBuilder, ServiceExt as _};
use tower_sse::{limit, Event, PerKeyLimit, SseLayer, SseResponse, SseStats, StreamLimit};

/// A server on `127.0.0.1:0`, stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `data: open`, then stays open until the test's switch turns true.
struct Open {
    sent: bool,
    ends: WatchStream<bool>,
}

impl Stream for Open {
    type Item = Result<Event, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Event::new().data("open"))));
        }
        loop {
            match ready!(self.ends.poll_next_unpin(cx)) {
                Some(false) => continue,
                Some(true) | None => return Poll::Ready(None),
            }
        }
    }
}

/// The handler: `/open` streams an [`Open`]; `/health` is not SSE.
fn handler(ends: &watch::Receiver<bool>, req: &Request<Incoming>) -> SseResponse<Open> {
    if req.uri().path() == "/health" {
        return SseResponse::other(http::Response::new(String::from("ok\n")));
    }
    SseResponse::new(Open {
        sent: false,
        ends: WatchStream::new(ends.clone()),
    })
}

/// Serves `layer` over [`handler`], putting each connection's peer address into
/// its requests' extensions (as the demo does), so that `limit::client_ip` finds it.
async fn server(layer: SseLayer) -> (TestServer, SseStats, watch::Sender<bool>) {
    let stats = layer.stats();
    let (end, ends) = watch::channel(false);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |req: Request<Incoming>| {
            let res = handler(&ends, &req);
            async move { Ok::<_, Infallible>(res) }
        });
    let task = tokio::spawn(async move {
        let http = auto::Builder::new(TokioExecutor::new());
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let svc = svc.clone();
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer);
                svc.clone().oneshot(req)
            });
            let conn = http.serve_connection(TokioIo::new(tcp), svc).into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    (TestServer { addr, task }, stats, end)
}

/// A key from the `x-user` header.
fn user(req: &Parts) -> Option<String> {
    let user = req.headers.get("x-user")?;
    user.to_str().ok().map(str::to_owned)
}

/// A raw HTTP/1.1 request for `/open` (as `x-user: who`, if any), its head read.
async fn open_raw(server: &TestServer, who: Option<&str>) -> (RawClient, Head) {
    let mut client = RawClient::connect(server.addr).await;
    let headers: Vec<(&str, &str)> = who.map(|who| ("x-user", who)).into_iter().collect();
    client.get("/open", &headers).await;
    let head = client.read_head().await;
    (client, head)
}

/// Opens a stream that the server keeps open, checking that its first event came.
async fn open_stream(server: &TestServer, who: Option<&str>) -> RawClient {
    let (mut client, head) = open_raw(server, who).await;
    assert_eq!(head.status, 200);
    match within("the first event", client.read_chunk()).await {
        Chunk::Data(data) => assert_eq!(data, b"data: open\n\n"),
        other => panic!("expected the first event, got {other:?}"),
    }
    client
}

/// Reads a shed answer off the wire: its head, then exactly `retry: R\n\n` and the
/// end of a chunked body. Returns `R` in ms.
async fn read_shed(client: &mut RawClient, head: &Head) -> u64 {
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.get("content-type"), Some("text/event-stream"));
    assert_eq!(head.get("cache-control"), Some("no-cache, no-transform"));
    assert_eq!(head.get("x-accel-buffering"), Some("no"));
    assert_eq!(head.get("content-length"), None, "{head:?}");
    assert_eq!(head.get("transfer-encoding"), Some("chunked"));
    let (chunks, end) = within("the shed body", client.read_to_end()).await;
    assert_eq!(end, Chunk::End, "the shed answer must end cleanly");
    let body = String::from_utf8(concat(&chunks)).unwrap();
    let ms = body
        .strip_prefix("retry: ")
        .and_then(|rest| rest.strip_suffix("\n\n"))
        .unwrap_or_else(|| panic!("not one retry field: {body:?}"));
    assert!(ms.bytes().all(|b| b.is_ascii_digit()), "{body:?}");
    let ms: u64 = ms.parse().unwrap();
    assert!(ms >= 1000, "retry under a second: {ms}");
    // What an SSE client makes of it: no event to dispatch (a `retry:` alone sets the
    // reconnection time; eventsource-stream drops it with the empty event, a browser
    // keeps it: tests/browser/shed.test.mjs), and a clean end.
    assert!(parse_all(concat(&chunks)).await.is_empty());
    ms
}

#[tokio::test]
async fn a_stream_over_the_cap_gets_200_one_retry_of_at_least_a_second_and_the_end() {
    let (server, stats, _end) = server(SseLayer::new().max_streams(StreamLimit::shed(1))).await;
    let _held = open_stream(&server, None).await;

    let (mut shed, head) = open_raw(&server, None).await;
    let ms = read_shed(&mut shed, &head).await;
    assert!(
        (2000..10_000).contains(&ms),
        "default range 2 to 10 s: {ms}"
    );
    assert_eq!(stats.streams_shed(), 1);
    assert_eq!(stats.streams_rejected(), 0);
    assert_eq!((stats.open_streams(), stats.streams_opened()), (1, 1));
    // The connection stays usable: a request that is not SSE is not capped.
    shed.send(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(shed.read_head().await.status, 200);
}

#[tokio::test]
async fn the_shed_answer_over_http2_has_no_content_length_and_parses_to_one_retry() {
    let layer = SseLayer::new().max_streams(StreamLimit::shed(0));
    let (server, stats, _end) = server(layer).await;
    let res = within("h2 shed", h2_client().get(server.url("/open")).send())
        .await
        .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    assert!(res.headers().get("content-length").is_none());
    let body = within("h2 shed body", res.bytes()).await.unwrap();
    let ms: u64 = std::str::from_utf8(&body)
        .ok()
        .and_then(|body| {
            body.strip_prefix("retry: ")?
                .strip_suffix("\n\n")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("not one retry field: {body:?}"));
    assert!(ms >= 1000, "{ms}");
    assert!(parse_all(body.to_vec()).await.is_empty());
    assert_eq!(stats.streams_shed(), 1);
}

#[tokio::test]
async fn consecutive_sheds_spread_their_retries_over_the_configured_range() {
    let limit =
        StreamLimit::shed(0).retry(Duration::from_millis(1000)..Duration::from_millis(3000));
    let (server, _stats, _end) = server(SseLayer::new().max_streams(limit)).await;
    let mut retries = Vec::new();
    for _ in 0..16 {
        let (mut client, head) = open_raw(&server, None).await;
        retries.push(read_shed(&mut client, &head).await);
    }
    assert!(
        retries.iter().all(|ms| (1000..3000).contains(ms)),
        "{retries:?}"
    );
    let mut sorted = retries.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        16,
        "16 sheds, 16 different retries: {retries:?}"
    );
    // Spread over the range, not bunched: 16 values over 2 s leave no gap of 600 ms.
    let widest = sorted.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(widest < 600, "{sorted:?}");
}

#[tokio::test]
async fn a_retry_range_under_a_second_is_raised_to_one_second() {
    let limit = StreamLimit::shed(0).retry(Duration::from_millis(10)..Duration::from_millis(20));
    let (server, _stats, _end) = server(SseLayer::new().max_streams(limit)).await;
    let (mut client, head) = open_raw(&server, None).await;
    assert_eq!(read_shed(&mut client, &head).await, 1000);
}

#[tokio::test]
async fn the_per_key_cap_counts_each_key_apart_and_frees_a_place_when_a_stream_ends() {
    let per_user = PerKeyLimit::shed(2, user);
    let layer = SseLayer::new().max_streams_per_key(per_user.clone());
    let (server, stats, end) = server(layer).await;

    let _a1 = open_stream(&server, Some("a")).await;
    let _a2 = open_stream(&server, Some("a")).await;
    let (mut a3, head) = open_raw(&server, Some("a")).await;
    read_shed(&mut a3, &head).await;
    // Another key has its own places; a request without a key is not capped.
    let _b1 = open_stream(&server, Some("b")).await;
    let _anon = [
        open_stream(&server, None).await,
        open_stream(&server, None).await,
        open_stream(&server, None).await,
    ];
    assert_eq!(per_user.keys(), 2);
    assert_eq!((stats.open_streams(), stats.streams_shed()), (6, 1));

    // Every source ends: the streams end, their places are given back, and no key
    // is left in the map.
    end.send(true).unwrap();
    wait_until("every stream to end", || stats.open_streams() == 0).await;
    assert_eq!(per_user.keys(), 0);
    end.send(false).unwrap();
    let _a4 = open_stream(&server, Some("a")).await;
    let _a5 = open_stream(&server, Some("a")).await;
    assert_eq!(per_user.keys(), 1);
}

#[tokio::test]
async fn a_client_that_leaves_gives_its_place_back_and_its_key_leaves_the_map() {
    let per_user = PerKeyLimit::shed(1, user);
    let layer = SseLayer::new().max_streams_per_key(per_user.clone());
    let (server, stats, _end) = server(layer).await;

    let a1 = open_stream(&server, Some("a")).await;
    let (mut a2, head) = open_raw(&server, Some("a")).await;
    read_shed(&mut a2, &head).await;
    assert_eq!(per_user.keys(), 1);

    drop(a1);
    wait_until("the server to see the client leave", || {
        stats.open_streams() == 0
    })
    .await;
    assert_eq!(per_user.keys(), 0);
    let _a3 = open_stream(&server, Some("a")).await;
    assert_eq!(per_user.keys(), 1);
}

#[tokio::test]
async fn client_ip_caps_streams_per_peer_address() {
    let per_client = PerKeyLimit::shed(1, limit::client_ip);
    let layer = SseLayer::new().max_streams_per_key(per_client.clone());
    let (server, stats, _end) = server(layer).await;
    let client = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        reqwest::Client::builder()
            .no_proxy()
            .local_address(ip)
            .build()
            .unwrap()
    };
    let (one, two) = (client("127.0.0.1"), client("127.0.0.2"));
    let url = server.url("/open");

    let held = within("first stream", one.get(&url).send()).await.unwrap();
    let mut held = held.bytes_stream();
    assert_eq!(
        &within("event", held.next()).await.unwrap().unwrap()[..],
        b"data: open\n\n"
    );
    // The same address again: shed. Another address: its own place.
    let shed = within("shed", one.get(&url).send()).await.unwrap();
    assert_eq!(shed.status(), StatusCode::OK);
    let body = within("shed body", shed.bytes()).await.unwrap();
    assert!(body.starts_with(b"retry: "), "{body:?}");
    let other = within("other address", two.get(&url).send()).await.unwrap();
    let mut other = other.bytes_stream();
    assert_eq!(
        &within("event", other.next()).await.unwrap().unwrap()[..],
        b"data: open\n\n"
    );
    assert_eq!((per_client.keys(), stats.streams_shed()), (2, 1));

    drop((held, other));
    wait_until("both streams to end", || stats.open_streams() == 0).await;
    assert_eq!(per_client.keys(), 0);
}

#[tokio::test]
async fn both_caps_apply_and_a_shed_takes_no_place_under_either() {
    let per_user = PerKeyLimit::shed(1, user);
    let layer = SseLayer::new()
        .max_streams(StreamLimit::shed(2))
        .max_streams_per_key(per_user.clone());
    let (server, stats, _end) = server(layer).await;
    let _a = open_stream(&server, Some("a")).await;
    let (mut a2, head) = open_raw(&server, Some("a")).await;
    read_shed(&mut a2, &head).await;
    let _b = open_stream(&server, Some("b")).await;
    // The layer's cap is reached: `c` is shed and holds no place under its key.
    let (mut c, head) = open_raw(&server, Some("c")).await;
    read_shed(&mut c, &head).await;
    assert_eq!((per_user.keys(), stats.streams_shed()), (2, 2));
}

#[tokio::test]
async fn reject_still_answers_503_for_clients_that_are_not_browsers() {
    let layer = SseLayer::new()
        .max_streams_per_key(PerKeyLimit::reject(1, user).retry_after(Duration::from_secs(9)));
    let (keyed, stats, _end) = server(layer).await;
    let _a = open_stream(&keyed, Some("a")).await;
    let (_a2, head) = open_raw(&keyed, Some("a")).await;
    assert_eq!(head.status, 503);
    assert_eq!(head.get("retry-after"), Some("9"));
    assert_eq!((stats.streams_rejected(), stats.streams_shed()), (1, 0));

    let layer = SseLayer::new().max_streams(StreamLimit::reject(0));
    let (global, stats, _end) = server(layer).await;
    let res = within("503", http_client().get(global.url("/open")).send())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "5");
    assert_eq!((stats.streams_rejected(), stats.streams_shed()), (1, 0));
}

/// A `SocketAddr` is what the server puts in the extensions; `client_ip` also takes
/// an `IpAddr`.
#[test]
fn client_ip_reads_a_socket_addr_or_an_ip_addr_from_the_extensions() {
    let mut req = Request::new(());
    assert_eq!(limit::client_ip(&Request::new(()).into_parts().0), None);
    let peer: SocketAddr = "[2001:db8::1]:4000".parse().unwrap();
    req.extensions_mut().insert(peer);
    assert_eq!(limit::client_ip(&req.into_parts().0), Some(peer.ip()));
    let mut req = Request::new(());
    req.extensions_mut().insert(IpAddr::from([192, 0, 2, 1]));
    assert_eq!(
        limit::client_ip(&req.into_parts().0),
        Some(IpAddr::from([192, 0, 2, 1]))
    );
}
