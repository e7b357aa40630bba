//! The event payloads of `/stream` and `/fanout`, built by the same functions in the
//! demo (`examples/demo.rs`) and in the axum reference (`examples/axum_ref.rs`), so
//! that a load-generator comparison of the two measures their SSE paths and nothing
//! else. Each file includes this one with `#[path = "shared/payload.rs"] mod payload;`.
//!
//! Each server hands the `String` to its SSE library the ordinary way: tower-sse's
//! `Event::new().data(payload)` moves it into the event, axum's
//! `Event::default().data(payload)` copies it into the event's buffer.

use std::time::{SystemTime, UNIX_EPOCH};

/// `/stream` data is exactly this long: `data: ` + 64 + `\n\n` = 72 bytes on the wire.
pub(crate) const STREAM_DATA_LEN: usize = 64;
/// The most padding a `/stream` payload needs (a one-digit `seq`).
const STREAM_PAD: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
const _: () = assert!(STREAM_PAD.len() == STREAM_DATA_LEN - r#"{"seq":0,"pad":""}"#.len());

/// `/stream` event `seq`'s data: `{"seq":N,"pad":"xx…x"}`, exactly 64 bytes (for any
/// `seq` up to 10^46), with the digits written by hand into one allocation of exactly
/// that size.
pub(crate) fn stream_payload(seq: u64) -> String {
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
    let digits = &digits[start..];
    let mut data = String::with_capacity(STREAM_DATA_LEN);
    data.push_str("{\"seq\":");
    data.extend(digits.iter().copied().map(char::from));
    data.push_str(",\"pad\":\"");
    data.push_str(&STREAM_PAD[digits.len() - 1..]);
    data.push_str("\"}");
    debug_assert_eq!(data.len(), STREAM_DATA_LEN);
    data
}

/// `/fanout` tick `seq`'s data: `{"seq":N,"ts_ns":T}`, T the wall clock in nanoseconds
/// since the Unix epoch, taken now (the load generator measures latency from it).
pub(crate) fn fanout_payload(seq: u64) -> String {
    let ts_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{{\"seq\":{seq},\"ts_ns\":{ts_ns}}}")
}
