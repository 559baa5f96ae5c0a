//! Store behaviour: reopening, upserts across flushes, the single-writer lock and WAL
//! damage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use std::sync::Arc;

use tracelake_storage::index::Index;
use tracelake_storage::manifest::FileMeta;
use tracelake_storage::{ErrorKind, Store, StoreOptions};

fn keys(rows: &[RecordBatch]) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    for b in rows {
        let t = b.column_by_name("trace_id").unwrap().as_fixed_size_binary();
        let id = b.column_by_name("id").unwrap().as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            out.push((t.value(i).to_vec(), id.value(i)));
        }
    }
    out.sort();
    out
}

fn sorted_rows(store: &Store) -> Vec<String> {
    let rows = store.snapshot().unwrap().read_all().unwrap();
    let mut docs: Vec<String> = tracelake_storage::rebuild::rebuild(&rows)
        .unwrap()
        .into_iter()
        .map(|d| d.json.to_string())
        .collect();
    docs.sort();
    docs
}

fn corpus_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for d in common::sdk_documents().into_iter().take(n) {
        out.extend_from_slice(d.as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn reopen_gives_the_same_rows_after_close_flush_and_with_a_wal() {
    let input = corpus_bytes(2000);
    let tmp = tempfile::tempdir().unwrap();
    let expected = {
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
        store.ingest(&input).unwrap();
        sorted_rows(&store)
    };
    // dropped without close: Drop closes (flushes)
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(sorted_rows(&store), expected);
    store.close().unwrap();
    drop(store);

    // with a non-empty WAL: a second store directory, no flush, process "dies" by leaking
    let tmp2 = tempfile::tempdir().unwrap();
    let store = Store::open(tmp2.path(), StoreOptions::default()).unwrap();
    store.ingest(&input[..input.len() / 2]).unwrap();
    store.flush().unwrap();
    let half = input[..input.len() / 2]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    store.ingest(&input[half..]).unwrap();
    assert!(store.stats().memtable_rows > 0);
    // A crash: the directory as it is now (WAL fsynced, memtable not flushed), lock
    // released, reopened elsewhere.
    let ro = Store::open_read_only(tmp2.path()).unwrap();
    assert!(ro.snapshot().unwrap().raw_rows() > 0);
    finish_without_lock(tmp2.path(), &expected);
}

/// Copies the store aside (as a crash would leave it, lock released) and reopens it.
fn finish_without_lock(dir: &std::path::Path, expected: &[String]) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    std::fs::remove_file(copy.path().join("LOCK")).unwrap();
    let store = Store::open(copy.path(), StoreOptions::default()).unwrap();
    assert!(store.stats().memtable_rows > 0, "the WAL was replayed");
    assert_eq!(sorted_rows(&store), expected);
    store.flush().unwrap();
    assert_eq!(sorted_rows(&store), expected);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn ingesting_twice_and_completing_fragments_leave_one_row_per_key() {
    let input = corpus_bytes(1500);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    store.ingest(&input).unwrap();
    let once = keys(&store.snapshot().unwrap().read_all().unwrap());
    // same input again, in the memtable
    store.ingest(&input).unwrap();
    assert_eq!(keys(&store.snapshot().unwrap().read_all().unwrap()), once);
    // after a flush, and again across files
    store.flush().unwrap();
    assert_eq!(keys(&store.snapshot().unwrap().read_all().unwrap()), once);
    store.ingest(&input).unwrap();
    assert_eq!(keys(&store.snapshot().unwrap().read_all().unwrap()), once);
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    assert!(
        !snap.partitions_to_resolve().is_empty(),
        "re-sent rows are flagged"
    );
    assert_eq!(keys(&snap.read_all().unwrap()), once);
    let unique: BTreeSet<_> = once.iter().collect();
    assert_eq!(unique.len(), once.len());

    // in-progress, flushed, then completed: the complete version wins; a late
    // in-progress resend never replaces it
    let edge = common::shared().join("fixtures/edge");
    let ip = std::fs::read(edge.join("in-progress.json")).unwrap();
    let done = std::fs::read(edge.join("in-progress-completed.json")).unwrap();
    store.ingest(&ip).unwrap();
    store.flush().unwrap();
    store.ingest(&done).unwrap();
    store.ingest(&ip).unwrap();
    for _ in 0..2 {
        let rows = store.snapshot().unwrap().read_all().unwrap();
        let docs = tracelake_storage::rebuild::rebuild(&rows).unwrap();
        let frag: Vec<_> = docs
            .iter()
            .filter(|d| d.id.to_string() == "70de5b6f19ff9a0b")
            .collect();
        assert_eq!(frag.len(), 1);
        assert!(frag[0].json.get("end_time").is_some());
        store.flush().unwrap();
    }
}

#[test]
fn resolving_with_sidecars_drops_the_same_rows_as_reading_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    // overlapping files: the corpus, a re-send of part of it, fragments then completions
    store.ingest(&corpus_bytes(1500)).unwrap();
    store.flush().unwrap();
    store.ingest(&corpus_bytes(600)).unwrap();
    store.flush().unwrap();
    let edge = common::shared().join("fixtures/edge");
    store
        .ingest(&std::fs::read(edge.join("in-progress.json")).unwrap())
        .unwrap();
    store.flush().unwrap();
    store
        .ingest(&std::fs::read(edge.join("in-progress-completed.json")).unwrap())
        .unwrap();
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    let parts = snap.partitions_to_resolve();
    assert!(!parts.is_empty());
    let index = |f: &FileMeta| {
        Index::open(&snap.root.join(&f.path), f.rows)
            .ok()
            .map(Arc::new)
    };
    let mut dropped = 0;
    for p in parts {
        let every_key = snap.resolve(p).unwrap().file_dropped;
        let with_sidecars = snap.resolve_with(p, &index).unwrap().file_dropped;
        assert_eq!(with_sidecars, every_key, "partition {p:?}");
        dropped += every_key.values().map(Vec::len).sum::<usize>();
    }
    assert!(dropped > 600, "the re-sent rows lose: {dropped}");
    // without sidecars the same
    let none = |_: &FileMeta| None;
    for p in snap.partitions_to_resolve() {
        assert_eq!(
            snap.resolve_with(p, &none).unwrap().file_dropped,
            snap.resolve(p).unwrap().file_dropped
        );
    }
}

#[test]
fn a_second_writer_is_refused_and_a_reader_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    store.ingest(&corpus_bytes(100)).unwrap();
    store.flush().unwrap();
    let err = Store::open(tmp.path(), StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("read-only"), "{err}");
    let ro = Store::open_read_only(tmp.path()).unwrap();
    assert_eq!(
        ro.snapshot().unwrap().raw_rows(),
        store.snapshot().unwrap().raw_rows()
    );
    assert_eq!(ro.ingest(b"{}").unwrap_err().kind(), ErrorKind::ReadOnly);
}

