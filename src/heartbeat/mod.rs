//! Keep-alive heartbeats.
//!
//! A heartbeat is sent when nothing was written to a connection for the heartbeat
//! interval. By default it is a comment line (`:\n\n`), which proxies see as traffic
//! and `EventSource` ignores; [`Heartbeat::event`] sends a named event instead, so a
//! page can tell a quiet connection from a dead one.
//!
//! # Design and cost
//!
//! Two schedulers, both free for a busy stream (no timer is touched per event):
//!
//! - **Shared ticker (default).** One task per layer and interval (while streams use
//!   it) ticks eight times per interval and wakes only the streams whose heartbeat is
//!   due at that tick. A late tick is caught up, not pushed back. A
//!   stream keeps no timer; a write records the tick number (one atomic load per body
//!   frame). A heartbeat comes after between one and 9/8 intervals of silence, exactly
//!   one interval apart on an idle stream.
//! - **Timer per stream** ([`Heartbeat::per_stream_timer`]). Each stream owns one
//!   `tokio::time::Sleep`; a write stores its time (one clock read per frame), and when
//!   the timer fires the body compares: if something was written meanwhile it re-arms
//!   once for `last_write + interval`, otherwise the heartbeat goes out after exactly
//!   one interval. The idle path reads no clock (the fired deadline is the time used).
//!
//! axum's `KeepAlive` resets its `Sleep` on every event instead. The heartbeat bytes
//! are encoded once, when the layer is built, into a shared `Bytes`: sending one is a
//! reference-count increment (none for the default comment, which is static).
//!
//! BENCHMARKS.md measures both designs against axum's `KeepAlive`, on busy streams
//! and on thousands of idle ones.
//!
//! ```
//! use std::time::Duration;
//! use tower_sse::{Event, Heartbeat, SseLayer};
//!
//! # fn main() -> Result<(), tower_sse::EventError> {
//! // A comment every 15 s (the default).
//! let layer = SseLayer::new().heartbeat(Duration::from_secs(15));
//! // A `ping` event every 5 s, visible to `EventSource.addEventListener("ping", …)`.
//! let layer = SseLayer::new()
//!     .heartbeat(Heartbeat::new(Duration::from_secs(5)).event(Event::new().event("ping")?.data("")));
//! // No heartbeats.
//! let layer = SseLayer::new().no_heartbeat();
//! # Ok(())
//! # }
//! ```

use std::{
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::event::{put_lines, Event};

mod ticker;
mod timer;

pub(crate) use self::ticker::Tickers;
use self::{ticker::TickerHeartbeat, timer::OwnTimer};

/// Heartbeat configuration: the interval and the bytes sent.
///
/// `Duration` converts into a `Heartbeat` with the default comment, so
/// `layer.heartbeat(Duration::from_secs(15))` works.
///
/// ```
/// use std::time::Duration;
/// use tower_sse::Heartbeat;
///
/// let hb = Heartbeat::new(Duration::from_secs(10)).comment("keep-alive");
/// assert_eq!(hb.interval(), Duration::from_secs(10));
/// assert_eq!(&hb.bytes()[..], b": keep-alive\n\n");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    interval: Duration,
    bytes: Bytes,
    shared: bool,
}

impl Heartbeat {
    /// The default heartbeat interval, 15 seconds.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);

    /// The longest interval: longer ones are treated as this one (a year).
    pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

