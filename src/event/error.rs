use std::fmt;

/// An event field value that cannot be encoded without breaking the SSE framing.
///
/// Returned by [`Event::id`](crate::Event::id) and [`Event::event`](crate::Event::event).
/// A line break inside an `id` or `event` value would end the field early and let the
/// rest of the text forge new fields or events on the client; a NUL inside an `id` makes
/// WHATWG-conforming clients ignore the id. tower-sse refuses both instead of panicking
/// or silently rewriting the value.
///
/// # Example
///
/// ```
/// use tower_sse::{Event, EventErrorKind};
///
/// let err = Event::new().id("1\nevent: forged").unwrap_err();
/// assert_eq!(err.kind(), EventErrorKind::IdLineBreak);
/// assert_eq!(err.to_string(), "event id contains a line break");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventError {
    kind: EventErrorKind,
}

/// What is wrong with an event field; see [`EventError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventErrorKind {
    /// The id contains `\n` or `\r`.
    IdLineBreak,
    /// The id contains a NUL character, which makes clients ignore it.
    IdNul,
    /// The event name contains `\n` or `\r`.
    EventLineBreak,
}

impl EventError {
    pub(crate) const fn new(kind: EventErrorKind) -> Self {
        Self { kind }
    }

    /// Which rule the value broke.
    ///
    /// ```
    /// use tower_sse::{Event, EventErrorKind};
    ///
    /// let err = Event::new().event("a\rb").unwrap_err();
    /// assert_eq!(err.kind(), EventErrorKind::EventLineBreak);
    /// ```
    pub const fn kind(&self) -> EventErrorKind {
        self.kind
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            EventErrorKind::IdLineBreak => "event id contains a line break",
            EventErrorKind::IdNul => "event id contains a NUL character",
            EventErrorKind::EventLineBreak => "event name contains a line break",
        })
    }
}

impl std::error::Error for EventError {}
