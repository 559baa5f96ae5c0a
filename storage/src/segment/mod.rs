//! Segment documents: the typed model, parsing, framings and validation (SPEC 1 and 2).
//!
//! One document goes through [`parse`]: size check, sonic-rs into the typed
//! [`model::Segment`], then [`validate`], which either accepts it as a [`Document`] or
//! rejects it with an X-Ray style [`RejectCode`] and a message naming the field.
//! [`framing::split`] cuts any supported input (one document, JSON array, JSON lines,
//! daemon datagrams, PutTraceSegments bodies) into documents first.

pub mod framing;
pub mod id;
pub mod model;
pub mod time;

use std::fmt;

pub use id::{SegmentId, TraceId};
pub use model::{AnnotationValue, Extra, Http, HttpRequest, HttpResponse, RawJson, Segment, Str};

use model::SegmentSeed;
use serde::de::DeserializeSeed;

/// Per-document guards (SPEC 7.12). They reject one document, never a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes (default 64 KiB).
    pub max_document_bytes: usize,
    /// Deepest accepted subsegment nesting (default 64; at most [`MAX_NESTING_DEPTH`]
    /// whatever is set here).
    pub max_nesting_depth: usize,
    /// Most annotations on one segment or subsegment (default 50).
    pub max_annotations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 64 * 1024,
            max_nesting_depth: 64,
            max_annotations: 50,
        }
    }
}

/// The subsegment nesting accepted at most, whatever [`Limits::max_nesting_depth`] says:
/// flattening, rebuilding and dropping a document recurse on it.
pub const MAX_NESTING_DEPTH: usize = 256;

impl Limits {
    fn nesting(&self) -> usize {
        self.max_nesting_depth.min(MAX_NESTING_DEPTH)
    }

    /// Limits used when replaying the WAL: whatever was acknowledged is accepted again.
    pub fn unlimited() -> Self {
        Limits {
            max_document_bytes: usize::MAX,
            max_nesting_depth: usize::MAX,
            max_annotations: usize::MAX,
        }
    }
}

/// Why a document was rejected. The names follow X-Ray's `UnprocessedTraceSegments`
/// codes where X-Ray has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// Not valid JSON (syntax error, truncated, NaN, invalid UTF-8).
    InvalidJson,
    /// Valid JSON that is not a segment document, or a field of the wrong shape.
    InvalidSegment,
    DocumentTooLarge,
    MissingId,
    InvalidId,
    MissingTraceId,
    InvalidTraceId,
    InvalidName,
    MissingStartTime,
    MissingEndTime,
    MissingParentId,
    InvalidAnnotation,
    TooManyAnnotations,
    NestingTooDeep,
    /// A daemon datagram whose header line is not `{"format":"json","version":1}`.
    InvalidHeader,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::InvalidJson => "InvalidJson",
            RejectCode::InvalidSegment => "InvalidSegment",
            RejectCode::DocumentTooLarge => "DocumentTooLarge",
            RejectCode::MissingId => "MissingId",
            RejectCode::InvalidId => "InvalidId",
            RejectCode::MissingTraceId => "MissingTraceId",
            RejectCode::InvalidTraceId => "InvalidTraceId",
            RejectCode::InvalidName => "InvalidName",
            RejectCode::MissingStartTime => "MissingStartTime",
            RejectCode::MissingEndTime => "MissingEndTime",
            RejectCode::MissingParentId => "MissingParentId",
            RejectCode::InvalidAnnotation => "InvalidAnnotation",
            RejectCode::TooManyAnnotations => "TooManyAnnotations",
            RejectCode::NestingTooDeep => "NestingTooDeep",
            RejectCode::InvalidHeader => "InvalidHeader",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected document: its code, a message naming the field, and its ids if known.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub code: RejectCode,
    pub message: String,
    pub id: Option<String>,
    pub trace_id: Option<String>,
}

