//! The command line (clap), checked and turned into a [`RunConfig`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    ids::Ids,
    scenarios::{Fields, Scenario},
    target::Target,
};

const EXAMPLES: &str = "\
Examples:
  sse-loadgen stream http://127.0.0.1:3000/stream -c 16 -d 10
  sse-loadgen idle 'http://127.0.0.1:3000/idle?hb_ms=1000' -c 10000 --heartbeat-ms 1000 --pid 4242
  sse-loadgen fanout http://127.0.0.1:3000/fanout -c 1000 --publish-ms 100 --format json
  sse-loadgen stream http://10.0.0.5:8080/events --http h2c -H 'Authorization: Bearer T'
  sse-loadgen fanout 'http://127.0.0.1:3000/fanout?topic=user:{i}' -c 10000 --id-count 10000
  sse-loadgen publish 'http://127.0.0.1:3000/publish?topic=user:{i}' --rate 1000 --id-count 10000
  sse-loadgen plot a.json b.json -o events.svg

The URL is used as given: any SSE server, any path. The scenario says what is measured.
Exit status: 0 when measured, 1 when the run failed (connection refused, not 200,
not text/event-stream, no connection opened), 2 for a bad command line.";

/// A benchmark tool for any Server-Sent Events server.
///
/// Opens N connections to one URL (HTTP/1.1 or h2c), reads every byte of every
/// response, and measures a steady-state window after the ramp-up and a warm-up:
/// events/s, heartbeat gaps, publish-to-delivery latency and, with --pid, the
/// server's CPU time, memory and syscalls per event and per connection.
#[derive(Parser)]
#[command(name = "sse-loadgen", version, after_help = EXAMPLES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Throughput: N connections read an endless stream as fast as it comes (events/s,
    /// bytes/s; missed events when the data carries a sequence number)
    Stream(StreamArgs),
    /// Idle connections: N connections held open; heartbeat gaps p50/p99/max against the
    /// expected interval, late and silent connections
    Idle(IdleArgs),
    /// Fan-out: N subscribers; publish-to-delivery latency from a timestamp in the data,
    /// missed events from its sequence number
    Fanout(FanoutArgs),
    /// Publisher: POSTs `{"seq":S,"ts_ns":T}` bodies at a steady rate, spread over
    /// `{i}` ids and several URLs, for `fanout` subscribers to measure
    Publish(crate::publish::PublishArgs),
    /// An SVG chart from one or more JSON results (--json FILE or --format json)
    Plot(crate::plot::PlotArgs),
}

#[derive(Args)]
pub(crate) struct StreamArgs {
    #[command(flatten)]
    common: Common,
    /// The JSON field of the event data that holds a sequence number (missed events
    /// are counted from its gaps; events without it are counted, not checked)
    #[arg(long, default_value = "seq", value_name = "NAME")]
    seq_field: String,
}

#[derive(Args)]
pub(crate) struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// The heartbeat interval the server is expected to keep (milliseconds): gaps are
    /// judged against it (a gap over 1.5 intervals makes a connection late)
    #[arg(long, visible_alias = "hb-ms", value_name = "MS", required = true)]
    heartbeat_ms: u64,
    /// Count events of this type (their `event:` field; `message` for events without
    /// one) as heartbeats, for servers whose keep-alive is an event rather than a
    /// comment line (comments always count)
    #[arg(long, value_name = "TYPE")]
    heartbeat_event: Option<String>,
}

#[derive(Args)]
pub(crate) struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// The JSON field of the event data that holds the publish time (Unix time)
    #[arg(long, default_value = "ts_ns", value_name = "NAME")]
    ts_field: String,
    /// The unit of the publish time
    #[arg(long, value_enum, default_value_t = TsUnit::Ns)]
    ts_unit: TsUnit,
    /// The JSON field of the event data that holds the event's sequence number
    #[arg(long, default_value = "seq", value_name = "NAME")]
    seq_field: String,
    /// How often the server publishes (milliseconds): deliveries are compared with
    /// what that interval gives
    #[arg(long, visible_alias = "fanout-ms", value_name = "MS")]
    publish_ms: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
