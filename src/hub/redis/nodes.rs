//! The Redis nodes of a backplane and which one holds a key: one node for a single
//! Redis; on a cluster, the masters from `CLUSTER SLOTS`, each key on the master of its
//! slot (read again after a `MOVED` answer or a failure). Each node has one command
//! connection (multiplexed: every command of the instance shares it) and one live
//! connection ([`Live`]), both made on first use and again after a failure.

use std::{
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::Duration,
};

use ::redis::{
    aio::MultiplexedConnection, AsyncConnectionConfig, Client, Cmd, ConnectionAddr, ConnectionInfo,
    Value,
};

use super::{live::Live, mailbox::Mailboxes};
use crate::{sync, BoxError};

/// Slots of a Redis Cluster.
const SLOTS: u16 = 16384;

/// One Redis node.
pub(super) struct Node {
    pub(super) info: ConnectionInfo,
    client: Client,
    /// For every command; replaced after any failure.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Started by the first subscription (it needs a runtime).
    pub(super) live: OnceLock<Live>,
}

impl Node {
    fn new(client: Client) -> Self {
        Self {
            info: client.get_connection_info().clone(),
            client,
            conn: Mutex::new(None),
            live: OnceLock::new(),
        }
    }

    /// `cmd` on the node's command connection (connecting if needed); no timeout of its
    /// own (the caller's bounds it).
    async fn query(&self, cmd: &Cmd, timeout: Duration) -> Result<Value, ::redis::RedisError> {
        let connected = sync::lock(&self.conn).clone();
        let mut conn = match connected {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                *sync::lock(&self.conn) = Some(conn.clone());
                conn
            }
        };
        let answer = cmd.query_async::<Value>(&mut conn).await;
        // A broken connection, not an error answer (`MOVED`, `NOSCRIPT`).
        if answer.as_ref().is_err_and(|err| !is_answer(err)) {
            *sync::lock(&self.conn) = None;
        }
        answer
    }

    /// Forgets the command connection (after a timeout).
    fn reset(&self) {
        *sync::lock(&self.conn) = None;
    }
}

#[derive(Default)]
struct Topology {
    /// Known nodes; an index stays the same node (nodes are only added).
    nodes: Vec<Arc<Node>>,
    /// `(first, last, node)` for each range of slots (cluster only).
    slots: Vec<(u16, u16, usize)>,
}

/// The nodes of a backplane and the slot map.
pub(super) struct Nodes {
    /// A cluster (sharded Pub/Sub, keys routed by slot) or one Redis.
    pub(super) cluster: bool,
    seeds: Vec<ConnectionInfo>,
    topology: RwLock<Topology>,
    pub(super) mailboxes: Arc<Mailboxes>,
}

impl Nodes {
    /// One Redis.
    pub(super) fn single(client: Client) -> Self {
        Self {
            cluster: false,
            seeds: vec![client.get_connection_info().clone()],
            topology: RwLock::new(Topology {
                nodes: vec![Arc::new(Node::new(client))],
                slots: Vec::new(),
            }),
            mailboxes: Arc::default(),
        }
    }

    /// A cluster known by `seeds` (the slot map is read on first use).
    pub(super) fn cluster(seeds: Vec<ConnectionInfo>) -> Self {
        Self {
            cluster: true,
            seeds,
            topology: RwLock::default(),
            mailboxes: Arc::default(),
        }
    }

    /// The address of the first seed (for `Debug`).
    pub(super) fn first(&self) -> Option<&ConnectionAddr> {
        self.seeds.first().map(ConnectionInfo::addr)
    }

    /// How many nodes are known.
    pub(super) fn len(&self) -> usize {
        self.topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .nodes
            .len()
    }

    /// The node at `index`.
    pub(super) fn node(&self, index: usize) -> Option<Arc<Node>> {
        let topology = self.topology.read().unwrap_or_else(|e| e.into_inner());
        topology.nodes.get(index).cloned()
    }

