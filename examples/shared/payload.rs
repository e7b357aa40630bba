//! The event payloads of `/stream` and `/fanout`, built by the same functions in the
//! demo (`examples/demo.rs`) and in the axum reference (`examples/axum_ref.rs`), so
//! that a load-generator comparison of the two measures their SSE paths and nothing
//! else. Each file includes this one with `#[path = "shared/payload.rs"] mod payload;`.
//!
//! Each server hands the `String` to its SSE library the ordinary way: tower-sse's
//! `Event::new().data(payload)` moves it into the event, axum's
//! `Event::default().data(payload)` copies it into the event's buffer.

use std::{
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

/// `/stream` data is exactly this long: `data: ` + 64 + `\n\n` = 72 bytes on the wire.
pub(crate) const STREAM_DATA_LEN: usize = 64;
/// The most padding a `/stream` payload needs (a one-digit `seq`).
const STREAM_PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const _: () = assert!(STREAM_PAD.len() == STREAM_DATA_LEN - r#"{"seq":0,"pad":""}"#.len());

/// `/stream` event `seq`'s data: `{"seq":N,"pad":"xx…x"}`, exactly 64 bytes, in one
/// allocation of exactly that size (digits written by [`write_stream_payload`]).
pub(crate) fn stream_payload(seq: u64) -> String {
    let mut data = String::with_capacity(STREAM_DATA_LEN);
    // Writing to a `String` cannot fail.
    let _ = write_stream_payload(seq, &mut data);
    debug_assert_eq!(data.len(), STREAM_DATA_LEN);
    data
}

/// Writes `/stream` event `seq`'s data (for any `u64`, 64 bytes) into `out`, the
/// digits by hand, in five `write_str` calls and no formatting machinery. The benches
/// (`benches/common`) write it straight into the frame with tower-sse's `DataEvent`.
pub(crate) fn write_stream_payload(seq: u64, out: &mut impl fmt::Write) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = seq;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    let digits = std::str::from_utf8(&digits[start..]).map_err(|_| fmt::Error)?;
    out.write_str("{\"seq\":")?;
    out.write_str(digits)?;
    out.write_str(",\"pad\":\"")?;
    out.write_str(&STREAM_PAD[digits.len() - 1..])?;
    out.write_str("\"}")
}

/// `/fanout` tick `seq`'s data: `{"seq":N,"ts_ns":T}`, T the wall clock in nanoseconds
/// since the Unix epoch, taken now (the load generator measures latency from it).
pub(crate) fn fanout_payload(seq: u64) -> String {
    let ts_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{{\"seq\":{seq},\"ts_ns\":{ts_ns}}}")
}
