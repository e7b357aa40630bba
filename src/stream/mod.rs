//! One SSE response stream: the source, its heartbeat, its lifetime and its place in
//! the layer, turned into body frames.
//!
//! [`EventsBody`] is polled by hyper (through [`SseBody`](crate::SseBody)). Each poll
//! fills one frame with every event that is ready: in direct mode it drains the
//! source itself ([`direct`]), in pumped mode it takes what the pump task queued
//! ([`pump`]); both drain the source with the same routine ([`drain`]). With nothing
//! to send it sends a heartbeat when one is due. Shutdown and `max_lifetime` stop the
//! source; what was encoded still goes out, then a last event, then the end.

mod direct;
mod drain;
mod guard;
mod lifetime;
mod pump;
pub(crate) mod span;

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use http_body::Frame;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tracing::Span;

use self::{
    direct::FrameSink,
    drain::{drain, Drained, Rules},
    guard::Guard,
    pump::{pump, Pipe},
};
use crate::{
    buffer::{Queue, Take},
    config::Config,
    error::{BoxError, SlowClientError},
    event::Encode,
    gate::WriteGate,
    heartbeat::{Choice, HeartbeatTimer},
    limit::Permit,
    state::LayerState,
    sync::lock,
};

pin_project! {
    #[project = SourceProj]
    enum Source<St> {
        /// Direct mode: the body polls the source itself.
        Direct { #[pin] stream: St },
        /// Drained by the pump task into the stream's queue.
        Pumped,
        Done,
    }
}

/// Why the source was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Shutdown was seen; the shutdown's last event ends the stream.
    Shutdown,
    /// The stream reached its `max_lifetime`; the `lifetime_retry` hint ends it.
    Expired,
}

pin_project! {
    /// The body of one SSE response stream.
    pub(crate) struct EventsBody<St> {
        #[pin]
        source: Source<St>,
        frame: BytesMut,
        // `frame` ends with one encoded event that goes out in the next frame.
        carried: bool,
        // The last frame was full: the next one is allocated at its size at once.
        busy: bool,
        heartbeat: Option<HeartbeatTimer>,
        // Fires at the stream's `max_lifetime` (jittered); `None` without one, and once
        // it fired.
        lifetime: Option<Pin<Box<Sleep>>>,
        // Shutdown or the lifetime was seen: the source is stopped, what is encoded
        // drains.
        stop: Option<Stop>,
        done: bool,
        // The connection's write gate: no frame while its transport is full.
        gate: Option<WriteGate>,
        guard: Guard,
    }
}

/// What one fill of the frame found.
#[derive(Debug, Default)]
struct Fill {
    /// Events in the frame.
    events: usize,
    /// Where the frame ends if its last event starts the next one.
    split_at: Option<usize>,
    /// The source ended and everything went out.
    ended: bool,
    /// The source may have more ready: come back after other tasks ran.
    yield_now: bool,
}

impl<St, T, E> EventsBody<St>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    /// A stream of `stream` with the layer's `config` and `state`, the response's
    /// heartbeat `choice`, its span and what it holds of the layer's limits.
    pub(crate) fn new(
        stream: St,
        config: Arc<Config>,
        state: Arc<LayerState>,
        choice: &Choice,
        span: Span,
        permit: Permit,
    ) -> Self {
        // A task needs a runtime to spawn on, timers a runtime with time enabled;
        // without one, backpressure and no timers.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let pumped = config.pumped() && runtime.is_some();
        let queue = pumped.then(|| Arc::new(Mutex::new(Queue::new(state.counters.clone()))));
        let heartbeat = choice.resolve(config.heartbeat.as_ref()).cloned();
        let mut guard = Guard::open(config, state, queue, span, permit);
        let source = match (&runtime, &guard.queue) {
            (Some(runtime), Some(queue)) => {
                let pipe = Pipe {
                    queue: queue.clone(),
                    body: guard.waker.clone(),
                };
                let interval = heartbeat.as_ref().map(|hb| hb.interval());
                let (config, counters) = (guard.config.clone(), guard.state.counters.clone());
                let task = runtime.spawn(pump(stream, pipe, config, counters, interval));
                guard.pump = Some(task.abort_handle());
                Source::Pumped
            }
            _ => {
                if guard.config.pumped() {
                    tracing::warn!("no tokio runtime to drain the source: using backpressure");
                }
                Source::Direct { stream }
            }
        };
        let lifetime = guard
            .config
            .max_lifetime
            .and_then(|max| lifetime::timer(max, || guard.state.counters.next_lifetime()));
        let heartbeat = heartbeat
            .filter(|_| runtime.is_some())
            .map(|hb| HeartbeatTimer::new(&hb, &guard.state.tickers));
        Self {
            source,
            frame: BytesMut::new(),
            carried: false,
            busy: false,
            heartbeat,
            lifetime,
            stop: None,
            done: false,
            gate: None,
            guard,
        }
    }
}

