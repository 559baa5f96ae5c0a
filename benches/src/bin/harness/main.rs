//! The end-to-end benchmark harness: `bash scripts/bench.sh --quick` (1M documents) or
//! `bash scripts/bench.sh` (100M, run by hand).
//!
//! It generates documents with `tracelake generate`, ingests them with `tracelake
//! ingest` (durable: fsync with group commit), and prints one line per target of
//! `shared/BENCHMARKS.md` with Tracelake's figure, DuckDB's and plain DataFusion's
//! figures on the very same Parquet files, and the ratios, all measured in this run.
//!
//! - Tracelake answers in-process through [`tracelake::Engine`], the embedded case: the
//!   store is opened once, as a backend would.
//! - DuckDB runs in a Python process (`benches/peers/duckdb_peer.py`) that times each
//!   query itself, so interpreter start-up is not counted.
//! - Plain DataFusion is a `ListingTable` over the same files, with no Tracelake index.
//! - "Cold" means the store's files were dropped from the OS page cache
//!   (`posix_fadvise(DONTNEED)`) just before the query; the engine stays open.

#![allow(clippy::print_stderr, clippy::print_stdout)]
// posix_fadvise, to drop pages from the OS page cache (cold reads).
#![allow(unsafe_code)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use tracelake::{Durability, Engine, EngineOptions, GroupBy, Mode, PercentileQuery, TraceQuery};
use tracelake_storage::TraceId;

mod maintenance;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Documents per generated chunk: the JSON of the full size (~90 GB) is never on disk
/// at once.
const CHUNK: u64 = 5_000_000;
/// The selective annotation of T4: each `campaign` value is on 1% of traces.
const T4_FILTER: (&str, &str) = ("campaign", "cmp-42");
/// T5's full-scan filter.
const T5_FILTER: &str = "responsetime > 2 AND http.status = 500";

#[derive(Parser, Debug)]
#[command(about = "Tracelake end-to-end benchmarks against DuckDB and plain DataFusion")]
struct Args {
    /// Documents to generate and ingest.
    #[arg(long, default_value_t = 100_000_000)]
    docs: u64,
    /// 1M documents: runs in minutes.
    #[arg(long)]
    quick: bool,
    /// Working directory: the store, the generated chunks, the results.
    #[arg(long)]
    work: PathBuf,
    /// The `tracelake` binary (release build).
    #[arg(long)]
    tracelake: PathBuf,
    /// A Python with `duckdb` installed.
    #[arg(long)]
    python: PathBuf,
    /// Keep the store of an earlier run in `--work` with the same `--docs`, and only
    /// measure the queries.
    #[arg(long)]
    reuse: bool,
    /// Timed repetitions per query (medians are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Trace ids looked up for T3 (warm).
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    /// Also write the results as a Markdown table here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Measure only these targets (e.g. `T3,T4`); the store is built or reused anyway.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip DuckDB and DataFusion (to profile Tracelake alone).
    #[arg(long)]
    no_peers: bool,
}

impl Args {
    fn wants(&self, target: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|t| t.eq_ignore_ascii_case(target))
    }
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.docs = 1_000_000;
    }
    if let Err(e) = run(&args) {
        eprintln!("harness: {e}");
        std::process::exit(1);
    }
}

/// One line of the report.
struct Line {
    target: &'static str,
    what: String,
    ours: String,
    duckdb: String,
    datafusion: String,
    goal: &'static str,
    met: Option<bool>,
}

impl Line {
    fn print(&self) {
        let verdict = match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!(
            "{:<4} {:<44} tracelake {:<12} | duckdb {:<26} | datafusion {:<26} | target {} ({verdict})",
            self.target, self.what, self.ours, self.duckdb, self.datafusion, self.goal
        );
    }
}

