#!/usr/bin/env bash
# Runs fuzz targets under libFuzzer (cargo-fuzz, nightly): scripts/fuzz.sh [MINUTES] [TARGET...]
#
# MINUTES per target (default 30); all targets when none are named. FUZZ_JOBS targets
# run at a time (default: one per core), each at low priority (nice 10). New inputs go to
# target/fuzz-corpus/<target> (the checked-in fuzz/corpus/<target> is read, not grown);
# crashes go to fuzz/artifacts/<target>/. Every crash found is meant to be minimized
# (`cargo +nightly fuzz tmin <target> <file>`) and checked into fuzz/corpus/<target>/,
# where the ordinary test suite replays it. A summary of runs per target is appended to
# target/fuzz-report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(segment filter wal manifest index sketch differential)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
rustup toolchain list | grep -q nightly || { echo "cargo-fuzz needs a nightly toolchain (rustup toolchain install nightly)"; exit 1; }
shared="${TRACELAKE_SHARED:-$PWD/../shared}"
cargo +nightly fuzz build --fuzz-dir fuzz
report="$PWD/target/fuzz-report.txt"
mkdir -p target
parallel="${FUZZ_JOBS:-$(nproc)}"

# One target for $minutes: its log, then a line of the summary.
fuzz_one() {
  local t="$1" work="target/fuzz-corpus/$1" log="target/fuzz-$1.log"
  mkdir -p "$work" "fuzz/artifacts/$t"
  local seeds=("fuzz/corpus/$t") extra=(-max_len=65536)
  case "$t" in
    segment) [ -d "$shared/fixtures/edge" ] && seeds+=("$shared/fixtures/edge") ;;
    filter) extra+=(-dict=fuzz/dict/filter.dict) ;;
    differential) extra=(-max_len=512) ;;
  esac
  echo "== $t for $minutes min (log: $log)"
  local rc=0
  nice -n 10 cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$work" "${seeds[@]}" -- \
    -max_total_time=$((minutes * 60)) -rss_limit_mb=4096 -timeout=60 \
    -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || rc=$?
  local runs secs cpu crashes
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1 | awk '{print $5}' || true)
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "$(date -u +%FT%TZ) $t minutes=$minutes runs=${runs:-?} seconds=${secs:-?} exit=$rc artifacts=$crashes corpus=$(ls "$work" | wc -l) concurrent=$parallel" | tee -a "$report"
}

for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait
