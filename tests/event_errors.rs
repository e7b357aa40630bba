//! Values that would break the SSE framing are refused with typed errors, never a
//! panic and never a forged field.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::catch_unwind;

use tower_sse::{BoxError, Event, EventError, EventErrorKind};

#[test]
fn id_with_a_line_break_is_an_id_line_break_error() {
    for id in [
        "a\nb",
        "a\rb",
        "a\r\nb",
        "\n",
        "\r",
        "7\nevent: forged",
        "end\n",
    ] {
        let err = Event::new().id(id).unwrap_err();
        assert_eq!(err.kind(), EventErrorKind::IdLineBreak, "{id:?}");
        assert_eq!(err.to_string(), "event id contains a line break");
    }
}

#[test]
fn id_with_a_nul_is_an_id_nul_error() {
    for id in ["a\0b", "\0", "41\0"] {
        let err = Event::new().id(id).unwrap_err();
        assert_eq!(err.kind(), EventErrorKind::IdNul, "{id:?}");
        assert_eq!(err.to_string(), "event id contains a NUL character");
    }
}

#[test]
fn id_with_both_a_nul_and_a_line_break_is_refused() {
    for id in ["a\0\nb", "a\n\0b", "\r\0"] {
        let kind = Event::new().id(id).unwrap_err().kind();
        assert!(
            matches!(kind, EventErrorKind::IdNul | EventErrorKind::IdLineBreak),
            "{id:?}: {kind:?}"
        );
    }
}

#[test]
fn event_name_with_a_line_break_is_an_event_line_break_error() {
    for name in ["a\nb", "a\rb", "a\r\nb", "\n", "tick\ndata: forged", "x\r"] {
        let err = Event::new().event(name).unwrap_err();
        assert_eq!(err.kind(), EventErrorKind::EventLineBreak, "{name:?}");
        assert_eq!(err.to_string(), "event name contains a line break");
    }
}

#[test]
fn values_that_are_not_sse_line_breaks_are_accepted() {
    // Only LF and CR end lines in SSE: NEL, LS, PS, VT and FF are ordinary text.
    for value in [
        "a\u{85}b",
        "a\u{2028}b",
        "a\u{2029}b",
        "a\u{b}b",
        "a\u{c}b",
        " lead",
        "",
    ] {
        let event = Event::new().id(value).unwrap().event(value).unwrap();
        assert_eq!(event.id_str(), Some(value));
        assert_eq!(event.event_str(), Some(value));
    }
    // A NUL is fine in an event name (WHATWG parsers keep it), unlike in an id.
    assert_eq!(
        Event::new().event("a\0b").unwrap().event_str(),
        Some("a\0b")
    );
}

#[test]
fn owned_strings_are_validated_too() {
    let err = Event::new().id(String::from("1\n2")).unwrap_err();
    assert_eq!(err.kind(), EventErrorKind::IdLineBreak);
    let err = Event::new().event(String::from("x\ry")).unwrap_err();
    assert_eq!(err.kind(), EventErrorKind::EventLineBreak);
}

#[test]
fn data_retry_and_comments_never_fail() {
    // Any text is encoded faithfully, split into lines.
    let event = Event::new()
        .data("a\r\nb\rc\n\0")
        .comment("x\ny")
        .retry(std::time::Duration::MAX);
    assert_eq!(
        event.encode().as_bytes(),
        &b": x\n: y\nretry: 18446744073709551615\ndata: a\ndata: b\ndata: c\ndata: \0\n\n"[..]
    );
}

#[test]
fn bad_input_never_panics() {
    let inputs = [
        "\n",
        "\r",
        "\0",
        "\r\n",
        "\n\r",
        "\0\n",
        "a\u{0}\u{85}\r",
        "\u{feff}\n",
        "",
    ];
    for input in inputs {
        let result = catch_unwind(|| {
            let _ = Event::new().id(input);
            let _ = Event::new().event(input);
            Event::new().data(input).comment(input).encode()
        });
        assert!(result.is_ok(), "panicked on {input:?}");
    }
}

#[test]
fn event_error_is_a_std_error_that_boxes() {
    fn build() -> Result<Event, BoxError> {
        Ok(Event::new().id("1\n")?)
    }
    let err = build().unwrap_err();
    let err = err.downcast_ref::<EventError>().expect("an EventError");
    assert_eq!(err.kind(), EventErrorKind::IdLineBreak);
}
