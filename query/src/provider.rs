//! `SpansTable`: the `spans` table as a DataFusion `TableProvider`.
//!
//! Each scan takes a fresh [`Snapshot`] of the store. Files become one Parquet scan
//! (`DataSourceExec` with `ParquetSource`, page index on, the query's filters pushed
//! down as a pruning predicate); memtable rows become an in-memory scan; a `UnionExec`
//! joins them. In partitions where a `(trace_id, id)` may exist twice, the losing rows
//! are removed: a `ParquetAccessPlan` with a `RowSelection` per row group for files,
//! and filtered batches for the memtable. Pushdown is reported `Inexact`, so DataFusion
//! still applies every filter above the scan.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, RowSelection, RowSelector};
use tracelake_storage::{PartitionKey, Snapshot, TraceId, datafile, schema};

use crate::prune::{FileBounds, IndexCache, rows_of_traces};

/// Where a table gets its snapshots from (the store, in practice).
pub trait SnapshotSource: Send + Sync + fmt::Debug {
    fn snapshot(&self) -> tracelake_storage::Result<Snapshot>;
}

impl SnapshotSource for tracelake_storage::Store {
    fn snapshot(&self) -> tracelake_storage::Result<Snapshot> {
        tracelake_storage::Store::snapshot(self)
    }
}

/// Keep-masks of a partition's files, by file id.
type FileKeep = Arc<HashMap<u64, Vec<u32>>>;

/// The `spans` table.
#[derive(Debug)]
pub struct SpansTable {
    source: Arc<dyn SnapshotSource>,
    schema: SchemaRef,
    /// Upsert resolutions of partitions that have files only, by (partition, file ids):
    /// files never change, so the masks hold until the file set does.
    resolved: Mutex<HashMap<(PartitionKey, Vec<u64>), FileKeep>>,
    /// Open index sidecars.
    pub(crate) indexes: IndexCache,
    /// Use the sidecars (off: every query scans, for differential tests).
    use_indexes: bool,
    /// Row groups planned for reading and skipped, since the table was made.
    counters: ScanCounters,
    /// Row-group sizes by file id (files never change).
    row_groups: Mutex<HashMap<u64, Arc<Vec<usize>>>>,
    /// Footers and page indexes of files read directly ([`SpansTable::read_traces`]).
    readers: Mutex<HashMap<u64, ArrowReaderMetadata>>,
}

/// How much of the data files scans planned to read (cumulative).
#[derive(Debug, Default)]
pub struct ScanCounters {
    pub row_groups_read: std::sync::atomic::AtomicU64,
    pub row_groups_skipped: std::sync::atomic::AtomicU64,
}

impl ScanCounters {
    /// `(row groups read, row groups skipped)` so far.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.row_groups_read.load(Relaxed),
            self.row_groups_skipped.load(Relaxed),
        )
    }

    fn add(&self, read: usize, skipped: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.row_groups_read.fetch_add(read as u64, Relaxed);
        self.row_groups_skipped.fetch_add(skipped as u64, Relaxed);
    }
}

/// Cached resolutions kept at most (each is a bit per row of its partition).
const RESOLUTION_CACHE: usize = 64;

impl SpansTable {
    pub fn new(source: Arc<dyn SnapshotSource>) -> Self {
        SpansTable {
            source,
            schema: schema::spans(),
            resolved: Mutex::new(HashMap::new()),
            indexes: IndexCache::default(),
            use_indexes: true,
            counters: ScanCounters::default(),
            row_groups: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
        }
    }

