//! The hub's backplane on Redis (feature `redis`): Streams for the order, the ids and
//! the history, Pub/Sub for live delivery, on one Redis or a Redis Cluster.
//!
//! Files: `nodes.rs` the nodes and the slot map, each node's command connection;
//! `live.rs` each node's Pub/Sub connection; `mailbox.rs` the topics followed and
//! the seam between history and live; `resp.rs` the Pub/Sub connection's replies;
//! `answers.rs` stream entries.

mod answers;
mod live;
mod mailbox;
mod nodes;
mod resp;

use std::{
    fmt,
    pin::pin,
    sync::{Arc, OnceLock},
    time::Duration,
};

use ::redis::{Client, Cmd, ConnectionInfo, IntoConnectionInfo, Value};
use bytes::Bytes;
use tokio::{sync::Notify, time::Instant};

use self::{
    answers::{entries, stream_id, timed_out, FIELD},
    live::Live,
    mailbox::Next,
    nodes::Nodes,
};
use super::{
    backplane::{Backplane, BoxFuture, Record},
    history::History,
    Hub, HubError, Lag,
};
use crate::BoxError;

/// Records one catch-up read returns at most.
const READ_COUNT: usize = 1000;

/// Appends the event to the stream and sends `<id>\n<event>` on the topic's channel
/// (same name as the stream, so the same slot on a cluster), in one step.
const PUBLISH: &str =
    "local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', ARGV[4], ARGV[2])
redis.call(ARGV[3], KEYS[1], id .. '\\n' .. ARGV[2])
return id";

/// A [`Backplane`] on Redis: one stream per topic (key `tower-sse:{topic}`) for the
/// order, the ids and the history, and the Pub/Sub channel of the same name for live
/// delivery; on one Redis or on a Redis Cluster ([`cluster`](Self::cluster)).
///
/// **Connections.** Two per Redis node, whatever the number of topics: one command
/// connection (multiplexed, shared by every publish and read of the instance) and one
/// Pub/Sub connection that subscribes the channel of every topic with local
/// subscribers (`SUBSCRIBE`; on a cluster, sharded `SSUBSCRIBE` on the topic's
/// master). A topic's first local subscriber costs a `SUBSCRIBE` on it, its last one
/// leaving an `UNSUBSCRIBE`: topics come and go without connecting.
///
/// - **publish**: one script (`EVALSHA`) runs `XADD key MAXLEN ~ max_len * e <bytes>` and
///   `PUBLISH key <id>\n<bytes>` (`SPUBLISH` on a cluster) together. Redis gives the
///   id (`<ms>-<seq>`), which becomes the SSE `id` on every instance.
/// - **read**: the channel is subscribed first; once Redis confirms, the stream is read
///   after the reader's last id (`XRANGE key (<id> +`), then the messages received
///   meanwhile and from then on, without those the `XRANGE` returned (ids are
///   ordered). Whenever the Pub/Sub connection breaks it connects again, subscribes
///   every channel again and each topic reads the stream after its last id before
///   taking live messages again: nothing that reached Redis is lost or delivered twice.
/// - **replay**: `XRANGE key <id> +`: if the entry `<id>` is still in the stream, the
///   entries after it; otherwise (trimmed by `MAXLEN`, lost in a Redis restart without
///   persistence, not an id) [`Resume::Unknown`](super::Resume::Unknown). The
///   entries come in one answer, so at most about `max_len` of them.
///
/// **Ordering and exactly-once** hold per topic: one stream orders a topic's events,
/// every instance delivers them in that order, once. There is no order between topics.
///
/// **Limits.** A client resumes exactly only within the stream's history (`max_len`);
/// past it, `Resume::Unknown`. Ids stay ordered across a Redis restart as long as its
/// clock does not go back (a new stream's ids start from the current time); without
/// persistence a restart empties the history (clients resuming from an older id get
/// `Resume::Unknown`, live streams go on with the events published after it). On a
/// cluster, a failover to a replica loses the writes the replica had not received
/// (Redis replication is asynchronous): those events are never delivered. The Pub/Sub
/// connection speaks plain TCP or a Unix socket (no TLS).
///
/// Every command is bounded by [`timeout`](Self::timeout) (default 2 s): with Redis
/// unreachable, [`Hub::publish`] fails in that time instead of hanging. Open streams
/// stay open and receive events again once Redis is back. Use one backplane per hub.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_sse::hub::{History, Hub, Lag, RedisBackplane};
///
/// # async fn make() -> Result<(), tower_sse::hub::HubError> {
/// let backplane = RedisBackplane::connect("redis://127.0.0.1:6379/")
///     .await?
///     .max_len(10_000)
///     .timeout(Duration::from_millis(500));
/// let hub = Hub::with_backplane(backplane, History::default(), Lag::End);
/// # let _ = hub;
/// # Ok(())
/// # }
/// ```
pub struct RedisBackplane {
    nodes: Nodes,
    prefix: String,
    max_len: usize,
    timeout: Duration,
    block: Duration,
    /// The SHA1 of [`PUBLISH`], once Redis has told it.
    script_sha: OnceLock<String>,
}

