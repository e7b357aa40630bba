//! The seam between a [`Hub`](super::Hub) and other instances: a [`Backplane`] is a
//! shared, ordered, trimmed log per topic (Redis Streams with
//! [`RedisBackplane`](super::RedisBackplane), feature `redis`; NATS JetStream or Kafka
//! could follow).
//!
//! With a backplane, [`Hub::publish`](super::Hub::publish) appends the encoded event
//! (without an `id` line) to the backplane, which gives it its id. Each instance runs
//! one reader task per topic that has local subscribers: it reads the log from where it
//! stopped and appends every record to the local history as `id: <id>\n` + the stored
//! bytes, encoded once per instance; local subscribers read it there like any event.
//! The reader starts with a topic's first local subscriber and stops when its last one
//! is gone. When the backplane fails, the reader retries with a growing, jittered delay
//! (50 ms up to 2 s) and resumes after the last record it saw, so nothing that reached
//! the backplane meanwhile is lost.
//!
//! A client that reconnects with an id that is not in the local history (it was seen
//! on another instance, or before this instance subscribed) gets the records after it
//! from [`Backplane::range`] first, then the local history from the first entry after
//! the last replayed one: no duplicate and no gap across the seam.

use std::{
    cmp::Ordering,
    collections::hash_map::RandomState,
    future::Future,
    hash::{BuildHasher, Hasher},
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::{sync::watch, task::AbortHandle};

use super::{topic::Topic, History};
use crate::{BoxError, Event};

/// A boxed, `Send` future: what [`Backplane`] methods return.
///
/// ```
/// use tower_sse::hub::BoxFuture;
/// let answer: BoxFuture<'static, u32> = Box::pin(async { 42 });
/// # let _ = answer;
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One event in a backplane's log: the id the backplane gave it and the bytes it
/// stores (one encoded event block **without** an `id` line).
///
/// ```
/// use tower_sse::hub::Record;
/// let record = Record::new("1718000000000-0", "data: hi\n\n");
/// assert_eq!(&*record.id, "1718000000000-0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's id in the log; sent to clients as the event's `id`.
    pub id: Arc<str>,
    /// The encoded event, without an `id` line, ending with its blank line.
    pub bytes: Bytes,
}

impl Record {
    /// A record from its id and stored bytes.
    ///
    /// ```
    /// let record = tower_sse::hub::Record::new("7", bytes::Bytes::from_static(b"data: x\n\n"));
    /// assert_eq!(&record.bytes[..], b"data: x\n\n");
    /// ```
    pub fn new(id: impl Into<Arc<str>>, bytes: impl Into<Bytes>) -> Self {
        Self {
            id: id.into(),
            bytes: bytes.into(),
        }
    }
}

