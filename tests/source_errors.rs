//! An error from the event source ends the stream cleanly, optionally after a last
//! event made by `on_error`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{io, time::Duration};

use eventsource_stream::Eventsource;
use futures_util::{StreamExt, TryStreamExt};
use support::{
    client::{http_client, Chunk, RawClient},
    server::serve_sse,
    sources::{DropFlag, Guarded},
    wire::concat,
    within,
};
use tower_sse::{Event, Overflow, SseLayer, SseResponse, SseStats};

/// Events 1 and 2, then (a little later, in a frame of its own) an error, then an
/// event 3 that must never be sent.
type Source = futures_util::stream::BoxStream<'static, Result<Event, io::Error>>;

fn failing() -> Source {
    futures_util::stream::iter([Ok(Event::new().data("1")), Ok(Event::new().data("2"))])
        .chain(futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(io::Error::other("boom"))
        }))
        .chain(futures_util::stream::iter([Ok(Event::new().data("3"))]))
        .boxed()
}

/// Events 1 and 2 and the error all ready at once (one frame).
fn failing_at_once() -> Source {
    futures_util::stream::iter([
        Ok(Event::new().data("1")),
        Ok(Event::new().data("2")),
        Err(io::Error::other("boom")),
        Ok(Event::new().data("3")),
    ])
    .boxed()
}

fn error_event_layer() -> SseLayer {
    SseLayer::new().on_error(|err| {
        Some(
            Event::new()
                .event("error")
                .expect("a constant name")
                .data(err.to_string()),
        )
    })
}

/// Serves `source` under `layer` and reads the raw body to its end.
async fn raw_body(layer: SseLayer, source: fn() -> Source) -> (String, Chunk, SseStats, DropFlag) {
    let stats = layer.stats();
    let flag = DropFlag::new();
    let server = serve_sse(layer, {
        let flag = flag.clone();
        move |_req| {
            let source = Guarded::new(source(), &flag);
            async move { SseResponse::new(source) }
        }
    })
    .await;
    let mut client = RawClient::connect(server.addr).await;
    client.get("/", &[]).await;
    assert_eq!(client.read_head().await.status, 200);
    let (chunks, end) = client.read_to_end().await;
    (
        String::from_utf8(concat(&chunks)).unwrap(),
        end,
        stats,
        flag,
    )
}

#[tokio::test]
async fn source_error_ends_the_stream_cleanly_after_the_events_before_it() {
    // Fresh layers each time: clones of a layer share their stats.
    let layers: [fn() -> SseLayer; 2] = [SseLayer::new, || {
        SseLayer::new().on_overflow(Overflow::DropOldest)
    }];
    for layer in layers {
        for source in [failing, failing_at_once] {
            let (body, end, stats, flag) = raw_body(layer(), source).await;
            assert_eq!(body, "data: 1\n\ndata: 2\n\n");
            assert_eq!(end, Chunk::End, "the terminating chunk: a clean end");
            within("the source to be dropped", flag.dropped()).await;
            assert_eq!(stats.source_errors(), 1);
            assert_eq!(stats.events_sent(), 2);
        }
    }
}

#[tokio::test]
async fn on_error_sends_a_last_event_before_the_end() {
    let layers: [fn() -> SseLayer; 2] = [error_event_layer, || {
        error_event_layer().on_overflow(Overflow::DropOldest)
    }];
    for layer in layers {
        for source in [failing, failing_at_once] {
            let (body, end, stats, _) = raw_body(layer(), source).await;
            assert_eq!(body, "data: 1\n\ndata: 2\n\nevent: error\ndata: boom\n\n");
            assert_eq!(end, Chunk::End);
            assert_eq!(stats.source_errors(), 1);
            assert_eq!(stats.events_sent(), 3);
        }
    }
}

#[tokio::test]
async fn on_error_returning_none_sends_nothing_more() {
    let (body, end, stats, _) = raw_body(SseLayer::new().on_error(|_| None), failing).await;
    assert_eq!(body, "data: 1\n\ndata: 2\n\n");
    assert_eq!(end, Chunk::End);
    assert_eq!(stats.source_errors(), 1);
}

#[tokio::test]
async fn eventsource_client_sees_the_events_and_the_error_event_then_a_clean_end() {
    let server = serve_sse(error_event_layer(), |_req| async {
        SseResponse::new(failing())
    })
    .await;
    let res = within("response", http_client().get(server.url("/")).send())
        .await
        .unwrap();
    // `try_collect` fails on a transport error (a truncated body) or a parse error.
    let events: Vec<eventsource_stream::Event> =
        within("events", res.bytes_stream().eventsource().try_collect())
            .await
            .unwrap();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![("message", "1"), ("message", "2"), ("error", "boom")]
    );
}
