//! The shared-ticker heartbeat design ([`Heartbeat::shared_ticker`](super::Heartbeat::shared_ticker)).
//!
//! One task per layer and interval ticks eight times per interval and wakes only the
//! streams whose heartbeat falls due at that tick. A stream has no timer of its own:
//! writing records the current tick number (one atomic load per body frame), and an
//! idle stream parks its waker in the bucket of the tick at which it is due.
//!
//! A bucket is a [`Slab`]: the stream keeps its key and takes its waker out when it
//! parks again elsewhere or is dropped, so a closed stream leaves nothing behind
//! however long the interval (a parked waker keeps its whole task alive: with a
//! one-day interval, every closed connection's memory would wait for that tick).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use crate::sync::{lock, Slab};

/// Ticks per interval: a heartbeat is at most 1/8 interval late.
const TICKS_PER_INTERVAL: u32 = 8;
/// Ticks between a write and the heartbeat: the stream has then been silent for more
/// than one interval (and at most 9/8).
const QUIET_TICKS: u64 = TICKS_PER_INTERVAL as u64 + 1;
/// Due ticks lie at most `QUIET_TICKS` ahead: a bucket holds the wakers of one due
/// tick at a time, so a waker parked for tick `due` is still in its bucket exactly
/// while the epoch is below `due`.
const BUCKETS: usize = QUIET_TICKS as usize + 1;

/// The parked wakers of one tick.
type Bucket = Slab<Waker>;

/// The shared tickers of one layer, by interval. Each is held by its streams: a ticker
/// stops with its last stream, so intervals chosen per request (by clients, even)
/// cannot pile up tasks that tick forever.
#[derive(Debug, Default)]
pub(crate) struct Tickers(Mutex<Vec<(Duration, Weak<Ticker>)>>);

impl Tickers {
    /// The ticker for `interval`, started on first use. Must be called within a tokio
    /// runtime.
    pub(crate) fn get(&self, interval: Duration) -> Arc<Ticker> {
        let mut tickers = lock(&self.0);
        let mut found = None;
        // Forget the tickers no stream holds any more and those whose runtime shut
        // down (a layer used from a new runtime gets a new one).
        tickers.retain(|(i, weak)| match weak.upgrade() {
            Some(ticker) if ticker.is_alive() => {
                if *i == interval {
                    found = Some(ticker);
                }
                true
            }
            _ => false,
        });
        if let Some(ticker) = found {
            return ticker;
        }
        let ticker = Ticker::start(interval);
        tickers.push((interval, Arc::downgrade(&ticker)));
        ticker
    }
}

/// One interval's ticker: the tick count and the parked wakers of due streams.
#[derive(Debug)]
pub(crate) struct Ticker {
    /// Cleared when the ticking task is gone (its runtime shut down).
    alive: AtomicBool,
    epoch: AtomicU64,
    /// Wakers by the tick (mod BUCKETS) at which they are due.
    buckets: Mutex<[Bucket; BUCKETS]>,
}

impl Ticker {
    /// A ticker whose task ticks every `interval / 8` until the returned `Arc` (and its
    /// clones) are gone. Must be called within a tokio runtime.
    fn start(interval: Duration) -> Arc<Self> {
        let ticker = Arc::new(Self {
            alive: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            buckets: Mutex::new(Default::default()),
        });
        let weak: Weak<Self> = Arc::downgrade(&ticker);
        let period = (interval / TICKS_PER_INTERVAL).max(Duration::from_millis(1));
        tokio::spawn(async move {
            /// Marks the ticker dead when the task is dropped, finished or not.
            struct Alive(Weak<Ticker>);
            impl Drop for Alive {
                fn drop(&mut self) {
                    if let Some(ticker) = self.0.upgrade() {
                        ticker.alive.store(false, Ordering::Release);
                    }
                }
            }
            let _alive = Alive(weak.clone());
            let mut ticks = tokio::time::interval(period);
            // A tick that runs late (a busy worker) is caught up at once, and the ticks
            // after it stay on the original schedule: with `Delay`, every late tick
            // would push all later ones back, stretching every stream's interval (on a
            // saturated core: 10,000 streams at 100 ms had heartbeats 130+ ms apart).
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(ticker) = weak.upgrade() else {
                    return;
                };
                ticker.tick();
            }
        });
        ticker
    }

    /// Whether its task still ticks.
    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, [Bucket; BUCKETS]> {
        lock(&self.buckets)
    }

    fn tick(&self) {
        let mut buckets = self.lock();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let due = std::mem::take(&mut buckets[bucket(epoch)]);
        drop(buckets);
        for waker in due.into_values() {
            waker.wake();
        }
    }

    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Wakes `waker` at tick `due` (at once if it has passed: then `None`), instead
    /// of the waker parked at `old` (due tick, key), if any. Returns its key.
    fn park(&self, old: Option<(u64, usize)>, due: u64, waker: &Waker) -> Option<usize> {
        let mut buckets = self.lock();
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some((at, key)) = old {
            unpark(&mut buckets, epoch, at, key);
        }
        if epoch >= due {
            drop(buckets);
            waker.wake_by_ref();
            return None;
        }
        Some(buckets[bucket(due)].insert(waker.clone()))
    }

    /// Takes the waker parked for tick `due` under `key` out, if that tick has not
    /// come yet.
    fn unpark(&self, due: u64, key: usize) {
        let mut buckets = self.lock();
        let epoch = self.epoch.load(Ordering::Acquire);
        unpark(&mut buckets, epoch, due, key);
    }
}

