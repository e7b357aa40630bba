//! The shared-ticker heartbeat design ([`Heartbeat::shared_ticker`](super::Heartbeat::shared_ticker)).
//!
//! One task per layer and interval ticks eight times per interval and wakes only the
//! streams whose heartbeat falls due at that tick. A stream has no timer of its own:
//! writing records the current tick number (one atomic load per body frame), and an
//! idle stream parks its waker in the bucket of the tick at which it is due.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use crate::sync::lock;

/// Ticks per interval: a heartbeat is at most 1/8 interval late.
const TICKS_PER_INTERVAL: u32 = 8;
/// Ticks between a write and the heartbeat: the stream has then been silent for more
/// than one interval (and at most 9/8).
const QUIET_TICKS: u64 = TICKS_PER_INTERVAL as u64 + 1;
/// Due ticks lie at most `QUIET_TICKS` ahead.
const BUCKETS: usize = QUIET_TICKS as usize + 1;

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
    buckets: Mutex<[Vec<Waker>; BUCKETS]>,
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

    fn lock(&self) -> MutexGuard<'_, [Vec<Waker>; BUCKETS]> {
        lock(&self.buckets)
    }

    fn tick(&self) {
        let mut buckets = self.lock();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        let due = std::mem::take(&mut buckets[(epoch % BUCKETS as u64) as usize]);
        drop(buckets);
        for waker in due {
            waker.wake();
        }
    }

    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Wakes `waker` at tick `due` (at once if it has passed).
    fn park(&self, due: u64, waker: &Waker) {
        let mut buckets = self.lock();
        if self.epoch.load(Ordering::Acquire) >= due {
            drop(buckets);
            waker.wake_by_ref();
            return;
        }
        buckets[(due % BUCKETS as u64) as usize].push(waker.clone());
    }
}

/// One stream's view of a [`Ticker`].
#[derive(Debug)]
pub(crate) struct TickerHeartbeat {
    ticker: Arc<Ticker>,
    /// The tick during which the stream last wrote.
    last_write: u64,
    /// The tick this stream's waker is parked for, and that waker (a body polled from
    /// another task must be woken there).
    parked: Option<(u64, Waker)>,
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
            // whole interval away instead of due at once.)
            self.last_write = now - 1;
            self.parked = None;
            return Poll::Ready(());
        }
        match &self.parked {
            Some((at, waker)) if *at == due && waker.will_wake(cx.waker()) => {}
            _ => {
                self.ticker.park(due, cx.waker());
                self.parked = Some((due, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}
