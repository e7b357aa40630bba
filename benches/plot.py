#!/usr/bin/env python3
"""Tables and plots from the load-generator results (benches/run.sh). No dependencies.

    python3 benches/plot.py table [target/bench/results.jsonl]
        Markdown tables, one per case: the median of each figure over the rounds, and
        its ratio to axum measured in the same round (min / median over the rounds).

    python3 benches/plot.py svg [target/bench/results.jsonl] [benches/plots]
        idle_cpu_per_heartbeat.svg and idle_rss_per_conn.svg: the server's CPU per
        heartbeat and RSS per connection against the number of idle connections, one
        line per server (median over rounds, a bar from min to max).

Lines with an "error" field (a measurement that failed) are listed, not used.
"""

import json
import os
import re
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

SERVER_ORDER = ["tower-sse", "axum", "floor"]
# The server every ratio is taken against (REF=axum-owned: the axum reference's
# `Event::data(String)` path, see benches/run.sh).
REF = os.environ.get("REF", "axum")
COLORS = {"tower-sse": "#d62728", "axum": "#1f77b4", "floor": "#7f7f7f"}
CASE_ORDER = [
    "stream-1", "stream-16",
    "idle-1000", "idle-5000", "idle-10000", "idle-19000", "idle-10000-100ms",
    "fanout-1000-100ms", "fanout-10000-100ms", "fanout-1000-1ms", "fanout-10000-1ms",
]

# (field, heading, format, better): better is "high", "low" or None (no ratio shown)
METRICS = {
    "stream": [
        ("events_per_s", "events/s", "si", "high"),
        ("mb_per_s", "MB/s", "f1", "high"),
        ("server_cpu_ns_per_unit", "server CPU ns/event", "f1", "low"),
        ("server_syscw_per_unit", "writes/event", "f4", "low"),
        ("server_cpu_pct", "server CPU %", "f0", None),
        ("server_rss_kb_per_conn", "RSS KiB/conn", "f0", "low"),
        ("loadgen_cpu_pct", "loadgen CPU %", "f0", None),
    ],
    "idle": [
        ("hb_ratio", "heartbeats/expected", "f3", None),
        ("gap_ms_p50", "gap p50 ms", "f1", None),
        ("gap_ms_p99", "gap p99 ms", "f1", "low"),
        ("gap_ms_max", "gap max ms", "f1", "low"),
        ("late_silent", "late+silent", "int", None),
        ("server_cpu_ns_per_unit", "server CPU µs/heartbeat", "us", "low"),
        ("server_syscw_per_unit", "writes/heartbeat", "f3", "low"),
        ("server_rss_kb_per_conn", "RSS KiB/conn", "f2", "low"),
        ("loadgen_cpu_pct", "loadgen CPU %", "f0", None),
    ],
    "fanout": [
        ("published_per_s", "published/s", "f0", None),
        ("delivered_per_published", "delivered/published", "f3", None),
        ("missed", "missed", "int", None),
        ("lat_us_p50", "latency p50 µs", "f0", "low"),
        ("lat_us_p90", "p90 µs", "f0", "low"),
        ("lat_us_p99", "p99 µs", "f0", "low"),
        ("lat_us_max", "max µs", "f0", "low"),
        ("server_cpu_ns_per_unit", "server CPU µs/delivery", "us", "low"),
        ("server_syscw_per_unit", "writes/delivery", "f3", "low"),
        ("server_cpu_pct", "server CPU %", "f0", None),
        ("server_rss_kb_per_conn", "RSS KiB/conn", "f2", "low"),
        ("loadgen_cpu_pct", "loadgen CPU %", "f0", None),
    ],
}


def load(path):
    good, bad = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            bad.append({"line": n, "error": f"not JSON: {e}"})
            continue
        if "error" in r:
            bad.append(r)
            continue
        r["late_silent"] = r.get("late_conns", 0) + r.get("silent_conns", 0) if r.get("scenario") == "idle" else None
        good.append(r)
    return good, bad


def case_key(case):
    return (CASE_ORDER.index(case) if case in CASE_ORDER else len(CASE_ORDER), case)


def server_key(server):
    return (SERVER_ORDER.index(server) if server in SERVER_ORDER else len(SERVER_ORDER), server)


def fmt(v, how):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if how == "si":
        for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
            if abs(v) >= div:
                return f"{v / div:.2f}{suffix}"
        return f"{v:.0f}"
    if how == "us":
        return f"{v / 1e3:.2f}"
    if how == "int":
        return f"{v:.0f}"
    return f"{v:.{int(how[1:])}f}"


