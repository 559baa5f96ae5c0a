//! Index pruning: open sidecars (cached per file), evaluate a filter's [`Candidates`] to a
//! set of trace ids, and turn trace ids into row selections of data files.
//!
//! Every answer here is a superset: memtable traces are always candidates, and a file
//! whose sidecar is missing or damaged turns pruning off for the query (with a warning),
//! so a bad sidecar costs speed, never a result.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use tracelake_storage::index::{Index, RoaringBitmap};
use tracelake_storage::manifest::FileMeta;
use tracelake_storage::schema::col;
use tracelake_storage::{Snapshot, TraceId};

use crate::lower::{Candidates, Probe};

/// A set of trace ids with a fast hash (ids are random; SipHash showed up in profiles of
/// selective searches over large stores).
pub(crate) type TraceSet = HashSet<TraceId, foldhash::fast::RandomState>;

/// Open sidecars by file id (`None`: the sidecar is unusable; the file is scanned).
#[derive(Debug, Default)]
pub(crate) struct IndexCache {
    open: Mutex<HashMap<u64, Option<Arc<Index>>>>,
    /// Distinct-trace counts over a file set, by (file ids, what was counted): files never
    /// change, so a count holds until the file set does.
    counts: Mutex<HashMap<(Vec<u64>, String), u64>>,
}

/// Trace counts kept at most.
const COUNT_CACHE: usize = 256;

impl IndexCache {
    /// The sidecar of a data file, opened once.
    pub(crate) fn get(&self, root: &Path, f: &FileMeta) -> Option<Arc<Index>> {
        let mut m = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(i) = m.get(&f.id) {
            return i.clone();
        }
        let opened = match Index::open(&root.join(&f.path), f.rows) {
            Ok(i) => Some(Arc::new(i)),
            Err(e) => {
                tracing::warn!(file = %f.path, error = %e, "index sidecar unusable; scanning the file");
                // a passing I/O problem is tried again next time; a bad sidecar is not
                if matches!(&e, tracelake_storage::Error::Io { source, .. }
                    if source.kind() != std::io::ErrorKind::NotFound)
                {
                    return None;
                }
                None
            }
        };
        m.insert(f.id, opened.clone());
        opened
    }

    /// Forgets files that left the store (compaction, retention).
    pub(crate) fn retain(&self, live: &HashSet<u64>) {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|id, _| live.contains(id));
    }
}

/// Trace ids of the memtable rows of a snapshot.
fn memtable_traces(snap: &Snapshot, out: &mut TraceSet) {
    for m in &snap.memory {
        for b in &m.batches {
            if let Some(ids) = b
                .column_by_name(col::TRACE_ID)
                .and_then(|c| c.as_fixed_size_binary_opt())
            {
                for i in 0..ids.len() {
                    if let Some(t) = TraceId::from_slice(ids.value(i)) {
                        out.insert(t);
                    }
                }
            }
        }
    }
}

/// The traces of rows in `rows` (ascending), walking the trace directory once.
fn traces_of_rows(index: &Index, rows: &RoaringBitmap, out: &mut TraceSet) {
    // rows ascend, so each trace is found at or after the previous one
    let mut from = 0;
    let mut last: Option<std::ops::Range<u32>> = None;
    for r in rows {
        if last.as_ref().is_some_and(|range| range.contains(&r)) {
            continue;
        }
        if let Some(pos) = index.trace_position_of_row(r, from)
            && let Some((t, range)) = index.trace_at(pos)
        {
            out.insert(t);
            from = pos + 1;
            last = Some(range);
        }
    }
}

fn probe(index: &Index, p: &Probe) -> Option<RoaringBitmap> {
    let r = match p {
        Probe::Term { column, key, value } => index.probe(*column, key, value),
        Probe::Numbers { key, from, to } => Ok(index.probe_numbers(key, *from, *to)),
    };
    match r {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "index probe failed; scanning");
            None
        }
    }
}

