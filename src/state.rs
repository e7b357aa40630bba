//! What the streams of one layer share at run time.

use std::sync::{Arc, OnceLock};

use crate::{config::Config, heartbeat::Tickers, shutdown::Registry, stats::Counters};

/// The run-time state of a layer and of its clones: its counters (read by
/// [`SseStats`](crate::SseStats)), its open streams (ended by
/// [`ShutdownHandle`](crate::ShutdownHandle)) and its shared heartbeat tickers.
#[derive(Debug, Default)]
pub(crate) struct LayerState {
    pub(crate) counters: Arc<Counters>,
    pub(crate) streams: Arc<Registry>,
    pub(crate) tickers: Tickers,
}

/// The settings and state of a response served without a layer
/// ([`SseResponse::into_http`](crate::SseResponse::into_http)): `SseLayer::new()`'s
/// settings and one process-wide state that no `SseStats` or `ShutdownHandle` sees.
pub(crate) fn layerless() -> &'static (Arc<Config>, Arc<LayerState>) {
    static LAYERLESS: OnceLock<(Arc<Config>, Arc<LayerState>)> = OnceLock::new();
    LAYERLESS.get_or_init(Default::default)
}
