//! `DataEvent` (data written straight into the frame) against `Event` and a
//! third-party parser: for arbitrary `data`, `id`, `event` name and retry,
//!
//! - the `DataEvent` builder refuses exactly the values `Event`'s refuses, with the
//!   same `EventErrorKind`;
//! - whatever writes the data (bytes, `Display`, a closure, `write_with`'s function or
//!   a `WriteData` type that writes it in random pieces, serde), the bytes are exactly
//!   those of the `Event` with the same fields
//!   (for JSON: `Event::json_data` of the same value), in both of the layer's modes;
//! - eventsource-stream parses them back into exactly the input (line breaks
//!   normalised to `\n`, as tests/proptest_roundtrip.rs explains).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::{
    fmt::{self, Write as _},
    time::Duration,
};

use proptest::{prelude::*, sample::Index};
use support::{runtime, wire::parse_in_two};
use tower_sse::{
    event::{Data, DataEvent, DataWriter, WriteData},
    Encode, Event, EventError, Overflow, SseLayer,
};

/// Text rich in what matters to SSE framing (as in tests/proptest_roundtrip.rs).
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
enum IdIn {
    Text(String),
    Number(u64),
}

#[derive(Debug, Clone)]
struct Input {
    data: String,
    id: Option<IdIn>,
    name: Option<String>,
    retry_ms: Option<u32>,
    /// Where a closure cuts the data into writes.
    cuts: Vec<Index>,
}

fn input() -> impl Strategy<Value = Input> {
    let id = prop_oneof![
        text().prop_map(IdIn::Text),
        any::<u64>().prop_map(IdIn::Number)
    ];
    (
        text(),
        prop::option::of(id),
        prop::option::of(text()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<Index>(), 0..4),
    )
        .prop_map(|(data, id, name, retry_ms, cuts)| Input {
            data,
            id,
            name,
            retry_ms,
            cuts,
        })
}

/// The same fields on an `Event` and on a `DataEvent`; `Err` (of both, checked equal)
/// when the builders refuse a value.
fn build<D: Data>(
    input: &Input,
    event: Event,
    data_event: DataEvent<D>,
) -> Result<(Event, DataEvent<D>), EventError> {
    let (mut event, mut data_event) = (event, data_event);
    match &input.id {
        Some(IdIn::Text(id)) => {
            let (a, b) = (event.id(id.clone()), data_event.id(id.clone()));
            assert_eq!(a.as_ref().err(), b.as_ref().err(), "id {id:?}");
            (event, data_event) = (a?, b?);
        }
        Some(IdIn::Number(n)) => {
            event = event.id_u64(*n);
            data_event = data_event.id_u64(*n);
        }
        None => {}
    }
    if let Some(name) = &input.name {
        let (a, b) = (event.event(name.clone()), data_event.event(name.clone()));
        assert_eq!(a.as_ref().err(), b.as_ref().err(), "name {name:?}");
        (event, data_event) = (a?, b?);
    }
    if let Some(ms) = input.retry_ms {
        let retry = Duration::from_millis(ms.into());
        (event, data_event) = (event.retry(retry), data_event.retry(retry));
    }
    Ok((event, data_event))
}

/// The data cut at `cuts` (moved to character boundaries), in order.
fn pieces(data: &str, cuts: &[Index]) -> Vec<String> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|cut| {
            let mut i = cut.index(data.len() + 1);
            while !data.is_char_boundary(i) {
                i -= 1;
            }
            i
        })
        .collect();
    at.sort_unstable();
    let mut out = Vec::new();
    let mut start = 0;
    for end in at.into_iter().chain([data.len()]) {
        out.push(data[start..end].to_owned());
        start = end;
    }
    out
}

/// What a WHATWG parser reads back from `data`.
fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// The bytes the layer writes for `events`, in process, in direct mode (the default,
/// `Overflow::Wait`) or pumped (`Overflow::DropOldest`: a task drains the source into
/// the queue, through `Encode::into_bytes`).
async fn layer_bytes<T: Encode + Send + 'static>(events: Vec<T>, pumped: bool) -> Vec<u8> {
    let layer = if pumped {
        SseLayer::new().on_overflow(Overflow::DropOldest)
    } else {
        SseLayer::new()
    };
    support::body::layer_bytes(layer, events).await
}

/// Parses `bytes` delivered in two pieces, split at `split`.
async fn parse(bytes: Vec<u8>, split: Index) -> Vec<eventsource_stream::Event> {
    let at = split.index(bytes.len() + 1);
    parse_in_two(bytes, at).await
}

