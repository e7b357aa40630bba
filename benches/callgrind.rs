//! Fixed workloads for instruction counting under `valgrind --tool=callgrind`
//! (driven by `scripts/bench-callgrind.sh`). Instruction counts do not depend on how
//! busy the machine is, so they repeat exactly where wall-clock times do not.
//!
//! ```text
//! callgrind-<hash> <workload> <count>
//! ```
//!
//! Run without a workload (as `cargo bench` and `cargo test --benches` do) it lists
//! the workloads and exits.

mod common;

use std::hint::black_box;

use common::{
    axum_body, axum_body_of, axum_event, axum_frames_with, axum_idle_keep_alive, axum_json_event,
    axum_string_event, encode_into, fanout, frame_buffer, hub_topics, idle_many, paused_runtime,
    runtime, stream_payload, tower_body, tower_body_of, tower_body_ticker, tower_custom_event,
    tower_data_event, tower_event, tower_idle_heartbeats, tower_idle_heartbeats_ticker,
    tower_json_data_event, tower_json_event, tower_string_event, write_stream_payload, AxumFrames,
    StreamPayload, DATA, MULTILINE, SEQ, TOKEN,
};
use tower_sse::event::DataEvent;

/// Workload names and what each does `count` times.
const WORKLOADS: &[(&str, &str)] = &[
    (
        "tower_encode_to",
        "tower-sse: build the typical event, encode_to a reused frame buffer",
    ),
    (
        "tower_encode",
        "tower-sse: build the typical event, Event::encode() to its own Bytes",
    ),
    (
        "axum_build",
        "axum: build the typical event (encodes all but the final \\n)",
    ),
    (
        "axum_body_frame",
        "axum: build the typical event and poll it out of a long-lived Sse body",
    ),
    (
        "tower_encode_to_multiline",
        "tower-sse: as tower_encode_to, data over four lines (\\n, \\r\\n, lone \\r)",
    ),
    (
        "axum_body_frame_multiline",
        "axum: as axum_body_frame, data over four lines (\\n, \\r\\n, lone \\r)",
    ),
    (
        "tower_body_heartbeat",
        "tower-sse: drain an SseLayer body of <count> 72-byte events, 15 s heartbeat",
    ),
    (
        "tower_body_no_heartbeat",
        "tower-sse: the same with no_heartbeat()",
    ),
    (
        "axum_body_keep_alive",
        "axum: drain an Sse body of <count> 72-byte events, KeepAlive 15 s",
    ),
    (
        "axum_body_no_keep_alive",
        "axum: the same without KeepAlive",
    ),
    (
        "tower_idle_heartbeats",
        "tower-sse: <count> heartbeats from an idle body, Heartbeat::per_stream_timer() (paused clock)",
    ),
    (
        "tower_idle_heartbeats_ticker",
        "tower-sse: <count> heartbeats from an idle body, Heartbeat::shared_ticker()",
    ),
    (
        "idle1000_timer",
        "tower-sse: 1000 idle streams on their own tasks, <count> heartbeats each, Heartbeat::per_stream_timer()",
    ),
    (
        "idle1000_ticker",
        "tower-sse: the same with Heartbeat::shared_ticker() (the default)",
    ),
    (
        "idle1000_axum",
        "axum: 1000 idle Sse bodies with KeepAlive, <count> comments each",
    ),
    (
        "hub_publish_1k",
        "hub: publish <count> events spread over 1,000 topics of one subscriber each",
    ),
    (
        "hub_publish_10k",
        "hub: the same over 10,000 topics",
    ),
    (
        "hub_publish_100k",
        "hub: the same over 100,000 topics",
    ),
    (
        "hub_subscribe_1k",
        "hub: <count> times subscribe to a new topic and leave, beside 1,000 topics",
    ),
    (
        "hub_subscribe_10k",
        "hub: the same beside 10,000 topics",
    ),
    (
        "hub_subscribe_100k",
        "hub: the same beside 100,000 topics",
    ),
    (
        "fanout1000_hub",
        "tower-sse: Hub + SseLayer, 1000 subscribers on their own tasks, <count> events",
    ),
    (
        "fanout1000_axum",
        "axum: Sse over tokio broadcast, 1000 subscribers, <count> events",
    ),
    (
        "tower_body_ticker",
        "tower-sse: drain an SseLayer body of <count> 72-byte events, shared ticker 15 s",
    ),
    (
        "axum_idle_keep_alive",
        "axum: <count> KeepAlive comments from an idle Sse body (paused clock)",
    ),
    (
        "tower_string_typical",
        "tower-sse: the typical event with its data made as a String (the demo's /stream payload), encode_to",
    ),
    (
        "tower_data_event_typical",
        "tower-sse: the same event, DataEvent::from_fn writing the same payload into the frame",
    ),
    (
        "tower_custom_event_typical",
        "tower-sse: the same event, DataEvent::custom (a type that writes the same payload)",
    ),
    (
        "axum_body_frame_string",
        "axum: the same event from the same String, one frame from a long-lived Sse body",
    ),
    (
        "tower_json_token",
        "tower-sse: {\"token\":\"hi\"} with Event::json_data (a String), encode_to",
    ),
    (
        "tower_data_event_json_token",
        "tower-sse: the same with DataEvent::json (serialized into the frame)",
    ),
    (
        "axum_body_frame_json_token",
        "axum: the same with Event::json_data, one frame from a long-lived Sse body",
    ),
    (
        "tower_body_string",
        "tower-sse: drain an SseLayer body of <count> /stream events, Event::new().data(payload String)",
    ),
    (
        "tower_body_data_event",
        "tower-sse: the same events, DataEvent::from_fn writing the payload into the frame",
    ),
    (
        "tower_body_custom",
        "tower-sse: the same events, DataEvent::custom writing the payload into the frame",
    ),
    (
        "axum_body_string",
        "axum: drain an Sse body (KeepAlive 15 s) of <count> /stream events from the same String",
    ),
];

