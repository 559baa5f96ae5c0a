//! The write-ahead log: accepted documents, length + CRC framed, replayed on open.
//!
//! Files are `wal/wal-<first seq>.log`: an 8-byte header (`TLWAL` magic, format version)
//! then records `[len: u32 LE][crc32 of payload: u32 LE][payload]`, where the payload is
//! `[seq: u64 LE][document JSON]`. Replay truncates a torn or corrupt tail: a crash
//! mid-append loses only unacknowledged documents and never makes the store unopenable.
//! Damage in the middle of a file (a record whose CRC fails, followed by intact ones)
//! costs only the records it hit: replay goes on at the next intact record.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

const MAGIC: &[u8; 5] = b"TLWAL";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const RECORD_HEADER: usize = 8;
/// Upper bound of one record, to reject garbage lengths before allocating.
const MAX_RECORD: usize = 64 << 20;
/// The largest document a record holds (the store clamps its size limit to this).
pub const MAX_DOCUMENT: usize = MAX_RECORD - 8;

/// An open WAL, appending to its newest file.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    file: Arc<File>,
    path: PathBuf,
    first_seq: u64,
    buf: Vec<u8>,
    bytes: u64,
    /// Files retired by [`Wal::rotate`] whose last records may not be durable yet. While
    /// any is here, the current file's directory entry may not be durable either.
    retired: Vec<(Arc<File>, PathBuf)>,
    /// Counts rotations, so that a finished [`SyncJob`] clears only what it covered.
    rotations: u64,
}

/// What must be fsynced for every record written so far to be durable: taken under the
/// write lock with [`Wal::sync_job`], run outside it, then reported with [`Wal::synced`].
#[derive(Debug)]
pub struct SyncJob {
    /// Retired files first, the current file last.
    files: Vec<(Arc<File>, PathBuf)>,
    /// Set after a rotation: the directory holding the new file's entry.
    dir: Option<PathBuf>,
    rotations: u64,
}

