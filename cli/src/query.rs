//! `tracelake query`, `tracelake get` and `tracelake group`: X-Ray filter expressions,
//! trace look-ups and groups from the command line.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use tracelake::{Engine, RangeType, TraceQuery, TraceSummary};

use crate::{StoreArgs, default_dir, open_for_reading};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RangeArg {
    /// The time in the trace id
    TraceId,
    /// Traces active in the window
    Event,
    /// Traces with a segment that ended in the window
    Service,
}

#[derive(Args, Debug)]
pub(crate) struct QueryArgs {
    /// An X-Ray filter expression, e.g. 'service("api") { fault } AND responsetime > 2'
    /// (empty: every trace)
    #[arg(default_value = "")]
    expression: String,
    #[command(flatten)]
    window: WindowArgs,
    /// How the window selects traces
    #[arg(long, value_enum, default_value = "trace-id")]
    range_type: RangeArg,
    /// Traces to show (newest first)
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Continue after a previous page (its next_token)
    #[arg(long)]
    next_token: Option<String>,
    /// FixedRate sampling: look at this fraction (0..1) of the traces
    #[arg(long)]
    sample: Option<f64>,
    #[command(flatten)]
    store: StoreArgs,
}

/// A time window: `--since`, or `--from` / `--to`.
#[derive(Args, Debug)]
pub(crate) struct WindowArgs {
    /// Only the last DURATION (e.g. 90s, 15m, 1h, 7d)
    #[arg(long, conflicts_with_all = ["from", "to"])]
    since: Option<String>,
    /// Window start: RFC 3339 (2026-11-21T10:00:00Z) or epoch seconds
    #[arg(long)]
    from: Option<String>,
    /// Window end (exclusive) [default: now]
    #[arg(long)]
    to: Option<String>,
}

