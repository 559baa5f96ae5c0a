//! Maintenance: compaction and retention, run by one background thread and on demand
//! ([`crate::Engine::compact`], [`crate::Engine::apply_retention`]) through the same code.
//!
//! - **Compaction** merges the small files of each partition whose hour is over (or that
//!   has too many small files) into large files sorted by trace id
//!   ([`tracelake_storage::compaction`]).
//! - **Retention** expires partitions older than [`RetentionPolicy::max_age`], and the
//!   oldest ones beyond [`RetentionPolicy::max_bytes`]. An expired partition is dropped
//!   in one manifest commit (O(files)) unless a [`KeepRule`] still covers it or it holds
//!   a pinned trace: then it is rewritten with only the traces the rules match and the
//!   pinned ones.
//!
//! The thread wakes every [`crate::EngineOptions::maintenance_interval`] or when told (a
//! crossbeam channel), reads the time from the injectable [`Clock`], and stops on close.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use arrow::array::AsArray as _;
use tracelake_storage::{CompactionOptions, PartitionKey, Store, TraceId};

use crate::error::Error;

/// Where maintenance reads the time (tests inject their own).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Keep the traces matching a filter expression for longer than the partitions they
/// are in: `keep "fault OR error OR responsetime > 3" for 400 days`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeepRule {
    /// An X-Ray filter expression.
    pub filter: String,
    /// How long matching traces are kept (from the end of their hour).
    pub keep_for: Duration,
}

impl KeepRule {
    /// Parses `EXPR=DURATION` (`fault OR error=400d`), the command line's form; the
    /// duration is a number with `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<KeepRule, Error> {
        let (filter, dur) = text.rsplit_once('=').ok_or_else(|| {
            Error::InvalidArgument(format!(
                "keep rule {text:?}: expected EXPRESSION=DURATION, e.g. \"fault OR error=400d\""
            ))
        })?;
        Ok(KeepRule {
            filter: filter.trim().to_owned(),
            keep_for: parse_duration(dur)?,
        })
    }
}

/// Parses `90s`, `15m`, `12h`, `400d`.
pub fn parse_duration(text: &str) -> Result<Duration, Error> {
    let t = text.trim();
    let bad = || {
        Error::InvalidArgument(format!(
            "duration {t:?}: expected numbers with s, m, h or d (e.g. 30d, 1h30m)"
        ))
    };
    let (mut secs, mut rest) = (0.0f64, t);
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let at = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..at].parse().map_err(|_| bad())?;
        let unit = rest[at..].chars().next().ok_or_else(bad)?;
        secs += match unit {
            's' => n,
            'm' => n * 60.0,
            'h' => n * 3600.0,
            'd' => n * 86_400.0,
            _ => return Err(bad()),
        };
        rest = &rest[at + unit.len_utf8()..];
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// What retention removes and keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionPolicy {
    /// Partitions whose hour ended longer ago than this expire (default 30 days, like
    /// X-Ray). `None`: no age limit.
    pub max_age: Option<Duration>,
    /// The oldest partitions expire while the store holds more bytes than this.
    pub max_bytes: Option<u64>,
    /// Traces kept beyond expiry.
    pub keep: Vec<KeepRule>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            max_age: Some(Duration::from_secs(30 * 86_400)),
            max_bytes: None,
            keep: Vec::new(),
        }
    }
}

/// Why a partition expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    MaxAge,
    MaxBytes,
}

/// What retention did (or, in a dry run, would do) to one expired partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRetention {
    pub partition: PartitionKey,
    pub expiry: Expiry,
    pub files: usize,
    pub bytes: u64,
    pub rows: u64,
    /// Traces in the partition; `None` when not counted (dropped whole: no keep rule
    /// covers it and it holds no pinned trace).
    pub traces: Option<usize>,
    /// Traces kept (by keep rules or pins); 0: the partition is dropped.
    pub kept_traces: usize,
    /// Rows removed (all of them when dropped).
    pub removed_rows: u64,
    /// Bytes on disk after (0 when dropped; in a dry run, not known: the input bytes).
    pub bytes_after: u64,
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub partitions: Vec<PartitionRetention>,
    pub elapsed: Duration,
}

impl RetentionReport {
    /// Partitions removed whole.
    pub fn dropped(&self) -> usize {
        self.partitions
            .iter()
            .filter(|p| p.kept_traces == 0)
            .count()
    }

