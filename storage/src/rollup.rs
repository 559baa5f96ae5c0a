//! Rollups: per data file, per minute, the statistics of every service node and every
//! edge of the service graph, with a latency sketch each.
//!
//! Written at flush beside the data file (`rollups/date=…/hour=…/<file-id>.parquet`, a
//! plain Parquet file any engine reads), they let percentiles, the service graph and
//! time series over months merge a few rows per minute instead of scanning spans.
//!
//! One row per (minute, entity, node, caller):
//! - **node** rows: a service node (name, type, account): a real segment's own
//!   statistics, or for an inferred node (SPEC 7.19) its calling subsegments'. `roots`
//!   counts the node's root segments (X-Ray's `Root` flag).
//! - **edge** rows: caller node -> callee node (SPEC 7.20), with the statistics of the
//!   caller's subsegments that made the call; a `client` caller for each root segment.
//!
//! Counts follow X-Ray: `ok` has none of the error, fault and throttle flags, and flags
//! count independently (a 429 counts as error and as throttle). Only completed rows
//! count; an in-progress fragment counts once its completion arrives. Response times
//! are seconds (`end − start`); `sketch` is a [`Sketch`] of them.
//!
//! Rollups are per file, and edges, roots and inferred nodes need whole traces. A flush
//! that cuts a trace lists it on the new file (`FileMeta::shared_traces`); readers merge
//! the rollups and correct for those traces alone (the query layer's `source`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, BooleanBuilder, Float64Builder,
    Int64Builder, RecordBatch, StringArray, StringBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, UInt8Type, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::graph::{self, Links, Shape};
use crate::manifest::FileMeta;
use crate::partition::PartitionKey;
use crate::schema::{col as span, kind};
use crate::sketch::Sketch;

/// The rollup format this build writes and reads.
pub const ROLLUP_VERSION: u32 = 1;
/// Key-value metadata key holding [`ROLLUP_VERSION`].
pub const VERSION_KEY: &str = "tracelake.rollup_version";
/// Nanoseconds per bucket.
pub const MINUTE_NS: i64 = 60_000_000_000;

/// Column names of the `rollups` table.
pub mod col {
    /// Start of the minute, nanoseconds since the epoch.
    pub const MINUTE_NS: &str = "minute_ns";
    /// `node` or `edge`.
    pub const ENTITY: &str = "entity";
    /// The node (for edges: the callee).
    pub const NAME: &str = "name";
    pub const TYPE: &str = "type";
    pub const ACCOUNT_ID: &str = "account_id";
    pub const INFERRED: &str = "inferred";
    /// The caller of an edge (null for nodes).
    pub const CALLER_NAME: &str = "caller_name";
    pub const CALLER_TYPE: &str = "caller_type";
    pub const CALLER_ACCOUNT_ID: &str = "caller_account_id";
    pub const ROOTS: &str = "roots";
    pub const OK: &str = "ok_count";
    pub const ERROR: &str = "error_count";
    pub const THROTTLE: &str = "throttle_count";
    pub const FAULT: &str = "fault_count";
    pub const TOTAL: &str = "total_count";
    /// Sum of response times, seconds.
    pub const RESPONSE_TIME: &str = "total_response_time";
    /// [`crate::sketch::Sketch`] of response times (seconds), encoded.
    pub const SKETCH: &str = "sketch";
}

/// Values of the `entity` column.
pub mod entity {
    pub const NODE: &str = "node";
    pub const EDGE: &str = "edge";
}

/// The type of the synthetic caller of root segments.
pub const CLIENT_TYPE: &str = "client";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    use col::*;
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let u = |n: &str| Field::new(n, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        Field::new(MINUTE_NS, DataType::Int64, false),
        s(ENTITY, false),
        s(NAME, false),
        s(TYPE, false),
        s(ACCOUNT_ID, true),
        Field::new(INFERRED, DataType::Boolean, false),
        s(CALLER_NAME, true),
        s(CALLER_TYPE, true),
        s(CALLER_ACCOUNT_ID, true),
        u(ROOTS),
        u(OK),
        u(ERROR),
        u(THROTTLE),
        u(FAULT),
        u(TOTAL),
        Field::new(RESPONSE_TIME, DataType::Float64, false),
        Field::new(SKETCH, DataType::Binary, false),
    ]))
});

