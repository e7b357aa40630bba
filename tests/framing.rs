//! The exact bytes on the wire, and what a third-party SSE parser reads back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{convert::Infallible, time::Duration};

use eventsource_stream::Eventsource;
use futures_util::TryStreamExt;
use support::{
    client::{http_client, Chunk, RawClient},
    server::{serve_sse, TestServer},
    wire::{assert_framing, concat},
    within,
};
use tower_sse::{EncodedEvent, Event, Message, SseLayer, SseResponse};

fn sample_events() -> Vec<Event> {
    vec![
        Event::new()
            .id("1")
            .unwrap()
            .event("tick")
            .unwrap()
            .data("line one\nline two\nline three"),
        Event::new().data("a\r\nb\rc"),
        Event::new().data(" leading space"),
        Event::new().comment("a comment").data("after comment"),
        Event::new().retry(Duration::from_millis(1500)),
        Event::new().data(""),
        Event::new().data("trailing\n"),
        Event::new().data("\r\n\r"),
    ]
}

const SAMPLE_WIRE: &str = concat!(
    "id: 1\nevent: tick\ndata: line one\ndata: line two\ndata: line three\n\n",
    "data: a\ndata: b\ndata: c\n\n",
    "data:  leading space\n\n",
    ": a comment\ndata: after comment\n\n",
    "retry: 1500\n\n",
    "data:\n\n",
    "data: trailing\ndata:\n\n",
    "data:\ndata:\ndata:\n\n",
);

fn sample_layer() -> SseLayer {
    SseLayer::new().no_heartbeat()
}

async fn sample_server() -> TestServer {
    serve_sse(sample_layer(), |_req| async {
        SseResponse::new(tokio_stream::iter(
            sample_events().into_iter().map(Ok::<_, Infallible>),
        ))
    })
    .await
}

#[tokio::test]
async fn every_line_ends_with_one_lf_and_every_event_with_a_blank_line() {
    let server = sample_server().await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    let head = client.read_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("transfer-encoding"), Some("chunked"));

    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End, "the body ends with the terminating chunk");
    let body = concat(&chunks);
    assert_framing(&body);
    assert_eq!(String::from_utf8(body).unwrap(), SAMPLE_WIRE);
    // A frame never splits an event: each chunk is whole events.
    for chunk in &chunks {
        assert!(
            chunk.ends_with(b"\n\n"),
            "{:?}",
            String::from_utf8_lossy(chunk)
        );
    }
}

#[tokio::test]
async fn eventsource_parser_reads_back_data_with_line_breaks_normalised() {
    let server = sample_server().await;
    let res = within("response", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    let events: Vec<eventsource_stream::Event> =
        within("all events", res.bytes_stream().eventsource().try_collect())
            .await
            .unwrap();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str(), e.id.as_str()))
        .collect();
    // The retry-only block is not an event for eventsource-stream (nor for WHATWG:
    // a block without data dispatches nothing); the id persists as the last event id.
    assert_eq!(
        seen,
        vec![
            ("tick", "line one\nline two\nline three", "1"),
            ("message", "a\nb\nc", "1"),
            ("message", " leading space", "1"),
            ("message", "after comment", "1"),
            ("message", "", "1"),
            ("message", "trailing\n", "1"),
            ("message", "\n\n", "1"),
        ]
    );
}

#[tokio::test]
async fn an_event_larger_than_max_frame_bytes_goes_out_whole() {
    let big = "y".repeat(10_000);
    let expected = format!("data: small\n\ndata: {big}\n\ndata: after\n\n");
    let server = serve_sse(sample_layer().max_frame_bytes(64), move |_req| {
        let big = big.clone();
        async move {
            SseResponse::new(tokio_stream::iter([
                Ok::<_, Infallible>(Event::new().data("small")),
                Ok(Event::new().data(big)),
                Ok(Event::new().data("after")),
            ]))
        }
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    for chunk in &chunks {
        assert!(chunk.ends_with(b"\n\n"));
    }
    assert_eq!(String::from_utf8(concat(&chunks)).unwrap(), expected);
}

#[tokio::test]
async fn encoded_events_are_sent_byte_for_byte() {
    let server = serve_sse(sample_layer(), |_req| async {
        let encoded: Vec<EncodedEvent> = sample_events().iter().map(EncodedEvent::from).collect();
        SseResponse::new(tokio_stream::iter(
            encoded.into_iter().map(Ok::<_, Infallible>),
        ))
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert_eq!(String::from_utf8(concat(&chunks)).unwrap(), SAMPLE_WIRE);
}

#[tokio::test]
async fn an_empty_source_ends_with_an_empty_body() {
    let server = serve_sse(sample_layer(), |_req| async {
        SseResponse::new(tokio_stream::empty::<Result<Event, Infallible>>())
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert!(chunks.is_empty(), "{chunks:?}");
}

#[tokio::test]
async fn a_source_may_mix_events_and_encoded_events() {
    let server = serve_sse(sample_layer(), |_req| async {
        let shared = Event::new().data("for everyone").encode();
        let items: Vec<Message> = vec![
            Event::new().data("just for you").into(),
            shared.clone().into(),
            Event::new().id("2").unwrap().data("a\rb").into(),
            shared.into(),
        ];
        SseResponse::new(tokio_stream::iter(
            items.into_iter().map(Ok::<_, Infallible>),
        ))
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert_eq!(
        String::from_utf8(concat(&chunks)).unwrap(),
        "data: just for you\n\ndata: for everyone\n\nid: 2\ndata: a\ndata: b\n\ndata: for everyone\n\n"
    );
}
