//! Hour partitions and their Hive-style directories (`date=YYYY-MM-DD/hour=HH`).

use std::fmt;

use crate::segment::TraceId;

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_SECONDS: i64 = 86_400;

/// An hour partition: hours since the Unix epoch.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct PartitionKey(pub i64);

impl PartitionKey {
    /// The partition of a document (DESIGN "Partitions"): the trace id's embedded time
    /// when it lies within 24 h of the document's start time, so that all segments of a
    /// trace share a partition; otherwise the start time.
    pub fn for_document(trace_id: &TraceId, start_ns: i64) -> PartitionKey {
        let start_s = start_ns.div_euclid(1_000_000_000);
        let embedded = i64::from(trace_id.epoch_seconds());
        let secs = if (embedded - start_s).abs() <= DAY_SECONDS {
            embedded
        } else {
            start_s
        };
        PartitionKey(secs.div_euclid(3600))
    }

    pub fn from_ns(ns: i64) -> PartitionKey {
        PartitionKey(ns.div_euclid(HOUR_NS))
    }

    /// First nanosecond of the hour.
    pub fn start_ns(self) -> i64 {
        self.0.saturating_mul(HOUR_NS)
    }

    /// `(year, month, day, hour)` in UTC.
    pub fn civil(self) -> (i64, u32, u32, u32) {
        let days = self.0.div_euclid(24);
        let hour = self.0.rem_euclid(24) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, hour)
    }

    /// Relative directory of the partition, e.g. `date=2026-11-21/hour=13`.
    pub fn dir_name(self) -> String {
        let (y, m, d, h) = self.civil();
        format!("date={y:04}-{m:02}-{d:02}/hour={h:02}")
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d, h) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}")
    }
}

impl fmt::Debug for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartitionKey({self})")
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories() {
        // 2026-11-21T13:05:00Z = 1795266300
        let k = PartitionKey::from_ns(1_795_266_300 * 1_000_000_000);
        assert_eq!(k.dir_name(), "date=2026-11-21/hour=13");
        assert_eq!(PartitionKey(0).dir_name(), "date=1970-01-01/hour=00");
    }

    #[test]
    fn embedded_time_only_when_plausible() {
        let t = TraceId::parse("1-6b0143fc-5a02990aabf3c62c483652dd").unwrap();
        let start = 1_795_245_052_254_000_000i64; // 0x6b0143fc = 1795245052
        assert_eq!(
            PartitionKey::for_document(&t, start + 3_000_000_000_000),
            PartitionKey(1_795_245_052 / 3600)
        );
        let otel = TraceId::parse("1-ffffffff-0123456789abcdef01234567").unwrap();
        assert_eq!(
            PartitionKey::for_document(&otel, start),
            PartitionKey::from_ns(start)
        );
    }
}
