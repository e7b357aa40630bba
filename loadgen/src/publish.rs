//! `sse-loadgen publish`: POSTs events at a steady rate, spread over topics (`{i}` in
//! the URL) and over servers (several URLs), each body `{"seq":S,"ts_ns":T}` so that
//! `fanout` subscribers measure latency and missed events from it.
//!
//! Publish `n` (0, 1, 2, …) is due at `n / rate` seconds; it goes to URL `n % urls`,
//! `{i}` is the id of `n` (`--id-start + n % --id-count`, as for connections), and `S`
//! is `n / --id-count`: each id's publishes are numbered 0, 1, 2, … so a subscriber
//! of one topic sees consecutive numbers. `T` is the Unix time in nanoseconds taken
//! just before the request is written. Each URL gets `--connections` keep-alive
//! HTTP/1.1 connections; connection `j` of URL `u` sends the publishes
//! `n = u + urls × (j + connections × m)`, one at a time (so publishes to one id stay
//! in order unless `--id-count` is below `urls × connections`). A connection that
//! falls behind sends at once; `late_ms_max` says by how much.

use std::{
    cell::RefCell,
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::Args;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    task::LocalSet,
};

use crate::{
    cli::{secs, Format},
    ids::Ids,
    report::{round, Report},
    stats::Histogram,
    target::Target,
};

/// A response head longer than this fails the publish.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Args)]
pub(crate) struct PublishArgs {
    /// Where to POST (`{i}` is replaced by the publish's id); several URLs take turns
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// Publishes per second, over all URLs
    #[arg(long, default_value_t = 100.0, value_name = "PER_S")]
    rate: f64,
    /// How long to publish (seconds)
    #[arg(
        short,
        long,
        default_value_t = 10.0,
        value_name = "SECS",
        visible_alias = "secs"
    )]
    duration: f64,
    /// Keep-alive connections per URL
    #[arg(
        short,
        long,
        default_value_t = 4,
        value_name = "N",
        visible_alias = "conns"
    )]
    connections: usize,
    /// The first id `{i}` takes
    #[arg(long, default_value_t = 0, value_name = "K")]
    id_start: u64,
    /// How many ids the publishes spread over (`{i}` = K + n % M)
    #[arg(long, default_value_t = 1, value_name = "M")]
    id_count: u64,
    /// The JSON field of the body that holds the sequence number
    #[arg(long, default_value = "seq", value_name = "NAME")]
    seq_field: String,
    /// The JSON field of the body that holds the publish time (Unix nanoseconds)
    #[arg(long, default_value = "ts_ns", value_name = "NAME")]
    ts_field: String,
    /// How long one request may take (seconds)
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    timeout: f64,
    /// What goes to stdout
    #[arg(long, value_enum, default_value_t = Format::Markdown)]
    format: Format,
    /// Also write the result as JSON to this file
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// A KEY=VALUE field added to the JSON result (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::cli::tag)]
    tag: Vec<(String, String)>,
}

/// What the publishing connections count.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    samples: Vec<String>,
    latency: Option<Histogram>,
    late_max: Duration,
}

/// Everything one publishing connection needs.
struct Plan {
    target: Target,
    ids: Ids,
    /// This connection sends publishes `first`, `first + step`, … below `end`.
    first: u64,
    step: u64,
    end: u64,
    rate: f64,
    start: Instant,
    timeout: Duration,
    fields: (String, String),
}

pub(crate) fn main(args: &PublishArgs) -> Result<(), String> {
    if !(args.rate > 0.0 && args.rate.is_finite()) || args.connections == 0 {
        return Err("--rate must be above 0 and --connections at least 1".into());
    }
    if !(args.duration > 0.0 && args.duration <= 86_400.0) {
        return Err("--duration: expected above 0 and at most 86400 seconds".into());
    }
    let targets = args
        .urls
        .iter()
        .map(|u| Target::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    let total = (args.rate * args.duration).round() as u64;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let tally = Rc::new(RefCell::new(Tally {
        latency: Some(Histogram::new()),
        ..Tally::default()
    }));
    let start = Instant::now() + Duration::from_millis(10);
    let step = (targets.len() * args.connections) as u64;
    let local = LocalSet::new();
    let mut tasks = Vec::new();
    for (u, target) in targets.iter().enumerate() {
        for j in 0..args.connections {
            let plan = Plan {
                target: Target::parse(&target.url)?,
                ids: Ids::new(args.id_start, args.id_count),
                first: (u + targets.len() * j) as u64,
                step,
                end: total,
                rate: args.rate,
                start,
                timeout: secs(args.timeout),
                fields: (args.seq_field.clone(), args.ts_field.clone()),
            };
            tasks.push(local.spawn_local(publisher(plan, tally.clone())));
        }
    }
    local.block_on(&rt, async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let report = report(args, &tally.borrow(), total, elapsed);
    write(args, &report)
}

/// Sends this connection's share of the publishes, reconnecting after a failure.
async fn publisher(plan: Plan, tally: Rc<RefCell<Tally>>) {
    let mut tcp: Option<TcpStream> = None;
    let mut n = plan.first;
    while n < plan.end {
        let due = plan.start + secs(n as f64 / plan.rate);
        tokio::time::sleep_until(due.into()).await;
        let late = Instant::now().saturating_duration_since(due);
        let id = plan.ids.of(n);
        let seq = n / plan.ids.count;
        let sent = Instant::now();
        let result =
            tokio::time::timeout(plan.timeout, publish_one(&plan, &mut tcp, id, seq)).await;
        let mut t = tally.borrow_mut();
        t.late_max = t.late_max.max(late);
        match result {
            Ok(Ok(())) => {
                t.ok += 1;
                if let Some(h) = t.latency.as_mut() {
                    h.record(u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
            }
            Ok(Err(why)) => fail(&mut t, &mut tcp, why),
            Err(_) => fail(
                &mut t,
                &mut tcp,
                format!("no answer within {:?}", plan.timeout),
            ),
        }
        n += plan.step;
    }
}

fn fail(t: &mut Tally, tcp: &mut Option<TcpStream>, why: String) {
    t.failed += 1;
    *tcp = None;
    if t.samples.len() < 3 && !t.samples.contains(&why) {
        t.samples.push(why);
    }
}

/// One `POST`, on the kept connection (opened if there is none); `Ok` on a 2xx.
async fn publish_one(
    plan: &Plan,
    tcp: &mut Option<TcpStream>,
    id: u64,
    seq: u64,
) -> Result<(), String> {
    let target = &plan.target;
    let path = plan.ids.expand(&target.path, id);
    let body = payload(&plan.fields.0, seq, &plan.fields.1, unix_ns());
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        target.authority,
        body.len()
    );
    if tcp.is_none() {
        let stream = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect: {}: {e}", target.addr))?;
        let _ = stream.set_nodelay(true);
        *tcp = Some(stream);
    }
    let Some(stream) = tcp.as_mut() else {
        return Err("no connection".into());
    };
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let (status, keep) = read_answer(stream).await?;
    if !keep {
        *tcp = None;
    }
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the server answered {status}"))
    }
}

/// Reads one response (head and `content-length` body): its status, and whether the
/// connection may be used again.
async fn read_answer(stream: &mut TcpStream) -> Result<(u16, bool), String> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the connection closed before the answer".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err("response head too long".into());
        }
    };
    let (status, length, close) = parse_answer(&buf[..end])?;
    let mut have = buf.len() - end;
    while have < length {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the connection closed in the answer's body".into());
        }
        have += n;
    }
    Ok((status, !close))
}

