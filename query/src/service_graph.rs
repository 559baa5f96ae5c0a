//! The service graph (GetServiceGraph, SPEC 4.4 and 7.19-7.20), trace graphs
//! (GetTraceGraph) and time series of service or edge statistics
//! (GetTimeSeriesServiceStatistics, SPEC 4.5).
//!
//! Nodes and edges are what [`rollup::visit`] reports: real services, inferred
//! downstream nodes (AWS resources, `remote` HTTP endpoints, `Database::SQL`) and a
//! `client` node in front of each root service. Statistics and histograms come from the
//! rollups where they answer for a partition alone and from a scan of its spans
//! elsewhere (a filter expression scans everything); histogram entries are sketch bins,
//! within 1% of the values they stand for, with exact counts (SPEC 7.11).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use serde::Serialize;
use tracelake_storage::rollup::{self, CLIENT_TYPE, MINUTE_NS, Node, Stats};
use tracelake_storage::sketch::RELATIVE_ERROR;
use tracelake_storage::{Snapshot, TraceId};

use crate::error::{Error, Result};
use crate::filter::ast::{ExprKind, Pred, ServiceRef};
use crate::percentile::{Answered, Mode};
use crate::provider::SpansTable;
use crate::rollups::RollupCache;
use crate::search::TimeRange;
use crate::source::{self, Part, in_range};

/// A service graph request.
#[derive(Debug, Clone, Default)]
pub struct GraphRequest {
    /// `None`: all time.
    pub range: Option<TimeRange>,
    /// Only these traces (a group's or any filter expression): answered by scanning.
    pub filter: Option<Arc<crate::CompiledFilter>>,
    pub mode: Mode,
}

/// `OkCount`, `ErrorStatistics`, `FaultStatistics`, `TotalCount`, `TotalResponseTime`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statistics {
    pub ok_count: u64,
    pub error_statistics: ErrorStatistics,
    pub fault_statistics: FaultStatistics,
    pub total_count: u64,
    /// Seconds.
    pub total_response_time: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorStatistics {
    pub throttle_count: u64,
    /// Errors that are not throttles (flags count independently, so this is errors
    /// minus throttles).
    pub other_count: u64,
    pub total_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaultStatistics {
    pub other_count: u64,
    pub total_count: u64,
}

impl Statistics {
    fn of(s: &Stats) -> Statistics {
        Statistics {
            ok_count: s.ok,
            error_statistics: ErrorStatistics {
                throttle_count: s.throttle,
                other_count: s.error.saturating_sub(s.throttle),
                total_count: s.error,
            },
            fault_statistics: FaultStatistics {
                other_count: s.fault,
                total_count: s.fault,
            },
            total_count: s.total,
            total_response_time: s.response_time,
        }
    }
}

/// `HistogramEntry`: a bucket's representative (seconds) and its exact count.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HistogramEntry {
    pub value: f64,
    pub count: u64,
}

fn histogram(s: &Stats) -> Vec<HistogramEntry> {
    s.sketch
        .bins()
        .map(|(value, count)| HistogramEntry { value, count })
        .collect()
}

/// An edge to the service `reference_id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Edge {
    pub reference_id: usize,
    /// Epoch seconds: the first and the end of the last minute with calls.
    pub start_time: f64,
    pub end_time: f64,
    pub summary_statistics: Statistics,
    pub response_time_histogram: Vec<HistogramEntry>,
    pub aliases: Vec<String>,
}

/// A node of the service graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    pub reference_id: usize,
    pub name: String,
    pub names: Vec<String>,
    /// The first service to handle requests.
    pub root: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// The origin (`AWS::EC2::Instance`, ...), an inferred type, `client`, or empty.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `active` for instrumented services, `unknown` for client and inferred nodes.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub edges: Vec<Edge>,
    /// `None` for client nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_statistics: Option<Statistics>,
    pub response_time_histogram: Vec<HistogramEntry>,
}

/// A service graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceGraph {
    pub services: Vec<Service>,
    #[serde(skip)]
    pub mode: Answered,
    /// Histogram values are within this relative error; counts are exact.
    #[serde(skip)]
    pub relative_error: f64,
    #[serde(skip)]
    pub exact_because: Option<String>,
    #[serde(skip)]
    pub partitions_from_rollups: usize,
    #[serde(skip)]
    pub partitions_scanned: usize,
}

