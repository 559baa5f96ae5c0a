//! `tracelake ingest`: files, directories or stdin, in any framing.
//!
//! JSON-lines input (one document, datagram or string per line) is streamed in batches
//! from a reader thread to ingest workers; any other framing (a pretty-printed document,
//! a JSON array, a PutTraceSegments body) is read whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tracelake::{Durability, Engine, EngineOptions, Rejection};

#[derive(clap::Args, Debug)]
pub(crate) struct IngestArgs {
    /// Files or directories to ingest; none or `-` reads stdin
    paths: Vec<PathBuf>,
    /// Store directory [default: $TRACELAKE_DIR, else ~/.local/share/tracelake]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print a JSON summary instead of text
    #[arg(long)]
    json: bool,
    /// When an ingest is acknowledged: `sync` (fsync, the default), `interval:MS` or `none`
    #[arg(long, default_value = "sync", value_parser = parse_durability)]
    durability: Durability,
    /// Documents (lines) per ingest call when streaming JSON lines
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// Ingest threads
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print `ack <source> <first line> <lines>` on stdout after each durable batch
    #[arg(long, hide = true)]
    ack: bool,
    /// No progress bar
    #[arg(long)]
    quiet: bool,
    /// Flush the memtable to Parquet every this many rows
    #[arg(long)]
    flush_rows: Option<usize>,
    /// How many rejected documents to show
    #[arg(long, default_value_t = 5)]
    show_errors: usize,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "sync" => Ok(Durability::Sync),
        "none" => Ok(Durability::None),
        _ => match s
            .strip_prefix("interval:")
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            Some(ms) => Ok(Durability::Interval(Duration::from_millis(ms))),
            None => Err(format!("`{s}` is not sync, none or interval:MS")),
        },
    }
}

struct Batch {
    source: Arc<str>,
    first_line: u64,
    lines: u64,
    bytes: Vec<u8>,
}

#[derive(Default)]
struct Totals {
    accepted: usize,
    rows: usize,
    rejected: usize,
    shown: Vec<(Arc<str>, u64, Rejection)>,
}

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
        } else if p.is_dir() {
            let mut entries: Vec<PathBuf> = Vec::new();
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d)
                    .with_context(|| format!("cannot read directory {}", d.display()))?
                {
                    let e = e?.path();
                    if e.is_dir() {
                        stack.push(e);
                    } else {
                        entries.push(e);
                    }
                }
            }
            entries.sort();
            out.extend(entries);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            bail!("{} does not exist", p.display());
        }
    }
    if out.is_empty() {
        out.push(PathBuf::from("-"));
    }
    Ok(out)
}

/// Whether a first line looks like a whole JSON value (so the input is JSON lines).
fn is_line_oriented(first: &[u8]) -> bool {
    let t = first.trim_ascii();
    matches!(
        (t.first(), t.last()),
        (Some(b'{'), Some(b'}')) | (Some(b'"'), Some(b'"'))
    )
}

fn read_source(
    path: &Path,
    batch_lines: usize,
    tx: &SyncSender<Batch>,
    bar: &ProgressBar,
) -> Result<()> {
    let name: Arc<str> = if path.as_os_str() == "-" {
        "stdin".into()
    } else {
        path.display().to_string().into()
    };
    let input: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )
    };
    let mut r = BufReader::with_capacity(1 << 20, input);
    let mut first = Vec::new();
    r.read_until(b'\n', &mut first)?;
    bar.inc(first.len() as u64);
    if !is_line_oriented(&first) {
        let mut all = first;
        r.read_to_end(&mut all)?;
        bar.inc(all.len() as u64);
        let _ = tx.send(Batch {
            source: name,
            first_line: 1,
            lines: 1,
            bytes: all,
        });
        return Ok(());
    }
    let max_bytes = 16 << 20;
    let mut buf = first;
    let mut lines = 1u64;
    let mut line_no = 1u64;
    loop {
        if lines as usize >= batch_lines || buf.len() >= max_bytes {
            let b = Batch {
                source: Arc::clone(&name),
                first_line: line_no,
                lines,
                bytes: std::mem::take(&mut buf),
            };
            line_no += lines;
            lines = 0;
            if tx.send(b).is_err() {
                return Ok(());
            }
        }
        let before = buf.len();
        let n = r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        bar.inc((buf.len() - before) as u64);
        lines += 1;
    }
    if !buf.is_empty() {
        let _ = tx.send(Batch {
            source: name,
            first_line: line_no,
            lines,
            bytes: buf,
        });
    }
    Ok(())
}

