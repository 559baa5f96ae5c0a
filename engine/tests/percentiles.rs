//! Latency percentiles end to end: rollups written at flush against exact scans and a
//! SQL oracle, boundary invariance across files and buckets, modes and errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::shared;

use std::collections::BTreeMap;

use tracelake::{
    Answered, Engine, EngineOptions, ErrorKind, GroupBy, Mode, PercentileQuery, Percentiles,
};

const ALPHA: f64 = 0.01;

fn corpus() -> Vec<u8> {
    std::fs::read(shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap()
}

fn engine_with(dir: &std::path::Path, flush_rows: usize) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            flush_rows,
            maintenance_interval: None,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

/// The corpus, flushed once (one file per partition).
fn one_file_store(dir: &std::path::Path) -> Engine {
    let e = engine_with(dir, usize::MAX);
    e.ingest(&corpus()).unwrap();
    e.flush().unwrap();
    e
}

fn ask(e: &Engine, by: GroupBy, mode: Mode) -> Percentiles {
    let p = e
        .percentiles(&PercentileQuery {
            by: by.clone(),
            mode,
            quantiles: vec![0.0, 0.25, 0.5, 0.9, 0.99, 1.0],
            ..PercentileQuery::default()
        })
        .unwrap();
    // every key names fields of `key_fields`, in its order (the C ABI's columns)
    let fields = by.key_fields();
    for g in &p.groups {
        let mut at = 0;
        for (k, _) in &g.key {
            at += fields[at..]
                .iter()
                .position(|f| f == k)
                .unwrap_or_else(|| panic!("{by:?}: key {k:?} not in {fields:?} after {at}"))
                + 1;
        }
    }
    p
}

type Groups = BTreeMap<Vec<(String, String)>, (u64, Vec<f64>)>;

fn groups(p: &Percentiles) -> Groups {
    p.groups
        .iter()
        .map(|g| {
            (
                g.key
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
                (g.count, g.values.clone()),
            )
        })
        .collect()
}

/// Sorted response times of each real service node, by SQL (the oracle).
fn oracle(e: &Engine) -> BTreeMap<(String, String), Vec<f64>> {
    let rows = e
        .sql(
            "SELECT name, coalesce(origin, '') AS t, (end_ns - start_ns) AS ns FROM spans \
             WHERE kind = 0 AND end_ns IS NOT NULL AND NOT in_progress ORDER BY ns",
        )
        .unwrap()
        .to_json_rows()
        .unwrap();
    let mut out: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in rows {
        let key = (
            r["name"].as_str().unwrap().to_owned(),
            r["t"].as_str().unwrap().to_owned(),
        );
        out.entry(key)
            .or_default()
            .push(r["ns"].as_i64().unwrap() as f64 / 1e9);
    }
    out
}

fn node(p: &Groups, name: &str, kind: &str) -> Option<(u64, Vec<f64>)> {
    p.iter()
        .find(|(k, _)| {
            k.iter().any(|(f, v)| f == "service" && v == name)
                && k.iter().any(|(f, v)| f == "type" && v == kind)
        })
        .map(|(_, v)| v.clone())
}

#[test]
fn fast_answers_come_from_rollups_within_one_percent_and_exact_ones_equal_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let e = one_file_store(tmp.path());
    let fast = ask(&e, GroupBy::Service, Mode::Auto);
    assert_eq!(fast.mode, Answered::Fast);
    assert_eq!(fast.relative_error, ALPHA);
    assert!(fast.partitions_from_rollups > 0);
    assert_eq!(fast.partitions_scanned, 0);
    let exact = ask(&e, GroupBy::Service, Mode::Exact);
    assert_eq!(exact.mode, Answered::Exact);
    assert_eq!(exact.relative_error, 0.0);
    let (fast_g, exact_g) = (groups(&fast), groups(&exact));
    assert_eq!(
        fast_g.keys().collect::<Vec<_>>(),
        exact_g.keys().collect::<Vec<_>>()
    );

    let truth = oracle(&e);
    assert!(truth.len() >= 4, "{truth:?}");
    let qs = &fast.quantiles;
    for ((name, kind), v) in &truth {
        let (fc, fv) = node(&fast_g, name, kind).unwrap();
        let (ec, ev) = node(&exact_g, name, kind).unwrap();
        assert_eq!(fc, v.len() as u64);
        assert_eq!(ec, v.len() as u64);
        for (i, q) in qs.iter().enumerate() {
            let rank = q * (v.len() - 1) as f64;
            let (lo, hi) = (v[rank.floor() as usize], v[rank.ceil() as usize]);
            let cont = lo + (hi - lo) * (rank - rank.floor());
            assert!((ev[i] - cont).abs() <= 1e-12 * cont.max(1.0), "{name} q{q}");
            assert!(
                (fv[i] - cont).abs() <= ALPHA * cont + 1e-9,
                "{name} q{q}: fast {} not within 1% of the exact {cont}",
                fv[i]
            );
        }
    }
    // inferred nodes: the SQLite database and the uninstrumented HTTP endpoint
    assert!(node(&fast_g, ":memory:", "Database::SQL").is_some());
    assert!(node(&fast_g, "127.0.0.1", "remote").is_some());
}

