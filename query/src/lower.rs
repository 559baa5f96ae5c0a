//! Lowering a filter expression: the per-row *leaves* become DataFusion `Expr`s over the
//! `spans` columns, and the trace-level structure becomes a [`Program`] that
//! [`crate::search`] evaluates per trace (`docs/filter-semantics.md`).
//!
//! `!`, `OR` and `AND` stay in the program, above the per-trace aggregation, so that they
//! are correct by construction: `!(user = "x")` is "no row has user x", never "some row
//! has a user other than x".

use std::collections::HashMap;

use datafusion::functions::string::expr_fn::{contains, ends_with, starts_with};
use datafusion::logical_expr::{Expr, ScalarUDF, col, lit};
use std::ops::Bound;

use tracelake_storage::index::{AnnValue, Column as IndexColumn};
use tracelake_storage::schema::{col as c, kind};
use tracelake_storage::segment::time;

use crate::error::{Error, Result};
use crate::filter::ast::{
    BoolKw, CmpOp, NumKw, Pred, RootCauseKind, RootCauseLevel, ServiceRef, StrKw, StrOp, Value,
};
use crate::filter::{Expr as Ast, ExprKind, FilterLimits, parse_with};
use crate::udf::{AnnotationTest, AnnotationUdf};

/// Which rows a service reference selects, as a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Select {
    All,
    Never,
    Leaf(usize),
}

/// A trace-level program.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Program {
    And(Vec<Program>),
    Or(Vec<Program>),
    Not(Box<Program>),
    /// Some row has the leaf.
    Any(usize),
    /// The root has the leaf.
    Root(usize),
    /// The trace has an inferred node.
    Inferred,
    /// `duration OP seconds`.
    Duration(CmpOp, Threshold),
    Service {
        seg: Select,
        inf: Select,
        body: Option<RowProgram>,
    },
    Edge {
        from: Select,
        to_seg: Select,
        to_inf: Select,
        body: Option<RowProgram>,
    },
    RootCause {
        kind: RootCauseKind,
        level: RootCauseLevel,
        body: CauseProgram,
    },
    RootCauseJson(serde_json::Value),
}

/// A program over one node view (inside `service`/`edge` braces).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RowProgram {
    And(Vec<RowProgram>),
    Or(Vec<RowProgram>),
    Not(Box<RowProgram>),
    /// The leaf to read on a segment view and on an inferred view.
    Leaf {
        seg: Select,
        inf: Select,
    },
    IsRoot,
    IsInferred,
}

/// A program over one root-cause service, entity or exception (evaluated in Rust: the
/// root causes are computed, not stored).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CauseProgram {
    And(Vec<CauseProgram>),
    Or(Vec<CauseProgram>),
    Not(Box<CauseProgram>),
    Bool(BoolKw),
    Num(NumKw, CmpOp, f64),
    Str(StrKw, StrOp, String),
    StrSet(StrKw),
}

/// A time threshold: exact nanoseconds when the literal has them, else seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Threshold {
    Ns(i64),
    Secs(f64),
}

impl Threshold {
    fn new(secs: f64) -> Threshold {
        match time::seconds_to_ns(secs) {
            Some(ns) => Threshold::Ns(ns),
            None => Threshold::Secs(secs),
        }
    }

    /// `ns OP self`.
    pub(crate) fn holds(self, ns: i64, op: CmpOp) -> bool {
        match self {
            Threshold::Ns(t) => cmp_ord(ns.cmp(&t), op),
            Threshold::Secs(t) => cmp_f64(ns as f64 / 1e9, op, t),
        }
    }
}

pub(crate) fn cmp_ord(o: std::cmp::Ordering, op: CmpOp) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => o == Equal,
        CmpOp::Ne => o != Equal,
        CmpOp::Lt => o == Less,
        CmpOp::Le => o != Greater,
        CmpOp::Gt => o == Greater,
        CmpOp::Ge => o != Less,
    }
}

pub(crate) fn cmp_f64(a: f64, op: CmpOp, b: f64) -> bool {
    match a.partial_cmp(&b) {
        Some(o) => cmp_ord(o, op),
        None => false,
    }
}

/// An index probe that finds every row a leaf can hold on (and maybe more).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Probe {
    Term {
        column: IndexColumn,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Numeric annotation `key` between the bounds.
    Numbers {
        key: Vec<u8>,
        from: Bound<f64>,
        to: Bound<f64>,
    },
}

