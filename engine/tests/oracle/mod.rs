//! A brute-force filter-expression evaluator: the test oracle for `query::lower`.
//!
//! Written from `docs/filter-semantics.md` and SPEC 3 / 7 only, deliberately without
//! looking at the real evaluator. Everything is plain and per trace: documents are
//! flattened into rows, upserts are applied (SPEC 7.8), each trace gets its root, nodes,
//! inferred nodes and edges, and the AST is walked recursively.
//!
//! Sections:
//! 1. rows and upserts
//! 2. the trace model (root, nodes, inferred nodes, edges)
//! 3. evaluation at trace level and in node views
//! 4. root causes (separate on purpose: `rootcause.*.*` and `rootcause.json`)

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use serde_json::{Value as Json, json};
use tracelake_query::filter::ast::{
    BoolKw, CmpOp, NumKw, RootCauseKind, RootCauseLevel, ServiceRef, StrKw, StrOp, Value,
};
use tracelake_query::filter::{Expr, ExprKind, Pred, parse};

/// Trace ids (lowercase text) of the traces `expr` matches. Panics on an unknown group or
/// a group cycle (use [`try_matching_ids`] to see those as errors).
pub fn matching_ids(
    docs: &[Json],
    expr: &Expr,
    groups: &HashMap<String, String>,
) -> BTreeSet<String> {
    try_matching_ids(docs, expr, groups).unwrap_or_else(|e| panic!("oracle: {e}"))
}

/// As [`matching_ids`], with unknown groups and group cycles reported as errors.
pub fn try_matching_ids(
    docs: &[Json],
    expr: &Expr,
    groups: &HashMap<String, String>,
) -> Result<BTreeSet<String>, String> {
    check_groups(expr, groups, &mut Vec::new())?;
    let ev = Eval { groups };
    Ok(traces(docs)
        .iter()
        .filter(|t| ev.trace(t, expr))
        .map(|t| t.id.clone())
        .collect())
}

/// The oracle's view of `docs` (roots, nodes, inferred nodes, edges, root causes), for
/// failure messages.
pub fn describe(docs: &[Json]) -> String {
    let mut out = String::new();
    for t in traces(docs) {
        let root = t.root.map(|i| t.rows[i].id.as_str());
        let _ = writeln!(out, "trace {} root={root:?}", t.id);
        for (i, r) in t.rows.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {} {} {:?} parent={:?} start={} end={:?} node={:?} inferred={:?}",
                if r.is_segment { "seg" } else { "sub" },
                r.id,
                r.name,
                r.parent_id,
                r.start,
                r.end,
                t.node[i].as_ref().map(|n| (&n.name, &n.kind, &n.account)),
                t.inferred[i].as_ref().map(|n| (&n.name, &n.kind)),
            );
        }
        for e in &t.edges {
            let _ = writeln!(
                out,
                "  edge {}({}) -> {}({}) via {}",
                e.from.name, e.from.kind, e.to.name, e.to.kind, t.rows[e.caller].id
            );
        }
        for rc in root_causes(&t) {
            let _ = writeln!(out, "  rootcause {:?} {}", rc.kind, root_cause_json(&rc));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Rows and upserts
// ---------------------------------------------------------------------------------------

/// An annotation value.
#[derive(Debug, Clone, PartialEq)]
pub enum Ann {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// One exception of a row's `cause`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exception {
    /// The exception's `type`.
    pub name: Option<String>,
    pub message: Option<String>,
}

/// One segment or subsegment, flattened.
#[derive(Debug, Clone)]
pub struct Row {
    pub trace_id: String,
    pub id: String,
    pub parent_id: Option<String>,
    /// A segment row (a document without `"type": "subsegment"`), not a subsegment row.
    pub is_segment: bool,
    pub name: String,
    pub origin: Option<String>,
    pub namespace: Option<String>,
    pub start: f64,
    pub end: Option<f64>,
    pub in_progress: bool,
    pub error: bool,
    pub fault: bool,
    pub throttle: bool,
    pub http_method: Option<String>,
    pub http_url: Option<String>,
    pub http_user_agent: Option<String>,
    pub http_client_ip: Option<String>,
    pub http_status: Option<f64>,
    pub user: Option<String>,
    pub account_id: Option<String>,
    pub instance_id: Option<String>,
    pub availability_zone: Option<String>,
    pub resource_arn: Option<String>,
    pub annotations: Vec<(String, Ann)>,
    pub has_sql: bool,
    pub has_table_name: bool,
    pub exceptions: Vec<Exception>,
}

fn text_at(v: &Json, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().map(str::to_owned)
}

fn flag(v: &Json, key: &str) -> bool {
    v.get(key).and_then(Json::as_bool).unwrap_or(false)
}

fn row_from(v: &Json, trace_id: &str, parent_id: Option<String>, is_segment: bool) -> Row {
    let annotations = v
        .get("annotations")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, x)| {
                    let a = match x {
                        Json::String(s) => Ann::Str(s.clone()),
                        Json::Number(n) => Ann::Num(n.as_f64()?),
                        Json::Bool(b) => Ann::Bool(*b),
                        _ => return None,
                    };
                    Some((k.clone(), a))
                })
                .collect()
        })
        .unwrap_or_default();
    let exceptions = v
        .get("cause")
        .and_then(|c| c.get("exceptions"))
        .and_then(Json::as_array)
        .map(|xs| {
            xs.iter()
                .map(|x| Exception {
                    name: text_at(x, &["type"]),
                    message: text_at(x, &["message"]),
                })
                .collect()
        })
        .unwrap_or_default();
    Row {
        trace_id: trace_id.to_ascii_lowercase(),
        id: text_at(v, &["id"]).unwrap_or_default().to_ascii_lowercase(),
        parent_id: parent_id.map(|p| p.to_ascii_lowercase()),
        is_segment,
        name: text_at(v, &["name"]).unwrap_or_default(),
        origin: text_at(v, &["origin"]),
        namespace: text_at(v, &["namespace"]),
        start: v.get("start_time").and_then(Json::as_f64).unwrap_or(0.0),
        end: v.get("end_time").and_then(Json::as_f64),
        in_progress: flag(v, "in_progress"),
        error: flag(v, "error"),
        fault: flag(v, "fault"),
        throttle: flag(v, "throttle"),
        http_method: text_at(v, &["http", "request", "method"]),
        http_url: text_at(v, &["http", "request", "url"]),
        http_user_agent: text_at(v, &["http", "request", "user_agent"]),
        http_client_ip: text_at(v, &["http", "request", "client_ip"]),
        http_status: v.pointer("/http/response/status").and_then(Json::as_f64),
        user: text_at(v, &["user"]),
        account_id: text_at(v, &["aws", "account_id"]),
        instance_id: text_at(v, &["aws", "ec2", "instance_id"]),
        availability_zone: text_at(v, &["aws", "ec2", "availability_zone"]),
        resource_arn: text_at(v, &["resource_arn"]),
        annotations,
        has_sql: v.get("sql").is_some_and(Json::is_object),
        has_table_name: v.pointer("/aws/table_name").is_some_and(|x| !x.is_null()),
        exceptions,
    }
}

