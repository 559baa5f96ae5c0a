//! `shared/fixtures/edge/cases.json`: all cases in one batch together with valid
//! documents. Every valid document is stored and rebuilds value-equal; every invalid one
//! is rejected with its own code; nothing else is lost.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use serde_json::Value;
use tracelake_storage::rebuild::{rebuild, value_eq};
use tracelake_storage::{Store, StoreOptions};

fn cases() -> Vec<(String, String, String)> {
    let dir = common::shared().join("fixtures/edge");
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let file = c["file"].as_str().unwrap().to_owned();
            let text = std::fs::read_to_string(dir.join(&file)).unwrap();
            (file, c["expect"].as_str().unwrap().to_owned(), text)
        })
        .collect()
}

fn check(body: &[u8], order: &[(String, String, String)], valid_extra: &[Value]) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let report = store.ingest(body).unwrap();
    let rejected: HashMap<usize, _> = report.rejected.iter().map(|r| (r.index, r)).collect();
    let mut accepted_docs = Vec::new();
    for (i, (file, expect, text)) in order.iter().enumerate() {
        if expect == "accept" {
            assert!(
                !rejected.contains_key(&i),
                "{file} was rejected: {:?}",
                rejected.get(&i)
            );
            accepted_docs.push(serde_json::from_str::<Value>(text).unwrap());
        } else {
            let r = rejected
                .get(&i)
                .unwrap_or_else(|| panic!("{file} was accepted, expected {expect}"));
            assert_eq!(r.code.as_str(), expect, "{file}: {}", r.message);
            assert!(!r.message.is_empty());
        }
    }
    assert_eq!(
        report.rejected.len(),
        order.iter().filter(|c| c.1 != "accept").count()
    );
    assert_eq!(report.accepted, accepted_docs.len() + valid_extra.len());
    accepted_docs.extend(valid_extra.iter().cloned());

    let rows = store.snapshot().unwrap().read_all().unwrap();
    let got: HashMap<(String, String), Value> = rebuild(&rows)
        .unwrap()
        .into_iter()
        .map(|d| ((d.trace_id.to_string(), d.id.to_string()), d.json))
        .collect();
    let want = common::winners(&accepted_docs);
    assert_eq!(got.len(), want.len());
    for (k, v) in &want {
        let g = got.get(k).unwrap_or_else(|| panic!("{k:?} missing"));
        assert!(value_eq(g, v), "{k:?}:\n got {g}\nwant {v}");
    }
    // the in-progress document was replaced by its completion
    let ip = got
        .get(&(
            "1-6b0143fc-5a02990aabf3c62c483652dd".into(),
            "70de5b6f19ff9a0b".into(),
        ))
        .unwrap();
    assert!(ip.get("end_time").is_some() && ip.get("in_progress").is_none());
}

#[test]
fn every_case_gets_its_outcome_in_one_put_trace_segments_body() {
    let cases = cases();
    let sdk: Vec<String> = common::sdk_documents().into_iter().take(50).collect();
    // valid SDK documents around the edge cases
    let mut texts: Vec<String> = sdk[..25].to_vec();
    let mut order: Vec<(String, String, String)> = texts
        .iter()
        .map(|t| ("sdk".to_owned(), "accept".to_owned(), t.clone()))
        .collect();
    for c in &cases {
        texts.push(c.2.clone());
        order.push(c.clone());
    }
    for t in &sdk[25..] {
        texts.push(t.clone());
        order.push(("sdk".into(), "accept".into(), t.clone()));
    }
    let body = serde_json::json!({ "TraceSegmentDocuments": texts }).to_string();
    check(body.as_bytes(), &order, &[]);
}

#[test]
fn every_case_gets_its_outcome_as_json_lines() {
    let cases = cases();
    let sdk: Vec<String> = common::sdk_documents().into_iter().take(10).collect();
    let mut body = String::new();
    let mut order = Vec::new();
    for t in &sdk {
        body.push_str(t);
        body.push('\n');
        order.push(("sdk".to_owned(), "accept".to_owned(), t.clone()));
    }
    for c in &cases {
        // one line per document, as JSON lines; unparseable files stay as they are
        let line = match serde_json::from_str::<Value>(&c.2) {
            Ok(v) if v.is_object() => v.to_string(),
            _ => c.2.trim().replace('\n', " "),
        };
        if c.0 == "not-an-object.json" {
            continue; // an array line is the JSON-array framing: covered in the body test
        }
        body.push_str(&line);
        body.push('\n');
        order.push(c.clone());
    }
    check(body.as_bytes(), &order, &[]);
}
