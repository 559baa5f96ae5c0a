//! Root causes of a trace (`FaultRootCauses`, `ErrorRootCauses`,
//! `ResponseTimeRootCauses`), as `docs/filter-semantics.md` "Root causes" defines them, and
//! the `rootcause.*` filter predicates over them.

use arrow::array::{Array, AsArray};
use serde_json::{Value, json};
use tracelake_storage::schema::col;

use crate::filter::ast::{BoolKw, NumKw, RootCauseKind, RootCauseLevel, StrKw, StrOp};
use crate::lower::{CauseProgram, cmp_f64};
use crate::trace::{Node, Trace};

/// An exception of a root-cause entity (`type` and `message` of the `cause` block).
#[derive(Debug, Clone, PartialEq)]
pub struct CauseException {
    pub name: Option<String>,
    pub message: Option<String>,
}

/// An entity on a root-cause path.
#[derive(Debug, Clone, PartialEq)]
pub struct CauseEntity {
    pub name: String,
    /// Exceptions (fault and error causes).
    pub exceptions: Vec<CauseException>,
    pub remote: bool,
    /// Share of the root response time (response-time causes).
    pub coverage: Option<f64>,
}

/// A service on a root-cause path.
#[derive(Debug, Clone, PartialEq)]
pub struct CauseService {
    pub name: String,
    pub kind: String,
    pub account_id: Option<String>,
    pub inferred: bool,
    pub entity_path: Vec<CauseEntity>,
}

/// One root cause.
#[derive(Debug, Clone, PartialEq)]
pub struct RootCause {
    pub services: Vec<CauseService>,
    pub client_impacting: Option<bool>,
}

/// The three root-cause lists of a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RootCauses {
    pub fault: Vec<RootCause>,
    pub error: Vec<RootCause>,
    pub response_time: Vec<RootCause>,
}

/// A row, or the inferred node a row yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entity {
    Row(usize),
    Inferred(usize),
}

struct Walk<'t, 'a> {
    t: &'t Trace<'a>,
    children: Vec<Vec<usize>>,
}

impl<'t, 'a> Walk<'t, 'a> {
    fn kids(&self, e: Entity) -> Vec<Entity> {
        match e {
            Entity::Inferred(_) => Vec::new(),
            Entity::Row(k) => {
                let mut v: Vec<Entity> = self.children[k].iter().map(|&c| Entity::Row(c)).collect();
                if self.t.inferred[k] {
                    v.push(Entity::Inferred(k));
                }
                v
            }
        }
    }

    fn parent(&self, e: Entity) -> Option<Entity> {
        match e {
            Entity::Inferred(k) => Some(Entity::Row(k)),
            Entity::Row(k) => {
                let p = self.t.rows[k].parent?;
                let &pk = self.t.by_id.get(&p)?;
                (pk != k).then_some(Entity::Row(pk))
            }
        }
    }

    fn row(&self, e: Entity) -> usize {
        match e {
            Entity::Row(k) | Entity::Inferred(k) => k,
        }
    }

