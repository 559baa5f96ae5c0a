//! Latency percentiles and histograms, exact (scanning spans) or fast (merging rollups).
//!
//! Both modes share one definition of what is measured ([`rollup::visit`]): a
//! segment's response time counts for its service node, a calling subsegment's for its
//! edge and for the inferred node it yields (SPEC 7.19, 7.20, 7.22). `duration` is a
//! trace's latest end minus its earliest start (SPEC 7.5), grouped by its root segment.
//!
//! **Fast mode** merges the per-minute sketches of the rollups (1% relative error, see
//! [`tracelake_storage::sketch`]). A partition whose rollups cannot answer alone (rows
//! still in memory, files without rollups, or traces split across files by flushes) is
//! scanned instead and its values go into the same sketches, so the answer keeps its
//! bound. The range is widened to whole minutes, the rollups' resolution.
//!
//! **Exact mode** scans spans partition by partition (a trace never spans partitions)
//! and computes `quantile_cont` (linear interpolation between order statistics), like
//! DuckDB and PostgreSQL. A filter expression, `http.url` or annotation groups and
//! `duration` need it; [`Mode::Auto`] picks fast whenever the request allows.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use datafusion::execution::context::SessionContext;
use tracelake_storage::graph::{Links, Shape};
use tracelake_storage::rollup::{self, Node};
use tracelake_storage::schema::{col as c, kind};
use tracelake_storage::sketch::{RELATIVE_ERROR, Sketch};
use tracelake_storage::{Snapshot, TraceId};

use crate::error::{Error, Result};
use crate::provider::SpansTable;
use crate::rollups::RollupCache;
use crate::search::TimeRange;
use crate::source::{self, Part, in_range};

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// A segment's (or calling subsegment's) `end − start`.
    #[default]
    ResponseTime,
    /// A trace's latest end minus its earliest start.
    Duration,
}

/// How values are grouped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// One group: every segment.
    #[default]
    All,
    /// Per service node (name, type, account), inferred nodes included.
    Service,
    /// Per edge (caller -> callee), `client` edges to root services included.
    Edge,
    /// Per `http.url` of the segment (of the root, for `duration`).
    HttpUrl,
    /// Per value of an annotation found on the segment or its subsegments (anywhere in
    /// the trace, for `duration`).
    Annotation(String),
    /// Per time bucket of this many seconds (by start time).
    Time { period_s: u64 },
}

impl GroupBy {
    /// The fields of a group's key, in order, for this grouping (a group may leave
    /// `account` and the caller's fields out: nodes without an account, `client` edges).
    pub fn key_fields(&self) -> &'static [&'static str] {
        match self {
            GroupBy::All => &[],
            GroupBy::Service => &["service", "type", "account"],
            GroupBy::Edge => &["caller", "caller_type", "service", "type"],
            GroupBy::HttpUrl => &["url"],
            GroupBy::Annotation(_) => &["annotation"],
            GroupBy::Time { .. } => &["start"],
        }
    }
}

/// Which path answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Fast whenever the request allows it, exact otherwise.
    #[default]
    Auto,
    Exact,
    /// Fast, or an error saying why the request needs the exact path.
    Fast,
}

/// A percentile request.
#[derive(Debug, Clone, Default)]
pub struct PercentileRequest {
    /// `None`: all time.
    pub range: Option<TimeRange>,
    /// An X-Ray filter expression selecting traces (compiled by the caller).
    pub filter: Option<Arc<crate::CompiledFilter>>,
    pub metric: Metric,
    pub by: GroupBy,
    /// Quantiles in [0, 1], e.g. `[0.5, 0.9, 0.99]`.
    pub quantiles: Vec<f64>,
    pub mode: Mode,
    /// Also return each group's histogram.
    pub histogram: bool,
}

/// How an answer was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    Exact,
    Fast,
}

impl fmt::Display for Answered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answered::Exact => "exact",
            Answered::Fast => "fast",
        })
    }
}

/// One group of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct PercentileGroup {
    /// What the group is, as (field, value) pairs: `("service", "api")`, `("type", …)`,
    /// `("caller", …)`, `("url", …)`, `("annotation", …)`, `("start", RFC 3339)`.
    pub key: Vec<(&'static str, String)>,
    pub count: u64,
    /// Sum of the values, seconds (exact in both modes).
    pub sum: f64,
    /// One value per requested quantile, seconds.
    pub values: Vec<f64>,
    /// (bucket representative in seconds, count) pairs, when requested: the sketch's
    /// bins in both modes (SPEC 7.11).
    pub histogram: Option<Vec<(f64, u64)>>,
}

