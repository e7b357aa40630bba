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
//! Hub-assigned ids are positions in this process's topic: they start again at `0`
//! when the process restarts or a forgotten topic is created again, and an id from
//! before then would resume at the wrong place. Where clients outlive the process,
//! publish events with ids of your own that never repeat (an epoch prefix, a database
//! sequence), or use the Redis backplane, whose ids are global and time-ordered.
//!
//! **Lag.** A subscriber that falls behind the whole history has lost events. That is
//! never silent: by default ([`Lag::End`]) its stream ends, the browser reconnects with
//! its `Last-Event-ID` and the handler sees [`Resume::Unknown`]; with
//! [`Lag::Event`] it gets an event carrying the number of lost events and goes on.
//! Either way [`TopicStats::lagged`] counts it.
//!
//! **Busy topics.** Every publish wakes the topic's waiting subscribers, and each
//! wake-up ends in a socket write. A subscriber that was not polled in between reads
//! all the events that arrived since in one go (one frame), but on a topic publishing
//! hundreds of events per second to thousands of subscribers the wake-ups and writes
//! dominate. [`Hub::coalesce`] bounds them to one per subscriber per window, at the
//! price of up to that window of latency on a busy topic (none on a quiet one).
//!
//! **Many topics.** One topic per user is cheap: a topic with one subscriber and no
//! history costs about 416 bytes of heap (plus the 104-byte [`Subscription`] its
//! response holds), measured over 100,000 topics; publish and subscribe do the same
//! work at 1,000 and at 100,000 topics (BENCHMARKS.md, "Many topics in one hub").
//! Topics nobody uses any more (no subscriber, history expired) are forgotten by a
//! sweep that runs once per as many topic lookups as there are topics, so it costs
//! each lookup O(1) amortized and idle topics never pile up.
//!
//! **Several topics on one stream.** [`Hub::subscribe_many`] gives a
//! [`MultiSubscription`]: up to 64 topics merged round-robin, each event named after
//! its topic (`event: <topic>`), with one id that holds the position in every topic
//! (at most [`MultiSubscription::MAX_ID_LEN`] bytes). With that id as `Last-Event-ID`,
//! every topic resumes as [`Hub::subscribe`] resumes one: exactly, in process and with
//! a backplane. Single-topic subscriptions and their ids are unchanged.
//!
//! **Several instances.** With a [`Backplane`] ([`Hub::with_backplane`], or
//! [`Hub::redis`] with feature `redis`), publishers and subscribers may sit on
//! different instances: the backplane orders the events and gives them their ids, and
//! a client may reconnect to any instance with its `Last-Event-ID`. See
//! [`Backplane`](backplane) for how it works.
//!
//! With Redis ([`RedisBackplane`], feature `redis`), what a deployment can count on:
//!
//! - **Connections**: two per Redis node and instance, whatever the number of topics
//!   (one multiplexed command connection, one Pub/Sub connection carrying every topic
//!   with local subscribers). A topic's first local subscriber subscribes its channel,
//!   its last one leaving unsubscribes it: topics come and go without connecting. On a
//!   Redis Cluster ([`RedisBackplane::cluster`]) topics spread over the masters by the
//!   slot of their key (the topic is its hash tag), with sharded Pub/Sub, still two
//!   connections per master.
//! - **Ordering**: per topic. One Redis stream orders a topic's events and gives their
//!   ids; every instance delivers them in that order. Events of different topics have
//!   no order between them (on a cluster they live on different masters).
//! - **Exactly once and resume**: an instance subscribes a topic's channel, then reads
//!   the stream after its last id, then takes live messages newer than what it read:
//!   no event is lost or repeated across that seam, nor across a lost Pub/Sub
//!   connection or a Redis restart (it subscribes again and reads the stream after its
//!   last id). A client reconnecting to any instance with its `Last-Event-ID` resumes
//!   exactly.
//! - **Limits**: a resume is exact only within the stream's history
//!   ([`RedisBackplane::max_len`], about `History::events`); past it the subscription
//!   says [`Resume::Unknown`]. A Redis restarted without persistence has lost its
//!   streams: live streams go on with what is published after it, a client resuming
//!   from an id before it gets `Resume::Unknown` (unless the instance still holds it
//!   in its own history). While Redis (or a topic's master) is down, `publish` fails
//!   within the backplane's timeout and streams stay open, waiting. A cluster failover
//!   to a replica loses the writes the replica had not received (Redis replication is
//!   asynchronous): those events never reach anyone.
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

