//! Where node and edge statistics come from, partition by partition (a trace never
//! spans partitions): the partition's rollups, corrected for the few traces that
//! flushes split across its files, or else a scan of its spans with upserts resolved
//! (rows still in memory, files without rollups, an unknown set of split traces).
//! Percentiles, the service graph and time series walk the store the same way.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use datafusion::common::DataFusionError;
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{LogicalPlanBuilder, col, lit, when};
use tracelake_storage::manifest::FileMeta;
use tracelake_storage::rollup::{self, MINUTE_NS, Row};
use tracelake_storage::schema::col as c;
use tracelake_storage::{PartitionKey, Snapshot, TraceId};

use crate::error::{Error, Result};
use crate::percentile::Mode;
use crate::provider::{SnapshotSource, SpansTable};
use crate::rollups::RollupCache;
use crate::search::TimeRange;

/// What one partition contributes.
pub(crate) enum Part {
    /// The rollup rows of its files (one list per file), and the correction for the
    /// traces that flushes split across its files.
    Rollups(Vec<Arc<Vec<Row>>>, Arc<Correction>),
    /// Its rows, sorted by trace id, with the columns [`rollup::visit`] reads plus the
    /// extra ones asked for.
    Rows(RecordBatch),
}

/// A partition's traces that span files: their rows as each file holds them (what its
/// rollups counted, to take back) and as readers see them (resolved, to count instead).
#[derive(Debug, Default)]
pub(crate) struct Correction {
    written: Vec<RecordBatch>,
    resolved: Option<RecordBatch>,
}

impl Correction {
    /// Calls `f(contribution, true)` for what to add and `f(contribution, false)` for
    /// what to take back.
    pub(crate) fn visit<'a>(
        &'a self,
        mut f: impl FnMut(&rollup::Contribution<'a>, &'a RecordBatch, bool),
    ) -> Result<()> {
        for b in &self.written {
            rollup::visit(b, |x| f(x, b, false))?;
        }
        if let Some(b) = &self.resolved {
            rollup::visit(b, |x| f(x, b, true))?;
        }
        Ok(())
    }
}

/// How many partitions each path answered.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Walked {
    pub from_rollups: usize,
    pub scanned: usize,
}

/// `[start, end)` in ns; widened to whole minutes (the rollups' buckets) when `fast`.
pub(crate) fn window(range: Option<TimeRange>, fast: bool) -> Option<(i64, i64)> {
    range.map(|t| {
        if fast {
            let up = if t.end_ns.rem_euclid(MINUTE_NS) == 0 {
                0
            } else {
                MINUTE_NS
            };
            (
                t.start_ns.div_euclid(MINUTE_NS) * MINUTE_NS,
                t.end_ns.div_euclid(MINUTE_NS) * MINUTE_NS + up,
            )
        } else {
            (t.start_ns, t.end_ns)
        }
    })
}

/// Whether to answer from rollups: `why` says why they cannot, if they cannot; `Fast`
/// then is an error naming it, `Auto` scans.
pub(crate) fn choose_fast(mode: Mode, why: Option<&str>) -> Result<bool> {
    match (mode, why) {
        (Mode::Exact, _) => Ok(false),
        (Mode::Auto, w) => Ok(w.is_none()),
        (Mode::Fast, None) => Ok(true),
        (Mode::Fast, Some(w)) => Err(Error::InvalidRequest(format!(
            "fast mode cannot answer: {w}"
        ))),
    }
}

/// Why rollups cannot answer for a filter expression, if it selects traces.
pub(crate) fn filter_needs_exact(filter: Option<&Arc<crate::CompiledFilter>>) -> Option<String> {
    filter
        .is_some_and(|f| !f.is_all())
        .then(|| "a filter expression selects traces, which rollups do not keep".to_owned())
}

pub(crate) fn in_range(range: Option<(i64, i64)>, t: i64) -> bool {
    range.is_none_or(|(lo, hi)| t >= lo && t < hi)
}

/// Whether row `i` of a scanned batch belongs to a matched trace (every row, without a
/// set).
pub(crate) fn row_filter<'a>(
    batch: &'a RecordBatch,
    matched: Option<&'a HashSet<TraceId>>,
) -> impl Fn(usize) -> bool + 'a {
    let traces = batch
        .column_by_name(c::TRACE_ID)
        .and_then(|a| a.as_fixed_size_binary_opt());
    move |row| {
        matched.is_none_or(|m| {
            traces.is_some_and(|t| {
                <[u8; 16]>::try_from(t.value(row)).is_ok_and(|id| m.contains(&TraceId(id)))
            })
        })
    }
}

