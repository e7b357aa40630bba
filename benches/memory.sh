#!/usr/bin/env bash
# Memory per connection of the release demo (issue 12 item 3, issue 11 item 2):
# server RSS per idle connection with heartbeats on time, and server RSS and kernel
# send queue per stalled reader (HTTP/1.1 and h2c).
#
#   benches/memory.sh idle [N...]            # N idle /idle?hb_ms=1000 connections (default 10000 19000)
#   benches/memory.sh stalled [PATH] [N]     # N HTTP/1.1 readers that never read (default /slow?count=1000000000, 1000)
#   benches/memory.sh h2 [PATH] [M]          # one h2c connection, M streams never read (default /stream, 200)
#
# Each measurement starts a fresh demo (release build, `PORT=0`), pinned to CPU 0 with
# TOKIO_WORKER_THREADS=1 as in benches/run.sh; clients run on CPU 1.
# - idle: the load generator (`sse-loadgen --scenario idle`) opens the connections,
#   checks every heartbeat for 6 s and reports the server's RSS per connection (VmRSS
#   at the end minus before the first connection, divided by the connections); while
#   they are open, /proc/PID/status and smaps_rollup are saved and printed.
# - stalled, h2: `examples/stalled.rs` opens the readers; once the server's send
#   queues stop growing (`ss`), RSS growth per reader and each socket's send queue
#   (`ss -tmi`: Send-Q, skmem `w` = wmem_queued, `notsent`) are printed.
#
# Environment: NO_BUILD=1 (use the binaries in $CARGO_TARGET_DIR or target/),
# SERVER_ENV='MALLOC_ARENA_MAX=2 ...' (more environment for the demo), ALLOC=jemalloc
# (the demo with the system's jemalloc preloaded: apt package libjemalloc2),
# SECS=6 WARMUP=1 RATE=5000 (idle), SETTLE_SECS=30 (stalled: longest wait for the
# queues to settle), HOLD_SECS=0 (stalled: seconds to wait after that before reading
# the RSS), NOFILE=20000.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-idle}
shift || true
SECS=${SECS:-6}
WARMUP=${WARMUP:-1}
RATE=${RATE:-5000}
SETTLE_SECS=${SETTLE_SECS:-30}
HOLD_SECS=${HOLD_SECS:-0}
NOFILE=${NOFILE:-20000}
if [[ ${ALLOC:-} == jemalloc ]]; then
  jemalloc=$(ls /usr/lib/*/libjemalloc.so.2 2>/dev/null | head -1 || true)
  [[ -n $jemalloc ]] || { echo "ALLOC=jemalloc: install libjemalloc2 (apt-get install libjemalloc2)" >&2; exit 1; }
  SERVER_ENV="${SERVER_ENV:+$SERVER_ENV }LD_PRELOAD=$jemalloc"
fi
read -r -a server_env <<<"${SERVER_ENV:-}"

hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $NOFILE ]]; then NOFILE=$hard; fi
ulimit -n "$NOFILE"

target=${CARGO_TARGET_DIR:-$root/target}
if [[ ${NO_BUILD:-0} != 1 ]]; then
  echo "== cargo build --release --example demo --example stalled; -p tower-sse-loadgen" >&2
  cargo build --release --example demo --example stalled >&2
  cargo build --release -p tower-sse-loadgen >&2
fi
out=$target/memory
mkdir -p "$out"
# Private copies: other builds may replace the binaries while this runs.
for b in examples/demo examples/stalled sse-loadgen; do
  [[ -x $target/release/$b ]] || { echo "missing $target/release/$b" >&2; exit 1; }
  cp "$target/release/$b" "$out/${b##*/}.new" && mv -f "$out/${b##*/}.new" "$out/${b##*/}"
done

pid=
stop() {
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
}
client=
stop_client() {
  [[ -n $client ]] || return 0
  exec 3>&- || true
  kill "$client" 2>/dev/null || true
  wait "$client" 2>/dev/null || true
  client=
}
trap 'stop_client; stop' EXIT

start() { # sets pid and port
  local log=$out/demo.log
  rm -f "$log"
  env -u REDIS_URL TOKIO_WORKER_THREADS=1 PORT=0 HOST=127.0.0.1 ${server_env[@]+"${server_env[@]}"} \
    taskset -c 0 "$out/demo" >"$log" 2>&1 &
  pid=$!
  port=
  for _ in $(seq 500); do
    port=$(grep -m1 -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | sed 's/.*://' || true)
    [[ -n $port ]] && return 0
    sleep 0.02
  done
  echo "the demo did not start; see $log" >&2
  exit 1
}

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

# The server side of its established connections: one line per socket.
queues() { ss -tnmiH state established "( sport = :$port )"; }

summary() { # summary N BEFORE_KIB AFTER_KIB UNIT: RSS per UNIT (reader or stream) and send queues
  queues >"$out/ss.txt"
  python3 - "$1" "$2" "$3" "$out/ss.txt" "$4" <<'PY'
import re, sys
n, before, after, path, unit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
text = open(path).read()
sendq, wq, notsent = [], [], []
# `ss -i` prints each socket on a first line (state, queues, addresses) and its
# skmem/info on the next; -H drops the header.
for block in re.split(r"\n(?=\S)", text.strip()):
    if not block:
        continue
    fields = block.split()
    sendq.append(int(fields[1]))
    m = re.search(r"skmem:\(([^)]*)\)", block)
    if m:
        kv = dict(re.match(r"([a-z]+)(\d+)", p).groups() for p in m.group(1).split(","))
        wq.append(int(kv.get("w", 0)))
    m = re.search(r"notsent:(\d+)", block)
    notsent.append(int(m.group(1)) if m else 0)
def stats(v):
    if not v:
        return "none"
    v = sorted(v)
    return f"mean {sum(v)/len(v)/1024:.1f} KiB, p50 {v[len(v)//2]/1024:.1f}, max {v[-1]/1024:.1f}"
print(f"server RSS: {before} KiB before, {after} KiB with {n} stalled {unit}s: "
      f"{(after - before) / n:.1f} KiB per {unit}")
print(f"sockets: {len(sendq)}; Send-Q {stats(sendq)}; wmem_queued {stats(wq)}; notsent {stats(notsent)}")
PY
}

settle() { # waits until the total Send-Q stops growing (2 s unchanged) or SETTLE_SECS
  local last=-1 same=0 total
  for _ in $(seq $((SETTLE_SECS * 2))); do
    total=$(queues | awk 'NF > 3 && $2 ~ /^[0-9]+$/ {s += $2} END {print s + 0}')
    if [[ $total == "$last" ]]; then same=$((same + 1)); else same=0; fi
    ((same >= 4)) && return 0
    last=$total
    sleep 0.5
  done
  echo "note: the send queues still moved after ${SETTLE_SECS} s" >&2
}

smaps() {
  grep -E '^(VmRSS|RssAnon|RssFile|VmData|Threads)' "/proc/$pid/status" | tr -s ' \t' ' ' | paste -sd';'
  grep -E '^(Rss|Private_Dirty|Anonymous)' "/proc/$pid/smaps_rollup" | tr -s ' \t' ' ' | paste -sd';'
}

idle() { # idle N
  local n=$1
  start
  local before
  before=$(rss_kib)
  # Saves /proc while the connections are open (every 0.5 s once N are accepted).
  (
    while kill -0 "$pid" 2>/dev/null; do
      if (($(ls "/proc/$pid/fd" 2>/dev/null | wc -l) >= n)); then smaps >"$out/smaps.$n.txt" 2>/dev/null || true; fi
      sleep 0.5
    done
  ) &
  local sampler=$!
  local line
  line=$(taskset -c 1 "$out/sse-loadgen" idle "http://127.0.0.1:$port/idle?hb_ms=1000" --connections "$n" \
    --heartbeat-ms 1000 --duration "$SECS" --warmup "$WARMUP" --rate "$RATE" --pid "$pid" \
    --format json 2>"$out/loadgen.$n.txt")
  stop
  wait "$sampler" 2>/dev/null || true
  echo "== idle: $n connections, /idle?hb_ms=1000${SERVER_ENV:+, $SERVER_ENV}"
  python3 - "$line" "$before" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"connected {r['connected']}; heartbeats {r.get('hb_ratio')} of expected; late {r.get('late_conns')}, "
      f"silent {r.get('silent_conns')}; gap p99 {r.get('gap_ms_p99')} ms")
print(f"server RSS: {r.get('server_rss_kb_before')} KiB before, {r.get('server_rss_kb')} KiB at the end: "
      f"{r.get('server_rss_kb_per_conn')} KiB per connection")
PY
  [[ -s $out/smaps.$n.txt ]] && sed 's/^/\/proc: /' "$out/smaps.$n.txt"
  rm -f "$out/smaps.$n.txt"
}

