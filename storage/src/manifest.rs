//! The manifest: the list of live data files, replaced atomically.
//!
//! `MANIFEST-<generation>` holds a 12-byte header (`TLMF` magic, format version u32 LE,
//! CRC32 of the body u32 LE) and a JSON body. A commit writes a temporary file, fsyncs
//! it, renames it into place and fsyncs the directory; the highest generation whose
//! checksum verifies is the current one, so a crash mid-commit leaves the previous
//! manifest in force.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::partition::PartitionKey;

const MAGIC: &[u8; 4] = b"TLMF";
pub const FORMAT_VERSION: u32 = 1;
/// How many older manifests to keep beside the current one.
const KEEP_OLD: usize = 1;

/// One Parquet data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub id: u64,
    pub partition: PartitionKey,
    /// Path relative to the store root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub min_start_ns: i64,
    pub max_start_ns: i64,
    /// Lowest and highest trace id, as 32 hex digits.
    pub min_trace_id: String,
    pub max_trace_id: String,
    /// Highest WAL sequence number (revision) in the file.
    pub max_revision: u64,
    /// The file may hold newer versions of rows that older files of its partition also
    /// hold: readers of the partition resolve upserts (SPEC 7.8) until compaction.
    pub shadows: bool,
    pub format_version: u32,
    /// Version of the file's rollup sidecar ([`crate::rollup`]); 0: it has none
    /// (written before rollups existed, or the rollup could not be built).
    #[serde(default)]
    pub rollup_version: u32,
    /// Some trace of this file also has rows in another file of its partition. Rollups
    /// are per file and edges, roots and inferred nodes need whole traces, so readers
    /// scan such a partition's spans instead of merging its rollups (until compaction
    /// rewrites it).
    #[serde(default)]
    pub shares_traces: bool,
    /// The traces (`1-…` ids) this file shares with older files of its partition,
    /// when known: readers then merge the rollups and correct for these traces alone.
    /// `None`: unknown (too many, or an index was unreadable), and readers scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_traces: Option<Vec<String>>,
}

/// The current state of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    /// Every WAL record with a sequence number up to this one is in a data file.
    pub flushed_seq: u64,
    pub next_file_id: u64,
    pub files: Vec<FileMeta>,
    /// Pinned traces (`1-…` ids, sorted): retention keeps them until they are unpinned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
}

fn name(generation: u64) -> String {
    format!("MANIFEST-{generation:020}")
}

/// The manifest generations under `root` and their files, oldest first.
pub fn generations(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root).map_err(Error::io(root))? {
        let entry = entry.map_err(Error::io(root))?;
        let n = entry.file_name();
        if let Some(g) = n
            .to_string_lossy()
            .strip_prefix("MANIFEST-")
            .and_then(|g| g.parse::<u64>().ok())
        {
            out.push((g, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Decodes a manifest file's bytes.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return Err(Error::Corrupt {
            what: format!("{} is not a manifest", path.display()),
        });
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormatVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let body = &bytes[12..];
    if crc32fast::hash(body) != crc {
        return Err(Error::Corrupt {
            what: format!("{}: checksum mismatch", path.display()),
        });
    }
    let m: Manifest = serde_json::from_slice(body).map_err(|e| Error::Corrupt {
        what: format!("{}: {e}", path.display()),
    })?;
    // A file's path follows from its partition and id: any other (absolute, `..`, a
    // spelling of the same path) is damage, and must never be opened or moved.
    for f in &m.files {
        let expected = crate::datafile::relative_path(f.partition, f.id);
        if f.path != expected {
            return Err(Error::Corrupt {
                what: format!(
                    "{}: file {} has the path {:?}, not the store's {expected:?}",
                    path.display(),
                    f.id,
                    f.path,
                ),
            });
        }
    }
    Ok(m)
}

/// Encodes a manifest into file bytes.
pub fn encode(m: &Manifest) -> Result<Vec<u8>> {
    let body = serde_json::to_vec(m).map_err(|e| Error::Corrupt {
        what: format!("manifest encoding: {e}"),
    })?;
    Ok(frame(&body))
}

/// Frames a manifest body (its JSON) with the magic, version and checksum.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Loads the newest valid manifest under `root`, or an empty one for a new store.
/// Corrupt newer generations are skipped with a warning (a torn commit).
pub fn load(root: &Path) -> Result<Manifest> {
    // A writer in another process may replace generations while we list them: retry.
    for _ in 0..10 {
        match load_once(root) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            other => return other,
        }
    }
    load_once(root)
}

/// Whether `root` holds any manifest generation.
pub fn exists(root: &Path) -> Result<bool> {
    Ok(!generations(root)?.is_empty())
}

/// The newest generation is the store's state. A commit renames a complete, fsynced file
/// into place, so a damaged newest generation is corruption, not a torn write: it is an
/// error, never a silent fall-back to an older state (whose WAL may be gone).
fn load_once(root: &Path) -> Result<Manifest> {
    let all = generations(root)?;
    let Some((_, path)) = all.last() else {
        return Ok(Manifest::default());
    };
    let bytes = fs::read(path).map_err(Error::io(path))?;
    decode(path, &bytes)
}

/// Writes `m` as the next generation atomically, then removes old generations.
pub fn commit(root: &Path, m: &mut Manifest) -> Result<()> {
    m.generation += 1;
    let bytes = encode(m)?;
    let tmp = root.join(format!("{}.tmp", name(m.generation)));
    let dst = root.join(name(m.generation));
    {
        let mut f = File::create(&tmp).map_err(Error::io(&tmp))?;
        f.write_all(&bytes).map_err(Error::io(&tmp))?;
        f.sync_all().map_err(Error::io(&tmp))?;
    }
    fs::rename(&tmp, &dst).map_err(Error::io(&dst))?;
    File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(root))?;
    let all = generations(root)?;
    if all.len() > KEEP_OLD + 1 {
        for (_, p) in &all[..all.len() - KEEP_OLD - 1] {
            let _ = fs::remove_file(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_load_and_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(load(root).unwrap(), Manifest::default());
        let mut m = Manifest {
            flushed_seq: 7,
            next_file_id: 2,
            ..Default::default()
        };
        commit(root, &mut m).unwrap();
        commit(root, &mut m).unwrap();
        assert_eq!(load(root).unwrap().generation, 2);
        // .tmp files of an unfinished commit are not generations
        fs::write(root.join(format!("{}.tmp", name(3))), b"partial").unwrap();
        let got = load(root).unwrap();
        assert_eq!(got.generation, 2);
        assert_eq!(got.flushed_seq, 7);
        // a damaged newest generation is reported, not skipped
        fs::write(root.join(name(3)), b"TLMF\x01\0\0\0garbage").unwrap();
        assert!(matches!(load(root), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn unknown_version_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = encode(&Manifest::default()).unwrap();
        bytes[4] = 9;
        let p = tmp.path().join(name(1));
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            load(tmp.path()),
            Err(Error::UnsupportedFormatVersion { found: 9, .. })
        ));
    }
}
