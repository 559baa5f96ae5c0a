//! `tracelake compact`, `retention`, `pin`, `unpin` and the partition table of `stats`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use tracelake::{Engine, EngineOptions, Expiry, KeepRule, RetentionPolicy};

use crate::{StoreArgs, human_bytes};

#[derive(clap::Args, Debug)]
pub(crate) struct CompactArgs {
    /// Show what would be merged, change nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RetentionArgs {
    /// Drop partitions whose hour ended longer ago than this (`30d`, `12h`; `none`: no
    /// age limit)
    #[arg(long, default_value = "30d")]
    max_age: String,
    /// Drop the oldest partitions while the store holds more than this (`500GiB`, `10G`,
    /// bytes)
    #[arg(long)]
    max_bytes: Option<String>,
    /// Keep the traces matching a filter expression longer:
    /// "EXPRESSION=DURATION", e.g. --keep "fault OR error OR responsetime > 3=400d".
    /// Repeatable.
    #[arg(long)]
    keep: Vec<String>,
    /// Report what would be dropped and kept, change nothing
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PinArgs {
    /// Trace ids (1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx)
    #[arg(required = true)]
    ids: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

/// Opens the store for maintenance: writable, and without a background thread of its
/// own (the command is the maintenance).
fn open_writable(store: &StoreArgs) -> Result<Engine> {
    let dir = store.dir.clone().unwrap_or_else(crate::default_dir);
    if !dir.exists() {
        anyhow::bail!(
            "no store at {} (ingest something first, or pass --dir)",
            dir.display()
        );
    }
    Engine::open(
        &dir,
        EngineOptions {
            maintenance_interval: None,
            ..EngineOptions::default()
        },
    )
    .with_context(|| format!("cannot open the store at {} for maintenance", dir.display()))
}

pub(crate) fn run_compact(args: CompactArgs) -> Result<()> {
    let engine = open_writable(&args.store)?;
    let mut out = std::io::stdout().lock();
    let plan = engine.compaction_plan();
    if args.dry_run {
        if args.store.json {
            for m in &plan {
                let v = serde_json::json!({
                    "partition": m.partition.to_string(),
                    "files": m.files, "rows": m.rows, "bytes": m.bytes,
                });
                writeln!(out, "{v}")?;
            }
        } else if plan.is_empty() {
            writeln!(out, "nothing to compact")?;
        } else {
            writeln!(
                out,
                "{:<16} {:>7} {:>12} {:>12}",
                "partition", "files", "rows", "bytes"
            )?;
            for m in &plan {
                writeln!(
                    out,
                    "{:<16} {:>7} {:>12} {:>12}",
                    m.partition.to_string(),
                    m.files,
                    m.rows,
                    human_bytes(m.bytes)
                )?;
            }
            writeln!(out, "(dry run: nothing changed)")?;
        }
        return Ok(());
    }
    let bar = if args.store.json || plan.is_empty() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(plan.iter().map(|m| m.rows).sum())
    };
    bar.set_style(
        ProgressStyle::with_template("compacting {wide_bar} {pos}/{len} rows ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let s = engine.compact_with_progress(&|done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    engine.close()?;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    if args.store.json {
        let v = serde_json::json!({
            "merges": s.merges,
            "input_files": s.input_files, "input_rows": s.input_rows, "input_bytes": s.input_bytes,
            "output_files": s.output_files, "output_rows": s.output_rows,
            "output_bytes": s.output_bytes, "replaced_rows": s.replaced_rows,
            "seconds": s.elapsed.as_secs_f64(),
        });
        writeln!(out, "{v}")?;
    } else if s.merges == 0 {
        writeln!(out, "nothing to compact")?;
    } else {
        writeln!(
            out,
            "{} merges: {} files ({}) -> {} files ({}); {} rows, {} older versions left out; {:.1} s ({:.0} rows/s)",
            s.merges,
            s.input_files,
            human_bytes(s.input_bytes),
            s.output_files,
            human_bytes(s.output_bytes),
            s.output_rows,
            s.replaced_rows,
            secs,
            s.input_rows as f64 / secs
        )?;
    }
    Ok(())
}

/// Parses `500GiB`, `10G`, `2.5T`, `1000` (bytes).
fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .with_context(|| format!("size {t:?}: expected a number with an optional unit"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => anyhow::bail!("size {t:?}: unknown unit {other:?} (use K, M, G or T)"),
    };
    Ok((n * mult) as u64)
}

pub(crate) fn run_retention(args: RetentionArgs) -> Result<()> {
    let max_age: Option<Duration> = match args.max_age.trim() {
        "none" | "" => None,
        s => Some(tracelake::parse_duration(s)?),
    };
    let policy = RetentionPolicy {
        max_age,
        max_bytes: args.max_bytes.as_deref().map(parse_bytes).transpose()?,
        keep: args
            .keep
            .iter()
            .map(|k| KeepRule::parse(k))
            .collect::<Result<_, _>>()?,
    };
    let engine = open_writable(&args.store)?;
    let report = engine.apply_retention_with(&policy, args.dry_run)?;
    engine.close()?;
    let mut out = std::io::stdout().lock();
    let action = |p: &tracelake::PartitionRetention| {
        if p.kept_traces == 0 {
            "drop"
        } else if Some(p.kept_traces) == p.traces {
            "keep all"
        } else {
            "keep matching"
        }
    };
    let why = |e: Expiry| match e {
        Expiry::MaxAge => "max-age",
        Expiry::MaxBytes => "max-bytes",
    };
    if args.store.json {
        for p in &report.partitions {
            let v = serde_json::json!({
                "partition": p.partition.to_string(), "expiry": why(p.expiry),
                "action": action(p), "files": p.files, "bytes": p.bytes, "rows": p.rows,
                "traces": p.traces, "kept_traces": p.kept_traces,
                "removed_rows": p.removed_rows, "bytes_after": p.bytes_after,
                "dry_run": report.dry_run,
            });
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    if report.partitions.is_empty() {
        writeln!(out, "nothing has expired")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<10} {:<14} {:>6} {:>11} {:>9} {:>9}",
        "partition", "expiry", "action", "files", "bytes", "traces", "kept"
    )?;
    for p in &report.partitions {
        writeln!(
            out,
            "{:<16} {:<10} {:<14} {:>6} {:>11} {:>9} {:>9}",
            p.partition.to_string(),
            why(p.expiry),
            action(p),
            p.files,
            human_bytes(p.bytes),
            p.traces.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            p.kept_traces
        )?;
    }
    writeln!(
        out,
        "{} partitions expired, {} dropped whole, {} freed{} in {:.1} ms",
        report.partitions.len(),
        report.dropped(),
        human_bytes(report.freed_bytes()),
        if report.dry_run {
            " (dry run: nothing changed; partitions kept in part are rewritten)"
        } else {
            ""
        },
        report.elapsed.as_secs_f64() * 1e3
    )?;
    Ok(())
}

pub(crate) fn run_pin(args: PinArgs, pin: bool) -> Result<()> {
    let engine = open_writable(&args.store)?;
    let changed = if pin {
        engine.pin(&args.ids)?
    } else {
        engine.unpin(&args.ids)?
    };
    let total = engine.pins().len();
    engine.close()?;
    let mut out = std::io::stdout().lock();
    if args.store.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"changed": changed, "pinned": total})
        )?;
    } else {
        writeln!(
            out,
            "{} {} trace(s) ({} already {}); {total} pinned in all",
            if pin { "pinned" } else { "unpinned" },
            changed,
            args.ids.len() - changed.min(args.ids.len()),
            if pin { "pinned" } else { "not pinned" }
        )?;
    }
    Ok(())
}

