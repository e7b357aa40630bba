#!/usr/bin/env bash
# Load-generator benchmarks: tower-sse's demo server against axum 0.8's Sse (and a
# hand-written "floor" body on the same axum server), measured from outside by
# the load generator (loadgen/, binary sse-loadgen) over real loopback TCP connections.
#
#   benches/run.sh                 # the full run (RUNS rounds of every scenario)
#   QUICK=1 benches/run.sh         # every scenario once, briefly: a smoke test
#   CASES='idle-1000 stream-16' RUNS=5 benches/run.sh
#
# Servers (each restarted for every measurement, on a free port):
#   tower-sse  target/release/examples/demo        the crate's demo (CONTRACT.md)
#   axum       target/release/examples/axum_ref    axum::response::sse + KeepAlive + broadcast
#   floor      FLOOR=1 axum_ref                    hand-written http_body::Body on the same server
#
# Every server runs pinned to one core (`taskset -c $SERVER_CPU`, default 0) with
# TOKIO_WORKER_THREADS=1, so both tokio multi-thread runtimes get one worker (plus
# the main thread that accepts, on the same core); the load generator runs pinned to
# another core (`taskset -c $LOADGEN_CPU`, default 1). The open-file limit is raised
# to $NOFILE (default 20000: the hard limit of the machine these numbers come from;
# 19 000 connections need ~19 000 descriptors in the server and in the load generator).
#
# Rounds are interleaved: in every round each case runs once on every server, the
# server order rotating, so that all servers share the machine's noise. Results:
# target/bench/results.jsonl (one JSON object per measurement, the previous file is
# kept as results.prev.jsonl), the servers' and load generator's output in
# target/bench/logs/, then the tables (ratios to axum from the same round, min and
# median over rounds) and SVG plots (benches/plots/) from benches/plot.py.
#
# Environment:
#   QUICK=1          RUNS=1 SECS=2 WARMUP=0.3 RATE=10000 unless set (about 2 minutes)
#   RUNS=3           rounds (the default run takes about 15 minutes on 2 CPUs)
#   SECS=6           measured window per measurement (seconds; a whole number of
#                    heartbeat intervals, or heartbeats/expected is off by the rounding)
#   WARMUP=1         seconds between the last connection and the window
#   RATE=5000        new connections per second during the ramp-up
#   HB_MS=1000       /idle heartbeat interval (idle-10000-100ms: always 100 ms)
#   CASES=...        a subset of the case names below (space-separated)
#   SERVERS=...      a subset of: tower-sse axum floor tower-sse-timer (the demo with
#                    HEARTBEAT=timer: Heartbeat::per_stream_timer) tower-sse-nocoalesce
#                    (the demo with FANOUT_COALESCE_MS=0) tower-sse-owned (the demo with
#                    STREAM_EVENTS=owned: /stream events as Event + String) axum-owned
#                    (the axum reference with STREAM_EVENTS=owned: Event::data(String))
#                    tower-sse-12k (the demo with frames capped at 12 KiB: MAX_FRAME_BYTES=12288,
#                    instead of 64 KiB; both sized to the socket by the server)
#   SERVER_CPU=0 LOADGEN_CPU=1 NOFILE=20000
#   NO_BUILD=1       use the binaries already built (target/release/examples/{demo,axum_ref},
#                    target/release/sse-loadgen; $CARGO_TARGET_DIR instead of target/ if set)
#   NO_PLOT=1        skip benches/plot.py
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
  RUNS=${RUNS:-1}
  SECS=${SECS:-2}
  WARMUP=${WARMUP:-0.3}
  RATE=${RATE:-10000}
else
  RUNS=${RUNS:-3}
  SECS=${SECS:-6}
  WARMUP=${WARMUP:-1}
fi
RATE=${RATE:-5000}
HB_MS=${HB_MS:-1000}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
NOFILE=${NOFILE:-20000}
SERVERS=${SERVERS:-tower-sse axum floor}

# name | scenario | connections | FANOUT_MS (fanout only) | heartbeat ms (idle only; default HB_MS)
ALL_CASES=(
  "stream-1|stream|1|"
  "stream-16|stream|16|"
  "idle-1000|idle|1000|"
  "idle-5000|idle|5000|"
  "idle-10000|idle|10000|"
  "idle-19000|idle|19000|"
  "idle-10000-100ms|idle|10000||100"
  "fanout-1000-100ms|fanout|1000|100"
  "fanout-10000-100ms|fanout|10000|100"
  "fanout-1000-1ms|fanout|1000|1"
  "fanout-10000-1ms|fanout|10000|1"
)
cases=()
for c in "${ALL_CASES[@]}"; do
  if [[ -z ${CASES:-} || " $CASES " == *" ${c%%|*} "* ]]; then
    cases+=("$c")
  fi