    /// Row-group sizes of a data file, read once.
    fn row_group_sizes(
        &self,
        root: &std::path::Path,
        f: &tracelake_storage::manifest::FileMeta,
    ) -> tracelake_storage::Result<Arc<Vec<usize>>> {
        let lock = || {
            self.row_groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(g) = lock().get(&f.id) {
            return Ok(Arc::clone(g));
        }
        let g = Arc::new(datafile::row_group_sizes(root, f)?);
        lock().insert(f.id, Arc::clone(&g));
        Ok(g)
    }

    /// Row groups scans planned to read and to skip, since the table was made.
    pub fn scan_counters(&self) -> (u64, u64) {
        self.counters.get()
    }

    /// A table that never reads index sidecars (every query scans): the reference side
    /// of differential tests, and a way around a suspected index problem.
    pub fn without_indexes(source: Arc<dyn SnapshotSource>) -> Self {
        SpansTable {
            use_indexes: false,
            ..SpansTable::new(source)
        }
    }

    pub(crate) fn uses_indexes(&self) -> bool {
        self.use_indexes
    }

    /// A snapshot of the store.
    pub(crate) fn snapshot(&self) -> tracelake_storage::Result<Snapshot> {
        self.source.snapshot()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(PartitionKey, Vec<u64>), FileKeep>> {
        self.resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves upserts in a partition: the files' keep-masks and the memtable's live rows.
    /// A partition without memtable rows is resolved once per file set.
    fn resolve(
        &self,
        snap: &Snapshot,
        p: PartitionKey,
    ) -> tracelake_storage::Result<(FileKeep, Vec<RecordBatch>)> {
        let in_memory = snap
            .memory
            .iter()
            .any(|m| m.partition == p && m.batches.iter().any(|b| b.num_rows() > 0));
        if in_memory {
            let r = snap.resolve(p)?;
            return Ok((Arc::new(r.file_dropped), r.memory));
        }
        let key = (p, snap.partition_file_ids(p));
        if let Some(k) = self.cache().get(&key) {
            return Ok((Arc::clone(k), Vec::new()));
        }
        let index = |f: &tracelake_storage::manifest::FileMeta| {
            self.use_indexes
                .then(|| self.indexes.get(&snap.root, f))
                .flatten()
        };
        let keep: FileKeep = Arc::new(snap.resolve_with(p, &index)?.file_dropped);
        let mut c = self.cache();
        if c.len() >= RESOLUTION_CACHE {
            c.clear();
        }
        c.insert(key, Arc::clone(&keep));
        Ok((keep, Vec::new()))
    }
}

/// Trace ids a scan is limited to by a `trace_id = x` or `trace_id IN (...)` filter.
fn trace_filter(filters: &[Expr]) -> Option<Vec<TraceId>> {
    use datafusion::logical_expr::{BinaryExpr, Operator, expr::InList};
    let literal = crate::prune::trace_literal;
    let is_trace_id = |e: &Expr| matches!(e, Expr::Column(c) if c.name == schema::col::TRACE_ID);
    for f in filters {
        match f {
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) if is_trace_id(expr) => {
                let ids: Option<Vec<TraceId>> = list.iter().map(literal).collect();
                if ids.is_some() {
                    return ids;
                }
            }
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) if is_trace_id(left) => {
                if let Some(t) = literal(right) {
                    return Some(vec![t]);
                }
            }
            _ => {}
        }
    }
    None
}

fn storage_err(e: tracelake_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// The rows of a file to read: the `wanted` row ranges (ascending and disjoint; `None`:
/// every row) minus the `dropped` rows (ascending) -> an access plan with one entry per
/// row group, and the number of row groups it reads. Linear in ranges, dropped rows and
/// row groups, never in rows.
fn access_plan(
    wanted: Option<&[Range<u32>]>,
    dropped: &[u32],
    row_groups: &[usize],
) -> (ParquetAccessPlan, usize) {
    let mut groups = Vec::with_capacity(row_groups.len());
    let (mut wi, mut di, mut start) = (0usize, 0usize, 0u32);
    for &n in row_groups {
        let end = start.saturating_add(n as u32);
        let mut ranges: Vec<Range<u32>> = match wanted {
            None => std::iter::once(start..end).collect(),
            Some(w) => {
                while wi < w.len() && w[wi].end <= start {
                    wi += 1;
                }
                w[wi..]
                    .iter()
                    .take_while(|r| r.start < end)
                    .map(|r| r.start.max(start)..r.end.min(end))
                    .collect()
            }
        };
        while di < dropped.len() && dropped[di] < start {
            di += 1;
        }
        let gone = &dropped[di..di + dropped[di..].partition_point(|&d| d < end)];
        if !gone.is_empty() {
            ranges = without_rows(ranges, gone);
        }
        groups.push(if ranges.is_empty() {
            RowGroupAccess::Skip
        } else if ranges.len() == 1 && ranges[0] == (start..end) {
            RowGroupAccess::Scan
        } else {
            let mut selectors = Vec::with_capacity(2 * ranges.len() + 1);
            let mut at = start;
            for r in &ranges {
                if r.start > at {
                    selectors.push(RowSelector::skip((r.start - at) as usize));
                }
                selectors.push(RowSelector::select(r.len()));
                at = r.end;
            }
            if end > at {
                selectors.push(RowSelector::skip((end - at) as usize));
            }
            RowGroupAccess::Selection(RowSelection::from(selectors))
        });
        start = end;
    }
    let read = groups
        .iter()
        .filter(|g| !matches!(g, RowGroupAccess::Skip))
        .count();
    (ParquetAccessPlan::new(groups), read)
}

/// Ascending disjoint `ranges` with the ascending rows `gone` taken out.
fn without_rows(ranges: Vec<Range<u32>>, gone: &[u32]) -> Vec<Range<u32>> {
    let mut out = Vec::with_capacity(ranges.len() + gone.len());
    let mut g = gone.iter().peekable();
    for r in ranges {
        let mut at = r.start;
        while let Some(&&d) = g.peek() {
            if d >= r.end {
                break;
            }
            g.next();
            if d >= at {
                if d > at {
                    out.push(at..d);
                }
                at = d + 1;
            }
        }
        if at < r.end {
            out.push(at..r.end);
        }
    }
    out
}

#[async_trait]
impl TableProvider for SpansTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let traces = if self.use_indexes {
            trace_filter(filters).map(|mut t| {
                t.sort_unstable();
                t
            })
        } else {
            None
        };
        let snap = self.source.snapshot().map_err(storage_err)?;
        self.scan_traces(state, projection, filters, limit, traces.as_deref(), snap)
    }
}

