//! The demo's "cut the connection" endpoints, which its page uses (not part of
//! CONTRACT.md): `GET /fanout?…&pane=P` is the same stream as without `pane`, and
//! `POST /cut?pane=P` ends exactly the open streams of pane P, cleanly (whole events,
//! then the end of the body). A client that comes back with the last id it saw gets
//! the events published meanwhile, with no gap and no repeat.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};

mod support;
use support::{demo::Demo, wire, within};

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(client: &Client, demo: &Demo, path: &str, last_event_id: Option<&str>) -> Response {
    let mut req = client.get(demo.url(path));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    within(path, req.send()).await.unwrap()
}

async fn post(client: &Client, demo: &Demo, path: &str, body: &str) -> (StatusCode, String) {
    let res = within(
        path,
        client.post(demo.url(path)).body(body.to_owned()).send(),
    )
    .await;
    let res = res.unwrap();
    (res.status(), within(path, res.text()).await.unwrap())
}

/// A response body read as SSE: whole events, and the bytes of the one under way.
struct Sse {
    res: Response,
    partial: Vec<u8>,
}

impl Sse {
    fn new(res: Response) -> Self {
        assert_eq!(res.status(), StatusCode::OK);
        Self {
            res,
            partial: Vec::new(),
        }
    }

    /// Reads until at least `n` whole events came; returns every whole event read.
    async fn events(&mut self, n: usize) -> Vec<eventsource_stream::Event> {
        let mut events = Vec::new();
        while events.len() < n {
            let chunk = within("the next chunk", self.res.chunk()).await.unwrap();
            self.partial
                .extend_from_slice(&chunk.expect("the stream goes on"));
            let whole = self.partial.windows(2).rposition(|w| w == b"\n\n");
            if let Some(end) = whole.map(|i| i + 2) {
                let blocks: Vec<u8> = self.partial.drain(..end).collect();
                events.extend(wire::parse_all(blocks).await);
            }
        }
        events
    }

    /// The rest of the body up to its end (panics if the connection broke instead).
    async fn rest(mut self) -> Vec<u8> {
        while let Some(chunk) = within("the end of the stream", self.res.chunk())
            .await
            .transpose()
        {
            self.partial
                .extend_from_slice(&chunk.expect("the body ends cleanly"));
        }
        self.partial
    }
}

#[tokio::test]
async fn cut_ends_the_pane_stream_and_last_event_id_resumes_it_without_a_gap() {
    let demo = Demo::start_with(&[("FANOUT_MS", "20")]).await;
    let client = client();
    let mut sse = Sse::new(get(&client, &demo, "/fanout?pane=page-ticks", None).await);
    let seen = sse.events(3).await;

    assert_eq!(
        post(&client, &demo, "/cut?pane=page-ticks", "").await,
        (StatusCode::NO_CONTENT, String::new())
    );
    // Whole events until the end: what the server sent after the first three.
    let tail = sse.rest().await;
    wire::assert_framing(&tail);
    let ids: Vec<u64> = seen
        .into_iter()
        .chain(wire::parse_all(tail).await)
        .map(|e| e.id.parse().unwrap())
        .collect();
    let last = *ids.last().unwrap();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    // Nothing of that pane is open any more.
    let (status, body) = post(&client, &demo, "/cut?pane=page-ticks", "").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::NOT_FOUND, "no open stream of this pane\n")
    );

    // Ticks go on meanwhile; the client comes back with the last id it saw.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = get(
        &client,
        &demo,
        "/fanout?pane=page-ticks",
        Some(&last.to_string()),
    )
    .await;
    let events = Sse::new(res).events(20).await;
    let resumed: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    // All the events of the chunks read, at least 20: replayed, then live.
    let want: Vec<u64> = (last + 1..).take(resumed.len()).collect();
    assert_eq!(resumed, want, "resumed after {last}");
}

#[tokio::test]
async fn cut_ends_only_the_streams_of_that_pane() {
    let demo = Demo::start().await;
    let client = client();
    let open = |path: &'static str| async { Sse::new(get(&client, &demo, path, None).await) };
    let mut cut_one = open("/fanout?topic=news&pane=a").await;
    let mut cut_two = open("/fanout?topic=news&topic=sports&pane=a").await;
    let other_pane = open("/fanout?topic=news&pane=b").await;
    let no_pane = open("/fanout?topic=news").await;

    assert_eq!(
        post(&client, &demo, "/publish?topic=news", "one").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(cut_one.events(1).await.len(), 1);
    assert_eq!(cut_two.events(1).await.len(), 1);
    assert_eq!(
        post(&client, &demo, "/cut?pane=a", "").await.0,
        StatusCode::NO_CONTENT
    );
    for sse in [cut_one, cut_two] {
        assert_eq!(sse.rest().await, b"", "nothing after the cut but the end");
    }
    // The others still stream: they get both messages.
    assert_eq!(
        post(&client, &demo, "/publish?topic=news", "two").await.0,
        StatusCode::NO_CONTENT
    );
    for mut sse in [other_pane, no_pane] {
        let events = sse.events(2).await;
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, ["one", "two"]);
        assert!(events.iter().all(|e| e.event == "news"));
    }
}

#[tokio::test]
async fn bad_pane_names_are_refused_with_400() {
    let demo = Demo::start().await;
    let client = client();
    let want = "query parameter `pane`: expected 1 to 128 characters from [A-Za-z0-9_.:-]\n";
    for pane in ["", "a%20b", "%zz", &"x".repeat(129)] {
        let res = get(&client, &demo, &format!("/fanout?pane={pane}"), None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{pane:?}");
        assert_eq!(res.text().await.unwrap(), want);
        let (status, body) = post(&client, &demo, &format!("/cut?pane={pane}"), "").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::BAD_REQUEST, want),
            "{pane:?}"
        );
    }
    let (status, body) = post(&client, &demo, "/cut", "").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::BAD_REQUEST, "query parameter `pane` missing\n")
    );
    // A name made of the allowed characters, percent-encoded or not, is fine.
    let res = get(&client, &demo, "/fanout?topic=t&pane=x%3A1.y-z_", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        post(&client, &demo, "/cut?pane=x:1.y-z_", "").await.0,
        StatusCode::NO_CONTENT
    );
}
