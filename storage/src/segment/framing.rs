//! Cutting an input buffer into segment documents (SPEC 2).
//!
//! Accepted framings, also mixed in one input:
//! - one document, or several one after another (pretty-printed or JSON lines);
//! - a JSON array of documents;
//! - daemon datagrams: a header `{"format":"json","version":1}` followed by a document;
//! - PutTraceSegments bodies: `{"TraceSegmentDocuments": ["<doc>", ...]}`;
//! - JSON strings whose content is any of the above (captured datagrams are stored so).
//!
//! A syntax error costs only the document it is in: the scanner reports it and resumes
//! at the next line.

use std::borrow::Cow;

use super::{Problem, RejectCode};

/// One document cut from the input, or the reason its bytes are not one.
#[derive(Debug)]
pub struct Piece<'a> {
    /// Byte offset of the document in the input (of the enclosing string or body for
    /// documents that were inside a string).
    pub offset: usize,
    pub doc: Result<Cow<'a, [u8]>, Problem>,
}

/// Splits `input` into documents.
pub fn split(input: &[u8]) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    split_into(input, 0, &mut out, 0);
    out
}

const MAX_STRING_NESTING: u8 = 2;

fn split_into<'a>(input: &'a [u8], base: usize, out: &mut Vec<Piece<'a>>, nesting: u8) {
    let mut pos = 0;
    let mut bad_header: Option<Problem> = None;
    loop {
        pos = skip_ws(input, pos);
        if pos >= input.len() {
            break;
        }
        if input[pos] == b',' {
            pos += 1; // `{...},{...}`: a separator, not a document
            continue;
        }
        let start = pos;
        let end = match scan_value(input, start) {
            Ok(end) => end,
            Err(err_at) => {
                let stop = resync(input, start);
                let msg = if err_at >= input.len() {
                    "the document ends before its JSON is complete".to_owned()
                } else {
                    format!("JSON syntax error at byte {}", base + err_at)
                };
                out.push(Piece {
                    offset: base + start,
                    doc: Err(Problem::new(RejectCode::InvalidJson, msg)),
                });
                bad_header = None;
                pos = stop;
                continue;
            }
        };
        pos = end;
        let value = &input[start..end];
        match value[0] {
            b'{' => {
                if let Some(header) = as_header(value) {
                    bad_header = header.err();
                    continue;
                }
                if let Some(docs) = as_put_trace_segments(value) {
                    match docs {
                        Ok(docs) => {
                            for d in docs {
                                // The body's documents are strings holding JSON.
                                out.push(Piece {
                                    offset: base + start,
                                    doc: d.map(|d| Cow::Owned(d.into_bytes())),
                                });
                            }
                        }
                        Err(p) => out.push(Piece {
                            offset: base + start,
                            doc: Err(p),
                        }),
                    }
                    continue;
                }
                let doc = match bad_header.take() {
                    Some(p) => Err(p),
                    None => Ok(Cow::Borrowed(value)),
                };
                out.push(Piece {
                    offset: base + start,
                    doc,
                });
            }
            b'[' => split_array(value, base + start, out),
            b'"' if nesting < MAX_STRING_NESTING => match sonic_rs::from_slice::<String>(value) {
                Ok(text) => {
                    let mut inner = Vec::new();
                    split_into(text.as_bytes(), 0, &mut inner, nesting + 1);
                    for p in inner {
                        let doc = match p.doc {
                            Ok(b) => Ok(Cow::Owned(b.into_owned())),
                            Err(e) => Err(e),
                        };
                        out.push(Piece {
                            offset: base + start,
                            doc,
                        });
                    }
                }
                Err(e) => out.push(Piece {
                    offset: base + start,
                    doc: Err(Problem::new(
                        RejectCode::InvalidJson,
                        format!("bad JSON string: {e}"),
                    )),
                }),
            },
            _ => out.push(Piece {
                offset: base + start,
                doc: Err(Problem::new(
                    RejectCode::InvalidSegment,
                    format!(
                        "a segment document must be a JSON object, found `{}`",
                        preview(value)
                    ),
                )),
            }),
        }
    }
}

