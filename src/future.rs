use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use futures_core::Stream;
use http::{header, HeaderValue, Response};
use pin_project_lite::pin_project;
use tracing::Span;

use crate::{
    body::EventsBody, layer::Config, response::Kind, BoxError, Encode, IntoSseResponse, SseBody,
};

pin_project! {
    /// The response future of [`SseService`](crate::SseService): resolves to the inner
    /// service's response, made into an SSE response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        config: Arc<Config>,
        span: Option<Span>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, config: Arc<Config>, span: Span) -> Self {
        Self {
            inner,
            config,
            span: Some(span),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, St, T, E, Err> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, Err>>,
    R: IntoSseResponse<Stream = St>,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    type Output = Result<Response<SseBody<St>>, Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx))?.into_sse_response();
        let heartbeat = response.heartbeat;
        Poll::Ready(Ok(match response.kind {
            Kind::Other(response) => response.map(SseBody::other),
            Kind::Sse(response) => {
                let (mut parts, stream) = response.into_parts();
                set_sse_headers(&mut parts.headers);
                let span = this.span.take().unwrap_or_else(Span::none);
                let heartbeat = match &heartbeat {
                    Some(chosen) => chosen.as_ref(),
                    None => this.config.heartbeat.as_ref(),
                };
                let body = EventsBody::new(stream, this.config.clone(), heartbeat, span);
                Response::from_parts(parts, SseBody::events(body))
            }
        }))
    }
}

/// `content-type: text/event-stream`, `cache-control: no-cache` and
/// `x-accel-buffering: no` (the last two unless already set), no `content-length`.
pub(crate) fn set_sse_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    headers
        .entry(http::HeaderName::from_static("x-accel-buffering"))
        .or_insert(HeaderValue::from_static("no"));
    headers.remove(header::CONTENT_LENGTH);
}