/// Whether `err` is Redis's `NOSCRIPT` (the node does not have the script).
fn is_no_script(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    err.downcast_ref::<::redis::RedisError>()
        .and_then(::redis::RedisError::code)
        == Some("NOSCRIPT")
}

impl RedisBackplane {
    /// A backplane on the Redis at `redis` (a URL such as `redis://127.0.0.1:6379/`, or
    /// any [`redis::IntoConnectionInfo`](::redis::IntoConnectionInfo)), after checking
    /// that it answers (`PING`, within the timeout). For a Redis Cluster, use
    /// [`cluster`](Self::cluster).
    ///
    /// # Errors
    ///
    /// An invalid URL, or Redis not answering.
    ///
    /// ```no_run
    /// # async fn make() -> Result<(), tower_sse::hub::HubError> {
    /// let backplane = tower_sse::hub::RedisBackplane::connect("redis://127.0.0.1/").await?;
    /// # let _ = backplane;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(redis: impl IntoConnectionInfo) -> Result<Self, HubError> {
        let backplane = Self::from_client(Client::open(redis).map_err(HubError::new)?);
        backplane
            .query("", &::redis::cmd("PING"))
            .await
            .map_err(HubError::new)?;
        Ok(backplane)
    }

    /// A backplane on the Redis Cluster that has the nodes `nodes` (URLs; one that
    /// answers is enough: the others are found with `CLUSTER SLOTS`), after reading
    /// its slot map. Topics spread over the masters by the slot of their key;
    /// live delivery uses sharded Pub/Sub (Redis 7 or later).
    ///
    /// # Errors
    ///
    /// An invalid URL, or no node answering `CLUSTER SLOTS` within the timeout.
    ///
    /// ```no_run
    /// # async fn make() -> Result<(), tower_sse::hub::HubError> {
    /// let urls = "redis://10.0.0.1:7000/,redis://10.0.0.2:7000/";
    /// let backplane = tower_sse::hub::RedisBackplane::cluster(urls.split(',')).await?;
    /// # let _ = backplane;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cluster<I>(nodes: I) -> Result<Self, HubError>
    where
        I: IntoIterator,
        I::Item: IntoConnectionInfo,
    {
        let seeds = nodes
            .into_iter()
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<Result<Vec<ConnectionInfo>, _>>()
            .map_err(HubError::new)?;
        let backplane = Self::with_nodes(Nodes::cluster(seeds));
        backplane
            .nodes
            .refresh(backplane.timeout)
            .await
            .map_err(HubError::new)?;
        Ok(backplane)
    }

    /// A backplane on `client`'s Redis; it connects on first use (and again after any
    /// failure).
    ///
    /// ```
    /// let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client);
    /// assert_eq!(backplane.key("news"), "tower-sse:{news}");
    /// ```
    pub fn from_client(client: Client) -> Self {
        Self::with_nodes(Nodes::single(client))
    }

    fn with_nodes(nodes: Nodes) -> Self {
        Self {
            nodes,
            prefix: "tower-sse:".to_owned(),
            max_len: History::default().events,
            timeout: Duration::from_secs(2),
            block: Duration::from_secs(5),
            script_sha: OnceLock::new(),
        }
    }

    /// The prefix of the stream keys (default `tower-sse:`): topic `t` is the stream
    /// (and the channel) `{prefix}{t}`, braces included.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client).prefix("app:sse:");
    /// assert_eq!(backplane.key("news"), "app:sse:{news}");
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// About how many entries each stream keeps for replay (`XADD … MAXLEN ~ n`, at
    /// least 1; Redis trims whole nodes, so a stream may keep somewhat more). Default:
    /// [`History`]'s default, 1024; [`Hub::redis`] sets it to the history's `events`.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client).max_len(100_000);
    /// # let _ = backplane;
    /// ```
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// How long connecting and each command may take (default 2 s); past it, the
    /// operation fails ([`Hub::publish`] returns an error, a reader retries).
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// use std::time::Duration;
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client)
    ///     .timeout(Duration::from_millis(300));
    /// # let _ = backplane;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long one read waits for a live message before the reader asks again
    /// (default 5 s, at least 1 ms). Nothing is sent to Redis for it.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// use std::time::Duration;
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client)
    ///     .block(Duration::from_secs(1));
    /// # let _ = backplane;
    /// ```
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block.max(Duration::from_millis(1));
        self
    }

    /// The Redis key of `topic`'s stream, also the name of its channel. The topic is
    /// the key's hash tag: on a cluster, both are in the topic's slot.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client);
    /// assert_eq!(backplane.key("prices"), "tower-sse:{prices}");
    /// ```
    pub fn key(&self, topic: &str) -> String {
        format!("{}{{{topic}}}", self.prefix)
    }

    /// Topics whose channel is subscribed (or being subscribed) now: those with local
    /// subscribers.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client);
    /// assert_eq!(backplane.followed_topics(), 0);
    /// ```
    pub fn followed_topics(&self) -> usize {
        self.nodes.mailboxes.len()
    }

    /// `cmd` on the node of `key`, within the timeout.
    async fn query(&self, key: &str, cmd: &Cmd) -> Result<Value, BoxError> {
        match tokio::time::timeout(self.timeout, self.nodes.query(key, cmd, self.timeout)).await {
            Ok(answer) => answer,
            Err(_) => Err(timed_out(self.timeout)),
        }
    }

    /// The publish script on `key`'s node: `EVALSHA` once its SHA1 is known (`SCRIPT
    /// LOAD` on the first publish), `EVAL` on a node that does not have it (restarted).
    async fn run_publish(&self, key: &str, event: &[u8]) -> Result<Value, BoxError> {
        let publish = if self.nodes.cluster {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let with_args = |mut cmd: Cmd| {
            cmd.arg(1)
                .arg(key)
                .arg(self.max_len)
                .arg(event)
                .arg(publish)
                .arg(FIELD);
            cmd
        };
        if let Some(sha) = self.script_sha.get() {
            let cmd = with_args(::redis::cmd("EVALSHA").arg(sha).clone());
            match self.nodes.query(key, &cmd, self.timeout).await {
                Err(err) if is_no_script(&*err) => {}
                answer => return answer,
            }
        } else {
            let mut load = ::redis::cmd("SCRIPT");
            load.arg("LOAD").arg(PUBLISH);
            if let Ok(Value::BulkString(sha)) = self.nodes.query(key, &load, self.timeout).await {
                let _ = self
                    .script_sha
                    .set(String::from_utf8_lossy(&sha).into_owned());
            }
        }
        let cmd = with_args(::redis::cmd("EVAL").arg(PUBLISH).clone());
        self.nodes.query(key, &cmd, self.timeout).await
    }

    /// The mailbox of `key` (opened, its channel subscribed, if needed).
    async fn open(&self, key: &str) -> Result<(u64, Arc<Notify>), BoxError> {
        let index = match self.nodes.route(key) {
            Some(index) => index,
            None => {
                self.nodes.refresh(self.timeout).await?;
                self.nodes
                    .route(key)
                    .ok_or("no node holds the key's slot")?
            }
        };
        let node = self.nodes.node(index).ok_or("unknown node")?;
        let live = node.live.get_or_init(|| {
            Live::spawn(
                index,
                node.info.clone(),
                self.nodes.cluster,
                self.timeout,
                self.nodes.mailboxes.clone(),
            )
        });
        Ok(self
            .nodes
            .mailboxes
            .open(key, || index, |_, op| live.send(op)))
    }

    /// Waits (up to `block`) for records of `key` after `after`: from the stream first
    /// (catch-up), then live.
    async fn read_live(&self, key: &str, after: &str) -> Result<Vec<Record>, BoxError> {
        let now = Instant::now();
        let (deadline, confirm_by) = (now + self.block, now + self.timeout.min(self.block));
        loop {
            let (gen, notify) = self.open(key).await?;
            let mut notified = pin!(notify.notified());
            notified.as_mut().enable();
            let confirmed = match self.nodes.mailboxes.next(key, gen, after) {
                Next::Records(records) => return Ok(records),
                Next::CatchUp(epoch) => return self.catch_up(key, gen, epoch, after).await,
                Next::Failed(err) => {
                    if self.nodes.cluster {
                        let _ = self.nodes.refresh(self.timeout).await;
                    }
                    return Err(err.into());
                }
                Next::Gone => continue,
                Next::Wait { confirmed } => confirmed,
            };
            let until = if confirmed { deadline } else { confirm_by };
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return if confirmed {
                    Ok(Vec::new())
                } else {
                    Err(timed_out(self.timeout.min(self.block)))
                };
            }
        }
    }

    /// The stream of `key` after `after`, once the channel is subscribed.
    async fn catch_up(
        &self,
        key: &str,
        gen: u64,
        epoch: u64,
        after: &str,
    ) -> Result<Vec<Record>, BoxError> {
        let mut cmd = ::redis::cmd("XRANGE");
        cmd.arg(key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(READ_COUNT);
        let records = entries(self.query(key, &cmd).await?);
        let full = records.len() >= READ_COUNT;
        self.nodes
            .mailboxes
            .caught_up(key, gen, epoch, after, &records, full);
        Ok(records)
    }
}

