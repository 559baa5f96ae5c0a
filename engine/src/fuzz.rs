//! The end-to-end fuzz target's body: ingest, then query, with and without indexes.
//!
//! The input is a tape of choices: it picks a handful of traces (services, HTTP
//! statuses, response times, annotations, users, URLs, start times across two hour
//! partitions), which batches reach Parquet and which stay in the memtable, a filter
//! expression built from the language's predicates and maybe a trace-id window. The
//! answer of an engine that prunes (index sidecars, files' manifest bounds) must equal a
//! full scan's, before and after everything is flushed. Like the storage and query bodies, it returns `Err` naming what differed;
//! `fuzz/` runs it under libFuzzer and the tests replay `fuzz/corpus/differential/`.

use std::fmt::Write as _;
use std::path::Path;

use tracelake_storage::Durability;

use crate::{Engine, EngineOptions};

/// What the body found wrong.
pub type Outcome = std::result::Result<(), String>;

struct Tape<'a> {
    data: &'a [u8],
    at: usize,
}

impl Tape<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[usize::from(self.byte()) % from.len()]
    }
    fn below(&mut self, n: u8) -> u8 {
        self.byte() % n
    }
}

const SERVICES: &[&str] = &["api", "inventory-svc", "billing", "web"];
const TENANTS: &[&str] = &["acme", "globex", "initech"];
const URLS: &[&str] = &["https://a.example/cart", "https://a.example/pay", "/health"];
const USERS: &[&str] = &["alice", "bob", "carol"];
const STATUSES: &[u16] = &[200, 201, 404, 429, 500, 503];
/// 2026-01-01T10:00:00Z: traces start here or one hour later.
const BASE: u64 = 1_767_261_600;