/// Status, `content-length` (0 if none) and `connection: close` of a response head.
fn parse_answer(head: &[u8]) -> Result<(u16, usize, bool), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    // HTTP/1.0 closes after the answer unless it says otherwise.
    let (mut length, mut close) = (0, status_line.starts_with("HTTP/1.0"));
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().map_err(|_| "bad content-length".to_owned())?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close")
                || (close && !value.eq_ignore_ascii_case("keep-alive"));
        }
    }
    Ok((status, length, close))
}

/// The body of a publish: `{"SEQ":seq,"TS":ts_ns}`.
fn payload(seq_field: &str, seq: u64, ts_field: &str, ts_ns: u64) -> String {
    format!("{{\"{seq_field}\":{seq},\"{ts_field}\":{ts_ns}}}")
}

fn report(args: &PublishArgs, t: &Tally, total: u64, elapsed: f64) -> Report {
    let mut r = Report::new();
    r.put("tool", json!("sse-loadgen"), None);
    for (k, v) in &args.tag {
        r.fields.insert(k.clone(), json!(v));
    }
    r.put("scenario", json!("publish"), None);
    r.put("url", json!(args.urls.join(" ")), None);
    r.put("urls", json!(args.urls.len()), None);
    r.put("http", json!("1.1"), None);
    r.put("conns", json!(args.connections * args.urls.len()), None);
    r.put("warmup_s", json!(0), None);
    r.put(
        "window_s",
        json!(round(elapsed, 3)),
        Some(format!("{elapsed:.2} s")),
    );
    r.put(
        "ids",
        json!(args.id_count),
        Some(format!("{} from {}", args.id_count, args.id_start)),
    );
    r.put("publishes", json!(total), Some(format!("{total} due")));
    r.put(
        "published",
        json!(t.ok),
        Some(format!("{} answered 2xx", t.ok)),
    );
    r.put(
        "publish_failed",
        json!(t.failed),
        Some(t.failed.to_string()),
    );
    r.put("fail_samples", json!(t.samples), None);
    let pps = t.ok as f64 / elapsed.max(1e-9);
    r.put(
        "published_per_s",
        json!(round(pps, 1)),
        Some(format!("{pps:.1}/s")),
    );
    if let Some(h) = &t.latency {
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            let v = h.quantile(q).map(|ns| round(ns as f64 / 1e3, 1));
            r.put(
                &format!("post_us_{name}"),
                json!(v),
                v.map(|v| format!("{v} µs")),
            );
        }
    }
    let late = round(t.late_max.as_secs_f64() * 1e3, 1);
    r.put(
        "late_ms_max",
        json!(late),
        Some(format!("{late} ms behind schedule at most")),
    );
    r
}

fn write(args: &PublishArgs, report: &Report) -> Result<(), String> {
    if let Some(path) = &args.json {
        std::fs::write(path, report.json() + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    match args.format {
        Format::Markdown => print!("{}", report.markdown()),
        Format::Json => println!("{}", report.json()),
    }
    Ok(())
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_what_fanout_reads() {
        let body = payload("seq", 41, "ts_ns", 1_764_500_000_123_456_789);
        assert_eq!(body, r#"{"seq":41,"ts_ns":1764500000123456789}"#);
        let fields = crate::scenarios::Fields::new("seq", "ts_ns", 1);
        assert_eq!(fields.seq(body.as_bytes()), Some(41));
        assert_eq!(
            fields.ts_ns(body.as_bytes()),
            Some(1_764_500_000_123_456_789)
        );
    }

    #[test]
    fn answers() {
        let ok = parse_answer(b"HTTP/1.1 204 No Content\r\ndate: x\r\n\r\n");
        assert_eq!(ok, Ok((204, 0, false)));
        let closing =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_answer(closing), Ok((400, 12, true)));
        assert_eq!(parse_answer(b"HTTP/1.0 204 OK\r\n\r\n"), Ok((204, 0, true)));
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
    }
}