#[test]
fn a_torn_wal_tail_is_truncated_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    {
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
        store.ingest(&corpus_bytes(300)).unwrap();
        copy_dir(tmp.path(), copy.path());
    }
    std::fs::remove_file(copy.path().join("LOCK")).unwrap();
    // tear the newest WAL file mid-record
    let mut wals: Vec<_> = std::fs::read_dir(copy.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    wals.sort();
    let last = wals
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 100)
        .unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 37).unwrap();
    let store = Store::open(copy.path(), StoreOptions::default()).unwrap();
    let n = store.stats().memtable_rows;
    assert!(n > 0);
    // the torn document is lost (it was never acknowledged after the tear), the rest is there
    let rows = store.snapshot().unwrap().read_all().unwrap();
    let docs = tracelake_storage::rebuild::rebuild(&rows).unwrap();
    assert_eq!(docs.len(), 299);
}

#[test]
fn every_durability_mode_keeps_documents_across_close() {
    use std::time::Duration;
    use tracelake_storage::Durability;
    for durability in [
        Durability::Sync,
        Durability::Interval(Duration::from_millis(5)),
        Durability::None,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            durability,
            ..StoreOptions::default()
        };
        let store = Store::open(tmp.path(), opts.clone()).unwrap();
        store.ingest(&corpus_bytes(200)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        store.close().unwrap();
        drop(store);
        let store = Store::open(tmp.path(), opts).unwrap();
        let docs =
            tracelake_storage::rebuild::rebuild(&store.snapshot().unwrap().read_all().unwrap())
                .unwrap();
        assert_eq!(docs.len(), 200, "{durability:?}");
    }
}

