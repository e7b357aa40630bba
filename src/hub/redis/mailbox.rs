//! The topics this instance follows on the live (Pub/Sub) connections: for each, the
//! records received live and not yet read, and where the reader stands.
//!
//! The seam between history and live (Centrifugo's design): a topic's channel is
//! subscribed first; once Redis confirms, the reader reads the stream (`XRANGE`) after
//! its last id ("catch-up"); from then on it takes the records received live, after
//! dropping those the catch-up already returned (ids are ordered). A lost live
//! connection, a buffer that overflowed or a reader that asks from another position
//! sends it back to catch-up: nothing is lost, nothing is delivered twice.

use std::{
    cmp::Ordering,
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;

use super::super::{backplane::Record, framing::compare_ids};
use crate::sync;

/// Records buffered for a topic whose reader does not take them; past it the buffer is
/// dropped and the reader catches up from the stream.
pub(super) const MAX_BUFFERED: usize = 4096;

/// A subscribe request for the live connection of node `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    /// Subscribe `channel` for the mailbox of generation `gen`.
    Subscribe { channel: Arc<str>, gen: u64 },
    /// Unsubscribe `channel`.
    Unsubscribe { channel: Arc<str> },
}

struct Mailbox {
    /// Tells one subscription of the channel from the next.
    gen: u64,
    node: usize,
    /// Redis confirmed the subscription (and it has not been lost since).
    confirmed: bool,
    /// Bumped when the subscription is lost: a catch-up begun before it is stale.
    epoch: u64,
    /// The last id handed to the reader; `None`: the next read catches up.
    cursor: Option<Arc<str>>,
    buffered: VecDeque<Record>,
    /// The subscription failed (an error answer): the next read reports it.
    failed: Option<String>,
    notify: Arc<Notify>,
}

/// What a read does next.
#[derive(Debug)]
pub(super) enum Next {
    /// These records (after the reader's position).
    Records(Vec<Record>),
    /// Read the stream after the reader's position, then call
    /// [`Mailboxes::caught_up`] with this epoch.
    CatchUp(u64),
    /// Nothing yet (or the subscription is not confirmed yet): wait for the notify.
    Wait { confirmed: bool },
    /// The subscription failed.
    Failed(String),
    /// The mailbox is gone (released meanwhile): open it again.
    Gone,
}

/// Every followed topic, by channel (the stream's key).
#[derive(Default)]
pub(super) struct Mailboxes {
    map: Mutex<HashMap<Arc<str>, Mailbox>>,
    next_gen: std::sync::atomic::AtomicU64,
}

impl Mailboxes {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Mailbox>> {
        sync::lock(&self.map)
    }

    /// The mailbox of `channel` (its generation and notify), opened if needed: then
    /// `send` gets the subscribe request for the node `route` names, under the lock
    /// (requests reach a node in the order of the map's changes).
    pub(super) fn open(
        &self,
        channel: &str,
        route: impl FnOnce() -> usize,
        send: impl FnOnce(usize, Op),
    ) -> (u64, Arc<Notify>) {
        let mut map = self.map();
        if let Some(mailbox) = map.get(channel) {
            return (mailbox.gen, mailbox.notify.clone());
        }
        let gen = self
            .next_gen
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let node = route();
        let channel: Arc<str> = channel.into();
        let notify = Arc::new(Notify::new());
        send(
            node,
            Op::Subscribe {
                channel: channel.clone(),
                gen,
            },
        );
        map.insert(
            channel,
            Mailbox {
                gen,
                node,
                confirmed: false,
                epoch: 0,
                cursor: None,
                buffered: VecDeque::new(),
                failed: None,
                notify: notify.clone(),
            },
        );
        (gen, notify)
    }

    /// Forgets `channel` (its last local subscriber left); `send` gets the unsubscribe
    /// request, under the lock.
    pub(super) fn release(&self, channel: &str, send: impl FnOnce(usize, Op)) {
        let mut map = self.map();
        if let Some((channel, mailbox)) = map.remove_entry(channel) {
            send(mailbox.node, Op::Unsubscribe { channel });
            mailbox.notify.notify_waiters();
        }
    }

