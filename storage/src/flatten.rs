//! Flattening validated documents into `spans` rows (Arrow builders).
//!
//! Each segment and subsegment becomes one row, in pre-order (`pos`). Whatever a column
//! cannot hold exactly (unknown fields, nulls, a string `content_length`, an explicit
//! `"error": false`, a time with more than nanosecond precision, ...) is written to the
//! `extra` JSON object or the `presence` bits, so [`crate::rebuild`] is lossless.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder, StructBuilder, UInt8Builder, UInt16Builder,
    UInt32Builder, UInt64Builder,
};
use arrow::error::ArrowError;

use crate::schema::{self, kind, presence};
use crate::segment::{
    AnnotationValue, Document, Extra, Http, RawJson, Segment, SegmentId, Str, TraceId, time,
};

/// The identity of a row for upserts (SPEC 7.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub trace_id: TraceId,
    pub id: u64,
}

/// Arrow builders for the `spans` schema.
#[derive(Debug)]
pub struct SpanBuilder {
    trace_id: FixedSizeBinaryBuilder,
    id: UInt64Builder,
    parent_id: UInt64Builder,
    segment_id: UInt64Builder,
    kind: UInt8Builder,
    pos: UInt32Builder,
    name: StringBuilder,
    origin: StringBuilder,
    namespace: StringBuilder,
    start_ns: Int64Builder,
    end_ns: Int64Builder,
    in_progress: BooleanBuilder,
    error: BooleanBuilder,
    fault: BooleanBuilder,
    throttle: BooleanBuilder,
    http_method: StringBuilder,
    http_url: StringBuilder,
    http_user_agent: StringBuilder,
    http_client_ip: StringBuilder,
    http_status: Int32Builder,
    http_content_length: Int64Builder,
    user: StringBuilder,
    annotations: ListBuilder<StructBuilder>,
    aws: StringBuilder,
    cause: StringBuilder,
    sql: StringBuilder,
    metadata: StringBuilder,
    account_id: StringBuilder,
    instance_id: StringBuilder,
    availability_zone: StringBuilder,
    resource_arn: StringBuilder,
    extra: StringBuilder,
    presence: UInt16Builder,
    revision: UInt64Builder,
    rows: usize,
    /// Scratch buffer for `extra`.
    scratch: String,
}

