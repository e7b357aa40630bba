//! Several topics on one stream (`Hub::subscribe_many`), in process: the events of
//! every topic interleave, each named after its topic; the id a client last saw
//! resumes every topic exactly across random cuts; a busy topic does not starve the
//! others; ids that are malformed, too long or of another topic list resume as
//! unknown. The stream is read as a client reads it: its bytes parsed by
//! eventsource-stream.
#![cfg(feature = "hub")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use eventsource_stream::Event as SseEvent;
use futures_util::{FutureExt as _, StreamExt as _};
use tower_sse::{
    hub::{History, Hub, MultiSubscription, Resume, TopicsError},
    Encode as _, LastEventId,
};

mod support;

use support::hub::{parsed, Parsed};

/// The next event if one is ready now (the in-process hub delivers at once).
fn ready(stream: &mut Parsed) -> Option<SseEvent> {
    stream.next().now_or_never().flatten()
}

/// Publishes; the id is not needed here.
async fn publish(hub: &Hub, topic: &str, data: String) {
    support::hub::publish(hub, topic, data).await;
}

#[tokio::test]
async fn events_of_several_topics_interleave_each_named_after_its_topic() {
    let hub = Hub::new();
    let sub = hub.subscribe_many(&["a", "b", "c"], None).await.unwrap();
    assert_eq!(sub.resume(), Resume::Live);
    let mut stream = parsed(sub);
    for i in 0..3 {
        for topic in ["c", "a", "b"] {
            publish(&hub, topic, format!("{topic}{i}")).await;
        }
    }
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = Vec::new();
    while let Some(event) = ready(&mut stream) {
        assert_eq!(&event.data[..1], event.event, "named after its topic");
        assert!(event.id.len() <= MultiSubscription::MAX_ID_LEN);
        ids.push(event.id.clone());
        seen.entry(event.event).or_default().push(event.data);
    }
    for topic in ["a", "b", "c"] {
        let expected: Vec<String> = (0..3).map(|i| format!("{topic}{i}")).collect();
        assert_eq!(seen[topic], expected, "{topic}: all of them, in order");
    }
    assert_eq!(ids.len(), 9);
    ids.dedup();
    assert_eq!(ids.len(), 9, "each event has its own position");
    // The hub's own ids on a single-topic subscription are unchanged.
    let single = hub.subscribe("a", Some(&LastEventId::new("1"))).await;
    let bytes = single
        .map(|m| m.unwrap().into_bytes())
        .next()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"id: 2\ndata: a2\n\n");
}

/// A small deterministic generator (xorshift64*), so that a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[tokio::test]
async fn random_cuts_resume_every_topic_without_duplicate_or_gap() {
    const TOPICS: [&str; 3] = ["alpha", "beta", "gamma"];
    let hub = Hub::with_history(History::new(100_000, usize::MAX));
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut published = [0u64; 3];
    let mut received: [Vec<u64>; 3] = Default::default();
    let mut last_id: Option<String>;
    let mut resumes = Vec::new();
    let mut stream = parsed(hub.subscribe_many(&TOPICS, None).await.unwrap());
    // A client that saw nothing has no id to come back with (and resumes live): start
    // with one event seen.
    publish(&hub, TOPICS[0], "0".into()).await;
    published[0] = 1;
    let first = ready(&mut stream).unwrap();
    received[0].push(0);
    last_id = Some(first.id);
    for _round in 0..200 {
        // Publish a few events to random topics (while connected or not).
        for _ in 0..rng.below(6) {
            let t = rng.below(3) as usize;
            publish(&hub, TOPICS[t], format!("{}", published[t])).await;
            published[t] += 1;
        }
        // Read some of what is there.
        for _ in 0..rng.below(8) {
            let Some(event) = ready(&mut stream) else {
                break;
            };
            let t = TOPICS.iter().position(|&n| n == event.event).unwrap();
            received[t].push(event.data.parse().unwrap());
            last_id = Some(event.id);
        }
        // Sometimes the connection is cut; the client comes back with its last id.
        if rng.below(3) == 0 {
            drop(stream);
            let id = last_id.as_deref().map(LastEventId::new);
            let sub = hub.subscribe_many(&TOPICS, id.as_ref()).await.unwrap();
            resumes.push(sub.resume());
            stream = parsed(sub);
        }
    }
    while let Some(event) = ready(&mut stream) {
        let t = TOPICS.iter().position(|&n| n == event.event).unwrap();
        received[t].push(event.data.parse().unwrap());
    }
    for t in 0..3 {
        let expected: Vec<u64> = (0..published[t]).collect();
        assert_eq!(
            received[t], expected,
            "{}: each event once, in order",
            TOPICS[t]
        );
    }
    assert!(published.iter().all(|&n| n > 50), "{published:?}");
    assert!(resumes.len() > 30, "{} cuts", resumes.len());
    assert!(!resumes.contains(&Resume::Unknown), "{resumes:?}");
    assert!(resumes
        .iter()
        .any(|r| matches!(r, Resume::Replay { missed } if *missed > 0)));
}

