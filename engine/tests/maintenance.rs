//! Maintenance end to end: answers unchanged by compaction (before, during, after),
//! retention by age, size, keep rules and pins with an injected clock, dry runs, and the
//! background thread.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::shared;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracelake::{
    Clock, Engine, EngineOptions, ErrorKind, GraphQuery, GroupBy, KeepRule, Mode, PercentileQuery,
    RetentionPolicy,
};

#[derive(Debug)]
struct TestClock(Mutex<SystemTime>);

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

fn at(secs: u64) -> Arc<TestClock> {
    Arc::new(TestClock(Mutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    )))
}

/// 2026-11-21T07:00Z: the hour of the SDK corpus.
const CORPUS_HOUR: u64 = 1_795_244_400;

fn corpus() -> Vec<u8> {
    std::fs::read(shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap()
}

/// Traces of another hour (2020-09-13T12Z), some faulty or slow, in two files.
fn old_hour() -> Vec<u8> {
    let mut out = String::new();
    for t in 0..40u32 {
        let start = 1_600_000_000.0 + f64::from(t);
        let (fault, rt) = (t % 10 == 0, if t % 7 == 0 { 4.0 } else { 0.2 });
        out.push_str(&format!(
            r#"{{"trace_id":"1-5f5e1000-{t:024x}","id":"{:016x}","name":"old-svc","start_time":{start},"end_time":{},"fault":{fault}}}"#,
            t + 1,
            start + rt
        ));
        out.push('\n');
    }
    out.into_bytes()
}

fn open(dir: &std::path::Path, clock: Arc<TestClock>) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            flush_rows: 300,
            maintenance_interval: None,
            clock,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

/// The corpus and the old hour, flushed into many small files.
fn fragmented(dir: &std::path::Path, clock: Arc<TestClock>) -> Engine {
    let e = open(dir, clock);
    let data = corpus();
    let lines: Vec<&[u8]> = data.split(|c| *c == b'\n').collect();
    for chunk in lines.chunks(80) {
        e.ingest(&chunk.join(&b'\n')).unwrap();
        e.flush().unwrap();
    }
    let old = old_hour();
    let (a, b) = old.split_at(old.len() / 2);
    let cut = a.iter().rposition(|c| *c == b'\n').unwrap() + 1;
    e.ingest(&old[..cut]).unwrap();
    e.flush().unwrap();
    e.ingest(&old[cut..]).unwrap();
    e.flush().unwrap();
    let _ = b;
    e
}

/// Answers that compaction must not change.
fn answers(e: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    for f in [
        "",
        "fault OR error",
        "responsetime > 0.05",
        "service(\"old-svc\")",
    ] {
        out.push(format!("{f}: {:?}", e.find_trace_ids(f).unwrap()));
    }
    let sql = e
        .sql("SELECT count(*) AS n, count(DISTINCT trace_id) AS t, sum(end_ns - start_ns) AS d FROM spans")
        .unwrap();
    out.push(format!("{:?}", sql.to_json_rows().unwrap()));
    let p = e
        .percentiles(&PercentileQuery {
            by: GroupBy::Service,
            quantiles: vec![0.5, 0.9, 0.99],
            mode: Mode::Exact,
            ..Default::default()
        })
        .unwrap();
    out.push(format!("{:?}", p.groups));
    let g = e
        .service_graph(&GraphQuery {
            range: None,
            group: None,
            filter: None,
            mode: Mode::Auto,
        })
        .unwrap();
    for s in &g.services {
        let counts = s
            .summary_statistics
            .as_ref()
            .map(|st| (st.total_count, st.ok_count));
        let edges: Vec<(usize, u64)> = s
            .edges
            .iter()
            .map(|e| (e.reference_id, e.summary_statistics.total_count))
            .collect();
        out.push(format!(
            "{} {} {} {counts:?} {edges:?}",
            s.name, s.kind, s.root
        ));
    }
    out
}

#[test]
fn compaction_changes_no_answer_before_during_or_after() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fragmented(tmp.path(), at(CORPUS_HOUR + 86_400));
    let before = answers(&e);
    let files_before = e.stats().files;
    let backlog = e.partition_stats();
    assert!(backlog.iter().all(|p| p.compaction_due), "{backlog:?}");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (e, stop, before) = (e.clone(), Arc::clone(&stop), before.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || n == 0 {
                assert_eq!(answers(&e), before);
                n += 1;
            }
            n
        })
    };
    let seen = Mutex::new(Vec::new());
    let summary = e
        .compact_with_progress(&|done, total| seen.lock().unwrap().push((done, total)))
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Release);
    assert!(reader.join().unwrap() > 0);

    // more files than one merge takes (32): several merges of the corpus hour
    assert!(summary.merges > 2, "{summary:?}");
    assert!(summary.input_files > files_before, "{summary:?}");
    assert_eq!(e.stats().files, 2);
    let seen = seen.into_inner().unwrap();
    let &(done, total) = seen.last().unwrap();
    assert_eq!(done, total);
    assert_eq!(total, summary.input_rows);
    assert_eq!(answers(&e), before);
    assert!(e.partition_stats().iter().all(|p| !p.compaction_due));
    // fast percentiles now come from the rollups alone
    let fast = e
        .percentiles(&PercentileQuery {
            by: GroupBy::Service,
            mode: Mode::Fast,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(fast.partitions_scanned, 0);
    assert_eq!(e.compact().unwrap().merges, 0, "nothing left to do");
    e.close().unwrap();
    drop(e);
    let e = open(tmp.path(), at(CORPUS_HOUR));
    assert_eq!(answers(&e), before);
}

#[test]
fn retention_by_age_keeps_rule_matches_and_pins() {
    let tmp = tempfile::tempdir().unwrap();
    // 40 days after the corpus: both hours are past 30 days
    let clock = at(CORPUS_HOUR + 40 * 86_400);
    let e = fragmented(tmp.path(), Arc::clone(&clock));
    let all = e.find_trace_ids("").unwrap();
    let rule = "fault OR responsetime > 3";
    // the rule covers the corpus hour (40 days old), not the 2020 hour (the rule's 400
    // days are over there)
    let old = "1-5f5e1000-";
    let matching: Vec<String> = e
        .find_trace_ids(rule)
        .unwrap()
        .into_iter()
        .filter(|t| !t.starts_with(old))
        .collect();
    assert!(!matching.is_empty() && matching.len() < all.len());
    // a trace of the 2020 hour the rule matches, pinned: kept
    let pinned = e
        .find_trace_ids(rule)
        .unwrap()
        .into_iter()
        .find(|t| t.starts_with(old))
        .unwrap();
    assert_eq!(e.pin(&[pinned.as_str()]).unwrap(), 1);
    assert_eq!(e.pins(), vec![pinned.clone()]);
    let bad = e.pin(&["not-a-trace"]).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidArgument);

    let policy = RetentionPolicy {
        keep: vec![KeepRule::parse(&format!("{rule}=400d")).unwrap()],
        ..RetentionPolicy::default()
    };
    // a dry run changes nothing
    let dry = e.apply_retention_with(&policy, true).unwrap();
    assert!(dry.dry_run);
    assert_eq!(dry.partitions.len(), 2);
    let kept: usize = dry.partitions.iter().map(|p| p.kept_traces).sum();
    assert_eq!(kept, matching.len() + 1, "{dry:?}");
    assert_eq!(e.find_trace_ids("").unwrap(), all);

    let report = e.apply_retention_with(&policy, false).unwrap();
    assert_eq!(report.partitions.len(), 2);
    let mut expect = matching.clone();
    expect.push(pinned.clone());
    expect.sort();
    assert_eq!(e.find_trace_ids("").unwrap(), expect);
    // kept traces are whole: every document of a matching trace is still there
    let again = e.get_traces(&matching).unwrap();
    assert_eq!(again.traces.len(), matching.len());
    // a second pass changes nothing
    let second = e.apply_retention_with(&policy, false).unwrap();
    assert!(second.partitions.iter().all(|p| p.removed_rows == 0));
    assert_eq!(e.find_trace_ids("").unwrap(), expect);

    // once the rule's 400 days are over, only the pin remains; unpinned, nothing
    *clock.0.lock().unwrap() += Duration::from_secs(400 * 86_400);
    e.apply_retention_with(&policy, false).unwrap();
    assert_eq!(e.find_trace_ids("").unwrap(), vec![pinned.clone()]);
    assert_eq!(e.unpin(&[pinned.as_str()]).unwrap(), 1);
    let last = e.apply_retention_with(&policy, false).unwrap();
    assert_eq!(last.dropped(), 1);
    assert!(e.find_trace_ids("").unwrap().is_empty());
    assert_eq!(e.stats().files, 0);
}