/// A shared log per topic that lets several [`Hub`](super::Hub)s (instances) serve the
/// same topics: it orders the events, gives them their ids and keeps a bounded history
/// for replay. See the [module docs](self) for how the hub uses it.
///
/// Implementations must bound every future they return (a timeout): a hub awaits
/// [`publish`](Self::publish) in `Hub::publish`, [`tail`](Self::tail) and
/// [`range`](Self::range) in `Hub::subscribe`.
///
/// # Example
///
/// An in-memory backplane (one process; a real one talks to a server):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use tokio::sync::Notify;
/// use tower_sse::{hub::{Backplane, BoxFuture, History, Hub, Lag, Record}, BoxError, Event};
///
/// #[derive(Default)]
/// struct Memory { log: Mutex<Vec<(String, Record)>>, added: Notify }
///
/// impl Memory {
///     fn after(&self, topic: &str, after: u64) -> Vec<Record> {
///         let log = self.log.lock().unwrap();
///         log.iter().enumerate()
///             .filter(|(i, (t, _))| t == topic && *i as u64 + 1 > after)
///             .map(|(_, (_, r))| r.clone())
///             .collect()
///     }
/// }
///
/// impl Backplane for Memory {
///     fn publish<'a>(&'a self, topic: &'a str, event: Bytes) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
///         Box::pin(async move {
///             let mut log = self.log.lock().unwrap();
///             let id: Arc<str> = (log.len() as u64 + 1).to_string().into();
///             log.push((topic.to_owned(), Record::new(id.clone(), event)));
///             self.added.notify_waiters();
///             Ok(id)
///         })
///     }
///     fn tail<'a>(&'a self, _topic: &'a str) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
///         Box::pin(async move { Ok(self.log.lock().unwrap().len().to_string().into()) })
///     }
///     fn read<'a>(&'a self, topic: &'a str, after: &'a str) -> BoxFuture<'a, Result<Vec<Record>, BoxError>> {
///         Box::pin(async move {
///             let after: u64 = after.parse()?;
///             let added = self.added.notified();
///             let records = self.after(topic, after);
///             if records.is_empty() {
///                 let _ = tokio::time::timeout(std::time::Duration::from_secs(1), added).await;
///             }
///             Ok(records)
///         })
///     }
///     fn range<'a>(&'a self, topic: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<Vec<Record>>, BoxError>> {
///         Box::pin(async move {
///             let Ok(after) = id.parse::<u64>() else { return Ok(None) };
///             let known = self.log.lock().unwrap().get((after as usize).wrapping_sub(1))
///                 .is_some_and(|(t, _)| t == topic);
///             Ok(known.then(|| self.after(topic, after)))
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_sse::hub::HubError> {
/// let hub = Hub::with_backplane(Memory::default(), History::default(), Lag::End);
/// let published = hub.publish("news", Event::new().data("hello")).await?;
/// assert_eq!(&*published.id, "1");
/// # Ok(())
/// # }
/// ```
pub trait Backplane: Send + Sync + 'static {
    /// Appends `event` (one encoded event block without an `id` line) to the log of
    /// `topic` and resolves to the id the backplane gave it.
    ///
    /// # Errors
    ///
    /// When the backplane cannot be reached in time; `Hub::publish` returns it as a
    /// [`HubError`](super::HubError).
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Bytes,
    ) -> BoxFuture<'a, Result<Arc<str>, BoxError>>;

    /// The position of the end of `topic`'s log: [`read`](Self::read) from it returns
    /// exactly the records appended after this call (for an empty or unknown topic,
    /// the position before any record). A reader starts there.
    ///
    /// # Errors
    ///
    /// When the backplane cannot be reached in time (the reader retries).
    fn tail<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Arc<str>, BoxError>>;

    /// The records of `topic` after position `after` (a record's id or a
    /// [`tail`](Self::tail)), oldest first. When there are none yet it waits a while
    /// (a long poll, a few seconds) and may then resolve to an empty batch.
    ///
    /// # Errors
    ///
    /// When the backplane cannot be reached (the reader retries with a growing delay
    /// and reads again from the last record it saw).
    fn read<'a>(
        &'a self,
        topic: &'a str,
        after: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, BoxError>>;

    /// If the record `id` is still in the log of `topic`: the records after it, oldest
    /// first. `None` if it is not (trimmed away, never existed, not an id of this
    /// backplane): the client has missed an unknown number of events.
    ///
    /// # Errors
    ///
    /// When the backplane cannot be reached in time (the subscription then starts
    /// with [`Resume::Unknown`](super::Resume::Unknown)).
    fn range<'a>(
        &'a self,
        topic: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Record>>, BoxError>>;

    /// The order of two ids of this backplane, `None` if either is not one. The hub
    /// uses it to skip, in the local history, what a replay already delivered.
    ///
    /// The default compares ids made of unsigned decimal numbers separated by `-`,
    /// number by number: Redis stream ids (`1718000000000-3`) as well as plain
    /// sequence numbers or offsets (`42`).
    ///
    /// ```
    /// use std::cmp::Ordering;
    /// use tower_sse::hub::Backplane;
    /// # fn check(backplane: &dyn Backplane) {
    /// assert_eq!(backplane.compare_ids("1718000000000-10", "1718000000000-9"), Some(Ordering::Greater));
    /// assert_eq!(backplane.compare_ids("2-0", "10-0"), Some(Ordering::Less));
    /// assert_eq!(backplane.compare_ids("x", "1-0"), None);
    /// # }
    /// ```
    fn compare_ids(&self, a: &str, b: &str) -> Option<Ordering> {
        let (mut a, mut b) = (a.split('-'), b.split('-'));
        loop {
            match (a.next(), b.next()) {
                (None, None) => return Some(Ordering::Equal),
                (Some(x), Some(y)) => match number(x)?.cmp(&number(y)?) {
                    Ordering::Equal => {}
                    unequal => return Some(unequal),
                },
                (Some(x), None) => return number(x).map(|_| Ordering::Greater),
                (None, Some(y)) => return number(y).map(|_| Ordering::Less),
            }
        }
    }
}

