//! Finding traces: the logical plan that evaluates a [`CompiledFilter`] per trace, and the
//! evaluation of the trace-level [`Program`] on one [`Trace`].
//!
//! The plan, built directly with `LogicalPlanBuilder`:
//! ```text
//! Projection: trace_id, first_start, last_end, in_window, xray_match(rows) AS matched
//!   Aggregate: groupBy=[trace_id], aggr=[array_agg(named_struct(id, parent_id, ..., l0, l1, ...)) AS rows,
//!                                        min(start_ns), max(end_ns), bool_or(<segment ended in window>)]
//!     Filter: trace_id in the trace-id time range (TimeRangeType::TraceId only)
//!       TableScan: spans
//! ```
//! Leaves `l0..` are the per-row DataFusion expressions of [`crate::lower`]; `xray_match`
//! applies the boolean structure per trace, so `!` and `OR` are exact.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::functions::core::expr_fn::named_struct;
use datafusion::functions_aggregate::expr_fn::{array_agg, bool_or, max, min};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, ScalarUDF, cast, col, lit};
use tracelake_storage::schema::{col as c, kind};
use tracelake_storage::{Snapshot, TraceId};

use crate::error::Result;
use crate::lower::{CompiledFilter, Program, RowProgram, Select};
use crate::lower::{Restriction, RowFilter, candidates, row_filter, rows_tighter};
use crate::provider::{RestrictedSpans, SpansTable};
use crate::prune;
use crate::rootcause;
use crate::trace::{Trace, field};
use crate::udf::{InferredTypeUdf, MatchUdf};

/// How a time range selects traces (GetTraceSummaries `TimeRangeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RangeType {
    /// The time in the trace id lies in `[start, end)` (the default).
    #[default]
    TraceId,
    /// The trace was active in the window: it started before `end`, and it ended at or
    /// after `start` or has a segment still in progress.
    Event,
    /// A segment of the trace ended in `[start, end)`.
    Service,
}

/// A time window in nanoseconds since the epoch, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ns: i64,
    pub end_ns: i64,
    pub kind: RangeType,
}

/// One trace the search looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub trace_id: TraceId,
    /// Earliest start over the trace's rows (ns).
    pub first_start: i64,
    /// Latest end over rows that ended (ns).
    pub last_end: Option<i64>,
    /// The trace lies in the time range.
    pub in_range: bool,
    /// The filter holds.
    pub matched: bool,
}

/// Whether evaluating `p` needs the trace's nodes (service names, origins, inferred
/// nodes). Without them the plan leaves out the name, origin, account and inferred-type
/// columns, and the wide columns that inferred types are derived from (`aws`, `sql`).
fn needs_nodes(p: &Program) -> bool {
    match p {
        Program::And(v) | Program::Or(v) => v.iter().any(needs_nodes),
        Program::Not(x) => needs_nodes(x),
        Program::Any(_) | Program::Root(_) | Program::Duration(..) => false,
        Program::Inferred
        | Program::Service { .. }
        | Program::Edge { .. }
        | Program::RootCause { .. }
        | Program::RootCauseJson(_) => true,
    }
}

/// Structural and leaf fields of the per-trace row lists.
fn row_struct(filter: &CompiledFilter) -> Expr {
    let nodes = filter.needs_causes || needs_nodes(&filter.program);
    let text = |c: &str| {
        if nodes {
            cast(col(c), DataType::Utf8)
        } else {
            lit(ScalarValue::Utf8(None))
        }
    };
    let mut fields: Vec<(&str, Expr)> = vec![
        (c::ID, col(c::ID)),
        (c::PARENT_ID, col(c::PARENT_ID)),
        (c::KIND, col(c::KIND)),
        (c::START_NS, col(c::START_NS)),
        (c::END_NS, col(c::END_NS)),
        (c::IN_PROGRESS, col(c::IN_PROGRESS)),
        (c::ERROR, col(c::ERROR)),
        (c::FAULT, col(c::FAULT)),
        (c::THROTTLE, col(c::THROTTLE)),
        (
            field::REMOTE,
            if nodes {
                col(field::REMOTE)
            } else {
                lit(false)
            },
        ),
        (c::NAME, text(c::NAME)),
        (c::ORIGIN, text(c::ORIGIN)),
        (c::ACCOUNT_ID, text(c::ACCOUNT_ID)),
        (field::INFERRED_TYPE, text(field::INFERRED_TYPE)),
    ];
    if filter.needs_causes {
        fields.push((c::NAMESPACE, cast(col(c::NAMESPACE), DataType::Utf8)));
        fields.push((c::CAUSE, cast(col(c::CAUSE), DataType::Utf8)));
    }
    let mut args = Vec::new();
    for (n, e) in fields {
        args.push(lit(n));
        args.push(e);
    }
    let names: Vec<String> = (0..filter.leaves.len())
        .map(|i| format!("{}{i}", field::LEAF))
        .collect();
    for (n, e) in names.iter().zip(&filter.leaves) {
        args.push(lit(n.as_str()));
        args.push(e.clone());
    }
    named_struct(args)
}

