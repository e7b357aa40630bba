//! Events and their wire encoding.
//!
//! An [`Event`] holds the fields of one server-sent event. It is validated when it is
//! built ([`EventError`] for values that would break framing) and encoded when it is
//! sent, by appending into the connection's frame buffer: a stream of events costs no
//! allocation in the encoder. [`Event::encode`] produces an [`EncodedEvent`] (one
//! allocation, exact size) that can be shared by any number of connections.
//!
//! A [`DataEvent`] keeps its data as a value instead (a `Display`, a serde value with
//! the `json` feature, bytes, a closure that writes, or a type of yours that
//! implements [`WriteData`]) and writes it straight into the frame when it is sent: no
//! `String` per event, the same bytes as an `Event`.
//!
//! The encoding follows the WHATWG HTML "server-sent events" parser: every line ends
//! with `\n`, `data` is split into one `data:` line per line of text (on `\n`, `\r\n`
//! and a lone `\r`), and a space always follows the colon so that a value that starts
//! with a space keeps it.
//!
//! ```
//! use tower_sse::Event;
//!
//! # fn main() -> Result<(), tower_sse::EventError> {
//! let event = Event::new().id("7")?.event("tick")?.data("line one\nline two");
//! assert_eq!(
//!     event.encode().as_bytes(),
//!     &b"id: 7\nevent: tick\ndata: line one\ndata: line two\n\n"[..],
//! );
//! # Ok(())
//! # }
//! ```

mod data;
mod either;
mod encode;
mod error;

use std::{borrow::Cow, fmt, time::Duration};

use bytes::{Bytes, BytesMut};

#[cfg(feature = "json")]
pub use self::data::JsonData;
pub use self::data::{
    BytesData, CustomData, Data, DataEvent, DataWriter, DisplayData, FnData, WriteData, WriteWith,
};
pub use self::either::Either;
pub(crate) use self::encode::put_lines;
pub use self::error::{DataError, EventError, EventErrorKind};

/// Text stored in an event: a `&'static str` or a `String`, both without a copy.
type Text = Cow<'static, str>;

/// One server-sent event: optional `id`, `event` name, `data`, `retry` and comment.
///
/// Setters for `data`, `retry` and the comment cannot fail: any text is encoded
/// faithfully. [`Event::id`] and [`Event::event`] return an [`EventError`] for values
/// that no client could read back (a line break, or a NUL in an id).
///
/// Values are `Into<Cow<'static, str>>`: pass a `String` (moved, not copied) or a
/// `&'static str`; for a borrowed `&str`, pass `s.to_owned()`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_sse::Event;
///
/// # fn main() -> Result<(), tower_sse::EventError> {
/// let event = Event::new()
///     .id("42")?
///     .event("update")?
///     .retry(Duration::from_millis(1500))
///     .data(format!("{{\"n\":{}}}", 42));
/// assert_eq!(
///     event.encode().as_bytes(),
///     &b"id: 42\nevent: update\nretry: 1500\ndata: {\"n\":42}\n\n"[..],
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Event {
    id: Option<Text>,
    event: Option<Text>,
    data: Option<Text>,
    comment: Option<Text>,
    retry: Option<u64>,
}

impl Event {
    /// An event with no fields. Add fields with the builder methods.
    ///
    /// ```
    /// let event = tower_sse::Event::new().data("hello");
    /// assert_eq!(event.encode().as_bytes(), &b"data: hello\n\n"[..]);
    /// ```
    pub const fn new() -> Self {
        Self {
            id: None,
            event: None,
            data: None,
            comment: None,
            retry: None,
        }
    }

    /// Sets the `data` field. Line breaks (`\n`, `\r\n`, lone `\r`) become separate
    /// `data:` lines, which the client joins back with `\n`.
    ///
    /// ```
    /// let event = tower_sse::Event::new().data("a\r\nb\rc");
    /// assert_eq!(event.encode().as_bytes(), &b"data: a\ndata: b\ndata: c\n\n"[..]);
    /// ```
    pub fn data(mut self, data: impl Into<Cow<'static, str>>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Sets the `data` field to `value` serialized as compact JSON.
    ///
    /// ```
    /// # fn main() -> Result<(), serde_json::Error> {
    /// let event = tower_sse::Event::new().json_data(&serde_json::json!({"n": 1}))?;
    /// assert_eq!(event.encode().as_bytes(), &b"data: {\"n\":1}\n\n"[..]);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json_data<T: serde::Serialize + ?Sized>(
        self,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(self.data(serde_json::to_string(value)?))
    }