impl Probe {
    fn term(column: IndexColumn, key: &[u8], value: &[u8]) -> Probe {
        Probe::Term {
            column,
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    fn flag(column: IndexColumn) -> Probe {
        Probe::term(column, b"", b"")
    }
}

/// The traces a program can match, as a condition on their rows: a trace outside this
/// set cannot match, so the search may skip it. `T` is how one row condition is
/// checked: an index [`Probe`] ([`Candidates`]) or a row-level `Expr` ([`RowFilter`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Restriction<T> {
    /// No restriction.
    All,
    /// Traces with a row that satisfies the condition.
    Rows(T),
    And(Vec<Restriction<T>>),
    Or(Vec<Restriction<T>>),
}

/// A restriction the index sidecars answer.
pub(crate) type Candidates = Restriction<Probe>;

/// A restriction a scan of a few columns answers: traces with rows where the `Expr`s
/// hold.
pub(crate) type RowFilter = Restriction<Expr>;

/// A filter expression ready to run: leaves plus program.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    pub(crate) program: Program,
    pub(crate) leaves: Vec<Expr>,
    /// The index probe of each leaf, when one exists.
    pub(crate) probes: Vec<Option<Probe>>,
    /// Canonical text (groups expanded): the identity of the compiled filter.
    pub(crate) key: String,
    /// Root causes are needed: the search must carry the columns they read.
    pub(crate) needs_causes: bool,
}

impl CompiledFilter {
    /// Whether this filter matches every trace (no expression, or an empty one).
    pub fn is_all(&self) -> bool {
        matches!(&self.program, Program::And(v) if v.is_empty())
    }

    /// The filter that matches every trace.
    pub fn all() -> CompiledFilter {
        CompiledFilter {
            program: Program::And(Vec::new()),
            leaves: Vec::new(),
            probes: Vec::new(),
            key: String::new(),
            needs_causes: false,
        }
    }
}

/// Looks up stored group expressions by name (or by ARN when `arn` is true).
pub trait GroupResolver {
    fn expression(&self, name_or_arn: &str, arn: bool) -> Option<String>;
}

/// No groups.
#[derive(Debug)]
pub struct NoGroups;

impl GroupResolver for NoGroups {
    fn expression(&self, _: &str, _: bool) -> Option<String> {
        None
    }
}

/// Parses and lowers `text`.
pub fn compile(
    text: &str,
    limits: &FilterLimits,
    groups: &dyn GroupResolver,
) -> Result<CompiledFilter> {
    let ast = parse_with(text, *limits)?;
    let mut l = Lowerer {
        leaves: Vec::new(),
        probes: Vec::new(),
        index: HashMap::new(),
        groups,
        limits,
        stack: Vec::new(),
        needs_causes: false,
        key: String::new(),
        budget: MAX_EXPANDED_NODES,
    };
    let program = l.trace(&ast)?;
    Ok(CompiledFilter {
        program,
        leaves: l.leaves,
        probes: l.probes,
        key: format!("{ast}{}", l.key),
        needs_causes: l.needs_causes,
    })
}

struct Lowerer<'g> {
    leaves: Vec<Expr>,
    probes: Vec<Option<Probe>>,
    index: HashMap<Expr, usize>,
    groups: &'g dyn GroupResolver,
    limits: &'g FilterLimits,
    /// Groups being expanded (cycle detection).
    stack: Vec<String>,
    needs_causes: bool,
    /// Expanded group texts, part of the identity.
    key: String,
    /// Nodes left before the expanded expression is too large.
    budget: usize,
}

/// Most nodes an expression may have once its groups are expanded.
const MAX_EXPANDED_NODES: usize = 10_000;

fn coalesce_false(e: Expr) -> Expr {
    datafusion::functions::core::expr_fn::coalesce(vec![e, lit(false)])
}

fn ok_expr() -> Expr {
    std::ops::Not::not(col(c::ERROR).or(col(c::FAULT)).or(col(c::THROTTLE)))
}

fn num_cmp(e: Expr, op: CmpOp, v: Expr) -> Expr {
    match op {
        CmpOp::Eq => e.eq(v),
        CmpOp::Ne => e.not_eq(v),
        CmpOp::Lt => e.lt(v),
        CmpOp::Le => e.lt_eq(v),
        CmpOp::Gt => e.gt(v),
        CmpOp::Ge => e.gt_eq(v),
    }
}

