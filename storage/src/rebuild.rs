//! Rebuilding segment documents from `spans` rows: the inverse of [`crate::flatten`].
//!
//! For every stored document the result is JSON value-equal to what was sent (field
//! order and number spelling may differ; see [`value_eq`]).

use std::collections::HashMap;

use arrow::array::{
    Array, AsArray, BooleanArray, FixedSizeBinaryArray, Float64Array, Int32Array, Int64Array,
    ListArray, RecordBatch, StringArray, StructArray, UInt8Array, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{
    Float64Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::schema::{col, kind, presence};
use crate::segment::{SegmentId, TraceId, time};

/// One rebuilt document.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuiltDocument {
    pub trace_id: TraceId,
    /// Id of the document's top object (segment or independent subsegment).
    pub id: SegmentId,
    pub json: Value,
}

struct Cols<'a> {
    trace_id: &'a FixedSizeBinaryArray,
    id: &'a UInt64Array,
    parent_id: &'a UInt64Array,
    segment_id: &'a UInt64Array,
    kind: &'a UInt8Array,
    pos: &'a UInt32Array,
    name: &'a StringArray,
    origin: &'a StringArray,
    namespace: &'a StringArray,
    start_ns: &'a Int64Array,
    end_ns: &'a Int64Array,
    in_progress: &'a BooleanArray,
    error: &'a BooleanArray,
    fault: &'a BooleanArray,
    throttle: &'a BooleanArray,
    http_method: &'a StringArray,
    http_url: &'a StringArray,
    http_user_agent: &'a StringArray,
    http_client_ip: &'a StringArray,
    http_status: &'a Int32Array,
    http_content_length: &'a Int64Array,
    user: &'a StringArray,
    annotations: &'a ListArray,
    aws: &'a StringArray,
    cause: &'a StringArray,
    sql: &'a StringArray,
    metadata: &'a StringArray,
    resource_arn: &'a StringArray,
    extra: &'a StringArray,
    presence: &'a UInt16Array,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Corrupt {
            what: format!("batch has no column `{name}`"),
        })
}

macro_rules! typed_col {
    ($batch:expr, $name:expr, $conv:ident $(::<$t:ty>)?) => {{
        let c = column($batch, $name)?;
        c.$conv $(::<$t>)? ().ok_or_else(|| Error::Corrupt { what: format!("column `{}` has type {}", $name, c.data_type()) })?
    }};
}

impl<'a> Cols<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self> {
        Ok(Cols {
            trace_id: typed_col!(b, col::TRACE_ID, as_fixed_size_binary_opt),
            id: typed_col!(b, col::ID, as_primitive_opt::<UInt64Type>),
            parent_id: typed_col!(b, col::PARENT_ID, as_primitive_opt::<UInt64Type>),
            segment_id: typed_col!(b, col::SEGMENT_ID, as_primitive_opt::<UInt64Type>),
            kind: typed_col!(b, col::KIND, as_primitive_opt::<UInt8Type>),
            pos: typed_col!(b, col::POS, as_primitive_opt::<UInt32Type>),
            name: typed_col!(b, col::NAME, as_string_opt::<i32>),
            origin: typed_col!(b, col::ORIGIN, as_string_opt::<i32>),
            namespace: typed_col!(b, col::NAMESPACE, as_string_opt::<i32>),
            start_ns: typed_col!(b, col::START_NS, as_primitive_opt::<Int64Type>),
            end_ns: typed_col!(b, col::END_NS, as_primitive_opt::<Int64Type>),
            in_progress: typed_col!(b, col::IN_PROGRESS, as_boolean_opt),
            error: typed_col!(b, col::ERROR, as_boolean_opt),
            fault: typed_col!(b, col::FAULT, as_boolean_opt),
            throttle: typed_col!(b, col::THROTTLE, as_boolean_opt),
            http_method: typed_col!(b, col::HTTP_METHOD, as_string_opt::<i32>),
            http_url: typed_col!(b, col::HTTP_URL, as_string_opt::<i32>),
            http_user_agent: typed_col!(b, col::HTTP_USER_AGENT, as_string_opt::<i32>),
            http_client_ip: typed_col!(b, col::HTTP_CLIENT_IP, as_string_opt::<i32>),
            http_status: typed_col!(b, col::HTTP_STATUS, as_primitive_opt::<Int32Type>),
            http_content_length: typed_col!(
                b,
                col::HTTP_CONTENT_LENGTH,
                as_primitive_opt::<Int64Type>
            ),
            user: typed_col!(b, col::USER, as_string_opt::<i32>),
            annotations: typed_col!(b, col::ANNOTATIONS, as_list_opt::<i32>),
            aws: typed_col!(b, col::AWS, as_string_opt::<i32>),
            cause: typed_col!(b, col::CAUSE, as_string_opt::<i32>),
            sql: typed_col!(b, col::SQL, as_string_opt::<i32>),
            metadata: typed_col!(b, col::METADATA, as_string_opt::<i32>),
            resource_arn: typed_col!(b, col::RESOURCE_ARN, as_string_opt::<i32>),
            extra: typed_col!(b, col::EXTRA, as_string_opt::<i32>),
            presence: typed_col!(b, col::PRESENCE, as_primitive_opt::<UInt16Type>),
        })
    }
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

