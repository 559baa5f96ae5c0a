//! Hostile input (issue 7's matrix; so far the expression part): expression bombs with
//! the default limits and with limits raised far beyond them are refused with a clear
//! error or answered, never overflowing the stack.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tracelake::{Engine, EngineOptions, ErrorKind, Limits};
use tracelake_query::filter::FilterLimits;

fn valid(i: u32) -> String {
    format!(
        r#"{{"trace_id":"1-5f5e1000-{i:024x}","id":"{i:016x}","name":"ok","start_time":1600000000,"end_time":1600000001}}"#
    )
}

fn engine(dir: &std::path::Path, raised: bool) -> Engine {
    let mut o = EngineOptions {
        maintenance_interval: None,
        ..EngineOptions::default()
    };
    if raised {
        o.limits = Limits {
            max_document_bytes: 64 << 20,
            max_nesting_depth: 100_000,
            max_annotations: 1_000_000,
        };
        o.filter_limits = FilterLimits {
            max_length: 16 << 20,
            max_depth: 1_000_000,
        };
    }
    Engine::open(dir, o).unwrap()
}

#[test]
fn expression_bombs_are_refused_or_answered_never_crash() {
    for raised in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let e = engine(tmp.path(), raised);
        e.ingest(valid(1).as_bytes()).unwrap();
        let bombs = [
            (
                "deep parentheses",
                format!(
                    "{}responsetime > 1{}",
                    "(".repeat(100_000),
                    ")".repeat(100_000)
                ),
            ),
            (
                "100k-term OR chain",
                vec![r#"annotation.k = "v""#; 100_000].join(" OR "),
            ),
            ("deep NOT chain", format!("{}fault", "!".repeat(100_000))),
            (
                "unbalanced",
                format!("{}responsetime > 1", "(".repeat(100_000)),
            ),
        ];
        for (what, expr) in bombs {
            match e.find_trace_ids(&expr) {
                Ok(ids) => assert!(raised && ids.len() <= 1, "{what}: {ids:?}"),
                Err(err) => {
                    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
                    assert!(!err.to_string().is_empty());
                }
            }
        }
        assert_eq!(e.find_trace_ids("").unwrap().len(), 1);
        e.close().unwrap();
    }
}
