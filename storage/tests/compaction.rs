//! Compaction and the storage side of retention: same rows before and after, sidecars
//! rebuilt, inputs deleted only once no snapshot holds them, partitions dropped, pins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use tracelake_storage::manifest::FileMeta;
use tracelake_storage::rollup::{self, Row};
use tracelake_storage::{CompactionOptions, PartitionKey, Store, StoreOptions, TraceId};

fn docs_sorted(rows: &[RecordBatch]) -> Vec<String> {
    let mut docs: Vec<String> = tracelake_storage::rebuild::rebuild(rows)
        .unwrap()
        .into_iter()
        .map(|d| d.json.to_string())
        .collect();
    docs.sort();
    docs
}

fn all_docs(store: &Store) -> Vec<String> {
    docs_sorted(&store.snapshot().unwrap().read_all().unwrap())
}

/// The SDK corpus ingested in many small flushes, with every document sent twice (the
/// second time after a flush) and an in-progress fragment completed in a later file:
/// traces split across files, upserts across files.
fn fragmented_store(dir: &Path) -> Store {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let docs = common::sdk_documents();
    let edge = common::shared().join("fixtures/edge");
    store
        .ingest(&std::fs::read(edge.join("in-progress.json")).unwrap())
        .unwrap();
    store.flush().unwrap();
    for (i, chunk) in docs.chunks(97).enumerate() {
        store.ingest(chunk.join("\n").as_bytes()).unwrap();
        store.flush().unwrap();
        if i % 3 == 0 {
            store.ingest(chunk.join("\n").as_bytes()).unwrap();
        }
    }
    store
        .ingest(&std::fs::read(edge.join("in-progress-completed.json")).unwrap())
        .unwrap();
    store.flush().unwrap();
    // a second hour, its traces split over two files
    for part in 0..2 {
        let docs: Vec<String> = (0..50u32).map(|t| other_hour(t, part)).collect();
        store.ingest(docs.join("\n").as_bytes()).unwrap();
        store.flush().unwrap();
    }
    store
}

fn other_hour(trace: u32, part: u32) -> String {
    let parent = if part == 0 {
        String::new()
    } else {
        format!(r#","parent_id":"{:016x}""#, u64::from(trace) * 2 + 1)
    };
    format!(
        r#"{{"trace_id":"1-5f5e1000-{trace:024x}","id":"{:016x}"{parent},"name":"svc-{}","start_time":1600000000.{part},"end_time":1600000001,"fault":{}}}"#,
        u64::from(trace) * 2 + 1 + u64::from(part),
        trace % 3,
        trace.is_multiple_of(7)
    )
}

fn files_on_disk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("spans"), root.join("rollups")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// What the manifest's files account for on disk: data, index and rollup files.
fn expected_on_disk(files: &[FileMeta]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        out.push(f.path.clone());
        let side = tracelake_storage::index::sidecar_path(Path::new(&f.path));
        out.push(side.to_string_lossy().into_owned());
        if f.rollup_version > 0 {
            out.push(rollup::relative_path(f.partition, f.id));
        }
    }
    out.sort();
    out
}

/// Rollup rows merged by key, with response times rounded (summation order differs).
fn merged_rollups(root: &Path, files: &[FileMeta]) -> BTreeMap<String, (u64, u64, u64, i64)> {
    let mut out = BTreeMap::new();
    for f in files {
        let batch = rollup::read(root, f).unwrap().expect("rollup sidecar");
        for Row {
            minute_ns,
            edge,
            node,
            caller,
            stats,
        } in rollup::rows(&batch).unwrap()
        {
            let key = format!("{minute_ns} {edge} {node:?} {caller:?}");
            let e = out.entry(key).or_insert((0, 0, 0, 0.0f64));
            e.0 += stats.total;
            e.1 += stats.error + stats.fault;
            e.2 += stats.roots;
            e.3 += stats.response_time;
        }
    }
    out.into_iter()
        .map(|(k, (a, b, c, rt))| (k, (a, b, c, (rt * 1e6).round() as i64)))
        .collect()
}

