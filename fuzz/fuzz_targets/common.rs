//! What the targets share: a WHATWG-conformant parser (eventsource-stream) fed the
//! bytes in two pieces, cut anywhere (TCP may cut inside a UTF-8 character).

use std::convert::Infallible;

use bytes::Bytes;
use eventsource_stream::{Event, Eventsource as _};
use futures_util::StreamExt as _;

/// The events a client parses from `bytes` cut at `cut` (modulo its length + 1).
pub fn parse(bytes: &[u8], cut: usize) -> Vec<Event> {
    let at = cut % (bytes.len() + 1);
    let (a, b) = bytes.split_at(at);
    let chunks = [a, b].map(|piece| Ok::<_, Infallible>(Bytes::copy_from_slice(piece)));
    let events = futures_util::stream::iter(chunks).eventsource().collect::<Vec<_>>();
    futures_executor::block_on(events)
        .into_iter()
        .map(|event| event.expect("the parser takes any bytes"))
        .collect()
}

/// What a WHATWG parser reads back from `data`: its line breaks normalised.
pub fn normalised(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}
