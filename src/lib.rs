//! Server-Sent Events as a [`tower`](https://docs.rs/tower) layer.
//!
//! [`SseLayer`] wraps any tower service whose response is a stream of [`Event`]s and
//! serves it as a correct `text/event-stream` response on hyper 1.x, axum, tonic or
//! anything else built on `tower::Service` and `http-body` 1.x:
//!
//! - **headers**: `content-type: text/event-stream`, `cache-control: no-cache, no-transform`,
//!   `x-accel-buffering: no` (nginx), never a `content-length`;
//! - **spec-exact encoding** ([`event`]): multi-line `data` split on `\n`, `\r\n` and
//!   lone `\r`, a leading space kept, and a typed [`EventError`] (never a panic, never
//!   a forged field) for a line break in an `id` or `event` name or a NUL in an `id`;
//! - **heartbeats** ([`heartbeat`]) that cost a busy stream nothing per event;
//! - **a bounded per-connection buffer** ([`buffer`]) with a policy for slow clients
//!   ([`Overflow`]), counted drops and an optional gap event;
//! - **batching**: every event that is ready goes into one body frame;
//! - [`LastEventId`] handed to the inner service, [graceful shutdown](shutdown) of
//!   open streams, one `tracing` span per stream and layer-wide [`SseStats`].
//! - **per-stream limits**: [`SseLayer::max_lifetime`] ends a stream cleanly after a
//!   jittered lifetime (the client reconnects with its `Last-Event-ID`), and
//!   [`SseLayer::max_event_bytes`] skips and counts events too large for the wire.
//!
//! # Quick start
//!
//! A complete server streaming a counter, served by [`server::Server`] (feature
//! `server`; run it and `curl -N http://127.0.0.1:3000/`):
//!
//! ```no_run
//! # #[cfg(feature = "server")]
//! # mod quick_start {
//! use std::{convert::Infallible, time::Duration};
//!
//! use http::Request;
//! use tokio_stream::{wrappers::IntervalStream, Stream, StreamExt};
//! use tower::ServiceBuilder;
//! use tower_sse::server::{RequestBody, Server};
//! use tower_sse::{Event, SseLayer, SseResponse};
//!
//! async fn handler(
//!     _req: Request<RequestBody>,
//! ) -> Result<SseResponse<impl Stream<Item = Result<Event, Infallible>>>, Infallible> {
//!     let mut n = 0u64;
//!     let ticks = IntervalStream::new(tokio::time::interval(Duration::from_secs(1))).map(move |_| {
//!         n += 1;
//!         Ok(Event::new().id_u64(n).data(format!("tick {n}")))
//!     });
//!     Ok(SseResponse::new(ticks))
//! }
//!
//! #[tokio::main]
//! pub async fn main() -> std::io::Result<()> {
//!     let sse = SseLayer::new().heartbeat(Duration::from_secs(15));
//!     let streams = sse.shutdown_handle();
//!     let svc = ServiceBuilder::new().layer(sse).service_fn(handler);
//!     Server::bind("127.0.0.1:3000")
//!         .await?
//!         .streams(streams, Event::new().retry(Duration::from_secs(1)))
//!         .serve(svc, async { tokio::signal::ctrl_c().await.unwrap_or(()) })
//!         .await
//! }
//! # }
//! # fn main() {}
//! ```
//!
//! Any other hyper 1.x server works too (hyper-util's `auto::Builder`, `axum::serve`):
//! the layer is a plain `tower::Layer`; [`server`]'s docs list the socket settings
//! such a server should also get.
//!
//! The inner service answers with an [`SseResponse`]: an event stream (any
//! `Stream<Item = Result<T, E>>` with `T` an [`Event`] or [`EncodedEvent`]), an
//! `http::Response` around one (to set the status or extra headers), or an ordinary
//! response that is passed through untouched (a 401, a 404).
//!
//! # Feature flags
//!
//! | feature | enables |
//! |---|---|
//! | `json` | [`Event::json_data`] through `serde_json` |
//! | `axum` | [`axum`]: `IntoResponse` for [`SseResponse`], `Option<LastEventId>` extractor |
//! | `hub` | [`hub`]: publish once to many subscribers, bounded history, replay |
//! | `server` | [`server::Server`]: serves a tower service over hyper (HTTP/1.1 and h2c) with timeouts, a connection cap, socket options and graceful shutdown |
//! | `redis` | [`hub::RedisBackplane`], [`Hub::redis`](hub::Hub::redis): the hub across instances on Redis Streams (Rust 1.88, the `redis` crate's) |
//! | `metrics` | [`metrics`]: the layer's and the hub's counters, gauges and stream-lifetime histogram through the `metrics` facade |
//! | `test-util` | [`test_util`]: [`SseReader`](test_util::SseReader) reads an SSE response in tests as `EventSource` parses it, heartbeats and `Last-Event-ID` included, on tokio's paused clock |
//! | `tls` | [`Server::tls`](server::Server::tls) (implies `server`): HTTPS with rustls (`ring`), HTTP/2 and HTTP/1.1 by ALPN; [`server::tls_config_from_pem`] |

// `deny`, not `forbid`: the server's one `getsockopt(TCP_INFO)` (`server/room.rs`,
// Linux) allows it there alone.
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod body;
pub mod buffer;
mod config;
mod error;
pub mod event;
mod future;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
#[cfg_attr(not(feature = "server"), allow(dead_code))]
mod gate;
pub mod heartbeat;
#[cfg(feature = "hub")]
#[cfg_attr(docsrs, doc(cfg(feature = "hub")))]
pub mod hub;
mod last_event_id;
mod layer;
pub mod limit;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod response;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;
mod service;
pub mod shutdown;
mod state;
mod stats;
mod stream;
mod sync;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;

pub use crate::{
    body::{BoxEventStream, SseBody},
    buffer::{BufferLimits, Overflow},
    error::{BoxError, SlowClientError},
    event::{Encode, EncodedEvent, Event, EventError, EventErrorKind, Message},
    future::ResponseFuture,
    heartbeat::Heartbeat,
    last_event_id::{LastEventId, LAST_EVENT_ID},
    layer::SseLayer,
    limit::{PerKeyLimit, StreamLimit},
    response::{IntoSseResponse, SseResponse},
    service::SseService,
    shutdown::ShutdownHandle,
    stats::SseStats,
};

pub use crate::event::DataEvent;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