fn worker(
    engine: &Engine,
    rx: &Mutex<Receiver<Batch>>,
    totals: &Mutex<Totals>,
    args: &IngestArgs,
) -> Result<()> {
    loop {
        let batch = {
            let rx = rx
                .lock()
                .map_err(|_| anyhow::anyhow!("ingest worker panicked"))?;
            match rx.recv() {
                Ok(b) => b,
                Err(_) => return Ok(()),
            }
        };
        let report = engine
            .ingest(&batch.bytes)
            .with_context(|| format!("ingesting {}", batch.source))?;
        if args.ack {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "ack {} {} {}",
                batch.source, batch.first_line, batch.lines
            )?;
            out.flush()?;
        }
        let mut t = totals
            .lock()
            .map_err(|_| anyhow::anyhow!("ingest worker panicked"))?;
        t.accepted += report.accepted;
        t.rows += report.rows;
        t.rejected += report.rejected.len();
        for r in report.rejected {
            if t.shown.len() < args.show_errors {
                t.shown
                    .push((Arc::clone(&batch.source), batch.first_line, r));
            }
        }
    }
}

pub(crate) fn run(args: IngestArgs) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(crate::default_dir);
    let sources = expand(&args.paths)?;
    let mut options = EngineOptions {
        durability: args.durability,
        // a bulk load: compaction afterwards (`tracelake compact`), not beside it
        maintenance_interval: None,
        ..Default::default()
    };
    if let Some(n) = args.flush_rows {
        options.flush_rows = n.max(1);
    }
    let engine = Engine::open(&dir, options)
        .with_context(|| format!("cannot open the store at {}", dir.display()))?;
    let total_bytes: u64 = sources
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = if args.quiet || args.json || args.ack {
        ProgressBar::hidden()
    } else if total_bytes > 0 {
        ProgressBar::new(total_bytes)
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (tx, rx) = sync_channel::<Batch>(args.threads.max(1) * 2);
    let rx = Mutex::new(rx);
    let totals = Mutex::new(Totals::default());
    let threads = if args.ack { 1 } else { args.threads.max(1) };
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| worker(&engine, &rx, &totals, &args)))
            .collect();
        let mut read_result = Ok(());
        for src in &sources {
            read_result = read_source(src, args.batch.max(1), &tx, &bar);
            if read_result.is_err() {
                break;
            }
        }
        drop(tx);
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("ingest worker panicked"))??;
        }
        read_result
    })?;
    engine.close().context("closing the store")?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let t = totals
        .into_inner()
        .map_err(|_| anyhow::anyhow!("ingest worker panicked"))?;
    if args.ack {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let errors: Vec<_> = t
            .shown
            .iter()
            .map(|(src, _, r)| {
                serde_json::json!({"source": &**src, "index": r.index, "offset": r.offset, "id": r.id,
                    "trace_id": r.trace_id, "code": r.code.as_str(), "message": r.message})
            })
            .collect();
        let v = serde_json::json!({"accepted": t.accepted, "rows": t.rows, "rejected": t.rejected,
            "seconds": secs, "errors": errors, "dir": dir});
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "accepted {} documents ({} segments and subsegments), rejected {} in {:.2}s ({:.0} documents/s) into {}",
            t.accepted,
            t.rows,
            t.rejected,
            secs,
            t.accepted as f64 / secs.max(1e-9),
            dir.display()
        )?;
        for (src, _, r) in &t.shown {
            let id =
                r.id.as_deref()
                    .map(|i| format!(" id {i}"))
                    .unwrap_or_default();
            writeln!(
                out,
                "  {src}: document {} (byte {}){id}: {}: {}",
                r.index, r.offset, r.code, r.message
            )?;
        }
        if t.rejected > t.shown.len() {
            writeln!(out, "  ... and {} more", t.rejected - t.shown.len())?;
        }
    }
    Ok(())
}
