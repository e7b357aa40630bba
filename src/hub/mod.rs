//! Fan-out hub (feature `hub`): publish once, deliver to every subscriber, replay on
//! reconnect.
//!
//! A [`Hub`] holds topics. [`Hub::publish`] encodes an event **once** and appends the
//! bytes to the topic's bounded [`History`]; every subscriber reads the same `Bytes`
//! (a reference-count increment, no copy, no per-subscriber encoding). A
//! [`Subscription`] is a stream with a cursor into the history: it holds no queue of
//! its own, so a slow subscriber costs a cursor, never memory, and never blocks the
//! publisher or the other subscribers. Put it behind an
//! [`SseLayer`](crate::SseLayer): the layer's buffer and overflow policy apply to it
//! like to any source.
//!
//! **Replay.** Ids are assigned by the hub (`0`, `1`, `2`, … per topic) unless the
//! published event has its own. A client that reconnects with `Last-Event-ID` gets
//! the events it missed from the history, in order, then the live stream, with no
//! duplicate and no gap across the seam. If the id is no longer (or never was) in
//! the history, [`Subscription::resume`] says so and the handler can send a full
//! refresh first.
//!
//! **Lag.** A subscriber that falls behind the whole history has lost events. That is
//! never silent: by default ([`Lag::End`]) its stream ends, the browser reconnects with
//! its `Last-Event-ID` and the handler sees [`Resume::Unknown`]; with
//! [`Lag::Event`] it gets an event carrying the number of lost events and goes on.
//! Either way [`TopicStats::lagged`] counts it.
//!
//! ```
//! use std::convert::Infallible;
//! use tower_sse::{hub::{Hub, Resume}, Event, LastEventId, SseResponse};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_sse::hub::HubError> {
//! let hub = Hub::new();
//! hub.publish("prices", Event::new().data("100")).await?; // id 0
//! hub.publish("prices", Event::new().data("101")).await?; // id 1
//!
//! // A client that saw id 0 reconnects: it gets id 1, then what comes next.
//! let sub = hub.subscribe("prices", Some(&LastEventId::new("0"))).await;
//! assert_eq!(sub.resume(), Resume::Replay { missed: 1 });
//! let response = SseResponse::new(sub); // behind an SseLayer
//! # let _ = response;
//! # Ok(())
//! # }
//! ```

mod subscription;
mod topic;

use std::{
    collections::HashMap,
    fmt,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use bytes::BytesMut;

pub use self::subscription::{Resume, Subscription};
use self::topic::Topic;
use crate::{Event, LastEventId};

/// How much of each topic the hub keeps for replay: at most `events` events and
/// `bytes` bytes, and, if set, none older than `age`. Default: 1024 events, 4 MiB,
/// no age limit.
///
/// ```
/// use std::time::Duration;
/// let history = tower_sse::hub::History::new(10_000, 16 << 20).max_age(Duration::from_secs(300));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub(crate) events: usize,
    pub(crate) bytes: usize,
    pub(crate) age: Option<Duration>,
}

impl History {
    /// At most `events` events and `bytes` encoded bytes per topic (at least 1 each).
    pub const fn new(events: usize, bytes: usize) -> Self {
        Self {
            events: if events == 0 { 1 } else { events },
            bytes: if bytes == 0 { 1 } else { bytes },
            age: None,
        }
    }

    /// Drops events older than `age` too. A topic with no subscriber and no history
    /// left is forgotten.
    pub const fn max_age(mut self, age: Duration) -> Self {
        self.age = Some(age);
        self
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new(1024, 4 << 20)
    }
}

/// What a subscriber that fell behind the whole history gets; see the
/// [module docs](self).
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Lag {
    /// Its stream ends; the client reconnects with `Last-Event-ID` and resyncs.
    #[default]
    End,
    /// It receives `f(lost)` and goes on from the oldest event still kept.
    Event(Arc<dyn Fn(u64) -> Event + Send + Sync>),
}

impl Lag {
    /// [`Lag::Event`] from a closure.
    ///
    /// ```
    /// use tower_sse::{hub::Lag, Event};
    /// let lag = Lag::event(|lost| Event::new().comment(format!("lost {lost}")));
    /// ```
    pub fn event(f: impl Fn(u64) -> Event + Send + Sync + 'static) -> Self {
        Self::Event(Arc::new(f))
    }
}

impl fmt::Debug for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::End => "Lag::End",
            Self::Event(_) => "Lag::Event(..)",
        })
    }
}

/// Publishing failed (only with a backplane that can fail).
#[derive(Debug)]
pub struct HubError {
    source: crate::BoxError,
}

