#!/usr/bin/env python3
"""Tables and JSON lines for benches/scale.sh. No dependencies.

    python3 benches/scale.py summarize META.json SUB.json...
        One scenario: the load generators' results (one per process) and what the
        script sampled (META: CPU, Redis connections, the publisher, failed ticks).
        Writes META with .summary.json for .meta.json and prints a Markdown table:
        one row per instance, then the totals.

    python3 benches/scale.py collect META.json...
        The summaries of these scenarios, one JSON object per line.

    python3 benches/scale.py plot-input results.jsonl
        The fields `sse-loadgen plot` draws: subs, lat_us_p50, lat_us_p99, case (the
        shared-topic scenarios a and c).

Latency quantiles cannot be merged from per-process quantiles: the totals show the
median of the processes' p50 and the largest of their p99 and max (an upper bound of
the p99 over all subscribers).
"""

import json
import statistics
import sys
from pathlib import Path

CASES = {
    "a": "one shared topic, ticked by instance 0",
    "b": "a topic per user, publishes spread over every instance",
    "c": "one shared topic, Redis killed and restarted in the middle",
}


def load(path):
    text = Path(path).read_text().strip()
    return json.loads(text) if text else {}


def num(r, key, default=0):
    v = r.get(key)
    return default if v is None else v


def expected_b(meta, subs):
    """Deliveries the publisher's 2xx answers call for: publish n went to topic
    n % (instances × topics); instance j's process holds `conns` subscribers on topics
    j×T + (c % T)."""
    pub = meta.get("publisher") or {}
    t = meta["topics_per_instance"]
    m = meta["instances"] * t
    total = pub.get("published", 0) if pub.get("publish_failed", 0) == 0 else None
    if total is None:
        return None
    expected = 0
    for r in subs:
        j, n = int(r.get("instance", 0)), r.get("conns", 0)
        for local in range(min(n, t)):
            k = j * t + local
            pubs = total // m + (1 if k < total % m else 0)
            per_topic = n // t + (1 if local < n % t else 0)
            expected += pubs * per_topic
    return expected


