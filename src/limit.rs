//! Caps on open streams: for the whole layer ([`StreamLimit`]) and per key, such as
//! the client's IP address ([`PerKeyLimit`]).
//!
//! tower's `ConcurrencyLimitLayer` and `RateLimitLayer` count *requests*: their permit
//! is released when the response future completes, which for SSE is when the headers
//! go out, long before the stream ends. They cannot cap open streams. These hold their
//! permit inside the response body, so it is released when the stream ends or the
//! client leaves. Only SSE responses count; responses passed through do not.
//!
//! # The shed answer
//!
//! A stream over a cap gets, by default, the **shed answer**: status `200`, the SSE
//! headers, one `retry: R` field and the end of the response, where `R` (in ms) is
//! jittered over a range, 2 s to 10 s unless set with [`StreamLimit::retry`], never
//! under 1 s. A browser's `EventSource` honours it: it fires `error`, waits `R` and
//! reconnects by itself (with its `Last-Event-ID`). A `503` or `429` does the
//! opposite: `EventSource` treats any status but 200 as fatal, closes, and never comes
//! back, so shedding with an error status turns load into a lasting outage for those
//! users. Keep [`StreamLimit::reject`] (`503` with `retry-after`) for clients that
//! are not browsers and read that header.
//!
//! The jitter is deterministic: the layer's sheds are numbered (0, 1, 2, …) and the
//! number, multiplied by 2^64/φ (Fibonacci hashing, as for
//! [`max_lifetime`](crate::SseLayer::max_lifetime)), spreads any run of consecutive
//! sheds evenly over the range, so that the clients shed together do not all come
//! back together. [`SseStats::streams_shed`](crate::SseStats::streams_shed) counts
//! the sheds of both kinds of limit, [`streams_rejected`](crate::SseStats::streams_rejected)
//! the `503`s.
//!
//! ```
//! use std::time::Duration;
//! use tower_sse::{limit, PerKeyLimit, SseLayer, StreamLimit};
//!
//! let layer = SseLayer::new()
//!     // At most 10,000 open streams; one more is shed and told to come back in 2 to 10 s.
//!     .max_streams(StreamLimit::shed(10_000))
//!     // At most 8 per client IP address (the `SocketAddr` the server put in the
//!     // request's extensions); one more is shed and comes back in 5 to 30 s.
//!     .max_streams_per_key(
//!         PerKeyLimit::shed(8, limit::client_ip)
//!             .retry(Duration::from_secs(5)..Duration::from_secs(30)),
//!     );
//!
//! // For clients that are not browsers: `503` with `retry-after: 5`.
//! let layer = SseLayer::new().max_streams(StreamLimit::reject(10_000));
//! // Or: hold the response until a stream ends.
//! let layer = SseLayer::new().max_streams(StreamLimit::wait(10_000));
//! ```
//!
//! # Keys
//!
//! A [`PerKeyLimit`] takes its key from each request's head (`http::request::Parts`)
//! with a closure that runs in the service's `call`: [`client_ip`] for the peer's IP
//! address, or your own (a token's subject, an API key, an `X-Forwarded-For` entry set
//! by your own proxy). A request without a key (the closure answers `None`) is not
//! capped by it. Memory stays bounded: the limit keeps one entry per key that has an
//! open stream, removed when that key's last stream ends.
//!
//! ```
//! use tower_sse::{PerKeyLimit, SseLayer};
//!
//! // At most 2 open streams per user, the user being what an auth layer in front
//! // put in the extensions.
//! #[derive(Clone)]
//! struct User(u64);
//! let per_user = PerKeyLimit::shed(2, |req: &http::request::Parts| {
//!     req.extensions.get::<User>().map(|user| user.0)
//! });
//! let layer = SseLayer::new().max_streams_per_key(per_user);
//! ```

use std::{
    collections::HashMap,
    fmt,
    hash::Hash,
    net::{IpAddr, SocketAddr},
    ops::Range,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::request::Parts;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::sync::lock;

/// How many streams may be open at once, and what happens to one more; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct StreamLimit {
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) max: usize,
    pub(crate) mode: LimitMode,
}

/// What a limit does with a stream over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitMode {
    /// Answer at once.
    Answer(Over),
    /// Hold the response until a stream ends (`StreamLimit::wait`).
    Wait,
}

/// The answer to a stream over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// The shed answer: 200, `retry:` in this range, end.
    Shed(Retry),
    /// `503` with `retry-after`.
    Reject { retry_after: Duration },
}

impl Over {
    const REJECT: Self = Self::Reject {
        retry_after: Duration::from_secs(5),
    };

    fn retry(&mut self, range: Range<Duration>) {
        if let Self::Shed(retry) = self {
            *retry = Retry::new(range);
        }
    }

