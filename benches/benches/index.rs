//! Index sidecar benchmarks: building a sidecar from a sorted batch (the cost flush pays)
//! and probing one (the cost a selective query pays per file): a common annotation value
//! (bitmap), a rare one (hashed list), a numeric range, a flag, and a trace look-up.
//!
//! Run: `cargo bench -p tracelake-benches --bench index` (`TRACELAKE_BENCH_CORPUS` names
//! a JSON-lines file, e.g. from `tracelake generate --count 200000`).

#![allow(clippy::expect_used, clippy::print_stderr)]

use std::hint::black_box;
use std::ops::Bound;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tracelake_storage::flatten::SpanBuilder;
use tracelake_storage::index::{self, AnnValue, Column, Index};
use tracelake_storage::segment::{self, Limits, TraceId};

fn corpus() -> Vec<Vec<u8>> {
    let path = tracelake_benches::corpus_path()
        .expect("TRACELAKE_BENCH_CORPUS, or the team's shared/ directory beside the checkout");
    let data = std::fs::read(&path).expect("the corpus file");
    segment::framing::split(&data)
        .into_iter()
        .filter_map(|p| p.doc.ok().map(|d| d.into_owned()))
        .collect()
}

fn bench(c: &mut Criterion) {
    let docs = corpus();
    let limits = Limits::default();
    let mut builder = SpanBuilder::new();
    for (i, d) in docs.iter().enumerate() {
        let doc = segment::parse(d, &limits).expect("valid");
        builder.append_document(&doc, i as u64, &mut |_, _, _| true);
    }
    let batch =
        tracelake_storage::datafile::sort_rows(&builder.finish().expect("batch")).expect("sorted");
    let rows = batch.num_rows() as u64;

    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(rows));
    g.bench_function("build", |b| {
        b.iter(|| black_box(index::build(&batch).expect("index").len()))
    });
    g.finish();

    let bytes = index::build(&batch).expect("index");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("part.parquet");
    index::write(&data, &bytes).expect("write");
    eprintln!(
        "{rows} rows, sidecar {} bytes ({:.1} per row)",
        bytes.len(),
        bytes.len() as f64 / rows as f64
    );
    let idx = Index::open(&data, rows).expect("open");
    let some_trace: TraceId = idx.traces().nth(idx.trace_count() / 2).expect("a trace");

    let mut g = c.benchmark_group("index-probe");
    g.bench_function("open", |b| {
        b.iter(|| black_box(Index::open(&data, rows).expect("open").rows()))
    });
    g.bench_function("trace-rows", |b| {
        b.iter(|| black_box(idx.trace_rows(&some_trace)))
    });
    g.bench_function("flag-fault", |b| {
        b.iter(|| black_box(idx.probe(Column::Fault, b"", b"").expect("probe").len()))
    });
    for (name, key, value) in [
        ("annotation-common", "tenant", "acme"),
        ("annotation-rare", "order_id", "no-such-order"),
    ] {
        let v = AnnValue::Str(value).encode();
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    idx.probe(Column::Annotation, key.as_bytes(), &v)
                        .expect("probe")
                        .len(),
                )
            })
        });
    }
    g.bench_function("annotation-number-range", |b| {
        b.iter(|| {
            black_box(
                idx.probe_numbers(b"cart_items", Bound::Excluded(5.0), Bound::Unbounded)
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