type Owned = Node<'static>;

fn owned(n: &Node<'_>) -> Owned {
    Node {
        name: n.name.to_string().into(),
        kind: n.kind.to_string().into(),
        account: n.account.as_ref().map(|a| a.to_string().into()),
        inferred: n.inferred,
    }
}

/// Statistics per node and per edge, with the minutes they cover.
#[derive(Debug, Default)]
struct Tally {
    nodes: HashMap<Owned, (Stats, i64, i64)>,
    edges: HashMap<(Owned, Owned), (Stats, i64, i64)>,
}

fn bump(slot: &mut (Stats, i64, i64), minute: i64) {
    slot.1 = slot.1.min(minute);
    slot.2 = slot.2.max(minute);
}

impl Tally {
    fn slot<K: std::hash::Hash + Eq>(
        m: &mut HashMap<K, (Stats, i64, i64)>,
        k: K,
    ) -> &mut (Stats, i64, i64) {
        m.entry(k)
            .or_insert_with(|| (Stats::default(), i64::MAX, i64::MIN))
    }

    fn add_row(&mut self, r: &rollup::Row) {
        let slot = match &r.caller {
            Some(c) if r.edge => Self::slot(&mut self.edges, (owned(c), owned(&r.node))),
            _ => Self::slot(&mut self.nodes, owned(&r.node)),
        };
        slot.0.merge(&r.stats);
        bump(slot, r.minute_ns);
    }

    fn slot_of(&mut self, x: &rollup::Contribution<'_>) -> &mut (Stats, i64, i64) {
        match &x.caller {
            Some(c) if x.edge => Self::slot(&mut self.edges, (owned(c), owned(&x.node))),
            _ => Self::slot(&mut self.nodes, owned(&x.node)),
        }
    }

    fn add(&mut self, x: &rollup::Contribution<'_>) {
        let minute = x.start_ns.div_euclid(MINUTE_NS) * MINUTE_NS;
        let slot = self.slot_of(x);
        slot.0.add(x);
        bump(slot, minute);
    }

    /// Takes back what a file's rollups counted for a trace split across files.
    fn subtract(&mut self, x: &rollup::Contribution<'_>) {
        self.slot_of(x).0.subtract(x);
    }
}

/// Walks the store and tallies nodes and edges; `fast` uses rollups where they answer.
async fn tally(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    cache: &RollupCache,
    snapshot: &Snapshot,
    range: Option<TimeRange>,
    filter: Option<&Arc<crate::CompiledFilter>>,
    fast: bool,
) -> Result<(Tally, source::Walked, Option<(i64, i64)>)> {
    let window = source::window(range, fast);
    let matched: Option<HashSet<TraceId>> = match filter {
        Some(f) if !f.is_all() => Some(source::matching_traces(ctx, table, f, range).await?),
        _ => None,
    };
    let mut t = Tally::default();
    let walked = source::walk(ctx, cache, snapshot, window, fast, &[], |part| {
        match part {
            Part::Rollups(files, correction) => {
                for r in files.iter().flat_map(|f| f.iter()) {
                    if in_range(window, r.minute_ns) {
                        t.add_row(r);
                    }
                }
                correction.visit(|x, _, add| {
                    if in_range(window, x.start_ns) {
                        if add {
                            t.add(x);
                        } else {
                            t.subtract(x);
                        }
                    }
                })?;
            }
            Part::Rows(batch) => {
                let keep = source::row_filter(&batch, matched.as_ref());
                rollup::visit(&batch, |x| {
                    if keep(x.row) && in_range(window, x.start_ns) {
                        t.add(x);
                    }
                })?;
            }
        }
        Ok(())
    })
    .await?;
    Ok((t, walked, window))
}

const NS: f64 = 1e9;

