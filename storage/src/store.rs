//! The store: one directory holding the WAL, the manifest and the partitioned data files.
//!
//! Write path of [`Store::ingest`]: split and parse the input (outside any lock); under
//! the write lock, give each accepted document a sequence number, append it to the WAL
//! and insert its rows into the memtable; then wait until the WAL is durable (group
//! commit: one fsync covers every batch waiting for it) and acknowledge. A flush freezes
//! the memtable, rotates the WAL, writes one Parquet file per partition, commits the
//! manifest and only then removes the old WAL files. No fsync runs under the write lock:
//! the rotation leaves the retired WAL file and the new directory entry to the next group
//! commit, and the manifest is committed outside the view lock.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parquet::bloom_filter::Sbbf;

use crate::compaction::{self, CompactionOptions, MergeStats};
use crate::datafile;
use crate::error::{Error, Result};
use crate::flatten::RowKey;
use crate::manifest::{self, FileMeta, Manifest};
use crate::memtable::{Frozen, Memtable};
use crate::partition::PartitionKey;
use crate::segment::{self, Limits, RejectCode, TraceId, framing};
use crate::snapshot::Snapshot;
use crate::wal::{self, Wal};

/// When an acknowledged document is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every `ingest` returns after an fsync covering its documents (group commit).
    #[default]
    Sync,
    /// The WAL is fsynced every interval; a crash loses at most that much.
    Interval(Duration),
    /// The OS decides; a crash of the machine may lose recent documents.
    None,
}

/// Options of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub durability: Durability,
    pub limits: Limits,
    /// Flush when the memtable holds this many rows...
    pub flush_rows: usize,
    /// ...or this many bytes of documents...
    pub flush_bytes: usize,
    /// ...or its oldest document is this old.
    pub flush_age: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Sync,
            limits: Limits::default(),
            flush_rows: 1_000_000,
            flush_bytes: 128 << 20,
            flush_age: Duration::from_secs(60),
        }
    }
}

/// One rejected document of an ingest call.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Position of the document in the input (0-based, headers not counted).
    pub index: usize,
    /// Byte offset of the document (or of the string or body holding it).
    pub offset: usize,
    pub id: Option<String>,
    pub trace_id: Option<String>,
    pub code: RejectCode,
    pub message: String,
}

/// What one ingest call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    pub accepted: usize,
    /// Rows (segments plus subsegments) the accepted documents hold.
    pub rows: usize,
    pub rejected: Vec<Rejection>,
}

/// Figures about a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub files: usize,
    pub file_rows: u64,
    pub file_bytes: u64,
    pub partitions: usize,
    pub memtable_rows: usize,
    pub memtable_bytes: usize,
    pub wal_bytes: u64,
    pub manifest_generation: u64,
    pub last_seq: u64,
    pub read_only: bool,
}

struct WriteState {
    wal: Wal,
    memtable: Memtable,
    next_seq: u64,
    /// The last sequence number handed to the OS (written, maybe not synced).
    written_seq: u64,
    memtable_since: Option<Instant>,
    /// Bloom filters of `id` per data file, loaded on first need.
    blooms: HashMap<u64, Vec<Sbbf>>,
}

/// What readers see: committed files plus frozen memtables.
struct View {
    manifest: Manifest,
    files: Arc<Vec<FileMeta>>,
    /// Indexes into `files` per partition (for the upsert check on ingest).
    by_partition: HashMap<PartitionKey, Vec<usize>>,
    frozen: Vec<Arc<Frozen>>,
}

impl View {
    fn new(manifest: Manifest) -> View {
        let files = Arc::new(manifest.files.clone());
        let by_partition = files_by_partition(&files);
        View {
            manifest,
            files,
            by_partition,
            frozen: Vec::new(),
        }
    }
}

struct Shared {
    root: PathBuf,
    options: StoreOptions,
    read_only: bool,
    write: Option<Mutex<WriteState>>,
    view: RwLock<View>,
    synced_seq: Mutex<u64>,
    flush_lock: Mutex<()>,
    /// One compaction or retention step at a time.
    maintenance_lock: Mutex<()>,
    /// Held by retention for its whole run, and by pin/unpin: a trace pinned while
    /// retention decides is never dropped.
    retention_lock: Mutex<()>,
    /// Set by [`Store::cancel_maintenance`]: merges stop at their next chunk.
    cancel: AtomicBool,
    /// The next data file id: flushes and compaction both take ids from it.
    next_file_id: AtomicU64,
    /// Files no manifest names any more, deleted once no snapshot holds them.
    retired: Mutex<Retired>,
    closed: AtomicBool,
    wake: (Mutex<bool>, Condvar),
    _lock: Option<File>,
}

/// Files replaced or dropped by maintenance, and the file lists of earlier views that
/// snapshots may still hold.
#[derive(Default)]
struct Retired {
    views: Vec<Weak<Vec<FileMeta>>>,
    files: Vec<FileMeta>,
}

/// An open store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    shared: Arc<Shared>,
    background: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.shared.root)
            .field("read_only", &self.shared.read_only)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves state we can still read; do not cascade.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

const LOCK_FILE: &str = "LOCK";