    fn retry_after(&mut self, after: Duration) {
        if let Self::Reject { retry_after } = self {
            *retry_after = after;
        }
    }
}

/// The range of the shed answer's `retry:`, in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retry {
    min_ms: u64,
    max_ms: u64,
}

impl Retry {
    /// No shed answer tells a client to come back sooner than this.
    const FLOOR_MS: u64 = 1000;
    const DEFAULT: Self = Self {
        min_ms: 2000,
        max_ms: 10_000,
    };

    fn new(range: Range<Duration>) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let min_ms = ms(range.start).max(Self::FLOOR_MS);
        Self {
            min_ms,
            max_ms: ms(range.end).max(min_ms),
        }
    }

    /// The `retry:` of the shed numbered `n` (0, 1, 2, … per layer): `n` times 2^64/φ,
    /// whose top 32 bits are a fraction that spreads consecutive numbers evenly over
    /// `[0, 1)`, scaled to the range. Deterministic and cheap.
    pub(crate) fn jittered(self, n: u64) -> Duration {
        const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
        let fraction = u128::from(n.wrapping_mul(GOLDEN) >> 32);
        let spread = u128::from(self.max_ms - self.min_ms);
        // spread < 2^64 and fraction < 2^32: no overflow; the result is < spread.
        let jitter = u64::try_from((spread * fraction) >> 32).unwrap_or(0);
        Duration::from_millis(self.min_ms + jitter)
    }
}

impl StreamLimit {
    /// At most `max` open streams; one more gets the [shed answer](self#the-shed-answer)
    /// (200, a jittered `retry:` of 2 s to 10 s unless set with
    /// [`retry`](Self::retry), end), and its source is dropped unpolled. The way for
    /// browsers: their `EventSource` comes back by itself.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_streams(tower_sse::StreamLimit::shed(10_000));
    /// ```
    pub fn shed(max: usize) -> Self {
        Self::new(max, LimitMode::Answer(Over::Shed(Retry::DEFAULT)))
    }

    /// At most `max` open streams; one more gets `503` with `retry-after` (5 s unless
    /// set with [`retry_after`](Self::retry_after)), and its source is dropped unpolled.
    ///
    /// Only for clients that are not browsers (and read `retry-after`): a browser's
    /// `EventSource` treats a `503` as fatal and never reconnects. For browsers, use
    /// [`shed`](Self::shed).
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_streams(tower_sse::StreamLimit::reject(10_000));
    /// ```
    pub fn reject(max: usize) -> Self {
        Self::new(max, LimitMode::Answer(Over::REJECT))
    }

    /// At most `max` open streams; one more waits (its response is not sent) until a
    /// stream ends. Combine with a timeout layer to bound the wait.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new().max_streams(tower_sse::StreamLimit::wait(10_000));
    /// ```
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

    /// The range of the shed answer's `retry:` (in whole milliseconds, each shed's
    /// value jittered over `range`); values under 1 s are raised to 1 s, and an empty
    /// range is its start. Only for [`shed`](Self::shed).
    ///
    /// ```
    /// use std::time::Duration;
    /// let limit = tower_sse::StreamLimit::shed(1000).retry(Duration::from_secs(1)..Duration::from_secs(5));
    /// ```
    pub fn retry(mut self, range: Range<Duration>) -> Self {
        if let LimitMode::Answer(over) = &mut self.mode {
            over.retry(range);
        }
        self
    }

