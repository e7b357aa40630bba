//! The hub's Redis backplane on a real 3-master Redis Cluster (feature `redis`): topics
//! spread over the masters by slot, live delivery by sharded Pub/Sub, a constant
//! number of connections per node, and a master killed and restarted on its port.
//!
//! Every test starts its own cluster of Debian's `redis-server` (`scripts/test.sh`
//! installs it; `REDIS_SERVER_BIN` names another binary) on free loopback ports,
//! without persistence. Without one, the tests fail: they never skip.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tower_sse::{
    hub::{Hub, Resume, Subscription},
    Event, LastEventId, Message,
};

use support::{
    hub::publish,
    redis_cluster::{Cluster, MASTERS},
    within, STEP,
};

/// A plain connection to master `i`, to look into it.
async fn conn(cluster: &Cluster, i: usize) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(cluster.url(i)).unwrap();
    within("connect", client.get_multiplexed_async_connection())
        .await
        .unwrap()
}

async fn query<T: redis::FromRedisValue>(cluster: &Cluster, i: usize, args: &[&str]) -> T {
    let mut conn = conn(cluster, i).await;
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    within("query", cmd.query_async(&mut conn)).await.unwrap()
}

/// The master that serves `topic`'s stream.
async fn master_of(cluster: &Cluster, topic: &str) -> usize {
    let slot: u16 = query(
        cluster,
        0,
        &["CLUSTER", "KEYSLOT", &format!("tower-sse:{{{topic}}}")],
    )
    .await;
    Cluster::master_of_slot(slot)
}

/// Connections master `i` has now, from `CLIENT LIST` (without the one asking).
async fn connections(cluster: &Cluster, i: usize) -> usize {
    let list: String = query(cluster, i, &["CLIENT", "LIST"]).await;
    list.lines().count() - 1
}

/// The connections on master `i` once the test's own probe connections (each `query`
/// opens one and drops it; Redis may list it a moment longer) are gone: the lowest
/// count seen within a bounded wait, as soon as it is at most `expected`.
async fn settled_connections(cluster: &Cluster, i: usize, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lowest = connections(cluster, i).await;
    while lowest > expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        lowest = lowest.min(connections(cluster, i).await);
    }
    lowest
}

