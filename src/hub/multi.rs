//! Several topics on one stream: [`MultiSubscription`], one [`Subscription`] per topic
//! merged round-robin, each event named after its topic and carrying one id that
//! holds the position in every topic.

use std::{
    convert::Infallible,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;

use super::{
    cursor::{self, Position},
    subscription::{Resume, Subscription},
    Inner,
};
use crate::{EncodedEvent, LastEventId, Message};

/// Why [`Hub::subscribe_many`](super::Hub::subscribe_many) refused a topic list.
///
/// ```
/// use tower_sse::hub::{Hub, TopicsError};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hub = Hub::new();
/// let err = hub.subscribe_many(&["a", "a"], None).await.unwrap_err();
/// assert!(matches!(err, TopicsError::Duplicate { .. }));
/// assert_eq!(err.to_string(), "topic `a` is listed twice");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicsError {
    /// The list is empty.
    Empty,
    /// More than [`MultiSubscription::MAX_TOPICS`] topics.
    TooMany {
        /// Topics in the list.
        count: usize,
    },
    /// A name that cannot be an SSE event name: empty, or with a line break.
    BadName {
        /// The name, as given.
        topic: String,
    },
    /// A topic listed twice.
    Duplicate {
        /// The name.
        topic: String,
    },
}

impl fmt::Display for TopicsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no topic to subscribe to"),
            Self::TooMany { count } => write!(
                f,
                "{count} topics, more than {} on one stream",
                cursor::MAX_TOPICS
            ),
            Self::BadName { topic } => write!(f, "topic {topic:?} cannot be an event name"),
            Self::Duplicate { topic } => write!(f, "topic `{topic}` is listed twice"),
        }
    }
}

impl std::error::Error for TopicsError {}

/// One topic of a [`MultiSubscription`].
struct Lane {
    sub: Subscription,
    /// Where the client stands in this topic, as written in the ids.
    position: String,
}

/// A subscriber's stream of several hub topics on one connection, with **one
/// resumable position**: made by [`Hub::subscribe_many`](super::Hub::subscribe_many).
///
/// - Each event is the topic's shared event with `event: <topic>` (replacing the
///   publisher's event name) and an `id` that holds the position in every topic. A
///   browser dispatches it to `addEventListener("<topic>", …)`.
/// - The `Last-Event-ID` a client sends back resumes **every** topic exactly where it
///   stopped: in each topic, the events after the last one it saw (or, for a topic it
///   saw nothing of, after the last one before it subscribed), in order, then the live
///   ones; no duplicate, no gap. Each topic resumes as
///   [`Hub::subscribe`](super::Hub::subscribe) does, so with a backplane from the
///   local history or from the backplane.
/// - Ready topics take turns (round-robin): a busy topic cannot hold back the others.
/// - When one topic's subscriber falls behind the whole history (with
///   [`Lag::End`](super::Lag::End)) the whole stream ends; the client reconnects and
///   that topic resumes as [`Resume::Unknown`].
///
/// **Ids.** `<set>.<p1>.<p2>…`: a base-36 hash of the topic list, then one position
/// per topic in the list's order: the topic's last event id, written in base 36 when it
/// is a number or a pair `<ms>-<seq>` (Redis), as it is when it is at most 32
/// characters from `[A-Za-z0-9_-]`, `*` otherwise (that topic then resumes as
/// unknown). At most [`MAX_TOPICS`](Self::MAX_TOPICS) topics, so an id is at most
/// [`MAX_ID_LEN`](Self::MAX_ID_LEN) bytes (2,183); with hub-assigned ids a topic takes
/// 2 to 5 bytes, with Redis ids about 11. An id longer than that, of another topic
/// list (other topics, or the same in another order), or otherwise malformed resumes
/// the topics it cannot place as [`Resume::Unknown`]; it never fails the subscription.
///
/// **Limits.** A client that saw no event at all has no id to send back: it comes back
/// live, as with one topic. With a backplane, a topic whose log was empty when the
/// client subscribed, and of which it has seen no event, resumes as
/// [`Resume::Unknown`] (the backplane cannot tell what was trimmed since); in process
/// it resumes from the topic's first event.
///
/// **Cost.** Unlike a [`Subscription`], whose events are the shared bytes, each event
/// is copied once per subscriber (its id is that subscriber's own).
///
/// ```
/// use futures_util::StreamExt as _;
/// use tower_sse::{hub::{Hub, Resume}, Encode as _, Event, LastEventId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::new();
/// let mut sub = hub.subscribe_many(&["prices", "news"], None).await?;
/// hub.publish("news", Event::new().data("hello")).await?;
/// hub.publish("prices", Event::new().data("100")).await?;
///
/// let first = sub.next().await.unwrap()?.into_bytes();
/// let text = std::str::from_utf8(&first)?;
/// assert!(text.ends_with("\nevent: prices\ndata: 100\n\n"));
/// let id = text.strip_prefix("id: ").and_then(|t| t.split('\n').next()).unwrap();
///
/// // Cut here: the client comes back with the last id it saw and gets `news` only.
/// drop(sub);
/// let mut again = hub.subscribe_many(&["prices", "news"], Some(&LastEventId::new(id))).await?;
/// assert_eq!(again.resume(), Resume::Replay { missed: 1 });
/// let next = again.next().await.unwrap()?.into_bytes();
/// assert!(next.ends_with(b"\nevent: news\ndata: hello\n\n"));
/// # Ok(())
/// # }
/// ```
pub struct MultiSubscription {
    /// The hash of the topic list, first in every id.
    set: String,
    lanes: Vec<Lane>,
    /// The lane polled first next time (round-robin).
    next: usize,
    ended: bool,
}