    /// The `retry-after` sent with a rejection (whole seconds, at least 1). Only for
    /// [`reject`](Self::reject).
    ///
    /// ```
    /// use std::time::Duration;
    /// let limit = tower_sse::StreamLimit::reject(1000).retry_after(Duration::from_secs(30));
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        if let LimitMode::Answer(over) = &mut self.mode {
            over.retry_after(after);
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

/// At most so many open streams per key (the client's IP address, a user), and what
/// happens to one more; see the [module docs](self#keys).
///
/// Clones share their counts, as clones of a [`StreamLimit`] do.
///
/// ```
/// use tower_sse::{limit, PerKeyLimit, SseLayer};
///
/// let per_client = PerKeyLimit::shed(4, limit::client_ip);
/// let layer = SseLayer::new().max_streams_per_key(per_client.clone());
/// assert_eq!(per_client.keys(), 0);
/// ```
#[derive(Clone)]
pub struct PerKeyLimit {
    places: Arc<dyn Places>,
    pub(crate) over: Over,
}

impl PerKeyLimit {
    /// At most `max` open streams per key that `key` takes from a request; one more
    /// gets the [shed answer](self#the-shed-answer). A request for which `key` answers
    /// `None` is not capped.
    ///
    /// ```
    /// let per_client = tower_sse::PerKeyLimit::shed(4, tower_sse::limit::client_ip);
    /// ```
    pub fn shed<K, F>(max: usize, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    {
        Self::new(max, key, Over::Shed(Retry::DEFAULT))
    }

    /// At most `max` open streams per key; one more gets `503` with `retry-after`. Only
    /// for clients that are not browsers; see [`StreamLimit::reject`].
    ///
    /// ```
    /// let per_client = tower_sse::PerKeyLimit::reject(4, tower_sse::limit::client_ip);
    /// ```
    pub fn reject<K, F>(max: usize, key: F) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    {
        Self::new(max, key, Over::REJECT)
    }

    fn new<K, F>(max: usize, key: F, over: Over) -> Self
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        F: Fn(&Parts) -> Option<K> + Send + Sync + 'static,
    {
        let places = Keyed {
            key,
            max,
            open: Mutex::new(HashMap::new()),
        };
        Self {
            places: Arc::new(places),
            over,
        }
    }

    /// The range of the shed answer's `retry:`; see [`StreamLimit::retry`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let per_client = tower_sse::PerKeyLimit::shed(4, tower_sse::limit::client_ip)
    ///     .retry(Duration::from_secs(5)..Duration::from_secs(30));
    /// ```
    pub fn retry(mut self, range: Range<Duration>) -> Self {
        self.over.retry(range);
        self
    }

    /// The `retry-after` of a rejection; see [`StreamLimit::retry_after`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let per_client = tower_sse::PerKeyLimit::reject(4, tower_sse::limit::client_ip)
    ///     .retry_after(Duration::from_secs(10));
    /// ```
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.over.retry_after(after);
        self
    }

    /// The cap per key.
    ///
    /// ```
    /// assert_eq!(tower_sse::PerKeyLimit::shed(4, tower_sse::limit::client_ip).max(), 4);
    /// ```
    pub fn max(&self) -> usize {
        self.places.max()
    }

    /// The keys that have an open stream now: what the limit holds in memory.
    ///
    /// ```
    /// assert_eq!(tower_sse::PerKeyLimit::shed(4, tower_sse::limit::client_ip).keys(), 0);
    /// ```
    pub fn keys(&self) -> usize {
        self.places.keys()
    }

    /// The request's ticket: its key, ready to take a place. `None` without a key.
    pub(crate) fn ticket(&self, parts: &Parts) -> Option<Ticket> {
        self.places.clone().ticket(parts)
    }
}

impl fmt::Debug for PerKeyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerKeyLimit")
            .field("max", &self.max())
            .field("keys", &self.keys())
            .field("over", &self.over)
            .finish()
    }
}

/// The IP address of the peer, from the request's extensions: a [`SocketAddr`] (what
/// a server that knows the peer puts there, as the demo and tower-governor's tests
/// do, e.g. with `tower::util::MapRequest` in the accept loop) or an [`IpAddr`].
/// `None` when neither is there.
///
/// axum's `into_make_service_with_connect_info::<SocketAddr>()` puts a
/// `ConnectInfo<SocketAddr>` there instead; take the key from it with a closure:
/// `|req: &Parts| req.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.ip())`.
///
/// ```
/// use std::net::SocketAddr;
///
/// let mut req = http::Request::new(());
/// let peer: SocketAddr = "192.0.2.7:51234".parse().unwrap();
/// req.extensions_mut().insert(peer);
/// let (parts, _) = req.into_parts();
/// assert_eq!(tower_sse::limit::client_ip(&parts), Some(peer.ip()));
/// ```
pub fn client_ip(parts: &Parts) -> Option<IpAddr> {
    let extensions = &parts.extensions;
    extensions
        .get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| extensions.get::<IpAddr>().copied())
}

/// The open streams of one [`PerKeyLimit`], whatever its key type.
trait Places: Send + Sync {
    fn ticket(self: Arc<Self>, parts: &Parts) -> Option<Ticket>;
    fn max(&self) -> usize;
    fn keys(&self) -> usize;
}

/// The count of open streams per key that has one.
struct Keyed<K, F> {
    key: F,
    max: usize,
    open: Mutex<HashMap<K, usize>>,
}

impl<K, F> Places for Keyed<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    F: Fn(&Parts) -> Option<K> + Send + Sync + 'static,
{
    fn ticket(self: Arc<Self>, parts: &Parts) -> Option<Ticket> {
        let key = (self.key)(parts)?;
        Some(Ticket(Box::new(Place {
            keyed: self,
            key,
            taken: false,
        })))
    }

    fn max(&self) -> usize {
        self.max
    }

    fn keys(&self) -> usize {
        lock(&self.open).len()
    }
}

