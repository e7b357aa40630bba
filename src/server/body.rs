//! The request body a [`Server`](super::Server) hands to the service: hyper's body,
//! watched by the request-body deadline.

use std::{
    error::Error,
    fmt,
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The body is still arriving.
const OPEN: u8 = 0;
/// The body ended, failed or was dropped: the deadline no longer matters.
const DONE: u8 = 1;
/// The deadline passed first: the request was answered `408`.
const EXPIRED: u8 = 2;

/// Where a request body stands, shared by the body and the response future.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU8);

impl Progress {
    /// Marks the body finished unless it already expired; `false` if it had expired.
    fn finish(&self) -> bool {
        self.0
            .compare_exchange(OPEN, DONE, Ordering::AcqRel, Ordering::Acquire)
            .map_or_else(|state| state != EXPIRED, |_| true)
    }

    /// Marks the body expired unless it already finished; `false` if it had finished.
    pub(crate) fn expire(&self) -> bool {
        self.0
            .compare_exchange(OPEN, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
            .map_or_else(|state| state == EXPIRED, |_| true)
    }
}

/// The body of a request served by a [`Server`](super::Server): hyper's
/// [`Incoming`] body, which fails with a [`BodyError`] (and the request is answered
/// `408 Request Timeout`) when it has not fully arrived within the server's
/// [`request_timeout`](super::Server::request_timeout).
///
/// A service for [`Server::serve`](super::Server::serve) takes
/// `http::Request<RequestBody>`; one that is generic over the body (axum's `Router`,
/// tower-http's middleware) takes it as it is.
///
/// ```
/// use http_body_util::BodyExt as _;
/// use tower_sse::server::RequestBody;
///
/// async fn read(req: http::Request<RequestBody>) -> Result<bytes::Bytes, tower_sse::server::BodyError> {
///     Ok(req.into_body().collect().await?.to_bytes())
/// }
/// ```
pub struct RequestBody {
    inner: Incoming,
    /// `None` for a body that was complete from the start (most `GET`s): no deadline.
    progress: Option<Arc<Progress>>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, progress: Option<Arc<Progress>>) -> Self {
        Self { inner, progress }
    }

    fn finish(&mut self) {
        if let Some(progress) = self.progress.take() {
            progress.finish();
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self
            .progress
            .as_ref()
            .is_some_and(|p| p.0.load(Ordering::Acquire) == EXPIRED)
        {
            return Poll::Ready(Some(Err(BodyError(Kind::TimedOut))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None | Some(Err(_))) => self.finish(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            _ => {}
        }
        polled.map(|frame| frame.map(|r| r.map_err(|err| BodyError(Kind::Hyper(err)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        // A service that dropped the body is not waiting for it.
        self.finish();
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

/// Why a [`RequestBody`] failed: the request timeout passed, or hyper's error
/// (the client went away, a malformed chunk).
///
/// ```
/// # fn check(err: tower_sse::server::BodyError) {
/// if err.is_timeout() {
///     // the server already answered 408
/// }
/// # }
/// ```
pub struct BodyError(Kind);

enum Kind {
    TimedOut,
    Hyper(hyper::Error),
}

impl BodyError {
    /// Whether the body did not arrive within the request timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.0, Kind::TimedOut)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::TimedOut => f.write_str("request body not received within the request timeout"),
            Kind::Hyper(_) => f.write_str("error reading the request body"),
        }
    }
}

impl fmt::Debug for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::TimedOut => f.write_str("BodyError(TimedOut)"),
            Kind::Hyper(err) => f.debug_tuple("BodyError").field(err).finish(),
        }
    }
}

impl Error for BodyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0 {
            Kind::TimedOut => None,
            Kind::Hyper(err) => Some(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_and_expired_exclude_each_other() {
        let p = Progress::default();
        assert!(p.finish());
        assert!(!p.expire());
        let p = Progress::default();
        assert!(p.expire());
        assert!(!p.finish());
        assert!(p.expire());
    }
}
