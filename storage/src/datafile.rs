//! Parquet data files: writing a partition's rows, and reading them back.
//!
//! Files are zstd-compressed, sorted by `(trace_id, start_ns)`, with page-level
//! statistics (and so the page index), small pages (8,192 rows or 64 KiB), delta
//! encoding of times, dictionary encoding only on low-cardinality columns, ~128k-row
//! row groups and a bloom filter on `id` (used to detect upserts across files).
//! Key-value metadata carries the format version.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{Int64Type, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{KeyValue, PageIndexPolicy};
use parquet::file::properties::ReaderProperties;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::ReadOptionsBuilder;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::manifest::{FORMAT_VERSION, FileMeta};
use crate::partition::PartitionKey;
use crate::schema::{self, col};

/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Key-value metadata key holding the data format version.
pub const FORMAT_KEY: &str = "tracelake.format_version";

/// Relative path of a data file.
pub fn relative_path(partition: PartitionKey, file_id: u64) -> String {
    format!("spans/{}/{file_id:016x}.parquet", partition.dir_name())
}

/// Rows per data page at most.
pub const PAGE_ROWS: usize = 8192;
/// Bytes per data page at most (before compression).
pub const PAGE_BYTES: usize = 64 * 1024;

fn writer_properties(rows: usize) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            FORMAT_KEY.to_owned(),
            FORMAT_VERSION.to_string(),
        )]));
    for c in schema::DICTIONARY_COLUMNS {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), true);
    }
    // Small pages: a look-up by trace id decodes one page of every column, so pages
    // bound its work (8,192 rows, 64 KiB for the wide JSON columns).
    b = b
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_data_page_size_limit(PAGE_BYTES);
    // Times are nearly sorted (files are sorted by trace id, which starts with the time):
    // deltas are small, compress better and decode faster than zstd over plain values.
    for c in [
        col::START_NS,
        col::END_NS,
        col::POS,
        col::HTTP_CONTENT_LENGTH,
    ] {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    b = b.set_column_dictionary_enabled(ColumnPath::from(col::HTTP_STATUS), true);
    // one filter per row group (column chunk): sized for a row group's ids, not the
    // file's (a 1 GB compaction output would otherwise hold 60 filters of 10 MB each)
    let id = ColumnPath::from(col::ID);
    b = b
        .set_column_bloom_filter_enabled(id.clone(), true)
        .set_column_bloom_filter_max_ndv(id.clone(), rows.clamp(1, ROW_GROUP_ROWS) as u64)
        .set_column_bloom_filter_fpp(id, 0.01);
    b.build()
}