/// Every row of one document, parents before children. Embedded subsegments inherit the
/// trace id and have their enclosing row as parent.
pub fn flatten(doc: &Json) -> Vec<Row> {
    fn walk(v: &Json, trace_id: &str, parent: Option<String>, seg: bool, out: &mut Vec<Row>) {
        let row = row_from(v, trace_id, parent, seg);
        let id = row.id.clone();
        out.push(row);
        if let Some(subs) = v.get("subsegments").and_then(Json::as_array) {
            for sub in subs {
                walk(sub, trace_id, Some(id.clone()), false, out);
            }
        }
    }
    let trace_id = text_at(doc, &["trace_id"]).unwrap_or_default();
    let is_segment = doc.get("type").and_then(Json::as_str) != Some("subsegment");
    let mut out = Vec::new();
    walk(
        doc,
        &trace_id,
        text_at(doc, &["parent_id"]),
        is_segment,
        &mut out,
    );
    out
}

/// The live rows after upserts (SPEC 7.8): per `(trace_id, id)`, in input order, the
/// later row wins unless the earlier one is complete and the later one in progress.
pub fn live_rows(docs: &[Json]) -> Vec<Row> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut live: HashMap<(String, String), Row> = HashMap::new();
    for doc in docs {
        for row in flatten(doc) {
            let key = (row.trace_id.clone(), row.id.clone());
            match live.get(&key) {
                Some(old) if old.end.is_some() && row.end.is_none() => {}
                Some(_) => {
                    live.insert(key, row);
                }
                None => {
                    order.push(key.clone());
                    live.insert(key, row);
                }
            }
        }
    }
    order.into_iter().filter_map(|k| live.remove(&k)).collect()
}

// ---------------------------------------------------------------------------------------
// 2. The trace model
// ---------------------------------------------------------------------------------------

/// A service-graph node. `inferred` keeps inferred nodes apart from real ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    pub name: String,
    /// `origin` or "" for real nodes; the inferred type for inferred ones.
    pub kind: String,
    pub account: Option<String>,
    pub inferred: bool,
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: Node,
    pub to: Node,
    /// The calling row (index into `Trace::rows`).
    pub caller: usize,
}

#[derive(Debug)]
pub struct Trace {
    pub id: String,
    pub rows: Vec<Row>,
    pub by_id: HashMap<String, usize>,
    pub root: Option<usize>,
    /// Per row: the node it belongs to.
    pub node: Vec<Option<Node>>,
    /// Per row: the inferred node it yields.
    pub inferred: Vec<Option<Node>>,
    pub edges: Vec<Edge>,
}

/// Every trace of `docs`, ordered by trace id.
pub fn traces(docs: &[Json]) -> Vec<Trace> {
    let mut by_trace: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for row in live_rows(docs) {
        by_trace.entry(row.trace_id.clone()).or_default().push(row);
    }
    by_trace
        .into_iter()
        .map(|(id, rows)| build_trace(id, rows))
        .collect()
}

fn earliest(rows: &[Row], candidates: impl Iterator<Item = usize>) -> Option<usize> {
    candidates.min_by(|&a, &b| {
        rows[a]
            .start
            .total_cmp(&rows[b].start)
            .then_with(|| rows[a].id.cmp(&rows[b].id))
    })
}

