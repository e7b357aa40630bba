//! `sse-loadgen`: a benchmark tool for any Server-Sent Events server (see README.md).
//!
//! One thread (a current-thread tokio runtime; pin it with `taskset`), one task per
//! connection. Connections open at most `--rate` per second, from source addresses
//! `127.0.0.2` to `127.0.0.(1 + N)` for a loopback target (`--source-ips`), because
//! Linux's search for a free ephemeral port slows down to milliseconds per `connect`
//! with ~15 000 connections from one address. Every HTTP/1.1 read goes into one shared
//! 256 KiB buffer (borrowed only inside `poll_read`), so 19 000 idle connections cost
//! little memory. A small state machine decodes `Transfer-Encoding: chunked` (or a body
//! read to the end; or h2c DATA frames) and feeds an SSE line parser. The first
//! connection must succeed (else the run stops with the reason, exit status 1); later
//! failures to connect, non-200 answers, protocol errors and connections that end are
//! counted and reported. Everything has a deadline: the ramp-up gives up on
//! connections still pending after `conns / rate + connect-timeout + 5 s`, and a
//! watchdog thread ends the process if the run overstays its budget by 10 s.
//!
//! The modules: `cli` (the command line), `target` (the URL), `ids` (`{i}` in it),
//! `publish` (the publisher), `run` (first connection,
//! ramp-up, warm-up, window), `shared` (what the connections share), `failure`, `conn` (one connection, HTTP/1.1 or h2c), `http1` (head
//! and chunked framing), `sse` (SSE lines and the counters they feed), `scenarios`
//! (what each scenario reads from the data), `stats` (counters, histogram),
//! `heartbeats` (the idle verdict), `procfs` (the `/proc` samples), `cost` (the server's
//! and the load generator's cost), `report` (JSON and Markdown), `progress` (the bar),
//! `plot` (JSON results to chart lines), `svg` (the chart).

mod cli;
mod conn;
mod cost;
mod failure;
mod heartbeats;
mod http1;
mod ids;
mod plot;
mod procfs;
mod progress;
mod publish;
mod report;
mod run;
mod scenarios;
mod shared;
mod sse;
mod stats;
mod svg;
mod target;

use std::{process::ExitCode, time::Duration};

use clap::Parser as _;
use tokio::task::LocalSet;

use crate::cli::{secs, Cli, Command, Format, RunConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plot(args) => plot::main(&args),
        Command::Publish(args) => publish::main(&args),
        command => RunConfig::from_command(command).and_then(|cfg| measure(&cfg)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("sse-loadgen: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenario and writes the result.
fn measure(cfg: &RunConfig) -> Result<(), String> {
    // The run's whole budget: first connection, ramp-up, warm-up, window, some slack.
    // A server may send its head with the first heartbeat: allow an interval more.
    let hb_s = cfg.hb_ms.unwrap_or(0) as f64 / 1000.0;
    let ramp_budget = secs(cfg.conns as f64 / cfg.rate + cfg.connect_timeout + 5.0 + hb_s);
    let first = secs(cfg.connect_timeout + 10f64.max(2.0 * hb_s));
    let budget = first + ramp_budget + secs(cfg.warmup) + secs(cfg.secs) + secs(10.0);
    std::thread::spawn(move || {
        std::thread::sleep(budget + Duration::from_secs(10));
        eprintln!("sse-loadgen: watchdog: still running after {budget:?} + 10 s; giving up");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let report = LocalSet::new().block_on(&rt, run::run(cfg, ramp_budget));
    if !cfg.quiet {
        progress::clear();
    }
    let report = report?;
    if let Some(path) = &cfg.json_file {
        std::fs::write(path, report.json() + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    match cfg.format {
        Format::Markdown => print!("{}", report.markdown()),
        Format::Json => {
            println!("{}", report.json());
            if !cfg.quiet {
                eprint!("{}", report.markdown());
            }
        }
    }
    let failed = report
        .fields
        .get("connected")
        .and_then(serde_json::Value::as_u64);
    if failed.is_some_and(|c| c < cfg.conns as u64) {
        eprintln!(
            "sse-loadgen: warning: {} of {} connections opened",
            failed.unwrap_or(0),
            cfg.conns
        );
    }
    // 19 000 open sockets and their tasks: let the kernel clean up.
    std::process::exit(0);
}