fn run(args: &Args) -> Result<()> {
    std::fs::create_dir_all(&args.work)?;
    let store = args.work.join("store");
    let spans = store.join("spans");
    let state_path = args.work.join("ingest.json");
    let ingest = match load_ingest(&state_path, args) {
        Some(s) if store.is_dir() => {
            eprintln!("reusing the store in {}", store.display());
            s
        }
        _ => {
            let s = build_store(args, &store)?;
            std::fs::write(&state_path, serde_json::to_vec_pretty(&s.to_json())?)?;
            s
        }
    };
    let ids = read_ids(&args.work.join("ids.txt"))?;
    if ids.is_empty() {
        return Err("no trace ids were sampled".into());
    }
    let disk = dir_bytes(&store)?;
    let mut lines = Vec::new();

    let rate = ingest.docs as f64 / ingest.seconds;
    lines.push(Line {
        target: "T1",
        what: "durable ingest (tracelake ingest, 2 cores)".into(),
        ours: format!("{:.0} docs/s", rate),
        duckdb: "-".into(),
        datafusion: "-".into(),
        goal: ">= 250k docs/s",
        met: Some(rate >= 250_000.0),
    });
    if args.wants("T1b") {
        eprintln!("T1b: acknowledgement latency at half the ingest rate");
        let (p50, p99) = ack_latency(args, rate / 2.0)?;
        lines.push(Line {
            target: "T1b",
            what: format!("ack latency p50 / p99 at {:.0} docs/s", rate / 2.0),
            ours: format!("{} / {}", ms(p50), ms(p99)),
            duckdb: "-".into(),
            datafusion: "-".into(),
            goal: "p99 <= 20 ms",
            met: Some(p99 <= 0.020),
        });
    }
    lines.push(Line {
        target: "T1c",
        what: "ingest peak RSS".into(),
        ours: format!("{:.0} MB", ingest.peak_rss as f64 / 1e6),
        duckdb: "-".into(),
        datafusion: "-".into(),
        goal: "<= 1.5 GB",
        met: Some(ingest.peak_rss <= 1_500_000_000),
    });
    let per_doc = disk as f64 / ingest.docs as f64;
    lines.push(Line {
        target: "T2",
        what: format!("bytes on disk per document ({:.1} MB)", disk as f64 / 1e6),
        ours: format!("{per_doc:.1} B"),
        duckdb: "-".into(),
        datafusion: "-".into(),
        goal: "<= 130 B",
        met: Some(per_doc <= 130.0),
    });

    let engine = Engine::open_read_only(&store)?;
    let rows = engine.stats().file_rows;
    let m = Measure {
        args,
        engine: &engine,
        spans: &spans,
        ids: &ids,
        rows,
        df: (!args.no_peers)
            .then(|| DataFusionPeer::new(&spans))
            .transpose()?,
        duck: (!args.no_peers).then(|| DuckDb {
            python: args.python.clone(),
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/duckdb_peer.py"),
            spans: spans.clone(),
        }),
    };
    if args.wants("T3") {
        lines.extend(m.t3()?);
    }
    if args.wants("T4") {
        lines.extend(m.t4()?);
    }
    if args.wants("T5") {
        lines.extend(m.t5()?);
    }
    if args.wants("T6") {
        lines.extend(m.t6()?);
    }
    if args.wants("T9") {
        let ids: Vec<TraceId> = ids.to_vec();
        lines.extend(maintenance::t9(
            &args.work,
            &store,
            &args.tracelake,
            &ids,
            rate / 2.0,
            args.runs,
        )?);
    }
    lines.extend(maintenance::t7_t8(
        &args.work,
        &store,
        ingest.docs,
        args.wants("T7"),
        args.wants("T8"),
    )?);

    println!();
    println!(
        "{} documents, {} rows, {} files; ratios are peer time / Tracelake time (higher: Tracelake faster)",
        ingest.docs,
        rows,
        engine.stats().files
    );
    for l in &lines {
        l.print();
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(&lines, &ingest, rows))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// The query targets: Tracelake in-process, and the peers when they run.
struct Measure<'a> {
    args: &'a Args,
    engine: &'a Engine,
    spans: &'a Path,
    ids: &'a [TraceId],
    rows: u64,
    df: Option<DataFusionPeer>,
    duck: Option<DuckDb>,
}

