//! The real Python SDK corpus: every datagram is accepted, every segment and subsegment
//! becomes one row, and every document rebuilds value-equal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use serde_json::Value;
use tracelake_storage::rebuild::{rebuild, value_eq};
use tracelake_storage::{Store, StoreOptions};

#[test]
fn sdk_corpus_ingests_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = std::fs::read(common::shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap();
    let docs: Vec<Value> = common::sdk_documents()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 9186);
    let expected_rows: usize = docs.iter().map(common::count_nodes).sum();

    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let report = store.ingest(&raw).unwrap();
    assert!(
        report.rejected.is_empty(),
        "rejections: {:?}",
        &report.rejected[..report.rejected.len().min(3)]
    );
    assert_eq!(report.accepted, 9186);
    assert_eq!(report.rows, expected_rows);

    let check = |store: &Store| {
        let rows = store.snapshot().unwrap().read_all().unwrap();
        let n: usize = rows.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, expected_rows);
        let rebuilt = rebuild(&rows).unwrap();
        let by_key: HashMap<(String, String), Value> = rebuilt
            .into_iter()
            .map(|d| ((d.trace_id.to_string(), d.id.to_string()), d.json))
            .collect();
        let want = common::winners(&docs);
        assert_eq!(by_key.len(), want.len());
        for (k, v) in &want {
            let got = by_key
                .get(k)
                .unwrap_or_else(|| panic!("document {k:?} missing"));
            assert!(
                value_eq(got, v),
                "document {k:?} differs:\n got {got}\nwant {v}"
            );
        }
    };
    check(&store);
    store.flush().unwrap();
    check(&store);
    store.close().unwrap();
    drop(store);
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    check(&store);
}