#[test]
fn the_memtable_is_flushed_by_age_and_by_size() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        flush_age: Duration::from_millis(100),
        ..StoreOptions::default()
    };
    let store = Store::open(tmp.path(), opts).unwrap();
    store.ingest(&corpus_bytes(50)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().files == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.stats().files > 0, "no flush by age");
    assert_eq!(store.stats().memtable_rows, 0);

    let tmp = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        flush_rows: 500,
        flush_age: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open(tmp.path(), opts).unwrap();
    store.ingest(&corpus_bytes(1000)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().files == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(store.stats().files > 0, "no flush by size");
}

/// A store written by format v1 (data file, manifest and an unflushed WAL) stays readable
/// forever. `TRACELAKE_WRITE_V1_FIXTURE=1` recreates it (only when the format is new).
#[test]
fn format_v1_fixture_is_readable() {
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let input = corpus_bytes(60);
    let (flushed, unflushed) = input.split_at(
        input[..input.len() / 2]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1,
    );
    if std::env::var_os("TRACELAKE_WRITE_V1_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(&fixture);
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
        store.ingest(flushed).unwrap();
        store.flush().unwrap();
        store.ingest(unflushed).unwrap();
        std::fs::create_dir_all(&fixture).unwrap();
        copy_dir(tmp.path(), &fixture);
        std::fs::remove_file(fixture.join("LOCK")).unwrap();
        std::mem::forget(store); // leave the WAL unflushed, as a crash would
    }
    let expected = {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
        store.ingest(&input).unwrap();
        sorted_rows(&store)
    };
    // read-only: the flushed half
    let ro = Store::open_read_only(&fixture).unwrap();
    let half =
        tracelake_storage::rebuild::rebuild(&ro.snapshot().unwrap().read_all().unwrap()).unwrap();
    assert_eq!(half.len(), flushed.iter().filter(|&&b| b == b'\n').count());
    // writable (on a copy): the WAL is replayed too
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&fixture, copy.path());
    let store = Store::open(copy.path(), StoreOptions::default()).unwrap();
    assert_eq!(sorted_rows(&store), expected);
}