/// The schema of rollup files (the `rollups` table).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// Relative path of the rollup file of data file `file_id`.
pub fn relative_path(partition: PartitionKey, file_id: u64) -> String {
    format!("rollups/{}/{file_id:016x}.parquet", partition.dir_name())
}

/// A service node (SPEC 7.19).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node<'a> {
    pub name: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub account: Option<Cow<'a, str>>,
    pub inferred: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key<'a> {
    minute_ns: i64,
    edge: bool,
    node: Node<'a>,
    caller: Option<Node<'a>>,
}

/// Statistics of one rollup row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub roots: u64,
    pub ok: u64,
    pub error: u64,
    pub throttle: u64,
    pub fault: u64,
    pub total: u64,
    /// Seconds.
    pub response_time: f64,
    pub sketch: Sketch,
}

impl Stats {
    /// Counts one contribution.
    pub fn add(&mut self, x: &Contribution<'_>) {
        self.total += 1;
        self.ok += u64::from(!(x.error || x.fault || x.throttle));
        self.error += u64::from(x.error);
        self.throttle += u64::from(x.throttle);
        self.fault += u64::from(x.fault);
        self.response_time += x.seconds;
        self.sketch.add(x.seconds);
        self.roots += u64::from(x.root);
    }

    /// Takes back one contribution counted before (counts never go below zero).
    pub fn subtract(&mut self, x: &Contribution<'_>) {
        self.total = self.total.saturating_sub(1);
        self.ok = self
            .ok
            .saturating_sub(u64::from(!(x.error || x.fault || x.throttle)));
        self.error = self.error.saturating_sub(u64::from(x.error));
        self.throttle = self.throttle.saturating_sub(u64::from(x.throttle));
        self.fault = self.fault.saturating_sub(u64::from(x.fault));
        self.response_time -= x.seconds;
        self.sketch.remove(x.seconds);
        self.roots = self.roots.saturating_sub(u64::from(x.root));
    }

    /// Adds another row's statistics.
    pub fn merge(&mut self, o: &Stats) {
        self.roots += o.roots;
        self.ok += o.ok;
        self.error += o.error;
        self.throttle += o.throttle;
        self.fault += o.fault;
        self.total += o.total;
        self.response_time += o.response_time;
        self.sketch.merge(&o.sketch);
    }
}

/// What a row contributes, when it has completed.
struct RowFacts {
    start_ns: i64,
    error: bool,
    fault: bool,
    throttle: bool,
    seconds: f64,
}

struct Cols<'a> {
    trace: &'a arrow::array::FixedSizeBinaryArray,
    id: &'a arrow::array::UInt64Array,
    parent: &'a arrow::array::UInt64Array,
    kind: &'a arrow::array::UInt8Array,
    start: &'a arrow::array::Int64Array,
    end: &'a arrow::array::Int64Array,
    in_progress: &'a BooleanArray,
    error: &'a BooleanArray,
    fault: &'a BooleanArray,
    throttle: &'a BooleanArray,
    name: &'a StringArray,
    origin: &'a StringArray,
    namespace: &'a StringArray,
    account: &'a StringArray,
    sql: SqlColumn<'a>,
    aws: &'a StringArray,
}

/// The `sql` column: the JSON text (data files), or whether a row has one (scans that
/// leave the text out, see [`visit`]).
enum SqlColumn<'a> {
    Text(&'a StringArray),
    Present(&'a BooleanArray),
}

impl SqlColumn<'_> {
    fn present(&self, i: usize) -> bool {
        match self {
            SqlColumn::Text(a) => !a.is_null(i),
            SqlColumn::Present(a) => !a.is_null(i) && a.value(i),
        }
    }
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name).ok_or_else(|| Error::Corrupt {
        what: format!("rollup input has no column {name}"),
    })
}

fn typed<'a, T: 'static>(
    b: &'a RecordBatch,
    name: &str,
    f: impl Fn(&'a ArrayRef) -> Option<&'a T>,
) -> Result<&'a T> {
    f(column(b, name)?).ok_or_else(|| Error::Corrupt {
        what: format!("rollup input column {name} has an unexpected type"),
    })
}

