//! [`SseBody`]: the body of every response made by the layer.

mod deferred;

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::Stream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use pin_project_lite::pin_project;

pub use self::deferred::BoxEventStream;
pub(crate) use self::deferred::Slot;
use crate::{error::BoxError, event::Encode, gate::WriteGate, stream::EventsBody};

pin_project! {
    /// The body of a response made by [`SseLayer`](crate::SseLayer): the event stream
    /// encoded as `text/event-stream`, or the body of a response passed through.
    ///
    /// Its size is always unknown (so no `content-length`), each frame carries every
    /// event that was ready (up to [`max_frame_bytes`](crate::SseLayer::max_frame_bytes)),
    /// and dropping it (the client left) drops the event source at once.
    pub struct SseBody<St> {
        #[pin]
        kind: BodyKind<St>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<St> {
        Events { #[pin] events: EventsBody<St> },
        Other { #[pin] body: UnsyncBoxBody<Bytes, BoxError> },
        /// Made by `SseResponse::into_http`: the stream waits in the slot for a layer
        /// or, on first poll, is served with the default settings.
        Deferred { slot: Slot },
    }
}

impl<St> SseBody<St> {
    pub(crate) fn events(events: EventsBody<St>) -> Self {
        Self {
            kind: BodyKind::Events { events },
        }
    }

    pub(crate) fn other(body: UnsyncBoxBody<Bytes, BoxError>) -> Self {
        Self {
            kind: BodyKind::Other { body },
        }
    }

    /// An event body waits on `gate` (see [`WriteGate`]); other bodies ignore it.
    pub(crate) fn gated(self, gate: Option<WriteGate>) -> Self {
        match (self.kind, gate) {
            (BodyKind::Events { events }, Some(gate)) => Self::events(events.gated(gate)),
            (kind, _) => Self { kind },
        }
    }

    pub(crate) fn deferred(slot: Slot) -> Self {
        Self {
            kind: BodyKind::Deferred { slot },
        }
    }
}

/// An empty body, passed through like any other: what middleware in front of the
/// layer (tower-http's auth, CORS and timeout layers) answers with when it refuses a
/// request itself.
impl<St> Default for SseBody<St> {
    fn default() -> Self {
        Self::other(UnsyncBoxBody::default())
    }
}

impl<St> fmt::Debug for SseBody<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            BodyKind::Events { .. } => "SseBody::Events",
            BodyKind::Other { .. } => "SseBody::Other",
            BodyKind::Deferred { .. } => "SseBody::Deferred",
        })
    }
}

impl<St, T, E> Body for SseBody<St>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Encode + Send + 'static,
    E: Into<BoxError> + 'static,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut kind = self.project().kind;
        match kind.as_mut().project() {
            BodyKindProj::Events { events } => events.poll_frame(cx),
            BodyKindProj::Other { body } => body.poll_frame(cx),
            BodyKindProj::Deferred { slot } => {
                let Some(events) = slot.serve_layerless() else {
                    return Poll::Ready(None);
                };
                // The slot only ever holds a `BoxEventStream`, but this body is generic:
                // serve it through a body of that type.
                kind.set(BodyKind::Other {
                    body: UnsyncBoxBody::new(SseBody::events(events)),
                });
                match kind.project() {
                    BodyKindProj::Other { body } => body.poll_frame(cx),
                    _ => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Events { events } => events.is_done(),
            BodyKind::Other { body } => body.is_end_stream(),
            BodyKind::Deferred { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Events { .. } => SizeHint::default(),
            BodyKind::Other { body } => body.size_hint(),
            BodyKind::Deferred { .. } => SizeHint::default(),
        }
    }
}