pub mod backplane;
mod cursor;
pub(crate) mod framing;
mod history;
mod multi;
mod reader;
#[cfg(feature = "redis")]
mod redis;
mod subscription;
mod topic;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use bytes::BytesMut;

pub use self::backplane::{Backplane, BoxFuture, Record};
pub use self::history::History;
pub use self::multi::{MultiSubscription, TopicsError};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisBackplane;
pub use self::subscription::{Resume, Subscription};
use self::topic::Topic;
use crate::{sync, Event, LastEventId};

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
///
/// ```
/// # async fn publish(hub: tower_sse::hub::Hub) {
/// if let Err(err) = hub.publish("news", tower_sse::Event::new().data("x")).await {
///     eprintln!("not published: {err}"); // e.g. Redis unreachable
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct HubError {
    source: crate::BoxError,
}

impl HubError {
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
    /// The event's position in the topic in this process (0, 1, 2, …). With a
    /// backplane, whose reader places the event in the local history later, the number
    /// of events this hub published before (to any topic).
    pub seq: u64,
}

/// Counters of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Subscriptions open now.
    pub subscribers: usize,
    /// Events published to the topic (with a backplane: received from it by this
    /// instance).
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
    /// Where events go and come from, if not only this process.
    pub(crate) backplane: Option<Arc<dyn Backplane>>,
    /// Events published through the backplane by this hub.
    sent: AtomicU64,
    /// Topic lookups, for the periodic sweep of unused topics.
    lookups: AtomicU64,
    /// The coalescing window of new topics, in nanoseconds ([`Hub::coalesce`]).
    coalesce_ns: AtomicU64,
}

