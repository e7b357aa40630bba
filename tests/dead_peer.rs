//! A client that vanishes without a FIN is found: a client in a network namespace
//! (`ip netns`, a veth pair) opens a stream, which stays open while the link is up;
//! then its link goes down and the server drops the stream (by `TCP_USER_TIMEOUT` with
//! heartbeats, by keepalive without; without these options Linux would keep it for
//! about 15 minutes). The tests check that order; how long it took is printed, not
//! asserted (RELIABILITY.md records the figures).
//!
//! Needs root and iproute2 (scripts/test.sh installs it); fails, never skips, without
//! them. Run with `--nocapture` to see the figures.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    convert::Infallible,
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use futures_core::Stream;
use http::Request;
use tokio::sync::oneshot;
use tower::Layer as _;
use tower_sse::{
    server::{RequestBody, Server},
    Event, Heartbeat, SseLayer, SseResponse,
};

type Events = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

const USER_TIMEOUT: Duration = Duration::from_secs(3);
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(2), Duration::from_secs(1), 2);

/// A network namespace with a veth pair to this one; deleted on drop.
struct Netns {
    name: String,
    host_ip: String,
    peer_ip: String,
    peer_link: String,
}

impl Netns {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let subnet = 20 + (std::process::id() % 100) * 2 + n;
        let ns = Self {
            name: format!("tsse-dp-{id}"),
            host_ip: format!("10.201.{subnet}.1"),
            peer_ip: format!("10.201.{subnet}.2"),
            peer_link: format!("tsdp{id}b"),
        };
        let host_link = format!("tsdp{id}a");
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &host_link,
            "type",
            "veth",
            "peer",
            "name",
            &ns.peer_link,
        ]);
        ip(&["link", "set", &ns.peer_link, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_ip),
            "dev",
            &host_link,
        ]);
        ip(&["link", "set", &host_link, "up"]);
        ns.exec_ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.peer_ip),
            "dev",
            &ns.peer_link,
        ]);
        ns.exec_ip(&["link", "set", &ns.peer_link, "up"]);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// `curl -N url` inside the namespace, its output discarded.
    fn curl(&self, url: &str) -> Child {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.name,
                "curl",
                "-sN",
                "-o",
                "/dev/null",
                url,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("running curl in the namespace (is curl installed?)")
    }

    /// The client's link goes down: its packets are lost, nothing is sent to the server.
    fn cut(&self) {
        self.exec_ip(&["link", "set", &self.peer_link, "down"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `ip args`, failing the test if it cannot (not root, no iproute2).
fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("running `ip` (iproute2 is needed)");
    assert!(
        status.success(),
        "`ip {}` failed (root is needed)",
        args.join(" ")
    );
}

/// The longest the tests wait for the server to drop the stream: a bound against a
/// hang, far above the user timeout and keepalive set here, far below Linux's default.
const DROP_BOUND: Duration = Duration::from_secs(90);

/// Opens a stream from the namespace (heartbeats every `heartbeat`, or none), checks
/// that it stays open while the link is up, cuts the client's link and waits until the
/// server drops the stream; returns how long that took (for the log).
async fn time_to_drop(heartbeat: Option<Duration>) -> Duration {
    let ns = Netns::new();
    let sse = SseLayer::new();
    let streams = sse.shutdown_handle();
    let app = sse.layer(tower::service_fn(
        move |_req: Request<RequestBody>| async move {
            let events: Events = Box::pin(futures_util::stream::pending());
            let res = SseResponse::new(events);
            Ok::<_, Infallible>(match heartbeat {
                Some(every) => res.heartbeat(Heartbeat::new(every)),
                None => res.no_heartbeat(),
            })
        },
    ));
    let server = Server::bind((ns.host_ip.as_str(), 0))
        .await
        .unwrap()
        .tcp_user_timeout(Some(USER_TIMEOUT))
        .tcp_keepalive(Some(KEEPALIVE));
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(app, async {
        let _ = stopped.await;
    }));
    let mut curl = ns.curl(&format!("http://{addr}/"));
    wait_for(Duration::from_secs(10), || streams.open_streams() == 1).await;
    // Let a heartbeat or two go through first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(streams.open_streams(), 1, "the stream is still open");

    ns.cut();
    let cut = Instant::now();
    wait_for(DROP_BOUND, || streams.open_streams() == 0).await;
    let took = cut.elapsed();

    let _ = curl.kill();
    let _ = curl.wait();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    took
}

/// Polls `cond` every 20 ms; fails the test after `limit`.
async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stream_with_heartbeats_to_a_vanished_client_ends_by_user_timeout() {
    let heartbeat = Duration::from_millis(500);
    let took = time_to_drop(Some(heartbeat)).await;
    println!("dead peer with heartbeats every {heartbeat:?}, TCP_USER_TIMEOUT {USER_TIMEOUT:?}: stream dropped after {took:?}");
}

#[tokio::test]
async fn a_silent_stream_to_a_vanished_client_ends_by_keepalive() {
    let took = time_to_drop(None).await;
    println!("dead peer, no heartbeat, keepalive {KEEPALIVE:?}, TCP_USER_TIMEOUT {USER_TIMEOUT:?}: stream dropped after {took:?}");
}