impl<'a> Cols<'a> {
    fn of(b: &'a RecordBatch) -> Result<Cols<'a>> {
        let strs = |n: &str| typed(b, n, |a| a.as_string_opt::<i32>());
        let bools = |n: &str| typed(b, n, |a| a.as_boolean_opt());
        Ok(Cols {
            trace: typed(b, span::TRACE_ID, |a| a.as_fixed_size_binary_opt())?,
            id: typed(b, span::ID, |a| a.as_primitive_opt::<UInt64Type>())?,
            parent: typed(b, span::PARENT_ID, |a| a.as_primitive_opt::<UInt64Type>())?,
            kind: typed(b, span::KIND, |a| a.as_primitive_opt::<UInt8Type>())?,
            start: typed(b, span::START_NS, |a| a.as_primitive_opt::<Int64Type>())?,
            end: typed(b, span::END_NS, |a| a.as_primitive_opt::<Int64Type>())?,
            in_progress: bools(span::IN_PROGRESS)?,
            error: bools(span::ERROR)?,
            fault: bools(span::FAULT)?,
            throttle: bools(span::THROTTLE)?,
            name: strs(span::NAME)?,
            origin: strs(span::ORIGIN)?,
            namespace: strs(span::NAMESPACE)?,
            account: strs(span::ACCOUNT_ID)?,
            sql: match column(b, span::SQL)? {
                a if a.data_type() == &DataType::Boolean => SqlColumn::Present(a.as_boolean()),
                a => SqlColumn::Text(a.as_string_opt::<i32>().ok_or_else(|| Error::Corrupt {
                    what: "rollup input column sql is neither text nor a presence flag".into(),
                })?),
            },
            aws: strs(span::AWS)?,
        })
    }

    fn str(a: &'a StringArray, i: usize) -> Option<&'a str> {
        (!a.is_null(i)).then(|| a.value(i))
    }

    fn flag(a: &BooleanArray, i: usize) -> bool {
        !a.is_null(i) && a.value(i)
    }

    fn facts(&self, i: usize) -> Option<RowFacts> {
        if self.end.is_null(i) || Self::flag(self.in_progress, i) {
            return None;
        }
        let start = self.start.value(i);
        let ns = self.end.value(i).saturating_sub(start);
        Some(RowFacts {
            start_ns: start,
            error: Self::flag(self.error, i),
            fault: Self::flag(self.fault, i),
            throttle: Self::flag(self.throttle, i),
            seconds: ns as f64 / 1e9,
        })
    }

    fn segment_node(&self, i: usize) -> Node<'a> {
        Node {
            name: Cow::Borrowed(Self::str(self.name, i).unwrap_or("")),
            kind: Cow::Borrowed(Self::str(self.origin, i).unwrap_or("")),
            account: Self::str(self.account, i).map(Cow::Borrowed),
            inferred: false,
        }
    }

    fn inferred_node(&self, i: usize) -> Node<'a> {
        let name = Self::str(self.name, i).unwrap_or("");
        let kind = graph::inferred_type(
            Self::str(self.namespace, i).unwrap_or(""),
            name,
            self.sql.present(i),
            Self::str(self.aws, i),
        )
        .unwrap_or_else(|| "remote".to_owned());
        Node {
            name: Cow::Borrowed(name),
            kind: Cow::Owned(kind),
            account: None,
            inferred: true,
        }
    }
}

/// One row's contribution to a node or an edge (what [`visit`] reports).
#[derive(Debug, Clone)]
pub struct Contribution<'a> {
    /// The row (of the batch given to [`visit`]) whose statistics these are: the node's
    /// segment, or the calling subsegment of an edge or an inferred node.
    pub row: usize,
    pub edge: bool,
    /// The node, or an edge's callee.
    pub node: Node<'a>,
    /// An edge's caller.
    pub caller: Option<Node<'a>>,
    /// The row is its trace's root segment (node contributions only).
    pub root: bool,
    pub start_ns: i64,
    /// Response time, seconds.
    pub seconds: f64,
    pub error: bool,
    pub fault: bool,
    pub throttle: bool,
}

