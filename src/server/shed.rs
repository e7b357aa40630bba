//! The answer past the connection cap: the shed answer for an SSE request (status
//! 200, one jittered `retry:`, the end), `503` for anything else.

use std::{
    collections::hash_map::RandomState,
    convert::Infallible,
    hash::BuildHasher as _,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};

use crate::event::Event;

/// The answer to `req`; `retry` is the shortest `retry:` hint (jittered up to 3×).
pub(crate) fn answer<B>(req: &Request<B>, retry: Duration) -> Response<ShedBody> {
    if accepts_event_stream(req.headers()) {
        let hint = Event::new().retry(jittered(retry)).encode().into_bytes();
        let mut res = Response::new(ShedBody(Some(hint)));
        crate::response::set_sse_headers(res.headers_mut());
        res
    } else {
        let msg = Bytes::from_static(b"too many connections, retry later\n");
        let mut res = Response::new(ShedBody(Some(msg)));
        *res.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        res
    }
}

/// Whether an `Accept` header names `text/event-stream` (as `EventSource` sends it).
fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                let media = t.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("text/event-stream")
            })
        })
    })
}

/// `base` plus a random part below `2 × base`, at least 1 s: clients told to come back
/// do not all come back at once.
fn jittered(base: Duration) -> Duration {
    let base = base.max(Duration::from_secs(1));
    let span = u64::try_from(base.as_millis().saturating_mul(2)).unwrap_or(u64::MAX);
    let random = RandomState::new().hash_one(std::time::Instant::now());
    base + Duration::from_millis(random % span.max(1))
}

/// A body of one chunk of unknown length (an SSE response has no `content-length`).
#[derive(Debug)]
pub(crate) struct ShedBody(Option<Bytes>);

impl Body for ShedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_hint_is_jittered_and_at_least_a_second() {
        for _ in 0..100 {
            let r = jittered(Duration::from_millis(10));
            assert!(
                r >= Duration::from_secs(1) && r < Duration::from_secs(3),
                "{r:?}"
            );
        }
    }

    #[test]
    fn recognises_event_source_requests() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_event_stream(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, Text/Event-Stream;q=0.9"),
        );
        assert!(accepts_event_stream(&headers));
    }
}