impl Default for SpanBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SpanBuilder {
    pub fn new() -> Self {
        let ann = StructBuilder::from_fields(schema::annotation_fields(), 0);
        SpanBuilder {
            trace_id: FixedSizeBinaryBuilder::new(16),
            id: UInt64Builder::new(),
            parent_id: UInt64Builder::new(),
            segment_id: UInt64Builder::new(),
            kind: UInt8Builder::new(),
            pos: UInt32Builder::new(),
            name: StringBuilder::new(),
            origin: StringBuilder::new(),
            namespace: StringBuilder::new(),
            start_ns: Int64Builder::new(),
            end_ns: Int64Builder::new(),
            in_progress: BooleanBuilder::new(),
            error: BooleanBuilder::new(),
            fault: BooleanBuilder::new(),
            throttle: BooleanBuilder::new(),
            http_method: StringBuilder::new(),
            http_url: StringBuilder::new(),
            http_user_agent: StringBuilder::new(),
            http_client_ip: StringBuilder::new(),
            http_status: Int32Builder::new(),
            http_content_length: Int64Builder::new(),
            user: StringBuilder::new(),
            annotations: ListBuilder::new(ann).with_field(schema::annotation_item()),
            aws: StringBuilder::new(),
            cause: StringBuilder::new(),
            sql: StringBuilder::new(),
            metadata: StringBuilder::new(),
            account_id: StringBuilder::new(),
            instance_id: StringBuilder::new(),
            availability_zone: StringBuilder::new(),
            resource_arn: StringBuilder::new(),
            extra: StringBuilder::new(),
            presence: UInt16Builder::new(),
            revision: UInt64Builder::new(),
            rows: 0,
            scratch: String::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends every row of `doc`. `keep(key, row_index, complete)` decides per row
    /// (upserts); `row_index` is the index the row gets if kept. Returns rows appended.
    pub fn append_document<'a, B: RawJson<'a>>(
        &mut self,
        doc: &Document<'a, B>,
        revision: u64,
        keep: &mut dyn FnMut(RowKey, usize, bool) -> bool,
    ) -> usize {
        let before = self.rows;
        let root_parent = doc
            .root
            .parent_id
            .as_deref()
            .and_then(SegmentId::parse)
            .map(|p| p.0);
        let mut pos = 0u32;
        let ctx = DocCtx {
            trace_id: doc.trace_id,
            segment_id: doc.id.0,
            revision,
            independent: doc.independent,
        };
        self.append_node(&ctx, &doc.root, None, root_parent, &mut pos, keep);
        self.rows - before
    }

    fn append_node<'a, B: RawJson<'a>>(
        &mut self,
        ctx: &DocCtx,
        s: &Segment<'a, B>,
        enclosing: Option<u64>,
        parent: Option<u64>,
        pos: &mut u32,
        keep: &mut dyn FnMut(RowKey, usize, bool) -> bool,
    ) {
        // validation guarantees the id parses
        let id =
            s.id.as_deref()
                .and_then(SegmentId::parse)
                .map_or(0, |i| i.0);
        let my_pos = *pos;
        *pos += 1;
        let complete = s.end_time.is_some();
        if keep(
            RowKey {
                trace_id: ctx.trace_id,
                id,
            },
            self.rows,
            complete,
        ) {
            self.append_row(ctx, s, id, enclosing, parent, my_pos);
        }
        if let Some(subs) = &s.subsegments {
            for sub in subs {
                self.append_node(ctx, sub, Some(id), Some(id), pos, keep);
            }
        }
    }

    fn append_row<'a, B: RawJson<'a>>(
        &mut self,
        ctx: &DocCtx,
        s: &Segment<'a, B>,
        id: u64,
        enclosing: Option<u64>,
        parent: Option<u64>,
        pos: u32,
    ) {
        let is_root = enclosing.is_none();
        let mut extra = std::mem::take(&mut self.scratch);
        extra.clear();
        let mut ex = ObjWriter::new(&mut extra);
        let mut bits = 0u16;

        self.trace_id.append_value(ctx.trace_id.as_bytes()).ok();
        self.id.append_value(id);
        self.parent_id.append_option(parent);
        self.segment_id.append_value(ctx.segment_id);
        let row_kind = if is_root && !ctx.independent {
            kind::SEGMENT
        } else {
            kind::SUBSEGMENT
        };
        self.kind.append_value(row_kind);
        self.pos.append_value(pos);
        self.name
            .append_value(s.name.as_deref().unwrap_or_default());
        self.origin.append_option(s.origin.as_deref());
        self.namespace.append_option(s.namespace.as_deref());

        // ids as sent, when their text is not the canonical lower-case form
        if let Some(t) = s.id.as_deref()
            && t.bytes().any(|c| c.is_ascii_uppercase())
        {
            ex.str("id", t);
        }
        match s.trace_id.as_deref() {
            Some(t)
                if !is_root
                    && TraceId::parse(t) == Some(ctx.trace_id)
                    && !t.bytes().any(|c| c.is_ascii_uppercase()) =>
            {
                bits |= presence::TRACE_ID
            }
            Some(t) if is_root && !t.bytes().any(|c| c.is_ascii_uppercase()) => {}
            Some(t) => ex.str("trace_id", t),
            None => {}
        }
        match (s.parent_id.as_deref(), enclosing) {
            (Some(p), Some(enc))
                if SegmentId::parse(p) == Some(SegmentId(enc))
                    && !p.bytes().any(|c| c.is_ascii_uppercase()) =>
            {
                bits |= presence::PARENT_ID
            }
            (Some(p), None) if !p.bytes().any(|c| c.is_ascii_uppercase()) => {}
            (Some(p), _) => ex.str("parent_id", p),
            (None, _) => {}
        }
        match s.kind.as_deref() {
            Some("subsegment") if !is_root => bits |= presence::TYPE,
            Some("subsegment") if ctx.independent => {}
            Some(t) => ex.str("type", t),
            None => {}
        }

        // times
        let start = s.start_time.unwrap_or(0.0);
        match time::seconds_to_ns(start) {
            Some(ns) => self.start_ns.append_value(ns),
            None => {
                self.start_ns
                    .append_value(time::seconds_to_ns_lossy(start).unwrap_or(0));
                ex.f64("start_time", start);
            }
        }
        match s.end_time {
            Some(end) => match time::seconds_to_ns(end) {
                Some(ns) => self.end_ns.append_value(ns),
                None => {
                    self.end_ns.append_option(time::seconds_to_ns_lossy(end));
                    ex.f64("end_time", end);
                }
            },
            None => self.end_ns.append_null(),
        }

        // flags
        let flag = |v: Option<bool>, bit: u16, bits: &mut u16| {
            if v.is_some() {
                *bits |= bit;
            }
            v.unwrap_or(false)
        };
        self.in_progress
            .append_value(flag(s.in_progress, presence::IN_PROGRESS, &mut bits));
        self.error
            .append_value(flag(s.error, presence::ERROR, &mut bits));
        self.fault
            .append_value(flag(s.fault, presence::FAULT, &mut bits));
        self.throttle
            .append_value(flag(s.throttle, presence::THROTTLE, &mut bits));
        if let Some(t) = s.traced {
            ex.bool("traced", t);
        }

        self.append_http(s.http.as_ref(), &mut ex);
        self.user.append_option(s.user.as_deref());
        self.resource_arn.append_option(s.resource_arn.as_deref());

        // annotations
        match &s.annotations {
            None => self.annotations.append_null(),
            Some(anns) => {
                let items = self.annotations.values();
                for (k, v) in anns {
                    let (sv, nv, bv) = match v {
                        AnnotationValue::Str(x) => (Some(&**x), None, None),
                        AnnotationValue::Num(x) => (None, Some(*x), None),
                        AnnotationValue::Bool(x) => (None, None, Some(*x)),
                        AnnotationValue::Invalid(_) => (None, None, None),
                    };
                    field::<StringBuilder>(items, 0).append_value(&**k);
                    field::<StringBuilder>(items, 1).append_option(sv);
                    field::<Float64Builder>(items, 2).append_option(nv);
                    field::<BooleanBuilder>(items, 3).append_option(bv);
                    items.append(true);
                }
                self.annotations.append(true);
            }
        }

        // open JSON blocks, verbatim
        self.aws.append_option(s.aws.as_ref().map(|v| v.text()));
        self.cause.append_option(s.cause.as_ref().map(|v| v.text()));
        self.sql.append_option(s.sql.as_ref().map(|v| v.text()));
        self.metadata
            .append_option(s.metadata.as_ref().map(|v| v.text()));
        let promoted = s
            .aws
            .as_ref()
            .map(|a| AwsPromoted::read(a.text()))
            .unwrap_or_default();
        self.account_id
            .append_option(promoted.account_id.as_deref());
        self.instance_id
            .append_option(promoted.instance_id.as_deref());
        self.availability_zone
            .append_option(promoted.availability_zone.as_deref());
        if let Some(v) = &s.service {
            ex.raw("service", v.text());
        }
        if let Some(v) = &s.links {
            ex.raw("links", v.text());
        }
        if let Some(ids) = &s.precursor_ids {
            ex.key("precursor_ids");
            ex.out.push('[');
            for (i, p) in ids.iter().enumerate() {
                if i > 0 {
                    ex.out.push(',');
                }
                json_string(ex.out, p);
            }
            ex.out.push(']');
        }
        if matches!(&s.subsegments, Some(v) if v.is_empty()) {
            bits |= presence::EMPTY_SUBSEGMENTS;
        }
        write_extras(&mut ex, &s.extra);

        let has_extra = ex.finish();
        self.extra
            .append_option(has_extra.then_some(extra.as_str()));
        self.scratch = extra;
        self.presence.append_value(bits);
        self.revision.append_value(ctx.revision);
        self.rows += 1;
    }

    fn append_http<'a, B: RawJson<'a>>(
        &mut self,
        http: Option<&Http<'a, B>>,
        ex: &mut ObjWriter<'_>,
    ) {
        let req = http.and_then(|h| h.request.as_ref());
        let resp = http.and_then(|h| h.response.as_ref());
        self.http_method
            .append_option(req.and_then(|r| r.method.as_deref()));
        self.http_url
            .append_option(req.and_then(|r| r.url.as_deref()));
        self.http_user_agent
            .append_option(req.and_then(|r| r.user_agent.as_deref()));
        self.http_client_ip
            .append_option(req.and_then(|r| r.client_ip.as_deref()));
        let status = resp.and_then(|r| r.status);
        let status32 = status.and_then(|s| i32::try_from(s).ok());
        self.http_status.append_option(status32);
        let cl_text = resp
            .and_then(|r| r.content_length.as_ref())
            .map(|c| c.text());
        let cl = cl_text.and_then(|t| t.parse::<i64>().ok().filter(|v| v.to_string() == t));
        self.http_content_length.append_option(cl);

        let Some(h) = http else { return };
        // What the columns did not take goes to extra.http.
        let mut sub = String::new();
        let mut hx = ObjWriter::new(&mut sub);
        if let Some(r) = &h.request {
            let captured = r.method.is_some()
                || r.url.is_some()
                || r.user_agent.is_some()
                || r.client_ip.is_some();
            let mut s2 = String::new();
            let mut rx = ObjWriter::new(&mut s2);
            if let Some(v) = r.x_forwarded_for {
                rx.bool("x_forwarded_for", v);
            }
            if let Some(v) = r.traced {
                rx.bool("traced", v);
            }
            write_extras(&mut rx, &r.extra);
            let any = rx.finish();
            if any || !captured {
                hx.raw("request", if any { &s2 } else { "{}" });
            }
        }
        if let Some(r) = &h.response {
            let captured = status32.is_some() || cl.is_some();
            let mut s2 = String::new();
            let mut rx = ObjWriter::new(&mut s2);
            if let (Some(s), None) = (r.status, status32) {
                rx.key("status");
                let _ = write!(rx.out, "{s}");
            }
            if let (Some(t), None) = (cl_text, cl) {
                rx.raw("content_length", t);
            }
            write_extras(&mut rx, &r.extra);
            let any = rx.finish();
            if any || !captured {
                hx.raw("response", if any { &s2 } else { "{}" });
            }
        }
        write_extras(&mut hx, &h.extra);
        let any = hx.finish();
        let captured = req.is_some() || resp.is_some();
        if any || !captured {
            ex.raw("http", if any { &sub } else { "{}" });
        }
    }

    /// Finishes the builders into a batch (the builders are reset).
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.parent_id.finish()),
            Arc::new(self.segment_id.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.pos.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.origin.finish()),
            Arc::new(self.namespace.finish()),
            Arc::new(self.start_ns.finish()),
            Arc::new(self.end_ns.finish()),
            Arc::new(self.in_progress.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.fault.finish()),
            Arc::new(self.throttle.finish()),
            Arc::new(self.http_method.finish()),
            Arc::new(self.http_url.finish()),
            Arc::new(self.http_user_agent.finish()),
            Arc::new(self.http_client_ip.finish()),
            Arc::new(self.http_status.finish()),
            Arc::new(self.http_content_length.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.annotations.finish()),
            Arc::new(self.aws.finish()),
            Arc::new(self.cause.finish()),
            Arc::new(self.sql.finish()),
            Arc::new(self.metadata.finish()),
            Arc::new(self.account_id.finish()),
            Arc::new(self.instance_id.finish()),
            Arc::new(self.availability_zone.finish()),
            Arc::new(self.resource_arn.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.presence.finish()),
            Arc::new(self.revision.finish()),
        ];
        RecordBatch::try_new(schema::spans(), cols)
    }
}