impl Backplane for RedisBackplane {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Bytes,
    ) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
        Box::pin(async move {
            let key = self.key(topic);
            let answer = tokio::time::timeout(self.timeout, self.run_publish(&key, &event)).await;
            match answer.map_err(|_| timed_out(self.timeout))?? {
                Value::BulkString(id) => Ok(String::from_utf8(id)?.into()),
                Value::SimpleString(id) => Ok(id.into()),
                other => Err(format!("publish script answered {other:?}").into()),
            }
        })
    }

    fn tail<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
        Box::pin(async move {
            let key = self.key(topic);
            let mut cmd = ::redis::cmd("XREVRANGE");
            cmd.arg(&key).arg("+").arg("-").arg("COUNT").arg(1);
            let last = entries(self.query(&key, &cmd).await?).pop();
            Ok(last.map_or_else(|| Arc::from("0-0"), |record| record.id))
        })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        after: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, BoxError>> {
        Box::pin(async move { self.read_live(&self.key(topic), after).await })
    }

    fn range<'a>(
        &'a self,
        topic: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<Record>>, BoxError>> {
        Box::pin(async move {
            // Only ids as Redis writes them: anything else was never given out.
            let canonical = stream_id(id).map(|(ms, seq)| format!("{ms}-{seq}"));
            if canonical.as_deref() != Some(id) {
                return Ok(None);
            }
            let key = self.key(topic);
            let mut cmd = ::redis::cmd("XRANGE");
            cmd.arg(&key).arg(id).arg("+");
            let mut records = entries(self.query(&key, &cmd).await?).into_iter();
            // The range starts at `id` itself if the stream still has it.
            Ok(match records.next() {
                Some(first) if &*first.id == id => Some(records.collect()),
                _ => None,
            })
        })
    }

    fn release(&self, topic: &str) {
        let key = self.key(topic);
        self.nodes.mailboxes.release(&key, |index, op| {
            if let Some(live) = self.nodes.node(index).as_ref().and_then(|n| n.live.get()) {
                live.send(op);
            }
        });
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("redis", &self.nodes.first())
            .field("cluster", &self.nodes.cluster)
            .field("nodes", &self.nodes.len())
            .field("prefix", &self.prefix)
            .field("max_len", &self.max_len)
            .field("timeout", &self.timeout)
            .field("block", &self.block)
            .finish()
    }
}