/// Traces the store's files list as split across files (from the manifest).
fn split_traces(dir: &std::path::Path) -> usize {
    let manifests: Vec<std::path::PathBuf> = tracelake_storage::manifest::generations(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let bytes = std::fs::read(manifests.last().unwrap()).unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes[12..]).unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["shared_traces"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn the_same_data_split_across_files_and_buckets_gives_the_same_answers() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = one_file_store(a.path());
    // many small files: flush boundaries cut traces, so partitions are scanned
    let many = engine_with(b.path(), 2_000);
    for chunk in corpus()
        .split(|c| *c == b'\n')
        .collect::<Vec<_>>()
        .chunks(700)
    {
        many.ingest(&chunk.join(&b'\n')).unwrap();
    }
    many.flush().unwrap();
    assert!(many.stats().files > one.stats().files);

    // flushes split traces across files, and the files list them
    assert!(
        split_traces(b.path()) > 0,
        "small flushes should split traces"
    );
    for by in [GroupBy::Service, GroupBy::Edge, GroupBy::All] {
        let (x, y) = (
            ask(&one, by.clone(), Mode::Auto),
            ask(&many, by.clone(), Mode::Auto),
        );
        assert_eq!(x.mode, Answered::Fast);
        assert_eq!(y.mode, Answered::Fast);
        // rollups answer, corrected for the split traces
        assert_eq!(y.partitions_scanned, 0, "{by:?}");
        assert!(y.partitions_from_rollups > 0, "{by:?}");
        // the same values in the same sketch bins, whatever the split: exact counts,
        // and quantiles equal up to the exact bounds kept beside the bins
        let (gx, gy) = (groups(&x), groups(&y));
        assert_eq!(
            gx.keys().collect::<Vec<_>>(),
            gy.keys().collect::<Vec<_>>(),
            "{by:?}"
        );
        for (k, (n, v)) in &gx {
            let (m, w) = &gy[k];
            assert_eq!(n, m, "{by:?} {k:?}");
            for (a, b) in v.iter().zip(w) {
                assert!(
                    (a - b).abs() <= 2.0 * ALPHA * a.abs().max(1e-9),
                    "{by:?} {k:?}: {a} vs {b}"
                );
            }
        }
        let (ex, ey) = (
            ask(&one, by.clone(), Mode::Exact),
            ask(&many, by.clone(), Mode::Exact),
        );
        assert_eq!(groups(&ex), groups(&ey), "{by:?} exact");
    }
    // buckets of 1 and 5 minutes hold the same values in all
    for e in [&one, &many] {
        let total = |period_s| {
            let p = ask(e, GroupBy::Time { period_s }, Mode::Auto);
            assert_eq!(p.mode, Answered::Fast);
            (
                p.groups.iter().map(|g| g.count).sum::<u64>(),
                p.groups.iter().map(|g| g.sum).sum::<f64>(),
            )
        };
        let (n1, s1) = total(60);
        let (n5, s5) = total(300);
        let all = ask(e, GroupBy::All, Mode::Auto);
        assert_eq!(n1, n5);
        assert_eq!(n1, all.groups[0].count);
        assert!((s1 - s5).abs() < 1e-6 * s1);
    }
}

#[test]
fn edges_cover_real_inferred_and_client_callees() {
    let tmp = tempfile::tempdir().unwrap();
    let e = one_file_store(tmp.path());
    let p = ask(&e, GroupBy::Edge, Mode::Auto);
    let has = |caller: &str, caller_type: &str, callee: &str, kind: &str| {
        p.groups.iter().any(|g| {
            let f = |n: &str| g.key.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
            f("caller") == Some(caller)
                && f("caller_type") == Some(caller_type)
                && f("service") == Some(callee)
                && f("type") == Some(kind)
        })
    };
    for entry in ["checkout-api", "cart-api", "search-api"] {
        assert!(
            has(entry, "", "inventory-svc", ""),
            "{entry} -> inventory-svc"
        );
        assert!(has(entry, "client", entry, ""), "client -> {entry}");
        assert!(
            has(entry, "", ":memory:", "Database::SQL"),
            "{entry} -> SQLite"
        );
    }
}

#[test]
fn filters_histograms_other_groupings_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let e = one_file_store(tmp.path());
    let q = |by: GroupBy, filter: Option<&str>, mode: Mode| {
        e.percentiles(&PercentileQuery {
            by,
            filter: filter.map(str::to_owned),
            mode,
            histogram: true,
            ..PercentileQuery::default()
        })
    };
    // a filter selects traces: exact, and only those traces' segments count
    let all = q(GroupBy::All, None, Mode::Auto).unwrap();
    let faulty = q(GroupBy::All, Some("fault"), Mode::Auto).unwrap();
    assert_eq!(faulty.mode, Answered::Exact);
    assert!(
        faulty
            .exact_because
            .as_deref()
            .is_some_and(|w| w.contains("filter"))
    );
    assert!(faulty.groups[0].count < all.groups[0].count);
    assert!(faulty.groups[0].count > 0);
    let err = q(GroupBy::All, Some("fault"), Mode::Fast).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("fast mode cannot answer"), "{err}");
    // histograms hold every value once
    for g in &all.groups {
        let h = g.histogram.as_ref().unwrap();
        assert_eq!(h.iter().map(|(_, c)| c).sum::<u64>(), g.count);
    }
    // by URL and by duration: exact, with groups
    let urls = q(GroupBy::HttpUrl, None, Mode::Auto).unwrap();
    assert_eq!(urls.mode, Answered::Exact);
    assert!(urls.groups.len() > 1);
    let d = e
        .percentiles(&PercentileQuery {
            metric: tracelake::Metric::Duration,
            by: GroupBy::Service,
            ..PercentileQuery::default()
        })
        .unwrap();
    assert_eq!(d.mode, Answered::Exact);
    assert_eq!(d.groups.len(), 3, "{:?}", d.groups);
    // bad requests say what is wrong
    let bad = e
        .percentiles(&PercentileQuery {
            quantiles: vec![99.0],
            ..PercentileQuery::default()
        })
        .unwrap_err();
    assert!(bad.to_string().contains("outside [0, 1]"), "{bad}");
}

