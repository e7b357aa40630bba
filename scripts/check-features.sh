#!/usr/bin/env bash
# Every feature builds alone, its tests, examples and benches included:
# `cargo hack --each-feature check --all-targets` on a copy of the crate whose
# manifest has no self dev-dependency. (Cargo.toml's dev-dependency on tower-sse
# itself turns on `hub`, `server`, ... for `cargo run --example demo` and
# `cargo test`; here it is removed, so a target that uses a feature without naming it
# in `required-features` fails to compile.) Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-hack >/dev/null 2>&1 || cargo install --locked --quiet cargo-hack
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
git ls-files -z --cached --others --exclude-standard |
  grep -zv '^tests/browser/node_modules/' | xargs -0 cp --parents -t "$copy"
grep -q '^tower-sse = { path = "."' "$copy/Cargo.toml" || {
  echo "check-features: no self dev-dependency line found in Cargo.toml" >&2
  exit 1
}
sed -i '/^tower-sse = { path = "."/d' "$copy/Cargo.toml"
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")/features
cd "$copy"
cargo hack --each-feature --exclude-all-features --package tower-sse check --all-targets --keep-going --quiet --target-dir "$target"