impl Problem {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            id: None,
            trace_id: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A validated document: the top-level segment (or independent subsegment) plus the
/// parsed ids every row needs.
#[derive(Debug)]
pub struct Document<'a, B> {
    pub root: Segment<'a, B>,
    pub trace_id: TraceId,
    pub id: SegmentId,
    /// True for an independent subsegment (`"type": "subsegment"` at the top).
    pub independent: bool,
    /// Start time of the top object in nanoseconds (used for partitioning).
    pub start_ns: i64,
}

/// The production document type: raw blocks borrowed through sonic-rs.
pub type LazyDocument<'a> = Document<'a, sonic_rs::LazyValue<'a>>;

/// Parses and validates one document with sonic-rs.
pub fn parse<'a>(bytes: &'a [u8], limits: &Limits) -> Result<LazyDocument<'a>, Problem> {
    if bytes.len() > limits.max_document_bytes {
        return Err(Problem::new(
            RejectCode::DocumentTooLarge,
            format!(
                "document is {} bytes, over the limit of {} bytes",
                bytes.len(),
                limits.max_document_bytes
            ),
        ));
    }
    let text = check_utf8(bytes)?;
    check_json_depth(bytes)?;
    check_is_object(bytes)?;
    // from the checked text: sonic-rs does not validate it a second time
    let mut de = sonic_rs::Deserializer::from_str(text);
    let seg = SegmentSeed::new(limits.nesting())
        .deserialize(&mut de)
        .and_then(|s| de.end().map(|()| s))
        .map_err(|e| sonic_problem(bytes, &e))?;
    validate(seg, limits)
}

/// Parses and validates one document with serde_json (kept for the parser benchmark).
pub fn parse_serde_json<'a>(
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<Document<'a, &'a serde_json::value::RawValue>, Problem> {
    if bytes.len() > limits.max_document_bytes {
        return Err(Problem::new(
            RejectCode::DocumentTooLarge,
            "document too large",
        ));
    }
    let text = check_utf8(bytes)?;
    check_json_depth(bytes)?;
    check_is_object(bytes)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let seg = SegmentSeed::new(limits.nesting())
        .deserialize(&mut de)
        .and_then(|s| de.end().map(|()| s))
        .map_err(
            |e| match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(syntax) => Problem::new(RejectCode::InvalidJson, syntax.to_string()),
                Ok(_) => Problem::new(RejectCode::InvalidSegment, e.to_string()),
            },
        )?;
    validate(seg, limits)
}

/// JSON nesting (objects and arrays) a document may have at most. sonic-rs walks nested
/// values recursively (a document nested 10,000 deep overflowed the stack), so deeper
/// input is refused by an iterative scan before it is parsed.
pub const MAX_JSON_DEPTH: usize = 512;