fn document(t: &mut Tape<'_>, trace: usize, seg: usize) -> String {
    let hour = u64::from(t.below(2)) * 3600;
    let start = BASE + hour + u64::from(t.byte());
    let trace_id = format!("1-{:08x}-{:024x}", BASE + hour, trace + 1);
    let status = STATUSES[usize::from(t.byte()) % STATUSES.len()];
    let millis = 1 + u64::from(t.byte()) * u64::from(t.byte()) / 8;
    let mut doc = format!(
        r#"{{"trace_id":"{trace_id}","id":"{:016x}","name":"{}","start_time":{start}.0,"end_time":{}.{:03}"#,
        trace * 16 + seg + 1,
        t.pick(SERVICES),
        start + millis / 1000,
        millis % 1000,
    );
    if seg > 0 {
        let _ = write!(doc, r#","parent_id":"{:016x}""#, trace * 16 + 1);
    }
    let _ = write!(
        doc,
        r#","http":{{"request":{{"url":"{}","method":"GET"}},"response":{{"status":{status}}}}}"#,
        t.pick(URLS)
    );
    match status {
        500.. => doc.push_str(r#","fault":true"#),
        429 => doc.push_str(r#","error":true,"throttle":true"#),
        400.. => doc.push_str(r#","error":true"#),
        _ => {}
    }
    if t.below(2) == 0 {
        let _ = write!(doc, r#","user":"{}""#, t.pick(USERS));
    }
    let _ = write!(
        doc,
        r#","annotations":{{"tenant":"{}","n":{},"flag":{}}}"#,
        t.pick(TENANTS),
        t.below(10),
        t.below(2) == 0
    );
    if t.below(3) == 0 {
        let _ = write!(
            doc,
            r#","subsegments":[{{"id":"{:016x}","name":"{}","start_time":{start}.0,"end_time":{start}.5,"namespace":"remote","http":{{"request":{{"url":"https://dep.example/x"}},"response":{{"status":{status}}}}}}}]"#,
            trace * 16 + seg + 8,
            t.pick(SERVICES),
        );
    }
    doc.push('}');
    doc
}

fn predicate(t: &mut Tape<'_>) -> String {
    match t.below(12) {
        0 => format!(r#"service("{}")"#, t.pick(SERVICES)),
        1 => format!(r#"annotation.tenant = "{}""#, t.pick(TENANTS)),
        2 => format!("annotation.n > {}", t.below(10)),
        3 => format!("annotation.flag = {}", t.below(2) == 0),
        4 => format!("responsetime > {}", f64::from(t.byte()) / 100.0),
        5 => format!(
            "http.status = {}",
            STATUSES[usize::from(t.byte()) % STATUSES.len()]
        ),
        6 => t
            .pick(&["fault", "error", "throttle", "ok", "!ok"])
            .to_owned(),
        7 => format!(
            r#"http.url CONTAINS "{}""#,
            t.pick(&["cart", "pay", "health"])
        ),
        8 => format!(r#"user = "{}""#, t.pick(USERS)),
        9 => format!(r#"edge("{}", "{}")"#, t.pick(SERVICES), t.pick(SERVICES)),
        10 => format!(r#"service("{}") {{ fault }}"#, t.pick(SERVICES)),
        _ => format!("duration >= {}", f64::from(t.byte()) / 50.0),
    }
}

fn expression(t: &mut Tape<'_>, depth: u8) -> String {
    if depth == 0 || t.below(3) == 0 {
        return predicate(t);
    }
    let (a, b) = (expression(t, depth - 1), expression(t, depth - 1));
    match t.below(3) {
        0 => format!("({a}) AND ({b})"),
        1 => format!("({a}) OR ({b})"),
        _ => format!("!({a})"),
    }
}

fn open(dir: &Path, use_indexes: bool) -> Result<Engine, String> {
    let options = EngineOptions {
        durability: Durability::None,
        use_indexes,
        maintenance_interval: None,
        query_threads: 1,
        ..EngineOptions::default()
    };
    Engine::open(dir, options).map_err(|e| format!("open: {e}"))
}

/// Ingests the traces the tape describes in two batches (the first flushed to Parquet
/// and index sidecars, the second left in the memtable), then checks that an indexed
/// engine and a scanning one find the same traces for the tape's filter expression,
/// and again once everything is flushed. `dir` must be a new, empty directory.
pub fn differential(dir: &Path, data: &[u8]) -> Outcome {
    let mut t = Tape { data, at: 0 };
    let traces = 1 + usize::from(t.below(8));
    let mut batches = [String::new(), String::new()];
    for trace in 0..traces {
        for seg in 0..1 + usize::from(t.below(3)) {
            let batch = &mut batches[usize::from(t.below(2))];
            batch.push_str(&document(&mut t, trace, seg));
            batch.push('\n');
        }
    }
    let filter = expression(&mut t, 3);
    // a trace-id window (past the tape's end: none), which prunes files by their bounds
    let base = BASE as f64;
    let window = match t.below(4) {
        0 => None,
        1 => Some((base, base + 3600.0)),
        2 => Some((base + 3600.0, base + 7200.0)),
        _ => Some((
            base + f64::from(t.below(200)) - 100.0,
            base + 3600.0 + f64::from(t.byte()) * 20.0,
        )),
    };
    let answers = |engine: &Engine| match window {
        None => engine
            .find_trace_ids(&filter)
            .map_err(|e| format!("{filter}: {e}")),
        Some((a, b)) => {
            let page = engine
                .trace_summaries(&crate::TraceQuery {
                    filter: Some(filter.clone()),
                    range: Some((a, b, crate::RangeType::TraceId)),
                    limit: 1000,
                    ..crate::TraceQuery::default()
                })
                .map_err(|e| format!("{filter} in [{a}, {b}): {e}"))?;
            let mut ids: Vec<String> = page.trace_summaries.into_iter().map(|s| s.id).collect();
            ids.sort();
            Ok(ids)
        }
    };
    let indexed = open(dir, true)?;
    for (i, batch) in batches.iter().enumerate() {
        let report = indexed
            .ingest(batch.as_bytes())
            .map_err(|e| format!("ingest: {e}"))?;
        if !report.rejected.is_empty() {
            return Err(format!(
                "generated documents were rejected: {:?}",
                report.rejected
            ));
        }
        if i == 0 {
            indexed.flush().map_err(|e| format!("flush: {e}"))?;
        }
    }
    let with_index = answers(&indexed)?;
    indexed.close().map_err(|e| format!("close: {e}"))?;
    drop(indexed);
    let scanning = open(dir, false)?;
    let scanned = answers(&scanning)?;
    if with_index != scanned {
        return Err(format!(
            "{filter}: indexes found {with_index:?}, a full scan {scanned:?}"
        ));
    }
    scanning.flush().map_err(|e| format!("flush: {e}"))?;
    scanning.close().map_err(|e| format!("close: {e}"))?;
    drop(scanning);
    let flushed = answers(&open(dir, true)?)?;
    if flushed != scanned {
        return Err(format!(
            "{filter}: after flushing everything indexes found {flushed:?}, before {scanned:?}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn differential_corpus() {
        tracelake_storage::fuzz::replay("differential", |data| {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            super::differential(dir.path(), data)
        })
        .unwrap();
    }
}
