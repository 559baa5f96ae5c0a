//! `tracelake percentiles`: latency quantiles per service, edge, URL, annotation or
//! time bucket, exact or from rollups.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tracelake::{Answered, Metric, Mode, PercentileQuery, Percentiles, quantile_name};

use crate::query::WindowArgs;
use crate::{StoreArgs, default_dir, open_for_reading};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum MetricArg {
    /// A segment's end minus its start
    Responsetime,
    /// A trace's latest end minus its earliest start
    Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ModeArg {
    /// From rollups when the request allows, else by scanning spans
    Auto,
    /// Scan spans: exact quantile_cont
    Exact,
    /// From rollups (1% relative error), or an error saying why not
    Fast,
}

#[derive(Args, Debug)]
pub(crate) struct PercentilesArgs {
    /// Group by: all, service, edge, url, annotation:KEY or time:SECONDS
    #[arg(long, default_value = "service")]
    by: String,
    /// Quantiles in percent, comma-separated
    #[arg(long = "q", default_value = "50,90,99", value_delimiter = ',')]
    quantiles: Vec<f64>,
    /// An X-Ray filter expression selecting traces (answers exactly)
    #[arg(long)]
    filter: Option<String>,
    #[arg(long, value_enum, default_value = "responsetime")]
    metric: MetricArg,
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
    #[command(flatten)]
    window: WindowArgs,
    /// Also print each group's latency histogram
    #[arg(long)]
    histogram: bool,
    #[command(flatten)]
    store: StoreArgs,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Exact => Mode::Exact,
            ModeArg::Fast => Mode::Fast,
        }
    }
}

fn query_of(args: &PercentilesArgs) -> Result<PercentileQuery> {
    let quantiles = args
        .quantiles
        .iter()
        .map(|p| {
            if (0.0..=100.0).contains(p) {
                Ok(p / 100.0)
            } else {
                bail!("--q {p}: quantiles are percents from 0 to 100 (99 for p99)")
            }
        })
        .collect::<Result<Vec<f64>>>()?;
    let range = args.window.bounds()?;
    Ok(PercentileQuery {
        filter: args.filter.clone(),
        range,
        metric: match args.metric {
            MetricArg::Responsetime => Metric::ResponseTime,
            MetricArg::Duration => Metric::Duration,
        },
        by: tracelake::parse_group_by(&args.by).context("--by")?,
        quantiles,
        mode: args.mode.into(),
        histogram: args.histogram,
    })
}

pub(crate) fn run(args: PercentilesArgs) -> Result<()> {
    let dir = args.store.dir.clone().unwrap_or_else(default_dir);
    let engine = open_for_reading(&dir)?;
    let p = engine.percentiles(&query_of(&args)?)?;
    let mut out = std::io::stdout().lock();
    if args.store.json {
        writeln!(out, "{}", to_json(&p))?;
    } else {
        write_table(&mut out, &p)?;
    }
    Ok(())
}

fn to_json(p: &Percentiles) -> serde_json::Value {
    serde_json::json!({
        "mode": p.mode.to_string(),
        "relative_error": p.relative_error,
        "exact_because": p.exact_because,
        "partitions_from_rollups": p.partitions_from_rollups,
        "partitions_scanned": p.partitions_scanned,
        "groups": p.groups.iter().map(|g| {
            let mut o = serde_json::Map::new();
            for (k, v) in &g.key {
                o.insert((*k).to_owned(), v.clone().into());
            }
            o.insert("count".into(), g.count.into());
            o.insert("sum".into(), g.sum.into());
            for (q, v) in p.quantiles.iter().zip(&g.values) {
                o.insert(quantile_name(*q), (*v).into());
            }
            if let Some(h) = &g.histogram {
                o.insert("histogram".into(), h.iter().map(|(v, c)| serde_json::json!({"Value": v, "Count": c})).collect());
            }
            serde_json::Value::Object(o)
        }).collect::<Vec<_>>(),
    })
}

/// Seconds as milliseconds with three significant decimals.
fn ms(s: f64) -> String {
    format!("{:.3}", s * 1e3)
}

/// Prints a percentile answer as a table, with a line on how it was computed.
pub(crate) fn write_table(out: &mut impl Write, p: &Percentiles) -> Result<()> {
    let fields: Vec<&str> = p
        .groups
        .first()
        .map(|g| g.key.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
    head.push("count".into());
    head.extend(
        p.quantiles
            .iter()
            .map(|q| format!("{} ms", quantile_name(*q))),
    );
    rows.push(head);
    for g in &p.groups {
        let mut r: Vec<String> = g.key.iter().map(|(_, v)| v.clone()).collect();
        r.resize(fields.len(), String::new());
        r.push(g.count.to_string());
        r.extend(g.values.iter().map(|v| ms(*v)));
        rows.push(r);
    }
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c < fields.len() {
                    format!("{s:<w$}", w = width[c])
                } else {
                    format!("{s:>w$}", w = width[c])
                }
            })
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    match p.mode {
        Answered::Fast => writeln!(
            out,
            "(fast: rollup sketches, values within {}% relative error; {} partitions from rollups, {} scanned)",
            p.relative_error * 100.0,
            p.partitions_from_rollups,
            p.partitions_scanned
        )?,
        Answered::Exact => writeln!(
            out,
            "(exact: {} partitions scanned{})",
            p.partitions_scanned,
            p.exact_because
                .as_ref()
                .map(|w| format!("; {w}"))
                .unwrap_or_default()
        )?,
    }
    for g in p.groups.iter().filter(|g| g.histogram.is_some()) {
        let label: Vec<&str> = g.key.iter().map(|(_, v)| v.as_str()).collect();
        writeln!(out, "histogram {}:", label.join(" "))?;
        for (v, c) in g.histogram.iter().flatten() {
            writeln!(out, "  {:>10} ms  {c}", ms(*v))?;
        }
    }
    Ok(())
}
