//! The id of a [`MultiSubscription`](super::MultiSubscription)'s events: one position
//! per topic, short enough for a `Last-Event-ID` header, and its parsing.
//!
//! `<set>.<p1>.<p2>…`: `set` is a base-36 hash of the topic list (so an id from another
//! list, or the same topics in another order, is recognised as foreign), then one
//! position per topic in the order of the list:
//!
//! - empty: before the topic's first event (nothing was published to it yet);
//! - base-36 numbers joined by `-`: an id made of one or two decimal numbers joined by
//!   `-` (the hub's own `0`, `1`, …; a Redis stream id `<ms>-<seq>`);
//! - `~` and the id itself: another id of at most [`MAX_VERBATIM`] characters from
//!   `[A-Za-z0-9_-]`;
//! - `*`: a position that cannot be written (an id beyond those forms).
//!
//! A position is at most 33 bytes, so an id is at most [`MAX_ID_LEN`] bytes.

use std::sync::Arc;

/// Topics in one multi-topic subscription, at most.
pub(crate) const MAX_TOPICS: usize = 64;
/// An id that is not a number pair is written as it is up to this many characters.
pub(crate) const MAX_VERBATIM: usize = 32;
/// The longest base-36 `u64` (`3w5e11264sgsf`).
const MAX_DIGITS: usize = 13;
/// The longest position: `~` and a verbatim id (a number pair is 27 at most).
const MAX_POSITION: usize = 1 + MAX_VERBATIM;
/// The longest hash of the topic list (a base-36 `u32`).
const MAX_SET: usize = 7;
/// The longest id: the hash, then a `.` and a position per topic.
pub(crate) const MAX_ID_LEN: usize = MAX_SET + MAX_TOPICS * (1 + MAX_POSITION);

/// Where a subscriber stands in one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// Before the topic's first event.
    Beginning,
    /// After the event with this id.
    After(Arc<str>),
    /// Not known (or not writable): resuming from here is [`Resume::Unknown`].
    ///
    /// [`Resume::Unknown`]: super::Resume::Unknown
    Unknown,
}

/// The hash of a topic list that starts every id (FNV-1a, 32 bits, base 36): the
/// same in every process.
pub(crate) fn set_hash<S: AsRef<str>>(topics: &[S]) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for topic in topics {
        // Topic names contain no `\n`: it separates them unambiguously.
        for &b in topic.as_ref().as_bytes().iter().chain(b"\n") {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    }
    let mut out = String::with_capacity(MAX_SET);
    push_base36(&mut out, u64::from(hash));
    out
}

/// Appends `position` as written in an id.
pub(crate) fn push_position(out: &mut String, position: &Position) {
    match position {
        Position::Beginning => {}
        Position::Unknown => out.push('*'),
        Position::After(id) => push_id(out, id),
    }
}

fn push_id(out: &mut String, id: &str) {
    if let Some((a, b)) = number_pair(id) {
        push_base36(out, a);
        if let Some(b) = b {
            out.push('-');
            push_base36(out, b);
        }
    } else if id.len() <= MAX_VERBATIM && !id.is_empty() && id.bytes().all(verbatim_byte) {
        out.push('~');
        out.push_str(id);
    } else {
        out.push('*');
    }
}

/// `a` or `a-b`, decimal numbers written the one way `u64` prints them (so that the
/// id read back is the same text).
fn number_pair(id: &str) -> Option<(u64, Option<u64>)> {
    let canonical = |s: &str| -> Option<u64> {
        let n = super::framing::number(s)?;
        (s.len() == 1 || !s.starts_with('0')).then_some(n)
    };
    match id.split_once('-') {
        None => Some((canonical(id)?, None)),
        Some((a, b)) => Some((canonical(a)?, Some(canonical(b)?))),
    }
}

fn verbatim_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn push_base36(out: &mut String, mut n: u64) {
    let mut digits = [0u8; MAX_DIGITS];
    let mut start = digits.len();
    loop {
        start -= 1;
        let d = (n % 36) as u8;
        digits[start] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[start..].iter().copied().map(char::from));
}