/// A peer's figure: its time and the ratio to ours, or "-" when peers are skipped.
fn peer(p: Option<Vec<f64>>, q: f64, ours: f64) -> String {
    p.map_or_else(|| "-".into(), |t| vs(quantile(&t, q), ours))
}

impl Measure<'_> {
    /// T3: trace look-up by id, no time range.
    fn t3(&self) -> Result<Vec<Line>> {
        let (args, engine, ids, spans) = (self.args, self.engine, self.ids, self.spans);

        // T3: trace look-up by id, no time range
        eprintln!("T3: trace look-up by id");
        let warm_ids: Vec<&TraceId> = ids.iter().take(args.lookups).collect();
        for id in &warm_ids {
            engine.get_traces(&[id.to_string()])?;
        }
        let mut warm = Vec::new();
        for id in &warm_ids {
            let t = Instant::now();
            let got = engine.get_traces(&[id.to_string()])?;
            warm.push(t.elapsed().as_secs_f64());
            if got.traces.len() != 1 {
                return Err(format!("trace {id} was not found").into());
            }
        }
        let cold_ids: Vec<&TraceId> = ids.iter().rev().take(20).collect();
        let mut cold = Vec::new();
        for id in &cold_ids {
            evict(spans)?;
            let t = Instant::now();
            engine.get_traces(&[id.to_string()])?;
            cold.push(t.elapsed().as_secs_f64());
        }
        let peer_ids: Vec<String> = ids.iter().take(20).map(hex).collect();
        let duck_warm = self
            .duck
            .as_ref()
            .map(|d| d.run("lookup", &peer_ids, 1, false))
            .transpose()?;
        let duck_cold = self
            .duck
            .as_ref()
            .map(|d| d.run("lookup", &peer_ids[..5.min(peer_ids.len())], 1, true))
            .transpose()?;
        let df_warm = self
            .df
            .as_ref()
            .map(|d| d.lookups(&ids[..20.min(ids.len())]))
            .transpose()?;
        let (w50, w99) = (quantile(&warm, 0.5), quantile(&warm, 0.99));
        let c99 = quantile(&cold, 0.99);
        Ok(vec![
            Line {
                target: "T3",
                what: "look-up by id, warm p50".into(),
                ours: ms(w50),
                duckdb: peer(duck_warm.as_ref().map(|r| r.times.clone()), 0.5, w50),
                datafusion: peer(df_warm.clone(), 0.5, w50),
                goal: "<= 2 ms",
                met: Some(w50 <= 0.002),
            },
            Line {
                target: "T3",
                what: "look-up by id, warm p99".into(),
                ours: ms(w99),
                duckdb: peer(duck_warm.map(|r| r.times), 0.99, w99),
                datafusion: peer(df_warm, 0.99, w99),
                goal: "<= 10 ms",
                met: Some(w99 <= 0.010),
            },
            Line {
                target: "T3",
                what: "look-up by id, cold p99".into(),
                ours: ms(c99),
                duckdb: peer(duck_cold.map(|r| r.times), 0.99, c99),
                datafusion: "-".into(),
                goal: "<= 30 ms",
                met: Some(c99 <= 0.030),
            },
        ])
    }

    /// T4: the newest 100 summaries of a 1% annotation.
    fn t4(&self) -> Result<Vec<Line>> {
        let (args, engine, spans) = (self.args, self.engine, self.spans);

        eprintln!("T4: annotation filter, newest 100 summaries");
        let expr = format!(r#"annotation.{} = "{}""#, T4_FILTER.0, T4_FILTER.1);
        let q = TraceQuery {
            filter: Some(expr.clone()),
            limit: 100,
            ..Default::default()
        };
        let first = engine.trace_summaries(&q)?;
        let mut t4 = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            engine.trace_summaries(&q)?;
            t4.push(t.elapsed().as_secs_f64());
        }
        let mut t4_cold = Vec::new();
        for _ in 0..3 {
            evict(spans)?;
            let t = Instant::now();
            engine.trace_summaries(&q)?;
            t4_cold.push(t.elapsed().as_secs_f64());
        }
        let pair = [T4_FILTER.0.to_owned(), T4_FILTER.1.to_owned()];
        let duck_t4 = self
            .duck
            .as_ref()
            .map(|d| d.run("annotation", &pair, args.runs, false))
            .transpose()?;
        let duck_t4_cold = self
            .duck
            .as_ref()
            .map(|d| d.run("annotation", &pair, 3, true))
            .transpose()?;
        let df_t4 = self
            .df
            .as_ref()
            .map(|d| d.timed(&DataFusionPeer::annotation_sql(), args.runs))
            .transpose()?;
        let newest = first.trace_summaries.first().map(|s| s.id.clone());
        let duck_newest = duck_t4
            .as_ref()
            .and_then(|r| r.answer.as_str())
            .and_then(|h| {
                let b: Vec<u8> = (0..h.len() / 2)
                    .filter_map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok())
                    .collect();
                TraceId::from_slice(&b).map(|t| t.to_string())
            });
        if duck_t4.is_some() && newest != duck_newest {
            eprintln!(
                "warning: T4 newest trace differs: tracelake {newest:?}, duckdb {duck_newest:?}"
            );
        }
        let m4 = median(&t4);
        let c4 = median(&t4_cold);
        Ok(vec![
            Line {
                target: "T4",
                what: format!("`{expr}`, newest 100, warm"),
                ours: ms(m4),
                duckdb: peer(duck_t4.map(|r| r.times), 0.5, m4),
                datafusion: peer(df_t4, 0.5, m4),
                goal: "<= 50 ms",
                met: Some(m4 <= 0.050),
            },
            Line {
                target: "T4",
                what: "same, cold".into(),
                ours: ms(c4),
                duckdb: peer(duck_t4_cold.map(|r| r.times), 0.5, c4),
                datafusion: "-".into(),
                goal: "<= 200 ms",
                met: Some(c4 <= 0.200),
            },
        ])
    }

    /// T5: a full-scan filter, counted.
    fn t5(&self) -> Result<Vec<Line>> {
        let (args, engine, rows) = (self.args, self.engine, self.rows);
        eprintln!("T5: full-scan filter");
        let ours_count = engine.find_trace_ids(T5_FILTER)?.len();
        let mut t5 = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            engine.find_trace_ids(T5_FILTER)?;
            t5.push(t.elapsed().as_secs_f64());
        }
        let duck_t5 = self
            .duck
            .as_ref()
            .map(|d| d.run("fullscan", &[], args.runs, false))
            .transpose()?;
        let df_t5 = self
            .df
            .as_ref()
            .map(|d| d.timed_count(&DataFusionPeer::fullscan_sql(), args.runs))
            .transpose()?;
        let duck_count = duck_t5.as_ref().and_then(|r| r.answer.as_u64());
        let df_count = df_t5.as_ref().map(|r| r.1);
        if duck_count.is_some_and(|c| c != ours_count as u64)
            || df_count.is_some_and(|c| c != ours_count as u64)
        {
            eprintln!(
                "warning: T5 counts differ: tracelake {ours_count}, duckdb {duck_count:?}, datafusion {df_count:?}"
            );
        }
        let m5 = median(&t5);
        let rows_per_s = |s: f64| format!("{:.0}M rows/s", rows as f64 / s / 1e6);
        let peer_rate = |t: Option<Vec<f64>>| {
            t.map_or_else(
                || "-".into(),
                |t| format!("{} ({:.2}x)", rows_per_s(median(&t)), median(&t) / m5),
            )
        };
        Ok(vec![Line {
            target: "T5",
            what: format!("`{T5_FILTER}` count ({ours_count}), warm"),
            ours: rows_per_s(m5),
            duckdb: peer_rate(duck_t5.map(|r| r.times)),
            datafusion: peer_rate(df_t5.map(|r| r.0)),
            goal: ">= 400M rows/s",
            met: Some(rows as f64 / m5 >= 400e6),
        }])
    }
}

