//! The demo's `GET /fanout?topic=A&topic=B…` and `POST /publish?topic=A`
//! (CONTRACT.md) checked over HTTP: each event named after its topic, the last id
//! seen resuming every topic with exactly the missed events, bad topic lists
//! refused with 400. Read with reqwest and eventsource-stream, as a client does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, pin::Pin, time::Duration};

use eventsource_stream::{Event as SseEvent, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use reqwest::{header, Client, StatusCode};

mod support;
use support::{demo::Demo, within};

type Parsed = Pin<Box<dyn Stream<Item = SseEvent> + Send>>;

/// The three topics of the stream (the last one sent percent-encoded).
const TOPICS: [&str; 3] = ["a", "b", "chat:1.x-y_z"];
const QUERY: &str = "topic=a&topic=b&topic=chat%3A1.x-y_z";

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn open(client: &Client, demo: &Demo, last_event_id: Option<&str>) -> Parsed {
    let mut req = client.get(demo.url(&format!("/fanout?{QUERY}")));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let res = within("GET /fanout?topic=…", req.send()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    Box::pin(
        res.bytes_stream()
            .eventsource()
            .map(|e| e.expect("well-formed SSE")),
    )
}

async fn publish(client: &Client, demo: &Demo, query: &str, body: &str) -> StatusCode {
    let url = demo.url(&format!("/publish{query}"));
    let res = within(
        "POST /publish",
        client.post(url).body(body.to_owned()).send(),
    )
    .await;
    res.unwrap().status()
}

/// Per-topic bookkeeping of what was published and what the client saw.
#[derive(Default)]
struct Ledger {
    sent: BTreeMap<String, Vec<String>>,
    seen: BTreeMap<String, Vec<String>>,
    last_id: Option<String>,
}

impl Ledger {
    async fn send(&mut self, client: &Client, demo: &Demo, topic: &str) {
        let list = self.sent.entry(topic.to_owned()).or_default();
        let data = format!("{topic} #{}", list.len());
        let encoded = topic.replace(':', "%3A");
        let status = publish(client, demo, &format!("?topic={encoded}"), &data).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        list.push(data);
    }

    async fn read(&mut self, stream: &mut Parsed, n: usize) {
        for _ in 0..n {
            let event = within("an event", stream.next()).await.expect("open");
            assert!(TOPICS.contains(&&*event.event), "{event:?}");
            assert!(
                event.data.starts_with(&format!("{} #", event.event)),
                "named after its topic: {event:?}"
            );
            self.seen.entry(event.event).or_default().push(event.data);
            self.last_id = Some(event.id);
        }
    }
}

#[tokio::test]
async fn several_topics_on_one_stream_resume_with_exactly_the_missed_events() {
    let demo = Demo::start().await;
    let client = client();
    let mut ledger = Ledger::default();
    let mut stream = open(&client, &demo, None).await;
    for topic in ["a", "b", "a", "chat:1.x-y_z"] {
        ledger.send(&client, &demo, topic).await;
    }
    ledger.read(&mut stream, 3).await;
    // Cut with one event unread; more are published while the client is away.
    drop(stream);
    for topic in ["b", "a", "chat:1.x-y_z"] {
        ledger.send(&client, &demo, topic).await;
    }
    let last = ledger.last_id.clone().unwrap();
    let mut stream = open(&client, &demo, Some(&last)).await;
    ledger.read(&mut stream, 4).await;
    // Live again; the next event is this one, so nothing came twice.
    ledger.send(&client, &demo, "b").await;
    ledger.read(&mut stream, 1).await;
    assert_eq!(
        ledger.seen, ledger.sent,
        "every event once, in order per topic"
    );
    // No ticks on these topics: the default topic's are elsewhere.
    let default = client.get(demo.url("/fanout")).send().await.unwrap();
    assert_eq!(default.status(), StatusCode::OK);
}

#[tokio::test]
async fn bad_topic_lists_and_names_get_400_and_publish_nothing() {
    let demo = Demo::start().await;
    let client = client();
    let long = "x".repeat(129);
    let many: Vec<String> = (0..65).map(|i| format!("topic=t{i}")).collect();
    let many = many.join("&");
    let bad = [
        "topic=",
        "topic=a%20b",
        "topic=a/b",
        "topic=a+b",
        "topic=%zz",
        "topic=%C3%A9",
        &format!("topic=ok&topic={long}"),
        &many,
        "topic=a&topic=a",
    ];
    for query in bad {
        let res = within(
            "GET /fanout?…",
            client.get(demo.url(&format!("/fanout?{query}"))).send(),
        )
        .await
        .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "/fanout?{query}");
    }
    let max = "y".repeat(128);
    let res = client
        .get(demo.url(&format!("/fanout?topic={max}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "128 characters are fine");

    let mut ledger = Ledger::default();
    let mut stream = open(&client, &demo, None).await;
    for query in [
        "?topic=",
        "?topic=a%20b",
        "?topic=a&topic=b",
        &format!("?topic={long}"),
    ] {
        let status = publish(&client, &demo, query, "not published").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "/publish{query}");
    }
    // Nothing reached the stream: the next event is this one.
    ledger.send(&client, &demo, "a").await;
    ledger.read(&mut stream, 1).await;
    assert_eq!(ledger.seen, ledger.sent);
}