done
if [[ ${#cases[@]} == 0 ]]; then
  echo "CASES=$CASES matches none of: ${ALL_CASES[*]%%|*}" >&2
  exit 2
fi
read -r -a servers <<<"$SERVERS"

# --- the machine ---------------------------------------------------------------
hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $NOFILE ]]; then
  echo "note: the hard open-file limit is $hard; using it instead of $NOFILE" >&2
  NOFILE=$hard
fi
ulimit -n "$NOFILE"
nofile=$(ulimit -n)
cpus=$(nproc)
pin=1
if ! command -v taskset >/dev/null || [[ $cpus -lt 2 ]]; then
  echo "warning: no taskset or fewer than 2 CPUs: server and load generator are not pinned" >&2
  pin=0
fi
pinned() { # pinned CPU command...
  local cpu=$1
  shift
  if [[ $pin == 1 ]]; then taskset -c "$cpu" "$@"; else "$@"; fi
}

out=$root/target/bench
mkdir -p "$out/logs"
results=$out/results.jsonl
if [[ -s $results ]]; then mv "$results" "$out/results.prev.jsonl"; fi
: >"$results"

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo "+dirty" || true)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# --- build ---------------------------------------------------------------------
# The servers are examples of the crate; the load generator is the workspace member
# loadgen/ (package tower-sse-loadgen), built on its own as `cargo install` would.
if [[ ${NO_BUILD:-0} != 1 ]]; then
  echo "== cargo build --release --example demo --example axum_ref" >&2
  cargo build --release --example demo --example axum_ref >&2
  echo "== cargo build --release -p tower-sse-loadgen" >&2
  cargo build --release -p tower-sse-loadgen >&2
fi
target=${CARGO_TARGET_DIR:-$root/target}
# A private copy: other cargo builds in this target directory may replace the
# binaries while the rounds run.
bin=$out/bin
mkdir -p "$bin"
for src in "$target/release/examples/demo" "$target/release/examples/axum_ref" "$target/release/sse-loadgen"; do
  b=${src##*/}
  [[ -x $src ]] || { echo "missing $src (build it, or unset NO_BUILD)" >&2; exit 1; }
  cp "$src" "$bin/$b.new" && mv -f "$bin/$b.new" "$bin/$b"
done

cat >"$out/meta.json" <<EOF
{"started":"$started","commit":"$commit$dirty","quick":$QUICK,"runs":$RUNS,"secs":$SECS,"warmup":$WARMUP,"rate":$RATE,"hb_ms":$HB_MS,"nproc":$cpus,"pinned":$pin,"server_cpu":"$SERVER_CPU","loadgen_cpu":"$LOADGEN_CPU","nofile_soft":"$nofile","nofile_hard":"$hard","tokio_worker_threads":1,"kernel":"$(uname -r)","rustc":"$(rustc --version)","loadavg_start":"$(cut -d' ' -f1-3 /proc/loadavg)"}
EOF
echo "== $started commit $commit$dirty; $cpus CPUs; open files: soft $nofile, hard $hard; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== RUNS=$RUNS SECS=$SECS WARMUP=$WARMUP RATE=$RATE HB_MS=$HB_MS; servers: ${servers[*]}; cases: ${cases[*]%%|*}" >&2
echo "== server on CPU $SERVER_CPU with TOKIO_WORKER_THREADS=1, load generator on CPU $LOADGEN_CPU" >&2
total_conns=0
for c in "${cases[@]}"; do
  IFS='|' read -r _ _ n _ <<<"$c"
  total_conns=$((total_conns + n))
done
eta=$(python3 -c "print(round($RUNS * ${#servers[@]} * (${#cases[@]} * ($SECS + $WARMUP + 1.2) + $total_conns / $RATE) / 60, 1))")
echo "== about $eta minutes of measurements" >&2

# --- one measurement -------------------------------------------------------------
server_pid=
stop_server() {
  [[ -n $server_pid ]] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 300); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.02
  done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
trap stop_server EXIT

# start_server NAME FANOUT_MS LOG: sets server_pid and server_port
start_server() {
  local name=$1 fanout_ms=${2:-100} log=$3 exe floor=0 heartbeat=default
  # The demo's own defaults apply unless a variant sets something.
  local extra=()
  case $name in
  tower-sse) exe=$bin/demo ;;
  tower-sse-timer) exe=$bin/demo heartbeat=timer ;;
  tower-sse-nocoalesce) exe=$bin/demo extra=(FANOUT_COALESCE_MS=0) ;;
  tower-sse-owned) exe=$bin/demo extra=(STREAM_EVENTS=owned) ;;
  tower-sse-12k) exe=$bin/demo extra=(MAX_FRAME_BYTES=12288) ;;
  axum) exe=$bin/axum_ref ;;
  axum-owned) exe=$bin/axum_ref extra=(STREAM_EVENTS=owned) ;;
  floor) exe=$bin/axum_ref floor=1 ;;
  *) echo "unknown server $name" >&2; return 1 ;;
  esac
  local pin_cmd=()
  # A stale log from an earlier run would show an old port before this one starts.
  rm -f "$log"
  [[ $pin == 1 ]] && pin_cmd=(taskset -c "$SERVER_CPU")
  # `env` and `taskset` exec the server, so $! is the server's pid (a shell function
  # here would put a subshell in between).
  env -u REDIS_URL -u FANOUT_COALESCE_MS TOKIO_WORKER_THREADS=1 PORT=0 HOST=127.0.0.1 FANOUT_MS="$fanout_ms" FLOOR=$floor HEARTBEAT=$heartbeat \
    ${extra[@]+"${extra[@]}"} \
    "${pin_cmd[@]}" "$exe" >"$log" 2>&1 &
  server_pid=$!
  server_port=
  for _ in $(seq 500); do
    server_port=$(grep -m1 -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | sed 's/.*://' || true)
    if [[ -n $server_port ]]; then
      # The pid must be the server itself, not a shell or taskset in between.
      if [[ $(readlink "/proc/$server_pid/exe") != "$exe" ]]; then
        echo "pid $server_pid is $(readlink "/proc/$server_pid/exe"), not $exe" >&2
        stop_server
        return 1
      fi
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.02
  done
  echo "server $name did not start; see $log" >&2
  stop_server
  return 1
}

