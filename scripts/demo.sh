#!/usr/bin/env bash
# Builds Tracelake (release) and runs the demo: generate ~200k X-Ray documents, ingest
# them durably into an embedded store, and show what Tracelake answers.
# The first build compiles DataFusion in release mode: about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p tracelake-cli --bin tracelake -- demo --dir "${TRACELAKE_DEMO_DIR:-target/tracelake-demo}" "$@"