/// The per-partition table of `tracelake stats`.
pub(crate) fn partitions_table(engine: &Engine, out: &mut dyn Write) -> Result<()> {
    let parts = engine.partition_stats();
    if parts.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<16} {:>6} {:>6} {:>12} {:>11}  compaction",
        "partition", "files", "small", "rows", "bytes"
    )?;
    for p in &parts {
        writeln!(
            out,
            "{:<16} {:>6} {:>6} {:>12} {:>11}  {}",
            p.partition.to_string(),
            p.files,
            p.small_files,
            p.rows,
            human_bytes(p.bytes),
            if p.compaction_due {
                "due"
            } else if p.needs_compaction {
                "waiting (hour not settled)"
            } else {
                "-"
            }
        )?;
    }
    let due: Vec<_> = parts.iter().filter(|p| p.compaction_due).collect();
    writeln!(
        out,
        "compaction backlog: {} partitions, {} files, {}",
        due.len(),
        due.iter().map(|p| p.files).sum::<usize>(),
        human_bytes(due.iter().map(|p| p.bytes).sum())
    )?;
    writeln!(out, "pinned traces: {}", engine.pins().len())?;
    Ok(())
}

/// The partitions as JSON, for `tracelake stats --json`.
pub(crate) fn partitions_json(engine: &Engine) -> serde_json::Value {
    engine
        .partition_stats()
        .iter()
        .map(|p| {
            serde_json::json!({
                "partition": p.partition.to_string(), "files": p.files,
                "small_files": p.small_files, "rows": p.rows, "bytes": p.bytes,
                "compaction_due": p.compaction_due, "needs_compaction": p.needs_compaction,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_bytes("1000").unwrap(), 1000);
        assert_eq!(super::parse_bytes("2K").unwrap(), 2048);
        assert_eq!(super::parse_bytes("1.5GiB").unwrap(), 1_610_612_736);
        assert!(super::parse_bytes("3 parsecs").is_err());
        assert!(super::parse_bytes("G").is_err());
    }
}
