//! The memtable: recent rows per partition, in Arrow, with upserts applied as they
//! arrive (SPEC 7.8). Queries read it through snapshots; a flush freezes it and writes
//! one Parquet file per partition.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};

use crate::error::Result;
use crate::flatten::{RowKey, SpanBuilder};
use crate::partition::PartitionKey;
use crate::schema;
use crate::segment::Document;
use crate::segment::RawJson;

/// Rows per sealed batch.
const SEAL_ROWS: usize = 8192;

/// Version of a row for upserts: a complete row beats an in-progress one; otherwise the
/// later revision wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowVersion {
    pub complete: bool,
    pub revision: u64,
}

#[derive(Debug, Default)]
struct MemPartition {
    sealed: Vec<RecordBatch>,
    sealed_rows: usize,
    active: SpanBuilder,
    deleted: Vec<bool>,
    live: usize,
    keys: HashMap<RowKey, (usize, RowVersion)>,
    /// Some row may replace a row in an older file or frozen memtable of the partition.
    shadows: bool,
}

impl MemPartition {
    fn seal(&mut self) -> Result<()> {
        if self.active.is_empty() {
            return Ok(());
        }
        let b = self.active.finish()?;
        self.sealed_rows += b.num_rows();
        // keep batches reasonably large when snapshots seal often
        match self.sealed.last_mut() {
            Some(last) if last.num_rows() + b.num_rows() <= SEAL_ROWS => {
                *last = concat_batches(&schema::spans(), [&*last, &b])?;
            }
            _ => self.sealed.push(b),
        }
        Ok(())
    }

    /// The sealed batches with a keep-mask where rows were replaced. Cheap (clones of
    /// shared buffers and one mask): callers hold the write lock, and filter after
    /// releasing it ([`Raw::live`]).
    fn raw(&mut self) -> Result<Vec<(RecordBatch, Option<BooleanArray>)>> {
        self.seal()?;
        let mut out = Vec::with_capacity(self.sealed.len());
        let mut offset = 0;
        for b in &self.sealed {
            let n = b.num_rows();
            let del = &self.deleted[offset..offset + n];
            offset += n;
            let mask = del
                .iter()
                .any(|d| *d)
                .then(|| del.iter().map(|d| Some(!d)).collect::<BooleanArray>());
            out.push((b.clone(), mask));
        }
        Ok(out)
    }
}

/// Batches with keep-masks: rows of a partition before replaced rows are filtered out.
#[derive(Debug, Clone)]
pub struct Raw {
    pub partition: PartitionKey,
    parts: Vec<(RecordBatch, Option<BooleanArray>)>,
    pub shadows: bool,
}

fn live(parts: &[(RecordBatch, Option<BooleanArray>)]) -> Result<Vec<RecordBatch>> {
    parts
        .iter()
        .map(|(b, mask)| match mask {
            None => Ok(b.clone()),
            Some(m) => Ok(filter_record_batch(b, m)?),
        })
        .collect()
}

impl Raw {
    /// The live rows (replaced rows filtered out).
    pub fn live(&self) -> Result<MemRows> {
        Ok(MemRows {
            partition: self.partition,
            batches: live(&self.parts)?,
            shadows: self.shadows,
        })
    }
}

/// The active memtable.
#[derive(Debug, Default)]
pub struct Memtable {
    partitions: BTreeMap<PartitionKey, MemPartition>,
    rows: usize,
    bytes: usize,
    max_seq: u64,
}

/// A frozen memtable: read-only batches and keys, waiting to become files.
#[derive(Debug)]
pub struct Frozen {
    pub partitions: BTreeMap<PartitionKey, FrozenPartition>,
    pub max_seq: u64,
}

#[derive(Debug)]
pub struct FrozenPartition {
    /// Raw batches until the first reader or the flush filters them, then live ones.
    rows: Mutex<FrozenRows>,
    pub keys: HashMap<RowKey, (usize, RowVersion)>,
    pub shadows: bool,
}