/// Point reads (`datafile::read_rows`, pages decompressed with one zstd context per
/// thread) return exactly what the parquet reader returns for the same rows: single
/// rows, ranges across pages and row groups, dictionary and nested columns, nulls.
#[test]
#[allow(clippy::single_range_in_vec_init)] // lists of row ranges, some of one
fn point_reads_equal_the_parquet_reader() {
    use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
    use tracelake_storage::datafile;

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let mut body = String::new();
    // ~150k rows: two row groups, many pages per column
    for t in 0..30_000u32 {
        let trace = format!("1-5f5e1000-{t:024x}");
        let ann = match t % 4 {
            0 => format!(r#","annotations":{{"k":"v{}","n":{t},"b":true}}"#, t % 13),
            1 => r#","annotations":{"k":"é✓"}"#.to_owned(),
            _ => String::new(),
        };
        let http = if t % 3 == 0 {
            format!(
                r#","http":{{"request":{{"method":"GET","url":"https://x/{t}"}},"response":{{"status":{}}}}}"#,
                200 + t % 5 * 100
            )
        } else {
            String::new()
        };
        let subs: Vec<String> = (0..4u32)
            .map(|s| {
                format!(
                    r#"{{"id":"{:08x}{s:08x}","name":"call{s}","start_time":1600000000.01,"end_time":1600000000.{s}95{}}}"#,
                    t + 1,
                    if s == 2 { r#","namespace":"aws","aws":{"operation":"GetItem"}"# } else { "" }
                )
            })
            .collect();
        body.push_str(&format!(
            r#"{{"trace_id":"{trace}","id":"{:016x}","name":"svc{}","start_time":1600000000,"end_time":1600000001{ann}{http}{},"subsegments":[{}]}}"#,
            t + 1,
            t % 7,
            if t % 11 == 0 { r#","fault":true"# } else { "" },
            subs.join(",")
        ));
        body.push('\n');
    }
    let report = store.ingest(body.as_bytes()).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected.first());
    store.flush().unwrap();
    let snap = store.snapshot().unwrap();
    assert_eq!(snap.files.len(), 1);
    let f = &snap.files[0];
    let sizes = datafile::row_group_sizes(&snap.root, f).unwrap();
    assert!(sizes.len() >= 2, "{sizes:?}");
    let metadata = datafile::reader_metadata(&snap.root, f).unwrap();
    let names: Vec<String> = tracelake_storage::schema::spans()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let total = f.rows as u32;
    let group_rows = sizes[0] as u32;
    let mut cases: Vec<Vec<std::ops::Range<u32>>> = vec![
        vec![0..1],
        vec![total - 1..total],
        vec![8191..8194],
        vec![group_rows - 2..group_rows + 3],
        vec![5..9, 20_000..20_004, total - 3..total],
    ];
    let mut x = 7u64;
    for _ in 0..20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let start = (x >> 33) as u32 % (total - 40);
        cases.push(vec![start..start + 1 + (x % 37) as u32]);
    }
    for ranges in cases {
        // the row groups the ranges touch, and the selection over their rows
        let mut groups = Vec::new();
        let mut selectors = Vec::new();
        let mut first = 0u32;
        for (g, &n) in sizes.iter().enumerate() {
            let end = first + n as u32;
            let inside: Vec<std::ops::Range<u32>> = ranges
                .iter()
                .filter(|r| r.start < end && r.end > first)
                .map(|r| r.start.max(first) - first..r.end.min(end) - first)
                .collect();
            if !inside.is_empty() {
                groups.push(g);
                let mut at = 0;
                for r in inside {
                    selectors.push(RowSelector::skip((r.start - at) as usize));
                    selectors.push(RowSelector::select((r.end - r.start) as usize));
                    at = r.end;
                }
                selectors.push(RowSelector::skip(n - at as usize));
            }
            first = end;
        }
        let ours = datafile::read_rows(
            &snap.root,
            f,
            &metadata,
            groups,
            RowSelection::from(selectors),
        )
        .unwrap();
        let theirs = datafile::read_columns_of_rows(&snap.root, f, &names, &ranges).unwrap();
        let ours = arrow::compute::concat_batches(&ours[0].schema(), &ours).unwrap();
        let theirs = arrow::compute::concat_batches(&theirs[0].schema(), &theirs).unwrap();
        let want: u32 = ranges.iter().map(|r| r.end - r.start).sum();
        assert_eq!(ours.num_rows() as u32, want, "{ranges:?}");
        assert_eq!(ours, theirs, "{ranges:?}");
    }
}

fn doc(trace: u32, id: u32, parent: Option<u32>) -> String {
    let parent = parent.map_or_else(String::new, |p| format!(r#","parent_id":"{p:016x}""#));
    format!(
        r#"{{"trace_id":"1-5f5e1000-{trace:024x}","id":"{id:016x}"{parent},"name":"svc","start_time":1600000000,"end_time":1600000001}}"#
    )
}

#[test]
fn files_whose_traces_continue_elsewhere_are_marked_and_rollups_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    // trace 1 in one flush; traces 2 and 3 across two flushes, trace 4 in the second
    store
        .ingest(
            format!(
                "{}\n{}\n{}",
                doc(1, 1, None),
                doc(2, 2, None),
                doc(3, 3, None)
            )
            .as_bytes(),
        )
        .unwrap();
    store.flush().unwrap();
    store.ingest(doc(4, 4, None).as_bytes()).unwrap();
    store.flush().unwrap();
    let files = store.snapshot().unwrap().files;
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| !f.shares_traces), "{files:?}");
    store
        .ingest(format!("{}\n{}", doc(3, 5, Some(3)), doc(9, 9, None)).as_bytes())
        .unwrap();
    store.flush().unwrap();
    let files = store.snapshot().unwrap().files;
    let shares: Vec<bool> = files.iter().map(|f| f.shares_traces).collect();
    assert_eq!(shares, vec![true, false, true]);
    // the newer file lists the shared trace, so readers can correct for it alone
    assert_eq!(
        files[2].shared_traces,
        Some(vec!["1-5f5e1000-000000000000000000000003".to_owned()])
    );
    assert_eq!(files[1].shared_traces, Some(Vec::new()));
    for f in files.iter() {
        assert_eq!(f.rollup_version, tracelake_storage::rollup::ROLLUP_VERSION);
        let r = tracelake_storage::rollup::read(tmp.path(), f)
            .unwrap()
            .unwrap();
        assert!(r.num_rows() > 0);
    }
    // reopening keeps the marks; a rollup file no manifest names is an orphan
    store.close().unwrap();
    drop(store);
    let stray = tmp.path().join(tracelake_storage::rollup::relative_path(
        files[0].partition,
        999,
    ));
    std::fs::copy(
        tmp.path().join(tracelake_storage::rollup::relative_path(
            files[0].partition,
            files[0].id,
        )),
        &stray,
    )
    .unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert_eq!(
        store
            .snapshot()
            .unwrap()
            .files
            .iter()
            .map(|f| f.shares_traces)
            .collect::<Vec<_>>(),
        shares
    );
    assert!(!stray.exists());
}

