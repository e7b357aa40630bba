//! A cap on concurrently open streams.
//!
//! tower's `ConcurrencyLimitLayer` and `RateLimitLayer` count *requests*: their permit
//! is released when the response future completes, which for SSE is when the headers
//! go out, long before the stream ends. They cannot cap open streams. This one holds
//! its permit inside the response body, so it is released when the stream ends or
//! the client leaves. Only SSE responses count; responses passed through do not.
//!
//! ```
//! use std::time::Duration;
//! use tower_sse::{SseLayer, StreamLimit};
//!
//! // Beyond 10,000 open streams: `503 Service Unavailable` with `retry-after: 5`.
//! let layer = SseLayer::new().max_streams(StreamLimit::reject(10_000).retry_after(Duration::from_secs(5)));
//! // Or: hold the response until a stream ends.
//! let layer = SseLayer::new().max_streams(StreamLimit::wait(10_000));
//! ```

use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

/// How many streams may be open at once, and what happens to one more; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct StreamLimit {
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) max: usize,
    pub(crate) mode: LimitMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitMode {
    Reject { retry_after: Duration },
    Wait,
}

impl StreamLimit {
    /// At most `max` open streams; one more gets `503` with `retry-after` (5 s unless
    /// set with [`retry_after`](Self::retry_after)), and its source is dropped unpolled.
    pub fn reject(max: usize) -> Self {
        Self::new(
            max,
            LimitMode::Reject {
                retry_after: Duration::from_secs(5),
            },
        )
    }

    /// At most `max` open streams; one more waits (its response is not sent) until a
    /// stream ends. Combine with a timeout layer to bound the wait.
    pub fn wait(max: usize) -> Self {
        Self::new(max, LimitMode::Wait)
    }

    fn new(max: usize, mode: LimitMode) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            mode,
        }
    }

    /// The `retry-after` sent with a rejection (whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        if let LimitMode::Reject { retry_after } = &mut self.mode {
            *retry_after = after;
        }
        self
    }

    /// The cap.
    ///
    /// ```
    /// assert_eq!(tower_sse::StreamLimit::wait(3).max(), 3);
    /// ```
    pub fn max(&self) -> usize {
        self.max
    }
}