impl HubError {
    #[allow(dead_code)] // for backplanes that can fail
    pub(crate) fn new(source: impl Into<crate::BoxError>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hub publish failed: {}", self.source)
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The id and position an event got when it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The `id` sent to clients.
    pub id: Arc<str>,
    /// The event's position in the topic in this process (0, 1, 2, …).
    pub seq: u64,
}

/// Counters of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Subscriptions open now.
    pub subscribers: usize,
    /// Events published to the topic.
    pub published: u64,
    /// Times a subscriber fell behind the whole history.
    pub lagged: u64,
    /// Events kept for replay.
    pub history_events: usize,
    /// Bytes kept for replay.
    pub history_bytes: usize,
}

/// A set of topics; cheap to clone (clones share the topics). See the
/// [module docs](self).
#[derive(Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Default)]
pub(crate) struct Inner {
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    pub(crate) history: History,
    pub(crate) lag: Lag,
}

impl Inner {
    fn topics(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.topics();
        if let Some(topic) = topics.get(name) {
            return topic.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let topic = Arc::new(Topic::new(name.clone()));
        topics.insert(name, topic.clone());
        topic
    }

    /// Forgets `topic` if nobody uses it any more.
    pub(crate) fn release(&self, topic: &Arc<Topic>) {
        let mut topics = self.topics();
        if topic.idle(&self.history) {
            if let Some(current) = topics.get(&topic.name) {
                if Arc::ptr_eq(current, topic) {
                    topics.remove(&topic.name);
                }
            }
        }
    }
}

impl Hub {
    /// An in-process hub with the default [`History`] and [`Lag::End`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A hub keeping `history` per topic.
    ///
    /// ```
    /// use tower_sse::hub::{History, Hub, Lag};
    /// let hub = Hub::with_history(History::new(100, 1 << 20));
    /// ```
    pub fn with_history(history: History) -> Self {
        Self::with(history, Lag::End)
    }

    /// A hub keeping `history` per topic, treating laggards with `lag`.
    pub fn with(history: History, lag: Lag) -> Self {
        Self {
            inner: Arc::new(Inner {
                topics: Mutex::default(),
                history,
                lag,
            }),
        }
    }

    /// Encodes `event` once and delivers it to every subscriber of `topic` (creating
    /// the topic if needed). Without an id, the event gets the next number of the
    /// topic as its id.
    ///
    /// # Errors
    ///
    /// Never for the in-process hub; a backplane returns its failures.
    pub async fn publish(&self, topic: &str, event: Event) -> Result<Published, HubError> {
        Ok(self.publish_local(topic, event))
    }

    fn publish_local(&self, topic: &str, event: Event) -> Published {
        let topic = self.inner.topic(topic);
        let (seq, id) = topic.append(&self.inner.history, |seq| {
            let (id, event) = match event.id_str() {
                Some(id) => (Arc::from(id), event),
                // Digits never contain a line break, so `id` cannot fail.
                None => {
                    let id = seq.to_string();
                    (
                        Arc::from(id.as_str()),
                        event.clone().id(id).unwrap_or(event),
                    )
                }
            };
            let mut buf = BytesMut::with_capacity(event.encoded_len());
            event.encode_to(&mut buf);
            (id, buf.freeze())
        });
        Published { id, seq }
    }

    /// Subscribes to `topic`: the events after `last_event_id` still in the history,
    /// then every new event. Without an id, only new events. (Asynchronous because a
    /// backplane may fetch the missed events from elsewhere.)
    pub async fn subscribe(
        &self,
        topic: &str,
        last_event_id: Option<&LastEventId>,
    ) -> Subscription {
        Subscription::new(self.inner.clone(), self.inner.topic(topic), last_event_id)
    }

    /// The counters of `topic`, if it exists.
    pub fn topic_stats(&self, topic: &str) -> Option<TopicStats> {
        let topic = self.inner.topics().get(topic)?.clone();
        let state = topic.lock();
        Some(TopicStats {
            subscribers: topic.subscribers.load(Relaxed),
            published: topic.published.load(Relaxed),
            lagged: topic.lagged.load(Relaxed),
            history_events: state.len(),
            history_bytes: state.bytes(),
        })
    }

    /// The names of the topics that exist now.
    pub fn topics(&self) -> Vec<String> {
        self.inner.topics().keys().map(|k| k.to_string()).collect()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("history", &self.inner.history)
            .field("lag", &self.inner.lag)
            .field("topics", &self.inner.topics().len())
            .finish()
    }
}