stalled() { # stalled PATH N [--h2-streams M]
  local path=$1 n=$2
  shift 2
  start
  # One request first, so that what every connection shares (the runtime's, the
  # allocator's and the layer's first allocations) is in the baseline.
  curl -s -o /dev/null -m 2 "http://127.0.0.1:$port/health" || true
  local before
  before=$(rss_kib)
  local fifo=$out/stalled.fifo
  rm -f "$fifo"
  mkfifo "$fifo"
  taskset -c 1 "$out/stalled" --port "$port" --path "$path" --conns "$n" "$@" <"$fifo" >"$out/stalled.out" 2>&1 &
  client=$!
  exec 3>"$fifo"
  for _ in $(seq 600); do
    grep -q ready "$out/stalled.out" 2>/dev/null && break
    kill -0 "$client" 2>/dev/null || { cat "$out/stalled.out" >&2; exit 1; }
    sleep 0.1
  done
  settle
  # jemalloc hands freed pages back after its decay time (10 s): HOLD_SECS=12 reads
  # the RSS that stays while the readers stay stalled.
  if ((HOLD_SECS > 0)); then
    echo "RSS at settle: $(rss_kib) KiB; reading again after ${HOLD_SECS} s" >&2
    sleep "$HOLD_SECS"
  fi
  local after
  after=$(rss_kib)
  local unit=reader
  [[ $* == *--h2-streams* ]] && unit=stream
  summary "$n" "$before" "$after" "$unit"
  echo "/proc: $(smaps)"
  stop_client
  stop
}

case $mode in
idle)
  (($# > 0)) || set -- 10000 19000
  for n in "$@"; do idle "$n"; done
  ;;
stalled)
  path=${1:-/slow?count=1000000000}
  n=${2:-1000}
  echo "== stalled: $n HTTP/1.1 readers of $path${SERVER_ENV:+, $SERVER_ENV}"
  stalled "$path" "$n"
  ;;
h2)
  path=${1:-/stream}
  m=${2:-200}
  echo "== h2c: one connection, $m streams of $path never read${SERVER_ENV:+, $SERVER_ENV}"
  stalled "$path" "$m" --h2-streams "$m"
  ;;
*)
  echo "usage: benches/memory.sh idle [N...] | stalled [PATH] [N] | h2 [PATH] [M]" >&2
  exit 2
  ;;
esac
