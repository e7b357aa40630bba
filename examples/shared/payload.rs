//! The event payloads of `/stream` and `/fanout`, built by the same functions in the
//! demo (`examples/demo.rs`) and in the axum reference (`examples/axum_ref.rs`), so
//! that a load-generator comparison of the two measures their SSE paths and nothing
//! else. Each file includes this one with `#[path = "shared/payload.rs"] mod payload;`.
//!
//! One function writes the `/stream` payload, [`write_stream_payload`]. The axum
//! reference writes it into axum's own writer (`Event::into_data_writer`); the demo has
//! the layer call it while encoding, straight into the outgoing frame
//! (`DataEvent::custom(StreamPayload(seq))`). With `STREAM_EVENTS=owned` both servers
//! take the same function's `String` instead ([`stream_payload`]): axum's
//! `Event::default().data(payload)`, tower-sse's `Event::new().data(payload)`.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

/// `/stream` data is exactly this long: `data: ` + 64 + `\n\n` = 72 bytes on the wire.
pub(crate) const STREAM_DATA_LEN: usize = 64;
/// The most padding a `/stream` payload needs (a one-digit `seq`).
const STREAM_PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const _: () = assert!(STREAM_PAD.len() == STREAM_DATA_LEN - r#"{"seq":0,"pad":""}"#.len());

/// `/stream` event `seq`'s data: `{"seq":N,"pad":"xx…x"}`, exactly 64 bytes, written
/// by [`write_stream_payload`] into one allocation of exactly that size.
pub(crate) fn stream_payload(seq: u64) -> String {
    let mut data = String::with_capacity(STREAM_DATA_LEN);
    // Writing into a `String` cannot fail.
    let _ = write_stream_payload(seq, &mut data);
    debug_assert_eq!(data.len(), STREAM_DATA_LEN);
    data
}

/// Writes `/stream` event `seq`'s 64 bytes into `out` in five `write_str` calls: the
/// digits by `itoa` (two at a time from a table, as serde_json writes integers), no
/// formatting machinery. `#[inline]`, so that each server's writer can take the
/// pieces as the compiler sees them (in both servers alike).
#[inline]
pub(crate) fn write_stream_payload(seq: u64, out: &mut impl fmt::Write) -> fmt::Result {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(seq);
    out.write_str("{\"seq\":")?;
    out.write_str(digits)?;
    out.write_str(",\"pad\":\"")?;
    out.write_str(&STREAM_PAD[digits.len() - 1..])?;
    out.write_str("\"}")
}

/// `/stream` event `seq`'s data as tower-sse writes it into the frame
/// (`DataEvent::custom(StreamPayload(seq))`): [`write_stream_payload`], called from the
/// layer's encoder. Used by the demo and the benches (the axum reference writes the same
/// function into axum's own writer).
#[allow(dead_code)]
pub(crate) struct StreamPayload(pub(crate) u64);

impl tower_sse::event::WriteData for StreamPayload {
    #[inline]
    fn write_data(&self, w: &mut tower_sse::event::DataWriter<'_>) -> fmt::Result {
        write_stream_payload(self.0, w)
    }
}

/// `STREAM_EVENTS=owned` in the environment (read once): `/stream` builds each payload
/// as a `String` ([`stream_payload`]) and hands it over, instead of writing it into the
/// library's writer; in the demo and in the axum reference alike.
#[allow(dead_code)]
pub(crate) fn owned_stream_events() -> bool {
    static OWNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWNED.get_or_init(|| std::env::var("STREAM_EVENTS").is_ok_and(|v| v == "owned"))
}

/// `/fanout` tick `seq`'s data: `{"seq":N,"ts_ns":T}`, T the wall clock in nanoseconds
/// since the Unix epoch, taken now (the load generator measures latency from it).
pub(crate) fn fanout_payload(seq: u64) -> String {
    let ts_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{{\"seq\":{seq},\"ts_ns\":{ts_ns}}}")
}
