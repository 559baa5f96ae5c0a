//! The record batch each result becomes on its way into an `ArrowArrayStream`: one row
//! per trace summary, segment document, percentile group or service node. How an
//! answer was computed (fast or exact, its error bound) rides in the schema's metadata.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, ListArray, RecordBatch, StringArray, StructArray,
    UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use tracelake::{
    Answered, GroupBy, Percentiles, ServiceGraph, Statistics, TraceSummary, TracesAnswer,
    quantile_name,
};

use crate::{Fail, TL_INTERNAL};

fn internal(e: impl ToString) -> Fail {
    Fail(TL_INTERNAL, e.to_string())
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> Result<(SchemaRef, RecordBatch), Fail> {
    batch_with(Schema::new(fields), columns)
}

fn batch_with(schema: Schema, columns: Vec<ArrayRef>) -> Result<(SchemaRef, RecordBatch), Fail> {
    let schema = Arc::new(schema);
    let b = RecordBatch::try_new(SchemaRef::clone(&schema), columns).map_err(internal)?;
    Ok((schema, b))
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// `mode`, `relative_error`, `exact_because`, `partitions_from_rollups` and
/// `partitions_scanned`, as schema metadata.
fn how(
    mode: Answered,
    relative_error: f64,
    exact_because: Option<&str>,
    from_rollups: usize,
    scanned: usize,
) -> HashMap<String, String> {
    let mut m = HashMap::from([
        ("mode".to_owned(), mode.to_string()),
        ("relative_error".to_owned(), relative_error.to_string()),
        (
            "partitions_from_rollups".to_owned(),
            from_rollups.to_string(),
        ),
        ("partitions_scanned".to_owned(), scanned.to_string()),
    ]);
    if let Some(w) = exact_because {
        m.insert("exact_because".to_owned(), w.to_owned());
    }
    m
}

/// One row per trace: `id`, `start_time`, `duration`, `response_time`, the four flags
/// and `summary`, the X-Ray `TraceSummary` as JSON.
pub(crate) fn summaries(rows: &[TraceSummary]) -> Result<(SchemaRef, RecordBatch), Fail> {
    let json: Vec<String> = rows
        .iter()
        .map(|r| serde_json::to_string(r).map_err(internal))
        .collect::<Result<_, _>>()?;
    let flag = |f: fn(&TraceSummary) -> bool| {
        Arc::new(rows.iter().map(|r| Some(f(r))).collect::<BooleanArray>()) as ArrayRef
    };
    batch(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("start_time", DataType::Float64, false),
            Field::new("duration", DataType::Float64, true),
            Field::new("response_time", DataType::Float64, true),
            Field::new("has_fault", DataType::Boolean, false),
            Field::new("has_error", DataType::Boolean, false),
            Field::new("has_throttle", DataType::Boolean, false),
            Field::new("is_partial", DataType::Boolean, false),
            Field::new("summary", DataType::Utf8, false),
        ],
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.id.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| secs(r.start_time)),
            )),
            Arc::new(
                rows.iter()
                    .map(|r| r.duration.map(secs))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| r.response_time.map(secs))
                    .collect::<Float64Array>(),
            ),
            flag(|r| r.has_fault),
            flag(|r| r.has_error),
            flag(|r| r.has_throttle),
            flag(|r| r.is_partial),
            Arc::new(StringArray::from_iter_values(json.iter())),
        ],
    )
}

/// One row per segment document: `trace_id`, `duration`, `segment_id`, `document`.
pub(crate) fn documents(answer: &TracesAnswer) -> Result<(SchemaRef, RecordBatch), Fail> {
    let (mut trace, mut duration, mut segment, mut document) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in &answer.traces {
        for d in &t.segments {
            trace.push(t.id.as_str());
            duration.push(t.duration.map(secs));
            segment.push(d.id.as_str());
            document.push(d.document.as_str());
        }
    }
    batch(
        vec![
            Field::new("trace_id", DataType::Utf8, false),
            Field::new("duration", DataType::Float64, true),
            Field::new("segment_id", DataType::Utf8, false),
            Field::new("document", DataType::Utf8, false),
        ],
        vec![
            Arc::new(StringArray::from(trace)),
            Arc::new(Float64Array::from(duration)),
            Arc::new(StringArray::from(segment)),
            Arc::new(StringArray::from(document)),
        ],
    )
}

