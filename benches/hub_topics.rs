//! Publish and subscribe against the number of topics in one in-process hub: the
//! same operations with 1,000, 10,000 and 100,000 topics (each with one subscriber)
//! already in the hub. O(1) in the number of topics means the three rows of each
//! group stay level. `cargo bench --bench hub_topics`; results in BENCHMARKS.md.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion};
use tower_sse::{
    hub::{Hub, Subscription},
    Event,
};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn name(i: usize) -> String {
    format!("user:{i:06}")
}

/// A hub with `n` topics of one subscriber each (the subscriptions kept alive).
fn populated(rt: &tokio::runtime::Runtime, n: usize) -> (Hub, Vec<Subscription>) {
    let hub = Hub::new();
    let subs = rt.block_on(async {
        let mut subs = Vec::with_capacity(n);
        for i in 0..n {
            subs.push(hub.subscribe(&name(i), None).await);
        }
        subs
    });
    (hub, subs)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut publish = c.benchmark_group("hub_publish_one_topic_of_n");
    for n in SIZES {
        let (hub, subs) = populated(&rt, n);
        let names: Vec<String> = (0..n).map(name).collect();
        let mut i = 0;
        publish.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                i = (i + 7919) % n; // a different topic each time, spread over all
                rt.block_on(hub.publish(&names[i], Event::new().data("hello")))
                    .expect("in process")
            });
        });
        drop(subs);
    }
    publish.finish();

    let mut subscribe = c.benchmark_group("hub_subscribe_and_leave_with_n_topics");
    for n in SIZES {
        let (hub, subs) = populated(&rt, n);
        let mut i = 0;
        subscribe.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    name(n + i) // a new topic: created, subscribed, then left
                },
                |topic| black_box(rt.block_on(hub.subscribe(&topic, None))),
                BatchSize::SmallInput,
            );
        });
        drop(subs);
    }
    subscribe.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