/// Every `spans` column plus the derived `remote` and `inferred_type` the leaves and the
/// trace model read.
pub(crate) fn with_derived_columns() -> Result<Vec<Expr>> {
    let mut exprs: Vec<Expr> = tracelake_storage::schema::spans()
        .fields()
        .iter()
        .map(|f| col(f.name()))
        .collect();
    // a CASE rather than coalesce: `summary::fetch` evaluates these without the
    // optimizer, and coalesce only runs once simplified
    exprs.push(
        datafusion::logical_expr::when(
            col(c::NAMESPACE).in_list(vec![lit("aws"), lit("remote")], false),
            lit(true),
        )
        .otherwise(lit(false))?
        .alias(field::REMOTE),
    );
    exprs.push(
        ScalarUDF::from(InferredTypeUdf::new())
            .call(vec![
                col(c::NAMESPACE),
                col(c::NAME),
                col(c::SQL),
                col(c::AWS),
            ])
            .alias(field::INFERRED_TYPE),
    );
    Ok(exprs)
}

fn trace_id_bound(epoch: i64) -> Expr {
    let mut b = [0u8; 16];
    let e = epoch.clamp(0, u32::MAX as i64 + 1);
    if e > u32::MAX as i64 {
        b = [0xff; 16];
    } else {
        b[..4].copy_from_slice(&(e as u32).to_be_bytes());
    }
    lit(ScalarValue::FixedSizeBinary(16, Some(b.to_vec())))
}

/// What a search found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The traces evaluated: every trace (in range), or the index's candidates.
    pub hits: Vec<Hit>,
    /// Every candidate was evaluated, so `hits` hold every match. `false`: a
    /// [`PageRequest`] was satisfied by the newest candidates and the search stopped.
    pub complete: bool,
    /// When index probes limited the search: the traces in range (after sampling) over
    /// the whole store, for `TracesProcessedCount`.
    pub processed: Option<u64>,
}

/// One page of newest-first matches: the search may stop once it has found more than
/// `want` matches among the candidates older than `after` (by trace id, the page order).
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest {
    pub after: Option<TraceId>,
    pub want: usize,
    /// FixedRate sampling (GetTraceSummaries `SamplingStrategy`).
    pub sampling_rate: Option<f64>,
}

/// Whether a trace id lies in a `TraceId` range (always true for other ranges).
pub fn in_range_by_id(t: &TraceId, range: Option<TimeRange>) -> bool {
    match range {
        Some(r) if r.kind == RangeType::TraceId => {
            let at = i64::from(t.epoch_seconds()) * 1_000_000_000;
            at >= r.start_ns.div_euclid(1_000_000_000) * 1_000_000_000 && at < r.end_ns
        }
        _ => true,
    }
}

/// FixedRate sampling: whether a trace is among the `rate` fraction looked at. It
/// depends on the trace id only, so every call keeps the same traces and a smaller rate
/// keeps a subset.
pub fn sampled(t: &TraceId, rate: Option<f64>) -> bool {
    let Some(rate) = rate else { return true };
    if rate >= 1.0 {
        return true;
    }
    let b = t.as_bytes();
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[8..16]);
    let v = u64::from_be_bytes(x) as f64 / (u64::MAX as f64 + 1.0);
    v < rate
}