def ratio_text(ratios):
    if not ratios:
        return ""
    lo, med = min(ratios), statistics.median(ratios)
    if len(ratios) == 1:
        return f" (×{med:.2f})"
    return f" (×{lo:.2f} / ×{med:.2f})"


def table(path):
    rows, bad = load(path)
    by_case = defaultdict(list)
    for r in rows:
        by_case[r["case"]].append(r)
    meta_path = Path(path).with_name("meta.json")
    out = []
    if meta_path.exists():
        m = json.loads(meta_path.read_text())
        out.append(
            f"Run {m.get('started')} at {m.get('commit')}: {m.get('runs')} round(s), window {m.get('secs')} s "
            f"after {m.get('warmup')} s warm-up, ramp-up {m.get('rate')} connections/s; "
            f"{m.get('nproc')} CPUs, server on CPU {m.get('server_cpu')} with TOKIO_WORKER_THREADS=1, "
            f"load generator on CPU {m.get('loadgen_cpu')}; open files soft {m.get('nofile_soft')} / hard "
            f"{m.get('nofile_hard')}; load average at the start {m.get('loadavg_start')}."
        )
        out.append("")
    out.append(
        f"Each cell: the median over the rounds, then (×min / ×median) of its ratio to {REF} measured in "
        f"the same round (×r with a single round). A ratio below 1 is less than {REF}: better for CPU, "
        "writes, memory, gaps and latency; worse for events/s."
    )
    for case in sorted(by_case, key=case_key):
        rs = by_case[case]
        scenario = rs[0]["scenario"]
        metrics = METRICS[scenario]
        conns = rs[0]["conns"]
        runs = sorted({r["run"] for r in rs})
        out.append("")
        out.append(f"### {case} ({conns} connections, {len(runs)} round(s))")
        out.append("")
        out.append("| server | connected | " + " | ".join(m[1] for m in metrics) + " |")
        out.append("|---|---:|" + "---:|" * len(metrics))
        axum = {r["run"]: r for r in rs if r["server"] == REF}
        for server in sorted({r["server"] for r in rs}, key=server_key):
            mine = [r for r in rs if r["server"] == server]
            connected = statistics.median(r.get("connected", 0) for r in mine)
            cells = [server, f"{connected:.0f}/{conns}"]
            for field, _, how, better in metrics:
                values = [r.get(field) for r in mine if r.get(field) is not None]
                if not values:
                    cells.append("–")
                    continue
                cell = fmt(statistics.median(values), how)
                if server != REF and better is not None:
                    ratios = []
                    for r in mine:
                        a = axum.get(r["run"], {}).get(field)
                        v = r.get(field)
                        if v is not None and a:
                            ratios.append(v / a)
                    cell += ratio_text(ratios)
                cells.append(cell)
            out.append("| " + " | ".join(cells) + " |")
        notes, waits = [], defaultdict(list)
        for r in sorted(rs, key=lambda r: (r["run"], server_key(r["server"]))):
            who_round = f"{r['server']} round {r['run']}"
            fails = r.get("connect_failed", 0) + r.get("http_failed", 0) + r.get("pending_after_ramp", 0)
            if fails or r.get("closed_in_window"):
                notes.append(
                    f"{who_round}: {fails} connections failed or were late, {r.get('closed_in_window', 0)} "
                    f"closed in the window {r.get('fail_samples', '')}"
                )
            if r.get("loadgen_cpu_pct", 0) > 90:
                notes.append(f"{who_round}: the load generator used {r['loadgen_cpu_pct']}% of its core")
            if r.get("bad_events") or r.get("out_of_order"):
                notes.append(f"{who_round}: {r.get('bad_events')} malformed events, {r.get('out_of_order')} out of order")
            for who in ("server", "loadgen"):
                if (r.get(f"{who}_wait_pct") or 0) > 25:
                    waits[who].append(f"{who_round} {r[f'{who}_wait_pct']:.0f}%")
        if waits:
            notes.append(
                "waiting for a CPU more than 25% of the window (other processes on the pinned core): "
                + "; ".join(f"{who}: {', '.join(v)}" for who, v in waits.items())
            )
        if notes:
            out.append("")
            out.extend(f"- {n}" for n in notes)
    if bad:
        out.append("")
        out.append("Failed measurements:")
        for b in bad:
            out.append(f"- {b}")
    print("\n".join(out))


# --------------------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------------------

