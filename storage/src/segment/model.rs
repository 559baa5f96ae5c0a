//! The typed segment-document model (SPEC section 1) and its serde deserializer.
//!
//! The model borrows from the input wherever it can. Open JSON blocks (`aws`, `metadata`,
//! `cause`, `sql`, `service`, `links`) and unknown fields are kept as raw JSON text of type
//! `B` ([`RawJson`]): `sonic_rs::LazyValue` in production, `&serde_json::value::RawValue`
//! in the parser benchmark. Unknown fields land in `extra`, so a document can be rebuilt
//! value-equal to what was sent.
//!
//! Deserialization is hand-written (no `#[serde(flatten)]` or `untagged`, which buffer)
//! and lenient about *content*: it records what it saw, and [`super::validate`] decides
//! with X-Ray's error codes. It only fails on JSON that cannot fit the model at all (an
//! id that is a number, say), with a message naming the field.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Raw JSON text captured by a parser without building a value.
pub trait RawJson<'de>: Deserialize<'de> {
    fn text(&self) -> &str;
}

impl<'de: 'a, 'a> RawJson<'de> for sonic_rs::LazyValue<'a> {
    fn text(&self) -> &str {
        self.as_raw_str()
    }
}

impl<'de: 'a, 'a> RawJson<'de> for &'a serde_json::value::RawValue {
    fn text(&self) -> &str {
        self.get()
    }
}

/// A string borrowed from the input when it has no escapes.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A value of an unknown field, or of a known one that was `null`.
#[derive(Debug)]
pub enum Extra<B> {
    Raw(B),
    Null,
}

/// A typed annotation value (SPEC 1.8). Anything else is `Invalid`, naming what it was.
#[derive(Debug, Clone, PartialEq)]
pub enum AnnotationValue<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Invalid(&'static str),
}

/// One segment or subsegment object. Every field of SPEC section 1.
#[derive(Debug)]
pub struct Segment<'a, B> {
    pub name: Option<Str<'a>>,
    pub id: Option<Str<'a>>,
    pub trace_id: Option<Str<'a>>,
    pub parent_id: Option<Str<'a>>,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub in_progress: Option<bool>,
    /// `type`: `"subsegment"` marks an independent subsegment.
    pub kind: Option<Str<'a>>,
    pub namespace: Option<Str<'a>>,
    pub origin: Option<Str<'a>>,
    pub user: Option<Str<'a>>,
    pub resource_arn: Option<Str<'a>>,
    pub error: Option<bool>,
    pub fault: Option<bool>,
    pub throttle: Option<bool>,
    pub traced: Option<bool>,
    pub http: Option<Http<'a, B>>,
    pub aws: Option<B>,
    pub cause: Option<B>,
    pub sql: Option<B>,
    pub metadata: Option<B>,
    pub service: Option<B>,
    pub links: Option<B>,
    pub precursor_ids: Option<Vec<Str<'a>>>,
    pub annotations: Option<Vec<(Str<'a>, AnnotationValue<'a>)>>,
    pub subsegments: Option<Vec<Segment<'a, B>>>,
    /// Subsegments nested deeper than the limit were skipped; validation rejects.
    pub too_deep: bool,
    pub extra: Vec<(Str<'a>, Extra<B>)>,
}

impl<B> Default for Segment<'_, B> {
    fn default() -> Self {
        Segment {
            name: None,
            id: None,
            trace_id: None,
            parent_id: None,
            start_time: None,
            end_time: None,
            in_progress: None,
            kind: None,
            namespace: None,
            origin: None,
            user: None,
            resource_arn: None,
            error: None,
            fault: None,
            throttle: None,
            traced: None,
            http: None,
            aws: None,
            cause: None,
            sql: None,
            metadata: None,
            service: None,
            links: None,
            precursor_ids: None,
            annotations: None,
            subsegments: None,
            too_deep: false,
            extra: Vec::new(),
        }
    }
}