pub fn build_trace(id: String, rows: Vec<Row>) -> Trace {
    let by_id: HashMap<String, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.clone(), i))
        .collect();

    // Root: segment rows whose parent_id is absent or names no row; else any segment row.
    let segments: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_segment).collect();
    let candidates = segments.iter().copied().filter(|&i| {
        rows[i]
            .parent_id
            .as_ref()
            .is_none_or(|p| !by_id.contains_key(p))
    });
    let root = earliest(&rows, candidates).or_else(|| earliest(&rows, segments.iter().copied()));

    // Nodes: a segment row's own; a subsegment row's enclosing segment's.
    let node: Vec<Option<Node>> = (0..rows.len())
        .map(|i| {
            let mut cur = i;
            for _ in 0..=rows.len() {
                let r = &rows[cur];
                if r.is_segment {
                    return Some(Node {
                        name: r.name.clone(),
                        kind: r.origin.clone().unwrap_or_default(),
                        account: r.account_id.clone(),
                        inferred: false,
                    });
                }
                cur = *by_id.get(r.parent_id.as_ref()?)?;
            }
            None // a cycle of subsegment rows
        })
        .collect();

    // Inferred nodes: aws/remote subsegment rows that no segment row names as parent.
    let called: HashSet<&str> = rows
        .iter()
        .filter(|r| r.is_segment)
        .filter_map(|r| r.parent_id.as_deref())
        .collect();
    let inferred: Vec<Option<Node>> = rows
        .iter()
        .map(|r| {
            let ns = r.namespace.as_deref();
            if r.is_segment
                || !matches!(ns, Some("aws" | "remote"))
                || called.contains(r.id.as_str())
            {
                return None;
            }
            let kind = if r.has_sql {
                "Database::SQL".to_owned()
            } else if ns == Some("aws") {
                if r.has_table_name {
                    format!("AWS::{}::Table", r.name)
                } else {
                    format!("AWS::{}", r.name)
                }
            } else {
                "remote".to_owned()
            };
            Some(Node {
                name: r.name.clone(),
                kind,
                account: None,
                inferred: true,
            })
        })
        .collect();

    // Edges.
    let mut edges = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if r.is_segment
            && let Some(p) = &r.parent_id
            && let Some(&c) = by_id.get(p)
            && let (Some(from), Some(to)) = (&node[c], &node[i])
            && from != to
        {
            edges.push(Edge {
                from: from.clone(),
                to: to.clone(),
                caller: c,
            });
        }
        if let Some(to) = &inferred[i]
            && let Some(from) = &node[i]
        {
            edges.push(Edge {
                from: from.clone(),
                to: to.clone(),
                caller: i,
            });
        }
    }

    Trace {
        id,
        rows,
        by_id,
        root,
        node,
        inferred,
        edges,
    }
}

/// `service(S)` / one side of `edge(a, b)`: every part `S` gives must be equal.
/// `"name"` without `id(...)` compares the name only; `""` matches every node.
pub fn ref_matches(r: &ServiceRef, n: &Node) -> bool {
    if !r.by_id {
        return match r.name.as_deref() {
            None | Some("") => true,
            Some(x) => n.name == x,
        };
    }
    r.name.as_ref().is_none_or(|x| *x == n.name)
        && r.kind.as_ref().is_none_or(|x| *x == n.kind)
        && r.account_id
            .as_ref()
            .is_none_or(|x| n.account.as_ref() == Some(x))
}

// ---------------------------------------------------------------------------------------
// 3. Evaluation
// ---------------------------------------------------------------------------------------

fn group_name(arn: bool, value: &str) -> String {
    if !arn {
        return value.to_owned();
    }
    // arn:aws:xray:<region>:<account>:group/NAME (a trailing /ID is ignored)
    match value.split_once(":group/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or_default().to_owned(),
        None => value.to_owned(),
    }
}

/// Unknown groups, unparsable group expressions and cycles are errors (checked up front,
/// so that short-circuiting cannot hide them).
fn check_groups(
    e: &Expr,
    groups: &HashMap<String, String>,
    stack: &mut Vec<String>,
) -> Result<(), String> {
    match &e.kind {
        ExprKind::And(xs) | ExprKind::Or(xs) => {
            xs.iter().try_for_each(|x| check_groups(x, groups, stack))
        }
        ExprKind::Not(x) => check_groups(x, groups, stack),
        ExprKind::Pred(Pred::Group { arn, value }) => {
            let name = group_name(*arn, value);
            if stack.contains(&name) {
                return Err(format!("group cycle through {name:?}"));
            }
            let text = groups
                .get(&name)
                .ok_or_else(|| format!("unknown group {name:?}"))?;
            let inner = parse(text).map_err(|e| format!("group {name:?}: {e}"))?;
            stack.push(name);
            let r = check_groups(&inner, groups, stack);
            stack.pop();
            r
        }
        ExprKind::Pred(_) => Ok(()),
    }
}

