//! A `tracing` layer for tests that look at what the crate reports: the fields of
//! every closed span named `sse` (as created and as recorded later), of every "sse
//! stream closed" event, and of every warning: `use support::span_capture::Capture`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use tracing::{
    dispatcher::DefaultGuard,
    field::{Field, Visit},
    span,
    subscriber::NoSubscriber,
    Dispatch, Subscriber,
};
use tracing_subscriber::{layer::Context, registry::LookupSpan};

type Fields = HashMap<String, String>;

/// Sets `subscriber` as this thread's default, so that it sees the crate's spans and
/// events even while other tests run at once on other threads without a subscriber.
///
/// Why a second dispatcher: while only one dispatcher is alive, `tracing-core`
/// computes a callsite's interest, when the callsite is first hit, from the default
/// of the thread that hits it. A test without a subscriber hitting the layer's span
/// first would then cache "never" for every thread, this one included. With a second
/// dispatcher alive for the whole run, interest is computed over every live
/// dispatcher, this thread's subscriber among them. (`rebuild_interest_cache` after
/// `set_default` does not help: the other test may hit the callsite after it.)
pub(crate) fn set_default(subscriber: impl Subscriber + Send + Sync + 'static) -> DefaultGuard {
    static SECOND: OnceLock<Dispatch> = OnceLock::new();
    SECOND.get_or_init(|| Dispatch::new(NoSubscriber::default()));
    tracing::subscriber::set_default(subscriber)
}

#[derive(Clone, Default)]
pub(crate) struct Capture {
    /// Closed `sse` spans, in the order they closed.
    pub(crate) spans: Arc<Mutex<Vec<Fields>>>,
    /// "sse stream closed" events.
    pub(crate) closes: Arc<Mutex<Vec<Fields>>>,
    /// Events at level WARN.
    pub(crate) warnings: Arc<Mutex<Vec<Fields>>>,
}

impl Capture {
    /// Takes the spans closed so far.
    pub(crate) fn take_spans(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.spans.lock().unwrap())
    }

    /// Takes the warnings so far.
    pub(crate) fn take_warnings(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.warnings.lock().unwrap())
    }
}

/// Values as text, strings without their quotes.
struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

#[derive(Default)]
struct SpanFields(Fields);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "sse" {
            return;
        }
        let mut fields = SpanFields::default();
        attrs.record(&mut Visitor(&mut fields.0));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Visitor(&mut fields.0));
            }
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            if let Some(fields) = span.extensions_mut().remove::<SpanFields>() {
                self.spans.lock().unwrap().push(fields.0);
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Visitor(&mut fields));
        if *event.metadata().level() == tracing::Level::WARN {
            self.warnings.lock().unwrap().push(fields);
        } else if fields.get("message").map(String::as_str) == Some("sse stream closed") {
            self.closes.lock().unwrap().push(fields);
        }
    }
}
