//! Keep-alive heartbeats.
//!
//! A heartbeat is sent when nothing was written to a connection for the heartbeat
//! interval. By default it is a comment line (`:\n\n`), which proxies see as traffic
//! and `EventSource` ignores; [`Heartbeat::event`] sends a named event instead, so a
//! page can tell a quiet connection from a dead one.
//!
//! # Design and cost
//!
//! Each stream owns one `tokio::time::Sleep`, created when the stream starts. Sending
//! an event does **not** touch the timer: the body only stores the time of its last
//! write (one clock read per body frame, and a frame carries every event that was
//! ready). When the timer fires, the body compares that time with the deadline: if
//! something was written meanwhile, the timer is re-armed once for
//! `last_write + interval`; otherwise the heartbeat goes out. The idle path reads no
//! clock at all: a timer that fired is at or past its deadline, which is the time used. A busy stream therefore
//! pays one timer expiry per interval instead of one timer reset per event (axum's
//! `KeepAlive` resets its `Sleep` on every event), and an idle stream pays one timer
//! expiry and one write per interval. The heartbeat bytes are encoded once, when the
//! layer is built, into a shared `Bytes`: sending one is a reference-count increment
//! (none at all for the default, which is static).
//!
//! Measured with callgrind (BENCHMARKS.md): on an always-ready stream the heartbeat adds
//! 0.2 instructions per event (axum's `KeepAlive`: 220, +12% of its events/s); on an
//! idle stream one heartbeat costs 5,935 instructions including tokio's timer wheel,
//! against 5,846 for axum's `KeepAlive` (within 1.5%).
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
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Sleep};

use crate::{event::put_lines, Event};

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

    /// The interval of silence after which a heartbeat is sent.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The bytes written for each heartbeat.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl From<Duration> for Heartbeat {
    fn from(interval: Duration) -> Self {
        Self::new(interval)
    }
}

/// Per-connection heartbeat timer (see the module docs for the design).
#[derive(Debug)]
pub(crate) struct HeartbeatTimer {
    sleep: Pin<Box<Sleep>>,
    interval: Duration,
    last_write: Instant,
    bytes: Bytes,
}

impl HeartbeatTimer {
    pub(crate) fn new(heartbeat: &Heartbeat) -> Self {
        let now = Instant::now();
        Self {
            sleep: Box::pin(tokio::time::sleep_until(now + heartbeat.interval)),
            interval: heartbeat.interval,
            last_write: now,
            bytes: heartbeat.bytes.clone(),
        }
    }

    /// The bytes of one heartbeat.
    pub(crate) fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Records that bytes were written now. Does not touch the timer.
    #[inline]
    pub(crate) fn wrote(&mut self) {
        self.last_write = Instant::now();
    }

    /// The time of the last write.
    pub(crate) fn last_write(&self) -> Instant {
        self.last_write
    }

    /// Ready when the connection has been silent for a whole interval; the caller then
    /// sends a heartbeat (the timer counts it as a write).
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            // The timer fired, so the clock is at or past its deadline: comparing with
            // the deadline instead of reading the clock keeps the idle path free of
            // clock reads, and the schedule free of drift.
            let fired = self.sleep.deadline();
            let due = self.last_write + self.interval;
            if due <= fired {
                self.last_write = fired;
                self.sleep.as_mut().reset(fired + self.interval);
                return Poll::Ready(());
            }
            // Something was written since the timer was armed: re-arm once.
            self.sleep.as_mut().reset(due);
        }
    }
}