/// `http` (SPEC 1.5).
#[derive(Debug)]
pub struct Http<'a, B> {
    pub request: Option<HttpRequest<'a, B>>,
    pub response: Option<HttpResponse<'a, B>>,
    pub extra: Vec<(Str<'a>, Extra<B>)>,
}

#[derive(Debug)]
pub struct HttpRequest<'a, B> {
    pub method: Option<Str<'a>>,
    pub url: Option<Str<'a>>,
    pub user_agent: Option<Str<'a>>,
    pub client_ip: Option<Str<'a>>,
    pub x_forwarded_for: Option<bool>,
    pub traced: Option<bool>,
    pub extra: Vec<(Str<'a>, Extra<B>)>,
}

#[derive(Debug)]
pub struct HttpResponse<'a, B> {
    pub status: Option<i64>,
    /// Integer in the schema, but `-1` or a string in practice: kept raw.
    pub content_length: Option<B>,
    pub extra: Vec<(Str<'a>, Extra<B>)>,
}

/// Deserializes a segment object, tracking subsegment nesting depth.
pub(crate) struct SegmentSeed<B> {
    pub(crate) depth: usize,
    pub(crate) max_depth: usize,
    pub(crate) _raw: PhantomData<B>,
}

impl<B> SegmentSeed<B> {
    pub(crate) fn new(max_depth: usize) -> Self {
        SegmentSeed {
            depth: 0,
            max_depth,
            _raw: PhantomData,
        }
    }
}

fn field_err<E: de::Error>(field: &str, e: impl fmt::Display) -> E {
    E::custom(format_args!("field `{field}`: {e}"))
}

/// Reads an optional typed value; `null` is remembered in `extra`.
macro_rules! typed {
    ($map:ident, $key:ident, $extra:expr, $slot:expr, $ty:ty) => {{
        match $map
            .next_value::<Option<$ty>>()
            .map_err(|e| field_err(&$key, e))?
        {
            Some(v) => $slot = Some(v),
            None => $extra.push(($key, Extra::Null)),
        }
    }};
}