/// A percentile answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles {
    pub mode: Answered,
    /// Every value is within this relative error of the exact answer (0 when exact).
    pub relative_error: f64,
    /// Why `Auto` answered exactly, when it did.
    pub exact_because: Option<String>,
    /// The range the answer covers (fast mode widens it to whole minutes).
    pub range: Option<(i64, i64)>,
    /// Partitions answered from rollups, and scanned.
    pub partitions_from_rollups: usize,
    pub partitions_scanned: usize,
    pub quantiles: Vec<f64>,
    /// Groups, ordered by key.
    pub groups: Vec<PercentileGroup>,
}

/// Why the fast path cannot answer a request, if it cannot.
fn needs_exact(r: &PercentileRequest) -> Option<String> {
    if let Some(w) = source::filter_needs_exact(r.filter.as_ref()) {
        return Some(w);
    }
    if r.metric == Metric::Duration {
        return Some("rollups keep response times, not trace durations".into());
    }
    match &r.by {
        GroupBy::HttpUrl => Some("rollups are not grouped by http.url".into()),
        GroupBy::Annotation(_) => Some("rollups are not grouped by annotations".into()),
        GroupBy::Time { period_s } if !period_s.is_multiple_of(60) => {
            Some("rollups have one-minute buckets: use a period that is a multiple of 60 s".into())
        }
        _ => None,
    }
}

fn check(r: &PercentileRequest) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidRequest(m));
    if let Some(q) = r.quantiles.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return bad(format!(
            "quantile {q} is outside [0, 1] (write 0.99 for p99)"
        ));
    }
    if r.quantiles.is_empty() && !r.histogram {
        return bad("ask for at least one quantile or the histogram".into());
    }
    if let GroupBy::Time { period_s: 0 } = r.by {
        return bad("a time bucket needs a period of at least 1 s".into());
    }
    if r.metric == Metric::Duration && r.by == GroupBy::Edge {
        return bad("duration is per trace and has no edges: group by service instead".into());
    }
    if let Some(t) = r.range
        && t.end_ns <= t.start_ns
    {
        return bad("the time range ends before it starts".into());
    }
    Ok(())
}

/// Answers a percentile request over `snapshot`.
pub async fn percentiles(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    cache: &RollupCache,
    snapshot: &Snapshot,
    r: &PercentileRequest,
) -> Result<Percentiles> {
    check(r)?;
    let why = needs_exact(r);
    let fast = source::choose_fast(r.mode, why.as_deref())?;
    let range = source::window(r.range, fast);
    let matched = match &r.filter {
        Some(f) if !f.is_all() => Some(source::matching_traces(ctx, table, f, r.range).await?),
        _ => None,
    };
    let extra: &[&str] = match r.by {
        GroupBy::HttpUrl => &[c::HTTP_URL],
        GroupBy::Annotation(_) => &[c::ANNOTATIONS],
        _ => &[],
    };
    let mut acc = Acc::new(fast);
    let walked = source::walk(
        ctx,
        cache,
        snapshot,
        range,
        fast,
        extra,
        |part| match part {
            Part::Rollups(files, correction) => {
                for row in files.iter().flat_map(|f| f.iter()) {
                    add_rollup(&mut acc, row, r, range);
                }
                correction.visit(|x, _, add| {
                    if !in_range(range, x.start_ns) {
                        return;
                    }
                    let key = entity_key(&r.by, x.edge, &x.node, x.caller.as_ref(), x.start_ns);
                    match key {
                        Some(k) if add => acc.add(k, x.seconds),
                        Some(k) => acc.remove(k, x.seconds),
                        None => {}
                    }
                })
            }
            Part::Rows(batch) => add_rows(&mut acc, &batch, r, range, matched.as_ref()),
        },
    )
    .await?;
    Ok(Percentiles {
        mode: if fast {
            Answered::Fast
        } else {
            Answered::Exact
        },
        relative_error: if fast { RELATIVE_ERROR } else { 0.0 },
        exact_because: if fast { None } else { why },
        range,
        partitions_from_rollups: walked.from_rollups,
        partitions_scanned: walked.scanned,
        quantiles: r.quantiles.clone(),
        groups: acc.finish(&r.quantiles, r.histogram),
    })
}

fn add_rollup(acc: &mut Acc, row: &rollup::Row, r: &PercentileRequest, range: Option<(i64, i64)>) {
    if !in_range(range, row.minute_ns) {
        return;
    }
    if let Some(key) = entity_key(
        &r.by,
        row.edge,
        &row.node,
        row.caller.as_ref(),
        row.minute_ns,
    ) {
        acc.merge_sketch(key, &row.stats.sketch);
    }
}