impl<St> EventsBody<St> {
    /// The body makes no frame while `gate` is closed.
    pub(crate) fn gated(mut self, gate: WriteGate) -> Self {
        self.gate = Some(gate);
        self
    }
}

impl<St, T, E> EventsBody<St>
where
    St: Stream<Item = Result<T, E>>,
    T: Encode,
    E: Into<BoxError>,
{
    /// Whether the body has sent its end.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next frame. With a write gate, a frame closes it: the next one is made once
    /// hyper has written this one out (see [`WriteGate`]).
    #[inline]
    pub(crate) fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.as_mut().poll_next_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(gate)) = (&polled, &self.gate) {
            // A full frame (the stream is busy) lets the transport size the next one.
            gate.close(self.busy);
        }
        polled
    }

    #[inline(always)]
    fn poll_next_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            if let Some(gate) = this.gate.as_ref() {
                ready!(gate.poll_open(cx));
            }
            if this.stop.is_none() {
                *this.stop = poll_stop(this.lifetime, this.guard, cx);
                if this.stop.is_some() {
                    stop_source(this.source.as_mut(), this.guard);
                }
            }
            let gate = this.gate.as_ref();
            // A busy stream's frame is allocated now, when hyper asks for it: with the
            // write gate, once it wrote out the last one.
            let reserved = std::mem::take(this.busy)
                && reserve(this.frame, frame_cap(gate, &this.guard.config));
            let fill = match fill(
                this.source.as_mut(),
                (this.frame, gate),
                *this.carried,
                this.guard,
                cx,
            ) {
                Ok(fill) => fill,
                Err(why) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(why.into())));
                }
            };
            if fill.ended {
                this.source.set(Source::Done);
            }
            if reserved && this.frame.is_empty() {
                // Nothing was ready: a quiet stream keeps no spare capacity alive.
                *this.frame = BytesMut::new();
                *this.busy = true;
            }
            if !this.frame.is_empty() {
                let flags = (&mut *this.carried, &mut *this.busy);
                let cap = frame_cap(gate, &this.guard.config);
                let bytes = take_frame((this.frame, cap), flags, &fill, this.guard);
                if let Some(hb) = this.heartbeat.as_mut() {
                    hb.wrote();
                }
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if fill.ended {
                *this.done = true;
                return Poll::Ready(last_frame(*this.stop, this.guard).map(Ok));
            }
            if let Some(bytes) = poll_heartbeat(this.heartbeat, this.guard, cx) {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            this.guard.waker.register(cx.waker());
            if fill.yield_now {
                cx.waker().wake_by_ref();
            }
            // Shutdown may have begun since it was checked: look again.
            if this.stop.is_some() || !this.guard.state.streams.is_shutting_down() {
                return Poll::Pending;
            }
        }
    }
}

/// Whether the source is to stop now: shutdown began, or the lifetime is up.
#[inline(always)]
fn poll_stop(
    lifetime: &mut Option<Pin<Box<Sleep>>>,
    guard: &Guard,
    cx: &mut Context<'_>,
) -> Option<Stop> {
    if guard.state.streams.is_shutting_down() {
        return Some(Stop::Shutdown);
    }
    if lifetime.as_mut()?.as_mut().poll(cx).is_pending() {
        return None;
    }
    *lifetime = None;
    guard.state.counters.expired();
    span::expired(&guard.span);
    Some(Stop::Expired)
}

/// Stops the source: stops the pump (what it queued still goes out) or drops the
/// source polled in place.
#[inline]
fn stop_source<St>(mut source: Pin<&mut Source<St>>, guard: &mut Guard) {
    if guard.pump.is_some() {
        guard.stop_pump();
    } else if let SourceProj::Direct { .. } = source.as_mut().project() {
        source.set(Source::Done);
    }
}

/// This frame's cap: the layer's, lowered by the gate's transport. The gate's cap
/// changes only while the gate is closed, when no frame is made.
#[inline(always)]
fn frame_cap(gate: Option<&WriteGate>, config: &Config) -> usize {
    let layer = config.frame_bytes();
    match gate {
        Some(gate) => gate.frame_cap().min(layer),
        None => layer,
    }
}

/// Fills `frame` up to its cap (see [`frame_cap`]) with what is ready: from the source
/// itself (direct mode) or from the queue (pumped mode). An error is a client
/// disconnected as too slow.
#[inline(always)]
fn fill<St, T, E>(
    source: Pin<&mut Source<St>>,
    (frame, gate): (&mut BytesMut, Option<&WriteGate>),
    carried: bool,
    guard: &Guard,
    cx: &mut Context<'_>,
) -> Result<Fill, SlowClientError>
where
    St: Stream<Item = Result<T, E>>,
    T: Encode,
    E: Into<BoxError>,
{
    let config = &*guard.config;
    match source.project() {
        SourceProj::Direct { stream } => {
            let mut sink = FrameSink {
                frame,
                max: frame_cap(gate, config),
                // An event carried over from the last poll is already in `frame`.
                events: usize::from(carried),
                split_at: None,
            };
            let rules = Rules {
                config,
                counters: &guard.state.counters,
            };
            let drained = drain(stream, cx, &mut sink, &rules);
            Ok(Fill {
                events: sink.events,
                split_at: sink.split_at,
                ended: drained == Drained::Ended,
                yield_now: drained == Drained::Budget,
            })
        }
        SourceProj::Pumped => fill_from_queue((frame, frame_cap(gate, config)), guard, cx),
        SourceProj::Done => Ok(Fill {
            ended: true,
            ..Fill::default()
        }),
    }
}