fn cmp_num(v: f64, op: CmpOp, lit: f64) -> bool {
    match op {
        CmpOp::Eq => v == lit,
        CmpOp::Ne => v != lit,
        CmpOp::Lt => v < lit,
        CmpOp::Le => v <= lit,
        CmpOp::Gt => v > lit,
        CmpOp::Ge => v >= lit,
    }
}

fn cmp_str(v: &str, op: CmpOp, lit: &str) -> bool {
    // byte-wise: str's Ord is byte-wise lexicographic
    match op {
        CmpOp::Eq => v == lit,
        CmpOp::Ne => v != lit,
        CmpOp::Lt => v < lit,
        CmpOp::Le => v <= lit,
        CmpOp::Gt => v > lit,
        CmpOp::Ge => v >= lit,
    }
}

fn str_op(v: &str, op: StrOp, lit: &str) -> bool {
    match op {
        StrOp::Eq => v == lit,
        StrOp::Ne => v != lit,
        StrOp::Contains => v.contains(lit),
        StrOp::BeginsWith => v.starts_with(lit),
        StrOp::EndsWith => v.ends_with(lit),
    }
}

fn ann_matches(v: &Ann, cmp: &Option<(CmpOp, Value)>, sop: &Option<(StrOp, String)>) -> bool {
    if let Some((op, lit)) = cmp {
        return match (v, lit) {
            (Ann::Num(a), Value::Num(b)) => cmp_num(*a, *op, *b),
            (Ann::Str(a), Value::Str(b)) => cmp_str(a, *op, b),
            (Ann::Bool(a), Value::Bool(b)) => match op {
                CmpOp::Eq => a == b,
                CmpOp::Ne => a != b,
                _ => false,
            },
            _ => false,
        };
    }
    if let Some((op, lit)) = sop {
        return match v {
            Ann::Str(a) => str_op(a, *op, lit),
            _ => false,
        };
    }
    true // bare: present
}

/// A row's own value of a string keyword (`name`, `type` = origin, `message` = none).
fn row_str(r: &Row, kw: StrKw) -> Option<&str> {
    match kw {
        StrKw::HttpUrl => r.http_url.as_deref(),
        StrKw::HttpMethod => r.http_method.as_deref(),
        StrKw::HttpUserAgent => r.http_user_agent.as_deref(),
        StrKw::HttpClientIp => r.http_client_ip.as_deref(),
        StrKw::User => r.user.as_deref(),
        StrKw::Name => Some(r.name.as_str()),
        StrKw::Type => r.origin.as_deref(),
        StrKw::AvailabilityZone => r.availability_zone.as_deref(),
        StrKw::InstanceId => r.instance_id.as_deref(),
        StrKw::ResourceArn => r.resource_arn.as_deref(),
        // not defined outside rootcause braces: treated as missing
        StrKw::Message => None,
    }
}

/// What `service(...) { f }` / `edge(...) { f }` evaluate `f` on.
#[derive(Debug, Clone, Copy)]
struct View<'a> {
    idx: usize,
    row: &'a Row,
    /// Set when the view is an inferred node (the row is the subsegment yielding it).
    inferred: Option<&'a Node>,
}

#[derive(Debug)]
struct Eval<'g> {
    groups: &'g HashMap<String, String>,
}

impl Eval<'_> {
    fn trace(&self, t: &Trace, e: &Expr) -> bool {
        match &e.kind {
            ExprKind::And(xs) => xs.iter().all(|x| self.trace(t, x)),
            ExprKind::Or(xs) => xs.iter().any(|x| self.trace(t, x)),
            ExprKind::Not(x) => !self.trace(t, x),
            ExprKind::Pred(p) => self.trace_pred(t, p),
        }
    }

    fn trace_pred(&self, t: &Trace, p: &Pred) -> bool {
        let root = t.root.map(|i| &t.rows[i]);
        match p {
            Pred::Bool { kw, value } => {
                let v = match kw {
                    BoolKw::Ok => root.is_some_and(|r| !r.error && !r.fault && !r.throttle),
                    BoolKw::Error => root.is_some_and(|r| r.error),
                    BoolKw::Fault => root.is_some_and(|r| r.fault),
                    BoolKw::Throttle => t.rows.iter().any(|r| r.throttle),
                    BoolKw::Partial => t.rows.iter().any(|r| r.in_progress),
                    BoolKw::Inferred => t.inferred.iter().any(Option::is_some),
                    other => panic!("oracle: `{}` outside braces", other.name()),
                };
                v == *value
            }
            Pred::Num { kw, op, value } => {
                let v = match kw {
                    NumKw::ResponseTime => root.and_then(|r| Some(r.end? - r.start)),
                    NumKw::Duration => {
                        let max_end = t.rows.iter().filter_map(|r| r.end).reduce(f64::max);
                        let min_start = t.rows.iter().map(|r| r.start).reduce(f64::min);
                        max_end.zip(min_start).map(|(e, s)| e - s)
                    }
                    NumKw::HttpStatus => root.and_then(|r| r.http_status),
                    other => panic!("oracle: `{}` outside rootcause braces", other.name()),
                };
                v.is_some_and(|v| cmp_num(v, *op, *value))
            }
            Pred::Str { kw, op, value } => trace_strs(t, *kw).iter().any(|s| str_op(s, *op, value)),
            Pred::StrSet { kw } => !trace_strs(t, *kw).is_empty(),
            Pred::Annotation { key, cmp, str_op } => t.rows.iter().any(|r| {
                r.annotations
                    .iter()
                    .any(|(k, v)| k == key && ann_matches(v, cmp, str_op))
            }),
            Pred::Group { arn, value } => {
                let name = group_name(*arn, value);
                // check_groups ran first: the group exists, parses and has no cycle
                let text = &self.groups[&name];
                let inner = parse(text).unwrap_or_else(|e| panic!("group {name}: {e}"));
                self.trace(t, &inner)
            }
            Pred::Service { svc, body } => {
                let any = ServiceRef::default();
                let r = svc.as_ref().unwrap_or(&any);
                service_views(t, r)
                    .iter()
                    .any(|v| body.as_ref().is_none_or(|b| view_eval(t, v, b)))
            }
            Pred::Edge { from, to, body } => t.edges.iter().any(|e| {
                ref_matches(from, &e.from)
                    && ref_matches(to, &e.to)
                    && body.as_ref().is_none_or(|b| {
                        let v = View {
                            idx: e.caller,
                            row: &t.rows[e.caller],
                            inferred: None,
                        };
                        view_eval(t, &v, b)
                    })
            }),
            Pred::RootCause { kind, level, body } => rootcause_pred(t, *kind, *level, body),
            Pred::RootCauseJson { json } => rootcause_json_pred(t, json),
        }
    }
}

