#!/usr/bin/env bash
# Four instances on one machine (issue 13, item 5): a Redis and INSTANCES release
# demos sharing it (REDIS_URL), with sse-loadgen processes holding SUBS_PER_INSTANCE
# subscribers on each instance, over real loopback TCP.
#
#   benches/scale.sh                                  # the small default: 4 × 1,000, a few minutes
#   SUBS_PER_INSTANCE=5000 SCENARIOS='a c' benches/scale.sh
#   SUBS_PER_INSTANCE=15000 TOPICS=10000 benches/scale.sh   # the issue's full scale
#
# Scenarios (each on a fresh Redis and fresh demos):
#   a  one shared topic (`/fanout`), ticked every TICK_MS by instance 0 only (the others
#      get FANOUT_MS of one day): every subscriber on every instance gets every event;
#      missed events (sequence gaps), publish → delivery latency.
#   b  a topic per user: instance j's subscribers on `/fanout?topic=user:<k>`, k in
#      j×TOPICS .. (j+1)×TOPICS−1 (several subscribers per topic when
#      SUBS_PER_INSTANCE > TOPICS); `sse-loadgen publish` POSTs PUB_RATE events/s spread
#      over all INSTANCES×TOPICS topics, publish n to instance n % INSTANCES (3 of 4
#      cross instances). Redis connections per instance (`ss`, by the demo's pid; and
#      `CLIENT LIST`), Redis CPU per publish (`INFO cpu` before/after), latency,
#      deliveries against what the publisher got 204 for.
#   c  as a, and Redis is killed (SIGKILL) in the middle and restarted on the same port
#      OUTAGE_S later: streams must stay open (closed_in_window 0) and miss nothing
#      but the ticks that could not be published while Redis was down (the demo logs
#      each: `publishing tick N failed`); event_gap_ms_max is how long delivery
#      stopped.
#
# Every measurement: once all subscribers are open (`sse_streams_open` of each demo's
# /metrics), 1 s to settle, then SECS seconds in which the CPU time of the demos and of
# Redis is sampled (/proc and INFO cpu) while the load generators measure (their window
# covers it, from their last connection to SECS + 30 s later).
#
# Environment:
#   INSTANCES=4 SUBS_PER_INSTANCE=1000 TOPICS=200 SECS=10 SCENARIOS='a b c'
#   TICK_MS=100        the shared topic's interval (a, c)
#   PUB_RATE=1000      publishes per second (b)
#   OUTAGE_S=2         how long Redis is down (c)
#   RATE=2000          new connections per second, per load-generator process
#   MAX_PER_PROC=15000 connections per load-generator process (each stays under the
#                      open-file limit)
#   NOFILE=20000       `ulimit -n` for everything started here
#   OUT=$CARGO_TARGET_DIR/scale (or target/scale): logs, JSON, results.jsonl (appended:
#                      one line per scenario and scale), summary.md
#   NO_BUILD=1         use the release binaries already built
#   PLOT=benches/plots/scale_fanout.svg  the chart (p50/p99 latency against subscribers,
#                      from every result in results.jsonl); PLOT= to skip
#
# Needs: redis-server and redis-cli (Debian's redis-server package), python3, ss
# (iproute2), curl.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

INSTANCES=${INSTANCES:-4}
SUBS_PER_INSTANCE=${SUBS_PER_INSTANCE:-1000}
TOPICS=${TOPICS:-200}
SECS=${SECS:-10}
SCENARIOS=${SCENARIOS:-a b c}
TICK_MS=${TICK_MS:-100}
PUB_RATE=${PUB_RATE:-1000}
OUTAGE_S=${OUTAGE_S:-2}
RATE=${RATE:-2000}
MAX_PER_PROC=${MAX_PER_PROC:-15000}
NOFILE=${NOFILE:-20000}
target=${CARGO_TARGET_DIR:-$root/target}
OUT=${OUT:-$target/scale}
PLOT=${PLOT-benches/plots/scale_fanout.svg}
NEVER_MS=86400000

for tool in redis-server redis-cli python3 ss curl; do
  command -v "$tool" >/dev/null || { echo "scale.sh needs $tool (apt-get install redis-server iproute2 curl python3)" >&2; exit 1; }
