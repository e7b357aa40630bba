//! `sse-loadgen plot`: a line chart (SVG) from JSON results: one or more metrics
//! against one field (by default, the connection count), one line per series.

use std::{collections::BTreeMap, path::PathBuf};

use clap::Args;
use serde_json::{Map, Value};

use crate::svg::{Chart, Line};

#[derive(Args)]
pub(crate) struct PlotArgs {
    /// JSON results: files written by --json FILE, or the stdout of --format json (one
    /// object per line is fine)
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The SVG file to write
    #[arg(short, long, default_value = "sse-loadgen.svg", value_name = "FILE")]
    output: PathBuf,
    /// The field on the x axis
    #[arg(short, long, default_value = "conns", value_name = "FIELD")]
    x: String,
    /// The fields on the y axis, comma-separated [default: by scenario: stream
    /// events_per_s; idle gap_ms_p50,gap_ms_p99,gap_ms_max; fanout
    /// lat_us_p50,lat_us_p99]
    #[arg(short, long, value_delimiter = ',', value_name = "FIELDS")]
    y: Vec<String>,
    /// The field that tells series apart [default: `server` if the results have it
    /// (a --tag), else `url`]
    #[arg(short, long, value_name = "FIELD")]
    series: Option<String>,
    /// The chart's title
    #[arg(short, long)]
    title: Option<String>,
}

pub(crate) fn main(args: &PlotArgs) -> Result<(), String> {
    let results = load(&args.files)?;
    let first = results.first().ok_or("no JSON result in the files")?;
    let scenario = first.get("scenario").and_then(Value::as_str).unwrap_or("");
    let y = if args.y.is_empty() {
        default_y(scenario)
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        args.y.clone()
    };
    let series = args.series.clone().unwrap_or_else(|| {
        let tagged = results.iter().any(|r| r.contains_key("server"));
        (if tagged { "server" } else { "url" }).to_owned()
    });
    let lines = lines(&results, &args.x, &y, &series);
    if lines.iter().all(|l| l.points.is_empty()) {
        return Err(format!(
            "no result has both {} and any of {}",
            args.x,
            y.join(", ")
        ));
    }
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| format!("sse-loadgen {scenario}: {} by {}", y.join(", "), args.x));
    let chart = Chart {
        title,
        x_label: args.x.clone(),
        y_label: y.join(", "),
        lines,
    };
    std::fs::write(&args.output, chart.svg())
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    let points: usize = chart.lines.iter().map(|l| l.points.len()).sum();
    eprintln!(
        "sse-loadgen: wrote {} ({} lines, {points} points)",
        args.output.display(),
        chart.lines.len()
    );
    Ok(())
}

fn default_y(scenario: &str) -> &'static [&'static str] {
    match scenario {
        "idle" => &["gap_ms_p50", "gap_ms_p99", "gap_ms_max"],
        "fanout" => &["lat_us_p50", "lat_us_p99"],
        _ => &["events_per_s"],
    }
}

/// Every JSON object of the files (a file holds one object, or one per line).
fn load(files: &[PathBuf]) -> Result<Vec<Map<String, Value>>, String> {
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let values: Vec<Value> = match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(_) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: not JSON: {e}", file.display()))?,
        };
        out.extend(values.into_iter().filter_map(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        }));
    }
    Ok(out)
}

/// One line per (series, y field): the median of the results at each x.
fn lines(results: &[Map<String, Value>], x: &str, ys: &[String], series: &str) -> Vec<Line> {
    let mut groups: BTreeMap<(String, usize), BTreeMap<OrdF64, Vec<f64>>> = BTreeMap::new();
    for r in results {
        let Some(xv) = r.get(x).and_then(number) else {
            continue;
        };
        let name = r.get(series).map_or_else(String::new, |v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        for (i, y) in ys.iter().enumerate() {
            if let Some(yv) = r.get(y).and_then(number) {
                let at = groups.entry((name.clone(), i)).or_default();
                at.entry(OrdF64(xv)).or_default().push(yv);
            }
        }
    }
    groups
        .into_iter()
        .map(|((name, i), at)| {
            let label = match (name.is_empty(), ys.len()) {
                (true, _) => ys[i].clone(),
                (false, 1) => name,
                (false, _) => format!("{name} {}", ys[i]),
            };
            let points = at.into_iter().map(|(x, ys)| (x.0, median(ys))).collect();
            Line { label, points }
        })
        .collect()
}

/// A number, or a string holding one (a --tag).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// An `f64` map key (finite values only).
#[derive(Clone, Copy)]
struct OrdF64(f64);

impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for OrdF64 {}

impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn medians_per_series_and_x() {
        let r = |server: &str, conns: u64, eps: f64| match json!({"server": server, "conns": conns, "events_per_s": eps})
        {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let results = [
            r("a", 1, 10.0),
            r("a", 1, 30.0),
            r("a", 1, 20.0),
            r("a", 8, 80.0),
            r("b", 1, 5.0),
        ];
        let lines = lines(&results, "conns", &["events_per_s".into()], "server");
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].label.as_str(), lines[0].points.clone()),
            ("a", vec![(1.0, 20.0), (8.0, 80.0)])
        );
        assert_eq!(
            (lines[1].label.as_str(), lines[1].points.clone()),
            ("b", vec![(1.0, 5.0)])
        );
    }
}
