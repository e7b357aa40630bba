//! Batching: events that are ready together go out in one body frame (hyper writes
//! each frame as one chunk), within the frame and buffer caps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use support::{
    body::{next_frame, sse_body},
    client::{Chunk, RawClient},
    server::serve_sse,
    wire::{blocks, concat},
};
use tower_sse::{BufferLimits, Event, Overflow, SseLayer, SseResponse};

/// `count` events with ids, each exactly `data: NNNNN…\n\n` padded to 100 bytes.
fn events(count: usize) -> Vec<Event> {
    (0..count)
        .map(|i| Event::new().data(format!("{i:0>92}")))
        .collect()
}

fn ready(count: usize) -> impl futures_core::Stream<Item = Result<Event, Infallible>> + Send {
    futures_util::stream::iter(events(count).into_iter().map(Ok))
}

fn expected_text(count: usize) -> String {
    events(count)
        .iter()
        .map(|e| String::from_utf8(e.encode().into_bytes().to_vec()).unwrap())
        .collect()
}

async fn frames_of(layer: SseLayer, count: usize) -> Vec<Bytes> {
    let mut body = sse_body(layer, ready(count)).await;
    let mut frames = Vec::new();
    while let Some(frame) = support::within("a frame", next_frame(&mut body)).await {
        frames.push(frame);
    }
    frames
}

fn events_in(frame: &Bytes) -> usize {
    blocks(std::str::from_utf8(frame).unwrap()).len()
}

#[tokio::test]
async fn ready_events_arrive_in_fewer_frames_than_events() {
    assert_eq!(events(1)[0].encoded_len(), 100);
    let layer = SseLayer::new();
    let stats = layer.stats();
    let frames = frames_of(layer, 100).await;
    assert!(frames.len() < 100, "{} frames for 100 events", frames.len());
    assert_eq!(
        frames.len(),
        1,
        "100 small ready events fit one default frame"
    );
    assert_eq!(events_in(&frames[0]), 100);
    let all: Vec<u8> = frames.iter().flatten().copied().collect();
    assert_eq!(String::from_utf8(all).unwrap(), expected_text(100));
    assert_eq!(stats.events_sent(), 100);
    assert_eq!(stats.bytes_sent(), 100 * 100);
}

#[tokio::test]
async fn ready_events_are_batched_through_the_buffer_too() {
    let layer = SseLayer::new().on_overflow(Overflow::DropOldest);
    let stats = layer.stats();
    let frames = frames_of(layer, 100).await;
    assert!(frames.len() < 100, "{} frames for 100 events", frames.len());
    let all: Vec<u8> = frames.iter().flatten().copied().collect();
    assert_eq!(String::from_utf8(all).unwrap(), expected_text(100));
    assert_eq!(stats.events_sent(), 100);
    assert_eq!(stats.events_dropped(), 0);
}

#[tokio::test]
async fn frames_stay_within_max_frame_bytes() {
    // 1000 bytes per frame: ten 100-byte events each.
    for layer in [
        SseLayer::new().max_frame_bytes(1000),
        SseLayer::new()
            .max_frame_bytes(1000)
            .on_overflow(Overflow::DropOldest),
    ] {
        let frames = frames_of(layer, 95).await;
        for frame in &frames {
            assert!(frame.len() <= 1000, "a frame of {} bytes", frame.len());
            assert!(frame.ends_with(b"\n\n"));
        }
        assert!(frames.len() >= 10, "{} frames", frames.len());
        let all: Vec<u8> = frames.iter().flatten().copied().collect();
        assert_eq!(String::from_utf8(all).unwrap(), expected_text(95));
    }
}

#[tokio::test]
async fn frames_through_the_buffer_hold_at_most_its_event_cap() {
    for policy in [Overflow::DropNewest, Overflow::DropOldest] {
        let layer = SseLayer::new()
            .buffer(BufferLimits::new(8, 1 << 20))
            .on_overflow(policy);
        let frames = frames_of(layer, 50).await;
        assert!(frames.len() < 50);
        for frame in &frames {
            assert!(
                events_in(frame) <= 8,
                "{} events in a frame",
                events_in(frame)
            );
        }
    }
}

#[tokio::test]
async fn frames_never_exceed_the_buffer_byte_cap() {
    // Without a queue (Wait), the frame is all the stream holds: its size is capped
    // by the smaller of max_frame_bytes and the buffer's byte cap.
    let layer = SseLayer::new().buffer(BufferLimits::new(1, 1000));
    let frames = frames_of(layer, 95).await;
    assert!(frames.len() >= 10, "{} frames", frames.len());
    for frame in &frames {
        assert!(frame.len() <= 1000, "a frame of {} bytes", frame.len());
    }
    let all: Vec<u8> = frames.iter().flatten().copied().collect();
    assert_eq!(String::from_utf8(all).unwrap(), expected_text(95));
}

#[tokio::test]
async fn ready_events_arrive_in_fewer_chunks_than_events_on_the_wire() {
    let server = serve_sse(SseLayer::new(), |_req| async {
        SseResponse::new(ready(500))
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    client.read_head().await;
    let (chunks, end) = client.read_to_end().await;
    assert_eq!(end, Chunk::End);
    assert!(
        chunks.len() < 500 / 10,
        "{} chunks for 500 events",
        chunks.len()
    );
    let all = concat(&chunks);
    assert_eq!(String::from_utf8(all).unwrap(), expected_text(500));
}

#[tokio::test]
async fn frames_never_exceed_max_frame_bytes_when_events_do_not_divide_it() {
    // 150-byte events, 1000-byte frames: at most six events (900 bytes) per frame.
    let events: Vec<Event> = (0..40)
        .map(|i| Event::new().data(format!("{i:0>142}")))
        .collect();
    assert_eq!(events[0].encoded_len(), 150);
    for layer in [
        SseLayer::new().max_frame_bytes(1000),
        SseLayer::new()
            .max_frame_bytes(1000)
            .on_overflow(Overflow::DropOldest),
        SseLayer::new().buffer(BufferLimits::new(256, 1000)),
    ] {
        let source =
            futures_util::stream::iter(events.clone().into_iter().map(Ok::<_, Infallible>));
        let mut body = sse_body(layer.clone(), source).await;
        let mut sizes = Vec::new();
        while let Some(frame) = support::within("a frame", next_frame(&mut body)).await {
            sizes.push(frame.len());
        }
        assert!(
            sizes.iter().all(|&n| n <= 1000),
            "{layer:?}: frame sizes {sizes:?}"
        );
    }
}
