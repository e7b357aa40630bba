//! What can go wrong while reading an event stream in a test.

use std::{fmt, time::Duration};

use crate::error::BoxError;

use super::parse::MessageEvent;

/// Why [`SseReader`](super::SseReader) did not return what was asked of it.
///
/// Its `Display` says what was expected and what came instead, so that
/// `reader.next_event_within(d).await?` in a test returning `Result` fails with a
/// useful message.
///
/// ```
/// use std::time::Duration;
///
/// use tower_sse::test_util::{ReadErrorKind, SseReader};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let mut reader = SseReader::new(http_body_util::Empty::<bytes::Bytes>::new());
/// let err = reader.next_event_within(Duration::from_secs(1)).await.unwrap_err();
/// assert_eq!(err.kind(), ReadErrorKind::Ended);
/// assert_eq!(err.to_string(), "the stream ended before the next event");
/// # }
/// ```
#[derive(Debug)]
pub struct ReadError {
    kind: ReadErrorKind,
    detail: Detail,
}

/// What kind of [`ReadError`] this is; see [`ReadError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReadErrorKind {
    /// The response is not one `EventSource` reads: its status is not `200` or its
    /// `content-type` is not `text/event-stream`.
    NotSse,
    /// Nothing arrived in time.
    Timeout,
    /// The body ended before what was expected.
    Ended,
    /// The body ended inside a block (no blank line after its last field), which
    /// `EventSource` would discard.
    Incomplete,
    /// An event came where a heartbeat comment was expected.
    UnexpectedEvent,
    /// The body failed (its error is the [`source`](std::error::Error::source)).
    Body,
}

#[derive(Debug)]
enum Detail {
    None,
    NotSse {
        status: http::StatusCode,
        content_type: Option<String>,
    },
    Timeout {
        after: Duration,
        what: String,
    },
    Ended {
        what: String,
    },
    Unexpected(MessageEvent),
    Body(BoxError),
}

impl ReadError {
    /// Which kind of error this is.
    ///
    /// ```
    /// # use tower_sse::test_util::{ReadErrorKind, SseReader};
    /// let res = http::Response::builder().status(404).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    /// let err = SseReader::from_response(res).unwrap_err();
    /// assert_eq!(err.kind(), ReadErrorKind::NotSse);
    /// assert_eq!(err.to_string(), "not an SSE response: status 404 Not Found, no content-type");
    /// ```
    pub fn kind(&self) -> ReadErrorKind {
        self.kind
    }

    /// Whether nothing arrived in time ([`ReadErrorKind::Timeout`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// # use tower_sse::test_util::SseReader;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// // A body that never sends anything: the wait ends after an hour of the paused clock.
    /// let body = http_body_util::StreamBody::new(futures_util::stream::pending::<
    ///     Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
    /// >());
    /// let mut reader = SseReader::new(body);
    /// assert!(reader.next_event_within(Duration::from_secs(3600)).await.unwrap_err().is_timeout());
    /// # }
    /// ```
    pub fn is_timeout(&self) -> bool {
        self.kind == ReadErrorKind::Timeout
    }

    pub(crate) fn not_sse(status: http::StatusCode, content_type: Option<String>) -> Self {
        Self {
            kind: ReadErrorKind::NotSse,
            detail: Detail::NotSse {
                status,
                content_type,
            },
        }
    }

    pub(crate) fn timeout(after: Duration, what: impl Into<String>) -> Self {
        Self {
            kind: ReadErrorKind::Timeout,
            detail: Detail::Timeout {
                after,
                what: what.into(),
            },
        }
    }

    pub(crate) fn ended(what: impl Into<String>) -> Self {
        Self {
            kind: ReadErrorKind::Ended,
            detail: Detail::Ended { what: what.into() },
        }
    }

    pub(crate) fn incomplete() -> Self {
        Self {
            kind: ReadErrorKind::Incomplete,
            detail: Detail::None,
        }
    }

    pub(crate) fn unexpected(event: MessageEvent) -> Self {
        Self {
            kind: ReadErrorKind::UnexpectedEvent,
            detail: Detail::Unexpected(event),
        }
    }

    pub(crate) fn body(err: BoxError) -> Self {
        Self {
            kind: ReadErrorKind::Body,
            detail: Detail::Body(err),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Detail::NotSse {
                status,
                content_type,
            } => {
                write!(f, "not an SSE response: status {status}, ")?;
                match content_type {
                    Some(ct) => write!(f, "content-type {ct:?}"),
                    None => f.write_str("no content-type"),
                }
            }
            Detail::Timeout { after, what } => write!(f, "no {what} within {after:?}"),
            Detail::Ended { what } => write!(f, "the stream ended before {what}"),
            Detail::Unexpected(event) => write!(f, "expected a heartbeat comment, got {event}"),
            Detail::Body(err) => write!(f, "the response body failed: {err}"),
            Detail::None => {
                f.write_str("the stream ended inside an event (no blank line after it)")
            }
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.detail {
            Detail::Body(err) => Some(&**err),
            _ => None,
        }
    }
}
