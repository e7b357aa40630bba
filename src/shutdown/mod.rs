//! Graceful shutdown of open streams.
//!
//! hyper's graceful shutdown waits for every response body to end, and an SSE body
//! never ends by itself. [`ShutdownHandle::shutdown`] ends every open stream of the
//! layer: each sends the optional last event (typically a `retry:` hint telling the
//! browser when to come back) and then ends cleanly, so the server's own graceful
//! shutdown can finish. Streams that open afterwards end at once the same way.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_sse::{Event, SseLayer};
//!
//! # async fn run() {
//! let layer = SseLayer::new();
//! let shutdown = layer.shutdown_handle();
//! // ... serve with `layer` ...
//! tokio::signal::ctrl_c().await.ok();
//! shutdown.shutdown_with(Event::new().retry(Duration::from_secs(5)));
//! shutdown.wait_closed().await; // every stream has ended
//! # }
//! ```

use std::{fmt, sync::Arc};

use crate::event::Event;

mod registry;

pub(crate) use self::registry::Registry;

/// Ends the open streams of an [`SseLayer`](crate::SseLayer); see the
/// [module docs](self). Cheap to clone.
///
/// ```
/// let layer = tower_sse::SseLayer::new();
/// let handle = layer.shutdown_handle();
/// assert!(!handle.is_shutdown());
/// assert_eq!(handle.open_streams(), 0);
/// ```
#[derive(Clone)]
pub struct ShutdownHandle {
    registry: Arc<Registry>,
}

impl ShutdownHandle {
    pub(crate) fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// Ends every open stream, and every stream that opens later, after the bytes it
    /// has already queued for the socket.
    pub fn shutdown(&self) {
        self.registry.shutdown(None);
    }

    /// Like [`shutdown`](Self::shutdown), but each stream sends `last` before it ends
    /// (for instance `Event::new().retry(…)`, telling browsers when to reconnect).
    pub fn shutdown_with(&self, last: Event) {
        self.registry.shutdown(Some(last.encode().into_bytes()));
    }

    /// Whether shutdown was triggered.
    pub fn is_shutdown(&self) -> bool {
        self.registry.is_shutting_down()
    }

    /// The number of streams still open.
    pub fn open_streams(&self) -> usize {
        self.registry.open()
    }

    /// Resolves once no stream is open.
    pub async fn wait_closed(&self) {
        self.registry.wait_closed().await;
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("is_shutdown", &self.is_shutdown())
            .field("open_streams", &self.open_streams())
            .finish()
    }
}
