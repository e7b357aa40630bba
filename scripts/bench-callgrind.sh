#!/usr/bin/env bash
# Instruction counts per event for tower-sse and axum 0.8's SSE, under callgrind.
#
# Builds the `callgrind` bench target (benches/callgrind.rs, release profile) and runs
# each workload twice under `valgrind --tool=callgrind`, with N and 2N events. The
# difference divided by N is the marginal cost of one event: process start-up, the
# runtime, the response and the body set-up cancel out, so the numbers are exact and
# repeat on a busy machine.
#
#   scripts/bench-callgrind.sh              # the table
#   scripts/bench-callgrind.sh --annotate   # also callgrind_annotate of each workload
#
# Output files go to target/callgrind/. Installs valgrind with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

annotate=0
for arg in "$@"; do
  case "$arg" in
    --annotate) annotate=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if ! command -v valgrind >/dev/null 2>&1; then
  echo "== installing valgrind (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq valgrind >/dev/null
fi

echo "== building benches/callgrind.rs (release)" >&2
bin=$(cargo bench --bench callgrind --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*callgrind[^"]*"' | tail -n 1 | cut -d'"' -f4)
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "could not find the callgrind bench executable" >&2
  exit 1
fi

out=target/callgrind
mkdir -p "$out"

# instructions <workload> <count>: total instructions (Ir) of one run.
instructions() {
  local file="$out/$1.$2.out"
  valgrind --tool=callgrind --callgrind-out-file="$file" "$bin" "$1" "$2" 2>"$file.log"
  awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

declare -A per_event
# measure <workload> <N>
measure() {
  local n=$2 one two
  one=$(instructions "$1" "$n")
  two=$(instructions "$1" $((2 * n)))
  per_event[$1]=$(awk -v a="$one" -v b="$two" -v n="$n" 'BEGIN { printf "%.1f", (b - a) / n }')
  printf '%-26s %12s Ir (N=%d) %12s Ir (2N) %10s Ir/event\n' "$1" "$one" "$n" "$two" "${per_event[$1]}"
  if [ "$annotate" = 1 ]; then
    callgrind_annotate --threshold=99 "$out/$1.$((2 * n)).out" >"$out/$1.annotate.txt" 2>/dev/null || true
  fi
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== encoder: N=100000 typical events (id, event, 64 bytes of data)"
for w in tower_encode_to tower_encode axum_build axum_body_frame; do
  measure "$w" 100000
done
echo "== encoder: N=100000 multi-line events (data split on \\n, \\r\\n, lone \\r)"
for w in tower_encode_to_multiline axum_body_frame_multiline; do
  measure "$w" 100000
done
echo "== frame-direct events: N=100000 (the typical event with the /stream payload made per event; {\"token\":\"hi\"})"
for w in tower_string_typical tower_data_event_typical tower_custom_event_typical axum_body_frame_string tower_json_token tower_data_event_json_token axum_body_frame_json_token; do
  measure "$w" 100000
done
echo "== frame-direct body: N=10000 /stream events made when polled, drained with BodyExt::frame"
for w in tower_body_string tower_body_data_event tower_body_custom axum_body_string; do
  measure "$w" 10000
done
echo "== body: N=10000 always-ready 72-byte events, drained with BodyExt::frame"
for w in tower_body_heartbeat tower_body_ticker tower_body_no_heartbeat axum_body_keep_alive axum_body_no_keep_alive; do
  measure "$w" 10000
done
echo "== idle: N=10000 heartbeats from a body whose source never yields (paused clock)"
for w in tower_idle_heartbeats tower_idle_heartbeats_ticker axum_idle_keep_alive; do
  measure "$w" 10000
done
echo "== fan-out, 1000 subscribers on their own tasks: N=20 events (per-delivery figure = Ir / 1000)"
for w in fanout1000_hub fanout1000_axum; do
  measure "$w" 20
  per_event[$w]=$(awk -v x="${per_event[$w]}" 'BEGIN { printf "%.1f", x / 1000 }')
done

echo "== hub with 1k, 10k and 100k topics of one subscriber each: N=5000 operations (O(1): the rows of each op stay level)"
for w in hub_publish_1k hub_publish_10k hub_publish_100k hub_subscribe_1k hub_subscribe_10k hub_subscribe_100k; do
  measure "$w" 5000
done

echo "== idle, 1000 streams on their own tasks: N=20 heartbeats each (per-heartbeat figure = Ir / 1000)"
for w in idle1000_timer idle1000_ticker idle1000_axum; do
  measure "$w" 20
done
for w in idle1000_timer idle1000_ticker idle1000_axum; do
  per_event[$w]=$(awk -v x="${per_event[$w]}" 'BEGIN { printf "%.1f", x / 1000 }')
done

cat <<TABLE

| comparison | axum Ir/event | tower-sse Ir/event | axum / tower-sse |
|---|---:|---:|---:|
| typical event, axum Sse body frame vs tower-sse encode_to (reused buffer) | ${per_event[axum_body_frame]} | ${per_event[tower_encode_to]} | $(ratio "${per_event[axum_body_frame]}" "${per_event[tower_encode_to]}") |
| typical event, axum Sse body frame vs tower-sse encode() (own Bytes) | ${per_event[axum_body_frame]} | ${per_event[tower_encode]} | $(ratio "${per_event[axum_body_frame]}" "${per_event[tower_encode]}") |
| typical event, axum build only vs tower-sse encode_to (reused buffer) | ${per_event[axum_build]} | ${per_event[tower_encode_to]} | $(ratio "${per_event[axum_build]}" "${per_event[tower_encode_to]}") |
| typical event, axum build only vs tower-sse encode() (own Bytes) | ${per_event[axum_build]} | ${per_event[tower_encode]} | $(ratio "${per_event[axum_build]}" "${per_event[tower_encode]}") |
| multi-line event, axum Sse body frame vs tower-sse encode_to (reused buffer) | ${per_event[axum_body_frame_multiline]} | ${per_event[tower_encode_to_multiline]} | $(ratio "${per_event[axum_body_frame_multiline]}" "${per_event[tower_encode_to_multiline]}") |
| body, axum KeepAlive 15 s vs tower-sse heartbeat 15 s | ${per_event[axum_body_keep_alive]} | ${per_event[tower_body_heartbeat]} | $(ratio "${per_event[axum_body_keep_alive]}" "${per_event[tower_body_heartbeat]}") |
| body, axum no KeepAlive vs tower-sse no_heartbeat | ${per_event[axum_body_no_keep_alive]} | ${per_event[tower_body_no_heartbeat]} | $(ratio "${per_event[axum_body_no_keep_alive]}" "${per_event[tower_body_no_heartbeat]}") |
| busy body, axum KeepAlive vs tower-sse shared ticker 15 s | ${per_event[axum_body_keep_alive]} | ${per_event[tower_body_ticker]} | $(ratio "${per_event[axum_body_keep_alive]}" "${per_event[tower_body_ticker]}") |
| one idle stream, Ir per heartbeat: axum KeepAlive vs tower-sse shared ticker (8 ticks per interval for one stream) | ${per_event[axum_idle_keep_alive]} | ${per_event[tower_idle_heartbeats_ticker]} | $(ratio "${per_event[axum_idle_keep_alive]}" "${per_event[tower_idle_heartbeats_ticker]}") |
| fan-out x1000, Ir per delivery: axum Sse + broadcast vs tower-sse Hub + SseLayer | ${per_event[fanout1000_axum]} | ${per_event[fanout1000_hub]} | $(ratio "${per_event[fanout1000_axum]}" "${per_event[fanout1000_hub]}") |
| idle x1000, Ir per heartbeat: axum KeepAlive vs tower-sse timer | ${per_event[idle1000_axum]} | ${per_event[idle1000_timer]} | $(ratio "${per_event[idle1000_axum]}" "${per_event[idle1000_timer]}") |
| idle x1000, Ir per heartbeat: axum KeepAlive vs tower-sse shared ticker | ${per_event[idle1000_axum]} | ${per_event[idle1000_ticker]} | $(ratio "${per_event[idle1000_axum]}" "${per_event[idle1000_ticker]}") |
| one idle stream, Ir per heartbeat: axum KeepAlive vs tower-sse per-stream timer | ${per_event[axum_idle_keep_alive]} | ${per_event[tower_idle_heartbeats]} | $(ratio "${per_event[axum_idle_keep_alive]}" "${per_event[tower_idle_heartbeats]}") |
| typical event, payload made per event: axum Sse body frame (String) vs tower-sse Event::data(String) | ${per_event[axum_body_frame_string]} | ${per_event[tower_string_typical]} | $(ratio "${per_event[axum_body_frame_string]}" "${per_event[tower_string_typical]}") |
| typical event, payload made per event: axum Sse body frame (String) vs tower-sse DataEvent::from_fn | ${per_event[axum_body_frame_string]} | ${per_event[tower_data_event_typical]} | $(ratio "${per_event[axum_body_frame_string]}" "${per_event[tower_data_event_typical]}") |
| typical event: tower-sse Event::data(String) vs DataEvent::from_fn (tower-sse / tower-sse) | ${per_event[tower_string_typical]} | ${per_event[tower_data_event_typical]} | $(ratio "${per_event[tower_string_typical]}" "${per_event[tower_data_event_typical]}") |
| typical event, payload made per event: axum Sse body frame (String) vs tower-sse DataEvent::custom | ${per_event[axum_body_frame_string]} | ${per_event[tower_custom_event_typical]} | $(ratio "${per_event[axum_body_frame_string]}" "${per_event[tower_custom_event_typical]}") |
| {"token":"hi"}: axum Sse body frame json_data vs tower-sse Event::json_data | ${per_event[axum_body_frame_json_token]} | ${per_event[tower_json_token]} | $(ratio "${per_event[axum_body_frame_json_token]}" "${per_event[tower_json_token]}") |
| {"token":"hi"}: axum Sse body frame json_data vs tower-sse DataEvent::json | ${per_event[axum_body_frame_json_token]} | ${per_event[tower_data_event_json_token]} | $(ratio "${per_event[axum_body_frame_json_token]}" "${per_event[tower_data_event_json_token]}") |
| {"token":"hi"}: tower-sse Event::json_data vs DataEvent::json (tower-sse / tower-sse) | ${per_event[tower_json_token]} | ${per_event[tower_data_event_json_token]} | $(ratio "${per_event[tower_json_token]}" "${per_event[tower_data_event_json_token]}") |
| /stream body: axum KeepAlive (String) vs tower-sse Event::data(String) | ${per_event[axum_body_string]} | ${per_event[tower_body_string]} | $(ratio "${per_event[axum_body_string]}" "${per_event[tower_body_string]}") |
| /stream body: axum KeepAlive (String) vs tower-sse DataEvent::from_fn | ${per_event[axum_body_string]} | ${per_event[tower_body_data_event]} | $(ratio "${per_event[axum_body_string]}" "${per_event[tower_body_data_event]}") |
| /stream body: axum KeepAlive (String) vs tower-sse DataEvent::custom | ${per_event[axum_body_string]} | ${per_event[tower_body_custom]} | $(ratio "${per_event[axum_body_string]}" "${per_event[tower_body_custom]}") |
TABLE
if [ "$annotate" = 1 ]; then
  echo
  echo "annotations (2N runs): $out/<workload>.annotate.txt"
fi
