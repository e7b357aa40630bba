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

/// The data of a [`DataEvent`](crate::event::DataEvent) could not be written: its
/// `Display` implementation (or the closure of [`DataEvent::from_fn`]) returned an
/// error, or serde could not serialize the value to JSON.
///
/// Nothing of the event is written then. The layer skips such an event and logs this
/// error at `warn`; [`DataEvent::encode`] returns it.
///
/// [`DataEvent::from_fn`]: crate::event::DataEvent::from_fn
/// [`DataEvent::encode`]: crate::event::DataEvent::encode
///
/// # Example
///
/// ```
/// use std::fmt;
/// use tower_sse::event::DataEvent;
///
/// let event = DataEvent::from_fn(|_| Err(fmt::Error));
/// let err = event.encode().unwrap_err();
/// assert_eq!(err.to_string(), "event data could not be formatted");
/// ```
#[derive(Debug)]
pub struct DataError {
    inner: DataErrorInner,
}

#[derive(Debug)]
enum DataErrorInner {
    Fmt,
    #[cfg(feature = "json")]
    Json(serde_json::Error),
}

impl DataError {
    pub(crate) const fn fmt() -> Self {
        Self {
            inner: DataErrorInner::Fmt,
        }
    }

    #[cfg(feature = "json")]
    pub(crate) const fn json(err: serde_json::Error) -> Self {
        Self {
            inner: DataErrorInner::Json(err),
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            DataErrorInner::Fmt => f.write_str("event data could not be formatted"),
            #[cfg(feature = "json")]
            DataErrorInner::Json(_) => f.write_str("event data could not be serialized to JSON"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.inner {
            DataErrorInner::Fmt => None,
            #[cfg(feature = "json")]
            DataErrorInner::Json(err) => Some(err),
        }
    }
}
