//! HTTP/2: many SSE streams multiplexed over one h2c connection (hyper's HTTP/2
//! client with prior knowledge against the auto server), each with its own events
//! and heartbeats; closing one stream leaves the others running and drops only its
//! source.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{collections::BTreeMap, convert::Infallible, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{
    server::serve_sse,
    sources::{DropFlag, Guarded},
    wait_until,
    wire::{field, is_comment},
    within,
};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tower_sse::{Event, SseLayer, SseResponse};

const STREAMS: usize = 20;

/// The server's side of one stream, as the test sees it.
struct Source {
    /// Sends the source's events; dropping it ends the source.
    feed: mpsc::UnboundedSender<Event>,
    /// Set when the layer dropped the source.
    dropped: DropFlag,
}

/// The client's side of one stream: SSE blocks read off its response body.
struct Reader {
    body: Incoming,
    buf: String,
}

impl Reader {
    /// The next block (an event, or a comment heartbeat), without its blank line.
    async fn next_block(&mut self, what: &str) -> String {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block = self.buf[..end].to_owned();
                self.buf.drain(..end + 2);
                return block;
            }
            let frame = within(what, self.body.frame())
                .await
                .unwrap_or_else(|| panic!("the stream ended before {what}"))
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Reads until an event with `data`, skipping heartbeats; panics on another event.
    async fn event(&mut self, data: &str) {
        loop {
            let block = self.next_block(data).await;
            if !is_comment(&block) {
                assert_eq!(field(&block, "data"), Some(data), "{block:?}");
                return;
            }
        }
    }

    /// Reads until a heartbeat; panics on an event.
    async fn heartbeat(&mut self, what: &str) {
        let block = self.next_block(what).await;
        assert!(
            is_comment(&block),
            "an event instead of a heartbeat: {block:?}"
        );
    }
}

#[tokio::test]
async fn many_streams_share_one_h2_connection_and_closing_one_leaves_the_others_running() {
    // A quiet source per stream (only the test's events), heartbeats every 50 ms.
    let layer = SseLayer::new().heartbeat(Duration::from_millis(50));
    let stats = layer.stats();
    let (sources_tx, mut sources_rx) = mpsc::unbounded_channel::<(usize, Source)>();
    let server = serve_sse(layer, move |req: Request<Incoming>| {
        let n: usize = req.uri().path()["/s/".len()..].parse().unwrap();
        let (feed, events) = mpsc::unbounded_channel();
        let dropped = DropFlag::new();
        let source = Guarded::new(
            UnboundedReceiverStream::new(events).map(Ok::<_, Infallible>),
            &dropped,
        );
        sources_tx.send((n, Source { feed, dropped })).unwrap();
        async move { SseResponse::new(source) }
    })
    .await;

    // One TCP connection, HTTP/2 with prior knowledge.
    let tcp = within("connect", TcpStream::connect(server.addr))
        .await
        .unwrap();
    let (mut send, conn) = within(
        "h2 handshake",
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(tcp),
        ),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);

    let mut readers = BTreeMap::new();
    for n in 0..STREAMS {
        within("the connection to take a stream", send.ready())
            .await
            .unwrap();
        let req = Request::get(server.url(&format!("/s/{n}")))
            .header(header::ACCEPT, "text/event-stream")
            .body(Empty::new())
            .unwrap();
        let res = within("response head", send.send_request(req))
            .await
            .unwrap();
        assert_eq!(res.version(), Version::HTTP_2);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
        readers.insert(
            n,
            Reader {
                body: res.into_body(),
                buf: String::new(),
            },
        );
    }
    let mut sources = BTreeMap::new();
    for _ in 0..STREAMS {
        let (n, source) = within("the handler to build a source", sources_rx.recv())
            .await
            .unwrap();
        sources.insert(n, source);
    }
    assert_eq!(sources.len(), STREAMS);
    wait_until("all streams to open", || {
        stats.open_streams() == STREAMS as u64
    })
    .await;

    // Each stream gets its own events, and its own heartbeats while it is quiet.
    for (n, reader) in &mut readers {
        sources[n]
            .feed
            .send(Event::new().data(format!("{n} first")))
            .unwrap();
        reader.event(&format!("{n} first")).await;
        reader
            .heartbeat(&format!("a heartbeat on stream {n}"))
            .await;
    }

    // The client closes stream 0 (RST_STREAM); the connection stays.
    drop(readers.remove(&0));
    within(
        "stream 0's source to be dropped",
        sources[&0].dropped.dropped(),
    )
    .await;
    wait_until("stream 0 to close", || {
        stats.open_streams() == STREAMS as u64 - 1
    })
    .await;
    assert!(sources[&0].feed.is_closed());

    // The others run on: their sources are alive, and events and heartbeats come.
    for (n, reader) in &mut readers {
        assert!(
            !sources[n].dropped.is_set(),
            "stream {n}'s source was dropped"
        );
        sources[n]
            .feed
            .send(Event::new().data(format!("{n} after")))
            .unwrap();
        reader.event(&format!("{n} after")).await;
        reader
            .heartbeat(&format!("a heartbeat on stream {n} after"))
            .await;
    }
    assert_eq!(stats.open_streams(), STREAMS as u64 - 1);
    assert_eq!(stats.streams_opened(), STREAMS as u64);
    assert!(!conn.is_finished(), "the h2 connection ended");
    for (n, source) in &sources {
        assert_eq!(source.dropped.is_set(), *n == 0, "stream {n}");
    }
}