fn rollups_of_rows(rows: &[RecordBatch]) -> BTreeMap<String, (u64, u64, u64, i64)> {
    let all = arrow::compute::concat_batches(&tracelake_storage::schema::spans(), rows).unwrap();
    let sorted = tracelake_storage::datafile::sort_rows(&all).unwrap();
    let batch = rollup::build(&sorted).unwrap();
    let mut out = BTreeMap::new();
    for r in rollup::rows(&batch).unwrap() {
        let key = format!("{} {} {:?} {:?}", r.minute_ns, r.edge, r.node, r.caller);
        out.insert(
            key,
            (
                r.stats.total,
                r.stats.error + r.stats.fault,
                r.stats.roots,
                (r.stats.response_time * 1e6).round() as i64,
            ),
        );
    }
    out
}

#[test]
fn compaction_keeps_every_row_resolves_upserts_and_rebuilds_sidecars() {
    let tmp = tempfile::tempdir().unwrap();
    let store = fragmented_store(tmp.path());
    let before = all_docs(&store);
    let files = store.snapshot().unwrap().files;
    assert!(files.len() > 5, "{}", files.len());
    assert!(files.iter().any(|f| f.shadows), "upserts across files");
    assert!(files.iter().any(|f| f.shares_traces), "traces across files");
    let rows_before: u64 = files.iter().map(|f| f.rows).sum();

    let opts = CompactionOptions::default();
    // bulk-loaded hours long past are due; the backlog says so
    let now = i64::MAX;
    let due = store.compaction_due(&opts, now);
    assert!(!due.is_empty());
    let held = store.snapshot().unwrap();
    let mut replaced = 0;
    let mut passes = 0;
    // more files than one merge takes (max_inputs): passes until nothing is due
    loop {
        let due = store.compaction_due(&opts, now);
        if due.is_empty() {
            break;
        }
        for p in &due {
            let r = store
                .compact_partition(*p, &opts, &|_| {})
                .unwrap()
                .unwrap();
            assert_eq!(r.output_files, 1);
            assert!(r.merge.input_files <= opts.max_inputs);
            replaced += r.merge.replaced_rows;
            assert_eq!(
                r.merge.output_rows + r.merge.replaced_rows,
                r.merge.input_rows
            );
        }
        passes += 1;
        assert!(passes < 10);
    }
    assert!(passes >= 2, "{passes}");
    assert!(replaced > 0, "older versions left out");
    let after = store.snapshot().unwrap();
    let mut parts: Vec<PartitionKey> = files.iter().map(|f| f.partition).collect();
    parts.sort();
    parts.dedup();
    assert_eq!(after.files.len(), parts.len());
    assert_eq!(
        after.files.iter().map(|f| f.rows).sum::<u64>(),
        rows_before - replaced
    );
    // same documents; one row per key; nothing left to resolve or correct
    assert_eq!(all_docs(&store), before);
    assert!(
        after.partitions_to_resolve().is_empty(),
        "{:?} {:?}",
        after.files,
        after
            .memory
            .iter()
            .map(|m| (m.partition, m.shadows))
            .collect::<Vec<_>>()
    );
    for f in after.files.iter() {
        assert!(!f.shares_traces && !f.shadows, "{f:?}");
        assert_eq!(f.shared_traces, Some(Vec::new()));
        let index = tracelake_storage::index::Index::open(&tmp.path().join(&f.path), f.rows)
            .expect("index sidecar rebuilt");
        index.verify().unwrap();
    }
    // the rebuilt rollups are those of the resolved rows
    let resolved = after.read_all().unwrap();
    assert_eq!(
        merged_rollups(tmp.path(), &after.files),
        rollups_of_rows(&resolved)
    );

    // a snapshot taken before still reads its (replaced) files...
    assert_eq!(docs_sorted(&held.read_all().unwrap()), before);
    assert_ne!(files_on_disk(tmp.path()), expected_on_disk(&after.files));
    // ...which go once it is dropped
    drop(held);
    drop(files);
    store.collect_garbage();
    assert_eq!(files_on_disk(tmp.path()), expected_on_disk(&after.files));

    // nothing more to do; reopening gives the same
    assert!(store.compaction_due(&opts, now).is_empty());
    for p in &parts {
        assert!(
            store
                .compact_partition(*p, &opts, &|_| {})
                .unwrap()
                .is_none()
        );
    }
    store.close().unwrap();
    drop(store);
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(all_docs(&store), before);
}

