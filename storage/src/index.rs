//! Index sidecars: one per data file, written beside it at flush.
//!
//! A sidecar answers two questions without reading the Parquet file:
//! - **where is a trace?** A sorted trace directory gives each trace's contiguous row
//!   range (files are sorted by trace id);
//! - **which rows have a value?** For `name`, `origin`, `http_status`, `user`, annotation
//!   keys and string/boolean annotation values, a (column, key, value) term with at least
//!   [`SMALL`] rows has a roaring bitmap of row ordinals; rarer values go to a sorted list of
//!   (hash of the value, row) per (column, key), 12 bytes per row, so high-cardinality
//!   values (order ids) stay cheap. Numeric annotations are a sorted list of (value, row)
//!   per key: equality and ranges are binary searches. The error/fault/throttle flags are
//!   bitmaps.
//!
//! Probes may return more rows than match (hash collisions), never fewer: the query
//! evaluates the filter on what they find.
//!
//! Layout (little-endian):
//! ```text
//! "TLIDX001"  u32 version  u32 reserved  u64 rows
//! u32 traces   traces x (16-byte trace id, u32 first row, u32 row count)
//! u32 terms    terms  x (u8 column, u16 key len, key, u16 value len, value, u64 offset, u32 len)
//! u32 lists    lists  x (u8 kind, u8 column, u16 key len, key, u64 offset, u32 count)
//! bitmaps (roaring portable format) and lists (count x (u64 value, u32 row))
//! u32 crc32 of everything above   "TLIDXEND"
//! ```
//! A sidecar that is missing, damaged or of another version is refused by [`Index::open`];
//! readers then scan the data file instead (never a wrong answer).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type};
use memmap2::Mmap;
pub use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::schema::col;
use crate::segment::TraceId;

const MAGIC: &[u8; 8] = b"TLIDX001";
const END: &[u8; 8] = b"TLIDXEND";
/// Version of the sidecar layout this build writes and reads (others are scanned around).
pub const INDEX_VERSION: u32 = 2;
/// Terms with fewer rows than this go to the hashed lists instead of a bitmap.
pub const SMALL: u64 = 4;

const LIST_HASHED: u8 = 1;
const LIST_NUMBERS: u8 = 2;

/// Indexed columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Column {
    /// key = annotation key, value = [`AnnValue::encode`] (strings and booleans; numbers
    /// are in the numeric lists).
    Annotation = 1,
    /// key = annotation key, value empty: the row has the key.
    AnnotationKey = 2,
    Name = 3,
    Origin = 4,
    /// value = the status as decimal text.
    HttpStatus = 5,
    User = 6,
    Error = 7,
    Fault = 8,
    Throttle = 9,
}

impl Column {
    fn from_u8(v: u8) -> Option<Column> {
        Some(match v {
            1 => Column::Annotation,
            2 => Column::AnnotationKey,
            3 => Column::Name,
            4 => Column::Origin,
            5 => Column::HttpStatus,
            6 => Column::User,
            7 => Column::Error,
            8 => Column::Fault,
            9 => Column::Throttle,
            _ => return None,
        })
    }
}

/// A string or boolean annotation value as index terms encode it (a type tag, then the
/// bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum AnnValue<'a> {
    Str(&'a str),
    Bool(bool),
}

impl AnnValue<'_> {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            AnnValue::Str(s) => {
                let mut v = Vec::with_capacity(1 + s.len());
                v.push(b's');
                v.extend_from_slice(s.as_bytes());
                v
            }
            AnnValue::Bool(b) => vec![b'b', u8::from(*b)],
        }
    }
}

/// Maps an f64 to a u64 with the same order (NaN last; -0.0 and 0.0 equal).
pub fn order_f64(n: f64) -> u64 {
    let n = if n == 0.0 { 0.0 } else { n };
    let bits = n.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The hash of a value in the hashed lists (FNV-1a, 64 bits: stable across builds).
pub fn value_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

type TermKey = (u8, Vec<u8>, Vec<u8>);
/// The hasher of the builder's maps: fast, seeded per process (a crafted flood of
/// colliding values would only slow one build).
type Fast = foldhash::fast::RandomState;
type ListKey = (u8, u8, Vec<u8>);

/// Builds the sidecar of a sorted data file's rows.
pub fn build(sorted: &RecordBatch) -> Result<Vec<u8>> {
    let mut b = IndexBuilder::default();
    b.append(sorted)?;
    b.finish()
}

/// Builds a sidecar from a data file's rows given in pieces, in file order (sorted by
/// trace id): compaction writes files far larger than memory this way. Holds what the
/// sidecar will hold (one bitmap per term, the number lists and the trace directory),
/// never the rows.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    rows: usize,
    terms: HashMap<TermKey, RoaringBitmap, Fast>,
    numbers: HashMap<Vec<u8>, Vec<(u64, u32)>, Fast>,
    runs: Vec<([u8; 16], u32, u32)>,
}

