//! [`SseLayer::max_lifetime`](crate::SseLayer::max_lifetime): a timer per stream,
//! jittered so that streams opened together do not all end together.

use std::{pin::Pin, time::Duration};

use tokio::time::{Instant, Sleep};

/// The timer of a stream with a `max` lifetime, numbered by `number` (called only if
/// the stream gets a timer): `None` without a tokio runtime to run it, or when the
/// deadline is past what an `Instant` can hold.
pub(super) fn timer(max: Duration, number: impl FnOnce() -> u64) -> Option<Pin<Box<Sleep>>> {
    tokio::runtime::Handle::try_current().ok()?;
    let deadline = Instant::now().checked_add(jittered(max, number()))?;
    Some(Box::pin(tokio::time::sleep_until(deadline)))
}

/// `max` minus a jitter of up to 10 % of it, for the stream numbered `n` (0, 1, 2, …
/// per layer): `n` times 2^64 / φ (Fibonacci hashing), whose top 32 bits are a fraction
/// that spreads consecutive numbers evenly over `[0, 1)`. Deterministic and cheap.
fn jittered(max: Duration, n: u64) -> Duration {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let fraction = u128::from(n.wrapping_mul(GOLDEN) >> 32);
    // At most u64::MAX s in ns / 10 × 2^32 < 2^125: no overflow.
    let jitter = (max.as_nanos() / 10 * fraction) >> 32;
    let secs = u64::try_from(jitter / 1_000_000_000).unwrap_or(u64::MAX);
    let nanos = u32::try_from(jitter % 1_000_000_000).unwrap_or(0);
    max.saturating_sub(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_lifetimes_differ_and_stay_within_the_last_tenth() {
        for max in [
            Duration::from_secs(1),
            Duration::from_secs(3600),
            Duration::from_millis(7),
        ] {
            let lifetimes: Vec<Duration> = (0..16).map(|n| jittered(max, n)).collect();
            for (n, lifetime) in lifetimes.iter().enumerate() {
                assert!(
                    *lifetime <= max && *lifetime >= max * 9 / 10,
                    "stream {n}: {lifetime:?} of {max:?}"
                );
            }
            let mut distinct = lifetimes.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), lifetimes.len(), "{lifetimes:?}");
        }
    }

    #[test]
    fn jitter_spreads_consecutive_streams_over_the_whole_tenth() {
        let max = Duration::from_secs(100);
        let mut jitters: Vec<Duration> = (0..64).map(|n| max - jittered(max, n)).collect();
        jitters.sort();
        // 64 streams over 10 s: no gap between neighbours much wider than 10 s / 64.
        let widest = jitters.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest < Duration::from_millis(500), "{widest:?}");
        assert!(jitters[63] > Duration::from_secs(9), "{jitters:?}");
    }

    #[test]
    fn extreme_lifetimes_do_not_overflow() {
        assert_eq!(jittered(Duration::ZERO, 5), Duration::ZERO);
        let max = jittered(Duration::MAX, u64::MAX);
        assert!(max >= Duration::MAX / 10 * 9);
    }
}