fn base36(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_DIGITS {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            _ => return None,
        };
        n.checked_mul(36)?.checked_add(u64::from(d))
    })
}

/// The positions an id gives for `topics` (whose hash is `set`), or `None` when it is
/// not an id of this list: too long, another list, another number of topics. A
/// position that does not parse is [`Position::Unknown`].
pub(crate) fn parse(id: &str, set: &str, topics: usize) -> Option<Vec<Position>> {
    if id.len() > MAX_ID_LEN {
        return None;
    }
    let mut parts = id.split('.');
    if parts.next() != Some(set) {
        return None;
    }
    let positions: Vec<Position> = parts.map(parse_position).collect();
    (positions.len() == topics).then_some(positions)
}

fn parse_position(text: &str) -> Position {
    if text.is_empty() {
        return Position::Beginning;
    }
    if let Some(id) = text.strip_prefix('~') {
        let ok = !id.is_empty() && id.len() <= MAX_VERBATIM && id.bytes().all(verbatim_byte);
        return match ok {
            true => Position::After(Arc::from(id)),
            false => Position::Unknown,
        };
    }
    let numbers = match text.split_once('-') {
        None => base36(text).map(|a| a.to_string()),
        Some((a, b)) => base36(a).zip(base36(b)).map(|(a, b)| format!("{a}-{b}")),
    };
    numbers.map_or(Position::Unknown, |id| Position::After(Arc::from(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(position: &Position) -> String {
        let mut out = String::new();
        push_position(&mut out, position);
        out
    }

    fn after(id: &str) -> Position {
        Position::After(Arc::from(id))
    }

    #[test]
    fn positions_round_trip_through_their_text() {
        for (position, text) in [
            (Position::Beginning, ""),
            (Position::Unknown, "*"),
            (after("0"), "0"),
            (after("35"), "z"),
            (after("36"), "10"),
            (after("1718000000000-0"), "lx8kuby8-0"),
            (after("18446744073709551615-7"), "3w5e11264sgsf-7"),
            (after("job_42-a"), "~job_42-a"),
            (after("007"), "~007"),
        ] {
            assert_eq!(write(&position), text);
            assert_eq!(parse_position(text), position, "{text:?}");
        }
        // Ids that cannot be written: their position is unknown.
        for id in ["1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16-17", "a b", "é", ""] {
            assert_eq!(write(&after(id)), "*", "{id:?}");
        }
        assert_eq!(write(&after(&"x".repeat(33))), "*");
    }

    #[test]
    fn malformed_positions_are_unknown() {
        for text in [
            "~",
            "~a b",
            "A",
            "-",
            "1-",
            "1-2-3",
            "3w5e11264sgsg",
            "zzzzzzzzzzzzzz",
        ] {
            assert_eq!(parse_position(text), Position::Unknown, "{text:?}");
        }
    }

    #[test]
    fn an_id_belongs_to_one_topic_list() {
        let set = set_hash(&["a", "b"]);
        assert_ne!(set, set_hash(&["b", "a"]));
        assert_ne!(set, set_hash(&["ab"]));
        assert_eq!(set, set_hash(&[String::from("a"), String::from("b")]));
        let id = format!("{set}.5.");
        assert_eq!(
            parse(&id, &set, 2),
            Some(vec![after("5"), Position::Beginning])
        );
        assert_eq!(parse(&id, &set, 3), None);
        assert_eq!(parse("5.", &set, 2), None);
        assert_eq!(parse("", &set, 2), None);
        let long = format!("{set}.{}", "1".repeat(MAX_ID_LEN));
        assert_eq!(parse(&long, &set, 2), None);
    }

    #[test]
    fn the_longest_id_is_max_id_len() {
        let topics: Vec<String> = (0..MAX_TOPICS).map(|i| format!("t{i}")).collect();
        let mut id = String::from("1z141z3"); // the longest hash
        for _ in &topics {
            id.push('.');
            push_position(&mut id, &after(&"y".repeat(MAX_VERBATIM)));
        }
        assert_eq!(id.len(), MAX_ID_LEN);
        assert_eq!(MAX_ID_LEN, 2183);
    }
}
