//! Damaged files on disk (issue 7's matrix, the on-disk part). A store holds three hour
//! partitions: A and B flushed to Parquet with their index and rollup sidecars, C only in
//! the WAL. Each case damages one file of a copy of it (truncated, cut to a few bytes,
//! bytes flipped in the middle or at the end, replaced by garbage, emptied, deleted)
//! and opens the copy. Nothing panics. A damaged data file or sidecar of A never costs
//! B and C: their answers stay what they were, ingest and compaction go on, and any
//! answer that needs A is either right or an error of kind `Corrupt` (or `Io`) naming
//! the damaged file. A damaged manifest is an error naming it; a lost one never makes
//! the store look empty (which would delete every data file as an orphan). A damaged
//! WAL costs only the records in the damaged bytes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use tracelake::{
    Engine, EngineOptions, ErrorKind, GraphQuery, GroupBy, Mode, PercentileQuery, RangeType,
    TraceQuery,
};

/// The first second of hours A, B and C.
const HOURS: [i64; 3] = [1_599_998_400, 1_600_016_400, 1_600_034_400];
const TRACES: i64 = 40;

fn trace_id(hour: i64, i: i64) -> String {
    format!("1-{:08x}-{:024x}", hour + i, i + 1)
}

/// A front service calling a back service, every fifth trace a fault.
fn documents(hour: i64) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..TRACES {
        let t = (hour + i * 60) as f64;
        let id = trace_id(hour, i);
        let fault = i % 5 == 0;
        out.push_str(&format!(
            r#"{{"trace_id":"{id}","id":"{:016x}","name":"front","start_time":{t},"end_time":{e},"fault":{fault},"http":{{"request":{{"method":"GET","url":"https://front/{i}"}},"response":{{"status":{s}}}}},"annotations":{{"tier":"gold"}},"subsegments":[{{"id":"{:016x}","name":"back","namespace":"remote","start_time":{t},"end_time":{e2},"http":{{"request":{{"method":"GET","url":"https://back/"}}}}}}]}}"#,
            i * 4 + 1,
            i * 4 + 2,
            e = t + 0.2 + (i % 7) as f64 * 0.01,
            e2 = t + 0.1,
            s = if fault { 500 } else { 200 },
        ));
        out.push('\n');
        out.push_str(&format!(
            r#"{{"trace_id":"{id}","id":"{:016x}","parent_id":"{:016x}","name":"back","start_time":{t},"end_time":{e2}}}"#,
            i * 4 + 3,
            i * 4 + 2,
            e2 = t + 0.1,
        ));
        out.push('\n');
    }
    out.into_bytes()
}

