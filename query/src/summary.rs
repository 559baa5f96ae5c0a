//! Whole traces: fetching every row of some traces, `TraceSummary` (GetTraceSummaries,
//! SPEC 4.2) and BatchGetTraces documents (SPEC 4.3).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take_record_batch};
use arrow::datatypes::{Float64Type, Int32Type, Schema, UInt64Type};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::{TableProvider, provider_as_source};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlanBuilder, col, lit};
use serde::Serialize;
use serde_json::{Value, json};
use tracelake_storage::TraceId;
use tracelake_storage::rebuild::rebuild;
use tracelake_storage::schema::col as c;
use tracelake_storage::segment::time;

use crate::error::Result;
use crate::provider::SpansTable;
use crate::rootcause::{RootCause, RootCauses};
use crate::trace::{Columns, Node, Trace};

/// Every row of the traces `ids` (all spans columns plus the trace model's derived ones),
/// in one batch.
pub async fn fetch(
    ctx: &SessionContext,
    table: Arc<SpansTable>,
    ids: &[TraceId],
) -> Result<Option<RecordBatch>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let exprs = crate::search::with_derived_columns()?;
    if let Some(batches) = table.read_traces(ids)? {
        // the sidecars located the rows: derive the extra columns without a plan
        let schema = table.schema();
        let batch = concat_batches(&schema, &batches).map_err(DataFusionError::from)?;
        let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
        let state = ctx.state();
        let mut fields = Vec::with_capacity(exprs.len());
        let mut columns = Vec::with_capacity(exprs.len());
        for e in &exprs {
            let (_, field) = e.to_field(&df_schema)?;
            fields.push(field);
            let physical = state.create_physical_expr(e.clone(), &df_schema)?;
            columns.push(physical.evaluate(&batch)?.into_array(batch.num_rows())?);
        }
        let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .map_err(DataFusionError::from)?;
        return Ok(Some(in_trace_order(&out)?));
    }
    let list: Vec<Expr> = ids
        .iter()
        .map(|t| {
            lit(ScalarValue::FixedSizeBinary(
                16,
                Some(t.as_bytes().to_vec()),
            ))
        })
        .collect();
    let source = provider_as_source(table as Arc<dyn TableProvider>);
    let plan = LogicalPlanBuilder::scan("spans", source, None)?
        .filter(col(c::TRACE_ID).in_list(list, false))?
        .project(exprs)?
        .build()?;
    let df = ctx.execute_logical_plan(plan).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let batch = concat_batches(&schema, &batches).map_err(DataFusionError::from)?;
    Ok(Some(in_trace_order(&batch)?))
}

/// Rows sorted by `(trace_id, start_ns, id)`: answers do not depend on the order files
/// were read in (a trace can span files).
fn in_trace_order(batch: &RecordBatch) -> Result<RecordBatch> {
    let mut keys = Vec::new();
    for name in [c::TRACE_ID, c::START_NS, c::ID] {
        let values = batch.column_by_name(name).ok_or_else(|| {
            DataFusionError::Internal(format!("fetched rows have no {name} column"))
        })?;
        keys.push(SortColumn {
            values: Arc::clone(values),
            options: None,
        });
    }
    let order = lexsort_to_indices(&keys, None).map_err(DataFusionError::from)?;
    Ok(take_record_batch(batch, &order).map_err(DataFusionError::from)?)
}

/// Row indices of each trace in a fetched batch, in first-appearance order.
pub(crate) fn group_rows(batch: &RecordBatch) -> Vec<(TraceId, Vec<usize>)> {
    let Some(ids) = batch
        .column_by_name(c::TRACE_ID)
        .and_then(|a| a.as_fixed_size_binary_opt())
    else {
        return Vec::new();
    };
    let mut at: HashMap<TraceId, usize> = HashMap::new();
    let mut out: Vec<(TraceId, Vec<usize>)> = Vec::new();
    for i in 0..ids.len() {
        let Some(t) = TraceId::from_slice(ids.value(i)) else {
            continue;
        };
        let k = *at.entry(t).or_insert_with(|| {
            out.push((t, Vec::new()));
            out.len() - 1
        });
        out[k].1.push(i);
    }
    out
}