/// A request's place under its key's cap: taken or not; given back when dropped.
struct Place<K: Hash + Eq, F> {
    keyed: Arc<Keyed<K, F>>,
    key: K,
    taken: bool,
}

trait Take: Send + Sync {
    /// Takes the place if the key is under its cap.
    fn take(&mut self) -> bool;
}

impl<K, F> Take for Place<K, F>
where
    K: Hash + Eq + Clone + Send + Sync,
    F: Send + Sync,
{
    fn take(&mut self) -> bool {
        let mut open = lock(&self.keyed.open);
        self.taken = match open.get_mut(&self.key) {
            Some(n) if *n >= self.keyed.max => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if self.keyed.max == 0 => false,
            None => {
                open.insert(self.key.clone(), 1);
                true
            }
        };
        self.taken
    }
}

impl<K: Hash + Eq, F> Drop for Place<K, F> {
    fn drop(&mut self) {
        if self.taken {
            give_back(&self.keyed.open, &self.key);
        }
    }
}

/// One stream of `key` ended: its count goes down, and the key leaves the map with
/// its last stream (the map's capacity follows when it is mostly empty).
fn give_back<K: Hash + Eq>(open: &Mutex<HashMap<K, usize>>, key: &K) {
    let mut open = lock(open);
    let Some(n) = open.get_mut(key) else { return };
    *n -= 1;
    if *n == 0 {
        open.remove(key);
        if open.capacity() > 64 && open.len() < open.capacity() / 4 {
            let keep = open.len() * 2;
            open.shrink_to(keep);
        }
    }
}

/// A request's key, ready to take a place under its [`PerKeyLimit`] once the
/// response turns out to be SSE.
pub(crate) struct Ticket(Box<dyn Take>);

impl Ticket {
    /// The place, if the key is under its cap.
    pub(crate) fn admit(mut self) -> Option<KeyPermit> {
        self.0.take().then(|| KeyPermit { _place: self.0 })
    }
}

/// A place under a [`PerKeyLimit`], given back when dropped.
pub(crate) struct KeyPermit {
    _place: Box<dyn Take>,
}

/// What an open stream holds of the limits, released when its body drops.
#[derive(Default)]
pub(crate) struct Permit {
    pub(crate) global: Option<OwnedSemaphorePermit>,
    pub(crate) key: Option<KeyPermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_retries_spread_over_the_range_and_never_go_under_a_second() {
        let retry = Retry::new(Duration::from_secs(2)..Duration::from_secs(10));
        let mut ms: Vec<u128> = (0..64).map(|n| retry.jittered(n).as_millis()).collect();
        assert!(ms.iter().all(|&r| (2000..10_000).contains(&r)), "{ms:?}");
        ms.sort_unstable();
        // 64 sheds over 8 s: no gap much wider than 8 s / 64.
        let widest = ms.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(widest < 500, "{ms:?}");
        assert!(ms[0] < 2200 && ms[63] > 9800, "{ms:?}");

        let low = Retry::new(Duration::ZERO..Duration::from_millis(10));
        assert_eq!(low.jittered(7), Duration::from_secs(1));
        let empty = Retry::new(Duration::from_secs(3)..Duration::from_secs(1));
        assert_eq!(empty.jittered(7), Duration::from_secs(3));
        let huge = Retry::new(Duration::ZERO..Duration::MAX);
        assert!(huge.jittered(u64::MAX) >= Duration::from_secs(1));
    }

    #[test]
    fn a_key_leaves_the_map_with_its_last_stream() {
        let limit = PerKeyLimit::shed(2, |parts: &Parts| Some(parts.uri.path().to_owned()));
        let parts = |path: &str| http::Request::get(path).body(()).unwrap().into_parts().0;
        let a1 = limit.ticket(&parts("/a")).unwrap().admit().unwrap();
        let a2 = limit.ticket(&parts("/a")).unwrap().admit().unwrap();
        assert!(limit.ticket(&parts("/a")).unwrap().admit().is_none());
        let b1 = limit.ticket(&parts("/b")).unwrap().admit().unwrap();
        assert_eq!(limit.keys(), 2);
        drop(a1);
        let a3 = limit.ticket(&parts("/a")).unwrap().admit().unwrap();
        drop((a2, a3, b1));
        assert_eq!(limit.keys(), 0);
        // A ticket never admitted gives nothing back.
        drop(limit.ticket(&parts("/a")).unwrap());
        assert_eq!(limit.keys(), 0);
        let none = PerKeyLimit::shed(0, |_: &Parts| Some(1));
        assert!(none.ticket(&parts("/")).unwrap().admit().is_none());
        assert_eq!(none.keys(), 0);
    }
}