/// Walks the traces of `sorted` (rows sorted by trace id, each row once; `sql` may be
/// a boolean column saying whether a row has a `sql` block, and `aws` needs to be there
/// only for rows of namespace `aws`) and reports
/// every contribution of a completed row to a node or an edge: the definition the
/// rollups and the exact (scanning) readers share.
pub fn visit<'a>(sorted: &'a RecordBatch, mut f: impl FnMut(&Contribution<'a>)) -> Result<()> {
    let c = Cols::of(sorted)?;
    let n = sorted.num_rows();
    let mut links = Vec::new();
    let mut from = 0;
    while from < n {
        let tid = c.trace.value(from);
        let mut to = from + 1;
        while to < n && c.trace.value(to) == tid {
            to += 1;
        }
        links.clear();
        links.extend((from..to).map(|i| Links {
            id: c.id.value(i),
            parent: (!c.parent.is_null(i)).then(|| c.parent.value(i)),
            segment: c.kind.value(i) == kind::SEGMENT,
            remote: graph::is_remote(Cols::str(c.namespace, i)),
            start: c.start.value(i),
        }));
        visit_trace(&c, from, &links, &mut f);
        from = to;
    }
    Ok(())
}

/// Computes the rollup rows of a data file's rows (sorted by trace id, as
/// [`crate::datafile::sort_rows`] leaves them; each row once).
pub fn build(sorted: &RecordBatch) -> Result<RecordBatch> {
    let mut b = RollupBuilder::default();
    b.append(sorted)?;
    b.finish()
}

/// Builds a file's rollup from its rows given in pieces, each holding whole traces
/// (compaction cuts its output at trace boundaries). Holds one [`Stats`] per rollup
/// row, never the spans.
#[derive(Debug, Default)]
pub struct RollupBuilder {
    acc: HashMap<Key<'static>, Stats, foldhash::fast::RandomState>,
}

impl Node<'_> {
    fn into_owned(self) -> Node<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Node {
            name: own(self.name),
            kind: own(self.kind),
            account: self.account.map(own),
            inferred: self.inferred,
        }
    }
}

impl RollupBuilder {
    /// Adds the contributions of `sorted`'s traces (no trace may continue in another
    /// piece).
    pub fn append(&mut self, sorted: &RecordBatch) -> Result<()> {
        let mut local: HashMap<Key<'_>, Stats, foldhash::fast::RandomState> = HashMap::default();
        visit(sorted, |x| {
            local
                .entry(Key {
                    minute_ns: x.start_ns.div_euclid(MINUTE_NS) * MINUTE_NS,
                    edge: x.edge,
                    node: x.node.clone(),
                    caller: x.caller.clone(),
                })
                .or_default()
                .add(x);
        })?;
        for (k, s) in local {
            let key = Key {
                minute_ns: k.minute_ns,
                edge: k.edge,
                node: k.node.into_owned(),
                caller: k.caller.map(Node::into_owned),
            };
            match self.acc.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().merge(&s),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(s);
                }
            }
        }
        Ok(())
    }

    /// The rollup rows.
    pub fn finish(self) -> Result<RecordBatch> {
        finish(self.acc)
    }
}

fn visit_trace<'a>(
    c: &Cols<'a>,
    base: usize,
    links: &[Links],
    f: &mut impl FnMut(&Contribution<'a>),
) {
    let shape = Shape::new(links);
    let caller_of = |k: usize| shape.seg_of[k].map(|s| c.segment_node(base + s));
    for (k, l) in links.iter().enumerate() {
        let i = base + k;
        let Some(facts) = c.facts(i) else { continue };
        let mut emit = |edge: bool, node: Node<'a>, caller: Option<Node<'a>>, root: bool| {
            f(&Contribution {
                row: i,
                edge,
                node,
                caller,
                root,
                start_ns: facts.start_ns,
                seconds: facts.seconds,
                error: facts.error,
                fault: facts.fault,
                throttle: facts.throttle,
            })
        };
        if l.segment {
            let node = c.segment_node(i);
            let root = shape.root == Some(k);
            if root {
                let client = Node {
                    name: node.name.clone(),
                    kind: Cow::Borrowed(CLIENT_TYPE),
                    account: None,
                    inferred: false,
                };
                emit(true, node.clone(), Some(client), false);
            }
            emit(false, node, None, root);
        } else if shape.inferred[k] {
            let node = c.inferred_node(i);
            if let Some(caller) = caller_of(k) {
                emit(true, node.clone(), Some(caller), false);
            }
            emit(false, node, None, false);
        }
        // A call answered by real segments: one edge per answering segment, with the
        // calling row's statistics.
        for &child in &shape.real_children[k] {
            let callee = c.segment_node(base + child);
            if let Some(caller) = caller_of(k)
                && caller != callee
            {
                emit(true, callee, Some(caller), false);
            }
        }
    }
}

