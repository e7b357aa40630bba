//! [`ResponseFuture`]: waits for the inner service's answer (and a `StreamLimit`
//! permit), then makes it an SSE response.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use futures_core::Stream;
use http::{header, HeaderValue, Response};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Span;

use crate::{
    body::SseBody,
    config::Config,
    error::BoxError,
    event::Encode,
    limit::LimitMode,
    response::{IntoSseResponse, SseParts, SseResponse},
    state::LayerState,
    stream::EventsBody,
};

pin_project! {
    /// The response future of [`SseService`](crate::SseService): resolves to the inner
    /// service's response, made into an SSE response.
    pub struct ResponseFuture<F, St> {
        #[pin]
        state: State<F, St>,
        config: Arc<Config>,
        layer: Arc<LayerState>,
        span: Option<Span>,
    }
}

type Acquire = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

pin_project! {
    #[project = StateProj]
    enum State<F, St> {
        Inner { #[pin] inner: F },
        /// `StreamLimit::wait`: the response waits for a permit.
        Waiting { acquire: Acquire, response: Option<SseResponse<St>> },
    }
}

impl<F, St> ResponseFuture<F, St> {
    pub(crate) fn new(inner: F, config: Arc<Config>, layer: Arc<LayerState>, span: Span) -> Self {
        Self {
            state: State::Inner { inner },
            config,
            layer,
            span: Some(span),
        }
    }
}

impl<F, St> std::fmt::Debug for ResponseFuture<F, St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, St, T, E, Err> Future for ResponseFuture<F, St>
where
    F: Future<Output = Result<R, Err>>,
    R: IntoSseResponse<Stream = St>,
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    type Output = Result<Response<SseBody<St>>, Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (response, permit) = match this.state.as_mut().project() {
                StateProj::Inner { inner } => {
                    let response = ready!(inner.poll(cx))?.into_sse_response();
                    let Some(limit) = this.config.limit.as_ref().filter(|_| response.is_sse())
                    else {
                        return Poll::Ready(Ok(serve(
                            response,
                            None,
                            this.config,
                            this.layer,
                            this.span,
                        )));
                    };
                    match limit.semaphore.clone().try_acquire_owned() {
                        Ok(permit) => (response, Some(permit)),
                        Err(_) => match limit.mode {
                            LimitMode::Reject { retry_after } => {
                                this.layer.counters.rejected();
                                return Poll::Ready(Ok(too_many_streams(retry_after)));
                            }
                            LimitMode::Wait => {
                                let semaphore = limit.semaphore.clone();
                                let acquire: Acquire =
                                    Box::pin(async move { semaphore.acquire_owned().await.ok() });
                                this.state.set(State::Waiting {
                                    acquire,
                                    response: Some(response),
                                });
                                continue;
                            }
                        },
                    }
                }
                StateProj::Waiting { acquire, response } => {
                    let permit = ready!(acquire.as_mut().poll(cx));
                    match response.take() {
                        Some(response) => (response, permit),
                        None => panic!("ResponseFuture polled after completion"),
                    }
                }
            };
            return Poll::Ready(Ok(serve(
                response,
                permit,
                this.config,
                this.layer,
                this.span,
            )));
        }
    }
}

/// Makes the HTTP response: the SSE body with its headers, or the response passed through.
fn serve<St, T, E>(
    response: SseResponse<St>,
    permit: Option<OwnedSemaphorePermit>,
    config: &Arc<Config>,
    layer: &Arc<LayerState>,
    span: &mut Option<Span>,
) -> Response<SseBody<St>>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    match response.into_sse_parts() {
        SseParts::Other(response) => response.map(SseBody::other),
        SseParts::Sse(parts, stream, heartbeat) => {
            let span = span.take().unwrap_or_else(Span::none);
            let body = EventsBody::new(
                stream,
                config.clone(),
                layer.clone(),
                &heartbeat,
                span,
                permit,
            );
            Response::from_parts(parts, SseBody::events(body))
        }
    }
}

/// `503 Service Unavailable` with `retry-after`, for a stream over the limit.
fn too_many_streams<St>(retry_after: std::time::Duration) -> Response<SseBody<St>> {
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"too many open streams\n"))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(SseBody::other(body));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    let secs = retry_after.as_secs().max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
