//! [`Either`]: one source, two kinds of event.

use bytes::{Bytes, BytesMut};

use super::{sealed, Encode};

/// One of two kinds of event, for a source stream that yields both: say owned
/// [`Event`](crate::Event)s or hub bytes ([`Message`](crate::Message)) on most paths
/// and frame-direct [`DataEvent`](crate::DataEvent)s on a hot one, from one stream
/// type (so one response type, one layer, no boxing).
///
/// Each item is encoded as its own kind encodes it: the bytes on the wire are those of
/// the inner event.
///
/// ```
/// use std::convert::Infallible;
/// use tower_sse::{event::Either, DataEvent, Event, SseResponse};
///
/// let events = tokio_stream::iter([
///     Ok::<_, Infallible>(Either::Left(Event::new().data("hello"))),
///     Ok(Either::Right(DataEvent::display(42))),
/// ]);
/// let response = SseResponse::new(events);
/// # let _ = response;
///
/// let item: Either<Event, DataEvent<_>> = Either::Right(DataEvent::display(42));
/// assert_eq!(tower_sse::event::Encode::into_bytes(item), &b"data: 42\n\n"[..]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Either<L, R> {
    /// The first kind.
    Left(L),
    /// The second kind.
    Right(R),
}

impl<L: Encode, R: Encode> sealed::Sealed for Either<L, R> {}

impl<L: Encode, R: Encode> Encode for Either<L, R> {
    #[inline]
    fn encode_to(&self, buf: &mut BytesMut) {
        match self {
            Self::Left(left) => left.encode_to(buf),
            Self::Right(right) => right.encode_to(buf),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Self::Left(left) => left.into_bytes(),
            Self::Right(right) => right.into_bytes(),
        }
    }

    #[inline]
    fn take_bytes(&mut self) -> Bytes {
        match self {
            Self::Left(left) => left.take_bytes(),
            Self::Right(right) => right.take_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataEvent, Event};

    #[test]
    fn encodes_as_the_inner_event() {
        let left: Either<Event, DataEvent<_>> = Either::Left(Event::new().data("a\nb"));
        let right: Either<Event, _> = Either::Right(DataEvent::display("a\rb"));
        for item in [left, right] {
            let mut buf = BytesMut::new();
            item.encode_to(&mut buf);
            assert_eq!(&buf[..], b"data: a\ndata: b\n\n");
            assert_eq!(item.into_bytes(), &b"data: a\ndata: b\n\n"[..]);
        }
    }
}
