//! The layer's and the hub's counters as metrics, through the
//! [`metrics`](https://docs.rs/metrics) facade (feature `metrics`), so that any
//! exporter (Prometheus, StatsD, OpenTelemetry, …) publishes them.
//!
//! Nothing is added to the path of an event: the layer keeps counting in its own
//! atomics ([`SseStats`](crate::SseStats)), once per body frame. [`SseMetrics`] and
//! [`HubMetrics`] read them when asked, at scrape time or periodically, and set the
//! facade's counters and gauges to their absolute values. The one exception is the
//! stream-lifetime histogram, recorded once per stream when it closes.
//!
//! ```
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use tower_sse::{metrics::SseMetrics, SseLayer};
//!
//! // Install the recorder first: `SseMetrics::new` binds the lifetime histogram to it.
//! let recorder = PrometheusBuilder::new().build_recorder();
//! let prometheus = recorder.handle();
//! metrics::set_global_recorder(recorder).unwrap();
//!
//! let layer = SseLayer::new();
//! let sse_metrics = SseMetrics::new(layer.stats());
//! // … serve with `layer` …
//!
//! // At scrape time (`GET /metrics`), or every few seconds for a push exporter:
//! sse_metrics.record();
//! let text = prometheus.render();
//! assert!(text.contains("sse_streams_open 0\n"));
//! assert!(text.contains("sse_events_sent_total 0\n"));
//! ```
//!
//! # The layer's metrics ([`SseMetrics`])
//!
//! | name | kind | what |
//! |---|---|---|
//! | `sse_streams_open` | gauge | SSE streams open now |
//! | `sse_streams_opened_total` | counter | SSE streams opened |
//! | `sse_events_sent_total` | counter | events handed to hyper (heartbeats not) |
//! | `sse_bytes_sent_total` | counter | bytes handed to hyper, heartbeats included |
//! | `sse_heartbeats_sent_total` | counter | heartbeats handed to hyper |
//! | `sse_events_dropped_total{reason}` | counter | events not sent: `reason="overflow"` (the [`Overflow`](crate::Overflow) policy dropped it), `reason="too_large"` (over [`max_event_bytes`](crate::SseLayer::max_event_bytes)) |
//! | `sse_requests_shed_total` | counter | SSE requests refused by a stream cap ([`StreamLimit`](crate::StreamLimit) or [`PerKeyLimit`](crate::limit::PerKeyLimit)): the shed answer or a `503` |
//! | `sse_disconnects_total{reason}` | counter | streams the layer cut: `reason="overflow"` ([`Overflow::Disconnect`](crate::Overflow::Disconnect)), `reason="stall"` ([`stall_timeout`](crate::SseLayer::stall_timeout)) |
//! | `sse_source_errors_total` | counter | streams ended by an error from their source |
//! | `sse_streams_expired_total` | counter | streams ended at their [`max_lifetime`](crate::SseLayer::max_lifetime) |
//! | `sse_queued_events` | gauge | events waiting in the open streams' buffers |
//! | `sse_queued_bytes` | gauge | their encoded bytes |
//! | `sse_stream_lifetime_seconds` | histogram | how long each stream was open, recorded when it closes |
//!
//! Two layers in one process export under the same names: give each its own labels
//! with [`SseMetrics::with_labels`] (e.g. `layer="api"`, `layer="feeds"`).
//!
//! # The hub's metrics ([`HubMetrics`], feature `hub`)
//!
//! | name | kind | what |
//! |---|---|---|
//! | `sse_hub_topics` | gauge | topics the hub holds now |
//! | `sse_hub_subscribers{topic}` | gauge | subscriptions open now |
//! | `sse_hub_published_total{topic}` | counter | events published (with a backplane: received) |
//! | `sse_hub_lagged_total{topic}` | counter | times a subscriber fell behind the whole history |
//! | `sse_hub_history_events{topic}` | gauge | events kept for replay |
//! | `sse_hub_history_bytes{topic}` | gauge | bytes kept for replay |
//!
//! The `topic` label is bounded: see [`HubMetrics`] (the busiest `max_topics` labels
//! by subscribers, every other topic summed under `topic="other"`, and an optional
//! map from topic names to labels).

mod layer;
pub use self::layer::SseMetrics;

#[cfg(feature = "hub")]
mod hub;
#[cfg(feature = "hub")]
pub use self::hub::HubMetrics;
