//! The hub's record framing, on what comes back from a backplane (Redis): a record
//! whose id or bytes could break the framing of the stream is refused; one that is
//! framed is `id: <id>\n` + its bytes, and between two other events a client parses
//! at most one event from it, with its id, and the next event intact. An event
//! stored by the hub itself (encoded without its id) is always framed, and parses
//! back into itself.
#![no_main]

mod common;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_sse::{fuzzing::hub, Event};

#[derive(Debug, Arbitrary)]
struct Input {
    id: String,
    bytes: Vec<u8>,
    data: String,
    name: Option<String>,
    comment: Option<String>,
    cut: usize,
}

/// A record as a backplane may return it, anything at all.
fn any_record(input: &Input) {
    let Some(framed) = hub::frame("topic", &input.id, &input.bytes) else {
        return;
    };
    let expected = [format!("id: {}\n", input.id).as_bytes(), &input.bytes].concat();
    assert_eq!(&framed[..], &expected[..]);
    assert!(!input.id.contains(['\n', '\r', '\0']) && !input.id.is_empty());
    let stream = [b"data: before\n\n", &framed[..], b"data: after\n\n"].concat();
    let parsed = common::parse(&stream, input.cut);
    assert!((2..=3).contains(&parsed.len()), "{stream:?}: {parsed:?}");
    let (first, last) = (&parsed[0], &parsed[parsed.len() - 1]);
    assert_eq!((first.data.as_str(), first.id.as_str()), ("before", ""));
    assert_eq!(last.data, "after", "{stream:?}");
    assert_eq!(last.event, "message", "{stream:?}");
    assert_eq!(last.id, input.id, "the record's id sticks: {stream:?}");
    if parsed.len() == 3 {
        assert_eq!(parsed[1].id, input.id);
    }
}

/// An event the hub stored itself.
fn own_record(input: &Input) {
    let mut event = Event::new().data(input.data.clone());
    if let Some(name) = &input.name {
        let Ok(named) = event.event(name.clone()) else {
            return;
        };
        event = named;
    }
    if let Some(comment) = &input.comment {
        event = event.comment(comment.clone());
    }
    let stored = hub::encode_without_id(&event);
    let id = "1718000000000-7";
    let framed = hub::frame("topic", id, &stored).expect("the hub's own record is framed");
    let parsed = common::parse(&framed, input.cut);
    assert_eq!(parsed.len(), 1, "{framed:?}");
    assert_eq!(parsed[0].id, id);
    assert_eq!(parsed[0].data, common::normalised(&input.data));
    let name = input.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("message");
    assert_eq!(parsed[0].event, name);
}

fuzz_target!(|input: Input| {
    any_record(&input);
    own_record(&input);
});
