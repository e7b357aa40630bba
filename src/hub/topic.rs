//! One topic: a bounded history of encoded events, the wakers of its subscribers and,
//! with a backplane, the task filling the history.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex, MutexGuard, OnceLock, Weak,
    },
    task::Waker,
    time::Duration,
};

use bytes::Bytes;
use tokio::{sync::watch, task::AbortHandle, time::Instant};

use super::history::History;
use crate::sync::{self, Slab};

/// One published event, encoded once.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Position in the topic, counted from 0 by this process.
    pub(crate) seq: u64,
    /// The event's `id` on the wire.
    pub(crate) id: Arc<str>,
    pub(crate) bytes: Bytes,
    pub(crate) at: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct TopicState {
    history: VecDeque<Entry>,
    bytes: usize,
    /// The `seq` the next entry gets.
    next_seq: u64,
    /// The subscribers' wakers, by key; `Some` while the subscriber is parked.
    wakers: Slab<Option<Waker>>,
    /// When the parked subscribers were last woken (with a coalescing window).
    last_wake: Option<Instant>,
    /// When the wake scheduled for the end of the current window is due.
    wake_due: Option<Instant>,
}

/// Where a subscriber's cursor stands against the history.
pub(crate) enum Read {
    /// The entry at the cursor.
    Entry(Entry),
    /// The cursor fell behind the history: this many events are gone.
    Lagged(u64),
    /// Nothing new yet.
    Empty,
}

impl TopicState {
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn first_seq(&self) -> u64 {
        self.history.front().map_or(self.next_seq, |e| e.seq)
    }

    pub(crate) fn read(&self, cursor: u64) -> Read {
        let first = self.first_seq();
        if cursor < first {
            return Read::Lagged(first - cursor);
        }
        match usize::try_from(cursor - first)
            .ok()
            .and_then(|i| self.history.get(i))
        {
            Some(entry) => Read::Entry(entry.clone()),
            None => Read::Empty,
        }
    }

    /// The `seq` just after the entry whose id is `id`, if it is in the history.
    pub(crate) fn after_id(&self, id: &str) -> Option<u64> {
        self.history
            .iter()
            .rev()
            .find(|e| &*e.id == id)
            .map(|e| e.seq + 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.history.len()
    }

    /// The entries kept, oldest first.
    pub(crate) fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.history.iter()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Drops entries beyond the limits (and older than the max age).
    ///
    /// The newest entry is never dropped for size: an event larger than the whole
    /// history still reaches the subscribers that keep up (it only expires by age).
    pub(crate) fn prune(&mut self, limits: &History, now: Instant) {
        while let Some(front) = self.history.front() {
            let newest = self.history.len() == 1;
            let too_many = self.history.len() > limits.events;
            let too_big = self.bytes > limits.bytes;
            let too_old = limits
                .age
                .is_some_and(|age| now.saturating_duration_since(front.at) > age);
            if !(too_old || ((too_many || too_big) && !newest)) {
                break;
            }
            self.bytes -= front.bytes.len();
            self.history.pop_front();
        }
    }

    pub(crate) fn register(&mut self) -> usize {
        self.wakers.insert(None)
    }

    pub(crate) fn unregister(&mut self, key: usize) {
        self.wakers.remove(key);
    }

    fn take_wakers(&mut self) -> Vec<Waker> {
        self.wakers.iter_mut().filter_map(Option::take).collect()
    }

    pub(crate) fn park(&mut self, key: usize, waker: &Waker) {
        if let Some(slot) = self.wakers.get_mut(key) {
            match slot {
                Some(old) if old.will_wake(waker) => {}
                _ => *slot = Some(waker.clone()),
            }
        }
    }
}

/// A topic of a [`Hub`](super::Hub).
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: Arc<str>,
    state: Mutex<TopicState>,
    pub(crate) subscribers: AtomicUsize,
    pub(crate) published: AtomicU64,
    pub(crate) lagged: AtomicU64,
    /// Wake the subscribers at most once per this window (zero: on every append).
    coalesce: Duration,
    /// With a backplane: the task filling the history from it (stopped with the topic).
    pub(crate) feed: OnceLock<Feed>,
}

