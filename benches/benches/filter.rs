//! Filter-expression latency: GetTraceSummaries pages (20 traces, newest first) for five
//! typical expressions, and a BatchGetTraces look-up by id, on an open engine (the
//! embedded case: the store is opened once, as a backend would).
//!
//! Run on a real store: `tracelake generate --count 1000000 --out g.jsonl && tracelake
//! ingest --dir /tmp/s1m g.jsonl && TRACELAKE_BENCH_STORE=/tmp/s1m cargo bench -p
//! tracelake-benches --bench filter`. Without `TRACELAKE_BENCH_STORE` the SDK corpus is
//! ingested into a temporary store. Medians are in
//! `target/criterion/filter/*/new/estimates.json`.

#![allow(clippy::expect_used, clippy::print_stderr)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tracelake::{Engine, EngineOptions, TraceQuery};

/// Expressions over the generated traffic (`tracelake generate`); they also parse and run
/// on the SDK corpus.
const EXPRESSIONS: &[(&str, &str)] = &[
    ("responsetime", "responsetime > 0.5"),
    ("service-fault", r#"service("inventory-svc") { fault }"#),
    (
        "annotation-and-status",
        r#"annotation.tenant = "acme" AND http.status = 200"#,
    ),
    (
        "edge-or-throttle",
        r#"edge("checkout-api", "inventory-svc") { error } OR throttle"#,
    ),
    (
        "rootcause",
        r#"rootcause.fault.service { name = "inventory-svc" }"#,
    ),
];

fn open() -> (Option<tempfile::TempDir>, Engine) {
    if let Some(dir) = std::env::var_os("TRACELAKE_BENCH_STORE") {
        return (
            None,
            Engine::open_read_only(dir).expect("the store in TRACELAKE_BENCH_STORE"),
        );
    }
    let shared = tracelake_benches::shared()
        .expect("the team's shared/ directory beside the checkout (or set TRACELAKE_SHARED)");
    let data =
        std::fs::read(shared.join("fixtures/sdk-python/datagrams.jsonl")).expect("the SDK corpus");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let engine = Engine::open(dir.path(), EngineOptions::default()).expect("a new store");
    engine.ingest(&data).expect("ingest");
    engine.flush().expect("flush");
    (Some(dir), engine)
}

fn bench(c: &mut Criterion) {
    let (_dir, engine) = open();
    let mut g = c.benchmark_group("filter");
    g.sample_size(10);
    for (name, expr) in EXPRESSIONS {
        let q = TraceQuery {
            filter: Some((*expr).to_owned()),
            limit: 20,
            ..TraceQuery::default()
        };
        let page = engine.trace_summaries(&q).expect("the expression runs");
        eprintln!(
            "{name}: {:?} of {} traces match",
            page.matched_count, page.traces_processed_count
        );
        g.bench_function(*name, |b| {
            b.iter(|| {
                black_box(
                    engine
                        .trace_summaries(&q)
                        .expect("the expression runs")
                        .trace_summaries
                        .len(),
                )
            })
        });
    }
    let newest = engine
        .trace_summaries(&TraceQuery {
            limit: 1,
            ..TraceQuery::default()
        })
        .expect("summaries")
        .trace_summaries
        .first()
        .map(|s| s.id.clone())
        .expect("a trace");
    g.bench_function("get-trace-by-id", |b| {
        b.iter(|| {
            black_box(
                engine
                    .get_traces(&[newest.as_str()])
                    .expect("get")
                    .traces
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