/// GetServiceGraph over `snapshot`.
pub async fn service_graph(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    cache: &RollupCache,
    snapshot: &Snapshot,
    r: &GraphRequest,
) -> Result<ServiceGraph> {
    let why = source::filter_needs_exact(r.filter.as_ref());
    let fast = source::choose_fast(r.mode, why.as_deref())?;
    // the reason is reported only when the engine chose
    let why = why.filter(|_| r.mode == Mode::Auto);
    let (t, walked, _) = tally(
        ctx,
        table,
        cache,
        snapshot,
        r.range,
        r.filter.as_ref(),
        fast,
    )
    .await?;
    Ok(build_graph(t, fast, why, walked))
}

fn build_graph(
    mut t: Tally,
    fast: bool,
    why: Option<String>,
    walked: source::Walked,
) -> ServiceGraph {
    // a split trace's correction can take a node or an edge back to nothing
    t.nodes.retain(|_, s| s.0.total > 0);
    t.edges.retain(|_, s| s.0.total > 0);
    // every node: measured ones, and callers (client nodes) only seen on edges
    let mut all: BTreeMap<Owned, Option<&(Stats, i64, i64)>> = BTreeMap::new();
    for (n, s) in &t.nodes {
        all.insert(n.clone(), Some(s));
    }
    for (caller, callee) in t.edges.keys() {
        all.entry(caller.clone()).or_insert(None);
        all.entry(callee.clone()).or_insert(None);
    }
    let ids: HashMap<&Owned, usize> = all.keys().enumerate().map(|(i, n)| (n, i)).collect();
    let mut edges_of: HashMap<&Owned, Vec<Edge>> = HashMap::new();
    for ((caller, callee), (s, first, last)) in &t.edges {
        edges_of.entry(caller).or_default().push(Edge {
            reference_id: ids.get(callee).copied().unwrap_or_default(),
            start_time: *first as f64 / NS,
            end_time: (*last + MINUTE_NS) as f64 / NS,
            summary_statistics: Statistics::of(s),
            response_time_histogram: histogram(s),
            aliases: Vec::new(),
        });
    }
    let services = all
        .iter()
        .map(|(n, s)| {
            let mut edges = edges_of.remove(n).unwrap_or_default();
            edges.sort_by_key(|e| e.reference_id);
            let client = n.kind == CLIENT_TYPE;
            Service {
                reference_id: ids.get(n).copied().unwrap_or_default(),
                name: n.name.to_string(),
                names: vec![n.name.to_string()],
                root: s.is_some_and(|s| s.0.roots > 0),
                account_id: n.account.as_ref().map(ToString::to_string),
                kind: n.kind.to_string(),
                state: if n.inferred || client {
                    "unknown"
                } else {
                    "active"
                },
                start_time: s.map(|s| s.1 as f64 / NS),
                end_time: s.map(|s| (s.2 + MINUTE_NS) as f64 / NS),
                edges,
                summary_statistics: s.map(|s| Statistics::of(&s.0)),
                response_time_histogram: s.map(|s| histogram(&s.0)).unwrap_or_default(),
            }
        })
        .collect();
    ServiceGraph {
        services,
        mode: if fast {
            Answered::Fast
        } else {
            Answered::Exact
        },
        relative_error: RELATIVE_ERROR,
        exact_because: if fast { None } else { why },
        partitions_from_rollups: walked.from_rollups,
        partitions_scanned: walked.scanned,
    }
}

/// GetTraceGraph: the service graph of the traces `ids` (always exact).
pub async fn trace_graph(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    ids: &[TraceId],
) -> Result<ServiceGraph> {
    let mut t = Tally::default();
    if let Some(batch) = crate::summary::fetch(ctx, Arc::clone(table), ids).await? {
        let batch = tracelake_storage::datafile::sort_rows(&batch)?;
        rollup::visit(&batch, |x| t.add(x))?;
    }
    Ok(build_graph(t, false, None, source::Walked::default()))
}

/// What a time series follows (EntitySelectorExpression).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Entity {
    /// No selector: the edges from `client` nodes, i.e. every request entering the
    /// system.
    #[default]
    Entry,
    /// `service("name")` or `service(id(name: ..., type: ...))`.
    Service(ServiceRef),
    /// `edge("a", "b")`.
    Edge(ServiceRef, ServiceRef),
}

