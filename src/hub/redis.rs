//! The hub's backplane on Redis Streams (feature `redis`).

use std::{
    fmt, io,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use ::redis::{aio::MultiplexedConnection, AsyncConnectionConfig, Client, Cmd, Value};
use bytes::Bytes;

use super::{
    backplane::{Backplane, BoxFuture, Record},
    framing::number,
    history::History,
    Hub, HubError, Lag,
};
use crate::{sync, BoxError};

/// Records one blocking read returns at most.
const READ_COUNT: usize = 1000;
/// Blocking connections kept between reads, at most.
const IDLE_READERS: usize = 16;
/// The stream field holding an event's bytes.
const FIELD: &str = "e";

/// A [`Backplane`] on Redis Streams: one stream per topic (key `tower-sse:{topic}`),
/// each event one entry whose field `e` holds the encoded event without its `id` line.
///
/// - **publish**: `XADD key MAXLEN ~ max_len * e <bytes>`. Redis gives the id
///   (`<ms>-<seq>`), which becomes the SSE `id` on every instance.
/// - **read** (one task per topic with local subscribers, each on its own connection):
///   `XREAD BLOCK` from the last id it saw; after a failure it reconnects and goes on
///   from there, so whatever reached Redis meanwhile is delivered.
/// - **replay**: `XRANGE key <id> +`: if the entry `<id>` is still in the stream, the
///   entries after it; otherwise (trimmed by `MAXLEN`, lost in a Redis restart without
///   persistence, not an id) [`Resume::Unknown`](super::Resume::Unknown). The
///   entries come in one answer, so at most about `max_len` of them.
///
/// Every command is bounded by [`timeout`](Self::timeout) (default 2 s): with Redis
/// unreachable, [`Hub::publish`] fails in that time instead of hanging. Open streams
/// stay open and receive events again once Redis is back.
///
/// Ids stay ordered across a Redis restart as long as its clock does not go back (a
/// new stream's ids start from the current time). Without persistence, a restart
/// empties the history: clients resuming from an older id get `Resume::Unknown`.
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
    client: Client,
    /// For `XADD`, `XRANGE`, `XREVRANGE`; replaced after any failure.
    shared: Mutex<Option<MultiplexedConnection>>,
    /// Connections for `XREAD BLOCK` (one per read in progress), kept between reads.
    idle: Mutex<Vec<MultiplexedConnection>>,
    prefix: String,
    max_len: usize,
    timeout: Duration,
    block: Duration,
}

impl RedisBackplane {
    /// A backplane on the Redis at `redis` (a URL such as `redis://127.0.0.1:6379/`, or
    /// any [`redis::IntoConnectionInfo`](::redis::IntoConnectionInfo)), after checking
    /// that it answers (`PING`, within the timeout).
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
    pub async fn connect(redis: impl ::redis::IntoConnectionInfo) -> Result<Self, HubError> {
        let backplane = Self::from_client(Client::open(redis).map_err(HubError::new)?);
        backplane
            .query(&::redis::cmd("PING"))
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
    /// assert_eq!(backplane.key("news"), "tower-sse:news");
    /// ```
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            shared: Mutex::new(None),
            idle: Mutex::new(Vec::new()),
            prefix: "tower-sse:".to_owned(),
            max_len: History::default().events,
            timeout: Duration::from_secs(2),
            block: Duration::from_secs(5),
        }
    }

    /// The prefix of the stream keys (default `tower-sse:`): topic `t` is the stream
    /// `{prefix}t`.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client).prefix("app:sse:");
    /// assert_eq!(backplane.key("news"), "app:sse:news");
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

    /// How long one `XREAD BLOCK` waits for new entries before the reader asks again
    /// (default 5 s, at least 1 ms).
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

    /// The Redis key of `topic`'s stream.
    ///
    /// ```
    /// # let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backplane = tower_sse::hub::RedisBackplane::from_client(client);
    /// assert_eq!(backplane.key("prices"), "tower-sse:prices");
    /// ```
    pub fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    fn config(&self, response_timeout: Duration) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(response_timeout))
    }

    fn shared(&self) -> MutexGuard<'_, Option<MultiplexedConnection>> {
        sync::lock(&self.shared)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<MultiplexedConnection>> {
        sync::lock(&self.idle)
    }

    /// `cmd` on the shared connection (connecting if needed), within the timeout.
    async fn query(&self, cmd: &Cmd) -> Result<Value, BoxError> {
        let attempt = async {
            let connected = self.shared().clone();
            let mut conn = match connected {
                Some(conn) => conn,
                None => {
                    let conn = self
                        .client
                        .get_multiplexed_async_connection_with_config(&self.config(self.timeout))
                        .await?;
                    *self.shared() = Some(conn.clone());
                    conn
                }
            };
            cmd.query_async::<Value>(&mut conn).await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                *self.shared() = None;
                Err(err.into())
            }
            Err(_) => {
                *self.shared() = None;
                Err(timed_out(self.timeout))
            }
        }
    }

    /// `XREAD BLOCK` on a connection of its own (blocking would hold up every other
    /// command on a shared one).
    async fn xread(&self, key: &str, after: &str) -> Result<Vec<Record>, BoxError> {
        let mut cmd = ::redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(key)
            .arg(after);
        let limit = self.block + self.timeout;
        let pooled = self.idle().pop();
        let attempt = async {
            let mut conn = match pooled {
                Some(conn) => conn,
                None => {
                    self.client
                        .get_multiplexed_async_connection_with_config(&self.config(limit))
                        .await?
                }
            };
            let value = cmd.query_async::<Value>(&mut conn).await?;
            Ok::<_, ::redis::RedisError>((conn, value))
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(Ok((conn, value))) => {
                let mut idle = self.idle();
                if idle.len() < IDLE_READERS {
                    idle.push(conn);
                }
                drop(idle);
                Ok(xread_entries(value))
            }
            // The other idle connections are likely broken too (Redis restarted).
            Ok(Err(err)) => {
                self.idle().clear();
                Err(err.into())
            }
            Err(_) => {
                self.idle().clear();
                Err(timed_out(limit))
            }
        }
    }
}

