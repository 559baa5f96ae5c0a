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
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
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
use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use tracelake_storage::{PartitionKey, Snapshot, datafile, schema};

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
type FileKeep = Arc<HashMap<u64, Vec<bool>>>;

/// The `spans` table.
#[derive(Debug)]
pub struct SpansTable {
    source: Arc<dyn SnapshotSource>,
    schema: SchemaRef,
    /// Upsert resolutions of partitions that have files only, by (partition, file ids):
    /// files never change, so the masks hold until the file set does.
    resolved: Mutex<HashMap<(PartitionKey, Vec<u64>), FileKeep>>,
}

/// Cached resolutions kept at most (each is a bit per row of its partition).
const RESOLUTION_CACHE: usize = 64;

impl SpansTable {
    pub fn new(source: Arc<dyn SnapshotSource>) -> Self {
        SpansTable {
            source,
            schema: schema::spans(),
            resolved: Mutex::new(HashMap::new()),
        }
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
            return Ok((Arc::new(r.file_keep), r.memory));
        }
        let mut ids: Vec<u64> = snap
            .files
            .iter()
            .filter(|f| f.partition == p)
            .map(|f| f.id)
            .collect();
        ids.sort_unstable();
        let key = (p, ids);
        if let Some(k) = self.cache().get(&key) {
            return Ok((Arc::clone(k), Vec::new()));
        }
        let keep: FileKeep = Arc::new(snap.resolve(p)?.file_keep);
        let mut c = self.cache();
        if c.len() >= RESOLUTION_CACHE {
            c.clear();
        }
        c.insert(key, Arc::clone(&keep));
        Ok((keep, Vec::new()))
    }
}

fn storage_err(e: tracelake_storage::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Keep-mask over a file's rows -> access plan with one selection per row group.
fn access_plan(keep: &[bool], row_groups: &[usize]) -> ParquetAccessPlan {
    let mut groups = Vec::with_capacity(row_groups.len());
    let mut off = 0;
    for &n in row_groups {
        let mask = &keep[off.min(keep.len())..(off + n).min(keep.len())];
        off += n;
        if mask.iter().all(|k| *k) {
            groups.push(RowGroupAccess::Scan);
        } else if !mask.iter().any(|k| *k) {
            groups.push(RowGroupAccess::Skip);
        } else {
            let mut selectors: Vec<RowSelector> = Vec::new();
            for &k in mask {
                match selectors.last_mut() {
                    Some(s) if s.skip != k => s.row_count += 1,
                    _ => selectors.push(if k {
                        RowSelector::select(1)
                    } else {
                        RowSelector::skip(1)
                    }),
                }
            }
            groups.push(RowGroupAccess::Selection(RowSelection::from(selectors)));
        }
    }
    ParquetAccessPlan::new(groups)
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
        let snap = self.source.snapshot().map_err(storage_err)?;
        let mut resolutions: HashMap<PartitionKey, (FileKeep, Vec<RecordBatch>)> = HashMap::new();
        for p in snap.partitions_to_resolve() {
            resolutions.insert(p, self.resolve(&snap, p).map_err(storage_err)?);
        }

        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !snap.files.is_empty() {
            let mut files = Vec::with_capacity(snap.files.len());
            for f in snap.files.iter() {
                let path = snap.root.join(&f.path);
                let mut pf = PartitionedFile::new(path.to_string_lossy().into_owned(), f.bytes);
                if let Some(keep) = resolutions.get(&f.partition).and_then(|r| r.0.get(&f.id)) {
                    let groups = datafile::row_group_sizes(&snap.root, f).map_err(storage_err)?;
                    pf = pf.with_extension(access_plan(keep, &groups));
                }
                files.push(pf);
            }
            let target = state.config().target_partitions().max(1);
            let per = files.len().div_ceil(target);
            let groups: Vec<FileGroup> = files
                .chunks(per.max(1))
                .map(|c| FileGroup::new(c.to_vec()))
                .collect();
            let mut source =
                ParquetSource::new(Arc::clone(&self.schema)).with_enable_page_index(true);
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

        let mut memory: Vec<RecordBatch> = Vec::new();
        for m in &snap.memory {
            if !resolutions.contains_key(&m.partition) {
                memory.extend(m.batches.iter().cloned());
            }
        }
        for (_, live) in resolutions.into_values() {
            memory.extend(live);
        }
        memory.retain(|b| b.num_rows() > 0);
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