done
hard=$(ulimit -Hn)
if [[ $hard != unlimited && $hard -lt $NOFILE ]]; then NOFILE=$hard; fi
ulimit -n "$NOFILE"
if ((MAX_PER_PROC + 100 > NOFILE)); then MAX_PER_PROC=$((NOFILE - 100)); fi
if ((SUBS_PER_INSTANCE + 200 > NOFILE)); then
  echo "SUBS_PER_INSTANCE=$SUBS_PER_INSTANCE: a demo needs that many descriptors and more; the limit is $NOFILE" >&2
  exit 2
fi

if [[ ${NO_BUILD:-0} != 1 ]]; then
  echo "== cargo build --release (demo, sse-loadgen)" >&2
  cargo build --release --example demo --features hub,redis,metrics,server,tls >&2
  cargo build --release -p tower-sse-loadgen >&2
fi
mkdir -p "$OUT/bin" "$OUT/logs"
# A private copy: other builds in the target directory may replace the binaries.
for src in "$target/release/examples/demo" "$target/release/sse-loadgen"; do
  [[ -x $src ]] || { echo "missing $src (build it, or unset NO_BUILD)" >&2; exit 1; }
  cp "$src" "$OUT/bin/${src##*/}.new" && mv -f "$OUT/bin/${src##*/}.new" "$OUT/bin/${src##*/}"
done
demo=$OUT/bin/demo
loadgen=$OUT/bin/sse-loadgen
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
run_id=$(date -u +%Y%m%dT%H%M%SZ)

