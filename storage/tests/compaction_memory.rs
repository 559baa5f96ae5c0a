//! Compaction's memory is bounded: merging a partition far larger than the bound stays
//! within it (the bound is stated in the `compaction` module docs).
//!
//! Its own test binary: a counting global allocator sees every allocation of the process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
// the counting allocator below is the only unsafe code: it forwards to the system one
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tracelake_storage::{CompactionOptions, Store, StoreOptions};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments; the counters
// only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A trace of a root segment and three subsegments, with a few hundred bytes of
/// annotations and metadata (distinct per trace, so that nothing compresses away).
fn trace(hour: u32, i: u32) -> String {
    let t = 1_600_000_000.0 + f64::from(hour) * 3600.0 + f64::from(i) * 0.001;
    let epoch = 1_600_000_000 + hour * 3600;
    let subs: Vec<String> = (0..3u32)
        .map(|k| {
            format!(
                r#"{{"id":"{:016x}","name":"dep-{k}","start_time":{},"end_time":{},"namespace":"remote","http":{{"request":{{"method":"GET","url":"https://dep-{k}.example/items/{i}"}},"response":{{"status":200}}}}}}"#,
                u64::from(i) * 8 + u64::from(k) + 1,
                t + 0.0001,
                t + 0.0002 + f64::from(k) * 0.0001
            )
        })
        .collect();
    format!(
        r#"{{"trace_id":"1-{epoch:08x}-{i:024x}","id":"{:016x}","name":"api-{}","start_time":{t},"end_time":{},"annotations":{{"customer":"c-{}","order":{i}}},"metadata":{{"default":{{"note":"request {i} of a long run, {:x}"}}}},"http":{{"request":{{"method":"POST","url":"https://api.example/orders/{i}"}},"response":{{"status":201}}}},"subsegments":[{}]}}"#,
        u64::from(i) * 8 + 7,
        i % 5,
        t + 0.01,
        i % 997,
        u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        subs.join(",")
    )
}

/// Compacts an hour of `traces` traces, flushed `per_flush` at a time; returns the peak
/// of live heap bytes during the compaction and the decoded size of the rows.
fn peak_of_compacting(store: &Store, hour: u32, traces: u32, per_flush: u32) -> (usize, usize) {
    for from in (0..traces).step_by(per_flush as usize) {
        let docs: Vec<String> = (from..from + per_flush).map(|i| trace(hour, i)).collect();
        store.ingest(docs.join("\n").as_bytes()).unwrap();
        store.flush().unwrap();
    }
    let snap = store.snapshot().unwrap();
    let partition = snap.files.iter().map(|f| f.partition).max().unwrap();
    let files = snap.partition_file_ids(partition).len();
    assert_eq!(files, (traces / per_flush) as usize);
    drop(snap);

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let report = store
        .compact_partition(partition, &CompactionOptions::default(), &|_| {})
        .unwrap()
        .unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(report.merge.input_rows, u64::from(traces) * 4);
    assert_eq!(report.merge.output_rows, report.merge.input_rows);
    assert_eq!(report.merge.input_files, files);

    // what holding the partition in memory would take
    let snap = store.snapshot().unwrap();
    let mut decoded = 0;
    for f in snap.files.iter().filter(|f| f.partition == partition) {
        let rows = tracelake_storage::datafile::read_all(&snap.root, f).unwrap();
        decoded += rows
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>();
    }
    eprintln!(
        "compaction of {} rows in {files} files ({decoded} bytes decoded, {} on disk): peak {peak} bytes",
        report.merge.input_rows, report.merge.input_bytes
    );
    (peak, decoded)
}

#[test]
fn compacting_a_large_partition_stays_within_the_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), StoreOptions::default()).unwrap();
    let (small, _) = peak_of_compacting(&store, 0, 40_000, 4_000);
    let (large, decoded) = peak_of_compacting(&store, 1, 160_000, 8_000);
    // four times the rows, twice the files: the peak hardly moves (the sidecars being
    // built grow with the file, the rest does not)
    assert!(
        large < decoded / 5,
        "peak {large} bytes is not far below the {decoded} bytes of the rows"
    );
    assert!(
        large < small * 2,
        "peak {large} bytes for 4x the rows of a {small}-byte peak"
    );
    assert!(large < 96 << 20, "peak {large} bytes");
}
