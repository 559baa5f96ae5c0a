//! Crash safety and concurrent readers, with real processes.
//!
//! - A child `tracelake ingest` (Sync durability) is killed with SIGKILL at pseudo-random
//!   moments, 20 times; after each kill the store opens without error and every
//!   acknowledged document is present exactly once.
//! - While a child writes (flushing often), this process is refused as a second writer
//!   and reads the store read-only again and again, never seeing a half-written file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracelake::{Engine, EngineOptions, ErrorKind};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tracelake"))
}

fn generate(path: &Path, count: u64, seed: u64) -> Vec<String> {
    let st = Command::new(bin())
        .args([
            "generate",
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn node_keys(v: &Value, trace: &str, out: &mut Vec<(String, String)>) {
    out.push((trace.to_owned(), v["id"].as_str().unwrap().to_owned()));
    if let Some(subs) = v.get("subsegments").and_then(Value::as_array) {
        for s in subs {
            node_keys(s, trace, out);
        }
    }
}

fn stored_keys(engine: &Engine) -> Vec<(String, String)> {
    let r = engine
        .sql("SELECT concat('1-', substr(encode(trace_id, 'hex'), 1, 8), '-', substr(encode(trace_id, 'hex'), 9)) AS t, \
              lpad(to_hex(id), 16, '0') AS i FROM spans")
        .unwrap();
    r.to_json_rows()
        .unwrap()
        .into_iter()
        .map(|row| {
            (
                row["t"].as_str().unwrap().to_owned(),
                row["i"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn sigkill_never_loses_an_acknowledged_document() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("traffic.jsonl");
    let docs = generate(&input, 20_000, 11);
    let store = tmp.path().join("store");
    let mut acked: HashSet<u64> = HashSet::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut kills = 0;
    for round in 0..20 {
        let mut child = Command::new(bin())
            .args([
                "ingest",
                "--ack",
                "--batch",
                "200",
                "--flush-rows",
                "3000",
                "--dir",
            ])
            .arg(&store)
            .arg(&input)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let parts: Vec<&str> = line.split_whitespace().collect();
                if parts.len() == 4 && parts[0] == "ack" {
                    got.push((
                        parts[2].parse::<u64>().unwrap(),
                        parts[3].parse::<u64>().unwrap(),
                    ));
                }
            }
            got
        });
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(150 + rng % (400 + 40 * round));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        for (first, n) in reader.join().unwrap() {
            acked.extend(first..first + n);
        }

        // The store opens, and every acknowledged document is there exactly once.
        let engine = Engine::open(&store, EngineOptions::default()).unwrap();
        let keys = stored_keys(&engine);
        let unique: HashSet<&(String, String)> = keys.iter().collect();
        assert_eq!(
            unique.len(),
            keys.len(),
            "round {round}: a row is stored twice"
        );
        for &line in &acked {
            let doc: Value = serde_json::from_str(&docs[(line - 1) as usize]).unwrap();
            let mut want = Vec::new();
            node_keys(&doc, doc["trace_id"].as_str().unwrap(), &mut want);
            for k in &want {
                assert!(
                    unique.contains(k),
                    "round {round}: acknowledged line {line} lost ({k:?})"
                );
            }
        }
        engine.close().unwrap();
    }
    assert!(
        kills >= 15,
        "only {kills} of 20 runs were killed mid-ingest; the test is too slow to be meaningful"
    );
    assert!(!acked.is_empty());
}

#[test]
fn readers_in_another_process_see_only_committed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("traffic.jsonl");
    generate(&input, 30_000, 5);
    let store = tmp.path().join("store");
    let mut child = Command::new(bin())
        .args([
            "ingest",
            "--quiet",
            "--batch",
            "500",
            "--flush-rows",
            "2000",
            "--dir",
        ])
        .arg(&store)
        .arg(&input)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // wait for the writer to hold the store
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store.join("LOCK").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut refused = false;
    let mut reads = 0;
    let mut last = 0i64;
    let mut grew = 0;
    while child.try_wait().unwrap().is_none() {
        match Engine::open(&store, EngineOptions::default()) {
            Err(e) if e.kind() == ErrorKind::Locked => refused = true,
            Err(e) => panic!("unexpected error from a second writer: {e}"),
            Ok(e) => {
                // the writer finished between the check and the open
                e.close().unwrap();
                break;
            }
        }
        let ro = Engine::open_read_only(&store).unwrap();
        let r = ro.sql("SELECT count(*) AS n FROM spans").unwrap();
        let n = r.to_json_rows().unwrap()[0]["n"].as_i64().unwrap();
        assert!(
            n >= last,
            "a reader saw fewer rows ({n}) than before ({last})"
        );
        if n > last {
            grew += 1;
        }
        last = n;
        reads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    assert!(refused, "the second writer was never refused");
    assert!(reads > 3 && grew >= 2, "reads {reads}, grew {grew}");
    let ro = Engine::open_read_only(&store).unwrap();
    let n = ro
        .sql("SELECT count(*) AS n FROM spans")
        .unwrap()
        .to_json_rows()
        .unwrap()[0]["n"]
        .as_i64()
        .unwrap();
    assert!(n >= last);
}
