//! Fuzz target bodies for what this crate decodes from untrusted bytes.
//!
//! Each body takes arbitrary bytes and returns `Err` naming a broken invariant; a panic
//! inside one is a bug as well. The `fuzz/` workspace runs them under libFuzzer, and
//! this crate's tests replay the checked-in corpus (`fuzz/corpus/<target>/`) through
//! them, so every input that once crashed stays a regression test.
//!
//! Decoders that check a CRC see mutated bytes as "checksum mismatch" almost always. The
//! file-format bodies therefore read a first byte: odd means the rest is a whole file as
//! found on disk, even means the rest is a body the target frames and checksums first,
//! so mutations reach the parsing behind the checksum.

use std::path::{Path, PathBuf};

use crate::flatten::SpanBuilder;
use crate::index::{Column, Index};
use crate::manifest;
use crate::rebuild::rebuild;
use crate::segment::{self, Limits, framing};
use crate::sketch::Sketch;
use crate::wal;

/// What a body found wrong.
pub type Outcome = std::result::Result<(), String>;

/// The file a file-format body decodes: the input's first byte odd, the rest as found
/// on disk; even, the rest framed and checksummed by `frame` (see the module docs).
fn as_file(data: &[u8], frame: impl FnOnce(&[u8]) -> Vec<u8>) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    Some(if mode % 2 == 1 {
        rest.to_vec()
    } else {
        frame(rest)
    })
}

/// Framing, parsing and flattening: every framing of SPEC 2 is cut by
/// [`framing::split`]; each piece is parsed with sonic-rs and with serde_json (they must
/// agree on accepting it), flattened into span rows, and rebuilt into one document.
pub fn segment(data: &[u8]) -> Outcome {
    let limits = Limits::default();
    for piece in framing::split(data) {
        let Ok(doc) = piece.doc else { continue };
        let fast = segment::parse(&doc, &limits);
        let reference = segment::parse_serde_json(&doc, &limits);
        match (&fast, &reference) {
            (Ok(_), Err(e)) => return Err(format!("sonic-rs accepted, serde_json refused: {e}")),
            (Err(e), Ok(_)) => return Err(format!("serde_json accepted, sonic-rs refused: {e}")),
            _ => {}
        }
        let Ok(parsed) = fast else { continue };
        let mut rows = SpanBuilder::new();
        let appended = rows.append_document(&parsed, 1, &mut |_, _, _| true);
        if appended == 0 {
            return Err("an accepted document gave no rows".into());
        }
        let batch = rows.finish().map_err(|e| format!("flatten: {e}"))?;
        let back = rebuild(&[batch]).map_err(|e| format!("rebuild: {e}"))?;
        if back.is_empty() {
            return Err("rebuild lost the document".into());
        }
    }
    Ok(())
}

/// WAL replay from one file's bytes: records come out in order, each within the input,
/// and re-encoding them gives back exactly the intact prefix.
pub fn wal(data: &[u8]) -> Outcome {
    let Some(file) = as_file(data, |rest| {
        // The rest as records: [u16 len][payload] chunks, framed and checksummed.
        let mut file = wal::file_header().to_vec();
        let mut at = 0;
        let mut seq = 0u64;
        while at + 2 <= rest.len() {
            let len = usize::from(u16::from_le_bytes([rest[at], rest[at + 1]]));
            let end = (at + 2 + len).min(rest.len());
            seq += 1;
            wal::encode_record(&mut file, seq, &rest[at + 2..end]);
            at = end;
        }
        file.extend_from_slice(&rest[at..]);
        file
    }) else {
        return Ok(());
    };
    // (a file's header may hold any reserved bytes: records re-encode behind its own)
    let header = wal::file_header().len();
    let mut again = file[..header.min(file.len())].to_vec();
    let path = Path::new("fuzz.wal");
    let d = match wal::decode(path, &file, |seq, doc| {
        wal::encode_record(&mut again, seq, doc)
    }) {
        Err(_) => return Ok(()),
        Ok(d) => d,
    };
    if d.end > file.len() {
        return Err(format!("records end at {}, past the input", d.end));
    }
    // the records re-encode to the file's bytes up to `end`, less the skipped damage
    let mut kept = file[..header].to_vec();
    let mut at = header;
    for &(from, len) in &d.skipped {
        if from < at || from + len > d.end {
            return Err(format!(
                "skipped {from}+{len} out of order (at {at}, end {})",
                d.end
            ));
        }
        kept.extend_from_slice(&file[at..from]);
        at = from + len;
    }
    kept.extend_from_slice(&file[at..d.end]);
    if again != kept {
        return Err("re-encoded records differ from the input".into());
    }
    Ok(())
}

