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
//! A reader task is cheap (it waits in [`Backplane::read`]); what a read costs the
//! backplane is the backplane's business: [`RedisBackplane`](super::RedisBackplane)
//! serves every topic of an instance from one Pub/Sub connection per Redis node.
//! The reader starts with a topic's first local subscriber and stops when its last one
//! is gone ([`Backplane::release`] then tells the backplane). When the backplane fails, the reader retries with a growing, jittered delay
//! (50 ms up to 2 s) and resumes after the last record it saw, so nothing that reached
//! the backplane meanwhile is lost.
//!
//! A client that reconnects with an id that is not in the local history (it was seen
//! on another instance, or before this instance subscribed) gets the records after it
//! from [`Backplane::range`] first, then the local history from the first entry after
//! the last replayed one: no duplicate and no gap across the seam.

use std::{cmp::Ordering, future::Future, pin::Pin, sync::Arc};

use bytes::Bytes;

use super::framing;
use crate::BoxError;

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

    /// The hub stopped reading `topic` (its last local subscriber left): a backplane
    /// that holds something per topic for [`read`](Self::read) (a Pub/Sub
    /// subscription) lets it go. A later `read` of the topic starts again. The
    /// default does nothing.
    ///
    /// ```
    /// use tower_sse::hub::Backplane;
    /// # fn check(backplane: &dyn Backplane) {
    /// backplane.release("news"); // nothing to let go by default
    /// # }
    /// ```
    fn release(&self, topic: &str) {
        let _ = topic;
    }

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
        framing::compare_ids(a, b)
    }
}