#[tokio::test]
async fn a_busy_topic_does_not_starve_the_others() {
    let hub = Hub::with_history(History::new(10_000, usize::MAX));
    let sub = hub
        .subscribe_many(&["hot", "cold", "cool"], None)
        .await
        .unwrap();
    for i in 0..5_000 {
        publish(&hub, "hot", i.to_string()).await;
    }
    publish(&hub, "cold", "c".into()).await;
    publish(&hub, "cool", "k".into()).await;
    let mut stream = parsed(sub);
    let first: Vec<String> = (0..6).map(|_| ready(&mut stream).unwrap().event).collect();
    assert_eq!(first, ["hot", "cold", "cool", "hot", "hot", "hot"]);
    // A topic that gets an event while the hot one still has thousands queued takes
    // its turn at once.
    publish(&hub, "cold", "c2".into()).await;
    let next: Vec<String> = (0..2).map(|_| ready(&mut stream).unwrap().data).collect();
    assert!(next.contains(&"c2".to_owned()), "{next:?}");
}

#[tokio::test]
async fn malformed_foreign_or_too_long_ids_resume_as_unknown() {
    let hub = Hub::new();
    let topics = ["a", "b"];
    publish(&hub, "a", "before".into()).await;
    let mut stream = parsed(hub.subscribe_many(&topics, None).await.unwrap());
    publish(&hub, "a", "a1".into()).await;
    let good = ready(&mut stream).unwrap().id;
    let (set, rest) = good.split_once('.').unwrap();
    assert_eq!(rest, "1.", "a after hub id 1, b before its first event");

    let too_long = format!("{set}.{}", "1".repeat(MultiSubscription::MAX_ID_LEN));
    let cases = [
        "garbage".to_owned(),
        String::new(),
        too_long,
        format!("{set}.1"),
        format!("{set}.1.."),
        "\u{feff}é.\0".to_owned(),
    ];
    for id in cases {
        let sub = hub
            .subscribe_many(&topics, Some(&LastEventId::new(id.clone())))
            .await
            .unwrap();
        assert!(
            sub.resumes().all(|(_, r)| r == Resume::Unknown),
            "{id:?}: {:?}",
            sub.resumes().collect::<Vec<_>>()
        );
    }
    let good = LastEventId::new(good.clone());
    let sub = hub.subscribe_many(&["b", "a"], Some(&good)).await.unwrap();
    assert_eq!(sub.resume(), Resume::Unknown, "an id of another topic list");
    // One bad position: that topic is unknown, the other resumes.
    let sub = hub
        .subscribe_many(&topics, Some(&LastEventId::new(format!("{set}.0.~a b"))))
        .await
        .unwrap();
    let resumes: Vec<_> = sub.resumes().collect();
    assert_eq!(
        resumes,
        [("a", Resume::Replay { missed: 1 }), ("b", Resume::Unknown)]
    );
    // Still a working stream.
    let mut stream = parsed(sub);
    assert_eq!(ready(&mut stream).unwrap().data, "a1");
    publish(&hub, "b", "b0".into()).await;
    let event = ready(&mut stream).unwrap();
    assert_eq!((&*event.event, &*event.data), ("b", "b0"));
    assert_eq!(event.id, format!("{set}.1.0"));
}

#[tokio::test]
async fn topic_lists_are_checked() {
    let hub = Hub::new();
    let none: [&str; 0] = [];
    assert_eq!(
        hub.subscribe_many(&none, None).await.unwrap_err(),
        TopicsError::Empty
    );
    let many: Vec<String> = (0..=MultiSubscription::MAX_TOPICS)
        .map(|i| format!("t{i}"))
        .collect();
    assert_eq!(
        hub.subscribe_many(&many, None).await.unwrap_err(),
        TopicsError::TooMany { count: 65 }
    );
    assert!(hub.subscribe_many(&many[..64], None).await.is_ok());
    for bad in ["", "a\nb", "a\rb"] {
        assert!(matches!(
            hub.subscribe_many(&["ok", bad], None).await,
            Err(TopicsError::BadName { .. })
        ));
    }
    assert!(matches!(
        hub.subscribe_many(&["x", "y", "x"], None).await,
        Err(TopicsError::Duplicate { topic }) if topic == "x"
    ));
}

#[tokio::test]
async fn a_topic_nobody_published_to_resumes_from_its_first_event() {
    let hub = Hub::new();
    let topics = ["seen", "quiet"];
    let mut stream = parsed(hub.subscribe_many(&topics, None).await.unwrap());
    publish(&hub, "seen", "s0".into()).await;
    let id = ready(&mut stream).unwrap().id;
    drop(stream);
    // While the client is away, `quiet` gets its first events.
    publish(&hub, "quiet", "q0".into()).await;
    publish(&hub, "quiet", "q1".into()).await;
    let sub = hub
        .subscribe_many(&topics, Some(&LastEventId::new(id)))
        .await
        .unwrap();
    assert_eq!(sub.resume(), Resume::Replay { missed: 2 });
    let mut stream = parsed(sub);
    let data: Vec<String> = (0..2).map(|_| ready(&mut stream).unwrap().data).collect();
    assert_eq!(data, ["q0", "q1"]);
    assert!(ready(&mut stream).is_none());
}
