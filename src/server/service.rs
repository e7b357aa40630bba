//! The tower service as hyper's service: marks the connection as having sent a request,
//! wraps the body in [`RequestBody`], and answers `408` when the body is late.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::body::{Progress, RequestBody};
use crate::{error::BoxError, gate::WriteGate};

/// The response body: the service's, or the server's own `408`.
pub(crate) type ServerBody<B> = Either<B, Full<Bytes>>;

/// One connection's view of the tower service.
pub(crate) struct Adapter<S> {
    inner: S,
    body_timeout: Duration,
    /// Set once the connection has sent a complete request head.
    started: Arc<AtomicBool>,
    /// The client's address, put in every request's extensions.
    peer: Option<SocketAddr>,
    /// The connection's write gate, put in every request's extensions.
    gate: WriteGate,
}

impl<S> Adapter<S> {
    pub(crate) fn new(
        inner: S,
        body_timeout: Duration,
        started: Arc<AtomicBool>,
        peer: Option<SocketAddr>,
        gate: WriteGate,
    ) -> Self {
        Self {
            inner,
            body_timeout,
            started,
            peer,
            gate,
        }
    }
}

impl<S, B> hyper::service::Service<Request<Incoming>> for Adapter<S>
where
    S: Service<Request<RequestBody>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
{
    type Response = Response<ServerBody<B>>;
    type Error = BoxError;
    /// Boxed: hyper keeps a box the size of this future for the connection's
    /// lifetime, and a service's future (a router's `async fn`) can take kilobytes;
    /// boxed, that box holds a pointer and the future is freed once it has answered.
    type Future = Pin<Box<ResponseFuture<S, S::Future>>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.started.store(true, Ordering::Relaxed);
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(peer);
        }
        req.extensions_mut().insert(self.gate.clone());
        // A body that is complete from the start (a `GET`) needs no deadline.
        let (progress, deadline) = if req.body().is_end_stream() {
            (None, None)
        } else {
            let progress = Arc::new(Progress::default());
            let sleep = Box::pin(tokio::time::sleep(self.body_timeout));
            (Some(progress), Some(sleep))
        };
        let body_progress = progress.clone();
        Box::pin(ResponseFuture {
            service: Some(self.inner.clone()),
            req: Some(req.map(|body| RequestBody::new(body, body_progress))),
            future: None,
            deadline,
            progress,
        })
    }
}

pin_project! {
    /// Waits for the service to be ready, calls it, and answers `408` instead if the
    /// request body's deadline passes first.
    pub(crate) struct ResponseFuture<S, F> {
        service: Option<S>,
        req: Option<Request<RequestBody>>,
        #[pin]
        future: Option<F>,
        deadline: Option<Pin<Box<Sleep>>>,
        progress: Option<Arc<Progress>>,
    }
}

impl<S, B> Future for ResponseFuture<S, S::Future>
where
    S: Service<Request<RequestBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ServerBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let (Some(deadline), Some(progress)) = (this.deadline.as_mut(), this.progress.as_ref()) {
            if deadline.as_mut().poll(cx).is_ready() {
                if progress.expire() {
                    // The service (and whatever it would have done with the body) is
                    // dropped with this future.
                    return Poll::Ready(Ok(timed_out()));
                }
                *this.deadline = None;
            }
        }
        if this.future.is_none() {
            let Some(service) = this.service.as_mut() else {
                return Poll::Ready(Err("response future polled after completion".into()));
            };
            ready!(service.poll_ready(cx)).map_err(Into::into)?;
            let (Some(req), Some(mut service)) = (this.req.take(), this.service.take()) else {
                return Poll::Ready(Err("response future polled after completion".into()));
            };
            this.future.set(Some(service.call(req)));
        }
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Ready(Err("response future polled after completion".into()));
        };
        let res = ready!(future.poll(cx)).map_err(Into::into)?;
        Poll::Ready(Ok(res.map(Either::Left)))
    }
}

/// `408 Request Timeout`: the body did not arrive in time.
fn timed_out<B>() -> Response<ServerBody<B>> {
    let body = Full::new(Bytes::from_static(
        b"the request body did not arrive within the request timeout\n",
    ));
    let mut res = Response::new(Either::Right(body));
    *res.status_mut() = StatusCode::REQUEST_TIMEOUT;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}