    fn node(&self, e: Entity) -> Option<Node<'a>> {
        match e {
            Entity::Row(k) => self.t.node_of(k),
            Entity::Inferred(k) => self.t.inferred_node(k),
        }
    }

    fn elapsed(&self, e: Entity) -> Option<i64> {
        let r = &self.t.rows[self.row(e)];
        r.end?.checked_sub(r.start)
    }

    /// Path from the topmost ancestor down to `e`.
    fn path(&self, e: Entity) -> Vec<Entity> {
        let mut out = vec![e];
        let mut cur = e;
        while let Some(p) = self.parent(cur) {
            if out.len() > self.t.rows.len() + 1 || out.contains(&p) {
                break;
            }
            out.push(p);
            cur = p;
        }
        out.reverse();
        out
    }

    fn exceptions(&self, e: Entity) -> Vec<CauseException> {
        let Entity::Row(k) = e else {
            return Vec::new();
        };
        let Some(causes) = self
            .t
            .cols
            .other(col::CAUSE)
            .and_then(|a| a.as_string_opt::<i32>())
        else {
            return Vec::new();
        };
        let i = self.t.rows[k].at;
        if causes.is_null(i) {
            return Vec::new();
        }
        let Ok(v) = serde_json::from_str::<Value>(causes.value(i)) else {
            return Vec::new();
        };
        let text = |x: Option<&Value>| x.and_then(Value::as_str).map(str::to_owned);
        v.get("exceptions")
            .and_then(Value::as_array)
            .map(|xs| {
                xs.iter()
                    .map(|x| CauseException {
                        name: text(x.get("type")),
                        message: text(x.get("message")),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn cause(
        &self,
        path: &[Entity],
        coverage_of: Option<i64>,
        impacting: Option<bool>,
    ) -> RootCause {
        let mut services: Vec<CauseService> = Vec::new();
        let mut last_node: Option<Option<Node<'a>>> = None;
        for &e in path {
            let node = self.node(e);
            let entity = CauseEntity {
                name: self.t.rows[self.row(e)].name.to_owned(),
                exceptions: if coverage_of.is_some() {
                    Vec::new()
                } else {
                    self.exceptions(e)
                },
                remote: match e {
                    Entity::Inferred(_) => true,
                    Entity::Row(k) => !self.t.rows[k].segment && self.t.rows[k].remote,
                },
                coverage: coverage_of.map(|root| {
                    let d = self.elapsed(e).unwrap_or(0) as f64;
                    if root > 0 {
                        (d / root as f64).clamp(0.0, 1.0)
                    } else {
                        1.0
                    }
                }),
            };
            match services.last_mut() {
                Some(s) if last_node == Some(node) => s.entity_path.push(entity),
                _ => {
                    services.push(CauseService {
                        name: node.map_or("", |n| n.name).to_owned(),
                        kind: node.map_or("", |n| n.kind).to_owned(),
                        account_id: node.and_then(|n| n.account).map(str::to_owned),
                        inferred: node.is_some_and(|n| n.inferred),
                        entity_path: vec![entity],
                    });
                    last_node = Some(node);
                }
            }
        }
        RootCause {
            services,
            client_impacting: impacting,
        }
    }

    /// Entities with `flag` none of whose descendants has it, in post-order from the tops.
    /// Iterative: a chain of thousands of documents must not exhaust the stack.
    fn deepest(&self, flag: impl Fn(Entity) -> bool) -> Vec<Entity> {
        let n = self.t.rows.len();
        let mut tops: Vec<Entity> = Vec::new();
        if let Some(r) = self.t.root {
            tops.push(Entity::Row(r));
        }
        for k in 0..n {
            if Some(k) != self.t.root && self.parent(Entity::Row(k)).is_none() {
                tops.push(Entity::Row(k));
            }
        }
        let mut out = Vec::new();
        let mut seen = vec![false; n];
        for top in tops {
            // (entity, its children, next child to visit, a descendant has the flag)
            let mut stack: Vec<(Entity, Vec<Entity>, usize, bool)> = Vec::new();
            if let Entity::Row(k) = top {
                if seen[k] {
                    continue;
                }
                seen[k] = true;
            }
            stack.push((top, self.kids(top), 0, false));
            while let Some(frame) = stack.last_mut() {
                if frame.2 < frame.1.len() {
                    let c = frame.1[frame.2];
                    frame.2 += 1;
                    if let Entity::Row(k) = c {
                        if seen[k] {
                            continue;
                        }
                        seen[k] = true;
                    }
                    let kids = self.kids(c);
                    stack.push((c, kids, 0, false));
                    continue;
                }
                let (e, _, _, below) = stack.pop().unwrap_or((top, Vec::new(), 0, false));
                let me = flag(e);
                if me && !below {
                    out.push(e);
                }
                if let Some(parent) = stack.last_mut() {
                    parent.3 |= me || below;
                }
            }
        }
        out
    }
}

impl RootCauses {
    /// Computes the root causes of a trace. Exceptions come from the `cause` column when
    /// the trace rows carry it.
    pub(crate) fn of(t: &Trace<'_>) -> RootCauses {
        let w = Walk {
            t,
            children: t.children(),
        };
        let root_flag = |f: fn(&crate::trace::Row<'_>) -> bool| t.root.map(|r| f(&t.rows[r]));
        let mut out = RootCauses::default();
        for e in w.deepest(|e| t.rows[w.row(e)].fault) {
            let rc = w.cause(&w.path(e), None, root_flag(|r| r.fault));
            if !out.fault.contains(&rc) {
                out.fault.push(rc);
            }
        }
        for e in w.deepest(|e| t.rows[w.row(e)].error) {
            let rc = w.cause(&w.path(e), None, root_flag(|r| r.error));
            if !out.error.contains(&rc) {
                out.error.push(rc);
            }
        }
        if let Some(root) = t.root
            && let Some(total) = w.elapsed(Entity::Row(root))
        {
            let mut path = vec![Entity::Row(root)];
            let mut cur = Entity::Row(root);
            while path.len() <= t.rows.len() * 2 {
                let next = w
                    .kids(cur)
                    .into_iter()
                    .filter_map(|c| Some((c, w.elapsed(c)?)))
                    .min_by_key(|&(c, d)| {
                        let r = &t.rows[w.row(c)];
                        (
                            std::cmp::Reverse(d),
                            r.start,
                            r.id,
                            matches!(c, Entity::Inferred(_)),
                        )
                    });
                match next {
                    Some((c, _)) => {
                        path.push(c);
                        cur = c;
                    }
                    None => break,
                }
            }
            // the root's response time is what the client waited for
            out.response_time
                .push(w.cause(&path, Some(total), Some(true)));
        }
        out
    }

    fn list(&self, kind: RootCauseKind) -> &[RootCause] {
        match kind {
            RootCauseKind::Fault => &self.fault,
            RootCauseKind::Error => &self.error,
            RootCauseKind::ResponseTime => &self.response_time,
        }
    }

    /// `rootcause.KIND.LEVEL { body }`.
    pub(crate) fn matches(
        &self,
        kind: RootCauseKind,
        level: RootCauseLevel,
        body: &CauseProgram,
    ) -> bool {
        self.list(kind)
            .iter()
            .any(|rc| views(rc, level).iter().any(|v| eval_cause(body, v)))
    }

    /// `rootcause.json = #[...]`.
    pub(crate) fn matches_json(&self, pattern: &Value) -> bool {
        [&self.fault, &self.error, &self.response_time]
            .iter()
            .flat_map(|l| l.iter())
            .any(|rc| contains(&rc.to_json(), pattern))
    }
}

impl RootCause {
    /// The `TraceSummary` JSON shape.
    pub fn to_json(&self) -> Value {
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                let path: Vec<Value> = s
                    .entity_path
                    .iter()
                    .map(|e| match e.coverage {
                        Some(c) => json!({"Name": e.name, "Coverage": c, "Remote": e.remote}),
                        None => json!({
                            "Name": e.name,
                            "Exceptions": e.exceptions.iter()
                                .map(|x| {
                                    let mut o = serde_json::Map::new();
                                    if let Some(n) = &x.name {
                                        o.insert("Name".into(), json!(n));
                                    }
                                    if let Some(m) = &x.message {
                                        o.insert("Message".into(), json!(m));
                                    }
                                    Value::Object(o)
                                })
                                .collect::<Vec<_>>(),
                            "Remote": e.remote,
                        }),
                    })
                    .collect();
                let mut o = json!({
                    "Name": s.name,
                    "Names": [s.name],
                    "Type": s.kind,
                    "Inferred": s.inferred,
                    "EntityPath": path,
                });
                if let Some(a) = &s.account_id {
                    o["AccountId"] = json!(a);
                }
                o
            })
            .collect();
        let mut o = json!({ "Services": services });
        if let Some(c) = self.client_impacting {
            o["ClientImpacting"] = json!(c);
        }
        o
    }
}

/// Whether `value` contains `pattern`: objects field by field, arrays element by element
/// with equal lengths, scalars by equality.
fn contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| contains(vv, pv))),
        (Value::Array(v), Value::Array(p)) => {
            v.len() == p.len() && v.iter().zip(p).all(|(a, b)| contains(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

/// What a `rootcause` body sees of one service, entity or exception.
#[derive(Debug, Default)]
struct View<'r> {
    name: Option<&'r str>,
    kind: Option<&'r str>,
    message: Option<&'r str>,
    inferred: bool,
    remote: bool,
    coverage: Option<f64>,
    index: usize,
    len: usize,
}

fn views(rc: &RootCause, level: RootCauseLevel) -> Vec<View<'_>> {
    let mut out = Vec::new();
    match level {
        RootCauseLevel::Service => {
            for s in &rc.services {
                out.push(View {
                    name: Some(&s.name),
                    kind: Some(&s.kind),
                    inferred: s.inferred,
                    remote: s.entity_path.iter().any(|e| e.remote),
                    ..View::default()
                });
            }
        }
        RootCauseLevel::Entity => {
            for s in &rc.services {
                for e in &s.entity_path {
                    out.push(View {
                        name: Some(&e.name),
                        kind: Some(&s.kind),
                        inferred: s.inferred,
                        remote: e.remote,
                        coverage: e.coverage,
                        ..View::default()
                    });
                }
            }
        }
        RootCauseLevel::Exception => {
            for s in &rc.services {
                for e in &s.entity_path {
                    for x in &e.exceptions {
                        out.push(View {
                            name: x.name.as_deref(),
                            message: x.message.as_deref(),
                            remote: e.remote,
                            ..View::default()
                        });
                    }
                }
            }
        }
    }
    let len = out.len();
    for (i, v) in out.iter_mut().enumerate() {
        v.index = i;
        v.len = len;
    }
    out
}

fn eval_cause(p: &CauseProgram, v: &View<'_>) -> bool {
    match p {
        CauseProgram::And(x) => x.iter().all(|p| eval_cause(p, v)),
        CauseProgram::Or(x) => x.iter().any(|p| eval_cause(p, v)),
        CauseProgram::Not(x) => !eval_cause(x, v),
        CauseProgram::Bool(kw) => match kw {
            BoolKw::Inferred => v.inferred,
            BoolKw::Remote => v.remote,
            BoolKw::First => v.index == 0,
            BoolKw::Last => v.index + 1 == v.len,
            _ => false,
        },
        CauseProgram::Num(kw, op, x) => match kw {
            NumKw::Index => cmp_f64(v.index as f64, *op, *x),
            NumKw::Coverage => v.coverage.is_some_and(|c| cmp_f64(c, *op, *x)),
            _ => false,
        },
        CauseProgram::Str(kw, op, x) => field(v, *kw).is_some_and(|s| str_holds(s, *op, x)),
        CauseProgram::StrSet(kw) => field(v, *kw).is_some(),
    }
}

fn field<'r>(v: &View<'r>, kw: StrKw) -> Option<&'r str> {
    match kw {
        StrKw::Name => v.name,
        StrKw::Type => v.kind,
        StrKw::Message => v.message,
        _ => None,
    }
}

pub(crate) fn str_holds(s: &str, op: StrOp, x: &str) -> bool {
    match op {
        StrOp::Eq => s == x,
        StrOp::Ne => s != x,
        StrOp::Contains => s.contains(x),
        StrOp::BeginsWith => s.starts_with(x),
        StrOp::EndsWith => s.ends_with(x),
    }
}