/// `List<Struct<value: Float64, count: UInt64>>` of histograms (`None`: null).
fn histograms<'a>(
    all: impl Iterator<Item = Option<&'a [(f64, u64)]>>,
) -> Result<(Field, ArrayRef), Fail> {
    let (mut lengths, mut valid, mut value, mut count) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for h in all {
        valid.push(h.is_some());
        let h = h.unwrap_or_default();
        lengths.push(h.len());
        value.extend(h.iter().map(|(v, _)| *v));
        count.extend(h.iter().map(|(_, c)| *c));
    }
    let entry = Fields::from(vec![
        Field::new("value", DataType::Float64, false),
        Field::new("count", DataType::UInt64, false),
    ]);
    let entries = StructArray::try_new(
        entry.clone(),
        vec![
            Arc::new(Float64Array::from(value)),
            Arc::new(UInt64Array::from(count)),
        ],
        None,
    )
    .map_err(internal)?;
    let item = Arc::new(Field::new("item", DataType::Struct(entry), false));
    let list = ListArray::try_new(
        Arc::clone(&item),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(entries),
        Some(valid.into()),
    )
    .map_err(internal)?;
    Ok((
        Field::new("histogram", DataType::List(item), true),
        Arc::new(list),
    ))
}

/// One row per group: the key's fields for this grouping (`service`, `type`, `account`;
/// `caller`, `caller_type`, `service`, `type`; `url`; `annotation`; `start`), `count`,
/// `sum` (seconds), a column per quantile (`p50`, `p99.9`, seconds) and, when asked
/// for, `histogram`.
pub(crate) fn percentiles(
    p: &Percentiles,
    by: &GroupBy,
    histogram: bool,
) -> Result<(SchemaRef, RecordBatch), Fail> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in by.key_fields() {
        fields.push(Field::new(*name, DataType::Utf8, true));
        columns.push(Arc::new(
            p.groups
                .iter()
                .map(|g| {
                    g.key
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                })
                .collect::<StringArray>(),
        ));
    }
    fields.push(Field::new("count", DataType::UInt64, false));
    columns.push(Arc::new(UInt64Array::from_iter_values(
        p.groups.iter().map(|g| g.count),
    )));
    fields.push(Field::new("sum", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from_iter_values(
        p.groups.iter().map(|g| g.sum),
    )));
    for (i, q) in p.quantiles.iter().enumerate() {
        fields.push(Field::new(quantile_name(*q), DataType::Float64, true));
        columns.push(Arc::new(
            p.groups
                .iter()
                .map(|g| g.values.get(i).copied())
                .collect::<Float64Array>(),
        ));
    }
    if histogram {
        let (f, c) = histograms(p.groups.iter().map(|g| g.histogram.as_deref()))?;
        fields.push(f);
        columns.push(c);
    }
    let meta = how(
        p.mode,
        p.relative_error,
        p.exact_because.as_deref(),
        p.partitions_from_rollups,
        p.partitions_scanned,
    );
    batch_with(Schema::new_with_metadata(fields, meta), columns)
}

/// `ok_count`, `error_count`, `throttle_count`, `fault_count`, `total_count` and
/// `total_response_time` (seconds) of each statistics (`None`: nulls).
fn statistics<'a>(
    all: impl Iterator<Item = Option<&'a Statistics>> + Clone,
) -> (Vec<Field>, Vec<ArrayRef>) {
    let count = |f: fn(&Statistics) -> u64| {
        Arc::new(all.clone().map(|s| s.map(f)).collect::<UInt64Array>()) as ArrayRef
    };
    let names = [
        "ok_count",
        "error_count",
        "throttle_count",
        "fault_count",
        "total_count",
        "total_response_time",
    ];
    let columns = vec![
        count(|s| s.ok_count),
        count(|s| s.error_statistics.total_count),
        count(|s| s.error_statistics.throttle_count),
        count(|s| s.fault_statistics.total_count),
        count(|s| s.total_count),
        Arc::new(
            all.map(|s| s.map(|s| s.total_response_time))
                .collect::<Float64Array>(),
        ) as ArrayRef,
    ];
    let fields = names
        .iter()
        .zip(&columns)
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
        .collect();
    (fields, columns)
}