impl Hub {
    /// A hub sharing its topics with other instances through Redis Streams at `redis`
    /// (a URL such as `redis://127.0.0.1:6379/`): each stream keeps about
    /// `history.events` events for replay, each instance `history` of each topic it
    /// serves; see [`RedisBackplane`] for the details and its other settings (with
    /// [`Hub::with_backplane`]).
    ///
    /// # Errors
    ///
    /// An invalid URL, or Redis not answering within 2 s.
    ///
    /// ```no_run
    /// use tower_sse::{hub::{History, Hub}, Event};
    ///
    /// # async fn run() -> Result<(), tower_sse::hub::HubError> {
    /// let hub = match std::env::var("REDIS_URL") {
    ///     Ok(url) => Hub::redis(url.as_str(), History::default()).await?,
    ///     Err(_) => Hub::new(),
    /// };
    /// let published = hub.publish("news", Event::new().data("hello")).await?;
    /// println!("published as {}", published.id); // e.g. 1718000000000-0
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(
        redis: impl ::redis::IntoConnectionInfo,
        history: History,
    ) -> Result<Self, HubError> {
        let backplane = RedisBackplane::connect(redis)
            .await?
            .max_len(history.events);
        Ok(Self::with_backplane(backplane, history, Lag::End))
    }
}