    /// Channels followed now.
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }

    /// What the reader at `after` of the mailbox `gen` of `channel` does next.
    pub(super) fn next(&self, channel: &str, gen: u64, after: &str) -> Next {
        let mut map = self.map();
        let Some(mailbox) = map.get_mut(channel).filter(|m| m.gen == gen) else {
            return Next::Gone;
        };
        if let Some(err) = mailbox.failed.take() {
            map.remove(channel);
            return Next::Failed(err);
        }
        if !mailbox.confirmed {
            return Next::Wait { confirmed: false };
        }
        if mailbox.cursor.as_deref() != Some(after) {
            return Next::CatchUp(mailbox.epoch);
        }
        // Strictly after the reader: the catch-up may have returned some already.
        while let Some(front) = mailbox.buffered.front() {
            if is_after(&front.id, after) {
                break;
            }
            mailbox.buffered.pop_front();
        }
        if mailbox.buffered.is_empty() {
            return Next::Wait { confirmed: true };
        }
        let records: Vec<Record> = mailbox.buffered.drain(..).collect();
        mailbox.cursor = records.last().map(|r| r.id.clone());
        Next::Records(records)
    }

    /// The catch-up begun at `epoch` read `records` after `after` (`full`: it stopped at
    /// its count; there may be more).
    pub(super) fn caught_up(
        &self,
        channel: &str,
        gen: u64,
        epoch: u64,
        after: &str,
        records: &[Record],
        full: bool,
    ) {
        let mut map = self.map();
        let Some(mailbox) = map.get_mut(channel).filter(|m| m.gen == gen) else {
            return;
        };
        if mailbox.epoch != epoch || !mailbox.confirmed {
            return;
        }
        let last: Arc<str> = records
            .last()
            .map_or_else(|| after.into(), |r| r.id.clone());
        mailbox
            .buffered
            .retain(|record| is_after(&record.id, &last));
        mailbox.cursor = (!full).then_some(last);
    }

    /// Redis confirmed the subscription of generation `gen`.
    pub(super) fn confirm(&self, channel: &str, gen: u64) {
        if let Some(mailbox) = self.map().get_mut(channel).filter(|m| m.gen == gen) {
            mailbox.confirmed = true;
            mailbox.notify.notify_waiters();
        }
    }

    /// The subscription of generation `gen` failed with `err`.
    pub(super) fn fail(&self, channel: &str, gen: u64, err: String) {
        if let Some(mailbox) = self.map().get_mut(channel).filter(|m| m.gen == gen) {
            mailbox.failed = Some(err);
            mailbox.notify.notify_waiters();
        }
    }

    /// A record received live on `channel`.
    pub(super) fn deliver(&self, channel: &[u8], record: Record) {
        let Ok(channel) = std::str::from_utf8(channel) else {
            return;
        };
        if let Some(mailbox) = self.map().get_mut(channel) {
            if !mailbox.confirmed {
                return;
            }
            if mailbox.buffered.len() >= MAX_BUFFERED {
                // The reader does not keep up: it reads the stream instead.
                mailbox.buffered.clear();
                mailbox.cursor = None;
            }
            mailbox.buffered.push_back(record);
            mailbox.notify.notify_waiters();
        }
    }

    /// The subscriptions of `channels` are lost (the live connection broke, or Redis
    /// dropped them): each is unconfirmed until subscribed again, then catches up.
    pub(super) fn lost<'a>(&self, channels: impl IntoIterator<Item = &'a Arc<str>>) {
        let mut map = self.map();
        for channel in channels {
            if let Some(mailbox) = map.get_mut(channel) {
                mailbox.confirmed = false;
                mailbox.epoch += 1;
                mailbox.cursor = None;
                mailbox.buffered.clear();
                mailbox.notify.notify_waiters();
            }
        }
    }

    /// The generation of `channel`'s mailbox, if it is open on `node`.
    pub(super) fn gen_on(&self, channel: &str, node: usize) -> Option<u64> {
        self.map()
            .get(channel)
            .filter(|m| m.node == node)
            .map(|m| m.gen)
    }
}