impl<'de, B: RawJson<'de>> DeserializeSeed<'de> for SegmentSeed<B> {
    type Value = Segment<'de, B>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, B: RawJson<'de>> Visitor<'de> for SegmentSeed<B> {
    type Value = Segment<'de, B>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a segment document (JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut s: Segment<'de, B> = Segment::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "name" => typed!(map, key, s.extra, s.name, Str<'de>),
                "id" => typed!(map, key, s.extra, s.id, Str<'de>),
                "trace_id" => typed!(map, key, s.extra, s.trace_id, Str<'de>),
                "parent_id" => typed!(map, key, s.extra, s.parent_id, Str<'de>),
                "start_time" => typed!(map, key, s.extra, s.start_time, f64),
                "end_time" => typed!(map, key, s.extra, s.end_time, f64),
                "in_progress" => typed!(map, key, s.extra, s.in_progress, bool),
                "type" => typed!(map, key, s.extra, s.kind, Str<'de>),
                "namespace" => typed!(map, key, s.extra, s.namespace, Str<'de>),
                "origin" => typed!(map, key, s.extra, s.origin, Str<'de>),
                "user" => typed!(map, key, s.extra, s.user, Str<'de>),
                "resource_arn" => typed!(map, key, s.extra, s.resource_arn, Str<'de>),
                "error" => typed!(map, key, s.extra, s.error, bool),
                "fault" => typed!(map, key, s.extra, s.fault, bool),
                "throttle" => typed!(map, key, s.extra, s.throttle, bool),
                "traced" => typed!(map, key, s.extra, s.traced, bool),
                "precursor_ids" => typed!(map, key, s.extra, s.precursor_ids, Vec<Str<'de>>),
                "http" => {
                    match map
                        .next_value_seed(OptSeed(HttpSeed::<B>(PhantomData)))
                        .map_err(|e| field_err(&key, e))?
                    {
                        Some(v) => s.http = Some(v),
                        None => s.extra.push((key, Extra::Null)),
                    }
                }
                "annotations" => {
                    match map
                        .next_value_seed(OptSeed(AnnotationsSeed))
                        .map_err(|e| field_err(&key, e))?
                    {
                        Some(v) => s.annotations = Some(v),
                        None => s.extra.push((key, Extra::Null)),
                    }
                }
                "aws" => s.aws = Some(map.next_value::<B>().map_err(|e| field_err(&key, e))?),
                "cause" => s.cause = Some(map.next_value::<B>().map_err(|e| field_err(&key, e))?),
                "sql" => s.sql = Some(map.next_value::<B>().map_err(|e| field_err(&key, e))?),
                "metadata" => {
                    s.metadata = Some(map.next_value::<B>().map_err(|e| field_err(&key, e))?)
                }
                "service" => {
                    s.service = Some(map.next_value::<B>().map_err(|e| field_err(&key, e))?)
                }
                "links" => s.links = Some(map.next_value::<B>().map_err(|e| field_err(&key, e))?),
                "subsegments" => {
                    if self.depth >= self.max_depth {
                        map.next_value::<IgnoredAny>()?;
                        s.too_deep = true;
                        s.subsegments = Some(Vec::new());
                    } else {
                        let seed = SubsegmentsSeed::<B> {
                            depth: self.depth + 1,
                            max_depth: self.max_depth,
                            _raw: PhantomData,
                        };
                        match map
                            .next_value_seed(OptSeed(seed))
                            .map_err(|e| field_err(&key, e))?
                        {
                            Some((subs, deep)) => {
                                s.too_deep |= deep;
                                s.subsegments = Some(subs);
                            }
                            None => s.extra.push((key, Extra::Null)),
                        }
                    }
                }
                _ => {
                    let v = map
                        .next_value::<Option<B>>()
                        .map_err(|e| field_err(&key, e))?;
                    s.extra.push((key, v.map_or(Extra::Null, Extra::Raw)));
                }
            }
        }
        Ok(s)
    }
}

/// `Option` for a seeded value: `null` gives `None`.
struct OptSeed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for OptSeed<S> {
    type Value = Option<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for OptSeed<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.deserialize(d).map(Some)
    }
}

struct SubsegmentsSeed<B> {
    depth: usize,
    max_depth: usize,
    _raw: PhantomData<B>,
}

impl<'de, B: RawJson<'de>> DeserializeSeed<'de> for SubsegmentsSeed<B> {
    type Value = (Vec<Segment<'de, B>>, bool);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, B: RawJson<'de>> Visitor<'de> for SubsegmentsSeed<B> {
    type Value = (Vec<Segment<'de, B>>, bool);
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of subsegments")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        let mut deep = false;
        // Each level of nesting recurses; grow the stack on demand so deep (but
        // allowed) documents parse on any thread.
        while let Some(sub) = stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
            seq.next_element_seed(SegmentSeed::<B> {
                depth: self.depth,
                max_depth: self.max_depth,
                _raw: PhantomData,
            })
        })? {
            deep |= sub.too_deep;
            out.push(sub);
        }
        Ok((out, deep))
    }
}

struct HttpSeed<B>(PhantomData<B>);

impl<'de, B: RawJson<'de>> DeserializeSeed<'de> for HttpSeed<B> {
    type Value = Http<'de, B>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, B: RawJson<'de>> Visitor<'de> for HttpSeed<B> {
    type Value = Http<'de, B>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an http object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut h = Http {
            request: None,
            response: None,
            extra: Vec::new(),
        };
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "request" => match map
                    .next_value_seed(OptSeed(RequestSeed::<B>(PhantomData)))
                    .map_err(|e| field_err(&key, e))?
                {
                    Some(v) => h.request = Some(v),
                    None => h.extra.push((key, Extra::Null)),
                },
                "response" => match map
                    .next_value_seed(OptSeed(ResponseSeed::<B>(PhantomData)))
                    .map_err(|e| field_err(&key, e))?
                {
                    Some(v) => h.response = Some(v),
                    None => h.extra.push((key, Extra::Null)),
                },
                _ => {
                    let v = map.next_value::<Option<B>>()?;
                    h.extra.push((key, v.map_or(Extra::Null, Extra::Raw)));
                }
            }
        }
        Ok(h)
    }
}