fn check_json_depth(bytes: &[u8]) -> Result<(), Problem> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(Problem::new(
                        RejectCode::NestingTooDeep,
                        format!("the JSON is nested deeper than {MAX_JSON_DEPTH} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The whole document must be UTF-8, values kept raw included: sonic-rs reports bad
/// bytes only where it decodes, and panics reading a raw value holding them (found by
/// fuzzing).
fn check_utf8(bytes: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(bytes).map_err(|e| {
        Problem::new(
            RejectCode::InvalidJson,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })
}

fn check_is_object(bytes: &[u8]) -> Result<(), Problem> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(Problem::new(RejectCode::InvalidJson, "empty document")),
        Some(_) => {
            use sonic_rs::JsonValueTrait;
            let what = match sonic_rs::from_slice::<sonic_rs::Value>(bytes) {
                Ok(v) if v.is_array() => "an array",
                Ok(v) if v.is_str() => "a string",
                Ok(v) if v.is_number() => "a number",
                Ok(v) if v.is_boolean() => "a boolean",
                Ok(_) => "null",
                Err(_) => return Err(Problem::new(RejectCode::InvalidJson, "not valid JSON")),
            };
            Err(Problem::new(
                RejectCode::InvalidSegment,
                format!("a segment document must be a JSON object, found {what}"),
            ))
        }
    }
}

/// A parse failure is `InvalidJson` when the text is not JSON at all, else the JSON does
/// not fit a segment document (`InvalidSegment`, with the field named).
fn sonic_problem(bytes: &[u8], e: &sonic_rs::Error) -> Problem {
    // serde_json's syntax check: sonic-rs skips nested values recursively, which
    // overflowed the stack on documents nested thousands deep; serde_json stops at 128
    // levels (such a document is valid JSON, but no segment: `InvalidSegment`)
    match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(syntax) if syntax.to_string().contains("recursion limit") => Problem::new(
            RejectCode::InvalidSegment,
            format!("{e} (JSON nested too deep)"),
        ),
        Err(syntax) => Problem::new(RejectCode::InvalidJson, syntax.to_string()),
        Ok(_) => Problem::new(RejectCode::InvalidSegment, e.to_string()),
    }
}

const SEGMENT_NAME_MAX: usize = 200;

fn valid_segment_name(name: &str) -> bool {
    let mut n = 0usize;
    for c in name.chars() {
        n += 1;
        let ok = c.is_alphanumeric()
            || c.is_whitespace()
            || matches!(
                c,
                '_' | '.' | ':' | '/' | '%' | '&' | '#' | '=' | '+' | '\\' | '-' | '@'
            );
        if !ok || n > SEGMENT_NAME_MAX {
            return false;
        }
    }
    n > 0
}

/// Checks a parsed segment against SPEC 1.2-1.8 and the limits.
pub fn validate<'a, B>(root: Segment<'a, B>, limits: &Limits) -> Result<Document<'a, B>, Problem> {
    let with_ids = |mut p: Problem, root: &Segment<'a, B>| {
        p.id = root.id.as_ref().map(|s| s.0.to_string());
        p.trace_id = root.trace_id.as_ref().map(|s| s.0.to_string());
        p
    };
    let independent = root.kind.as_deref() == Some("subsegment");
    let trace_id = match root.trace_id.as_deref() {
        None => {
            return Err(with_ids(
                Problem::new(RejectCode::MissingTraceId, "`trace_id` is required"),
                &root,
            ));
        }
        Some(t) => TraceId::parse(t).ok_or_else(|| {
            with_ids(
                Problem::new(
                    RejectCode::InvalidTraceId,
                    format!("`trace_id` {t:?} is not of the form 1-XXXXXXXX-<24 hex digits>"),
                ),
                &root,
            )
        })?,
    };
    if independent && root.parent_id.is_none() {
        return Err(with_ids(
            Problem::new(
                RejectCode::MissingParentId,
                "an independent subsegment (`type: \"subsegment\"`) needs `parent_id`",
            ),
            &root,
        ));
    }
    if root.too_deep {
        return Err(with_ids(
            Problem::new(
                RejectCode::NestingTooDeep,
                format!(
                    "subsegments are nested deeper than the limit of {}",
                    limits.nesting()
                ),
            ),
            &root,
        ));
    }
    let mut path = String::new();
    let mut seen = std::collections::HashSet::new();
    let id = check_node(&root, !independent, limits, &mut path, &mut seen)
        .map_err(|p| with_ids(p, &root))?;
    let start_ns = root
        .start_time
        .and_then(time::seconds_to_ns_lossy)
        .unwrap_or(0);
    Ok(Document {
        root,
        trace_id,
        id,
        independent,
        start_ns,
    })
}

