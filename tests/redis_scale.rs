//! Many topics on the hub's Redis backplane (feature `redis`): the connections an
//! instance holds do not grow with its topics, and topics leave Redis with their last
//! local subscriber.
//!
//! `scale_measurement` runs small in the test suite (500 topics, 500 publishes/s, 2 s);
//! at scale (BENCHMARKS.md) it measures 10,000 topics and the publish → delivery
//! latency across two instances at 1,000 publishes/s:
//!
//! ```text
//! SCALE_TOPICS=10000 SCALE_RATE=1000 SCALE_SECS=10 cargo test --release --features redis --test redis_scale scale_measurement -- --nocapture
//! ```
//!
//! knobs `SCALE_TOPICS` (500), `SCALE_RATE` (publishes/s, 500), `SCALE_SECS` (2),
//! `SCALE_CLUSTER` (set: on a 3-master Redis Cluster instead of one Redis).
//! It asserts counts (every event delivered once, in order), never a duration.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::{future::join_all, StreamExt as _};
use tower_sse::{
    hub::{Hub, Subscription},
    Event, Message,
};

use support::{
    redis_cluster::{Cluster, MASTERS},
    redis_server::Redis,
    within, STEP,
};

/// One command to the Redis at `url`, on a connection of its own.
async fn query<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> T {
    let client = redis::Client::open(url).unwrap();
    let mut conn = within("connect", client.get_multiplexed_async_connection())
        .await
        .unwrap();
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    within("query", cmd.query_async(&mut conn)).await.unwrap()
}

/// Client connections the Redis at `url` has now, without the one asking.
async fn connections(url: &str) -> usize {
    let list: String = query(url, &["CLIENT", "LIST"]).await;
    list.lines().count() - 1
}

/// The Redis nodes under test and their instances.
enum Backend {
    Single(Redis),
    Cluster(Cluster),
}

impl Backend {
    /// A cluster if `SCALE_CLUSTER` is set, else one Redis.
    async fn start() -> Self {
        if std::env::var_os("SCALE_CLUSTER").is_some() {
            Self::Cluster(Cluster::start().await)
        } else {
            Self::Single(Redis::start().await)
        }
    }

    fn urls(&self) -> Vec<String> {
        match self {
            Self::Single(redis) => vec![redis.url()],
            Self::Cluster(cluster) => (0..MASTERS).map(|i| cluster.url(i)).collect(),
        }
    }

    async fn hub(&self) -> Hub {
        match self {
            Self::Single(redis) => redis.hub().await,
            Self::Cluster(cluster) => cluster.hub().await,
        }
    }

    /// Connections on each node.
    async fn connections(&self) -> Vec<usize> {
        let mut counts = Vec::new();
        for url in self.urls() {
            counts.push(connections(&url).await);
        }
        counts
    }

    /// Channels subscribed on all nodes (sharded ones on a cluster).
    async fn channel_count(&self) -> usize {
        let what = match self {
            Self::Single(_) => "CHANNELS",
            Self::Cluster(_) => "SHARDCHANNELS",
        };
        let mut count = 0;
        for url in self.urls() {
            count += query::<Vec<String>>(&url, &["PUBSUB", what]).await.len();
        }
        count
    }

