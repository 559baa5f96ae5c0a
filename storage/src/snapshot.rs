//! Snapshots: a consistent view of the store (live files plus memtable rows) for readers,
//! and the upsert resolution readers apply where duplicates may exist.
//!
//! Duplicates of a `(trace_id, id)` can only exist inside a partition that holds a file
//! or memtable flagged `shadows` (an id was seen again after older data of the partition
//! held it). Only those partitions pay for [`Snapshot::resolve`]: it reads the key
//! columns of the partition's files and keeps, per key, the winning version (SPEC 7.8).

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::UInt64Type;

use crate::datafile;
use crate::error::{Error, Result};
use crate::flatten::RowKey;
use crate::index::Index;
use crate::manifest::FileMeta;
use crate::memtable::{MemRows, RowVersion};
use crate::partition::PartitionKey;
use crate::schema::col;
use crate::segment::TraceId;

/// A consistent view of the store at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: PathBuf,
    pub files: Arc<Vec<FileMeta>>,
    pub memory: Vec<MemRows>,
}

/// Which rows of a partition are live after upsert resolution.
#[derive(Debug, Default)]
pub struct Resolution {
    /// Per file id: the rows (ascending) that a later version replaced, for files that
    /// lose rows. Usually few: an in-progress segment and its completion.
    pub file_dropped: HashMap<u64, Vec<u32>>,
    /// The partition's memtable rows, losers removed.
    pub memory: Vec<RecordBatch>,
}