/// Parses a stored JSON block. sonic-rs accepted it at ingest; a few texts it accepts
/// (a lone surrogate escape, `1e400`) serde_json refuses: those come back as sonic-rs
/// reads them, or as the raw text in a string, never as an error for the whole read.
fn parse_json(text: &str, what: &str) -> Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            tracing::debug!(block = what, error = %e, "stored block is not strict JSON");
            Ok(
                sonic_rs::from_str::<Value>(text)
                    .unwrap_or_else(|_| Value::String(text.to_owned())),
            )
        }
    }
}

fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// Rebuilds every document whose rows are in `batches`. Documents are returned in
/// order of first appearance.
pub fn rebuild(batches: &[RecordBatch]) -> Result<Vec<RebuiltDocument>> {
    // (trace, segment_id) -> rows (batch, row, pos, id, parent)
    struct RowRef {
        batch: usize,
        row: usize,
        pos: u32,
        id: u64,
        parent: Option<u64>,
    }
    let cols = batches.iter().map(Cols::new).collect::<Result<Vec<_>>>()?;
    let mut order: Vec<(TraceId, u64)> = Vec::new();
    let mut docs: HashMap<(TraceId, u64), Vec<RowRef>> = HashMap::new();
    for (bi, c) in cols.iter().enumerate() {
        for r in 0..c.id.len() {
            let trace = TraceId::from_slice(c.trace_id.value(r)).ok_or_else(|| Error::Corrupt {
                what: "trace_id is not 16 bytes".into(),
            })?;
            let key = (trace, c.segment_id.value(r));
            let entry = docs.entry(key).or_insert_with(|| {
                order.push(key);
                Vec::new()
            });
            entry.push(RowRef {
                batch: bi,
                row: r,
                pos: c.pos.value(r),
                id: c.id.value(r),
                parent: c.parent_id.is_valid(r).then(|| c.parent_id.value(r)),
            });
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for key in order {
        let Some(mut rows) = docs.remove(&key) else {
            continue;
        };
        rows.sort_by_key(|r| r.pos);
        // Build objects bottom-up: children are later in pre-order than their parent.
        let mut objs: Vec<Option<Map<String, Value>>> = Vec::with_capacity(rows.len());
        for r in &rows {
            objs.push(Some(node_object(&cols[r.batch], r.row, r.pos == 0)?));
        }
        let index_of: HashMap<u64, usize> =
            rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); rows.len()];
        for (i, r) in rows.iter().enumerate().skip(1) {
            if let Some(&p) = r.parent.and_then(|p| index_of.get(&p))
                && p < i
            {
                children[p].push(i);
            }
        }
        for i in (0..rows.len()).rev() {
            if children[i].is_empty() {
                continue;
            }
            let mut subs = Vec::with_capacity(children[i].len());
            for &c in &children[i] {
                if let Some(obj) = objs[c].take() {
                    subs.push(Value::Object(obj));
                }
            }
            if let Some(Some(obj)) = objs.get_mut(i) {
                // `subsegments` may also come from extra (a null); the rows win.
                obj.insert("subsegments".into(), Value::Array(subs));
            }
        }
        let Some(Some(root)) = objs.into_iter().next() else {
            continue;
        };
        out.push(RebuiltDocument {
            trace_id: key.0,
            id: SegmentId(key.1),
            json: Value::Object(root),
        });
    }
    Ok(out)
}