/// A decimal number, digits only.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `event` encoded without its `id` line (the backplane gives the id).
pub(crate) fn encode_without_id(event: &Event) -> Bytes {
    let mut buf = BytesMut::with_capacity(event.encoded_len());
    event.encode_to(&mut buf);
    if event.id_str().is_some() {
        // The encoder writes comment lines (`:`), then the id line, then the rest.
        let mut start = 0;
        while buf.get(start) == Some(&b':') {
            match memchr::memchr(b'\n', &buf[start..]) {
                Some(end) => start += end + 1,
                None => break,
            }
        }
        if buf[start..].starts_with(b"id") {
            if let Some(end) = memchr::memchr(b'\n', &buf[start..]) {
                let rest = buf.split_off(start + end + 1);
                buf.truncate(start);
                buf.unsplit(rest);
            }
        }
    }
    buf.freeze()
}

/// Whether `bytes` is one event block as the encoder writes it, without an `id` line:
/// lines ending with `\n`, no `\r`, no blank line but the last one. Anything else in a
/// backplane (written by something else) could break the framing of every stream.
fn is_block_without_id(bytes: &[u8]) -> bool {
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return false;
    };
    if memchr::memchr(b'\r', bytes).is_some() {
        return false;
    }
    if body.is_empty() {
        return true;
    }
    let Some(lines) = body.strip_suffix(b"\n") else {
        return false;
    };
    lines
        .split(|&b| b == b'\n')
        .all(|line| !line.is_empty() && line != b"id" && !line.starts_with(b"id:"))
}

/// `record` as it goes on the wire: `id: <id>\n` + the stored bytes; `None` (and a
/// warning) for a record that is not a well-formed event or whose id cannot be sent.
pub(crate) fn frame(topic: &str, record: &Record) -> Option<Bytes> {
    let id = record.id.as_bytes();
    if id.is_empty() || memchr::memchr3(b'\n', b'\r', b'\0', id).is_some() {
        tracing::warn!(
            topic,
            "hub backplane: record with an id that cannot be sent, skipped"
        );
        return None;
    }
    if !is_block_without_id(&record.bytes) {
        tracing::warn!(topic, id = %record.id, "hub backplane: record is not an event block, skipped");
        return None;
    }
    let mut buf = BytesMut::with_capacity(5 + id.len() + record.bytes.len());
    buf.extend_from_slice(b"id: ");
    buf.extend_from_slice(id);
    buf.extend_from_slice(b"\n");
    buf.extend_from_slice(&record.bytes);
    Some(buf.freeze())
}

/// The reader task of one topic on this instance; aborted when dropped (with the
/// topic).
#[derive(Debug)]
pub(crate) struct Reader {
    task: AbortHandle,
    /// `true` once the reader has tried to find where to start.
    ready: watch::Receiver<bool>,
}

