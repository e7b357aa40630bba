//! [`SseService`]: hands the request (and its `Last-Event-ID`) to the inner service.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use crate::{
    body::SseBody, config::Config, future::ResponseFuture, gate::WriteGate,
    last_event_id::LastEventId, response::IntoSseResponse, state::LayerState, stream::span,
};

/// The service made by [`SseLayer`](crate::SseLayer): calls the inner service with the
/// request (and its [`LastEventId`], if any, in the extensions) and turns its
/// answer ([`IntoSseResponse`]: an [`SseResponse`](crate::SseResponse), or an
/// `http::Response` such as an axum handler's) into a `text/event-stream` response.
///
/// ```
/// use std::convert::Infallible;
/// use http::Request;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_sse::{Event, LastEventId, SseLayer, SseResponse};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = SseLayer::new().layer(service_fn(|req: Request<()>| async move {
///     let after: u32 = req.extensions().get::<LastEventId>().and_then(|id| id.parse().ok()).unwrap_or(0);
///     let events = tokio_stream::iter((after + 1..=3).map(|i| Ok::<_, Infallible>(Event::new().data(i.to_string()))));
///     Ok::<_, Infallible>(SseResponse::new(events))
/// }));
/// let req = Request::builder().header("last-event-id", "2").body(()).unwrap();
/// let res = svc.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// # }
/// ```
#[derive(Clone)]
pub struct SseService<S> {
    inner: S,
    config: Arc<Config>,
    layer: Arc<LayerState>,
}

impl<S> SseService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>, layer: Arc<LayerState>) -> Self {
        Self {
            inner,
            config,
            layer,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for SseService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseService")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, ReqBody, St> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>>,
    S::Response: IntoSseResponse<Stream = St>,
    ResponseFuture<S::Future, St>:
        std::future::Future<Output = Result<Response<SseBody<St>>, S::Error>>,
{
    type Response = Response<SseBody<St>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, St>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let last_event_id = LastEventId::from_headers(&parts.headers);
        let span = span::open(
            parts.uri.path(),
            last_event_id.as_ref().map(LastEventId::as_str),
        );
        if let Some(id) = last_event_id {
            parts.extensions.insert(id);
        }
        // The key under a `PerKeyLimit` is taken here, where the request is seen; its
        // place is taken once the response turns out to be SSE.
        let ticket = self.config.per_key.as_ref().and_then(|l| l.ticket(&parts));
        let gate = parts.extensions.get::<WriteGate>().cloned();
        let req = Request::from_parts(parts, body);
        let (config, layer) = (self.config.clone(), self.layer.clone());
        ResponseFuture::new(self.inner.call(req), config, layer, span, ticket).gated(gate)
    }
}
