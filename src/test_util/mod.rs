//! Reading an SSE response in tests (feature `test-util`): events parsed as a browser's
//! `EventSource` parses them, heartbeats, `Last-Event-ID` and `retry`, with every wait
//! bounded.
//!
//! An SSE endpoint never ends, so `collect()`ing its body hangs a test. An
//! [`SseReader`] reads any response body (`http_body::Body`: from `tower`'s
//! `ServiceExt::oneshot`, axum's `Router`, a hyper client) piece by piece with the
//! WHATWG parsing rules (the ones `EventSource` follows: `\n`, `\r\n` and lone `\r`
//! line ends, `data:` lines joined, `id` kept across events, blocks without data not
//! dispatched), and unlike `EventSource` it also sees the comment blocks a heartbeat
//! is made of.
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_sse::test_util::{MessageEvent, SseReader};
//! use tower_sse::{Event, SseLayer, SseResponse};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let svc = ServiceBuilder::new().layer(SseLayer::new()).service_fn(|_req: Request<()>| async {
//!     let events = (1..=3).map(|n| Ok::<_, Infallible>(Event::new().id_u64(n).data(format!("tick {n}"))));
//!     Ok::<_, Infallible>(SseResponse::new(tokio_stream::iter(events)))
//! });
//!
//! let response = svc.oneshot(Request::new(())).await?;
//! let mut reader = SseReader::from_response(response)?; // checks status and content-type
//! assert_eq!(reader.next_event().await?, Some(MessageEvent::new("tick 1").with_id("1")));
//! let rest = reader.collect(2).await?;
//! assert_eq!(rest[1].data(), "tick 3");
//! assert_eq!(reader.last_event_id(), "3");
//! assert_eq!(reader.next_event().await?, None); // the end
//! # Ok(())
//! # }
//! ```
//!
//! # Time
//!
//! Every wait is bounded: by the `Duration` given to the `_within` methods, else by
//! the reader's [`timeout`](SseReader::timeout) ([`DEFAULT_TIMEOUT`], 30 s), so a bug
//! fails the test instead of hanging it. The waits are tokio timers, so on tokio's
//! paused clock (`#[tokio::test(start_paused = true)]`) a test of 15 s heartbeats takes
//! no real time: while the runtime has nothing else to do, the clock jumps to the next
//! timer, the heartbeat's or the timeout's, whichever is due first. Read bodies in
//! process there (`oneshot`, `Router::call`): over a socket, the clock also jumps
//! while bytes are on their way and a wait can time out early.
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_sse::test_util::SseReader;
//! use tower_sse::{Event, Heartbeat, SseLayer, SseResponse};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // In a test: #[tokio::test(start_paused = true)]
//! let layer = SseLayer::new().heartbeat(Heartbeat::new(Duration::from_secs(15)).per_stream_timer());
//! let svc = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<()>| async {
//!     Ok::<_, Infallible>(SseResponse::new(tokio_stream::pending::<Result<Event, Infallible>>()))
//! });
//! let mut reader = SseReader::new(svc.oneshot(Request::new(())).await?.into_body());
//!
//! let start = tokio::time::Instant::now();
//! for _ in 0..4 {
//!     // a `:` comment: the default heartbeat
//!     assert_eq!(reader.expect_heartbeat_within(Duration::from_secs(16)).await?, "");
//! }
//! assert_eq!(start.elapsed(), Duration::from_secs(60)); // virtual time: instant in real time
//! // Nothing but heartbeats (at 75 s, 90 s, ... 645 s): no event within 590 s.
//! assert!(reader.next_event_within(Duration::from_secs(590)).await.unwrap_err().is_timeout());
//! assert_eq!(reader.comments_read(), 4 + 39);
//! # Ok(())
//! # }
//! ```
//!
//! # Reconnecting
//!
//! [`SseReader::reconnect`] adds the `Last-Event-ID` an `EventSource` would send to the
//! next request, and [`SseReader::retry`] is the reconnection time the server set.

mod error;
mod parse;

use std::{fmt, pin::Pin, time::Duration};

use bytes::Buf;
use http_body::Body;
use http_body_util::BodyExt;