impl Store {
    /// Opens (or creates) a store for writing. Replays the WAL. Fails with
    /// [`Error::Locked`] if another process has it open for writing.
    pub fn open(root: impl AsRef<Path>, mut options: StoreOptions) -> Result<Store> {
        let root = std::path::absolute(root.as_ref()).map_err(Error::io(root.as_ref()))?;
        // A document must fit one WAL record.
        options.limits.max_document_bytes =
            options.limits.max_document_bytes.min(wal::MAX_DOCUMENT);
        fs::create_dir_all(&root).map_err(Error::io(&root))?;
        let lock_path = root.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(&lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: root,
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path)(e)),
        }
        let mut manifest = match load_manifest(&root)? {
            Some(m) => m,
            None => {
                // A new store commits an empty manifest first: from then on, data files
                // without a manifest mean a lost one, never a crash mid-flush.
                let mut m = Manifest::default();
                manifest::commit(&root, &mut m)?;
                m
            }
        };
        if let Some(id) = set_aside_orphans(&root, &manifest)?
            && id >= manifest.next_file_id
        {
            // never hand out the id of a file set aside again
            manifest.next_file_id = id + 1;
            manifest::commit(&root, &mut manifest)?;
        }

        // Replay what the WAL holds beyond the manifest.
        let mut memtable = Memtable::default();
        let flushed = manifest.flushed_seq;
        let files_by_partition = files_by_partition(&manifest.files);
        let mut blooms: HashMap<u64, Vec<Sbbf>> = HashMap::new();
        let mut replay_err: Option<Error> = None;
        let wal_dir = root.join("wal");
        let replay_limits = Limits::unlimited();
        let stats = wal::replay(&wal_dir, true, |seq, doc| {
            if seq <= flushed || replay_err.is_some() {
                return;
            }
            match segment::parse(doc, &replay_limits) {
                Ok(d) => {
                    let p = PartitionKey::for_document(&d.trace_id, d.start_ns);
                    let mut older = |p: PartitionKey, k: &RowKey| {
                        may_exist_in_files(
                            &root,
                            &manifest.files,
                            &files_by_partition,
                            &mut blooms,
                            p,
                            k,
                        )
                    };
                    if let Err(e) = memtable.insert(p, &d, doc.len(), seq, &mut older) {
                        replay_err = Some(e);
                    }
                }
                // Only accepted documents are logged; a record that no longer parses is
                // damage the CRC did not catch.
                Err(p) => tracing::error!(seq, problem = %p, "WAL record does not parse; skipped"),
            }
        })?;
        if let Some(e) = replay_err {
            return Err(e);
        }
        let next_seq = flushed.max(stats.last_seq) + 1;
        if stats.records > 0 || stats.truncated_bytes > 0 || stats.damaged_bytes > 0 {
            tracing::info!(
                records = stats.records,
                truncated = stats.truncated_bytes,
                damaged = stats.damaged_bytes,
                "replayed WAL"
            );
        }
        let wal = Wal::create(&wal_dir, next_seq)?;
        let since = (!memtable.is_empty()).then(Instant::now);
        let shared = Arc::new(Shared {
            root,
            options,
            read_only: false,
            write: Some(Mutex::new(WriteState {
                wal,
                memtable,
                next_seq,
                written_seq: next_seq - 1,
                memtable_since: since,
                blooms,
            })),
            cancel: AtomicBool::new(false),
            next_file_id: AtomicU64::new(manifest.next_file_id),
            view: RwLock::new(View::new(manifest)),
            synced_seq: Mutex::new(next_seq - 1),
            flush_lock: Mutex::new(()),
            maintenance_lock: Mutex::new(()),
            retention_lock: Mutex::new(()),
            retired: Mutex::new(Retired::default()),
            closed: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
            _lock: Some(lock_file),
        });
        let bg = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("tracelake-flush".into())
            .spawn(move || background(&bg))
            .map_err(Error::io("<flush thread>"))?;
        Ok(Store {
            shared,
            background: Mutex::new(Some(handle)),
        })
    }

    /// Opens a store read-only: the last committed manifest, no WAL replay, no lock. Works
    /// on a store another process is writing, a copied archive or a read-only mount.
    pub fn open_read_only(root: impl AsRef<Path>) -> Result<Store> {
        // Absolute, so that file paths handed to the query layer never depend on the cwd.
        let root = std::path::absolute(root.as_ref()).map_err(Error::io(root.as_ref()))?;
        if !root.is_dir() {
            return Err(Error::io(&root)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store directory",
            )));
        }
        if !root.join(LOCK_FILE).exists() && !manifest::exists(&root)? {
            return Err(Error::InvalidArgument(format!(
                "{} is not a Tracelake store",
                root.display()
            )));
        }
        let manifest = load_manifest(&root)?.unwrap_or_default();
        let shared = Arc::new(Shared {
            root,
            options: StoreOptions::default(),
            read_only: true,
            write: None,
            cancel: AtomicBool::new(false),
            next_file_id: AtomicU64::new(manifest.next_file_id),
            view: RwLock::new(View::new(manifest)),
            synced_seq: Mutex::new(0),
            flush_lock: Mutex::new(()),
            maintenance_lock: Mutex::new(()),
            retention_lock: Mutex::new(()),
            retired: Mutex::new(Retired::default()),
            closed: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
            _lock: None,
        });
        Ok(Store {
            shared,
            background: Mutex::new(None),
        })
    }

    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    pub fn options(&self) -> &StoreOptions {
        &self.shared.options
    }

    /// Ingests every document in `input` (any framing). One bad document never costs the
    /// others; with [`Durability::Sync`] the accepted ones are durable on return.
    pub fn ingest(&self, input: &[u8]) -> Result<IngestReport> {
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let write = s.write.as_ref().ok_or(Error::ReadOnly {
            operation: "ingest",
        })?;
        let pieces = framing::split(input);
        let mut report = IngestReport::default();
        let mut accepted = Vec::with_capacity(pieces.len());
        for (index, piece) in pieces.iter().enumerate() {
            let problem = match &piece.doc {
                // A parser panic (a bug, as fuzzing found one in sonic-rs) costs its
                // document only.
                Ok(bytes) => match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    segment::parse(bytes, &s.options.limits)
                })) {
                    Ok(Ok(doc)) => {
                        accepted.push((doc, &bytes[..]));
                        continue;
                    }
                    Ok(Err(p)) => p,
                    Err(_) => segment::Problem::new(
                        segment::RejectCode::InvalidSegment,
                        "the parser failed on this document (a bug in Tracelake: please report it with the document)",
                    ),
                },
                Err(p) => p.clone(),
            };
            report.rejected.push(Rejection {
                index,
                offset: piece.offset,
                id: problem.id,
                trace_id: problem.trace_id,
                code: problem.code,
                message: problem.message,
            });
        }
        if accepted.is_empty() {
            return Ok(report);
        }
        let last_seq;
        let flush_needed;
        {
            let mut w = lock(write);
            let WriteState {
                wal,
                memtable,
                next_seq,
                written_seq,
                memtable_since,
                blooms,
            } = &mut *w;
            let first = *next_seq;
            for (i, (_, bytes)) in accepted.iter().enumerate() {
                wal.append(first + i as u64, bytes);
            }
            wal.write()?;
            *next_seq += accepted.len() as u64;
            *written_seq = *next_seq - 1;
            last_seq = *written_seq;
            let view = s.view.read().unwrap_or_else(|e| e.into_inner());
            for (i, (doc, bytes)) in accepted.iter().enumerate() {
                let p = PartitionKey::for_document(&doc.trace_id, doc.start_ns);
                let mut older = |p: PartitionKey, k: &RowKey| {
                    view.frozen.iter().any(|f| f.contains(p, k))
                        || may_exist_in_files(
                            &s.root,
                            &view.files,
                            &view.by_partition,
                            blooms,
                            p,
                            k,
                        )
                };
                report.rows +=
                    memtable.insert(p, doc, bytes.len(), first + i as u64, &mut older)?;
            }
            drop(view);
            report.accepted = accepted.len();
            if memtable_since.is_none() {
                *memtable_since = Some(Instant::now());
            }
            flush_needed = memtable.rows() >= s.options.flush_rows
                || memtable.bytes() >= s.options.flush_bytes;
        }
        if s.options.durability == Durability::Sync {
            self.sync_up_to(last_seq)?;
        }
        if flush_needed {
            self.wake_background();
        }
        Ok(report)
    }

    /// Group commit: returns once every record up to `seq` is fsynced.
    fn sync_up_to(&self, seq: u64) -> Result<()> {
        let s = &self.shared;
        let mut synced = lock(&s.synced_seq);
        if *synced >= seq {
            return Ok(());
        }
        let Some(write) = s.write.as_ref() else {
            return Ok(());
        };
        let (job, target) = {
            let w = lock(write);
            (w.wal.sync_job(), w.written_seq)
        };
        if let Err(e) = job.run() {
            // After a failed fsync the OS may have dropped the dirty pages: nothing after
            // this point can be acknowledged safely. Stop; reopening replays what is on disk.
            s.closed.store(true, Ordering::Release);
            return Err(e);
        }
        // Only a job that covered a rotation has debt to clear: the common ack path takes
        // the write lock once.
        if job.after_rotation() {
            lock(write).wal.synced(&job);
        }
        *synced = target.max(*synced);
        Ok(())
    }

    fn wake_background(&self) {
        let (m, cv) = &self.shared.wake;
        *lock(m) = true;
        cv.notify_one();
    }

    /// Writes the memtable into Parquet files and commits them. No-op when empty.
    pub fn flush(&self) -> Result<()> {
        flush(&self.shared)
    }

    /// A consistent view for readers: committed files plus memtable rows.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let s = &self.shared;
        match &s.write {
            None => {
                let v = s.view.read().unwrap_or_else(|e| e.into_inner());
                Ok(Snapshot {
                    root: s.root.clone(),
                    files: Arc::clone(&v.files),
                    memory: Vec::new(),
                })
            }
            Some(write) => {
                // Under the locks only clones of shared buffers; replaced rows are
                // filtered out after releasing them, so readers never stall ingest.
                let (files, frozen, raw) = {
                    let mut w = lock(write);
                    let v = s.view.read().unwrap_or_else(|e| e.into_inner());
                    (
                        Arc::clone(&v.files),
                        v.frozen.clone(),
                        w.memtable.snapshot_raw()?,
                    )
                };
                let mut memory = Vec::new();
                for f in &frozen {
                    memory.extend(f.rows()?);
                }
                for r in &raw {
                    memory.push(r.live()?);
                }
                Ok(Snapshot {
                    root: s.root.clone(),
                    files,
                    memory,
                })
            }
        }
    }

    pub fn stats(&self) -> StoreStats {
        let s = &self.shared;
        let v = s.view.read().unwrap_or_else(|e| e.into_inner());
        let mut st = StoreStats {
            files: v.files.len(),
            file_rows: v.files.iter().map(|f| f.rows).sum(),
            file_bytes: v.files.iter().map(|f| f.bytes).sum(),
            manifest_generation: v.manifest.generation,
            read_only: s.read_only,
            last_seq: v.manifest.flushed_seq,
            ..Default::default()
        };
        let mut parts: Vec<PartitionKey> = v.files.iter().map(|f| f.partition).collect();
        drop(v);
        if let Some(write) = &s.write {
            let w = lock(write);
            st.memtable_rows = w.memtable.rows();
            st.memtable_bytes = w.memtable.bytes();
            st.wal_bytes = w.wal.bytes();
            st.last_seq = w.next_seq - 1;
        }
        parts.sort();
        parts.dedup();
        st.partitions = parts.len();
        st
    }

    /// Flushes, syncs and stops the background thread. Further ingests fail.
    pub fn close(&self) -> Result<()> {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.wake_background();
        if let Some(h) = lock(&self.background).take() {
            let _ = h.join();
        }
        if s.write.is_some() {
            flush(s)?;
        }
        // what snapshots still hold stays: orphans, removed when the store next opens
        collect_garbage(s);
        Ok(())
    }
}