impl WindowArgs {
    /// `[start, end)` in epoch seconds; `None` when no flag was given.
    pub(crate) fn bounds(&self) -> Result<Option<(f64, f64)>> {
        if let Some(s) = &self.since {
            let d = humantime::parse_duration(s).with_context(|| {
                format!("--since {s:?}: expected a duration such as 15m, 1h or 7d")
            })?;
            let end = now();
            return Ok(Some((end - d.as_secs_f64(), end)));
        }
        match (&self.from, &self.to) {
            (None, None) => Ok(None),
            (from, to) => {
                let start = from.as_deref().map(parse_time).transpose()?.unwrap_or(0.0);
                let end = to
                    .as_deref()
                    .map(parse_time)
                    .transpose()?
                    .unwrap_or_else(now);
                if end <= start {
                    bail!("the window ends ({end}) before it starts ({start})");
                }
                Ok(Some((start, end)))
            }
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// Trace ids (1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx)
    #[arg(required = true)]
    ids: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum GroupCommand {
    /// Create a group: a name and a filter expression
    Create {
        name: String,
        expression: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show one group (by name or ARN)
    Get {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List the groups
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Give a group a new filter expression
    Update {
        name: String,
        expression: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a group
    Delete {
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Epoch seconds from RFC 3339 text or a number.
fn parse_time(text: &str) -> Result<f64> {
    if let Ok(v) = text.parse::<f64>() {
        return Ok(v);
    }
    let t = humantime::parse_rfc3339_weak(text).with_context(|| {
        format!("{text:?} is neither RFC 3339 (2026-11-21T10:00:00Z) nor epoch seconds")
    })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64()))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

fn window(args: &QueryArgs) -> Result<Option<(f64, f64, RangeType)>> {
    let kind = match args.range_type {
        RangeArg::TraceId => RangeType::TraceId,
        RangeArg::Event => RangeType::Event,
        RangeArg::Service => RangeType::Service,
    };
    Ok(args.window.bounds()?.map(|(start, end)| (start, end, kind)))
}

fn rfc3339(secs: f64) -> String {
    let d = Duration::from_secs_f64(secs.max(0.0));
    humantime::format_rfc3339_millis(UNIX_EPOCH + d).to_string()
}

fn status(s: &TraceSummary) -> String {
    let mut parts = Vec::new();
    if s.has_fault {
        parts.push("fault");
    }
    if s.has_error {
        parts.push("error");
    }
    if s.has_throttle {
        parts.push("throttle");
    }
    if s.is_partial {
        parts.push("partial");
    }
    let mut out = s
        .http
        .http_status
        .map_or_else(String::new, |c| c.to_string());
    if parts.is_empty() {
        if out.is_empty() {
            out.push_str("ok");
        }
    } else {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&parts.join(","));
    }
    out
}

fn secs(ns: Option<i64>) -> String {
    ns.map_or_else(|| "-".to_owned(), |v| format!("{:.3}s", v as f64 / 1e9))
}

pub(crate) fn run_query(args: QueryArgs) -> Result<()> {
    let dir = args.store.dir.clone().unwrap_or_else(default_dir);
    let engine = open_for_reading(&dir)?;
    if let Some(r) = args.sample
        && !(0.0..=1.0).contains(&r)
    {
        bail!("--sample takes a fraction between 0 and 1, not {r}");
    }
    let query = TraceQuery {
        filter: Some(args.expression.clone()).filter(|e| !e.trim().is_empty()),
        range: window(&args)?,
        limit: args.limit.max(1),
        next_token: args.next_token.clone(),
        sampling_rate: args.sample,
    };
    let page = engine.trace_summaries(&query)?;
    let mut out = std::io::stdout().lock();
    if args.store.json {
        writeln!(out, "{}", serde_json::to_string(&page)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<35}  {:<24}  {:>10}  {:>10}  {:<16}  entry point",
        "trace id", "start", "duration", "response", "status"
    )?;
    for s in &page.trace_summaries {
        let entry = s.entry_point.as_ref().map_or_else(String::new, |e| {
            let url = s.http.http_url.as_deref().unwrap_or("");
            let method = s.http.http_method.as_deref().unwrap_or("");
            format!("{} {method} {url}", e.name).trim_end().to_owned()
        });
        writeln!(
            out,
            "{:<35}  {:<24}  {:>10}  {:>10}  {:<16}  {entry}",
            s.id,
            rfc3339(s.start_time as f64 / 1e9),
            secs(s.duration),
            secs(s.response_time),
            status(s),
        )?;
    }
    writeln!(
        out,
        "({} {} traces processed)",
        match page.matched_count {
            Some(n) => format!(
                "{} of {n} matching traces shown;",
                page.trace_summaries.len()
            ),
            None => format!("{} matching traces shown;", page.trace_summaries.len()),
        },
        page.traces_processed_count
    )?;
    if let Some(t) = &page.next_token {
        // the same window on the next page: --since would move it
        let window = match query.range {
            Some((from, to, _)) => format!(" --from {from} --to {to}"),
            None => String::new(),
        };
        writeln!(out, "more: --next-token {t}{window}")?;
    }
    Ok(())
}

pub(crate) fn run_get(args: GetArgs) -> Result<()> {
    let dir = args.store.dir.clone().unwrap_or_else(default_dir);
    let engine = open_for_reading(&dir)?;
    let answer = engine.get_traces(&args.ids)?;
    let mut out = std::io::stdout().lock();
    if args.store.json {
        writeln!(out, "{}", serde_json::to_string(&answer)?)?;
    } else {
        // pretty: documents as JSON objects rather than strings
        let traces: Vec<serde_json::Value> = answer
            .traces
            .iter()
            .map(|t| {
                let docs: Vec<serde_json::Value> = t
                    .segments
                    .iter()
                    .map(|s| {
                        // very deep documents exceed serde_json's nesting limit: keep the text
                        serde_json::from_str(&s.document)
                            .unwrap_or_else(|_| serde_json::Value::String(s.document.clone()))
                    })
                    .collect();
                serde_json::json!({
                    "Id": t.id,
                    "Duration": t.duration.map(|d| d as f64 / 1e9),
                    "Segments": docs,
                })
            })
            .collect();
        let v = serde_json::json!({
            "Traces": traces,
            "UnprocessedTraceIds": answer.unprocessed_trace_ids,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    }
    if !answer.unprocessed_trace_ids.is_empty() {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "not found (or not trace ids): {}",
                answer.unprocessed_trace_ids.join(", ")
            );
        }
    }
    if answer.traces.is_empty() {
        bail!("no trace found");
    }
    Ok(())
}

fn open_writable(store: &StoreArgs) -> Result<Engine> {
    let dir = store.dir.clone().unwrap_or_else(default_dir);
    Engine::open(&dir, tracelake::EngineOptions::default())
        .with_context(|| format!("cannot open {} for writing", dir.display()))
}

pub(crate) fn run_group(cmd: GroupCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let show = |out: &mut dyn Write, g: &tracelake::Group, json: bool| -> Result<()> {
        if json {
            writeln!(out, "{}", serde_json::to_string(g)?)?;
        } else {
            writeln!(
                out,
                "{}\t{}\t{}",
                g.group_name,
                g.filter_expression.as_deref().unwrap_or(""),
                g.group_arn
            )?;
        }
        Ok(())
    };
    match cmd {
        GroupCommand::Create {
            name,
            expression,
            store,
        } => {
            let engine = open_writable(&store)?;
            let g = engine.create_group(&name, &expression)?;
            show(&mut out, &g, store.json)?;
            engine.close()?;
        }
        GroupCommand::Update {
            name,
            expression,
            store,
        } => {
            let engine = open_writable(&store)?;
            let g = engine.update_group(&name, &expression)?;
            show(&mut out, &g, store.json)?;
            engine.close()?;
        }
        GroupCommand::Delete { name, store } => {
            let engine = open_writable(&store)?;
            engine.delete_group(&name)?;
            engine.close()?;
        }
        GroupCommand::Get { name, store } => {
            let engine = open_for_reading(&store.dir.clone().unwrap_or_else(default_dir))?;
            match engine.group(&name) {
                Some(g) => show(&mut out, &g, store.json)?,
                None => bail!("no group {name:?}"),
            }
        }
        GroupCommand::List { store } => {
            let engine = open_for_reading(&store.dir.clone().unwrap_or_else(default_dir))?;
            for g in engine.groups() {
                show(&mut out, &g, store.json)?;
            }
        }
    }
    Ok(())
}
