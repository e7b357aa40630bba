//! A line chart as hand-written SVG: axes with round ticks (the x axis logarithmic
//! when its values span more than a factor of 50), one coloured line per series with
//! its points, a legend.

use std::fmt::Write as _;

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

pub(crate) struct Line {
    pub(crate) label: String,
    /// `(x, y)`, sorted by x.
    pub(crate) points: Vec<(f64, f64)>,
}

pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) lines: Vec<Line>,
}

/// One axis: the data range, and whether it is logarithmic.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64> + Clone, from_zero: bool) -> Self {
        let lo = values.clone().fold(f64::INFINITY, f64::min);
        let hi = values.fold(f64::NEG_INFINITY, f64::max);
        let log = !from_zero && lo > 0.0 && hi / lo > 50.0;
        let (lo, hi) = match (log, from_zero) {
            (true, _) => (
                10f64.powf(lo.log10().floor()),
                10f64.powf(hi.log10().ceil()),
            ),
            (false, true) => (lo.min(0.0), nice_ceil(hi.max(lo + 1e-9))),
            (false, false) if hi > lo => (lo, hi),
            (false, false) => (lo - 1.0, hi + 1.0),
        };
        Self { lo, hi, log }
    }

    /// 0..=1 along the axis.
    fn at(&self, v: f64) -> f64 {
        if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            return (a..=b).map(|e| 10f64.powi(e)).collect();
        }
        let step = nice_step((self.hi - self.lo) / 5.0);
        let first = (self.lo / step).ceil() as i64;
        let last = (self.hi / step).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-12).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn nice_ceil(v: f64) -> f64 {
    let step = nice_step(v / 5.0);
    (v / step).ceil() * step
}

impl Chart {
    pub(crate) fn svg(&self) -> String {
        let points = || self.lines.iter().flat_map(|l| l.points.iter());
        let x = Axis::new(points().map(|p| p.0), false);
        let y = Axis::new(points().map(|p| p.1), true);
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let px = |v: f64| LEFT + x.at(v) * pw;
        let py = |v: f64| TOP + (1.0 - y.at(v)) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            esc(&self.title)
        );
        for t in x.ticks() {
            let at = px(t);
            let _ = writeln!(
                s,
                r##"<line x1="{at:.1}" y1="{TOP}" x2="{at:.1}" y2="{:.1}" stroke="#e5e5e5"/>"##,
                TOP + ph
            );
            let _ = writeln!(
                s,
                r#"<text x="{at:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                TOP + ph + 16.0,
                num(t)
            );
        }
        for t in y.ticks() {
            let at = py(t);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#e5e5e5"/>"##,
                LEFT + pw
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                at + 4.0,
                num(t)
            );
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let log = if x.log { " (log scale)" } else { "" };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}{log}</text>"#,
            LEFT + pw / 2.0,
            H - 18.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        self.draw_lines(&mut s, &px, &py);
        s.push_str("</svg>\n");
        s
    }

    fn draw_lines(&self, s: &mut String, px: &dyn Fn(f64) -> f64, py: &dyn Fn(f64) -> f64) {
        for (i, line) in self.lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let path: Vec<String> = line
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for &(x, y) in &line.points {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{}: {} at {}</title></circle>"#,
                    px(x),
                    py(y),
                    esc(&line.label),
                    num(y),
                    num(x)
                );
            }
            let ly = TOP + 10.0 + i as f64 * 20.0;
            let lx = W - RIGHT + 16.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                lx + 20.0,
                lx + 26.0,
                ly + 4.0,
                esc(&line.label)
            );
        }
    }
}

/// A tick label: `12k`, `1.5M`, `0.25`.
fn num(v: f64) -> String {
    let a = v.abs();
    let (v, suffix) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e4 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        let y = Axis::new([3.0, 97.0].into_iter(), true);
        assert_eq!((y.lo, y.hi), (0.0, 100.0));
        assert_eq!(y.ticks(), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        let x = Axis::new([1.0, 10_000.0].into_iter(), false);
        assert!(x.log);
        assert_eq!(x.ticks().len(), 5);
        assert_eq!(
            (num(12_000.0), num(1_500_000.0), num(0.25), num(100.0)),
            ("12k".into(), "1.5M".into(), "0.25".into(), "100".into())
        );
        let chart = Chart {
            title: "a <b>".into(),
            x_label: "conns".into(),
            y_label: "events_per_s".into(),
            lines: vec![Line {
                label: "x&y".into(),
                points: vec![(1.0, 2.0)],
            }],
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("x&amp;y") && svg.contains("<circle"));
    }
}
