//! Helpers shared by the storage integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

pub(crate) fn shared() -> PathBuf {
    // `shared/` sits beside the checkout; TRACELAKE_SHARED overrides.
    if let Some(p) = std::env::var_os("TRACELAKE_SHARED") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("fixtures").is_dir())
        .expect("the team's shared/ directory beside the checkout (or set TRACELAKE_SHARED)")
}

/// The SDK corpus as document texts (datagram header removed).
pub(crate) fn sdk_documents() -> Vec<String> {
    let data =
        std::fs::read_to_string(shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap();
    data.lines()
        .map(|line| {
            let datagram: String = serde_json::from_str(line).unwrap();
            let (header, body) = datagram.split_once('\n').unwrap();
            assert!(header.contains("\"format\""));
            body.to_owned()
        })
        .collect()
}

/// Counts segments and subsegments of a document, independently of the store.
pub(crate) fn count_nodes(v: &Value) -> usize {
    1 + v
        .get("subsegments")
        .and_then(Value::as_array)
        .map_or(0, |subs| subs.iter().map(count_nodes).sum())
}

/// The expected stored version per (trace_id, id): the last complete document wins,
/// else the last one.
pub(crate) fn winners(docs: &[Value]) -> HashMap<(String, String), Value> {
    let mut out: HashMap<(String, String), Value> = HashMap::new();
    for d in docs {
        let key = (
            d["trace_id"].as_str().unwrap().to_owned(),
            d["id"].as_str().unwrap().to_owned(),
        );
        let complete = d.get("end_time").is_some();
        match out.get(&key) {
            Some(old) if old.get("end_time").is_some() && !complete => {}
            _ => {
                out.insert(key, d.clone());
            }
        }
    }
    out
}