/// The plan's Parquet reader factory, holding the snapshot's file list for as long as
/// the plan lives: the store deletes files that compaction or retention replaced only
/// once no snapshot holds them, and a plan opens its files when it runs.
#[derive(Debug)]
struct Holding {
    inner: CachedParquetFileReaderFactory,
    _files: Arc<Vec<tracelake_storage::manifest::FileMeta>>,
}

impl datafusion::datasource::physical_plan::ParquetFileReaderFactory for Holding {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &datafusion::physical_plan::metrics::ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn parquet::arrow::async_reader::AsyncFileReader + Send>> {
        self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )
    }
}

impl SpansTable {
    /// Upsert resolutions of the partitions that need one.
    fn resolutions(
        &self,
        snap: &Snapshot,
    ) -> DfResult<HashMap<PartitionKey, (FileKeep, Vec<RecordBatch>)>> {
        let mut out = HashMap::new();
        for p in snap.partitions_to_resolve() {
            out.insert(p, self.resolve(snap, p).map_err(storage_err)?);
        }
        Ok(out)
    }

    /// Every live row of `traces`, read without a query plan: each file's sidecar gives
    /// the traces' row ranges, and only the pages holding them are read (with footers and
    /// page indexes read once per file). `None` when the sidecars are off or one is
    /// unusable: the caller then plans a scan.
    pub(crate) fn read_traces(&self, traces: &[TraceId]) -> DfResult<Option<Vec<RecordBatch>>> {
        if !self.use_indexes {
            return Ok(None);
        }
        let snap = self.source.snapshot().map_err(storage_err)?;
        let mut indexes = Vec::with_capacity(snap.files.len());
        for f in snap.files.iter() {
            match self.indexes.get(&snap.root, f) {
                Some(i) => indexes.push(i),
                None => return Ok(None),
            }
        }
        let resolutions = self.resolutions(&snap)?;
        let mut traces = traces.to_vec();
        traces.sort_unstable();
        let mut out = Vec::new();
        for (f, index) in snap.files.iter().zip(&indexes) {
            let wanted = rows_of_traces(index, &traces);
            if wanted.is_empty() {
                let groups = (f.rows as usize).div_ceil(datafile::ROW_GROUP_ROWS);
                self.counters.add(0, groups);
                continue;
            }
            let dropped = resolutions
                .get(&f.partition)
                .and_then(|r| r.0.get(&f.id))
                .map_or(&[][..], |d| d.as_slice());
            let sizes = self.row_group_sizes(&snap.root, f).map_err(storage_err)?;
            let (plan, read) = access_plan(Some(&wanted), dropped, &sizes);
            self.counters.add(read, sizes.len() - read);
            let mut groups = Vec::new();
            let mut selectors = Vec::new();
            for (g, (access, &n)) in plan.inner().iter().zip(sizes.iter()).enumerate() {
                match access {
                    RowGroupAccess::Skip => continue,
                    RowGroupAccess::Scan => selectors.push(RowSelector::select(n)),
                    RowGroupAccess::Selection(sel) => selectors.extend(sel.iter().copied()),
                }
                groups.push(g);
            }
            if groups.is_empty() {
                continue;
            }
            let metadata = self.reader_metadata(&snap.root, f)?;
            let batches = datafile::read_rows(
                &snap.root,
                f,
                &metadata,
                groups,
                RowSelection::from(selectors),
            )
            .map_err(storage_err)?;
            for b in batches {
                out.push(conform(b, &self.schema)?);
            }
        }
        let memory = live_memory(&snap, resolutions);
        out.extend(memory_rows_of(memory, &traces)?);
        Ok(Some(out))
    }