/// Checks one `DataEvent` against its `Event`: same bytes alone, through the layer in
/// both modes, and parsed back to `input` (with `data` as the parser must see it).
fn check<D: Data + Clone + Send + 'static>(
    rt: &tokio::runtime::Runtime,
    input: &Input,
    data: &str,
    event: &Event,
    data_event: DataEvent<D>,
    split: Index,
) -> Result<(), TestCaseError> {
    let want = event.encode().into_bytes();
    prop_assert_eq!(&data_event.encode().unwrap().into_bytes(), &want);
    let pumped = rt.block_on(layer_bytes(vec![data_event.clone()], true));
    prop_assert_eq!(&pumped[..], &want[..]);
    let direct = rt.block_on(layer_bytes(vec![data_event], false));
    prop_assert_eq!(&direct[..], &want[..]);

    let parsed = rt.block_on(parse(direct, split));
    prop_assert_eq!(parsed.len(), 1, "{:?}", parsed);
    let got = &parsed[0];
    prop_assert_eq!(&got.data, &normalised(data));
    let name = input
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("message");
    prop_assert_eq!(got.event.as_str(), name);
    let id = match &input.id {
        Some(IdIn::Text(id)) => id.clone(),
        Some(IdIn::Number(n)) => n.to_string(),
        None => String::new(),
    };
    prop_assert_eq!(&got.id, &id);
    prop_assert_eq!(
        got.retry,
        input.retry_ms.map(|ms| Duration::from_millis(ms.into()))
    );
    Ok(())
}

#[test]
fn bytes_and_display_data_are_the_events_bytes_and_parse_back() {
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(256), |(input in input(), split in any::<Index>())| {
        let plain = Event::new().data(input.data.clone());
        let Ok((event, bytes)) = build(&input, plain.clone(), DataEvent::bytes(input.data.clone())) else {
            return Ok(());
        };
        check(&rt, &input, &input.data, &event, bytes, split)?;
        let (_, display) = build(&input, plain, DataEvent::display(input.data.clone())).unwrap();
        check(&rt, &input, &input.data, &event, display, split)?;
    });
}

#[test]
fn data_written_in_pieces_is_the_events_bytes_and_parses_back() {
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(256), |(input in input(), split in any::<Index>())| {
        let event = Event::new().data(input.data.clone());
        let pieces = pieces(&input.data, &input.cuts);
        let custom = DataEvent::custom(Pieces(pieces.clone()));
        let with = DataEvent::write_with(pieces.clone(), |pieces, w| {
            pieces.iter().try_for_each(|p| w.write_str(p))
        });
        let written = DataEvent::from_fn(move |w| pieces.iter().try_for_each(|p| w.write_str(p)));
        let Ok((event, written)) = build(&input, event, written) else {
            return Ok(());
        };
        check(&rt, &input, &input.data, &event, written, split)?;
        let (_, with) = build(&input, Event::new().data(input.data.clone()), with).unwrap();
        check(&rt, &input, &input.data, &event, with, split)?;
        let (_, custom) = build(&input, Event::new().data(input.data.clone()), custom).unwrap();
        check(&rt, &input, &input.data, &event, custom, split)?;
    });
}

/// Data in pieces, written by a [`WriteData`] type: every other piece as bytes.
#[derive(Clone)]
struct Pieces(Vec<String>);

impl WriteData for Pieces {
    fn write_data(&self, w: &mut DataWriter<'_>) -> fmt::Result {
        for (i, piece) in self.0.iter().enumerate() {
            if i % 2 == 0 {
                w.write_str(piece)?;
            } else {
                w.write_bytes(piece.as_bytes());
            }
        }
        Ok(())
    }
}

#[cfg(feature = "json")]
#[test]
fn json_data_is_json_datas_bytes_and_parses_back() {
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(256), |(input in input(), split in any::<Index>())| {
        let value = serde_json::json!({"token": input.data, "n": input.retry_ms});
        let event = Event::new().json_data(&value).unwrap();
        let Ok((event, json)) = build(&input, event, DataEvent::json(value.clone())) else {
            return Ok(());
        };
        let text = serde_json::to_string(&value).unwrap();
        check(&rt, &input, &text, &event, json, split)?;
        // The client gets the value back.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, value);
    });
}

#[test]
fn a_stream_of_data_events_is_the_stream_of_events() {
    let rt = runtime();
    let inputs = prop::collection::vec(input(), 1..6);
    proptest!(ProptestConfig::with_cases(128), |(inputs in inputs)| {
        let built: Vec<(Event, DataEvent<_>)> = inputs
            .iter()
            .filter_map(|input| {
                build(input, Event::new().data(input.data.clone()), DataEvent::bytes(input.data.clone())).ok()
            })
            .collect();
        let (events, data_events): (Vec<_>, Vec<_>) = built.into_iter().unzip();
        let want = rt.block_on(layer_bytes(events, false));
        prop_assert_eq!(&rt.block_on(layer_bytes(data_events.clone(), false)), &want);
        prop_assert_eq!(&rt.block_on(layer_bytes(data_events, true)), &want);
    });
}