impl Measure<'_> {
    /// T6: p50/p90/p99 of response times per service over everything, from rollups and
    /// by scanning, with the error of the fast answer against DuckDB's exact one.
    fn t6(&self) -> Result<Vec<Line>> {
        let (args, engine) = (self.args, self.engine);
        eprintln!("T6: percentiles per service");
        let ask = |mode| {
            engine.percentiles(&PercentileQuery {
                by: GroupBy::Service,
                mode,
                ..PercentileQuery::default()
            })
        };
        let fast = ask(Mode::Auto)?;
        let mut t_fast = Vec::new();
        for _ in 0..args.runs {
            let t = Instant::now();
            ask(Mode::Auto)?;
            t_fast.push(t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        let exact = ask(Mode::Exact)?;
        let t_exact = t.elapsed().as_secs_f64();
        let duck = self
            .duck
            .as_ref()
            .map(|d| d.run("percentiles", &[], args.runs.min(3), false))
            .transpose()?;
        let df = self
            .df
            .as_ref()
            .map(|d| d.timed(&DataFusionPeer::percentiles_sql(), args.runs.min(3)))
            .transpose()?;
        // the largest relative difference from DuckDB's exact quantiles (real nodes)
        let error_vs = |p: &tracelake::Percentiles, answer: &serde_json::Value| {
            let mut worst: f64 = 0.0;
            for g in &p.groups {
                let f = |k: &str| g.key.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
                let key = format!("{}|{}", f("service").unwrap_or(""), f("type").unwrap_or(""));
                if let Some(theirs) = answer.get(&key).and_then(|v| v.as_array()) {
                    for (i, ours) in g.values.iter().enumerate() {
                        if let Some(x) = theirs.get(i + 1).and_then(serde_json::Value::as_f64) {
                            worst = worst.max((ours - x).abs() / x.abs().max(1e-12));
                        }
                    }
                }
            }
            worst
        };
        let m = median(&t_fast);
        let (err_fast, err_exact) = match &duck {
            Some(d) => (
                format!("{:.3}%", error_vs(&fast, &d.answer) * 100.0),
                format!("{:.2e}", error_vs(&exact, &d.answer)),
            ),
            None => ("-".into(), "-".into()),
        };
        Ok(vec![
            Line {
                target: "T6",
                what: format!(
                    "p50/p90/p99 per service, {} ({} from rollups, {} scanned), warm",
                    fast.mode, fast.partitions_from_rollups, fast.partitions_scanned
                ),
                ours: ms(m),
                duckdb: peer(duck.as_ref().map(|d| d.times.clone()), 0.5, m),
                datafusion: peer(df.clone(), 0.5, m),
                goal: "<= 50 ms",
                met: Some(m <= 0.050 && fast.mode == tracelake::Answered::Fast),
            },
            Line {
                target: "T6",
                what: format!(
                    "same, exact (scan, {} partitions)",
                    exact.partitions_scanned
                ),
                ours: ms(t_exact),
                duckdb: peer(duck.as_ref().map(|d| d.times.clone()), 0.5, t_exact),
                datafusion: peer(df, 0.5, t_exact),
                goal: "<= 1 s",
                met: Some(t_exact <= 1.0),
            },
            Line {
                target: "T6",
                what: "largest error vs DuckDB quantile_cont (fast / exact)".into(),
                ours: format!("{err_fast} / {err_exact}"),
                duckdb: "exact".into(),
                datafusion: "-".into(),
                goal: "<= 1%",
                met: duck.as_ref().map(|d| error_vs(&fast, &d.answer) <= 0.01),
            },
        ])
    }
}

/// What building the store measured.
struct Ingest {
    docs: u64,
    seconds: f64,
    peak_rss: u64,
}

impl Ingest {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"docs": self.docs, "seconds": self.seconds, "peak_rss": self.peak_rss})
    }
}