fn options() -> EngineOptions {
    EngineOptions {
        flush_rows: usize::MAX,
        flush_bytes: usize::MAX,
        maintenance_interval: None,
        ..EngineOptions::default()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Builds the store: A and B flushed, C in the WAL (copied while the engine is open,
/// as a crash would leave it).
fn build(base: &Path) {
    let live = base.with_extension("live");
    let e = Engine::open(&live, options()).unwrap();
    e.ingest(&documents(HOURS[0])).unwrap();
    e.ingest(&documents(HOURS[1])).unwrap();
    e.flush().unwrap();
    e.ingest(&documents(HOURS[2])).unwrap();
    copy_dir(&live, base);
    e.close().unwrap();
    std::fs::remove_file(base.join("LOCK")).ok();
}

fn files(root: &Path, under: &str, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(under)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The one file of hour A (`spans/…/hour=12/...`) among `all`.
fn of_hour_a(all: Vec<PathBuf>) -> PathBuf {
    let hour_a = all
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("hour=12"))
        .collect::<Vec<_>>();
    assert_eq!(hour_a.len(), 1, "{hour_a:?}");
    hour_a.into_iter().next().unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Keeps the first half.
    Half,
    /// Keeps the first 8 bytes.
    Stub,
    /// Flips 64 bytes in the middle.
    FlipMiddle,
    /// Flips the last 16 bytes (a Parquet footer, a sidecar's tail).
    FlipEnd,
    /// Same length, every byte replaced.
    Garbage,
    Empty,
    Delete,
}

const DAMAGES: [Damage; 7] = [
    Damage::Half,
    Damage::Stub,
    Damage::FlipMiddle,
    Damage::FlipEnd,
    Damage::Garbage,
    Damage::Empty,
    Damage::Delete,
];

fn damage(path: &Path, how: Damage) {
    let mut b = std::fs::read(path).unwrap();
    let n = b.len();
    match how {
        Damage::Half => b.truncate(n / 2),
        Damage::Stub => b.truncate(8.min(n)),
        Damage::FlipMiddle => b[n / 2..(n / 2 + 64).min(n)]
            .iter_mut()
            .for_each(|x| *x ^= 0xA5),
        Damage::FlipEnd => b[n.saturating_sub(16)..]
            .iter_mut()
            .for_each(|x| *x ^= 0xA5),
        Damage::Garbage => b
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = (i as u8).wrapping_mul(151).wrapping_add(7)),
        Damage::Empty => b.clear(),
        Damage::Delete => {
            std::fs::remove_file(path).unwrap();
            return;
        }
    }
    std::fs::write(path, b).unwrap();
}

/// What a store answers about one hour (or all of them: `None`).
#[derive(Debug, PartialEq)]
struct Answers {
    ids: Vec<String>,
    faults: Vec<String>,
    percentiles: Vec<(String, u64)>,
    graph: Vec<(String, Option<u64>)>,
    documents: usize,
}

fn window(hour: Option<usize>) -> Option<(f64, f64)> {
    hour.map(|h| (HOURS[h] as f64, (HOURS[h] + 3600) as f64))
}

/// An error, with the question that got it.
type Failed = (&'static str, tracelake::Error);

fn answers(e: &Engine, hour: Option<usize>) -> Result<Answers, Failed> {
    let range = window(hour).map(|(a, b)| (a, b, RangeType::TraceId));
    let find = |filter: Option<&str>| -> Result<Vec<String>, tracelake::Error> {
        let page = e.trace_summaries(&TraceQuery {
            filter: filter.map(str::to_owned),
            range,
            limit: 1000,
            ..TraceQuery::default()
        })?;
        let mut ids: Vec<String> = page.trace_summaries.into_iter().map(|s| s.id).collect();
        ids.sort();
        Ok(ids)
    };
    let ids = find(None).map_err(|e| ("summaries", e))?;
    let faults = find(Some("fault AND annotation.tier = \"gold\"")).map_err(|e| ("filter", e))?;
    let p = e
        .percentiles(&PercentileQuery {
            range: window(hour),
            by: GroupBy::Service,
            mode: Mode::Exact,
            ..PercentileQuery::default()
        })
        .map_err(|e| ("percentiles", e))?;
    let percentiles = p
        .groups
        .iter()
        .map(|g| (format!("{:?}", g.key), g.count))
        .collect();
    let g = e
        .service_graph(&GraphQuery {
            range: window(hour),
            ..GraphQuery::default()
        })
        .map_err(|e| ("service graph", e))?;
    let mut graph: Vec<(String, Option<u64>)> = g
        .services
        .iter()
        .map(|s| {
            (
                format!("{}/{}", s.name, s.kind),
                s.summary_statistics.as_ref().map(|x| x.total_count),
            )
        })
        .collect();
    graph.sort();
    let documents = e
        .get_traces(&ids)
        .map_err(|e| ("get traces", e))?
        .traces
        .iter()
        .map(|t| t.segments.len())
        .sum();
    Ok(Answers {
        ids,
        faults,
        percentiles,
        graph,
        documents,
    })
}

fn fast_percentiles(e: &Engine) -> Result<Vec<(String, u64)>, Failed> {
    let p = e
        .percentiles(&PercentileQuery {
            by: GroupBy::Service,
            ..PercentileQuery::default()
        })
        .map_err(|e| ("fast percentiles", e))?;
    Ok(p.groups
        .iter()
        .map(|g| (format!("{:?}", g.key), g.count))
        .collect())
}

/// An error that names the damaged file and says what kind of failure it is.
fn names_the_file(e: &tracelake::Error, file: &Path, case: &str) {
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(
        matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Io),
        "{case}: kind {:?}: {e}",
        e.kind()
    );
    assert!(e.to_string().contains(name.as_ref()), "{case}: {e}");
}

struct Baseline {
    all: Answers,
    hours: Vec<Answers>,
    fast: Vec<(String, u64)>,
}

fn baseline(base: &Path, tmp: &Path) -> Baseline {
    let dir = tmp.join("baseline");
    copy_dir(base, &dir);
    let e = Engine::open(&dir, options()).unwrap();
    let b = Baseline {
        all: answers(&e, None).unwrap(),
        hours: (0..3).map(|h| answers(&e, Some(h)).unwrap()).collect(),
        fast: fast_percentiles(&e).unwrap(),
    };
    assert_eq!(b.all.ids.len(), 3 * TRACES as usize);
    assert_eq!(b.hours[1].ids.len(), TRACES as usize);
    assert_eq!(b.hours[1].faults.len(), TRACES as usize / 5);
    assert!(b.hours[1].graph.len() >= 3, "{:?}", b.hours[1].graph);
    e.close().unwrap();
    b
}

/// Opens a damaged copy and checks everything the damage must not cost.
fn check_damaged(dir: &Path, file: &Path, case: &str, b: &Baseline) {
    let e = match Engine::open(dir, options()) {
        Ok(e) => e,
        Err(err) => panic!("{case}: the store does not open: {err}"),
    };
    // B and C answer as before
    for h in [1, 2] {
        match answers(&e, Some(h)) {
            Ok(a) => assert_eq!(a, b.hours[h], "{case}: hour {h}"),
            Err((what, err)) => panic!("{case}: hour {h}: {what} fails: {err}"),
        }
    }
    // what needs A is right or names the file
    for (what, got) in [
        ("all time", answers(&e, None).map(|a| a == b.all)),
        ("hour A", answers(&e, Some(0)).map(|a| a == b.hours[0])),
        (
            "fast percentiles",
            fast_percentiles(&e).map(|p| p == b.fast),
        ),
    ] {
        match got {
            Ok(same) => assert!(same, "{case}: {what} answers differently, without an error"),
            Err((q, err)) => names_the_file(&err, file, &format!("{case}: {what}: {q}")),
        }
    }
    // ingest goes on, and is seen
    let extra = r#"{"trace_id":"1-5f5e5510-0000000000000000000000ff","id":"00000000000000ff","name":"front","start_time":1600017000,"end_time":1600017001}"#;
    let r = e.ingest(extra.as_bytes()).unwrap();
    assert_eq!(r.accepted, 1, "{case}");
    let after = answers(&e, Some(1)).unwrap();
    assert_eq!(after.ids.len(), b.hours[1].ids.len() + 1, "{case}");
    // flush and compaction never take B down with A
    if let Err(err) = e.flush().and_then(|()| e.compact().map(|_| ())) {
        names_the_file(&err, file, &format!("{case}: flush + compact"));
    }
    let again = answers(&e, Some(2)).unwrap();
    assert_eq!(
        again, b.hours[2],
        "{case}: hour C after flush and compaction"
    );
    e.close().unwrap();
}

/// Picks the file to damage in a store.
type Pick = fn(&Path) -> PathBuf;

#[test]
fn a_damaged_data_file_or_sidecar_costs_only_its_partition() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    build(&base);
    let b = baseline(&base, tmp.path());
    let kinds: [(&str, Pick); 3] = [
        ("data file", |r| of_hour_a(files(r, "spans", ".parquet"))),
        ("index sidecar", |r| of_hour_a(files(r, "spans", ".idx"))),
        ("rollup sidecar", |r| {
            of_hour_a(files(r, "rollups", ".parquet"))
        }),
    ];
    for (kind, pick) in kinds {
        for how in DAMAGES {
            let case = format!("{kind} {how:?}");
            let dir = tmp.path().join(case.replace(' ', "-"));
            copy_dir(&base, &dir);
            let file = pick(&dir);
            damage(&file, how);
            check_damaged(&dir, &file, &case, &b);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    // no damage made the process allocate without bound (the peak covers every test of
    // this binary, run side by side)
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 1 << 20, "peak RSS {peak_kb} kB");
}

fn manifests(dir: &Path) -> Vec<PathBuf> {
    tracelake_storage::manifest::generations(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// Both ways of opening fail with an error of kind `Corrupt` (or an unsupported
/// version) naming a manifest.
fn refuses(dir: &Path, case: &str) {
    for read_only in [false, true] {
        let opened = if read_only {
            Engine::open_read_only(dir)
        } else {
            Engine::open(dir, options())
        };
        let err = match opened {
            Ok(e) => panic!("{case} (read-only {read_only}): opens, {e:?}"),
            Err(err) => err,
        };
        let s = err.to_string();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Corrupt | ErrorKind::UnsupportedFormatVersion
            ),
            "{case}: {:?} {s}",
            err.kind()
        );
        assert!(s.contains("MANIFEST"), "{case}: {s}");
    }
}

/// Data files under spans/ and set aside under orphans/<when>/spans/.
fn data_files(dir: &Path) -> usize {
    let aside = files(dir, "orphans", ".parquet")
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("/spans/"))
        .count();
    files(dir, "spans", ".parquet").len() + aside
}

#[test]
fn a_damaged_manifest_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    build(&base);
    let before = data_files(&base);
    for how in DAMAGES {
        let case = format!("manifest {how:?}");
        let dir = tmp.path().join(case.replace(' ', "-"));
        copy_dir(&base, &dir);
        let newest = manifests(&dir).pop().unwrap();
        damage(&newest, how);
        if matches!(how, Damage::Delete) {
            // the generation before is the store's state now; newer files are set
            // aside, never deleted
            if let Ok(e) = Engine::open(&dir, options()) {
                e.close().unwrap();
            }
            // (closing flushed hour C from the WAL into one more)
            assert!(data_files(&dir) >= before, "{case}");
            // with every generation gone, data files never make an empty store
            for m in manifests(&dir) {
                std::fs::remove_file(m).unwrap();
            }
            if let Ok(sets) = std::fs::read_dir(dir.join("orphans")) {
                for set in sets {
                    let spans = set.unwrap().path().join("spans");
                    if spans.exists() {
                        copy_dir(&spans, &dir.join("spans"));
                    }
                }
                std::fs::remove_dir_all(dir.join("orphans")).unwrap();
            }
            refuses(&dir, &format!("{case} (all generations)"));
        } else {
            refuses(&dir, &case);
        }
        assert!(
            data_files(&dir) >= before,
            "{case}: a data file was removed"
        );
    }
}