/// The data files under a directory, relative names.
fn parquet_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn files_the_manifest_does_not_list_are_set_aside_and_their_ids_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    store.ingest(&corpus_bytes(100)).unwrap();
    store.flush().unwrap();
    store.close().unwrap();
    drop(store);
    let flushed = parquet_under(&tmp.path().join("spans"));
    assert!(!flushed.is_empty());
    // the newest manifest is lost: the older one (the new store's, empty) is in force
    let generations = tracelake_storage::manifest::generations(tmp.path()).unwrap();
    std::fs::remove_file(&generations.last().unwrap().1).unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    assert!(parquet_under(&tmp.path().join("spans")).is_empty());
    let aside = parquet_under(&tmp.path().join("orphans"));
    assert_eq!(
        aside.len(),
        flushed.len() * 2,
        "data files and their rollups: {aside:?}"
    );
    // new files get new ids: nothing set aside is overwritten by a later one
    store.ingest(&corpus_bytes(50)).unwrap();
    store.flush().unwrap();
    let live = parquet_under(&tmp.path().join("spans"));
    assert!(
        live.iter().all(|f| !flushed.contains(f)),
        "{live:?} reuses {flushed:?}"
    );
    store.close().unwrap();
    drop(store);
    // every manifest gone and an empty WAL: the store refuses to open, naming the loss
    for (_, m) in tracelake_storage::manifest::generations(tmp.path()).unwrap() {
        std::fs::remove_file(m).unwrap();
    }
    let err = Store::open(tmp.path(), StoreOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("manifest is lost"), "{err}");
    assert_eq!(
        parquet_under(&tmp.path().join("spans")),
        live,
        "nothing moved"
    );
}
