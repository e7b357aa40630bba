#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# every test of the workspace (unit, integration, doc tests, examples build). Used by
# README.md and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

# --- what the tests need -----------------------------------------------------------
need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The client tests (tests/browser, tests/python): Debian's Chromium is the browser,
# Node.js runs the npm clients, a Python venv holds httpx-sse.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# python3 also runs the SSE server of the load generator's end-to-end tests
# (loadgen/tests/fixtures/sse_server.py, standard library only).
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The Redis backplane tests (tests/redis*.rs) start their own redis-server (Debian's)
# on free loopback ports, with temporary directories, and fail without one;
# tests/redis_cluster.rs starts a 3-master cluster of them (--cluster-enabled yes).
# REDIS_SERVER_BIN may name another binary.
[ -n "${REDIS_SERVER_BIN:-}" ] || command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# tests/dead_peer.rs puts a client in a network namespace (`ip netns`, veth) and needs
# root and iproute2; it fails without them.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# tests/browser/tls.test.mjs makes its self-signed certificate with the openssl CLI.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# npm packages of tests/browser (playwright-core drives /usr/bin/chromium; it downloads
# no browser), exactly as package-lock.json pins them; skipped when already installed.
browser_dir=tests/browser
if ! cmp -s "$browser_dir/package-lock.json" "$browser_dir/node_modules/.installed-package-lock.json"; then
  log "installing npm packages of $browser_dir (npm ci): $(cd "$browser_dir" && node -p \
    'Object.entries(require("./package.json").devDependencies).map(([n, v]) => n + "@" + v).join(" ")')"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser_dir/package-lock.json" "$browser_dir/node_modules/.installed-package-lock.json"
fi

# Python packages of tests/python, in a venv under target/ (not committed); skipped
# when already installed.
pyenv=${CARGO_TARGET_DIR:-target}/pyenv
py_reqs=tests/python/requirements.txt
if ! { cmp -s "$py_reqs" "$pyenv/.installed-requirements.txt" &&
       "$pyenv/bin/python" -c 'import httpx, httpx_sse, pytest' >/dev/null 2>&1; }; then
  log "installing Python packages of tests/python into $pyenv (pip): $(grep -v '^#' "$py_reqs" | xargs)"
  rm -rf "$pyenv"
  python3 -m venv "$pyenv"
  "$pyenv/bin/python" -m pip install -q --disable-pip-version-check -r "$py_reqs"
  cp "$py_reqs" "$pyenv/.installed-requirements.txt"
fi

# --- build, then test --------------------------------------------------------------
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
log "building tests and examples (and the load generator, loadgen/)"
cargo build --workspace --all-features --all-targets --quiet
cargo build --all-features --examples --quiet

status=0
log "running tests"
cargo test --workspace --all-features --no-fail-fast -- --test-threads=4 || status=1

# Real third-party clients against the demo server (examples/demo.rs, built above by
# `cargo build --examples`); each suite starts it on a free port and fails without it.
DEMO_BIN=$(realpath -m "${CARGO_TARGET_DIR:-target}/debug/examples/demo")
export DEMO_BIN
log "client tests: headless Chromium and the eventsource npm package (node --test tests/browser/*.test.mjs)"
node --test tests/browser/*.test.mjs || status=1
log "client tests: httpx + httpx-sse (pytest -q tests/python)"
PYTHONDONTWRITEBYTECODE=1 "$pyenv/bin/python" -m pytest -q tests/python || status=1

# Fuzzing (fuzz/, cargo-fuzz on the nightly toolchain): each target for a bounded time
# (FUZZ_SECONDS, default 20); a crash fails the run. Longer: scripts/fuzz.sh 600.
log "fuzzing: scripts/fuzz.sh ${FUZZ_SECONDS:-20} (encoder, Last-Event-ID, hub framing)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}" || status=1

exit "$status"