    /// Sets the `id` field, which the client sends back as `Last-Event-ID` when it
    /// reconnects.
    ///
    /// # Errors
    ///
    /// [`EventErrorKind::IdLineBreak`] if `id` contains `\n` or `\r`,
    /// [`EventErrorKind::IdNul`] if it contains a NUL character.
    ///
    /// ```
    /// use tower_sse::Event;
    ///
    /// assert!(Event::new().id("abc-1").is_ok());
    /// assert!(Event::new().id("a\0b").is_err());
    /// ```
    pub fn id(mut self, id: impl Into<Cow<'static, str>>) -> Result<Self, EventError> {
        let id = id.into();
        check_id(&id)?;
        self.id = Some(id);
        Ok(self)
    }

    /// Sets the `id` field to a number. Digits never break framing, so this cannot fail.
    ///
    /// ```
    /// let event = tower_sse::Event::new().id_u64(42).data("x");
    /// assert_eq!(event.encode().as_bytes(), &b"id: 42\ndata: x\n\n"[..]);
    /// ```
    pub fn id_u64(mut self, id: u64) -> Self {
        let mut digits = [0; 20];
        let digits = encode::decimal(id, &mut digits);
        // `decimal` writes ASCII digits only.
        self.id = Some(Cow::Owned(digits.iter().map(|&d| char::from(d)).collect()));
        self
    }

    /// Sets the `event` field: the event type a browser dispatches on
    /// (`source.addEventListener(name, …)`); without it the type is `message`.
    ///
    /// # Errors
    ///
    /// [`EventErrorKind::EventLineBreak`] if `event` contains `\n` or `\r`.
    ///
    /// ```
    /// use tower_sse::Event;
    ///
    /// assert!(Event::new().event("tick").is_ok());
    /// assert!(Event::new().event("tick\ndata: forged").is_err());
    /// ```
    pub fn event(mut self, event: impl Into<Cow<'static, str>>) -> Result<Self, EventError> {
        let event = event.into();
        check_event(&event)?;
        self.event = Some(event);
        Ok(self)
    }

