//! Encoder and body-path benchmarks: tower-sse against axum 0.8's `sse` module.
//!
//! See BENCHMARKS.md for what each benchmark measures and the latest numbers.
//!
//! ```text
//! cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3
//! ```

mod common;

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput};

use common::{
    axum_body, axum_body_of, axum_event, axum_event_owned, axum_frames_with, axum_json_event,
    axum_oneshot_response, axum_string_event, encode_into, frame_buffer, owned_fields, runtime,
    stream_payload, tower_body, tower_body_of, tower_custom_event, tower_data_event, tower_event,
    tower_event_owned, tower_json_data_event, tower_json_event, tower_string_event,
    write_stream_payload, AxumFrames, StreamPayload, BODY_EVENTS, DATA, MULTILINE, SEQ, TOKEN,
};
use tower_sse::event::DataEvent;

/// Encoder benchmarks for one `data` value: the typical event or the multi-line one.
fn encoder_group(c: &mut Criterion, group: &str, data: &'static str, owned: bool) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));

    // (a) The layer's path: build the event, append it to a reused frame buffer.
    g.bench_function("tower_sse/encode_to_reused_buf", |b| {
        let mut buf = frame_buffer();
        b.iter(|| {
            buf.clear();
            tower_event(black_box(data)).encode_to(&mut buf);
            black_box(&buf);
        });
    });
    // (b) Build the event and encode it into its own exact-size `Bytes`.
    g.bench_function("tower_sse/encode_to_own_bytes", |b| {
        b.iter(|| tower_event(black_box(data)).encode());
    });
    // (c1) axum: building only. axum encodes while building (into a fresh BytesMut),
    // so this is everything but the final `\n` + `freeze`; it is not a public path to
    // bytes, it is a lower bound for axum.
    g.bench_function("axum/build_only", |b| {
        b.iter(|| axum_event(black_box(data)));
    });
    // (c2) axum: the fairest public path to bytes: one long-lived `Sse` body, one
    // event built and polled out as one frame per iteration.
    g.bench_function("axum/sse_body_frame", |b| {
        let mut frames = AxumFrames::new(data);
        b.iter(|| frames.next());
    });
    if owned {
        // (c3) axum: a whole `Sse` response around a one-event stream per event.
        g.bench_function("axum/sse_oneshot_response", |b| {
            b.iter(|| axum_oneshot_response(black_box(data)));
        });
        // Owned `String` id and data, made outside the timed code and dropped outside
        // it: tower-sse moves them in, axum copies them.
        g.bench_function("tower_sse/encode_to_reused_buf_owned", |b| {
            let mut buf = frame_buffer();
            b.iter_batched(
                owned_fields,
                |fields| {
                    buf.clear();
                    let event = tower_event_owned(fields);
                    event.encode_to(&mut buf);
                    event
                },
                BatchSize::SmallInput,
            );
        });
        g.bench_function("axum/build_only_owned", |b| {
            b.iter_batched(
                owned_fields,
                |fields| (axum_event_owned(&fields), fields),
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
}

fn encode_typical_event(c: &mut Criterion) {
    encoder_group(c, "encode_typical_event", DATA, true);
}

fn encode_multiline(c: &mut Criterion) {
    encoder_group(c, "encode_multiline", MULTILINE, false);
}

/// End to end: drain a body of `BODY_EVENTS` always-ready 72-byte events.
fn body_frames(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("body_frames");
    g.throughput(Throughput::Elements(BODY_EVENTS as u64));
    g.sample_size(20);
    for (name, heartbeat) in [("heartbeat_15s", true), ("no_heartbeat", false)] {
        g.bench_function(format!("tower_sse/{name}"), |b| {
            b.iter(|| rt.block_on(tower_body(BODY_EVENTS, heartbeat)));
        });
    }
    for (name, keep_alive) in [("keep_alive_15s", true), ("no_keep_alive", false)] {
        g.bench_function(format!("axum/{name}"), |b| {
            b.iter(|| rt.block_on(axum_body(BODY_EVENTS, keep_alive)));
        });
    }
    g.finish();
}

/// Events built straight into the frame (`DataEvent`) against `Event::new().data(String)`
/// and axum: the typical event with the demo's `/stream` payload made per event, and
/// the tiny JSON token event of an LLM stream.
fn data_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_event");
    g.throughput(Throughput::Elements(1));
    g.bench_function("typical/tower_sse/event_data_string", |b| {
        let mut buf = frame_buffer();
        b.iter(|| encode_into(&mut buf, &tower_string_event(black_box(SEQ))));
    });
    g.bench_function("typical/tower_sse/data_event_from_fn", |b| {
        let mut buf = frame_buffer();
        b.iter(|| encode_into(&mut buf, &tower_data_event(black_box(SEQ))));
    });
    g.bench_function("typical/tower_sse/data_event_custom", |b| {
        let mut buf = frame_buffer();
        b.iter(|| encode_into(&mut buf, &tower_custom_event(black_box(SEQ))));
    });
    g.bench_function("typical/axum/sse_body_frame_string", |b| {
        let mut frames = axum_frames_with(|| axum_string_event(black_box(SEQ)));
        b.iter(|| frames.next());
    });
    g.bench_function("json_token/tower_sse/event_json_data", |b| {
        let mut buf = frame_buffer();
        b.iter(|| encode_into(&mut buf, &tower_json_event(black_box(TOKEN))));
    });
    g.bench_function("json_token/tower_sse/data_event_json", |b| {
        let mut buf = frame_buffer();
        b.iter(|| encode_into(&mut buf, &tower_json_data_event(black_box(TOKEN))));
    });
    g.bench_function("json_token/axum/sse_body_frame_json_data", |b| {
        let mut frames = axum_frames_with(|| axum_json_event(black_box(TOKEN)));
        b.iter(|| frames.next());
    });
    g.finish();

    // End to end: a body of `BODY_EVENTS` `/stream` events, each made when polled.
    let rt = runtime();
    let mut g = c.benchmark_group("data_event_body");
    g.throughput(Throughput::Elements(BODY_EVENTS as u64));
    g.sample_size(20);
    g.bench_function("tower_sse/event_data_string", |b| {
        let make = |seq| tower_sse::Event::new().data(stream_payload(seq));
        b.iter(|| rt.block_on(tower_body_of(BODY_EVENTS, make)));
    });
    g.bench_function("tower_sse/data_event_from_fn", |b| {
        let make = |seq| DataEvent::from_fn(move |w| write_stream_payload(seq, w));
        b.iter(|| rt.block_on(tower_body_of(BODY_EVENTS, make)));
    });
    g.bench_function("tower_sse/data_event_custom", |b| {
        let make = |seq| DataEvent::custom(StreamPayload(seq));
        b.iter(|| rt.block_on(tower_body_of(BODY_EVENTS, make)));
    });
    g.bench_function("axum/keep_alive_15s_string", |b| {
        let make = |seq| axum::response::sse::Event::default().data(stream_payload(seq));
        b.iter(|| rt.block_on(axum_body_of(BODY_EVENTS, make)));
    });
    g.finish();
}

fn main() {
    // Fails loudly, before anything is timed, if the two sides stop producing the same
    // bytes (or the bodies stop carrying every event).
    common::sanity_check();
    common::data_event_sanity_check();
    let mut c = Criterion::default().configure_from_args();
    encode_typical_event(&mut c);
    encode_multiline(&mut c);
    body_frames(&mut c);
    data_event(&mut c);
    c.final_summary();
}
