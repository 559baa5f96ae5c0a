//! The `Engine`: a store plus a DataFusion session over it.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use datafusion::datasource::TableProvider;
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use tracelake_query::filter::FilterLimits;
use tracelake_query::rollups::{RollupCache, RollupsTable};
use tracelake_query::{CompiledFilter, GroupResolver, SpansTable};
use tracelake_storage::{
    CompactionOptions, Durability, IngestReport, Limits, PartitionStats, Store, StoreOptions,
    TraceId,
};

use crate::error::Error;
use crate::group::{self, Group, Groups};
use crate::maintenance::{
    self, Clock, CompactionSummary, PlannedMerge, RetentionPolicy, RetentionReport, SystemClock,
    Wake,
};
use crate::percentiles::{Answered, PercentileQuery, Percentiles};
use crate::result::QueryResult;
use crate::service_graph::{GraphQuery, ServiceGraph, TimeSeriesPoint, TimeSeriesQuery};
use crate::traces::{self, SummaryPage, TraceQuery, TracesAnswer};

/// Figures about a store (see [`Engine::stats`]).
pub use tracelake_storage::StoreStats as Stats;

/// How an engine stores and serves data. `Default` is durable and sensible.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// When an ingest is acknowledged (default: after an fsync, with group commit).
    pub durability: Durability,
    /// Per-document guards (64 KiB, nesting depth 64, 50 annotations by default).
    pub limits: Limits,
    /// Flush the memtable to Parquet at this many rows (default 1,000,000)...
    pub flush_rows: usize,
    /// ...or this many bytes of documents (default 128 MiB)...
    pub flush_bytes: usize,
    /// ...or when its oldest document is this old (default 60 s).
    pub flush_age: Duration,
    /// Threads for query execution (default: the number of CPUs).
    pub query_threads: usize,
    /// Guards on filter expressions (64 KiB, nesting depth 64 by default).
    pub filter_limits: FilterLimits,
    /// Read the index sidecars to skip data (default). `false` makes every query scan:
    /// the reference for differential tests, or a way around a suspected index problem.
    pub use_indexes: bool,
    /// How often the background maintenance thread looks for work (default 60 s):
    /// compaction, and retention when [`EngineOptions::retention`] is set. `None`: no
    /// thread; maintenance runs only through [`Engine::compact`] and
    /// [`Engine::apply_retention`].
    pub maintenance_interval: Option<Duration>,
    /// When and how partitions are compacted.
    pub compaction: CompactionOptions,
    /// Expire data in the background with this policy. Default `None`: an embedded
    /// store deletes nothing unless asked. [`RetentionPolicy::default`] is X-Ray's 30
    /// days; [`Engine::apply_retention`] applies it when this is `None`.
    pub retention: Option<RetentionPolicy>,
    /// Where maintenance reads the time (tests inject their own).
    pub clock: Arc<dyn Clock>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let s = StoreOptions::default();
        EngineOptions {
            durability: s.durability,
            limits: s.limits,
            flush_rows: s.flush_rows,
            flush_bytes: s.flush_bytes,
            flush_age: s.flush_age,
            query_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            filter_limits: FilterLimits::default(),
            use_indexes: true,
            maintenance_interval: Some(Duration::from_secs(60)),
            compaction: CompactionOptions::default(),
            retention: None,
            clock: Arc::new(SystemClock),
        }
    }
}

struct Inner {
    store: Arc<Store>,
    ctx: SessionContext,
    table: Arc<SpansTable>,
    /// Decoded rollups, shared by the `rollups` table and fast percentiles.
    rollups: Arc<RollupCache>,
    groups: Groups,
    filter_limits: FilterLimits,
    compaction: CompactionOptions,
    retention: Option<RetentionPolicy>,
    clock: Arc<dyn Clock>,
    /// The maintenance thread and its channel.
    maintenance: Mutex<Option<(crossbeam_channel::Sender<Wake>, std::thread::JoinHandle<()>)>>,
    /// `Option` only so that `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Inner {
    /// Stops the maintenance thread: cancels a merge in progress and waits for it.
    fn stop_maintenance(&self) {
        let taken = self
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((tx, handle)) = taken {
            self.store.cancel_maintenance();
            let _ = tx.send(Wake::Stop);
            // the thread may hold the last handle and be dropping us
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_maintenance();
        // Waiting for the runtime's threads to end blocks, which panics inside a caller's
        // async context: there, let them end on their own.
        if let Some(rt) = self.runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(10));
            }
        }
    }
}