/// `end - start OP seconds`, exactly in nanoseconds when the literal allows. Times beyond
/// ±2^62 ns (before 1824 or after 2116) count as missing here, so the subtraction cannot
/// wrap.
fn elapsed_cmp(op: CmpOp, secs: f64) -> Expr {
    const SAFE: i64 = 1 << 62;
    let in_range = col(c::START_NS)
        .gt_eq(lit(-SAFE))
        .and(col(c::END_NS).lt_eq(lit(SAFE)));
    let elapsed = col(c::END_NS) - col(c::START_NS);
    in_range.and(match Threshold::new(secs) {
        Threshold::Ns(ns) => num_cmp(elapsed, op, lit(ns)),
        Threshold::Secs(s) => num_cmp(
            datafusion::logical_expr::cast(elapsed, arrow::datatypes::DataType::Float64) / lit(1e9),
            op,
            lit(s),
        ),
    })
}

pub(crate) fn str_cmp(e: Expr, op: StrOp, v: &str) -> Expr {
    match op {
        StrOp::Eq => e.eq(lit(v)),
        StrOp::Ne => e.not_eq(lit(v)),
        StrOp::Contains => contains(e, lit(v)),
        StrOp::BeginsWith => starts_with(e, lit(v)),
        StrOp::EndsWith => ends_with(e, lit(v)),
    }
}

fn str_column(kw: StrKw) -> Option<&'static str> {
    Some(match kw {
        StrKw::HttpUrl => c::HTTP_URL,
        StrKw::HttpMethod => c::HTTP_METHOD,
        StrKw::HttpUserAgent => c::HTTP_USER_AGENT,
        StrKw::HttpClientIp => c::HTTP_CLIENT_IP,
        StrKw::User => c::USER,
        StrKw::Name => c::NAME,
        StrKw::Type => c::ORIGIN,
        StrKw::AvailabilityZone => c::AVAILABILITY_ZONE,
        StrKw::InstanceId => c::INSTANCE_ID,
        StrKw::ResourceArn => c::RESOURCE_ARN,
        StrKw::Message => return None,
    })
}

/// Whether a string keyword reads the root at trace level (else: any row).
fn reads_root(kw: StrKw) -> bool {
    matches!(
        kw,
        StrKw::HttpUrl
            | StrKw::HttpMethod
            | StrKw::HttpUserAgent
            | StrKw::HttpClientIp
            | StrKw::Name
            | StrKw::Type
    )
}

/// `http.status OP v` (numerically).
fn status_cmp(op: CmpOp, v: f64) -> Expr {
    num_cmp(
        datafusion::logical_expr::cast(col(c::HTTP_STATUS), arrow::datatypes::DataType::Float64),
        op,
        lit(v),
    )
}

fn rootcause_only(keyword: &str) -> Error {
    invalid(format!("`{keyword}` is only valid inside rootcause braces"))
}

/// `http.status OP v` as a probe: equality with a whole status only.
fn status_probe(op: CmpOp, v: f64) -> Option<Probe> {
    (op == CmpOp::Eq && v.fract() == 0.0 && v.abs() < 1e9).then(|| {
        Probe::term(
            IndexColumn::HttpStatus,
            b"",
            (v as i64).to_string().as_bytes(),
        )
    })
}

/// Equality on an indexed string column.
fn str_probe(kw: StrKw, op: StrOp, v: &str) -> Option<Probe> {
    let column = match kw {
        StrKw::Name => IndexColumn::Name,
        StrKw::Type => IndexColumn::Origin,
        StrKw::User => IndexColumn::User,
        _ => return None,
    };
    (op == StrOp::Eq).then(|| Probe::term(column, b"", v.as_bytes()))
}

/// Annotation tests as probes: presence, equality, and ranges of numbers.
fn annotation_probe(key: &str, test: &AnnotationTest) -> Option<Probe> {
    let k = key.as_bytes();
    let term = |v: AnnValue<'_>| Some(Probe::term(IndexColumn::Annotation, k, &v.encode()));
    match test {
        AnnotationTest::Present => Some(Probe::term(IndexColumn::AnnotationKey, k, b"")),
        AnnotationTest::Num(op, bits) => {
            let v = f64::from_bits(*bits);
            let (from, to) = match op {
                CmpOp::Eq => (Bound::Included(v), Bound::Included(v)),
                CmpOp::Ne => return None,
                CmpOp::Lt => (Bound::Unbounded, Bound::Excluded(v)),
                CmpOp::Le => (Bound::Unbounded, Bound::Included(v)),
                CmpOp::Gt => (Bound::Excluded(v), Bound::Unbounded),
                CmpOp::Ge => (Bound::Included(v), Bound::Unbounded),
            };
            Some(Probe::Numbers {
                key: k.to_vec(),
                from,
                to,
            })
        }
        AnnotationTest::Str(CmpOp::Eq, v) | AnnotationTest::StrOp(StrOp::Eq, v) => {
            term(AnnValue::Str(v))
        }
        AnnotationTest::Bool(CmpOp::Eq, b) => term(AnnValue::Bool(*b)),
        AnnotationTest::Str(..) | AnnotationTest::StrOp(..) | AnnotationTest::Bool(..) => None,
    }
}