/// `id` comes after `last` (ids that do not compare are kept).
fn is_after(id: &str, last: &str) -> bool {
    !matches!(
        compare_ids(id, last),
        Some(Ordering::Less | Ordering::Equal)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> Record {
        Record::new(id, "data: x\n\n")
    }

    fn ids(next: Next) -> Vec<String> {
        match next {
            Next::Records(records) => records.iter().map(|r| r.id.to_string()).collect(),
            other => panic!("records expected, got {other:?}"),
        }
    }

    #[test]
    fn the_seam_neither_loses_nor_repeats() {
        let boxes = Mailboxes::default();
        let mut sent = Vec::new();
        let (gen, _) = boxes.open("c", || 0, |node, op| sent.push((node, op)));
        assert!(matches!(sent[0].1, Op::Subscribe { .. }));
        assert!(matches!(
            boxes.next("c", gen, "1-0"),
            Next::Wait { confirmed: false }
        ));
        // Live before the confirmation: not ours (the catch-up reads it).
        boxes.deliver(b"c", rec("1-1"));
        boxes.confirm("c", gen);
        let Next::CatchUp(epoch) = boxes.next("c", gen, "1-0") else {
            panic!("catch-up first");
        };
        // While the catch-up reads 1-1 and 1-2, 1-2 and 1-3 arrive live.
        boxes.deliver(b"c", rec("1-2"));
        boxes.deliver(b"c", rec("1-3"));
        boxes.caught_up("c", gen, epoch, "1-0", &[rec("1-1"), rec("1-2")], false);
        assert_eq!(ids(boxes.next("c", gen, "1-2")), ["1-3"]);
        assert!(matches!(
            boxes.next("c", gen, "1-3"),
            Next::Wait { confirmed: true }
        ));
        // A reader elsewhere (a new reader of the topic) catches up again.
        assert!(matches!(boxes.next("c", gen, "1-1"), Next::CatchUp(_)));
    }

    #[test]
    fn a_lost_subscription_catches_up_and_a_stale_catch_up_is_ignored() {
        let boxes = Mailboxes::default();
        let (gen, _) = boxes.open("c", || 0, |_, _| {});
        boxes.confirm("c", gen);
        let Next::CatchUp(epoch) = boxes.next("c", gen, "1-0") else {
            panic!()
        };
        boxes.lost([&Arc::from("c")]);
        boxes.caught_up("c", gen, epoch, "1-0", &[rec("1-1")], false);
        boxes.confirm("c", gen);
        assert!(matches!(boxes.next("c", gen, "1-1"), Next::CatchUp(e) if e == epoch + 1));
    }

    #[test]
    fn overflow_and_failure_and_release() {
        let boxes = Mailboxes::default();
        let (gen, _) = boxes.open("c", || 3, |_, _| {});
        assert_eq!(boxes.gen_on("c", 3), Some(gen));
        assert_eq!(boxes.gen_on("c", 0), None);
        boxes.confirm("c", gen);
        let Next::CatchUp(epoch) = boxes.next("c", gen, "0-0") else {
            panic!()
        };
        boxes.caught_up("c", gen, epoch, "0-0", &[], false);
        for i in 1..=MAX_BUFFERED + 1 {
            boxes.deliver(b"c", rec(&format!("1-{i}")));
        }
        // The buffer overflowed: back to the stream.
        assert!(matches!(boxes.next("c", gen, "0-0"), Next::CatchUp(_)));
        boxes.fail("c", gen, "MOVED".into());
        assert!(matches!(boxes.next("c", gen, "0-0"), Next::Failed(_)));
        assert!(matches!(boxes.next("c", gen, "0-0"), Next::Gone));
        let (gen2, _) = boxes.open("c", || 0, |_, _| {});
        assert_ne!(gen, gen2);
        // A stale confirmation does not confirm the new subscription.
        boxes.confirm("c", gen);
        assert!(matches!(
            boxes.next("c", gen2, "0-0"),
            Next::Wait { confirmed: false }
        ));
        let mut sent = Vec::new();
        boxes.release("c", |node, op| sent.push((node, op)));
        assert_eq!(
            sent,
            [(
                0,
                Op::Unsubscribe {
                    channel: "c".into()
                }
            )]
        );
        assert_eq!(boxes.len(), 0);
    }
}