enum TsUnit {
    Ns,
    Us,
    Ms,
    S,
}

/// The options of every scenario.
#[derive(Args)]
struct Common {
    /// The SSE endpoint, used as given: http://HOST:PORT/PATH?QUERY (port and query
    /// optional); `{i}` in it becomes each connection's id (--id-start, --id-count)
    url: String,
    /// `{i}` in the URL: connection n gets K + n % M, this is K
    #[arg(long, default_value_t = 0, value_name = "K")]
    id_start: u64,
    /// `{i}` in the URL: connection n gets K + n % M, this is M [default: connections]
    #[arg(long, value_name = "M")]
    id_count: Option<u64>,
    /// Connections to open
    #[arg(
        short,
        long,
        default_value_t = 10,
        value_name = "N",
        visible_alias = "conns"
    )]
    connections: usize,
    /// The measured window, after the ramp-up and the warm-up (seconds)
    #[arg(
        short,
        long,
        default_value_t = 10.0,
        value_name = "SECS",
        visible_alias = "secs"
    )]
    duration: f64,
    /// Time between the last connection and the window (seconds)
    #[arg(short, long, default_value_t = 2.0, value_name = "SECS")]
    warmup: f64,
    /// Spread the connections over this many seconds [default: at --rate]
    #[arg(long, value_name = "SECS", conflicts_with = "rate")]
    ramp_up: Option<f64>,
    /// New connections per second during the ramp-up
    #[arg(long, default_value_t = 2000.0, value_name = "PER_S")]
    rate: f64,
    /// The HTTP version: HTTP/1.1, or HTTP/2 over cleartext with prior knowledge
    #[arg(long, value_enum, default_value_t = Protocol::Http1, value_name = "VERSION")]
    http: Protocol,
    /// An extra request header, `Name: value` (repeatable)
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = header)]
    headers: Vec<(String, String)>,
    /// The server's process id: its CPU time, RSS and syscalls over the window, per
    /// event and per connection (Linux /proc; syscalls need the same user or root)
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,
    /// What goes to stdout
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Also write the result as JSON to this file
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// No progress bar, no table on stderr
    #[arg(short, long)]
    quiet: bool,
    /// A KEY=VALUE field added to the JSON result (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = tag)]
    tag: Vec<(String, String)>,
    /// How long one connection may take to connect (seconds)
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Loopback targets: connect from 127.0.0.2 to 127.0.0.(1+N), because one source
    /// address runs short of cheap ephemeral ports past ~15 000 connections (0: the
    /// kernel's choice) [default: 32 for a loopback target, else 0]
    #[arg(long, value_name = "N")]
    source_ips: Option<usize>,
}

/// HTTP/1.1 or h2c.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// HTTP/1.1, one connection per stream
    #[value(name = "1.1")]
    Http1,
    /// HTTP/2 without TLS (prior knowledge), one connection per stream
    H2c,
}

/// The format of stdout.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A Markdown table
    Markdown,
    /// One JSON object on one line
    Json,
}

/// Everything a run needs, checked.
pub(crate) struct RunConfig {
    pub(crate) scenario: Scenario,
    pub(crate) target: Target,
    pub(crate) protocol: Protocol,
    pub(crate) conns: usize,
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    pub(crate) rate: f64,
    pub(crate) hb_ms: Option<u64>,
    pub(crate) publish_ms: Option<u64>,
    pub(crate) fields: Fields,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) pid: Option<u32>,
    pub(crate) format: Format,
    pub(crate) json_file: Option<PathBuf>,
    pub(crate) quiet: bool,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) connect_timeout: f64,
    pub(crate) source_ips: usize,
    /// What `{i}` in the URL becomes per connection.
    pub(crate) ids: Ids,
}