#[test]
fn retention_by_size_drops_the_oldest_hour_and_bad_rules_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = fragmented(tmp.path(), at(CORPUS_HOUR + 3600));
    let parts = e.partition_stats();
    assert_eq!(parts.len(), 2);
    let policy = RetentionPolicy {
        max_age: None,
        max_bytes: Some(parts[1].bytes),
        keep: Vec::new(),
    };
    let report = e.apply_retention_with(&policy, false).unwrap();
    assert_eq!(report.dropped(), 1);
    assert_eq!(report.partitions[0].partition, parts[0].partition);
    assert!(e.find_trace_ids("service(\"old-svc\")").unwrap().is_empty());
    assert!(!e.find_trace_ids("").unwrap().is_empty());
    // the default policy (30 days) keeps the corpus hour at this clock
    assert!(e.apply_retention().unwrap().partitions.is_empty());

    let bad = RetentionPolicy {
        keep: vec![KeepRule {
            filter: "responsetime >".into(),
            keep_for: Duration::from_secs(1),
        }],
        ..RetentionPolicy::default()
    };
    let err = e.apply_retention_with(&bad, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("keep rule"), "{err}");
    assert!(KeepRule::parse("fault").is_err());
    assert!(KeepRule::parse("fault=3x").is_err());
    assert_eq!(
        KeepRule::parse("a = 1 = 2d").unwrap().keep_for,
        Duration::from_secs(2 * 86_400)
    );
}

#[test]
fn the_background_thread_compacts_and_stops_on_close() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = at(CORPUS_HOUR + 86_400);
    let e = Engine::open(
        tmp.path(),
        EngineOptions {
            flush_rows: 300,
            maintenance_interval: Some(Duration::from_millis(20)),
            clock,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let data = corpus();
    let lines: Vec<&[u8]> = data.split(|c| *c == b'\n').collect();
    for chunk in lines.chunks(200) {
        e.ingest(&chunk.join(&b'\n')).unwrap();
        e.flush().unwrap();
    }
    let before = answers(&e);
    e.wake_maintenance();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while e.stats().files > 1 {
        assert!(std::time::Instant::now() < deadline, "not compacted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answers(&e), before);
    e.close().unwrap();
    assert!(e.ingest(b"{}").is_err());
}