fn node_object(c: &Cols<'_>, r: usize, is_root: bool) -> Result<Map<String, Value>> {
    let mut o = Map::new();
    let bits = c.presence.value(r);
    let trace = TraceId::from_slice(c.trace_id.value(r)).unwrap_or_default();
    o.insert("name".into(), c.name.value(r).into());
    o.insert("id".into(), SegmentId(c.id.value(r)).to_string().into());
    let independent = is_root && c.kind.value(r) == kind::SUBSEGMENT;
    if is_root || bits & presence::TRACE_ID != 0 {
        o.insert("trace_id".into(), trace.to_string().into());
    }
    if c.parent_id.is_valid(r) && (is_root || bits & presence::PARENT_ID != 0) {
        o.insert(
            "parent_id".into(),
            SegmentId(c.parent_id.value(r)).to_string().into(),
        );
    }
    if independent || bits & presence::TYPE != 0 {
        o.insert("type".into(), "subsegment".into());
    }
    o.insert(
        "start_time".into(),
        number_f(time::ns_to_seconds(c.start_ns.value(r))),
    );
    if c.end_ns.is_valid(r) {
        o.insert(
            "end_time".into(),
            number_f(time::ns_to_seconds(c.end_ns.value(r))),
        );
    }
    for (bit, name, arr) in [
        (presence::IN_PROGRESS, "in_progress", c.in_progress),
        (presence::ERROR, "error", c.error),
        (presence::FAULT, "fault", c.fault),
        (presence::THROTTLE, "throttle", c.throttle),
    ] {
        if bits & bit != 0 {
            o.insert(name.into(), arr.value(r).into());
        }
    }
    for (name, arr) in [
        ("origin", c.origin),
        ("namespace", c.namespace),
        ("user", c.user),
        ("resource_arn", c.resource_arn),
    ] {
        if let Some(v) = opt_str(arr, r) {
            o.insert(name.into(), v.into());
        }
    }
    // http
    let mut req = Map::new();
    for (name, arr) in [
        ("method", c.http_method),
        ("url", c.http_url),
        ("user_agent", c.http_user_agent),
        ("client_ip", c.http_client_ip),
    ] {
        if let Some(v) = opt_str(arr, r) {
            req.insert(name.into(), v.into());
        }
    }
    let mut resp = Map::new();
    if c.http_status.is_valid(r) {
        resp.insert("status".into(), c.http_status.value(r).into());
    }
    if c.http_content_length.is_valid(r) {
        resp.insert(
            "content_length".into(),
            c.http_content_length.value(r).into(),
        );
    }
    if !req.is_empty() || !resp.is_empty() {
        let mut http = Map::new();
        if !req.is_empty() {
            http.insert("request".into(), Value::Object(req));
        }
        if !resp.is_empty() {
            http.insert("response".into(), Value::Object(resp));
        }
        o.insert("http".into(), Value::Object(http));
    }
    if c.annotations.is_valid(r) {
        let list = c.annotations.value(r);
        let s: &StructArray = list.as_struct_opt().ok_or_else(|| Error::Corrupt {
            what: "annotations are not a list of structs".into(),
        })?;
        let keys = s.column(0).as_string_opt::<i32>();
        let strs = s.column(1).as_string_opt::<i32>();
        let nums: Option<&Float64Array> = s.column(2).as_primitive_opt::<Float64Type>();
        let bools = s.column(3).as_boolean_opt();
        let (Some(keys), Some(strs), Some(nums), Some(bools)) = (keys, strs, nums, bools) else {
            return Err(Error::Corrupt {
                what: "annotation entries have unexpected types".into(),
            });
        };
        let mut m = Map::new();
        for i in 0..s.len() {
            let v = if strs.is_valid(i) {
                Value::from(strs.value(i))
            } else if nums.is_valid(i) {
                number(nums.value(i))
            } else if bools.is_valid(i) {
                Value::from(bools.value(i))
            } else {
                Value::Null
            };
            m.insert(keys.value(i).to_owned(), v);
        }
        o.insert("annotations".into(), Value::Object(m));
    }
    for (name, arr) in [
        ("aws", c.aws),
        ("cause", c.cause),
        ("sql", c.sql),
        ("metadata", c.metadata),
    ] {
        if let Some(t) = opt_str(arr, r) {
            o.insert(name.into(), parse_json(t, name)?);
        }
    }
    if bits & presence::EMPTY_SUBSEGMENTS != 0 {
        o.insert("subsegments".into(), Value::Array(Vec::new()));
    }
    if let Some(t) = opt_str(c.extra, r) {
        match parse_json(t, "extra")? {
            Value::Object(extra) => merge(&mut o, extra),
            _ => {
                return Err(Error::Corrupt {
                    what: "stored `extra` is not a JSON object".into(),
                });
            }
        }
    }
    Ok(o)
}

fn number_f(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// Deep-merges `extra` into `o`: objects merge, anything else replaces.
fn merge(o: &mut Map<String, Value>, extra: Map<String, Value>) {
    for (k, v) in extra {
        match (o.get_mut(&k), v) {
            (Some(Value::Object(dst)), Value::Object(src)) => merge(dst, src),
            (_, v) => {
                o.insert(k, v);
            }
        }
    }
}

/// JSON value equality where numbers compare by value (`57` equals `57.0`).
pub fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| value_eq(v, w)))
        }
        _ => a == b,
    }
}
