//! The one routine that takes events from a stream's source, in both modes.
//!
//! In direct mode the body drains the source straight into the outgoing frame; in
//! pumped mode a task drains it into the stream's queue. Both go through [`drain`]:
//! the same per-poll budget, the same [`max_event_bytes`](crate::SseLayer::max_event_bytes)
//! check, the same handling of a source error or panic. Where the events go is the
//! [`Sink`].

use std::{
    any::Any,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;

use crate::{
    config::Config,
    error::BoxError,
    event::{Encode, Event},
    stats::Counters,
};

/// Source items taken in one call before [`drain`] hands the worker back (only the
/// items a [`Sink::BUDGETED`] sink takes count, and skipped ones always): an
/// always-ready source must not keep one task busy forever.
pub(crate) const EVENTS_PER_POLL: usize = 128;

/// What a sink did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Put {
    /// Taken: poll on.
    Taken,
    /// Larger than `max_event_bytes`: skipped (and counted).
    Skipped,
    /// Kept for later: the sink is full, stop polling for now.
    Full,
    /// The stream is gone: stop for good.
    Closed,
}

/// Why [`drain`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The source has nothing ready (it will wake the task).
    Pending,
    /// The sink can take no more for now.
    Full,
    /// The sink's stream is gone.
    Closed,
    /// The source ended (or failed, or panicked); the sink had its [`end`](Sink::end).
    Ended,
    /// The budget is spent and the source may have more: come back after other tasks.
    Budget,
}

/// Where drained events go.
pub(crate) trait Sink<T> {
    /// Whether each event taken spends the per-poll budget (a sink bounded by its
    /// own size, like a frame, need not).
    const BUDGETED: bool;
    /// Whether the sink takes more now (asked before each poll of the source).
    fn has_room(&mut self) -> bool;
    /// Takes one event, where the source's poll left it: a sink that encodes reads it
    /// in place, one that keeps its bytes takes them out
    /// ([`take_bytes`](Encode::take_bytes)); the rest is dropped after.
    fn put(&mut self, item: &mut T, rules: &Rules<'_>) -> Put;
    /// The source ended; `last` is the [`on_error`](crate::SseLayer::on_error) event
    /// of a source that failed, which goes out whatever the caps.
    fn end(&mut self, last: Option<Event>);
}

/// What a stream checks its events against, and where it counts what it skips.
pub(crate) struct Rules<'a> {
    pub(crate) config: &'a Config,
    pub(crate) counters: &'a Counters,
}

impl Rules<'_> {
    /// Whether an event of `len` encoded bytes is over `max_event_bytes`. If so it is
    /// counted and logged (its size, never its content), and the sink skips it.
    #[inline]
    pub(crate) fn too_large(&self, len: usize) -> bool {
        if len <= self.config.max_event_bytes {
            return false;
        }
        self.skip_too_large(len);
        true
    }

    #[cold]
    fn skip_too_large(&self, len: usize) {
        self.counters.too_large();
        tracing::warn!(
            size = len,
            limit = self.config.max_event_bytes,
            "sse event larger than max_event_bytes; skipped"
        );
    }

    /// Counts and logs a source error; returns the last event to send, if any.
    fn source_failed(&self, err: BoxError) -> Option<Event> {
        self.counters.source_error();
        tracing::warn!(error = %err, "sse source failed; ending the stream");
        self.config.on_error.as_ref().and_then(|f| f(&err))
    }

    /// Counts and logs a source that panicked (with the panic's message, if it is a
    /// string).
    #[cold]
    fn source_panicked(&self, panic: &(dyn Any + Send)) {
        self.counters.source_panic();
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(not a string)");
        tracing::error!(panic = message, "sse source panicked; ending the stream");
    }
}

/// Polls `source` and hands its events to `sink` until the source is pending or
/// ends, the sink is full or closed, or the budget is spent.
///
/// A source that panics ends its stream only (it counts as ended, without an
/// [`on_error`](crate::SseLayer::on_error) event): the events it yielded before go
/// out, and the task that polled it (hyper's connection, or the pump) goes on.
pub(crate) fn drain<St, T, E, S>(
    source: Pin<&mut St>,
    cx: &mut Context<'_>,
    sink: &mut S,
    rules: &Rules<'_>,
) -> Drained
where
    St: Stream<Item = Result<T, E>> + ?Sized,
    T: Encode,
    E: Into<BoxError>,
    S: Sink<T>,
{
    // Unwind safety: after a panic the source is never polled again (the stream
    // ends), and the sink only ever holds whole events.
    match catch_unwind(AssertUnwindSafe(|| drain_some(source, cx, sink, rules))) {
        Ok(drained) => drained,
        Err(panic) => {
            rules.source_panicked(&*panic);
            sink.end(None);
            Drained::Ended
        }
    }
}

/// [`drain`], panics aside.
#[inline]
fn drain_some<St, T, E, S>(
    mut source: Pin<&mut St>,
    cx: &mut Context<'_>,
    sink: &mut S,
    rules: &Rules<'_>,
) -> Drained
where
    St: Stream<Item = Result<T, E>> + ?Sized,
    T: Encode,
    E: Into<BoxError>,
    S: Sink<T>,
{
    let mut budget = EVENTS_PER_POLL;
    loop {
        if !sink.has_room() {
            return Drained::Full;
        }
        if budget == 0 {
            return Drained::Budget;
        }
        let mut polled = source.as_mut().poll_next(cx);
        // The event is used where the poll put it: moving it out of the `Poll` would
        // copy it (about 100 bytes, read back before the writes land) per event.
        if let Poll::Ready(Some(Ok(item))) = &mut polled {
            match sink.put(item, rules) {
                Put::Taken => budget -= usize::from(S::BUDGETED),
                Put::Skipped => budget -= 1,
                Put::Full => return Drained::Full,
                Put::Closed => return Drained::Closed,
            }
            continue;
        }
        match polled {
            // Taken above.
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(err))) => {
                sink.end(rules.source_failed(err.into()));
                return Drained::Ended;
            }
            Poll::Ready(None) => {
                sink.end(None);
                return Drained::Ended;
            }
            Poll::Pending => return Drained::Pending,
        }
    }
}