pub(crate) fn columns(batch: &RecordBatch) -> std::result::Result<Columns<'_>, String> {
    Columns::resolve(
        batch
            .schema_ref()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| (f.name().as_str(), a)),
    )
}

/// `ServiceId`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceId {
    pub name: String,
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(rename = "Type")]
    pub kind: String,
}

impl From<Node<'_>> for ServiceId {
    fn from(n: Node<'_>) -> Self {
        ServiceId {
            name: n.name.to_owned(),
            names: vec![n.name.to_owned()],
            account_id: n.account.map(str::to_owned),
            kind: n.kind.to_owned(),
        }
    }
}

/// `Http` of a summary (from the root).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpSummary {
    #[serde(rename = "HttpURL", skip_serializing_if = "Option::is_none")]
    pub http_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
}

/// One annotation value and the services that recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AnnotationValueWithServices {
    /// `{"NumberValue": 5}`, `{"StringValue": "x"}` or `{"BooleanValue": true}`.
    pub annotation_value: Value,
    pub service_ids: Vec<ServiceId>,
}

/// `{UserName, ServiceIds}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserSummary {
    pub user_name: String,
    pub service_ids: Vec<ServiceId>,
}

fn causes_json<S: serde::Serializer>(
    v: &[RootCause],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    v.iter()
        .map(RootCause::to_json)
        .collect::<Vec<_>>()
        .serialize(s)
}

fn secs<S: serde::Serializer>(v: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    time::ns_to_seconds(*v).serialize(s)
}

fn opt_secs<S: serde::Serializer>(v: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    v.map(time::ns_to_seconds).serialize(s)
}

/// A `TraceSummary` (SPEC 4.2). Serializes to X-Ray's JSON shape; times are epoch
/// seconds and durations seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TraceSummary {
    pub id: String,
    #[serde(serialize_with = "secs")]
    pub start_time: i64,
    /// Latest end minus earliest start; absent while nothing has ended.
    #[serde(serialize_with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// Root end minus root start.
    #[serde(serialize_with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub response_time: Option<i64>,
    pub has_fault: bool,
    pub has_error: bool,
    pub has_throttle: bool,
    pub is_partial: bool,
    pub http: HttpSummary,
    pub annotations: BTreeMap<String, Vec<AnnotationValueWithServices>>,
    pub users: Vec<UserSummary>,
    pub service_ids: Vec<ServiceId>,
    #[serde(rename = "ResourceARNs")]
    pub resource_arns: Vec<Value>,
    pub instance_ids: Vec<Value>,
    pub availability_zones: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<ServiceId>,
    #[serde(serialize_with = "causes_json")]
    pub fault_root_causes: Vec<RootCause>,
    #[serde(serialize_with = "causes_json")]
    pub error_root_causes: Vec<RootCause>,
    #[serde(serialize_with = "causes_json")]
    pub response_time_root_causes: Vec<RootCause>,
    /// Live documents of the trace (see the issue note on revisions).
    pub revision: u64,
    #[serde(serialize_with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub matched_event_time: Option<i64>,
}

fn str_at<'a>(cols: &Columns<'a>, name: &str, i: usize) -> Option<&'a str> {
    let a = cols.other(name)?.as_string_opt::<i32>()?;
    (!a.is_null(i)).then(|| a.value(i))
}

fn push_service(list: &mut Vec<ServiceId>, n: Option<Node<'_>>) {
    if let Some(n) = n {
        let s = ServiceId::from(n);
        if !list.contains(&s) {
            list.push(s);
        }
    }
}

fn push_unique(list: &mut Vec<Value>, key: &str, v: Option<&str>) {
    if let Some(v) = v {
        let o = json!({ key: v });
        if !list.contains(&o) {
            list.push(o);
        }
    }
}