/// Elements of a top-level array: each is one document.
fn split_array<'a>(value: &'a [u8], base: usize, out: &mut Vec<Piece<'a>>) {
    let mut pos = 1;
    loop {
        pos = skip_ws(value, pos);
        if pos >= value.len() || value[pos] == b']' {
            break;
        }
        if value[pos] == b',' {
            pos += 1; // an empty element (`[,]`) holds no document
            continue;
        }
        let start = pos;
        let Ok(end) = scan_value(value, start) else {
            out.push(Piece {
                offset: base + start,
                doc: Err(Problem::new(RejectCode::InvalidJson, "bad array element")),
            });
            break;
        };
        let elem = &value[start..end];
        let doc = match elem[0] {
            b'{' => Ok(Cow::Borrowed(elem)),
            b'"' => match sonic_rs::from_slice::<String>(elem) {
                Ok(s) => Ok(Cow::Owned(s.into_bytes())),
                Err(e) => Err(Problem::new(RejectCode::InvalidJson, e.to_string())),
            },
            _ => Err(Problem::new(
                RejectCode::InvalidSegment,
                format!(
                    "a segment document must be a JSON object, found `{}`",
                    preview(elem)
                ),
            )),
        };
        out.push(Piece {
            offset: base + start,
            doc,
        });
        pos = skip_ws(value, end);
        if pos < value.len() && value[pos] == b',' {
            pos += 1;
        }
    }
}

fn preview(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(&v[..v.len().min(40)]).into_owned();
    if v.len() > 40 { format!("{s}...") } else { s }
}

/// A daemon header line. `Some(Ok)` for a valid header, `Some(Err)` for a header the
/// daemon would refuse, `None` for anything that is not a header.
fn as_header(value: &[u8]) -> Option<Result<(), Problem>> {
    if value.len() > 128 || !contains(value, b"\"format\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Header {
        format: sonic_rs::Value,
        version: sonic_rs::Value,
    }
    let h: Header = sonic_rs::from_slice(value).ok()?;
    use sonic_rs::JsonValueTrait;
    let ok = h
        .format
        .as_str()
        .is_some_and(|f| f.eq_ignore_ascii_case("json"))
        && h.version.as_u64() == Some(1);
    Some(if ok {
        Ok(())
    } else {
        Err(Problem::new(
            RejectCode::InvalidHeader,
            format!(
                "daemon header {} is not {{\"format\":\"json\",\"version\":1}}",
                String::from_utf8_lossy(value)
            ),
        ))
    })
}

type BodyDocs = Vec<Result<String, Problem>>;

fn as_put_trace_segments(value: &[u8]) -> Option<Result<BodyDocs, Problem>> {
    let head = &value[..value.len().min(64)];
    if !contains(head, b"\"TraceSegmentDocuments\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body {
        trace_segment_documents: Vec<sonic_rs::Value>,
    }
    use sonic_rs::JsonValueTrait;
    Some(
        sonic_rs::from_slice::<Body>(value)
            .map(|b| {
                b.trace_segment_documents
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match d.as_str() {
                        Some(s) => Ok(s.to_owned()),
                        None => Err(Problem::new(
                            RejectCode::InvalidSegment,
                            format!("TraceSegmentDocuments[{i}] is not a string holding a document"),
                        )),
                    })
                    .collect()
            })
            .map_err(|e| {
                Problem::new(
                    RejectCode::InvalidSegment,
                    format!("a PutTraceSegments body needs `TraceSegmentDocuments`, an array of strings: {e}"),
                )
            }),
    )
}

