#!/usr/bin/env bash
# The end-to-end benchmark harness: generates documents, ingests them into a store and
# prints one line per target of BENCHMARKS.md with Tracelake's figure, DuckDB's and plain
# DataFusion's figures on the same Parquet files, and the ratios.
#   bash scripts/bench.sh --quick          # 1M documents, a few minutes
#   bash scripts/bench.sh                  # 100M documents (~15 GB store), run by hand
#   bash scripts/bench.sh --quick --reuse  # measure again on the store already built
# Other options: `--docs N`, `--runs N`, `--markdown FILE`; the store and results go to
# $TRACELAKE_BENCH_WORK (default target/bench). DuckDB is installed into a virtualenv
# under the target directory on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tracelake-cli -p tracelake-benches --bins
source scripts/python-env.sh
work="${TRACELAKE_BENCH_WORK:-$target_dir/bench}"
exec "$target_dir/release/tracelake-harness" --work "$work" \
  --tracelake "$target_dir/release/tracelake" --python "$venv/bin/python" "$@"
