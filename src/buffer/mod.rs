//! The per-connection bounded buffer between the event source and the socket.
//!
//! hyper polls a response body only while the connection can take more bytes, so a
//! client that reads slowly stops the body from being polled. What happens to the
//! event source then is the [`Overflow`] policy:
//!
//! | policy | the source is | memory | the client sees |
//! |---|---|---|---|
//! | [`Overflow::Wait`] (default) | not polled until the client reads (backpressure) | one frame (and hyper's write queue, see [`BufferLimits`]) | every event |
//! | [`Overflow::DropOldest`] | drained into the buffer; oldest events dropped when full | the buffer's caps | the newest events, and a gap marker |
//! | [`Overflow::DropNewest`] | drained into the buffer; new events dropped when full | the buffer's caps | the oldest events, and a gap marker |
//! | [`Overflow::Disconnect`] | drained into the buffer; the connection is ended when full | the buffer's caps | a closed connection; it reconnects with `Last-Event-ID` |
//!
//! The buffer is bounded both in events and in bytes ([`BufferLimits`]). With
//! `Wait` and no stall timeout, the body polls the source itself and encodes straight
//! into the outgoing frame: there is no queue and no extra task, and what the stream
//! holds is one frame of at most `min(max_frame_bytes, limits.bytes())` bytes. The other policies
//! (and [`SseLayer::stall_timeout`](crate::SseLayer::stall_timeout)) need the source
//! to be drained while the socket is full, so the stream gets a small task that moves
//! encoded events into the bounded queue; it is aborted, and the source dropped, as
//! soon as the response body is dropped.
//!
//! Dropped events are never silent: they are counted per connection (in the tracing
//! span) and in [`SseStats`](crate::SseStats), and with
//! [`SseLayer::gap_event`](crate::SseLayer::gap_event) the client receives an event
//! that marks the gap where it happened, so it can resync.
//!
//! What waits in the buffers is visible too: [`SseStats::queued_events`] and
//! [`SseStats::queued_bytes`] add up the buffers of all the layer's open streams
//! right now, and each stream's span records its high-water mark as `max_queued`.
//!
//! [`SseStats::queued_events`]: crate::SseStats::queued_events
//! [`SseStats::queued_bytes`]: crate::SseStats::queued_bytes
//!
//! ```
//! use tower_sse::{BufferLimits, Overflow, SseLayer};
//!
//! let layer = SseLayer::new()
//!     .buffer(BufferLimits::new(256, 1 << 20)) // at most 256 events and 1 MiB
//!     .on_overflow(Overflow::DropOldest);
//! ```

mod queue;

pub(crate) use self::queue::{fits_frame, Pushed, Queue, Take};

/// Caps on what one connection may hold: a number of events and a number of bytes.
///
/// The default is 256 events and 1 MiB.
///
/// # Memory per connection
///
/// What a client that stops reading holds in the server, at most (`F` the frame cap,
/// `min(max_frame_bytes, bytes())`; `B` hyper's HTTP/1 write buffer limit; `C` the
/// connection at rest):
///
/// - [`Overflow::Wait`] without a stall timeout: no queue.
///   - HTTP/1.1 served by [`server::Server`](crate::server::Server) (feature
///     `server`): `C + 9F/8`. Its write gate keeps one frame at a time in hyper (a frame
///     handed over closes it, hyper's flush of everything it holds opens it), and the
///     body builds nothing while the gate is closed; a busy stream's frame is
///     allocated at `9F/8`, room for the event that crosses the cap.
///   - HTTP/1.1 served otherwise: `C + B + 2F`. hyper takes body frames while it holds
///     less than `B`, writable socket or not (up to `B + F`), plus the frame being
///     built.
/// - Any other policy, or a stall timeout: the same, plus the queue: at most
///   `bytes()` of encoded events in at most `events()` entries (each its own
///   allocation, about 40 bytes of bookkeeping more).
/// - HTTP/2: per stream, h2's send buffer (hyper's `max_send_buf_size`) plus up to two
///   frames (one in h2, one waiting for send capacity), times the streams open on the
///   connection.
///
/// Measured (`benches/memory.sh`, RELIABILITY.md; the demo: `F` = 12 KiB, jemalloc): a
/// stalled HTTP/1.1 reader grows the server's RSS by 22.8 KiB on `/stream` and 23.9 KiB
/// on `/slow` (1 KiB events), a stalled h2 stream by 18.8 KiB. Lower
/// [`SseLayer::max_frame_bytes`](crate::SseLayer::max_frame_bytes) to lower it.
///
/// ```
/// let limits = tower_sse::BufferLimits::new(64, 256 * 1024);
/// assert_eq!(limits.events(), 64);
/// assert_eq!(limits.bytes(), 256 * 1024);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    events: usize,
    bytes: usize,
}

impl BufferLimits {
    /// At most `events` events and `bytes` bytes (both raised to at least 1).
    pub const fn new(events: usize, bytes: usize) -> Self {
        Self {
            events: if events == 0 { 1 } else { events },
            bytes: if bytes == 0 { 1 } else { bytes },
        }
    }

    /// The cap on buffered events.
    pub const fn events(&self) -> usize {
        self.events
    }

    /// The cap on buffered bytes (encoded).
    pub const fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Default for BufferLimits {
    fn default() -> Self {
        Self::new(256, 1 << 20)
    }
}

/// What to do when a connection's buffer is full; see the [module docs](self).
///
/// ```
/// use tower_sse::{Overflow, SseLayer};
/// let layer = SseLayer::new().on_overflow(Overflow::Disconnect);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Stop polling the source until the client has read (backpressure).
    #[default]
    Wait,
    /// Drop the oldest buffered events to make room.
    DropOldest,
    /// Drop the incoming event.
    DropNewest,
    /// End the connection and drop everything it buffered.
    Disconnect,
}