    /// Bytes freed (in a dry run: of the partitions dropped whole).
    pub fn freed_bytes(&self) -> u64 {
        self.partitions
            .iter()
            .map(|p| p.bytes.saturating_sub(p.bytes_after))
            .sum()
    }
}

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionSummary {
    /// Merges run (a partition with more files than one merge takes needs several;
    /// inputs and outputs count every merge's).
    pub merges: usize,
    pub input_files: usize,
    pub input_rows: u64,
    pub input_bytes: u64,
    pub output_files: usize,
    pub output_rows: u64,
    pub output_bytes: u64,
    /// Older versions of upserted rows left out.
    pub replaced_rows: u64,
    pub elapsed: Duration,
}

/// A merge [`crate::Engine::compact`] would run first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMerge {
    pub partition: PartitionKey,
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// The first merge of every partition that wants compacting.
pub(crate) fn plan(store: &Store, options: &CompactionOptions) -> Vec<PlannedMerge> {
    store
        .compaction_due(options, i64::MAX)
        .into_iter()
        .map(|p| {
            let inputs = store.compaction_inputs(p, options);
            PlannedMerge {
                partition: p,
                files: inputs.len(),
                rows: inputs.iter().map(|f| f.rows).sum(),
                bytes: inputs.iter().map(|f| f.bytes).sum(),
            }
        })
        .filter(|m| m.files > 0)
        .collect()
}