/// The candidate traces of a program from index probes: every trace it can match is in
/// the set.
pub(crate) fn candidates(p: &Program, probes: &[Option<Probe>]) -> Candidates {
    let leaf = |l: usize| match probes.get(l) {
        Some(Some(p)) => Restriction::Rows(p.clone()),
        _ => Restriction::All,
    };
    restriction(
        p,
        &RowConditions {
            leaf: &|l, _| leaf(l),
            // probes find rows one at a time: each leaf restricts on its own
            root: &|ls| all_of(ls.iter().map(|&l| leaf(l))),
            flag: &|column| Restriction::Rows(Probe::flag(column)),
        },
    )
}

/// The candidate traces of a program as row conditions over its leaves: every trace it
/// can match has, for each condition the restriction combines, a row where it holds.
/// Leaves read as false when missing, so "the root has the leaf" implies "some segment
/// row has it" (the root is a segment row).
pub(crate) fn row_filter(p: &Program, leaves: &[Expr]) -> RowFilter {
    let segment = || col(c::KIND).eq(lit(kind::SEGMENT));
    restriction(
        p,
        &RowConditions {
            leaf: &|l, root| match leaves.get(l) {
                Some(e) if root => Restriction::Rows(segment().and(e.clone())),
                Some(e) => Restriction::Rows(e.clone()),
                None => Restriction::All,
            },
            // every root leaf of a conjunction holds on one row, the root
            root: &|ls| {
                let mut e = segment();
                for l in ls {
                    match leaves.get(*l) {
                        Some(x) => e = e.and(x.clone()),
                        None => return Restriction::All,
                    }
                }
                Restriction::Rows(e)
            },
            flag: &|column| match column {
                IndexColumn::Fault => Restriction::Rows(coalesce_false(col(c::FAULT))),
                IndexColumn::Error => Restriction::Rows(coalesce_false(col(c::ERROR))),
                _ => Restriction::All,
            },
        },
    )
}

/// Whether the row filter of a program restricts more than its index probes: a leaf it
/// needs has no probe, or several root leaves must hold on one row.
pub(crate) fn rows_tighter(p: &Program, probes: &[Option<Probe>]) -> bool {
    let unprobed = |l: usize| !matches!(probes.get(l), Some(Some(_)));
    let r = restriction(
        p,
        &RowConditions {
            leaf: &|l, _| Restriction::Rows(unprobed(l)),
            root: &|ls| Restriction::Rows(ls.len() > 1 || ls.iter().any(|&l| unprobed(l))),
            flag: &|_| Restriction::Rows(false),
        },
    );
    fn any(r: &Restriction<bool>) -> bool {
        match r {
            Restriction::All => false,
            Restriction::Rows(t) => *t,
            Restriction::And(v) | Restriction::Or(v) => v.iter().any(any),
        }
    }
    any(&r)
}

/// How row conditions restrict traces, for [`restriction`].
struct RowConditions<'a, T> {
    /// Leaf `l` holds on some row (on a segment row, the root, when the flag is set).
    leaf: &'a dyn Fn(usize, bool) -> Restriction<T>,
    /// Every one of these leaves holds on the root.
    root: &'a dyn Fn(&[usize]) -> Restriction<T>,
    /// The flag is set on some row.
    flag: &'a dyn Fn(IndexColumn) -> Restriction<T>,
}

