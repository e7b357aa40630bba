use http::Response;
use http_body::Body;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt};

use bytes::Bytes;

use crate::{BoxError, Heartbeat};

/// What a service behind [`SseLayer`](crate::SseLayer) answers: an event stream to
/// send as SSE, or an ordinary response passed through untouched.
///
/// The stream yields `Result<T, E>` where `T` is an [`Event`](crate::Event) or an
/// [`EncodedEvent`](crate::EncodedEvent). An `Err` ends the stream cleanly (see
/// [`SseLayer::on_error`](crate::SseLayer::on_error)).
///
/// ```
/// use std::convert::Infallible;
/// use http::{Response, StatusCode};
/// use tokio_stream::Stream;
/// use tower_sse::{Event, SseResponse};
///
/// fn events() -> impl Stream<Item = Result<Event, Infallible>> {
///     tokio_stream::iter([Ok(Event::new().data("hi"))])
/// }
///
/// // 200 with SSE headers.
/// let ok = SseResponse::new(events());
/// assert!(ok.is_sse());
///
/// // Your own status and extra headers; the SSE headers are added.
/// let custom = SseResponse::from_response(
///     Response::builder().header("x-stream", "prices").body(events()).unwrap(),
/// );
///
/// // Not SSE at all: passed through as is. Every branch of a handler returns the
/// // same `SseResponse<St>` type.
/// fn handler(authorized: bool) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
///     if !authorized {
///         return SseResponse::other(
///             Response::builder().status(StatusCode::UNAUTHORIZED).body(String::new()).unwrap(),
///         );
///     }
///     SseResponse::new(events())
/// }
/// assert!(!handler(false).is_sse());
/// /// ```
#[derive(Debug)]
pub struct SseResponse<St> {
    pub(crate) kind: Kind<St>,
    /// `Some` overrides the layer's heartbeat for this response.
    pub(crate) heartbeat: Option<Option<Heartbeat>>,
}

#[derive(Debug)]
pub(crate) enum Kind<St> {
    Sse(Response<St>),
    Other(Response<UnsyncBoxBody<Bytes, BoxError>>),
}

impl<St> SseResponse<St> {
    /// A `200 OK` SSE response streaming `events`.
    pub fn new(events: St) -> Self {
        Self::from_response(Response::new(events))
    }

    /// An SSE response with the status and headers of `response`. The layer sets
    /// `content-type`, adds `cache-control: no-cache` and `x-accel-buffering: no` where
    /// absent, and removes any `content-length`.
    pub fn from_response(response: Response<St>) -> Self {
        Self {
            kind: Kind::Sse(response),
            heartbeat: None,
        }
    }

    /// A response that is not SSE (an error page, a redirect): passed through as is.
    pub fn other<B>(response: Response<B>) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self {
            kind: Kind::Other(response.map(|body| body.map_err(Into::into).boxed_unsync())),
            heartbeat: None,
        }
    }

    /// Uses `heartbeat` for this response instead of the layer's.
    ///
    /// ```
    /// use std::{convert::Infallible, time::Duration};
    /// use tower_sse::{Event, SseResponse};
    ///
    /// let events = tokio_stream::pending::<Result<Event, Infallible>>();
    /// let res = SseResponse::new(events).heartbeat(Duration::from_millis(200));
    /// ```
    pub fn heartbeat(mut self, heartbeat: impl Into<Heartbeat>) -> Self {
        self.heartbeat = Some(Some(heartbeat.into()));
        self
    }

    /// Sends no heartbeats on this response, whatever the layer's setting.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower_sse::{Event, SseResponse};
    ///
    /// let events = tokio_stream::pending::<Result<Event, Infallible>>();
    /// let res = SseResponse::new(events).no_heartbeat();
    /// ```
    pub fn no_heartbeat(mut self) -> Self {
        self.heartbeat = Some(None);
        self
    }

    /// Whether this is an SSE response (rather than one passed through).
    pub fn is_sse(&self) -> bool {
        matches!(self.kind, Kind::Sse(_))
    }
}
