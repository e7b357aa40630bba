//! Many topics in one in-process hub (issue: one topic per user): what a topic costs
//! on the heap, and that idle topics are swept. The O(1) publish/subscribe claim is
//! measured by `benches/hub_topics.rs` (criterion at 1k, 10k and 100k topics).
//!
//! Heap bytes are counted by a counting global allocator (`stats_alloc`), which is
//! exact and independent of timing and of the allocator's caching. It counts every
//! thread, so the tests here take turns (`ONE_AT_A_TIME`).
#![cfg(feature = "hub")]

use std::{alloc::System, future::Future, sync::Mutex, time::Duration};

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tower_sse::{
    hub::{History, Hub},
    Event,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Topics in the measurement: 100,000, as in the issue.
const TOPICS: usize = 100_000;

/// The target for a topic without history.
const TOPIC_BUDGET: usize = 1024;

/// The counter is global: one measurement at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `test` alone, on a current-thread runtime, with the clock paused if `paused`.
fn alone<F: Future>(paused: bool, test: F) -> F::Output {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all().start_paused(paused);
    builder.build().expect("runtime").block_on(test)
}

fn topic_name(i: usize) -> String {
    format!("user:{i:06}")
}

fn live_bytes(region: &Region<'_, System>) -> isize {
    let stats = region.change();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize + stats.bytes_reallocated
}

/// 100,000 topics with one subscriber each: the hub's side (topic, map entry, the
/// subscriber's slot) and the subscription a response holds, in bytes per topic.
#[test]
fn a_topic_with_one_subscriber_costs_under_a_kibibyte() {
    alone(false, topics_with_one_subscriber());
}

async fn topics_with_one_subscriber() {
    let hub = Hub::with_history(History::new(16, 64 << 10));
    let names: Vec<String> = (0..TOPICS).map(topic_name).collect();
    let mut subs = Vec::with_capacity(TOPICS);
    let region = Region::new(GLOBAL);
    for name in &names {
        subs.push(hub.subscribe(name, None).await);
    }
    let per_topic = live_bytes(&region) / TOPICS as isize;
    eprintln!(
        "{TOPICS} topics, one subscriber each: {per_topic} heap bytes per topic \
         (topic, map entry, subscriber slot), plus the {}-byte Subscription a \
         response holds",
        std::mem::size_of::<tower_sse::hub::Subscription>()
    );
    assert_eq!(hub.topics().len(), TOPICS);
    assert!(
        per_topic > 0 && per_topic as usize <= TOPIC_BUDGET,
        "{per_topic} bytes per topic"
    );
    drop(subs);
}

/// Idle topics (no subscriber, history expired) go away by themselves, however many
/// there are, and give their memory back.
#[test]
fn idle_topics_are_swept_and_their_memory_returned() {
    alone(true, idle_topics_swept());
}

async fn idle_topics_swept() {
    let hub = Hub::with_history(History::new(4, 1 << 10).max_age(Duration::from_secs(1)));
    let names: Vec<String> = (0..10_000).map(topic_name).collect();
    let region = Region::new(GLOBAL);
    for name in &names {
        let sub = hub.subscribe(name, None).await;
        hub.publish(name, Event::new().data("x"))
            .await
            .expect("in process");
        drop(sub);
    }
    let grown = live_bytes(&region);
    assert!(hub.topics().len() > 1_000, "topics kept for replay");

    tokio::time::advance(Duration::from_secs(2)).await;
    // Lookups of one busy topic drive the sweep: at most max(256, topics) of them.
    for _ in 0..=names.len() {
        hub.publish("busy", Event::new().data("z"))
            .await
            .expect("in process");
    }
    assert_eq!(hub.topics(), vec!["busy".to_owned()]);
    let left = live_bytes(&region);
    eprintln!("10,000 idle topics: {grown} bytes while kept, {left} after the sweep");
    assert!(left < grown / 20, "{left} bytes left of {grown}");
}
