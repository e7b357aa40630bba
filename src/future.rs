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
    gate::WriteGate,
    limit::{LimitMode, Over, Permit, Ticket},
    response::{shed, IntoSseResponse, SseParts, SseResponse},
    state::LayerState,
    stats::Counters,
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
        // The request's key under the layer's `PerKeyLimit`, if any.
        ticket: Option<Ticket>,
        // The connection's write gate, if its transport has one.
        gate: Option<WriteGate>,
    }
}

type Acquire = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

pin_project! {
    #[project = StateProj]
    enum State<F, St> {
        Inner { #[pin] inner: F },
        /// `StreamLimit::wait`: the response waits for a permit.
        Waiting { acquire: Acquire, ready: Option<(SseResponse<St>, Permit)> },
    }
}

impl<F, St> ResponseFuture<F, St> {
    pub(crate) fn new(
        inner: F,
        config: Arc<Config>,
        layer: Arc<LayerState>,
        span: Span,
        ticket: Option<Ticket>,
    ) -> Self {
        Self {
            state: State::Inner { inner },
            config,
            layer,
            span: Some(span),
            ticket,
            gate: None,
        }
    }

    /// The stream's body waits on `gate` (see [`WriteGate`]).
    pub(crate) fn gated(mut self, gate: Option<WriteGate>) -> Self {
        self.gate = gate;
        self
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
        let (response, permit) = match this.state.as_mut().project() {
            StateProj::Inner { inner } => {
                let response = ready!(inner.poll(cx))?.into_sse_response();
                if !response.is_sse() {
                    (response, Permit::default())
                } else {
                    match admit(this.config, this.ticket.take()) {
                        Admission::Now(permit) => (response, permit),
                        Admission::Over(over) => {
                            return Poll::Ready(Ok(answer(over, &this.layer.counters)));
                        }
                        Admission::Wait(mut acquire, mut permit) => {
                            if let Poll::Ready(global) = acquire.as_mut().poll(cx) {
                                permit.global = global;
                                (response, permit)
                            } else {
                                let ready = Some((response, permit));
                                this.state.set(State::Waiting { acquire, ready });
                                return Poll::Pending;
                            }
                        }
                    }
                }
            }
            StateProj::Waiting { acquire, ready } => {
                let global = ready!(acquire.as_mut().poll(cx));
                let Some((response, mut permit)) = ready.take() else {
                    panic!("ResponseFuture polled after completion");
                };
                permit.global = global;
                (response, permit)
            }
        };
        let response = serve(response, permit, this.config, this.layer, this.span);
        Poll::Ready(Ok(response.map(|body| body.gated(this.gate.take()))))
    }
}

/// What the limits say of a new SSE stream.
enum Admission {
    /// Under every cap: the places it holds.
    Now(Permit),
    /// Over a cap: this answer.
    Over(Over),
    /// Over `StreamLimit::wait`'s cap: wait for a permit, holding the key's place.
    Wait(Acquire, Permit),
}

/// Takes a place under the request's key (`ticket`), then under the layer's cap.
fn admit(config: &Config, ticket: Option<Ticket>) -> Admission {
    let mut permit = Permit::default();
    if let (Some(limit), Some(ticket)) = (&config.per_key, ticket) {
        match ticket.admit() {
            Some(place) => permit.key = Some(place),
            None => return Admission::Over(limit.over),
        }
    }
    let Some(limit) = &config.limit else {
        return Admission::Now(permit);
    };
    match (limit.semaphore.clone().try_acquire_owned(), limit.mode) {
        (Ok(global), _) => {
            permit.global = Some(global);
            Admission::Now(permit)
        }
        (Err(_), LimitMode::Answer(over)) => Admission::Over(over),
        (Err(_), LimitMode::Wait) => {
            let semaphore = limit.semaphore.clone();
            let acquire: Acquire = Box::pin(async move { semaphore.acquire_owned().await.ok() });
            Admission::Wait(acquire, permit)
        }
    }
}

/// The answer to a stream over a cap, counted: the shed answer (its `retry:`
/// jittered by its number) or a `503`.
fn answer<St>(over: Over, counters: &Counters) -> Response<SseBody<St>> {
    match over {
        Over::Shed(retry) => shed(retry.jittered(counters.shed())).map(SseBody::other),
        Over::Reject { retry_after } => {
            counters.rejected();
            too_many_streams(retry_after)
        }
    }
}

/// Makes the HTTP response: the SSE body with its headers, or the response passed through.
fn serve<St, T, E>(
    response: SseResponse<St>,
    permit: Permit,
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
