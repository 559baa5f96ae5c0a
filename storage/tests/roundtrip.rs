//! Property test: random documents -> rows -> documents is the identity (value-equal).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tracelake_storage::flatten::SpanBuilder;
use tracelake_storage::rebuild::{rebuild, value_eq};
use tracelake_storage::segment::{self, Limits};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-1_000_000_000i64..1_000_000_000).prop_map(Value::from),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        "[a-zA-Z0-9 _\\-\"\\\\/\u{e9}\u{4e2d}]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn hex16() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|v| format!("{v:016x}"))
}

fn annotation_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9 ]{0,10}".prop_map(Value::from),
        (-(1i64 << 52)..(1i64 << 52)).prop_map(Value::from),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        any::<bool>().prop_map(Value::from),
    ]
}

/// Optional members of a segment or subsegment.
fn members() -> impl Strategy<Value = Map<String, Value>> {
    (
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::option::of(prop::collection::btree_map("[a-zA-Z0-9_.]{1,10}", annotation_value(), 0..5)),
            prop::option::of(any_json()),
            prop::option::of(any_json()),
        ),
        (
            prop::option::of(prop_oneof![
                Just(json!({})),
                Just(json!({"request": {}})),
                ("[A-Z]{3,6}", "https://[a-z]{3,8}\\.example/[a-z]{0,6}").prop_map(|(m, u)| json!({"request": {"method": m, "url": u}})),
                (100i64..600, prop_oneof![Just(json!(-1)), Just(json!("1234")), (0i64..100000).prop_map(Value::from)])
                    .prop_map(|(s, cl)| json!({"response": {"status": s, "content_length": cl}, "request": {"traced": true, "x_forwarded_for": false, "extra_x": 1}})),
                Just(json!({"response": {"status": 5_000_000_000i64}})),
                Just(json!({"request": {"method": null}})),
            ]),
            prop::option::of(prop_oneof![hex16().prop_map(Value::from), any_json()]),
            prop::option::of("[a-z0-9@.]{1,12}"),
            prop::option::of(prop_oneof![Just("AWS::EC2::Instance"), Just("AWS::Lambda::Function")]),
            prop::option::of(("[a-z_]{1,6}", any_json())),
            prop::option::of(prop::collection::vec(hex16(), 0..3)),
        ),
    )
        .prop_map(|((error, fault, throttle, anns, aws, metadata), (http, cause, user, origin, unknown, precursors))| {
            let mut m = Map::new();
            if let Some(v) = error {
                m.insert("error".into(), v.into());
            }
            if let Some(v) = fault {
                m.insert("fault".into(), v.into());
            }
            if let Some(v) = throttle {
                m.insert("throttle".into(), v.into());
            }
            if let Some(a) = anns {
                m.insert("annotations".into(), Value::Object(a.into_iter().collect()));
            }
            if let Some(v) = aws {
                m.insert("aws".into(), v);
            }
            if let Some(v) = metadata {
                m.insert("metadata".into(), v);
            }
            if let Some(v) = http {
                m.insert("http".into(), v);
            }
            if let Some(v) = cause {
                m.insert("cause".into(), v);
            }
            if let Some(v) = user {
                m.insert("user".into(), v.into());
            }
            if let Some(v) = origin {
                m.insert("origin".into(), v.into());
            }
            if let Some((k, v)) = unknown {
                let k = format!("x_{k}");
                m.insert(k, v);
            }
            if let Some(p) = precursors {
                m.insert("precursor_ids".into(), p.into());
            }
            m
        })
}

fn times() -> impl Strategy<Value = (f64, Option<f64>)> {
    (
        1_700_000_000_000_000i64..1_900_000_000_000_000,
        prop::option::of(0i64..10_000_000),
        0u8..10,
    )
        .prop_map(|(us, dur, tenth)| {
            let start = us as f64 / 1e6 + f64::from(tenth) * 1e-7;
            (start, dur.map(|d| start + d as f64 / 1e6))
        })
}