/// The candidate traces of a search, from the index sidecars or a prefilter scan.
#[derive(Debug)]
struct Shortlist {
    /// Candidates in range, sampled and older than the page's `after`, ascending.
    traces: Vec<TraceId>,
    /// Traces in range and sampled over the store.
    processed: u64,
    /// Traces at or below this id were not looked at (a page's newest candidates were
    /// enough); `None`: `traces` holds every candidate.
    older: Option<TraceId>,
}

/// Candidate traces in `snap`, when the filter restricts them and every sidecar is
/// usable; only traces at or below `upto` when given.
///
/// The index sidecars answer first. When they cannot restrict (a leaf without a probe,
/// such as `responsetime > 2`) or find too many traces, a prefilter scan reads only the
/// columns of the leaves ([`scan_candidates`]). Without a page request the candidates
/// must also be few enough to pay (a third of the traces in range); with one, only the
/// newest files are probed at first ([`prune::newest_candidate_traces`]), and the newest
/// candidates are evaluated first.
async fn candidate_traces(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    snap: &Snapshot,
    filter: &CompiledFilter,
    range: Option<TimeRange>,
    page: Option<PageRequest>,
    upto: Option<TraceId>,
) -> Result<Option<Shortlist>> {
    if !table.uses_indexes() || range.is_some_and(|r| r.kind != RangeType::TraceId) {
        return Ok(None);
    }
    let probes = candidates(&filter.program, &filter.probes);
    let rows = row_filter(&filter.program, &filter.leaves);
    if probes == Restriction::All && rows == Restriction::All {
        return Ok(None);
    }
    let rate = page.and_then(|p| p.sampling_rate);
    let key = format!("{range:?} {rate:?}");
    let Some(processed) = prune::count_traces(snap, &table.indexes, &key, |t| {
        in_range_by_id(t, range) && sampled(t, rate)
    }) else {
        return Ok(None);
    };
    let after = page.and_then(|p| p.after);
    let keep = |t: &TraceId| {
        in_range_by_id(t, range)
            && sampled(t, rate)
            && after.is_none_or(|a| *t < a)
            && upto.is_none_or(|u| *t <= u)
    };
    let sorted = |set: prune::TraceSet, older| {
        let mut traces: Vec<TraceId> = set.into_iter().collect();
        traces.sort_unstable();
        Shortlist {
            traces,
            processed,
            older,
        }
    };
    if let Some(p) = page
        && upto.is_none()
        && probes != Restriction::All
        && let Some((set, floor)) = prune::newest_candidate_traces(
            snap,
            &table.indexes,
            &probes,
            after,
            p.want.saturating_mul(4).max(64),
            keep,
        )
    {
        return Ok(Some(sorted(set, floor)));
    }
    // Limiting a whole scan pays only when it skips most of the traces in range.
    let pays = |n: usize| page.is_some() || n as u64 * 3 <= processed;
    // A large index answer is worth narrowing by a prefilter scan when the row filter
    // is tighter (`http.status = 500 AND responsetime > 2`: the index knows the status
    // only).
    let narrow =
        |n: usize| n as u64 > PREFILTER_ABOVE && rows_tighter(&filter.program, &filter.probes);
    let from_index = if probes == Restriction::All {
        None
    } else {
        prune::candidate_traces(snap, &table.indexes, &probes)
            .map(|mut set| {
                set.retain(keep);
                set
            })
            .filter(|set| pays(set.len()) && !narrow(set.len()))
    };
    let set = match from_index {
        Some(set) => set,
        None if rows == Restriction::All => return Ok(None),
        None => {
            let found = scan_candidates(ctx, table, &rows, snap.clone(), range).await?;
            let set: prune::TraceSet = found.into_iter().filter(keep).collect();
            if !pays(set.len()) {
                return Ok(None);
            }
            set
        }
    };
    Ok(Some(sorted(set, None)))
}

/// Index answers with more candidate traces than this are narrowed by a prefilter scan
/// when the row filter is tighter: evaluating a candidate exactly costs ~40 µs, so at
/// 100M documents 50k candidates cost about what the prefilter scan does.
const PREFILTER_ABOVE: u64 = 50_000;