/// Files, rows and bytes of one partition, and whether compaction would rewrite it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    pub partition: PartitionKey,
    pub files: usize,
    /// Files smaller than [`CompactionOptions::min_file_bytes`].
    pub small_files: usize,
    pub rows: u64,
    pub bytes: u64,
    /// Compaction would merge these files now (see [`Store::compaction_due`]).
    pub compaction_due: bool,
    /// Some file of the partition shares traces or upserted rows with another: readers
    /// pay for it until compaction.
    pub needs_compaction: bool,
}

/// What compacting one partition did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    pub partition: PartitionKey,
    pub merge: MergeStats,
    pub output_files: usize,
    pub output_bytes: u64,
    /// Files deleted now (the rest of the inputs go once no reader holds them).
    pub deleted_files: usize,
}

/// Whether the files of one partition want compacting: several small files, or files
/// sharing traces or upserted rows that one merge can take together (beyond
/// `max_inputs` large files, readers keep correcting for split traces).
fn wants_compaction(files: &[&FileMeta], o: &CompactionOptions) -> bool {
    let small = files.iter().filter(|f| is_small(f, o)).count();
    let split = files.iter().any(|f| f.shadows || f.shares_traces);
    files.len() >= 2 && (small >= 2 || (split && files.len() <= o.max_inputs.max(2)))
}

