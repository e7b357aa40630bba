//! Several topics on one stream (`Hub::subscribe_many`) on the Redis backplane, against
//! a real `redis-server` (tests/support/redis_server.rs; `scripts/test.sh` installs
//! Debian's): the id a client last saw resumes every topic exactly on another instance
//! (two hubs on one Redis), and across a Redis restart. Streams are read as a client
//! reads them: their bytes parsed by eventsource-stream.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{collections::BTreeMap, time::Duration};

use eventsource_stream::Event as SseEvent;
use futures_util::StreamExt as _;
use tower_sse::{
    hub::{Hub, MultiSubscription, Resume},
    Event, LastEventId,
};

use support::{
    hub::{parsed, publish, Parsed},
    redis_server::Redis,
    within, STEP,
};

async fn next(stream: &mut Parsed) -> SseEvent {
    within("an event", stream.next()).await.expect("open")
}

/// Publishes, retrying while the hub's connection to a restarted Redis is not back.
async fn publish_again(hub: &Hub, topic: &str, data: &str) {
    within("publish after the restart", async {
        while hub
            .publish(topic, Event::new().data(data.to_owned()))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// What a client saw, per topic, and the last id.
#[derive(Default)]
struct Seen {
    by_topic: BTreeMap<String, Vec<String>>,
    last_id: Option<String>,
}

impl Seen {
    /// Reads `n` events from `stream`.
    async fn read(&mut self, stream: &mut Parsed, n: usize) {
        for _ in 0..n {
            let event = next(stream).await;
            assert!(event.id.len() <= MultiSubscription::MAX_ID_LEN);
            self.by_topic
                .entry(event.event)
                .or_default()
                .push(event.data);
            self.last_id = Some(event.id);
        }
    }

    fn id(&self) -> LastEventId {
        LastEventId::new(self.last_id.clone().expect("an event seen"))
    }

    fn of(&self, topic: &str) -> Vec<String> {
        self.by_topic.get(topic).cloned().unwrap_or_default()
    }
}

fn numbered(topic: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{topic}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_resumes_every_topic_on_another_instance() {
    const TOPICS: [&str; 3] = ["x", "y", "z"];
    let redis = Redis::start().await;
    let a = redis.hub().await;
    let b = redis.hub().await;
    // Topics with a past: the client starts after it.
    for topic in TOPICS {
        publish(&a, topic, "old").await;
    }
    let sub = within("subscribe", b.subscribe_many(&TOPICS, None))
        .await
        .unwrap();
    assert_eq!(sub.resume(), Resume::Live);
    let mut stream = parsed(sub);
    let mut sent: BTreeMap<&str, u32> = BTreeMap::new();
    let mut send = |topic: &'static str| {
        let n = sent.entry(topic).or_default();
        *n += 1;
        format!("{topic}{}", *n - 1)
    };
    for topic in ["x", "y", "x", "x", "y"] {
        publish(&a, topic, &send(topic)).await;
    }
    let mut seen = Seen::default();
    // Reads x0 and y0 (one order per topic; topics interleave as they arrive).
    seen.read(&mut stream, 2).await;
    // Cut. While the client is away, every topic moves on (z for the first time).
    drop(stream);
    for topic in ["z", "x", "y", "z"] {
        publish(&a, topic, &send(topic)).await;
    }
    // It comes back to the other instance, which has none of these topics locally:
    // every topic resumes from Redis.
    let sub = within("resume", a.subscribe_many(&TOPICS, Some(&seen.id())))
        .await
        .unwrap();
    let unseen = 9 - 2;
    assert_eq!(sub.resume(), Resume::Replay { missed: unseen });
    assert!(sub
        .resumes()
        .all(|(_, r)| matches!(r, Resume::Replay { .. })));
    let mut stream = parsed(sub);
    seen.read(&mut stream, unseen as usize).await;
    // Then the live stream, from either instance: a sentinel on each topic comes
    // next, so nothing was sent twice.
    for topic in TOPICS {
        publish(&b, topic, &send(topic)).await;
    }
    seen.read(&mut stream, 3).await;
    for topic in TOPICS {
        assert_eq!(
            seen.of(topic),
            numbered(topic, 0..sent[topic]),
            "{topic}: once each, in order"
        );
    }
    // And back to B with the newest id: nothing missed, nothing replayed.
    let sub = within("resume", b.subscribe_many(&TOPICS, Some(&seen.id())))
        .await
        .unwrap();
    assert_eq!(sub.resume(), Resume::Replay { missed: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_the_stream_and_the_resume_exact() {
    const TOPICS: [&str; 2] = ["p", "q"];
    let mut redis = Redis::start().await;
    let a = redis.hub().await;
    let b = redis.hub().await;
    for topic in TOPICS {
        publish(&a, topic, "old").await;
    }
    // Another client of B keeps B's readers and history of these topics alive.
    let _other_client = b.subscribe_many(&TOPICS, None).await.unwrap();
    let mut stream = parsed(b.subscribe_many(&TOPICS, None).await.unwrap());
    publish(&a, "p", "p0").await;
    publish(&a, "q", "q0").await;
    let mut seen = Seen::default();
    seen.read(&mut stream, 2).await;

    // Redis dies and comes back empty (no persistence), on the same port.
    redis.kill();
    redis.restart().await;
    // Publish as soon as it answers again.
    publish_again(&a, "p", "p1").await;
    publish(&a, "q", "q1").await;
    publish(&a, "p", "p2").await;
    // The open stream gets them (B's readers catch up from their last ids).
    seen.read(&mut stream, 1).await;
    drop(stream);
    // Cut after one of the three: back on B, whose history holds every event its
    // readers saw, before and after the restart (Redis lost those before it).
    let sub = within("resume", b.subscribe_many(&TOPICS, Some(&seen.id())))
        .await
        .unwrap();
    assert!(
        sub.resumes()
            .all(|(_, r)| matches!(r, Resume::Replay { .. })),
        "{:?}",
        sub.resumes().collect::<Vec<_>>()
    );
    let mut stream = parsed(sub);
    seen.read(&mut stream, 2).await;
    assert_eq!(seen.of("p"), ["p0", "p1", "p2"]);
    assert_eq!(seen.of("q"), ["q0", "q1"]);
    // With an id from after the restart, a third instance resumes from Redis.
    let c = redis.hub().await;
    let sub = within("resume", c.subscribe_many(&TOPICS, Some(&seen.id())))
        .await
        .unwrap();
    assert_eq!(sub.resume(), Resume::Replay { missed: 0 });
    let mut on_c = parsed(sub);
    // B's first command since the restart finds its old connection broken.
    publish_again(&b, "q", "q2").await;
    let event = tokio::time::timeout(STEP, next(&mut on_c)).await.unwrap();
    assert_eq!((&*event.event, &*event.data), ("q", "q2"));
}