measure() { # measure ROUND CASE SERVER
  local round=$1 case=$2 server=$3
  local name scenario conns fanout_ms hb_ms
  IFS='|' read -r name scenario conns fanout_ms hb_ms <<<"$case"
  local log=$out/logs/$name.$server.$round
  if ((conns + 64 > nofile)); then
    echo "{\"case\":\"$name\",\"server\":\"$server\",\"run\":$round,\"error\":\"open-file limit $nofile too low for $conns connections\"}" >>"$results"
    echo "   skip $name on $server: open-file limit $nofile" >&2
    return 0
  fi
  if ! start_server "$server" "${fanout_ms:-100}" "$log.server.log"; then
    echo "{\"case\":\"$name\",\"server\":\"$server\",\"run\":$round,\"error\":\"server did not start\"}" >>"$results"
    return 0
  fi
  local url=http://127.0.0.1:$server_port/$scenario
  [[ $scenario == idle ]] && url+="?hb_ms=${hb_ms:-$HB_MS}"
  local args=("$scenario" "$url" --connections "$conns"
    --duration "$SECS" --warmup "$WARMUP" --rate "$RATE" --pid "$server_pid" --format json
    --tag "case=$name" --tag "server=$server" --tag "run=$round" --tag "commit=$commit$dirty"
    --tag "quick=$QUICK")
  [[ $scenario == idle ]] && args+=(--heartbeat-ms "${hb_ms:-$HB_MS}")
  [[ -n $fanout_ms ]] && args+=(--publish-ms "$fanout_ms")
  local line rc=0 t0=$SECONDS
  line=$(pinned "$LOADGEN_CPU" "$bin/sse-loadgen" "${args[@]}" 2>"$log.loadgen.txt") || rc=$?
  if [[ $rc == 0 && $line == "{"* ]]; then
    echo "$line" >>"$results"
    python3 - "$line" "$((SECONDS - t0))" <<'PY' >&2
import json, sys
r = json.loads(sys.argv[1])
key = {"stream": ("events_per_s", "events/s"), "idle": ("hb_ratio", "of expected heartbeats"),
       "fanout": ("lat_us_p99", "µs p99")}[r["scenario"]]
print(f"   {r['case']:<18} {r['server']:<9} {r['connected']:>5} conns  {r.get(key[0])} {key[1]}; "
      f"server {r.get('server_cpu_pct')}% CPU (+{r.get('server_wait_pct')}% waiting), "
      f"{r.get('server_cpu_ns_per_unit')} ns/{r['unit']}, {r.get('server_rss_kb_per_conn')} KiB/conn; "
      f"loadgen {r.get('loadgen_cpu_pct')}% CPU (+{r.get('loadgen_wait_pct')}% waiting); {sys.argv[2]} s")
PY
  else
    echo "{\"case\":\"$name\",\"server\":\"$server\",\"run\":$round,\"error\":\"loadgen exit $rc\"}" >>"$results"
    echo "   $name on $server: loadgen failed ($rc); see $log.loadgen.txt" >&2
  fi
  stop_server
}

# --- the rounds ------------------------------------------------------------------
t_start=$SECONDS
for ((round = 1; round <= RUNS; round++)); do
  echo "== round $round of $RUNS" >&2
  for i in "${!cases[@]}"; do
    n=${#servers[@]}
    for ((k = 0; k < n; k++)); do
      measure "$round" "${cases[$i]}" "${servers[$(((k + i + round) % n))]}"
    done
  done
done
echo "== $((SECONDS - t_start)) s of measurements; load average now $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "== results: $results" >&2

if [[ ${NO_PLOT:-0} != 1 ]]; then
  python3 benches/plot.py table "$results"
  python3 benches/plot.py svg "$results" benches/plots >&2
fi
