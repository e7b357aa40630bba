use std::{
    cmp::Ordering,
    collections::VecDeque,
    convert::Infallible,
    fmt,
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::Stream;

use super::{
    backplane::Backplane,
    cursor::Position,
    framing,
    topic::{Read, Topic},
    Inner, Lag,
};
use crate::{EncodedEvent, LastEventId, Message};

/// How a [`Subscription`] started, against the client's `Last-Event-ID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No `Last-Event-ID`: only new events.
    Live,
    /// The id is in the history: the `missed` events after it come first.
    Replay {
        /// Events published after the client's last one, replayed now.
        missed: u64,
    },
    /// The id is not in the history (too old, or from elsewhere): the client has
    /// missed an unknown number of events. Send it a full refresh first. (With a
    /// backplane: neither here nor in the backplane, or the backplane is unreachable.)
    Unknown,
}

/// A subscriber's stream of a hub topic: `Result<Message, Infallible>` items, each an
/// [`EncodedEvent`] shared with every other subscriber. See the
/// [module docs](super).
pub struct Subscription {
    hub: Arc<Inner>,
    topic: Arc<Topic>,
    key: usize,
    /// The `seq` of the next event to deliver.
    cursor: u64,
    resume: Resume,
    ended: bool,
    /// Backplane replay: events fetched from the backplane, sent before the history.
    replayed: VecDeque<Bytes>,
    /// Backplane replay: history entries up to this id were replayed, so skipped.
    skip_through: Option<Arc<str>>,
}

impl Subscription {
    /// A subscriber of `topic` (already counted in its `subscribers`), not yet placed.
    pub(super) fn register(hub: Arc<Inner>, topic: Arc<Topic>) -> Self {
        let key = topic.lock().register();
        Self {
            hub,
            topic,
            key,
            cursor: 0,
            resume: Resume::Live,
            ended: false,
            replayed: VecDeque::new(),
            skip_through: None,
        }
    }

    /// Places the cursor after `last` in the local history (or at its end).
    pub(super) fn start(mut self, last: Option<&LastEventId>) -> Self {
        let state = self.topic.lock();
        let live = state.next_seq();
        let (cursor, resume) = match last {
            None => (live, Resume::Live),
            Some(id) => match state.after_id(id.as_str()) {
                Some(after) => (
                    after,
                    Resume::Replay {
                        missed: live - after,
                    },
                ),
                None => (live, Resume::Unknown),
            },
        };
        drop(state);
        self.cursor = cursor;
        self.resume = resume;
        self
    }

    /// With a backplane: waits until the topic's reader knows where it starts (so that
    /// nothing published from now on is missed), places the cursor in the local
    /// history, and if `last` is not there, replays what the backplane has after it.
    pub(super) async fn attach(
        self,
        backplane: Arc<dyn Backplane>,
        last: Option<&LastEventId>,
    ) -> Self {
        if let Some(feed) = self.topic.feed.get() {
            feed.ready().await;
        }
        let mut sub = self.start(last);
        if let (Resume::Unknown, Some(last)) = (sub.resume, last) {
            sub.replay(&*backplane, last.as_str()).await;
        }
        sub
    }