impl Reader {
    /// Starts the reader of `topic`. Needs a tokio runtime.
    pub(crate) fn spawn(
        topic: &Arc<Topic>,
        backplane: Arc<dyn Backplane>,
        limits: History,
    ) -> Self {
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(read_loop(
            Arc::downgrade(topic),
            topic.name.clone(),
            backplane,
            limits,
            ready_tx,
        ));
        Self {
            task: task.abort_handle(),
            ready,
        }
    }

    /// Resolves once the reader knows where it starts (or failed to find out), so that
    /// whatever is published from now on reaches the local history.
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.clone();
        // An error means the task is gone: nothing to wait for.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads `name` from the backplane into the topic's history until the topic is gone.
async fn read_loop(
    topic: Weak<Topic>,
    name: Arc<str>,
    backplane: Arc<dyn Backplane>,
    limits: History,
    ready: watch::Sender<bool>,
) {
    let mut backoff = Backoff::default();
    let mut after: Option<Arc<str>> = None;
    loop {
        let result = match after.clone() {
            None => backplane.tail(&name).await.map(|tail| {
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
            if let Some(bytes) = frame(&name, &record) {
                topic.append(&limits, |_| (record.id.clone(), bytes));
            }
            after = Some(record.id);
        }
    }
}

/// Delays between failed reads: 50 ms doubling up to 2 s, each between half and all of
/// that (jitter, so that many readers do not retry in step).
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    fn next(&mut self) -> Duration {
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

    use futures_util::StreamExt as _;
    use tokio::sync::Notify;

    use super::*;
    use crate::{
        hub::{Hub, Lag, Resume},
        LastEventId, Message,
    };

    /// A log per process whose `read` can be held back, to line up the seam.
    #[derive(Default)]
    struct Memory {
        log: Mutex<Vec<Record>>,
        added: Notify,
        /// `read` returns at most this many records in total (None: all).
        deliver_up_to: Mutex<Option<usize>>,
        fail: std::sync::atomic::AtomicBool,
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

    #[test]
    fn id_line_is_removed_from_the_encoding() {
        let event = Event::new()
            .comment("c1\nc2")
            .id("5")
            .unwrap()
            .event("e")
            .unwrap()
            .data("id: 9");
        assert_eq!(
            &encode_without_id(&event)[..],
            b": c1\n: c2\nevent: e\ndata: id: 9\n\n"
        );
        let empty_id = Event::new().id("").unwrap().data("x");
        assert_eq!(&encode_without_id(&empty_id)[..], b"data: x\n\n");
        assert_eq!(&encode_without_id(&Event::new())[..], b"\n");
    }

    #[test]
    fn only_event_blocks_without_ids_are_framed() {
        for good in [
            &b"\n"[..],
            b"data: x\n\n",
            b": c\nevent: e\ndata: a\ndata: b\n\n",
        ] {
            assert!(is_block_without_id(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"data: x\n",
            b"data: x",
            b"data: x\n\ndata: y\n\n",
            b"data: x\r\n\n",
            b"id: 1\ndata: x\n\n",
            b"id\n\n",
            b"\n\n",
        ] {
            assert!(!is_block_without_id(bad), "{bad:?}");
        }
        let record = Record::new("1-2", "data: x\n\n");
        assert_eq!(&frame("t", &record).unwrap()[..], b"id: 1-2\ndata: x\n\n");
        assert!(frame("t", &Record::new("1\n", "data: x\n\n")).is_none());
    }

    #[test]
    fn ids_compare_as_numbers() {
        let m = Memory::default();
        assert_eq!(m.compare_ids("10-0", "9-5"), Some(Ordering::Greater));
        assert_eq!(m.compare_ids("10-0", "10-0"), Some(Ordering::Equal));
        assert_eq!(m.compare_ids("10-1", "10-10"), Some(Ordering::Less));
        assert_eq!(m.compare_ids("10", "10-0"), Some(Ordering::Less));
        assert_eq!(m.compare_ids("-1", "1"), None);
        assert_eq!(m.compare_ids("+1", "1"), None);
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
