//! A source stream that panics ends its own response cleanly, after the events it
//! yielded; the other streams, the connection task and the server go on. Checked
//! over a real hyper server, 50 streams at once, in direct and in pumped mode, with
//! what a client parses (`eventsource-stream`), the layer's counter and the log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use eventsource_stream::Eventsource as _;
use futures_util::{stream::BoxStream, StreamExt as _};
use http::Request;
use hyper::body::Incoming;
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_sse::{Event, SseLayer, SseResponse};

/// Streams at once.
const STREAMS: usize = 50;
/// Events per stream that does not panic.
const EVENTS: usize = 200;
/// Every `PANICKY`-th stream panics …
const PANICKY: usize = 10;
/// … after this many events.
const PANIC_AFTER: usize = 37;
/// Patience for the whole run.
const WAIT: Duration = Duration::from_secs(60);

/// What the test subscriber wrote.
fn log() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::ERROR)
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        log
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Events 0, 1, … of stream `n`, one poll apart (many frames, interleaved with the
/// other streams); `/panic/<tag>/<n>` panics at event `PANIC_AFTER`.
fn source(path: &str) -> BoxStream<'static, Result<Event, Infallible>> {
    let panics = path.starts_with("/panic/").then(|| path.to_owned());
    futures_util::stream::iter(0..EVENTS)
        .then(move |i| {
            let panics = panics.clone();
            async move {
                tokio::task::yield_now().await;
                if let Some(path) = panics.filter(|_| i == PANIC_AFTER) {
                    panic!("test source {path} panics");
                }
                Ok(Event::new().id(i.to_string()).unwrap().data("x"))
            }
        })
        .boxed()
}

/// Serves `layer` over HTTP/1.1 on an ephemeral port.
async fn serve(layer: SseLayer) -> SocketAddr {
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|req: Request<Incoming>| {
            let response = SseResponse::new(source(req.uri().path()));
            std::future::ready(Ok::<_, Infallible>(response))
        });
    serve_service(svc).await
}

async fn serve_service<S, B>(svc: S) -> SocketAddr
where
    S: tower::Service<Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(svc.clone()));
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    addr
}

/// The ids of the events a client parses from `url`; panics on a body that does
/// not end cleanly.
async fn ids(client: reqwest::Client, url: String) -> Vec<usize> {
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut events = res.bytes_stream().eventsource();
    let mut ids = Vec::new();
    while let Some(event) = events.next().await {
        let event = event.unwrap_or_else(|err| panic!("{url}: the body failed: {err}"));
        ids.push(event.id.parse().unwrap());
    }
    ids
}

/// 50 streams at once, every tenth panicking; then one more request.
async fn panics_end_only_their_stream(layer: SseLayer, tag: &str) {
    let log = log();
    let stats = layer.stats();
    let addr = serve(layer).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = |n: usize| {
        let kind = if n.is_multiple_of(PANICKY) {
            "panic"
        } else {
            "ok"
        };
        format!("http://{addr}/{kind}/{tag}/{n}")
    };
    let streams: Vec<_> = (0..STREAMS)
        .map(|n| tokio::spawn(ids(client.clone(), url(n))))
        .collect();
    let mut results = Vec::new();
    for stream in streams {
        results.push(tokio::time::timeout(WAIT, stream).await.unwrap().unwrap());
    }

    for (n, ids) in results.iter().enumerate() {
        let expected = if n % PANICKY == 0 {
            PANIC_AFTER
        } else {
            EVENTS
        };
        assert_eq!(*ids, (0..expected).collect::<Vec<_>>(), "stream {n}");
    }
    let panicked = STREAMS / PANICKY;
    assert_eq!(stats.source_panics(), panicked as u64);
    assert_eq!(stats.source_errors(), 0);
    assert_eq!(stats.open_streams(), 0);

    // The server still answers, on a new connection as on a kept-alive one.
    for client in [
        client,
        reqwest::Client::builder().no_proxy().build().unwrap(),
    ] {
        let after = ids(client, format!("http://{addr}/ok/{tag}/after")).await;
        assert_eq!(after.len(), EVENTS);
    }

    let log = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let logged = log
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("sse source panicked"))
        .filter(|line| line.contains(&format!("/panic/{tag}/")))
        .count();
    assert_eq!(logged, panicked, "one error logged per panic:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_ends_its_stream_only_in_direct_mode() {
    panics_end_only_their_stream(SseLayer::new(), "direct").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_ends_its_stream_only_in_pumped_mode() {
    // `Wait` with a stall timeout: a pump task per stream, and nothing dropped.
    let layer = SseLayer::new().stall_timeout(Duration::from_secs(600));
    panics_end_only_their_stream(layer, "pumped").await;
}