/// The frame-direct workloads (`DataEvent` against `Event` with a `String`, and axum).
fn run_data_event(workload: &str, count: usize) -> bool {
    let mut buf = frame_buffer();
    match workload {
        "tower_string_typical" => {
            for _ in 0..count {
                encode_into(&mut buf, &tower_string_event(black_box(SEQ)));
                black_box(&buf);
            }
        }
        "tower_data_event_typical" => {
            for _ in 0..count {
                encode_into(&mut buf, &tower_data_event(black_box(SEQ)));
                black_box(&buf);
            }
        }
        "tower_custom_event_typical" => {
            for _ in 0..count {
                encode_into(&mut buf, &tower_custom_event(black_box(SEQ)));
                black_box(&buf);
            }
        }
        "axum_body_frame_string" => {
            let mut frames = axum_frames_with(|| axum_string_event(black_box(SEQ)));
            for _ in 0..count {
                black_box(frames.next());
            }
        }
        "tower_json_token" => {
            for _ in 0..count {
                encode_into(&mut buf, &tower_json_event(black_box(TOKEN)));
                black_box(&buf);
            }
        }
        "tower_data_event_json_token" => {
            for _ in 0..count {
                encode_into(&mut buf, &tower_json_data_event(black_box(TOKEN)));
                black_box(&buf);
            }
        }
        "axum_body_frame_json_token" => {
            let mut frames = axum_frames_with(|| axum_json_event(black_box(TOKEN)));
            for _ in 0..count {
                black_box(frames.next());
            }
        }
        "tower_body_string" => {
            let make = |seq| tower_sse::Event::new().data(stream_payload(seq));
            black_box(runtime().block_on(tower_body_of(count, make)));
        }
        "tower_body_data_event" => {
            let make = |seq| DataEvent::from_fn(move |w| write_stream_payload(seq, w));
            black_box(runtime().block_on(tower_body_of(count, make)));
        }
        "tower_body_custom" => {
            let make = |seq| DataEvent::custom(StreamPayload(seq));
            black_box(runtime().block_on(tower_body_of(count, make)));
        }
        "axum_body_string" => {
            let make = |seq| axum::response::sse::Event::default().data(stream_payload(seq));
            black_box(runtime().block_on(axum_body_of(count, make)));
        }
        _ => return false,
    }
    true
}

