//! What is counted: the window's counters, and a log-linear histogram (64 buckets per
//! power of two: under 1.6% error) for heartbeat gaps and latencies.

/// Counted during the window only.
#[derive(Default)]
pub(crate) struct Counters {
    /// Bytes read from the sockets (HTTP/1.1: framing included; h2c: DATA payloads).
    pub(crate) wire_bytes: u64,
    /// Bytes of the SSE body.
    pub(crate) body_bytes: u64,
    /// Events (a blank line after one or more `data` lines), heartbeat events aside.
    pub(crate) events: u64,
    /// Events whose data had no sequence number (`stream`, `fanout`), or no timestamp
    /// (`fanout`).
    pub(crate) bad_events: u64,
    pub(crate) seq_gaps: u64,
    pub(crate) missed: u64,
    pub(crate) out_of_order: u64,
    /// Comment lines (`:`, the usual heartbeat), and events of the
    /// `--heartbeat-event` type.
    pub(crate) heartbeats: u64,
    /// `: lagged N` comments (a server telling a slow subscriber what it lost), and
    /// the sum of their N.
    pub(crate) lagged_comments: u64,
    pub(crate) lagged_reported: u64,
}

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

pub(crate) struct Histogram {
    pub(crate) counts: Vec<u64>,
    pub(crate) total: u64,
    pub(crate) max: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros();
        let shift = exp - SUB_BITS;
        let mantissa = (v >> shift) as usize & (SUB - 1);
        ((shift as usize + 1) << SUB_BITS) + mantissa
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> u64 {
        if i < SUB {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = ((SUB + (i & (SUB - 1))) as u64) << shift;
        low + ((1u64 << shift) >> 1)
    }

    pub(crate) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0..=1), `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value(i).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_round_trip() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            1000,
            123_456_789,
            u64::MAX / 3,
        ] {
            let i = Histogram::index(v);
            let mid = Histogram::value(i);
            let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.02, "{v} -> bucket {i} -> {mid}");
        }
    }
}