impl MultiSubscription {
    /// Topics on one stream, at most.
    pub const MAX_TOPICS: usize = cursor::MAX_TOPICS;
    /// The longest id this stream sends, in bytes.
    pub const MAX_ID_LEN: usize = cursor::MAX_ID_LEN;

    /// Checks `topics`: 1 to [`MAX_TOPICS`](Self::MAX_TOPICS) distinct names, each
    /// non-empty and without a line break.
    pub(super) fn check<S: AsRef<str>>(topics: &[S]) -> Result<(), TopicsError> {
        if topics.is_empty() {
            return Err(TopicsError::Empty);
        }
        if topics.len() > cursor::MAX_TOPICS {
            return Err(TopicsError::TooMany {
                count: topics.len(),
            });
        }
        for (i, topic) in topics.iter().enumerate() {
            let topic = topic.as_ref();
            if topic.is_empty() || memchr::memchr2(b'\n', b'\r', topic.as_bytes()).is_some() {
                return Err(TopicsError::BadName {
                    topic: topic.to_owned(),
                });
            }
            if topics[..i].iter().any(|t| t.as_ref() == topic) {
                return Err(TopicsError::Duplicate {
                    topic: topic.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Subscribes to every topic of `topics` (checked) at the positions `last` holds.
    pub(super) async fn open<S: AsRef<str>>(
        hub: &Arc<Inner>,
        topics: &[S],
        last: Option<&LastEventId>,
    ) -> Self {
        let set = cursor::set_hash(topics);
        let positions: Vec<Option<Position>> = match last {
            None => vec![None; topics.len()],
            Some(id) => match cursor::parse(id.as_str(), &set, topics.len()) {
                Some(positions) => positions.into_iter().map(Some).collect(),
                None => vec![Some(Position::Unknown); topics.len()],
            },
        };
        let mut lanes = Vec::with_capacity(topics.len());
        for (topic, position) in topics.iter().zip(&positions) {
            let topic = hub.join(topic.as_ref());
            let sub = Subscription::open(hub.clone(), topic, position.as_ref()).await;
            // Replaying: from where the client stands. Otherwise: from where the
            // subscriber starts.
            let start = match (sub.resume(), position) {
                (Resume::Replay { .. }, Some(position)) => position.clone(),
                _ => sub.position(),
            };
            let mut text = String::new();
            cursor::push_position(&mut text, &start);
            lanes.push(Lane {
                sub,
                position: text,
            });
        }
        Self {
            set,
            lanes,
            next: 0,
            ended: false,
        }
    }

    /// How the subscription started, over all its topics: [`Resume::Unknown`] if any
    /// topic started from an unknown position, else [`Resume::Replay`] with the events
    /// replayed in all of them if any, else [`Resume::Live`]. See
    /// [`resumes`](Self::resumes) for each topic's.
    pub fn resume(&self) -> Resume {
        self.resumes()
            .fold(Resume::Live, |all, (_, resume)| match (all, resume) {
                (Resume::Unknown, _) | (_, Resume::Unknown) => Resume::Unknown,
                (Resume::Replay { missed: a }, Resume::Replay { missed: b }) => {
                    Resume::Replay { missed: a + b }
                }
                (Resume::Replay { missed }, Resume::Live)
                | (Resume::Live, Resume::Replay { missed }) => Resume::Replay { missed },
                (Resume::Live, Resume::Live) => Resume::Live,
            })
    }

    /// Each topic, in the order given, with how it started.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::hub::TopicsError> {
    /// use tower_sse::{hub::{Hub, Resume}, LastEventId};
    /// let hub = Hub::new();
    /// let stale = LastEventId::new("not-an-id-of-this-list");
    /// let sub = hub.subscribe_many(&["a", "b"], Some(&stale)).await?;
    /// for (topic, resume) in sub.resumes() {
    ///     assert_eq!(resume, Resume::Unknown, "{topic}: send a full refresh first");
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn resumes(&self) -> impl Iterator<Item = (&str, Resume)> + '_ {
        self.lanes
            .iter()
            .map(|lane| (lane.sub.topic(), lane.sub.resume()))
    }

    /// The id of the position reached so far (the `id` of the last event sent).
    fn id(&self) -> String {
        let len = self
            .lanes
            .iter()
            .map(|l| l.position.len() + 1)
            .sum::<usize>();
        let mut id = String::with_capacity(self.set.len() + len);
        id.push_str(&self.set);
        for lane in &self.lanes {
            id.push('.');
            id.push_str(&lane.position);
        }
        id
    }

    /// `message` from lane `i`, with the lane's position moved past it, named after the
    /// topic and carrying the new id.
    fn tag(&mut self, i: usize, message: Message) -> Message {
        match message {
            Message::Encoded(encoded) => {
                let bytes = encoded.into_bytes();
                let lane = &mut self.lanes[i];
                lane.position.clear();
                let position = id_of(&bytes).map_or(Position::Unknown, Position::After);
                cursor::push_position(&mut lane.position, &position);
                let id = self.id();
                let topic = self.lanes[i].sub.topic();
                Message::Encoded(EncodedEvent::from_encoded(retag(&bytes, &id, topic)))
            }
            // A lag notice: the position stays (the lost events are not replayable).
            Message::Event(event) => {
                let topic = self.lanes[i].sub.topic().to_owned();
                let event = event.clone().event(topic).unwrap_or(event);
                // The id is ASCII without line breaks: `id` cannot fail.
                Message::Event(event.clone().id(self.id()).unwrap_or(event))
            }
        }
    }
}

/// The value of the `id` field of an encoded event block.
fn id_of(block: &[u8]) -> Option<Arc<str>> {
    let line = block
        .split(|&b| b == b'\n')
        .find(|line| *line == b"id" || line.starts_with(b"id:"))?;
    let value = line.get(3..).unwrap_or_default();
    let value = value.strip_prefix(b" ").unwrap_or(value);
    std::str::from_utf8(value).ok().map(Arc::from)
}

/// `block` (one encoded event) with its `id` and `event` lines replaced by `id: <id>`
/// and `event: <topic>`.
fn retag(block: &[u8], id: &str, topic: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(block.len() + id.len() + topic.len() + 12);
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\nevent: ");
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(b"\n");
    let field = |line: &[u8], name: &[u8]| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b':')
    };
    for line in block.split(|&b| b == b'\n') {
        if line.is_empty() || field(line, b"id") || field(line, b"event") {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

impl Stream for MultiSubscription {
    type Item = Result<Message, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let n = this.lanes.len();
        for k in 0..n {
            let i = (this.next + k) % n;
            match Pin::new(&mut this.lanes[i].sub).poll_next(cx) {
                Poll::Ready(Some(Ok(message))) => {
                    // The next poll starts with the next topic: ready topics take turns.
                    this.next = (i + 1) % n;
                    return Poll::Ready(Some(Ok(this.tag(i, message))));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

impl fmt::Debug for MultiSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiSubscription")
            .field("topics", &self.resumes().collect::<Vec<_>>())
            .field("id", &self.id())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_retagged_with_their_topic_and_the_new_id() {
        let block = b": c\nid: 7\nevent: old\ndata: id: 9\ndata: event: x\nretry: 5\n\n";
        assert_eq!(id_of(block).as_deref(), Some("7"));
        assert_eq!(
            &retag(block, "s.7.", "t")[..],
            &b"id: s.7.\nevent: t\n: c\ndata: id: 9\ndata: event: x\nretry: 5\n\n"[..]
        );
        assert_eq!(id_of(b"data: x\n\n"), None);
        assert_eq!(id_of(b"id\n\n").as_deref(), Some(""));
        assert_eq!(&retag(b"\n", "i", "t")[..], b"id: i\nevent: t\n\n");
    }
}
