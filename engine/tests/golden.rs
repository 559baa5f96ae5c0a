#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// Golden filter-expression tests.
//
// Every `tests/golden/*.cases` file is run against its dataset:
// - `NAME.cases` -> `tests/golden/NAME.jsonl` (one document per line);
// - `sdk.cases`  -> the SDK corpus `shared/fixtures/sdk-python/datagrams.jsonl` (the team's
//   `shared/` directory beside the checkout, or `TRACELAKE_SHARED`).
//
// File format:
//
//     # comment lines start with '#'
//     group slow = responsetime > 1          (group definitions, before the cases)
//
//     expr: service("api") { fault }
//     ids: 1-5f5e1000-0000000000000000000000a1 1-5f5e1000-0000000000000000000000a3
//
// `ids:` holds the matching trace ids sorted ascending, `-` for none, `error` when the
// expression must fail (unknown group, ...), `?` when no answer has been recorded yet.
//
// Each dataset is ingested into a fresh engine and every case is answered twice: with all
// rows in the memtable, then again after `flush()`. Both answers must agree with each other
// and with the file. Mismatches are collected and reported together at the end.
//
// `UPDATE_GOLDEN=1 cargo test -p tracelake --test golden` rewrites the `ids:` lines with the
// engine's answers (comments, groups and order are kept); review the diff before committing.

mod common;
use common::shared;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracelake::{Engine, EngineOptions};

/// The suite must not shrink by accident.
const MIN_CASES: usize = 150;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Ids(Vec<String>),
    Error,
    Unknown,
}

#[derive(Debug, Clone)]
struct Case {
    expr: String,
    expect: Expect,
    /// 0-based index of the `expr:` line (for messages).
    expr_line: usize,
    /// 0-based index of the `ids:` line (rewritten by UPDATE_GOLDEN=1).
    ids_line: usize,
}

#[derive(Debug)]
struct CasesFile {
    path: PathBuf,
    lines: Vec<String>,
    groups: Vec<(String, String)>,
    cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ids(Vec<String>),
    Error(String),
}

/// Drops a trailing ` # comment` (a `#` after whitespace, outside string literals and not
/// opening a `#[...]` JSON literal).
fn strip_trailing_comment(s: &str) -> &str {
    let bytes = s.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'#' if !in_str
                && i > 0
                && bytes[i - 1].is_ascii_whitespace()
                && bytes.get(i + 1) != Some(&b'[') =>
            {
                return s[..i].trim_end();
            }
            _ => {}
        }
        i += 1;
    }
    s.trim_end()
}

fn parse_cases(path: &Path) -> CasesFile {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut groups = Vec::new();
    let mut cases = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    let at = |i: usize| format!("{}:{}", path.display(), i + 1);
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("expr:") {
            assert!(
                pending.is_none(),
                "{}: `expr:` without `ids:` before it",
                at(i)
            );
            let expr = strip_trailing_comment(rest.trim()).to_owned();
            assert!(!expr.is_empty(), "{}: empty expression", at(i));
            pending = Some((expr, i));
        } else if let Some(rest) = line.strip_prefix("ids:") {
            let (expr, expr_line) = pending
                .take()
                .unwrap_or_else(|| panic!("{}: `ids:` without an `expr:` line", at(i)));
            let words: Vec<&str> = rest.split_whitespace().collect();
            let expect = match words.as_slice() {
                ["-"] => Expect::Ids(Vec::new()),
                ["error"] => Expect::Error,
                ["?"] | [] => Expect::Unknown,
                ids => {
                    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
                    let given = v.clone();
                    v.sort();
                    assert_eq!(v, given, "{}: ids must be sorted ascending", at(i));
                    Expect::Ids(v)
                }
            };
            cases.push(Case {
                expr,
                expect,
                expr_line,
                ids_line: i,
            });
        } else if let Some(rest) = line.strip_prefix("group ") {
            assert!(
                cases.is_empty() && pending.is_none(),
                "{}: group definitions come before the cases",
                at(i)
            );
            let (name, expr) = rest
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: expected `group NAME = EXPR`", at(i)));
            groups.push((
                name.trim().to_owned(),
                strip_trailing_comment(expr.trim()).to_owned(),
            ));
        } else {
            panic!("{}: unexpected line {raw:?}", at(i));
        }
    }
    assert!(
        pending.is_none(),
        "{}: last `expr:` has no `ids:`",
        path.display()
    );
    CasesFile {
        path: path.to_owned(),
        lines,
        groups,
        cases,
    }
}

