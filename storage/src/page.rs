//! Reading a few rows of a data file with one zstd context per thread.
//!
//! The `parquet` crate creates a zstd codec (a compression and a decompression context)
//! for every column chunk it opens. Creating a context runs `CPUID`, which traps to the
//! hypervisor on virtual machines: ~15 µs per context on the project's machine, so ~1.1 ms
//! of a 3 ms trace look-up that opens 37 column chunks. Here the chunks are opened as if
//! uncompressed, and each page is decompressed with the calling thread's context.
//!
//! [`read`] is a drop-in for `ParquetRecordBatchReaderBuilder` with row groups and a
//! row selection: the same `RowGroups` and page index, the same decoding.

use std::cell::RefCell;
use std::fs::File;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, RowGroups, RowSelection,
};
use parquet::arrow::parquet_to_arrow_field_levels;
use parquet::basic::Compression;
use parquet::column::page::{Page, PageIterator, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result as PqResult};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData, RowGroupMetaData};
use parquet::file::serialized_reader::SerializedPageReader;

thread_local! {
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Decompresses one zstd frame (a page) with the thread's context.
fn unzstd(compressed: &[u8]) -> PqResult<Vec<u8>> {
    let size = zstd::zstd_safe::get_frame_content_size(compressed)
        .ok()
        .flatten()
        .ok_or_else(|| ParquetError::General("zstd page without a content size".into()))?;
    let size = usize::try_from(size)
        .map_err(|_| ParquetError::General(format!("zstd page of {size} bytes")))?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        let out = d.decompress(compressed, size)?;
        if out.len() != size {
            return Err(ParquetError::General(format!(
                "zstd page decompressed to {} bytes, expected {size}",
                out.len()
            )));
        }
        Ok(out)
    })
}

/// A page reader over a chunk opened as uncompressed: decompresses the pages it returns.
struct Pages {
    inner: SerializedPageReader<File>,
    zstd: bool,
}

impl Pages {
    fn decompress(&self, mut page: Page) -> PqResult<Page> {
        if !self.zstd {
            return Ok(page);
        }
        let whole = |buf: &Bytes| -> PqResult<Bytes> {
            if buf.is_empty() {
                // a page without non-null values may have an empty body
                return Ok(buf.clone());
            }
            Ok(Bytes::from(unzstd(buf)?))
        };
        match &mut page {
            Page::DataPage { buf, .. } | Page::DictionaryPage { buf, .. } => *buf = whole(buf)?,
            Page::DataPageV2 {
                buf,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed,
                ..
            } => {
                // the levels come first, never compressed
                let levels =
                    (*def_levels_byte_len as usize).saturating_add(*rep_levels_byte_len as usize);
                if *is_compressed && buf.len() > levels {
                    let mut out = buf.slice(..levels).to_vec();
                    out.extend_from_slice(&unzstd(&buf[levels..])?);
                    *buf = Bytes::from(out);
                }
                *is_compressed = false;
            }
        }
        Ok(page)
    }
}

impl Iterator for Pages {
    type Item = PqResult<Page>;

    fn next(&mut self) -> Option<Self::Item> {
        self.get_next_page().transpose()
    }
}

impl PageReader for Pages {
    fn get_next_page(&mut self) -> PqResult<Option<Page>> {
        match self.inner.get_next_page()? {
            Some(p) => self.decompress(p).map(Some),
            None => Ok(None),
        }
    }

    fn peek_next_page(&mut self) -> PqResult<Option<PageMetadata>> {
        self.inner.peek_next_page()
    }

    fn skip_next_page(&mut self) -> PqResult<()> {
        self.inner.skip_next_page()
    }

    fn at_record_boundary(&mut self) -> PqResult<bool> {
        self.inner.at_record_boundary()
    }
}

/// Some row groups of a file, their column chunks opened as [`Pages`].
struct Groups {
    file: Arc<File>,
    metadata: Arc<ParquetMetaData>,
    groups: Vec<usize>,
}

struct Chunks {
    file: Arc<File>,
    metadata: Arc<ParquetMetaData>,
    column: usize,
    groups: std::vec::IntoIter<usize>,
}

impl Chunks {
    fn open(&self, g: usize) -> PqResult<Box<dyn PageReader>> {
        let rg = self.metadata.row_group(g);
        let meta: &ColumnChunkMetaData = rg.column(self.column);
        let zstd = match meta.compression() {
            Compression::ZSTD(_) => true,
            Compression::UNCOMPRESSED => false,
            other => {
                return Err(ParquetError::General(format!(
                    "page reader: {other} pages are read by the parquet reader"
                )));
            }
        };
        let raw = meta
            .clone()
            .into_builder()
            .set_compression(Compression::UNCOMPRESSED)
            .build()?;
        let locations = self
            .metadata
            .offset_index()
            .and_then(|i| i.get(g))
            .filter(|columns| !columns.is_empty())
            .and_then(|columns| columns.get(self.column))
            .map(|c| c.page_locations.clone());
        let inner = SerializedPageReader::new(
            Arc::clone(&self.file),
            &raw,
            rg.num_rows() as usize,
            locations,
        )?;
        Ok(Box::new(Pages { inner, zstd }))
    }
}

impl Iterator for Chunks {
    type Item = PqResult<Box<dyn PageReader>>;

    fn next(&mut self) -> Option<Self::Item> {
        let g = self.groups.next()?;
        Some(self.open(g))
    }
}

impl PageIterator for Chunks {}

impl RowGroups for Groups {
    fn num_rows(&self) -> usize {
        self.groups
            .iter()
            .map(|&g| self.metadata.row_group(g).num_rows() as usize)
            .sum()
    }

    fn column_chunks(&self, i: usize) -> PqResult<Box<dyn PageIterator>> {
        Ok(Box::new(Chunks {
            file: Arc::clone(&self.file),
            metadata: Arc::clone(&self.metadata),
            column: i,
            groups: self.groups.clone().into_iter(),
        }))
    }

    fn row_groups(&self) -> Box<dyn Iterator<Item = &RowGroupMetaData> + '_> {
        Box::new(self.groups.iter().map(|&g| self.metadata.row_group(g)))
    }

    fn metadata(&self) -> &ParquetMetaData {
        &self.metadata
    }
}

/// Every column of the rows `selection` selects in `row_groups` (ascending; the selection
/// covers exactly their rows), decoded as the file's Arrow schema says. Files with
/// codecs other than zstd are refused (the caller uses the parquet reader for those).
pub(crate) fn read(
    file: File,
    metadata: &ArrowReaderMetadata,
    row_groups: Vec<usize>,
    selection: RowSelection,
) -> PqResult<Vec<RecordBatch>> {
    let levels = parquet_to_arrow_field_levels(
        metadata.parquet_schema(),
        ProjectionMask::all(),
        Some(metadata.schema().fields()),
    )?;
    let groups = Groups {
        file: Arc::new(file),
        metadata: Arc::clone(metadata.metadata()),
        groups: row_groups,
    };
    let reader =
        ParquetRecordBatchReader::try_new_with_row_groups(&levels, &groups, 8192, Some(selection))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ParquetError::External(Box::new(e)))
}

/// Whether [`read`] can read every column chunk of `row_groups` in `metadata`.
pub(crate) fn readable(metadata: &ParquetMetaData, row_groups: &[usize]) -> bool {
    row_groups.iter().all(|&g| {
        metadata.row_groups().get(g).is_some_and(|rg| {
            rg.columns().iter().all(|c| {
                matches!(
                    c.compression(),
                    Compression::ZSTD(_) | Compression::UNCOMPRESSED
                )
            })
        })
    })
}
