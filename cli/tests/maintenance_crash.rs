//! Crash safety of maintenance, with real processes: a child `tracelake compact` or
//! `tracelake retention` dies (abort, no destructor runs) at every step of its work
//! (`TRACELAKE_CRASH_AT`). After each crash the store opens, no document is lost or
//! duplicated, and the next maintenance run leaves no orphan file on disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tracelake::{Engine, EngineOptions};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tracelake"))
}

fn tracelake(args: &[&str], dir: &Path, crash_at: Option<&str>) -> bool {
    let mut c = Command::new(bin());
    c.args(args).arg("--dir").arg(dir);
    c.env("TRACELAKE_LOG", "off");
    match crash_at {
        Some(p) => c.env("TRACELAKE_CRASH_AT", p),
        None => c.env_remove("TRACELAKE_CRASH_AT"),
    };
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c.status().unwrap().success()
}

fn closed(dir: &Path) -> Engine {
    Engine::open(
        dir,
        EngineOptions {
            maintenance_interval: None,
            ..EngineOptions::default()
        },
    )
    .unwrap()
}

/// Every stored `(trace, id)` with its end time, sorted (duplicates would show twice).
fn stored(dir: &Path) -> Vec<String> {
    let e = closed(dir);
    let r = e
        .sql("SELECT encode(trace_id, 'hex') AS t, id, end_ns FROM spans ORDER BY t, id")
        .unwrap();
    let rows = r
        .to_json_rows()
        .unwrap()
        .into_iter()
        .map(|v| v.to_string())
        .collect();
    e.close().unwrap();
    rows
}

/// Files on disk that the manifest does not account for.
fn orphans(dir: &Path) -> Vec<String> {
    let m = tracelake_storage::manifest::load(dir).unwrap();
    let mut live = std::collections::HashSet::new();
    for f in &m.files {
        live.insert(f.path.clone());
        let side = tracelake_storage::index::sidecar_path(Path::new(&f.path));
        live.insert(side.to_string_lossy().into_owned());
        live.insert(tracelake_storage::rollup::relative_path(f.partition, f.id));
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.join("spans"), dir.join("rollups")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if !live.contains(&rel) {
                    out.push(rel);
                }
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A store of many small files over two hours ten days ago, with upserts across files
/// (part of the traffic sent twice).
fn base_store(root: &Path) -> PathBuf {
    let traffic = root.join("traffic.jsonl");
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10 * 86_400;
    let start = start - start % 3600 + 3000;
    let st = Command::new(bin())
        .args(["generate", "--count", "12000", "--seed", "5", "--rate", "2"])
        .args(["--start", &start.to_string(), "--out"])
        .arg(&traffic)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&traffic).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let dir = root.join("base");
    let e = Engine::open(
        &dir,
        EngineOptions {
            maintenance_interval: None,
            flush_rows: usize::MAX,
            ..EngineOptions::default()
        },
    )
    .unwrap();
    for chunk in lines.chunks(1500) {
        e.ingest(chunk.join("\n").as_bytes()).unwrap();
        e.flush().unwrap();
    }
    e.ingest(lines[..500].join("\n").as_bytes()).unwrap();
    e.flush().unwrap();
    assert!(e.stats().files >= 8, "{:?}", e.stats());
    assert!(e.stats().partitions >= 2, "{:?}", e.stats());
    e.close().unwrap();
    dir
}

#[test]
fn a_crash_at_any_step_of_compaction_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_store(tmp.path());
    let expected = stored(&base);
    for (i, point) in [
        "compact:create-output",
        "compact:mid-output",
        "compact:before-commit",
        "compact:after-commit",
        "gc:after-first-delete",
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("compact-{i}"));
        copy_dir(&base, &dir);
        assert!(
            !tracelake(&["compact"], &dir, Some(point)),
            "{point}: the child should have crashed"
        );
        assert_eq!(stored(&dir), expected, "after a crash at {point}");
        // the next run finishes the work and leaves nothing behind
        assert!(tracelake(&["compact"], &dir, None), "{point}");
        assert_eq!(stored(&dir), expected, "after the run following {point}");
        assert_eq!(orphans(&dir), Vec::<String>::new(), "{point}");
        let e = closed(&dir);
        assert!(e.compaction_plan().is_empty(), "{point}");
        e.close().unwrap();
    }
}

#[test]
fn a_crash_at_any_step_of_retention_leaves_before_or_after() {
    let tmp = tempfile::tempdir().unwrap();
    let base = base_store(tmp.path());
    let before = stored(&base);
    // the outcomes without a crash: dropping everything, and keeping faulty traces
    let keep = ["retention", "--max-age", "1d", "--keep", "fault=400d"];
    let drop_all = ["retention", "--max-age", "1d"];
    let reference = |args: &[&str]| {
        let dir = tmp.path().join(format!("ref-{}", args.len()));
        copy_dir(&base, &dir);
        assert!(tracelake(args, &dir, None));
        assert_eq!(orphans(&dir), Vec::<String>::new());
        stored(&dir)
    };
    let kept = reference(&keep);
    assert!(!kept.is_empty() && kept.len() < before.len());
    assert!(reference(&drop_all).is_empty());

    let cases: [(&[&str], &str, &Vec<String>); 6] = [
        (&drop_all, "retention:before-commit", &Vec::new()),
        (&drop_all, "retention:after-commit", &Vec::new()),
        (&drop_all, "gc:after-first-delete", &Vec::new()),
        (&keep, "compact:mid-output", &kept),
        (&keep, "compact:before-commit", &kept),
        (&keep, "compact:after-commit", &kept),
    ];
    for (i, (args, point, after)) in cases.into_iter().enumerate() {
        let dir = tmp.path().join(format!("retention-{i}"));
        copy_dir(&base, &dir);
        assert!(!tracelake(args, &dir, Some(point)), "{point}");
        let now = stored(&dir);
        // partitions are committed one at a time: each is wholly before or after
        let as_before = now
            .iter()
            .filter(|r| !after.contains(r))
            .all(|r| before.contains(r));
        assert!(as_before, "{point}: rows that are in neither state");
        assert!(
            now.len() <= before.len() && now.len() >= after.len(),
            "{point}"
        );
        let unique: std::collections::BTreeSet<&String> = now.iter().collect();
        assert_eq!(unique.len(), now.len(), "{point}: duplicated rows");
        assert!(
            after.iter().all(|r| now.contains(r)),
            "{point}: lost a kept row"
        );
        assert!(tracelake(args, &dir, None), "{point}");
        assert_eq!(&stored(&dir), after, "{point}");
        assert_eq!(orphans(&dir), Vec::<String>::new(), "{point}");
    }
}