/// Whether a file is small enough to merge. Every output but a merge's last reaches
/// `max_file_bytes`; below half of it, the threshold can never make outputs want
/// merging again (so compaction always comes to rest).
fn is_small(f: &FileMeta, o: &CompactionOptions) -> bool {
    f.bytes < o.min_file_bytes.min(o.max_file_bytes / 2)
}

/// Test hook for crash tests: the process dies on the spot (no destructor runs) when
/// the environment variable `TRACELAKE_CRASH_AT` names this point.
pub(crate) fn crash_point(name: &str) {
    if std::env::var_os("TRACELAKE_CRASH_AT").is_some_and(|v| v == name) {
        tracing::error!(point = name, "TRACELAKE_CRASH_AT: aborting");
        std::process::abort();
    }
}

/// Deletes a data file and its sidecars (best effort: what is left is an orphan, removed
/// when the store next opens).
pub(crate) fn remove_file_set(root: &Path, f: &FileMeta) {
    let data = root.join(&f.path);
    let _ = fs::remove_file(crate::index::sidecar_path(&data));
    let _ = fs::remove_file(root.join(crate::rollup::relative_path(f.partition, f.id)));
    let _ = fs::remove_file(&data);
}

impl Store {
    /// Files, rows and bytes per partition, oldest first, with the compaction backlog
    /// at `now_ns` (nanoseconds since the epoch).
    pub fn partition_stats(&self, options: &CompactionOptions, now_ns: i64) -> Vec<PartitionStats> {
        let files = Arc::clone(
            &self
                .shared
                .view
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .files,
        );
        let mut by: std::collections::BTreeMap<PartitionKey, Vec<&FileMeta>> = Default::default();
        for f in files.iter() {
            by.entry(f.partition).or_default().push(f);
        }
        by.into_iter()
            .map(|(p, fs)| PartitionStats {
                partition: p,
                files: fs.len(),
                small_files: fs.iter().filter(|f| is_small(f, options)).count(),
                rows: fs.iter().map(|f| f.rows).sum(),
                bytes: fs.iter().map(|f| f.bytes).sum(),
                compaction_due: due(p, &fs, options, now_ns),
                needs_compaction: fs.iter().any(|f| f.shadows || f.shares_traces),
            })
            .collect()
    }

    /// The partitions compaction would rewrite at `now_ns`, oldest first: those whose
    /// files want compacting ([`PartitionStats::needs_compaction`], or several small
    /// files) and whose hour ended [`CompactionOptions::settle`] ago, or that hold
    /// [`CompactionOptions::max_small_files`] small files already.
    pub fn compaction_due(&self, options: &CompactionOptions, now_ns: i64) -> Vec<PartitionKey> {
        self.partition_stats(options, now_ns)
            .into_iter()
            .filter(|p| p.compaction_due)
            .map(|p| p.partition)
            .collect()
    }

    /// Compacts one partition: merges its files (at most [`CompactionOptions::max_inputs`]
    /// of them, smallest first) into large files sorted by trace id, resolving upserts
    /// and rebuilding the sidecars, then replaces them in one manifest commit. Queries
    /// see the same rows before, during and after. `progress` gets the input rows merged
    /// so far. A no-op (`None`) when the partition has nothing to merge.
    pub fn compact_partition(
        &self,
        partition: PartitionKey,
        options: &CompactionOptions,
        progress: &dyn Fn(u64),
    ) -> Result<Option<CompactionReport>> {
        let _one = lock(&self.shared.maintenance_lock);
        let inputs = self.compaction_inputs(partition, options);
        if inputs.is_empty() {
            return Ok(None);
        }
        self.rewrite(partition, &inputs, options, &|_| true, progress)
            .map(Some)
    }

