//! Index pruning: open sidecars (cached per file), evaluate a filter's [`Candidates`] to a
//! set of trace ids, and turn trace ids into row selections of data files. Before any
//! of that, [`FileBounds`] drops the files whose manifest bounds (trace ids, start
//! times) a scan's filters exclude: they are never opened.
//!
//! Every answer here is a superset: memtable traces are always candidates, and a file
//! whose sidecar is missing or damaged turns pruning off for the query (with a warning),
//! so a bad sidecar costs speed, never a result.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};
use tracelake_storage::index::{Index, RoaringBitmap};
use tracelake_storage::manifest::FileMeta;
use tracelake_storage::schema::col;
use tracelake_storage::{Snapshot, TraceId};

use crate::lower::{Candidates, Probe};

/// A set of trace ids with a fast hash (ids are random; SipHash showed up in profiles of
/// selective searches over large stores).
pub(crate) type TraceSet = HashSet<TraceId, foldhash::fast::RandomState>;

/// A `trace_id` literal of a filter.
pub(crate) fn trace_literal(e: &Expr) -> Option<TraceId> {
    match e {
        Expr::Literal(ScalarValue::FixedSizeBinary(16, Some(b)), _) => TraceId::from_slice(b),
        _ => None,
    }
}

/// The trace ids and start times a scan's filters allow (inclusive bounds): a file whose
/// manifest bounds lie outside them holds no row the scan wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileBounds {
    trace: (u128, u128),
    /// Through [`ordered`].
    start_ns: (u128, u128),
}

impl FileBounds {
    /// The bounds of the conjunction of `filters` on `trace_id` and `start_ns`
    /// (comparisons with literals, `IN` lists); other filters allow everything.
    pub(crate) fn of(filters: &[Expr]) -> FileBounds {
        let mut b = FileBounds {
            trace: (0, u128::MAX),
            start_ns: (0, u128::MAX),
        };
        for f in filters {
            b.narrow(f);
        }
        b
    }

    fn narrow(&mut self, e: &Expr) {
        let trace = |e: &Expr| trace_literal(e).map(|t| t.as_u128());
        let start = |e: &Expr| match e {
            Expr::Literal(ScalarValue::Int64(Some(v)), _) => Some(ordered(*v)),
            _ => None,
        };
        fn column(e: &Expr) -> Option<&str> {
            match e {
                Expr::Column(c) => Some(c.name.as_str()),
                _ => None,
            }
        }
        match e {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::And,
                right,
            }) => {
                self.narrow(left);
                self.narrow(right);
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                // `column op literal`, or `literal op column` read the other way
                let (name, op, value) = match (column(left), column(right)) {
                    (Some(n), None) => (n, *op, right.as_ref()),
                    (None, Some(n)) => match op.swap() {
                        Some(op) => (n, op, left.as_ref()),
                        None => return,
                    },
                    _ => return,
                };
                if name == col::TRACE_ID {
                    if let Some(v) = trace(value) {
                        narrow(&mut self.trace, op, v);
                    }
                } else if name == col::START_NS
                    && let Some(v) = start(value)
                {
                    narrow(&mut self.start_ns, op, v);
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) if column(expr) == Some(col::TRACE_ID) => {
                let ids: Option<Vec<u128>> = list.iter().map(trace).collect();
                if let Some(ids) = ids {
                    let lo = ids.iter().copied().min().unwrap_or(u128::MAX);
                    let hi = ids.iter().copied().max().unwrap_or(0);
                    narrow(&mut self.trace, Operator::GtEq, lo);
                    narrow(&mut self.trace, Operator::LtEq, hi);
                }
            }
            _ => {}
        }
    }

    /// Whether `f` may hold rows within the bounds (unknown bounds: it may).
    pub(crate) fn admit(&self, f: &FileMeta) -> bool {
        if self.trace.0 > self.trace.1 || self.start_ns.0 > self.start_ns.1 {
            return false; // the filters contradict each other
        }
        let id = |h: &str| u128::from_str_radix(h, 16).ok();
        let traces = match (id(&f.min_trace_id), id(&f.max_trace_id)) {
            (Some(lo), Some(hi)) => hi >= self.trace.0 && lo <= self.trace.1,
            _ => true,
        };
        traces
            && ordered(f.max_start_ns) >= self.start_ns.0
            && ordered(f.min_start_ns) <= self.start_ns.1
    }
}

/// The empty bounds (`lo > hi`).
const NOTHING: (u128, u128) = (1, 0);

/// Narrows inclusive bounds `b` by `op v` (`< 0` and `> MAX` leave nothing).
fn narrow(b: &mut (u128, u128), op: Operator, v: u128) {
    match op {
        Operator::Eq => *b = (b.0.max(v), b.1.min(v)),
        Operator::Gt => match v.checked_add(1) {
            Some(n) => b.0 = b.0.max(n),
            None => *b = NOTHING,
        },
        Operator::GtEq => b.0 = b.0.max(v),
        Operator::Lt => match v.checked_sub(1) {
            Some(p) => b.1 = b.1.min(p),
            None => *b = NOTHING,
        },
        Operator::LtEq => b.1 = b.1.min(v),
        _ => {}
    }
}