/// The restriction of a program, given how leaves and flags restrict rows. Every leaf value the program reads for a trace is some row's value
/// of that leaf (the root's, a node's row, an inferred node's calling row), so a trace
/// the program matches has a row where each positive leaf it needs holds.
fn restriction<T: Clone + PartialEq>(p: &Program, how: &RowConditions<'_, T>) -> Restriction<T> {
    let leaf = how.leaf;
    let select = |s: Select| match s {
        Select::Leaf(l) => leaf(l, false),
        Select::All => Restriction::All,
        Select::Never => Restriction::Or(Vec::new()),
    };
    match p {
        Program::And(v) => {
            let roots: Vec<usize> = v
                .iter()
                .filter_map(|x| match x {
                    Program::Root(l) => Some(*l),
                    _ => None,
                })
                .collect();
            let rest = v
                .iter()
                .filter(|x| !matches!(x, Program::Root(_)))
                .map(|x| restriction(x, how));
            if roots.is_empty() {
                all_of(rest)
            } else {
                all_of(std::iter::once((how.root)(&roots)).chain(rest))
            }
        }
        Program::Or(v) => any_of(v.iter().map(|x| restriction(x, how))),
        Program::Any(l) => leaf(*l, false),
        // the root's value is a segment row's value
        Program::Root(l) => leaf(*l, true),
        Program::Service { seg, inf, body } => {
            let (a, b) = (select(*seg), select(*inf));
            let node = if a == Restriction::All || b == Restriction::All {
                Restriction::All
            } else {
                Restriction::Or(vec![a, b])
            };
            both(node, body.as_ref().map(|b| row_restriction(b, leaf)))
        }
        Program::Edge { from, body, .. } => both(
            select(*from),
            body.as_ref().map(|b| row_restriction(b, leaf)),
        ),
        Program::RootCause { kind, .. } => match kind {
            RootCauseKind::Fault => (how.flag)(IndexColumn::Fault),
            RootCauseKind::Error => (how.flag)(IndexColumn::Error),
            RootCauseKind::ResponseTime => Restriction::All,
        },
        Program::Not(_) | Program::Inferred | Program::Duration(..) | Program::RootCauseJson(_) => {
            Restriction::All
        }
    }
}

/// Traces every part allows (parts without a restriction drop out).
fn all_of<T: PartialEq>(parts: impl Iterator<Item = Restriction<T>>) -> Restriction<T> {
    let parts: Vec<Restriction<T>> = parts.filter(|c| *c != Restriction::All).collect();
    if parts.is_empty() {
        Restriction::All
    } else {
        Restriction::And(parts)
    }
}

/// Traces some part allows (no restriction if one part has none).
fn any_of<T: PartialEq>(parts: impl Iterator<Item = Restriction<T>>) -> Restriction<T> {
    let parts: Vec<Restriction<T>> = parts.collect();
    if parts.contains(&Restriction::All) {
        Restriction::All
    } else {
        Restriction::Or(parts)
    }
}

/// Both restrictions (a trace must pass each).
fn both<T>(a: Restriction<T>, b: Option<Restriction<T>>) -> Restriction<T> {
    match (a, b) {
        (a, None | Some(Restriction::All)) => a,
        (Restriction::All, Some(b)) => b,
        (a, Some(b)) => Restriction::And(vec![a, b]),
    }
}

/// The traces a body inside braces can hold on: the row it holds on is in the trace.
fn row_restriction<T: Clone + PartialEq>(
    p: &RowProgram,
    leaf: &dyn Fn(usize, bool) -> Restriction<T>,
) -> Restriction<T> {
    let select = |s: Select| match s {
        Select::Leaf(l) => leaf(l, false),
        Select::All => Restriction::All,
        Select::Never => Restriction::Or(Vec::new()),
    };
    match p {
        RowProgram::Leaf { seg, inf } => {
            let (a, b) = (select(*seg), select(*inf));
            if a == b {
                a
            } else if a == Restriction::All || b == Restriction::All {
                Restriction::All
            } else {
                Restriction::Or(vec![a, b])
            }
        }
        RowProgram::And(v) => all_of(v.iter().map(|x| row_restriction(x, leaf))),
        RowProgram::Or(v) => any_of(v.iter().map(|x| row_restriction(x, leaf))),
        RowProgram::Not(_) | RowProgram::IsRoot | RowProgram::IsInferred => Restriction::All,
    }
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidFilter(msg.into())
}