/// The traces with rows where the row filter's conditions hold, as the filter combines
/// them: one pass over the columns the conditions read, with the predicate pushed into
/// the Parquet reader (other columns, the trace id among them, are decoded only where a
/// row passes). A superset of the matching traces; the caller evaluates them exactly.
async fn scan_candidates(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    rows: &RowFilter,
    snapshot: Snapshot,
    range: Option<TimeRange>,
) -> Result<Vec<TraceId>> {
    let mut conditions = Vec::new();
    let formula = row_formula(rows, &mut conditions);
    let source = Arc::new(RestrictedSpans {
        table: Arc::clone(table),
        traces: None,
        snapshot,
    });
    let mut plan = LogicalPlanBuilder::scan("spans", provider_as_source(source), None)?;
    if let Some(f) = trace_id_range(range) {
        plan = plan.filter(f)?;
    }
    let any = conditions
        .iter()
        .cloned()
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false));
    let aggs: Vec<Expr> = conditions
        .iter()
        .enumerate()
        .map(|(i, e)| bool_or(e.clone()).alias(format!("c{i}")))
        .collect();
    let plan = plan
        .project(with_derived_columns()?)?
        .filter(any)?
        .aggregate(vec![col(c::TRACE_ID)], aggs)?
        .filter(formula)?
        .project(vec![col(c::TRACE_ID)])?
        .build()?;
    let mut config = ctx.copied_config();
    let options = config.options_mut();
    options.execution.parquet.pushdown_filters = true;
    options.execution.parquet.reorder_filters = true;
    // the state shares the engine's catalogs: building it must not replace the default
    // catalog (and the `spans` table in it)
    options.catalog.create_default_catalog_and_schema = false;
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_config(config)
        .build();
    let batches = SessionContext::new_with_state(state)
        .execute_logical_plan(plan)
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for b in &batches {
        let ids = b.column(0).as_fixed_size_binary();
        out.extend((0..ids.len()).filter_map(|i| TraceId::from_slice(ids.value(i))));
    }
    Ok(out)
}

/// The trace-level formula of a row filter over `bool_or` columns `c0..`, one per
/// distinct condition (collected into `conditions`).
fn row_formula(r: &RowFilter, conditions: &mut Vec<Expr>) -> Expr {
    match r {
        Restriction::All => lit(true),
        Restriction::Rows(e) => {
            let i = conditions.iter().position(|x| x == e).unwrap_or_else(|| {
                conditions.push(e.clone());
                conditions.len() - 1
            });
            col(format!("c{i}"))
        }
        Restriction::And(v) => v
            .iter()
            .map(|x| row_formula(x, conditions))
            .reduce(Expr::and)
            .unwrap_or_else(|| lit(true)),
        Restriction::Or(v) => v
            .iter()
            .map(|x| row_formula(x, conditions))
            .reduce(Expr::or)
            .unwrap_or_else(|| lit(false)),
    }
}

/// The filter on `trace_id` of a `TraceId` time range.
fn trace_id_range(range: Option<TimeRange>) -> Option<Expr> {
    let r = range.filter(|r| r.kind == RangeType::TraceId)?;
    let lo = r.start_ns.div_euclid(1_000_000_000);
    // [start, end): the last whole second before `end` is included
    let hi = (r.end_ns - 1).div_euclid(1_000_000_000) + 1;
    Some(
        col(c::TRACE_ID)
            .gt_eq(trace_id_bound(lo))
            .and(col(c::TRACE_ID).lt(trace_id_bound(hi))),
    )
}

