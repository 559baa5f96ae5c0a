#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Trace summaries and trace retrieval over the real SDK corpus, checked against values
//! this test computes on its own from the documents.

mod common;
use common::shared;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use tracelake::{Engine, EngineOptions, TraceQuery};

/// The corpus documents (each line is a JSON string: header line, newline, document).
fn corpus() -> (Vec<u8>, Vec<Value>) {
    let bytes = std::fs::read(shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap();
    let mut docs = Vec::new();
    for line in String::from_utf8(bytes.clone()).unwrap().lines() {
        let datagram: String = serde_json::from_str(line).unwrap();
        let (_, doc) = datagram.split_once('\n').unwrap();
        docs.push(serde_json::from_str(doc).unwrap());
    }
    (bytes, docs)
}

#[derive(Debug, Clone)]
struct Row {
    id: String,
    parent: Option<String>,
    segment: bool,
    start: f64,
    end: Option<f64>,
    error: bool,
    fault: bool,
    throttle: bool,
    in_progress: bool,
    remote: bool,
    annotations: Vec<(String, Value)>,
}

fn rows_of(doc: &Value, segment: bool, parent: Option<String>, out: &mut Vec<Row>) {
    let b = |k: &str| doc.get(k).and_then(Value::as_bool).unwrap_or(false);
    let id = doc["id"].as_str().unwrap().to_owned();
    out.push(Row {
        id: id.clone(),
        parent: doc
            .get("parent_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(parent),
        segment,
        start: doc["start_time"].as_f64().unwrap(),
        end: doc.get("end_time").and_then(Value::as_f64),
        error: b("error"),
        fault: b("fault"),
        throttle: b("throttle"),
        in_progress: b("in_progress"),
        remote: matches!(
            doc.get("namespace").and_then(Value::as_str),
            Some("aws" | "remote")
        ),
        annotations: doc
            .get("annotations")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    });
    for s in doc
        .get("subsegments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        rows_of(s, false, Some(id.clone()), out);
    }
}

/// Rows of each trace after upserts (the last complete version of an id wins).
fn traces(docs: &[Value]) -> BTreeMap<String, Vec<Row>> {
    let mut by: BTreeMap<String, HashMap<String, Row>> = BTreeMap::new();
    for d in docs {
        let mut rows = Vec::new();
        let independent = d.get("type").and_then(Value::as_str) == Some("subsegment");
        rows_of(d, !independent, None, &mut rows);
        let t = by
            .entry(d["trace_id"].as_str().unwrap().to_owned())
            .or_default();
        for r in rows {
            let keep_old = t
                .get(&r.id)
                .is_some_and(|o| o.end.is_some() && r.end.is_none());
            if !keep_old {
                t.insert(r.id.clone(), r);
            }
        }
    }
    by.into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect()
}

fn root(rows: &[Row]) -> Option<&Row> {
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    fn best(it: Vec<&Row>) -> Option<&Row> {
        it.into_iter()
            .min_by(|a, b| (a.start, &a.id).partial_cmp(&(b.start, &b.id)).unwrap())
    }
    best(
        rows.iter()
            .filter(|r| r.segment && r.parent.as_deref().is_none_or(|p| !ids.contains(p)))
            .collect(),
    )
    .or_else(|| best(rows.iter().filter(|r| r.segment).collect()))
}

fn open(bytes: &[u8]) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let report = engine.ingest(bytes).unwrap();
    assert!(report.rejected.is_empty(), "{report:?}");
    (dir, engine)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn summaries_of_the_sdk_corpus_match_an_independent_computation() {
    let (bytes, docs) = corpus();
    let expected = traces(&docs);
    let (_dir, engine) = open(&bytes);
    engine.flush().unwrap();

    // every trace, in pages of 400, newest first
    let mut seen = Vec::new();
    let mut query = TraceQuery {
        limit: 400,
        ..TraceQuery::default()
    };
    loop {
        let page = engine.trace_summaries(&query).unwrap();
        assert_eq!(page.traces_processed_count as usize, expected.len());
        seen.extend(page.trace_summaries);
        match page.next_token {
            Some(t) => query.next_token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected.len());
    for w in seen.windows(2) {
        assert!(
            w[0].id[2..] > w[1].id[2..],
            "pages run newest first, by trace id: {} then {}",
            w[0].id,
            w[1].id
        );
    }
    let (mut faults, mut errors, mut throttles) = (0, 0, 0);
    for s in &seen {
        let rows = &expected[&s.id];
        let r = root(rows).unwrap();
        assert_eq!(s.has_fault, r.fault, "{} HasFault", s.id);
        assert_eq!(s.has_error, r.error, "{} HasError", s.id);
        assert_eq!(s.has_throttle, rows.iter().any(|x| x.throttle), "{}", s.id);
        assert_eq!(s.is_partial, rows.iter().any(|x| x.in_progress), "{}", s.id);
        let rt = s.response_time.unwrap() as f64 / 1e9;
        assert!(
            close(rt, r.end.unwrap() - r.start),
            "{} ResponseTime {rt}",
            s.id
        );
        let first = rows.iter().map(|x| x.start).fold(f64::MAX, f64::min);
        let last = rows.iter().filter_map(|x| x.end).fold(f64::MIN, f64::max);
        let d = s.duration.unwrap() as f64 / 1e9;
        assert!(
            close(d, last - first),
            "{} Duration {d} vs {}",
            s.id,
            last - first
        );
        // annotations: every (key, value) sent, and nothing else
        let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            for (k, v) in &row.annotations {
                want.entry(k.clone()).or_default().insert(v.to_string());
            }
        }
        let got: BTreeMap<String, BTreeSet<String>> = s
            .annotations
            .iter()
            .map(|(k, vs)| {
                let vals = vs
                    .iter()
                    .map(|v| {
                        let o = v.annotation_value.as_object().unwrap();
                        let x = o.values().next().unwrap();
                        match x.as_f64() {
                            Some(f) if o.contains_key("NumberValue") => {
                                serde_json::json!(f).to_string()
                            }
                            _ => x.to_string(),
                        }
                    })
                    .collect();
                (k.clone(), vals)
            })
            .collect();
        let norm = |m: BTreeMap<String, BTreeSet<String>>| -> BTreeMap<String, BTreeSet<String>> {
            m.into_iter()
                .map(|(k, vs)| {
                    let vs = vs
                        .into_iter()
                        .map(|v| match v.parse::<f64>() {
                            Ok(f) => serde_json::json!(f).to_string(),
                            Err(_) => v,
                        })
                        .collect();
                    (k, vs)
                })
                .collect()
        };
        assert_eq!(norm(got), norm(want), "{} Annotations", s.id);
        assert!(!s.service_ids.is_empty());
        assert_eq!(
            s.entry_point.as_ref().unwrap().name,
            root(rows)
                .map(|_| {
                    docs.iter()
                        .find(|d| d["id"].as_str() == Some(r.id.as_str()))
                        .and_then(|d| d["name"].as_str())
                        .unwrap()
                        .to_owned()
                })
                .unwrap()
        );
        faults += usize::from(s.has_fault);
        errors += usize::from(s.has_error);
        throttles += usize::from(s.has_throttle);
        if s.has_fault {
            assert!(
                !s.fault_root_causes.is_empty(),
                "{}: a fault has a root cause",
                s.id
            );
        }
    }
    assert!(
        faults > 0 && errors > 0 && throttles > 0,
        "{faults} {errors} {throttles}"
    );
}

#[test]
fn filters_and_summaries_agree_and_pages_are_disjoint() {
    let (bytes, docs) = corpus();
    let expected = traces(&docs);
    let (_dir, engine) = open(&bytes);
    let want: Vec<String> = expected
        .iter()
        .filter(|(_, rows)| root(rows).is_some_and(|r| r.fault))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(engine.find_trace_ids("fault").unwrap(), want);
    let mut got = BTreeSet::new();
    let mut q = TraceQuery {
        filter: Some("fault".into()),
        limit: 7,
        ..TraceQuery::default()
    };
    loop {
        let page = engine.trace_summaries(&q).unwrap();
        assert!(page.trace_summaries.len() <= 7);
        for s in page.trace_summaries {
            assert!(s.has_fault);
            assert!(got.insert(s.id), "pages overlap");
        }
        match page.next_token {
            Some(t) => q.next_token = Some(t),
            None => break,
        }
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), want);
    let bad = engine.trace_summaries(&TraceQuery {
        next_token: Some("nonsense".into()),
        ..TraceQuery::default()
    });
    assert_eq!(
        bad.unwrap_err().kind(),
        tracelake::ErrorKind::InvalidArgument
    );
}

fn ids_in(doc: &Value, out: &mut BTreeSet<String>) {
    if let Some(id) = doc.get("id").and_then(Value::as_str) {
        out.insert(id.to_owned());
    }
    for s in doc
        .get("subsegments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        ids_in(s, out);
    }
}

#[test]
fn get_traces_returns_whole_traces_with_inferred_segments() {
    let (bytes, docs) = corpus();
    let expected = traces(&docs);
    let (_dir, engine) = open(&bytes);
    engine.flush().unwrap();
    let ids: Vec<&String> = expected.keys().collect();
    let mut total_inferred = 0;
    for chunk in ids.chunks(50) {
        let answer = engine.get_traces(chunk).unwrap();
        assert!(answer.unprocessed_trace_ids.is_empty());
        assert_eq!(answer.traces.len(), chunk.len());
        for t in &answer.traces {
            let rows = &expected[&t.id];
            let parents: BTreeSet<&str> = rows
                .iter()
                .filter(|r| r.segment)
                .filter_map(|r| r.parent.as_deref())
                .collect();
            let inferred = rows
                .iter()
                .filter(|r| !r.segment && r.remote && !parents.contains(r.id.as_str()))
                .count();
            let segments = rows.iter().filter(|r| r.segment).count();
            total_inferred += inferred;
            assert_eq!(t.segments.len(), segments + inferred, "{}", t.id);
            let mut all_ids = BTreeSet::new();
            let mut n_inferred = 0;
            for s in &t.segments {
                let d: Value = serde_json::from_str(&s.document).unwrap();
                assert_ne!(
                    d.get("type").and_then(Value::as_str),
                    Some("subsegment"),
                    "{}: streamed subsegments are nested under their parents",
                    t.id
                );
                if d.get("inferred") == Some(&Value::Bool(true)) {
                    n_inferred += 1;
                    assert!(
                        rows.iter()
                            .any(|r| Some(r.id.as_str()) == d["parent_id"].as_str())
                    );
                } else {
                    ids_in(&d, &mut all_ids);
                }
            }
            assert_eq!(n_inferred, inferred, "{}", t.id);
            let want: BTreeSet<String> = rows.iter().map(|r| r.id.clone()).collect();
            assert_eq!(
                all_ids, want,
                "{}: every segment and subsegment, once",
                t.id
            );
            let first = rows.iter().map(|x| x.start).fold(f64::MAX, f64::min);
            let last = rows.iter().filter_map(|x| x.end).fold(f64::MIN, f64::max);
            assert!(close(t.duration.unwrap() as f64 / 1e9, last - first));
        }
    }
    assert!(total_inferred > 0, "the corpus has uninstrumented calls");
    let answer = engine
        .get_traces(&["1-00000000-000000000000000000000000", "not-an-id"])
        .unwrap();
    assert!(answer.traces.is_empty());
    assert_eq!(answer.unprocessed_trace_ids.len(), 2);
}

#[test]
fn groups_are_durable_and_usable_in_expressions() {
    let (bytes, _) = corpus();
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        engine.ingest(&bytes).unwrap();
        let g = engine.create_group("faulty", "fault").unwrap();
        assert!(g.group_arn.contains(":group/faulty/"));
        engine
            .create_group(
                "faulty_checkout",
                r#"group.name = "faulty" AND service("checkout-api")"#,
            )
            .unwrap();
        assert_eq!(
            engine.create_group("faulty", "ok").unwrap_err().kind(),
            tracelake::ErrorKind::InvalidArgument
        );
        assert!(engine.create_group("Default", "ok").is_err());
        assert!(engine.create_group("bad", "responstime > 1").is_err());
        // a cycle through an update is refused, and leaves the group as it was
        let e = engine
            .update_group("faulty", r#"group.name = "faulty_checkout""#)
            .unwrap_err();
        assert!(e.to_string().contains("refers to itself"), "{e}");
        assert_eq!(
            engine.group("faulty").unwrap().filter_expression.as_deref(),
            Some("fault")
        );
        // deleting a group another one uses is refused
        assert!(engine.delete_group("faulty").is_err());
        engine.close().unwrap();
    }
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(engine.groups().len(), 2);
    let by_group = engine
        .find_trace_ids(r#"group.name = "faulty_checkout""#)
        .unwrap();
    let direct = engine
        .find_trace_ids(r#"fault AND service("checkout-api")"#)
        .unwrap();
    assert_eq!(by_group, direct);
    assert!(!direct.is_empty());
    let arn = engine.group("faulty").unwrap().group_arn;
    assert_eq!(
        engine
            .find_trace_ids(&format!("group.arn = {arn:?}"))
            .unwrap(),
        engine.find_trace_ids("fault").unwrap()
    );
    engine.delete_group("faulty_checkout").unwrap();
    engine.delete_group(&arn).unwrap();
    assert!(engine.groups().is_empty());
}

fn all_ids(engine: &Engine, q: TraceQuery) -> (Vec<String>, u64) {
    let mut q = TraceQuery { limit: 1000, ..q };
    let mut ids = Vec::new();
    let mut processed;
    loop {
        let page = engine.trace_summaries(&q).unwrap();
        processed = page.traces_processed_count;
        ids.extend(page.trace_summaries.into_iter().map(|s| s.id));
        match page.next_token {
            Some(t) => q.next_token = Some(t),
            None => break,
        }
    }
    ids.sort();
    (ids, processed)
}

#[test]
fn time_range_types_select_the_documented_traces() {
    let (bytes, docs) = corpus();
    let expected = traces(&docs);
    let (_dir, engine) = open(&bytes);
    let epoch = |id: &str| i64::from_str_radix(&id[2..10], 16).unwrap() as f64;
    let mut epochs: Vec<f64> = expected.keys().map(|k| epoch(k)).collect();
    epochs.sort_by(f64::total_cmp);
    // a window over the middle of the corpus, in whole and fractional seconds
    let (s, e) = (
        epochs[epochs.len() / 3] + 0.5,
        epochs[2 * epochs.len() / 3] + 0.25,
    );
    let segment_ends = |rows: &[Row]| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.segment)
            .filter_map(|r| r.end)
            .collect()
    };
    for (kind, want) in [
        (
            tracelake::RangeType::TraceId,
            expected
                .keys()
                .filter(|k| epoch(k) >= s.floor() && epoch(k) < e)
                .cloned()
                .collect::<Vec<_>>(),
        ),
        (
            tracelake::RangeType::Event,
            expected
                .iter()
                .filter(|(_, rows)| {
                    let first = rows.iter().map(|x| x.start).fold(f64::MAX, f64::min);
                    let last = rows.iter().filter_map(|x| x.end).fold(f64::MIN, f64::max);
                    first < e && last >= s
                })
                .map(|(k, _)| k.clone())
                .collect(),
        ),
        (
            tracelake::RangeType::Service,
            expected
                .iter()
                .filter(|(_, rows)| segment_ends(rows).iter().any(|&t| t >= s && t < e))
                .map(|(k, _)| k.clone())
                .collect(),
        ),
    ] {
        let (got, processed) = all_ids(
            &engine,
            TraceQuery {
                range: Some((s, e, kind)),
                ..TraceQuery::default()
            },
        );
        assert!(!want.is_empty() && want.len() < expected.len(), "{kind:?}");
        assert_eq!(got, want, "{kind:?}");
        assert_eq!(processed as usize, want.len(), "{kind:?}");
        // with a filter: the intersection
        let faults: BTreeSet<String> = engine
            .find_trace_ids("fault")
            .unwrap()
            .into_iter()
            .collect();
        let (got, processed) = all_ids(
            &engine,
            TraceQuery {
                filter: Some("fault".into()),
                range: Some((s, e, kind)),
                ..TraceQuery::default()
            },
        );
        let both: Vec<String> = want
            .iter()
            .filter(|k| faults.contains(*k))
            .cloned()
            .collect();
        assert_eq!(got, both, "{kind:?} AND fault");
        assert_eq!(processed as usize, want.len());
    }
    let bad = engine.trace_summaries(&TraceQuery {
        range: Some((e, s, tracelake::RangeType::TraceId)),
        ..TraceQuery::default()
    });
    assert_eq!(
        bad.unwrap_err().kind(),
        tracelake::ErrorKind::InvalidArgument
    );
}

#[test]
fn fixed_rate_sampling_looks_at_a_stable_fraction() {
    let (bytes, docs) = corpus();
    let total = traces(&docs).len();
    let (_dir, engine) = open(&bytes);
    let sample = |rate: f64| {
        all_ids(
            &engine,
            TraceQuery {
                sampling_rate: Some(rate),
                ..TraceQuery::default()
            },
        )
    };
    let (none, p0) = sample(0.0);
    assert!(none.is_empty() && p0 == 0);
    let (all, p1) = sample(1.0);
    assert_eq!((all.len(), p1 as usize), (total, total));
    let (half, ph) = sample(0.5);
    assert_eq!(half.len(), ph as usize);
    let share = half.len() as f64 / total as f64;
    assert!((0.4..0.6).contains(&share), "{share}");
    assert_eq!(sample(0.5).0, half, "the same traces each time");
    let (quarter, _) = sample(0.25);
    assert!(
        quarter.iter().all(|id| half.contains(id)),
        "a smaller rate keeps a subset"
    );
}

#[test]
fn hostile_traces_do_not_crash_queries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let tid = "1-5f5e1000-00000000000000000000c0de";
    // a chain of 5,000 segments, each the child of the one before, all faulting
    let mut body = String::new();
    for i in 0..5000u64 {
        let parent = if i == 0 {
            String::new()
        } else {
            format!(r#","parent_id":"{:016x}""#, i)
        };
        body.push_str(&format!(
            r#"{{"trace_id":"{tid}","id":"{:016x}","name":"svc{}","start_time":{},"end_time":{},"fault":true{parent}}}"#,
            i + 1,
            i % 3,
            1_600_000_000.0 + i as f64 * 0.001,
            1_600_000_100.0 - i as f64 * 0.001,
        ));
        body.push('\n');
    }
    // a chain of 3,000 independent subsegments under one segment
    let tid2 = "1-5f5e1000-00000000000000000000c0df";
    body.push_str(&format!(
        r#"{{"trace_id":"{tid2}","id":"aaaaaaaaaaaaaaaa","name":"api","start_time":1600000000,"end_time":1600000001}}"#
    ));
    body.push('\n');
    for i in 0..3000u64 {
        let parent = if i == 0 {
            "aaaaaaaaaaaaaaaa".to_owned()
        } else {
            format!("{:016x}", 0x1000 + i - 1)
        };
        body.push_str(&format!(
            r#"{{"trace_id":"{tid2}","type":"subsegment","id":"{:016x}","parent_id":"{parent}","name":"step","start_time":1600000000.5,"end_time":1600000000.6}}"#,
            0x1000 + i
        ));
        body.push('\n');
    }
    // times whose difference does not fit in 64-bit nanoseconds
    let tid3 = "1-5f5e1000-00000000000000000000c0e0";
    body.push_str(&format!(
        r#"{{"trace_id":"{tid3}","id":"bbbbbbbbbbbbbbbb","name":"wide","start_time":-9000000000,"end_time":9000000000}}"#
    ));
    body.push('\n');
    let report = engine.ingest(body.as_bytes()).unwrap();
    let wide_accepted = report.rejected.iter().all(|r| r.index != 8001);
    assert_eq!(
        report.rejected.len(),
        usize::from(!wide_accepted),
        "{report:?}"
    );

    let page = engine.trace_summaries(&TraceQuery::default()).unwrap();
    assert_eq!(page.trace_summaries.len(), 2 + usize::from(wide_accepted));
    let chain = page.trace_summaries.iter().find(|s| s.id == tid).unwrap();
    assert_eq!(chain.fault_root_causes.len(), 1, "the deepest fault");
    assert_eq!(
        engine
            .find_trace_ids(r#"rootcause.fault.entity { last and name = "svc1" }"#)
            .unwrap(),
        vec![tid.to_owned()],
        "entity 5000 is svc{}",
        4999 % 3
    );
    let docs = engine.get_traces(&[tid, tid2]).unwrap();
    assert_eq!(docs.traces.len(), 2);
    assert_eq!(docs.traces[0].segments.len(), 5000);
    assert!(
        docs.traces[1].segments.len() > 1,
        "nesting is capped, the rest stay separate"
    );
    if wide_accepted {
        assert!(
            !engine
                .find_trace_ids("responsetime < 1")
                .unwrap()
                .contains(&tid3.to_owned())
        );
        let s = engine
            .trace_summaries(&TraceQuery {
                filter: Some(r#"name = "wide""#.into()),
                ..TraceQuery::default()
            })
            .unwrap();
        assert_eq!(
            s.trace_summaries[0].duration, None,
            "too long to express: missing"
        );
    }
}

#[test]
fn group_limits_and_empty_groups() {
    let (bytes, docs) = corpus();
    let (_dir, engine) = open(&bytes);
    engine.create_group("all", "").unwrap();
    assert_eq!(
        engine
            .find_trace_ids(r#"group.name = "all""#)
            .unwrap()
            .len(),
        traces(&docs).len()
    );
    engine.create_group("g0", "responsetime > 1").unwrap();
    let mut refused = None;
    for k in 1..40 {
        let prev = format!("g{}", k - 1);
        let expr = format!(r#"group.name = "{prev}" OR group.name = "{prev}""#);
        if let Err(e) = engine.create_group(&format!("g{k}"), &expr) {
            refused = Some((k, e.to_string()));
            break;
        }
    }
    let (k, msg) = refused.expect("a doubling chain of groups is refused");
    assert!(k < 20, "{k}");
    assert!(msg.contains("once its groups are expanded"), "{msg}");
    for rate in [f64::NAN, 1.5, -0.1] {
        let e = engine
            .trace_summaries(&TraceQuery {
                sampling_rate: Some(rate),
                ..TraceQuery::default()
            })
            .unwrap_err();
        assert_eq!(e.kind(), tracelake::ErrorKind::InvalidArgument, "{rate}");
    }
}

#[test]
fn upserts_across_files_stay_resolved_on_repeated_queries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    let doc = |extra: &str| {
        format!(
            r#"{{"trace_id":"1-5f5e1000-0000000000000000000000aa","id":"00000000000000a1","name":"api","start_time":1600000000{extra}}}"#
        )
    };
    let count = |e: &Engine, f: &str| e.find_trace_ids(f).unwrap().len();
    engine
        .ingest(doc(r#","in_progress":true"#).as_bytes())
        .unwrap();
    engine.flush().unwrap();
    assert_eq!(count(&engine, "partial"), 1);
    engine
        .ingest(doc(r#","end_time":1600000001,"fault":true"#).as_bytes())
        .unwrap();
    engine.flush().unwrap();
    for _ in 0..3 {
        assert_eq!(
            count(&engine, "partial"),
            0,
            "the completion wins, every time"
        );
        assert_eq!(count(&engine, "fault"), 1);
        let n = engine.sql("SELECT count(*) AS n FROM spans").unwrap();
        assert_eq!(n.to_json_rows().unwrap()[0]["n"], 1);
    }
    // a newer complete version in a third file: the file set changed, so it is seen
    engine
        .ingest(doc(r#","end_time":1600000002"#).as_bytes())
        .unwrap();
    engine.flush().unwrap();
    assert_eq!(count(&engine, "fault"), 0);
    assert_eq!(count(&engine, "duration >= 2"), 1);
}