    async fn wait_channels(&self, expected: usize) {
        let deadline = Instant::now() + STEP;
        loop {
            let count = self.channel_count().await;
            if count == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{count} channels, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `usec_per_call` of `EVALSHA` (the publish script) in `INFO commandstats`, on
    /// each node.
    async fn script_usec(&self) -> Vec<String> {
        let mut out = Vec::new();
        for url in self.urls() {
            let info: String = query(&url, &["INFO", "commandstats"]).await;
            let usec = info
                .lines()
                .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
                .and_then(|stats| {
                    stats
                        .split(',')
                        .find_map(|f| f.strip_prefix("usec_per_call="))
                })
                .unwrap_or("-");
            out.push(usec.to_owned());
        }
        out
    }

    /// `used_cpu_sys` + `used_cpu_user` of `INFO cpu` of all nodes, in seconds.
    async fn cpu(&self) -> f64 {
        let mut total = 0.0;
        for url in self.urls() {
            let info: String = query(&url, &["INFO", "cpu"]).await;
            total += info
                .lines()
                .filter_map(|line| {
                    let (key, value) = line.trim().split_once(':')?;
                    matches!(key, "used_cpu_sys" | "used_cpu_user")
                        .then(|| value.parse::<f64>().ok())?
                })
                .sum::<f64>();
        }
        total
    }
}

async fn next_data(sub: &mut Subscription) -> String {
    match within("an event", sub.next()).await {
        Some(Ok(Message::Encoded(encoded))) => {
            let text = String::from_utf8(encoded.into_bytes().to_vec()).unwrap();
            let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            data.to_owned()
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// Subscribes `user-0` … `user-{topics - 1}`, 500 at a time.
async fn subscribe_all(hub: &Hub, topics: usize) -> Vec<Subscription> {
    let mut subs = Vec::with_capacity(topics);
    for chunk in (0..topics).collect::<Vec<_>>().chunks(500) {
        let names: Vec<String> = chunk.iter().map(|i| format!("user-{i}")).collect();
        subs.extend(join_all(names.iter().map(|topic| hub.subscribe(topic, None))).await);
    }
    subs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_topics_on_two_connections() {
    const TOPICS: usize = 2000;
    let redis = Backend::Single(Redis::start().await);
    let hub = redis.hub().await;
    let started = Instant::now();
    let mut subs = within("subscribe", subscribe_all(&hub, TOPICS)).await;
    let subscribed_in = started.elapsed();
    redis.wait_channels(TOPICS).await;
    for (i, sub) in subs.iter_mut().enumerate() {
        let topic = format!("user-{i}");
        hub.publish(&topic, Event::new().data(topic.clone()))
            .await
            .unwrap();
        assert_eq!(next_data(sub).await, topic);
    }
    let open = redis.connections().await[0];
    eprintln!("{TOPICS} topics subscribed in {subscribed_in:?}: {open} redis connections");
    // One command connection and one Pub/Sub connection.
    assert!(open <= 4, "{open} connections for {TOPICS} topics");
    drop(subs);
    assert!(hub.topics().is_empty());
    redis.wait_channels(0).await;
    // Topics come and go on the same connections.
    let again = subscribe_all(&hub, 100).await;
    redis.wait_channels(100).await;
    assert!(redis.connections().await[0] <= 4);
    drop(again);
    redis.wait_channels(0).await;
}

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q`-quantile of sorted `samples`.
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[index.min(samples.len() - 1)]
}

/// Every publish from instance A reaches its topic's subscriber on instance B once and in
/// order (counts and order only, asserted). Small in the test suite; the measurement of
/// BENCHMARKS.md is the same test at scale:
/// `SCALE_TOPICS=10000 SCALE_RATE=1000 SCALE_SECS=10 cargo test --release --all-features
/// --test redis_scale scale_measurement -- --nocapture` (latencies and Redis CPU printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_measurement() {
    let topics = knob("SCALE_TOPICS", 500) as usize;
    let rate = knob("SCALE_RATE", 500).max(1);
    let secs = knob("SCALE_SECS", 2);
    let redis = Backend::start().await;
    let publisher = redis.hub().await;
    let subscriber = redis.hub().await;
    let started = Instant::now();
    let subs = within("subscribe", subscribe_all(&subscriber, topics)).await;
    let subscribed_in = started.elapsed();
    redis.wait_channels(topics).await;
    let connections = redis.connections().await;

    // Each event carries its publish time (µs since `base`); each topic is read by a
    // task that checks the order and records the latency.
    let base = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let total = usize::try_from(rate * secs).unwrap();
    let mut readers = Vec::new();
    for (i, mut sub) in subs.into_iter().enumerate() {
        let expected = total / topics + usize::from(i < total % topics);
        let latencies = latencies.clone();
        readers.push(tokio::spawn(async move {
            let mut last = None;
            for _ in 0..expected {
                let data = next_data(&mut sub).await;
                let (seq, sent) = data.split_once(' ').unwrap();
                let (seq, sent): (u64, u64) = (seq.parse().unwrap(), sent.parse().unwrap());
                let latency = base.elapsed().saturating_sub(Duration::from_micros(sent));
                assert!(last < Some(seq), "in order");
                last = Some(seq);
                latencies.lock().unwrap().push(latency);
            }
            sub
        }));
    }
    let cpu_before = redis.cpu().await;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / u32::try_from(rate).unwrap());
    let mut publishes = Vec::with_capacity(total);
    for n in 0..total {
        tick.tick().await;
        let hub = publisher.clone();
        publishes.push(tokio::spawn(async move {
            let topic = format!("user-{}", n % topics);
            let sent = base.elapsed().as_micros();
            hub.publish(&topic, Event::new().data(format!("{n} {sent}")))
                .await
                .unwrap();
        }));
    }
    for publish in publishes {
        within("publish", publish).await.unwrap();
    }
    let publish_secs = base.elapsed().as_secs_f64();
    let cpu = redis.cpu().await - cpu_before;
    let mut subs = Vec::new();
    for reader in readers {
        subs.push(within("every event delivered", reader).await.unwrap());
    }
    let mut latencies = Arc::try_unwrap(latencies).unwrap().into_inner().unwrap();
    assert_eq!(latencies.len(), total, "every event delivered once");
    latencies.sort();
    let connections_after = redis.connections().await;
    eprintln!(
        "redis_scale: {topics} topics (subscribed in {subscribed_in:.2?}), {total} publishes \
         in {publish_secs:.1} s ({:.0}/s) from instance A to subscribers on instance B; \
         redis connections per node (both instances): {connections:?} before, \
         {connections_after:?} after; \
         latency p50 {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}; redis cpu {:.1} µs per publish \
         (INFO cpu), the script {:?} µs per call (INFO commandstats)",
        total as f64 / publish_secs,
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.9),
        quantile(&latencies, 0.99),
        latencies[latencies.len() - 1],
        cpu * 1e6 / total as f64,
        redis.script_usec().await,
    );
    drop(subs);
    redis.wait_channels(0).await;
}