/// Evaluates `filter` on every trace of `table` (in `range`, when given), or only on the
/// candidates its index probes find. With a [`PageRequest`], candidates are evaluated
/// newest first in growing chunks, until the page is full.
pub async fn find(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    filter: &Arc<CompiledFilter>,
    range: Option<TimeRange>,
    page: Option<PageRequest>,
) -> Result<Found> {
    let snapshot = table.snapshot()?;
    let everything = || async {
        let hits = evaluate(
            ctx,
            Arc::clone(table) as Arc<dyn TableProvider>,
            filter,
            range,
        )
        .await?;
        Ok::<_, crate::error::Error>(Found {
            hits,
            complete: true,
            processed: None,
        })
    };
    let Some(mut list) = candidate_traces(ctx, table, &snapshot, filter, range, page, None).await?
    else {
        return everything().await;
    };
    let mut hits = Vec::new();
    let mut matched = 0usize;
    let mut chunk = page.map_or(usize::MAX, |p| p.want.saturating_mul(2).max(64));
    let complete = loop {
        let mut end = list.traces.len();
        let mut full = false;
        while end > 0 && !full {
            let lo = end.saturating_sub(chunk);
            let part = Arc::new(list.traces[lo..end].to_vec());
            let source = Arc::new(RestrictedSpans {
                table: Arc::clone(table),
                traces: Some(Arc::clone(&part)),
                snapshot: snapshot.clone(),
            });
            for h in evaluate(ctx, source, filter, range).await? {
                // a file scanned whole (its sidecar went away) brings other traces too
                if part.binary_search(&h.trace_id).is_ok() {
                    matched += usize::from(h.matched && h.in_range);
                    hits.push(h);
                }
            }
            end = lo;
            full = page.is_some_and(|p| matched > p.want);
            chunk = chunk.saturating_mul(4);
        }
        if full {
            break end == 0 && list.older.is_none();
        }
        let Some(floor) = list.older else {
            break true;
        };
        // the newest candidates were not enough: every older one
        match candidate_traces(ctx, table, &snapshot, filter, range, page, Some(floor)).await? {
            Some(rest) => list = rest,
            None => return everything().await,
        }
    };
    Ok(Found {
        hits,
        complete,
        processed: Some(list.processed),
    })
}

/// The plan of the module docs over `source`, collected into hits.
async fn evaluate(
    ctx: &SessionContext,
    source: Arc<dyn TableProvider>,
    filter: &Arc<CompiledFilter>,
    range: Option<TimeRange>,
) -> Result<Vec<Hit>> {
    let mut plan = LogicalPlanBuilder::scan("spans", provider_as_source(source), None)?;
    if let Some(f) = trace_id_range(range) {
        plan = plan.filter(f)?;
    }
    plan = plan.project(with_derived_columns()?)?;
    let in_window = match range {
        Some(r) if r.kind == RangeType::Service => col(c::KIND)
            .eq(lit(kind::SEGMENT))
            .and(col(c::END_NS).gt_eq(lit(r.start_ns)))
            .and(col(c::END_NS).lt(lit(r.end_ns))),
        _ => lit(true),
    };
    let trivial = filter.program == Program::And(Vec::new());
    let mut aggs = vec![
        min(col(c::START_NS)).alias("first_start"),
        max(col(c::END_NS)).alias("last_end"),
        bool_or(in_window).alias("in_window"),
        bool_or(col(c::IN_PROGRESS)).alias("open"),
    ];
    if !trivial {
        aggs.push(array_agg(row_struct(filter)).alias("rows"));
    }
    plan = plan.aggregate(vec![col(c::TRACE_ID)], aggs)?;
    let matched = if trivial {
        lit(true)
    } else {
        ScalarUDF::from(MatchUdf::new(Arc::clone(filter))).call(vec![col("rows")])
    };
    plan = plan.project(vec![
        col(c::TRACE_ID),
        col("first_start"),
        col("last_end"),
        col("in_window"),
        matched.alias("matched"),
        col("open"),
    ])?;
    let df = ctx.execute_logical_plan(plan.build()?).await?;
    let batches = df.collect().await?;
    let mut hits = Vec::new();
    for b in &batches {
        read_hits(b, range, &mut hits);
    }
    Ok(hits)
}