    /// The index of the node holding `key`, if known.
    pub(super) fn route(&self, key: &str) -> Option<usize> {
        let topology = self.topology.read().unwrap_or_else(|e| e.into_inner());
        if !self.cluster {
            return Some(0);
        }
        let slot = slot(key.as_bytes());
        topology
            .slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, node)| *node)
    }

    /// `cmd` on the node holding `key`; on a cluster, after a `MOVED` answer or a
    /// failure, the slot map is read again and the command sent once more. The caller
    /// bounds the time.
    pub(super) async fn query(
        &self,
        key: &str,
        cmd: &Cmd,
        timeout: Duration,
    ) -> Result<Value, BoxError> {
        let mut last_err: Option<BoxError> = None;
        for _ in 0..3 {
            let Some(node) = self.route(key).and_then(|i| self.node(i)) else {
                self.refresh(timeout).await?;
                continue;
            };
            match tokio::time::timeout(timeout, node.query(cmd, timeout)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => {
                    if !self.cluster || (is_answer(&err) && !err.is_cluster_error()) {
                        return Err(err.into());
                    }
                    last_err = Some(err.into());
                }
                Err(_) => {
                    node.reset();
                    return Err(super::answers::timed_out(timeout));
                }
            }
            // The slot may have moved (failover, resharding): ask the cluster again.
            if self.refresh(timeout).await.is_err() {
                break;
            }
        }
        Err(last_err.unwrap_or_else(|| "no node holds the key's slot".into()))
    }

    /// Reads the slot map (`CLUSTER SLOTS`) from the first node that answers.
    pub(super) async fn refresh(&self, timeout: Duration) -> Result<(), BoxError> {
        let known: Vec<ConnectionInfo> = {
            let topology = self.topology.read().unwrap_or_else(|e| e.into_inner());
            topology.nodes.iter().map(|n| n.info.clone()).collect()
        };
        let mut last_err: BoxError = "no cluster node to ask".into();
        for info in known.iter().chain(&self.seeds) {
            let asked = async {
                let client = Client::open(info.clone())?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                ::redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Value>(&mut conn)
                    .await
            };
            match tokio::time::timeout(timeout, asked).await {
                Ok(Ok(value)) => return self.install(info, &value),
                Ok(Err(err)) => last_err = err.into(),
                Err(_) => last_err = super::answers::timed_out(timeout),
            }
        }
        Err(last_err)
    }

    /// Installs the slot map of a `CLUSTER SLOTS` answer from `asked`.
    fn install(&self, asked: &ConnectionInfo, value: &Value) -> Result<(), BoxError> {
        let ranges = cluster_slots(value, asked)?;
        let mut topology = self.topology.write().unwrap_or_else(|e| e.into_inner());
        let mut slots = Vec::with_capacity(ranges.len());
        for (first, last, addr) in ranges {
            let index = match topology.nodes.iter().position(|n| *n.info.addr() == addr) {
                Some(index) => index,
                None => {
                    let info = asked.clone().set_addr(addr);
                    topology
                        .nodes
                        .push(Arc::new(Node::new(Client::open(info)?)));
                    topology.nodes.len() - 1
                }
            };
            slots.push((first, last, index));
        }
        topology.slots = slots;
        Ok(())
    }
}

/// `err` is Redis's answer (the connection is fine).
fn is_answer(err: &::redis::RedisError) -> bool {
    matches!(err.kind(), ::redis::ErrorKind::Server(_))
}

/// The ranges of a `CLUSTER SLOTS` answer with the address of their master (a master
/// without a host is `asked`'s host).
fn cluster_slots(
    value: &Value,
    asked: &ConnectionInfo,
) -> Result<Vec<(u16, u16, ConnectionAddr)>, BoxError> {
    let Value::Array(ranges) = value else {
        return Err(format!("CLUSTER SLOTS answered {value:?}").into());
    };
    let asked_host = match asked.addr() {
        ConnectionAddr::Tcp(host, _) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => u16::try_from(*n).ok(),
        _ => None,
    };
    let mut out = Vec::new();
    for range in ranges {
        let Value::Array(range) = range else { continue };
        let (Some(first), Some(last)) = (int(range.first()), int(range.get(1))) else {
            continue;
        };
        let Some(Value::Array(master)) = range.get(2) else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) if !host.is_empty() && host != b"?" => {
                String::from_utf8_lossy(host).into_owned()
            }
            _ => asked_host.clone(),
        };
        let port = match master.get(1) {
            Some(Value::Int(port)) => u16::try_from(*port).ok(),
            _ => None,
        };
        if let (Some(port), true) = (port, last < SLOTS) {
            out.push((first, last, ConnectionAddr::Tcp(host, port)));
        }
    }
    if out.is_empty() {
        return Err("CLUSTER SLOTS: no slot is served".into());
    }
    Ok(out)
}

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key, modulo 16384.
pub(super) fn slot(key: &[u8]) -> u16 {
    let tagged = memchr::memchr(b'{', key).and_then(|open| {
        let rest = &key[open + 1..];
        memchr::memchr(b'}', rest)
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of the Redis Cluster specification and `CLUSTER KEYSLOT`.
    #[test]
    fn slots_follow_the_cluster_spec() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"tower-sse:{news}"), slot(b"news"));
    }

    #[test]
    fn cluster_slots_answer_parses() {
        let asked: ConnectionInfo =
            ::redis::IntoConnectionInfo::into_connection_info("redis://10.0.0.1:7000/").unwrap();
        let master = |host: &str, port| {
            Value::Array(vec![
                Value::BulkString(host.into()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let answer = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                master("127.0.0.1", 7001),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), master("", 7002)]),
            Value::Nil,
        ]);
        let ranges = cluster_slots(&answer, &asked).unwrap();
        assert_eq!(ranges.len(), 2);
        assert_eq!(ranges[0].2, ConnectionAddr::Tcp("127.0.0.1".into(), 7001));
        assert_eq!(
            ranges[1],
            (5461, 16383, ConnectionAddr::Tcp("10.0.0.1".into(), 7002))
        );
        assert!(cluster_slots(&Value::Nil, &asked).is_err());
    }
}