/// Summarizes one trace of a fetched batch.
pub(crate) fn summarize(t: &Trace<'_>, trace_id: TraceId) -> TraceSummary {
    let cols = t.cols;
    let root = t.root.map(|r| t.rows[r].clone());
    let root_at = root.as_ref().map(|r| r.at);
    let http = root_at.map_or_else(HttpSummary::default, |i| HttpSummary {
        http_url: str_at(cols, c::HTTP_URL, i).map(str::to_owned),
        http_status: cols
            .other(c::HTTP_STATUS)
            .and_then(|a| a.as_primitive_opt::<Int32Type>())
            .and_then(|a| (!a.is_null(i)).then(|| a.value(i))),
        http_method: str_at(cols, c::HTTP_METHOD, i).map(str::to_owned),
        user_agent: str_at(cols, c::HTTP_USER_AGENT, i).map(str::to_owned),
        client_ip: str_at(cols, c::HTTP_CLIENT_IP, i).map(str::to_owned),
    });

    let mut service_ids = Vec::new();
    for n in t.nodes() {
        push_service(&mut service_ids, Some(n));
    }
    let mut users: Vec<UserSummary> = Vec::new();
    let mut annotations: BTreeMap<String, Vec<AnnotationValueWithServices>> = BTreeMap::new();
    let (mut arns, mut instances, mut zones) = (Vec::new(), Vec::new(), Vec::new());
    let ann = cols
        .other(c::ANNOTATIONS)
        .and_then(|a| a.as_list_opt::<i32>());
    let mut revisions: Vec<u64> = Vec::new();
    let revision_col = cols
        .other(c::REVISION)
        .and_then(|a| a.as_primitive_opt::<UInt64Type>());
    for (k, r) in t.rows.iter().enumerate() {
        let i = r.at;
        let node = t.node_of(k);
        if let Some(u) = str_at(cols, c::USER, i) {
            match users.iter_mut().find(|x| x.user_name == u) {
                Some(x) => push_service(&mut x.service_ids, node),
                None => {
                    let mut ids = Vec::new();
                    push_service(&mut ids, node);
                    users.push(UserSummary {
                        user_name: u.to_owned(),
                        service_ids: ids,
                    });
                }
            }
        }
        push_unique(&mut arns, "ARN", str_at(cols, c::RESOURCE_ARN, i));
        push_unique(&mut instances, "Id", str_at(cols, c::INSTANCE_ID, i));
        push_unique(&mut zones, "Name", str_at(cols, c::AVAILABILITY_ZONE, i));
        if let Some(rc) = revision_col
            && !revisions.contains(&rc.value(i))
        {
            revisions.push(rc.value(i));
        }
        if let Some(list) = ann
            && !list.is_null(i)
        {
            let entries = list.value(i);
            let entries = entries.as_struct();
            let keys = entries.column(0).as_string::<i32>();
            let strs = entries.column(1).as_string::<i32>();
            let nums = entries.column(2).as_primitive::<Float64Type>();
            let bools = entries.column(3).as_boolean();
            for j in 0..entries.len() {
                let v = if !strs.is_null(j) {
                    json!({"StringValue": strs.value(j)})
                } else if !nums.is_null(j) {
                    json!({"NumberValue": nums.value(j)})
                } else if !bools.is_null(j) {
                    json!({"BooleanValue": bools.value(j)})
                } else {
                    continue;
                };
                let values = annotations.entry(keys.value(j).to_owned()).or_default();
                match values.iter_mut().find(|x| x.annotation_value == v) {
                    Some(x) => push_service(&mut x.service_ids, node),
                    None => {
                        let mut ids = Vec::new();
                        push_service(&mut ids, node);
                        values.push(AnnotationValueWithServices {
                            annotation_value: v,
                            service_ids: ids,
                        });
                    }
                }
            }
        }
    }
    let causes = RootCauses::of(t);
    TraceSummary {
        id: trace_id.to_string(),
        start_time: t.first_start().unwrap_or(0),
        duration: t.duration_ns(),
        response_time: t.response_ns(),
        has_fault: root.as_ref().is_some_and(|r| r.fault),
        has_error: root.as_ref().is_some_and(|r| r.error),
        has_throttle: t.rows.iter().any(|r| r.throttle),
        is_partial: t.rows.iter().any(|r| r.in_progress),
        http,
        annotations,
        users,
        service_ids,
        resource_arns: arns,
        instance_ids: instances,
        availability_zones: zones,
        entry_point: t.root.map(|r| ServiceId::from(t.segment_node(r))),
        fault_root_causes: causes.fault,
        error_root_causes: causes.error,
        response_time_root_causes: causes.response_time,
        revision: revisions.len().max(1) as u64,
        matched_event_time: None,
    }
}