    /// A heartbeat comment (`:\n\n`) every `interval`.
    ///
    /// A zero interval is raised to one millisecond, and one longer than
    /// [`MAX_INTERVAL`](Self::MAX_INTERVAL) lowered to it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::Heartbeat;
    ///
    /// assert_eq!(Heartbeat::new(Duration::MAX).interval(), Heartbeat::MAX_INTERVAL);
    /// ```
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.clamp(Duration::from_millis(1), Self::MAX_INTERVAL),
            bytes: Bytes::from_static(b":\n\n"),
            shared: true,
        }
    }

    /// Sends `: text` as the heartbeat comment (line breaks make several comment lines).
    pub fn comment(mut self, text: &str) -> Self {
        let mut buf = BytesMut::new();
        put_lines(&mut buf, b"", text);
        buf.extend_from_slice(b"\n");
        self.bytes = buf.freeze();
        self
    }

    /// Sends `event` as the heartbeat, so that a browser's `EventSource` sees it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::{Event, Heartbeat};
    ///
    /// # fn main() -> Result<(), tower_sse::EventError> {
    /// let hb = Heartbeat::new(Duration::from_secs(5)).event(Event::new().event("ping")?.data(""));
    /// assert_eq!(&hb.bytes()[..], b"event: ping\ndata:\n\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn event(mut self, event: Event) -> Self {
        self.bytes = event.encode().into_bytes();
        self
    }

    /// Schedules heartbeats with one ticker per layer and interval (the default).
    ///
    /// The ticker ticks eight times per interval and wakes only the streams that are
    /// due; a stream keeps no timer (no `Sleep` per stream, no timer-wheel work per
    /// heartbeat) and records a write with one atomic load. On many idle connections
    /// this costs less CPU per heartbeat than a timer per stream and keeps them on time
    /// under load (BENCHMARKS.md has the runs). The price is precision: a heartbeat
    /// comes after between one and 9/8 intervals of silence (exactly one interval
    /// apart on an idle stream), and streams opened together beat together. The ticker
    /// task runs on the runtime of the first stream that needs it (and is started
    /// again on another runtime if that one shuts down) and stops with the last stream
    /// that uses it. With a single idle stream per interval its eight ticks make each
    /// heartbeat cost more instructions than a timer would (not more writes).
    ///
    /// ```
    /// use std::time::Duration;
    /// let hb = tower_sse::Heartbeat::new(Duration::from_secs(15)).shared_ticker();
    /// assert!(hb.is_shared_ticker());
    /// ```
    pub fn shared_ticker(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Schedules heartbeats with a timer per stream instead: exactly one interval of
    /// silence before each heartbeat, at the cost of a `tokio::time::Sleep` per stream
    /// (never reset per event: re-armed once per interval on a busy stream).
    ///
    /// ```
    /// use std::time::Duration;
    /// let hb = tower_sse::Heartbeat::new(Duration::from_secs(15)).per_stream_timer();
    /// assert!(!hb.is_shared_ticker());
    /// ```
    pub fn per_stream_timer(mut self) -> Self {
        self.shared = false;
        self
    }

    /// Whether the shared ticker schedules the heartbeats (the default).
    pub fn is_shared_ticker(&self) -> bool {
        self.shared
    }

    /// The interval of silence after which a heartbeat is sent.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The bytes written for each heartbeat.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// The heartbeat a response asked for: the layer's, its own, or none.
#[derive(Debug, Clone, Default)]
pub(crate) enum Choice {
    /// The layer's setting.
    #[default]
    Layer,
    /// This one instead.
    Custom(Heartbeat),
    /// No heartbeats on this response.
    Off,
}

impl Choice {
    /// The heartbeat to use, given the layer's.
    pub(crate) fn resolve<'a>(&'a self, layer: Option<&'a Heartbeat>) -> Option<&'a Heartbeat> {
        match self {
            Self::Layer => layer,
            Self::Custom(heartbeat) => Some(heartbeat),
            Self::Off => None,
        }
    }
}

impl From<Duration> for Heartbeat {
    fn from(interval: Duration) -> Self {
        Self::new(interval)
    }
}

/// Per-connection heartbeat schedule (see the module docs for the design).
#[derive(Debug)]
pub(crate) struct HeartbeatTimer {
    kind: TimerKind,
    bytes: Bytes,
}

#[derive(Debug)]
enum TimerKind {
    Own(OwnTimer),
    Shared(TickerHeartbeat),
}

impl HeartbeatTimer {
    /// Must be called within a tokio runtime with time enabled; a shared ticker comes
    /// from `tickers`.
    pub(crate) fn new(heartbeat: &Heartbeat, tickers: &Tickers) -> Self {
        let kind = if heartbeat.shared {
            TimerKind::Shared(TickerHeartbeat::new(tickers.get(heartbeat.interval)))
        } else {
            TimerKind::Own(OwnTimer::new(heartbeat.interval))
        };
        Self {
            kind,
            bytes: heartbeat.bytes.clone(),
        }
    }

    /// The bytes of one heartbeat.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Records that bytes were written now. Does not touch any timer.
    #[inline]
    pub(crate) fn wrote(&mut self) {
        match &mut self.kind {
            TimerKind::Own(timer) => timer.last_write = Instant::now(),
            TimerKind::Shared(ticker) => ticker.wrote(),
        }
    }

    /// About when the last write (or heartbeat) happened.
    pub(crate) fn last_write(&self) -> Instant {
        match &self.kind {
            TimerKind::Own(timer) => timer.last_write,
            TimerKind::Shared(_) => Instant::now(),
        }
    }

    /// Ready when the connection has been silent long enough; the caller then sends a
    /// heartbeat (which counts as a write).
    #[inline]
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.kind {
            TimerKind::Own(timer) => timer.poll_due(cx),
            TimerKind::Shared(ticker) => ticker.poll_due(cx),
        }
    }
}