struct DocCtx {
    trace_id: TraceId,
    segment_id: u64,
    revision: u64,
    independent: bool,
}

fn field<T: arrow::array::ArrayBuilder>(b: &mut StructBuilder, i: usize) -> &mut T {
    // The struct builder was made from `annotation_fields`, so the types match.
    #[allow(clippy::expect_used)]
    b.field_builder::<T>(i)
        .expect("annotation field builder of the schema's type")
}

fn write_extras<'a, B: RawJson<'a>>(ex: &mut ObjWriter<'_>, extra: &[(Str<'a>, Extra<B>)]) {
    for (k, v) in extra {
        match v {
            Extra::Raw(raw) => ex.raw(k, raw.text()),
            Extra::Null => ex.raw(k, "null"),
        }
    }
}

/// Fields promoted out of the `aws` block (SPEC 1.6).
#[derive(Debug, Default, serde::Deserialize)]
struct AwsPromoted {
    account_id: Option<String>,
    #[serde(skip)]
    instance_id: Option<String>,
    #[serde(skip)]
    availability_zone: Option<String>,
    ec2: Option<Ec2>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Ec2 {
    instance_id: Option<String>,
    availability_zone: Option<String>,
}

impl AwsPromoted {
    fn read(text: &str) -> AwsPromoted {
        // `aws` is open JSON: fields of other types are simply not promoted.
        let mut p: AwsPromoted = sonic_rs::from_str(text).unwrap_or_default();
        if let Some(ec2) = p.ec2.take() {
            p.instance_id = ec2.instance_id;
            p.availability_zone = ec2.availability_zone;
        }
        p
    }
}

/// Writes a JSON object incrementally; nothing is written when no member is.
pub(crate) struct ObjWriter<'a> {
    pub(crate) out: &'a mut String,
    any: bool,
}

impl<'a> ObjWriter<'a> {
    pub(crate) fn new(out: &'a mut String) -> Self {
        ObjWriter { out, any: false }
    }

    pub(crate) fn key(&mut self, k: &str) {
        self.out.push(if self.any { ',' } else { '{' });
        self.any = true;
        json_string(self.out, k);
        self.out.push(':');
    }

    pub(crate) fn raw(&mut self, k: &str, raw: &str) {
        self.key(k);
        self.out.push_str(raw);
    }

    pub(crate) fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        json_string(self.out, v);
    }

    pub(crate) fn bool(&mut self, k: &str, v: bool) {
        self.raw(k, if v { "true" } else { "false" });
    }

    pub(crate) fn f64(&mut self, k: &str, v: f64) {
        self.key(k);
        let mut b = ryu::Buffer::new();
        self.out.push_str(b.format(v));
    }

    /// Closes the object; false if it had no member (and nothing was written).
    pub(crate) fn finish(self) -> bool {
        if self.any {
            self.out.push('}');
        }
        self.any
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
