//! Compaction: merging a partition's files into few large ones.
//!
//! Flushes leave each hour partition with many small files, cut wherever a flush
//! happened: traces split across files, upserts (an in-progress fragment and its
//! completion) in different files. [`merge`] streams the files of one partition, all
//! sorted by `(trace_id, start_ns)`, into new files of up to
//! [`CompactionOptions::max_file_bytes`]:
//! - rows come out sorted by `(trace_id, start_ns)`, and a file is only ever cut between
//!   two traces, so no trace is split across the outputs;
//! - of the versions of a `(trace_id, id)` the winner of SPEC 7.8 is kept (complete
//!   beats in-progress, then the later revision), exactly as readers resolve them;
//! - the index and rollup sidecars are built in the same pass ([`crate::datafile::Writer`]).
//!
//! Nothing is visible until the store commits the outputs in place of the inputs in one
//! manifest commit ([`crate::store::Store::compact_partition`]); the inputs are deleted once
//! no reader snapshot holds them.
//!
//! **Memory.** An input is opened only when the merge reaches its first trace and closed
//! when it is exhausted; an open input holds one decoded batch of [`BATCH_ROWS`] rows and
//! its reader's current pages. The merge holds at most
//! [`CompactionOptions::chunk_rows`] ([`CHUNK_ROWS`] by default) rows (plus the
//! rest of one trace) before handing them to the writer, which buffers one encoded row
//! group ([`crate::datafile::ROW_GROUP_ROWS`] rows). Beside these, the sidecars being
//! built hold what the sidecars will hold. So peak memory is about
//! `open inputs × (BATCH_ROWS rows + pages) + CHUNK_ROWS rows + one encoded row group +
//! sidecars`, whatever the partition's size; at most [`CompactionOptions::max_inputs`]
//! inputs take part in one merge. Files of successive flushes cover successive ranges
//! of trace ids (ids begin with their time), so usually only two or three are open at
//! once. Measured (`tests/compaction_memory.rs`): merging 160k rows (44 MB decoded)
//! peaked at 20 MB of heap, 640k rows (176 MB decoded) at 31 MB; the difference is the
//! sidecars under construction.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, RecordBatch};
use arrow::compute::interleave_record_batch;
use arrow::datatypes::{Int64Type, UInt64Type};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::datafile::Writer;
use crate::error::{Error, Result};
use crate::manifest::FileMeta;
use crate::memtable::RowVersion;
use crate::schema::col;
use crate::segment::TraceId;

/// Rows an open input decodes at a time.
pub const BATCH_ROWS: usize = 2048;
/// Rows the merge gathers before handing them to the writer, by default.
pub const CHUNK_ROWS: usize = 16 * 1024;

/// When and how partitions are compacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionOptions {
    /// Files smaller than this are merged (default 256 MiB).
    pub min_file_bytes: u64,
    /// An output is cut at the first trace boundary past this size (default 1 GiB).
    pub max_file_bytes: u64,
    /// Files merged by one pass at most (default 32); bounds memory.
    pub max_inputs: usize,
    /// A partition is compacted once its hour has been over this long (late documents
    /// still arrive for a while; default 10 minutes)...
    pub settle: Duration,
    /// ...or before, once it holds this many small files (default 32).
    pub max_small_files: usize,
    /// Rows the merge hands to the writer at a time (default 16,384). Outputs are cut
    /// between chunks, so a file may pass `max_file_bytes` by one chunk.
    pub chunk_rows: usize,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            min_file_bytes: 256 << 20,
            max_file_bytes: 1 << 30,
            max_inputs: 32,
            settle: Duration::from_secs(600),
            max_small_files: 32,
            chunk_rows: CHUNK_ROWS,
        }
    }
}

/// What one merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub input_files: usize,
    pub input_rows: u64,
    pub input_bytes: u64,
    pub output_rows: u64,
    /// Older versions of upserted rows left out.
    pub replaced_rows: u64,
    /// Rows of traces the caller chose not to keep (retention).
    pub dropped_rows: u64,
}

/// One input file being read.
struct Input {
    reader: Option<ParquetRecordBatchReader>,
    batch: Option<RecordBatch>,
    /// `batch`'s key columns, looked up once per batch.
    cols: Option<KeyCols>,
    /// Slot of `batch` in the chunk being gathered.
    slot: Option<usize>,
    row: usize,
    done: bool,
}

impl Input {
    /// The trace id of the next row, as a number ordered like the id's bytes.
    fn head(&self) -> Option<u128> {
        self.cols.as_ref().map(|c| key(c.trace.value(self.row)))
    }

    /// Moves to the next batch when this one is used up.
    fn refill(&mut self, path: &Path) -> Result<()> {
        while !self.done && self.batch.as_ref().is_none_or(|b| self.row >= b.num_rows()) {
            self.slot = None;
            self.row = 0;
            match self.reader.as_mut().and_then(Iterator::next) {
                Some(Ok(b)) => {
                    self.cols = Some(KeyCols::of(&b)?);
                    self.batch = Some(b);
                }
                Some(Err(e)) => {
                    return Err(Error::Corrupt {
                        what: format!("{}: {e}", path.display()),
                    });
                }
                None => {
                    self.done = true;
                    self.batch = None;
                    self.cols = None;
                    self.reader = None;
                }
            }
        }
        Ok(())
    }
}