impl SyncJob {
    /// Fsyncs the retired files, the current one and, after a rotation, the directory.
    pub fn run(&self) -> Result<()> {
        for (f, path) in &self.files {
            f.sync_data().map_err(Error::io(path))?;
        }
        match &self.dir {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    /// Whether the job covers a rotation, so that [`Wal::synced`] has debt to clear.
    pub fn after_rotation(&self) -> bool {
        self.dir.is_some()
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

/// What replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayStats {
    pub files: usize,
    pub records: u64,
    /// Bytes cut off torn tails.
    pub truncated_bytes: u64,
    /// Damaged bytes skipped in the middle of files (the records after them were kept).
    pub damaged_bytes: u64,
    pub last_seq: u64,
}

fn file_name(first_seq: u64) -> String {
    format!("wal-{first_seq:020}.log")
}

/// Whether any WAL file in `dir` holds more than its header.
pub fn holds_records(dir: &Path) -> Result<bool> {
    for (_, path) in list(dir)? {
        if fs::metadata(&path).map_err(Error::io(&path))?.len() > HEADER_LEN as u64 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(Error::io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every record of the WAL files in `dir` in order, calling `f(seq, document)`,
/// truncating torn tails when `repair` is set. Read-only openers pass `repair = false`.
pub fn replay(dir: &Path, repair: bool, mut f: impl FnMut(u64, &[u8])) -> Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    for (_, path) in list(dir)? {
        stats.files += 1;
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut fh| fh.read_to_end(&mut data))
            .map_err(Error::io(&path))?;
        if data.len() < HEADER_LEN && repair {
            // A file cut before its header was written holds nothing acknowledged.
            truncate(&path, 0)?;
            stats.truncated_bytes += data.len() as u64;
            continue;
        }
        let decoded = decode(&path, &data, |seq, doc| {
            f(seq, doc);
            stats.records += 1;
            stats.last_seq = stats.last_seq.max(seq);
        })?;
        for &(at, len) in &decoded.skipped {
            stats.damaged_bytes += len as u64;
            tracing::error!(file = %path.display(), at, bytes = len, "WAL bytes are damaged; the records they held are lost, the ones after them kept");
        }
        let pos = decoded.end;
        if pos < data.len() {
            stats.truncated_bytes += (data.len() - pos) as u64;
            tracing::warn!(file = %path.display(), at = pos, cut = data.len() - pos, "WAL tail is torn; truncating");
            if repair {
                truncate(&path, pos as u64)?;
            }
        }
    }
    Ok(stats)
}

/// What [`decode`] found in one WAL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Where the last intact record ends: `data.len()` unless the tail is torn.
    pub end: usize,
    /// Damaged regions before `end` that were skipped, as (offset, length): the intact
    /// records after each were kept.
    pub skipped: Vec<(usize, usize)>,
}

/// Decodes the bytes of one WAL file (`path` names it in errors): calls `f(seq,
/// document)` for each intact record in order. Damage in the middle of the file costs
/// only the records it hit: decoding goes on at the next intact record whose sequence
/// number follows the last one seen. A missing header or another format version is an
/// error.
pub fn decode(path: &Path, data: &[u8], mut f: impl FnMut(u64, &[u8])) -> Result<Decoded> {
    if data.len() < HEADER_LEN || &data[..5] != MAGIC {
        return Err(Error::Corrupt {
            what: format!("{} is not a Tracelake WAL file", path.display()),
        });
    }
    if data[5] != VERSION {
        return Err(Error::UnsupportedFormatVersion {
            path: path.to_path_buf(),
            found: u32::from(data[5]),
            supported: u32::from(VERSION),
        });
    }
    // the file's name holds its first sequence number
    let mut last = path
        .file_name()
        .and_then(|n| {
            n.to_str()?
                .strip_prefix("wal-")?
                .strip_suffix(".log")?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |first| first.saturating_sub(1));
    let mut out = Decoded::default();
    let mut pos = HEADER_LEN;
    loop {
        while let Some((seq, doc, len)) = data.get(pos..).and_then(read_record) {
            f(seq, doc);
            last = last.max(seq);
            pos += len;
        }
        out.end = pos;
        match resync(data, pos, last) {
            Some(next) => {
                out.skipped.push((pos, next - pos));
                pos = next;
            }
            None => return Ok(out),
        }
    }
}

/// The next intact record after damage at `from`: one whose sequence number follows
/// `last` by no more than the records the damaged bytes before it could have held
/// (checked before its CRC, so that scanning damaged bytes stays cheap).
fn resync(data: &[u8], from: usize, last: u64) -> Option<usize> {
    (from + 1..data.len()).find(|&p| {
        let most = ((p - from) / (RECORD_HEADER + 8)) as u64 + 1;
        let seq = data
            .get(p + RECORD_HEADER..p + RECORD_HEADER + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes);
        seq.is_some_and(|s| s > last && s - last <= most) && read_record(&data[p..]).is_some()
    })
}

/// Encodes one record (`[len][crc][seq][document]`) onto `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, doc: &[u8]) {
    let len = (8 + doc.len()) as u32;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(doc);
    let crc = crc32fast::hash(&out[start + RECORD_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The header every WAL file starts with.
pub fn file_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..5].copy_from_slice(MAGIC);
    h[5] = VERSION;
    h
}

fn read_record(b: &[u8]) -> Option<(u64, &[u8], usize)> {
    if b.len() < RECORD_HEADER {
        return None;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    if !(8..=MAX_RECORD).contains(&len) || b.len() < RECORD_HEADER + len {
        return None;
    }
    let payload = &b[RECORD_HEADER..RECORD_HEADER + len];
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let seq = u64::from_le_bytes(payload[..8].try_into().ok()?);
    Some((seq, &payload[8..], RECORD_HEADER + len))
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Error::io(path))?;
    f.set_len(len).map_err(Error::io(path))?;
    f.sync_all().map_err(Error::io(path))
}

impl Wal {
    /// Opens the WAL for appending in a new file starting at `next_seq`.
    pub fn create(dir: &Path, next_seq: u64) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let (file, path) = new_file(dir, next_seq, true)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            file: Arc::new(file),
            path,
            first_seq: next_seq,
            buf: Vec::new(),
            bytes: 0,
            retired: Vec::new(),
            rotations: 0,
        })
    }

    /// Buffers one record; [`Wal::write`] hands the buffer to the OS.
    pub fn append(&mut self, seq: u64, doc: &[u8]) {
        encode_record(&mut self.buf, seq, doc);
    }

    /// Writes buffered records to the file (not yet durable: see [`Wal::sync_job`]).
    pub fn write(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = (&*self.file).write_all(&self.buf);
        let len = self.buf.len() as u64;
        self.buf.clear();
        match result {
            Ok(()) => {
                self.bytes += len;
                Ok(())
            }
            Err(e) => {
                // Cut a partial record so that later records stay replayable.
                if let Err(t) = self.file.set_len(self.bytes + HEADER_LEN as u64) {
                    tracing::error!(file = %self.path.display(), error = %t, "cannot cut a failed WAL write");
                }
                Err(Error::io(&self.path)(e))
            }
        }
    }

    /// What to fsync, outside the WAL lock, to make every record written so far durable
    /// (group commit).
    pub fn sync_job(&self) -> SyncJob {
        let mut files = self.retired.clone();
        files.push((Arc::clone(&self.file), self.path.clone()));
        SyncJob {
            files,
            dir: (!self.retired.is_empty()).then(|| self.dir.clone()),
            rotations: self.rotations,
        }
    }

    /// Records that `job` ran: what it covered need not be synced again.
    pub fn synced(&mut self, job: &SyncJob) {
        if job.rotations == self.rotations {
            self.retired.clear();
        }
    }

    /// Bytes written to the current file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Starts a new file whose first record is `next_seq`. No fsync happens here (it runs
    /// under the write lock): the retired file and the new directory entry are synced by
    /// the next [`SyncJob`], before any later record is acknowledged.
    pub fn rotate(&mut self, next_seq: u64) -> Result<()> {
        self.write()?;
        let (file, path) = new_file(&self.dir, next_seq, false)?;
        let old = std::mem::replace(&mut self.file, Arc::new(file));
        let old_path = std::mem::replace(&mut self.path, path);
        self.retired.push((old, old_path));
        self.rotations += 1;
        self.first_seq = next_seq;
        self.bytes = 0;
        Ok(())
    }

    /// Deletes the files older than the current one (their records are in Parquet).
    pub fn remove_older_files(&self) -> Result<()> {
        for (seq, path) in list(&self.dir)? {
            if seq < self.first_seq {
                fs::remove_file(&path).map_err(Error::io(&path))?;
            }
        }
        Ok(())
    }
}

/// Creates (or reopens) the file for `first_seq`, with its header; `durable` fsyncs the
/// file and the directory.
fn new_file(dir: &Path, first_seq: u64, durable: bool) -> Result<(File, PathBuf)> {
    let path = dir.join(file_name(first_seq));
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(Error::io(&path))?;
    if f.seek(SeekFrom::End(0)).map_err(Error::io(&path))? == 0 {
        f.write_all(&file_header()).map_err(Error::io(&path))?;
    }
    if durable {
        f.sync_all().map_err(Error::io(&path))?;
        sync_dir(dir)?;
    }
    Ok((f, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(dir: &Path) -> (Vec<(u64, Vec<u8>)>, ReplayStats) {
        let mut got = Vec::new();
        let stats = replay(dir, true, |s, d| got.push((s, d.to_vec()))).unwrap();
        (got, stats)
    }

    #[test]
    fn replays_and_truncates_a_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::create(&dir, 1).unwrap();
        w.append(1, b"{\"a\":1}");
        w.append(2, b"{\"b\":2}");
        w.write().unwrap();
        w.rotate(3).unwrap();
        w.append(3, b"{\"c\":3}");
        w.write().unwrap();
        drop(w);
        // tear the last record in half
        let last = list(&dir).unwrap().pop().unwrap().1;
        let len = fs::metadata(&last).unwrap().len();
        truncate(&last, len - 4).unwrap();
        let (got, stats) = read_all(&dir);
        assert_eq!(
            got,
            vec![(1, b"{\"a\":1}".to_vec()), (2, b"{\"b\":2}".to_vec())]
        );
        assert_eq!(stats.truncated_bytes, len - 4 - HEADER_LEN as u64);
        // the repaired file replays cleanly
        let (again, stats) = read_all(&dir);
        assert_eq!(again.len(), 2);
        assert_eq!(stats.truncated_bytes, 0);
    }

    #[test]
    fn a_sync_after_rotation_covers_the_retired_file_and_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::create(&dir, 1).unwrap();
        let job = w.sync_job();
        assert_eq!((job.files.len(), job.dir.is_some()), (1, false));
        w.append(1, b"one");
        w.write().unwrap();
        w.rotate(2).unwrap();
        // a job taken before the rotation finishes late: it must not clear the new debt
        w.synced(&job);
        let after = w.sync_job();
        assert_eq!(after.files.len(), 2, "retired file plus the current one");
        assert_eq!(after.dir.as_deref(), Some(dir.as_path()));
        after.run().unwrap();
        w.synced(&after);
        let clean = w.sync_job();
        assert_eq!((clean.files.len(), clean.dir.is_some()), (1, false));
        w.append(2, b"two");
        w.write().unwrap();
        drop(w);
        let (got, _) = read_all(&dir);
        assert_eq!(got, vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
    }

    #[test]
    fn corrupt_record_stops_replay_of_that_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::create(&dir, 1).unwrap();
        w.append(1, b"one");
        w.append(2, b"two");
        w.write().unwrap();
        let path = w.path.clone();
        drop(w);
        let mut data = fs::read(&path).unwrap();
        let n = data.len();
        data[n - 1] ^= 0xff;
        fs::write(&path, &data).unwrap();
        let (got, _) = read_all(&dir);
        assert_eq!(got, vec![(1, b"one".to_vec())]);
    }

    #[test]
    fn damage_in_the_middle_costs_only_the_records_it_hit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = Wal::create(&dir, 10).unwrap();
        for seq in 10..16 {
            w.append(seq, format!("{{\"n\":{seq}}}").as_bytes());
        }
        w.write().unwrap();
        let path = w.path.clone();
        drop(w);
        let clean = fs::read(&path).unwrap();
        let record = (clean.len() - HEADER_LEN) / 6;
        for (what, at) in [
            ("payload", HEADER_LEN + 2 * record + RECORD_HEADER + 9),
            ("length", HEADER_LEN + 2 * record),
            ("sequence number", HEADER_LEN + 2 * record + RECORD_HEADER),
        ] {
            let mut data = clean.clone();
            data[at] ^= 0x5a;
            fs::write(&path, &data).unwrap();
            let (got, stats) = read_all(&dir);
            let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
            assert_eq!(seqs, vec![10, 11, 13, 14, 15], "{what}");
            assert_eq!(stats.damaged_bytes, record as u64, "{what}");
            assert_eq!(stats.truncated_bytes, 0, "{what}");
            // nothing was cut: the damaged file replays the same again
            assert_eq!(fs::read(&path).unwrap(), data, "{what}");
        }
        // damage at the very end is a torn tail: cut
        let mut data = clean.clone();
        let n = data.len();
        data[n - 1] ^= 0x5a;
        fs::write(&path, &data).unwrap();
        let (got, stats) = read_all(&dir);
        assert_eq!(got.len(), 5);
        assert_eq!(stats.truncated_bytes, record as u64);
    }
}