/// Sorts a partition's rows by `(trace_id, start_ns)`.
pub fn sort_rows(batch: &RecordBatch) -> Result<RecordBatch> {
    let by = |name: &str| -> Result<SortColumn> {
        let values = batch.column_by_name(name).ok_or_else(|| Error::Corrupt {
            what: format!("no column {name}"),
        })?;
        Ok(SortColumn {
            values: Arc::clone(values),
            options: None,
        })
    };
    let idx = lexsort_to_indices(&[by(col::TRACE_ID)?, by(col::START_NS)?], None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// Bytes a data file may hold in the page cache before its write-back is forced.
const SYNC_EVERY: usize = 8 << 20;

/// A file writer that syncs every [`SYNC_EVERY`] bytes. On ext4 (ordered data) a WAL
/// fsync waits for the journal commit, which waits for the data of every file written
/// since: a 100 MB data file written in one go held acknowledgements for 100-200 ms
/// (T1b). Written back as it goes, a flush leaves little for a WAL fsync to wait on.
struct Trickle {
    file: File,
    unsynced: usize,
}

impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n;
        if self.unsynced >= SYNC_EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Test support: the rows of documents, sorted as a data file holds them.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn sorted_batch_of(docs: &[String]) -> RecordBatch {
    let mut b = crate::flatten::SpanBuilder::new();
    for (i, d) in docs.iter().enumerate() {
        let doc = crate::segment::parse(d.as_bytes(), &crate::segment::Limits::default()).unwrap();
        b.append_document(&doc, i as u64 + 1, &mut |_, _, _| true);
    }
    sort_rows(&b.finish().unwrap()).unwrap()
}

/// Writes `batch` (rows of one partition) as a new data file under `root`.
pub fn write(
    root: &Path,
    partition: PartitionKey,
    file_id: u64,
    batch: &RecordBatch,
    shadows: bool,
) -> Result<FileMeta> {
    let sorted = sort_rows(batch)?;
    let mut w = Writer::create(root, partition, file_id, sorted.num_rows(), shadows)?;
    match w.write(&sorted) {
        Ok(()) => w.finish(),
        Err(e) => {
            w.abandon();
            Err(e)
        }
    }
}

/// A data file being written, with its index and rollup sidecars built as rows arrive:
/// a flush writes one sorted batch, compaction streams a merge far larger than memory.
/// Nothing is visible until the caller commits the [`FileMeta`] of [`Writer::finish`].
pub struct Writer {
    root: PathBuf,
    partition: PartitionKey,
    file_id: u64,
    rel: String,
    path: PathBuf,
    dir: PathBuf,
    writer: ArrowWriter<Trickle>,
    /// `None` once a piece could not be indexed: the file then has no sidecar and is
    /// scanned (slower, never wrong).
    index: Option<crate::index::IndexBuilder>,
    /// `None` once a piece could not be rolled up: readers scan the file's spans.
    rollup: Option<crate::rollup::RollupBuilder>,
    rows: u64,
    start_ns: Option<(i64, i64)>,
    traces: Option<([u8; 16], [u8; 16])>,
    max_revision: u64,
    shadows: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Writer {
    /// Creates the file of `file_id` in `partition`; `expected_rows` sizes its bloom
    /// filters (an upper bound is fine).
    pub fn create(
        root: &Path,
        partition: PartitionKey,
        file_id: u64,
        expected_rows: usize,
        shadows: bool,
    ) -> Result<Writer> {
        let rel = relative_path(partition, file_id);
        let path = root.join(&rel);
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.to_path_buf());
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        // Make new partition directories durable too (entries in date=, spans/ and the root).
        for d in dir.ancestors().take(4) {
            File::open(d)
                .and_then(|f| f.sync_all())
                .map_err(Error::io(d))?;
        }
        let file = Trickle {
            file: File::create(&path).map_err(Error::io(&path))?,
            unsynced: 0,
        };
        let writer = ArrowWriter::try_new(
            file,
            schema::spans(),
            Some(writer_properties(expected_rows)),
        )
        .map_err(|source| Error::Parquet {
            path: path.clone(),
            source,
        })?;
        Ok(Writer {
            root: root.to_path_buf(),
            partition,
            file_id,
            rel,
            path,
            dir,
            writer,
            index: Some(crate::index::IndexBuilder::default()),
            rollup: Some(crate::rollup::RollupBuilder::default()),
            rows: 0,
            start_ns: None,
            traces: None,
            max_revision: 0,
            shadows,
        })
    }

    /// Appends rows sorted by `(trace_id, start_ns)`, after every row written before, and
    /// holding whole traces (a trace never continues in the next call).
    pub fn write(&mut self, sorted: &RecordBatch) -> Result<()> {
        let n = sorted.num_rows();
        if n == 0 {
            return Ok(());
        }
        let traces = sorted
            .column_by_name(col::TRACE_ID)
            .and_then(|c| c.as_fixed_size_binary_opt())
            .ok_or_else(|| Error::Corrupt {
                what: "no trace_id column".into(),
            })?;
        let id = |i: usize| {
            let mut t = [0u8; 16];
            if traces.value(i).len() == 16 {
                t.copy_from_slice(traces.value(i));
            }
            t
        };
        let (first, last) = (id(0), id(n - 1));
        if self.traces.is_some_and(|(_, hi)| hi > first) {
            return Err(Error::InvalidArgument(
                "rows written out of trace id order".into(),
            ));
        }
        self.writer.write(sorted).map_err(|source| Error::Parquet {
            path: self.path.clone(),
            source,
        })?;
        if let Some(b) = &mut self.index
            && let Err(e) = b.append(sorted)
        {
            tracing::warn!(file = %self.path.display(), error = %e, "no index sidecar");
            self.index = None;
        }
        if let Some(b) = &mut self.rollup
            && let Err(e) = b.append(sorted)
        {
            tracing::warn!(file = %self.path.display(), error = %e, "no rollup sidecar");
            self.rollup = None;
        }
        let starts = sorted
            .column_by_name(col::START_NS)
            .and_then(|c| c.as_primitive_opt::<Int64Type>());
        if let Some(starts) = starts
            && let (Some(lo), Some(hi)) = (arrow::compute::min(starts), arrow::compute::max(starts))
        {
            self.start_ns = Some(match self.start_ns {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
        self.traces = Some(match self.traces {
            Some((lo, _)) => (lo, last),
            None => (first, last),
        });
        let revision = sorted
            .column_by_name(col::REVISION)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .and_then(arrow::compute::max)
            .unwrap_or(0);
        self.max_revision = self.max_revision.max(revision);
        self.rows += n as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes of the file so far (written plus the row group being encoded).
    pub fn bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64
    }

    /// Finishes the file and its sidecars, all fsynced with their directories.
    pub fn finish(self) -> Result<FileMeta> {
        let Writer {
            root,
            partition,
            file_id,
            rel,
            path,
            dir,
            writer,
            index,
            rollup,
            rows,
            start_ns,
            traces,
            max_revision,
            shadows,
        } = self;
        let pq = |source| Error::Parquet {
            path: path.clone(),
            source,
        };
        let file = writer.into_inner().map_err(pq)?.file;
        file.sync_all().map_err(Error::io(&path))?;
        // The index sidecar: synced before the directory, so the manifest never names a
        // file whose sidecar is torn (a damaged one is detected and scanned around anyway).
        if let Some(b) = index {
            match b.finish() {
                Ok(bytes) => crate::index::write(&path, &bytes)?,
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "no index sidecar"),
            }
        }
        // The rollup sidecar: statistics and latency sketches per minute, node and edge.
        let rollup_version = match rollup.map(crate::rollup::RollupBuilder::finish) {
            Some(Ok(r)) => {
                crate::rollup::write(&root, &crate::rollup::relative_path(partition, file_id), &r)?;
                crate::rollup::ROLLUP_VERSION
            }
            Some(Err(e)) => {
                tracing::warn!(file = %path.display(), error = %e, "no rollup sidecar");
                0
            }
            None => 0,
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io(&dir))?;
        let bytes = fs::metadata(&path).map_err(Error::io(&path))?.len();
        let hex = |t: &[u8; 16]| t.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let (min_start_ns, max_start_ns) = start_ns.unwrap_or((0, 0));
        Ok(FileMeta {
            id: file_id,
            partition,
            path: rel,
            rows,
            bytes,
            min_start_ns,
            max_start_ns,
            min_trace_id: traces.map(|(lo, _)| hex(&lo)).unwrap_or_default(),
            max_trace_id: traces.map(|(_, hi)| hex(&hi)).unwrap_or_default(),
            max_revision,
            shadows,
            format_version: FORMAT_VERSION,
            rollup_version,
            shares_traces: false,
            shared_traces: Some(Vec::new()),
        })
    }

    /// Gives the file up: removes what was written (best effort; a file left behind is
    /// an orphan, removed when the store next opens).
    pub fn abandon(self) {
        let path = self.path.clone();
        drop(self.writer);
        let _ = fs::remove_file(crate::index::sidecar_path(&path));
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(
            self.root
                .join(crate::rollup::relative_path(self.partition, self.file_id)),
        );
    }
}

fn open(root: &Path, meta: &FileMeta) -> Result<(File, PathBuf)> {
    let path = root.join(&meta.path);
    let f = File::open(&path).map_err(Error::io(&path))?;
    Ok((f, path))
}

fn check_version(path: &Path, kv: Option<&Vec<KeyValue>>) -> Result<()> {
    let found = kv
        .and_then(|kv| kv.iter().find(|k| k.key == FORMAT_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| v.parse::<u32>().ok());
    match found {
        Some(v) if v <= FORMAT_VERSION => Ok(()),
        Some(v) => Err(Error::UnsupportedFormatVersion {
            path: path.to_path_buf(),
            found: v,
            supported: FORMAT_VERSION,
        }),
        None => Err(Error::Corrupt {
            what: format!("{} has no {FORMAT_KEY} metadata", path.display()),
        }),
    }
}

/// Reads a whole data file (tests, rebuilds and small tools).
pub fn read_all(root: &Path, meta: &FileMeta) -> Result<Vec<RecordBatch>> {
    read_columns(root, meta, None)
}

/// Reads some columns of a data file (all when `columns` is `None`).
pub fn read_columns(
    root: &Path,
    meta: &FileMeta,
    columns: Option<&[&str]>,
) -> Result<Vec<RecordBatch>> {
    read_selected(root, meta, columns, None)
}

/// The footer and page index of a data file, read once to read the file many times
/// ([`read_rows`]).
pub fn reader_metadata(root: &Path, meta: &FileMeta) -> Result<ArrowReaderMetadata> {
    let (f, path) = open(root, meta)?;
    let m = ArrowReaderMetadata::load(
        &f,
        ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
    )
    .map_err(|source| Error::Parquet {
        path: path.clone(),
        source,
    })?;
    check_version(&path, m.metadata().file_metadata().key_value_metadata())?;
    Ok(m)
}

/// Reads some columns of some rows of a data file: the rows in `ranges` (ascending,
/// disjoint), with pages outside them skipped where the page index allows.
pub fn read_columns_of_rows(
    root: &Path,
    meta: &FileMeta,
    columns: &[&str],
    ranges: &[std::ops::Range<u32>],
) -> Result<Vec<RecordBatch>> {
    read_selected(root, meta, Some(columns), Some(ranges))
}

fn read_selected(
    root: &Path,
    meta: &FileMeta,
    columns: Option<&[&str]>,
    ranges: Option<&[std::ops::Range<u32>]>,
) -> Result<Vec<RecordBatch>> {
    let (f, path) = open(root, meta)?;
    let pq = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(if ranges.is_some() {
        PageIndexPolicy::Optional
    } else {
        PageIndexPolicy::Skip
    });
    let mut builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(f, options).map_err(pq)?;
    check_version(
        &path,
        builder.metadata().file_metadata().key_value_metadata(),
    )?;
    if let Some(cols) = columns {
        let schema = builder.parquet_schema();
        let idx: Vec<usize> = (0..schema.num_columns())
            .filter(|&i| cols.contains(&schema.column(i).path().parts()[0].as_str()))
            .collect();
        let mask = ProjectionMask::leaves(schema, idx);
        builder = builder.with_projection(mask);
    }
    if let Some(ranges) = ranges {
        let total = builder.metadata().file_metadata().num_rows().max(0) as usize;
        let selection = RowSelection::from_consecutive_ranges(
            ranges
                .iter()
                .map(|r| r.start as usize..(r.end as usize).min(total)),
            total,
        );
        builder = builder.with_row_selection(selection);
    }
    let reader = builder.with_batch_size(8192).build().map_err(pq)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)
}

/// Reads some rows of a data file: the row groups `row_groups` (ascending), within them
/// the rows `selection` selects (it covers exactly those row groups' rows).
pub fn read_rows(
    root: &Path,
    meta: &FileMeta,
    metadata: &ArrowReaderMetadata,
    row_groups: Vec<usize>,
    selection: RowSelection,
) -> Result<Vec<RecordBatch>> {
    let (f, path) = open(root, meta)?;
    let pq = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    if crate::page::readable(metadata.metadata(), &row_groups) {
        return crate::page::read(f, metadata, row_groups, selection).map_err(pq);
    }
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(f, metadata.clone())
        .with_row_groups(row_groups)
        .with_row_selection(selection)
        .with_batch_size(8192)
        .build()
        .map_err(pq)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)
}

/// The bloom filters of the `id` column, one per row group.
pub fn id_bloom_filters(root: &Path, meta: &FileMeta) -> Result<Vec<Sbbf>> {
    let (f, path) = open(root, meta)?;
    let pq = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let opts = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader = SerializedFileReader::new_with_options(f, opts).map_err(pq)?;
    let id_col = (0..reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .num_columns())
        .find(|&i| {
            reader
                .metadata()
                .file_metadata()
                .schema_descr()
                .column(i)
                .name()
                == col::ID
        })
        .ok_or_else(|| Error::Corrupt {
            what: format!("{} has no id column", path.display()),
        })?;
    let mut out = Vec::new();
    for rg in 0..reader.num_row_groups() {
        let g = reader.get_row_group(rg).map_err(pq)?;
        if let Some(b) = g.get_column_bloom_filter(id_col) {
            out.push(b.clone());
        } else {
            return Err(Error::Corrupt {
                what: format!("{} row group {rg} has no id bloom filter", path.display()),
            });
        }
    }
    Ok(out)
}

/// Whether any bloom filter may hold `id`.
pub fn blooms_may_contain(blooms: &[Sbbf], id: u64) -> bool {
    let v = id as i64;
    blooms.iter().any(|b| b.check(&v))
}

/// Key columns used to resolve upserts: `(trace_id, id, end_ns, revision)`.
pub const KEY_COLUMNS: &[&str] = &[col::TRACE_ID, col::ID, col::END_NS, col::REVISION];

/// Whether a row is complete (has an end time).
pub fn is_complete(end_ns: &dyn Array, row: usize) -> bool {
    end_ns.is_valid(row)
}

/// Row counts of a data file's row groups.
pub fn row_group_sizes(root: &Path, meta: &FileMeta) -> Result<Vec<usize>> {
    let (f, path) = open(root, meta)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(f)
        .map_err(|source| Error::Parquet { path, source })?;
    Ok(builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows() as usize)
        .collect())
}