impl Lowerer<'_> {
    fn leaf(&mut self, e: Expr) -> usize {
        let e = coalesce_false(e);
        if let Some(&i) = self.index.get(&e) {
            return i;
        }
        let i = self.leaves.len();
        self.index.insert(e.clone(), i);
        self.leaves.push(e);
        self.probes.push(None);
        i
    }

    /// A leaf every matching row of which the probe finds.
    fn probed(&mut self, e: Expr, probe: Option<Probe>) -> usize {
        let i = self.leaf(e);
        if probe.is_some() {
            self.probes[i] = probe;
        }
        i
    }

    fn spend(&mut self) -> Result<()> {
        if self.budget == 0 {
            return Err(invalid(format!(
                "the expression has more than {MAX_EXPANDED_NODES} terms once its groups are expanded"
            )));
        }
        self.budget -= 1;
        Ok(())
    }

    fn trace(&mut self, e: &Ast) -> Result<Program> {
        self.spend()?;
        Ok(match &e.kind {
            ExprKind::And(v) => {
                Program::And(v.iter().map(|x| self.trace(x)).collect::<Result<_>>()?)
            }
            ExprKind::Or(v) => Program::Or(v.iter().map(|x| self.trace(x)).collect::<Result<_>>()?),
            ExprKind::Not(x) => Program::Not(Box::new(self.trace(x)?)),
            ExprKind::Pred(p) => self.trace_pred(p)?,
        })
    }

    fn trace_pred(&mut self, p: &Pred) -> Result<Program> {
        Ok(match p {
            Pred::Bool { kw, value } => {
                let prog = match kw {
                    BoolKw::Ok => Program::Root(self.leaf(ok_expr())),
                    BoolKw::Error => Program::Root(
                        self.probed(col(c::ERROR), Some(Probe::flag(IndexColumn::Error))),
                    ),
                    BoolKw::Fault => Program::Root(
                        self.probed(col(c::FAULT), Some(Probe::flag(IndexColumn::Fault))),
                    ),
                    BoolKw::Throttle => Program::Any(
                        self.probed(col(c::THROTTLE), Some(Probe::flag(IndexColumn::Throttle))),
                    ),
                    BoolKw::Partial => Program::Any(self.leaf(col(c::IN_PROGRESS))),
                    BoolKw::Inferred => Program::Inferred,
                    other => {
                        return Err(invalid(format!(
                            "`{}` is not valid at trace level",
                            other.name()
                        )));
                    }
                };
                if *value {
                    prog
                } else {
                    Program::Not(Box::new(prog))
                }
            }
            Pred::Num { kw, op, value } => match kw {
                NumKw::ResponseTime => Program::Root(self.leaf(elapsed_cmp(*op, *value))),
                NumKw::Duration => Program::Duration(*op, Threshold::new(*value)),
                NumKw::HttpStatus => {
                    Program::Root(self.probed(status_cmp(*op, *value), status_probe(*op, *value)))
                }
                NumKw::Index | NumKw::Coverage => return Err(rootcause_only(kw.name())),
            },
            Pred::Str { kw, op, value } => {
                let column = str_column(*kw)
                    .ok_or_else(|| invalid("`message` is only valid inside rootcause braces"))?;
                let l = self.probed(str_cmp(col(column), *op, value), str_probe(*kw, *op, value));
                if reads_root(*kw) {
                    Program::Root(l)
                } else {
                    Program::Any(l)
                }
            }
            Pred::StrSet { kw } => {
                let column = str_column(*kw)
                    .ok_or_else(|| invalid("`message` is only valid inside rootcause braces"))?;
                let l = self.leaf(col(column).is_not_null());
                if reads_root(*kw) {
                    Program::Root(l)
                } else {
                    Program::Any(l)
                }
            }
            Pred::Annotation { key, cmp, str_op } => {
                let test = match (cmp, str_op) {
                    (Some((op, Value::Num(n))), _) => AnnotationTest::Num(*op, n.to_bits()),
                    (Some((op, Value::Str(s))), _) => AnnotationTest::Str(*op, s.clone()),
                    (Some((op, Value::Bool(b))), _) => AnnotationTest::Bool(*op, *b),
                    (None, Some((op, s))) => AnnotationTest::StrOp(*op, s.clone()),
                    (None, None) => AnnotationTest::Present,
                };
                let probe = annotation_probe(key, &test);
                let udf = ScalarUDF::from(AnnotationUdf::new(key.clone(), test));
                Program::Any(self.probed(udf.call(vec![col(c::ANNOTATIONS)]), probe))
            }
            Pred::Group { arn, value } => {
                let Some(text) = self.groups.expression(value, *arn) else {
                    return Err(invalid(format!(
                        "no group {} {value:?}",
                        if *arn { "with ARN" } else { "named" }
                    )));
                };
                if text.trim().is_empty() {
                    // a group without a filter expression holds every trace
                    return Ok(Program::And(Vec::new()));
                }
                if self.stack.contains(value) {
                    return Err(invalid(format!(
                        "group {value:?} refers to itself (through {})",
                        self.stack.join(" -> ")
                    )));
                }
                let ast = parse_with(&text, *self.limits).map_err(|e| {
                    invalid(format!(
                        "the expression of group {value:?} does not parse: {e}"
                    ))
                })?;
                self.key.push_str(&format!("\u{1}{value}={ast}"));
                self.stack.push(value.clone());
                let prog = self.trace(&ast);
                self.stack.pop();
                prog?
            }
            Pred::Service { svc, body } => Program::Service {
                seg: self.select_segment(svc.as_ref()),
                inf: self.select_inferred(svc.as_ref()),
                body: body.as_deref().map(|b| self.row(b)).transpose()?,
            },
            Pred::Edge { from, to, body } => Program::Edge {
                from: self.select_segment(Some(from)),
                to_seg: self.select_segment(Some(to)),
                to_inf: self.select_inferred(Some(to)),
                body: body.as_deref().map(|b| self.row(b)).transpose()?,
            },
            Pred::RootCause { kind, level, body } => {
                self.needs_causes = true;
                Program::RootCause {
                    kind: *kind,
                    level: *level,
                    body: cause(body)?,
                }
            }
            Pred::RootCauseJson { json } => {
                self.needs_causes = true;
                Program::RootCauseJson(
                    serde_json::from_str(json)
                        .map_err(|e| invalid(format!("rootcause.json: {e}")))?,
                )
            }
        })
    }

    /// Segment rows of the nodes `svc` names.
    fn select_segment(&mut self, svc: Option<&ServiceRef>) -> Select {
        let mut e = col(c::KIND).eq(lit(kind::SEGMENT));
        let Some(s) = svc else {
            return Select::All;
        };
        if let Some(n) = s.name.as_deref().filter(|n| !n.is_empty() || s.by_id) {
            e = e.and(col(c::NAME).eq(lit(n)));
        }
        if let Some(t) = &s.kind {
            e = e.and(
                datafusion::functions::core::expr_fn::coalesce(vec![col(c::ORIGIN), lit("")])
                    .eq(lit(t.as_str())),
            );
        }
        if let Some(a) = &s.account_id {
            e = e.and(col(c::ACCOUNT_ID).eq(lit(a.as_str())));
        }
        let probe = match (
            s.name.as_deref().filter(|n| !n.is_empty() || s.by_id),
            &s.kind,
        ) {
            (Some(n), _) => Some(Probe::term(IndexColumn::Name, b"", n.as_bytes())),
            (None, Some(t)) if !t.is_empty() => {
                Some(Probe::term(IndexColumn::Origin, b"", t.as_bytes()))
            }
            _ => None,
        };
        Select::Leaf(self.probed(e, probe))
    }

    /// Rows yielding inferred nodes that `svc` names (the search checks the "no real
    /// child" part).
    fn select_inferred(&mut self, svc: Option<&ServiceRef>) -> Select {
        let Some(s) = svc else {
            return Select::All;
        };
        if s.account_id.is_some() {
            return Select::Never;
        }
        let mut e = col(crate::trace::field::REMOTE);
        if let Some(n) = s.name.as_deref().filter(|n| !n.is_empty() || s.by_id) {
            e = e.and(col(c::NAME).eq(lit(n)));
        }
        if let Some(t) = &s.kind {
            e = e.and(col(crate::trace::field::INFERRED_TYPE).eq(lit(t.as_str())));
        }
        let probe = s
            .name
            .as_deref()
            .filter(|n| !n.is_empty() || s.by_id)
            .map(|n| Probe::term(IndexColumn::Name, b"", n.as_bytes()));
        Select::Leaf(self.probed(e, probe))
    }

    fn row(&mut self, e: &Ast) -> Result<RowProgram> {
        self.spend()?;
        Ok(match &e.kind {
            ExprKind::And(v) => {
                RowProgram::And(v.iter().map(|x| self.row(x)).collect::<Result<_>>()?)
            }
            ExprKind::Or(v) => {
                RowProgram::Or(v.iter().map(|x| self.row(x)).collect::<Result<_>>()?)
            }
            ExprKind::Not(x) => RowProgram::Not(Box::new(self.row(x)?)),
            ExprKind::Pred(p) => self.row_pred(p)?,
        })
    }

    fn both(&mut self, e: Expr) -> RowProgram {
        self.both_probed(e, None)
    }

    fn both_probed(&mut self, e: Expr, probe: Option<Probe>) -> RowProgram {
        let l = Select::Leaf(self.probed(e, probe));
        RowProgram::Leaf { seg: l, inf: l }
    }

    fn row_pred(&mut self, p: &Pred) -> Result<RowProgram> {
        Ok(match p {
            Pred::Bool { kw, value } => {
                let prog = match kw {
                    BoolKw::Ok => self.both(ok_expr()),
                    BoolKw::Error => {
                        self.both_probed(col(c::ERROR), Some(Probe::flag(IndexColumn::Error)))
                    }
                    BoolKw::Fault => {
                        self.both_probed(col(c::FAULT), Some(Probe::flag(IndexColumn::Fault)))
                    }
                    BoolKw::Throttle => {
                        self.both_probed(col(c::THROTTLE), Some(Probe::flag(IndexColumn::Throttle)))
                    }
                    BoolKw::Partial => self.both(col(c::IN_PROGRESS)),
                    BoolKw::Inferred => RowProgram::IsInferred,
                    BoolKw::Root => RowProgram::IsRoot,
                    other => {
                        return Err(invalid(format!(
                            "`{}` is only valid inside rootcause braces",
                            other.name()
                        )));
                    }
                };
                if *value {
                    prog
                } else {
                    RowProgram::Not(Box::new(prog))
                }
            }
            Pred::Num { kw, op, value } => match kw {
                NumKw::ResponseTime | NumKw::Duration => self.both(elapsed_cmp(*op, *value)),
                NumKw::HttpStatus => {
                    self.both_probed(status_cmp(*op, *value), status_probe(*op, *value))
                }
                NumKw::Index | NumKw::Coverage => return Err(rootcause_only(kw.name())),
            },
            Pred::Str { kw, op, value } => {
                self.row_str(*kw, str_probe(*kw, *op, value), |e| str_cmp(e, *op, value))?
            }
            Pred::StrSet { kw } => self.row_str(*kw, None, |e| e.is_not_null())?,
            _ => {
                return Err(invalid(
                    "annotations, groups, service, edge and rootcause are not valid inside service or edge braces",
                ));
            }
        })
    }

    fn row_str(
        &mut self,
        kw: StrKw,
        probe: Option<Probe>,
        f: impl Fn(Expr) -> Expr,
    ) -> Result<RowProgram> {
        let column = str_column(kw)
            .ok_or_else(|| invalid("`message` is only valid inside rootcause braces"))?;
        let seg = Select::Leaf(self.probed(f(col(column)), probe));
        let inf = if kw == StrKw::Type {
            Select::Leaf(self.leaf(f(col(crate::trace::field::INFERRED_TYPE))))
        } else {
            seg
        };
        Ok(RowProgram::Leaf { seg, inf })
    }
}