struct RequestSeed<B>(PhantomData<B>);

impl<'de, B: RawJson<'de>> DeserializeSeed<'de> for RequestSeed<B> {
    type Value = HttpRequest<'de, B>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, B: RawJson<'de>> Visitor<'de> for RequestSeed<B> {
    type Value = HttpRequest<'de, B>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an http request object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = HttpRequest {
            method: None,
            url: None,
            user_agent: None,
            client_ip: None,
            x_forwarded_for: None,
            traced: None,
            extra: Vec::new(),
        };
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "method" => typed!(map, key, r.extra, r.method, Str<'de>),
                "url" => typed!(map, key, r.extra, r.url, Str<'de>),
                "user_agent" => typed!(map, key, r.extra, r.user_agent, Str<'de>),
                "client_ip" => typed!(map, key, r.extra, r.client_ip, Str<'de>),
                "x_forwarded_for" => typed!(map, key, r.extra, r.x_forwarded_for, bool),
                "traced" => typed!(map, key, r.extra, r.traced, bool),
                _ => {
                    let v = map.next_value::<Option<B>>()?;
                    r.extra.push((key, v.map_or(Extra::Null, Extra::Raw)));
                }
            }
        }
        Ok(r)
    }
}

struct ResponseSeed<B>(PhantomData<B>);

impl<'de, B: RawJson<'de>> DeserializeSeed<'de> for ResponseSeed<B> {
    type Value = HttpResponse<'de, B>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, B: RawJson<'de>> Visitor<'de> for ResponseSeed<B> {
    type Value = HttpResponse<'de, B>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an http response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = HttpResponse {
            status: None,
            content_length: None,
            extra: Vec::new(),
        };
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "status" => typed!(map, key, r.extra, r.status, i64),
                "content_length" => r.content_length = Some(map.next_value::<B>()?),
                _ => {
                    let v = map.next_value::<Option<B>>()?;
                    r.extra.push((key, v.map_or(Extra::Null, Extra::Raw)));
                }
            }
        }
        Ok(r)
    }
}

struct AnnotationsSeed;

