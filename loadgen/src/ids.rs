//! `{i}` in a URL: a number per connection (`fanout`, `stream`, `idle`) or per publish
//! (`publish`), so that N connections can each subscribe to their own topic
//! (`/fanout?topic=user:{i}`) and a publisher can spread over the same topics.
//!
//! Connection (or publish) `n` gets `start + n % count`: `--id-start` places a process's
//! ids after another's (four processes, 10 000 topics each: starts 0, 10 000, …), and
//! `--id-count` below the number of connections puts several on one id.

use std::borrow::Cow;

/// The placeholder replaced in the URL's path and query.
pub(crate) const PLACEHOLDER: &str = "{i}";

/// Which number connection (or publish) `n` puts in place of `{i}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub(crate) start: u64,
    /// At least 1.
    pub(crate) count: u64,
}

impl Ids {
    /// `count` 0 is taken as 1.
    pub(crate) fn new(start: u64, count: u64) -> Self {
        Self {
            start,
            count: count.max(1),
        }
    }

    /// The id of connection (or publish) `n`.
    pub(crate) fn of(self, n: u64) -> u64 {
        self.start.saturating_add(n % self.count)
    }

    /// `path` with every `{i}` replaced by the id of `n` (borrowed when it has none).
    pub(crate) fn expand(self, path: &str, n: u64) -> Cow<'_, str> {
        if path.contains(PLACEHOLDER) {
            Cow::Owned(path.replace(PLACEHOLDER, &self.of(n).to_string()))
        } else {
            Cow::Borrowed(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_wrap_and_start_where_told() {
        let ids = Ids::new(10_000, 3);
        let got: Vec<u64> = (0..5).map(|n| ids.of(n)).collect();
        assert_eq!(got, [10_000, 10_001, 10_002, 10_000, 10_001]);
        assert_eq!(Ids::new(0, 0).of(7), 0);
    }

    #[test]
    fn only_the_placeholder_is_replaced() {
        let ids = Ids::new(5, 100);
        assert_eq!(
            ids.expand("/fanout?topic=user:{i}&x={i}", 2),
            "/fanout?topic=user:7&x=7"
        );
        assert!(matches!(ids.expand("/fanout?topic=a", 2), Cow::Borrowed(_)));
        assert_eq!(ids.expand("/{j}", 2), "/{j}");
    }
}
