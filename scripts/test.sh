#!/usr/bin/env bash
# Runs the whole test suite (debug build): unit, integration, property and crash tests.
# Works on a fresh machine with a Rust toolchain; installs nothing else yet.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --no-fail-fast "$@"
# Doc examples (compiled; `no_run` ones are not executed).
cargo test --workspace --doc
