//! How much of each topic a hub keeps for replay.

use std::time::Duration;

/// How much of each topic the hub keeps for replay: at most `events` events and
/// `bytes` bytes, and, if set, none older than `age`. Default: 1024 events, 4 MiB,
/// no age limit.
///
/// With a backplane these limits apply to each instance's local copy of a topic; the
/// backplane keeps its own history for replay ([`Hub::redis`](super::Hub::redis):
/// about `events` per topic).
///
/// ```
/// use std::time::Duration;
/// let history = tower_sse::hub::History::new(10_000, 16 << 20).max_age(Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
    pub(crate) age: Option<Duration>,
}

impl History {
    /// At most `events` events and `bytes` encoded bytes per topic (at least 1 each).
    pub const fn new(events: usize, bytes: usize) -> Self {
        Self {
            events: if events == 0 { 1 } else { events },
            bytes: if bytes == 0 { 1 } else { bytes },
            age: None,
        }
    }

    /// Drops events older than `age` too. A topic with no subscriber and no history
    /// left is forgotten.
    pub const fn max_age(mut self, age: Duration) -> Self {
        self.age = Some(age);
        self
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(1024, 4 << 20)
    }
}