/// Rows gathered for the writer: `(slot, row)` into `batches`.
#[derive(Default)]
struct Chunk {
    batches: Vec<RecordBatch>,
    rows: Vec<(usize, usize)>,
}

/// Merges `inputs` (files of one partition under `root`) into new files, calling
/// `create` for each output writer and `keep` for each trace (retention; all are kept
/// by default). Returns the finished outputs; on error, or when `cancel` is set
/// ([`Error::Closed`]), every output is removed.
pub fn merge(
    root: &Path,
    inputs: &[FileMeta],
    options: &CompactionOptions,
    create: &mut dyn FnMut() -> Result<Writer>,
    keep: &dyn Fn(&TraceId) -> bool,
    progress: &dyn Fn(u64),
    cancel: &AtomicBool,
) -> Result<(Vec<FileMeta>, MergeStats)> {
    let mut done: Vec<FileMeta> = Vec::new();
    let mut current: Option<Writer> = None;
    let result = merge_into(
        root,
        inputs,
        options,
        create,
        keep,
        &|rows| {
            if cancel.load(Ordering::Acquire) {
                return Err(Error::Closed);
            }
            progress(rows);
            Ok(())
        },
        &mut current,
        &mut done,
    );
    match result {
        Ok(stats) => Ok((done, stats)),
        Err(e) => {
            if let Some(w) = current.take() {
                w.abandon();
            }
            for f in &done {
                crate::store::remove_file_set(root, f);
            }
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn merge_into(
    root: &Path,
    inputs: &[FileMeta],
    options: &CompactionOptions,
    create: &mut dyn FnMut() -> Result<Writer>,
    keep: &dyn Fn(&TraceId) -> bool,
    progress: &dyn Fn(u64) -> Result<()>,
    current: &mut Option<Writer>,
    done: &mut Vec<FileMeta>,
) -> Result<MergeStats> {
    let mut stats = MergeStats {
        input_files: inputs.len(),
        input_rows: inputs.iter().map(|f| f.rows).sum(),
        input_bytes: inputs.iter().map(|f| f.bytes).sum(),
        ..Default::default()
    };
    // inputs in the order of their first trace; opened when the merge reaches it
    let mut order: Vec<usize> = (0..inputs.len()).filter(|&i| inputs[i].rows > 0).collect();
    // first trace ids as numbers (hex of the 16 bytes: ordered like the bytes)
    let first: Vec<u128> = inputs
        .iter()
        .map(|f| u128::from_str_radix(&f.min_trace_id, 16).unwrap_or(0))
        .collect();
    order.sort_by_key(|&i| first[i]);
    let mut pending = order.into_iter().peekable();
    let mut open: Vec<(usize, Input)> = Vec::new();
    let mut chunk = Chunk::default();
    let mut consumed: u64 = 0;
    let mut group: Vec<GroupRow> = Vec::new();
    loop {
        // open every input whose first trace is at or before the smallest open head
        loop {
            let smallest = open.iter().filter_map(|(_, i)| i.head()).min();
            let due = match (pending.peek(), smallest) {
                (Some(&i), Some(h)) => first[i] <= h,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if !due {
                break;
            }
            let Some(i) = pending.next() else { break };
            let mut input = open_input(root, &inputs[i])?;
            input.refill(&root.join(&inputs[i].path))?;
            if !input.done {
                open.push((i, input));
            }
        }
        let Some(trace) = open.iter().filter_map(|(_, i)| i.head()).min() else {
            break;
        };
        // every row of the trace, from each input holding it
        group.clear();
        for (k, (fi, input)) in open.iter_mut().enumerate() {
            let path = root.join(&inputs[*fi].path);
            while input.head() == Some(trace) {
                let Some(b) = input.batch.clone() else { break };
                let slot = *input.slot.get_or_insert_with(|| {
                    chunk.batches.push(b.clone());
                    chunk.batches.len() - 1
                });
                let Some(cols) = &input.cols else { break };
                let n = b.num_rows();
                while input.row < n && key(cols.trace.value(input.row)) == trace {
                    let r = input.row;
                    group.push(GroupRow {
                        input: k,
                        at: (slot, r),
                        id: cols.id.value(r),
                        version: RowVersion {
                            complete: cols.end.is_valid(r),
                            revision: cols.revision.value(r),
                        },
                        start_ns: cols.start.value(r),
                    });
                    input.row += 1;
                }
                input.refill(&path)?;
            }
        }
        consumed += group.len() as u64;
        let id = TraceId::from_slice(&trace.to_be_bytes()).unwrap_or_default();
        if !keep(&id) {
            stats.dropped_rows += group.len() as u64;
        } else {
            let before = group.len();
            resolve(&mut group);
            stats.replaced_rows += (before - group.len()) as u64;
            chunk.rows.extend(group.iter().map(|g| g.at));
        }
        open.retain(|(_, i)| !i.done);
        if chunk.rows.len() >= options.chunk_rows.max(1) {
            stats.output_rows +=
                write_chunk(&mut chunk, &mut open, current, create, done, options)?;
            progress(consumed)?;
        }
    }
    stats.output_rows += write_chunk(&mut chunk, &mut open, current, create, done, options)?;
    if let Some(w) = current.take() {
        done.push(w.finish()?);
    }
    progress(consumed)?;
    Ok(stats)
}

/// One row of the trace being merged.
struct GroupRow {
    /// Which open input it comes from.
    input: usize,
    /// `(slot, row)` in the chunk's batches.
    at: (usize, usize),
    id: u64,
    version: RowVersion,
    start_ns: i64,
}

/// Keeps the winning version of each id of one trace's rows and orders them by start
/// time (input order among equal starts).
fn resolve(group: &mut Vec<GroupRow>) {
    let first = group.first().map(|g| g.input);
    if group.iter().any(|g| Some(g.input) != first) {
        // only rows from several files can share an id (a file holds each id once)
        let mut best: HashMap<u64, usize> = HashMap::with_capacity(group.len());
        for (i, g) in group.iter().enumerate() {
            match best.get(&g.id) {
                Some(&j) if group[j].version >= g.version => {}
                _ => {
                    best.insert(g.id, i);
                }
            }
        }
        let mut keep = vec![false; group.len()];
        for i in best.into_values() {
            keep[i] = true;
        }
        let mut k = keep.into_iter();
        group.retain(|_| k.next().unwrap_or(false));
        group.sort_by_key(|g| (g.start_ns, g.input));
    }
}

fn write_chunk(
    chunk: &mut Chunk,
    open: &mut [(usize, Input)],
    current: &mut Option<Writer>,
    create: &mut dyn FnMut() -> Result<Writer>,
    done: &mut Vec<FileMeta>,
    options: &CompactionOptions,
) -> Result<u64> {
    let n = chunk.rows.len() as u64;
    if n > 0 {
        let refs: Vec<&RecordBatch> = chunk.batches.iter().collect();
        let batch = interleave_record_batch(&refs, &chunk.rows)?;
        if current.is_none() {
            *current = Some(create()?);
        }
        if let Some(w) = current.as_mut() {
            w.write(&batch)?;
            crate::store::crash_point("compact:mid-output");
            if w.bytes() >= options.max_file_bytes
                && let Some(w) = current.take()
            {
                done.push(w.finish()?);
            }
        }
    }
    // the next chunk starts afresh: batches still being read get a new slot
    chunk.rows.clear();
    chunk.batches.clear();
    for (_, i) in open.iter_mut() {
        i.slot = None;
    }
    Ok(n)
}

/// A trace id's 16 bytes as a number with the same order.
fn key(t: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = t.len().min(16);
    b[..n].copy_from_slice(&t[..n]);
    u128::from_be_bytes(b)
}

fn open_input(root: &Path, meta: &FileMeta) -> Result<Input> {
    let path = root.join(&meta.path);
    let f = File::open(&path).map_err(Error::io(&path))?;
    let pq = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).map_err(pq)?;
    if builder.schema().fields() != crate::schema::spans().fields() {
        return Err(Error::Corrupt {
            what: format!("{}: not the spans schema", path.display()),
        });
    }
    let reader = builder.with_batch_size(BATCH_ROWS).build().map_err(pq)?;
    Ok(Input {
        reader: Some(reader),
        batch: None,
        cols: None,
        slot: None,
        row: 0,
        done: false,
    })
}

/// The columns the merge orders and resolves by (cheap clones of the batch's arrays).
struct KeyCols {
    trace: FixedSizeBinaryArray,
    id: arrow::array::UInt64Array,
    end: arrow::array::Int64Array,
    start: arrow::array::Int64Array,
    revision: arrow::array::UInt64Array,
}

impl KeyCols {
    fn of(b: &RecordBatch) -> Result<KeyCols> {
        let missing = |c: &str| Error::Corrupt {
            what: format!("data file without a readable {c} column"),
        };
        Ok(KeyCols {
            trace: b
                .column_by_name(col::TRACE_ID)
                .and_then(|c| c.as_fixed_size_binary_opt())
                .ok_or_else(|| missing(col::TRACE_ID))?
                .clone(),
            id: b
                .column_by_name(col::ID)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| missing(col::ID))?
                .clone(),
            end: b
                .column_by_name(col::END_NS)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| missing(col::END_NS))?
                .clone(),
            start: b
                .column_by_name(col::START_NS)
                .and_then(|c| c.as_primitive_opt::<Int64Type>())
                .ok_or_else(|| missing(col::START_NS))?
                .clone(),
            revision: b
                .column_by_name(col::REVISION)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| missing(col::REVISION))?
                .clone(),
        })
    }
}