impl Entity {
    /// Parses an EntitySelectorExpression (`service(...)` or `edge(...)`, no braces).
    pub fn parse(text: &str) -> Result<Entity> {
        let e = crate::filter::parse(text)?;
        match e.kind {
            ExprKind::Pred(Pred::Service { svc, body: None }) => {
                Ok(Entity::Service(svc.unwrap_or_default()))
            }
            ExprKind::Pred(Pred::Edge {
                from,
                to,
                body: None,
            }) => Ok(Entity::Edge(from, to)),
            _ => Err(Error::InvalidRequest(format!(
                "{text:?} is not an entity selector: write service(\"name\"), \
                 service(id(name: \"n\", type: \"t\")) or edge(\"from\", \"to\")"
            ))),
        }
    }
}

fn matches(r: &ServiceRef, n: &Node<'_>) -> bool {
    r.name.as_deref().is_none_or(|x| x == n.name)
        && r.kind.as_deref().is_none_or(|x| x == n.kind)
        && r.account_id
            .as_deref()
            .is_none_or(|x| n.account.as_deref() == Some(x))
}

/// A time series request.
#[derive(Debug, Clone, Default)]
pub struct TimeSeriesRequest {
    pub range: Option<TimeRange>,
    pub filter: Option<Arc<crate::CompiledFilter>>,
    pub entity: Entity,
    /// Bucket length, seconds (a multiple of 60 answers from rollups).
    pub period_s: u64,
    pub mode: Mode,
    /// Also forecast each point's fault count ([`ForecastStatistics`]).
    pub forecast: bool,
}

/// `ServiceForecastStatistics`: the band a point's fault count was expected in, from
/// the [`FORECAST_PERIODS`] periods before it. X-Ray's model is not documented; this one
/// (our decision) takes their mean fault count `m` and standard deviation `s`, widened
/// to Poisson noise (`max(s, sqrt(max(m, 1)))`), and spans three of them either side: a count
/// above `FaultCountHigh` is an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ForecastStatistics {
    pub fault_count_high: u64,
    pub fault_count_low: u64,
}

/// How many periods before a point its forecast looks at.
pub const FORECAST_PERIODS: i64 = 10;

impl ForecastStatistics {
    /// The band for fault counts like `history` (`None` without any history).
    fn from_history(history: &[u64]) -> Option<ForecastStatistics> {
        if history.is_empty() {
            return None;
        }
        let n = history.len() as f64;
        let mean = history.iter().sum::<u64>() as f64 / n;
        let var = history
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // at least the noise of one event: a quiet history does not make one fault odd
        let spread = 3.0 * var.sqrt().max(mean.max(1.0).sqrt());
        Some(ForecastStatistics {
            fault_count_high: (mean + spread).ceil() as u64,
            fault_count_low: (mean - spread).max(0.0).floor() as u64,
        })
    }
}

/// One bucket of a time series.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeSeriesPoint {
    /// Start of the bucket, epoch seconds.
    pub timestamp: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_summary_statistics: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_summary_statistics: Option<Statistics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_forecast_statistics: Option<ForecastStatistics>,
    pub response_time_histogram: Vec<HistogramEntry>,
}

