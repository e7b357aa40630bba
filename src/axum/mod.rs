//! axum 0.8 integration (feature `axum`).
//!
//! Two ways to serve SSE from axum, which can be mixed:
//!
//! - **The layer** on the routes that stream: handlers return an [`SseResponse`]
//!   (it implements `IntoResponse`), and [`SseLayer`](crate::SseLayer), added with
//!   `route_layer` or `layer`, serves it with its heartbeats, buffer policy, counters
//!   and shutdown handle. Other responses pass through.
//! - **`IntoResponse` alone**: the same handlers without the layer; each response is
//!   served with the defaults of [`SseLayer::new`](crate::SseLayer::new).
//!
//! `Option<LastEventId>` is an extractor: the id of the last event a reconnecting
//! client saw.
//!
//! ```
//! use std::{convert::Infallible, time::Duration};
//!
//! use axum::{routing::get, Router};
//! use tokio_stream::{Stream, StreamExt};
//! use tower_sse::{Event, LastEventId, SseLayer, SseResponse};
//!
//! async fn events(
//!     last: Option<LastEventId>,
//! ) -> SseResponse<impl Stream<Item = Result<Event, Infallible>>> {
//!     let from = last.and_then(|id| id.parse::<u64>().ok()).map_or(1, |n| n + 1);
//!     SseResponse::new(tokio_stream::iter(from..=10).map(|n| {
//!         Ok(Event::new().data(n.to_string()))
//!     }))
//! }
//!
//! let sse = SseLayer::new().heartbeat(Duration::from_secs(15));
//! let shutdown = sse.shutdown_handle();
//! let app: Router = Router::new()
//!     .route("/events", get(events))
//!     .route_layer(sse)
//!     .route("/health", get(|| async { "ok" }));
//! # let _ = (app, shutdown);
//! ```

use std::convert::Infallible;

use axum_core::{
    body::Body,
    extract::OptionalFromRequestParts,
    response::{IntoResponse, Response},
};
use futures_core::Stream;
use http::request::Parts;

use crate::{BoxError, LastEventId, Message, SseResponse};

impl<St, T, E> IntoResponse for SseResponse<St>
where
    St: Stream<Item = Result<T, E>> + Send + 'static,
    T: Into<Message>,
    E: Into<BoxError>,
{
    fn into_response(self) -> Response {
        self.into_http().map(Body::new)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for LastEventId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(match parts.extensions.get::<LastEventId>() {
            Some(id) => Some(id.clone()),
            None => LastEventId::from_headers(&parts.headers),
        })
    }
}