impl Snapshot {
    /// The ids of a partition's files, ascending: a key for what readers derive from
    /// exactly that set of files (files never change).
    pub fn partition_file_ids(&self, partition: PartitionKey) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .files
            .iter()
            .filter(|f| f.partition == partition)
            .map(|f| f.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Partitions in which rows may be duplicated.
    pub fn partitions_to_resolve(&self) -> BTreeSet<PartitionKey> {
        let mut out: BTreeSet<PartitionKey> = self
            .files
            .iter()
            .filter(|f| f.shadows)
            .map(|f| f.partition)
            .collect();
        out.extend(
            self.memory
                .iter()
                .filter(|m| m.shadows)
                .map(|m| m.partition),
        );
        out
    }

    /// Resolves upserts in one partition, reading every key of its files.
    pub fn resolve(&self, partition: PartitionKey) -> Result<Resolution> {
        self.resolve_with(partition, &|_| None)
    }

    /// Resolves upserts in one partition. When the partition has no memtable rows and
    /// `index` gives every file's sidecar, only the rows of traces found in more than
    /// one file are read: a file holds each key once (the memtable it came from kept one
    /// version), so only a trace in several files can have a key twice.
    pub fn resolve_with(
        &self,
        partition: PartitionKey,
        index: &dyn Fn(&FileMeta) -> Option<Arc<Index>>,
    ) -> Result<Resolution> {
        let files: Vec<&FileMeta> = self
            .files
            .iter()
            .filter(|f| f.partition == partition)
            .collect();
        let mems: Vec<&RecordBatch> = self
            .memory
            .iter()
            .filter(|m| m.partition == partition)
            .flat_map(|m| m.batches.iter())
            .collect();
        let shared = if mems.iter().all(|b| b.num_rows() == 0) {
            shared_rows(&files, index)
        } else {
            None
        };
        // sources: files first, then memtable batches; with the file row of each key
        // read when only some rows are read
        let mut sources: Vec<(Vec<RecordBatch>, Option<Vec<u32>>)> =
            Vec::with_capacity(files.len() + mems.len());
        for (i, f) in files.iter().enumerate() {
            match shared.as_ref().and_then(|s| s.get(i)) {
                Some(ranges) if ranges.is_empty() => sources.push((Vec::new(), Some(Vec::new()))),
                Some(ranges) => {
                    let rows = ranges.iter().flat_map(|r| r.clone()).collect();
                    let batches = datafile::read_columns_of_rows(
                        &self.root,
                        f,
                        datafile::KEY_COLUMNS,
                        ranges,
                    )?;
                    sources.push((batches, Some(rows)));
                }
                None => sources.push((
                    datafile::read_columns(&self.root, f, Some(datafile::KEY_COLUMNS))?,
                    None,
                )),
            }
        }
        for m in &mems {
            sources.push((vec![(*m).clone()], None));
        }
        let mut best: HashMap<RowKey, (usize, usize, RowVersion), foldhash::fast::RandomState> =
            HashMap::default();
        let mut sizes = Vec::with_capacity(sources.len());
        for (si, (batches, _)) in sources.iter().enumerate() {
            let mut row_base = 0;
            for b in batches {
                let traces = b
                    .column_by_name(col::TRACE_ID)
                    .and_then(|c| c.as_fixed_size_binary_opt())
                    .ok_or_else(|| Error::Corrupt {
                        what: "trace_id column missing".into(),
                    })?;
                let ids = b
                    .column_by_name(col::ID)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                    .ok_or_else(|| Error::Corrupt {
                        what: "id column missing".into(),
                    })?;
                let ends = b
                    .column_by_name(col::END_NS)
                    .ok_or_else(|| Error::Corrupt {
                        what: "end_ns column missing".into(),
                    })?;
                let revs = b
                    .column_by_name(col::REVISION)
                    .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                    .ok_or_else(|| Error::Corrupt {
                        what: "revision column missing".into(),
                    })?;
                for r in 0..b.num_rows() {
                    let key = RowKey {
                        trace_id: TraceId::from_slice(traces.value(r)).unwrap_or_default(),
                        id: ids.value(r),
                    };
                    let v = RowVersion {
                        complete: ends.is_valid(r),
                        revision: revs.value(r),
                    };
                    let row = row_base + r;
                    match best.get(&key) {
                        Some(&(_, _, old)) if old >= v => {}
                        _ => {
                            best.insert(key, (si, row, v));
                        }
                    }
                }
                row_base += b.num_rows();
            }
            sizes.push(row_base);
        }
        let mut keep: Vec<Vec<bool>> = sizes.iter().map(|&n| vec![false; n]).collect();
        for (si, row, _) in best.into_values() {
            keep[si][row] = true;
        }
        let mut res = Resolution::default();
        for (i, f) in files.iter().enumerate() {
            let rows = sources[i].1.as_deref();
            let dropped: Vec<u32> = (0..keep[i].len())
                .filter(|&r| !keep[i][r])
                .map(|r| {
                    rows.and_then(|rows| rows.get(r).copied())
                        .unwrap_or(r as u32)
                })
                .collect();
            if !dropped.is_empty() {
                res.file_dropped.insert(f.id, dropped);
            }
        }
        for (j, m) in mems.iter().enumerate() {
            let k = &keep[files.len() + j];
            if k.iter().all(|x| *x) {
                res.memory.push((*m).clone());
            } else {
                let mask: BooleanArray = k.iter().map(|x| Some(*x)).collect();
                res.memory.push(filter_record_batch(m, &mask)?);
            }
        }
        Ok(res)
    }

    /// Every live row, resolved (a simple reader for tests and small tools; queries go
    /// through the query crate's table provider).
    pub fn read_all(&self) -> Result<Vec<RecordBatch>> {
        let resolve = self.partitions_to_resolve();
        let mut resolutions = HashMap::new();
        for p in &resolve {
            resolutions.insert(*p, self.resolve(*p)?);
        }
        let mut out = Vec::new();
        for f in self.files.iter() {
            let batches = datafile::read_all(&self.root, f)?;
            match resolutions
                .get(&f.partition)
                .and_then(|r| r.file_dropped.get(&f.id))
            {
                None => out.extend(batches),
                Some(dropped) => {
                    let mut off = 0;
                    let mut d = dropped.iter().peekable();
                    for b in batches {
                        let n = b.num_rows();
                        let mask: BooleanArray = (off..off + n)
                            .map(|r| Some(d.next_if(|&&x| x as usize == r).is_none()))
                            .collect();
                        off += n;
                        out.push(filter_record_batch(&b, &mask)?);
                    }
                }
            }
        }
        for m in &self.memory {
            if !resolve.contains(&m.partition) {
                out.extend(m.batches.iter().cloned());
            }
        }
        for p in &resolve {
            if let Some(r) = resolutions.remove(p) {
                out.extend(r.memory);
            }
        }
        Ok(out)
    }

    /// Rows in the snapshot before resolution (files + memory).
    pub fn raw_rows(&self) -> u64 {
        let f: u64 = self.files.iter().map(|f| f.rows).sum();
        let m: usize = self
            .memory
            .iter()
            .flat_map(|m| m.batches.iter())
            .map(|b| b.num_rows())
            .sum();
        f + m as u64
    }
}

/// Per file of a partition, the row ranges (ascending, disjoint) of the traces that also
/// have rows in another of the files, from the sidecars' trace directories. `None` when a
/// sidecar is missing, or when the files overlap so much that reading every key is
/// cheaper than looking traces up.
fn shared_rows(
    files: &[&FileMeta],
    index: &dyn Fn(&FileMeta) -> Option<Arc<Index>>,
) -> Option<Vec<Vec<std::ops::Range<u32>>>> {
    let idx: Vec<Arc<Index>> = files.iter().map(|f| index(f)).collect::<Option<_>>()?;
    let total: usize = idx.iter().map(|i| i.trace_count()).sum();
    let mut budget = total.saturating_mul(2).saturating_add(1024);
    let mut out: Vec<Vec<std::ops::Range<u32>>> = vec![Vec::new(); files.len()];
    for i in 0..idx.len() {
        for j in i + 1..idx.len() {
            let (Some((lo_i, hi_i)), Some((lo_j, hi_j))) =
                (idx[i].trace_bounds(), idx[j].trace_bounds())
            else {
                continue;
            };
            let (lo, hi) = (lo_i.max(lo_j), hi_i.min(hi_j));
            if lo > hi {
                continue;
            }
            let (wi, wj) = (
                idx[i].trace_positions(&lo, &hi),
                idx[j].trace_positions(&lo, &hi),
            );
            // walk the smaller window, look each trace up in the other file
            let (a, b, window) = if wi.len() <= wj.len() {
                (i, j, wi)
            } else {
                (j, i, wj)
            };
            budget = budget.checked_sub(window.len())?;
            for pos in window {
                let Some((t, rows)) = idx[a].trace_at(pos) else {
                    continue;
                };
                if let Some(other) = idx[b].trace_rows(&t) {
                    out[a].push(rows);
                    out[b].push(other);
                }
            }
        }
    }
    for ranges in &mut out {
        ranges.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<std::ops::Range<u32>> = Vec::with_capacity(ranges.len());
        for r in ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        *ranges = merged;
    }
    Some(out)
}