#[test]
fn outputs_are_cut_between_traces_and_small_inputs_merge_first() {
    let tmp = tempfile::tempdir().unwrap();
    let store = fragmented_store(tmp.path());
    let before = all_docs(&store);
    // one pass over every file, small outputs: cut only between traces
    let opts = CompactionOptions {
        max_file_bytes: 20_000,
        chunk_rows: 64,
        max_inputs: 1000,
        ..Default::default()
    };
    for p in store.compaction_due(&opts, i64::MAX) {
        let files = store.snapshot().unwrap().partition_file_ids(p).len();
        let r = store.compact_partition(p, &opts, &|_| {}).unwrap().unwrap();
        assert_eq!(r.merge.input_files, files);
    }
    assert_eq!(all_docs(&store), before);
    let snap = store.snapshot().unwrap();
    assert!(snap.partitions_to_resolve().is_empty());
    let mut by: BTreeMap<PartitionKey, Vec<&FileMeta>> = BTreeMap::new();
    for f in snap.files.iter() {
        by.entry(f.partition).or_default().push(f);
    }
    assert!(by.values().any(|v| v.len() > 3), "small outputs");
    for fs in by.values() {
        let mut ranges: Vec<(&str, &str)> = fs
            .iter()
            .map(|f| (f.min_trace_id.as_str(), f.max_trace_id.as_str()))
            .collect();
        ranges.sort();
        for w in ranges.windows(2) {
            assert!(w[0].1 < w[1].0, "a trace split across outputs: {ranges:?}");
        }
        assert!(fs.iter().all(|f| !f.shares_traces && !f.shadows));
    }
    drop(snap);
    assert!(store.compaction_due(&opts, i64::MAX).is_empty());
}

#[test]
fn merges_of_a_few_inputs_at_a_time_come_to_rest_with_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let store = fragmented_store(tmp.path());
    let before = all_docs(&store);
    let opts = CompactionOptions {
        max_file_bytes: 40_000,
        chunk_rows: 64,
        max_inputs: 4,
        ..Default::default()
    };
    let mut passes = 0;
    loop {
        let due = store.compaction_due(&opts, i64::MAX);
        if due.is_empty() {
            break;
        }
        for p in due {
            let r = store.compact_partition(p, &opts, &|_| {}).unwrap().unwrap();
            assert!(r.merge.input_files <= 4);
        }
        passes += 1;
        assert!(passes < 100);
        assert_eq!(all_docs(&store), before);
    }
    assert!(passes > 2);
    // traces still split between files of different passes are marked for readers
    let snap = store.snapshot().unwrap();
    for f in snap.files.iter() {
        let overlaps = snap.files.iter().any(|g| {
            g.id != f.id
                && g.partition == f.partition
                && g.min_trace_id <= f.max_trace_id
                && f.min_trace_id <= g.max_trace_id
        });
        if !overlaps {
            continue;
        }
        let index =
            tracelake_storage::index::Index::open(&tmp.path().join(&f.path), f.rows).unwrap();
        let split = snap
            .files
            .iter()
            .filter(|g| g.id != f.id && g.partition == f.partition)
            .any(|g| {
                let other =
                    tracelake_storage::index::Index::open(&tmp.path().join(&g.path), g.rows)
                        .unwrap();
                index.traces().any(|t| other.trace_rows(&t).is_some())
            });
        assert!(!split || f.shares_traces, "{f:?}");
    }
}

