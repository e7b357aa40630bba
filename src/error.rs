use std::fmt;

/// A boxed error, as used by tower and hyper.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error an SSE response body ends with when the layer disconnects a client as
/// too slow, aborting the connection.
///
/// The body of an SSE response fails only when the layer deliberately drops a slow
/// client ([`Overflow::Disconnect`](crate::Overflow::Disconnect) or
/// [`SseLayer::stall_timeout`](crate::SseLayer::stall_timeout)). Errors from the event
/// source end the stream cleanly instead (see [`SseLayer::on_error`](crate::SseLayer::on_error)).
///
/// ```
/// let err = tower_sse::SlowClientError::overflow();
/// assert!(err.is_overflow());
/// assert_eq!(err.to_string(), "sse client disconnected: its buffer was full");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowClientError {
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Overflow,
    Stall,
}

impl SlowClientError {
    /// The error of a client disconnected because its buffer was full.
    pub const fn overflow() -> Self {
        Self {
            kind: Kind::Overflow,
        }
    }

    /// The error of a client disconnected because it accepted nothing for the stall timeout.
    pub const fn stall() -> Self {
        Self { kind: Kind::Stall }
    }

    /// Whether the client's buffer was full under [`Overflow::Disconnect`](crate::Overflow::Disconnect).
    pub const fn is_overflow(&self) -> bool {
        matches!(self.kind, Kind::Overflow)
    }

    /// Whether the client accepted nothing for the [stall timeout](crate::SseLayer::stall_timeout).
    pub const fn is_stall(&self) -> bool {
        matches!(self.kind, Kind::Stall)
    }
}

impl fmt::Display for SlowClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Overflow => "sse client disconnected: its buffer was full",
            Kind::Stall => "sse client disconnected: it stopped reading",
        })
    }
}

impl std::error::Error for SlowClientError {}