impl IndexBuilder {
    /// Rows appended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends the next rows of the file.
    pub fn append<'b>(&mut self, sorted: &'b RecordBatch) -> Result<()> {
        let bad = |what: &str| Error::Corrupt {
            what: format!("cannot index: {what}"),
        };
        let traces = sorted
            .column_by_name(col::TRACE_ID)
            .and_then(|c| c.as_fixed_size_binary_opt())
            .ok_or_else(|| bad("trace_id"))?;
        let n = sorted.num_rows();
        let base = self.rows;
        if base + n > u32::MAX as usize {
            return Err(bad("more than 2^32 rows in one file"));
        }
        // Terms are collected with keys borrowed from the batch (no allocation per row):
        // (column, key, value tag, value); the tag is 0 or AnnValue's type byte.
        type Found<'k> = HashMap<(u8, &'k [u8], u8, &'k [u8]), RoaringBitmap, Fast>;
        let mut found: Found<'b> = HashMap::default();
        let mut statuses: HashMap<i32, RoaringBitmap, Fast> = HashMap::default();
        let mut numbers: HashMap<&[u8], Vec<(u64, u32)>, Fast> = HashMap::default();
        let mut add = |c: Column, key: &'b [u8], tag: u8, value: &'b [u8], row: usize| {
            found
                .entry((c as u8, key, tag, value))
                .or_default()
                .insert((base + row) as u32);
        };
        // A column the index cannot read fails the build (the file then has no sidecar and
        // is scanned): an index silently missing a column would prune matching traces.
        let text = |name: &str| {
            sorted
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| bad(name))
        };
        // one map per plain column, keyed by the value alone (the hot loop of flushes
        // and compaction: one short comparison per row and column)
        type Values<'k> = HashMap<&'k [u8], RoaringBitmap, Fast>;
        let mut plain: Vec<(Column, Values<'b>)> = Vec::new();
        for (c, name) in [
            (Column::Name, col::NAME),
            (Column::Origin, col::ORIGIN),
            (Column::User, col::USER),
        ] {
            let a = text(name)?;
            let mut m: Values<'b> = HashMap::default();
            for r in 0..n {
                if !a.is_null(r) {
                    m.entry(a.value(r).as_bytes())
                        .or_default()
                        .insert((base + r) as u32);
                }
            }
            plain.push((c, m));
        }
        let status = sorted
            .column_by_name(col::HTTP_STATUS)
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or_else(|| bad(col::HTTP_STATUS))?;
        for r in 0..n {
            if !status.is_null(r) {
                statuses
                    .entry(status.value(r))
                    .or_default()
                    .insert((base + r) as u32);
            }
        }
        let mut flags: Vec<(Column, RoaringBitmap)> = Vec::new();
        for (c, name) in [
            (Column::Error, col::ERROR),
            (Column::Fault, col::FAULT),
            (Column::Throttle, col::THROTTLE),
        ] {
            let a = sorted
                .column_by_name(name)
                .and_then(|c| c.as_boolean_opt())
                .ok_or_else(|| bad(name))?;
            let rows = (0..n)
                .filter(|&r| !a.is_null(r) && a.value(r))
                .map(|r| (base + r) as u32);
            let bm = RoaringBitmap::from_sorted_iter(rows).map_err(|e| bad(&e.to_string()))?;
            flags.push((c, bm));
        }
        {
            let list = sorted
                .column_by_name(col::ANNOTATIONS)
                .and_then(|c| c.as_list_opt::<i32>())
                .ok_or_else(|| bad(col::ANNOTATIONS))?;
            let entries = list.values().as_struct();
            let (Some(keys), Some(strs), Some(nums), Some(bools)) = (
                entries.column(0).as_string_opt::<i32>(),
                entries.column(1).as_string_opt::<i32>(),
                entries.column(2).as_primitive_opt::<Float64Type>(),
                entries.column(3).as_boolean_opt(),
            ) else {
                return Err(bad("annotation entries"));
            };
            let offsets = list.value_offsets();
            for r in 0..n {
                if list.is_null(r) {
                    continue;
                }
                for j in offsets[r] as usize..offsets[r + 1] as usize {
                    let key = keys.value(j).as_bytes();
                    add(Column::AnnotationKey, key, 0, b"", r);
                    if !strs.is_null(j) {
                        add(Column::Annotation, key, b's', strs.value(j).as_bytes(), r);
                    } else if !nums.is_null(j) {
                        numbers
                            .entry(key)
                            .or_default()
                            .push((order_f64(nums.value(j)), (base + r) as u32));
                    } else if !bools.is_null(j) {
                        let v: &'static [u8] = if bools.value(j) { &[1] } else { &[0] };
                        add(Column::Annotation, key, b'b', v, r);
                    }
                }
            }
        }

        // into the owned tables (an allocation per distinct term and piece, not per row)
        for (c, m) in plain {
            for (value, bm) in m {
                *self
                    .terms
                    .entry((c as u8, Vec::new(), value.to_vec()))
                    .or_default() |= bm;
            }
        }
        for (c, bm) in flags {
            if !bm.is_empty() {
                *self
                    .terms
                    .entry((c as u8, Vec::new(), Vec::new()))
                    .or_default() |= bm;
            }
        }
        for ((c, key, tag, value), bm) in found {
            let mut v = Vec::with_capacity(value.len() + 1);
            if tag != 0 {
                v.push(tag);
            }
            v.extend_from_slice(value);
            *self.terms.entry((c, key.to_vec(), v)).or_default() |= bm;
        }
        for (status, bm) in statuses {
            let key = (
                Column::HttpStatus as u8,
                Vec::new(),
                status.to_string().into_bytes(),
            );
            *self.terms.entry(key).or_default() |= bm;
        }
        for (key, values) in numbers {
            self.numbers.entry(key.to_vec()).or_default().extend(values);
        }
        // the trace directory: runs of equal trace ids
        for r in 0..n {
            let t = traces.value(r);
            match self.runs.last_mut() {
                Some(last) if last.0 == t => last.2 += 1,
                _ => {
                    let mut id = [0u8; 16];
                    id.copy_from_slice(t);
                    if self.runs.last().is_some_and(|l| l.0 > id) {
                        return Err(bad("rows are not sorted by trace id"));
                    }
                    self.runs.push((id, (base + r) as u32, 1));
                }
            }
        }
        self.rows += n;
        Ok(())
    }

    /// The sidecar's bytes.
    pub fn finish(self) -> Result<Vec<u8>> {
        let bad = |what: &str| Error::Corrupt {
            what: format!("cannot index: {what}"),
        };
        let IndexBuilder {
            rows: n,
            terms,
            numbers,
            runs,
        } = self;
        let mut terms: BTreeMap<TermKey, RoaringBitmap> = terms.into_iter().collect();
        let numbers: BTreeMap<Vec<u8>, Vec<(u64, u32)>> = numbers.into_iter().collect();

        // rare values leave the term table for the hashed lists
        let mut lists: BTreeMap<ListKey, Vec<(u64, u32)>> = BTreeMap::new();
        terms.retain(|(c, key, value), bm| {
            let flag = matches!(
                Column::from_u8(*c),
                Some(Column::Error | Column::Fault | Column::Throttle)
            );
            if flag || (bm.len() >= SMALL && value.len() <= u16::MAX as usize) {
                return true;
            }
            let h = value_hash(value);
            let list = lists.entry((LIST_HASHED, *c, key.clone())).or_default();
            list.extend(bm.iter().map(|r| (h, r)));
            false
        });
        for (key, values) in numbers {
            lists.insert((LIST_NUMBERS, Column::Annotation as u8, key), values);
        }
        for l in lists.values_mut() {
            l.sort_unstable();
        }

        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        // trace directory
        out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
        for (id, first, count) in &runs {
            out.extend_from_slice(id);
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        // both tables first (their sizes fix the absolute offsets), then the data
        let fits = |k: &[u8]| k.len() <= u16::MAX as usize;
        if terms.keys().any(|(_, k, _)| !fits(k)) || lists.keys().any(|(_, _, k)| !fits(k)) {
            return Err(bad("an annotation key longer than 65,535 bytes"));
        }
        let mut blobs: Vec<(&TermKey, Vec<u8>)> = Vec::with_capacity(terms.len());
        for (term, bm) in &terms {
            let mut blob = Vec::with_capacity(bm.serialized_size());
            bm.serialize_into(&mut blob)
                .map_err(|e| bad(&e.to_string()))?;
            blobs.push((term, blob));
        }
        let lists: Vec<(&ListKey, &Vec<(u64, u32)>)> = lists.iter().collect();
        let terms_bytes: usize = blobs
            .iter()
            .map(|((_, k, v), _)| 17 + k.len() + v.len())
            .sum();
        let lists_bytes: usize = lists.iter().map(|((_, _, k), _)| 16 + k.len()).sum();
        let mut offset = (out.len() + 4 + terms_bytes + 4 + lists_bytes) as u64;
        out.extend_from_slice(&(blobs.len() as u32).to_le_bytes());
        for ((c, key, value), blob) in &blobs {
            out.push(*c);
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
            offset += blob.len() as u64;
        }
        out.extend_from_slice(&(lists.len() as u32).to_le_bytes());
        for ((kind, c, key), entries) in &lists {
            out.push(*kind);
            out.push(*c);
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            offset += entries.len() as u64 * 12;
        }
        for (_, blob) in &blobs {
            out.extend_from_slice(blob);
        }
        for (_, entries) in &lists {
            for (v, r) in entries.iter() {
                out.extend_from_slice(&v.to_le_bytes());
                out.extend_from_slice(&r.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(END);
        Ok(out)
    }
}

/// Frames `body` (everything after the version: reserved word, row count, tables and
/// data) as a sidecar with a valid checksum, for tests and fuzzing of what lies behind it.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(END);
    out
}

/// The row count a sidecar's header states, if it is long enough to state one.
pub fn stated_rows(file: &[u8]) -> Option<u64> {
    read_u64(file, 16)
}

/// The sidecar path of a data file.
pub fn sidecar_path(data_file: &Path) -> PathBuf {
    let name = data_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `_` prefix: Hive dataset readers (pyarrow, Spark) skip it
    data_file.with_file_name(format!("_{name}.idx"))
}

/// Writes a sidecar durably (the caller syncs the directory).
pub fn write(data_file: &Path, bytes: &[u8]) -> Result<()> {
    let path = sidecar_path(data_file);
    let mut f = File::create(&path).map_err(Error::io(&path))?;
    f.write_all(bytes).map_err(Error::io(&path))?;
    f.sync_all().map_err(Error::io(&path))?;
    Ok(())
}

/// One entry of the term table.
#[derive(Debug, Clone)]
struct Term {
    column: u8,
    key: (usize, usize),
    value: (usize, usize),
    offset: usize,
    len: usize,
}

/// One entry of the list table.
#[derive(Debug, Clone)]
struct List {
    kind: u8,
    column: u8,
    key: (usize, usize),
    offset: usize,
    count: usize,
}

/// An open sidecar (memory-mapped).
#[derive(Debug)]
pub struct Index {
    map: Backing,
    rows: u64,
    traces_at: usize,
    traces: usize,
    terms: Vec<Term>,
    lists: Vec<List>,
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A sidecar's bytes: mapped from its file, or owned (decoding from memory).
#[derive(Debug)]
enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

impl Index {
    /// Opens and checks the sidecar of `data_file`, which must hold `rows` rows.
    pub fn open(data_file: &Path, rows: u64) -> Result<Index> {
        let path = sidecar_path(data_file);
        let f = File::open(&path).map_err(Error::io(&path))?;
        // SAFETY: sidecars are written once, fsync'd before the manifest names their data
        // file, and never modified afterwards; the map is only read.
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&f) }.map_err(Error::io(&path))?;
        Index::decode(&path, Backing::Map(map), rows)
    }

    /// Checks and opens sidecar bytes held in memory (`path` names them in errors).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>, rows: u64) -> Result<Index> {
        Index::decode(path, Backing::Owned(bytes), rows)
    }

    fn decode(path: &Path, map: Backing, rows: u64) -> Result<Index> {
        let corrupt = |what: &str| Error::Corrupt {
            what: format!("{}: {what}", path.display()),
        };
        let b: &[u8] = &map;
        if b.len() < 48 || &b[..8] != MAGIC || &b[b.len() - 8..] != END {
            return Err(corrupt("not an index sidecar"));
        }
        let version = read_u32(b, 8).ok_or_else(|| corrupt("short"))?;
        if version != INDEX_VERSION {
            return Err(Error::UnsupportedFormatVersion {
                path: path.to_path_buf(),
                found: version,
                supported: INDEX_VERSION,
            });
        }
        let body = b.len() - 12;
        let crc = read_u32(b, body).ok_or_else(|| corrupt("short"))?;
        if crc32fast::hash(&b[..body]) != crc {
            return Err(corrupt("checksum mismatch"));
        }
        let file_rows = read_u64(b, 16).ok_or_else(|| corrupt("short"))?;
        if file_rows != rows {
            return Err(corrupt(&format!(
                "indexes {file_rows} rows, the data file has {rows}"
            )));
        }
        let short = || corrupt("short table");
        let traces = read_u32(b, 24).ok_or_else(short)? as usize;
        let traces_at: usize = 28;
        let mut at = traces_at
            .checked_add(traces.checked_mul(24).ok_or_else(short)?)
            .ok_or_else(short)?;
        let n_terms = read_u32(b, at).ok_or_else(short)? as usize;
        at += 4;
        let mut terms = Vec::with_capacity(n_terms.min(body / 17));
        for _ in 0..n_terms {
            let column = *b.get(at).ok_or_else(short)?;
            let kl = read_u16(b, at + 1).ok_or_else(short)? as usize;
            let key = (at + 3, at + 3 + kl);
            let vl = read_u16(b, key.1).ok_or_else(short)? as usize;
            let value = (key.1 + 2, key.1 + 2 + vl);
            let offset = read_u64(b, value.1).ok_or_else(short)? as usize;
            let len = read_u32(b, value.1 + 8).ok_or_else(short)? as usize;
            if offset.checked_add(len).is_none_or(|e| e > body) {
                return Err(corrupt("bitmap out of bounds"));
            }
            terms.push(Term {
                column,
                key,
                value,
                offset,
                len,
            });
            at = value.1 + 12;
        }
        let n_lists = read_u32(b, at).ok_or_else(short)? as usize;
        at += 4;
        let mut lists = Vec::with_capacity(n_lists.min(body / 16));
        for _ in 0..n_lists {
            let kind = *b.get(at).ok_or_else(short)?;
            let column = *b.get(at + 1).ok_or_else(short)?;
            let kl = read_u16(b, at + 2).ok_or_else(short)? as usize;
            let key = (at + 4, at + 4 + kl);
            let offset = read_u64(b, key.1).ok_or_else(short)? as usize;
            let count = read_u32(b, key.1 + 8).ok_or_else(short)? as usize;
            if count
                .checked_mul(12)
                .and_then(|n| offset.checked_add(n))
                .is_none_or(|e| e > body)
            {
                return Err(corrupt("list out of bounds"));
            }
            lists.push(List {
                kind,
                column,
                key,
                offset,
                count,
            });
            at = key.1 + 12;
        }
        if at > body {
            return Err(corrupt("tables out of bounds"));
        }
        let index = Index {
            map,
            rows,
            traces_at,
            traces,
            terms,
            lists,
        };
        index.check_order().map_err(corrupt)?;
        Ok(index)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The binary searches rely on sorted tables and a contiguous trace directory: a
    /// sidecar that breaks that (even with a valid checksum) is refused.
    fn check_order(&self) -> std::result::Result<(), &'static str> {
        let mut next_row: u64 = 0;
        let mut last: Option<[u8; 16]> = None;
        for i in 0..self.traces {
            let (t, first, count) = self.trace(i);
            if u64::from(first) != next_row || count == 0 || last.is_some_and(|l| l >= t) {
                return Err("trace directory out of order");
            }
            next_row += u64::from(count);
            last = Some(t);
        }
        if next_row != self.rows {
            return Err("trace directory does not cover the rows");
        }
        let term_key = |t: &Term| (t.column, self.bytes(t.key), self.bytes(t.value));
        if self
            .terms
            .windows(2)
            .any(|w| term_key(&w[0]) >= term_key(&w[1]))
        {
            return Err("term table out of order");
        }
        let list_key = |l: &List| (l.kind, l.column, self.bytes(l.key));
        if self
            .lists
            .windows(2)
            .any(|w| list_key(&w[0]) >= list_key(&w[1]))
        {
            return Err("list table out of order");
        }
        for l in &self.lists {
            if (1..l.count).any(|i| self.entry(l, i - 1) > self.entry(l, i)) {
                return Err("list out of order");
            }
        }
        Ok(())
    }

    fn trace(&self, i: usize) -> ([u8; 16], u32, u32) {
        let at = self.traces_at + i * 24;
        let b: &[u8] = &self.map;
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[at..at + 16]);
        let first = read_u32(b, at + 16).unwrap_or(0);
        let count = read_u32(b, at + 20).unwrap_or(0);
        (id, first, count)
    }

    /// Number of distinct traces in the file.
    pub fn trace_count(&self) -> usize {
        self.traces
    }

    /// The row range of a trace in the file, if it has rows there.
    pub fn trace_rows(&self, id: &TraceId) -> Option<std::ops::Range<u32>> {
        let (mut lo, mut hi) = (0, self.traces);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (t, first, count) = self.trace(mid);
            match t.cmp(id.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(first..first.saturating_add(count)),
            }
        }
        None
    }

    /// The trace a row belongs to.
    pub fn trace_of_row(&self, row: u32) -> Option<TraceId> {
        let pos = self.trace_position_of_row(row, 0)?;
        self.trace_at(pos).map(|(t, _)| t)
    }

    /// The smallest and largest trace id of the file (`None` when it has no rows).
    pub fn trace_bounds(&self) -> Option<(TraceId, TraceId)> {
        let last = self.traces.checked_sub(1)?;
        Some((TraceId(self.trace(0).0), TraceId(self.trace(last).0)))
    }

    /// Positions in the trace directory of the traces in `[lo, hi]`.
    pub fn trace_positions(&self, lo: &TraceId, hi: &TraceId) -> std::ops::Range<usize> {
        let first_not_below = |bound: &[u8; 16], inclusive: bool| {
            let (mut a, mut b) = (0, self.traces);
            while a < b {
                let mid = (a + b) / 2;
                let t = self.trace(mid).0;
                if t < *bound || (inclusive && t == *bound) {
                    a = mid + 1;
                } else {
                    b = mid;
                }
            }
            a
        };
        let from = first_not_below(lo.as_bytes(), false);
        let to = first_not_below(hi.as_bytes(), true);
        from..to.max(from)
    }

    /// The position in the trace directory of the trace holding `row`, searching from
    /// position `from` on (rows ascending: pass the last answer).
    pub fn trace_position_of_row(&self, row: u32, from: usize) -> Option<usize> {
        let (mut lo, mut hi) = (from.min(self.traces), self.traces);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (_, first, count) = self.trace(mid);
            if row < first {
                hi = mid;
            } else if row >= first.saturating_add(count) {
                lo = mid + 1;
            } else {
                return Some(mid);
            }
        }
        None
    }

    /// The trace at a position of the trace directory, with its rows.
    pub fn trace_at(&self, pos: usize) -> Option<(TraceId, std::ops::Range<u32>)> {
        if pos >= self.traces {
            return None;
        }
        let (t, first, count) = self.trace(pos);
        Some((TraceId(t), first..first.saturating_add(count)))
    }

    /// Every term of the term table as (column, key, value); terms of columns this build
    /// does not know are left out.
    pub fn terms(&self) -> impl Iterator<Item = (Column, &[u8], &[u8])> + '_ {
        self.terms.iter().filter_map(|t| {
            Some((
                Column::from_u8(t.column)?,
                self.bytes(t.key),
                self.bytes(t.value),
            ))
        })
    }

    /// Every trace of the file.
    pub fn traces(&self) -> impl Iterator<Item = TraceId> + '_ {
        (0..self.traces).map(|i| TraceId(self.trace(i).0))
    }

    fn bytes(&self, r: (usize, usize)) -> &[u8] {
        &self.map[r.0..r.1]
    }

    fn bitmap(&self, t: &Term) -> Result<RoaringBitmap> {
        RoaringBitmap::deserialize_from(&self.map[t.offset..t.offset + t.len]).map_err(|e| {
            Error::Corrupt {
                what: format!("index bitmap: {e}"),
            }
        })
    }

    fn list(&self, kind: u8, column: Column, key: &[u8]) -> Option<&List> {
        let c = column as u8;
        let i = self
            .lists
            .partition_point(|l| (l.kind, l.column, self.bytes(l.key)) < (kind, c, key));
        self.lists
            .get(i)
            .filter(|l| (l.kind, l.column, self.bytes(l.key)) == (kind, c, key))
    }

    fn entry(&self, l: &List, i: usize) -> (u64, u32) {
        let at = l.offset + i * 12;
        (
            read_u64(&self.map, at).unwrap_or(0),
            read_u32(&self.map, at + 8).unwrap_or(0),
        )
    }

    /// Rows of a list whose value lies in `[lo, hi]`.
    fn list_rows(&self, l: &List, lo: u64, hi: u64, out: &mut RoaringBitmap) {
        let (mut a, mut b) = (0, l.count);
        while a < b {
            let mid = (a + b) / 2;
            if self.entry(l, mid).0 < lo {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        for i in a..l.count {
            let (v, r) = self.entry(l, i);
            if v > hi {
                break;
            }
            out.insert(r);
        }
    }

    /// Rows with the value `value` of (column, key): its bitmap and its hashed entries.
    pub fn probe(&self, column: Column, key: &[u8], value: &[u8]) -> Result<RoaringBitmap> {
        let c = column as u8;
        let i = self.terms.partition_point(|t| {
            (t.column, self.bytes(t.key), self.bytes(t.value)) < (c, key, value)
        });
        let mut out = match self.terms.get(i) {
            Some(t) if (t.column, self.bytes(t.key), self.bytes(t.value)) == (c, key, value) => {
                self.bitmap(t)?
            }
            _ => RoaringBitmap::new(),
        };
        if let Some(l) = self.list(LIST_HASHED, column, key) {
            let h = value_hash(value);
            self.list_rows(l, h, h, &mut out);
        }
        self.clip(&mut out);
        Ok(out)
    }

    /// Drops rows past the data file: only a damaged sidecar (with a valid checksum)
    /// names them, and callers turn rows into Parquet row selections.
    fn clip(&self, rows: &mut RoaringBitmap) {
        if let Ok(end) = u32::try_from(self.rows) {
            rows.remove_range(end..);
        }
    }

    /// Rows whose numeric annotation `key` lies between the bounds.
    pub fn probe_numbers(&self, key: &[u8], from: Bound<f64>, to: Bound<f64>) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let lo = match from {
            Bound::Included(x) => order_f64(x),
            Bound::Excluded(x) => match order_f64(x).checked_add(1) {
                Some(v) => v,
                None => return out,
            },
            Bound::Unbounded => 0,
        };
        let hi = match to {
            Bound::Included(x) => order_f64(x),
            Bound::Excluded(x) => match order_f64(x).checked_sub(1) {
                Some(v) => v,
                None => return out,
            },
            Bound::Unbounded => u64::MAX,
        };
        if lo <= hi
            && let Some(l) = self.list(LIST_NUMBERS, Column::Annotation, key)
        {
            self.list_rows(l, lo, hi, &mut out);
        }
        self.clip(&mut out);
        out
    }

    /// Checks every bitmap decodes and every column is known (tests and tools).
    pub fn verify(&self) -> Result<()> {
        for t in &self.terms {
            if Column::from_u8(t.column).is_none() {
                return Err(Error::Corrupt {
                    what: format!("index column {}", t.column),
                });
            }
            self.bitmap(t)?;
        }
        Ok(())
    }
}