/// The group of a node's or an edge's values, for the groupings rollups keep: nodes by
/// service (inferred ones included), edges by edge, real segments for all and by time.
fn entity_key(
    by: &GroupBy,
    edge: bool,
    node: &Node<'_>,
    caller: Option<&Node<'_>>,
    start_ns: i64,
) -> Option<Key> {
    match by {
        GroupBy::Edge if edge => Some(edge_key(node, caller)),
        GroupBy::Service if !edge => Some(node_key(node)),
        GroupBy::All if !edge && !node.inferred => Some(Vec::new()),
        GroupBy::Time { period_s } if !edge && !node.inferred => {
            Some(time_key(start_ns, *period_s))
        }
        _ => None,
    }
}

fn node_key(n: &Node<'_>) -> Vec<(&'static str, String)> {
    let mut k = vec![
        ("service", n.name.to_string()),
        ("type", n.kind.to_string()),
    ];
    if let Some(a) = &n.account {
        k.push(("account", a.to_string()));
    }
    k
}

fn edge_key(n: &Node<'_>, caller: Option<&Node<'_>>) -> Vec<(&'static str, String)> {
    let mut k = Vec::new();
    if let Some(c) = caller {
        k.push(("caller", c.name.to_string()));
        k.push(("caller_type", c.kind.to_string()));
    }
    k.push(("service", n.name.to_string()));
    k.push(("type", n.kind.to_string()));
    k
}

fn time_key(start_ns: i64, period_s: u64) -> Vec<(&'static str, String)> {
    let p = i64::try_from(period_s)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000);
    let b = start_ns.div_euclid(p) * p;
    vec![("start", rfc3339(b))]
}

/// `2026-12-03T08:00:00Z` for nanoseconds since the epoch.
pub fn rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

fn add_rows(
    acc: &mut Acc,
    batch: &RecordBatch,
    r: &PercentileRequest,
    range: Option<(i64, i64)>,
    matched: Option<&HashSet<TraceId>>,
) -> Result<()> {
    let keep = source::row_filter(batch, matched);
    if r.metric == Metric::Duration {
        return add_durations(acc, batch, r, range, &keep);
    }
    let labels = Labels::of(batch, &r.by);
    let mut seg_of: Option<(usize, Vec<Option<usize>>)> = None;
    rollup::visit(batch, |x| {
        if !in_range(range, x.start_ns) || !keep(x.row) {
            return;
        }
        let segment = !x.edge && !x.node.inferred;
        let key = match &r.by {
            GroupBy::HttpUrl if segment => labels.url(x.row).map(|u| vec![("url", u.to_owned())]),
            GroupBy::Annotation(_) if segment => labels
                .annotation_of_segment(batch, x.row, &mut seg_of)
                .map(|v| vec![("annotation", v)]),
            by => entity_key(by, x.edge, &x.node, x.caller.as_ref(), x.start_ns),
        };
        if let Some(key) = key {
            acc.add(key, x.seconds);
        }
    })?;
    Ok(())
}

/// Per-row label columns for the `http.url` and annotation groupings.
struct Labels<'a> {
    url: Option<&'a arrow::array::StringArray>,
    annotations: Option<&'a arrow::array::ListArray>,
    key: Option<&'a str>,
}