pub(crate) fn now_ns(clock: &dyn Clock) -> i64 {
    match clock.now().duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

const HOUR_NS: i64 = 3_600_000_000_000;

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Compacts every partition due at `now_ns` (`i64::MAX`: every partition that wants
/// it), oldest first. `progress` gets `(input rows merged, input rows to merge)`.
pub(crate) fn compact(
    store: &Store,
    options: &CompactionOptions,
    now_ns: i64,
    progress: &dyn Fn(u64, u64),
) -> Result<CompactionSummary, Error> {
    let started = Instant::now();
    let mut sum = CompactionSummary::default();
    let (done, total) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    // rounds until nothing is due: a partition with more files than one merge takes
    // needs several; each round leaves fewer files, so this ends
    let mut files = usize::MAX;
    loop {
        let due = store.compaction_due(options, now_ns);
        let stats = store.partition_stats(options, now_ns);
        let now_files: usize = stats.iter().map(|p| p.files).sum();
        if due.is_empty() || now_files >= files {
            break;
        }
        files = now_files;
        let planned: u64 = due
            .iter()
            .flat_map(|p| store.compaction_inputs(*p, options))
            .map(|f| f.rows)
            .sum();
        total.set(total.get() + planned);
        for p in due {
            let base = done.get();
            let r = store.compact_partition(p, options, &|rows| {
                progress(base + rows, total.get());
            })?;
            let Some(r) = r else { continue };
            done.set(base + r.merge.input_rows);
            sum.merges += 1;
            sum.input_files += r.merge.input_files;
            sum.input_rows += r.merge.input_rows;
            sum.input_bytes += r.merge.input_bytes;
            sum.output_files += r.output_files;
            sum.output_rows += r.merge.output_rows;
            sum.output_bytes += r.output_bytes;
            sum.replaced_rows += r.merge.replaced_rows;
        }
    }
    sum.elapsed = started.elapsed();
    Ok(sum)
}

/// The traces of a partition a keep rule's filter matches.
pub(crate) type Matching<'a> = dyn Fn(PartitionKey, &str) -> Result<HashSet<TraceId>, Error> + 'a;

/// Which traces to keep in an expired partition: `matching(filter)` gives the traces
/// of the partition a keep rule's filter matches.
pub(crate) fn retention(
    store: &Store,
    policy: &RetentionPolicy,
    now_ns: i64,
    dry_run: bool,
    matching: &Matching<'_>,
) -> Result<RetentionReport, Error> {
    let started = Instant::now();
    let _pins_wait = store.retention_guard();
    let stats = store.partition_stats(&CompactionOptions::default(), now_ns);
    let mut expired: Vec<(&tracelake_storage::PartitionStats, Expiry)> = Vec::new();
    let age_cut = policy.max_age.map(|a| now_ns.saturating_sub(nanos(a)));
    let mut left: u64 = 0;
    for p in &stats {
        if age_cut.is_some_and(|cut| p.partition.start_ns().saturating_add(HOUR_NS) <= cut) {
            expired.push((p, Expiry::MaxAge));
        } else {
            left += p.bytes;
        }
    }
    if let Some(max) = policy.max_bytes {
        for p in &stats {
            if left <= max {
                break;
            }
            if expired.iter().any(|(e, _)| e.partition == p.partition) {
                continue;
            }
            expired.push((p, Expiry::MaxBytes));
            left -= p.bytes;
        }
    }
    let pins = store.pins();
    let snapshot = store.snapshot()?;
    let mut report = RetentionReport {
        dry_run,
        ..Default::default()
    };
    let mut to_drop = Vec::new();
    for (p, expiry) in expired {
        let end = p.partition.start_ns().saturating_add(HOUR_NS);
        let rules: Vec<&KeepRule> = policy
            .keep
            .iter()
            .filter(|r| end.saturating_add(nanos(r.keep_for)) > now_ns)
            .collect();
        let pinned = pins_in_partition(&snapshot, p.partition, &pins);
        if rules.is_empty() && pinned.is_empty() {
            // nothing can be kept: dropped without reading anything (O(files))
            report.partitions.push(PartitionRetention {
                partition: p.partition,
                expiry,
                files: p.files,
                bytes: p.bytes,
                rows: p.rows,
                traces: None,
                kept_traces: 0,
                removed_rows: p.rows,
                bytes_after: 0,
            });
            to_drop.push(p.partition);
            continue;
        }
        let traces = partition_traces(&snapshot, p.partition);
        let mut keep: HashSet<TraceId> = pinned.into_iter().collect();
        for rule in rules {
            keep.extend(matching(p.partition, &rule.filter)?);
        }
        keep.retain(|t| traces.contains(t));
        let mut entry = PartitionRetention {
            partition: p.partition,
            expiry,
            files: p.files,
            bytes: p.bytes,
            rows: p.rows,
            traces: Some(traces.len()),
            kept_traces: keep.len(),
            removed_rows: p.rows,
            bytes_after: 0,
        };
        if keep.is_empty() {
            to_drop.push(p.partition);
        } else if keep.len() == traces.len() {
            // everything is kept (a partition rewritten by an earlier pass)
            entry.removed_rows = 0;
            entry.bytes_after = p.bytes;
        } else if dry_run {
            entry.bytes_after = p.bytes;
            entry.removed_rows = 0;
        } else {
            let r = store.retain_traces(p.partition, &|t| keep.contains(t), &|_| {})?;
            entry.removed_rows = r.merge.dropped_rows + r.merge.replaced_rows;
            entry.bytes_after = r.output_bytes;
        }
        report.partitions.push(entry);
    }
    drop(snapshot);
    if !dry_run && !to_drop.is_empty() {
        store.drop_partitions(&to_drop)?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The pinned traces a partition holds (all of them when a sidecar cannot tell).
fn pins_in_partition(
    s: &tracelake_storage::Snapshot,
    p: PartitionKey,
    pins: &[TraceId],
) -> Vec<TraceId> {
    if pins.is_empty() {
        return Vec::new();
    }
    let mut out = HashSet::new();
    for f in s.files.iter().filter(|f| f.partition == p) {
        match tracelake_storage::index::Index::open(&s.root.join(&f.path), f.rows) {
            Ok(i) => out.extend(pins.iter().filter(|t| i.trace_rows(t).is_some())),
            Err(_) => return pins.to_vec(),
        }
    }
    out.into_iter().collect()
}

/// The traces of a partition's files, from their sidecars (or their trace ids).
fn partition_traces(s: &tracelake_storage::Snapshot, p: PartitionKey) -> HashSet<TraceId> {
    let mut out = HashSet::new();
    for f in s.files.iter().filter(|f| f.partition == p) {
        match tracelake_storage::index::Index::open(&s.root.join(&f.path), f.rows) {
            Ok(i) => out.extend(i.traces()),
            Err(_) => {
                if let Ok(batches) = tracelake_storage::datafile::read_columns(
                    &s.root,
                    f,
                    Some(&[tracelake_storage::schema::col::TRACE_ID]),
                ) {
                    for b in batches {
                        if let Some(t) = b.column(0).as_fixed_size_binary_opt() {
                            out.extend(t.iter().flatten().filter_map(TraceId::from_slice));
                        }
                    }
                }
            }
        }
    }
    out
}

/// The background thread's messages.
#[derive(Debug)]
pub(crate) enum Wake {
    /// Look for work now.
    Now,
    Stop,
}

/// Runs `work` every `interval` or when woken, until told to stop.
pub(crate) fn spawn(
    interval: Duration,
    rx: crossbeam_channel::Receiver<Wake>,
    work: impl Fn() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tracelake-maintenance".into())
        .spawn(move || {
            loop {
                match rx.recv_timeout(interval) {
                    Ok(Wake::Stop) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        return;
                    }
                    Ok(Wake::Now) | Err(crossbeam_channel::RecvTimeoutError::Timeout) => work(),
                }
            }
        })
}
