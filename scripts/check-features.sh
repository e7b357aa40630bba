#!/usr/bin/env bash
# Every feature builds alone (`cargo hack`), and no test, example or bench uses a
# feature it does not require. Run by .ci/run.
#
#   scripts/check-features.sh          # the library with each feature alone, then every
#                                      # target with no feature (gated targets skipped)
#   FULL=1 scripts/check-features.sh   # every target with each feature alone (slow:
#                                      # ~8 minutes warm on this 2-core VM)
#
# Cargo.toml's dev-dependency on tower-sse itself turns `hub`, `server`, ... on for
# `cargo run --example demo` and `cargo test`, which would hide a target that uses a
# feature without requiring it; the target checks run on a copy of the crate whose
# manifest has no such line.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-hack >/dev/null 2>&1 || cargo install --locked --quiet cargo-hack
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")/features

copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard |
  grep -zv '^tests/browser/node_modules/' | xargs -0 cp --parents -t "$copy"
grep -q '^tower-sse = { path = "."' "$copy/Cargo.toml" || {
  echo "check-features: no self dev-dependency line found in Cargo.toml" >&2
  exit 1
}
sed -i '/^tower-sse = { path = "."/d' "$copy/Cargo.toml"
cd "$copy"
# (`--no-dev-deps` edits the manifest while it runs: the copy's, not the repository's.)
echo "-- the library with each feature alone (no dev-dependencies)"
cargo hack --each-feature --no-dev-deps --package tower-sse check --lib --quiet \
  --target-dir "$target"
if [ -n "${FULL:-}" ]; then
  echo "-- every target with each feature alone"
  cargo hack --each-feature --exclude-all-features --package tower-sse \
    check --all-targets --keep-going --quiet --target-dir "$target"
else
  echo "-- every target with no feature (targets that require one are skipped)"
  cargo check --package tower-sse --no-default-features --all-targets --keep-going \
    --quiet --target-dir "$target"
fi
