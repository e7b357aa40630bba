//! Pumped mode (an [`Overflow`] other than `Wait`, or a stall timeout): a task drains
//! the source into the stream's bounded [`Queue`] while the socket is full, and
//! watches for a client that stopped reading.

use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use super::drain::{drain, Drained, Put, Rules, Sink};
use crate::{
    buffer::{Overflow, Pushed, Queue},
    config::Config,
    error::{BoxError, SlowClientError},
    event::{Encode, Event},
    stats::Counters,
    sync::lock,
};

/// What the pump shares with its stream's body.
pub(super) struct Pipe {
    pub(super) queue: Arc<Mutex<Queue>>,
    /// Wakes the body when there is something to send.
    pub(super) body: Arc<AtomicWaker>,
}

/// Drains `source` into the stream's queue until the source ends, the client is
/// disconnected, or the task is aborted (the body was dropped, or stopped its
/// source). With a stall timeout it keeps watching the client until the queue is
/// delivered.
pub(super) async fn pump<St, T, E>(
    source: St,
    pipe: Pipe,
    config: Arc<Config>,
    counters: Arc<Counters>,
    heartbeat: Option<Duration>,
) where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    let mut source = pin!(Some(source));
    let mut pump = Pump {
        watchdog: config
            .stall_timeout
            .map(|_| Box::pin(tokio::time::sleep_until(far()))),
        held: None,
        pipe,
        config,
        counters,
        heartbeat,
    };
    poll_fn(|cx| loop {
        match pump.step(cx) {
            Step::Done => return Poll::Ready(()),
            Step::Again => continue,
            Step::Wait if pump.watchdog_fired(cx) => continue,
            Step::Wait => return Poll::Pending,
            Step::Poll => {}
        }
        let Some(stream) = source.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let rules = Rules {
            config: &pump.config,
            counters: &pump.counters,
        };
        let mut sink = QueueSink {
            pipe: &pump.pipe,
            held: &mut pump.held,
            config: &pump.config,
            counters: &pump.counters,
        };
        match drain(stream, cx, &mut sink, &rules) {
            Drained::Full => continue,
            Drained::Closed => return Poll::Ready(()),
            Drained::Ended => source.set(None),
            Drained::Budget => {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Drained::Pending if pump.watchdog_fired(cx) => continue,
            Drained::Pending => return Poll::Pending,
        }
    })
    .await;
}

/// A deadline that never comes: the watchdog's while nothing is due.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// What the pump does next.
enum Step {
    /// Nothing left to do.
    Done,
    /// Look again (something changed).
    Again,
    /// Blocked (no room, or only watching the client): wait for the body or the
    /// watchdog.
    Wait,
    /// Poll the source.
    Poll,
}

struct Pump {
    pipe: Pipe,
    config: Arc<Config>,
    counters: Arc<Counters>,
    heartbeat: Option<Duration>,
    /// With a stall timeout: fires when the client counts as stalled.
    watchdog: Option<Pin<Box<Sleep>>>,
    /// Under `Wait`, an event that did not fit waits here for room.
    held: Option<Bytes>,
}

impl Pump {
    /// Looks at the queue: is the stream done, the client stalled, is there room?
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let mut queue = lock(&self.pipe.queue);
        if queue.pump_done(self.watchdog.is_some()) {
            return Step::Done;
        }
        if stalled(&mut self.watchdog, &self.config, self.heartbeat, &mut queue) {
            drop(queue);
            self.counters.stalled();
            tracing::debug!("sse client stalled; disconnecting");
            self.pipe.body.wake();
            return Step::Done;
        }
        let blocked = if queue.is_ended() {
            // Only watching the client now.
            true
        } else if let Some(bytes) = self.held.take() {
            match queue.push_if_room(bytes, self.config.limits) {
                Ok(_) => {
                    drop(queue);
                    self.pipe.body.wake();
                    return Step::Again;
                }
                Err(bytes) => {
                    self.held = Some(bytes);
                    true
                }
            }
        } else {
            self.config.overflow == Overflow::Wait && queue.is_full(self.config.limits)
        };
        if blocked {
            queue.park_pump(cx.waker());
            return Step::Wait;
        }
        Step::Poll
    }

    /// Whether the watchdog fired (then the pump looks again); else it will wake
    /// the task when it does.
    fn watchdog_fired(&mut self, cx: &mut Context<'_>) -> bool {
        self.watchdog
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready())
    }
}

/// With a stall timeout: disconnects a client past its deadline (true), else sets the
/// watchdog to that deadline.
fn stalled(
    watchdog: &mut Option<Pin<Box<Sleep>>>,
    config: &Config,
    heartbeat: Option<Duration>,
    queue: &mut Queue,
) -> bool {
    let (Some(sleep), Some(timeout)) = (watchdog.as_mut(), config.stall_timeout) else {
        return false;
    };
    let deadline = queue.stall_deadline(timeout, heartbeat);
    if deadline.is_some_and(|d| d <= Instant::now()) {
        queue.disconnect(SlowClientError::stall());
        return true;
    }
    let deadline = deadline.unwrap_or_else(far);
    if sleep.deadline() != deadline {
        sleep.as_mut().reset(deadline);
    }
    false
}

/// The queue being filled by [`drain`].
struct QueueSink<'a> {
    pipe: &'a Pipe,
    held: &'a mut Option<Bytes>,
    config: &'a Config,
    counters: &'a Counters,
}

impl<T: Encode> Sink<T> for QueueSink<'_> {
    const BUDGETED: bool = true;

    fn has_room(&mut self) -> bool {
        self.held.is_none()
            && (self.config.overflow != Overflow::Wait
                || !lock(&self.pipe.queue).is_full(self.config.limits))
    }

    fn put(&mut self, item: &mut T, rules: &Rules<'_>) -> Put {
        let bytes = item.take_bytes();
        if rules.too_large(bytes.len()) {
            return Put::Skipped;
        }
        if self.config.overflow == Overflow::Wait {
            return self.put_or_hold(bytes);
        }
        let pushed = lock(&self.pipe.queue).push(bytes, self.config.limits, self.config.overflow);
        self.pipe.body.wake();
        match pushed {
            Pushed::Queued => Put::Taken,
            Pushed::Dropped(n) => {
                self.counters.dropped(n);
                tracing::debug!(dropped = n, "sse buffer full; events dropped");
                Put::Taken
            }
            Pushed::Disconnected => {
                self.counters.overflowed();
                tracing::debug!("sse buffer full; disconnecting the client");
                Put::Closed
            }
            Pushed::Closed => Put::Closed,
        }
    }

    fn end(&mut self, last: Option<Event>) {
        let last = last.map(Encode::into_bytes);
        lock(&self.pipe.queue).finish(self.held.take(), last);
        self.pipe.body.wake();
    }
}

impl QueueSink<'_> {
    /// Under `Wait`: queues `bytes` if there is room, else holds it until there is.
    fn put_or_hold(&mut self, bytes: Bytes) -> Put {
        let pushed = lock(&self.pipe.queue).push_if_room(bytes, self.config.limits);
        match pushed {
            Ok(Pushed::Closed) => Put::Closed,
            Ok(_) => {
                self.pipe.body.wake();
                Put::Taken
            }
            Err(bytes) => {
                *self.held = Some(bytes);
                Put::Full
            }
        }
    }
}
