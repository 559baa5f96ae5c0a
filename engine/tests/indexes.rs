#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Index sidecars at work: selective questions read only the row groups they need, and a
//! damaged or missing sidecar costs speed, never an answer.

use tracelake::{Engine, EngineOptions, TraceQuery};

const FILES: u32 = 10;
const TRACES_PER_FILE: u32 = 40;

fn trace_id(file: u32, t: u32) -> String {
    format!("1-5f5e1000-{:012x}{:012x}", file, t)
}

/// Ten files of forty traces each; one trace of file 6 carries `needle = "x"`.
fn store(dir: &std::path::Path) -> Engine {
    let engine = Engine::open(dir, EngineOptions::default()).unwrap();
    for f in 0..FILES {
        let mut body = String::new();
        for t in 0..TRACES_PER_FILE {
            let ann = if f == 6 && t == 17 {
                r#","annotations":{"needle":"x","tenant":"acme"}"#
            } else {
                r#","annotations":{"tenant":"acme"}"#
            };
            body.push_str(&format!(
                r#"{{"trace_id":"{}","id":"{:08x}{:08x}","name":"api","start_time":1600000000,"end_time":1600000001{ann}}}"#,
                trace_id(f, t),
                f + 1,
                t + 1
            ));
            body.push('\n');
        }
        assert!(engine.ingest(body.as_bytes()).unwrap().rejected.is_empty());
        engine.flush().unwrap();
    }
    assert_eq!(engine.stats().files, FILES as usize);
    engine
}

fn delta(engine: &Engine, f: impl FnOnce()) -> (u64, u64) {
    let (r0, s0) = engine.scan_counters();
    f();
    let (r1, s1) = engine.scan_counters();
    (r1 - r0, s1 - s0)
}