impl<'de> DeserializeSeed<'de> for AnnotationsSeed {
    type Value = Vec<(Str<'de>, AnnotationValue<'de>)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnnotationsSeed {
    type Value = Vec<(Str<'de>, AnnotationValue<'de>)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an annotations object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
        while let Some(key) = map.next_key::<Str<'de>>()? {
            let v = map.next_value::<AnnotationValue<'de>>()?;
            out.push((key, v));
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for AnnotationValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnnotationValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Num(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Str(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Invalid("null"))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(AnnotationValue::Invalid("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnnotationValue::Invalid("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnnotationValue::Invalid("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// Typed views of the open blocks. The write path keeps these blocks as raw JSON (they
// are stored verbatim); readers that need their fields parse them with these types.

/// `cause` (SPEC 1.7): an exception id pointing elsewhere in the trace, or the details.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Cause {
    ExceptionId(String),
    Details(CauseDetails),
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct CauseDetails {
    pub working_directory: Option<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

/// One exception of a `cause`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Exception {
    pub id: Option<String>,
    pub message: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub remote: Option<bool>,
    pub truncated: Option<i64>,
    pub skipped: Option<i64>,
    pub cause: Option<String>,
    #[serde(default)]
    pub stack: Vec<StackFrame>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct StackFrame {
    pub path: Option<String>,
    pub line: Option<i64>,
    pub label: Option<String>,
}

/// `sql` (SPEC 1.7).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Sql {
    pub connection_string: Option<String>,
    pub url: Option<String>,
    pub sanitized_query: Option<String>,
    pub database_type: Option<String>,
    pub database_version: Option<String>,
    pub driver_version: Option<String>,
    pub user: Option<String>,
    pub preparation: Option<String>,
}

/// `aws` (SPEC 1.6): the fields Tracelake reads; the block itself stays open JSON.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Aws {
    pub account_id: Option<String>,
    pub operation: Option<String>,
    pub region: Option<String>,
    pub request_id: Option<String>,
    pub table_name: Option<String>,
    pub queue_url: Option<String>,
    pub topic_arn: Option<String>,
    pub function_name: Option<String>,
    pub retries: Option<i64>,
    pub ec2: Option<Ec2>,
    pub ecs: Option<serde_json::Value>,
    pub eks: Option<serde_json::Value>,
    pub elastic_beanstalk: Option<serde_json::Value>,
    pub xray: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Ec2 {
    pub instance_id: Option<String>,
    pub instance_size: Option<String>,
    pub ami_id: Option<String>,
    pub availability_zone: Option<String>,
}

/// `service` (SPEC 1.2).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Service {
    pub version: Option<String>,
    pub runtime: Option<String>,
    pub runtime_version: Option<String>,
}

/// One entry of `links` (OTel span links).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Link {
    pub trace_id: Option<String>,
    pub id: Option<String>,
    pub attributes: Option<serde_json::Value>,
}

/// Parses an open JSON block into its typed view (`None` when the block is absent or
/// does not have the documented shape).
pub fn typed<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Option<T> {
    raw.and_then(|t| sonic_rs::from_str(t).ok())
}

impl<'a, B: RawJson<'a>> Segment<'a, B> {
    pub fn cause_typed(&self) -> Option<Cause> {
        typed(self.cause.as_ref().map(|c| c.text()))
    }
    pub fn sql_typed(&self) -> Option<Sql> {
        typed(self.sql.as_ref().map(|c| c.text()))
    }
    pub fn aws_typed(&self) -> Option<Aws> {
        typed(self.aws.as_ref().map(|c| c.text()))
    }
    pub fn service_typed(&self) -> Option<Service> {
        typed(self.service.as_ref().map(|c| c.text()))
    }
    pub fn links_typed(&self) -> Option<Vec<Link>> {
        typed(self.links.as_ref().map(|c| c.text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::{Limits, parse};

    #[test]
    fn typed_views_of_open_blocks() {
        let doc = parse(
            br#"{"name":"a","id":"0000000000000001","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd",
                "start_time":1,"end_time":2,"cause":"a1b2c3d4e5f60718",
                "aws":{"account_id":"123","ec2":{"instance_id":"i-1","availability_zone":"us-east-1a"}},
                "service":{"version":"1.0"},
                "subsegments":[{"name":"db","id":"0000000000000002","start_time":1,"end_time":2,
                  "sql":{"database_type":"sqlite3","url":"x"},
                  "cause":{"working_directory":"/srv","exceptions":[{"id":"0000000000000009","message":"boom","type":"E","stack":[{"path":"a.py","line":3}]}]}}]}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(
            doc.root.cause_typed(),
            Some(Cause::ExceptionId("a1b2c3d4e5f60718".into()))
        );
        let aws = doc.root.aws_typed().unwrap();
        assert_eq!(aws.ec2.unwrap().instance_id.as_deref(), Some("i-1"));
        assert_eq!(
            doc.root.service_typed().unwrap().version.as_deref(),
            Some("1.0")
        );
        let sub = &doc.root.subsegments.as_ref().unwrap()[0];
        assert_eq!(
            sub.sql_typed().unwrap().database_type.as_deref(),
            Some("sqlite3")
        );
        let Some(Cause::Details(d)) = sub.cause_typed() else {
            panic!("details")
        };
        assert_eq!(d.exceptions[0].stack[0].line, Some(3));
    }
}