/// Summaries of the traces `ids`, in the order given (unknown ids are skipped).
pub async fn summaries(
    ctx: &SessionContext,
    table: Arc<SpansTable>,
    ids: &[TraceId],
) -> Result<Vec<TraceSummary>> {
    let Some(batch) = fetch(ctx, table, ids).await? else {
        return Ok(Vec::new());
    };
    let cols = columns(&batch).map_err(DataFusionError::Internal)?;
    let mut by_id: HashMap<TraceId, TraceSummary> = HashMap::new();
    for (tid, rows) in group_rows(&batch) {
        let t = Trace::new(&cols, rows);
        by_id.insert(tid, summarize(&t, tid));
    }
    Ok(ids.iter().filter_map(|i| by_id.remove(i)).collect())
}

/// A trace as BatchGetTraces returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TraceDocuments {
    pub id: String,
    /// Latest end minus earliest start, in seconds.
    #[serde(serialize_with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    pub limit_exceeded: bool,
    pub segments: Vec<SegmentDocument>,
}

/// `{Id, Document}`: the document is JSON text, as in X-Ray.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SegmentDocument {
    pub id: String,
    pub document: String,
}

/// Whole traces: one document per segment with independent subsegments placed under their
/// parents, plus one inferred segment per uninstrumented call (SPEC 4.3, 1.10, 7.7).
/// Unknown ids are left out.
pub async fn documents(
    ctx: &SessionContext,
    table: Arc<SpansTable>,
    ids: &[TraceId],
) -> Result<Vec<TraceDocuments>> {
    let Some(batch) = fetch(ctx, table, ids).await? else {
        return Ok(Vec::new());
    };
    let cols = columns(&batch).map_err(DataFusionError::Internal)?;
    let docs = rebuild(std::slice::from_ref(&batch))?;
    let mut by_trace: HashMap<TraceId, Vec<Value>> = HashMap::new();
    for d in docs {
        by_trace.entry(d.trace_id).or_default().push(d.json);
    }
    let mut out: HashMap<TraceId, TraceDocuments> = HashMap::new();
    for (tid, rows) in group_rows(&batch) {
        let t = Trace::new(&cols, rows);
        let mut docs = by_trace.remove(&tid).unwrap_or_default();
        docs = nest_independent(docs);
        for k in 0..t.rows.len() {
            if t.inferred[k] {
                docs.push(inferred_segment(&t, k, tid, &batch));
            }
        }
        let segments = docs
            .into_iter()
            .map(|d| SegmentDocument {
                id: d.get("id").and_then(Value::as_str).unwrap_or("").to_owned(),
                document: d.to_string(),
            })
            .collect();
        out.insert(
            tid,
            TraceDocuments {
                id: tid.to_string(),
                duration: t.duration_ns(),
                limit_exceeded: false,
                segments,
            },
        );
    }
    Ok(ids.iter().filter_map(|i| out.remove(i)).collect())
}

fn is_independent(d: &Value) -> bool {
    d.get("type").and_then(Value::as_str) == Some("subsegment")
}

/// Deepest nesting of subsegments a returned document may have: nesting streamed
/// subsegments deeper is refused (they stay separate entries), so that chains of
/// thousands of documents cannot exhaust the stack when documents are written or dropped.
const MAX_NESTING: usize = 100;