    /// The files [`Store::compact_partition`] would merge now (none when the partition
    /// has nothing to merge): all of them, or the `max_inputs` smallest.
    pub fn compaction_inputs(
        &self,
        partition: PartitionKey,
        options: &CompactionOptions,
    ) -> Vec<FileMeta> {
        let mut files = self.partition_files(partition);
        let refs: Vec<&FileMeta> = files.iter().collect();
        if !wants_compaction(&refs, options) {
            return Vec::new();
        }
        if files.len() > options.max_inputs.max(2) {
            files.sort_by_key(|f| (f.bytes, f.id));
            files.truncate(options.max_inputs.max(2));
        }
        files
    }

    /// Rewrites every file of `partition` keeping only the traces `keep` accepts
    /// (retention's keep rules and pins); the partition disappears when none is kept.
    pub fn retain_traces(
        &self,
        partition: PartitionKey,
        keep: &dyn Fn(&TraceId) -> bool,
        progress: &dyn Fn(u64),
    ) -> Result<CompactionReport> {
        let _one = lock(&self.shared.maintenance_lock);
        let inputs = self.partition_files(partition);
        self.rewrite(
            partition,
            &inputs,
            &CompactionOptions::default(),
            keep,
            progress,
        )
    }

    fn partition_files(&self, partition: PartitionKey) -> Vec<FileMeta> {
        let v = self.shared.view.read().unwrap_or_else(|e| e.into_inner());
        v.files
            .iter()
            .filter(|f| f.partition == partition)
            .cloned()
            .collect()
    }

    fn rewrite(
        &self,
        partition: PartitionKey,
        inputs: &[FileMeta],
        options: &CompactionOptions,
        keep: &dyn Fn(&TraceId) -> bool,
        progress: &dyn Fn(u64),
    ) -> Result<CompactionReport> {
        let s = &self.shared;
        if s.read_only {
            return Err(Error::ReadOnly {
                operation: "compaction",
            });
        }
        if s.closed.load(Ordering::Acquire) || s.cancel.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let expected = inputs.iter().map(|f| f.rows).sum::<u64>() as usize;
        let root = s.root.clone();
        let mut create = || {
            let id = s.next_file_id.fetch_add(1, Ordering::AcqRel);
            crash_point("compact:create-output");
            datafile::Writer::create(&root, partition, id, expected, false)
        };
        let (mut outputs, merge) = compaction::merge(
            &s.root,
            inputs,
            options,
            &mut create,
            keep,
            progress,
            &s.cancel,
        )?;
        crash_point("compact:before-commit");
        let output_bytes = outputs.iter().map(|f| f.bytes).sum();
        let output_files = outputs.len();
        if let Err(e) = self.commit_replace(partition, inputs, &mut outputs) {
            for f in &outputs {
                remove_file_set(&s.root, f);
            }
            return Err(e);
        }
        crash_point("compact:after-commit");
        let deleted_files = collect_garbage(s);
        Ok(CompactionReport {
            partition,
            merge,
            output_files,
            output_bytes,
            deleted_files,
        })
    }

    /// Replaces `inputs` (files of `partition`) by `outputs` in one manifest commit.
    fn commit_replace(
        &self,
        partition: PartitionKey,
        inputs: &[FileMeta],
        outputs: &mut [FileMeta],
    ) -> Result<()> {
        let s = &self.shared;
        commit_change(s, inputs, |m| {
            let gone: std::collections::HashSet<u64> = inputs.iter().map(|f| f.id).collect();
            let present = m.files.iter().filter(|f| gone.contains(&f.id)).count();
            if present != gone.len() {
                return Err(Error::InvalidArgument(format!(
                    "partition {partition} changed while it was being rewritten; try again"
                )));
            }
            let upserts = inputs.iter().any(|f| f.shadows);
            m.files.retain(|f| !gone.contains(&f.id));
            // Outputs never split a trace between them, but files left out of the merge
            // (or flushed meanwhile) may share traces and upserted rows with them.
            for o in outputs.iter_mut() {
                let mut others = m
                    .files
                    .iter_mut()
                    .filter(|g| g.partition == partition)
                    .peekable();
                if others.peek().is_some() {
                    o.shadows = upserts;
                    mark_shared(&s.root, o, others);
                }
            }
            m.files.extend(outputs.iter().cloned());
            Ok(true)
        })
        .map(drop)
    }

    /// Drops every file of `partitions` in one manifest commit (retention): O(files),
    /// whatever their size. Rows still in the memtable stay. Returns the files and
    /// bytes dropped.
    pub fn drop_partitions(&self, partitions: &[PartitionKey]) -> Result<(usize, u64)> {
        let s = &self.shared;
        if s.write.is_none() {
            return Err(Error::ReadOnly {
                operation: "retention",
            });
        }
        let _m = lock(&s.maintenance_lock);
        let dropped: Vec<FileMeta> = {
            let v = s.view.read().unwrap_or_else(|e| e.into_inner());
            v.files
                .iter()
                .filter(|f| partitions.contains(&f.partition))
                .cloned()
                .collect()
        };
        if dropped.is_empty() {
            return Ok((0, 0));
        }
        commit_change(s, &dropped, |m| {
            // flushes only add files, and maintenance is ours: the files are still there
            m.files.retain(|f| !partitions.contains(&f.partition));
            crash_point("retention:before-commit");
            Ok(true)
        })?;
        crash_point("retention:after-commit");
        collect_garbage(s);
        Ok((dropped.len(), dropped.iter().map(|f| f.bytes).sum()))
    }

