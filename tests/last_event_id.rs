//! The `Last-Event-ID` request header reaches the handler, and clients can resume
//! (read with `test_util::SseReader`, whose `reconnect` sends the header).
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;

use support::{
    client::{http_client, Chunk, RawClient},
    server::{serve_sse, TestServer},
    wire::concat,
    within,
};
use tower_sse::{
    test_util::{MessageEvent, SseReader},
    Event, LastEventId, SseLayer, SseResponse,
};

/// One event whose data tells what the handler saw: `none`, or `got <id>`.
async fn echo_server() -> TestServer {
    serve_sse(SseLayer::new(), |req| async move {
        let seen = match req.extensions().get::<LastEventId>() {
            Some(id) => format!("got {}", id.as_str()),
            None => "none".to_owned(),
        };
        SseResponse::new(tokio_stream::iter([Ok::<_, Infallible>(
            Event::new().data(seen),
        )]))
    })
    .await
}

async fn echo(server: &TestServer, header: Option<&[u8]>) -> String {
    let mut client = RawClient::connect(server.addr).await;
    let mut req = b"GET / HTTP/1.1\r\nhost: localhost\r\n".to_vec();
    if let Some(value) = header {
        req.extend_from_slice(b"last-event-id: ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    client.send(&req).await;
    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    String::from_utf8(concat(&chunks)).unwrap()
}

#[tokio::test]
async fn last_event_id_header_reaches_the_handler_as_an_extension() {
    let server = echo_server().await;
    assert_eq!(echo(&server, Some(b"41")).await, "data: got 41\n\n");
    assert_eq!(
        echo(&server, Some(b"abc-7 x")).await,
        "data: got abc-7 x\n\n"
    );
    assert_eq!(echo(&server, None).await, "data: none\n\n");
}

#[tokio::test]
async fn an_empty_last_event_id_is_handed_over_as_empty() {
    let server = echo_server().await;
    assert_eq!(echo(&server, Some(b"")).await, "data: got \n\n");
}

#[tokio::test]
async fn a_last_event_id_that_is_not_utf8_is_ignored() {
    let server = echo_server().await;
    // obs-text is legal in a header value, but it is not an id.
    assert_eq!(echo(&server, Some(b"4\xff2")).await, "data: none\n\n");
}

/// Events with ids 1..=10, data = the id, starting after the client's Last-Event-ID.
async fn resume_server() -> TestServer {
    serve_sse(SseLayer::new(), |req| async move {
        let after: u32 = req
            .extensions()
            .get::<LastEventId>()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        SseResponse::new(tokio_stream::iter((after + 1..=10).map(|i| {
            Ok::<_, Infallible>(Event::new().id(i.to_string()).unwrap().data(i.to_string()))
        })))
    })
    .await
}

#[tokio::test]
async fn a_client_resumes_after_the_last_event_it_saw() {
    let server = resume_server().await;
    let client = http_client();
    let get = |req: http::request::Builder| {
        let req = reqwest::Request::try_from(req.body(Vec::new()).unwrap()).unwrap();
        within("response", client.execute(req))
    };

    // First connection: read four events, then go away.
    let res = get(http::Request::get(server.url("/"))).await.unwrap();
    let mut first = SseReader::from_response(http::Response::from(res)).unwrap();
    let mut seen = first.collect(4).await.unwrap();
    assert_eq!(first.last_event_id(), "4");

    // Reconnect the way EventSource does: with `Last-Event-ID: 4`.
    let next = first.reconnect(http::Request::get(server.url("/")));
    drop(first);
    let res = get(next).await.unwrap();
    let mut second = SseReader::from_response(http::Response::from(res)).unwrap();
    seen.extend(second.read_to_end().await.unwrap());

    let expected: Vec<MessageEvent> = (1..=10)
        .map(|i| MessageEvent::new(i.to_string()).with_id(i.to_string()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(second.last_event_id(), "10");
}
