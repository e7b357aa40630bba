//! The demo server (`examples/demo.rs`) running twice on two ports, sharing one Redis
//! through `REDIS_URL`: an event published on instance A (`POST /publish`) arrives on
//! `/fanout` of instance B.
//!
//! The test starts its own `redis-server` (Debian's package, installed by
//! `scripts/test.sh`; `REDIS_SERVER_BIN` names another binary) on a free loopback
//! port, builds the example with `cargo build --example demo --features redis` in the
//! profile of this test binary, and starts it twice with `REDIS_URL` set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    process::{Child, Command},
};

/// Patience for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(10);

/// A `redis-server` child on a free loopback port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    async fn start() -> Self {
        let binary =
            std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let dir = std::env::temp_dir().join(format!("tower-sse-redis-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the redis directory");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let mut child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .arg("--dir")
                .arg(&dir)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|err| {
                    panic!(
                        "cannot run {binary:?} ({err}): install Debian's redis-server \
                         (scripts/test.sh does) or set REDIS_SERVER_BIN"
                    )
                });
            let deadline = Instant::now() + WAIT;
            loop {
                if child.try_wait().expect("redis-server status").is_some() {
                    break; // the port was taken meanwhile: try another
                }
                if ping(port).await {
                    return Self { child, port, dir };
                }
                assert!(
                    Instant::now() < deadline,
                    "redis-server did not answer in time"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        tcp.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[path = "support/demo.rs"]
mod demo;

/// The demo on Redis `url`, with quiet ticks: only what the test publishes matters.
async fn demo_on(url: &str) -> demo::Demo {
    demo::Demo::start_with(&[("REDIS_URL", url), ("FANOUT_MS", "86400000")]).await
}

#[tokio::test]
async fn publish_on_one_demo_instance_arrives_on_the_fanout_of_the_other() {
    let redis = Redis::start().await;
    let (a, b) = (demo_on(&redis.url()).await, demo_on(&redis.url()).await);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let res = tokio::time::timeout(WAIT, client.get(b.url("/fanout")).send())
        .await
        .expect("response headers in time")
        .expect("GET /fanout on B");
    assert_eq!(res.status(), 200);
    let mut events = res.bytes_stream().eventsource();

    // B's subscription is in place once its response headers arrived.
    let message = format!("hello from A {}", std::process::id());
    let res = tokio::time::timeout(
        WAIT,
        client.post(a.url("/publish")).body(message.clone()).send(),
    )
    .await
    .expect("POST /publish in time")
    .expect("POST /publish on A");
    assert_eq!(res.status(), 204, "POST /publish on A");

    let arrived = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(Ok(event)) if event.data == message => break event,
                Some(Ok(_tick)) => {}
                Some(Err(err)) => panic!("reading B's /fanout: {err}"),
                None => panic!("B's /fanout ended"),
            }
        }
    })
    .await
    .expect(
        "the event published on A did not arrive on B's /fanout within 10 s: \
         does the demo use Hub::redis when REDIS_URL is set?",
    );
    // A Redis stream id (`<ms>-<seq>`), the same on every instance.
    let (ms, seq) = arrived.id.split_once('-').expect("a Redis stream id");
    assert!(
        ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(),
        "{arrived:?}"
    );
}