#[derive(Debug)]
enum FrozenRows {
    Raw(Vec<(RecordBatch, Option<BooleanArray>)>),
    Live(Vec<RecordBatch>),
}

impl FrozenPartition {
    /// The live rows, filtered once (outside the store's locks).
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if let FrozenRows::Raw(parts) = &*rows {
            *rows = FrozenRows::Live(live(parts)?);
        }
        match &*rows {
            FrozenRows::Live(b) => Ok(b.clone()),
            FrozenRows::Raw(_) => Ok(Vec::new()),
        }
    }
}

/// Rows of one partition as a snapshot sees them.
#[derive(Debug, Clone)]
pub struct MemRows {
    pub partition: PartitionKey,
    pub batches: Vec<RecordBatch>,
    pub shadows: bool,
}

impl Memtable {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Raw document bytes inserted.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// Inserts a validated document with revision `seq`. `older(partition, key)` tells
    /// whether older data of the partition (files, frozen memtables) may hold the key.
    pub fn insert<'a, B: RawJson<'a>>(
        &mut self,
        partition: PartitionKey,
        doc: &Document<'a, B>,
        doc_bytes: usize,
        seq: u64,
        older: &mut dyn FnMut(PartitionKey, &RowKey) -> bool,
    ) -> Result<usize> {
        let p = self.partitions.entry(partition).or_default();
        let MemPartition {
            sealed_rows,
            active,
            deleted,
            live,
            keys,
            shadows,
            ..
        } = &mut *p;
        let base = *sealed_rows;
        let added = active.append_document(doc, seq, &mut |key, row, complete| {
            let version = RowVersion {
                complete,
                revision: seq,
            };
            let global = base + row;
            match keys.get(&key) {
                Some(&(old_row, old)) => {
                    if version < old {
                        return false;
                    }
                    deleted[old_row] = true;
                    *live -= 1;
                }
                None => {
                    if !*shadows && older(partition, &key) {
                        *shadows = true;
                    }
                }
            }
            keys.insert(key, (global, version));
            deleted.push(false);
            *live += 1;
            true
        });
        if p.active.len() >= SEAL_ROWS {
            p.seal()?;
        }
        self.rows += added;
        self.bytes += doc_bytes;
        self.max_seq = self.max_seq.max(seq);
        Ok(added)
    }

    /// Whether the memtable holds `key` in `partition`.
    pub fn contains(&self, partition: PartitionKey, key: &RowKey) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.keys.contains_key(key))
    }

    /// Every partition's rows, to be filtered by [`Raw::live`] once the caller has
    /// released its locks.
    pub fn snapshot_raw(&mut self) -> Result<Vec<Raw>> {
        let mut out = Vec::with_capacity(self.partitions.len());
        for (k, p) in &mut self.partitions {
            out.push(Raw {
                partition: *k,
                parts: p.raw()?,
                shadows: p.shadows,
            });
        }
        Ok(out)
    }

    /// Freezes the memtable for flushing. Cheap: replaced rows are filtered out later,
    /// outside the store's write lock.
    pub fn freeze(mut self) -> Result<Frozen> {
        let mut partitions = BTreeMap::new();
        for (k, p) in &mut self.partitions {
            let parts = p.raw()?;
            partitions.insert(
                *k,
                FrozenPartition {
                    rows: Mutex::new(FrozenRows::Raw(parts)),
                    keys: std::mem::take(&mut p.keys),
                    shadows: p.shadows,
                },
            );
        }
        Ok(Frozen {
            partitions,
            max_seq: self.max_seq,
        })
    }
}

impl Frozen {
    pub fn contains(&self, partition: PartitionKey, key: &RowKey) -> bool {
        self.partitions
            .get(&partition)
            .is_some_and(|p| p.keys.contains_key(key))
    }

    /// The live rows of every partition (filtered on the first call).
    pub fn rows(&self) -> Result<Vec<MemRows>> {
        self.partitions
            .iter()
            .map(|(k, p)| {
                Ok(MemRows {
                    partition: *k,
                    batches: p.batches()?,
                    shadows: p.shadows,
                })
            })
            .collect()
    }
}
