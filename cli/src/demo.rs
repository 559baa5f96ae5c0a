//! `tracelake demo`: generate realistic traffic, ingest it into an embedded store and
//! show what Tracelake answers.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tracelake::{Engine, EngineOptions};

use crate::generate::{GenOptions, Generator};

#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Store directory for the demo (emptied first) [default: `<data dir>/demo`]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Documents to generate
    #[arg(long, default_value_t = 200_000)]
    count: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print JSON instead of tables
    #[arg(long)]
    json: bool,
}

const QUERIES: &[(&str, &str)] = &[
    (
        "Segments per service, with errors, faults and throttles",
        "SELECT name AS service, count(*) AS segments, sum(CAST(error AS INT)) AS errors, \
         sum(CAST(fault AS INT)) AS faults, sum(CAST(throttle AS INT)) AS throttles \
         FROM spans WHERE kind = 0 GROUP BY name ORDER BY segments DESC",
    ),
    (
        "Slowest entry requests (response time in ms)",
        "SELECT name, http_method, http_url, http_status, (end_ns - start_ns) / 1000000.0 AS ms \
         FROM spans WHERE kind = 0 AND parent_id IS NULL AND end_ns IS NOT NULL ORDER BY ms DESC LIMIT 5",
    ),
    (
        "Downstream calls by subsegment name and namespace",
        "SELECT name, namespace, count(*) AS calls, avg((end_ns - start_ns) / 1000000.0) AS avg_ms \
         FROM spans WHERE kind = 1 AND namespace IN ('aws', 'remote') GROUP BY name, namespace ORDER BY calls DESC",
    ),
    (
        "Requests per tenant annotation",
        "SELECT a.str AS tenant, count(*) AS requests FROM \
         (SELECT unnest(annotations) AS a FROM spans WHERE annotations IS NOT NULL) \
         WHERE a.key = 'tenant' GROUP BY a.str ORDER BY requests DESC",
    ),
    (
        "Rows per hour partition",
        "SELECT to_timestamp_seconds(CAST(start_ns / 3600000000000 * 3600 AS BIGINT)) AS hour, count(*) AS rows \
         FROM spans GROUP BY 1 ORDER BY 1",
    ),
];