    /// Fetches the records after `last` from the backplane, to send first; then the
    /// history goes on from its first entry after the last of them.
    async fn replay(&mut self, backplane: &dyn Backplane, last: &str) {
        let records = match backplane.range(&self.topic.name, last).await {
            Ok(Some(records)) => records,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(
                    topic = %self.topic.name, error = %err,
                    "hub backplane: replay failed; resuming from an unknown id"
                );
                return;
            }
        };
        let through: Arc<str> = records.last().map_or_else(|| last.into(), |r| r.id.clone());
        self.replayed = records
            .iter()
            .filter_map(|record| framing::frame(&self.topic.name, &record.id, &record.bytes))
            .collect();
        self.resume = Resume::Replay {
            missed: records.len() as u64,
        };
        // The reader appends in the backplane's order: the entries after `through` are
        // at the end of the history (or still to come).
        let state = self.topic.lock();
        let mut cursor = state.next_seq();
        for entry in state.entries().rev() {
            if backplane.compare_ids(&entry.id, &through) != Some(Ordering::Greater) {
                break;
            }
            cursor = entry.seq;
        }
        drop(state);
        self.cursor = cursor;
        self.skip_through = Some(through);
    }

    /// Starts a subscriber of `topic` (already counted) at `position` (`None`: live),
    /// as [`Hub::subscribe`](super::Hub::subscribe) does with an id;
    /// [`Position::Beginning`] replays the whole history if it still starts at the
    /// topic's first event (in process; with a backplane it is unknown), and
    /// [`Position::Unknown`] starts live with [`Resume::Unknown`].
    pub(super) async fn open(
        hub: Arc<Inner>,
        topic: Arc<Topic>,
        position: Option<&Position>,
    ) -> Self {
        let sub = Self::register(hub.clone(), topic);
        let last = match position {
            Some(Position::After(id)) => Some(LastEventId::new(id.to_string())),
            _ => None,
        };
        let mut sub = match &hub.backplane {
            None => sub.start(last.as_ref()),
            Some(backplane) => sub.attach(backplane.clone(), last.as_ref()).await,
        };
        match position {
            None | Some(Position::After(_)) => {}
            Some(Position::Unknown) => sub.resume = Resume::Unknown,
            Some(Position::Beginning) => {
                let state = sub.topic.lock();
                let (first, next) = (state.entries().next().map(|e| e.seq), state.next_seq());
                drop(state);
                sub.resume = match (&hub.backplane, first.unwrap_or(next)) {
                    (None, 0) => {
                        sub.cursor = 0;
                        Resume::Replay { missed: next }
                    }
                    _ => Resume::Unknown,
                };
            }
        }
        sub
    }

    /// Where this subscriber stands before its next event, if it has not replayed
    /// anything: after the history entry before its cursor; before the topic's first
    /// event (in process) or after the backplane position its reader started from;
    /// otherwise unknown.
    pub(super) fn position(&self) -> Position {
        if self.cursor == 0 {
            return match self.topic.feed.get() {
                None => Position::Beginning,
                Some(feed) => feed.start().map_or(Position::Unknown, Position::After),
            };
        }
        match self.topic.lock().read(self.cursor - 1) {
            Read::Entry(entry) => Position::After(entry.id),
            Read::Lagged(_) | Read::Empty => Position::Unknown,
        }
    }

    /// How this subscription started: live, replaying, or from an unknown id.
    pub fn resume(&self) -> Resume {
        self.resume
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic.name
    }
}

impl Stream for Subscription {
    type Item = Result<Message, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        if let Some(bytes) = this.replayed.pop_front() {
            return Poll::Ready(Some(Ok(Message::Encoded(EncodedEvent::from_encoded(
                bytes,
            )))));
        }
        let mut state = this.topic.lock();
        let mut read = state.read(this.cursor);
        // After a backplane replay: skip what it delivered (the history may have it too).
        if let Some(through) = &this.skip_through {
            let replayed = |id: &str| {
                this.hub.backplane.as_ref().is_some_and(|backplane| {
                    matches!(
                        backplane.compare_ids(id, through),
                        Some(Ordering::Less | Ordering::Equal)
                    )
                })
            };
            // Pruned from the history but replayed: not lost.
            if let (Read::Lagged(_), Some(first)) = (&read, state.entries().next()) {
                if replayed(&first.id) {
                    this.cursor = first.seq;
                    read = state.read(this.cursor);
                }
            }
            loop {
                match &read {
                    Read::Entry(entry) if replayed(&entry.id) => {
                        this.cursor = entry.seq + 1;
                        read = state.read(this.cursor);
                    }
                    Read::Entry(_) => {
                        this.skip_through = None;
                        break;
                    }
                    _ => break,
                }
            }
        }
        match read {
            Read::Entry(entry) => {
                this.cursor = entry.seq + 1;
                Poll::Ready(Some(Ok(Message::Encoded(EncodedEvent::from_encoded(
                    entry.bytes,
                )))))
            }
            Read::Lagged(lost) => {
                this.topic.lagged.fetch_add(1, Relaxed);
                tracing::debug!(topic = %this.topic.name, lost, "hub subscriber lagged");
                match &this.hub.lag {
                    Lag::End => {
                        drop(state);
                        this.ended = true;
                        Poll::Ready(None)
                    }
                    Lag::Event(gap) => {
                        this.cursor += lost;
                        drop(state);
                        Poll::Ready(Some(Ok(Message::Event(gap(lost)))))
                    }
                }
            }
            Read::Empty => {
                state.park(this.key, cx.waker());
                Poll::Pending
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.topic.lock().unregister(self.key);
        self.topic.subscribers.fetch_sub(1, Relaxed);
        self.hub.release(&self.topic);
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic.name)
            .field("cursor", &self.cursor)
            .field("resume", &self.resume)
            .finish()
    }
}