    /// Holds off pins while retention runs: take it for a whole retention pass.
    pub fn retention_guard(&self) -> MutexGuard<'_, ()> {
        lock(&self.shared.retention_lock)
    }

    /// The pinned traces, sorted.
    pub fn pins(&self) -> Vec<TraceId> {
        let v = self.shared.view.read().unwrap_or_else(|e| e.into_inner());
        v.manifest
            .pins
            .iter()
            .filter_map(|t| TraceId::parse(t))
            .collect()
    }

    /// Pins (`pin = true`) or unpins traces: retention keeps a pinned trace, whatever
    /// its age, until it is unpinned. Returns how many pins changed. Waits for a
    /// running retention pass.
    pub fn set_pins(&self, traces: &[TraceId], pin: bool) -> Result<usize> {
        let s = &self.shared;
        if s.write.is_none() {
            return Err(Error::ReadOnly { operation: "pin" });
        }
        let _r = lock(&s.retention_lock);
        let mut changed = 0;
        commit_change(s, &[], |m| {
            let mut set: std::collections::BTreeSet<String> = m.pins.iter().cloned().collect();
            for t in traces {
                let t = t.to_string();
                changed += usize::from(if pin { set.insert(t) } else { set.remove(&t) });
            }
            m.pins = set.into_iter().collect();
            Ok(changed > 0)
        })?;
        Ok(changed)
    }

    /// Stops merges in progress at their next chunk (their outputs are removed, their
    /// inputs stay) and refuses new ones: for closing.
    pub fn cancel_maintenance(&self) {
        self.shared.cancel.store(true, Ordering::Release);
    }

    /// Deletes retired files that no snapshot holds any more; returns how many.
    pub fn collect_garbage(&self) -> usize {
        collect_garbage(&self.shared)
    }
}

/// Commits a change of the manifest as the only committer (`flush_lock`): `change`
/// edits a copy and says whether there is anything to commit; `retired` are the files
/// it removed (deleted once no snapshot holds them). Returns whether it committed.
fn commit_change(
    s: &Shared,
    retired: &[FileMeta],
    change: impl FnOnce(&mut Manifest) -> Result<bool>,
) -> Result<bool> {
    let _one = lock(&s.flush_lock);
    let mut m = current_manifest(s);
    if !change(&mut m)? {
        return Ok(false);
    }
    m.next_file_id = m.next_file_id.max(s.next_file_id.load(Ordering::Acquire));
    manifest::commit(&s.root, &mut m)?;
    lock(&s.retired).files.extend(retired.iter().cloned());
    if let Some(write) = s.write.as_ref() {
        let mut w = lock(write);
        for f in retired {
            w.blooms.remove(&f.id);
        }
    }
    let mut v = s.view.write().unwrap_or_else(|e| e.into_inner());
    publish(s, &mut v, m);
    Ok(true)
}

fn due(p: PartitionKey, files: &[&FileMeta], o: &CompactionOptions, now_ns: i64) -> bool {
    if !wants_compaction(files, o) {
        return false;
    }
    let settle = i64::try_from(o.settle.as_nanos()).unwrap_or(i64::MAX);
    let settled = p
        .start_ns()
        .saturating_add(3_600_000_000_000)
        .saturating_add(settle)
        <= now_ns;
    let small = files.iter().filter(|f| is_small(f, o)).count();
    settled || small >= o.max_small_files.max(2)
}

/// Deletes the retired files that no live view names.
fn collect_garbage(s: &Shared) -> usize {
    let free: Vec<FileMeta> = {
        let mut r = lock(&s.retired);
        r.views.retain(|w| w.strong_count() > 0);
        let held: std::collections::HashSet<u64> = r
            .views
            .iter()
            .filter_map(Weak::upgrade)
            .flat_map(|v| v.iter().map(|f| f.id).collect::<Vec<_>>())
            .collect();
        let (free, keep): (Vec<FileMeta>, Vec<FileMeta>) = std::mem::take(&mut r.files)
            .into_iter()
            .partition(|f| !held.contains(&f.id));
        r.files = keep;
        free
    };
    for (i, f) in free.iter().enumerate() {
        remove_file_set(&s.root, f);
        if i == 0 {
            crash_point("gc:after-first-delete");
        }
    }
    free.len()
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, "closing the store failed; the WAL keeps the documents");
        }
    }
}

fn files_by_partition(files: &[FileMeta]) -> HashMap<PartitionKey, Vec<usize>> {
    let mut m: HashMap<PartitionKey, Vec<usize>> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        m.entry(f.partition).or_default().push(i);
    }
    m
}

/// Whether a data file of partition `p` may hold `key` (bloom filter on `id`).
fn may_exist_in_files(
    root: &Path,
    files: &[FileMeta],
    by_part: &HashMap<PartitionKey, Vec<usize>>,
    blooms: &mut HashMap<u64, Vec<Sbbf>>,
    p: PartitionKey,
    key: &RowKey,
) -> bool {
    let Some(indexes) = by_part.get(&p) else {
        return false;
    };
    for f in indexes.iter().filter_map(|&i| files.get(i)) {
        let filters = match blooms.entry(f.id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match datafile::id_bloom_filters(root, f) {
                    Ok(b) => v.insert(b),
                    Err(e) => {
                        // Without the filter we must assume a duplicate: readers resolve.
                        tracing::warn!(file = %f.path, error = %e, "cannot read id bloom filter");
                        return true;
                    }
                }
            }
        };
        if datafile::blooms_may_contain(filters, key.id) {
            return true;
        }
    }
    false
}

