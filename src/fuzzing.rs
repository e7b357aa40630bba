//! Internals the fuzz targets in `fuzz/` reach (built only by `cargo fuzz`, which
//! sets `--cfg fuzzing`); not part of the public API.

/// The hub's record framing ([`hub::framing`](crate::hub)).
#[cfg(feature = "hub")]
pub mod hub {
    use std::cmp::Ordering;

    use bytes::Bytes;

    use crate::{hub::framing, Event};

    /// A backplane record (`id`, stored `bytes`) as it goes on the wire, if well-formed.
    pub fn frame(topic: &str, id: &str, bytes: &[u8]) -> Option<Bytes> {
        framing::frame(topic, id, bytes)
    }

    /// `event` as a backplane stores it: encoded without its `id` line.
    pub fn encode_without_id(event: &Event) -> Bytes {
        framing::encode_without_id(event)
    }

    /// The order of two backplane ids (decimal numbers separated by `-`).
    pub fn compare_ids(a: &str, b: &str) -> Option<Ordering> {
        framing::compare_ids(a, b)
    }

    /// A decimal number, digits only.
    pub fn number(s: &str) -> Option<u64> {
        framing::number(s)
    }
}