/// GetTimeSeriesServiceStatistics: the selected entity's statistics per period.
pub async fn time_series(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    cache: &RollupCache,
    snapshot: &Snapshot,
    r: &TimeSeriesRequest,
) -> Result<(Vec<TimeSeriesPoint>, Answered)> {
    if r.period_s == 0 {
        return Err(Error::InvalidRequest(
            "the period must be at least 1 s".into(),
        ));
    }
    let why = source::filter_needs_exact(r.filter.as_ref()).or_else(|| {
        (!r.period_s.is_multiple_of(60)).then(|| {
            "rollups have one-minute buckets; use a period that is a multiple of 60 s".to_owned()
        })
    });
    let fast = source::choose_fast(r.mode, why.as_deref())?;
    let period = i64::try_from(r.period_s)
        .ok()
        .and_then(|p| p.checked_mul(1_000_000_000))
        .ok_or_else(|| {
            Error::InvalidRequest(format!("a period of {} s is too long", r.period_s))
        })?;
    let mut buckets: BTreeMap<i64, Stats> = BTreeMap::new();
    let want_edge = !matches!(r.entity, Entity::Service(_));
    let keep = |edge: bool, node: &Node<'_>, caller: Option<&Node<'_>>| match &r.entity {
        Entity::Entry => edge && caller.is_some_and(|c| c.kind == CLIENT_TYPE),
        Entity::Service(s) => !edge && matches(s, node),
        Entity::Edge(a, b) => edge && caller.is_some_and(|c| matches(a, c)) && matches(b, node),
    };
    let window = source::window(r.range, fast);
    let matched: Option<HashSet<TraceId>> = match &r.filter {
        Some(f) if !f.is_all() => Some(source::matching_traces(ctx, table, f, r.range).await?),
        _ => None,
    };
    source::walk(ctx, cache, snapshot, window, fast, &[], |part| {
        match part {
            Part::Rollups(files, correction) => {
                for row in files.iter().flat_map(|f| f.iter()) {
                    if in_range(window, row.minute_ns)
                        && keep(row.edge, &row.node, row.caller.as_ref())
                    {
                        buckets
                            .entry(row.minute_ns.div_euclid(period) * period)
                            .or_default()
                            .merge(&row.stats);
                    }
                }
                correction.visit(|x, _, add| {
                    if in_range(window, x.start_ns) && keep(x.edge, &x.node, x.caller.as_ref()) {
                        let b = buckets
                            .entry(x.start_ns.div_euclid(period) * period)
                            .or_default();
                        if add {
                            b.add(x);
                        } else {
                            b.subtract(x);
                        }
                    }
                })?;
            }
            Part::Rows(batch) => {
                let in_set = source::row_filter(&batch, matched.as_ref());
                rollup::visit(&batch, |x| {
                    if in_set(x.row)
                        && in_range(window, x.start_ns)
                        && keep(x.edge, &x.node, x.caller.as_ref())
                    {
                        buckets
                            .entry(x.start_ns.div_euclid(period) * period)
                            .or_default()
                            .add(x);
                    }
                })?;
            }
        }
        Ok(())
    })
    .await?;
    // the series starts at the window's first period, else at its first point
    let first = window
        .map(|(lo, _)| lo.div_euclid(period) * period)
        .or_else(|| buckets.keys().next().copied())
        .unwrap_or(0);
    let faults = |b: i64| buckets.get(&b).map_or(0, |s: &Stats| s.fault);
    let points = buckets
        .iter()
        .filter(|(_, s)| s.total > 0)
        .map(|(&b, s)| TimeSeriesPoint {
            timestamp: b as f64 / NS,
            edge_summary_statistics: want_edge.then(|| Statistics::of(s)),
            service_summary_statistics: (!want_edge).then(|| Statistics::of(s)),
            service_forecast_statistics: r
                .forecast
                .then(|| {
                    let history: Vec<u64> = (1..=FORECAST_PERIODS)
                        .filter_map(|k| b.checked_sub(k.checked_mul(period)?))
                        .filter(|&p| p >= first)
                        .map(faults)
                        .collect();
                    ForecastStatistics::from_history(&history)
                })
                .flatten(),
            response_time_histogram: histogram(s),
        })
        .collect();
    Ok((
        points,
        if fast {
            Answered::Fast
        } else {
            Answered::Exact
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_bands() {
        assert_eq!(ForecastStatistics::from_history(&[]), None);
        // a quiet history still allows a fault or two
        let quiet = ForecastStatistics::from_history(&[0, 0, 0]).unwrap();
        assert_eq!((quiet.fault_count_low, quiet.fault_count_high), (0, 3));
        // steady counts: Poisson noise around the mean
        let steady = ForecastStatistics::from_history(&[4; 10]).unwrap();
        assert_eq!((steady.fault_count_low, steady.fault_count_high), (0, 10));
        // a noisy history widens the band beyond Poisson
        let noisy = ForecastStatistics::from_history(&[0, 20, 0, 20]).unwrap();
        assert_eq!((noisy.fault_count_low, noisy.fault_count_high), (0, 40));
    }
}
