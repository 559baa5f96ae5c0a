//! The `Engine`: a store plus a DataFusion session over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use tracelake_query::SpansTable;
use tracelake_storage::{Durability, IngestReport, Limits, Store, StoreOptions};

use crate::error::Error;
use crate::result::QueryResult;

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
        }
    }
}

struct Inner {
    store: Arc<Store>,
    ctx: SessionContext,
    /// `Option` only so that `Drop` can shut it down without blocking.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks; that panics inside a caller's async context.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
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
        Self::with_store(store, options.query_threads)
    }

    /// Opens a store for reading only: it sees the last committed manifest (not the
    /// other process's memtable), takes no lock and writes nothing. For batch analysis of
    /// a live store, a copied archive or a read-only mount.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Engine, Error> {
        let store = Store::open_read_only(dir)?;
        Self::with_store(store, EngineOptions::default().query_threads)
    }

    fn with_store(store: Store, threads: usize) -> Result<Engine, Error> {
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
        let table = SpansTable::new(Arc::clone(&store) as Arc<dyn tracelake_query::SnapshotSource>);
        ctx.register_table("spans", Arc::new(table))
            .map_err(tracelake_query::Error::from)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                store,
                ctx,
                runtime: Some(runtime),
            }),
        })
    }

    /// Ingests segment documents in any framing. Each bad document is reported in the
    /// returned [`IngestReport`] and costs nothing else; the call fails only when the
    /// store cannot write (I/O) or is read-only.
    pub fn ingest(&self, input: &[u8]) -> Result<IngestReport, Error> {
        Ok(self.inner.store.ingest(input)?)
    }

    /// Runs a SQL query over the `spans` table (committed files plus memtable).
    ///
    /// Blocking. It may be called from any thread, also from inside the caller's own
    /// async runtime: the query runs on the engine's runtime and this thread waits.
    pub fn sql(&self, query: &str) -> Result<QueryResult, Error> {
        let ctx = self.inner.ctx.clone();
        let query = query.to_owned();
        let run = async move {
            let df = ctx.sql(&query).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok::<_, datafusion::error::DataFusionError>(QueryResult { schema, batches })
        };
        let rt = self.inner.runtime.as_ref().ok_or(Error::Closed)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(run.await);
        });
        match rx.recv() {
            Ok(r) => r.map_err(|e| Error::Query(e.into())),
            // the task panicked or the runtime shut down
            Err(_) => Err(Error::QueryAborted),
        }
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

    /// Flushes and stops background work. Later ingests fail; dropping the last handle
    /// closes too.
    pub fn close(&self) -> Result<(), Error> {
        Ok(self.inner.store.close()?)
    }

    pub fn is_read_only(&self) -> bool {
        self.inner.store.is_read_only()
    }

    pub fn dir(&self) -> &Path {
        self.inner.store.root()
    }
}
