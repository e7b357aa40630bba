//! The `Last-Event-ID` header: any bytes a client sends are read without a panic,
//! as the id exactly when they are UTF-8 (else ignored); the hub's id parser (a
//! backplane id: decimal numbers separated by `-`) orders any two ids consistently.
#![no_main]

use std::cmp::Ordering;

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_sse::{fuzzing::hub, LastEventId, LAST_EVENT_ID};

#[derive(Debug, Arbitrary)]
struct Input {
    header: Vec<u8>,
    other: String,
}

fuzz_target!(|input: Input| {
    if let Ok(value) = HeaderValue::from_bytes(&input.header) {
        let mut headers = HeaderMap::new();
        headers.insert(LAST_EVENT_ID, value);
        let id = LastEventId::from_headers(&headers);
        match std::str::from_utf8(&input.header) {
            Ok(text) => {
                let id = id.expect("a UTF-8 header is read");
                assert_eq!(id.as_str(), text);
                let _ = id.parse::<u64>();
            }
            Err(_) => assert!(id.is_none(), "a header that is not UTF-8 is ignored"),
        }
    }
    let a = String::from_utf8_lossy(&input.header);
    let b = input.other.as_str();
    let valid = |s: &str| s.split('-').all(|n| hub::number(n).is_some());
    for s in [&*a, b] {
        let digits = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
        assert_eq!(hub::number(s), if digits { s.parse().ok() } else { None }, "{s:?}");
        let equal = hub::compare_ids(s, s);
        assert_eq!(equal, valid(s).then_some(Ordering::Equal), "{s:?}");
    }
    let ab = hub::compare_ids(&a, b);
    assert_eq!(ab, hub::compare_ids(b, &a).map(Ordering::reverse), "{a:?} {b:?}");
    assert_eq!(ab.is_some(), valid(&a) && valid(b), "{a:?} {b:?}");
});
