//! Benchmarks for Tracelake: see `benches/` (criterion). The end-to-end harness arrives
//! with the "Indexes, pruning and the benchmark harness" issue.
