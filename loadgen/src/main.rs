//! A load generator for servers that follow `CONTRACT.md` (the demo's `/stream`,
//! `/idle` and `/fanout`): it opens N HTTP/1.1 connections to `127.0.0.1`, parses every
//! byte of every response, and measures a steady-state window after the ramp-up and a
//! warm-up. With `--pid` it also reads the server's cost during the window from `/proc`.
//! `benches/run.sh` drives it; see the end of `BENCHMARKS.md`.
//!
//! ```text
//! cargo run --release -p tower-sse-loadgen -- --url http://127.0.0.1:3000 \
//!     --scenario stream|idle|fanout --conns N --secs S --warmup W \
//!     [--hb-ms H] [--pid SERVER_PID] [--json] [--rate CONNS_PER_S] [--fanout-ms F] \
//!     [--connect-timeout SECS] [--source-ips N] [--tag KEY=VALUE]...
//! ```
//!
//! `cargo install --path loadgen` installs it as `sse-loadgen`.
//!
//! | scenario | request | measured in the window |
//! |---|---|---|
//! | `stream` | `GET /stream` (`?hb_ms=H` if given) | events/s, MB/s, every event checked: exactly `{"seq":N,"pad":"x…x"}` of 64 bytes, N continuous from 0 |
//! | `idle` | `GET /idle?hb_ms=H` (H default 1000) | heartbeats per connection against `window / H`, gaps between heartbeats p50/p99/max, connections late (a gap over 1.5 H, the open gap at the end included) or silent (none in the window); only connections open for the whole window are judged |
//! | `fanout` | `GET /fanout` | deliveries, missed (gaps in `seq`; and tower-sse's `: lagged N` comments), latency from `ts_ns` to the parse p50/p90/p99/max, events published in the window (the highest `seq` seen: a publisher that shares an overloaded runtime publishes less often than `FANOUT_MS`) |
//!
//! With `--pid`, the server's CPU time, write syscalls (`syscw`) and bytes (`wchar`)
//! from `/proc/PID/io` (same user or root) are differenced over the window, and
//! `VmRSS` from `/proc/PID/status` is read before the first connection and at the end
//! of the window. CPU time is `utime + stime` from `/proc/PID/stat` (clock ticks of
//! `getconf CLK_TCK`, 100 if that fails: 10 ms resolution), and the same with
//! nanosecond resolution from `/proc/PID/task/*/schedstat`, which is used unless it is
//! well below the ticks (a thread ended in between). `schedstat` also gives the time
//! the server spent runnable but waiting for a CPU: on a shared machine, how much other
//! processes got in the way (`server_wait_pct`; the same for the load generator).
//! Costs are reported per event, per heartbeat or per delivery (the scenario's unit)
//! and per connection.
//!
//! Output: a table on stderr, and with `--json` one JSON object on one line on stdout
//! (every `--tag` becomes a field of it). Without `--json` the table goes to stdout.
//!
//! How it works: one thread (a current-thread tokio runtime; pin it with `taskset`),
//! one task per connection. Connections open at most `--rate` per second (default
//! 2000), from source addresses `127.0.0.2` to `127.0.0.(1 + N)` (`--source-ips`,
//! default 32; `0`: the kernel's choice from `127.0.0.1`), because Linux's search for a
//! free ephemeral port slows down to milliseconds per `connect` with ~15 000
//! connections from one address. Every read goes into one shared 256 KiB buffer
//! (borrowed only inside `poll_read`), so 19 000 idle connections cost little memory.
//! A small state machine decodes `Transfer-Encoding: chunked` (or a body read to the
//! end) and feeds an SSE line parser. Failures to connect, non-200 answers, protocol
//! errors and connections that end are counted, never fatal. Everything has a
//! deadline: the ramp-up gives up on connections still pending after
//! `conns / rate + connect-timeout + 5 s`, and a watchdog thread ends the process if
//! the run overstays its budget by 10 s.
//!
//! Only `127.0.0.1` (or `localhost`, which means the same) is accepted as a target.
//!
//! The modules: `args` (the command line), `run` (ramp-up, warm-up and window; one
//! task per connection), `parse` (response head, chunked framing, SSE lines, and the
//! counters they feed), `histogram`, `proc` (the `/proc` samples) and `report` (the
//! JSON object and the table).

mod args;
mod histogram;
mod parse;
mod proc;
mod report;
mod run;

use std::time::Duration;

use serde_json::Value;
use tokio::task::LocalSet;

use crate::{
    args::{secs, Args, USAGE},
    run::run,
};

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) if msg == "help" => {
            println!("{USAGE}");
            return;
        }
        Err(msg) => {
            eprintln!("loadgen: {msg}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    // The run's whole budget: ramp-up, warm-up, window, and some slack to report.
    let ramp_budget = args.ramp_budget();
    let budget = ramp_budget + secs(args.warmup) + secs(args.secs) + Duration::from_secs(5);
    std::thread::spawn(move || {
        std::thread::sleep(budget + Duration::from_secs(10));
        eprintln!("loadgen: watchdog: still running after {budget:?} + 10 s; giving up");
        std::process::exit(3);
    });

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            std::process::exit(1);
        }
    };
    let report = LocalSet::new().block_on(&rt, run(args, ramp_budget));
    let table = report.table();
    if report.json {
        eprint!("{table}");
        println!("{}", Value::Object(report.fields));
    } else {
        print!("{table}");
    }
    // 19 000 open sockets and their tasks: let the kernel clean up.
    std::process::exit(0);
}