fn finish<S>(acc: HashMap<Key<'_>, Stats, S>) -> Result<RecordBatch> {
    let mut rows: Vec<(Key<'_>, Stats)> = acc.into_iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let n = rows.len();
    let mut minute = Int64Builder::with_capacity(n);
    let mut ent = StringBuilder::new();
    let (mut name, mut kind, mut account) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut inferred = BooleanBuilder::with_capacity(n);
    let (mut cname, mut ckind, mut caccount) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let mut counts: [UInt64Builder; 6] = std::array::from_fn(|_| UInt64Builder::with_capacity(n));
    let mut rt = Float64Builder::with_capacity(n);
    let mut sketch = BinaryBuilder::new();
    for (k, s) in &rows {
        minute.append_value(k.minute_ns);
        ent.append_value(if k.edge { entity::EDGE } else { entity::NODE });
        name.append_value(&k.node.name);
        kind.append_value(&k.node.kind);
        account.append_option(k.node.account.as_deref());
        inferred.append_value(k.node.inferred);
        cname.append_option(k.caller.as_ref().map(|c| &*c.name));
        ckind.append_option(k.caller.as_ref().map(|c| &*c.kind));
        caccount.append_option(k.caller.as_ref().and_then(|c| c.account.as_deref()));
        for (b, v) in counts
            .iter_mut()
            .zip([s.roots, s.ok, s.error, s.throttle, s.fault, s.total])
        {
            b.append_value(v);
        }
        rt.append_value(s.response_time);
        sketch.append_value(s.sketch.encode());
    }
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(minute.finish()),
        Arc::new(ent.finish()),
        Arc::new(name.finish()),
        Arc::new(kind.finish()),
        Arc::new(account.finish()),
        Arc::new(inferred.finish()),
        Arc::new(cname.finish()),
        Arc::new(ckind.finish()),
        Arc::new(caccount.finish()),
    ];
    cols.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    cols.push(Arc::new(rt.finish()));
    cols.push(Arc::new(sketch.finish()));
    Ok(RecordBatch::try_new(schema(), cols)?)
}

/// Writes a rollup file and fsyncs it and the directories it created.
pub fn write(root: &Path, rel: &str, batch: &RecordBatch) -> Result<()> {
    let path = root.join(rel);
    let dir = path.parent().unwrap_or(root).to_path_buf();
    fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let file = File::create(&path).map_err(Error::io(&path))?;
    let pq = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            VERSION_KEY.to_owned(),
            ROLLUP_VERSION.to_string(),
        )]))
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(pq)?;
    w.write(batch).map_err(pq)?;
    let file = w.into_inner().map_err(pq)?;
    file.sync_all().map_err(Error::io(&path))?;
    // date=/hour= directories may be new: make their entries durable (up to the root).
    for d in dir.ancestors().take(4) {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(Error::io(d))?;
    }
    Ok(())
}

/// Reads the rollup rows of a data file; `Ok(None)` when the file has none.
pub fn read(root: &Path, meta: &FileMeta) -> Result<Option<RecordBatch>> {
    if meta.rollup_version == 0 {
        return Ok(None);
    }
    if meta.rollup_version != ROLLUP_VERSION {
        return Err(Error::Corrupt {
            what: format!(
                "{}: rollup format version {}, this build reads {ROLLUP_VERSION}",
                meta.path, meta.rollup_version
            ),
        });
    }
    let path = root.join(relative_path(meta.partition, meta.id));
    let file = File::open(&path).map_err(Error::io(&path))?;
    let pq = |source| Error::Parquet {
        path: path.clone(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
    let same = |a: &Field, b: &Field| a.name() == b.name() && a.data_type() == b.data_type();
    let found = builder.schema();
    let want = schema();
    if found.fields().len() != want.fields().len()
        || !found
            .fields()
            .iter()
            .zip(want.fields())
            .all(|(a, b)| same(a, b))
    {
        return Err(Error::Corrupt {
            what: format!("{} does not have the rollup schema", path.display()),
        });
    }
    let batches = builder
        .build()
        .map_err(pq)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)?;
    Ok(Some(arrow::compute::concat_batches(&want, &batches)?))
}

/// One decoded rollup row, for readers that merge rows in Rust.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub minute_ns: i64,
    pub edge: bool,
    pub node: Node<'static>,
    pub caller: Option<Node<'static>>,
    pub stats: Stats,
}