#[test]
fn sql_over_rollups_merges_the_same_sketches() {
    let tmp = tempfile::tempdir().unwrap();
    let e = one_file_store(tmp.path());
    let rows = e
        .sql(
            "SELECT name, type, sum(total_count) AS n, sketch_count(sketch_merge(sketch)) AS c, \
             sketch_quantile(sketch_merge(sketch), 0.5) AS p50 \
             FROM rollups WHERE entity = 'node' GROUP BY name, type ORDER BY name, type",
        )
        .unwrap()
        .to_json_rows()
        .unwrap();
    let fast = groups(&ask(&e, GroupBy::Service, Mode::Fast));
    assert!(rows.len() >= 5, "{rows:?}");
    for r in &rows {
        let (name, kind) = (r["name"].as_str().unwrap(), r["type"].as_str().unwrap());
        let (count, values) = node(&fast, name, kind).unwrap();
        assert_eq!(r["n"].as_u64(), Some(count), "{name}");
        assert_eq!(r["c"].as_u64(), Some(count), "{name}");
        // quantiles of the ask above: [0, 0.25, 0.5, ...]
        assert_eq!(r["p50"].as_f64(), Some(values[2]), "{name}");
    }
    let bad = e
        .sql("SELECT sketch_quantile(sketch, 2.0) FROM rollups")
        .unwrap_err();
    assert!(bad.to_string().contains("outside [0, 1]"), "{bad}");
}