use crate::{error::BoxError, last_event_id::LAST_EVENT_ID};

pub use self::{
    error::{ReadError, ReadErrorKind},
    parse::{Item, MessageEvent},
};

/// How long an [`SseReader`] waits for what its methods without a `Duration` read,
/// unless [`SseReader::timeout`] says otherwise: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads an SSE response body as a browser's `EventSource` does, for tests; see the
/// [module docs](self).
///
/// Every read waits at most the given `Duration` or the reader's
/// [`timeout`](Self::timeout). A wait of [`next_item`](Self::next_item),
/// [`next_event`](Self::next_event), [`next_event_within`](Self::next_event_within) or
/// [`expect_heartbeat_within`](Self::expect_heartbeat_within) that times out (or is
/// cancelled) loses nothing: the next read returns what arrives.
pub struct SseReader<B> {
    body: Pin<Box<B>>,
    parser: parse::Parser,
    ended: bool,
    timeout: Duration,
    comments: u64,
    /// The stream's last event id and reconnection time as of the last item read.
    last_event_id: String,
    retry: Option<Duration>,
}

impl<B> SseReader<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    /// Reads `body`, with no check of the response's head.
    ///
    /// ```
    /// use tower_sse::test_util::{MessageEvent, SseReader};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from("data: a\r\ndata: b\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.next_event().await?, Some(MessageEvent::new("a\nb")));
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(body: B) -> Self {
        Self {
            body: Box::pin(body),
            parser: parse::Parser::default(),
            ended: false,
            timeout: DEFAULT_TIMEOUT,
            comments: 0,
            last_event_id: String::new(),
            retry: None,
        }
    }

    /// Reads the body of `response` after checking that `EventSource` would read it:
    /// status `200` and `content-type: text/event-stream` (parameters allowed).
    ///
    /// ```
    /// use tower_sse::test_util::{ReadErrorKind, SseReader};
    ///
    /// let ok = http::Response::builder()
    ///     .header("content-type", "text/event-stream; charset=utf-8")
    ///     .body(http_body_util::Empty::<bytes::Bytes>::new())
    ///     .unwrap();
    /// assert!(SseReader::from_response(ok).is_ok());
    ///
    /// let json = http::Response::builder()
    ///     .header("content-type", "application/json")
    ///     .body(http_body_util::Empty::<bytes::Bytes>::new())
    ///     .unwrap();
    /// let err = SseReader::from_response(json).unwrap_err();
    /// assert_eq!(err.kind(), ReadErrorKind::NotSse);
    /// ```
    pub fn from_response(response: http::Response<B>) -> Result<Self, ReadError> {
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let is_sse = content_type.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("text/event-stream")
        });
        if status != http::StatusCode::OK || !is_sse {
            return Err(ReadError::not_sse(status, content_type));
        }
        Ok(Self::new(response.into_body()))
    }

    /// Sets how long the reads without a `Duration` of their own wait
    /// ([`DEFAULT_TIMEOUT`] unless set).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # let body = http_body_util::Empty::<bytes::Bytes>::new();
    /// let reader = tower_sse::test_util::SseReader::new(body).timeout(Duration::from_secs(5));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The next event or comment block, or `None` at the end of the body; waits at
    /// most the reader's [`timeout`](Self::timeout).
    ///
    /// ```
    /// use tower_sse::test_util::{Item, MessageEvent, SseReader};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from(":\n\ndata: x\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.next_item().await?, Some(Item::Comment(String::new())));
    /// assert_eq!(reader.next_item().await?, Some(Item::Event(MessageEvent::new("x"))));
    /// assert_eq!(reader.next_item().await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        let after = self.timeout;
        tokio::time::timeout(after, self.read_item())
            .await
            .map_err(|_| ReadError::timeout(after, "event or comment"))?
    }

    /// The next event, or `None` at the end of the body; skips comments (heartbeats),
    /// as `EventSource` does, and waits at most the reader's [`timeout`](Self::timeout).
    ///
    /// ```
    /// use tower_sse::test_util::{MessageEvent, SseReader};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from(":\n\nevent: ping\ndata:\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.next_event().await?, Some(MessageEvent::new("").with_event("ping")));
    /// assert_eq!(reader.comments_read(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_event(&mut self) -> Result<Option<MessageEvent>, ReadError> {
        let after = self.timeout;
        tokio::time::timeout(after, self.read_event())
            .await
            .map_err(|_| ReadError::timeout(after, "event"))?
    }

    /// The next event, which must arrive within `within` (comments are skipped); the
    /// end of the body is an error ([`ReadErrorKind::Ended`]).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use tower_sse::test_util::SseReader;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from("data: x\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.next_event_within(Duration::from_millis(50)).await?.data(), "x");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn next_event_within(&mut self, within: Duration) -> Result<MessageEvent, ReadError> {
        match tokio::time::timeout(within, self.read_event()).await {
            Ok(Ok(Some(event))) => Ok(event),
            Ok(Ok(None)) => Err(ReadError::ended("the next event")),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ReadError::timeout(within, "event")),
        }
    }

    /// The next `n` events (comments are skipped), all within the reader's
    /// [`timeout`](Self::timeout); fewer is an error ([`ReadErrorKind::Ended`]).
    ///
    /// ```
    /// use tower_sse::test_util::SseReader;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from("data: 1\n\n:\n\ndata: 2\n\ndata: 3\n\n"));
    /// let mut reader = SseReader::new(body);
    /// let data: Vec<String> = reader.collect(2).await?.iter().map(|e| e.data().to_owned()).collect();
    /// assert_eq!(data, ["1", "2"]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn collect(&mut self, n: usize) -> Result<Vec<MessageEvent>, ReadError> {
        let after = self.timeout;
        let mut events = Vec::with_capacity(n);
        let read = async {
            while events.len() < n {
                match self.read_event().await? {
                    Some(event) => events.push(event),
                    None => {
                        return Err(ReadError::ended(format!(
                            "event {} of {n}",
                            events.len() + 1
                        )))
                    }
                }
            }
            Ok(())
        };
        let read = tokio::time::timeout(after, read).await;
        match read {
            Ok(Ok(())) => Ok(events),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ReadError::timeout(
                after,
                format!("{n} events (got {})", events.len()),
            )),
        }
    }

    /// Every event up to the end of the body, which must come within the reader's
    /// [`timeout`](Self::timeout).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use tower_sse::test_util::SseReader;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// // The layer's shutdown: a last event with a `retry:` hint, then the end.
    /// let body = http_body_util::Full::new(bytes::Bytes::from("id: 9\ndata: last\n\nretry: 1500\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.read_to_end().await?.len(), 1);
    /// assert_eq!(reader.retry(), Some(Duration::from_millis(1500)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn read_to_end(&mut self) -> Result<Vec<MessageEvent>, ReadError> {
        let after = self.timeout;
        let mut events = Vec::new();
        let read = async {
            while let Some(event) = self.read_event().await? {
                events.push(event);
            }
            Ok(())
        };
        let read = tokio::time::timeout(after, read).await;
        match read {
            Ok(Ok(())) => Ok(events),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ReadError::timeout(after, "end of the stream")),
        }
    }

    /// Expects a comment block (a heartbeat) next, within `within`, and returns its
    /// text (`""` for the layer's default `:` heartbeat). An event first is an error
    /// ([`ReadErrorKind::UnexpectedEvent`]), so is the end of the body.
    ///
    /// A heartbeat sent as an event ([`Heartbeat::event`](crate::Heartbeat::event)) is
    /// an event: read it with [`next_event_within`](Self::next_event_within).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use tower_sse::test_util::{ReadErrorKind, SseReader};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from(": keep-alive\n\ndata: x\n\n"));
    /// let mut reader = SseReader::new(body);
    /// let second = Duration::from_secs(1);
    /// assert_eq!(reader.expect_heartbeat_within(second).await?, "keep-alive");
    /// let err = reader.expect_heartbeat_within(second).await.unwrap_err();
    /// assert_eq!(err.kind(), ReadErrorKind::UnexpectedEvent);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn expect_heartbeat_within(&mut self, within: Duration) -> Result<String, ReadError> {
        match tokio::time::timeout(within, self.read_item()).await {
            Ok(Ok(Some(Item::Comment(text)))) => Ok(text),
            Ok(Ok(Some(Item::Event(event)))) => Err(ReadError::unexpected(event)),
            Ok(Ok(None)) => Err(ReadError::ended("a heartbeat")),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ReadError::timeout(within, "heartbeat")),
        }
    }

    async fn read_event(&mut self) -> Result<Option<MessageEvent>, ReadError> {
        loop {
            match self.read_item().await? {
                Some(Item::Event(event)) => return Ok(Some(event)),
                Some(Item::Comment(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next item, reading frames until there is one. Cancel safe: a frame is
    /// taken from the body and parsed in one step.
    async fn read_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            while let Some(dispatch) = self.parser.pop() {
                self.last_event_id = dispatch.last_event_id;
                self.retry = dispatch.retry;
                if let Some(item) = dispatch.item {
                    self.comments += u64::from(item.is_comment());
                    return Ok(Some(item));
                }
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let len = chunk.len();
                            self.parser.feed(chunk);
                            data.advance(len);
                        }
                    }
                }
                Some(Err(err)) => {
                    self.ended = true;
                    return Err(ReadError::body(err.into()));
                }
                None => {
                    self.ended = true;
                    self.retry = self.parser.retry();
                    if self.parser.in_block() {
                        return Err(ReadError::incomplete());
                    }
                }
            }
        }
    }
}

