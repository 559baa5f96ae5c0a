#!/usr/bin/env bash
# Runs the whole test suite (debug build): unit, integration, property and crash tests,
# then the open-Parquet check with real pyarrow and DuckDB (installed into a virtualenv
# under the cargo target directory on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
# The C tests run their programs under valgrind too: install it when missing.
if ! command -v valgrind >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -q valgrind >/dev/null || $sudo sh -c 'apt-get update -q && apt-get install -y -q valgrind' >/dev/null
fi
cargo test --workspace --all-targets --no-fail-fast "$@"
# Doc examples (compiled; `no_run` ones are not executed).
cargo test --workspace --doc

source scripts/python-env.sh
# `cargo test` above built the binary (cli integration tests use it); a separate
# `cargo build` would resolve features without dev-dependencies and rebuild DataFusion.
bin="$target_dir/debug/tracelake"
test -x "$bin" || { echo "missing $bin"; exit 1; }
"$venv/bin/python" scripts/python/test_open_parquet.py "$bin"
# The C ABI from Python: ctypes + pyarrow against the library `cargo test` built.
shared="${TRACELAKE_SHARED:-$PWD/../shared}"
# `cargo test` leaves the cdylib under deps/ (only `cargo build` copies it up a level).
lib="$target_dir/debug/libtracelake_c.so"
[ -e "$lib" ] || lib="$target_dir/debug/deps/libtracelake_c.so"
"$venv/bin/python" scripts/python/test_ctypes.py "$lib" "$bin" "$shared"