/// Where to resume after a syntax error in the value starting at `start`: the next line
/// that begins (at column 0) like a new value. Indented lines of a broken pretty-printed
/// document are skipped with it.
fn resync(b: &[u8], start: usize) -> usize {
    let mut pos = line_end(b, start);
    while pos < b.len() {
        if matches!(b[pos], b'{' | b'[' | b'"') {
            return pos;
        }
        pos = line_end(b, pos);
    }
    b.len()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && b[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

fn line_end(b: &[u8], pos: usize) -> usize {
    match b[pos.min(b.len())..].iter().position(|&c| c == b'\n') {
        Some(i) => pos + i + 1,
        None => b.len(),
    }
}

/// Finds the end of the JSON value starting at `start` (structure only; the parser
/// checks the rest). `Err(pos)` where the structure breaks: a raw newline in a string,
/// a closer that does not match, or the end of input.
fn scan_value(b: &[u8], start: usize) -> Result<usize, usize> {
    if matches!(b.get(start), None | Some(b',' | b':' | b'}' | b']')) {
        return Err(start);
    }
    let mut stack: Vec<u8> = Vec::new();
    let mut i = start;
    loop {
        if i >= b.len() {
            return if stack.is_empty() && i > start {
                Ok(i)
            } else {
                Err(b.len())
            };
        }
        match b[i] {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(b.len()),
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\n') => return Err(i),
                        Some(_) => i += 1,
                    }
                }
            }
            b'{' => {
                stack.push(b'}');
                i += 1;
            }
            b'[' => {
                stack.push(b']');
                i += 1;
            }
            c @ (b'}' | b']') => {
                if stack.is_empty() && i > start {
                    return Ok(i); // a scalar that ends an enclosing array
                }
                if stack.pop() != Some(c) {
                    return Err(i);
                }
                i += 1;
            }
            c => {
                if stack.is_empty() {
                    // a scalar at top level ends at whitespace or a delimiter
                    if c.is_ascii_whitespace() || c == b',' {
                        return Ok(i);
                    }
                }
                i += 1;
            }
        }
        if stack.is_empty() && i > start && matches!(b[i - 1], b'}' | b']' | b'"') {
            return Ok(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(input: &str) -> Vec<Result<String, RejectCode>> {
        split(input.as_bytes())
            .into_iter()
            .map(|p| {
                p.doc
                    .map(|d| String::from_utf8(d.into_owned()).unwrap())
                    .map_err(|e| e.code)
            })
            .collect()
    }

    #[test]
    fn framings() {
        assert_eq!(docs(r#"{"a":1}"#), vec![Ok(r#"{"a":1}"#.to_owned())]);
        assert_eq!(
            docs("{\"a\":1}\n{\"b\":\"}\"}\n"),
            vec![Ok(r#"{"a":1}"#.into()), Ok(r#"{"b":"}"}"#.into())]
        );
        assert_eq!(
            docs(r#"[{"a":1}, {"b":2}]"#),
            vec![Ok(r#"{"a":1}"#.into()), Ok(r#"{"b":2}"#.into())]
        );
        assert_eq!(
            docs("{\"format\": \"json\", \"version\": 1}\n{\"a\":1}"),
            vec![Ok(r#"{"a":1}"#.into())]
        );
        assert_eq!(
            docs(r#"{"TraceSegmentDocuments": ["{\"a\":1}", "{\"b\":"]}"#),
            vec![Ok(r#"{"a":1}"#.into()), Ok(r#"{"b":"#.into())]
        );
        assert_eq!(
            docs(r#""{\"format\":\"json\",\"version\":1}\n{\"a\":1}""#),
            vec![Ok(r#"{"a":1}"#.into())]
        );
        assert_eq!(
            docs("{\"format\":\"xml\",\"version\":1}\n{\"a\":1}"),
            vec![Err(RejectCode::InvalidHeader)]
        );
    }

    #[test]
    fn a_broken_document_costs_only_itself() {
        let got = docs("{\"a\": \"tru\n{\"b\":1}\n[1]\n");
        assert_eq!(
            got,
            vec![
                Err(RejectCode::InvalidJson),
                Ok(r#"{"b":1}"#.into()),
                Err(RejectCode::InvalidSegment)
            ]
        );
        let got = docs("{\"b\":1}\n{\"a\": [1,");
        assert_eq!(
            got,
            vec![Ok(r#"{"b":1}"#.into()), Err(RejectCode::InvalidJson)]
        );
        assert_eq!(
            docs("42 {\"a\":1}"),
            vec![Err(RejectCode::InvalidSegment), Ok(r#"{"a":1}"#.into())]
        );
        // an unclosed object costs only its own line
        let got = docs("{\"a\":1\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(
            got,
            vec![
                Err(RejectCode::InvalidJson),
                Ok(r#"{"b":2}"#.into()),
                Ok(r#"{"c":3}"#.into())
            ]
        );
        // a broken pretty-printed document: its indented lines go with it
        let got = docs("{\n  \"a\": [1,\n  \"b\": }\n{\"c\":3}\n");
        assert_eq!(
            got,
            vec![Err(RejectCode::InvalidJson), Ok(r#"{"c":3}"#.into())]
        );
    }

    #[test]
    fn commas_and_empty_elements_never_panic() {
        assert_eq!(
            docs(r#"{"a":1},{"b":2}"#),
            vec![Ok(r#"{"a":1}"#.into()), Ok(r#"{"b":2}"#.into())]
        );
        assert_eq!(docs("[,]"), vec![]);
        assert_eq!(
            docs(r#"[{"a":1},,{"b":2}]"#),
            vec![Ok(r#"{"a":1}"#.into()), Ok(r#"{"b":2}"#.into())]
        );
        for s in [
            ",", "]", "}", ":", "[", "{", "\"", "[1,", "{\"a\"}", "]]{", ",,,", "[[", "[\"x",
        ] {
            let _ = docs(s);
        }
        let got = docs(r#"{"TraceSegmentDocuments": ["{\"a\":1}", 5]}"#);
        assert_eq!(
            got,
            vec![Ok(r#"{"a":1}"#.into()), Err(RejectCode::InvalidSegment)]
        );
    }
}