fn dataset_for(cases: &Path) -> (PathBuf, Vec<u8>) {
    let stem = cases
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a .cases file name");
    let data = if stem == "sdk" {
        shared().join("fixtures/sdk-python/datagrams.jsonl")
    } else {
        cases.with_extension("jsonl")
    };
    let bytes = std::fs::read(&data)
        .unwrap_or_else(|e| panic!("dataset {} for {}: {e}", data.display(), cases.display()));
    (data, bytes)
}

fn options() -> EngineOptions {
    EngineOptions {
        // keep everything in the memtable until the test flushes
        flush_age: Duration::from_secs(24 * 3600),
        // the files as the test flushed them, not compacted behind its back
        maintenance_interval: None,
        ..EngineOptions::default()
    }
}

fn answer(engine: &Engine, expr: &str) -> Outcome {
    match engine.find_trace_ids(expr) {
        Ok(mut ids) => {
            ids.sort();
            Outcome::Ids(ids)
        }
        Err(e) => Outcome::Error(e.to_string()),
    }
}

fn run_all(engine: &Engine, cases: &[Case]) -> Vec<Outcome> {
    cases.iter().map(|c| answer(engine, &c.expr)).collect()
}

fn holds(expect: &Expect, got: &Outcome) -> bool {
    match (expect, got) {
        (Expect::Ids(want), Outcome::Ids(got)) => want == got,
        (Expect::Error, Outcome::Error(_)) => true,
        _ => false,
    }
}

fn as_expect(o: &Outcome) -> Expect {
    match o {
        Outcome::Ids(v) => Expect::Ids(v.clone()),
        Outcome::Error(_) => Expect::Error,
    }
}

fn show_expect(e: &Expect) -> String {
    match e {
        Expect::Ids(v) if v.is_empty() => "-".to_owned(),
        Expect::Ids(v) => v.join(" "),
        Expect::Error => "error".to_owned(),
        Expect::Unknown => "? (not recorded yet: run with UPDATE_GOLDEN=1 and review)".to_owned(),
    }
}

fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Ids(v) if v.is_empty() => "-".to_owned(),
        Outcome::Ids(v) => v.join(" "),
        Outcome::Error(e) => format!("error: {e}"),
    }
}

/// The text written to an `ids:` line.
fn ids_line(o: &Outcome) -> String {
    match o {
        Outcome::Ids(v) if v.is_empty() => "ids: -".to_owned(),
        Outcome::Ids(v) => format!("ids: {}", v.join(" ")),
        Outcome::Error(_) => "ids: error".to_owned(),
    }
}

/// Which expected ids are missing and which are extra, for long lists.
fn diff(expect: &Expect, got: &Outcome) -> String {
    let (Expect::Ids(want), Outcome::Ids(got)) = (expect, got) else {
        return String::new();
    };
    let missing: Vec<&str> = want
        .iter()
        .filter(|w| !got.contains(w))
        .map(String::as_str)
        .collect();
    let extra: Vec<&str> = got
        .iter()
        .filter(|g| !want.contains(g))
        .map(String::as_str)
        .collect();
    let mut s = String::new();
    if !missing.is_empty() {
        let _ = write!(s, "\n    missing:  {}", missing.join(" "));
    }
    if !extra.is_empty() {
        let _ = write!(s, "\n    extra:    {}", extra.join(" "));
    }
    if missing.is_empty() && extra.is_empty() {
        s.push_str("\n    (same ids, but duplicated in the answer)");
    }
    s
}

