//! The service graph of real SDK traffic against a graph written by hand, with counts
//! from an independent walk over the documents; trace graphs and time series.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::shared;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use tracelake::{Answered, Engine, EngineOptions, GraphQuery, Mode, ServiceGraph, TimeSeriesQuery};

const ENTRIES: [&str; 3] = ["cart-api", "checkout-api", "search-api"];

fn corpus() -> Vec<u8> {
    std::fs::read(shared().join("fixtures/sdk-python/datagrams.jsonl")).unwrap()
}

/// One segment or subsegment of the corpus, as the documents say.
#[derive(Debug, Clone)]
struct Item {
    trace: String,
    id: String,
    parent: Option<String>,
    segment: bool,
    name: String,
    remote: bool,
    sql: bool,
    complete: bool,
}

fn walk(v: &Value, trace: &str, parent: Option<String>, segment: bool, out: &mut Vec<Item>) {
    let id = v["id"].as_str().unwrap().to_owned();
    out.push(Item {
        trace: trace.to_owned(),
        id: id.clone(),
        parent: v["parent_id"].as_str().map(str::to_owned).or(parent),
        segment,
        name: v["name"].as_str().unwrap().to_owned(),
        remote: matches!(v["namespace"].as_str(), Some("remote" | "aws")),
        sql: v.get("sql").is_some(),
        complete: v.get("end_time").is_some() && v.get("in_progress") != Some(&Value::Bool(true)),
    });
    for s in v["subsegments"].as_array().into_iter().flatten() {
        walk(s, trace, Some(id.clone()), false, out);
    }
}

/// Every item once per (trace, id), the complete version winning.
fn items() -> Vec<Item> {
    let text = String::from_utf8(corpus()).unwrap();
    let mut all = Vec::new();
    for line in text.lines() {
        let datagram: String = serde_json::from_str(line).unwrap();
        let doc: Value = serde_json::from_str(datagram.split_once('\n').unwrap().1).unwrap();
        let trace = doc["trace_id"].as_str().unwrap().to_owned();
        let segment = doc["type"].as_str() != Some("subsegment");
        walk(&doc, &trace, None, segment, &mut all);
    }
    let mut by_key: BTreeMap<(String, String), Item> = BTreeMap::new();
    for i in all {
        let k = (i.trace.clone(), i.id.clone());
        match by_key.get(&k) {
            Some(old) if old.complete && !i.complete => {}
            _ => {
                by_key.insert(k, i);
            }
        }
    }
    by_key.into_values().collect()
}

/// Requests per node (name, type).
type Nodes = BTreeMap<(String, String), u64>;
/// Requests per edge (caller, callee name, callee type).
type Edges = BTreeMap<(String, String, String), u64>;

/// Statistics the oracle expects: (node totals, edge totals).
fn expected() -> (Nodes, Edges) {
    let items = items();
    let by: HashMap<(&str, &str), &Item> = items
        .iter()
        .map(|i| ((i.trace.as_str(), i.id.as_str()), i))
        .collect();
    // the service of an item: follow parents to a segment
    let service_of = |i: &Item| -> Option<String> {
        let mut cur = i;
        for _ in 0..100 {
            if cur.segment {
                return Some(cur.name.clone());
            }
            cur = by.get(&(cur.trace.as_str(), cur.parent.as_deref()?))?;
        }
        None
    };
    let answered: BTreeSet<(&str, &str)> = items
        .iter()
        .filter(|i| i.segment)
        .filter_map(|i| Some((i.trace.as_str(), i.parent.as_deref()?)))
        .collect();
    let mut nodes = Nodes::new();
    let mut edges = Edges::new();
    for i in items.iter().filter(|i| i.complete) {
        if i.segment {
            *nodes.entry((i.name.clone(), String::new())).or_default() += 1;
            if i.parent.is_none() {
                *edges
                    .entry((
                        format!("{} (client)", i.name),
                        i.name.clone(),
                        String::new(),
                    ))
                    .or_default() += 1;
            }
            continue;
        }
        let Some(caller) = service_of(i) else {
            continue;
        };
        if answered.contains(&(i.trace.as_str(), i.id.as_str())) {
            for child in items
                .iter()
                .filter(|c| c.segment && c.trace == i.trace && c.parent.as_deref() == Some(&i.id))
            {
                *edges
                    .entry((caller.clone(), child.name.clone(), String::new()))
                    .or_default() += 1;
            }
        } else if i.remote {
            let kind = if i.sql { "Database::SQL" } else { "remote" };
            *nodes.entry((i.name.clone(), kind.into())).or_default() += 1;
            *edges
                .entry((caller, i.name.clone(), kind.into()))
                .or_default() += 1;
        }
    }
    (nodes, edges)
}