/// The traces matching a filter expression.
pub(crate) async fn matching_traces(
    ctx: &SessionContext,
    table: &Arc<SpansTable>,
    f: &Arc<crate::CompiledFilter>,
    range: Option<TimeRange>,
) -> Result<HashSet<TraceId>> {
    let found = crate::search::find(ctx, table, f, range, None).await?;
    Ok(found
        .hits
        .into_iter()
        .filter(|h| h.matched)
        .map(|h| h.trace_id)
        .collect())
}

/// The traces of partition `p` of `snapshot` that match `filter` (retention's keep rules).
pub async fn traces_matching_in_partition(
    ctx: &SessionContext,
    snapshot: &Snapshot,
    p: PartitionKey,
    filter: &Arc<crate::CompiledFilter>,
) -> Result<HashSet<TraceId>> {
    let table = Arc::new(SpansTable::new(Arc::new(Fixed(partition_snapshot(
        snapshot, p,
    )))));
    matching_traces(ctx, &table, filter, None).await
}

/// Calls `f` with every partition that has data in `range`: its rollups when `fast` and
/// they answer for it alone, else its scanned rows.
pub(crate) async fn walk(
    ctx: &SessionContext,
    cache: &RollupCache,
    snapshot: &Snapshot,
    range: Option<(i64, i64)>,
    fast: bool,
    extra_columns: &[&str],
    mut f: impl FnMut(Part) -> Result<()>,
) -> Result<Walked> {
    let mut walked = Walked::default();
    for (p, files) in partitions(snapshot, range) {
        let rollups = match fast.then(|| rollups_answer(snapshot, p, &files)).flatten() {
            Some(shared) => match read_rollups(cache, snapshot, &files) {
                Some(r) => cached_correction(cache, snapshot, p, &shared)?.map(|c| (r, c)),
                None => None,
            },
            None => None,
        };
        if let Some((r, c)) = rollups {
            f(Part::Rollups(r, c))?;
            walked.from_rollups += 1;
        } else if let Some(batch) = scan_partition(ctx, snapshot, p, extra_columns).await? {
            f(Part::Rows(batch))?;
            walked.scanned += 1;
        }
    }
    Ok(walked)
}

/// Partitions with data in `range` (files by their start-time bounds; memtable rows
/// always), with those files.
fn partitions(s: &Snapshot, range: Option<(i64, i64)>) -> BTreeMap<PartitionKey, Vec<FileMeta>> {
    let mut out: BTreeMap<PartitionKey, Vec<FileMeta>> = BTreeMap::new();
    for f in s.files.iter() {
        if range.is_none_or(|(lo, hi)| f.max_start_ns >= lo && f.min_start_ns < hi) {
            out.entry(f.partition).or_default().push(f.clone());
        }
    }
    for m in &s.memory {
        out.entry(m.partition).or_default();
    }
    out
}

/// Whether the rollups of a partition's files answer for it, with the traces split
/// across its files to correct for: no rows in memory, every file rolled up, and every
/// split trace known. `None`: the partition is scanned.
fn rollups_answer(s: &Snapshot, p: PartitionKey, files: &[FileMeta]) -> Option<Vec<TraceId>> {
    let in_memory = s
        .memory
        .iter()
        .any(|m| m.partition == p && m.batches.iter().any(|b| b.num_rows() > 0));
    if in_memory || files.is_empty() {
        return None;
    }
    // every file of the partition, not only those in range: a split trace may have
    // its caller in one and its callee in another
    let mut shared = Vec::new();
    for f in s.files.iter().filter(|f| f.partition == p) {
        if f.rollup_version != rollup::ROLLUP_VERSION {
            return None;
        }
        match &f.shared_traces {
            Some(list) => {
                for t in list {
                    shared.push(TraceId::parse(t)?);
                }
            }
            // legacy or too many: unknown
            None if f.shares_traces || f.shadows => return None,
            None => {}
        }
    }
    shared.sort_unstable();
    shared.dedup();
    Some(shared)
}

/// The columns [`rollup::visit`] reads.
const VISIT_COLUMNS: [&str; 16] = [
    c::TRACE_ID,
    c::ID,
    c::PARENT_ID,
    c::KIND,
    c::START_NS,
    c::END_NS,
    c::IN_PROGRESS,
    c::ERROR,
    c::FAULT,
    c::THROTTLE,
    c::NAME,
    c::ORIGIN,
    c::NAMESPACE,
    c::ACCOUNT_ID,
    c::SQL,
    c::AWS,
];