    fn reader_metadata(
        &self,
        root: &std::path::Path,
        f: &tracelake_storage::manifest::FileMeta,
    ) -> DfResult<ArrowReaderMetadata> {
        let lock = || {
            self.readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(m) = lock().get(&f.id) {
            return Ok(m.clone());
        }
        let m = datafile::reader_metadata(root, f).map_err(storage_err)?;
        lock().insert(f.id, m.clone());
        Ok(m)
    }

    /// The scan, limited to the rows of `traces` (ascending) when given, in files with a
    /// sidecar and in the memtable.
    fn scan_traces(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        traces: Option<&[TraceId]>,
        snap: Snapshot,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if self.use_indexes {
            let live: std::collections::HashSet<u64> = snap.files.iter().map(|f| f.id).collect();
            self.indexes.retain(&live);
            self.row_groups
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|id, _| live.contains(id));
            self.readers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .retain(|id, _| live.contains(id));
        }
        let resolutions = self.resolutions(&snap)?;
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        let mut files = Vec::with_capacity(snap.files.len());
        // without indexes a scan reads every file: the reference pruning is checked against
        let bounds = FileBounds::of(if self.use_indexes { filters } else { &[] });
        {
            for f in snap.files.iter() {
                let all_groups = (f.rows as usize).div_ceil(datafile::ROW_GROUP_ROWS);
                if !bounds.admit(f) {
                    // its manifest bounds exclude it: never opened
                    self.counters.add(0, all_groups);
                    continue;
                }
                let path = snap.root.join(&f.path);
                let mut pf = PartitionedFile::new(path.to_string_lossy().into_owned(), f.bytes);
                let upsert = resolutions.get(&f.partition).and_then(|r| r.0.get(&f.id));
                // rows of the traces asked for, from the sidecar's trace directory
                let wanted = traces
                    .and_then(|t| Some(rows_of_traces(&*self.indexes.get(&snap.root, f)?, t)));
                if wanted.as_ref().is_some_and(|w| w.is_empty()) {
                    self.counters.add(0, all_groups);
                    continue; // nothing of this file is wanted
                }
                if wanted.is_some() || upsert.is_some() {
                    let groups = self.row_group_sizes(&snap.root, f).map_err(storage_err)?;
                    let dropped = upsert.map_or(&[][..], |u| u.as_slice());
                    let (plan, read) = access_plan(wanted.as_deref(), dropped, &groups);
                    if read == 0 {
                        self.counters.add(0, groups.len());
                        continue;
                    }
                    self.counters.add(read, groups.len() - read);
                    pf = pf.with_extension(plan);
                } else {
                    self.counters.add(all_groups, 0);
                }
                files.push(pf);
            }
        }
        if !files.is_empty() {
            let target = state.config().target_partitions().max(1);
            let per = files.len().div_ceil(target);
            let groups: Vec<FileGroup> = files
                .chunks(per.max(1))
                .map(|c| FileGroup::new(c.to_vec()))
                .collect();
            // footers and page indexes are cached across queries (files never change)
            let runtime = state.runtime_env();
            let store = runtime.object_store(ObjectStoreUrl::local_filesystem())?;
            let reader = Holding {
                inner: CachedParquetFileReaderFactory::new(
                    store,
                    runtime.cache_manager.get_file_metadata_cache(),
                ),
                _files: Arc::clone(&snap.files),
            };
            let parquet = &state.config_options().execution.parquet;
            let mut source = ParquetSource::new(Arc::clone(&self.schema))
                .with_enable_page_index(true)
                .with_pushdown_filters(parquet.pushdown_filters)
                .with_reorder_filters(parquet.reorder_filters)
                .with_parquet_file_reader_factory(Arc::new(reader));
            if let Some(pred) = conjunction(filters.iter().cloned()) {
                let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
                let physical = state.create_physical_expr(pred, &df_schema)?;
                source = source.with_predicate(physical);
            }
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_file_groups(groups)
                    .with_projection_indices(projection.cloned())?
                    .with_limit(limit)
                    .build();
            inputs.push(DataSourceExec::from_data_source(config));
        }

        let mut memory = live_memory(&snap, resolutions);
        if let Some(t) = traces {
            memory = memory_rows_of(memory, t)?;
        }
        if !memory.is_empty() {
            let mem = MemorySourceConfig::try_new(
                &[memory],
                Arc::clone(&self.schema),
                projection.cloned(),
            )?
            .with_limit(limit);
            inputs.push(DataSourceExec::from_data_source(mem));
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

/// The snapshot's memtable rows, with the losers of resolved partitions left out.
fn live_memory(
    snap: &Snapshot,
    resolutions: HashMap<PartitionKey, (FileKeep, Vec<RecordBatch>)>,
) -> Vec<RecordBatch> {
    let mut memory: Vec<RecordBatch> = Vec::new();
    for m in &snap.memory {
        if !resolutions.contains_key(&m.partition) {
            memory.extend(m.batches.iter().cloned());
        }
    }
    for (_, live) in resolutions.into_values() {
        memory.extend(live);
    }
    memory
}

/// A batch read from a file, with the table's schema (a file written by an older
/// version may differ in nullability or metadata only).
fn conform(b: RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    if b.schema().fields() == schema.fields() {
        return Ok(b.with_schema(Arc::clone(schema))?);
    }
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let c = b.column_by_name(f.name()).ok_or_else(|| {
            DataFusionError::Execution(format!("data file has no column {}", f.name()))
        })?;
        columns.push(arrow::compute::cast(c, f.data_type())?);
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The rows of memtable batches that belong to `traces`; empty batches dropped.
fn memory_rows_of(memory: Vec<RecordBatch>, traces: &[TraceId]) -> DfResult<Vec<RecordBatch>> {
    let mut sorted = traces.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::with_capacity(memory.len());
    for b in &memory {
        let b = rows_of(b, &sorted)?;
        if b.num_rows() > 0 {
            out.push(b);
        }
    }
    Ok(out)
}

/// The rows of a memtable batch that belong to `traces` (sorted).
fn rows_of(b: &RecordBatch, traces: &[TraceId]) -> DfResult<RecordBatch> {
    let Some(ids) = b
        .column_by_name(schema::col::TRACE_ID)
        .and_then(|c| c.as_fixed_size_binary_opt())
    else {
        return Ok(b.clone());
    };
    let mask: BooleanArray = (0..ids.len())
        .map(|i| {
            Some(
                TraceId::from_slice(ids.value(i)).is_some_and(|t| traces.binary_search(&t).is_ok()),
            )
        })
        .collect();
    Ok(filter_record_batch(b, &mask)?)
}

/// The `spans` table of one snapshot, limited to some traces (and every memtable row)
/// or whole: the scans of a filter whose candidate traces were computed on that
/// snapshot, and of the prefilter that computed them.
#[derive(Debug)]
pub(crate) struct RestrictedSpans {
    pub(crate) table: Arc<SpansTable>,
    /// `None`: every trace of the snapshot.
    pub(crate) traces: Option<Arc<Vec<TraceId>>>,
    /// The snapshot the candidates were computed on: the scan must read the same one,
    /// or a row arriving in between could make a partial trace look complete.
    pub(crate) snapshot: Snapshot,
}

#[async_trait]
impl TableProvider for RestrictedSpans {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.table.scan_traces(
            state,
            projection,
            filters,
            limit,
            self.traces.as_deref().map(Vec::as_slice),
            self.snapshot.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The rows an access plan reads, expanded back to one flag per row.
    fn expand(plan: &ParquetAccessPlan, row_groups: &[usize]) -> Vec<bool> {
        let mut out = Vec::new();
        for (g, &n) in plan.inner().iter().zip(row_groups) {
            match g {
                RowGroupAccess::Skip => out.extend(std::iter::repeat_n(false, n)),
                RowGroupAccess::Scan => out.extend(std::iter::repeat_n(true, n)),
                RowGroupAccess::Selection(sel) => {
                    let before = out.len();
                    for s in sel.iter() {
                        out.extend(std::iter::repeat_n(!s.skip, s.row_count));
                    }
                    assert_eq!(out.len() - before, n, "a selection covers its row group");
                }
            }
        }
        out
    }

    fn ranges_of(mask: &[bool]) -> Vec<Range<u32>> {
        let mut out: Vec<Range<u32>> = Vec::new();
        for (i, &k) in mask.iter().enumerate() {
            let i = i as u32;
            match out.last_mut() {
                Some(r) if k && r.end == i => r.end = i + 1,
                _ if k => out.push(i..i + 1),
                _ => {}
            }
        }
        out
    }

    proptest! {
        /// The sparse plan reads exactly the rows a brute-force mask keeps.
        #[test]
        fn access_plan_matches_row_masks(
            sizes in prop::collection::vec(1usize..40, 1..6),
            seed in any::<u64>(),
            all_wanted in any::<bool>(),
        ) {
            let total: usize = sizes.iter().sum();
            let mut x = seed | 1;
            let mut coin = |p: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % 100 < p
            };
            let wanted: Vec<bool> = (0..total).map(|_| all_wanted || coin(40)).collect();
            let dropped_mask: Vec<bool> = (0..total).map(|_| coin(15)).collect();
            let dropped: Vec<u32> = (0..total as u32).filter(|&r| dropped_mask[r as usize]).collect();
            let ranges = ranges_of(&wanted);
            let w = (!all_wanted).then_some(ranges.as_slice());
            let (plan, read) = access_plan(w, &dropped, &sizes);
            let got = expand(&plan, &sizes);
            let expected: Vec<bool> = (0..total).map(|r| wanted[r] && !dropped_mask[r]).collect();
            prop_assert_eq!(&got, &expected);
            let mut off = 0;
            let mut groups_read = 0;
            for &n in &sizes {
                groups_read += usize::from(expected[off..off + n].iter().any(|k| *k));
                off += n;
            }
            prop_assert_eq!(read, groups_read);
        }
    }
}