fn graph_counts(g: &ServiceGraph) -> (Nodes, Edges) {
    let by_id: HashMap<usize, &tracelake::Service> =
        g.services.iter().map(|s| (s.reference_id, s)).collect();
    let mut nodes = BTreeMap::new();
    let mut edges = BTreeMap::new();
    for s in &g.services {
        if let Some(st) = &s.summary_statistics {
            nodes.insert((s.name.clone(), s.kind.clone()), st.total_count);
        }
        let caller = if s.kind == "client" {
            format!("{} (client)", s.name)
        } else {
            s.name.clone()
        };
        for e in &s.edges {
            let t = by_id[&e.reference_id];
            edges.insert(
                (caller.clone(), t.name.clone(), t.kind.clone()),
                e.summary_statistics.total_count,
            );
        }
    }
    (nodes, edges)
}

fn store(dir: &std::path::Path) -> Engine {
    let e = Engine::open(dir, EngineOptions::default()).unwrap();
    e.ingest(&corpus()).unwrap();
    e.flush().unwrap();
    e
}

#[test]
fn the_sdk_corpus_graph_matches_the_hand_written_one() {
    let tmp = tempfile::tempdir().unwrap();
    let e = store(tmp.path());
    let g = e.service_graph(&GraphQuery::default()).unwrap();
    assert_eq!(g.mode, Answered::Fast);

    // The graph, by hand.
    let mut want_nodes: BTreeSet<(String, String, &str)> = BTreeSet::new();
    let mut want_edges: BTreeSet<(String, String, String)> = BTreeSet::new();
    for entry in ENTRIES {
        want_nodes.insert((entry.into(), String::new(), "active"));
        want_nodes.insert((entry.into(), "client".into(), "unknown"));
        want_edges.insert((format!("{entry} (client)"), entry.into(), String::new()));
        want_edges.insert((entry.into(), "inventory-svc".into(), String::new()));
        want_edges.insert((entry.into(), "127.0.0.1".into(), "remote".into()));
        want_edges.insert((entry.into(), ":memory:".into(), "Database::SQL".into()));
    }
    want_nodes.insert(("inventory-svc".into(), String::new(), "active"));
    want_nodes.insert(("127.0.0.1".into(), "remote".into(), "unknown"));
    want_nodes.insert((":memory:".into(), "Database::SQL".into(), "unknown"));
    let got_nodes: BTreeSet<(String, String, &str)> = g
        .services
        .iter()
        .map(|s| (s.name.clone(), s.kind.clone(), s.state))
        .collect();
    assert_eq!(got_nodes, want_nodes);
    let (nodes, edges) = graph_counts(&g);
    assert_eq!(edges.keys().cloned().collect::<BTreeSet<_>>(), want_edges);
    for s in &g.services {
        let root = ENTRIES.contains(&s.name.as_str()) && s.kind.is_empty();
        assert_eq!(s.root, root, "{}", s.name);
    }

    // The counts, from the documents.
    let (want_n, want_e) = expected();
    assert_eq!(nodes, want_n);
    assert_eq!(edges, want_e);

    // Scanning gives the same graph; histograms hold every request once.
    let exact = e
        .service_graph(&GraphQuery {
            mode: Mode::Exact,
            ..GraphQuery::default()
        })
        .unwrap();
    assert_eq!(exact.mode, Answered::Exact);
    assert_eq!(exact.services, g.services);
    for s in &g.services {
        for edge in &s.edges {
            let n: u64 = edge.response_time_histogram.iter().map(|h| h.count).sum();
            assert_eq!(n, edge.summary_statistics.total_count);
        }
    }
}

