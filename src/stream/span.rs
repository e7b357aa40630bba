//! The `tracing` span of one stream: its fields are declared and filled here only.

use std::time::Duration;

use tracing::{field::Empty, Span};

/// Opens the span of a stream requested at `path`, with the client's
/// `Last-Event-ID` if it sent one. The counts are filled when the stream closes.
pub(crate) fn open(path: &str, last_event_id: Option<&str>) -> Span {
    tracing::info_span!(
        "sse",
        path = %path,
        last_event_id,
        events = Empty,
        bytes = Empty,
        heartbeats = Empty,
        dropped = Empty,
        max_queued = Empty,
        lifetime_ms = Empty,
        expired = Empty,
    )
}

/// What one stream handed to hyper.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub(crate) events: u64,
    pub(crate) bytes: u64,
    pub(crate) heartbeats: u64,
}

/// What a stream's span records when it closes.
pub(crate) struct Closed {
    pub(crate) totals: Totals,
    /// Events dropped by the overflow policy.
    pub(crate) dropped: u64,
    /// The most events its buffer held at once.
    pub(crate) max_queued: u64,
    pub(crate) lifetime: Duration,
}

/// The stream reached its `max_lifetime`.
pub(crate) fn expired(span: &Span) {
    span.record("expired", true);
    tracing::debug!(parent: span, "sse stream reached its max_lifetime");
}

/// The stream closed: records its counts and logs them.
pub(crate) fn closed(span: &Span, closed: &Closed) {
    let Totals {
        events,
        bytes,
        heartbeats,
    } = closed.totals;
    let (dropped, max_queued) = (closed.dropped, closed.max_queued);
    let lifetime_ms = u64::try_from(closed.lifetime.as_millis()).unwrap_or(u64::MAX);
    span.record("dropped", dropped);
    span.record("max_queued", max_queued);
    span.record("events", events);
    span.record("bytes", bytes);
    span.record("heartbeats", heartbeats);
    span.record("lifetime_ms", lifetime_ms);
    tracing::debug!(
        parent: span,
        events,
        bytes,
        heartbeats,
        dropped,
        max_queued,
        lifetime_ms,
        "sse stream closed"
    );
}