fn load_ingest(path: &Path, args: &Args) -> Option<Ingest> {
    if !args.reuse {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let s = Ingest {
        docs: v["docs"].as_u64()?,
        seconds: v["seconds"].as_f64()?,
        peak_rss: v["peak_rss"].as_u64()?,
    };
    (s.docs == args.docs).then_some(s)
}

/// Generates `args.docs` documents chunk by chunk and ingests each chunk with the CLI.
/// Only the ingest processes are timed. Samples trace ids into `ids.txt` on the way.
fn build_store(args: &Args, store: &Path) -> Result<Ingest> {
    if store.exists() {
        std::fs::remove_dir_all(store)?;
    }
    let chunk_path = args.work.join("chunk.jsonl");
    let mut ids = Vec::new();
    let mut seconds = 0.0;
    let mut peak_rss = 0;
    let mut done = 0u64;
    let chunks = args.docs.div_ceil(CHUNK);
    for i in 0..chunks {
        let n = CHUNK.min(args.docs - done);
        // about 3 documents per trace at 200 traces/s of simulated time
        let start = 1_793_491_200.0 + (done as f64 / 3.0) / 200.0;
        eprintln!("chunk {}/{chunks}: generating {n} documents", i + 1);
        let status = Command::new(&args.tracelake)
            .args(["generate", "--count", &n.to_string(), "--seed"])
            .arg((i + 1).to_string())
            .arg("--start")
            .arg(format!("{start:.3}"))
            .arg("--out")
            .arg(&chunk_path)
            .status()?;
        if !status.success() {
            return Err(format!("tracelake generate failed: {status}").into());
        }
        sample_ids(&chunk_path, (1000 / chunks).max(20), &mut ids)?;
        eprintln!("chunk {}/{chunks}: ingesting", i + 1);
        let t = Instant::now();
        let mut child = Command::new(&args.tracelake)
            .arg("ingest")
            .arg("--dir")
            .arg(store)
            .arg("--quiet")
            .arg(&chunk_path)
            .stdout(Stdio::null())
            .spawn()?;
        let status = loop {
            peak_rss = peak_rss.max(vm_hwm(child.id()).unwrap_or(0));
            if let Some(s) = child.try_wait()? {
                break s;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        seconds += t.elapsed().as_secs_f64();
        if !status.success() {
            return Err(format!("tracelake ingest failed: {status}").into());
        }
        done += n;
    }
    let _ = std::fs::remove_file(&chunk_path);
    let mut text = String::new();
    for id in &ids {
        writeln!(text, "{id}")?;
    }
    std::fs::write(args.work.join("ids.txt"), text)?;
    Ok(Ingest {
        docs: done,
        seconds,
        peak_rss,
    })
}

/// Trace ids of about `want` documents spread over the file.
fn sample_ids(path: &Path, want: u64, out: &mut Vec<TraceId>) -> Result<()> {
    let lines = BufReader::new(std::fs::File::open(path)?).lines().count() as u64;
    let step = (lines / want.max(1)).max(1);
    for (i, line) in BufReader::new(std::fs::File::open(path)?)
        .lines()
        .enumerate()
    {
        if i as u64 % step != step / 2 {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line?)?;
        if let Some(t) = v["trace_id"].as_str().and_then(TraceId::parse)
            && !out.contains(&t)
        {
            out.push(t);
        }
    }
    Ok(())
}

fn read_ids(path: &Path) -> Result<Vec<TraceId>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(TraceId::parse).collect())
}

/// Peak resident set of a running process (bytes), from `/proc`.
fn vm_hwm(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// Drops every file under `dir` from the OS page cache.
fn evict(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            evict(&e.path())?;
        } else {
            let f = std::fs::File::open(e.path())?;
            // SAFETY: a valid open descriptor; posix_fadvise only reads its arguments.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
    Ok(())
}

/// T1b: a fresh store fed at `rate` documents/s by 16 concurrent senders, each sending
/// batches of 50 documents (a daemon's PutTraceSegments batch) on a fixed schedule.
/// Latency runs from a batch's scheduled time to its acknowledgement, so a stalled
/// engine shows up as latency (no coordinated omission).
fn ack_latency(args: &Args, rate: f64) -> Result<(f64, f64)> {
    const SENDERS: usize = 16;
    const BATCH: usize = 50;
    let dir = args.work.join("ack-store");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let out = Command::new(&args.tracelake)
        .args(["generate", "--count", "200000", "--seed", "99"])
        .output()?;
    if !out.status.success() {
        return Err("tracelake generate failed".into());
    }
    let docs: Vec<&[u8]> = out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let batches: Vec<Vec<u8>> = docs.chunks(BATCH).map(|c| c.join(&b'\n')).collect();
    let engine = Engine::open(
        &dir,
        EngineOptions {
            durability: Durability::Sync,
            // acknowledgements alone (T9 measures queries beside compaction)
            maintenance_interval: None,
            ..Default::default()
        },
    )?;
    let batches = Arc::new(batches);
    let start = Instant::now() + Duration::from_millis(100);
    let every = Duration::from_secs_f64(BATCH as f64 / rate);
    let mut handles = Vec::new();
    for s in 0..SENDERS {
        let engine = engine.clone();
        let batches = Arc::clone(&batches);
        handles.push(std::thread::spawn(move || -> Result<Vec<f64>> {
            let mut lat = Vec::new();
            for k in (s..batches.len()).step_by(SENDERS) {
                let due = start + every * k as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                engine.ingest(&batches[k])?;
                lat.push(due.elapsed().as_secs_f64());
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| "a sender thread panicked")??);
    }
    engine.close()?;
    drop(engine);
    std::fs::remove_dir_all(&dir)?;
    Ok((quantile(&all, 0.5), quantile(&all, 0.99)))
}

/// The DuckDB peer: one Python process per workload.
struct DuckDb {
    python: PathBuf,
    script: PathBuf,
    spans: PathBuf,
}

struct PeerRun {
    times: Vec<f64>,
    answer: serde_json::Value,
}

impl DuckDb {
    fn run(&self, workload: &str, args: &[String], runs: usize, evict: bool) -> Result<PeerRun> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script)
            .arg(&self.spans)
            .arg(workload)
            .arg("--runs")
            .arg(runs.to_string());
        if evict {
            cmd.arg("--evict");
        }
        for a in args {
            cmd.arg("--arg").arg(a);
        }
        let out = cmd.stderr(Stdio::inherit()).output()?;
        if !out.status.success() {
            return Err(format!("duckdb peer ({workload}) failed: {}", out.status).into());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let times = v["times_ms"]
            .as_array()
            .ok_or("duckdb peer: no times")?
            .iter()
            .filter_map(|t| t.as_f64())
            .map(|t| t / 1000.0)
            .collect();
        Ok(PeerRun {
            times,
            answer: v["answer"].clone(),
        })
    }
}

/// Plain DataFusion: a `ListingTable` over the store's Parquet files.
struct DataFusionPeer {
    ctx: SessionContext,
    rt: tokio::runtime::Runtime,
}

impl DataFusionPeer {
    fn new(spans: &Path) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let ctx =
            SessionContext::new_with_config(SessionConfig::new().with_target_partitions(cores));
        let url = format!("{}/", spans.display());
        rt.block_on(ctx.register_parquet("spans", &url, ParquetReadOptions::default()))?;
        Ok(DataFusionPeer { ctx, rt })
    }

    fn annotation_sql() -> String {
        format!(
            "SELECT trace_id, min(start_ns) AS first_start, max(end_ns) AS last_end \
             FROM (SELECT trace_id, start_ns, end_ns, unnest(annotations) AS a FROM spans) \
             WHERE a['key'] = '{}' AND a['str'] = '{}' \
             GROUP BY trace_id ORDER BY trace_id DESC LIMIT 100",
            T4_FILTER.0, T4_FILTER.1
        )
    }

    /// Exact p50/p90/p99 of segment response times per service (`percentile_cont`).
    fn percentiles_sql() -> String {
        let q = |p: f64| {
            format!("percentile_cont({p}) WITHIN GROUP (ORDER BY (end_ns - start_ns) / 1e9)")
        };
        format!(
            "SELECT name, coalesce(origin, ''), count(*), {}, {}, {} FROM spans \
             WHERE kind = 0 AND end_ns IS NOT NULL AND NOT in_progress GROUP BY 1, 2",
            q(0.5),
            q(0.9),
            q(0.99)
        )
    }

    fn fullscan_sql() -> String {
        "SELECT count(DISTINCT trace_id) FROM spans WHERE kind = 0 AND parent_id IS NULL \
         AND end_ns - start_ns > 2000000000 AND http_status = 500"
            .into()
    }

    fn query(&self, sql: &str) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
        Ok(self
            .rt
            .block_on(async { self.ctx.sql(sql).await?.collect().await })?)
    }

    fn timed(&self, sql: &str, runs: usize) -> Result<Vec<f64>> {
        self.query(sql)?;
        let mut times = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            self.query(sql)?;
            times.push(t.elapsed().as_secs_f64());
        }
        Ok(times)
    }

    fn timed_count(&self, sql: &str, runs: usize) -> Result<(Vec<f64>, u64)> {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::Int64Type;
        let batches = self.query(sql)?;
        let count = batches
            .first()
            .filter(|b| b.num_rows() == 1)
            .map(|b| b.column(0).as_primitive::<Int64Type>())
            .filter(|c| !c.is_null(0))
            .map_or(0, |c| c.value(0) as u64);
        Ok((self.timed(sql, runs)?, count))
    }

    fn lookups(&self, ids: &[TraceId]) -> Result<Vec<f64>> {
        let mut times = Vec::new();
        for id in ids {
            let sql = format!(
                "SELECT * FROM spans WHERE trace_id = arrow_cast(X'{}', 'FixedSizeBinary(16)')",
                hex(id)
            );
            let t = Instant::now();
            let got = self.query(&sql)?;
            times.push(t.elapsed().as_secs_f64());
            if got.iter().map(|b| b.num_rows()).sum::<usize>() == 0 {
                return Err(format!("datafusion found no rows of {id}").into());
            }
        }
        Ok(times)
    }
}

fn hex(t: &TraceId) -> String {
    t.as_bytes().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn median(xs: &[f64]) -> f64 {
    quantile(xs, 0.5)
}

fn ms(s: f64) -> String {
    if s < 0.01 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

/// A peer's time and its ratio to ours.
fn vs(peer: f64, ours: f64) -> String {
    format!("{} ({:.1}x)", ms(peer), peer / ours)
}

fn markdown(lines: &[Line], ingest: &Ingest, rows: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} documents ({} rows). Ratios: peer time / Tracelake time.\n",
        ingest.docs, rows
    );
    let _ = writeln!(
        s,
        "| # | what | Tracelake | DuckDB (ratio) | DataFusion (ratio) | target | |\n|---|---|---|---|---|---|---|"
    );
    for l in lines {
        let verdict = match l.met {
            Some(true) => "met",
            Some(false) => "missed",
            None => "-",
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {verdict} |",
            l.target, l.what, l.ours, l.duckdb, l.datafusion, l.goal
        );
    }
    s
}