#[test]
fn groups_filters_trace_graphs_and_time_series() {
    let tmp = tempfile::tempdir().unwrap();
    let e = store(tmp.path());
    let all = e.service_graph(&GraphQuery::default()).unwrap();
    // a filter: only faulty traces, answered by scanning
    e.create_group("faults", "fault").unwrap();
    let faulty = e
        .service_graph(&GraphQuery {
            group: Some("faults".into()),
            ..GraphQuery::default()
        })
        .unwrap();
    assert_eq!(faulty.mode, Answered::Exact);
    let total = |g: &ServiceGraph| -> u64 {
        g.services
            .iter()
            .filter_map(|s| s.summary_statistics.as_ref())
            .map(|s| s.total_count)
            .sum()
    };
    assert!(total(&faulty) > 0 && total(&faulty) < total(&all));
    assert!(
        e.service_graph(&GraphQuery {
            group: Some("nope".into()),
            ..GraphQuery::default()
        })
        .is_err()
    );

    // the graph of one trace
    let id = e.find_trace_ids("service(\"inventory-svc\")").unwrap()[0].clone();
    let tg = e.trace_graph(&[id.as_str()]).unwrap();
    assert!(tg.services.iter().any(|s| s.name == "inventory-svc"));
    assert!(tg.services.len() < all.services.len());
    assert!(e.trace_graph(&["not-an-id"]).is_err());

    // time series: per-minute points of one service add up to its node total
    let inventory = all
        .services
        .iter()
        .find(|s| s.name == "inventory-svc")
        .and_then(|s| s.summary_statistics.clone())
        .unwrap();
    for (period, mode) in [
        (60, Mode::Auto),
        (300, Mode::Auto),
        (90, Mode::Auto),
        (60, Mode::Exact),
    ] {
        let (points, answered) = e
            .time_series(&TimeSeriesQuery {
                entity_selector: Some("service(\"inventory-svc\")".into()),
                period_s: period,
                mode,
                ..TimeSeriesQuery::default()
            })
            .unwrap();
        let fast = period % 60 == 0 && mode == Mode::Auto;
        assert_eq!(answered == Answered::Fast, fast, "period {period}");
        let n: u64 = points
            .iter()
            .map(|p| p.service_summary_statistics.as_ref().unwrap().total_count)
            .sum();
        assert_eq!(n, inventory.total_count, "period {period}");
    }
    let (edge_points, _) = e
        .time_series(&TimeSeriesQuery {
            entity_selector: Some("edge(\"checkout-api\", \"inventory-svc\")".into()),
            ..TimeSeriesQuery::default()
        })
        .unwrap();
    assert!(
        edge_points
            .iter()
            .all(|p| p.edge_summary_statistics.is_some())
    );
    assert!(!edge_points.is_empty());
    let bad = e
        .time_series(&TimeSeriesQuery {
            entity_selector: Some("fault".into()),
            ..TimeSeriesQuery::default()
        })
        .unwrap_err();
    assert!(bad.to_string().contains("not an entity selector"), "{bad}");
}

#[test]
fn a_store_of_many_small_files_gives_the_same_graph_from_corrected_rollups() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Engine::open(
        tmp.path(),
        EngineOptions {
            flush_rows: 1_500,
            // the many small files are the point: no compaction behind the test's back
            maintenance_interval: None,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    for chunk in corpus()
        .split(|c| *c == b'\n')
        .collect::<Vec<_>>()
        .chunks(500)
    {
        e.ingest(&chunk.join(&b'\n')).unwrap();
    }
    e.flush().unwrap();
    assert!(e.stats().files > 5);
    let g = e.service_graph(&GraphQuery::default()).unwrap();
    assert_eq!(g.mode, Answered::Fast);
    assert_eq!(g.partitions_scanned, 0);
    let (want_n, want_e) = expected();
    assert_eq!(graph_counts(&g), (want_n, want_e));
}

#[test]
fn forecasts_bound_steady_faults_and_flag_a_spike() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Engine::open(
        tmp.path(),
        EngineOptions {
            maintenance_interval: None,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let t0: i64 = 1_599_998_400;
    let mut docs = String::new();
    for m in 0..12i64 {
        let (requests, faults) = if m == 11 { (25, 20) } else { (10, 2) };
        for i in 0..requests {
            let t = t0 + m * 60 + i;
            docs.push_str(&format!(
                r#"{{"trace_id":"1-{t:08x}-{m:08x}{i:016x}","id":"{:016x}","name":"s","start_time":{t},"end_time":{t}.5,"fault":{}}}"#,
                m * 100 + i + 1,
                i < faults
            ));
            docs.push('\n');
        }
    }
    assert_eq!(e.ingest(docs.as_bytes()).unwrap().rejected.len(), 0);
    e.flush().unwrap();
    let series = |mode, forecast| {
        e.time_series(&TimeSeriesQuery {
            entity_selector: Some("service(\"s\")".into()),
            mode,
            forecast,
            ..TimeSeriesQuery::default()
        })
        .unwrap()
        .0
    };
    let points = series(Mode::Fast, true);
    assert_eq!(points.len(), 12);
    assert_eq!(points, series(Mode::Exact, true), "rollups and scans agree");
    assert!(
        points[0].service_forecast_statistics.is_none(),
        "no history"
    );
    for p in &points[1..11] {
        let f = p.service_forecast_statistics.unwrap();
        let faults = p
            .service_summary_statistics
            .as_ref()
            .unwrap()
            .fault_statistics
            .total_count;
        assert!(
            (f.fault_count_low..=f.fault_count_high).contains(&faults),
            "{faults} outside {f:?}"
        );
    }
    let spike = points[11].service_forecast_statistics.unwrap();
    assert!(spike.fault_count_high < 20, "{spike:?}");
    assert!(
        series(Mode::Auto, false)
            .iter()
            .all(|p| p.service_forecast_statistics.is_none())
    );
    let long = e
        .time_series(&TimeSeriesQuery {
            period_s: u64::MAX / 2,
            forecast: true,
            ..TimeSeriesQuery::default()
        })
        .unwrap_err();
    assert!(long.to_string().contains("too long"), "{long}");
}