#[test]
fn a_manifest_naming_files_outside_the_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    build(&base);
    let newest = manifests(&base).pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&bytes[12..]).unwrap();
    for evil in ["../../etc/passwd", "/etc/passwd", "spans/../../x.parquet"] {
        m["files"][0]["path"] = evil.into();
        let body = serde_json::to_vec(&m).unwrap();
        std::fs::write(&newest, tracelake_storage::manifest::frame(&body)).unwrap();
        let err = Engine::open_read_only(&base).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{evil}: {err}");
        assert!(err.to_string().contains(evil), "{evil}: {err}");
    }
}

/// The WAL file holding hour C's documents.
fn wal_file(root: &Path) -> PathBuf {
    let all: Vec<PathBuf> = files(root, "wal", ".log")
        .into_iter()
        .filter(|p| std::fs::metadata(p).unwrap().len() > 64)
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

#[test]
fn a_damaged_wal_costs_only_the_damaged_records() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    build(&base);
    let b = baseline(&base, tmp.path());
    let c_docs = b.hours[2].documents;
    for how in DAMAGES {
        let case = format!("wal {how:?}");
        let dir = tmp.path().join(case.replace(' ', "-"));
        copy_dir(&base, &dir);
        let wal = wal_file(&dir);
        damage(&wal, how);
        let e = match Engine::open(&dir, options()) {
            Ok(e) => e,
            Err(err) => {
                // only a WAL file that is no longer one may refuse, and by name
                assert!(
                    matches!(how, Damage::Stub | Damage::Garbage),
                    "{case}: {err}"
                );
                names_the_file(&err, &wal, &case);
                continue;
            }
        };
        // A and B (in Parquet) are whole
        for h in [0, 1] {
            assert_eq!(
                answers(&e, Some(h)).unwrap(),
                b.hours[h],
                "{case}: hour {h}"
            );
        }
        let c = answers(&e, Some(2)).unwrap();
        // (a lost `back` segment is inferred from its caller's subsegment: documents
        // count what the answers show)
        let (kept, traces) = (c.documents, c.ids.len());
        let all = TRACES as usize;
        match how {
            // a record damaged in the middle costs that record, not the ones after it:
            // every trace keeps at least one of its two documents
            Damage::FlipMiddle | Damage::FlipEnd => assert!(
                traces == all && kept + 1 >= c_docs,
                "{case}: kept {kept} of {c_docs} documents, {traces} traces"
            ),
            Damage::Half => assert!(
                traces + 1 >= all / 2 && kept + 2 >= c_docs / 2,
                "{case}: kept {kept} of {c_docs}, {traces} traces"
            ),
            _ => assert!(kept <= c_docs, "{case}: {kept}"),
        }
        e.ingest(&documents(HOURS[2])).unwrap();
        assert_eq!(
            answers(&e, Some(2)).unwrap().documents,
            c_docs,
            "{case}: re-sent documents fill the gap"
        );
        e.close().unwrap();
    }
}
