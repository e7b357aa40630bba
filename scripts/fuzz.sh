#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for a bounded time; fails on the first crash.
#
#   scripts/fuzz.sh          # 30 s per target
#   scripts/fuzz.sh 120      # 2 min per target
#
# Needs the nightly toolchain and cargo-fuzz (installed with `cargo install
# cargo-fuzz` if missing). A crash leaves its input in fuzz/artifacts/<target>/;
# reproduce with `cargo +nightly fuzz run <target> <file>`, then make it a unit test.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
targets=(encode last_event_id hub_framing)

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "the nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s" >&2
  log=$(mktemp)
  status=0
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" >"$log" 2>&1 || status=$?
  if [ "$status" != 0 ] || grep -qE 'ERROR: libFuzzer|panicked at' "$log"; then
    tail -n 40 "$log" >&2
    echo "== $target: crash or failure (exit $status; input in fuzz/artifacts/$target/)" >&2
    exit 1
  fi
  grep -E '^Done [0-9]+ runs' "$log" | sed "s/^/$target: /"
  rm -f "$log"
done
