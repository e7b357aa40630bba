//! `test_util::SseReader` parses as a published WHATWG parser does: for arbitrary
//! event-stream text (fields, comments, unknown and malformed lines, every kind of
//! line end), cut into pieces anywhere (inside a `\r\n` or a UTF-8 character
//! too), it dispatches the same events as eventsource-stream, with the same type,
//! data and `lastEventId`.
//!
//! Where the two differ, by design (tests in `src/test_util/parse.rs`): the reader also
//! reports comment-only blocks (heartbeats), and it reads a `retry:` without data;
//! eventsource-stream reports neither. The inputs end with `\n\n`, because
//! eventsource-stream never finishes a line whose `\r` is the stream's last byte, and
//! start without a BOM, because eventsource-stream 0.2.3 panics on one (it slices the
//! 3-byte U+FEFF at byte 1); the reader's BOM handling is tested in its unit tests.
#![cfg(feature = "test-util")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures_util::TryStreamExt;
use http_body::Frame;
use proptest::{prelude::*, sample::Index};
use support::runtime;
use tower_sse::test_util::SseReader;

/// One line of an event stream, without its line end.
fn line() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        Just(String::new()),
        Just(" ".to_owned()),
        Just("  two spaces".to_owned()),
        Just("a:b".to_owned()),
        Just("x\0y".to_owned()),
        Just("é€😀".to_owned()),
        Just("123".to_owned()),
        "[a-z0-9 ]{1,6}",
    ];
    let name = prop_oneof![
        Just("data"),
        Just("data"),
        Just("id"),
        Just("event"),
        Just("retry"),
        Just(""),
        Just("Data"),
        Just(" data"),
        Just("unknown"),
    ];
    prop_oneof![
        4 => (name.clone(), value.clone()).prop_map(|(n, v)| format!("{n}:{v}")),
        2 => (name.clone(), value.clone()).prop_map(|(n, v)| format!("{n}: {v}")),
        1 => name.prop_map(str::to_owned),
        1 => value.prop_map(|v| format!(":{v}")),
        2 => Just(String::new()),
    ]
}

fn stream_text() -> impl Strategy<Value = String> {
    let end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    prop::collection::vec((line(), end), 0..24).prop_map(|lines| {
        let mut text = String::new();
        for (line, end) in lines {
            text.push_str(&line);
            text.push_str(end);
        }
        text.push_str("\n\n");
        text
    })
}

fn pieces(bytes: &[u8], cuts: &[Index]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut from = 0;
    for cut in at.into_iter().chain([bytes.len()]) {
        out.push(Bytes::copy_from_slice(&bytes[from..cut]));
        from = cut;
    }
    out
}

type Dispatched = Vec<(String, String, String)>;

async fn by_reader(pieces: Vec<Bytes>) -> Dispatched {
    let frames = pieces
        .into_iter()
        .map(|piece| Ok::<_, Infallible>(Frame::data(piece)));
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut reader = SseReader::new(body);
    let events = reader.read_to_end().await.unwrap();
    events
        .into_iter()
        .map(|e| (e.event().to_owned(), e.data().to_owned(), e.id().to_owned()))
        .collect()
}

async fn by_eventsource_stream(pieces: Vec<Bytes>) -> Dispatched {
    let chunks = pieces.into_iter().map(Ok::<_, Infallible>);
    let events: Vec<eventsource_stream::Event> = futures_util::stream::iter(chunks)
        .eventsource()
        .try_collect()
        .await
        .unwrap();
    events
        .into_iter()
        .map(|e| (e.event, e.data, e.id))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_reader_dispatches_what_eventsource_stream_dispatches(
        text in stream_text(),
        cuts in prop::collection::vec(any::<Index>(), 0..4),
    ) {
        let pieces = pieces(text.as_bytes(), &cuts);
        let (ours, theirs) = runtime().block_on(async {
            (by_reader(pieces.clone()).await, by_eventsource_stream(pieces).await)
        });
        prop_assert_eq!(ours, theirs, "{:?}", text);
    }
}
