//! How records go through a backplane: an event is stored without its `id` line (the
//! backplane gives the id), a record goes on the wire as `id: <id>\n` + the stored
//! bytes; and how backplane ids made of decimal numbers compare.

use std::cmp::Ordering;

use bytes::{Bytes, BytesMut};

use crate::Event;

/// A decimal number, digits only (no sign, no blank).
pub(crate) fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The order of two ids made of decimal numbers separated by `-`, number by number;
/// `None` if either is not one. The default of
/// [`Backplane::compare_ids`](super::Backplane::compare_ids).
pub(crate) fn compare_ids(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (a.split('-').map(number), b.split('-').map(number));
    // Every part of both must be a number, not only those before the first that
    // differ: `7` and `5-(` have no order.
    if a.clone().chain(b.clone()).any(|n| n.is_none()) {
        return None;
    }
    // Number by number; an id that is a prefix of the other comes first.
    Some(a.cmp(b))
}

/// `event` encoded without its `id` line (the backplane gives the id).
pub(crate) fn encode_without_id(event: &Event) -> Bytes {
    let mut buf = BytesMut::with_capacity(event.encoded_len());
    event.encode_to(&mut buf);
    if event.id_str().is_some() {
        // The encoder writes comment lines (`:`), then the id line, then the rest.
        let mut start = 0;
        while buf.get(start) == Some(&b':') {
            match memchr::memchr(b'\n', &buf[start..]) {
                Some(end) => start += end + 1,
                None => break,
            }
        }
        if buf[start..].starts_with(b"id") {
            if let Some(end) = memchr::memchr(b'\n', &buf[start..]) {
                let rest = buf.split_off(start + end + 1);
                buf.truncate(start);
                buf.unsplit(rest);
            }
        }
    }
    buf.freeze()
}

/// Whether `bytes` is one event block as the encoder writes it, without an `id` line:
/// UTF-8, lines ending with `\n`, no `\r`, no blank line but the last one. Anything
/// else in a backplane (written by something else) could break the framing of every
/// stream (a client's parser may give up on the whole stream at bytes that are not
/// UTF-8).
fn is_block_without_id(bytes: &[u8]) -> bool {
    if std::str::from_utf8(bytes).is_err() {
        return false;
    }
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return false;
    };
    if memchr::memchr(b'\r', bytes).is_some() {
        return false;
    }
    if body.is_empty() {
        return true;
    }
    let Some(lines) = body.strip_suffix(b"\n") else {
        return false;
    };
    lines
        .split(|&b| b == b'\n')
        .all(|line| !line.is_empty() && line != b"id" && !line.starts_with(b"id:"))
}

/// A record (its `id` and stored `bytes`) as it goes on the wire: `id: <id>\n` + the
/// stored bytes; `None` (and a warning) for a record that is not a well-formed event
/// or whose id cannot be sent.
pub(crate) fn frame(topic: &str, id: &str, bytes: &[u8]) -> Option<Bytes> {
    if id.is_empty() || memchr::memchr3(b'\n', b'\r', b'\0', id.as_bytes()).is_some() {
        tracing::warn!(
            topic,
            "hub backplane: record with an id that cannot be sent, skipped"
        );
        return None;
    }
    if !is_block_without_id(bytes) {
        tracing::warn!(topic, id = %id, "hub backplane: record is not an event block, skipped");
        return None;
    }
    let mut buf = BytesMut::with_capacity(5 + id.len() + bytes.len());
    buf.extend_from_slice(b"id: ");
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(b"\n");
    buf.extend_from_slice(bytes);
    Some(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/fuzz_targets/last_event_id.rs`: the first numbers that differ
    /// decided, whatever came after them.
    #[test]
    fn ids_with_a_part_that_is_not_a_number_have_no_order() {
        assert_eq!(compare_ids("7", "5-("), None);
        assert_eq!(compare_ids("5-(", "7"), None);
        assert_eq!(compare_ids("7-x", "5"), None);
        assert_eq!(compare_ids("7", "5-0"), Some(Ordering::Greater));
        assert_eq!(compare_ids("5", "5-0"), Some(Ordering::Less));
        assert_eq!(compare_ids("5-0", "5-0"), Some(Ordering::Equal));
    }

    /// Found by `fuzz/fuzz_targets/hub_framing.rs`: a record that is not UTF-8 was
    /// framed, and a client's parser (eventsource-stream) then failed the stream.
    #[test]
    fn a_record_that_is_not_utf8_is_skipped() {
        assert_eq!(frame("t", "1", b"data: \xff\n\n"), None);
        assert!(frame("t", "1", "data: é\n\n".as_bytes()).is_some());
    }

    #[test]
    fn id_line_is_removed_from_the_encoding() {
        let event = Event::new()
            .comment("c1\nc2")
            .id("5")
            .unwrap()
            .event("e")
            .unwrap()
            .data("id: 9");
        assert_eq!(
            &encode_without_id(&event)[..],
            b": c1\n: c2\nevent: e\ndata: id: 9\n\n"
        );
        let empty_id = Event::new().id("").unwrap().data("x");
        assert_eq!(&encode_without_id(&empty_id)[..], b"data: x\n\n");
        assert_eq!(&encode_without_id(&Event::new())[..], b"\n");
    }

    #[test]
    fn only_event_blocks_without_ids_are_framed() {
        for good in [
            &b"\n"[..],
            b"data: x\n\n",
            b": c\nevent: e\ndata: a\ndata: b\n\n",
        ] {
            assert!(is_block_without_id(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"data: x\n",
            b"data: x",
            b"data: x\n\ndata: y\n\n",
            b"data: x\r\n\n",
            b"id: 1\ndata: x\n\n",
            b"id\n\n",
            b"\n\n",
        ] {
            assert!(!is_block_without_id(bad), "{bad:?}");
        }
        assert_eq!(
            &frame("t", "1-2", b"data: x\n\n").unwrap()[..],
            b"id: 1-2\ndata: x\n\n"
        );
        assert!(frame("t", "1\n", b"data: x\n\n").is_none());
        assert!(frame("t", "", b"data: x\n\n").is_none());
    }

    #[test]
    fn numbers_are_digits_only() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("1718000000000"), Some(1_718_000_000_000));
        assert_eq!(number(""), None);
        assert_eq!(number("+1"), None);
        assert_eq!(number("-1"), None);
        assert_eq!(number(" 1"), None);
        assert_eq!(number("1a"), None);
        assert_eq!(number("18446744073709551616"), None, "beyond u64");
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert_eq!(compare_ids("10-0", "9-5"), Some(Ordering::Greater));
        assert_eq!(compare_ids("10-0", "10-0"), Some(Ordering::Equal));
        assert_eq!(compare_ids("10-1", "10-10"), Some(Ordering::Less));
        assert_eq!(compare_ids("10", "10-0"), Some(Ordering::Less));
        assert_eq!(compare_ids("-1", "1"), None);
        assert_eq!(compare_ids("+1", "1"), None);
    }
}
