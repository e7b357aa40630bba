//! [`HubMetrics`]: a hub's per-topic counters as `metrics`, with a bounded `topic` label.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::{Arc, Mutex},
};

use ::metrics::{counter, describe_counter, describe_gauge, gauge, IntoLabels, Label, Unit};

use crate::{
    hub::{Hub, TopicStats},
    sync::lock,
};

/// The `topic` label of every topic that gets none of its own.
const OTHER: &str = "other";

/// Exports a [`Hub`]'s topics through the `metrics` facade; see the
/// [module docs](super) for the names.
///
/// **Cardinality.** Every per-topic metric has at most `max_topics + 1` series at a
/// time, however many topics exist:
///
/// 1. each topic is mapped to a label by [`topic_label`](Self::topic_label) (by
///    default its own name); a topic mapped to `None` goes to `topic="other"`, and
///    topics mapped to the same label are summed;
/// 2. the `max_topics` labels with the most subscribers (then the most published
///    events, then by name) keep their label; the others are summed into
///    `topic="other"`.
///
/// With a fixed set of labels (an allow-list, or a map from names to a few groups) the
/// series are bounded for good. With topic names as labels, the busiest topics can
/// change over time: a label that leaves the top has its gauges set to 0 and its
/// counters stop moving, but the recorder still holds its series; use the exporter's
/// idle timeout (`PrometheusBuilder::idle_timeout`) to forget them.
///
/// Counters (`published`, `lagged`) are exported as increments since the last
/// [`record`](Self::record), so they only rise whichever label a topic lands in. What a
/// topic counted between the last `record` and the hub forgetting it (a topic with no
/// subscriber and no history left) is not exported.
///
/// ```
/// use metrics_util::debugging::DebuggingRecorder;
/// use tower_sse::{hub::Hub, metrics::HubMetrics};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let hub = Hub::new();
/// // Per-room topics `room:<id>` are summed into one `topic="rooms"` series; at most
/// // 10 labels plus `other`.
/// let hub_metrics = HubMetrics::new(hub.clone())
///     .max_topics(10)
///     .topic_label(|topic| match topic.strip_prefix("room:") {
///         Some(_) => Some("rooms".to_owned()),
///         None => Some(topic.to_owned()),
///     });
/// let _a = hub.subscribe("room:1", None).await;
/// let _b = hub.subscribe("room:2", None).await;
///
/// let recorder = DebuggingRecorder::new();
/// let snapshotter = recorder.snapshotter();
/// metrics::with_local_recorder(&recorder, || hub_metrics.record());
/// let rooms = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
///     key.key().name() == "sse_hub_subscribers"
///         && key.key().labels().any(|l| l.key() == "topic" && l.value() == "rooms")
/// });
/// assert!(rooms.is_some());
/// # }
/// ```
pub struct HubMetrics {
    hub: Hub,
    labels: Vec<Label>,
    max_topics: usize,
    topic_label: Option<TopicLabel>,
    seen: Mutex<Seen>,
}

type TopicLabel = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What the last `record` saw.
#[derive(Default)]
struct Seen {
    /// Each topic's `published` and `lagged` counts.
    counts: HashMap<String, (u64, u64)>,
    /// The `topic` labels it exported.
    labels: HashSet<String>,
}

/// The sums of one `topic` label.
#[derive(Default, Clone, Copy)]
struct Group {
    subscribers: u64,
    published: u64,
    new_published: u64,
    new_lagged: u64,
    history_events: u64,
    history_bytes: u64,
}

impl Group {
    fn add(&mut self, other: &Group) {
        self.subscribers += other.subscribers;
        self.published += other.published;
        self.new_published += other.new_published;
        self.new_lagged += other.new_lagged;
        self.history_events += other.history_events;
        self.history_bytes += other.history_bytes;
    }
}

impl HubMetrics {
    /// The default of [`max_topics`](Self::max_topics).
    ///
    /// ```
    /// assert_eq!(tower_sse::metrics::HubMetrics::DEFAULT_MAX_TOPICS, 20);
    /// ```
    pub const DEFAULT_MAX_TOPICS: usize = 20;

    /// Exports `hub`'s topics, each under its own name, at most
    /// [`DEFAULT_MAX_TOPICS`](Self::DEFAULT_MAX_TOPICS) of them.
    ///
    /// ```
    /// use tower_sse::{hub::Hub, metrics::HubMetrics};
    /// let hub = Hub::new();
    /// let hub_metrics = HubMetrics::new(hub.clone());
    /// ```
    pub fn new(hub: Hub) -> Self {
        describe();
        Self {
            hub,
            labels: Vec::new(),
            max_topics: Self::DEFAULT_MAX_TOPICS,
            topic_label: None,
            seen: Mutex::default(),
        }
    }

    /// Adds `labels` to every metric, so that two hubs do not collide.
    ///
    /// ```
    /// use tower_sse::{hub::Hub, metrics::HubMetrics};
    /// let chat = HubMetrics::new(Hub::new()).labels(&[("hub", "chat")]);
    /// ```
    #[must_use]
    pub fn labels(mut self, labels: impl IntoLabels) -> Self {
        self.labels.extend(labels.into_labels());
        self
    }

    /// At most `n` `topic` labels besides `other`; `0` sums every topic under
    /// `topic="other"`.
    ///
    /// ```
    /// use tower_sse::{hub::Hub, metrics::HubMetrics};
    /// // Five busy topics by name, plus `other`: at most six series per metric.
    /// let hub_metrics = HubMetrics::new(Hub::new()).max_topics(5);
    /// ```
    #[must_use]
    pub fn max_topics(mut self, n: usize) -> Self {
        self.max_topics = n;
        self
    }

