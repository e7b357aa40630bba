//! tower_governor (the per-IP request-rate limiter axum users pick) in front of the SSE
//! routes, with the layer's per-client stream cap behind it: `examples/governor.rs`,
//! which is the README's example word for word (checked here), served by
//! `axum::serve` with `ConnectInfo`. Both turn a client away with the shed answer (200,
//! `retry:`, end), never a `429` that `EventSource` would take as fatal.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../examples/governor.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

use std::{net::SocketAddr, time::Duration};

use http::StatusCode;
use support::{client::http_client, wait_until, within};
use tower_sse::test_util::SseReader;

#[test]
fn the_readme_shows_the_example_word_for_word() {
    let example = include_str!("../examples/governor.rs");
    let code: Vec<&str> = example
        .lines()
        .skip_while(|line| line.starts_with("//!") || line.is_empty())
        .collect();
    let code = code.join("\n");
    assert!(code.starts_with("use std::"), "{code}");
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```rust,no_run\n{code}\n```")),
        "the README's tower_governor example differs from examples/governor.rs"
    );
}

async fn get(client: &reqwest::Client, url: &str) -> SseReader<reqwest::Body> {
    let res = within("response head", client.get(url).send())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    SseReader::from_response(http::Response::from(res)).unwrap()
}

/// The `retry` of a shed answer: no event, a `retry:`, the end.
async fn shed_retry(mut reader: SseReader<reqwest::Body>) -> Duration {
    assert_eq!(reader.read_to_end().await.unwrap(), []);
    reader.retry().expect("a shed answer has a retry")
}

#[tokio::test]
async fn governor_in_front_and_the_per_client_cap_behind_both_answer_with_the_shed_answer() {
    let sse = example::sse_layer();
    let stats = sse.stats();
    let router = example::app(sse);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).await.unwrap();
    });
    let client = http_client();

    // Requests 1 to 4: streams, under both limits.
    let mut open = Vec::new();
    for n in 1..=4 {
        open.push(get(&client, &url).await);
        wait_until("the stream is open", || stats.open_streams() == n).await;
    }
    assert_eq!(stats.streams_shed(), 0);
    // Then, within the burst of 10 and over the cap of 4: the layer sheds them. Once
    // the burst is spent, the governor answers (the layer no longer sees the requests),
    // with the shed answer too. (The governor adds a request every 2 s: on a slow
    // machine, a few more may reach the layer first.)
    let mut by_layer = 0;
    let mut by_governor = 0;
    for _ in 5..=40 {
        let shed_before = stats.streams_shed();
        let retry = shed_retry(get(&client, &url).await).await;
        assert!(retry >= Duration::from_secs(1), "{retry:?}");
        if stats.streams_shed() > shed_before {
            by_layer += 1;
        } else {
            by_governor += 1;
            break;
        }
    }
    assert!(
        by_layer >= 6,
        "requests 5 to 10 are the layer's: {by_layer}"
    );
    assert_eq!(by_governor, 1, "the governor never answered");
    assert_eq!(stats.open_streams(), 4);
    drop(open);
    server.abort();
}