impl RunConfig {
    /// The options of a scenario subcommand, checked.
    pub(crate) fn from_command(command: Command) -> Result<Self, String> {
        let (scenario, common, hb_ms, publish_ms, fields) = match command {
            Command::Stream(a) => (
                Scenario::Stream,
                a.common,
                None,
                None,
                Fields::new(&a.seq_field, "", 1),
            ),
            Command::Idle(a) => {
                if a.heartbeat_ms == 0 {
                    return Err("--heartbeat-ms must be above 0".into());
                }
                let mut fields = Fields::new("seq", "", 1);
                fields.heartbeat_event = a.heartbeat_event.map(String::into_bytes);
                (Scenario::Idle, a.common, Some(a.heartbeat_ms), None, fields)
            }
            Command::Fanout(a) => {
                let scale = match a.ts_unit {
                    TsUnit::Ns => 1,
                    TsUnit::Us => 1_000,
                    TsUnit::Ms => 1_000_000,
                    TsUnit::S => 1_000_000_000,
                };
                let fields = Fields::new(&a.seq_field, &a.ts_field, scale);
                (Scenario::Fanout, a.common, None, a.publish_ms, fields)
            }
            Command::Plot(_) | Command::Publish(_) => unreachable!("not a run"),
        };
        common.check()?;
        let target = Target::parse(&common.url)?;
        let loopback = target.addr.ip().is_loopback() && target.addr.is_ipv4();
        let source_ips = match common.source_ips {
            Some(n) if n > 250 => return Err("--source-ips: at most 250".into()),
            Some(n) if n > 0 && !loopback => {
                return Err("--source-ips: only for a 127.0.0.0/8 target".into())
            }
            Some(n) => n,
            None if loopback => 32,
            None => 0,
        };
        let rate = match common.ramp_up {
            Some(s) if s > 0.0 => (common.connections as f64 / s).max(1.0),
            _ => common.rate,
        };
        Ok(Self {
            scenario,
            target,
            protocol: common.http,
            conns: common.connections,
            secs: common.duration,
            warmup: common.warmup,
            rate,
            hb_ms,
            publish_ms,
            fields,
            headers: common.headers,
            pid: common.pid,
            format: common.format,
            json_file: common.json,
            quiet: common.quiet,
            tags: common.tag,
            connect_timeout: common.connect_timeout,
            source_ips,
            ids: Ids::new(
                common.id_start,
                common.id_count.unwrap_or(common.connections as u64),
            ),
        })
    }
}

impl Common {
    fn check(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if !(self.duration > 0.0 && self.duration <= 86_400.0) {
            return Err("--duration: expected above 0 and at most 86400 seconds".into());
        }
        if !(0.0..=3600.0).contains(&self.warmup) {
            return Err("--warmup: expected 0 to 3600 seconds".into());
        }
        if let Some(r) = self.ramp_up {
            if !(0.0..=3600.0).contains(&r) {
                return Err("--ramp-up: expected 0 to 3600 seconds".into());
            }
        }
        if !(self.rate >= 1.0 && self.rate.is_finite()) {
            return Err("--rate must be at least 1 connection per second".into());
        }
        if !(0.1..=60.0).contains(&self.connect_timeout) {
            return Err("--connect-timeout: expected 0.1 to 60 seconds".into());
        }
        Ok(())
    }
}

fn header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected `Name: value`"))?;
    let name = name.trim();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b));
    if !ok || value.contains(['\r', '\n']) {
        return Err(format!("{s:?}: not a valid header"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

pub(crate) fn tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// Seconds as a `Duration` (negative: zero).
pub(crate) fn secs(s: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(s.max(0.0))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_and_tags() {
        assert_eq!(
            header("Authorization:  Bearer x ").ok(),
            Some(("Authorization".into(), "Bearer x".into()))
        );
        assert!(header("no colon").is_err());
        assert!(header("X: a\r\nInjected: b").is_err());
        assert_eq!(tag("a=b=c").ok(), Some(("a".into(), "b=c".into())));
    }
}
