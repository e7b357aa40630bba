//! Hub helpers: publishing under a bound, and a multi-topic subscription read as a
//! client reads it (its bytes parsed by eventsource-stream).

use std::{convert::Infallible, pin::Pin};

use eventsource_stream::{Event as SseEvent, Eventsource as _};
use futures_util::{Stream, StreamExt as _};
use tower_sse::{
    hub::{Hub, MultiSubscription},
    Encode as _, Event,
};

use super::within;

/// The events of a stream, parsed.
pub(crate) type Parsed = Pin<Box<dyn Stream<Item = SseEvent> + Send>>;

/// `sub` as a client sees it: its bytes, parsed.
pub(crate) fn parsed(sub: MultiSubscription) -> Parsed {
    Box::pin(
        sub.map(|m| Ok::<_, Infallible>(m.unwrap().into_bytes()))
            .eventsource()
            .map(|e| e.expect("well-formed SSE")),
    )
}

/// Publishes `data` to `topic`; returns the event's id.
pub(crate) async fn publish(hub: &Hub, topic: &str, data: impl Into<String>) -> String {
    let published = within(
        "publish",
        hub.publish(topic, Event::new().data(data.into())),
    )
    .await
    .expect("published");
    published.id.to_string()
}