async fn next_bytes(sub: &mut Subscription) -> Bytes {
    match within("an event", sub.next()).await {
        Some(Ok(Message::Encoded(encoded))) => encoded.into_bytes(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Publishes `data` on `topic` until it works (a master coming back).
async fn publish_when_back(hub: &Hub, topic: &str, data: &str) -> String {
    within("publish once the master is back", async {
        loop {
            match hub.publish(topic, Event::new().data(data.to_owned())).await {
                Ok(published) => break published.id.to_string(),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
}

fn event(id: &str, data: &str) -> Bytes {
    Bytes::from(format!("id: {id}\ndata: {data}\n\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_spread_over_the_masters_on_two_connections_per_node() {
    let cluster = Cluster::start().await;
    let a = cluster.hub().await;
    let b = cluster.hub().await;
    let topics: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    let mut subs = Vec::new();
    for topic in &topics {
        subs.push(b.subscribe(topic, None).await);
    }
    for (topic, sub) in topics.iter().zip(&mut subs) {
        let id = publish(&a, topic, topic.clone()).await;
        assert_eq!(next_bytes(sub).await, event(&id, topic));
    }
    let mut per_master = [0usize; MASTERS];
    for topic in &topics {
        per_master[master_of(&cluster, topic).await] += 1;
    }
    for (i, &held) in per_master.iter().enumerate() {
        let keys: usize = query(&cluster, i, &["DBSIZE"]).await;
        let channels: Vec<String> = query(&cluster, i, &["PUBSUB", "SHARDCHANNELS"]).await;
        let open = settled_connections(&cluster, i, 3).await;
        eprintln!(
            "master {i}: {} topics, {keys} streams, {} shard channels, {open} connections",
            held,
            channels.len()
        );
        assert!(held > 0, "every master holds some topics");
        assert_eq!(keys, held, "each stream on the master of its slot");
        assert_eq!(channels.len(), held, "each channel on its master");
        // A: a command connection; B: a command and a Pub/Sub connection.
        assert!(open <= 3, "{open} connections on master {i}");
    }
    drop(subs);
    let deadline = Instant::now() + STEP;
    for i in 0..MASTERS {
        loop {
            let channels: Vec<String> = query(&cluster, i, &["PUBSUB", "SHARDCHANNELS"]).await;
            if channels.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "master {i} still has {channels:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restart_keeps_the_streams_and_the_resume_exact() {
    let mut cluster = Cluster::start().await;
    let a = cluster.hub().await;
    let b = cluster.hub().await;
    // One topic on each master.
    let mut topics = vec![String::new(); MASTERS];
    let mut i = 0;
    while topics.iter().any(String::is_empty) {
        let topic = format!("t{i}");
        let master = master_of(&cluster, &topic).await;
        if topics[master].is_empty() {
            topics[master] = topic;
        }
        i += 1;
    }
    let mut subs = Vec::new();
    let mut first = Vec::new();
    for topic in &topics {
        let mut sub = b.subscribe(topic, None).await;
        let id = publish(&a, topic, "before").await;
        assert_eq!(next_bytes(&mut sub).await, event(&id, "before"));
        subs.push(sub);
        first.push(id);
    }

    // Master 0 dies: its topic cannot publish, the others go on.
    cluster.kill(0);
    assert!(within(
        "publish while down",
        a.publish(&topics[0], Event::new().data("lost"))
    )
    .await
    .is_err());
    for m in 1..MASTERS {
        let id = publish(&a, &topics[m], "during").await;
        assert_eq!(next_bytes(&mut subs[m]).await, event(&id, "during"));
    }

    // It comes back on its port, empty: the open subscription resumes.
    let back = Instant::now();
    cluster.restart(0).await;
    let e2 = publish_when_back(&a, &topics[0], "after").await;
    let e3 = publish(&a, &topics[0], "after 2").await;
    assert_eq!(next_bytes(&mut subs[0]).await, event(&e2, "after"));
    assert_eq!(next_bytes(&mut subs[0]).await, event(&e3, "after 2"));
    eprintln!(
        "master restart: delivered again {:?} after the restart began",
        back.elapsed()
    );
    for m in 1..MASTERS {
        let id = publish(&a, &topics[m], "after").await;
        assert_eq!(next_bytes(&mut subs[m]).await, event(&id, "after"));
    }

    // On a third instance: resuming from e2 replays e3 exactly; the history before the
    // restart is gone with the master (no persistence), so `first[0]` is unknown; the
    // other masters kept theirs.
    let c = cluster.hub().await;
    let mut resumed = c.subscribe(&topics[0], Some(&LastEventId::new(e2))).await;
    assert_eq!(resumed.resume(), Resume::Replay { missed: 1 });
    assert_eq!(next_bytes(&mut resumed).await, event(&e3, "after 2"));
    let lost = c
        .subscribe(&topics[0], Some(&LastEventId::new(first[0].clone())))
        .await;
    assert_eq!(lost.resume(), Resume::Unknown);
    let kept = c
        .subscribe(&topics[1], Some(&LastEventId::new(first[1].clone())))
        .await;
    assert_eq!(kept.resume(), Resume::Replay { missed: 2 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_give_one_order_per_topic_and_resume_is_exact() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.hub().await, cluster.hub().await);
    // Topics on every master, read on both instances.
    let topics: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for topic in &topics {
        on_a.push(a.subscribe(topic, None).await);
        on_b.push(b.subscribe(topic, None).await);
    }
    let publisher = |hub: Hub, name: &'static str, topics: Vec<String>| {
        tokio::spawn(async move {
            for i in 0..20 {
                for topic in &topics {
                    publish(&hub, topic, format!("{name}{i}")).await;
                }
            }
        })
    };
    let pa = publisher(a.clone(), "a", topics.clone());
    let pb = publisher(b.clone(), "b", topics.clone());
    let c = cluster.hub().await;
    for ((sub_a, sub_b), topic) in on_a.iter_mut().zip(&mut on_b).zip(&topics) {
        let (mut seen_a, mut seen_b) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            seen_a.push(next_bytes(sub_a).await);
            seen_b.push(next_bytes(sub_b).await);
        }
        // One order per topic, the same on both instances, each publisher's in its own.
        assert_eq!(seen_a, seen_b);
        for name in ["a", "b"] {
            let mine: Vec<String> = seen_a
                .iter()
                .filter_map(|b| {
                    let text = String::from_utf8(b.to_vec()).unwrap();
                    let data = text.split("data: ").nth(1)?.trim_end().to_owned();
                    data.starts_with(name).then_some(data)
                })
                .collect();
            let expected: Vec<String> = (0..20).map(|i| format!("{name}{i}")).collect();
            assert_eq!(mine, expected);
        }
        // A client that saw the 10th event resumes on a third instance with the 30
        // after it, in the same order.
        let seen_10 = String::from_utf8(seen_a[9].to_vec()).unwrap();
        let id = seen_10
            .strip_prefix("id: ")
            .unwrap()
            .lines()
            .next()
            .unwrap();
        let mut resumed = c.subscribe(topic, Some(&LastEventId::new(id))).await;
        assert_eq!(resumed.resume(), Resume::Replay { missed: 30 });
        for expected in &seen_a[10..] {
            assert_eq!(&next_bytes(&mut resumed).await, expected);
        }
    }
    pa.await.unwrap();
    pb.await.unwrap();
}