#[test]
fn selective_queries_read_only_their_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path());
    let needle = trace_id(6, 17);

    // an annotation value in one trace: one row group of ten
    let (read, skipped) = delta(&engine, || {
        assert_eq!(
            engine.find_trace_ids(r#"annotation.needle = "x""#).unwrap(),
            vec![needle.clone()]
        );
    });
    assert_eq!((read, skipped), (1, u64::from(FILES) - 1));

    // a trace by id, no time range: one row group
    let (read, skipped) = delta(&engine, || {
        let t = engine.get_traces(&[needle.as_str()]).unwrap();
        assert_eq!(t.traces.len(), 1);
    });
    assert_eq!((read, skipped), (1, u64::from(FILES) - 1));

    // a summary page of the needle: the search and the fetch read one row group each,
    // and the count of processed traces still covers the whole store
    let (read, _) = delta(&engine, || {
        let page = engine
            .trace_summaries(&TraceQuery {
                filter: Some(r#"annotation.needle = "x" AND ok"#.into()),
                ..TraceQuery::default()
            })
            .unwrap();
        assert_eq!(page.trace_summaries.len(), 1);
        assert_eq!(
            page.traces_processed_count,
            u64::from(FILES * TRACES_PER_FILE)
        );
    });
    assert_eq!(read, 2);

    // a value nobody has: nothing is read
    let (read, _) = delta(&engine, || {
        assert!(
            engine
                .find_trace_ids(r#"annotation.needle = "y""#)
                .unwrap()
                .is_empty()
        );
    });
    assert_eq!(read, 0);

    // not selective (`!`, `OR` with an unindexed side): every row group, same answers
    let (read, _) = delta(&engine, || {
        let n = engine
            .find_trace_ids(r#"!annotation.needle = "x""#)
            .unwrap()
            .len();
        assert_eq!(n, (FILES * TRACES_PER_FILE) as usize - 1);
    });
    assert_eq!(read, u64::from(FILES));
}

#[test]
fn damaged_or_missing_sidecars_cost_speed_not_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path());
    let want = engine.find_trace_ids(r#"annotation.needle = "x""#).unwrap();
    let all = engine
        .find_trace_ids(r#"annotation.tenant = "acme""#)
        .unwrap();
    engine.close().unwrap();
    drop(engine);

    // damage one sidecar and remove another
    let mut sidecars: Vec<std::path::PathBuf> = Vec::new();
    let mut stack = vec![dir.path().join("spans")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "idx") {
                sidecars.push(p);
            }
        }
    }
    assert_eq!(sidecars.len(), FILES as usize, "one sidecar per data file");
    sidecars.sort();
    let mut bytes = std::fs::read(&sidecars[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&sidecars[0], bytes).unwrap();
    std::fs::remove_file(&sidecars[1]).unwrap();

    let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
    assert_eq!(
        engine.find_trace_ids(r#"annotation.needle = "x""#).unwrap(),
        want
    );
    assert_eq!(
        engine
            .find_trace_ids(r#"annotation.tenant = "acme""#)
            .unwrap(),
        all
    );
    let t = engine.get_traces(&[want[0].as_str()]).unwrap();
    assert_eq!(t.traces.len(), 1);
    // the same with indexes off
    engine.close().unwrap();
    drop(engine);
    let scan = Engine::open(
        dir.path(),
        EngineOptions {
            use_indexes: false,
            maintenance_interval: None,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let (read, skipped) = delta(&scan, || {
        assert_eq!(
            scan.find_trace_ids(r#"annotation.needle = "x""#).unwrap(),
            want
        );
    });
    assert_eq!((read, skipped), (u64::from(FILES), 0));
}

/// Every page (ids, tokens, processed counts) of `filter`, newest first.
fn all_pages(engine: &Engine, filter: &str, limit: usize, rate: Option<f64>) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = engine
            .trace_summaries(&TraceQuery {
                filter: Some(filter.into()),
                limit,
                next_token: token.clone(),
                sampling_rate: rate,
                ..TraceQuery::default()
            })
            .unwrap();
        let ids: Vec<&str> = page.trace_summaries.iter().map(|s| s.id.as_str()).collect();
        out.push(format!(
            "{ids:?} processed={} next={:?}",
            page.traces_processed_count, page.next_token
        ));
        match page.next_token {
            Some(t) => token = Some(t),
            None => return out,
        }
        assert!(out.len() < 1000, "paging does not end");
    }
}

/// The index answers a page from the newest candidates and stops; a full scan looks at
/// everything. Both must give the same pages, with files, upserts across files, a trace
/// spread over two files and memtable rows in play.
#[test]
fn paged_index_search_equals_a_full_scan() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |trace: &str, id: u32, group: &str, extra: &str| {
        format!(
            r#"{{"trace_id":"{trace}","id":"{id:016x}","name":"api","start_time":1600000000{extra},"annotations":{{"group":"{group}"}}}}"#
        ) + "\n"
    };
    let groups = ["a", "b", "c"];
    let ended = r#","end_time":1600000001"#;
    {
        let engine = Engine::open(dir.path(), EngineOptions::default()).unwrap();
        let mut id = 1;
        for f in 0..6u32 {
            let mut body = String::new();
            for t in 0..60u32 {
                let group = groups[(t % 3) as usize];
                let extra = match t % 7 {
                    0 => r#","end_time":1600000002,"error":true"#,
                    // sent in progress now, completed in the next file
                    1 => r#","in_progress":true"#,
                    _ => ended,
                };
                body += &doc(&trace_id(f, t), id, group, extra);
                if t % 7 == 1 && f > 0 {
                    // the completion of the previous file's in-progress segment
                    let done = r#","end_time":1600000003"#;
                    body += &doc(&trace_id(f - 1, t), id - 60, group, done);
                }
                if t == 5 && f > 0 {
                    // a second segment of a trace of the previous file
                    body += &doc(&trace_id(f - 1, 6), 900_000 + f, "c", ended);
                }
                id += 1;
            }
            assert!(engine.ingest(body.as_bytes()).unwrap().rejected.is_empty());
            engine.flush().unwrap();
        }
        engine.close().unwrap();
    }
    // memtable rows: new traces, and a segment of a flushed trace
    let mut memtable = String::new();
    for t in 0..25u32 {
        memtable += &doc(
            &trace_id(9, t),
            800_000 + t,
            groups[(t % 3) as usize],
            ended,
        );
    }
    let failed = r#","end_time":1600000001,"error":true"#;
    memtable += &doc(&trace_id(3, 10), 850_000, "a", failed);
    // the same files for the engine that scans
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());

    let filters = [
        r#"annotation.group = "a""#,
        // the index narrows to group "a"; only evaluation knows the duration
        r#"annotation.group = "a" AND duration >= 2"#,
        r#"annotation.group = "a" AND error"#,
        r#"annotation.group = "b" OR annotation.group = "c""#,
        r#"annotation.group = "c" AND NOT error"#,
        r#"annotation.group = "nobody""#,
    ];
    let cases: Vec<(usize, Option<f64>)> = vec![(7, None), (100, None), (5, Some(0.5))];
    let answers = |dir: &std::path::Path, use_indexes: bool| {
        let engine = Engine::open(
            dir,
            EngineOptions {
                use_indexes,
                maintenance_interval: None,
                ..EngineOptions::default()
            },
        )
        .unwrap();
        assert!(
            engine
                .ingest(memtable.as_bytes())
                .unwrap()
                .rejected
                .is_empty()
        );
        assert!(engine.stats().memtable_rows > 0);
        let mut out = Vec::new();
        for f in filters {
            // a sparse filter at every small page size: some page is filled exactly by
            // the first chunk of candidates, the edge of when to stop
            let sweep = (f == filters[1]).then_some(1..13).into_iter().flatten();
            let cases = cases.iter().copied().chain(sweep.map(|l| (l, None)));
            for (limit, rate) in cases {
                out.push((f, limit, rate, all_pages(&engine, f, limit, rate)));
            }
        }
        // whole traces and full summaries: read through the sidecars' trace directory,
        // or planned as a scan
        let every = r#"annotation.group = "a" OR annotation.group = "b" OR annotation.group = "c""#;
        let ids = engine.find_trace_ids(every).unwrap();
        assert!(ids.len() > 300);
        let traces = engine.get_traces(&ids).unwrap();
        assert!(traces.unprocessed_trace_ids.is_empty());
        let mut docs: Vec<(String, Vec<String>)> = traces
            .traces
            .iter()
            .map(|t| {
                let mut d: Vec<String> = t.segments.iter().map(|s| s.document.clone()).collect();
                d.sort();
                (t.id.clone(), d)
            })
            .collect();
        docs.sort();
        let page = engine
            .trace_summaries(&TraceQuery {
                filter: Some(every.into()),
                limit: 1000,
                ..TraceQuery::default()
            })
            .unwrap();
        let summaries = serde_json::to_string(&page.trace_summaries).unwrap();
        out.push(("documents", 0, None, vec![format!("{docs:?}"), summaries]));
        out
    };
    let indexed = answers(dir.path(), true);
    let scanned = answers(copy.path(), false);
    assert_eq!(indexed.len(), scanned.len());
    for (i, s) in indexed.iter().zip(&scanned) {
        assert_eq!(i, s, "{} limit {} rate {:?}", i.0, i.1, i.2);
    }
    // the pages are not trivially short
    assert!(indexed.iter().any(|(_, _, _, pages)| pages.len() > 10));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Files of six hours; trace-id windows (inside an hour, across hours, on the edges, empty)
/// and SQL ranges on `start_ns` open only the files whose manifest bounds can match, and
/// answer what a scan of every file answers.
#[test]
fn windows_open_only_the_files_they_can_match() {
    let hour0: i64 = 1_599_998_400;
    let open = |dir: &std::path::Path, use_indexes: bool| {
        Engine::open(
            dir,
            EngineOptions {
                use_indexes,
                maintenance_interval: None,
                ..EngineOptions::default()
            },
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), true);
    for h in 0..6i64 {
        let mut body = String::new();
        for t in 0..30i64 {
            let at = hour0 + h * 3600 + t * 120;
            body.push_str(&format!(
                r#"{{"trace_id":"1-{at:08x}-{:024x}","id":"{:016x}","name":"api","start_time":{at},"end_time":{at}.5}}"#,
                t + 1,
                h * 100 + t + 1
            ));
            body.push('\n');
        }
        engine.ingest(body.as_bytes()).unwrap();
        engine.flush().unwrap();
    }
    engine.close().unwrap();
    drop(engine);
    let h = |n: i64| hour0 + n * 3600;
    let windows = [
        (h(2) + 600, h(2) + 1200, 1),
        (h(1) + 3000, h(3) + 100, 3),
        (h(4), h(5), 1),
        (h(6), h(7), 0),
        (h(0) - 7200, h(0), 0),
        (h(0), h(6), 6),
    ];
    let ns = |s: i64| s * 1_000_000_000;
    let q = format!(
        "SELECT count(*) AS n FROM spans WHERE start_ns >= {} AND start_ns < {}",
        ns(h(1)),
        ns(h(2) + 60)
    );
    // per window: the ids and the row groups read; then the SQL count and its reads
    let run = |use_indexes: bool| {
        let e = open(dir.path(), use_indexes);
        let mut out = Vec::new();
        for &(a, b, _) in &windows {
            let mut ids = Vec::new();
            let (read, skipped) = delta(&e, || {
                ids = e
                    .trace_summaries(&TraceQuery {
                        range: Some((a as f64, b as f64, tracelake::RangeType::TraceId)),
                        limit: 1000,
                        ..TraceQuery::default()
                    })
                    .unwrap()
                    .trace_summaries
                    .into_iter()
                    .map(|s| s.id)
                    .collect();
            });
            ids.sort();
            assert!(read + skipped >= 6, "[{a}, {b}): every file counted");
            out.push((ids, read));
        }
        let mut n = 0;
        let (read, _) = delta(&e, || {
            let r = e.sql(&q).unwrap();
            n = r.batches[0]
                .column(0)
                .as_any()
                .downcast_ref::<tracelake::arrow::array::Int64Array>()
                .unwrap()
                .value(0);
        });
        e.close().unwrap();
        (out, n, read)
    };
    let (pruned, n, sql_read) = run(true);
    let (scanned, m, _) = run(false);
    for (((ids, read), (want, _)), (a, b, files)) in pruned.iter().zip(&scanned).zip(windows) {
        assert_eq!(ids, want, "[{a}, {b})");
        // (a summary query scans twice: to find the traces, then to read them whole)
        assert!(
            *read <= 2 * files,
            "[{a}, {b}): read {read} row groups of files, want at most {files} files twice"
        );
    }
    assert!(
        scanned.iter().all(|(_, read)| *read >= 6),
        "the reference reads every file"
    );
    // SQL on start_ns: the same rows, fewer files
    assert_eq!((n, m), (31, 31));
    assert!(sql_read <= 2, "start_ns range read {sql_read} files");
}
