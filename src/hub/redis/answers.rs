//! Redis answers: stream entries and ids, and the timeout error.

use std::{io, sync::Arc, time::Duration};

use ::redis::Value;
use bytes::Bytes;

use super::super::{backplane::Record, framing::number};
use crate::BoxError;

/// The stream field holding an event's bytes.
pub(super) const FIELD: &str = "e";

pub(super) fn timed_out(after: Duration) -> BoxError {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("redis did not answer within {after:?}"),
    )
    .into()
}

/// `<ms>-<seq>`, both decimal.
pub(super) fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((number(ms)?, number(seq)?))
}

/// The entries of an `XRANGE`-like answer: `[[id, [field, value, …]], …]`. An entry
/// without an `e` field gets empty bytes (the hub skips it, but reads past it).
pub(super) fn entries(value: Value) -> Vec<Record> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let mut entry = entry.into_iter();
            let id: Arc<str> = match entry.next()? {
                Value::BulkString(id) => String::from_utf8(id).ok()?.into(),
                Value::SimpleString(id) => id.into(),
                _ => return None,
            };
            let pairs: Vec<(Value, Value)> = match entry.next() {
                Some(Value::Array(flat)) => {
                    let mut flat = flat.into_iter();
                    std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
                }
                Some(Value::Map(pairs)) => pairs,
                _ => Vec::new(),
            };
            let bytes = pairs
                .into_iter()
                .find_map(|(field, value)| match (field, value) {
                    (Value::BulkString(field), Value::BulkString(bytes))
                        if field == FIELD.as_bytes() =>
                    {
                        Some(Bytes::from(bytes))
                    }
                    _ => None,
                })
                .unwrap_or_default();
            Some(Record { id, bytes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse() {
        assert_eq!(stream_id("1718000000000-3"), Some((1_718_000_000_000, 3)));
        assert_eq!(stream_id("1-"), None);
        assert_eq!(stream_id("1"), None);
        assert_eq!(stream_id("a-1"), None);
        assert_eq!(stream_id("+1-1"), None);
    }

    #[test]
    fn answers_parse_in_resp2_and_resp3() {
        let entry = |id: &str, data: &str| {
            Value::Array(vec![
                Value::BulkString(id.into()),
                Value::Array(vec![
                    Value::BulkString(b"e".to_vec()),
                    Value::BulkString(data.into()),
                ]),
            ])
        };
        let resp2 = Value::Array(vec![
            entry("1-0", "data: a\n\n"),
            entry("1-1", "data: b\n\n"),
        ]);
        let records = entries(resp2);
        assert_eq!(records.len(), 2);
        assert_eq!(&*records[1].id, "1-1");
        assert_eq!(&records[1].bytes[..], b"data: b\n\n");
        let resp3 = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"2-0".to_vec()),
            Value::Map(vec![(
                Value::BulkString(b"e".to_vec()),
                Value::BulkString(b"data: c\n\n".to_vec()),
            )]),
        ])]);
        assert_eq!(&entries(resp3)[0].bytes[..], b"data: c\n\n");
        assert!(entries(Value::Nil).is_empty());
        let foreign = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"3-0".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"x".to_vec()),
                Value::BulkString(b"y".to_vec()),
            ]),
        ])]);
        assert_eq!(entries(foreign), vec![Record::new("3-0", Bytes::new())]);
    }
}