/// An open Tracelake store. `Send + Sync`: share it between threads (clones are cheap
/// handles to the same engine).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Engine>();
};

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .finish()
    }
}

impl Engine {
    /// Opens (or creates) the store in `dir` for reading and writing, replaying its WAL.
    /// A store has one writer: a second writer gets an error of kind
    /// [`crate::ErrorKind::Locked`]; use [`Engine::open_read_only`] beside it.
    pub fn open(dir: impl AsRef<Path>, options: EngineOptions) -> Result<Engine, Error> {
        let store = Store::open(
            dir,
            StoreOptions {
                durability: options.durability,
                limits: options.limits,
                flush_rows: options.flush_rows,
                flush_bytes: options.flush_bytes,
                flush_age: options.flush_age,
            },
        )?;
        Self::with_store(store, &options)
    }

    /// Opens a store for reading only: it sees the last committed manifest (not the
    /// other process's memtable), takes no lock and writes nothing. For batch analysis of
    /// a live store, a copied archive or a read-only mount.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Engine, Error> {
        let store = Store::open_read_only(dir)?;
        Self::with_store(store, &EngineOptions::default())
    }

    fn with_store(store: Store, options: &EngineOptions) -> Result<Engine, Error> {
        let threads = options.query_threads;
        let filter_limits = options.filter_limits;
        let threads = threads.max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("tracelake-query")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let config = SessionConfig::new()
            .with_target_partitions(threads)
            .with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let store = Arc::new(store);
        let source = Arc::clone(&store) as Arc<dyn tracelake_query::SnapshotSource>;
        let table = Arc::new(if options.use_indexes {
            SpansTable::new(source)
        } else {
            SpansTable::without_indexes(source)
        });
        ctx.register_table("spans", Arc::clone(&table) as Arc<dyn TableProvider>)
            .map_err(tracelake_query::Error::from)?;
        let rollups = Arc::new(RollupCache::default());
        let rollups_table = RollupsTable::new(
            Arc::clone(&store) as Arc<dyn tracelake_query::SnapshotSource>,
            Arc::clone(&rollups),
        );
        ctx.register_table("rollups", Arc::new(rollups_table))
            .map_err(tracelake_query::Error::from)?;
        let (aggregates, scalars) = tracelake_query::rollups::sketch_functions();
        for f in aggregates {
            ctx.register_udaf(f);
        }
        for f in scalars {
            ctx.register_udf(f);
        }
        let groups = Groups::open(store.root())?;
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                ctx,
                table,
                rollups,
                groups,
                filter_limits,
                compaction: options.compaction.clone(),
                retention: options.retention.clone(),
                clock: Arc::clone(&options.clock),
                maintenance: Mutex::new(None),
                runtime: Some(runtime),
            }),
        };
        if let Some(policy) = &options.retention {
            engine.check_policy(policy)?;
        }
        if let Some(interval) = options.maintenance_interval
            && !engine.inner.store.is_read_only()
        {
            let (tx, rx) = crossbeam_channel::unbounded();
            let weak: Weak<Inner> = Arc::downgrade(&engine.inner);
            let handle = maintenance::spawn(interval, rx, move || {
                if let Some(inner) = weak.upgrade() {
                    Engine { inner }.run_maintenance();
                }
            })
            .map_err(Error::Runtime)?;
            *engine
                .inner
                .maintenance
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((tx, handle));
        }
        Ok(engine)
    }

    /// One background round: compaction of what is due, then retention if configured.
    fn run_maintenance(&self) {
        let now = maintenance::now_ns(&*self.inner.clock);
        if let Err(e) =
            maintenance::compact(&self.inner.store, &self.inner.compaction, now, &|_, _| {})
            && !matches!(e, Error::Storage(tracelake_storage::Error::Closed))
        {
            tracing::error!(error = %e, "background compaction failed");
        }
        if let Some(policy) = &self.inner.retention
            && let Err(e) = self.apply_retention_with(policy, false)
        {
            tracing::error!(error = %e, "background retention failed");
        }
        self.inner.store.collect_garbage();
    }

    /// Wakes the maintenance thread now (no-op without one).
    pub fn wake_maintenance(&self) {
        if let Some((tx, _)) = &*self
            .inner
            .maintenance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            let _ = tx.send(Wake::Now);
        }
    }

    /// Compacts every partition whose files want it, now (whatever
    /// [`CompactionOptions::settle`] says): the same code the maintenance thread runs.
    pub fn compact(&self) -> Result<CompactionSummary, Error> {
        self.compact_with_progress(&|_, _| {})
    }

    /// What [`Engine::compact`] would merge first, per partition (a dry run).
    pub fn compaction_plan(&self) -> Vec<PlannedMerge> {
        maintenance::plan(&self.inner.store, &self.inner.compaction)
    }

    /// [`Engine::compact`], reporting `(rows merged, rows to merge)` as it goes.
    pub fn compact_with_progress(
        &self,
        progress: &dyn Fn(u64, u64),
    ) -> Result<CompactionSummary, Error> {
        maintenance::compact(
            &self.inner.store,
            &self.inner.compaction,
            i64::MAX,
            progress,
        )
    }

    /// Files, rows and bytes per partition, oldest first, with what compaction would
    /// merge now (the backlog).
    pub fn partition_stats(&self) -> Vec<PartitionStats> {
        let now = maintenance::now_ns(&*self.inner.clock);
        self.inner
            .store
            .partition_stats(&self.inner.compaction, now)
    }

    /// Applies the engine's retention policy ([`EngineOptions::retention`], or X-Ray's
    /// 30 days when none is set).
    pub fn apply_retention(&self) -> Result<RetentionReport, Error> {
        let policy = self.inner.retention.clone().unwrap_or_default();
        self.apply_retention_with(&policy, false)
    }

    /// Applies `policy` at the clock's time; with `dry_run`, only reports what it would
    /// drop and keep.
    pub fn apply_retention_with(
        &self,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<RetentionReport, Error> {
        self.check_policy(policy)?;
        let now = maintenance::now_ns(&*self.inner.clock);
        let compiled: Vec<(String, Arc<CompiledFilter>)> = policy
            .keep
            .iter()
            .map(|r| Ok((r.filter.clone(), Arc::new(self.compile_filter(&r.filter)?))))
            .collect::<Result<_, Error>>()?;
        let matching = |p: tracelake_storage::PartitionKey, filter: &str| {
            let Some((_, f)) = compiled.iter().find(|(t, _)| t == filter) else {
                return Ok(Default::default());
            };
            let f = Arc::clone(f);
            let snapshot = self.inner.store.snapshot()?;
            let ctx = self.inner.ctx.clone();
            self.block_on(async move {
                tracelake_query::traces_matching_in_partition(&ctx, &snapshot, p, &f).await
            })
        };
        maintenance::retention(&self.inner.store, policy, now, dry_run, &matching)
    }

    /// Checks a policy's keep rules compile.
    fn check_policy(&self, policy: &RetentionPolicy) -> Result<(), Error> {
        for r in &policy.keep {
            self.compile_filter(&r.filter)
                .map_err(|e| Error::InvalidArgument(format!("keep rule {:?}: {e}", r.filter)))?;
        }
        Ok(())
    }

    /// Pins traces (`1-…` ids): retention keeps them, whatever their age, until they
    /// are unpinned. Returns how many were not pinned before.
    pub fn pin<S: AsRef<str>>(&self, ids: &[S]) -> Result<usize, Error> {
        Ok(self.inner.store.set_pins(&parse_ids(ids)?, true)?)
    }

    /// Unpins traces; returns how many were pinned.
    pub fn unpin<S: AsRef<str>>(&self, ids: &[S]) -> Result<usize, Error> {
        Ok(self.inner.store.set_pins(&parse_ids(ids)?, false)?)
    }

    /// The pinned traces.
    pub fn pins(&self) -> Vec<String> {
        self.inner
            .store
            .pins()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Ingests segment documents in any framing. Each bad document is reported in the
    /// returned [`IngestReport`] and costs nothing else; the call fails only when the
    /// store cannot write (I/O) or is read-only.
    pub fn ingest(&self, input: &[u8]) -> Result<IngestReport, Error> {
        Ok(self.inner.store.ingest(input)?)
    }

    /// Runs a SQL query over the `spans` table (committed files plus memtable) and the
    /// `rollups` table (per-minute service and edge statistics of committed files, with
    /// `sketch_merge`, `sketch_quantile` and `sketch_count` to read their sketches).
    ///
    /// Blocking. It may be called from any thread, also from inside the caller's own
    /// async runtime: the query runs on the engine's runtime and this thread waits.
    pub fn sql(&self, query: &str) -> Result<QueryResult, Error> {
        let ctx = self.inner.ctx.clone();
        let query = query.to_owned();
        self.block_on(async move {
            let df = ctx.sql(&query).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok(QueryResult { schema, batches })
        })
    }

    /// Runs `work` on the engine's runtime and waits for it (safe from any thread, also
    /// inside the caller's own async runtime).
    fn block_on<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, tracelake_query::Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let rt = self.inner.runtime.as_ref().ok_or(Error::Closed)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(work.await);
        });
        match rx.recv() {
            Ok(r) => r.map_err(Error::Query),
            // the task panicked or the runtime shut down
            Err(_) => Err(Error::QueryAborted),
        }
    }

    /// Parses and lowers a filter expression, expanding `group.name` / `group.arn`.
    pub fn compile_filter(&self, expression: &str) -> Result<CompiledFilter, Error> {
        Ok(tracelake_query::compile(
            expression,
            &self.inner.filter_limits,
            &self.inner.groups,
        )?)
    }

    fn search(
        &self,
        filter: Option<&str>,
        range: Option<tracelake_query::TimeRange>,
        page: Option<tracelake_query::search::PageRequest>,
    ) -> Result<tracelake_query::search::Found, Error> {
        let compiled = Arc::new(match filter.map(str::trim).filter(|f| !f.is_empty()) {
            Some(f) => self.compile_filter(f)?,
            None => CompiledFilter::all(),
        });
        let ctx = self.inner.ctx.clone();
        let table = Arc::clone(&self.inner.table);
        self.block_on(async move {
            tracelake_query::search::find(&ctx, &table, &compiled, range, page).await
        })
    }

    /// The ids of every trace matching an X-Ray filter expression, over all time, in
    /// ascending order.
    pub fn find_trace_ids(&self, filter: &str) -> Result<Vec<String>, Error> {
        let mut hits: Vec<TraceId> = self
            .search(Some(filter), None, None)?
            .hits
            .into_iter()
            .filter(|h| h.matched)
            .map(|h| h.trace_id)
            .collect();
        hits.sort();
        Ok(hits.iter().map(ToString::to_string).collect())
    }

    /// Latency percentiles (and histograms) of response times or trace durations,
    /// grouped by service, edge, `http.url`, an annotation or time bucket, for any
    /// filter expression and range. The answer says how it was computed
    /// ([`Percentiles::mode`]) and its error bound ([`Percentiles::relative_error`]):
    /// fast answers merge the rollups' sketches (1%), exact ones scan spans.
    pub fn percentiles(&self, query: &PercentileQuery) -> Result<Percentiles, Error> {
        let range = traces::time_range(&TraceQuery {
            range: query.trace_query_range(),
            ..TraceQuery::default()
        })?;
        let filter = match query
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            Some(f) => Some(Arc::new(self.compile_filter(f)?)),
            None => None,
        };
        let request = tracelake_query::percentile::PercentileRequest {
            range,
            filter,
            metric: query.metric,
            by: query.by.clone(),
            quantiles: query.quantiles.clone(),
            mode: query.mode,
            histogram: query.histogram,
        };
        let snapshot = self.inner.store.snapshot()?;
        let ctx = self.inner.ctx.clone();
        let table = Arc::clone(&self.inner.table);
        let cache = Arc::clone(&self.inner.rollups);
        self.block_on(async move {
            tracelake_query::percentile::percentiles(&ctx, &table, &cache, &snapshot, &request)
                .await
        })
    }

    /// The filter of a group and/or an expression, compiled (`None`: every trace).
    fn selection(
        &self,
        group: Option<&str>,
        filter: Option<&str>,
    ) -> Result<Option<Arc<CompiledFilter>>, Error> {
        let mut parts = Vec::new();
        if let Some(g) = group {
            let found = self
                .group(g)
                .ok_or_else(|| Error::InvalidArgument(format!("no group named {g:?}")))?;
            if let Some(e) = found.filter_expression.filter(|e| !e.trim().is_empty()) {
                parts.push(format!("({e})"));
            }
        }
        if let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) {
            parts.push(format!("({f})"));
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(self.compile_filter(&parts.join(" AND "))?)))
    }

    fn event_range(range: Option<(f64, f64)>) -> Result<Option<tracelake_query::TimeRange>, Error> {
        traces::time_range(&TraceQuery {
            range: range.map(|(a, b)| (a, b, tracelake_query::RangeType::Event)),
            ..TraceQuery::default()
        })
    }

    /// GetServiceGraph: services (instrumented, inferred and client nodes) with their
    /// statistics, response-time histograms and edges, over a range, optionally for a
    /// group's or a filter's traces only.
    pub fn service_graph(&self, query: &GraphQuery) -> Result<ServiceGraph, Error> {
        let request = tracelake_query::service_graph::GraphRequest {
            range: Self::event_range(query.range)?,
            filter: self.selection(query.group.as_deref(), query.filter.as_deref())?,
            mode: query.mode,
        };
        let snapshot = self.inner.store.snapshot()?;
        let (ctx, table, cache) = self.query_parts();
        self.block_on(async move {
            tracelake_query::service_graph::service_graph(&ctx, &table, &cache, &snapshot, &request)
                .await
        })
    }

    /// GetTraceGraph: the service graph of the given traces (malformed ids are an error).
    pub fn trace_graph<S: AsRef<str>>(&self, ids: &[S]) -> Result<ServiceGraph, Error> {
        let ids = ids
            .iter()
            .map(|s| {
                TraceId::parse(s.as_ref()).ok_or_else(|| {
                    Error::InvalidArgument(format!("{:?} is not a trace id", s.as_ref()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (ctx, table, _) = self.query_parts();
        self.block_on(async move {
            tracelake_query::service_graph::trace_graph(&ctx, &table, &ids).await
        })
    }

    /// GetTimeSeriesServiceStatistics: a service's or an edge's statistics per period.
    pub fn time_series(
        &self,
        query: &TimeSeriesQuery,
    ) -> Result<(Vec<TimeSeriesPoint>, Answered), Error> {
        let entity = match query.entity_selector.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => tracelake_query::service_graph::Entity::parse(s)?,
            _ => tracelake_query::service_graph::Entity::Entry,
        };
        let request = tracelake_query::service_graph::TimeSeriesRequest {
            range: Self::event_range(query.range)?,
            filter: self.selection(query.group.as_deref(), query.filter.as_deref())?,
            entity,
            period_s: query.period_s,
            mode: query.mode,
            forecast: query.forecast,
        };
        let snapshot = self.inner.store.snapshot()?;
        let (ctx, table, cache) = self.query_parts();
        self.block_on(async move {
            tracelake_query::service_graph::time_series(&ctx, &table, &cache, &snapshot, &request)
                .await
        })
    }

    fn query_parts(&self) -> (SessionContext, Arc<SpansTable>, Arc<RollupCache>) {
        (
            self.inner.ctx.clone(),
            Arc::clone(&self.inner.table),
            Arc::clone(&self.inner.rollups),
        )
    }

    /// GetTraceSummaries: the traces in the range that match the filter, newest first,
    /// one page at a time.
    pub fn trace_summaries(&self, query: &TraceQuery) -> Result<SummaryPage, Error> {
        let range = traces::time_range(query)?;
        traces::check_rate(query.sampling_rate)?;
        let after = query
            .next_token
            .as_deref()
            .map(traces::decode_token)
            .transpose()?;
        let page = tracelake_query::search::PageRequest {
            after,
            want: query.limit.max(1),
            sampling_rate: query.sampling_rate,
        };
        let found = self.search(query.filter.as_deref(), range, Some(page))?;
        let mut processed = 0u64;
        let mut matched: Vec<&tracelake_query::Hit> = Vec::new();
        for h in &found.hits {
            if h.in_range && tracelake_query::search::sampled(&h.trace_id, query.sampling_rate) {
                processed += 1;
                if h.matched {
                    matched.push(h);
                }
            }
        }
        if let Some(n) = found.processed {
            // the index limited the search: the traces in range over the store
            processed = n;
        }
        let matched_count = (found.complete && after.is_none()).then_some(matched.len() as u64);
        matched.sort_by_key(|h| std::cmp::Reverse(traces::order_key(h)));
        let limit = query.limit.max(1);
        let page: Vec<&tracelake_query::Hit> = matched
            .into_iter()
            .filter(|h| after.is_none_or(|a| traces::order_key(h) < a))
            .take(limit + 1)
            .collect();
        let next_token =
            (page.len() > limit).then(|| traces::encode_token(traces::order_key(page[limit - 1])));
        let page = &page[..page.len().min(limit)];
        let ids: Vec<TraceId> = page.iter().map(|h| h.trace_id).collect();
        let ctx = self.inner.ctx.clone();
        let table = Arc::clone(&self.inner.table);
        let fetch = ids.clone();
        let mut summaries = self.block_on(async move {
            tracelake_query::summary::summaries(&ctx, table, &fetch).await
        })?;
        if let Some(r) = range.filter(|r| r.kind == tracelake_query::RangeType::Event) {
            for s in &mut summaries {
                s.matched_event_time = Some(s.start_time.max(r.start_ns));
            }
        }
        Ok(SummaryPage {
            approximate_time: page
                .first()
                .map(|h| tracelake_storage::segment::time::ns_to_seconds(h.first_start)),
            trace_summaries: summaries,
            traces_processed_count: processed,
            matched_count,
            next_token,
        })
    }

    /// BatchGetTraces: whole traces by id, with no time range needed. Malformed and
    /// unknown ids come back in `unprocessed_trace_ids`.
    pub fn get_traces<S: AsRef<str>>(&self, ids: &[S]) -> Result<TracesAnswer, Error> {
        let mut parsed = Vec::new();
        let mut unprocessed = Vec::new();
        for id in ids {
            match TraceId::parse(id.as_ref().trim()) {
                Some(t) if !parsed.contains(&t) => parsed.push(t),
                Some(_) => {}
                None => unprocessed.push(id.as_ref().to_owned()),
            }
        }
        let ctx = self.inner.ctx.clone();
        let table = Arc::clone(&self.inner.table);
        let want = parsed.clone();
        let traces =
            self.block_on(
                async move { tracelake_query::summary::documents(&ctx, table, &want).await },
            )?;
        for t in &parsed {
            let text = t.to_string();
            if !traces.iter().any(|x| x.id == text) {
                unprocessed.push(text);
            }
        }
        Ok(TracesAnswer {
            traces,
            unprocessed_trace_ids: unprocessed,
        })
    }

    /// CreateGroup: stores a named filter expression (checked now: it must parse and
    /// lower, and may refer to other groups but not in a cycle).
    pub fn create_group(&self, name: &str, filter_expression: &str) -> Result<Group, Error> {
        self.writable()?;
        group::check_name(name)?;
        let g = Group {
            group_name: name.to_owned(),
            group_arn: group::new_arn(name),
            filter_expression: Some(filter_expression.to_owned()),
            insights_configuration: Default::default(),
        };
        let created = g.clone();
        self.inner.groups.change(
            move |list| {
                if list.iter().any(|x| x.group_name == g.group_name) {
                    return Err(Error::InvalidArgument(format!(
                        "a group named {:?} exists",
                        g.group_name
                    )));
                }
                list.push(g);
                Ok(())
            },
            |list| self.check_groups(list),
        )?;
        Ok(created)
    }

    /// GetGroup by name or ARN.
    pub fn group(&self, name_or_arn: &str) -> Option<Group> {
        self.inner.groups.get(name_or_arn)
    }

    /// GetGroups.
    pub fn groups(&self) -> Vec<Group> {
        self.inner.groups.all()
    }

    /// UpdateGroup: a new expression for the group named (or with the ARN) given.
    pub fn update_group(&self, name_or_arn: &str, filter_expression: &str) -> Result<Group, Error> {
        self.writable()?;
        let key = name_or_arn.to_owned();
        let expr = filter_expression.to_owned();
        self.inner.groups.change(
            move |list| {
                let g = list
                    .iter_mut()
                    .find(|g| g.group_name == key || g.group_arn == key)
                    .ok_or_else(|| Error::InvalidArgument(format!("no group {key:?}")))?;
                g.filter_expression = Some(expr);
                Ok(g.clone())
            },
            |list| self.check_groups(list),
        )
    }

    /// DeleteGroup by name or ARN. Groups that refer to it stop compiling, so it is
    /// refused while another group's expression names it.
    pub fn delete_group(&self, name_or_arn: &str) -> Result<(), Error> {
        self.writable()?;
        let key = name_or_arn.to_owned();
        self.inner.groups.change(
            move |list| {
                let before = list.len();
                list.retain(|g| g.group_name != key && g.group_arn != key);
                if list.len() == before {
                    return Err(Error::InvalidArgument(format!("no group {key:?}")));
                }
                Ok(())
            },
            |list| self.check_groups(list),
        )
    }

    fn writable(&self) -> Result<(), Error> {
        if self.is_read_only() {
            return Err(Error::Storage(tracelake_storage::Error::ReadOnly {
                operation: "changing groups",
            }));
        }
        Ok(())
    }

    /// Every group's expression compiles against `list`.
    fn check_groups(&self, list: &[Group]) -> Result<(), Error> {
        struct In<'a>(&'a [Group]);
        impl GroupResolver for In<'_> {
            fn expression(&self, key: &str, arn: bool) -> Option<String> {
                self.0
                    .iter()
                    .find(|g| {
                        if arn {
                            g.group_arn == key
                        } else {
                            g.group_name == key
                        }
                    })
                    .map(|g| g.filter_expression.clone().unwrap_or_default())
            }
        }
        for g in list {
            let text = g.filter_expression.as_deref().unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            tracelake_query::compile(text, &self.inner.filter_limits, &In(list))
                .map_err(|e| Error::InvalidArgument(format!("group {:?}: {e}", g.group_name)))?;
        }
        Ok(())
    }

    /// Every stored document, rebuilt as JSON value-equal to what was sent.
    pub fn export_documents(&self) -> Result<Vec<serde_json::Value>, Error> {
        let snap = self.inner.store.snapshot()?;
        let rows = snap.read_all()?;
        Ok(tracelake_storage::rebuild::rebuild(&rows)?
            .into_iter()
            .map(|d| d.json)
            .collect())
    }

    pub fn stats(&self) -> Stats {
        self.inner.store.stats()
    }

    /// Writes the memtable into Parquet files now.
    pub fn flush(&self) -> Result<(), Error> {
        Ok(self.inner.store.flush()?)
    }

    /// Stops background work (a merge in progress is abandoned, its inputs stay) and
    /// flushes. Later ingests fail; dropping the last handle closes too.
    pub fn close(&self) -> Result<(), Error> {
        self.inner.stop_maintenance();
        Ok(self.inner.store.close()?)
    }

    /// Row groups of data files that queries planned to read and to skip since the engine
    /// opened: `(read, skipped)`. Shows what the indexes save.
    pub fn scan_counters(&self) -> (u64, u64) {
        self.inner.table.scan_counters()
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.store.is_read_only()
    }

    pub fn dir(&self) -> &Path {
        self.inner.store.root()
    }
}

fn parse_ids<S: AsRef<str>>(ids: &[S]) -> Result<Vec<TraceId>, Error> {
    ids.iter()
        .map(|s| {
            TraceId::parse(s.as_ref().trim()).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{:?} is not an X-Ray trace id (1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx)",
                    s.as_ref()
                ))
            })
        })
        .collect()
}