fn run(workload: &str, count: usize) -> bool {
    match workload {
        "tower_encode_to" | "tower_encode_to_multiline" => {
            let data = if workload == "tower_encode_to" {
                DATA
            } else {
                MULTILINE
            };
            let mut buf = frame_buffer();
            for _ in 0..count {
                buf.clear();
                tower_event(black_box(data)).encode_to(&mut buf);
                black_box(&buf);
            }
        }
        "tower_encode" => {
            for _ in 0..count {
                black_box(tower_event(black_box(DATA)).encode());
            }
        }
        "axum_build" => {
            for _ in 0..count {
                let _ = black_box(axum_event(black_box(DATA)));
            }
        }
        "axum_body_frame" | "axum_body_frame_multiline" => {
            let data = if workload == "axum_body_frame" {
                DATA
            } else {
                MULTILINE
            };
            let mut frames = AxumFrames::new(data);
            for _ in 0..count {
                black_box(frames.next());
            }
        }
        "tower_body_heartbeat" | "tower_body_no_heartbeat" => {
            let heartbeat = workload == "tower_body_heartbeat";
            black_box(runtime().block_on(tower_body(count, heartbeat)));
        }
        "axum_body_keep_alive" | "axum_body_no_keep_alive" => {
            let keep_alive = workload == "axum_body_keep_alive";
            black_box(runtime().block_on(axum_body(count, keep_alive)));
        }
        "tower_idle_heartbeats" => {
            black_box(paused_runtime().block_on(tower_idle_heartbeats(count)));
        }
        "tower_idle_heartbeats_ticker" => {
            black_box(paused_runtime().block_on(tower_idle_heartbeats_ticker(count)));
        }
        "idle1000_timer" | "idle1000_ticker" | "idle1000_axum" => {
            let kind = &workload["idle1000_".len()..];
            let kind: &'static str = match kind {
                "timer" => "timer",
                "ticker" => "ticker",
                _ => "axum",
            };
            black_box(paused_runtime().block_on(idle_many(kind, 1000, count)));
        }
        "hub_publish_1k" | "hub_publish_10k" | "hub_publish_100k" | "hub_subscribe_1k"
        | "hub_subscribe_10k" | "hub_subscribe_100k" => {
            let (op, size) = workload[4..].split_once('_').unwrap_or(("publish", "1k"));
            let op = if op == "publish" {
                "publish"
            } else {
                "subscribe"
            };
            let topics = match size {
                "1k" => 1_000,
                "10k" => 10_000,
                _ => 100_000,
            };
            black_box(hub_topics(op, topics, count));
        }
        "fanout1000_hub" => {
            black_box(runtime().block_on(fanout("hub", 1000, count)));
        }
        "fanout1000_axum" => {
            black_box(runtime().block_on(fanout("axum", 1000, count)));
        }
        "tower_body_ticker" => {
            black_box(runtime().block_on(tower_body_ticker(count)));
        }
        "axum_idle_keep_alive" => {
            black_box(paused_runtime().block_on(axum_idle_keep_alive(count)));
        }
        _ => return run_data_event(workload, count),
    }
    true
}

fn main() {
    // cargo passes flags such as `--bench`; the workload and count are the rest.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let (Some(workload), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("usage: callgrind <workload> <count>\nworkloads:");
        for (name, what) in WORKLOADS {
            eprintln!("  {name:<26} {what}");
        }
        return;
    };
    let Ok(count) = count.parse::<usize>() else {
        eprintln!("count must be a number, got {count:?}");
        std::process::exit(2);
    };
    if !run(workload, count) {
        eprintln!("unknown workload {workload:?}");
        std::process::exit(2);
    }
}
