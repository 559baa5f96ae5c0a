//! Identifier formats of SPEC 1.3: trace ids and 16-hex segment ids.

use std::fmt;

/// A trace id `1-XXXXXXXX-YYYYYYYYYYYYYYYYYYYYYYYY`, stored as 16 bytes: the 4-byte epoch
/// part followed by the 12-byte random part.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    /// Parses `1-XXXXXXXX-<24 hex>` (hex digits of either case).
    pub fn parse(text: &str) -> Option<TraceId> {
        let b = text.as_bytes();
        if b.len() != 35 || b[0] != b'1' || b[1] != b'-' || b[10] != b'-' {
            return None;
        }
        let mut out = [0u8; 16];
        decode_hex(&b[2..10], &mut out[..4])?;
        decode_hex(&b[11..35], &mut out[4..])?;
        Some(TraceId(out))
    }

    /// The embedded epoch seconds (the 8 hex digits after `1-`).
    pub fn epoch_seconds(&self) -> u32 {
        u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From a 16-byte slice (the stored form).
    pub fn from_slice(bytes: &[u8]) -> Option<TraceId> {
        <[u8; 16]>::try_from(bytes).ok().map(TraceId)
    }

    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("1-")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in &self.0[4..] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

/// A 64-bit segment, subsegment or exception id, written as exactly 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SegmentId(pub u64);

impl SegmentId {
    pub fn parse(text: &str) -> Option<SegmentId> {
        let b = text.as_bytes();
        if b.len() != 16 {
            return None;
        }
        let mut out = [0u8; 8];
        decode_hex(b, &mut out)?;
        Some(SegmentId(u64::from_be_bytes(out)))
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({self})")
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn decode_hex(src: &[u8], dst: &mut [u8]) -> Option<()> {
    if src.len() != dst.len() * 2 {
        return None;
    }
    for (i, pair) in src.chunks_exact(2).enumerate() {
        dst[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_round_trips() {
        let text = "1-6b0148d3-bc5d5331bc30a9b6d37b19bd";
        let id = TraceId::parse(text).unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(id.epoch_seconds(), 0x6b0148d3);
        assert!(TraceId::parse("1-xyz-123").is_none());
        assert!(TraceId::parse("2-6b0148d3-bc5d5331bc30a9b6d37b19bd").is_none());
        assert!(TraceId::parse("1-6b0148d3-bc5d5331bc30a9b6d37b19bg").is_none());
    }

    #[test]
    fn segment_id_round_trips() {
        let id = SegmentId::parse("00f6c664db6624e8").unwrap();
        assert_eq!(id.to_string(), "00f6c664db6624e8");
        assert!(SegmentId::parse("12345").is_none());
        assert!(SegmentId::parse("00f6c664db6624eZ").is_none());
    }
}