#[test]
fn queries_during_compaction_see_the_same_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(fragmented_store(tmp.path()));
    let before = all_docs(&store);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop, before) = (Arc::clone(&store), Arc::clone(&stop), before.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || reads == 0 {
                assert_eq!(all_docs(&store), before);
                reads += 1;
            }
            reads
        })
    };
    let opts = CompactionOptions::default();
    for p in store.compaction_due(&opts, i64::MAX) {
        store.compact_partition(p, &opts, &|_| {}).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    assert!(reader.join().unwrap() > 0);
}

#[test]
fn dropping_partitions_and_keeping_chosen_traces() {
    let tmp = tempfile::tempdir().unwrap();
    let store = fragmented_store(tmp.path());
    let snap = store.snapshot().unwrap();
    let mut parts: Vec<PartitionKey> = snap.files.iter().map(|f| f.partition).collect();
    parts.sort();
    parts.dedup();
    assert!(parts.len() >= 2, "{parts:?}");
    let rows = snap.read_all().unwrap();
    drop(snap);
    let trace_of = |d: &serde_json::Value| d["trace_id"].as_str().unwrap().to_owned();
    let docs: Vec<serde_json::Value> = tracelake_storage::rebuild::rebuild(&rows)
        .unwrap()
        .into_iter()
        .map(|d| d.json)
        .collect();

    // keep one trace of the first partition
    let first = parts[0];
    let in_first: Vec<String> = docs
        .iter()
        .filter(|d| {
            let t = TraceId::parse(&trace_of(d)).unwrap();
            PartitionKey::for_document(&t, (d["start_time"].as_f64().unwrap() * 1e9) as i64)
                == first
        })
        .map(trace_of)
        .collect();
    let keep = TraceId::parse(&in_first[0]).unwrap();
    let r = store
        .retain_traces(first, &|t| *t == keep, &|_| {})
        .unwrap();
    assert!(r.merge.dropped_rows > 0);
    let left = store.snapshot().unwrap();
    let first_files: Vec<&FileMeta> = left.files.iter().filter(|f| f.partition == first).collect();
    assert_eq!(first_files.len(), 1);
    assert_eq!(first_files[0].min_trace_id, first_files[0].max_trace_id);
    let expected: Vec<String> = {
        let mut v: Vec<String> = docs
            .iter()
            .filter(|d| !in_first.contains(&trace_of(d)) || trace_of(d) == in_first[0])
            .map(|d| d.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(all_docs(&store), expected);

    // dropping a partition: its files disappear from the manifest, then from disk
    let (files, bytes) = store.drop_partitions(&[parts[1]]).unwrap();
    assert!(files > 0 && bytes > 0);
    drop(left);
    store.collect_garbage();
    let now = store.snapshot().unwrap();
    assert!(now.files.iter().all(|f| f.partition != parts[1]));
    assert_eq!(files_on_disk(tmp.path()), expected_on_disk(&now.files));
    assert_eq!(store.drop_partitions(&[parts[1]]).unwrap(), (0, 0));

    // pins persist in the manifest
    let t = TraceId::parse(&in_first[0]).unwrap();
    assert_eq!(store.set_pins(&[t], true).unwrap(), 1);
    assert_eq!(store.set_pins(&[t], true).unwrap(), 0);
    store.close().unwrap();
    drop(store);
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.pins(), vec![t]);
    assert_eq!(store.set_pins(&[t], false).unwrap(), 1);
    assert!(store.pins().is_empty());
    let ro = Store::open_read_only(tmp.path()).unwrap();
    assert!(ro.drop_partitions(&[first]).is_err());
    assert!(ro.set_pins(&[t], true).is_err());
    let _ = ro
        .compact_partition(first, &CompactionOptions::default(), &|_| {})
        .map(|r| assert!(r.is_none()));
    let rows = store.snapshot().unwrap().read_all().unwrap();
    assert!(rows.iter().map(RecordBatch::num_rows).sum::<usize>() > 0);
    let _ = rows[0].column(0).as_fixed_size_binary();
}
