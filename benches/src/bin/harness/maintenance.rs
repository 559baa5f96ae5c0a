//! T7 (compaction), T8 (dropping a day) and T9 (queries during ingest and compaction).
//!
//! Each works on a copy of the store whose data files are hard links: maintenance
//! writes new files and unlinks old names, so the original stays as it was (the
//! manifest, WAL and groups are small and copied).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tracelake::{
    Clock, Engine, EngineOptions, GroupBy, Mode, PercentileQuery, RetentionPolicy, TraceQuery,
};
use tracelake_storage::TraceId;

use super::{Line, Result, T4_FILTER, median, ms};

/// Copies a store: data and sidecar files (never modified once written) as hard links.
fn link_copy(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        let name = e.file_name();
        if e.file_type()?.is_dir() {
            tree(&e.path(), &dst, name == "spans" || name == "rollups")?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// Copies a directory tree, as hard links when `link`.
fn tree(from: &Path, to: &Path, link: bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            tree(&e.path(), &dst, link)?;
        } else if link {
            std::fs::hard_link(e.path(), dst)?;
        } else {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // fields after the command name (which may hold spaces) in parentheses
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads its argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name
    (ticks(11) + ticks(12)) / hz
}

fn writable(dir: &Path, clock: Option<Arc<dyn Clock>>) -> Result<Engine> {
    let mut o = EngineOptions {
        maintenance_interval: None,
        ..EngineOptions::default()
    };
    if let Some(c) = clock {
        o.clock = c;
    }
    Ok(Engine::open(dir, o)?)
}

#[derive(Debug)]
struct FixedClock(SystemTime);

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// T7: compacting the store as ingest left it; then T8 on the compacted copy (or on
/// the store as it is, without T7).
pub(crate) fn t7_t8(work: &Path, store: &Path, docs: u64, t7: bool, t8: bool) -> Result<Vec<Line>> {
    if !t7 {
        return if t8 {
            drop_a_day(work, store)
        } else {
            Ok(Vec::new())
        };
    }
    eprintln!("T7: compaction");
    let copy = work.join("store-t7");
    link_copy(store, &copy)?;
    let e = writable(&copy, None)?;
    let before = e.stats();
    let (cpu0, t) = (cpu_seconds(), Instant::now());
    let s = e.compact()?;
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let after = e.stats();
    e.close()?;
    drop(e);
    let per_core = docs as f64 / cpu.max(1e-9);
    let amplification = (before.file_bytes + s.output_bytes) as f64 / before.file_bytes as f64;
    eprintln!(
        "T7: {} merges, {} -> {} files, {} -> {} bytes, {wall:.1} s wall, {cpu:.1} s CPU",
        s.merges, before.files, after.files, before.file_bytes, after.file_bytes
    );
    let mut lines = vec![
        Line {
            target: "T7",
            what: format!(
                "compaction, docs/s per core ({} -> {} files, {wall:.0} s)",
                before.files, after.files
            ),
            ours: format!("{per_core:.0} docs/s"),
            duckdb: "-".into(),
            datafusion: "-".into(),
            goal: ">= 150k docs/s",
            met: Some(per_core >= 150_000.0),
        },
        Line {
            target: "T7",
            what: "write amplification (flush + compaction) / flush".into(),
            ours: format!("{amplification:.2}x"),
            duckdb: "-".into(),
            datafusion: "-".into(),
            goal: "<= 2x",
            met: Some(amplification <= 2.0),
        },
        Line {
            target: "T7",
            what: "share of a core at 10k docs/s ingest".into(),
            ours: format!("{:.1}%", 10_000.0 / per_core * 100.0),
            duckdb: "-".into(),
            datafusion: "-".into(),
            goal: "< 7%",
            met: Some(10_000.0 / per_core < 0.07),
        },
    ];

    if t8 {
        lines.extend(drop_a_day(work, &copy)?);
    }
    std::fs::remove_dir_all(&copy)?;
    Ok(lines)
}

/// T8: the first day of (copies of) `store` dropped by the default policy, 3 times.
fn drop_a_day(work: &Path, copy: &Path) -> Result<Vec<Line>> {
    eprintln!("T8: dropping the first day");
    let mut times = Vec::new();
    let mut dropped = (0, 0u64);
    for run in 0..3 {
        let dir = work.join(format!("store-t8-{run}"));
        link_copy(copy, &dir)?;
        let probe = writable(&dir, None)?;
        let first = probe
            .partition_stats()
            .first()
            .map(|p| p.partition.start_ns())
            .ok_or("an empty store")?;
        probe.close()?;
        drop(probe);
        // the clock at the first day's end plus 30 days: the default policy expires it
        let day_end = Duration::from_nanos((first + 24 * 3_600_000_000_000) as u64);
        let policy = RetentionPolicy::default();
        let now = SystemTime::UNIX_EPOCH + day_end + policy.max_age.unwrap_or_default();
        let e = writable(&dir, Some(Arc::new(FixedClock(now))))?;
        let t = Instant::now();
        let r = e.apply_retention_with(&policy, false)?;
        times.push(t.elapsed().as_secs_f64());
        dropped = (r.dropped(), r.freed_bytes());
        e.close()?;
        drop(e);
        std::fs::remove_dir_all(&dir)?;
    }
    let m = median(&times);
    Ok(vec![Line {
        target: "T8",
        what: format!(
            "retention drop of a day ({} partitions, {:.1} GB)",
            dropped.0,
            dropped.1 as f64 / 1e9
        ),
        ours: ms(m),
        duckdb: "-".into(),
        datafusion: "-".into(),
        goal: "<= 100 ms",
        met: Some(m <= 0.100),
    }])
}

/// Median latencies of the T3, T4 and T6 (fast) queries, `runs` of each.
fn probe(e: &Engine, ids: &[TraceId], runs: usize) -> Result<[f64; 3]> {
    let mut t3 = Vec::new();
    for id in ids.iter().cycle().take(runs * 10) {
        let t = Instant::now();
        e.get_traces(&[id.to_string()])?;
        t3.push(t.elapsed().as_secs_f64());
    }
    let q = TraceQuery {
        filter: Some(format!(r#"annotation.{} = "{}""#, T4_FILTER.0, T4_FILTER.1)),
        limit: 100,
        ..Default::default()
    };
    let mut t4 = Vec::new();
    let mut t6 = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        e.trace_summaries(&q)?;
        t4.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        e.percentiles(&PercentileQuery {
            by: GroupBy::Service,
            mode: Mode::Auto,
            ..PercentileQuery::default()
        })?;
        t6.push(t.elapsed().as_secs_f64());
    }
    Ok([median(&t3), median(&t4), median(&t6)])
}

/// T9: T3, T4 and T6 quiet, then while documents arrive at `rate` per second and the
/// store compacts.
pub(crate) fn t9(
    work: &Path,
    store: &Path,
    tracelake: &Path,
    ids: &[TraceId],
    rate: f64,
    runs: usize,
) -> Result<Vec<Line>> {
    eprintln!("T9: queries during ingest and compaction");
    let copy = work.join("store-t9");
    link_copy(store, &copy)?;
    // new traffic, in the days after the store's
    let count = (rate * 40.0).min(2_000_000.0) as u64;
    let out = std::process::Command::new(tracelake)
        .args(["generate", "--count", &count.to_string(), "--seed", "77"])
        .args(["--start", "1793750400"])
        .output()?;
    if !out.status.success() {
        return Err("tracelake generate failed".into());
    }
    let batches: Vec<Vec<u8>> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .chunks(50)
        .map(|c| c.join(&b'\n'))
        .collect();
    drop(out);
    let e = writable(&copy, None)?;
    let ids: Vec<TraceId> = ids.iter().take(50).copied().collect();
    // warm: every id looked up, every query run, before the quiet figures
    probe(&e, &ids, 5)?;
    let quiet = probe(&e, &ids, runs.max(5))?;

    let stop = Arc::new(AtomicBool::new(false));
    let compactor = {
        let e = e.clone();
        std::thread::spawn(move || e.compact().map(|s| s.merges))
    };
    let sent = Arc::new(Mutex::new(0usize));
    let feeder = {
        let (e, stop, sent) = (e.clone(), Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || -> Result<()> {
            let start = Instant::now();
            let every = Duration::from_secs_f64(50.0 / rate);
            for (k, b) in batches.iter().enumerate() {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if let Some(wait) =
                    (start + every * k as u32).checked_duration_since(Instant::now())
                {
                    std::thread::sleep(wait);
                }
                e.ingest(b)?;
                *sent
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) += 50;
            }
            Ok(())
        })
    };
    let t = Instant::now();
    let loaded = probe(&e, &ids, runs.max(5))?;
    let busy = t.elapsed().as_secs_f64();
    let compaction_running = !compactor.is_finished();
    stop.store(true, Ordering::Release);
    feeder.join().map_err(|_| "the feeder panicked")??;
    let docs = *sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // closing cancels the merge in progress
    e.close()?;
    let _ = compactor.join();
    drop(e);
    std::fs::remove_dir_all(&copy)?;
    eprintln!(
        "T9: {docs} documents sent in {busy:.1} s of queries; compaction still running at the end: {compaction_running}"
    );
    let what = ["T3 look-up p50", "T4 annotation p50", "T6 fast p50"];
    Ok((0..3)
        .map(|i| {
            let ratio = loaded[i] / quiet[i].max(1e-9);
            Line {
                target: "T9",
                what: format!(
                    "{} quiet / during ingest at {:.0} docs/s + compaction",
                    what[i],
                    docs as f64 / busy.max(1e-9)
                ),
                ours: format!("{} / {} ({ratio:.1}x)", ms(quiet[i]), ms(loaded[i])),
                duckdb: "-".into(),
                datafusion: "-".into(),
                goal: "<= 2x",
                met: Some(ratio <= 2.0),
            }
        })
        .collect())
}