    /// Maps each topic name to its `topic` label; `None` sums it under `other`.
    /// Topics mapped to one label are summed. The busiest `max_topics` labels still
    /// apply on top.
    ///
    /// ```
    /// use tower_sse::{hub::Hub, metrics::HubMetrics};
    /// // An allow-list: only these two topics get their own series.
    /// let metrics = HubMetrics::new(Hub::new()).topic_label(|topic| {
    ///     ["prices", "news"].contains(&topic).then(|| topic.to_owned())
    /// });
    /// ```
    #[must_use]
    pub fn topic_label(
        mut self,
        f: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.topic_label = Some(Arc::new(f));
        self
    }

    /// Reads every topic of the hub and sets the metrics: gauges to their current
    /// values, counters up by what happened since the last call. Costs a lock and a
    /// look-up per topic: call it at scrape time or every few seconds, not per event.
    ///
    /// ```
    /// # use tower_sse::{hub::Hub, metrics::HubMetrics};
    /// let hub_metrics = HubMetrics::new(Hub::new());
    /// // In a `GET /metrics` handler, before rendering the exporter's text:
    /// hub_metrics.record();
    /// ```
    pub fn record(&self) {
        let topics = self.read_topics();
        gauge!("sse_hub_topics", self.labels.iter()).set(topics.len() as f64);
        let groups = self.group(topics);
        let mut seen = lock(&self.seen);
        let mut exported = HashSet::with_capacity(groups.len());
        for (label, group) in groups {
            self.export(&label, &group);
            exported.insert(label);
        }
        for gone in seen.labels.difference(&exported) {
            self.export(gone, &Group::default());
        }
        seen.labels = exported;
    }

    /// Every topic's counts, with what its counters gained since the last `record`.
    fn read_topics(&self) -> Vec<(String, Group)> {
        let mut seen = lock(&self.seen);
        let mut counts = HashMap::with_capacity(seen.counts.len());
        let mut topics = Vec::new();
        for name in self.hub.topics() {
            let Some(stats) = self.hub.topic_stats(&name) else {
                continue; // forgotten meanwhile
            };
            let TopicStats {
                subscribers,
                published,
                lagged,
                history_events,
                history_bytes,
                ..
            } = stats;
            let (last_published, last_lagged) = seen.counts.remove(&name).unwrap_or_default();
            let group = Group {
                subscribers: subscribers as u64,
                published,
                // A count below the last one is a new topic of the same name.
                new_published: since(last_published, published),
                new_lagged: since(last_lagged, lagged),
                history_events: history_events as u64,
                history_bytes: history_bytes as u64,
            };
            counts.insert(name.clone(), (published, lagged));
            topics.push((name, group));
        }
        seen.counts = counts; // topics the hub forgot are forgotten here too
        topics
    }

    /// Sums the topics by label and keeps the `max_topics` busiest labels; the rest
    /// go under `other`.
    fn group(&self, topics: Vec<(String, Group)>) -> Vec<(String, Group)> {
        let mut by_label: HashMap<String, Group> = HashMap::new();
        let mut other = Group::default();
        for (name, group) in topics {
            let label = match &self.topic_label {
                Some(f) => f(&name),
                None => Some(name),
            };
            match label.filter(|label| label != OTHER) {
                Some(label) => by_label.entry(label).or_default().add(&group),
                None => other.add(&group),
            }
        }
        let mut groups: Vec<(String, Group)> = by_label.into_iter().collect();
        groups.sort_by(|(a_name, a), (b_name, b)| {
            (b.subscribers, b.published)
                .cmp(&(a.subscribers, a.published))
                .then_with(|| a_name.cmp(b_name))
        });
        for (_, group) in groups.iter().skip(self.max_topics) {
            other.add(group);
        }
        groups.truncate(self.max_topics);
        groups.push((OTHER.to_owned(), other));
        groups
    }

    fn export(&self, topic: &str, group: &Group) {
        let mut labels = self.labels.clone();
        labels.push(Label::new("topic", topic.to_owned()));
        let labels = &labels;
        gauge!("sse_hub_subscribers", labels.iter()).set(group.subscribers as f64);
        gauge!("sse_hub_history_events", labels.iter()).set(group.history_events as f64);
        gauge!("sse_hub_history_bytes", labels.iter()).set(group.history_bytes as f64);
        counter!("sse_hub_published_total", labels.iter()).increment(group.new_published);
        counter!("sse_hub_lagged_total", labels.iter()).increment(group.new_lagged);
    }
}

/// What a counter gained since `last` (all of `now` if it went down: a new topic).
fn since(last: u64, now: u64) -> u64 {
    if now >= last {
        now - last
    } else {
        now
    }
}

impl fmt::Debug for HubMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubMetrics")
            .field("hub", &self.hub)
            .field("labels", &self.labels)
            .field("max_topics", &self.max_topics)
            .field("topic_label", &self.topic_label.is_some())
            .finish_non_exhaustive()
    }
}

/// Describes the hub's metrics to the recorder (`# HELP` lines in Prometheus).
fn describe() {
    describe_gauge!("sse_hub_topics", "Topics the hub holds.");
    describe_gauge!(
        "sse_hub_subscribers",
        "Hub subscriptions open, by topic (bounded: the busiest topics, the rest as other)."
    );
    describe_gauge!(
        "sse_hub_history_events",
        "Events kept for replay, by topic."
    );
    describe_gauge!(
        "sse_hub_history_bytes",
        Unit::Bytes,
        "Bytes kept for replay, by topic."
    );
    describe_counter!("sse_hub_published_total", "Events published, by topic.");
    describe_counter!(
        "sse_hub_lagged_total",
        "Times a subscriber fell behind the whole history, by topic."
    );
}