fn cause(e: &Ast) -> Result<CauseProgram> {
    Ok(match &e.kind {
        ExprKind::And(v) => CauseProgram::And(v.iter().map(cause).collect::<Result<_>>()?),
        ExprKind::Or(v) => CauseProgram::Or(v.iter().map(cause).collect::<Result<_>>()?),
        ExprKind::Not(x) => CauseProgram::Not(Box::new(cause(x)?)),
        ExprKind::Pred(Pred::Bool { kw, value }) => {
            let p = CauseProgram::Bool(*kw);
            if *value {
                p
            } else {
                CauseProgram::Not(Box::new(p))
            }
        }
        ExprKind::Pred(Pred::Num { kw, op, value }) => CauseProgram::Num(*kw, *op, *value),
        ExprKind::Pred(Pred::Str { kw, op, value }) => CauseProgram::Str(*kw, *op, value.clone()),
        ExprKind::Pred(Pred::StrSet { kw }) => CauseProgram::StrSet(*kw),
        ExprKind::Pred(_) => {
            return Err(invalid(
                "only root-cause keywords are valid inside rootcause braces",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(text: &str) -> CompiledFilter {
        compile(text, &FilterLimits::default(), &NoGroups).unwrap()
    }

    #[test]
    fn leaves_are_shared_and_negation_stays_in_the_program() {
        let f = lower(r#"user = "x" OR !(user = "x")"#);
        assert_eq!(f.leaves.len(), 1);
        assert_eq!(
            f.program,
            Program::Or(vec![
                Program::Any(0),
                Program::Not(Box::new(Program::Any(0)))
            ])
        );
    }

    #[test]
    fn kw_false_is_negation() {
        assert_eq!(lower("ok = false").program, lower("!ok").program);
        assert_eq!(lower("fault != true").program, lower("!fault").program);
    }

    struct Groups;
    impl GroupResolver for Groups {
        fn expression(&self, name: &str, _: bool) -> Option<String> {
            match name {
                "a" => Some(r#"group.name = "b""#.into()),
                "b" => Some(r#"group.name = "a""#.into()),
                "slow" => Some("responsetime > 2".into()),
                _ => None,
            }
        }
    }

    #[test]
    fn groups_expand_and_cycles_are_rejected() {
        let l = FilterLimits::default();
        let f = compile(r#"group.name = "slow" AND ok"#, &l, &Groups).unwrap();
        assert_eq!(f.leaves.len(), 2);
        let e = compile(r#"group.name = "a""#, &l, &Groups).unwrap_err();
        assert!(e.to_string().contains("refers to itself"), "{e}");
        let e = compile(r#"group.name = "nope""#, &l, &Groups).unwrap_err();
        assert!(e.to_string().contains("no group named"), "{e}");
    }
}
