#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# every test (unit, integration, doc tests, examples build). Used by README.md and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

# --- what the tests need -----------------------------------------------------------
need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- build, then test --------------------------------------------------------------
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
log "building tests and examples"
cargo build --all-features --all-targets --quiet
cargo build --all-features --examples --quiet

log "running tests"
cargo test --all-features --no-fail-fast -- --test-threads=4
