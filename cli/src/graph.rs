//! `tracelake graph` (the service graph: table, DOT, Mermaid or JSON) and `tracelake
//! timeseries` (a service's or an edge's statistics per period).

use std::io::Write;

use anyhow::Result;
use clap::{Args, ValueEnum};
use tracelake::{GraphQuery, ServiceGraph, Statistics, TimeSeriesQuery};

use crate::percentiles::ModeArg;
use crate::query::WindowArgs;
use crate::{StoreArgs, default_dir, open_for_reading};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Dot,
    Mermaid,
    Json,
}

/// Which traces and time: shared by `graph` and `timeseries`.
#[derive(Args, Debug)]
pub(crate) struct SelectionArgs {
    #[command(flatten)]
    window: WindowArgs,
    /// Only the traces of this group (name or ARN)
    #[arg(long)]
    group: Option<String>,
    /// Only the traces matching this filter expression (answers by scanning)
    #[arg(long)]
    filter: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    mode: ModeArg,
}

#[derive(Args, Debug)]
pub(crate) struct GraphArgs {
    #[command(flatten)]
    selection: SelectionArgs,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
pub(crate) struct TimeSeriesArgs {
    /// service("name"), service(id(name: "n", type: "t")) or edge("a", "b") [default:
    /// the requests entering the system]
    #[arg(long)]
    entity: Option<String>,
    /// Seconds per point
    #[arg(long, default_value_t = 60)]
    period: u64,
    /// Also forecast each point's fault count from the 10 periods before it (the
    /// expected band; a count above it is an anomaly)
    #[arg(long)]
    forecast: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) fn run_graph(args: GraphArgs) -> Result<()> {
    let dir = args.store.dir.clone().unwrap_or_else(default_dir);
    let engine = open_for_reading(&dir)?;
    let sel = &args.selection;
    let g = engine.service_graph(&GraphQuery {
        range: sel.window.bounds()?,
        group: sel.group.clone(),
        filter: sel.filter.clone(),
        mode: sel.mode.into(),
    })?;
    let mut out = std::io::stdout().lock();
    let format = if args.store.json {
        Format::Json
    } else {
        args.format
    };
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(&g)?)?,
        Format::Dot => write_dot(&mut out, &g)?,
        Format::Mermaid => write_mermaid(&mut out, &g)?,
        Format::Table => write_table(&mut out, &g)?,
    }
    Ok(())
}

fn avg_ms(s: &Statistics) -> f64 {
    if s.total_count == 0 {
        0.0
    } else {
        s.total_response_time / s.total_count as f64 * 1e3
    }
}

fn label(g: &ServiceGraph, id: usize) -> String {
    g.services
        .iter()
        .find(|s| s.reference_id == id)
        .map_or_else(
            || format!("#{id}"),
            |s| {
                if s.kind.is_empty() {
                    s.name.clone()
                } else {
                    format!("{} ({})", s.name, s.kind)
                }
            },
        )
}

/// The graph as a table: one line per service, its edges indented below it.
pub(crate) fn write_table(out: &mut impl Write, g: &ServiceGraph) -> Result<()> {
    writeln!(
        out,
        "{:<44} {:<8} {:>9} {:>8} {:>8} {:>8} {:>10}",
        "service", "state", "requests", "errors", "faults", "throttle", "avg ms"
    )?;
    for s in &g.services {
        let name = format!(
            "{}{}",
            label(g, s.reference_id),
            if s.root { " [root]" } else { "" }
        );
        match &s.summary_statistics {
            Some(st) => writeln!(
                out,
                "{name:<44} {:<8} {:>9} {:>8} {:>8} {:>8} {:>10.2}",
                s.state,
                st.total_count,
                st.error_statistics.total_count,
                st.fault_statistics.total_count,
                st.error_statistics.throttle_count,
                avg_ms(st)
            )?,
            None => writeln!(out, "{name:<44} {:<8}", s.state)?,
        }
        for e in &s.edges {
            let st = &e.summary_statistics;
            writeln!(
                out,
                "  -> {:<40} {:<8} {:>9} {:>8} {:>8} {:>8} {:>10.2}",
                label(g, e.reference_id),
                "",
                st.total_count,
                st.error_statistics.total_count,
                st.fault_statistics.total_count,
                st.error_statistics.throttle_count,
                avg_ms(st)
            )?;
        }
    }
    writeln!(
        out,
        "({} services; {}: {} partitions from rollups, {} scanned)",
        g.services.len(),
        g.mode,
        g.partitions_from_rollups,
        g.partitions_scanned
    )?;
    Ok(())
}

fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn write_dot(out: &mut impl Write, g: &ServiceGraph) -> Result<()> {
    writeln!(out, "digraph services {{\n  rankdir=LR;")?;
    for s in &g.services {
        let shape = match (s.kind.as_str(), s.state) {
            ("client", _) => "circle",
            (_, "unknown") => "box",
            _ => "ellipse",
        };
        writeln!(
            out,
            "  n{} [label=\"{}\", shape={shape}];",
            s.reference_id,
            quoted(&label(g, s.reference_id))
        )?;
    }
    for s in &g.services {
        for e in &s.edges {
            let st = &e.summary_statistics;
            writeln!(
                out,
                "  n{} -> n{} [label=\"{} req, {:.1} ms avg, {} err, {} fault\"];",
                s.reference_id,
                e.reference_id,
                st.total_count,
                avg_ms(st),
                st.error_statistics.total_count,
                st.fault_statistics.total_count
            )?;
        }
    }
    writeln!(out, "}}")?;
    Ok(())
}

fn write_mermaid(out: &mut impl Write, g: &ServiceGraph) -> Result<()> {
    writeln!(out, "graph LR")?;
    for s in &g.services {
        let text = label(g, s.reference_id).replace('"', "'");
        writeln!(out, "  n{}[\"{text}\"]", s.reference_id)?;
    }
    for s in &g.services {
        for e in &s.edges {
            let st = &e.summary_statistics;
            writeln!(
                out,
                "  n{} -->|\"{} req, {:.1} ms\"| n{}",
                s.reference_id,
                st.total_count,
                avg_ms(st),
                e.reference_id
            )?;
        }
    }
    Ok(())
}

pub(crate) fn run_timeseries(args: TimeSeriesArgs) -> Result<()> {
    let dir = args.store.dir.clone().unwrap_or_else(default_dir);
    let engine = open_for_reading(&dir)?;
    let sel = &args.selection;
    let (points, mode) = engine.time_series(&TimeSeriesQuery {
        range: sel.window.bounds()?,
        group: sel.group.clone(),
        filter: sel.filter.clone(),
        entity_selector: args.entity.clone(),
        period_s: args.period,
        mode: sel.mode.into(),
        forecast: args.forecast,
    })?;
    let mut out = std::io::stdout().lock();
    if args.store.json {
        writeln!(out, "{}", serde_json::to_string(&points)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:>9} {:>8} {:>8} {:>8} {:>10}{}",
        "start",
        "requests",
        "errors",
        "faults",
        "throttle",
        "avg ms",
        if args.forecast {
            "  expected faults"
        } else {
            ""
        }
    )?;
    for p in &points {
        let Some(st) = p
            .service_summary_statistics
            .as_ref()
            .or(p.edge_summary_statistics.as_ref())
        else {
            continue;
        };
        let forecast = match &p.service_forecast_statistics {
            Some(f) => {
                let flag = if st.fault_statistics.total_count > f.fault_count_high {
                    " anomaly"
                } else {
                    ""
                };
                format!("  {}-{}{flag}", f.fault_count_low, f.fault_count_high)
            }
            None => String::new(),
        };
        writeln!(
            out,
            "{:<20} {:>9} {:>8} {:>8} {:>8} {:>10.2}{forecast}",
            rfc3339_seconds(p.timestamp),
            st.total_count,
            st.error_statistics.total_count,
            st.fault_statistics.total_count,
            st.error_statistics.throttle_count,
            avg_ms(st)
        )?;
    }
    writeln!(out, "({} points, {mode})", points.len())?;
    Ok(())
}

fn rfc3339_seconds(secs: f64) -> String {
    let d = std::time::Duration::from_secs_f64(secs.max(0.0));
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + d).to_string()
}
