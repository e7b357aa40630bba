//! HTTPS (feature `tls`): `tower_sse::server::Server` with a self-signed certificate
//! made here (`rcgen`), read by hyper's clients over tokio-rustls. ALPN picks HTTP/2 or
//! HTTP/1.1 and both carry SSE; ten streams share one HTTP/2 connection; a connection
//! that never sends a ClientHello is closed at the request timeout, holds a place
//! under the connection cap until then, and disturbs no other connection; the PEM
//! loader names the file that is wrong.

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};
use http::{header, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{crypto::ring, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
};
use tokio_rustls::{client::TlsStream, TlsConnector};
use tower::Layer as _;
use tower_sse::{
    server::{tls_config_from_pem, RequestBody, Server, TlsError},
    Event, SseLayer, SseResponse,
};

use support::within;

type Events = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files in
/// a directory of its own (removed on drop).
struct SelfSigned {
    dir: PathBuf,
    cert: rustls::pki_types::CertificateDer<'static>,
}

impl SelfSigned {
    fn new(name: &str) -> Self {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        let dir = std::env::temp_dir().join(format!("tower-sse-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Self {
            dir,
            cert: made.cert.der().clone(),
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
}

impl Drop for SelfSigned {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A [`Server`] with TLS on `127.0.0.1:0` in a task: `/ticks` (an endless `tick` every
/// 20 ms, ids 1, 2, …) and anything else `200 ok`. Counts accepted connections; at
/// shutdown the streams end with `retry: 1000`.
struct Running {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    cert: SelfSigned,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<io::Result<()>>,
}

impl Running {
    async fn start(name: &str, configure: impl FnOnce(Server) -> Server) -> Self {
        let cert = SelfSigned::new(name);
        let config = tls_config_from_pem(cert.cert_path(), cert.key_path()).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let sse = SseLayer::new();
        let server = Server::bind("127.0.0.1:0")
            .await
            .unwrap()
            .streams(
                sse.shutdown_handle(),
                Event::new().retry(Duration::from_millis(1000)),
            )
            .tls(config)
            .on_accept(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
            });
        let server = configure(server);
        let addr = server.local_addr().unwrap();
        let app = sse.layer(tower::service_fn(|req: Request<RequestBody>| async move {
            Ok::<_, Infallible>(route(&req))
        }));
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(server.serve(app, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            accepted,
            cert,
            stop: Some(stop),
            done,
        }
    }

    /// A TLS connection offering `alpn`, trusting only the test's certificate.
    async fn connect(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.cert.clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = within("connect", TcpStream::connect(self.addr))
            .await
            .unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        within(
            "TLS handshake",
            TlsConnector::from(Arc::new(config)).connect(name, tcp),
        )
        .await
        .unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within("serve returns", self.done).await.unwrap().unwrap();
    }
}

fn route(req: &Request<RequestBody>) -> SseResponse<Events> {
    if req.uri().path() == "/ticks" {
        let mut n = 0u64;
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(
            Duration::from_millis(20),
        ))
        .map(move |_| {
            n += 1;
            Ok(Event::new()
                .id_u64(n)
                .data(n.to_string())
                .event("tick")
                .unwrap())
        });
        return SseResponse::new(Box::pin(ticks) as Events);
    }
    if req.uri().path() == "/endless" {
        // 1 KiB events, always ready: as fast as the connection takes them.
        let data = "x".repeat(1024);
        let events = futures_util::stream::repeat_with(move || Ok(Event::new().data(data.clone())));
        return SseResponse::new(Box::pin(events) as Events);
    }
    SseResponse::other(Response::new(Full::new(Bytes::from_static(b"ok\n"))))
}

/// What ALPN chose on `tls`.
fn alpn(tls: &TlsStream<TcpStream>) -> Option<&[u8]> {
    tls.get_ref().1.alpn_protocol()
}

/// A `GET` of `path` in the form both of hyper's clients accept.
fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("https://localhost{path}"))
        .header(header::ACCEPT, "text/event-stream")
        .body(Empty::new())
        .unwrap()
}

/// Checks the SSE headers and parses the first `n` events of `res` with a real SSE
/// parser (eventsource-stream), returning their `(id, event, data)`.
async fn first_events(res: Response<Incoming>, n: usize) -> Vec<(String, String, String)> {
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert_eq!(
        res.headers()[header::CACHE_CONTROL],
        "no-cache, no-transform"
    );
    let events = res.into_body().into_data_stream().eventsource().take(n);
    within("the first events", events.collect::<Vec<_>>())
        .await
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.id, e.event, e.data)
        })
        .collect()
}

fn ticks(range: std::ops::RangeInclusive<u64>) -> Vec<(String, String, String)> {
    range
        .map(|n| (n.to_string(), "tick".to_owned(), n.to_string()))
        .collect()
}

