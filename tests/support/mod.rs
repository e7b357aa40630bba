//! Helpers shared by the integration tests. Every test file that needs one says
//! `mod support;` and imports from it with `use support::...`:
//!
//! - [`server`]: a real hyper server on `127.0.0.1:0` serving an [`SseLayer`] over a
//!   handler (or any tower service);
//! - [`client`]: a reqwest client, and a raw TCP client that sees the exact bytes on
//!   the wire (HTTP/1.1 chunks de-chunked by hand);
//! - [`wire`]: SSE text as it arrives: blocks, fields, framing checks;
//! - [`sources`]: event sources that count what they produce and report when they are
//!   dropped;
//! - [`body`]: the layer's response body driven frame by frame in process;
//! - [`backpressure`]: a server of counted sources over small buffers, and a client
//!   that stops reading;
//! - [`span_capture`]: a `tracing` layer that captures the crate's spans and warnings;
//! - [`demo`]: the compiled demo server (`examples/demo.rs`) as a child process;
//! - [`redis_server`]: a `redis-server` child process on a free loopback port;
//! - [`redis_cluster`]: a 3-master Redis Cluster of `redis-server` processes.
//!
//! and here, the patience of the tests: [`STEP`], [`within`], [`wait_until`].
//!
//! [`SseLayer`]: tower_sse::SseLayer

// Every test file is a crate of its own that compiles this whole module but uses only
// some of its helpers: the rest would be dead code, warned about in every test binary.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{future::Future, time::Duration};

pub(crate) mod backpressure;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod demo;
#[cfg(feature = "hub")]
pub(crate) mod hub;
#[cfg(feature = "redis")]
pub(crate) mod redis_cluster;
pub(crate) mod redis_server;
pub(crate) mod server;
pub(crate) mod sources;
pub(crate) mod span_capture;
pub(crate) mod wire;

/// The longest any single step of a test may take before the test fails (instead
/// of hanging on a bug). A bound, not a timing assertion: generous, so that a loaded
/// 2-core CI machine running several test binaries at once never reaches it.
pub(crate) const STEP: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`STEP`].
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {STEP:?}: {what}"),
    }
}

/// Polls `cond` every few milliseconds until it holds, failing the test after
/// [`STEP`]. For conditions that no notification tells about (a counter).
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A current-thread runtime with time and I/O, for tests that are not async
/// themselves (proptest bodies).
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}