/// An `i64` mapped onto `u128`, order kept.
fn ordered(v: i64) -> u128 {
    u128::from((v as u64) ^ (1 << 63))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col as column, lit};
    use proptest::prelude::*;

    fn trace_lit(v: u8) -> Expr {
        let mut b = [0u8; 16];
        b[15] = v;
        lit(ScalarValue::FixedSizeBinary(16, Some(b.to_vec())))
    }

    fn file(traces: (u8, u8), starts: (i64, i64)) -> FileMeta {
        let hex = |v: u8| format!("{:032x}", v);
        FileMeta {
            id: 1,
            partition: tracelake_storage::PartitionKey(0),
            path: String::new(),
            rows: 1,
            bytes: 1,
            min_start_ns: starts.0,
            max_start_ns: starts.1,
            min_trace_id: hex(traces.0),
            max_trace_id: hex(traces.1),
            max_revision: 0,
            shadows: false,
            format_version: 1,
            rollup_version: 0,
            shares_traces: false,
            shared_traces: None,
        }
    }

    /// One comparison: on the trace id (true) or the start time, an operator, a value,
    /// and whether the literal is written first.
    type Cmp = (bool, u8, i64, bool);

    const OPS: [Operator; 6] = [
        Operator::Eq,
        Operator::Lt,
        Operator::LtEq,
        Operator::Gt,
        Operator::GtEq,
        Operator::NotEq,
    ];

    fn expr(&(on_trace, op, v, flipped): &Cmp) -> Expr {
        let (c, l) = if on_trace {
            (column(col::TRACE_ID), trace_lit(v as u8))
        } else {
            (column(col::START_NS), lit(v - 10))
        };
        let op = OPS[op as usize % OPS.len()];
        if flipped {
            Expr::BinaryExpr(BinaryExpr::new(
                Box::new(l),
                op.swap().unwrap_or(op),
                Box::new(c),
            ))
        } else {
            Expr::BinaryExpr(BinaryExpr::new(Box::new(c), op, Box::new(l)))
        }
    }

    fn holds(&(on_trace, op, v, _): &Cmp, trace: i64, start: i64) -> bool {
        let (x, v) = if on_trace {
            (trace, v)
        } else {
            (start, v - 10)
        };
        match OPS[op as usize % OPS.len()] {
            Operator::Eq => x == v,
            Operator::Lt => x < v,
            Operator::LtEq => x <= v,
            Operator::Gt => x > v,
            Operator::GtEq => x >= v,
            _ => x != v,
        }
    }

    proptest! {
        /// A file is admitted exactly when some (trace id, start) point of its bounds
        /// satisfies every comparison (brute force over a small domain).
        #[test]
        fn bounds_admit_exactly_the_files_with_wanted_points(
            cmps in proptest::collection::vec((any::<bool>(), 0u8..6, 0i64..20, any::<bool>()), 0..4),
            t in (0u8..20, 0u8..20),
            s in (-10i64..10, -10i64..10),
            as_one in any::<bool>(),
        ) {
            let (t, s) = ((t.0.min(t.1), t.0.max(t.1)), (s.0.min(s.1), s.0.max(s.1)));
            let exprs: Vec<Expr> = cmps.iter().map(expr).collect();
            let bounds = if as_one && !exprs.is_empty() {
                FileBounds::of(&[datafusion::logical_expr::utils::conjunction(exprs).unwrap()])
            } else {
                FileBounds::of(&exprs)
            };
            // `!=` narrows nothing: compare with the other comparisons alone
            let narrowing: Vec<Cmp> = cmps.iter().copied().filter(|c| c.1 % 6 != 5).collect();
            let wanted = (i64::from(t.0)..=i64::from(t.1)).any(|tr| {
                (s.0..=s.1).any(|st| narrowing.iter().all(|c| holds(c, tr, st)))
            });
            prop_assert_eq!(bounds.admit(&file(t, s)), wanted);
        }
    }

    #[test]
    fn in_lists_and_unknown_bounds() {
        let f = file((5, 9), (0, 0));
        let list = |v: &[u8]| {
            FileBounds::of(&[
                column(col::TRACE_ID).in_list(v.iter().map(|&x| trace_lit(x)).collect(), false)
            ])
        };
        assert!(list(&[1, 7]).admit(&f));
        assert!(!list(&[1, 2]).admit(&f));
        assert!(!list(&[10, 12]).admit(&f));
        // a file without trace bounds is always read
        let mut unknown = f.clone();
        unknown.min_trace_id.clear();
        assert!(list(&[1, 2]).admit(&unknown));
    }
}