    /// Sets the `retry` field: how long the client waits before reconnecting, in
    /// whole milliseconds.
    ///
    /// ```
    /// use std::time::Duration;
    /// let event = tower_sse::Event::new().retry(Duration::from_secs(2));
    /// assert_eq!(event.encode().as_bytes(), &b"retry: 2000\n\n"[..]);
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(u64::try_from(retry.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Sets a comment, which clients ignore. Line breaks become several comment lines.
    ///
    /// ```
    /// let event = tower_sse::Event::new().comment("hello");
    /// assert_eq!(event.encode().as_bytes(), &b": hello\n\n"[..]);
    /// ```
    pub fn comment(mut self, comment: impl Into<Cow<'static, str>>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The `id`, if set.
    pub fn id_str(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The `event` name, if set.
    pub fn event_str(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The `data`, if set.
    pub fn data_str(&self) -> Option<&str> {
        self.data.as_deref()
    }

    /// Appends the encoded event, ending with its blank line, to `buf`.
    ///
    /// This is how the layer encodes: many events go into one buffer that becomes one
    /// body frame. It allocates only if `buf` has to grow.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use tower_sse::Event;
    ///
    /// let mut buf = BytesMut::with_capacity(64);
    /// Event::new().data("1").encode_to(&mut buf);
    /// Event::new().data("2").encode_to(&mut buf);
    /// assert_eq!(&buf[..], b"data: 1\n\ndata: 2\n\n");
    /// ```
    pub fn encode_to(&self, buf: &mut BytesMut) {
        if let Some(comment) = &self.comment {
            put_lines(buf, b"", comment);
        }
        if let Some(id) = &self.id {
            encode::put_line(buf, b"id", id.as_bytes());
        }
        if let Some(event) = &self.event {
            encode::put_line(buf, b"event", event.as_bytes());
        }
        if let Some(retry) = self.retry {
            encode::put_number(buf, b"retry", retry);
        }
        if let Some(data) = &self.data {
            put_lines(buf, b"data", data);
        }
        buf.extend_from_slice(b"\n");
    }

    /// The exact number of bytes [`Event::encode_to`] appends.
    ///
    /// ```
    /// let event = tower_sse::Event::new().data("a\nb");
    /// assert_eq!(event.encoded_len(), event.encode().as_bytes().len());
    /// ```
    pub fn encoded_len(&self) -> usize {
        let mut len = 1;
        if let Some(comment) = &self.comment {
            len += encode::lines_len(b"", comment);
        }
        if let Some(id) = &self.id {
            len += encode::line_len(b"id", id.len());
        }
        if let Some(event) = &self.event {
            len += encode::line_len(b"event", event.len());
        }
        if let Some(retry) = self.retry {
            let mut digits = [0; 20];
            len += encode::line_len(b"retry", encode::decimal(retry, &mut digits).len());
        }
        if let Some(data) = &self.data {
            len += encode::lines_len(b"data", data);
        }
        len
    }

    /// Encodes the event once into shareable bytes, with one allocation of exactly the
    /// right size. Cloning the result is a reference-count increment, so one event can
    /// be sent to many connections without encoding it again.
    ///
    /// ```
    /// let shared = tower_sse::Event::new().data("to everyone").encode();
    /// let copy = shared.clone(); // no copy of the bytes
    /// assert_eq!(copy.as_bytes(), &b"data: to everyone\n\n"[..]);
    /// ```
    pub fn encode(&self) -> EncodedEvent {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_to(&mut buf);
        EncodedEvent(buf.freeze())
    }
}

/// An `id` no client could read back: a line break, or a NUL.
fn check_id(id: &str) -> Result<(), EventError> {
    match memchr::memchr3(b'\n', b'\r', b'\0', id.as_bytes()) {
        None => Ok(()),
        Some(i) if id.as_bytes()[i] == b'\0' => Err(EventError::new(EventErrorKind::IdNul)),
        Some(_) => Err(EventError::new(EventErrorKind::IdLineBreak)),
    }
}

/// An `event` name that would end its line early.
fn check_event(event: &str) -> Result<(), EventError> {
    match memchr::memchr2(b'\n', b'\r', event.as_bytes()) {
        None => Ok(()),
        Some(_) => Err(EventError::new(EventErrorKind::EventLineBreak)),
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Event");
        for (name, value) in [
            ("id", &self.id),
            ("event", &self.event),
            ("data", &self.data),
            ("comment", &self.comment),
        ] {
            if let Some(value) = value {
                s.field(name, value);
            }
        }
        if let Some(retry) = self.retry {
            s.field("retry_ms", &retry);
        }
        s.finish()
    }
}

/// An event already encoded to its wire bytes, cheap to clone and share.
///
/// Made only by [`Event::encode`], so its bytes are always one well-formed event
/// block. A source stream may yield `EncodedEvent`s instead of [`Event`]s: the layer
/// sends their bytes as they are.
///
/// ```
/// use tower_sse::{EncodedEvent, Event};
///
/// let encoded: EncodedEvent = Event::new().data("hi").into();
/// assert_eq!(encoded.len(), 10);
/// let bytes: bytes::Bytes = encoded.into_bytes();
/// assert_eq!(&bytes[..], b"data: hi\n\n");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedEvent(Bytes);

impl EncodedEvent {
    /// Wraps bytes this crate encoded (one whole event block).
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    pub(crate) fn from_encoded(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// The encoded bytes, ending with the blank line that terminates the event.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The encoded bytes, ending with the blank line that terminates the event.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length on the wire, in bytes.
    #[allow(clippy::len_without_is_empty)] // an encoded event is never empty
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<Event> for EncodedEvent {
    fn from(event: Event) -> Self {
        event.encode()
    }
}

impl From<&Event> for EncodedEvent {
    fn from(event: &Event) -> Self {
        event.encode()
    }
}

impl fmt::Debug for EncodedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EncodedEvent").field(&self.0).finish()
    }
}

/// Either an [`Event`] or an [`EncodedEvent`], for a stream that yields both (for
/// instance events made per connection mixed with events encoded once for everybody).
///
/// ```
/// use tower_sse::{Event, Message};
///
/// let shared = Event::new().data("for everyone").encode();
/// let items: Vec<Message> = vec![Event::new().data("just for you").into(), shared.into()];
/// # let _ = items;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Fields, encoded when sent.
    Event(Event),
    /// Bytes encoded before.
    Encoded(EncodedEvent),
}

impl From<Event> for Message {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

impl From<EncodedEvent> for Message {
    fn from(event: EncodedEvent) -> Self {
        Self::Encoded(event)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Event {}
    impl Sealed for super::EncodedEvent {}
    impl Sealed for super::Message {}
}

/// What a source stream may yield: an [`Event`], an [`EncodedEvent`], a [`Message`], a
/// [`DataEvent`], or an [`Either`] of two of these.
///
/// Sealed: only tower-sse's own event types implement it, so everything the layer
/// writes is a well-formed event block.
pub trait Encode: sealed::Sealed {
    /// Appends the wire bytes of the event to `buf`.
    fn encode_to(&self, buf: &mut BytesMut);
    /// The wire bytes of the event as one shareable buffer.
    fn into_bytes(self) -> Bytes;
    /// [`into_bytes`](Encode::into_bytes) in place: the layer reads a polled event
    /// where the source left it (no copy of the value out of the poll's result) and
    /// takes encoded bytes out without a copy; what is left behind is only dropped.
    #[doc(hidden)]
    #[inline]
    fn take_bytes(&mut self) -> Bytes {
        let mut buf = BytesMut::new();
        self.encode_to(&mut buf);
        buf.freeze()
    }
}

impl Encode for Event {
    #[inline]
    fn encode_to(&self, buf: &mut BytesMut) {
        Event::encode_to(self, buf);
    }
    fn into_bytes(self) -> Bytes {
        self.encode().0
    }
    /// One allocation of the exact size, as [`Event::encode`].
    #[inline]
    fn take_bytes(&mut self) -> Bytes {
        self.encode().0
    }
}

impl Encode for Message {
    #[inline]
    fn encode_to(&self, buf: &mut BytesMut) {
        match self {
            Self::Event(event) => event.encode_to(buf),
            Self::Encoded(encoded) => Encode::encode_to(encoded, buf),
        }
    }
    fn into_bytes(self) -> Bytes {
        match self {
            Self::Event(event) => Encode::into_bytes(event),
            Self::Encoded(encoded) => encoded.0,
        }
    }
    #[inline]
    fn take_bytes(&mut self) -> Bytes {
        match self {
            Self::Event(event) => event.take_bytes(),
            Self::Encoded(encoded) => encoded.take_bytes(),
        }
    }
}

impl Encode for EncodedEvent {
    #[inline]
    fn encode_to(&self, buf: &mut BytesMut) {
        buf.extend_from_slice(&self.0);
    }
    fn into_bytes(self) -> Bytes {
        self.0
    }
    #[inline]
    fn take_bytes(&mut self) -> Bytes {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(event: &Event) -> String {
        let encoded = event.encode();
        assert_eq!(encoded.len(), event.encoded_len());
        String::from_utf8(encoded.into_bytes().to_vec()).unwrap()
    }

    #[test]
    fn take_bytes_is_into_bytes_in_place() {
        let event = Event::new().id("1").unwrap().data("a\nb");
        let mut message = Message::Event(event.clone());
        assert_eq!(message.take_bytes(), event.clone().into_bytes());
        let shared = event.encode();
        let mut encoded = Message::Encoded(shared.clone());
        let taken = encoded.take_bytes();
        // The shared bytes themselves, not a copy.
        assert_eq!(taken.as_ptr(), shared.as_bytes().as_ptr());
        assert_eq!(taken, shared.into_bytes());
        let mut either: Either<Event, Message> = Either::Left(event.clone());
        assert_eq!(either.take_bytes(), event.into_bytes());
    }

    #[test]
    fn empty_event_is_a_lone_blank_line() {
        assert_eq!(wire(&Event::new()), "\n");
    }

    #[test]
    fn all_fields_in_order() {
        let event = Event::new()
            .comment("c")
            .id("1")
            .unwrap()
            .event("e")
            .unwrap()
            .retry(Duration::from_millis(10))
            .data("d");
        assert_eq!(wire(&event), ": c\nid: 1\nevent: e\nretry: 10\ndata: d\n\n");
    }

    #[test]
    fn empty_id_resets_last_event_id() {
        assert_eq!(wire(&Event::new().id("").unwrap()), "id:\n\n");
    }

    #[test]
    fn trailing_newline_in_data_is_kept() {
        assert_eq!(wire(&Event::new().data("a\n")), "data: a\ndata:\n\n");
    }

    #[test]
    fn bad_ids_and_names_are_typed_errors() {
        for (id, kind) in [
            ("a\nb", EventErrorKind::IdLineBreak),
            ("a\rb", EventErrorKind::IdLineBreak),
            ("a\0b", EventErrorKind::IdNul),
        ] {
            assert_eq!(Event::new().id(id).unwrap_err().kind(), kind);
        }
        assert_eq!(
            Event::new().event("x\r\n").unwrap_err().kind(),
            EventErrorKind::EventLineBreak
        );
        // A NUL in an event name is legal for WHATWG parsers.
        assert!(Event::new().event("a\0b").is_ok());
    }
}
