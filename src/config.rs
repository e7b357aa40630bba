//! The settings of a layer, copied down to every stream it serves.
//!
//! Plain data: a [`Config`] neither logs nor counts. What the streams of a layer
//! share at run time (counters, open streams, heartbeat tickers) is the
//! [`LayerState`](crate::state::LayerState).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    buffer::{BufferLimits, Overflow},
    error::BoxError,
    event::Event,
    heartbeat::Heartbeat,
    limit::{PerKeyLimit, StreamLimit},
};

/// Makes the event that marks `n` dropped events ([`SseLayer::gap_event`](crate::SseLayer::gap_event)).
pub(crate) type GapFn = Arc<dyn Fn(u64) -> Event + Send + Sync>;
/// Maps a source error to a last event ([`SseLayer::on_error`](crate::SseLayer::on_error)).
pub(crate) type ErrorFn = Arc<dyn Fn(&BoxError) -> Option<Event> + Send + Sync>;

/// Every setting of [`SseLayer`](crate::SseLayer); its docs give the defaults.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) limits: BufferLimits,
    pub(crate) overflow: Overflow,
    pub(crate) max_frame_bytes: usize,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) gap: Option<GapFn>,
    pub(crate) on_error: Option<ErrorFn>,
    pub(crate) limit: Option<StreamLimit>,
    pub(crate) per_key: Option<PerKeyLimit>,
    pub(crate) max_lifetime: Option<Duration>,
    /// The encoded `retry:` event sent when a stream reaches its lifetime.
    pub(crate) lifetime_retry: Option<Bytes>,
    /// `usize::MAX` when there is no limit: one comparison per event either way.
    pub(crate) max_event_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Some(Heartbeat::new(Heartbeat::DEFAULT_INTERVAL)),
            limits: BufferLimits::default(),
            overflow: Overflow::Wait,
            max_frame_bytes: 64 * 1024,
            stall_timeout: None,
            gap: None,
            on_error: None,
            limit: None,
            per_key: None,
            max_lifetime: None,
            lifetime_retry: None,
            max_event_bytes: usize::MAX,
        }
    }
}

impl Config {
    /// Whether a stream needs a task that drains its source while the socket is full.
    pub(crate) fn pumped(&self) -> bool {
        self.overflow != Overflow::Wait || self.stall_timeout.is_some()
    }

    /// The most bytes of events in one body frame.
    #[inline]
    pub(crate) fn frame_bytes(&self) -> usize {
        self.max_frame_bytes.min(self.limits.bytes())
    }

    /// The gap event maker, as the queue takes it.
    pub(crate) fn gap_fn(&self) -> Option<&dyn Fn(u64) -> Event> {
        self.gap.as_deref().map(|gap| gap as &dyn Fn(u64) -> Event)
    }
}