def summarize(meta_path, sub_paths):
    meta = load(meta_path)
    subs = [load(p) for p in sub_paths]
    subs = [r for r in subs if r]
    case = meta["scenario_case"]
    s = {
        "tool": "benches/scale.sh",
        "case": case,
        "run_id": meta["run_id"],
        "commit": meta["commit"],
        "instances": meta["instances"],
        "subs_per_instance": meta["subs_per_instance"],
        "subs": sum(num(r, "connected") for r in subs),
        "subs_wanted": meta["instances"] * meta["subs_per_instance"],
        "load_generators": len(subs),
    }
    for key in ("deliveries", "missed", "seq_gaps", "out_of_order", "closed_in_window",
                "lagged_reported", "connect_failed", "http_failed", "bad_events"):
        s[key] = sum(num(r, key) for r in subs)
    s["deliveries_per_s"] = round(sum(num(r, "deliveries_per_s") for r in subs), 1)
    p50s = [r["lat_us_p50"] for r in subs if r.get("lat_us_p50") is not None]
    s["lat_us_p50"] = round(statistics.median(p50s), 1) if p50s else None
    for key in ("lat_us_p99", "lat_us_max", "event_gap_ms_p99", "event_gap_ms_max"):
        vals = [r[key] for r in subs if r.get(key) is not None]
        s[key] = max(vals) if vals else None
    s["sample_s"] = meta["sample_s"]
    s["demo_cpu_s"] = round(meta["demo_cpu_s"], 3)
    s["redis_cpu_s"] = meta["redis_cpu_s"]
    s["demo_cpu_pct"] = round(100 * meta["demo_cpu_s"] / max(meta["sample_s"], 1e-9), 1)
    s["redis_idle_cpu_pct"] = meta.get("redis_idle_cpu_pct")
    s["redis_cpu_pct"] = round(100 * meta["redis_cpu_s"] / max(meta["sample_s"], 1e-9), 1)
    in_sample = s["deliveries_per_s"] * meta["sample_s"]
    if in_sample > 0:
        s["demo_cpu_us_per_delivery"] = round(meta["demo_cpu_s"] * 1e6 / in_sample, 2)
    redis = meta.get("redis") or {}
    s["redis_conns_by_instance"] = redis.get("redis_conns_by_instance")
    s["redis_clients_total"] = redis.get("redis_clients_total")
    s["redis_client_names"] = redis.get("redis_client_names")
    s["loadavg"] = meta.get("loadavg")
    s["loadgens_ended_early"] = meta.get("loadgens_ended_early", 0)
    if case in ("a", "c"):
        pubs = [r["published_per_s"] for r in subs if r.get("published_per_s") is not None]
        s["published_per_s"] = max(pubs) if pubs else None
        ratios = [r["delivered_per_published"] for r in subs if r.get("delivered_per_published") is not None]
        s["delivered_per_published_min"] = min(ratios) if ratios else None
        ticks = meta["sample_s"] * 1000 / meta["tick_ms"]
        s["redis_cpu_us_per_publish"] = round(meta["redis_cpu_s"] * 1e6 / max(ticks, 1), 1)
    if case == "b":
        pub = meta.get("publisher") or {}
        s["topics_per_instance"] = meta["topics_per_instance"]
        for key in ("published", "publish_failed", "published_per_s", "post_us_p99", "late_ms_max"):
            s[key] = pub.get(key)
        s["fail_samples"] = pub.get("fail_samples")
        exp = expected_b(meta, subs)
        s["deliveries_expected"] = exp
        if exp is not None:
            s["deliveries_missing"] = exp - s["deliveries"]
        if pub.get("published"):
            n = pub["published"]
            s["redis_cpu_us_per_publish"] = round(meta["redis_cpu_s"] * 1e6 / n, 1)
            # Less Redis's baseline (measured over 1 s before the publisher started).
            base = meta.get("redis_idle_cpu_pct", 0) / 100 * meta["sample_s"]
            s["redis_cpu_us_per_publish_net"] = round((meta["redis_cpu_s"] - base) * 1e6 / n, 1)
            s["demo_cpu_us_per_publish"] = round(meta["demo_cpu_s"] * 1e6 / n, 1)
    if case == "c":
        s["outage_s"] = round(meta["restart_at"] - meta["kill_at"], 3) if meta.get("kill_at") else None
        s["failed_ticks"] = meta["failed_ticks"]
        # Every subscriber misses the ticks that never reached Redis; anything past
        # that was lost on the way.
        s["missed_beyond_failed_ticks"] = s["missed"] - meta["failed_ticks"] * s["subs"]
    Path(str(meta_path).replace(".meta.json", ".summary.json")).write_text(json.dumps(s) + "\n")
    print(markdown(s, subs, meta))


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(s, subs, meta):
    case = s["case"]
    out = [f"### Scenario {case}: {CASES[case]}", ""]
    setting = (f"{s['instances']} instances × {s['subs_per_instance']:,} subscribers "
               f"({s['load_generators']} load-generator processes), measured {s['sample_s']:.1f} s; "
               f"run {s['run_id']}, commit {s['commit']}, load average {s['loadavg']}.")
    if case == "b":
        setting += (f" {s['topics_per_instance']:,} topics per instance, {meta['pub_rate']:,} publishes/s "
                    f"requested over all {s['instances'] * s['topics_per_instance']:,}.")
    if case in ("a", "c"):
        setting += f" Instance 0 publishes every {meta['tick_ms']} ms."
    out += [setting, ""]
    conns = s["redis_conns_by_instance"] or []
    out.append("| instance | subscribers | deliveries/s | missed | latency p50 µs | p99 µs | max µs | longest gap ms | closed | Redis conns |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in sorted(subs, key=lambda r: (int(r.get("instance", 0)), int(r.get("proc", 0)))):
        j = int(r.get("instance", 0))
        name = f"{j}" + (f".{r.get('proc')}" if s["load_generators"] > s["instances"] else "")
        out.append(f"| {name} | {fmt(r.get('connected'))} | {fmt(r.get('deliveries_per_s'), 1)} | "
                   f"{fmt(r.get('missed'))} | {fmt(r.get('lat_us_p50'))} | {fmt(r.get('lat_us_p99'))} | "
                   f"{fmt(r.get('lat_us_max'))} | {fmt(r.get('event_gap_ms_max'), 1)} | "
                   f"{fmt(r.get('closed_in_window'))} | {fmt(conns[j] if j < len(conns) else None)} |")
    out.append(f"| **all** | {fmt(s['subs'])} of {fmt(s['subs_wanted'])} | {fmt(s['deliveries_per_s'], 1)} | "
               f"{fmt(s['missed'])} | {fmt(s['lat_us_p50'])} | ≤ {fmt(s['lat_us_p99'])} | {fmt(s['lat_us_max'])} | "
               f"{fmt(s['event_gap_ms_max'], 1)} | {fmt(s['closed_in_window'])} | {fmt(s['redis_clients_total'])} clients |")
    out.append("")
    rows = [
        ("demo CPU (all instances)", f"{fmt(s['demo_cpu_s'], 2)} s, {s['demo_cpu_pct']}% of one core; "
                                     f"{fmt(s.get('demo_cpu_us_per_delivery'), 2)} µs per delivery"),
        ("Redis CPU", f"{fmt(s['redis_cpu_s'], 3)} s, {s['redis_cpu_pct']}% of one core; "
                      f"{fmt(s.get('redis_cpu_us_per_publish'), 1)} µs per publish"),
    ]
    if case in ("a", "c"):
        rows.append(("published/s (seen)", fmt(s.get("published_per_s"), 1)))
        rows.append(("delivered/published (lowest process)", fmt(s.get("delivered_per_published_min"), 4)))
    if case == "b":
        rows += [
            ("published (204) / failed", f"{fmt(s['published'])} / {fmt(s['publish_failed'])} "
                                         f"({fmt(s['published_per_s'], 1)}/s; POST p99 {fmt(s['post_us_p99'])} µs)"),
            ("per publish", f"Redis {fmt(s.get('redis_cpu_us_per_publish_net'), 1)} µs above its baseline "
                            f"({fmt(s['redis_idle_cpu_pct'], 1)}% of a core before publishing); the demos "
                            f"{fmt(s.get('demo_cpu_us_per_publish'), 1)} µs (the POST, XADD, XREAD, delivery)"),
            ("deliveries / expected", f"{fmt(s['deliveries'])} / {fmt(s['deliveries_expected'])} "
                                      f"(missing {fmt(s.get('deliveries_missing'))})"),
        ]
    if case == "c":
        rows += [
            ("Redis down", f"{fmt(s['outage_s'], 2)} s (SIGKILL, restarted on the same port, empty)"),
            ("ticks that failed to publish", fmt(s["failed_ticks"])),
            ("missed beyond those", f"{fmt(s['missed_beyond_failed_ticks'])} (missed {fmt(s['missed'])} = "
                                    f"{fmt(s['failed_ticks'])} × {fmt(s['subs'])} subscribers + this)"),
            ("delivery stopped for", f"{fmt(s['event_gap_ms_max'], 0)} ms at most (longest gap between two events of a connection)"),
        ]
    if s["loadgens_ended_early"]:
        rows.append(("warning", f"{s['loadgens_ended_early']} load generators ended before the measurement: "
                                "Redis connections and CPU per delivery are off"))
    if s["redis_client_names"]:
        rows.append(("Redis client names", json.dumps(s["redis_client_names"])))
    out.append("| | |\n|---|---|")
    out += [f"| {k} | {v} |" for k, v in rows]
    out.append("")
    return "\n".join(out)


def main(argv):
    if len(argv) >= 2 and argv[0] == "summarize":
        summarize(argv[1], argv[2:])
    elif argv and argv[0] == "collect":
        for meta in argv[1:]:
            p = Path(meta.replace(".meta.json", ".summary.json"))
            if p.exists():
                print(p.read_text().strip())
    elif len(argv) == 2 and argv[0] == "plot-input":
        for line in Path(argv[1]).read_text().splitlines():
            r = json.loads(line)
            # One shared topic (a, c): latency against the number of subscribers.
            if r.get("case") in ("a", "c") and r.get("lat_us_p99") is not None:
                print(json.dumps({"subs": r["subs"], "lat_us_p50": r["lat_us_p50"],
                                  "lat_us_p99": r["lat_us_p99"], "case": f"scenario {r['case']}",
                                  "scenario": "fanout"}))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