/// Values of a string keyword at trace level: the root's for `http.*`, `name`, `type`;
/// every row's for `user`, `availabilityzone`, `instance.id`, `resource.arn`.
fn trace_strs(t: &Trace, kw: StrKw) -> Vec<&str> {
    let root = t.root.map(|i| &t.rows[i]);
    match kw {
        StrKw::HttpUrl
        | StrKw::HttpMethod
        | StrKw::HttpUserAgent
        | StrKw::HttpClientIp
        | StrKw::Name
        | StrKw::Type => root.and_then(|r| row_str(r, kw)).into_iter().collect(),
        StrKw::User | StrKw::AvailabilityZone | StrKw::InstanceId | StrKw::ResourceArn => {
            t.rows.iter().filter_map(|r| row_str(r, kw)).collect()
        }
        StrKw::Message => Vec::new(),
    }
}

/// One view per segment row of a matching real node and per matching inferred node.
fn service_views<'a>(t: &'a Trace, r: &ServiceRef) -> Vec<View<'a>> {
    let mut out = Vec::new();
    for (i, row) in t.rows.iter().enumerate() {
        if row.is_segment
            && let Some(n) = &t.node[i]
            && ref_matches(r, n)
        {
            out.push(View {
                idx: i,
                row,
                inferred: None,
            });
        }
        if let Some(n) = &t.inferred[i]
            && ref_matches(r, n)
        {
            out.push(View {
                idx: i,
                row,
                inferred: Some(n),
            });
        }
    }
    out
}

fn view_eval(t: &Trace, v: &View<'_>, e: &Expr) -> bool {
    match &e.kind {
        ExprKind::And(xs) => xs.iter().all(|x| view_eval(t, v, x)),
        ExprKind::Or(xs) => xs.iter().any(|x| view_eval(t, v, x)),
        ExprKind::Not(x) => !view_eval(t, v, x),
        ExprKind::Pred(p) => view_pred(t, v, p),
    }
}

fn view_pred(t: &Trace, v: &View<'_>, p: &Pred) -> bool {
    let r = v.row;
    match p {
        Pred::Bool { kw, value } => {
            let x = match kw {
                BoolKw::Ok => !r.error && !r.fault && !r.throttle,
                BoolKw::Error => r.error,
                BoolKw::Fault => r.fault,
                BoolKw::Throttle => r.throttle,
                BoolKw::Partial => r.in_progress,
                BoolKw::Inferred => v.inferred.is_some(),
                BoolKw::Root => t.root == Some(v.idx) && v.inferred.is_none(),
                other => panic!("oracle: `{}` inside service/edge braces", other.name()),
            };
            x == *value
        }
        Pred::Num { kw, op, value } => {
            let x = match kw {
                NumKw::ResponseTime | NumKw::Duration => r.end.map(|e| e - r.start),
                NumKw::HttpStatus => r.http_status,
                other => panic!("oracle: `{}` inside service/edge braces", other.name()),
            };
            x.is_some_and(|x| cmp_num(x, *op, *value))
        }
        Pred::Str { kw, op, value } => view_str(v, *kw).is_some_and(|s| str_op(s, *op, value)),
        Pred::StrSet { kw } => view_str(v, *kw).is_some(),
        other => panic!("oracle: {other} is not allowed inside service/edge braces"),
    }
}

fn view_str<'a>(v: &View<'a>, kw: StrKw) -> Option<&'a str> {
    match (kw, v.inferred) {
        (StrKw::Type, Some(n)) => Some(n.kind.as_str()),
        (StrKw::Name, Some(n)) => Some(n.name.as_str()),
        _ => row_str(v.row, kw),
    }
}

