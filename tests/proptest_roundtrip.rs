//! Round trip through a third-party parser: for arbitrary `data`, `id`, `event` name,
//! comment and retry, either the `Event` builder refuses the value with a typed error
//! (and only then: the value holds `\n`/`\r`, or `\0` for an id), or eventsource-stream
//! parses the layer's bytes back into exactly the input.
//!
//! What a WHATWG parser does, and so what "exactly the input" means here:
//! - `data` comes back with its line breaks normalised: `\r\n` and a lone `\r`
//!   become `\n` (the spec's parser splits lines on all three and joins `data` lines
//!   with `\n`); nothing else changes, leading spaces and NULs included.
//! - an empty event name, or none, is dispatched as type `message` (WHATWG step
//!   "if the event type buffer has a value other than the empty string"); a name
//!   `message` is indistinguishable from no name.
//! - the id is the last id the stream set (`lastEventId` persists across events,
//!   an empty `id` resets it to empty).
//! - comments are ignored.
//!
//! eventsource-stream 0.2 diverges from WHATWG in one way that matters here, and the
//! assertions account for it: it reports `retry` as a field of the dispatched event
//! (`Event::retry`), reset for each event, where WHATWG sets the connection's
//! reconnection time as soon as the field is parsed; a block without `data` is
//! dispatched by neither, so eventsource-stream never reports the `retry` of a
//! retry-only block (see tests/framing.rs). Here every event has data, so the retry
//! is always seen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use proptest::{prelude::*, sample::Index};
use support::{runtime, wire::parse_in_two};
use tower_sse::{Event, EventErrorKind, SseLayer};

/// Text rich in what matters to SSE framing: line breaks of every kind, NUL, colons,
/// spaces, a BOM, multi-byte characters, and arbitrary Unicode.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just("\r\n".to_owned()),
        Just("\0".to_owned()),
        Just(" ".to_owned()),
        Just(":".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("data: x".to_owned()),
        "[a-z0-9]{1,4}",
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat()),
        any::<String>(),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    data: String,
    id: Option<String>,
    name: Option<String>,
    comment: Option<String>,
    retry_ms: Option<u32>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        text(),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(data, id, name, comment, retry_ms)| Input {
            data,
            id,
            name,
            comment,
            retry_ms,
        })
}

/// Builds the event, checking that the builder refuses exactly the values it must.
/// `None` when it refused one.
fn build(input: &Input) -> Option<Event> {
    let mut event = Event::new();
    if let Some(id) = &input.id {
        match event.id(id.clone()) {
            Ok(ok) => {
                assert!(!id.contains(['\n', '\r', '\0']), "accepted id {id:?}");
                event = ok;
            }
            Err(err) => {
                let expected_kinds: &[EventErrorKind] =
                    match (id.contains(['\n', '\r']), id.contains('\0')) {
                        (true, true) => &[EventErrorKind::IdLineBreak, EventErrorKind::IdNul],
                        (true, false) => &[EventErrorKind::IdLineBreak],
                        (false, true) => &[EventErrorKind::IdNul],
                        (false, false) => panic!("refused id {id:?}: {err}"),
                    };
                assert!(expected_kinds.contains(&err.kind()), "{id:?}: {err:?}");
                return None;
            }
        }
    }
    if let Some(name) = &input.name {
        match event.event(name.clone()) {
            Ok(ok) => {
                assert!(!name.contains(['\n', '\r']), "accepted name {name:?}");
                event = ok;
            }
            Err(err) => {
                assert!(name.contains(['\n', '\r']), "refused name {name:?}: {err}");
                assert_eq!(err.kind(), EventErrorKind::EventLineBreak);
                return None;
            }
        }
    }
    if let Some(comment) = &input.comment {
        event = event.comment(comment.clone());
    }
    if let Some(ms) = input.retry_ms {
        event = event.retry(Duration::from_millis(ms.into()));
    }
    Some(event.data(input.data.clone()))
}

/// What a WHATWG parser reads back from `data`.
fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// The bytes the layer writes for `events`, in process.
async fn layer_bytes(events: Vec<Event>) -> Vec<u8> {
    support::body::layer_bytes(SseLayer::new(), events).await
}

/// Parses `bytes` delivered in two pieces, split at `split` (TCP may cut anywhere,
/// even inside a UTF-8 character).
async fn parse(bytes: Vec<u8>, split: Index) -> Vec<eventsource_stream::Event> {
    let at = split.index(bytes.len() + 1);
    parse_in_two(bytes, at).await
}

#[test]
fn one_event_is_refused_or_parsed_back_exactly() {
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(512), |(input in input(), split in any::<Index>())| {
        let Some(event) = build(&input) else { return Ok(()) };
        // The layer writes exactly the event's own encoding.
        let bytes = rt.block_on(layer_bytes(vec![event.clone()]));
        let encoded = event.encode();
        prop_assert_eq!(&bytes[..], &encoded.as_bytes()[..]);
        prop_assert!(!bytes.contains(&b'\r'));

        let parsed = rt.block_on(parse(bytes, split));
        prop_assert_eq!(parsed.len(), 1, "{:?}", parsed);
        let got = &parsed[0];
        prop_assert_eq!(&got.data, &normalised(&input.data));
        let name = input.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("message");
        prop_assert_eq!(got.event.as_str(), name);
        prop_assert_eq!(got.id.as_str(), input.id.as_deref().unwrap_or(""));
        prop_assert_eq!(got.retry, input.retry_ms.map(|ms| Duration::from_millis(ms.into())));
    });
}

#[test]
fn a_stream_of_events_is_parsed_back_in_order() {
    let rt = runtime();
    let inputs = prop::collection::vec(input(), 1..6);
    proptest!(ProptestConfig::with_cases(256), |(inputs in inputs, split in any::<Index>())| {
        let built: Vec<(Input, Event)> = inputs
            .into_iter()
            .filter_map(|input| build(&input).map(|event| (input, event)))
            .collect();
        let events: Vec<Event> = built.iter().map(|(_, e)| e.clone()).collect();
        let bytes = rt.block_on(layer_bytes(events));
        let parsed = rt.block_on(parse(bytes, split));
        prop_assert_eq!(parsed.len(), built.len());
        let mut last_id = String::new();
        for ((input, _), got) in built.iter().zip(&parsed) {
            if let Some(id) = &input.id {
                last_id = id.clone();
            }
            prop_assert_eq!(&got.data, &normalised(&input.data));
            let name = input.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("message");
            prop_assert_eq!(got.event.as_str(), name);
            prop_assert_eq!(&got.id, &last_id);
        }
    });
}
