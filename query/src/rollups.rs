//! The `rollups` SQL table and the sketch functions that read it.
//!
//! - [`RollupsTable`]: every committed data file's rollup rows
//!   ([`tracelake_storage::rollup`]); rows still in the memtable have none until
//!   their flush.
//! - `sketch_merge(sketch)`: aggregate that merges sketches; `sketch_quantile(sketch,
//!   q)`, `sketch_count(sketch)`: read one. For example p99 per service and hour:
//!
//! ```sql
//! SELECT name, minute_ns / 3600000000000 AS hour,
//!        sketch_quantile(sketch_merge(sketch), 0.99) AS p99
//! FROM rollups WHERE entity = 'node' GROUP BY 1, 2
//! ```
//!
//! [`RollupCache`] keeps decoded rollups of recently read files (they never change), for
//! the table and for fast percentiles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Float64Builder, RecordBatch, UInt64Builder,
};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, ColumnarValue, Expr, ScalarUDF, Volatility, create_udaf, create_udf,
};
use datafusion::physical_plan::ExecutionPlan;
use tracelake_storage::PartitionKey;
use tracelake_storage::manifest::FileMeta;
use tracelake_storage::rollup::{self, Row};
use tracelake_storage::sketch::Sketch;

use crate::provider::SnapshotSource;
use crate::source::Correction;

/// Files whose decoded rollups are kept.
const CACHED_FILES: usize = 4096;

/// A file's rollups: as read (for SQL) and decoded (for percentiles and graphs).
pub type FileRollups = (RecordBatch, Arc<Vec<Row>>);

/// A partition and its file ids (sorted): the key of a split-trace correction.
type PartitionFiles = (PartitionKey, Vec<u64>);

/// Decoded rollups by file id, and the corrections of split traces by partition.
#[derive(Debug, Default)]
pub struct RollupCache {
    files: Mutex<HashMap<u64, FileRollups>>,
    corrections: Mutex<HashMap<PartitionFiles, Arc<Correction>>>,
}

impl RollupCache {
    pub(crate) fn correction(&self, key: &PartitionFiles) -> Option<Arc<Correction>> {
        let c = self
            .corrections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.get(key).cloned()
    }

    pub(crate) fn keep_correction(&self, key: PartitionFiles, c: Arc<Correction>) {
        let mut m = self
            .corrections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if m.len() >= CACHED_FILES {
            m.clear();
        }
        m.insert(key, c);
    }

    /// A file's rollup batch and decoded rows; `None` when it has no rollups.
    pub fn get(
        &self,
        root: &std::path::Path,
        f: &FileMeta,
    ) -> tracelake_storage::Result<Option<FileRollups>> {
        let lock = || self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(hit) = lock().get(&f.id) {
            return Ok(Some(hit.clone()));
        }
        let Some(batch) = rollup::read(root, f)? else {
            return Ok(None);
        };
        let rows = Arc::new(rollup::rows(&batch)?);
        let mut c = lock();
        if c.len() >= CACHED_FILES {
            c.clear();
        }
        c.insert(f.id, (batch.clone(), Arc::clone(&rows)));
        Ok(Some((batch, rows)))
    }
}

/// The `rollups` table over a store's snapshots.
#[derive(Debug)]
pub struct RollupsTable {
    source: Arc<dyn SnapshotSource>,
    cache: Arc<RollupCache>,
}

impl RollupsTable {
    pub fn new(source: Arc<dyn SnapshotSource>, cache: Arc<RollupCache>) -> Self {
        RollupsTable { source, cache }
    }
}

#[async_trait]
impl TableProvider for RollupsTable {
    fn schema(&self) -> SchemaRef {
        rollup::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let storage = |e: tracelake_storage::Error| DataFusionError::External(Box::new(e));
        let snap = self.source.snapshot().map_err(storage)?;
        let mut batches = Vec::new();
        for f in snap.files.iter() {
            match self.cache.get(&snap.root, f) {
                Ok(Some((b, _))) => batches.push(b),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %f.path, error = %e, "rollups unreadable; left out");
                }
            }
        }
        let mem = MemorySourceConfig::try_new(&[batches], rollup::schema(), projection.cloned())?;
        Ok(DataSourceExec::from_data_source(mem))
    }
}

fn sketches(a: &ArrayRef) -> DfResult<&BinaryArray> {
    match a.as_binary_opt::<i32>() {
        Some(b) => Ok(b),
        None => exec_err!("sketch functions take the binary `sketch` column"),
    }
}

fn decode(b: &[u8]) -> DfResult<Sketch> {
    Sketch::decode(b).map_err(|e| DataFusionError::Execution(e.to_string()))
}

/// `sketch_merge`: the merge of a group's sketches.
#[derive(Debug, Default)]
struct MergeSketches {
    merged: Sketch,
}

impl Accumulator for MergeSketches {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(a) = values.first() else {
            return exec_err!("sketch_merge takes one argument");
        };
        let b = sketches(a)?;
        for i in 0..b.len() {
            if !b.is_null(i) {
                self.merged.merge(&decode(b.value(i))?);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(ScalarValue::Binary(Some(self.merged.encode())))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.merged.encode().len()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        self.update_batch(states)
    }
}

/// The SQL functions over sketches: `sketch_merge`, `sketch_quantile`, `sketch_count`.
pub fn sketch_functions() -> (Vec<AggregateUDF>, Vec<ScalarUDF>) {
    let merge = create_udaf(
        "sketch_merge",
        vec![DataType::Binary],
        Arc::new(DataType::Binary),
        Volatility::Immutable,
        Arc::new(|_: AccumulatorArgs<'_>| Ok(Box::new(MergeSketches::default()))),
        Arc::new(vec![DataType::Binary]),
    );
    let quantile = create_udf(
        "sketch_quantile",
        vec![DataType::Binary, DataType::Float64],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let n = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let [s, q] = args else {
                return exec_err!("sketch_quantile takes (sketch, quantile)");
            };
            let (s, q) = (s.to_array(n)?, q.to_array(n)?);
            let (s, q) = (
                sketches(&s)?,
                q.as_primitive::<arrow::datatypes::Float64Type>(),
            );
            let mut out = Float64Builder::with_capacity(n);
            for i in 0..n {
                if s.is_null(i) || q.is_null(i) {
                    out.append_null();
                    continue;
                }
                let qv = q.value(i);
                if !(0.0..=1.0).contains(&qv) {
                    return exec_err!("sketch_quantile: quantile {qv} is outside [0, 1]");
                }
                out.append_option(decode(s.value(i))?.quantile(qv));
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    );
    let count = create_udf(
        "sketch_count",
        vec![DataType::Binary],
        DataType::UInt64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let [s] = args else {
                return exec_err!("sketch_count takes one sketch");
            };
            let n = match s {
                ColumnarValue::Array(a) => a.len(),
                ColumnarValue::Scalar(_) => 1,
            };
            let s = s.to_array(n)?;
            let s = sketches(&s)?;
            let mut out = UInt64Builder::with_capacity(n);
            for i in 0..n {
                if s.is_null(i) {
                    out.append_null();
                } else {
                    out.append_value(decode(s.value(i))?.count());
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    );
    (vec![merge], vec![quantile, count])
}