/// How many distinct traces of the snapshot satisfy `pred`, from the sidecars' sorted
/// trace directories (merged, never collected into a set) and the memtable; `None` when
/// a sidecar is unusable. `key` names the predicate: the files' part of the count is
/// cached under it.
pub(crate) fn count_traces(
    snap: &Snapshot,
    cache: &IndexCache,
    key: &str,
    pred: impl Fn(&TraceId) -> bool,
) -> Option<u64> {
    let indexes: Vec<Arc<Index>> = snap
        .files
        .iter()
        .map(|f| cache.get(&snap.root, f))
        .collect::<Option<_>>()?;
    let mut ids: Vec<u64> = snap.files.iter().map(|f| f.id).collect();
    ids.sort_unstable();
    let cache_key = (ids, key.to_owned());
    let lock = || {
        cache
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let cached = lock().get(&cache_key).copied();
    let mut count = match cached {
        Some(n) => n,
        None => {
            let n = count_in_files(&indexes, &pred);
            let mut c = lock();
            if c.len() >= COUNT_CACHE {
                c.clear();
            }
            c.insert(cache_key, n);
            n
        }
    };
    let mut memory = TraceSet::default();
    memtable_traces(snap, &mut memory);
    count += memory
        .iter()
        .filter(|t| pred(t) && indexes.iter().all(|i| i.trace_rows(t).is_none()))
        .count() as u64;
    Some(count)
}

/// Distinct traces satisfying `pred` over the sorted trace directories, by a k-way merge.
fn count_in_files(indexes: &[Arc<Index>], pred: &impl Fn(&TraceId) -> bool) -> u64 {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut iters: Vec<_> = indexes.iter().map(|i| i.traces()).collect();
    let mut heap = BinaryHeap::new();
    for (k, it) in iters.iter_mut().enumerate() {
        if let Some(t) = it.next() {
            heap.push(Reverse((t, k)));
        }
    }
    let mut count = 0u64;
    let mut last: Option<TraceId> = None;
    while let Some(Reverse((t, k))) = heap.pop() {
        if last != Some(t) {
            last = Some(t);
            count += u64::from(pred(&t));
        }
        if let Some(n) = iters[k].next() {
            heap.push(Reverse((n, k)));
        }
    }
    count
}

/// The traces that can match, or `None` for "any trace" (no usable restriction).
pub(crate) fn candidate_traces(
    snap: &Snapshot,
    cache: &IndexCache,
    c: &Candidates,
) -> Option<TraceSet> {
    let indexes: Vec<Arc<Index>> = snap
        .files
        .iter()
        .map(|f| cache.get(&snap.root, f))
        .collect::<Option<_>>()?;
    candidates_in(snap, &indexes, c)
}

/// The newest candidates: the files are read in descending order of their highest trace
/// id, in doubling batches, until more than `enough` candidates satisfying `keep` are
/// known to be newer than every file left unread. Returns those candidates and `floor`,
/// the highest trace id an unread file holds (`None`: every file was read, the answer is
/// complete). A trace above the floor has all its rows in the files read, so whether it
/// is a candidate is settled. Files holding only traces at or above `below` (a page
/// token) are not read. `None` when a sidecar is unusable or `c` is `All`.
pub(crate) fn newest_candidate_traces(
    snap: &Snapshot,
    cache: &IndexCache,
    c: &Candidates,
    below: Option<TraceId>,
    enough: usize,
    keep: impl Fn(&TraceId) -> bool,
) -> Option<(TraceSet, Option<TraceId>)> {
    let mut files: Vec<(TraceId, Arc<Index>)> = Vec::with_capacity(snap.files.len());
    for f in snap.files.iter() {
        let index = cache.get(&snap.root, f)?;
        match index.trace_bounds() {
            Some((lo, _)) if below.is_some_and(|b| lo >= b) => {}
            Some((_, hi)) => files.push((hi, index)),
            None => {}
        }
    }
    files.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    let (highest, indexes): (Vec<TraceId>, Vec<Arc<Index>>) = files.into_iter().unzip();
    let mut read = 1;
    loop {
        let floor = highest.get(read).copied();
        let mut set = candidates_in(snap, &indexes[..read.min(indexes.len())], c)?;
        set.retain(|t| floor.is_none_or(|f| *t > f) && keep(t));
        if set.len() > enough || floor.is_none() {
            return Some((set, floor));
        }
        read = read.saturating_mul(2);
    }
}

/// [`candidate_traces`] over the files of `indexes` (and the memtable).
fn candidates_in(snap: &Snapshot, indexes: &[Arc<Index>], c: &Candidates) -> Option<TraceSet> {
    match c {
        Candidates::All => None,
        Candidates::Rows(p) => {
            let mut out = TraceSet::default();
            for index in indexes {
                traces_of_rows(index, &probe(index, p)?, &mut out);
            }
            memtable_traces(snap, &mut out);
            Some(out)
        }
        Candidates::And(v) => {
            let mut acc: Option<TraceSet> = None;
            for x in v {
                if let Some(s) = candidates_in(snap, indexes, x) {
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.intersection(&s).copied().collect(),
                    });
                }
            }
            acc
        }
        Candidates::Or(v) => {
            let mut acc = TraceSet::default();
            for x in v {
                acc.extend(candidates_in(snap, indexes, x)?);
            }
            Some(acc)
        }
    }
}

/// The rows of a file that belong to `traces` (ascending): ascending, disjoint row ranges
/// (a trace's rows are contiguous, the file being sorted by trace id). Only the traces
/// within the file's id bounds are looked up.
pub(crate) fn rows_of_traces(index: &Index, traces: &[TraceId]) -> Vec<Range<u32>> {
    let Some((lo, hi)) = index.trace_bounds() else {
        return Vec::new();
    };
    let from = traces.partition_point(|t| *t < lo);
    let to = traces.partition_point(|t| *t <= hi);
    let within = traces.get(from..to).unwrap_or_default();
    let mut out: Vec<Range<u32>> = within.iter().filter_map(|t| index.trace_rows(t)).collect();
    out.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<Range<u32>> = Vec::with_capacity(out.len());
    for r in out {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}