// ---------------------------------------------------------------------------------------
// 4. Root causes
// ---------------------------------------------------------------------------------------

/// An entity: a row, or the inferred node yielded by a row (a child of that row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ent {
    Row(usize),
    Inferred(usize),
}

impl Ent {
    fn row(self) -> usize {
        match self {
            Ent::Row(i) | Ent::Inferred(i) => i,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RcEntity {
    pub name: String,
    pub exceptions: Vec<Exception>,
    pub remote: bool,
    /// Response-time root causes only.
    pub coverage: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RcService {
    pub name: String,
    pub kind: String,
    pub account: Option<String>,
    pub inferred: bool,
    pub entities: Vec<RcEntity>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RootCause {
    pub kind: RootCauseKind,
    pub services: Vec<RcService>,
    pub client_impacting: bool,
}

#[derive(Debug)]
struct Entities<'a> {
    t: &'a Trace,
    children: HashMap<usize, Vec<usize>>,
}

impl<'a> Entities<'a> {
    fn new(t: &'a Trace) -> Self {
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, r) in t.rows.iter().enumerate() {
            if let Some(p) = &r.parent_id
                && let Some(&c) = t.by_id.get(p)
                && c != i
            {
                children.entry(c).or_default().push(i);
            }
        }
        Entities { t, children }
    }

    fn all(&self) -> Vec<Ent> {
        let mut out = Vec::new();
        for i in 0..self.t.rows.len() {
            out.push(Ent::Row(i));
            if self.t.inferred[i].is_some() {
                out.push(Ent::Inferred(i));
            }
        }
        out
    }

    fn children(&self, e: Ent) -> Vec<Ent> {
        match e {
            Ent::Inferred(_) => Vec::new(),
            Ent::Row(i) => {
                let mut out: Vec<Ent> = self
                    .children
                    .get(&i)
                    .map(|v| v.iter().map(|&c| Ent::Row(c)).collect())
                    .unwrap_or_default();
                if self.t.inferred[i].is_some() {
                    out.push(Ent::Inferred(i));
                }
                out
            }
        }
    }

    fn parent(&self, e: Ent) -> Option<Ent> {
        match e {
            Ent::Inferred(i) => Some(Ent::Row(i)),
            Ent::Row(i) => {
                let p = self.t.rows[i].parent_id.as_ref()?;
                self.t.by_id.get(p).map(|&c| Ent::Row(c))
            }
        }
    }

    fn descendants(&self, e: Ent) -> Vec<Ent> {
        let mut seen = HashSet::from([e]);
        let mut stack = vec![e];
        let mut out = Vec::new();
        while let Some(x) = stack.pop() {
            for c in self.children(x) {
                if seen.insert(c) {
                    out.push(c);
                    stack.push(c);
                }
            }
        }
        out
    }

    /// From the root (or the topmost ancestor) down to `e`.
    fn path(&self, e: Ent) -> Vec<Ent> {
        let root = self.t.root.map(Ent::Row);
        let mut chain = vec![e];
        let mut cur = e;
        while Some(cur) != root {
            match self.parent(cur) {
                Some(p) if !chain.contains(&p) => {
                    chain.push(p);
                    cur = p;
                }
                _ => break,
            }
        }
        chain.reverse();
        chain
    }

    fn row(&self, e: Ent) -> &'a Row {
        &self.t.rows[e.row()]
    }

    fn node(&self, e: Ent) -> Option<Node> {
        match e {
            Ent::Row(i) => self.t.node[i].clone(),
            Ent::Inferred(i) => self.t.inferred[i].clone(),
        }
    }

    fn duration(&self, e: Ent) -> Option<f64> {
        let r = self.row(e);
        r.end.map(|end| end - r.start)
    }

    fn entity(&self, e: Ent, coverage: Option<f64>) -> RcEntity {
        let r = self.row(e);
        match e {
            Ent::Row(_) => RcEntity {
                name: r.name.clone(),
                // response-time entities are {Name, Coverage, Remote}: no exceptions
                exceptions: if coverage.is_some() {
                    Vec::new()
                } else {
                    r.exceptions.clone()
                },
                remote: !r.is_segment && matches!(r.namespace.as_deref(), Some("aws" | "remote")),
                coverage,
            },
            Ent::Inferred(i) => RcEntity {
                name: self.t.inferred[i]
                    .as_ref()
                    .map(|n| n.name.clone())
                    .unwrap_or_default(),
                exceptions: Vec::new(),
                remote: true,
                coverage,
            },
        }
    }

    /// Cuts a path into services (runs of entities of the same node).
    fn services(&self, path: &[Ent], coverage: impl Fn(Ent) -> Option<f64>) -> Vec<RcService> {
        let mut out: Vec<(Option<Node>, RcService)> = Vec::new();
        for &e in path {
            let n = self.node(e);
            let ent = self.entity(e, coverage(e));
            let same = out.last().is_some_and(|(last, _)| *last == n);
            if same {
                if let Some((_, svc)) = out.last_mut() {
                    svc.entities.push(ent);
                }
            } else {
                let svc = RcService {
                    name: n.as_ref().map(|n| n.name.clone()).unwrap_or_default(),
                    kind: n.as_ref().map(|n| n.kind.clone()).unwrap_or_default(),
                    account: n.as_ref().and_then(|n| n.account.clone()),
                    inferred: n.as_ref().is_some_and(|n| n.inferred),
                    entities: vec![ent],
                };
                out.push((n, svc));
            }
        }
        out.into_iter().map(|(_, s)| s).collect()
    }
}

fn push_unique(out: &mut Vec<RootCause>, rc: RootCause) {
    // identical root causes are reported once
    if !out.contains(&rc) {
        out.push(rc);
    }
}

/// The root causes of a trace, of every kind.
pub fn root_causes(t: &Trace) -> Vec<RootCause> {
    let ents = Entities::new(t);
    let root = t.root.map(|i| &t.rows[i]);
    let mut out: Vec<RootCause> = Vec::new();

    // Fault / error: flagged entities none of whose descendants has the flag (an inferred
    // entity carries its calling row's flags).
    type Flag = fn(&Row) -> bool;
    let kinds: [(RootCauseKind, Flag); 2] = [
        (RootCauseKind::Fault, |r: &Row| r.fault),
        (RootCauseKind::Error, |r: &Row| r.error),
    ];
    for (kind, has) in kinds {
        for e in ents.all() {
            if !has(ents.row(e)) || ents.descendants(e).iter().any(|&d| has(ents.row(d))) {
                continue;
            }
            let path = ents.path(e);
            let rc = RootCause {
                kind,
                services: ents.services(&path, |_| None),
                client_impacting: root.is_some_and(has),
            };
            push_unique(&mut out, rc);
        }
    }

    // Response time: from the root, step into the longest timed child (ties: earliest
    // start, then smallest id; an inferred entity uses its calling row's id).
    if let Some(ri) = t.root
        && let Some(end) = t.rows[ri].end
    {
        let total = end - t.rows[ri].start;
        let start = Ent::Row(ri);
        let mut path = vec![start];
        let mut cur = start;
        loop {
            let best = ents
                .children(cur)
                .into_iter()
                .filter(|c| ents.duration(*c).is_some() && !path.contains(c))
                .min_by(|&a, &b| {
                    let da = ents.duration(a).unwrap_or(0.0);
                    let db = ents.duration(b).unwrap_or(0.0);
                    db.total_cmp(&da)
                        .then_with(|| ents.row(a).start.total_cmp(&ents.row(b).start))
                        .then_with(|| ents.row(a).id.cmp(&ents.row(b).id))
                });
            match best {
                Some(b) => {
                    path.push(b);
                    cur = b;
                }
                None => break,
            }
        }
        let coverage = |e: Ent| {
            let d = ents.duration(e).unwrap_or(0.0);
            Some(if total > 0.0 {
                (d / total).clamp(0.0, 1.0)
            } else {
                1.0
            })
        };
        let rc = RootCause {
            kind: RootCauseKind::ResponseTime,
            services: ents.services(&path, coverage),
            client_impacting: true,
        };
        push_unique(&mut out, rc);
    }
    out
}

/// A root cause as `TraceSummary` JSON (for `rootcause.json` and for failure output).
pub fn root_cause_json(rc: &RootCause) -> Json {
    let services: Vec<Json> = rc
        .services
        .iter()
        .map(|s| {
            let path: Vec<Json> = s
                .entities
                .iter()
                .map(|e| {
                    if rc.kind == RootCauseKind::ResponseTime {
                        json!({"Name": e.name, "Coverage": e.coverage, "Remote": e.remote})
                    } else {
                        let exs: Vec<Json> = e
                            .exceptions
                            .iter()
                            .map(|x| {
                                let mut o = serde_json::Map::new();
                                if let Some(n) = &x.name {
                                    o.insert("Name".into(), json!(n));
                                }
                                if let Some(m) = &x.message {
                                    o.insert("Message".into(), json!(m));
                                }
                                Json::Object(o)
                            })
                            .collect();
                        json!({"Name": e.name, "Exceptions": exs, "Remote": e.remote})
                    }
                })
                .collect();
            let mut o = json!({
                "Name": s.name,
                "Names": [s.name],
                "Type": s.kind,
                "Inferred": s.inferred,
                "EntityPath": path,
            });
            if let Some(a) = &s.account {
                o["AccountId"] = json!(a);
            }
            o
        })
        .collect();
    json!({"Services": services, "ClientImpacting": rc.client_impacting})
}

/// Objects: every literal field matches; arrays: same length, element by element;
/// scalars: equal (numbers numerically).
fn json_contains(lit: &Json, val: &Json) -> bool {
    match (lit, val) {
        (Json::Object(l), Json::Object(v)) => l
            .iter()
            .all(|(k, x)| v.get(k).is_some_and(|y| json_contains(x, y))),
        (Json::Array(l), Json::Array(v)) => {
            l.len() == v.len() && l.iter().zip(v).all(|(x, y)| json_contains(x, y))
        }
        (Json::Number(a), Json::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn rootcause_json_pred(t: &Trace, text: &str) -> bool {
    let lit: Json = serde_json::from_str(text).unwrap_or_else(|e| panic!("rootcause.json: {e}"));
    root_causes(t)
        .iter()
        .any(|rc| json_contains(&lit, &root_cause_json(rc)))
}

/// One element a `rootcause.K.L { f }` body is evaluated on.
#[derive(Debug, Clone, Copy)]
enum RcView<'a> {
    Service {
        svc: &'a RcService,
        index: usize,
        count: usize,
    },
    Entity {
        ent: &'a RcEntity,
        svc: &'a RcService,
        index: usize,
        count: usize,
    },
    Exception {
        exc: &'a Exception,
        index: usize,
        count: usize,
    },
}

fn rc_views(rc: &RootCause, level: RootCauseLevel) -> Vec<RcView<'_>> {
    match level {
        RootCauseLevel::Service => {
            let count = rc.services.len();
            rc.services
                .iter()
                .enumerate()
                .map(|(index, svc)| RcView::Service { svc, index, count })
                .collect()
        }
        RootCauseLevel::Entity => {
            let all: Vec<(&RcService, &RcEntity)> = rc
                .services
                .iter()
                .flat_map(|s| s.entities.iter().map(move |e| (s, e)))
                .collect();
            let count = all.len();
            all.into_iter()
                .enumerate()
                .map(|(index, (svc, ent))| RcView::Entity {
                    ent,
                    svc,
                    index,
                    count,
                })
                .collect()
        }
        RootCauseLevel::Exception => {
            let all: Vec<&Exception> = rc
                .services
                .iter()
                .flat_map(|s| s.entities.iter())
                .flat_map(|e| e.exceptions.iter())
                .collect();
            let count = all.len();
            all.into_iter()
                .enumerate()
                .map(|(index, exc)| RcView::Exception { exc, index, count })
                .collect()
        }
    }
}

fn rootcause_pred(t: &Trace, kind: RootCauseKind, level: RootCauseLevel, body: &Expr) -> bool {
    root_causes(t)
        .iter()
        .filter(|rc| rc.kind == kind)
        .any(|rc| rc_views(rc, level).iter().any(|v| rc_eval(v, body)))
}

fn rc_eval(v: &RcView<'_>, e: &Expr) -> bool {
    match &e.kind {
        ExprKind::And(xs) => xs.iter().all(|x| rc_eval(v, x)),
        ExprKind::Or(xs) => xs.iter().any(|x| rc_eval(v, x)),
        ExprKind::Not(x) => !rc_eval(v, x),
        ExprKind::Pred(p) => rc_pred(v, p),
    }
}

fn rc_pos(v: &RcView<'_>) -> (usize, usize) {
    match *v {
        RcView::Service { index, count, .. }
        | RcView::Entity { index, count, .. }
        | RcView::Exception { index, count, .. } => (index, count),
    }
}

/// A keyword without a value in the view is missing: every comparison with it fails.
fn rc_pred(v: &RcView<'_>, p: &Pred) -> bool {
    let (index, count) = rc_pos(v);
    match p {
        Pred::Bool { kw, value } => {
            let x = match (kw, v) {
                (BoolKw::First, _) => Some(index == 0),
                (BoolKw::Last, _) => Some(index + 1 == count),
                (BoolKw::Inferred, RcView::Service { svc, .. } | RcView::Entity { svc, .. }) => {
                    Some(svc.inferred)
                }
                (BoolKw::Remote, RcView::Entity { ent, .. }) => Some(ent.remote),
                (BoolKw::Inferred | BoolKw::Remote, _) => None,
                (other, _) => panic!("oracle: `{}` inside rootcause braces", other.name()),
            };
            x.is_some_and(|x| x == *value)
        }
        Pred::Num { kw, op, value } => {
            let x = match (kw, v) {
                (NumKw::Index, _) => Some(index as f64),
                (NumKw::Coverage, RcView::Entity { ent, .. }) => ent.coverage,
                (NumKw::Coverage, _) => None,
                (other, _) => panic!("oracle: `{}` inside rootcause braces", other.name()),
            };
            x.is_some_and(|x| cmp_num(x, *op, *value))
        }
        Pred::Str { kw, op, value } => rc_str(v, *kw).is_some_and(|s| str_op(s, *op, value)),
        Pred::StrSet { kw } => rc_str(v, *kw).is_some(),
        other => panic!("oracle: {other} is not allowed inside rootcause braces"),
    }
}

fn rc_str<'a>(v: &RcView<'a>, kw: StrKw) -> Option<&'a str> {
    match (kw, *v) {
        (StrKw::Name, RcView::Service { svc, .. }) => Some(svc.name.as_str()),
        (StrKw::Name, RcView::Entity { ent, .. }) => Some(ent.name.as_str()),
        (StrKw::Name, RcView::Exception { exc, .. }) => exc.name.as_deref(),
        (StrKw::Type, RcView::Service { svc, .. } | RcView::Entity { svc, .. }) => {
            Some(svc.kind.as_str())
        }
        (StrKw::Message, RcView::Exception { exc, .. }) => exc.message.as_deref(),
        (StrKw::Type | StrKw::Message, _) => None,
        (other, _) => panic!("oracle: `{}` inside rootcause braces", other.name()),
    }
}