impl<B> SseReader<B> {
    /// The stream's last event id (`EventSource`'s `lastEventId`) as of the last item
    /// read: the value of the last `id:` field of a finished block up to there, empty
    /// if none; the id a reconnecting client sends. Events that arrived but were not
    /// read yet do not count.
    ///
    /// ```
    /// # use tower_sse::test_util::SseReader;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from("id: 7\ndata: x\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.last_event_id(), "");
    /// reader.next_event().await?;
    /// assert_eq!(reader.last_event_id(), "7");
    /// # Ok(())
    /// # }
    /// ```
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the server set with its last valid `retry:` field, if any,
    /// as of the last item read (or the end of the body).
    ///
    /// ```
    /// use std::time::Duration;
    /// # use tower_sse::test_util::SseReader;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// // The layer's shed answer: a `retry:` and the end.
    /// let body = http_body_util::Full::new(bytes::Bytes::from("retry: 4000\n\n"));
    /// let mut reader = SseReader::new(body);
    /// assert_eq!(reader.next_event().await?, None);
    /// assert_eq!(reader.retry(), Some(Duration::from_secs(4)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// How many comment blocks (heartbeats) were read so far, the ones that
    /// [`next_event`](Self::next_event) skipped included.
    ///
    /// ```
    /// # use tower_sse::test_util::SseReader;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_sse::test_util::ReadError> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from(":\n\n:\n\ndata: x\n\n"));
    /// let mut reader = SseReader::new(body);
    /// reader.next_event().await?;
    /// assert_eq!(reader.comments_read(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn comments_read(&self) -> u64 {
        self.comments
    }

    /// `request` with the `Last-Event-ID` header a reconnecting `EventSource` sends:
    /// the [last event id](Self::last_event_id), if not empty.
    ///
    /// ```
    /// use http::Request;
    /// use tower_sse::test_util::SseReader;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let body = http_body_util::Full::new(bytes::Bytes::from("id: 4\ndata: x\n\n"));
    /// let mut reader = SseReader::new(body);
    /// reader.read_to_end().await?;
    /// let next = reader.reconnect(Request::get("/events")).body(())?;
    /// assert_eq!(next.headers()["last-event-id"], "4");
    /// # Ok(())
    /// # }
    /// ```
    pub fn reconnect(&self, request: http::request::Builder) -> http::request::Builder {
        match self.last_event_id() {
            "" => request,
            id => request.header(LAST_EVENT_ID, id),
        }
    }
}

impl<B> fmt::Debug for SseReader<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseReader")
            .field("last_event_id", &self.last_event_id())
            .field("retry", &self.retry())
            .field("ended", &self.ended)
            .field("timeout", &self.timeout)
            .field("comments_read", &self.comments)
            .finish_non_exhaustive()
    }
}