/// One row per service node: `reference_id`, `name`, `type`, `account_id`, `root`,
/// `state`, `start_time`, `end_time` (epoch seconds), the node's statistics (null for
/// `client` nodes), `edges` (a list of structs: `reference_id`, `start_time`,
/// `end_time` and the edge's statistics) and `service`, the X-Ray `Service` object as
/// JSON (names, edges and response-time histograms included).
pub(crate) fn service_graph(g: &ServiceGraph) -> Result<(SchemaRef, RecordBatch), Fail> {
    let s = &g.services;
    let json: Vec<String> = s
        .iter()
        .map(|x| serde_json::to_string(x).map_err(internal))
        .collect::<Result<_, _>>()?;
    let mut fields = vec![
        Field::new("reference_id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("account_id", DataType::Utf8, true),
        Field::new("root", DataType::Boolean, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("start_time", DataType::Float64, true),
        Field::new("end_time", DataType::Float64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            s.iter().map(|x| x.reference_id as u64),
        )),
        Arc::new(StringArray::from_iter_values(s.iter().map(|x| &x.name))),
        Arc::new(StringArray::from_iter_values(s.iter().map(|x| &x.kind))),
        Arc::new(
            s.iter()
                .map(|x| x.account_id.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(s.iter().map(|x| Some(x.root)).collect::<BooleanArray>()),
        Arc::new(StringArray::from_iter_values(s.iter().map(|x| x.state))),
        Arc::new(s.iter().map(|x| x.start_time).collect::<Float64Array>()),
        Arc::new(s.iter().map(|x| x.end_time).collect::<Float64Array>()),
    ];
    let (f, c) = statistics(s.iter().map(|x| x.summary_statistics.as_ref()));
    fields.extend(f);
    columns.extend(c);

    let edges: Vec<&tracelake::Edge> = s.iter().flat_map(|x| &x.edges).collect();
    let mut edge_fields = vec![
        Field::new("reference_id", DataType::UInt64, false),
        Field::new("start_time", DataType::Float64, false),
        Field::new("end_time", DataType::Float64, false),
    ];
    let mut edge_columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            edges.iter().map(|e| e.reference_id as u64),
        )),
        Arc::new(Float64Array::from_iter_values(
            edges.iter().map(|e| e.start_time),
        )),
        Arc::new(Float64Array::from_iter_values(
            edges.iter().map(|e| e.end_time),
        )),
    ];
    let (f, c) = statistics(edges.iter().map(|e| Some(&e.summary_statistics)));
    edge_fields.extend(f);
    edge_columns.extend(c);
    let edge_fields = Fields::from(edge_fields);
    let entries =
        StructArray::try_new(edge_fields.clone(), edge_columns, None).map_err(internal)?;
    let item = Arc::new(Field::new("item", DataType::Struct(edge_fields), false));
    let list = ListArray::try_new(
        Arc::clone(&item),
        OffsetBuffer::from_lengths(s.iter().map(|x| x.edges.len())),
        Arc::new(entries),
        None,
    )
    .map_err(internal)?;
    fields.push(Field::new("edges", DataType::List(item), false));
    columns.push(Arc::new(list));
    fields.push(Field::new("service", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from_iter_values(json.iter())));

    let meta = how(
        g.mode,
        g.relative_error,
        g.exact_because.as_deref(),
        g.partitions_from_rollups,
        g.partitions_scanned,
    );
    batch_with(Schema::new_with_metadata(fields, meta), columns)
}
