//! The facade end to end: SDK traffic in, SQL out, upserts, read-only engines, errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::shared;

use serde_json::Value;
use tracelake::{Engine, EngineOptions, ErrorKind, RejectCode};

fn corpus() -> Vec<u8> {
    std::fs::read(shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap()
}

fn count_nodes(v: &Value) -> i64 {
    1 + v
        .get("subsegments")
        .and_then(Value::as_array)
        .map_or(0, |s| s.iter().map(count_nodes).sum())
}

fn expected_rows() -> i64 {
    std::fs::read_to_string(shared().join("fixtures/sdk-python/datagrams.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let d: String = serde_json::from_str(l).unwrap();
            let doc: Value = serde_json::from_str(d.split_once('\n').unwrap().1).unwrap();
            count_nodes(&doc)
        })
        .sum()
}

fn scalar(engine: &Engine, sql: &str) -> i64 {
    let rows = engine.sql(sql).unwrap().to_json_rows().unwrap();
    rows[0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_i64()
        .unwrap()
}

const DISTINCT: &str = "SELECT count(*) FROM (SELECT DISTINCT trace_id, id FROM spans)";

#[test]
fn sdk_traffic_counts_match_before_and_after_flush_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(tmp.path(), EngineOptions::default()).unwrap();
    let report = engine.ingest(&corpus()).unwrap();
    assert_eq!(report.accepted, 9186);
    assert!(report.rejected.is_empty());
    let want = expected_rows();
    assert_eq!(scalar(&engine, "SELECT count(*) FROM spans"), want);
    engine.flush().unwrap();
    assert_eq!(scalar(&engine, "SELECT count(*) FROM spans"), want);
    assert!(engine.stats().files > 0);
    // ingesting the same traffic again changes nothing visible
    engine.ingest(&corpus()).unwrap();
    assert_eq!(scalar(&engine, "SELECT count(*) FROM spans"), want);
    assert_eq!(scalar(&engine, DISTINCT), want);
    engine.flush().unwrap();
    assert_eq!(scalar(&engine, "SELECT count(*) FROM spans"), want);
    // filters and projections go through the same resolution
    let faults = scalar(
        &engine,
        "SELECT count(*) FROM spans WHERE fault AND kind = 0",
    );
    assert!(faults > 0);
    engine.close().unwrap();
    drop(engine);
    let engine = Engine::open(tmp.path(), EngineOptions::default()).unwrap();
    assert_eq!(scalar(&engine, "SELECT count(*) FROM spans"), want);
    assert_eq!(
        scalar(
            &engine,
            "SELECT count(*) FROM spans WHERE fault AND kind = 0"
        ),
        faults
    );
    let docs = engine.export_documents().unwrap();
    assert_eq!(docs.len(), 9186);
}

#[test]
fn in_progress_then_complete_is_one_row() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(tmp.path(), EngineOptions::default()).unwrap();
    let edge = shared().join("fixtures/edge");
    engine
        .ingest(&std::fs::read(edge.join("in-progress.json")).unwrap())
        .unwrap();
    let q =
        "SELECT count(*) AS n, count(end_ns) AS complete FROM spans WHERE id = 8133038509813373451";
    let rows = engine.sql(q).unwrap().to_json_rows().unwrap();
    assert_eq!(
        (rows[0]["n"].as_i64(), rows[0]["complete"].as_i64()),
        (Some(1), Some(0))
    );
    engine.flush().unwrap();
    engine
        .ingest(&std::fs::read(edge.join("in-progress-completed.json")).unwrap())
        .unwrap();
    let rows = engine.sql(q).unwrap().to_json_rows().unwrap();
    assert_eq!(rows[0]["n"], 1);
    assert_eq!(rows[0]["complete"], 1);
    engine.flush().unwrap();
    let rows = engine.sql(q).unwrap().to_json_rows().unwrap();
    assert_eq!(
        (rows[0]["n"].as_i64(), rows[0]["complete"].as_i64()),
        (Some(1), Some(1))
    );
}

#[test]
fn bad_documents_are_reported_one_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(tmp.path(), EngineOptions::default()).unwrap();
    let input = br#"[
        {"name":"ok","id":"0000000000000001","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd","start_time":1795245052.25,"end_time":1795245052.5},
        {"name":"no-id","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd","start_time":1795245052.25,"end_time":1795245052.5},
        {"name":"ok2","id":"0000000000000002","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd","start_time":1795245052.25,"in_progress":true}
    ]"#;
    let r = engine.ingest(input).unwrap();
    assert_eq!(r.accepted, 2);
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].index, 1);
    assert_eq!(r.rejected[0].code, RejectCode::MissingId);
    assert!(r.rejected[0].message.contains("`id`"));
    assert_eq!(scalar(&engine, "SELECT count(*) FROM spans"), 2);
}

#[test]
fn read_only_engines_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(tmp.path(), EngineOptions::default()).unwrap();
    engine.ingest(&corpus()).unwrap();
    // before a flush, a read-only engine sees the last committed manifest: nothing
    let ro = Engine::open_read_only(tmp.path()).unwrap();
    assert_eq!(scalar(&ro, "SELECT count(*) FROM spans"), 0);
    engine.flush().unwrap();
    let ro = Engine::open_read_only(tmp.path()).unwrap();
    assert_eq!(scalar(&ro, "SELECT count(*) FROM spans"), expected_rows());
    assert_eq!(ro.ingest(b"{}").unwrap_err().kind(), ErrorKind::ReadOnly);
    assert_eq!(
        Engine::open(tmp.path(), EngineOptions::default())
            .unwrap_err()
            .kind(),
        ErrorKind::Locked
    );
    let err = engine.sql("SELEC nonsense").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = engine.sql("SELECT no_such_column FROM spans").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(Engine::open_read_only(tmp.path().join("missing")).is_err());
    let not_a_store = tempfile::tempdir().unwrap();
    let err = Engine::open_read_only(not_a_store.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

#[test]
fn sql_works_from_inside_a_callers_async_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = Engine::open(tmp.path(), EngineOptions::default()).unwrap();
    engine.ingest(&corpus()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let n = rt.block_on(async { scalar(&engine, "SELECT count(*) FROM spans") });
    assert_eq!(n, expected_rows());
    // dropping the engine inside async code must not panic either
    rt.block_on(async move { drop(engine) });
}

#[test]
fn a_relative_store_path_works() {
    let rel = std::path::PathBuf::from(format!("target/relative-store-{}", std::process::id()));
    let engine = Engine::open(&rel, EngineOptions::default()).unwrap();
    engine.ingest(&corpus()).unwrap();
    engine.flush().unwrap();
    assert_eq!(
        scalar(&engine, "SELECT count(*) FROM spans"),
        expected_rows()
    );
    assert!(engine.dir().is_absolute());
    engine.close().unwrap();
    drop(engine);
    let ro = Engine::open_read_only(&rel).unwrap();
    assert_eq!(scalar(&ro, "SELECT count(*) FROM spans"), expected_rows());
    drop(ro);
    std::fs::remove_dir_all(&rel).unwrap();
}