/// Manifest decoding: anything decoded re-encodes and decodes to the same manifest.
pub fn manifest(data: &[u8]) -> Outcome {
    let Some(file) = as_file(data, manifest::frame) else {
        return Ok(());
    };
    let path = Path::new("fuzz.manifest");
    let Ok(m) = manifest::decode(path, &file) else {
        return Ok(());
    };
    let again = manifest::encode(&m).map_err(|e| format!("re-encoding: {e}"))?;
    let back = manifest::decode(path, &again).map_err(|e| format!("re-decoding: {e}"))?;
    if manifest::encode(&back).map_err(|e| e.to_string())? != again {
        return Err("manifest changed through encode and decode".into());
    }
    Ok(())
}

/// Index sidecar decoding and every look-up on an opened sidecar: rows answered are
/// rows of the file, trace ranges lie inside it, and bitmaps decode or fail cleanly.
pub fn index(data: &[u8]) -> Outcome {
    let Some(file) = as_file(data, crate::index::frame) else {
        return Ok(());
    };
    let rows = crate::index::stated_rows(&file).unwrap_or(0);
    let Ok(ix) = Index::from_bytes(Path::new("fuzz.idx"), file, rows) else {
        return Ok(());
    };
    let _ = ix.verify();
    let in_file = |r: &std::ops::Range<u32>| u64::from(r.end) <= rows && r.start <= r.end;
    for (pos, id) in ix.traces().enumerate() {
        let Some(r) = ix.trace_rows(&id) else {
            return Err(format!("trace {pos} of the directory is not found by id"));
        };
        if !in_file(&r) {
            return Err(format!("trace {pos} has rows {r:?}, the file has {rows}"));
        }
        if let Some(row) = r.clone().next()
            && ix.trace_of_row(row) != Some(id)
        {
            return Err(format!("row {row} does not map back to trace {pos}"));
        }
    }
    for (column, key, value) in ix.terms() {
        if let Ok(bm) = ix.probe(column, key, value)
            && bm.max().is_some_and(|m| u64::from(m) >= rows)
        {
            return Err(format!("a probe answered row {:?} of {rows}", bm.max()));
        }
    }
    let key = b"k".as_slice();
    let hits = ix.probe_numbers(key, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded);
    if hits.max().is_some_and(|m| u64::from(m) >= rows) {
        return Err("a numeric probe answered a row past the file".into());
    }
    let _ = ix.probe(Column::Annotation, key, b"v");
    Ok(())
}

/// Latency-sketch decoding (sketches also arrive from SQL as arbitrary binary values):
/// a decoded sketch answers quantiles in its own range and re-encodes losslessly.
pub fn sketch(data: &[u8]) -> Outcome {
    let Ok(s) = Sketch::decode(data) else {
        return Ok(());
    };
    for q in [0.0, 0.5, 0.99, 1.0] {
        if let (Some(v), Some(lo), Some(hi)) = (s.quantile(q), s.min(), s.max())
            && !(lo..=hi).contains(&v)
        {
            return Err(format!("quantile {q} = {v} outside [{lo}, {hi}]"));
        }
    }
    let again = Sketch::decode(&s.encode()).map_err(|e| format!("re-decoding: {e}"))?;
    if again.encode() != s.encode() {
        return Err("sketch changed through encode and decode".into());
    }
    let mut merged = s.clone();
    merged.merge(&again);
    if merged.count() != s.count().saturating_mul(2) {
        return Err("merging a sketch with itself did not double its count".into());
    }
    Ok(())
}