impl Topic {
    pub(crate) fn new(name: Arc<str>, coalesce: Duration) -> Self {
        Self {
            name,
            coalesce,
            state: Mutex::new(TopicState::default()),
            subscribers: AtomicUsize::new(0),
            published: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            feed: OnceLock::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, TopicState> {
        sync::lock(&self.state)
    }

    /// Appends an encoded event and wakes the parked subscribers (now, or at the end of
    /// the coalescing window). `make` gets the entry's `seq` and returns its id and
    /// bytes (so a hub-assigned id can be the seq).
    pub(crate) fn append(
        self: &Arc<Self>,
        limits: &History,
        make: impl FnOnce(u64) -> (Arc<str>, Bytes),
    ) -> (u64, Arc<str>) {
        let now = Instant::now();
        let mut state = self.lock();
        let seq = state.next_seq;
        let (id, bytes) = make(seq);
        state.next_seq += 1;
        state.bytes += bytes.len();
        state.history.push_back(Entry {
            seq,
            id: id.clone(),
            bytes,
            at: now,
        });
        state.prune(limits, now);
        let wake = self.wake_or_schedule(&mut state, now);
        drop(state);
        self.published.fetch_add(1, Relaxed);
        for waker in wake {
            waker.wake();
        }
        (seq, id)
    }

    /// The wakers to wake now. Without a window: all parked ones. With one: all parked
    /// ones if the last wake is a whole window ago (the leading edge: an event after a
    /// quiet spell goes out at once); otherwise none, and one wake is scheduled for
    /// the end of the window, which takes every event appended meanwhile in one go.
    fn wake_or_schedule(self: &Arc<Self>, state: &mut TopicState, now: Instant) -> Vec<Waker> {
        if self.coalesce.is_zero() {
            return state.take_wakers();
        }
        if let Some(due) = state.wake_due {
            // Scheduled and not overdue by a whole window: it takes this event too.
            // (Overdue: its runtime shut down before it ran; wake now instead.)
            if now < due + self.coalesce {
                return Vec::new();
            }
        }
        let due = state.last_wake.map_or(now, |last| last + self.coalesce);
        // Outside a runtime (a publish from a plain thread) there is nothing to
        // schedule on: wake now.
        let runtime = tokio::runtime::Handle::try_current();
        let Some(runtime) = runtime.ok().filter(|_| due > now) else {
            state.last_wake = Some(now);
            state.wake_due = None;
            return state.take_wakers();
        };
        state.wake_due = Some(due);
        runtime.spawn(wake_at(Arc::downgrade(self), due));
        Vec::new()
    }

    /// Whether the topic can be forgotten: no subscriber and no history left.
    pub(crate) fn idle(&self, limits: &History) -> bool {
        if self.subscribers.load(Relaxed) > 0 {
            return false;
        }
        let mut state = self.lock();
        state.prune(limits, Instant::now());
        state.is_empty()
    }
}

/// A task filling a topic's history from elsewhere (with a backplane: its reader);
/// aborted when dropped (with the topic).
#[derive(Debug)]
pub(crate) struct Feed {
    task: AbortHandle,
    /// `true` once the task knows where it starts (or failed to find out).
    ready: watch::Receiver<bool>,
    /// The position the task started from (the first entry it appends comes after
    /// it), once known.
    start: Arc<OnceLock<Arc<str>>>,
}

impl Feed {
    /// The task `task`, which sends `true` to `ready` once it knows where it starts,
    /// and sets `start` to that position.
    pub(crate) fn new(
        task: AbortHandle,
        ready: watch::Receiver<bool>,
        start: Arc<OnceLock<Arc<str>>>,
    ) -> Self {
        Self { task, ready, start }
    }

    /// The position the task started from, once known.
    pub(crate) fn start(&self) -> Option<Arc<str>> {
        self.start.get().cloned()
    }

    /// Resolves once the task knows where it starts (or failed to find out), so that
    /// whatever is published from now on reaches the local history.
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the task is gone: nothing to wait for.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The scheduled end of a coalescing window: wakes the topic's parked subscribers (if
/// the topic still exists).
async fn wake_at(topic: Weak<Topic>, at: Instant) {
    tokio::time::sleep_until(at).await;
    let Some(topic) = topic.upgrade() else {
        return;
    };
    let mut state = topic.lock();
    if state.wake_due != Some(at) {
        return; // overdue, and a publish woke the subscribers instead
    }
    state.wake_due = None;
    state.last_wake = Some(Instant::now());
    let wake = state.take_wakers();
    drop(state);
    for waker in wake {
        waker.wake();
    }
}

/// History limits for tests of the ring itself.
#[cfg(test)]
pub(crate) fn limits(events: usize, bytes: usize, age: Option<std::time::Duration>) -> History {
    History { events, bytes, age }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(topic: &Arc<Topic>, limits: &History, text: &str) -> u64 {
        topic
            .append(limits, |seq| {
                (Arc::from(seq.to_string()), Bytes::from(text.to_owned()))
            })
            .0
    }

    #[tokio::test]
    async fn history_is_bounded_in_events_and_bytes() {
        let topic = Arc::new(Topic::new(Arc::from("t"), Duration::ZERO));
        let by_count = limits(3, usize::MAX, None);
        for i in 0..10 {
            push(&topic, &by_count, &i.to_string());
        }
        assert_eq!(topic.lock().len(), 3);
        assert!(matches!(topic.lock().read(0), Read::Lagged(7)));
        assert!(matches!(topic.lock().read(7), Read::Entry(e) if e.seq == 7));
        assert!(matches!(topic.lock().read(10), Read::Empty));

        let by_bytes = limits(usize::MAX, 25, None);
        let topic = Arc::new(Topic::new(Arc::from("t"), Duration::ZERO));
        for _ in 0..10 {
            push(&topic, &by_bytes, "0123456789");
        }
        assert_eq!(topic.lock().bytes(), 20);
        // An event larger than the whole history is kept, alone, until the next one.
        let big = push(&topic, &by_bytes, &"x".repeat(100));
        assert_eq!(topic.lock().len(), 1);
        assert!(matches!(topic.lock().read(big), Read::Entry(e) if e.seq == big));
    }

    #[tokio::test(start_paused = true)]
    async fn history_expires_by_age() {
        let topic = Arc::new(Topic::new(Arc::from("t"), Duration::ZERO));
        let aged = limits(usize::MAX, usize::MAX, Some(Duration::from_secs(10)));
        push(&topic, &aged, "a");
        tokio::time::advance(Duration::from_secs(11)).await;
        push(&topic, &aged, "b");
        assert_eq!(topic.lock().len(), 1);
        assert_eq!(topic.lock().after_id("1"), Some(2));
        assert_eq!(topic.lock().after_id("0"), None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(topic.idle(&aged));
    }
}