fn flush(s: &Shared) -> Result<()> {
    let Some(write) = s.write.as_ref() else {
        return Err(Error::ReadOnly { operation: "flush" });
    };
    let _one = lock(&s.flush_lock);
    {
        let mut w = lock(write);
        if !w.memtable.is_empty() {
            // Rotate first: if that fails, nothing has moved.
            let next = w.next_seq;
            w.wal.rotate(next)?;
            let mem = std::mem::take(&mut w.memtable);
            let frozen = match mem.freeze() {
                Ok(f) => Arc::new(f),
                Err(e) => {
                    // The rows are only in the WAL now: stop, so that no later commit can
                    // retire that WAL. Reopening replays it.
                    s.closed.store(true, Ordering::Release);
                    return Err(e);
                }
            };
            w.memtable_since = None;
            s.view
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .frozen
                .push(frozen);
        }
    }
    // Oldest first; a failure leaves the rest frozen (still visible, still in the WAL)
    // for the next flush to retry.
    loop {
        let next = s
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .frozen
            .first()
            .cloned();
        let Some(frozen) = next else { break };
        write_frozen(s, &frozen)?;
    }
    let w = lock(write);
    w.wal.remove_older_files()?;
    Ok(())
}

fn write_frozen(s: &Shared, frozen: &Arc<Frozen>) -> Result<()> {
    // Write the files outside every lock.
    let mut new_files = Vec::new();
    let mut blooms = Vec::new();
    for (p, part) in &frozen.partitions {
        let batches = part.batches()?;
        if batches.iter().all(|b| b.num_rows() == 0) {
            continue;
        }
        let batch = arrow::compute::concat_batches(&crate::schema::spans(), &batches)?;
        let id = s.next_file_id.fetch_add(1, Ordering::AcqRel);
        let meta = datafile::write(&s.root, *p, id, &batch, part.shadows)?;
        // Read the new file's id bloom filters here, outside every lock: the first ingest
        // that checks for upserts against the file would otherwise read them under the
        // write lock, stalling every acknowledgement behind a disk read.
        match datafile::id_bloom_filters(&s.root, &meta) {
            Ok(b) => blooms.push((meta.id, b)),
            Err(e) => tracing::warn!(file = %meta.path, error = %e, "cannot read id bloom filter"),
        }
        new_files.push(meta);
    }
    // Commit outside the view lock (ingest reads the view under the write lock, so its
    // fsyncs would stall every acknowledgement); `flush_lock` keeps us the only committer.
    // Readers see the frozen memtable until the files replace it, in one step.
    let mut m = current_manifest(s);
    // Flush boundaries cut traces: mark the files that share one, and list the shared
    // traces on the new file (see `shares_traces` and `shared_traces`).
    for f in &mut new_files {
        let partition = f.partition;
        mark_shared(
            &s.root,
            f,
            m.files.iter_mut().filter(|g| g.partition == partition),
        );
    }
    m.files.extend(new_files);
    m.next_file_id = m.next_file_id.max(s.next_file_id.load(Ordering::Acquire));
    m.flushed_seq = m.flushed_seq.max(frozen.max_seq);
    manifest::commit(&s.root, &mut m)?;
    if let Some(write) = s.write.as_ref() {
        lock(write).blooms.extend(blooms);
    }
    let mut v = s.view.write().unwrap_or_else(|e| e.into_inner());
    publish(s, &mut v, m);
    v.frozen.retain(|f| !Arc::ptr_eq(f, frozen));
    Ok(())
}

/// A copy of the committed manifest, to edit and commit (under `flush_lock`).
fn current_manifest(s: &Shared) -> Manifest {
    s.view
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .manifest
        .clone()
}

/// Makes `m` what readers see, remembering the old file list for as long as snapshots
/// hold it (retired files are deleted only after).
fn publish(s: &Shared, v: &mut View, m: Manifest) {
    let old = std::mem::replace(&mut v.files, Arc::new(m.files.clone()));
    {
        let mut r = lock(&s.retired);
        r.views.retain(|w| w.strong_count() > 0);
        r.views.push(Arc::downgrade(&old));
    }
    drop(old);
    v.by_partition = files_by_partition(&v.files);
    v.manifest = m;
}

/// Marks `f` and the `older` files of its partition that share a trace with it, and
/// lists the shared traces on `f` (see [`FileMeta::shared_traces`]).
fn mark_shared<'a>(root: &Path, f: &mut FileMeta, older: impl Iterator<Item = &'a mut FileMeta>) {
    let mut shared: Option<std::collections::BTreeSet<TraceId>> = Some(Default::default());
    // opened once for all the older files it is compared with
    let index = crate::index::Index::open(&root.join(&f.path), f.rows).ok();
    for g in older {
        let common = shared_traces(root, f, index.as_ref(), g);
        if common.as_ref().is_none_or(|c| !c.is_empty()) {
            f.shares_traces = true;
            g.shares_traces = true;
        }
        match (common, &mut shared) {
            (Some(c), Some(all)) => all.extend(c),
            _ => shared = None,
        }
    }
    f.shared_traces = shared
        .filter(|all| all.len() <= MAX_LISTED_SHARED_TRACES)
        .map(|all| all.iter().map(ToString::to_string).collect());
}

/// Shared traces a file lists at most; beyond, readers scan its partition.
const MAX_LISTED_SHARED_TRACES: usize = 4096;