/// Pumped mode: takes a frame's worth (`cap` bytes) from the queue.
#[inline]
fn fill_from_queue(
    (frame, cap): (&mut BytesMut, usize),
    guard: &Guard,
    cx: &mut Context<'_>,
) -> Result<Fill, SlowClientError> {
    let (Some(queue), config) = (&guard.queue, &*guard.config) else {
        return Ok(Fill::default());
    };
    let mut queue = lock(queue);
    let mut fill = Fill::default();
    match queue.take_frame(frame, cap, config.limits.events(), config.gap_fn()) {
        Take::Frame(events) => fill.events = events,
        Take::Ended => fill.ended = true,
        // Registered under the queue's lock: a push after this wakes the body.
        Take::Empty => guard.waker.register(cx.waker()),
        Take::Disconnected(why) => return Err(why),
    }
    Ok(fill)
}

/// Splits off the frame to send and counts it; it is full at `cap` bytes.
#[inline(always)]
fn take_frame(
    (frame, cap): (&mut BytesMut, usize),
    (carried, busy): (&mut bool, &mut bool),
    fill: &Fill,
    guard: &mut Guard,
) -> Bytes {
    let config = &*guard.config;
    *carried = fill.split_at.is_some();
    let full = *carried
        || frame.len() >= cap
        || (guard.queue.is_some() && fill.events >= config.limits.events());
    // The frame sent owns its allocation alone: the carried event is copied out, so
    // the next frame's bytes do not keep the allocation alive (and touched) while
    // hyper holds the frame. The next frame is allocated when it is filled.
    let next = match fill.split_at {
        Some(at) => {
            let next = BytesMut::from(&frame[at..]);
            frame.truncate(at);
            next
        }
        None => BytesMut::new(),
    };
    *busy = full;
    let bytes = std::mem::replace(frame, next).freeze();
    guard.sent(fill.events as u64, bytes.len() as u64);
    bytes
}

/// Allocates a busy stream's next frame at once: the `cap` and room for the event
/// that crosses it, so that it does not grow by doubling; at most 256 KiB (a larger
/// frame grows as it fills). Whether it allocated.
#[inline]
fn reserve(frame: &mut BytesMut, cap: usize) -> bool {
    let want = cap.saturating_add(cap / 8).min(256 * 1024);
    if frame.capacity() >= want {
        return false;
    }
    frame.reserve(want - frame.len());
    true
}

/// The event that ends a stopped stream: shutdown's, or the lifetime's `retry:` hint.
#[inline]
fn last_frame(stop: Option<Stop>, guard: &mut Guard) -> Option<Frame<Bytes>> {
    let last = match stop? {
        Stop::Shutdown => guard.state.streams.last_event(),
        Stop::Expired => guard.config.lifetime_retry.clone(),
    }?;
    guard.sent(1, last.len() as u64);
    Some(Frame::data(last))
}

/// A heartbeat, if one is due.
#[inline(always)]
fn poll_heartbeat(
    heartbeat: &mut Option<HeartbeatTimer>,
    guard: &mut Guard,
    cx: &mut Context<'_>,
) -> Option<Bytes> {
    let timer = heartbeat.as_mut()?;
    if timer.poll_due(cx).is_pending() {
        return None;
    }
    let bytes = timer.bytes().clone();
    if let Some(queue) = &guard.queue {
        lock(queue).delivered(timer.last_write());
    }
    guard.heartbeat_sent(bytes.len() as u64);
    Some(bytes)
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What the layer keeps per idle stream in direct mode: the body (inline in
    /// hyper's connection state), the stream's waker (shared with shutdown) and its
    /// slot in the registry, and the heartbeat `Sleep` of a per-stream timer.
    #[test]
    fn per_stream_state_stays_under_one_kib() {
        type St = futures_core::stream::BoxStream<
            'static,
            Result<crate::Event, std::convert::Infallible>,
        >;
        let body = std::mem::size_of::<EventsBody<St>>();
        let waker =
            std::mem::size_of::<atomic_waker::AtomicWaker>() + 2 * std::mem::size_of::<usize>();
        let sleep = std::mem::size_of::<tokio::time::Sleep>();
        let slot = std::mem::size_of::<Option<Arc<atomic_waker::AtomicWaker>>>();
        let total = body + waker + sleep + slot;
        assert!(
            total < 1024,
            "body {body} + waker {waker} + sleep {sleep} + slot {slot} = {total}"
        );
    }
}