/// Filter expressions the demo runs: (what it asks, expression).
const FILTERS: &[(&str, &str)] = &[
    ("slow requests", "responsetime > 0.5"),
    ("failed at the entry point", "fault OR error"),
    (
        "inventory faults hitting premium customers",
        r#"service("inventory-svc") { fault } AND annotation.premium = true"#,
    ),
    (
        "premium customers of one tenant",
        r#"annotation.premium = true AND annotation.tenant = "acme""#,
    ),
    ("throttled anywhere", "throttle"),
    (
        "a slow call from checkout to inventory",
        r#"edge("checkout-api", "inventory-svc") { responsetime > 0.05 }"#,
    ),
    (
        "fault root cause in the inventory service",
        r#"rootcause.fault.service { name = "inventory-svc" }"#,
    ),
    (
        "failed requests that used a DynamoDB table",
        r#"!ok AND service(id(type: "AWS::DynamoDB::Table"))"#,
    ),
];

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::default_dir().join("demo"));
    if dir.exists() {
        let is_store = dir.join("LOCK").exists() || std::fs::read_dir(&dir)?.next().is_none();
        if !is_store {
            bail!(
                "{} exists and is not a Tracelake store; pass another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let quiet = args.json;

    // 1. Generate.
    let t = Instant::now();
    let docs: Vec<String> = Generator::new(GenOptions {
        seed: args.seed,
        ..Default::default()
    })
    .take(args.count)
    .collect();
    let bytes: usize = docs.iter().map(|d| d.len() + 1).sum();
    let gen_secs = t.elapsed().as_secs_f64();

    // 2. Ingest in batches of JSON lines, durably.
    let engine = Engine::open(&dir, EngineOptions::default())
        .with_context(|| format!("cannot open {}", dir.display()))?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(docs.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("ingesting {wide_bar} {pos}/{len} documents ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t = Instant::now();
    let mut accepted = 0;
    let mut rejected = 0;
    // Two ingest threads, as a backend with concurrent requests would call it.
    let chunks: Vec<&[String]> = docs.chunks(8192).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<(usize, usize)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> Result<(usize, usize)> {
                    let (mut ok, mut bad) = (0, 0);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else {
                            return Ok((ok, bad));
                        };
                        let mut buf = Vec::with_capacity(chunk.iter().map(|d| d.len() + 1).sum());
                        for d in chunk.iter() {
                            buf.extend_from_slice(d.as_bytes());
                            buf.push(b'\n');
                        }
                        let r = engine.ingest(&buf)?;
                        ok += r.accepted;
                        bad += r.rejected.len();
                        bar.inc(chunk.len() as u64);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("ingest thread panicked")))
            })
            .collect()
    });
    for r in results {
        let (ok, bad) = r?;
        accepted += ok;
        rejected += bad;
    }
    engine.flush()?;
    bar.finish_and_clear();
    let ingest_secs = t.elapsed().as_secs_f64();
    let stats = engine.stats();

    let mut answers = Vec::new();
    for (title, q) in QUERIES {
        let t = Instant::now();
        let r = engine
            .sql(q)
            .with_context(|| format!("demo query failed: {q}"))?;
        answers.push((*title, *q, r, t.elapsed().as_secs_f64()));
    }

    // X-Ray filter expressions, as the console would send them
    let mut filters = Vec::new();
    for (title, expr) in FILTERS {
        let t = Instant::now();
        let page = engine
            .trace_summaries(&tracelake::TraceQuery {
                filter: Some((*expr).to_owned()),
                limit: 1,
                ..tracelake::TraceQuery::default()
            })
            .with_context(|| format!("demo filter failed: {expr}"))?;
        filters.push((*title, *expr, page, t.elapsed().as_secs_f64()));
    }

    // Latency percentiles per service: from the rollups, and exactly by scanning spans.
    let mut percentiles = Vec::new();
    for mode in [tracelake::Mode::Auto, tracelake::Mode::Exact] {
        let t = Instant::now();
        let p = engine
            .percentiles(&tracelake::PercentileQuery {
                by: tracelake::GroupBy::Service,
                mode,
                ..Default::default()
            })
            .context("demo percentiles failed")?;
        percentiles.push((p, t.elapsed().as_secs_f64()));
    }

    let t = Instant::now();
    let graph = engine
        .service_graph(&tracelake::GraphQuery::default())
        .context("demo service graph failed")?;
    let graph_secs = t.elapsed().as_secs_f64();

    if args.json {
        let v = serde_json::json!({
            "service_graph": {"seconds": graph_secs, "mode": graph.mode.to_string(), "graph": &graph},
            "percentiles": percentiles.iter().map(|(p, secs)| serde_json::json!({
                "mode": p.mode.to_string(), "seconds": secs, "relative_error": p.relative_error,
                "groups": p.groups.iter().map(|g| serde_json::json!({
                    "key": g.key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                    "count": g.count, "p50": g.values.first(), "p90": g.values.get(1), "p99": g.values.get(2),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "filters": filters.iter().map(|(title, expr, page, secs)| serde_json::json!({
                "title": title, "expression": expr, "seconds": secs,
                "matched": page.matched_count, "processed": page.traces_processed_count,
                "newest": page.trace_summaries.first().map(|s| s.id.clone()),
            })).collect::<Vec<_>>(),
            "dir": dir,
            "generated": {"documents": docs.len(), "bytes": bytes, "seconds": gen_secs},
            "ingested": {"accepted": accepted, "rejected": rejected, "seconds": ingest_secs,
                         "documents_per_second": accepted as f64 / ingest_secs.max(1e-9)},
            "stored": {"files": stats.files, "partitions": stats.partitions, "rows": stats.file_rows,
                       "bytes": stats.file_bytes,
                       "bytes_per_document": stats.file_bytes as f64 / accepted.max(1) as f64},
            "queries": answers.iter().map(|(title, q, r, secs)| serde_json::json!({
                "title": title, "sql": q, "seconds": secs, "rows": r.to_json_rows().unwrap_or_default()
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(out, "Tracelake demo: store in {}", dir.display())?;
    writeln!(
        out,
        "generated {} X-Ray segment documents ({}) in {:.2}s",
        docs.len(),
        crate::human_bytes(bytes as u64),
        gen_secs
    )?;
    writeln!(
        out,
        "ingested {accepted} documents durably (fsync'd WAL, group commit), rejected {rejected}, in {:.2}s: {:.0} documents/s",
        ingest_secs,
        accepted as f64 / ingest_secs.max(1e-9)
    )?;
    writeln!(
        out,
        "stored {} rows in {} Parquet files over {} hour partitions: {} ({:.0} bytes per document)",
        stats.file_rows,
        stats.files,
        stats.partitions,
        crate::human_bytes(stats.file_bytes),
        stats.file_bytes as f64 / accepted.max(1) as f64
    )?;
    for (title, q, r, secs) in &answers {
        writeln!(out, "\n== {title} ({:.0} ms)\n   {q}", secs * 1000.0)?;
        writeln!(out, "{}", r.to_table()?)?;
    }
    writeln!(out, "\n== X-Ray filter expressions (GetTraceSummaries)")?;
    for (title, expr, page, secs) in &filters {
        writeln!(
            out,
            "   {:>6} of {} traces  {:>5.0} ms  {title}\n      {expr}{}",
            page.matched_count.map_or_else(
                // an index-limited search stopped once the page was full
                || format!("{}+", page.trace_summaries.len()),
                |n| n.to_string()
            ),
            page.traces_processed_count,
            secs * 1000.0,
            page.trace_summaries
                .first()
                .map_or_else(String::new, |s| format!("\n      newest: {}", s.id)),
        )?;
    }
    for (p, secs) in &percentiles {
        writeln!(
            out,
            "\n== Response-time percentiles per service, {} ({:.0} ms)",
            p.mode,
            secs * 1000.0
        )?;
        crate::percentiles::write_table(&mut out, p)?;
    }
    writeln!(
        out,
        "\n== Service graph, {} ({:.0} ms)",
        graph.mode,
        graph_secs * 1000.0
    )?;
    crate::graph::write_table(&mut out, &graph)?;
    writeln!(
        out,
        "\nTry: tracelake sql --dir {} \"SELECT count(*) FROM spans\"",
        dir.display()
    )?;
    writeln!(
        out,
        "     tracelake query --dir {} 'service(\"inventory-svc\") {{ fault }}'",
        dir.display()
    )?;
    writeln!(out, "     tracelake get --dir {} <trace id>", dir.display())?;
    writeln!(
        out,
        "     tracelake percentiles --dir {} --by edge --q 50,99",
        dir.display()
    )?;
    writeln!(
        out,
        "     tracelake graph --dir {} --format mermaid",
        dir.display()
    )?;
    Ok(())
}
