//! A stream made into an `http::Response` by
//! [`SseResponse::into_http`](crate::SseResponse::into_http), waiting for a layer.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
};

use futures_core::Stream;
use tracing::Span;

use crate::{
    error::BoxError, event::Message, heartbeat::Choice, limit::Permit, state::layerless,
    stream::EventsBody, sync::lock,
};

/// A boxed event stream: what an SSE response carries through an
/// `http::Response` (see [`SseResponse::into_http`](crate::SseResponse::into_http)).
pub type BoxEventStream = Pin<Box<dyn Stream<Item = Result<Message, BoxError>> + Send>>;

/// Carries an SSE stream inside an `http::Response`'s extensions, to whichever of the
/// layer (which finds it there) or the response's own body (polled without a layer)
/// takes it first.
#[derive(Clone)]
pub(crate) struct Slot(Arc<Mutex<Option<(BoxEventStream, Choice)>>>);

impl Slot {
    pub(crate) fn new(stream: BoxEventStream, heartbeat: Choice) -> Self {
        Self(Arc::new(Mutex::new(Some((stream, heartbeat)))))
    }

    /// The stream and its heartbeat choice, if nobody took them yet.
    pub(crate) fn take(&self) -> Option<(BoxEventStream, Choice)> {
        lock(&self.0).take()
    }

    /// Serves the stream without a layer: `SseLayer::new()`'s settings and the
    /// process-wide layerless state (see [`layerless`]).
    pub(crate) fn serve_layerless(&self) -> Option<EventsBody<BoxEventStream>> {
        let (stream, heartbeat) = self.take()?;
        let (config, state) = layerless();
        Some(EventsBody::new(
            stream,
            config.clone(),
            state.clone(),
            &heartbeat,
            Span::none(),
            Permit::default(),
        ))
    }
}