impl Backplane for RedisBackplane {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        event: Bytes,
    ) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("XADD");
            cmd.arg(self.key(topic))
                .arg("MAXLEN")
                .arg("~")
                .arg(self.max_len)
                .arg("*")
                .arg(FIELD)
                .arg(&event[..]);
            match self.query(&cmd).await? {
                Value::BulkString(id) => Ok(String::from_utf8(id)?.into()),
                Value::SimpleString(id) => Ok(id.into()),
                other => Err(format!("XADD answered {other:?}").into()),
            }
        })
    }

    fn tail<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Arc<str>, BoxError>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("XREVRANGE");
            cmd.arg(self.key(topic))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            let last = entries(self.query(&cmd).await?).pop();
            Ok(last.map_or_else(|| Arc::from("0-0"), |record| record.id))
        })
    }

    fn read<'a>(
        &'a self,
        topic: &'a str,
        after: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Record>, BoxError>> {
        Box::pin(async move { self.xread(&self.key(topic), after).await })
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
            let mut cmd = ::redis::cmd("XRANGE");
            cmd.arg(self.key(topic)).arg(id).arg("+");
            let mut records = entries(self.query(&cmd).await?).into_iter();
            // The range starts at `id` itself if the stream still has it.
            Ok(match records.next() {
                Some(first) if &*first.id == id => Some(records.collect()),
                _ => None,
            })
        })
    }
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("redis", self.client.get_connection_info().addr())
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

fn timed_out(after: Duration) -> BoxError {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("redis did not answer within {after:?}"),
    )
    .into()
}

/// `<ms>-<seq>`, both decimal.
fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((number(ms)?, number(seq)?))
}

/// The entries of an `XREAD` answer for one stream (none on a timeout).
fn xread_entries(value: Value) -> Vec<Record> {
    match value {
        // RESP2: [[key, entries]]; RESP3: {key: entries}.
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|stream| match stream {
                Value::Array(pair) => pair.into_iter().nth(1),
                _ => None,
            })
            .flat_map(entries)
            .collect(),
        Value::Map(streams) => streams
            .into_iter()
            .flat_map(|(_, stream)| entries(stream))
            .collect(),
        _ => Vec::new(),
    }
}

/// The entries of an `XRANGE`-like answer: `[[id, [field, value, …]], …]`. An entry
/// without an `e` field gets empty bytes (the hub skips it, but reads past it).
fn entries(value: Value) -> Vec<Record> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let mut entry = entry.into_iter();
            let id: Arc<str> = match entry.next()? {
                Value::BulkString(id) => String::from_utf8(id).ok()?.into(),
                Value::SimpleString(id) => id.into(),
                _ => return None,
            };
            let pairs: Vec<(Value, Value)> = match entry.next() {
                Some(Value::Array(flat)) => {
                    let mut flat = flat.into_iter();
                    std::iter::from_fn(|| Some((flat.next()?, flat.next()?))).collect()
                }
                Some(Value::Map(pairs)) => pairs,
                _ => Vec::new(),
            };
            let bytes = pairs
                .into_iter()
                .find_map(|(field, value)| match (field, value) {
                    (Value::BulkString(field), Value::BulkString(bytes))
                        if field == FIELD.as_bytes() =>
                    {
                        Some(Bytes::from(bytes))
                    }
                    _ => None,
                })
                .unwrap_or_default();
            Some(Record { id, bytes })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse() {
        assert_eq!(stream_id("1718000000000-3"), Some((1_718_000_000_000, 3)));
        assert_eq!(stream_id("1-"), None);
        assert_eq!(stream_id("1"), None);
        assert_eq!(stream_id("a-1"), None);
        assert_eq!(stream_id("+1-1"), None);
    }

    #[test]
    fn answers_parse_in_resp2_and_resp3() {
        let entry = |id: &str, data: &str| {
            Value::Array(vec![
                Value::BulkString(id.into()),
                Value::Array(vec![
                    Value::BulkString(b"e".to_vec()),
                    Value::BulkString(data.into()),
                ]),
            ])
        };
        let resp2 = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"tower-sse:t".to_vec()),
            Value::Array(vec![
                entry("1-0", "data: a\n\n"),
                entry("1-1", "data: b\n\n"),
            ]),
        ])]);
        let records = xread_entries(resp2);
        assert_eq!(records.len(), 2);
        assert_eq!(&*records[1].id, "1-1");
        assert_eq!(&records[1].bytes[..], b"data: b\n\n");
        let resp3 = Value::Map(vec![(
            Value::BulkString(b"tower-sse:t".to_vec()),
            Value::Array(vec![entry("2-0", "data: c\n\n")]),
        )]);
        assert_eq!(&*xread_entries(resp3)[0].id, "2-0");
        assert!(xread_entries(Value::Nil).is_empty());
        let foreign = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"3-0".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"x".to_vec()),
                Value::BulkString(b"y".to_vec()),
            ]),
        ])]);
        assert_eq!(entries(foreign), vec![Record::new("3-0", Bytes::new())]);
    }
}
