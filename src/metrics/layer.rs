//! [`SseMetrics`]: a layer's [`SseStats`] as `metrics` counters, gauges and histogram.

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, IntoLabels,
    Label, Unit,
};

use crate::SseStats;

/// Exports one layer's counters through the `metrics` facade; see the
/// [module docs](super) for the names.
///
/// Make it once per layer, after the recorder is installed: [`new`](Self::new) binds
/// the layer's stream-lifetime histogram (`sse_stream_lifetime_seconds`) to the
/// recorder in place then, and every stream of the layer records its lifetime there
/// when it closes. (Only the first `SseMetrics` of a layer binds it.) Then call
/// [`record`](Self::record) whenever the exporter needs fresh numbers: at scrape time,
/// or every few seconds.
///
/// ```
/// use metrics_util::debugging::DebuggingRecorder;
/// use tower_sse::{metrics::SseMetrics, SseLayer};
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// let api = SseLayer::new();
/// metrics::with_local_recorder(&recorder, || {
///     let api_metrics = SseMetrics::with_labels(api.stats(), &[("layer", "api")]);
///     api_metrics.record();
/// });
/// let names: Vec<String> = snapshotter
///     .snapshot()
///     .into_vec()
///     .into_iter()
///     .map(|(key, ..)| key.key().name().to_owned())
///     .collect();
/// assert!(names.iter().any(|name| name == "sse_streams_open"));
/// ```
#[derive(Debug, Clone)]
pub struct SseMetrics {
    stats: SseStats,
    labels: Vec<Label>,
}

impl SseMetrics {
    /// Exports `stats` (from [`SseLayer::stats`](crate::SseLayer::stats)) without
    /// labels.
    ///
    /// ```
    /// let layer = tower_sse::SseLayer::new();
    /// let sse_metrics = tower_sse::metrics::SseMetrics::new(layer.stats());
    /// ```
    pub fn new(stats: SseStats) -> Self {
        Self::with_labels(stats, Vec::<Label>::new())
    }

    /// Exports `stats` with `labels` on every metric, so that several layers in one
    /// process do not collide (anything the `metrics` macros take as labels:
    /// `&[("layer", "api")]`, a `Vec<Label>`, …).
    ///
    /// ```
    /// use tower_sse::{metrics::SseMetrics, SseLayer};
    /// let (api, feeds) = (SseLayer::new(), SseLayer::new());
    /// let api_metrics = SseMetrics::with_labels(api.stats(), &[("layer", "api")]);
    /// let feeds_metrics = SseMetrics::with_labels(feeds.stats(), &[("layer", "feeds")]);
    /// ```
    pub fn with_labels(stats: SseStats, labels: impl IntoLabels) -> Self {
        describe();
        let labels = labels.into_labels();
        stats.bind_lifetimes(histogram!(LIFETIME, labels.iter()));
        Self { stats, labels }
    }

    /// Sets every counter and gauge to the layer's current value (absolute values:
    /// calling it more or less often changes nothing but the freshness). A dozen
    /// look-ups in the recorder; nothing is added to the streams' work.
    ///
    /// ```
    /// # let layer = tower_sse::SseLayer::new();
    /// let sse_metrics = tower_sse::metrics::SseMetrics::new(layer.stats());
    /// // In a `GET /metrics` handler, before rendering the exporter's text:
    /// sse_metrics.record();
    /// ```
    pub fn record(&self) {
        let s = &self.stats;
        let labels = &self.labels;
        gauge!("sse_streams_open", labels.iter()).set(s.open_streams() as f64);
        gauge!("sse_queued_events", labels.iter()).set(s.queued_events() as f64);
        gauge!("sse_queued_bytes", labels.iter()).set(s.queued_bytes() as f64);
        let counters = [
            ("sse_streams_opened_total", s.streams_opened()),
            ("sse_events_sent_total", s.events_sent()),
            ("sse_bytes_sent_total", s.bytes_sent()),
            ("sse_heartbeats_sent_total", s.heartbeats_sent()),
            (
                "sse_requests_shed_total",
                s.streams_shed() + s.streams_rejected(),
            ),
            ("sse_source_errors_total", s.source_errors()),
            ("sse_streams_expired_total", s.streams_expired()),
        ];
        for (name, value) in counters {
            counter!(name, labels.iter()).absolute(value);
        }
        let with_reason = [
            (DROPPED, "overflow", s.events_dropped()),
            (DROPPED, "too_large", s.events_too_large()),
            (DISCONNECTS, "overflow", s.overflow_disconnects()),
            (DISCONNECTS, "stall", s.stall_disconnects()),
        ];
        for (name, reason, value) in with_reason {
            let mut labels = labels.clone();
            labels.push(Label::new("reason", reason));
            counter!(name, labels).absolute(value);
        }
    }
}

const LIFETIME: &str = "sse_stream_lifetime_seconds";
const DROPPED: &str = "sse_events_dropped_total";
const DISCONNECTS: &str = "sse_disconnects_total";

/// Describes the layer's metrics to the recorder (`# HELP` lines in Prometheus).
fn describe() {
    describe_gauge!("sse_streams_open", "SSE streams open now.");
    describe_gauge!(
        "sse_queued_events",
        "Events waiting in the per-connection buffers of open SSE streams."
    );
    describe_gauge!(
        "sse_queued_bytes",
        Unit::Bytes,
        "Encoded bytes waiting in the per-connection buffers of open SSE streams."
    );
    describe_counter!("sse_streams_opened_total", "SSE streams opened.");
    describe_counter!("sse_events_sent_total", "SSE events sent (heartbeats not).");
    describe_counter!(
        "sse_bytes_sent_total",
        Unit::Bytes,
        "SSE bytes sent, heartbeats included."
    );
    describe_counter!("sse_heartbeats_sent_total", "SSE heartbeats sent.");
    describe_counter!(DROPPED, "SSE events not sent, by reason.");
    describe_counter!(
        "sse_requests_shed_total",
        "SSE requests refused by the stream limit."
    );
    describe_counter!(DISCONNECTS, "SSE streams cut by the layer, by reason.");
    describe_counter!(
        "sse_source_errors_total",
        "SSE streams ended by an error from their source."
    );
    describe_counter!(
        "sse_streams_expired_total",
        "SSE streams ended at their max_lifetime."
    );
    describe_histogram!(LIFETIME, Unit::Seconds, "How long SSE streams stayed open.");
}