async fn h2_client(
    tls: TlsStream<TcpStream>,
) -> hyper::client::conn::http2::SendRequest<Empty<Bytes>> {
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn h1_client(
    tls: TlsStream<TcpStream>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

#[tokio::test]
async fn alpn_h2_serves_sse_over_http2() {
    let server = Running::start("h2", |s| s).await;
    let tls = server.connect(&[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn(&tls), Some(&b"h2"[..]), "the server prefers h2");
    let mut client = h2_client(tls).await;
    let res = within("response", client.send_request(get("/ticks")))
        .await
        .unwrap();
    assert_eq!(res.version(), Version::HTTP_2);
    assert_eq!(first_events(res, 3).await, ticks(1..=3));
    server.stop().await;
}

#[tokio::test]
async fn alpn_http1_or_none_serves_sse_over_http1() {
    let server = Running::start("h1", |s| s).await;
    for offer in [&[&b"http/1.1"[..]][..], &[]] {
        let tls = server.connect(offer).await;
        let chosen = alpn(&tls).map(<[u8]>::to_vec);
        assert_eq!(chosen, offer.first().map(|p| p.to_vec()));
        let mut client = h1_client(tls).await;
        let res = within("response", client.send_request(get("/ticks")))
            .await
            .unwrap();
        assert_eq!(res.version(), Version::HTTP_11);
        assert_eq!(res.headers()[header::TRANSFER_ENCODING], "chunked");
        assert_eq!(first_events(res, 3).await, ticks(1..=3));
    }
    server.stop().await;
}

/// Over TLS the server cannot see how much the socket takes (rustls holds its own
/// buffer), so it caps every frame at 12 KiB, below the layer's 64 KiB: a client that
/// stops reading holds one small frame. The client's body frames are at most the
/// server's chunks (hyper's decoder never joins two).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_http1_frames_are_at_most_12_kib() {
    let server = Running::start("h1", |s| s).await;
    let tls = server.connect(&[b"http/1.1"]).await;
    let mut client = h1_client(tls).await;
    let res = within("response", client.send_request(get("/endless")))
        .await
        .unwrap();
    assert_eq!(res.version(), Version::HTTP_11);
    let mut body = res.into_body();
    let (mut read, mut largest) = (0, 0);
    while read < 4 << 20 {
        let frame = within("a frame", body.frame()).await.unwrap().unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        read += data.len();
        largest = largest.max(data.len());
    }
    println!("largest body frame over TLS: {largest} bytes");
    assert!(largest <= 12 * 1024, "{largest} bytes");
    // Frames do fill up to the cap (not one event each).
    assert!(largest > 8 * 1024, "{largest} bytes");
    server.stop().await;
}

#[tokio::test]
async fn ten_streams_share_one_h2_connection() {
    let server = Running::start("ten", |s| s).await;
    let client = h2_client(server.connect(&[b"h2", b"http/1.1"]).await).await;
    // All ten open at once, each read while the others stay open.
    let mut streams = Vec::new();
    for _ in 0..10 {
        let mut client = client.clone();
        let res = within("response", client.send_request(get("/ticks")))
            .await
            .unwrap();
        assert_eq!(res.version(), Version::HTTP_2);
        streams.push(res);
    }
    let mut bodies = Vec::new();
    for res in streams {
        let mut events = res.into_body().into_data_stream().eventsource();
        let first = within("a first event", events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((first.id.as_str(), first.event.as_str()), ("1", "tick"));
        bodies.push(events);
    }
    // Every one of them goes on delivering while all ten are open.
    for events in &mut bodies {
        let next = within("a second event", events.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.data, "2");
    }
    assert_eq!(
        server.accepted.load(Ordering::SeqCst),
        1,
        "one TCP connection"
    );
    server.stop().await;
}

/// Reads until the server closes the connection (EOF or reset), returning the bytes.
async fn read_until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_connection_without_client_hello_is_closed_and_disturbs_no_other() {
    let server = Running::start("silent", |s| s.request_timeout(Duration::from_millis(300))).await;
    let started = std::time::Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Not TLS at all: a plain HTTP request on the HTTPS port.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Meanwhile a real client is served.
    let mut client = h2_client(server.connect(&[b"h2"]).await).await;
    let res = within("response", client.send_request(get("/ticks")))
        .await
        .unwrap();
    let mut events = res.into_body().into_data_stream().eventsource();

    let closed = within(
        "the silent connection is closed",
        read_until_closed(&mut silent),
    )
    .await;
    assert!(closed.is_empty(), "{closed:?}");
    eprintln!("silent connection closed after {:?}", started.elapsed());
    let answer = within(
        "the plain request's connection is closed",
        read_until_closed(&mut plain),
    )
    .await;
    // rustls answers garbage with at most a TLS alert, never HTTP.
    assert!(!answer.starts_with(b"HTTP"), "{answer:?}");

    // The TLS stream went on through all of it.
    for n in 1..=3 {
        let event = within("an event", events.next()).await.unwrap().unwrap();
        assert_eq!(event.id, n.to_string());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_handshake_in_progress_holds_a_place_under_the_connection_cap() {
    let server = Running::start("cap", |s| {
        s.max_connections(1)
            .request_timeout(Duration::from_millis(500))
    })
    .await;
    // The one place, taken by a connection that sends nothing.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    support::wait_until("the silent connection is accepted", || {
        server.accepted.load(Ordering::SeqCst) == 1
    })
    .await;
    // Past the cap: a TLS client still gets an answer (503 for a plain request).
    let mut client = h1_client(server.connect(&[b"http/1.1"]).await).await;
    let mut req = get("/health");
    req.headers_mut().remove(header::ACCEPT);
    let res = within("the answer past the cap", client.send_request(req))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);

    // Once the silent one is closed at its deadline, the place is free again.
    within(
        "the silent connection is closed",
        read_until_closed(&mut silent),
    )
    .await;
    let mut client = h1_client(server.connect(&[b"http/1.1"]).await).await;
    let res = within("response", client.send_request(get("/health")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok\n");
    server.stop().await;
}

#[test]
fn the_pem_loader_names_the_file_and_what_is_wrong() {
    let cert = SelfSigned::new("pem");
    let (cert_path, key_path) = (cert.cert_path(), cert.key_path());
    let other = SelfSigned::new("pem-other");

    let missing = cert.dir.join("missing.pem");
    let err = tls_config_from_pem(&missing, &key_path).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert_eq!(err.path(), missing);

    // The key file given as the certificate: no CERTIFICATE block in it.
    let err = tls_config_from_pem(&key_path, &key_path).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: no CERTIFICATE block", key_path.display())
    );

    let err = tls_config_from_pem(&cert_path, &cert_path).unwrap_err();
    assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
    assert_eq!(err.path(), cert_path);

    let broken = cert.dir.join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let err = tls_config_from_pem(&broken, &key_path).unwrap_err();
    assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
    assert_eq!(err.path(), broken);

    // A key that is not the certificate's.
    let err = tls_config_from_pem(&cert_path, other.key_path()).unwrap_err();
    assert!(matches!(err, TlsError::Rejected { .. }), "{err:?}");
    assert_eq!(err.path(), other.key_path());

    let config = tls_config_from_pem(&cert_path, &key_path).unwrap();
    assert_eq!(
        config.alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
}

#[tokio::test]
async fn graceful_shutdown_ends_the_streams_of_both_protocols() {
    let server = Running::start("shutdown", |s| s).await;
    let mut h2 = h2_client(server.connect(&[b"h2"]).await).await;
    let mut h1 = h1_client(server.connect(&[b"http/1.1"]).await).await;
    let h2_res = within("response", h2.send_request(get("/ticks"))).await;
    let h1_res = within("response", h1.send_request(get("/ticks"))).await;
    let mut bodies = Vec::new();
    for res in [h2_res, h1_res] {
        let mut body = res.unwrap().into_body();
        let first = within("the first frame", body.frame())
            .await
            .unwrap()
            .unwrap();
        assert!(first.into_data().unwrap().starts_with(b"id: 1\n"));
        bodies.push(body);
    }
    server.stop().await;
    for body in bodies {
        // The rest of the ticks, then the shutdown's `retry: 1000`, then a clean end.
        let rest = within("the end of the stream", body.collect())
            .await
            .unwrap();
        let text = String::from_utf8(rest.to_bytes().to_vec()).unwrap();
        let blocks = support::wire::blocks(&text);
        let last = *blocks.last().unwrap();
        assert_eq!(last, "retry: 1000", "{text:?}");
        let before = &blocks[..blocks.len() - 1];
        assert!(before.iter().all(|b| b.contains("event: tick")), "{text:?}");
    }
}

#[tokio::test]
async fn the_demo_refuses_half_a_tls_configuration_and_names_a_bad_file() {
    let bin = support::demo::demo_binary();
    let run = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(bin)
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env_remove("TLS_CERT")
            .env_remove("TLS_KEY")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        assert!(out.stdout.is_empty(), "no listening line: {out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let cert = SelfSigned::new("demo");
    let cert_path = cert.cert_path();
    let err = run(&[("TLS_CERT", cert_path.to_str().unwrap())]);
    assert!(err.contains("TLS_CERT and TLS_KEY go together"), "{err}");
    let missing = cert.dir.join("missing-key.pem");
    let err = run(&[
        ("TLS_CERT", cert_path.to_str().unwrap()),
        ("TLS_KEY", missing.to_str().unwrap()),
    ]);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
}
