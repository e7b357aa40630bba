//! The `Last-Event-ID` request header.

use std::{fmt, str::FromStr};

use http::HeaderMap;

/// The name of the header a reconnecting `EventSource` sends.
pub const LAST_EVENT_ID: http::HeaderName = http::HeaderName::from_static("last-event-id");

/// The `Last-Event-ID` a reconnecting client sent: the `id` of the last event it saw.
///
/// The layer parses the header and inserts this into the request's extensions before
/// calling the inner service, so a handler can resume where the client left off. A
/// header that is not UTF-8 is ignored (and traced), never an error.
///
/// ```
/// use tower_sse::LastEventId;
///
/// # fn handler(req: http::Request<()>) {
/// let resume_after: u64 = req
///     .extensions()
///     .get::<LastEventId>()
///     .and_then(|id| id.parse().ok())
///     .unwrap_or(0);
/// # }
/// let id = LastEventId::new("41");
/// assert_eq!(id.as_str(), "41");
/// assert_eq!(id.parse::<u64>(), Ok(41));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LastEventId(String);

impl LastEventId {
    /// Wraps an id (for tests, or to resume from an id found elsewhere).
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// Reads the header from `headers`, if present and UTF-8.
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("last-event-id", "7".parse().unwrap());
    /// let id = tower_sse::LastEventId::from_headers(&headers).unwrap();
    /// assert_eq!(id.as_str(), "7");
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(LAST_EVENT_ID)?;
        match std::str::from_utf8(value.as_bytes()) {
            Ok(id) => Some(Self(id.to_owned())),
            Err(_) => {
                tracing::debug!("ignoring a Last-Event-ID header that is not UTF-8");
                None
            }
        }
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the id, typically as a number.
    ///
    /// # Errors
    ///
    /// The error of `T::from_str` when the id is not a `T`.
    pub fn parse<T: FromStr>(&self) -> Result<T, T::Err> {
        self.0.parse()
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LastEventId").field(&self.0).finish()
    }
}

impl fmt::Display for LastEventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
