use std::{
    convert::Infallible,
    fmt,
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc},
    task::{Context, Poll},
};

use futures_core::Stream;

use super::{
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
    /// missed an unknown number of events. Send it a full refresh first.
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
}

impl Subscription {
    pub(super) fn new(hub: Arc<Inner>, topic: Arc<Topic>, last: Option<&LastEventId>) -> Self {
        topic.subscribers.fetch_add(1, Relaxed);
        let mut state = topic.lock();
        let key = state.register();
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
        Self {
            hub,
            topic,
            key,
            cursor,
            resume,
            ended: false,
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
        let mut state = this.topic.lock();
        match state.read(this.cursor) {
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
