//! The demo server (`examples/demo.rs`) running twice on two ports, sharing one Redis
//! (or a 3-master Redis Cluster) through `REDIS_URL`: an event published on instance A
//! (`POST /publish`) arrives on `/fanout` of instance B.
//!
//! The test starts its own `redis-server` (Debian's package, installed by
//! `scripts/test.sh`; `REDIS_SERVER_BIN` names another binary) on a free loopback
//! port, builds the example with `cargo build --example demo --features redis` in the
//! profile of this test binary, and starts it twice with `REDIS_URL` set.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use support::{demo::Demo, redis_cluster::Cluster, redis_server::Redis};

/// Patience for anything that should happen promptly.
const WAIT: Duration = Duration::from_secs(10);

/// The demo on Redis `url`, with quiet ticks: only what the test publishes matters.
async fn demo_on(url: &str) -> Demo {
    Demo::start_with(&[("REDIS_URL", url), ("FANOUT_MS", "86400000")]).await
}

#[tokio::test]
async fn publish_on_one_demo_instance_arrives_on_the_fanout_of_the_other() {
    let redis = Redis::start().await;
    publish_on_a_arrives_on_b(&redis.url()).await;
}

/// `REDIS_URL` with the comma-separated URLs of a cluster's masters (CONTRACT.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_a_redis_cluster() {
    let cluster = Cluster::start().await;
    publish_on_a_arrives_on_b(&cluster.urls()).await;
}

async fn publish_on_a_arrives_on_b(url: &str) {
    let (a, b) = (demo_on(url).await, demo_on(url).await);
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