impl Inner {
    fn topics(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Topic>>> {
        sync::lock(&self.topics)
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.topics();
        self.maybe_sweep(&mut topics);
        self.get_or_insert(&mut topics, name)
    }

    /// Once per `max(256, number of topics)` topic lookups, forgets the topics nobody
    /// uses any more (no subscriber, history expired), so topics that were only
    /// published to, or whose last subscriber left before their history expired, do
    /// not stay forever.
    ///
    /// A sweep visits every topic, and runs once per as many lookups as there are
    /// topics: each lookup pays O(1) for it amortized, whatever the number of topics,
    /// and idle topics never outnumber the lookups since the last sweep.
    fn maybe_sweep(&self, topics: &mut HashMap<Arc<str>, Arc<Topic>>) {
        const SWEEP_EVERY: u64 = 256;
        let every = SWEEP_EVERY.max(topics.len() as u64);
        if self.lookups.fetch_add(1, Relaxed) + 1 >= every {
            self.lookups.store(0, Relaxed);
            self.sweep_locked(topics);
        }
    }

    fn sweep_locked(&self, topics: &mut HashMap<Arc<str>, Arc<Topic>>) {
        if self.backplane.is_some() {
            return; // topics live as long as their local subscribers
        }
        topics.retain(|_, topic| !topic.idle(&self.history));
        // After a crowd of topics went idle, give the map's table back too.
        if topics.capacity() > 4 * topics.len().max(64) {
            topics.shrink_to(2 * topics.len());
        }
    }

    fn get_or_insert(&self, topics: &mut HashMap<Arc<str>, Arc<Topic>>, name: &str) -> Arc<Topic> {
        if let Some(topic) = topics.get(name) {
            return topic.clone();
        }
        let name: Arc<str> = Arc::from(name);
        let coalesce = Duration::from_nanos(self.coalesce_ns.load(Relaxed));
        let topic = Arc::new(Topic::new(name.clone(), coalesce));
        topics.insert(name, topic.clone());
        topic
    }

    /// `name`'s topic, counting one more subscriber (under the lock, so that `release`
    /// cannot forget it meanwhile); with a backplane, its reader started.
    fn join(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.topics();
        self.maybe_sweep(&mut topics);
        let topic = self.get_or_insert(&mut topics, name);
        topic.subscribers.fetch_add(1, Relaxed);
        if let Some(backplane) = &self.backplane {
            topic
                .feed
                .get_or_init(|| reader::spawn(&topic, backplane.clone(), self.history));
        }
        topic
    }

    /// Forgets `topic` if nobody uses it any more: with a backplane, when it has no
    /// subscriber (the backplane keeps the history; this stops the reader).
    pub(crate) fn release(&self, topic: &Arc<Topic>) {
        let mut topics = self.topics();
        let unused = match self.backplane {
            Some(_) => topic.subscribers.load(Relaxed) == 0,
            None => topic.idle(&self.history),
        };
        if unused {
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
                history,
                lag,
                ..Inner::default()
            }),
        }
    }

    /// A hub whose topics are shared with other instances through `backplane`; see
    /// [`Backplane`](backplane). [`Hub::redis`] makes one on Redis.
    ///
    /// Events get their ids from the backplane (an id set on a published event is
    /// replaced), and reach this instance's subscribers, in the backplane's order,
    /// through one reader task per topic with local subscribers. Needs a tokio runtime
    /// when subscribing.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn make() -> Result<(), tower_sse::hub::HubError> {
    /// use std::time::Duration;
    /// use tower_sse::hub::{History, Hub, Lag, RedisBackplane};
    ///
    /// let backplane = RedisBackplane::connect("redis://127.0.0.1/")
    ///     .await?
    ///     .prefix("chat:")
    ///     .max_len(10_000)
    ///     .timeout(Duration::from_secs(1));
    /// let hub = Hub::with_backplane(backplane, History::new(1000, 4 << 20), Lag::End);
    /// # let _ = hub;
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_backplane(backplane: impl Backplane, history: History, lag: Lag) -> Self {
        Self {
            inner: Arc::new(Inner {
                history,
                lag,
                backplane: Some(Arc::new(backplane)),
                ..Inner::default()
            }),
        }
    }

    /// Wakes each topic's subscribers at most once per `window`, so that a busy topic
    /// reaches each subscriber in one frame (one write) per window instead of one per
    /// event. Default: zero, every event wakes them at once.
    ///
    /// The first event after a quiet `window` still goes out at once; events published
    /// within `window` of the last wake wait for the end of the window and go out
    /// together. So a topic that publishes less often than once per `window` sees no
    /// added latency, and a busy one adds at most `window` to each event's latency
    /// while its subscribers' wake-ups and socket writes drop to one per window (see
    /// the coalescing cases in `BENCHMARKS.md`).
    ///
    /// Applies to the topics created after the call: set it when building the hub. With
    /// a backplane it applies to the events its reader brings in. Windows longer than
    /// an hour are taken as an hour. The end of a window is a task sleeping on the
    /// tokio runtime of the publish that opened it, so that runtime needs its timer
    /// enabled (as the layer's heartbeats do); a publish made outside any runtime wakes
    /// the subscribers at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_sse::hub::Hub;
    /// let hub = Hub::new().coalesce(Duration::from_millis(10));
    /// ```
    #[must_use]
    pub fn coalesce(self, window: Duration) -> Self {
        const MAX: Duration = Duration::from_secs(3600);
        let ns = u64::try_from(window.min(MAX).as_nanos()).unwrap_or(u64::MAX);
        self.inner.coalesce_ns.store(ns, Relaxed);
        self
    }

    /// Encodes `event` once and delivers it to every subscriber of `topic` (creating
    /// the topic if needed). Without an id, the event gets the next number of the
    /// topic as its id.
    ///
    /// With a backplane, the event (without its `id`) goes to the backplane, which gives
    /// it its id; it reaches the subscribers of every instance through their readers.
    ///
    /// # Errors
    ///
    /// Never for the in-process hub; a backplane returns its failures (Redis
    /// unreachable, after its timeout).
    pub async fn publish(&self, topic: &str, event: Event) -> Result<Published, HubError> {
        let Some(backplane) = &self.inner.backplane else {
            return Ok(self.publish_local(topic, event));
        };
        let bytes = framing::encode_without_id(&event);
        let id = backplane
            .publish(topic, bytes)
            .await
            .map_err(HubError::new)?;
        let seq = self.inner.sent.fetch_add(1, Relaxed);
        Ok(Published { id, seq })
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
    ///
    /// With a backplane, an id that is not in this instance's history is looked up in
    /// the backplane: the events after it come from there first (then the local
    /// history, without a duplicate); if the backplane no longer has it, or cannot be
    /// reached, the subscription starts with [`Resume::Unknown`].
    pub async fn subscribe(
        &self,
        topic: &str,
        last_event_id: Option<&LastEventId>,
    ) -> Subscription {
        let sub = Subscription::register(self.inner.clone(), self.inner.join(topic));
        match &self.inner.backplane {
            None => sub.start(last_event_id),
            Some(backplane) => sub.attach(backplane.clone(), last_event_id).await,
        }
    }

    /// Subscribes to several topics on one stream, with one resumable position: see
    /// [`MultiSubscription`] (each event named after its topic, one id holding the
    /// position in every topic, `last_event_id` resuming each topic exactly).
    ///
    /// `topics`: 1 to [`MultiSubscription::MAX_TOPICS`] (64) distinct names, each
    /// usable as an SSE event name (non-empty, no line break). A `last_event_id` that
    /// is not an id of this topic list starts every topic with [`Resume::Unknown`].
    ///
    /// # Errors
    ///
    /// [`TopicsError`] for a list that breaks those rules; nothing is subscribed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::hub::TopicsError> {
    /// use tower_sse::{hub::Hub, SseResponse};
    /// let hub = Hub::new();
    /// let sub = hub.subscribe_many(&["prices", "news", "chat:42"], None).await?;
    /// let response = SseResponse::new(sub); // behind an SseLayer
    /// # let _ = response;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn subscribe_many<S: AsRef<str>>(
        &self,
        topics: &[S],
        last_event_id: Option<&LastEventId>,
    ) -> Result<MultiSubscription, TopicsError> {
        MultiSubscription::check(topics)?;
        Ok(MultiSubscription::open(&self.inner, topics, last_event_id).await)
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
            .field("backplane", &self.inner.backplane.is_some())
            .field(
                "coalesce",
                &Duration::from_nanos(self.inner.coalesce_ns.load(Relaxed)),
            )
            .field("topics", &self.inner.topics().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn topics_nobody_uses_are_swept_once_their_history_expires() {
        let hub = Hub::with_history(History::new(10, 1 << 20).max_age(Duration::from_secs(1)));
        hub.publish("only-published", Event::new().data("x"))
            .await
            .unwrap();
        let sub = hub.subscribe("left-early", None).await;
        hub.publish("left-early", Event::new().data("y"))
            .await
            .unwrap();
        drop(sub); // its history is still fresh: the topic stays for replay
        assert_eq!(hub.topics().len(), 2);

        tokio::time::advance(Duration::from_secs(2)).await;
        for _ in 0..256 {
            hub.publish("busy", Event::new().data("z")).await.unwrap();
        }
        assert_eq!(hub.topics(), vec!["busy".to_owned()]);
    }
}