/// Removes a data file's sidecar (compaction and retention).
pub fn remove(data_file: &Path) -> Result<()> {
    let path = sidecar_path(data_file);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { path, source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(docs: &[String]) -> RecordBatch {
        crate::datafile::sorted_batch_of(docs)
    }

    fn doc(trace: u32, id: u32, extra: &str) -> String {
        format!(
            r#"{{"trace_id":"1-5f5e1000-{trace:024x}","id":"{id:016x}","name":"svc{}","start_time":1600000000,"end_time":1600000001{extra}}}"#,
            trace % 3
        )
    }

    fn open(docs: &[String]) -> (tempfile::TempDir, Index, RecordBatch) {
        let b = batch(docs);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("part.parquet");
        write(&data, &build(&b).unwrap()).unwrap();
        let i = Index::open(&data, b.num_rows() as u64).unwrap();
        (dir, i, b)
    }

    fn rows(bm: RoaringBitmap) -> Vec<u32> {
        bm.iter().collect()
    }

    #[test]
    fn terms_ranges_and_traces() {
        let docs = vec![
            doc(
                1,
                1,
                r#","annotations":{"tenant":"acme","n":5},"fault":true"#,
            ),
            doc(
                2,
                2,
                r#","annotations":{"tenant":"globex","n":-1.5},"http":{"response":{"status":500}}"#,
            ),
            doc(3, 3, r#","annotations":{"n":12,"flag":true},"user":"bob""#),
            doc(
                2,
                4,
                r#","parent_id":"0000000000000002","origin":"AWS::EC2::Instance""#,
            ),
        ];
        let (_d, i, b) = open(&docs);
        i.verify().unwrap();
        assert_eq!(i.trace_count(), 3);
        let t2 = TraceId::parse("1-5f5e1000-000000000000000000000002").unwrap();
        assert_eq!(i.trace_rows(&t2).map(|r| r.len()), Some(2));
        assert!(
            i.trace_rows(&TraceId::parse("1-5f5e1000-000000000000000000000009").unwrap())
                .is_none()
        );
        // rows are sorted by trace: trace 1 is row 0, trace 2 rows 1-2, trace 3 row 3
        let acme = AnnValue::Str("acme").encode();
        assert_eq!(
            rows(i.probe(Column::Annotation, b"tenant", &acme).unwrap()),
            vec![0]
        );
        assert_eq!(
            rows(i.probe(Column::AnnotationKey, b"tenant", b"").unwrap()),
            vec![0, 1]
        );
        assert_eq!(rows(i.probe(Column::Fault, b"", b"").unwrap()), vec![0]);
        assert_eq!(
            rows(i.probe(Column::HttpStatus, b"", b"500").unwrap()),
            vec![1]
        );
        assert_eq!(rows(i.probe(Column::User, b"", b"bob").unwrap()), vec![3]);
        assert_eq!(
            rows(i.probe(Column::Origin, b"", b"AWS::EC2::Instance").unwrap()),
            vec![2]
        );
        // n > 5 -> 12 only; n >= 5 -> 5 and 12; n < 5 -> -1.5; n = 12
        let n = |from, to| rows(i.probe_numbers(b"n", from, to));
        assert_eq!(n(Bound::Excluded(5.0), Bound::Unbounded), vec![3]);
        assert_eq!(n(Bound::Included(5.0), Bound::Unbounded), vec![0, 3]);
        assert_eq!(n(Bound::Unbounded, Bound::Excluded(5.0)), vec![1]);
        assert_eq!(n(Bound::Included(12.0), Bound::Included(12.0)), vec![3]);
        assert!(n(Bound::Included(6.0), Bound::Included(7.0)).is_empty());
        assert!(rows(i.probe_numbers(b"missing", Bound::Unbounded, Bound::Unbounded)).is_empty());
        assert_eq!(i.trace_of_row(2), Some(t2));
        assert_eq!(i.rows(), b.num_rows() as u64);
    }

    #[test]
    fn common_values_get_bitmaps_and_rare_ones_hashed_lists() {
        let docs: Vec<String> = (0..40)
            .map(|t| {
                doc(
                    t,
                    t + 1,
                    &format!(r#","annotations":{{"tenant":"acme","order":"o-{t}"}}"#),
                )
            })
            .collect();
        let (_d, i, _) = open(&docs);
        let acme = AnnValue::Str("acme").encode();
        assert_eq!(
            i.probe(Column::Annotation, b"tenant", &acme).unwrap().len(),
            40
        );
        for t in [0u32, 17, 39] {
            let v = AnnValue::Str(&format!("o-{t}")).encode();
            let got = rows(i.probe(Column::Annotation, b"order", &v).unwrap());
            assert_eq!(got.len(), 1, "o-{t}");
            let id = TraceId::parse(&format!("1-5f5e1000-{t:024x}")).unwrap();
            assert_eq!(i.trace_of_row(got[0]), Some(id));
        }
        let none = AnnValue::Str("o-99").encode();
        assert!(
            i.probe(Column::Annotation, b"order", &none)
                .unwrap()
                .is_empty()
        );
        // only the common term has a bitmap
        assert_eq!(
            i.terms
                .iter()
                .filter(|t| t.column == Column::Annotation as u8)
                .count(),
            1
        );
    }

    #[test]
    fn number_encoding_keeps_order() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            1e300,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            assert!(order_f64(w[0]) <= order_f64(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!(order_f64(-0.0), order_f64(0.0));
    }

    #[test]
    fn damaged_sidecars_are_refused() {
        let docs = vec![doc(1, 1, r#","annotations":{"tenant":"acme"}"#)];
        let b = batch(&docs);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("part.parquet");
        let bytes = build(&b).unwrap();
        let n = b.num_rows() as u64;
        // missing
        assert!(Index::open(&data, n).is_err());
        // every single flipped byte is detected
        for at in (0..bytes.len()).step_by(7) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            write(&data, &bad).unwrap();
            assert!(Index::open(&data, n).is_err(), "flip at {at}");
        }
        // truncated
        write(&data, &bytes[..bytes.len() / 2]).unwrap();
        assert!(Index::open(&data, n).is_err());
        // wrong row count (a sidecar of another file)
        write(&data, &bytes).unwrap();
        assert!(Index::open(&data, n + 1).is_err());
        assert!(Index::open(&data, n).is_ok());
        // a newer version
        let mut newer = bytes.clone();
        newer[8..12].copy_from_slice(&(INDEX_VERSION + 1).to_le_bytes());
        write(&data, &newer).unwrap();
        assert!(matches!(
            Index::open(&data, n),
            Err(Error::UnsupportedFormatVersion { .. })
        ));
        // a checksum-valid sidecar whose trace directory is out of order
        let two = vec![doc(1, 1, ""), doc(2, 2, "")];
        let b2 = batch(&two);
        let mut crafted = build(&b2).unwrap();
        let first = 28; // the trace directory
        let (a, b) = crafted[first..first + 48].split_at_mut(24);
        a.swap_with_slice(b);
        let body = crafted.len() - 12;
        let crc = crc32fast::hash(&crafted[..body]);
        crafted[body..body + 4].copy_from_slice(&crc.to_le_bytes());
        write(&data, &crafted).unwrap();
        assert!(Index::open(&data, b2.num_rows() as u64).is_err());
        // and an older one (the first development layout)
        newer[8..12].copy_from_slice(&1u32.to_le_bytes());
        write(&data, &newer).unwrap();
        assert!(matches!(
            Index::open(&data, n),
            Err(Error::UnsupportedFormatVersion { .. })
        ));
    }
}