# --- processes -----------------------------------------------------------------
redis_pid= redis_port= redis_dir=
demo_pids=() demo_ports=() sub_pids=()
stop_all() {
  local p
  for p in ${sub_pids[@]+"${sub_pids[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${demo_pids[@]+"${demo_pids[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${sub_pids[@]+"${sub_pids[@]}"} ${demo_pids[@]+"${demo_pids[@]}"}; do wait "$p" 2>/dev/null || true; done
  if [[ -n $redis_pid ]]; then kill -TERM "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; fi
  [[ -n $redis_dir ]] && rm -rf "$redis_dir"
  redis_pid= redis_dir= demo_pids=() demo_ports=() sub_pids=()
}
trap stop_all EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_redis LOG: on $redis_port (a new free one if empty), no persistence.
start_redis() {
  [[ -n $redis_port ]] || redis_port=$(free_port)
  [[ -n $redis_dir ]] || redis_dir=$(mktemp -d /tmp/scale-redis.XXXXXX)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$redis_dir" --maxclients 10000 --protected-mode no >>"$1" 2>&1 &
  redis_pid=$!
  for _ in $(seq 250); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
    sleep 0.02
  done
  echo "redis-server did not start; see $1" >&2
  return 1
}

# start_demos SCENARIO: INSTANCES demos on REDIS_URL; instance 0 ticks every TICK_MS.
start_demos() {
  local j log fanout port
  for ((j = 0; j < INSTANCES; j++)); do
    log=$OUT/logs/$run_id.$1.demo$j.log
    fanout=$NEVER_MS
    ((j == 0)) && fanout=$TICK_MS
    env REDIS_URL="redis://127.0.0.1:$redis_port/" PORT=0 HOST=127.0.0.1 FANOUT_MS=$fanout \
      "$demo" >"$log" 2>&1 &
    demo_pids+=($!)
    port=
    for _ in $(seq 500); do
      port=$(grep -m1 -o 'listening on http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | sed 's/.*://' || true)
      [[ -n $port ]] && break
      sleep 0.02
    done
    [[ -n $port ]] || { echo "demo $j did not start; see $log" >&2; return 1; }
    demo_ports+=("$port")
  done
}

# start_subscribers SCENARIO: the load-generator processes, JSON to $OUT/logs.
start_subscribers() {
  local scenario=$1 j p procs n left url args
  # The window covers the settling second, the SECS measured (plus, in c, Redis's
  # restart and this script's own pauses on a busy machine: /metrics of four saturated
  # demos can take seconds, so the windows start before the script sees every stream
  # open) and a tail.
  local secs=$((SECS + 30))
  for ((j = 0; j < INSTANCES; j++)); do
    procs=$(((SUBS_PER_INSTANCE + MAX_PER_PROC - 1) / MAX_PER_PROC))
    left=$SUBS_PER_INSTANCE
    for ((p = 0; p < procs; p++)); do
      n=$(((left + procs - p - 1) / (procs - p)))
      left=$((left - n))
      url=http://127.0.0.1:${demo_ports[$j]}/fanout
      args=(fanout "$url" -c "$n" -d "$secs" -w 0 --rate "$RATE" --format json --quiet
        --json "$OUT/logs/$run_id.$scenario.sub$j.$p.json" --tag "instance=$j" --tag "proc=$p")
      if [[ $scenario == b ]]; then
        args[1]="$url?topic=user:{i}"
        args+=(--id-start $((j * TOPICS)) --id-count "$TOPICS")
      else
        args+=(--publish-ms "$TICK_MS")
      fi
      "$loadgen" "${args[@]}" >/dev/null 2>"$OUT/logs/$run_id.$scenario.sub$j.$p.err" &
      sub_pids+=($!)
    done
  done
}

open_streams() { # the sum of sse_streams_open over the demos
  local total=0 port v
  for port in "${demo_ports[@]}"; do
    v=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" | awk '/^sse_streams_open[ {]/ {s += $2} END {print s + 0}')
    total=$((total + ${v%.*}))
  done
  echo "$total"
}

wait_connected() {
  local want=$((INSTANCES * SUBS_PER_INSTANCE)) deadline=$((SECONDS + SUBS_PER_INSTANCE / RATE * 3 + 60)) got
  while ((SECONDS < deadline)); do
    got=$(open_streams)
    ((got >= want)) && { echo "   $got streams open" >&2; return 0; }
    sleep 0.5
  done
  echo "   only $(open_streams) of $want streams opened" >&2
}

cpu_ticks() { # utime + stime of the pids, in clock ticks
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
redis_cpu() { redis-cli -p "$redis_port" info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.4f", s}'; }

# Redis connections per instance: the established TCP connections to Redis, by the
# demo's pid (`ss -p`); and what Redis counts (`CLIENT LIST`, names if any are set).
redis_conns() {
  {
    echo "${demo_pids[*]}"
    ss -Htnp state established "( dport = :$redis_port )" 2>/dev/null | grep -o 'pid=[0-9]*' || true
    echo '--'
    redis-cli -p "$redis_port" client list
  } | python3 -c '
import json, re, sys
lines = sys.stdin.read().splitlines()
pids = lines[0].split()
sep = lines.index("--")
by_pid = [l[4:] for l in lines[1:sep]]
clients = [l for l in lines[sep + 1:] if l.strip() and "cmd=client" not in l]
names = {}
for c in clients:
    m = re.search(r" name=(\S+)", c)
    if m:
        names[m.group(1)] = names.get(m.group(1), 0) + 1
print(json.dumps({"redis_conns_by_instance": [by_pid.count(p) for p in pids],
                  "redis_clients_total": len(clients), "redis_client_names": names}))'
}

# --- one scenario ---------------------------------------------------------------
run_scenario() {
  local s=$1 t0 c0 r0 meta=$OUT/logs/$run_id.$s.meta.json extra='{}' pub_json=null
  echo "== scenario $s: $INSTANCES instances × $SUBS_PER_INSTANCE subscribers$([[ $s == b ]] && echo ", $TOPICS topics each, $PUB_RATE publishes/s")" >&2
  redis_port=
  start_redis "$OUT/logs/$run_id.$s.redis.log"
  start_demos "$s"
  local base_clients
  base_clients=$(redis_conns)
  start_subscribers "$s"
  wait_connected
  # Redis's own baseline (its timers, the blocked reads timing out), before anything
  # is published on the per-user topics (b).
  local idle0 idle1
  idle0=$(redis_cpu)
  sleep 1
  idle1=$(redis_cpu)
  t0=$(date +%s.%N) c0=$(cpu_ticks "${demo_pids[@]}") r0=$(redis_cpu)
  local kill_at= restart_at=
  case $s in
  a) sleep "$SECS" ;;
  b)
    extra=$(redis_conns)
    local urls=() j
    for ((j = 0; j < INSTANCES; j++)); do urls+=("http://127.0.0.1:${demo_ports[$j]}/publish?topic=user:{i}"); done
    "$loadgen" publish "${urls[@]}" --rate "$PUB_RATE" -d "$SECS" --id-count $((INSTANCES * TOPICS)) \
      --format json --json "$OUT/logs/$run_id.b.publish.json" >/dev/null 2>"$OUT/logs/$run_id.b.publish.err"
    pub_json=$(cat "$OUT/logs/$run_id.b.publish.json")
    ;;
  c)
    local r_kill
    sleep "$(python3 -c "print(max(0.5, $SECS / 2 - $OUTAGE_S / 2))")"
    r_kill=$(redis_cpu)
    kill_at=$(date +%s.%N)
    kill -KILL "$redis_pid"
    wait "$redis_pid" 2>/dev/null || true
    sleep "$OUTAGE_S"
    restart_at=$(date +%s.%N)
    start_redis "$OUT/logs/$run_id.$s.redis.log"
    r0=$(python3 -c "print($r0 - $r_kill)") # the new Redis counts from 0
    sleep "$(python3 -c "print(max(0.5, $SECS / 2 - $OUTAGE_S / 2))")"
    ;;
  esac
  local t1 c1 r1
  t1=$(date +%s.%N) c1=$(cpu_ticks "${demo_pids[@]}") r1=$(redis_cpu)
  local early=0 p
  for p in "${sub_pids[@]}"; do kill -0 "$p" 2>/dev/null || early=$((early + 1)); done
  [[ $s == b ]] || extra=$(redis_conns)
  ((early == 0)) || echo "   warning: $early load generators ended before the measurement did: raise their window" >&2
  local failed_ticks
  failed_ticks=$(grep -c 'publishing tick .* failed' "$OUT/logs/$run_id.$s.demo0.log" || true)
  for p in "${sub_pids[@]}"; do wait "$p" || echo "   a load generator exited with $?" >&2; done
  sub_pids=()
  cat >"$meta" <<EOF
{"run_id":"$run_id","commit":"$commit","scenario_case":"$s","instances":$INSTANCES,"subs_per_instance":$SUBS_PER_INSTANCE,
 "topics_per_instance":$TOPICS,"secs":$SECS,"tick_ms":$TICK_MS,"pub_rate":$PUB_RATE,"outage_s":$OUTAGE_S,
 "sample_s":$(python3 -c "print(round($t1 - $t0, 3))"),"demo_cpu_s":$(python3 -c "print(($c1 - $c0) / $(getconf CLK_TCK))"),
 "redis_cpu_s":$(python3 -c "print(round($r1 - $r0, 4))"),"redis_idle_cpu_pct":$(python3 -c "print(round(100 * ($idle1 - $idle0), 2))"),"failed_ticks":$failed_ticks,"loadgens_ended_early":$early,
 "kill_at":${kill_at:-null},"restart_at":${restart_at:-null},"redis_before_subscribers":$base_clients,
 "redis":$extra,"publisher":$pub_json,"nproc":$(nproc),"loadavg":"$(cut -d' ' -f1-3 /proc/loadavg)"}
EOF
  stop_all
  python3 benches/scale.py summarize "$meta" "$OUT/logs/$run_id.$s.sub"*.json | tee -a "$OUT/summary.md"
}

echo "== $run_id commit $commit; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg); open files $NOFILE" >&2
for s in $SCENARIOS; do
  case $s in
  a | b | c) run_scenario "$s" ;;
  *) echo "unknown scenario $s (a, b or c)" >&2; exit 2 ;;
  esac
done
python3 benches/scale.py collect "$OUT/logs/$run_id."*.meta.json >>"$OUT/results.jsonl"
echo "== results: $OUT/results.jsonl, tables: $OUT/summary.md" >&2
if [[ -n $PLOT ]]; then
  python3 benches/scale.py plot-input "$OUT/results.jsonl" >"$OUT/plot-input.jsonl"
  "$loadgen" plot "$OUT/plot-input.jsonl" -o "$PLOT" -x subs -y lat_us_p50,lat_us_p99 -s case \
    -t "Fan-out over Redis, $INSTANCES instances on one machine: latency by subscribers" >&2
fi