/// [`correction`], computed once per partition and set of files (they never change).
fn cached_correction(
    cache: &RollupCache,
    s: &Snapshot,
    p: PartitionKey,
    shared: &[TraceId],
) -> Result<Option<Arc<Correction>>> {
    let key = (p, s.partition_file_ids(p));
    if let Some(c) = cache.correction(&key) {
        return Ok(Some(c));
    }
    let Some(c) = correction(s, p, shared)? else {
        return Ok(None);
    };
    let c = Arc::new(c);
    cache.keep_correction(key, Arc::clone(&c));
    Ok(Some(c))
}

/// The rows of the split traces `shared`, per file and resolved. `None` when a file's
/// index cannot locate them (the partition is scanned instead).
fn correction(s: &Snapshot, p: PartitionKey, shared: &[TraceId]) -> Result<Option<Correction>> {
    if shared.is_empty() {
        return Ok(Some(Correction::default()));
    }
    let mut written = Vec::new();
    for f in s.files.iter().filter(|f| f.partition == p) {
        let Ok(index) = tracelake_storage::index::Index::open(&s.root.join(&f.path), f.rows) else {
            return Ok(None);
        };
        let ranges: Vec<std::ops::Range<u32>> =
            shared.iter().filter_map(|t| index.trace_rows(t)).collect();
        if ranges.is_empty() {
            continue;
        }
        let batches =
            tracelake_storage::datafile::read_columns_of_rows(&s.root, f, &VISIT_COLUMNS, &ranges)?;
        let Some(first) = batches.first() else {
            continue;
        };
        let b = concat_batches(&first.schema(), &batches).map_err(DataFusionError::from)?;
        written.push(tracelake_storage::datafile::sort_rows(&b)?);
    }
    let table = SpansTable::new(Arc::new(Fixed(partition_snapshot(s, p))));
    let resolved = match table.read_traces(shared)? {
        Some(batches) => {
            let b = concat_batches(&table.schema(), &batches).map_err(DataFusionError::from)?;
            Some(tracelake_storage::datafile::sort_rows(&b)?)
        }
        None => return Ok(None),
    };
    Ok(Some(Correction { written, resolved }))
}

fn partition_snapshot(s: &Snapshot, p: PartitionKey) -> Snapshot {
    Snapshot {
        root: s.root.clone(),
        files: Arc::new(
            s.files
                .iter()
                .filter(|f| f.partition == p)
                .cloned()
                .collect(),
        ),
        memory: s
            .memory
            .iter()
            .filter(|m| m.partition == p)
            .cloned()
            .collect(),
    }
}

/// The rollup rows of a partition's files; `None` (and a warning) when one cannot be
/// read: the partition is scanned instead, slower but never wrong.
fn read_rollups(
    cache: &RollupCache,
    s: &Snapshot,
    files: &[FileMeta],
) -> Option<Vec<Arc<Vec<Row>>>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        match cache.get(&s.root, f) {
            Ok(Some((_, rows))) => out.push(rows),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(file = %f.path, error = %e, "cannot read rollups; scanning spans");
                return None;
            }
        }
    }
    Some(out)
}

/// A fixed snapshot: one partition's files and memtable rows.
#[derive(Debug)]
struct Fixed(Snapshot);

impl SnapshotSource for Fixed {
    fn snapshot(&self) -> tracelake_storage::Result<Snapshot> {
        Ok(self.0.clone())
    }
}

/// Every row of one partition (upserts resolved) with the columns [`rollup::visit`]
/// reads and `extra`, sorted by trace id; `None` when it has none.
async fn scan_partition(
    ctx: &SessionContext,
    s: &Snapshot,
    p: PartitionKey,
    extra: &[&str],
) -> Result<Option<RecordBatch>> {
    let table = Arc::new(SpansTable::new(Arc::new(Fixed(partition_snapshot(s, p)))));
    let source = provider_as_source(table as Arc<dyn TableProvider>);
    // The wide JSON columns only as far as inferred types need them: whether a row has
    // a `sql` block, and `aws` of `aws` rows (copying them made up most of the scan).
    let narrow = |n: &str| match n {
        c::SQL => Ok(col(c::SQL).is_not_null().alias(c::SQL)),
        c::AWS => Ok(when(col(c::NAMESPACE).eq(lit("aws")), col(c::AWS))
            .end()?
            .alias(c::AWS)),
        n => Ok(col(n)),
    };
    let exprs = VISIT_COLUMNS
        .iter()
        .chain(extra)
        .map(|n| narrow(n))
        .collect::<Result<Vec<_>>>()?;
    let plan = LogicalPlanBuilder::scan("spans", source, None)?
        .project(exprs)?
        .build()?;
    let df = ctx.execute_logical_plan(plan).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let batch = concat_batches(&schema, &batches).map_err(DataFusionError::from)?;
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    Ok(Some(tracelake_storage::datafile::sort_rows(&batch)?))
}
