//! The encoder: for arbitrary `id`, `event`, `data`, comment and retry, either the
//! `Event` builder refuses a value with the right typed error (and only then), or a
//! client parses the encoded bytes back into exactly the input.
#![no_main]

mod common;

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_sse::{Event, EventErrorKind};

#[derive(Debug, Arbitrary)]
struct Input {
    data: String,
    id: Option<String>,
    name: Option<String>,
    comment: Option<String>,
    retry_ms: Option<u32>,
    cut: usize,
}

/// The event, or `None` when the builder (rightly) refused a value.
fn build(input: &Input) -> Option<Event> {
    let mut event = Event::new();
    if let Some(id) = &input.id {
        match event.id(id.clone()) {
            Ok(ok) => event = ok,
            Err(err) => {
                let expected = if id.contains(['\n', '\r']) {
                    EventErrorKind::IdLineBreak
                } else {
                    assert!(id.contains('\0'), "refused id {id:?}: {err}");
                    EventErrorKind::IdNul
                };
                // Both rules broken: either kind is right.
                assert!(
                    err.kind() == expected || (id.contains('\0') && id.contains(['\n', '\r'])),
                    "{id:?}: {err:?}"
                );
                return None;
            }
        }
        assert!(!id.contains(['\n', '\r', '\0']), "accepted id {id:?}");
    }
    if let Some(name) = &input.name {
        match event.event(name.clone()) {
            Ok(ok) => event = ok,
            Err(err) => {
                assert!(name.contains(['\n', '\r']), "refused name {name:?}: {err}");
                assert_eq!(err.kind(), EventErrorKind::EventLineBreak);
                return None;
            }
        }
        assert!(!name.contains(['\n', '\r']), "accepted name {name:?}");
    }
    if let Some(comment) = &input.comment {
        event = event.comment(comment.clone());
    }
    if let Some(ms) = input.retry_ms {
        event = event.retry(Duration::from_millis(ms.into()));
    }
    Some(event.data(input.data.clone()))
}

fuzz_target!(|input: Input| {
    let Some(event) = build(&input) else {
        return;
    };
    let bytes = event.encode();
    let parsed = common::parse(bytes.as_bytes(), input.cut);
    assert_eq!(parsed.len(), 1, "{input:?} -> {bytes:?}");
    let got = &parsed[0];
    assert_eq!(got.data, common::normalised(&input.data), "data of {bytes:?}");
    let name = input.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("message");
    assert_eq!(got.event, name, "event of {bytes:?}");
    assert_eq!(got.id, input.id.as_deref().unwrap_or(""), "id of {bytes:?}");
    let retry = input.retry_ms.map(|ms| Duration::from_millis(ms.into()));
    assert_eq!(got.retry, retry, "retry of {bytes:?}");
});