fn read_hits(b: &RecordBatch, range: Option<TimeRange>, out: &mut Vec<Hit>) {
    let ids = b.column(0).as_fixed_size_binary();
    let first = b.column(1).as_primitive::<Int64Type>();
    let last = b.column(2).as_primitive::<Int64Type>();
    let window = b.column(3).as_boolean();
    let matched = b.column(4).as_boolean();
    let open = b.column(5).as_boolean();
    for i in 0..b.num_rows() {
        let Some(trace_id) = TraceId::from_slice(ids.value(i)) else {
            continue;
        };
        let first_start = first.value(i);
        let last_end = (!last.is_null(i)).then(|| last.value(i));
        let in_range = match range {
            None => true,
            Some(r) => match r.kind {
                RangeType::TraceId => in_range_by_id(&trace_id, range),
                RangeType::Event => {
                    let still_open = !open.is_null(i) && open.value(i);
                    first_start < r.end_ns
                        && (still_open || last_end.is_none_or(|e| e >= r.start_ns))
                }
                RangeType::Service => !window.is_null(i) && window.value(i),
            },
        };
        out.push(Hit {
            trace_id,
            first_start,
            last_end,
            in_range,
            matched: !matched.is_null(i) && matched.value(i),
        });
    }
}

fn select(t: &Trace<'_>, k: usize, s: Select) -> bool {
    match s {
        Select::All => true,
        Select::Never => false,
        Select::Leaf(l) => t.leaf(k, l),
    }
}

/// Evaluates a trace-level program.
pub(crate) fn eval_trace(p: &Program, t: &Trace<'_>) -> bool {
    let mut causes = None;
    eval(p, t, &mut causes)
}

fn eval(p: &Program, t: &Trace<'_>, causes: &mut Option<rootcause::RootCauses>) -> bool {
    let n = t.rows.len();
    match p {
        Program::And(v) => v.iter().all(|x| eval(x, t, causes)),
        Program::Or(v) => v.iter().any(|x| eval(x, t, causes)),
        Program::Not(x) => !eval(x, t, causes),
        Program::Any(l) => (0..n).any(|k| t.leaf(k, *l)),
        Program::Root(l) => t.root.is_some_and(|k| t.leaf(k, *l)),
        Program::Inferred => t.inferred.iter().any(|&b| b),
        Program::Duration(op, th) => t.duration_ns().is_some_and(|d| th.holds(d, *op)),
        Program::Service { seg, inf, body } => (0..n).any(|k| {
            let as_segment = t.rows[k].segment
                && select(t, k, *seg)
                && body.as_ref().is_none_or(|b| eval_row(b, t, k, false));
            let as_inferred = t.inferred[k]
                && select(t, k, *inf)
                && body.as_ref().is_none_or(|b| eval_row(b, t, k, true));
            as_segment || as_inferred
        }),
        Program::Edge {
            from,
            to_seg,
            to_inf,
            body,
        } => (0..n).any(|k| {
            let Some(caller_seg) = t.seg_of[k] else {
                return false;
            };
            if !select(t, caller_seg, *from) {
                return false;
            }
            let caller = t.segment_node(caller_seg);
            let to_real = t.real_children[k]
                .iter()
                .any(|&s| t.segment_node(s) != caller && select(t, s, *to_seg));
            let to_inferred = t.inferred[k] && select(t, k, *to_inf);
            (to_real || to_inferred) && body.as_ref().is_none_or(|b| eval_row(b, t, k, false))
        }),
        Program::RootCause { kind, level, body } => {
            let rc = causes.get_or_insert_with(|| rootcause::RootCauses::of(t));
            rc.matches(*kind, *level, body)
        }
        Program::RootCauseJson(v) => {
            let rc = causes.get_or_insert_with(|| rootcause::RootCauses::of(t));
            rc.matches_json(v)
        }
    }
}

fn eval_row(p: &RowProgram, t: &Trace<'_>, k: usize, inferred: bool) -> bool {
    match p {
        RowProgram::And(v) => v.iter().all(|x| eval_row(x, t, k, inferred)),
        RowProgram::Or(v) => v.iter().any(|x| eval_row(x, t, k, inferred)),
        RowProgram::Not(x) => !eval_row(x, t, k, inferred),
        RowProgram::Leaf { seg, inf } => select(t, k, if inferred { *inf } else { *seg }),
        RowProgram::IsRoot => !inferred && t.root == Some(k),
        RowProgram::IsInferred => inferred,
    }
}
