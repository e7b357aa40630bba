//! The live connection of one Redis node: one Pub/Sub connection (`SUBSCRIBE`, or
//! `SSUBSCRIBE` on a cluster) for every topic this instance follows on the node. A task
//! owns it: it sends the subscribe requests of the [`Mailboxes`] in order, hands every
//! message to its mailbox and, when the connection breaks, connects again (growing
//! delay), subscribes every channel again and sends those topics back to catch-up.

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::Arc,
    time::Duration,
};

use ::redis::{ConnectionAddr, ConnectionInfo};
use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader},
    sync::mpsc,
    task::AbortHandle,
};

use super::{
    mailbox::{Mailboxes, Op},
    resp::{self, Resp},
};
use crate::hub::{backplane::Record, reader::Backoff};

/// Silence on the connection after which a `PING` goes out; twice that without any
/// answer and the connection is taken for dead.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Requests written in one go at most.
const BATCH: usize = 512;

/// The handle of a node's live task; the task stops when it is dropped.
pub(super) struct Live {
    tx: mpsc::UnboundedSender<Op>,
    task: AbortHandle,
}

impl Live {
    /// Starts the live task of node `node` at `info` (sharded Pub/Sub if `sharded`).
    pub(super) fn spawn(
        node: usize,
        info: ConnectionInfo,
        sharded: bool,
        timeout: Duration,
        mailboxes: Arc<Mailboxes>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Task {
                node,
                info,
                sharded,
                timeout,
                mailboxes,
                channels: HashMap::new(),
                rx,
            }
            .run(),
        );
        Self {
            tx,
            task: task.abort_handle(),
        }
    }

    /// Queues a request (in order with the others).
    pub(super) fn send(&self, op: Op) {
        let _ = self.tx.send(op);
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request written and not answered yet (Redis answers in order).
enum Pending {
    Auth,
    Ping,
    Subscribe(Arc<str>, u64),
    Unsubscribe(Arc<str>),
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Task {
    node: usize,
    info: ConnectionInfo,
    sharded: bool,
    timeout: Duration,
    mailboxes: Arc<Mailboxes>,
    /// Channels subscribed (or to be) on this node, with their mailbox's generation.
    channels: HashMap<Arc<str>, u64>,
    rx: mpsc::UnboundedReceiver<Op>,
}

impl Task {
    async fn run(mut self) {
        let mut backoff = Backoff::default();
        loop {
            let err = match tokio::time::timeout(self.timeout, self.connect()).await {
                Ok(Ok(io)) => {
                    if backoff.failures > 0 {
                        tracing::info!(node = self.node, "hub backplane: live connection back");
                    }
                    backoff.failures = 0;
                    self.serve(io).await
                }
                Ok(Err(err)) => err,
                Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            };
            // Every subscription of this node is gone with the connection.
            self.mailboxes.lost(self.channels.keys());
            if self.rx.is_closed() {
                return;
            }
            let delay = backoff.next();
            tracing::warn!(
                node = self.node, error = %err, retry_in = ?delay,
                "hub backplane: live connection lost"
            );
            // Requests meanwhile still change the set to subscribe on reconnecting.
            let until = tokio::time::sleep(delay);
            tokio::pin!(until);
            loop {
                tokio::select! {
                    () = &mut until => break,
                    op = self.rx.recv() => match op {
                        Some(op) => self.apply(&op),
                        None => return,
                    },
                }
            }
        }
    }

    async fn connect(&self) -> io::Result<Box<dyn Io>> {
        Ok(match self.info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Box::new(tcp)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("live connection to {other}: only tcp and unix sockets"),
                ))
            }
        })
    }

    /// Keeps the set of subscribed channels in step with a request.
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Subscribe { channel, gen } => {
                self.channels.insert(channel.clone(), *gen);
            }
            Op::Unsubscribe { channel } => {
                self.channels.remove(channel);
            }
        }
    }

    fn command(&self, op: &Op, out: &mut Vec<u8>, pending: &mut VecDeque<Pending>) {
        let (name, channel) = match op {
            Op::Subscribe { channel, gen } => {
                pending.push_back(Pending::Subscribe(channel.clone(), *gen));
                (
                    if self.sharded {
                        "SSUBSCRIBE"
                    } else {
                        "SUBSCRIBE"
                    },
                    channel,
                )
            }
            Op::Unsubscribe { channel } => {
                pending.push_back(Pending::Unsubscribe(channel.clone()));
                let name = if self.sharded {
                    "SUNSUBSCRIBE"
                } else {
                    "UNSUBSCRIBE"
                };
                (name, channel)
            }
        };
        ::redis::cmd(name).arg(&**channel).write_packed_command(out);
    }

    /// Runs the connection until it breaks; the error says why.
    async fn serve(&mut self, io: Box<dyn Io>) -> io::Error {
        let (read, mut write) = tokio::io::split(io);
        // Replies are read by a task of their own: a read cut short by `select!` would
        // lose the part it had taken.
        let (replies_tx, mut replies) = mpsc::channel(1024);
        let reading = tokio::spawn(read_replies(BufReader::new(read), replies_tx));
        let _stop_reading = AbortOnDrop(reading.abort_handle());
        let mut pending = VecDeque::new();
        let mut out = self.hello(&mut pending);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut silent = 0u32;
        loop {
            if !out.is_empty() {
                if let Err(err) = write.write_all(&out).await {
                    return err;
                }
                out.clear();
            }
            tokio::select! {
                op = self.rx.recv() => {
                    let Some(op) = op else {
                        return io::Error::other("backplane dropped");
                    };
                    self.apply(&op);
                    self.command(&op, &mut out, &mut pending);
                    for _ in 1..BATCH {
                        let Ok(op) = self.rx.try_recv() else { break };
                        self.apply(&op);
                        self.command(&op, &mut out, &mut pending);
                    }
                }
                reply = replies.recv() => {
                    silent = 0;
                    match reply {
                        Some(Ok(reply)) => if let Err(err) = self.answer(reply, &mut pending) {
                            return err;
                        },
                        Some(Err(err)) => return err,
                        None => return io::ErrorKind::UnexpectedEof.into(),
                    }
                }
                _ = ping.tick() => {
                    silent += 1;
                    if silent > 2 {
                        return io::Error::new(io::ErrorKind::TimedOut, "no answer to PING");
                    }
                    ::redis::cmd("PING").write_packed_command(&mut out);
                    pending.push_back(Pending::Ping);
                }
            }
        }
    }

    /// What a new connection sends first: `AUTH` if the URL has a password, then a
    /// subscribe for every channel of the node.
    fn hello(&self, pending: &mut VecDeque<Pending>) -> Vec<u8> {
        let mut out = Vec::new();
        let settings = self.info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = ::redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password).write_packed_command(&mut out);
            pending.push_back(Pending::Auth);
        }
        for (channel, gen) in &self.channels {
            let op = Op::Subscribe {
                channel: channel.clone(),
                gen: *gen,
            };
            self.command(&op, &mut out, pending);
        }
        out
    }

    /// One reply or push from Redis.
    fn answer(&mut self, reply: Resp, pending: &mut VecDeque<Pending>) -> io::Result<()> {
        let items = match reply {
            Resp::Array(items) => items,
            Resp::Error(err) => {
                return match pending.pop_front() {
                    Some(Pending::Subscribe(channel, gen)) => {
                        self.channels.remove(&channel);
                        self.mailboxes.fail(&channel, gen, err);
                        Ok(())
                    }
                    Some(Pending::Auth) => Err(io::Error::other(format!("AUTH: {err}"))),
                    _ => Ok(()),
                };
            }
            // `+OK` to AUTH, `+PONG` outside subscribed mode.
            _ => {
                pending.pop_front();
                return Ok(());
            }
        };
        let kind = items.first().and_then(Resp::bytes).unwrap_or_default();
        let channel = items.get(1).and_then(Resp::bytes).unwrap_or_default();
        match kind {
            b"message" | b"smessage" => {
                if let Some(record) = items.get(2).and_then(Resp::bytes).and_then(record) {
                    self.mailboxes.deliver(channel, record);
                }
            }
            b"subscribe" | b"ssubscribe" => {
                if let Some(Pending::Subscribe(channel, gen)) = pending.pop_front() {
                    self.mailboxes.confirm(&channel, gen);
                }
            }
            b"unsubscribe" | b"sunsubscribe" => {
                let ours = matches!(pending.front(), Some(Pending::Unsubscribe(c)) if c.as_bytes() == channel);
                if ours {
                    pending.pop_front();
                } else {
                    self.dropped_by_redis(channel);
                }
            }
            b"pong" => {
                pending.pop_front();
            }
            _ => {}
        }
        Ok(())
    }

    /// Redis dropped a subscription by itself (its slot moved to another node): the
    /// topic reads again from the stream; its reader opens it again where it now is.
    fn dropped_by_redis(&mut self, channel: &[u8]) {
        let Ok(channel) = std::str::from_utf8(channel) else {
            return;
        };
        tracing::warn!(
            node = self.node,
            channel,
            "hub backplane: subscription dropped by redis"
        );
        if let Some((channel, gen)) = self.channels.remove_entry(channel) {
            if self.mailboxes.gen_on(&channel, self.node) == Some(gen) {
                self.mailboxes
                    .fail(&channel, gen, "subscription dropped by redis".to_owned());
            }
        }
    }
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads replies into `tx` until the connection fails (the error is sent last).
async fn read_replies(
    mut read: BufReader<tokio::io::ReadHalf<Box<dyn Io>>>,
    tx: mpsc::Sender<io::Result<Resp>>,
) {
    loop {
        let reply = resp::read(&mut read).await;
        let failed = reply.is_err();
        if tx.send(reply).await.is_err() || failed {
            return;
        }
    }
}

/// A message as the publish script sends it: `<id>\n<event bytes>`.
fn record(payload: &[u8]) -> Option<Record> {
    let split = memchr::memchr(b'\n', payload)?;
    let id = std::str::from_utf8(&payload[..split]).ok()?;
    Some(Record::new(
        id,
        Bytes::copy_from_slice(&payload[split + 1..]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_at_the_first_line_break() {
        let rec = record(b"1-2\ndata: a\n\n").unwrap();
        assert_eq!(&*rec.id, "1-2");
        assert_eq!(&rec.bytes[..], b"data: a\n\n");
        assert!(record(b"no line break").is_none());
        assert!(record(b"\xff\ndata: a\n\n").is_none());
    }
}
