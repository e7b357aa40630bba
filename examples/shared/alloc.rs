//! The global allocator of the demo and of the axum reference: jemalloc, for both, so
//! that a comparison of the two measures their SSE paths and not their allocators.
//!
//! With glibc's malloc, a connection's RSS keeps the high-water mark of what it once
//! held: freed frames stay in the heap's free lists, resident. jemalloc returns unused
//! pages to the system (after `dirty_decay_ms`, 10 s by default) and keeps fewer
//! per-thread caches: an idle connection costs 8.0 KiB of RSS instead of 12.0
//! (benches/memory.sh, BENCHMARKS.md "Memory per connection"). Each file includes this
//! one with `#[path = "shared/alloc.rs"] mod alloc;`.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Records jemalloc's counts as gauges: `demo_heap_allocated_bytes` (what the program
/// holds), `demo_heap_resident_bytes` (the allocator's pages in RAM). The difference is
/// what was freed and not yet handed back.
#[allow(dead_code)]
pub(crate) fn record() {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counts are a snapshot, refreshed by advancing the epoch.
    if epoch::advance().is_err() {
        return;
    }
    if let (Ok(allocated), Ok(resident)) = (stats::allocated::read(), stats::resident::read()) {
        metrics::gauge!("demo_heap_allocated_bytes").set(allocated as f64);
        metrics::gauge!("demo_heap_resident_bytes").set(resident as f64);
    }
}
