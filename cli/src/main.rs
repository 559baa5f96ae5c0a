//! `tracelake`: the command-line tool.

mod demo;
mod generate;
mod graph;
mod ingest;
mod maintenance;
mod percentiles;
mod query;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracelake::{Engine, EngineOptions, ErrorKind};

#[derive(Parser, Debug)]
#[command(
    name = "tracelake",
    version,
    about = "An embedded trace store and analytics engine for AWS X-Ray segment documents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct StoreArgs {
    /// Store directory [default: $TRACELAKE_DIR, else ~/.local/share/tracelake]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ingest segment documents from files, directories or stdin (any framing)
    Ingest(ingest::IngestArgs),
    /// Run a SQL query over the `spans` table
    Sql {
        /// The query, e.g. "SELECT name, count(*) FROM spans GROUP BY name"
        query: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Find traces with an X-Ray filter expression (GetTraceSummaries)
    Query(query::QueryArgs),
    /// Fetch whole traces by id (BatchGetTraces), as pretty JSON
    Get(query::GetArgs),
    /// Latency percentiles per service, edge, URL, annotation or time bucket
    Percentiles(percentiles::PercentilesArgs),
    /// The service graph: services, inferred nodes and edges with their statistics
    Graph(graph::GraphArgs),
    /// A service's or an edge's statistics per period (GetTimeSeriesServiceStatistics)
    Timeseries(graph::TimeSeriesArgs),
    /// Manage groups: named filter expressions
    #[command(subcommand)]
    Group(query::GroupCommand),
    /// Merge small files into large ones sorted by trace id (what the background
    /// maintenance does once an hour is over)
    Compact(maintenance::CompactArgs),
    /// Drop expired data: partitions past --max-age or beyond --max-bytes, keeping
    /// traces that match --keep rules and pinned traces
    Retention(maintenance::RetentionArgs),
    /// Pin traces: retention keeps them until they are unpinned
    Pin(maintenance::PinArgs),
    /// Unpin traces
    Unpin(maintenance::PinArgs),
    /// Show what the store holds: files and bytes per partition, the compaction backlog
    Stats {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write deterministic synthetic X-Ray traffic as JSON lines
    Generate {
        /// Number of documents
        #[arg(long, default_value_t = 10_000)]
        count: u64,
        /// Random seed: the same seed gives the same documents
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Epoch seconds of the first trace [default: 2026-11-01T00:00:00Z]
        #[arg(long)]
        start: Option<f64>,
        /// Traces per second of simulated time
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Output file [default: stdout]
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate traffic, ingest it into a demo store and show what Tracelake answers
    Demo(demo::DemoArgs),
}

/// The default store directory.
pub(crate) fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TRACELAKE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("tracelake");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/tracelake"),
        None => PathBuf::from("tracelake-data"),
    }
}

/// Opens a store for reading: for writing when free (to see its WAL too), else
/// read-only beside the process that writes it.
pub(crate) fn open_for_reading(dir: &std::path::Path) -> Result<Engine> {
    if !dir.exists() {
        anyhow::bail!(
            "no store at {} (ingest something first, or pass --dir)",
            dir.display()
        );
    }
    match Engine::open(dir, EngineOptions::default()) {
        Ok(e) => Ok(e),
        Err(e) if e.kind() == ErrorKind::Locked || e.kind() == ErrorKind::Io => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("note: {e}; reading the last committed data read-only");
            }
            Ok(Engine::open_read_only(dir)?)
        }
        Err(e) => Err(e.into()),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ingest(args) => ingest::run(args),
        Command::Sql { query, store } => {
            let dir = store.dir.unwrap_or_else(default_dir);
            let engine = open_for_reading(&dir)?;
            let result = engine.sql(&query)?;
            let mut out = std::io::stdout().lock();
            if store.json {
                for row in result.to_json_rows()? {
                    writeln!(out, "{row}")?;
                }
            } else {
                writeln!(out, "{}", result.to_table()?)?;
                writeln!(out, "({} rows)", result.num_rows())?;
            }
            Ok(())
        }
        Command::Query(args) => query::run_query(args),
        Command::Get(args) => query::run_get(args),
        Command::Group(cmd) => query::run_group(cmd),
        Command::Percentiles(args) => percentiles::run(args),
        Command::Graph(args) => graph::run_graph(args),
        Command::Timeseries(args) => graph::run_timeseries(args),
        Command::Compact(args) => maintenance::run_compact(args),
        Command::Retention(args) => maintenance::run_retention(args),
        Command::Pin(args) => maintenance::run_pin(args, true),
        Command::Unpin(args) => maintenance::run_pin(args, false),
        Command::Stats { store } => {
            let dir = store.dir.unwrap_or_else(default_dir);
            let engine = open_for_reading(&dir)?;
            print_stats(&engine, store.json)
        }
        Command::Generate {
            count,
            seed,
            start,
            rate,
            out,
        } => {
            let mut opts = generate::GenOptions {
                seed,
                rate,
                ..Default::default()
            };
            if let Some(s) = start {
                opts.start = s;
            }
            let sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(
                    std::fs::File::create(p)
                        .with_context(|| format!("cannot create {}", p.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut w = std::io::BufWriter::with_capacity(1 << 20, sink);
            for doc in generate::Generator::new(opts).take(count as usize) {
                w.write_all(doc.as_bytes())?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
            Ok(())
        }
        Command::Demo(args) => demo::run(args),
    }
}

pub(crate) fn print_stats(engine: &Engine, json: bool) -> Result<()> {
    let s = engine.stats();
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "dir": engine.dir(),
            "read_only": s.read_only,
            "files": s.files,
            "file_rows": s.file_rows,
            "file_bytes": s.file_bytes,
            "partitions": s.partitions,
            "memtable_rows": s.memtable_rows,
            "memtable_bytes": s.memtable_bytes,
            "wal_bytes": s.wal_bytes,
            "manifest_generation": s.manifest_generation,
            "last_seq": s.last_seq,
            "partition_table": maintenance::partitions_json(engine),
            "pins": engine.pins(),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "store           {}{}",
            engine.dir().display(),
            if s.read_only { " (read-only)" } else { "" }
        )?;
        writeln!(
            out,
            "documents       {} accepted (last sequence number)",
            s.last_seq
        )?;
        writeln!(
            out,
            "data files      {} in {} hour partitions",
            s.files, s.partitions
        )?;
        writeln!(out, "rows in files   {}", s.file_rows)?;
        writeln!(out, "bytes in files  {}", human_bytes(s.file_bytes))?;
        writeln!(
            out,
            "memtable        {} rows ({} of documents)",
            s.memtable_rows,
            human_bytes(s.memtable_bytes as u64)
        )?;
        writeln!(out, "WAL             {}", human_bytes(s.wal_bytes))?;
        writeln!(out, "manifest        generation {}", s.manifest_generation)?;
        maintenance::partitions_table(engine, &mut out)?;
    }
    Ok(())
}

pub(crate) fn human_bytes(b: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRACELAKE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}
