//! A closed stream gives its memory back at once, whatever its heartbeat interval
//! (issue 11, item 1): against the demo server, 20,000 connections open
//! `/idle?hb_ms=86400000` (a heartbeat a day, on the layer's shared ticker) and are
//! reset, in batches of 2,000, while one stream stays open (so the ticker lives on).
//! The server's resident memory may not grow by more than 2 MiB over what it was
//! after a warm-up of 6 batches (the allocator's working set for 2,000 connections).
//!
//! Before the fix, each closed stream's waker stayed in the ticker's bucket until
//! that bucket's tick, a day later, holding its connection task: ~4.7 KiB per closed
//! connection (90 MiB for 20,000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::Semaphore,
};

mod support;
use support::demo::Demo;

/// Connections per batch, all open at once.
const BATCH: usize = 2_000;
/// Warm-up batches.
const WARM_UP: usize = 6;
/// Batches measured, after the warm-up.
const BATCHES: usize = 10;
/// Connects and request heads in flight at once (the listen backlog).
const HANDSHAKES: usize = 200;
/// What the server may keep of 20,000 closed connections.
const MAX_GROWTH_KIB: u64 = 2 * 1024;
/// Patience for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(30);
/// A heartbeat a day.
const REQUEST: &[u8] = b"GET /idle?hb_ms=86400000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Opens an SSE stream: the request sent, the response head read.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(REQUEST).await.expect("send the request");
    let mut head = Vec::new();
    let mut buf = [0; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.expect("read the response head");
        assert!(n > 0, "the server closed the connection");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    tcp
}

/// Opens `BATCH` streams, all at once, then resets them all.
async fn batch(addr: SocketAddr) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let tasks: Vec<_> = (0..BATCH)
        .map(|_| {
            let handshakes = handshakes.clone();
            tokio::spawn(async move {
                let _turn = handshakes.acquire().await.unwrap();
                open(addr).await
            })
        })
        .collect();
    let mut open = Vec::with_capacity(BATCH);
    for task in tasks {
        open.push(tokio::time::timeout(WAIT, task).await.unwrap().unwrap());
    }
    for tcp in open {
        // Closed with a RST, as by a client that is killed.
        tcp.set_zero_linger().unwrap();
    }
}

/// The pid of the demo: this process's child named `demo`. (The harness keeps its
/// `Child` to itself.)
fn demo_pid() -> u32 {
    let me = std::process::id().to_string();
    let pids = std::fs::read_dir("/proc").unwrap().filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid …`; `comm` may hold spaces and parentheses.
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid = rest.split_whitespace().nth(1)?;
        (comm == "demo" && ppid == me).then_some(pid)
    });
    let pids: Vec<_> = pids.collect();
    assert_eq!(pids.len(), 1, "one demo child: {pids:?}");
    pids[0]
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Waits until the server has closed every connection but `keep` (its descriptors
/// are back to `baseline + keep`).
async fn until_closed(pid: u32, baseline: usize, keep: usize) {
    let waited = tokio::time::timeout(WAIT, async {
        while fds(pid) > baseline + keep {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the server still holds {} descriptors (baseline {baseline})",
        fds(pid)
    );
}

/// The soft limit on open files of this process (the demo inherits it) raised to
/// what a batch needs, as far as the hard limit allows.
fn raise_fd_limit(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line.split_whitespace().skip(3);
    let soft: u64 = numbers.next().unwrap().parse().unwrap_or(u64::MAX);
    if soft >= needed {
        return;
    }
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={needed}:"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(
        status.success(),
        "a batch needs {needed} open files; the soft limit is {soft}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_streams_with_a_day_long_heartbeat_leave_no_memory_behind() {
    raise_fd_limit(BATCH as u64 + 512);
    // The demo's allocator is jemalloc (examples/shared/alloc.rs): one arena, and
    // freed pages handed back at once instead of after its 10 s decay, so that the
    // server's resident memory follows what it holds (with the defaults, RSS wanders
    // by several MiB from batch to batch for as long as the decay lags, leak or not).
    let conf = "narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0";
    let demo = Demo::start_with(&[("_RJEM_MALLOC_CONF", conf)]).await;
    let pid = demo_pid();
    let addr: SocketAddr = demo.url("").trim_start_matches("http://").parse().unwrap();
    let baseline = fds(pid);
    let _kept = open(addr).await;

    // The allocator settles into its working set for batches of this size.
    for _ in 0..WARM_UP {
        batch(addr).await;
        until_closed(pid, baseline, 1).await;
    }
    let warm = demo.rss_kib();

    let mut rss = Vec::new();
    for _ in 0..BATCHES {
        batch(addr).await;
        until_closed(pid, baseline, 1).await;
        rss.push(demo.rss_kib());
    }
    eprintln!("server RSS after each batch, KiB: {rss:?}");
    let end = demo.rss_kib();
    let growth = end.saturating_sub(warm);
    eprintln!(
        "server RSS after the warm-up {warm} KiB, after {} more connections {end} KiB: +{growth} KiB",
        BATCH * BATCHES
    );
    assert!(
        growth <= MAX_GROWTH_KIB,
        "RSS grew by {growth} KiB over {} closed connections ({warm} -> {end} KiB)",
        BATCH * BATCHES
    );
}
