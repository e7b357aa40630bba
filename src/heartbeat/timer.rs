//! The per-stream timer design ([`Heartbeat::per_stream_timer`](super::Heartbeat::per_stream_timer)):
//! one `Sleep` per stream, armed once per interval, never reset per event.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::time::{Instant, Sleep};

/// One `Sleep` per stream, never reset per event.
#[derive(Debug)]
pub(super) struct OwnTimer {
    sleep: Pin<Box<Sleep>>,
    interval: Duration,
    pub(super) last_write: Instant,
}

impl OwnTimer {
    pub(super) fn new(interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            sleep: Box::pin(tokio::time::sleep_until(now + interval)),
            interval,
            last_write: now,
        }
    }

    pub(super) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
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