/// The checked-in inputs of a target (`fuzz/corpus/<target>/` of this source tree),
/// sorted by name; the tests of each crate replay them through the bodies.
pub fn corpus(target: &str) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let dir = checkout().join("fuzz/corpus").join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let bytes = std::fs::read(&path)?;
        out.push((path, bytes));
    }
    out.sort();
    Ok(out)
}

/// The checkout this runs from: the parent of the crate `cargo test` runs (every crate
/// sits at the top of the checkout), else of this crate as it was compiled (a target
/// directory shared between checkouts may hold a build from another one).
fn checkout() -> PathBuf {
    let krate = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    krate.parent().map_or(krate.clone(), Path::to_path_buf)
}

/// Runs every input of `target`'s corpus through `body`, naming the first that fails
/// (an empty or missing corpus fails too).
pub fn replay(target: &str, mut body: impl FnMut(&[u8]) -> Outcome) -> Outcome {
    let inputs = corpus(target).map_err(|e| format!("corpus of {target}: {e}"))?;
    if inputs.is_empty() {
        return Err(format!("the corpus of {target} is empty"));
    }
    for (path, bytes) in inputs {
        body(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        super::corpus(target).unwrap()
    }

    fn replay(target: &str, body: fn(&[u8]) -> Outcome) {
        super::replay(target, body).unwrap();
    }

    #[test]
    fn segment_corpus() {
        replay("segment", segment);
    }

    #[test]
    fn segment_bodies_over_the_shared_fixtures() {
        let shared = checkout().join("../shared/fixtures");
        let mut seen = 0;
        for sub in ["edge", "sdk-python"] {
            for e in std::fs::read_dir(shared.join(sub)).unwrap() {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                segment(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(seen > 20, "only {seen} fixtures");
    }

    #[test]
    fn wal_corpus() {
        replay("wal", wal);
    }

    #[test]
    fn manifest_corpus() {
        replay("manifest", manifest);
    }

    #[test]
    fn index_corpus() {
        replay("index", index);
    }

    #[test]
    fn sketch_corpus() {
        replay("sketch", sketch);
    }

    /// The corpora start from real files, so fuzzing begins behind the format checks.
    #[test]
    fn corpora_hold_decodable_files() {
        let decodes = |target: &str, ok: &dyn Fn(&[u8]) -> bool| {
            let n = corpus(target)
                .iter()
                .filter(|(_, b)| b.first().is_some_and(|m| m % 2 == 1) && ok(&b[1..]))
                .count();
            assert!(n > 0, "no seed of {target} decodes");
        };
        decodes("wal", &|b| {
            wal::decode(Path::new("w"), b, |_, _| {}).is_ok_and(|d| d.end == b.len() && d.end > 8)
        });
        decodes("manifest", &|b| manifest::decode(Path::new("m"), b).is_ok());
        decodes("index", &|b| {
            let rows = crate::index::stated_rows(b).unwrap_or(0);
            rows > 0 && Index::from_bytes(Path::new("i"), b.to_vec(), rows).is_ok()
        });
        assert!(
            corpus("sketch")
                .iter()
                .any(|(_, b)| Sketch::decode(b).is_ok_and(|s| s.count() > 1))
        );
    }

    #[test]
    fn hostile_sketch_and_torn_wal() {
        // A sketch whose zero bin holds values below a stated minimum of 5 s: quantiles
        // must still lie within [min, max].
        let mut s = Sketch::new();
        s.add(0.0);
        s.add(7.0);
        let mut bytes = s.encode();
        bytes[3..11].copy_from_slice(&5.0f64.to_le_bytes());
        assert!(sketch(&bytes).is_ok());
        // A WAL whose re-encoding differs cannot happen; a torn one decodes its prefix.
        let mut file = wal::file_header().to_vec();
        wal::encode_record(&mut file, 7, b"{}");
        let whole = file.len();
        file.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            wal::decode(Path::new("w"), &file, |_, _| {}).unwrap().end,
            whole
        );
    }
}
