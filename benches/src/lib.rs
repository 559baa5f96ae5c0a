//! Benchmarks for Tracelake: criterion micro-benchmarks in `benches/` (`parse`, `index`:
//! sidecar build and probes, `filter`: filter expressions over a store), and the
//! end-to-end harness `tracelake-harness` (`src/bin/harness/main.rs`, run by
//! `scripts/bench.sh`) that measures the targets of BENCHMARKS.md against DuckDB and
//! plain DataFusion on the same files. Results: `RESULTS.md`.

use std::path::PathBuf;

/// The team's `shared/` directory beside the checkout, or `TRACELAKE_SHARED`.
pub fn shared() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TRACELAKE_SHARED") {
        return Some(PathBuf::from(p));
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("fixtures").is_dir())
}

/// The corpus benches read: `TRACELAKE_BENCH_CORPUS` (a JSON-lines file, e.g. from
/// `tracelake generate`), else the SDK corpus in `shared/`.
pub fn corpus_path() -> Option<PathBuf> {
    std::env::var_os("TRACELAKE_BENCH_CORPUS")
        .map(PathBuf::from)
        .or_else(|| Some(shared()?.join("fixtures/sdk-python/datagrams.jsonl")))
}
