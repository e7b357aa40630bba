//! [`SseResponse`], what the inner service answers, and the one place where an SSE
//! response gets its headers.

use std::{pin::Pin, time::Duration};

use bytes::Bytes;
use futures_core::Stream;
use http::{header, response::Parts, HeaderMap, HeaderValue, Response};
use http_body::Body;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt};

use crate::{
    body::{BoxEventStream, Slot, SseBody},
    error::BoxError,
    event::{Event, Message},
    heartbeat::{Choice, Heartbeat},
};

/// A response passed through the layer untouched.
pub(crate) type OtherResponse = Response<UnsyncBoxBody<Bytes, BoxError>>;

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
/// ```
#[derive(Debug)]
pub struct SseResponse<St> {
    kind: Kind<St>,
    /// The layer's heartbeat, or this response's own.
    heartbeat: Choice,
}

#[derive(Debug)]
enum Kind<St> {
    Sse(Response<St>),
    Other(OtherResponse),
}

impl<St> SseResponse<St> {
    /// A `200 OK` SSE response streaming `events`.
    pub fn new(events: St) -> Self {
        Self::from_response(Response::new(events))
    }

    /// An SSE response with the status and headers of `response`. The layer sets
    /// `content-type`, adds `cache-control: no-cache, no-transform` and `x-accel-buffering: no` where
    /// absent, and removes any `content-length`.
    pub fn from_response(response: Response<St>) -> Self {
        Self {
            kind: Kind::Sse(response),
            heartbeat: Choice::Layer,
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
            heartbeat: Choice::Layer,
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
        self.heartbeat = Choice::Custom(heartbeat.into());
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
        self.heartbeat = Choice::Off;
        self
    }

    /// The [shed answer](crate::limit#the-shed-answer), passed through as is: status
    /// `200`, the SSE headers, `retry: R` (`retry` in whole milliseconds, at least
    /// 1000) and the end of the response. A browser's `EventSource` waits `R` and
    /// reconnects: the way to turn a client away for now (an overloaded backend, a
    /// rate limiter in front) without the fatal `503` or `429`. The layer's limits
    /// send it by themselves, with a jittered `R`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_body_util::BodyExt;
    /// use tower_sse::{BoxEventStream, SseResponse};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let res = SseResponse::<BoxEventStream>::shed(Duration::from_millis(2500)).into_http();
    /// assert_eq!(res.status(), 200);
    /// assert_eq!(res.headers()["content-type"], "text/event-stream");
    /// let body = res.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(&body[..], b"retry: 2500\n\n");
    /// # }
    /// ```
    pub fn shed(retry: Duration) -> Self {
        Self {
            kind: Kind::Other(shed(retry)),
            heartbeat: Choice::Layer,
        }
    }

    /// Whether this is an SSE response (rather than one passed through).
    pub fn is_sse(&self) -> bool {
        matches!(self.kind, Kind::Sse(_))
    }

    /// The parts of an SSE response, with the SSE headers set, its stream and its
    /// heartbeat choice; or the response to pass through.
    pub(crate) fn into_sse_parts(self) -> SseParts<St> {
        match self.kind {
            Kind::Sse(response) => {
                let (mut parts, stream) = response.into_parts();
                set_sse_headers(&mut parts.headers);
                SseParts::Sse(parts, stream, self.heartbeat)
            }
            Kind::Other(response) => SseParts::Other(response),
        }
    }
}

/// An [`SseResponse`] taken apart.
pub(crate) enum SseParts<St> {
    /// The response's parts (SSE headers set), its stream and its heartbeat choice.
    Sse(Parts, St, Choice),
    /// A response to pass through.
    Other(OtherResponse),
}

/// The shed answer: `200`, the SSE headers, `retry: R` (at least 1000 ms), the end.
pub(crate) fn shed(retry: Duration) -> OtherResponse {
    let retry = Event::new().retry(retry.max(Duration::from_secs(1)));
    let body = Once(Some(retry.encode().into_bytes()));
    let mut response = Response::new(UnsyncBoxBody::new(body));
    set_sse_headers(response.headers_mut());
    response
}

/// A body of one frame whose size is unknown, so that hyper sends no
/// `content-length` (as for every SSE response).
struct Once(Option<Bytes>);

impl Body for Once {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::task::Poll::Ready(self.0.take().map(|bytes| Ok(http_body::Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// `content-type: text/event-stream`, `cache-control: no-cache, no-transform` and
/// `x-accel-buffering: no` (the last two unless already set), no `content-length`.
///
/// `no-cache`: a cache must not answer a later request with this stream.
/// `no-transform`: an intermediary must not recompress or otherwise rewrite the
/// body, which makes some proxies buffer the stream until it ends (RFC 9111,
/// section 5.2.2.6). `x-accel-buffering: no` turns nginx's proxy buffering off.
pub(crate) fn set_sse_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache, no-transform"));
    headers
        .entry(http::HeaderName::from_static("x-accel-buffering"))
        .or_insert(HeaderValue::from_static("no"));
    headers.remove(header::CONTENT_LENGTH);
}

impl<St, T, E> SseResponse<St>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Into<Message>,
    E: Into<BoxError>,
{
    /// Turns this into an ordinary `http::Response`, for frameworks whose handlers
    /// must return one (axum's `IntoResponse` uses this).
    ///
    /// When an [`SseLayer`](crate::SseLayer) wraps the service that returned it, the
    /// layer finds the stream inside and serves it with its own settings, counters and
    /// shutdown handle. A response passed through stays as it is.
    ///
    /// The response also works on its own, served with no layer at all: it has the SSE
    /// headers and its body streams the events with the settings of
    /// [`SseLayer::new`](crate::SseLayer::new) (heartbeats every 15 s, backpressure,
    /// 64 KiB frames) and the heartbeat chosen with [`heartbeat`](Self::heartbeat) or
    /// [`no_heartbeat`](Self::no_heartbeat). What such streams cannot have is a layer:
    /// no [`SseStats`](crate::SseStats) counts them, no
    /// [`ShutdownHandle`](crate::ShutdownHandle) ends them (hyper's graceful shutdown
    /// then waits for them to end by themselves), no stream limit or tracing span
    /// applies, and they share one heartbeat ticker per interval with every other
    /// layer-less stream of the process. Put an `SseLayer` around the service to get
    /// those.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use tower_sse::{Event, SseResponse};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let events = tokio_stream::iter([Ok::<_, Infallible>(Event::new().data("hi"))]);
    /// let res = SseResponse::new(events).into_http();
    /// assert_eq!(res.headers()["content-type"], "text/event-stream");
    /// # }
    /// ```
    pub fn into_http(self) -> Response<SseBody<BoxEventStream>> {
        match self.into_sse_parts() {
            SseParts::Other(response) => response.map(SseBody::other),
            SseParts::Sse(mut parts, stream, heartbeat) => {
                let stream: BoxEventStream = Box::pin(MapItems { stream });
                let slot = Slot::new(stream, heartbeat);
                parts.extensions.insert(slot.clone());
                Response::from_parts(parts, SseBody::deferred(slot))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Maps a user's stream to the boxed item type.
    struct MapItems<St> {
        #[pin]
        stream: St,
    }
}

impl<St, T, E> Stream for MapItems<St>
where
    St: Stream<Item = Result<T, E>>,
    T: Into<Message>,
    E: Into<BoxError>,
{
    type Item = Result<Message, BoxError>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.project()
            .stream
            .poll_next(cx)
            .map(|item| item.map(|item| item.map(Into::into).map_err(Into::into)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

/// A response an [`SseLayer`](crate::SseLayer) can serve: an [`SseResponse`], or an
/// `http::Response` made by [`SseResponse::into_http`] (an axum handler's answer,
/// say); any other `http::Response` is passed through.
///
/// ```
/// use tower_sse::{BoxEventStream, IntoSseResponse};
///
/// let res = http::Response::new(String::from("not sse"));
/// assert!(!res.into_sse_response().is_sse());
/// # let _: Option<BoxEventStream> = None;
/// ```
pub trait IntoSseResponse {
    /// The event stream type.
    type Stream;

    /// Converts `self`.
    fn into_sse_response(self) -> SseResponse<Self::Stream>;
}

impl<St> IntoSseResponse for SseResponse<St> {
    type Stream = St;

    fn into_sse_response(self) -> SseResponse<St> {
        self
    }
}

impl<B> IntoSseResponse for Response<B>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Stream = BoxEventStream;

    fn into_sse_response(mut self) -> SseResponse<BoxEventStream> {
        match self
            .extensions_mut()
            .remove::<Slot>()
            .and_then(|slot| slot.take())
        {
            Some((stream, heartbeat)) => {
                let (parts, _deferred) = self.into_parts();
                SseResponse {
                    kind: Kind::Sse(Response::from_parts(parts, stream)),
                    heartbeat,
                }
            }
            None => SseResponse::other(self),
        }
    }
}
