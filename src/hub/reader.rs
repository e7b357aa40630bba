//! The reader task of a topic with a backplane: it reads the topic's log from where it
//! stopped and appends every record to the local history; after a failure it retries
//! with a growing, jittered delay and reads again after the last record it saw.

use std::{
    cmp::Ordering,
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use tokio::sync::watch;

use super::{
    backplane::Backplane,
    framing,
    history::History,
    topic::{Feed, Topic},
};

/// Starts the reader of `topic`, to be kept in the topic (it stops when dropped).
/// Needs a tokio runtime.
pub(crate) fn spawn(topic: &Arc<Topic>, backplane: Arc<dyn Backplane>, limits: History) -> Feed {
    let (ready_tx, ready) = watch::channel(false);
    let start = Arc::new(OnceLock::new());
    let task = tokio::spawn(read_loop(
        Arc::downgrade(topic),
        topic.name.clone(),
        backplane,
        limits,
        ready_tx,
        start.clone(),
    ));
    Feed::new(task.abort_handle(), ready, start)
}

/// Reads `name` from the backplane into the topic's history until the topic is gone.
async fn read_loop(
    topic: Weak<Topic>,
    name: Arc<str>,
    backplane: Arc<dyn Backplane>,
    limits: History,
    ready: watch::Sender<bool>,
    start: Arc<OnceLock<Arc<str>>>,
) {
    let _release = Release {
        backplane: backplane.clone(),
        topic: name.clone(),
    };
    let mut backoff = Backoff::default();
    let mut after: Option<Arc<str>> = None;
    loop {
        let result = match after.clone() {
            None => backplane.tail(&name).await.map(|tail| {
                // Where this topic's local history starts: a subscriber's position
                // before the first entry (`MultiSubscription` ids).
                let _ = start.set(tail.clone());
                after = Some(tail);
                Vec::new()
            }),
            Some(position) => backplane.read(&name, &position).await,
        };
        ready.send_if_modified(|ready| !std::mem::replace(ready, true));
        let records = match result {
            Ok(records) => {
                if backoff.failures > 0 {
                    tracing::info!(topic = %name, "hub backplane: reading again");
                }
                backoff.failures = 0;
                records
            }
            Err(err) => {
                let delay = backoff.next();
                tracing::warn!(
                    topic = %name, error = %err, retry_in = ?delay,
                    "hub backplane: read failed"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        if records.is_empty() {
            continue;
        }
        let Some(topic) = topic.upgrade() else {
            return;
        };
        for record in records {
            // Strictly after the last one, whatever the backplane sends again.
            if let Some(last) = &after {
                if matches!(
                    backplane.compare_ids(&record.id, last),
                    Some(Ordering::Less | Ordering::Equal)
                ) {
                    continue;
                }
            }
            if let Some(bytes) = framing::frame(&name, &record.id, &record.bytes) {
                topic.append(&limits, |_| (record.id.clone(), bytes));
            }
            after = Some(record.id);
        }
    }
}

/// Tells the backplane when the reader stops (its task ends or is aborted).
struct Release {
    backplane: Arc<dyn Backplane>,
    topic: Arc<str>,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.backplane.release(&self.topic);
    }
}

/// Delays between failed reads: 50 ms doubling up to 2 s, each between half and all of
/// that (jitter, so that many readers do not retry in step).
#[derive(Default)]
pub(crate) struct Backoff {
    pub(crate) failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    pub(crate) fn next(&mut self) -> Duration {
        let full = Self::FIRST
            .saturating_mul(1 << self.failures.min(16))
            .min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        let mut random = RandomState::new().build_hasher();
        random.write_u32(self.failures);
        let fraction = 0.5 + (random.finish() % 1000) as f64 / 2000.0;
        full.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use futures_util::StreamExt as _;
    use tokio::sync::Notify;

    use super::*;
    use crate::{
        hub::{BoxFuture, Hub, Lag, Record, Resume},
        BoxError, Event, LastEventId, Message,
    };

    /// A log per process whose `read` can be held back, to line up the seam.
    #[derive(Default)]
    struct Memory {
        log: Mutex<Vec<Record>>,
        added: Notify,
        /// `read` returns at most this many records in total (None: all).
        deliver_up_to: Mutex<Option<usize>>,
        fail: std::sync::atomic::AtomicBool,
        /// `read` calls so far.
        reads: std::sync::atomic::AtomicUsize,
        /// Topics released, in order.
        released: Mutex<Vec<String>>,
    }

    impl Memory {
        fn after(&self, after: u64, limit: Option<usize>) -> Vec<Record> {
            let log = self.log.lock().unwrap();
            let end = limit.map_or(log.len(), |n| n.min(log.len()));
            log.get(usize::try_from(after).unwrap()..end)
                .map(<[Record]>::to_vec)
                .unwrap_or_default()
        }

        fn release(&self, up_to: Option<usize>) {
            *self.deliver_up_to.lock().unwrap() = up_to;
            self.added.notify_waiters();
        }

        fn failing(&self) -> Result<(), BoxError> {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                Err("down".into())
            } else {
                Ok(())
            }
        }
    }

    impl Backplane for Memory {
        fn publish<'a>(
            &'a self,
            _topic: &'a str,
            event: Bytes,
        ) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
            Box::pin(async move {
                self.failing()?;
                let mut log = self.log.lock().unwrap();
                let id: Arc<str> = (log.len() + 1).to_string().into();
                log.push(Record::new(id.clone(), event));
                drop(log);
                self.added.notify_waiters();
                Ok(id)
            })
        }

        fn tail<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
            Box::pin(async move {
                self.failing()?;
                Ok(self.log.lock().unwrap().len().to_string().into())
            })
        }

        fn read<'a>(
            &'a self,
            _topic: &'a str,
            after: &'a str,
        ) -> BoxFuture<'a, Result<Vec<Record>, BoxError>> {
            Box::pin(async move {
                self.reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let added = self.added.notified();
                self.failing()?;
                let limit = *self.deliver_up_to.lock().unwrap();
                let records = self.after(after.parse()?, limit);
                if records.is_empty() {
                    let _ = tokio::time::timeout(Duration::from_millis(200), added).await;
                }
                Ok(records)
            })
        }

        fn range<'a>(
            &'a self,
            _topic: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<Vec<Record>>, BoxError>> {
            Box::pin(async move {
                self.failing()?;
                let n: usize = id.parse()?;
                let known = n >= 1 && n <= self.log.lock().unwrap().len();
                Ok(known.then(|| self.after(n as u64, None)))
            })
        }

        fn release(&self, topic: &str) {
            self.released.lock().unwrap().push(topic.to_owned());
        }
    }

    /// A backplane shared by several hubs of a test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Memory>);

    impl Backplane for Shared {
        fn publish<'a>(
            &'a self,
            topic: &'a str,
            event: Bytes,
        ) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
            self.0.publish(topic, event)
        }
        fn tail<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
            self.0.tail(topic)
        }
        fn read<'a>(
            &'a self,
            topic: &'a str,
            after: &'a str,
        ) -> BoxFuture<'a, Result<Vec<Record>, BoxError>> {
            self.0.read(topic, after)
        }
        fn range<'a>(
            &'a self,
            topic: &'a str,
            id: &'a str,
        ) -> BoxFuture<'a, Result<Option<Vec<Record>>, BoxError>> {
            self.0.range(topic, id)
        }
        fn release(&self, topic: &str) {
            Backplane::release(&*self.0, topic);
        }
    }

    async fn next_bytes(sub: &mut crate::hub::Subscription) -> Bytes {
        match tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("an event in time")
        {
            Some(Ok(Message::Encoded(encoded))) => encoded.into_bytes(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn publish_goes_through_the_backplane_and_the_reader_delivers() {
        let backplane = Shared::default();
        let a = Hub::with_backplane(backplane.clone(), History::default(), Lag::End);
        let b = Hub::with_backplane(backplane.clone(), History::default(), Lag::End);
        let mut on_b = b.subscribe("t", None).await;
        assert_eq!(on_b.resume(), Resume::Live);
        let first = a
            .publish("t", Event::new().id("mine").unwrap().data("one"))
            .await
            .unwrap();
        assert_eq!(&*first.id, "1");
        // Published through the backplane only: no local topic on A.
        assert!(a.topic_stats("t").is_none());
        assert_eq!(&next_bytes(&mut on_b).await[..], b"id: 1\ndata: one\n\n");
        assert_eq!(b.topic_stats("t").unwrap().published, 1);
        // The reader stops with the last subscriber; the topic is forgotten.
        drop(on_b);
        assert!(b.topic_stats("t").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_reader_stops_when_its_topic_is_dropped() {
        let backplane = Shared::default();
        let hub = Hub::with_backplane(backplane.clone(), History::default(), Lag::End);
        let reads = || backplane.0.reads.load(std::sync::atomic::Ordering::Relaxed);
        let first = hub.subscribe("t", None).await;
        let second = hub.subscribe("t", None).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(first);
        let before = reads();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(reads() > before, "reading while the topic has a subscriber");
        assert!(backplane.0.released.lock().unwrap().is_empty());
        drop(second);
        tokio::time::sleep(Duration::from_millis(1)).await;
        // The backplane hears of it (a Pub/Sub backplane unsubscribes).
        assert_eq!(*backplane.0.released.lock().unwrap(), ["t"]);
        let after = reads();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(reads(), after, "no read once the topic is gone");
    }

    #[tokio::test]
    async fn replay_from_the_backplane_meets_the_local_history_without_duplicates() {
        let backplane = Shared::default();
        let a = Hub::with_backplane(backplane.clone(), History::default(), Lag::End);
        let b = Hub::with_backplane(backplane.clone(), History::new(2, usize::MAX), Lag::End);
        let mut live = b.subscribe("t", None).await;
        for i in 1..=5 {
            a.publish("t", Event::new().data(i.to_string()))
                .await
                .unwrap();
            // Read each one: with a history of 2, a subscriber 2 behind would lag.
            assert!(next_bytes(&mut live)
                .await
                .starts_with(format!("id: {i}\n").as_bytes()));
        }
        // B keeps 4 and 5; the reader gets 6 and 7 only later (held back).
        backplane.0.release(Some(5));
        for i in 6..=7 {
            a.publish("t", Event::new().data(i.to_string()))
                .await
                .unwrap();
        }
        let mut resumed = b.subscribe("t", Some(&LastEventId::new("2"))).await;
        assert_eq!(resumed.resume(), Resume::Replay { missed: 5 });
        backplane.0.release(None);
        a.publish("t", Event::new().data("8")).await.unwrap();
        // B's history (2 events) dropped 6 while `resumed` was reading the replay:
        // replayed already, so not lost.
        for i in 3..=8 {
            let bytes = next_bytes(&mut resumed).await;
            assert_eq!(bytes, Bytes::from(format!("id: {i}\ndata: {i}\n\n")));
        }
        // In the local history: replayed from there.
        let local = b.subscribe("t", Some(&LastEventId::new("7"))).await;
        assert_eq!(local.resume(), Resume::Replay { missed: 1 });
        let unknown = b.subscribe("t", Some(&LastEventId::new("99"))).await;
        assert_eq!(unknown.resume(), Resume::Unknown);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_backplane_fails_publish_and_the_reader_retries() {
        let backplane = Shared::default();
        let hub = Hub::with_backplane(backplane.clone(), History::default(), Lag::End);
        let mut sub = hub.subscribe("t", None).await;
        backplane
            .0
            .fail
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(hub.publish("t", Event::new().data("x")).await.is_err());
        let late = hub.subscribe("t", Some(&LastEventId::new("1"))).await;
        assert_eq!(late.resume(), Resume::Unknown);
        tokio::time::sleep(Duration::from_secs(10)).await;
        backplane
            .0
            .fail
            .store(false, std::sync::atomic::Ordering::Relaxed);
        hub.publish("t", Event::new().data("y")).await.unwrap();
        assert_eq!(&next_bytes(&mut sub).await[..], b"id: 1\ndata: y\n\n");
    }

    #[test]
    fn backoff_grows_with_jitter_up_to_the_max() {
        let mut backoff = Backoff::default();
        let first = backoff.next();
        assert!(first >= Backoff::FIRST / 2 && first <= Backoff::FIRST);
        for _ in 0..20 {
            let delay = backoff.next();
            assert!(delay <= Backoff::MAX);
        }
        assert!(backoff.next() >= Backoff::MAX / 2);
    }
}