/// Finds the object with `id` in a document tree (iteratively), with its depth.
fn find_mut<'v>(v: &'v mut Value, id: &str) -> Option<(&'v mut Value, usize)> {
    let mut stack: Vec<(&'v mut Value, usize)> = vec![(v, 0)];
    while let Some((cur, depth)) = stack.pop() {
        if cur.get("id").and_then(Value::as_str) == Some(id) {
            return Some((cur, depth));
        }
        if let Some(subs) = cur.get_mut("subsegments").and_then(Value::as_array_mut) {
            stack.extend(subs.iter_mut().map(|s| (s, depth + 1)));
        }
    }
    None
}

/// Nesting depth of a document's subsegments (iteratively).
fn depth_of(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((cur, d)) = stack.pop() {
        max = max.max(d);
        if let Some(subs) = cur.get("subsegments").and_then(Value::as_array) {
            stack.extend(subs.iter().map(|s| (s, d + 1)));
        }
    }
    max
}

/// Moves independent subsegment documents under their parents (repeatedly, so chains of
/// independent subsegments land too). Those whose parent is absent stay on their own.
fn nest_independent(docs: Vec<Value>) -> Vec<Value> {
    let (mut tops, mut pending): (Vec<Value>, Vec<Value>) =
        docs.into_iter().partition(|d| !is_independent(d));
    loop {
        let mut progressed = false;
        let mut rest = Vec::new();
        for sub in pending {
            let parent = sub
                .get("parent_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let target = parent
                .as_deref()
                .and_then(|p| tops.iter_mut().find_map(|d| find_mut(d, p)))
                .filter(|(_, depth)| depth + 1 + depth_of(&sub) <= MAX_NESTING);
            match target {
                Some((t, _)) => {
                    let mut sub = sub;
                    if let Some(o) = sub.as_object_mut() {
                        o.remove("type");
                        o.remove("parent_id");
                        o.remove("trace_id");
                    }
                    if let Some(o) = t.as_object_mut() {
                        let list = o
                            .entry("subsegments")
                            .or_insert_with(|| Value::Array(Vec::new()));
                        if let Some(a) = list.as_array_mut() {
                            a.push(sub);
                            a.sort_by(|x, y| {
                                let s = |v: &Value| {
                                    v.get("start_time").and_then(Value::as_f64).unwrap_or(0.0)
                                };
                                s(x).total_cmp(&s(y))
                            });
                        }
                    }
                    progressed = true;
                }
                None => rest.push(sub),
            }
        }
        pending = rest;
        if !progressed || pending.is_empty() {
            break;
        }
    }
    tops.extend(pending);
    tops
}

/// The inferred segment for row `k` (SPEC 1.10): a stable new id, the subsegment's name,
/// times, http and aws blocks, `inferred: true` and the inferred type as `origin`.
fn inferred_segment(t: &Trace<'_>, k: usize, tid: TraceId, batch: &RecordBatch) -> Value {
    let r = &t.rows[k];
    let i = r.at;
    // a stable id: a mix of the calling subsegment's id
    let mut x = r.id ^ 0x9e37_79b9_7f4a_7c15;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let mut o = serde_json::Map::new();
    o.insert("id".into(), json!(format!("{x:016x}")));
    o.insert("name".into(), json!(r.name));
    o.insert("trace_id".into(), json!(tid.to_string()));
    o.insert("parent_id".into(), json!(format!("{:016x}", r.id)));
    o.insert("start_time".into(), json!(time::ns_to_seconds(r.start)));
    if let Some(e) = r.end {
        o.insert("end_time".into(), json!(time::ns_to_seconds(e)));
    }
    o.insert("inferred".into(), json!(true));
    if let Some(n) = t.inferred_node(k) {
        o.insert("origin".into(), json!(n.kind));
    }
    for (flag, on) in [
        ("error", r.error),
        ("fault", r.fault),
        ("throttle", r.throttle),
    ] {
        if on {
            o.insert(flag.into(), json!(true));
        }
    }
    let text = |name: &str| -> Option<&str> {
        let a: &ArrayRef = batch.column_by_name(name)?;
        let a = a.as_string_opt::<i32>()?;
        (!a.is_null(i)).then(|| a.value(i))
    };
    let mut request = serde_json::Map::new();
    for (key, column) in [
        ("method", c::HTTP_METHOD),
        ("url", c::HTTP_URL),
        ("user_agent", c::HTTP_USER_AGENT),
        ("client_ip", c::HTTP_CLIENT_IP),
    ] {
        if let Some(v) = text(column) {
            request.insert(key.into(), json!(v));
        }
    }
    let status = batch
        .column_by_name(c::HTTP_STATUS)
        .and_then(|a| a.as_primitive_opt::<Int32Type>())
        .and_then(|a| (!a.is_null(i)).then(|| a.value(i)));
    if !request.is_empty() || status.is_some() {
        let mut http = serde_json::Map::new();
        if !request.is_empty() {
            http.insert("request".into(), Value::Object(request));
        }
        if let Some(s) = status {
            http.insert("response".into(), json!({ "status": s }));
        }
        o.insert("http".into(), Value::Object(http));
    }
    if let Some(aws) = text(c::AWS).and_then(|a| serde_json::from_str::<Value>(a).ok()) {
        o.insert("aws".into(), aws);
    }
    Value::Object(o)
}