fn node(depth: u32) -> BoxedStrategy<Value> {
    let base = (
        hex16(),
        "[a-zA-Z][a-zA-Z0-9 _.:/-]{0,15}",
        times(),
        members(),
        any::<u8>(),
    );
    if depth == 0 {
        base.prop_map(|(id, name, t, m, flags)| make_node(id, name, t, m, flags, vec![]))
            .boxed()
    } else {
        (base, prop::collection::vec(node(depth - 1), 0..3))
            .prop_map(|((id, name, t, m, flags), subs)| make_node(id, name, t, m, flags, subs))
            .boxed()
    }
}

fn make_node(
    id: String,
    name: String,
    (start, end): (f64, Option<f64>),
    mut m: Map<String, Value>,
    flags: u8,
    subs: Vec<Value>,
) -> Value {
    m.insert("id".into(), id.into());
    m.insert("name".into(), name.into());
    m.insert("start_time".into(), json!(start));
    match end {
        Some(e) => {
            m.insert("end_time".into(), json!(e));
            if flags & 1 != 0 {
                m.insert("in_progress".into(), false.into());
            }
        }
        None => {
            m.insert("in_progress".into(), true.into());
        }
    }
    if flags & 2 != 0 {
        m.insert("namespace".into(), "remote".into());
    }
    if !subs.is_empty() || flags & 4 != 0 {
        m.insert("subsegments".into(), Value::Array(subs));
    }
    if flags & 8 != 0 {
        m.insert("service".into(), json!({"version": "1.2"}));
    }
    Value::Object(m)
}

/// Python-SDK style: nested subsegments repeat trace_id, parent_id and type.
fn decorate(v: &mut Value, trace: &str, parent: Option<&str>, style: u8) {
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    if let (Some(p), Value::Object(m)) = (parent, &mut *v) {
        if style & 1 != 0 {
            m.insert("trace_id".into(), trace.into());
        }
        if style & 2 != 0 {
            m.insert("parent_id".into(), p.into());
        }
        if style & 4 != 0 {
            m.insert("type".into(), "subsegment".into());
        }
    }
    if let Some(Value::Array(subs)) = v.get_mut("subsegments") {
        for s in subs {
            decorate(s, trace, Some(&id), style);
        }
    }
}

fn document() -> impl Strategy<Value = Value> {
    (
        node(3),
        any::<u8>(),
        prop::option::of(hex16()),
        "[0-9a-f]{24}",
    )
        .prop_map(|(mut doc, style, parent, rand)| {
            let trace = format!("1-6b0143fc-{rand}");
            decorate(&mut doc, &trace, None, style);
            let m = doc.as_object_mut().unwrap();
            m.insert("trace_id".into(), trace.into());
            if let Some(p) = parent {
                m.insert("parent_id".into(), p.into());
                if style & 8 != 0 {
                    m.insert("type".into(), "subsegment".into());
                }
            }
            doc
        })
}

fn unique_ids(v: &Value, seen: &mut std::collections::HashSet<String>) -> bool {
    let ok = seen.insert(v["id"].as_str().unwrap_or_default().to_owned());
    ok && v
        .get("subsegments")
        .and_then(Value::as_array)
        .is_none_or(|s| s.iter().all(|c| unique_ids(c, seen)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn documents_round_trip(doc in document()) {
        prop_assume!(unique_ids(&doc, &mut Default::default()));
        let text = doc.to_string();
        let parsed = segment::parse(text.as_bytes(), &Limits::default());
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("{e}: {text}"))),
        };
        let mut b = SpanBuilder::new();
        b.append_document(&parsed, 1, &mut |_, _, _| true);
        let batch = b.finish().unwrap();
        let back = rebuild(&[batch]).unwrap();
        prop_assert_eq!(back.len(), 1);
        prop_assert!(value_eq(&back[0].json, &doc), "\n got {}\nwant {}", back[0].json, doc);
    }
}