impl<'a> Labels<'a> {
    fn of(batch: &'a RecordBatch, by: &'a GroupBy) -> Labels<'a> {
        Labels {
            url: batch
                .column_by_name(c::HTTP_URL)
                .and_then(|a| a.as_string_opt::<i32>()),
            annotations: batch
                .column_by_name(c::ANNOTATIONS)
                .and_then(|a| a.as_list_opt::<i32>()),
            key: match by {
                GroupBy::Annotation(k) => Some(k.as_str()),
                _ => None,
            },
        }
    }

    fn url(&self, row: usize) -> Option<&'a str> {
        self.url.filter(|u| !u.is_null(row)).map(|u| u.value(row))
    }

    /// The annotation's value on one row, as text.
    fn annotation(&self, row: usize) -> Option<String> {
        let (list, key) = (self.annotations?, self.key?);
        if list.is_null(row) {
            return None;
        }
        let entries = list.value(row);
        let st = entries.as_struct_opt()?;
        let keys = st.column_by_name("key")?.as_string_opt::<i32>()?;
        let strs = st.column_by_name("str")?.as_string_opt::<i32>()?;
        let nums = st
            .column_by_name("num")?
            .as_primitive_opt::<Float64Type>()?;
        let bools = st.column_by_name("bool")?.as_boolean_opt()?;
        let i = (0..st.len()).find(|&i| keys.value(i) == key)?;
        Some(if !strs.is_null(i) {
            strs.value(i).to_owned()
        } else if !nums.is_null(i) {
            let v = nums.value(i);
            if v.fract() == 0.0 && v.abs() < 1e15 {
                format!("{}", v as i64)
            } else {
                v.to_string()
            }
        } else if !bools.is_null(i) {
            bools.value(i).to_string()
        } else {
            return None;
        })
    }

    /// The annotation on a segment row or, failing that, on one of its subsegments.
    fn annotation_of_segment(
        &self,
        batch: &RecordBatch,
        row: usize,
        cache: &mut Option<(usize, Vec<Option<usize>>)>,
    ) -> Option<String> {
        if let Some(v) = self.annotation(row) {
            return Some(v);
        }
        let (from, seg_of) = trace_shape(batch, row, cache)?;
        (0..seg_of.len())
            .filter(|&k| seg_of[k] == Some(row - from) && k != row - from)
            .find_map(|k| self.annotation(from + k))
    }
}

/// The segment of each row of the trace holding `row` (cached per trace).
fn trace_shape<'c>(
    batch: &RecordBatch,
    row: usize,
    cache: &'c mut Option<(usize, Vec<Option<usize>>)>,
) -> Option<(usize, &'c Vec<Option<usize>>)> {
    let (from, to) = trace_bounds(batch, row)?;
    if cache.as_ref().is_none_or(|(f, _)| *f != from) {
        let links = links(batch, from..to)?;
        *cache = Some((from, Shape::new(&links).seg_of));
    }
    cache.as_ref().map(|(f, s)| (*f, s))
}

fn trace_bounds(batch: &RecordBatch, row: usize) -> Option<(usize, usize)> {
    let t = batch
        .column_by_name(c::TRACE_ID)?
        .as_fixed_size_binary_opt()?;
    let id = t.value(row);
    let mut from = row;
    while from > 0 && t.value(from - 1) == id {
        from -= 1;
    }
    let mut to = row + 1;
    while to < t.len() && t.value(to) == id {
        to += 1;
    }
    Some((from, to))
}

fn links(batch: &RecordBatch, rows: std::ops::Range<usize>) -> Option<Vec<Links>> {
    use arrow::datatypes::{Int64Type, UInt8Type, UInt64Type};
    let id = batch
        .column_by_name(c::ID)?
        .as_primitive_opt::<UInt64Type>()?;
    let parent = batch
        .column_by_name(c::PARENT_ID)?
        .as_primitive_opt::<UInt64Type>()?;
    let k = batch
        .column_by_name(c::KIND)?
        .as_primitive_opt::<UInt8Type>()?;
    let start = batch
        .column_by_name(c::START_NS)?
        .as_primitive_opt::<Int64Type>()?;
    let ns = batch.column_by_name(c::NAMESPACE)?.as_string_opt::<i32>()?;
    Some(
        rows.map(|i| Links {
            id: id.value(i),
            parent: (!parent.is_null(i)).then(|| parent.value(i)),
            segment: k.value(i) == kind::SEGMENT,
            remote: tracelake_storage::graph::is_remote((!ns.is_null(i)).then(|| ns.value(i))),
            start: start.value(i),
        })
        .collect(),
    )
}

