//! Parser benchmark: the typed segment model through sonic-rs (production) and through
//! serde_json (the alternative), plus parse + flatten into Arrow.
//!
//! Run: `cargo bench -p tracelake-benches --bench parse`

#![allow(clippy::expect_used, clippy::print_stderr)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tracelake_storage::flatten::SpanBuilder;
use tracelake_storage::segment::{self, Limits};

/// The SDK corpus, or the JSON-lines file named by `TRACELAKE_BENCH_CORPUS` (for example
/// `tracelake generate --count 20000`).
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
    let bytes: usize = docs.iter().map(Vec::len).sum();
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(docs.len() as u64));
    g.bench_function("sonic-rs typed", |b| {
        b.iter(|| {
            for d in &docs {
                black_box(segment::parse(d, &limits).expect("valid").id);
            }
        })
    });
    g.bench_function("serde_json typed", |b| {
        b.iter(|| {
            for d in &docs {
                black_box(segment::parse_serde_json(d, &limits).expect("valid").id);
            }
        })
    });
    g.bench_function("serde_json Value", |b| {
        b.iter(|| {
            for d in &docs {
                black_box(serde_json::from_slice::<serde_json::Value>(d).expect("valid"));
            }
        })
    });
    g.bench_function("sonic-rs typed + flatten", |b| {
        b.iter(|| {
            let mut builder = SpanBuilder::new();
            for (i, d) in docs.iter().enumerate() {
                let doc = segment::parse(d, &limits).expect("valid");
                builder.append_document(&doc, i as u64, &mut |_, _, _| true);
            }
            black_box(builder.finish().expect("batch"));
        })
    });
    g.finish();
    eprintln!(
        "corpus: {} documents, {} bytes, mean {} bytes",
        docs.len(),
        bytes,
        bytes / docs.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
