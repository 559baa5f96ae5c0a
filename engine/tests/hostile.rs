//! Hostile input (issue 7's matrix, the document and expression part): each case is sent
//! between two valid documents, with the default limits and with limits raised far
//! beyond them. Nothing panics or overflows the stack, a rejected document gets a
//! message, the valid neighbours are stored, and the engine keeps answering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tracelake::{Engine, EngineOptions, ErrorKind, Limits};
use tracelake_query::filter::FilterLimits;

fn valid(i: u32) -> String {
    format!(
        r#"{{"trace_id":"1-5f5e1000-{i:024x}","id":"{i:016x}","name":"ok","start_time":1600000000,"end_time":1600000001}}"#
    )
}

fn with(body: &str) -> String {
    format!(
        r#"{{"trace_id":"1-5f5e1000-00000000000000000000ffff","id":"000000000000ffff","start_time":1600000000,"end_time":1600000001,{body}}}"#
    )
}

fn nested(depth: usize) -> String {
    let mut s = String::new();
    for d in 0..depth {
        s.push_str(&format!(
            r#"{{"id":"{:016x}","name":"n","start_time":1600000000,"end_time":1600000001,"subsegments":["#,
            d + 1
        ));
    }
    s.push_str(&"]}".repeat(depth));
    // the outermost is a segment
    with(&format!(r#""name":"deep","subsegments":[{s}]"#))
}

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let million: String = std::iter::repeat_n("0", 1_000_000)
        .collect::<Vec<_>>()
        .join(",");
    let mut invalid_utf8 = with(r#""name":"bad-XX""#).into_bytes();
    let at = invalid_utf8.windows(2).position(|w| w == b"XX").unwrap();
    invalid_utf8[at] = 0xff;
    invalid_utf8[at + 1] = 0xfe;
    let mut raw_nul = with(r#""name":"nulXbyte""#).into_bytes();
    let at = raw_nul.iter().position(|&b| b == b'X').unwrap();
    raw_nul[at] = 0;
    vec![
        (
            "oversized document (10 MB)",
            with(&format!(r#""name":"big","metadata":{{"x":"{}"}}"#, "a".repeat(10 << 20)))
                .into_bytes(),
        ),
        ("10,000-level nesting", nested(10_000).into_bytes()),
        ("250-level nesting (within the hard cap)", nested(250).into_bytes()),
        (
            "million-element array",
            with(&format!(r#""name":"arr","metadata":{{"a":[{million}]}}"#)).into_bytes(),
        ),
        (
            "huge numbers",
            with(r#""name":"huge","annotations":{"x":1e308,"y":-1e308},"http":{"response":{"status":99999999999999999999,"content_length":1e300}}"#)
                .into_bytes(),
        ),
        (
            "non-finite number",
            with(r#""name":"inf","annotations":{"x":1e999}"#).into_bytes(),
        ),
        (
            "start time out of range",
            r#"{"trace_id":"1-5f5e1000-00000000000000000000fffe","id":"000000000000fffe","name":"t","start_time":1e300,"end_time":1e301}"#
                .as_bytes()
                .to_vec(),
        ),
        ("invalid UTF-8", invalid_utf8),
        ("escaped NUL", with(r#""name":"nul\u0000name""#).into_bytes()),
        ("raw NUL byte", raw_nul),
        (
            "duplicate keys",
            with(r#""name":"first","name":"second","annotations":{"k":1,"k":2}"#).into_bytes(),
        ),
        (
            "deep JSON in metadata",
            with(&format!(
                r#""name":"deepjson","metadata":{{"x":{}1{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            ))
            .into_bytes(),
        ),
        ("not JSON at all", b"\x00\x01\x02{{{{[[[[".to_vec()),
    ]
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
fn hostile_documents_cost_nothing_else() {
    for raised in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let e = engine(tmp.path(), raised);
        let mut stored = 0;
        for (i, (what, doc)) in cases().into_iter().enumerate() {
            let mut body = valid(2 * i as u32 + 1).into_bytes();
            body.push(b'\n');
            body.extend_from_slice(&doc);
            body.push(b'\n');
            body.extend_from_slice(valid(2 * i as u32 + 2).as_bytes());
            let report = e.ingest(&body).unwrap();
            for r in &report.rejected {
                assert!(
                    !r.message.is_empty(),
                    "{what}: a rejection without a message"
                );
            }
            assert!(report.accepted >= 2, "{what} (raised {raised}): {report:?}");
            assert!(
                report.accepted + report.rejected.len() >= 3,
                "{what}: a document vanished: {report:?}"
            );
            stored += report.accepted;
            // the engine still answers
            let n = e.sql("SELECT count(DISTINCT id) AS n FROM spans").unwrap();
            assert!(n.num_rows() == 1, "{what}");
        }
        e.flush().unwrap();
        let ok = e.find_trace_ids(r#"service("ok")"#).unwrap();
        assert_eq!(ok.len(), 2 * cases().len(), "raised {raised}");
        assert!(stored >= ok.len());
        e.close().unwrap();
    }
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
