//! The scenarios, and what each reads from an event's data.
//!
//! | scenario | measured in the window |
//! |---|---|
//! | `stream` | events/s, body and wire bytes/s; missed events from gaps in the sequence field |
//! | `idle` | heartbeats (comment lines, or events of the `--heartbeat-event` type) per connection against the expected interval; gaps p50/p99/max; late and silent connections |
//! | `fanout` | deliveries/s; publish-to-delivery latency (now minus the timestamp field) p50/p90/p99/max; missed events from the sequence field |
//!
//! Fields are read from the data without a JSON parser: the first `"NAME":` followed
//! by an unsigned integer (spaces allowed). Flat JSON objects such as
//! `{"seq":41,"ts_ns":1732960000123456789}` are what this is for.

use memchr::memmem::Finder;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Scenario {
    Stream,
    Idle,
    Fanout,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Stream => "stream",
            Scenario::Idle => "idle",
            Scenario::Fanout => "fanout",
        }
    }

    /// What the server's cost is divided by.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Scenario::Stream => "event",
            Scenario::Idle => "heartbeat",
            Scenario::Fanout => "delivery",
        }
    }
}

/// The fields read from event data: a sequence number and a publish time.
#[derive(Clone)]
pub(crate) struct Fields {
    pub(crate) seq_name: String,
    pub(crate) ts_name: String,
    seq: Finder<'static>,
    ts: Finder<'static>,
    /// Nanoseconds per unit of the timestamp.
    ts_scale: u64,
    /// An event type that is a heartbeat, not an event (`idle --heartbeat-event`);
    /// `message` matches events without an `event` field.
    pub(crate) heartbeat_event: Option<Vec<u8>>,
}

impl Fields {
    /// `ts` empty: no timestamp is read.
    pub(crate) fn new(seq: &str, ts: &str, ts_scale: u64) -> Self {
        let finder = |name: &str| Finder::new(format!("\"{name}\":").as_bytes()).into_owned();
        Self {
            seq_name: seq.to_owned(),
            ts_name: ts.to_owned(),
            seq: finder(seq),
            ts: finder(ts),
            ts_scale,
            heartbeat_event: None,
        }
    }

    /// Whether an event of this type (`None`: no `event` field) is a heartbeat.
    pub(crate) fn is_heartbeat(&self, event_type: Option<&[u8]>) -> bool {
        self.heartbeat_event
            .as_deref()
            .is_some_and(|hb| hb == event_type.unwrap_or(b"message"))
    }

    pub(crate) fn seq(&self, data: &[u8]) -> Option<u64> {
        number_after(&self.seq, data)
    }

    /// The publish time in Unix nanoseconds.
    pub(crate) fn ts_ns(&self, data: &[u8]) -> Option<u64> {
        if self.ts_name.is_empty() {
            return None;
        }
        number_after(&self.ts, data).map(|t| t.saturating_mul(self.ts_scale))
    }
}

/// The unsigned integer after the first match of `key` in `data`.
fn number_after(key: &Finder<'_>, data: &[u8]) -> Option<u64> {
    let at = key.find(data)? + key.needle().len();
    leading_u64(trim_start(&data[at..])).map(|(n, _)| n)
}

/// The decimal number at the start of `s`, and what follows it.
pub(crate) fn leading_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in &s[..digits] {
        n = n * 10 + u64::from(b - b'0');
    }
    Some((n, &s[digits..]))
}

pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let spaces = s.iter().take_while(|b| **b == b' ').count();
    &s[spaces..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let f = Fields::new("seq", "ts", 1_000);
        assert_eq!(f.seq(br#"{"seq":41,"pad":"xx"}"#), Some(41));
        assert_eq!(f.seq(br#"{"a":1, "seq": 7}"#), Some(7));
        assert_eq!(f.seq(br#"{"seqx":1}"#), None);
        assert_eq!(f.seq(br#"{"seq":"7"}"#), None);
        assert_eq!(f.ts_ns(br#"{"ts":5}"#), Some(5_000));
        assert_eq!(Fields::new("seq", "", 1).ts_ns(br#"{"":5}"#), None);
    }
}