/// The bucket of tick `due`.
#[inline]
fn bucket(due: u64) -> usize {
    (due % BUCKETS as u64) as usize
}

/// Takes the waker parked for tick `due` under `key` out of `buckets`, unless that
/// tick came (`epoch >= due`: the tick took it, and the key may be another's now).
/// An emptied bucket gives its memory back.
fn unpark(buckets: &mut [Bucket; BUCKETS], epoch: u64, due: u64, key: usize) {
    if epoch >= due {
        return;
    }
    let bucket = &mut buckets[bucket(due)];
    bucket.remove(key);
    if bucket.len() == 0 {
        *bucket = Slab::default();
    }
}

/// One stream's view of a [`Ticker`]. Dropping it takes its parked waker out of the
/// ticker.
#[derive(Debug)]
pub(crate) struct TickerHeartbeat {
    ticker: Arc<Ticker>,
    /// The tick during which the stream last wrote.
    last_write: u64,
    /// Where this stream's waker is parked, if it is.
    parked: Option<Parked>,
}

/// A stream's waker in a ticker bucket.
#[derive(Debug)]
struct Parked {
    /// The tick it is parked for.
    due: u64,
    /// Its key in that tick's bucket.
    key: usize,
    /// The waker (a body polled from another task must be woken there).
    waker: Waker,
}

impl TickerHeartbeat {
    pub(crate) fn new(ticker: Arc<Ticker>) -> Self {
        let last_write = ticker.epoch();
        Self {
            ticker,
            last_write,
            parked: None,
        }
    }

    #[inline]
    pub(crate) fn wrote(&mut self) {
        self.last_write = self.ticker.epoch();
    }

    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let due = self.last_write + QUIET_TICKS;
        let now = self.ticker.epoch();
        if now >= due {
            // The heartbeat goes out at this tick: count it as written at the end of
            // the previous one, so that idle heartbeats come exactly an interval apart.
            // (Served late, after a stall: counted from now, so that the next one is a
            // whole interval away instead of due at once.) The tick took the waker.
            self.last_write = now - 1;
            self.parked = None;
            return Poll::Ready(());
        }
        match &self.parked {
            Some(parked) if parked.due == due && parked.waker.will_wake(cx.waker()) => {}
            _ => {
                let old = self.parked.take().map(|p| (p.due, p.key));
                self.parked = self.ticker.park(old, due, cx.waker()).map(|key| Parked {
                    due,
                    key,
                    waker: cx.waker().clone(),
                });
            }
        }
        Poll::Pending
    }
}

impl Drop for TickerHeartbeat {
    fn drop(&mut self) {
        if let Some(parked) = self.parked.take() {
            self.ticker.unpark(parked.due, parked.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::atomic::AtomicUsize, task::Wake};

    use super::*;

    /// A task's waker that counts its wakes.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wakers parked in all of `ticker`'s buckets.
    fn parked(ticker: &Ticker) -> usize {
        ticker.lock().iter().map(Slab::len).sum()
    }

    /// Lets the ticker's task run until it has ticked `epoch` times.
    async fn until_epoch(ticker: &Ticker, epoch: u64) {
        while ticker.epoch() < epoch {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_then_dropped_stream_leaves_its_bucket_empty() {
        let ticker = Tickers::default().get(Duration::from_secs(86_400));
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let mut stream = TickerHeartbeat::new(ticker.clone());
        assert!(stream
            .poll_due(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(parked(&ticker), 1);
        // `task`, `waker`, the bucket's clone and the stream's own.
        assert_eq!(Arc::strong_count(&task), 4);

        drop(stream);
        assert_eq!(parked(&ticker), 0, "nothing left for the tick a day away");
        assert_eq!(Arc::strong_count(&task), 2, "the task is free at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_polled_from_another_task_is_parked_once() {
        let ticker = Tickers::default().get(Duration::from_secs(86_400));
        let (a, b) = (Arc::new(Task::default()), Arc::new(Task::default()));
        let mut stream = TickerHeartbeat::new(ticker.clone());
        for task in [&a, &b, &a] {
            let waker = Waker::from(task.clone());
            assert!(stream
                .poll_due(&mut Context::from_waker(&waker))
                .is_pending());
            assert_eq!(parked(&ticker), 1);
        }
        assert_eq!(Arc::strong_count(&b), 1, "b's waker left the bucket");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_key_never_takes_out_another_streams_waker() {
        let ticker = Tickers::default().get(Duration::from_millis(80));
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        // `first` parks for tick 9 under key 0 …
        let mut first = TickerHeartbeat::new(ticker.clone());
        assert!(first.poll_due(&mut cx).is_pending());
        until_epoch(&ticker, 10).await;
        assert_eq!(task.0.load(Ordering::Relaxed), 1, "tick 9 woke it");
        // … and `second` for tick 19: the same bucket, the same key.
        let mut second = TickerHeartbeat::new(ticker.clone());
        assert!(second.poll_due(&mut cx).is_pending());
        assert_eq!(parked(&ticker), 1);

        drop(first);
        assert_eq!(parked(&ticker), 1, "second's waker stays");
        until_epoch(&ticker, 19).await;
        assert_eq!(task.0.load(Ordering::Relaxed), 2, "tick 19 woke second");
        assert!(second.poll_due(&mut cx).is_ready());
    }
}