def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=10 * mag)
    ticks = [math.floor(lo / step) * step]
    while ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_plot(series, title, subtitle, xlabel, ylabel, path):
    """series: {server: [(x, median, lo, hi), ...]}"""
    w, h = 760, 440
    left, right, top, bottom = 80, 130, 60, 60
    pw, ph = w - left - right, h - top - bottom
    xs = [p[0] for pts in series.values() for p in pts]
    ys = [v for pts in series.values() for p in pts for v in p[1:] if v is not None]
    if not xs or not ys:
        return False
    xt = nice_ticks(0, max(xs))
    yt = nice_ticks(0, max(ys) * 1.05)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def X(x):
        return left + (x - x0) / (x1 - x0) * pw

    def Y(y):
        return top + ph - (y - y0) / (y1 - y0) * ph

    o = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{left}" y="24" font-size="15" font-weight="bold">{esc(title)}</text>',
        f'<text x="{left}" y="42" fill="#555" font-size="11">{esc(subtitle)}</text>',
    ]
    for t in yt:
        o.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="#e5e5e5"/>')
        o.append(f'<text x="{left - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in xt:
        o.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top + ph}" y2="{top + ph + 5}" stroke="#333"/>')
        o.append(f'<text x="{X(t):.1f}" y="{top + ph + 18}" text-anchor="middle">{t:g}</text>')
    o.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{left + pw / 2}" y="{h - 14}" text-anchor="middle">{esc(xlabel)}</text>')
    o.append(
        f'<text transform="translate(20 {top + ph / 2}) rotate(-90)" text-anchor="middle">{esc(ylabel)}</text>'
    )
    for i, server in enumerate(sorted(series, key=server_key)):
        color = COLORS.get(server, "#2ca02c")
        pts = sorted(series[server])
        path_d = " ".join(f"{'M' if j == 0 else 'L'}{X(x):.1f},{Y(m):.1f}" for j, (x, m, _, _) in enumerate(pts))
        o.append(f'<path d="{path_d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, m, lo, hi in pts:
            if hi > lo:
                o.append(
                    f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{Y(lo):.1f}" y2="{Y(hi):.1f}" '
                    f'stroke="{color}" stroke-width="1.5"/>'
                )
            o.append(f'<circle cx="{X(x):.1f}" cy="{Y(m):.1f}" r="3.5" fill="{color}"/>')
        ly = top + 14 + i * 20
        o.append(f'<line x1="{left + pw + 14}" x2="{left + pw + 38}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/>')
        o.append(f'<text x="{left + pw + 44}" y="{ly + 4}">{esc(server)}</text>')
    o.append("</svg>")
    Path(path).write_text("\n".join(o) + "\n")
    return True


def svg(path, outdir):
    rows, _ = load(path)
    # The plots are against the number of connections at the run's heartbeat
    # interval (cases idle-N; idle-10000-100ms has its own).
    idle = [r for r in rows if r.get("scenario") == "idle" and re.fullmatch(r"idle-\d+", r.get("case", ""))]
    if not idle:
        print("no idle results to plot", file=sys.stderr)
        return
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    meta_path = Path(path).with_name("meta.json")
    sub = ""
    if meta_path.exists():
        m = json.loads(meta_path.read_text())
        kind = "QUICK smoke run" if str(m.get("quick")) == "1" else "run"
        sub = (
            f"{kind} {m.get('started', '')[:10]} ({m.get('commit')}): {m.get('runs')} round(s) of "
            f"{m.get('secs')} s, heartbeat {m.get('hb_ms')} ms; median, bar: min to max"
        )
    for field, scale, name, title, ylabel in (
        ("server_cpu_ns_per_unit", 1e-3, "idle_cpu_per_heartbeat.svg",
         "Server CPU per heartbeat (/idle)", "CPU µs per heartbeat"),
        ("server_rss_kb_per_conn", 1.0, "idle_rss_per_conn.svg",
         "Server RSS per idle connection (/idle)", "KiB per connection"),
    ):
        groups = defaultdict(list)
        for r in idle:
            if r.get(field) is not None:
                groups[(r["server"], r["conns"])].append(r[field] * scale)
        series = defaultdict(list)
        for (server, conns), vs in groups.items():
            series[server].append((conns, statistics.median(vs), min(vs), max(vs)))
        if svg_plot(series, title, sub, "idle connections", ylabel, outdir / name):
            print(f"wrote {outdir / name}", file=sys.stderr)


def main(argv):
    if len(argv) < 2 or argv[1] not in ("table", "svg"):
        print(__doc__, file=sys.stderr)
        return 2
    path = argv[2] if len(argv) > 2 else "target/bench/results.jsonl"
    if argv[1] == "table":
        table(path)
    else:
        svg(path, argv[3] if len(argv) > 3 else "benches/plots")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