/// The traces two files of a partition both hold rows of (`ia`: `a`'s index); `None`
/// when an index cannot be read (then they are assumed to share). Trace ids begin with their time, so files
/// of successive flushes overlap in a narrow window of ids, and only that window is
/// walked.
fn shared_traces(
    root: &Path,
    a: &FileMeta,
    ia: Option<&crate::index::Index>,
    b: &FileMeta,
) -> Option<Vec<TraceId>> {
    if a.rows == 0 || b.rows == 0 {
        return Some(Vec::new());
    }
    if a.max_trace_id < b.min_trace_id || b.max_trace_id < a.min_trace_id {
        return Some(Vec::new());
    }
    let ia = ia?;
    let ib = crate::index::Index::open(&root.join(&b.path), b.rows).ok()?;
    let (Some((alo, ahi)), Some((blo, bhi))) = (ia.trace_bounds(), ib.trace_bounds()) else {
        return Some(Vec::new());
    };
    let (lo, hi) = (alo.max(blo), ahi.min(bhi));
    let (wa, wb) = (ia.trace_positions(&lo, &hi), ib.trace_positions(&lo, &hi));
    let (small, window, large) = if wa.len() <= wb.len() {
        (ia, wa, &ib)
    } else {
        (&ib, wb, ia)
    };
    Some(
        window
            .filter_map(|p| small.trace_at(p))
            .map(|(t, _)| t)
            .filter(|t| large.trace_rows(t).is_some())
            .collect(),
    )
}

/// The newest manifest, or `None` for a new store. A store with data files but no
/// manifest refuses to open: it would look empty, and opening it for writing would
/// remove every data file as an orphan.
fn load_manifest(root: &Path) -> Result<Option<Manifest>> {
    if manifest::exists(root)? {
        return manifest::load(root).map(Some);
    }
    if wal::holds_records(&root.join("wal"))? {
        // a store made before new stores committed an empty manifest, cut short in its
        // first flush: the WAL holds everything, and the files are set aside
        return Ok(None);
    }
    if let Some(path) = files_under(root, &["spans"])?
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        return Err(Error::Corrupt {
            what: format!(
                "{} has no MANIFEST file but holds data files (e.g. {}): the manifest is \
                 lost. Restore the MANIFEST-* file from a backup, or move spans/ and \
                 rollups/ away to start an empty store",
                root.display(),
                path.strip_prefix(root).unwrap_or(&path).display()
            ),
        });
    }
    Ok(None)
}

/// Every file below `root`'s subdirectories `dirs` (missing ones hold none).
fn files_under(root: &Path, dirs: &[&str]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| root.join(d)).collect();
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir)(e)),
        };
        for entry in rd {
            let path = entry.map_err(Error::io(&dir))?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// The id in the name of a data file or sidecar (`<id>.parquet`, `_<id>.parquet.idx`).
fn file_id_of(name: &str) -> Option<u64> {
    let stem = name.strip_prefix('_').unwrap_or(name);
    let hex = stem
        .strip_suffix(".parquet.idx")
        .or_else(|| stem.strip_suffix(".parquet"))?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Where files the manifest does not list are set aside.
pub const ORPHANS_DIR: &str = "orphans";

/// Moves the files under spans/ and rollups/ that the manifest does not list into
/// `orphans/<generation>-<unix seconds>/`, never deleting one: they are what a crash
/// left (a flush or compaction cut short, whose data is still in the WAL or the older
/// files; inputs a compaction had replaced) or, after damage, files of a lost newer
/// manifest, which only a person can tell apart. Files not named like ours are left
/// alone. Returns the highest file id set aside, so that ids are never handed out again.
fn set_aside_orphans(root: &Path, m: &Manifest) -> Result<Option<u64>> {
    let mut live: std::collections::HashSet<String> =
        m.files.iter().map(|f| f.path.clone()).collect();
    // and their index and rollup sidecars
    for f in &m.files {
        let side = crate::index::sidecar_path(Path::new(&f.path));
        live.insert(side.to_string_lossy().replace('\\', "/"));
        live.insert(crate::rollup::relative_path(f.partition, f.id));
    }
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let into = root
        .join(ORPHANS_DIR)
        .join(format!("{:020}-{since_epoch}", m.generation));
    let (mut highest, mut moved, mut first) = (None, 0usize, String::new());
    for path in files_under(root, &["spans", "rollups"])? {
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().replace('\\', "/");
        if live.contains(rel.as_str()) {
            continue;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let Some(id) = name.as_deref().and_then(file_id_of) else {
            continue;
        };
        let to = into.join(&rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        fs::rename(&path, &to).map_err(Error::io(&path))?;
        highest = highest.max(Some(id));
        moved += 1;
        if first.is_empty() {
            first = rel;
        }
    }
    if moved > 0 {
        tracing::warn!(
            files = moved,
            first = %first,
            into = %into.display(),
            "files the manifest does not list were set aside: left by a crash (a flush or \
             compaction cut short, inputs already replaced), or files of a lost newer \
             manifest (restore it and move them back); delete them once the store is verified"
        );
    }
    Ok(highest)
}

/// The background thread: flushes by size or age, fsyncs in `Interval` mode.
fn background(s: &Shared) {
    let tick = match s.options.durability {
        Durability::Interval(d) => d.min(Duration::from_millis(500)),
        _ => Duration::from_millis(500),
    };
    loop {
        {
            let (m, cv) = &s.wake;
            let mut woken = lock(m);
            if !*woken {
                woken = cv
                    .wait_timeout(woken, tick)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            *woken = false;
        }
        if s.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(write) = s.write.as_ref() else {
            return;
        };
        let (due, job) = {
            let w = lock(write);
            let by_size = w.memtable.rows() >= s.options.flush_rows
                || w.memtable.bytes() >= s.options.flush_bytes;
            let by_age = w
                .memtable_since
                .is_some_and(|t| t.elapsed() >= s.options.flush_age);
            (by_size || by_age, w.wal.sync_job())
        };
        if matches!(s.options.durability, Durability::Interval(_)) {
            match job.run() {
                Ok(()) if job.after_rotation() => lock(write).wal.synced(&job),
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "WAL fsync failed"),
            }
        }
        if due && let Err(e) = flush(s) {
            tracing::error!(error = %e, "flush failed; documents stay in the WAL and memtable");
        }
    }
}
