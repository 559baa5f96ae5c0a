#!/usr/bin/env bash
# Runs the whole test suite (debug build): unit, integration, property and crash tests,
# then the open-Parquet check with real pyarrow and DuckDB (installed into a virtualenv
# under the cargo target directory on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --no-fail-fast "$@"
# Doc examples (compiled; `no_run` ones are not executed).
cargo test --workspace --doc

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
venv="$target_dir/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyarrow, duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pyarrow duckdb
fi
# `cargo test` above built the binary (cli integration tests use it); a separate
# `cargo build` would resolve features without dev-dependencies and rebuild DataFusion.
bin="$target_dir/debug/tracelake"
test -x "$bin" || { echo "missing $bin"; exit 1; }
"$venv/bin/python" scripts/python/test_open_parquet.py "$bin"