fn rewrite(file: &CasesFile, answers: &[Outcome]) {
    let mut lines = file.lines.clone();
    for (case, got) in file.cases.iter().zip(answers) {
        lines[case.ids_line] = ids_line(got);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&file.path, text)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.path.display()));
}

#[test]
fn golden_filter_expressions() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cases"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no .cases files in tests/golden");

    let mut total = 0;
    let mut failures = String::new();
    let mut failed = 0;
    for path in &paths {
        let file = parse_cases(path);
        total += file.cases.len();
        let (data_path, data) = dataset_for(path);

        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), options()).unwrap();
        let report = engine.ingest(&data).unwrap();
        assert!(
            report.rejected.is_empty(),
            "{}: {} documents rejected: {:?}",
            data_path.display(),
            report.rejected.len(),
            report.rejected
        );
        assert!(
            report.accepted > 0,
            "{}: nothing ingested",
            data_path.display()
        );
        for (name, expr) in &file.groups {
            if let Err(e) = engine.create_group(name.as_str(), expr.as_str()) {
                panic!(
                    "{}: cannot create group {name} = {expr}: {e}",
                    path.display()
                );
            }
        }

        assert!(
            engine.stats().memtable_rows > 0,
            "{}: the first pass should read the memtable",
            path.display()
        );
        let in_memtable = run_all(&engine, &file.cases);
        engine.flush().unwrap();
        let stats = engine.stats();
        assert!(
            stats.memtable_rows == 0 && stats.files > 0,
            "{}: the second pass should read flushed files: {stats:?}",
            path.display()
        );
        let flushed = run_all(&engine, &file.cases);

        for ((case, mem), disk) in file.cases.iter().zip(&in_memtable).zip(&flushed) {
            let where_ = format!("{}:{}", path.display(), case.expr_line + 1);
            if mem != disk {
                failed += 1;
                let _ = write!(
                    failures,
                    "\n{where_}: memtable and flushed answers differ\n  expr:     {}\n  memtable: {}\n  flushed:  {}{}",
                    case.expr,
                    show_outcome(mem),
                    show_outcome(disk),
                    diff(&as_expect(mem), disk),
                );
                continue;
            }
            if update || holds(&case.expect, mem) {
                continue;
            }
            failed += 1;
            let _ = write!(
                failures,
                "\n{where_}\n  expr:     {}\n  expected: {}\n  got:      {}{}",
                case.expr,
                show_expect(&case.expect),
                show_outcome(mem),
                diff(&case.expect, mem),
            );
        }
        if update {
            rewrite(&file, &in_memtable);
        }
        engine.close().unwrap();
        drop(engine);

        // the same files with the index sidecars ignored (a forced full scan)
        let scan = Engine::open(
            dir.path(),
            EngineOptions {
                use_indexes: false,
                ..options()
            },
        )
        .unwrap();
        let scanned = run_all(&scan, &file.cases);
        for ((case, disk), full) in file.cases.iter().zip(&flushed).zip(&scanned) {
            if disk != full {
                failed += 1;
                let _ = write!(
                    failures,
                    "\n{}:{}: index and full-scan answers differ\n  expr:     {}\n  index:    {}\n  scan:     {}",
                    path.display(),
                    case.expr_line + 1,
                    case.expr,
                    show_outcome(disk),
                    show_outcome(full),
                );
            }
        }
        scan.close().unwrap();
    }

    assert!(
        total >= MIN_CASES,
        "only {total} golden cases across {} files (at least {MIN_CASES} expected)",
        paths.len()
    );
    if failed > 0 {
        panic!("{failed} of {total} golden cases failed:{failures}\n");
    }
}