/// Decodes the rows of a rollup batch; a damaged sketch is an error naming the row.
pub fn rows(batch: &RecordBatch) -> Result<Vec<Row>> {
    let strs = |n: &str| typed(batch, n, |a| a.as_string_opt::<i32>());
    let u64s = |n: &str| typed(batch, n, |a| a.as_primitive_opt::<UInt64Type>());
    let minute = typed(batch, col::MINUTE_NS, |a| a.as_primitive_opt::<Int64Type>())?;
    let ent = strs(col::ENTITY)?;
    let (name, kind, account) = (strs(col::NAME)?, strs(col::TYPE)?, strs(col::ACCOUNT_ID)?);
    let inferred = typed(batch, col::INFERRED, |a| a.as_boolean_opt())?;
    let (cname, ckind, caccount) = (
        strs(col::CALLER_NAME)?,
        strs(col::CALLER_TYPE)?,
        strs(col::CALLER_ACCOUNT_ID)?,
    );
    let counts = [
        u64s(col::ROOTS)?,
        u64s(col::OK)?,
        u64s(col::ERROR)?,
        u64s(col::THROTTLE)?,
        u64s(col::FAULT)?,
        u64s(col::TOTAL)?,
    ];
    let rt = typed(batch, col::RESPONSE_TIME, |a| {
        a.as_primitive_opt::<arrow::datatypes::Float64Type>()
    })?;
    let sk = typed(batch, col::SKETCH, |a| a.as_binary_opt::<i32>())?;
    let owned = |a: &StringArray, i: usize| Cols::str(a, i).map(|s| Cow::Owned(s.to_owned()));
    (0..batch.num_rows())
        .map(|i| {
            let edge = ent.value(i) == entity::EDGE;
            let sketch = Sketch::decode(sk.value(i)).map_err(|e| Error::Corrupt {
                what: format!("rollup row {i}: {e}"),
            })?;
            Ok(Row {
                minute_ns: minute.value(i),
                edge,
                node: Node {
                    name: owned(name, i).unwrap_or_default(),
                    kind: owned(kind, i).unwrap_or_default(),
                    account: owned(account, i),
                    inferred: Cols::flag(inferred, i),
                },
                caller: edge.then(|| Node {
                    name: owned(cname, i).unwrap_or_default(),
                    kind: owned(ckind, i).unwrap_or_default(),
                    account: owned(caccount, i),
                    inferred: false,
                }),
                stats: Stats {
                    roots: counts[0].value(i),
                    ok: counts[1].value(i),
                    error: counts[2].value(i),
                    throttle: counts[3].value(i),
                    fault: counts[4].value(i),
                    total: counts[5].value(i),
                    response_time: rt.value(i),
                    sketch,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(docs: &[String]) -> RecordBatch {
        crate::datafile::sorted_batch_of(docs)
    }

    /// front -> (HTTP call answered by) back; front -> DynamoDB (inferred); back -> an
    /// uninstrumented HTTP API (inferred).
    fn trace(t: u32, front_fault: bool) -> Vec<String> {
        let tid = format!("1-5f5e1000-{t:024x}");
        let fault = if front_fault { r#","fault":true"# } else { "" };
        vec![
            format!(
                r#"{{"trace_id":"{tid}","id":"{:016x}","name":"front","origin":"AWS::EC2::Instance","start_time":1600000000.0,"end_time":1600000000.5{fault},
                "subsegments":[
                  {{"id":"{:016x}","name":"back","namespace":"remote","start_time":1600000000.1,"end_time":1600000000.3,"http":{{"response":{{"status":200}}}}}},
                  {{"id":"{:016x}","name":"DynamoDB","namespace":"aws","start_time":1600000000.3,"end_time":1600000000.4,"throttle":true,"error":true,"aws":{{"table_name":"orders"}}}}
                ]}}"#,
                t * 10 + 1,
                t * 10 + 2,
                t * 10 + 3
            ),
            format!(
                r#"{{"trace_id":"{tid}","id":"{:016x}","parent_id":"{:016x}","name":"back","start_time":1600000000.12,"end_time":1600000000.28,
                "subsegments":[{{"id":"{:016x}","name":"api.example.com","namespace":"remote","start_time":1600000000.13,"end_time":1600000000.2}}]}}"#,
                t * 10 + 4,
                t * 10 + 2,
                t * 10 + 5
            ),
        ]
    }

    fn find<'r>(rows: &'r [Row], edge: bool, name: &str, caller: Option<&str>) -> Vec<&'r Row> {
        rows.iter()
            .filter(|r| {
                r.edge == edge
                    && r.node.name == name
                    && r.caller.as_ref().map(|c| &*c.name) == caller
            })
            .collect()
    }

    #[test]
    fn nodes_edges_inferred_callees_and_client_edges() {
        let docs: Vec<String> = (1..=3).flat_map(|t| trace(t, t == 2)).collect();
        let rows = rows(&build(&batch(&docs)).unwrap()).unwrap();

        let front = find(&rows, false, "front", None);
        assert_eq!(front.len(), 1);
        let s = &front[0].stats;
        assert_eq!((s.total, s.ok, s.fault, s.roots), (3, 2, 1, 3));
        assert_eq!(front[0].node.kind, "AWS::EC2::Instance");
        assert!((s.response_time - 1.5).abs() < 1e-9);
        let p50 = s.sketch.quantile(0.5).unwrap();
        assert!((p50 - 0.5).abs() <= 0.5 * crate::sketch::RELATIVE_ERROR);

        // the real callee: edge statistics are the calling subsegment's (0.2 s)
        let e = find(&rows, true, "back", Some("front"));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].stats.total, 3);
        assert!((e[0].stats.response_time - 0.6).abs() < 1e-9);
        assert!(!e[0].node.inferred);
        // and no inferred "back" node: a real segment answered the call
        assert!(
            find(&rows, false, "back", None)
                .iter()
                .all(|r| !r.node.inferred)
        );

        let d = find(&rows, true, "DynamoDB", Some("front"));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].node.kind, "AWS::DynamoDB::Table");
        assert!(d[0].node.inferred);
        let s = &d[0].stats;
        assert_eq!((s.total, s.ok, s.error, s.throttle), (3, 0, 3, 3));

        let api = find(&rows, true, "api.example.com", Some("back"));
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].node.kind, "remote");

        let client = find(&rows, true, "front", Some("front"));
        assert_eq!(client.len(), 1);
        assert_eq!(
            client[0].caller.as_ref().map(|c| &*c.kind),
            Some(CLIENT_TYPE)
        );
        assert_eq!(client[0].stats.total, 3);
        assert_eq!(client[0].stats.fault, 1);
        // every row in the one minute of the data
        assert!(
            rows.iter()
                .all(|r| r.minute_ns == 1_600_000_000 / 60 * 60 * 1_000_000_000)
        );
    }

    #[test]
    fn in_progress_rows_do_not_count() {
        let d = r#"{"trace_id":"1-5f5e1000-000000000000000000000001","id":"0000000000000001","name":"a","start_time":1600000000,"in_progress":true}"#;
        let rows = rows(&build(&batch(&[d.to_owned()])).unwrap()).unwrap();
        assert!(rows.is_empty());
    }

    #[test]
    fn written_files_read_back_and_versions_are_checked() {
        let docs: Vec<String> = (1..=2).flat_map(|t| trace(t, false)).collect();
        let b = build(&batch(&docs)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = PartitionKey::from_ns(1_600_000_000_000_000_000);
        write(dir.path(), &relative_path(p, 7), &b).unwrap();
        let mut meta = FileMeta {
            id: 7,
            partition: p,
            path: String::new(),
            rows: 0,
            bytes: 0,
            min_start_ns: 0,
            max_start_ns: 0,
            min_trace_id: String::new(),
            max_trace_id: String::new(),
            max_revision: 0,
            shadows: false,
            format_version: crate::manifest::FORMAT_VERSION,
            rollup_version: ROLLUP_VERSION,
            shares_traces: false,
            shared_traces: None,
        };
        assert_eq!(read(dir.path(), &meta).unwrap(), Some(b));
        meta.rollup_version = 0;
        assert_eq!(read(dir.path(), &meta).unwrap(), None);
        meta.rollup_version = 99;
        let e = read(dir.path(), &meta).unwrap_err().to_string();
        assert!(e.contains("version 99"), "{e}");
    }
}
