//! The memtable: recent rows per partition, in Arrow, with upserts applied as they
//! arrive (SPEC 7.8). Queries read it through snapshots; a flush freezes it and writes
//! one Parquet file per partition.

use std::collections::{BTreeMap, HashMap};

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

    /// Live rows as batches (deleted rows filtered out).
    fn live_batches(&mut self) -> Result<Vec<RecordBatch>> {
        self.seal()?;
        let mut out = Vec::with_capacity(self.sealed.len());
        let mut offset = 0;
        for b in &self.sealed {
            let n = b.num_rows();
            let del = &self.deleted[offset..offset + n];
            offset += n;
            if !del.iter().any(|d| *d) {
                out.push(b.clone());
            } else {
                let mask: BooleanArray = del.iter().map(|d| Some(!d)).collect();
                out.push(filter_record_batch(b, &mask)?);
            }
        }
        Ok(out)
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
    pub batches: Vec<RecordBatch>,
    pub keys: HashMap<RowKey, (usize, RowVersion)>,
    pub shadows: bool,
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

    /// The live rows of every partition.
    pub fn snapshot(&mut self) -> Result<Vec<MemRows>> {
        let mut out = Vec::with_capacity(self.partitions.len());
        for (k, p) in &mut self.partitions {
            out.push(MemRows {
                partition: *k,
                batches: p.live_batches()?,
                shadows: p.shadows,
            });
        }
        Ok(out)
    }

    /// Freezes the memtable for flushing.
    pub fn freeze(mut self) -> Result<Frozen> {
        let mut partitions = BTreeMap::new();
        for (k, p) in &mut self.partitions {
            let batches = p.live_batches()?;
            partitions.insert(
                *k,
                FrozenPartition {
                    batches,
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

    pub fn rows(&self) -> Vec<MemRows> {
        self.partitions
            .iter()
            .map(|(k, p)| MemRows {
                partition: *k,
                batches: p.batches.clone(),
                shadows: p.shadows,
            })
            .collect()
    }
}