/// `duration` per trace, grouped by the root segment (or the trace's annotation).
fn add_durations(
    acc: &mut Acc,
    batch: &RecordBatch,
    r: &PercentileRequest,
    range: Option<(i64, i64)>,
    keep: &dyn Fn(usize) -> bool,
) -> Result<()> {
    use arrow::datatypes::Int64Type;
    let missing = |n: &str| Error::InvalidRequest(format!("scan lost the {n} column"));
    let start = batch
        .column_by_name(c::START_NS)
        .and_then(|a| a.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| missing(c::START_NS))?;
    let end = batch
        .column_by_name(c::END_NS)
        .and_then(|a| a.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| missing(c::END_NS))?;
    let name = batch
        .column_by_name(c::NAME)
        .and_then(|a| a.as_string_opt::<i32>())
        .ok_or_else(|| missing(c::NAME))?;
    let origin = batch
        .column_by_name(c::ORIGIN)
        .and_then(|a| a.as_string_opt::<i32>())
        .ok_or_else(|| missing(c::ORIGIN))?;
    let labels = Labels::of(batch, &r.by);
    let mut from = 0;
    while from < batch.num_rows() {
        let (_, to) = trace_bounds(batch, from).unwrap_or((from, from + 1));
        let rows = from..to;
        let first = rows.clone().map(|i| start.value(i)).min();
        let last = rows
            .clone()
            .filter(|&i| !end.is_null(i))
            .map(|i| end.value(i))
            .max();
        let root = links(batch, rows.clone())
            .and_then(|l| Shape::new(&l).root)
            .map(|k| from + k);
        if let (Some(first), Some(last)) = (first, last)
            && keep(from)
            && in_range(range, first)
        {
            let key = match &r.by {
                GroupBy::All => Some(Vec::new()),
                GroupBy::Time { period_s } => Some(time_key(first, *period_s)),
                GroupBy::Service => root.map(|k| {
                    let kind = if origin.is_null(k) {
                        ""
                    } else {
                        origin.value(k)
                    };
                    vec![
                        ("service", name.value(k).to_owned()),
                        ("type", kind.to_owned()),
                    ]
                }),
                GroupBy::HttpUrl => root
                    .and_then(|k| labels.url(k))
                    .map(|u| vec![("url", u.to_owned())]),
                GroupBy::Annotation(_) => rows
                    .clone()
                    .find_map(|i| labels.annotation(i))
                    .map(|v| vec![("annotation", v)]),
                GroupBy::Edge => None,
            };
            if let Some(key) = key {
                acc.add(key, last.saturating_sub(first).max(0) as f64 / 1e9);
            }
        }
        from = to;
    }
    Ok(())
}

type Key = Vec<(&'static str, String)>;

/// Values per group: kept exactly, or in sketches.
enum Acc {
    Exact(HashMap<Key, Vec<f64>>),
    Fast(HashMap<Key, Sketch>),
}

impl Acc {
    fn new(fast: bool) -> Acc {
        if fast {
            Acc::Fast(HashMap::new())
        } else {
            Acc::Exact(HashMap::new())
        }
    }

    fn add(&mut self, key: Key, v: f64) {
        match self {
            Acc::Exact(m) => m.entry(key).or_default().push(v),
            Acc::Fast(m) => m.entry(key).or_default().add(v),
        }
    }

    /// Takes back a value the rollups counted (fast mode's correction of split traces).
    fn remove(&mut self, key: Key, v: f64) {
        if let Acc::Fast(m) = self {
            m.entry(key).or_default().remove(v);
        }
    }

    fn merge_sketch(&mut self, key: Key, s: &Sketch) {
        if let Acc::Fast(m) = self {
            m.entry(key).or_default().merge(s);
        }
    }

    fn finish(self, qs: &[f64], histogram: bool) -> Vec<PercentileGroup> {
        let mut out: Vec<PercentileGroup> = match self {
            Acc::Exact(m) => m
                .into_iter()
                .map(|(key, mut v)| {
                    v.sort_by(f64::total_cmp);
                    let hist = histogram.then(|| {
                        let mut s = Sketch::new();
                        v.iter().for_each(|x| s.add(*x));
                        s.bins().collect()
                    });
                    PercentileGroup {
                        key,
                        count: v.len() as u64,
                        sum: v.iter().sum(),
                        values: qs.iter().map(|q| quantile_cont(&v, *q)).collect(),
                        histogram: hist,
                    }
                })
                .collect(),
            Acc::Fast(m) => m
                .into_iter()
                .map(|(key, s)| PercentileGroup {
                    key,
                    count: s.count(),
                    sum: s.sum(),
                    values: qs
                        .iter()
                        .map(|q| s.quantile(*q).unwrap_or(f64::NAN))
                        .collect(),
                    histogram: histogram.then(|| s.bins().collect()),
                })
                .collect(),
        };
        out.retain(|g| g.count > 0);
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// Linear interpolation between the order statistics around `q·(n − 1)` (DuckDB's
/// `quantile_cont`); `values` sorted, not empty.
pub fn quantile_cont(values: &[f64], q: f64) -> f64 {
    let Some(last) = values.len().checked_sub(1) else {
        return f64::NAN;
    };
    let pos = q * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (values[lo.min(last)], values[hi.min(last)]);
    a + (b - a) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_cont_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_cont(&v, 0.0), 1.0);
        assert_eq!(quantile_cont(&v, 1.0), 4.0);
        assert!((quantile_cont(&v, 0.5) - 2.5).abs() < 1e-12);
        assert!(quantile_cont(&[], 0.5).is_nan());
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_600_000_000_000_000_000), "2020-09-13T12:26:40Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }
}