fn check_node<B>(
    s: &Segment<'_, B>,
    is_segment: bool,
    limits: &Limits,
    path: &mut String,
    seen: &mut std::collections::HashSet<u64>,
) -> Result<SegmentId, Problem> {
    let at = |field: &str, path: &str| {
        if path.is_empty() {
            format!("`{field}`")
        } else {
            format!("`{path}.{field}`")
        }
    };
    let id = match s.id.as_deref() {
        None => {
            return Err(Problem::new(
                RejectCode::MissingId,
                format!("{} is required", at("id", path)),
            ));
        }
        Some(i) => SegmentId::parse(i).ok_or_else(|| {
            Problem::new(
                RejectCode::InvalidId,
                format!("{} {i:?} is not 16 hex digits", at("id", path)),
            )
        })?,
    };
    if !seen.insert(id.0) {
        return Err(Problem::new(
            RejectCode::InvalidSegment,
            format!(
                "{} {id} appears twice in the document; ids are unique within a trace",
                at("id", path)
            ),
        ));
    }
    match s.name.as_deref() {
        None => {
            return Err(Problem::new(
                RejectCode::InvalidName,
                format!("{} is required", at("name", path)),
            ));
        }
        Some("") => {
            return Err(Problem::new(
                RejectCode::InvalidName,
                format!("{} is empty", at("name", path)),
            ));
        }
        Some(n) if is_segment && !valid_segment_name(n) => {
            return Err(Problem::new(
                RejectCode::InvalidName,
                format!(
                    "{} {n:?} must be 1-200 letters, digits, spaces or _ . : / % & # = + \\ - @",
                    at("name", path)
                ),
            ));
        }
        Some(_) => {}
    }
    if let Some(p) = s.parent_id.as_deref()
        && SegmentId::parse(p).is_none()
    {
        return Err(Problem::new(
            RejectCode::InvalidId,
            format!("{} {p:?} is not 16 hex digits", at("parent_id", path)),
        ));
    }
    if let Some(ids) = &s.precursor_ids {
        for p in ids {
            if SegmentId::parse(p).is_none() {
                return Err(Problem::new(
                    RejectCode::InvalidId,
                    format!(
                        "{} holds {:?}, not 16 hex digits",
                        at("precursor_ids", path),
                        &**p
                    ),
                ));
            }
        }
    }
    let start = match s.start_time {
        None => {
            return Err(Problem::new(
                RejectCode::MissingStartTime,
                format!("{} is required", at("start_time", path)),
            ));
        }
        Some(t) => t,
    };
    if time::seconds_to_ns_lossy(start).is_none() {
        return Err(Problem::new(
            RejectCode::InvalidSegment,
            format!("{} {start} is out of range", at("start_time", path)),
        ));
    }
    match (s.end_time, s.in_progress) {
        (None, Some(true)) => {}
        (None, _) => {
            return Err(Problem::new(
                RejectCode::MissingEndTime,
                format!(
                    "{} is required unless `in_progress` is true",
                    at("end_time", path)
                ),
            ));
        }
        (Some(end), _) => {
            if time::seconds_to_ns_lossy(end).is_none() {
                return Err(Problem::new(
                    RejectCode::InvalidSegment,
                    format!("{} {end} is out of range", at("end_time", path)),
                ));
            }
            if end < start {
                return Err(Problem::new(
                    RejectCode::InvalidSegment,
                    format!(
                        "{} {end} is earlier than `start_time` {start}",
                        at("end_time", path)
                    ),
                ));
            }
        }
    }
    if let Some(anns) = &s.annotations {
        if anns.len() > limits.max_annotations {
            return Err(Problem::new(
                RejectCode::TooManyAnnotations,
                format!(
                    "{} has {} entries, over the limit of {}",
                    at("annotations", path),
                    anns.len(),
                    limits.max_annotations
                ),
            ));
        }
        for (k, v) in anns {
            if let AnnotationValue::Invalid(what) = v {
                return Err(Problem::new(
                    RejectCode::InvalidAnnotation,
                    format!(
                        "{} is {what}; annotation values are strings, numbers or booleans",
                        at(&format!("annotations.{}", &**k), path)
                    ),
                ));
            }
        }
    }
    if let Some(subs) = &s.subsegments {
        let base = path.len();
        for (i, sub) in subs.iter().enumerate() {
            use std::fmt::Write;
            if base > 0 {
                path.push('.');
            }
            let _ = write!(path, "subsegments[{i}]");
            check_node(sub, false, limits, path, seen)?;
            path.truncate(base);
        }
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(json: &str) -> Option<RejectCode> {
        parse(json.as_bytes(), &Limits::default())
            .err()
            .map(|p| p.code)
    }

    #[test]
    fn invalid_utf8_anywhere_is_refused_by_position() {
        // in a value sonic-rs keeps raw (an unknown key), where it used to panic
        for key in ["trac$e_id", "name"] {
            let mut doc = format!(
                r#"{{"id":"70de5b6f19ff9a0a","{key}":"bad-X","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd","start_time":1,"end_time":2,"name":"n"}}"#
            )
            .into_bytes();
            let x = doc.iter().position(|b| *b == b'X').unwrap();
            doc[x] = 0x9d;
            for p in [
                parse(&doc, &Limits::default()).map(|_| ()),
                parse_serde_json(&doc, &Limits::default()).map(|_| ()),
            ] {
                let p = p.unwrap_err();
                assert_eq!(p.code, RejectCode::InvalidJson, "{key}: {}", p.message);
                assert!(p.message.contains(&format!("byte {x}")), "{}", p.message);
            }
        }
    }

    #[test]
    fn accepts_a_minimal_segment() {
        let doc = parse(
            br#"{"name":"api","id":"70de5b6f19ff9a0a","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd","start_time":1795245052.254,"end_time":1795245052.31}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(doc.id.to_string(), "70de5b6f19ff9a0a");
        assert!(!doc.independent);
    }

    #[test]
    fn rejections_name_the_field() {
        let p = parse(
            br#"{"name":"api","id":"70de5b6f19ff9a0a","trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd","start_time":1,"end_time":2,
                "subsegments":[{"name":"x","id":"0000000000000001","start_time":1}]}"#,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(p.code, RejectCode::MissingEndTime);
        assert!(
            p.message.contains("subsegments[0].end_time"),
            "{}",
            p.message
        );
        assert_eq!(p.id.as_deref(), Some("70de5b6f19ff9a0a"));
    }

    #[test]
    fn codes() {
        let t = r#""trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd""#;
        assert_eq!(code_of("[1,2]"), Some(RejectCode::InvalidSegment));
        assert_eq!(code_of("{\"name\": \"a\""), Some(RejectCode::InvalidJson));
        assert_eq!(
            code_of(&format!(
                r#"{{"name":"a",{t},"start_time":1,"end_time":2}}"#
            )),
            Some(RejectCode::MissingId)
        );
        assert_eq!(
            code_of(&format!(
                r#"{{"name":"a","id":5,{t},"start_time":1,"end_time":2}}"#
            )),
            Some(RejectCode::InvalidSegment)
        );
        assert_eq!(
            code_of(&format!(
                r#"{{"name":"a","id":"0000000000000001",{t},"start_time":1,"end_time":2,"annotations":{{"k":[1]}}}}"#
            )),
            Some(RejectCode::InvalidAnnotation)
        );
        let deep = format!(
            r#"{{"name":"a","id":"0000000000000001",{t},"start_time":1,"end_time":2,"subsegments":[{}]}}"#,
            r#"{"name":"a","id":"0000000000000001","start_time":1,"end_time":2,"subsegments":["#
                .repeat(70)
                + &"]}".repeat(70)
        );
        assert_eq!(code_of(&deep), Some(RejectCode::NestingTooDeep));
        let dup = format!(
            r#"{{"name":"a","id":"0000000000000001",{t},"start_time":1,"end_time":2,"subsegments":[{{"name":"b","id":"0000000000000001","start_time":1,"end_time":2}}]}}"#
        );
        assert_eq!(code_of(&dup), Some(RejectCode::InvalidSegment));
    }
}
