//! Latency sketches: DDSketch with a 1% relative-error guarantee, mergeable, with a
//! versioned binary encoding.
//!
//! A value `v > 0` (seconds) falls into bin `i = ceil(log_γ v)` with
//! `γ = (1 + α) / (1 − α)`; every value of bin `i` lies in `(γ^(i−1), γ^i]`, and the
//! bin's representative `2γ^i / (γ + 1)` is within `α` of each of them. Zero, negative
//! and sub-nanosecond values count in a zero bin. Counts are exact, so sketches merge by
//! adding bins, and the sketch of a union is the same whatever the split.
//!
//! **Bound.** [`Sketch::quantile`] interpolates between the order statistics around the
//! rank `q·(n − 1)`, as `quantile_cont` (DuckDB, PostgreSQL) does. Each of the two is
//! within α of its bin's representative, and the interpolation is a positive
//! combination of them, so the answer is within [`RELATIVE_ERROR`] of the exact
//! `quantile_cont`.
//!
//! We keep our own implementation (about 200 lines) rather than a crate: service graph
//! histograms need the bins themselves (SPEC 7.11), the on-disk encoding must be ours to
//! version, and the crates we looked at (`sketches-ddsketch`, `ddsketchy`) expose
//! neither.

use crate::error::{Error, Result};

/// The relative error of every value a sketch reports (α).
pub const RELATIVE_ERROR: f64 = 0.01;
/// Version byte of the encoding.
pub const ENCODING_VERSION: u8 = 1;
/// Values below this (seconds) count as zero.
const MIN_VALUE: f64 = 1e-9;
/// Values above this (seconds, about 31 years) count as this: bins stay within ±1,040.
const MAX_VALUE: f64 = 1e9;
/// Bin indexes a decoder accepts.
const MAX_BIN: i64 = 4000;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)
}

fn ln_gamma() -> f64 {
    gamma().ln()
}

/// A DDSketch of non-negative values (seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sketch {
    /// Index of `counts[0]`.
    offset: i32,
    counts: Vec<u64>,
    zero: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn bin_of(v: f64) -> i32 {
    // |ln v| / ln γ stays far inside i32 for finite v ≥ 1e-9.
    (v.ln() / ln_gamma()).ceil() as i32
}

/// The representative value of bin `i`.
pub fn bin_value(i: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(i) / (g + 1.0)
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// Adds one value (seconds). NaN is ignored; negative values count as zero, values
    /// beyond 10⁹ s as 10⁹ s.
    pub fn add(&mut self, v: f64) {
        self.add_n(v, 1);
    }

    /// Adds `n` copies of a value.
    pub fn add_n(&mut self, v: f64, n: u64) {
        if v.is_nan() || n == 0 {
            return;
        }
        let v = v.clamp(0.0, MAX_VALUE);
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += n;
        self.sum += v * n as f64;
        if v < MIN_VALUE {
            self.zero += n;
            return;
        }
        let i = bin_of(v);
        self.grow_to(i);
        if let Some(c) = self.counts.get_mut((i - self.offset) as usize) {
            *c += n;
        }
    }

    fn grow_to(&mut self, i: i32) {
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(0);
        } else if i < self.offset {
            let extra = (self.offset - i) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, extra));
            self.offset = i;
        } else if (i - self.offset) as usize >= self.counts.len() {
            self.counts.resize((i - self.offset) as usize + 1, 0);
        }
    }

    /// Takes back one value added before. The exact minimum and maximum stay as they
    /// were (they only bound answers, so a stale one is looser, never wrong).
    pub fn remove(&mut self, v: f64) {
        if v.is_nan() || self.count == 0 {
            return;
        }
        let v = v.clamp(0.0, MAX_VALUE);
        let slot = if v < MIN_VALUE {
            Some(&mut self.zero)
        } else {
            let i = bin_of(v) - self.offset;
            usize::try_from(i).ok().and_then(|i| self.counts.get_mut(i))
        };
        if let Some(c) = slot.filter(|c| **c > 0) {
            *c -= 1;
            self.count -= 1;
            self.sum -= v;
        }
        if self.count == 0 {
            *self = Sketch::default();
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        if let Some(last) = other.counts.len().checked_sub(1) {
            self.grow_to(other.offset);
            self.grow_to(other.offset + last as i32);
            let at = (other.offset - self.offset) as usize;
            for (dst, src) in self.counts[at..].iter_mut().zip(&other.counts) {
                *dst = dst.saturating_add(*src);
            }
        }
        // Saturating: sketches decoded from hostile bytes (SQL takes any binary value)
        // may state counts near u64::MAX.
        self.zero = self.zero.saturating_add(other.zero);
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact sum of the values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Exact smallest value (`None` when empty).
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Exact largest value (`None` when empty).
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The value at quantile `q` (0 ≤ q ≤ 1), interpolated like `quantile_cont`, within
    /// [`RELATIVE_ERROR`] of the exact one (see the module documentation); `None` when
    /// empty or when `q` is outside [0, 1].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * (self.count - 1) as f64;
        let lo = rank.floor();
        let a = self.at_rank(lo as u64);
        if rank == lo {
            return Some(a);
        }
        let b = self.at_rank(lo as u64 + 1);
        Some(a + (b - a) * (rank - lo))
    }

    /// The `k`-th smallest value (0-based), within [`RELATIVE_ERROR`].
    fn at_rank(&self, k: u64) -> f64 {
        let mut seen = self.zero;
        if k < seen {
            // Never below the exact minimum, even for a decoded sketch whose zero bin
            // and minimum disagree.
            return self.min.clamp(0.0, MIN_VALUE).max(self.min);
        }
        for (i, &c) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(c);
            if k < seen {
                return bin_value(self.offset + i as i32).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// The non-empty bins, ascending: (representative value in seconds, exact count).
    /// The zero bin reports value 0.
    pub fn bins(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let zero = (self.zero > 0).then_some((0.0, self.zero));
        zero.into_iter().chain(
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(k, &c)| (bin_value(self.offset + k as i32), c)),
        )
    }

    /// Encodes the sketch: version byte, count, zero count, min, max, sum, then the
    /// non-empty bins as (index delta, count) varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 3 * self.counts.len());
        out.push(ENCODING_VERSION);
        put_varint(&mut out, self.count);
        put_varint(&mut out, self.zero);
        for f in [self.min, self.max, self.sum] {
            out.extend_from_slice(&f.to_le_bytes());
        }
        let bins: Vec<(i32, u64)> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(k, &c)| (self.offset + k as i32, c))
            .collect();
        put_varint(&mut out, bins.len() as u64);
        let mut prev = 0i64;
        for (i, c) in bins {
            let d = i64::from(i) - prev;
            put_varint(&mut out, ((d << 1) ^ (d >> 63)) as u64);
            put_varint(&mut out, c);
            prev = i64::from(i);
        }
        out
    }

    /// Decodes [`Sketch::encode`]'s bytes; damaged bytes are an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Sketch> {
        let bad = |why: &str| Error::Corrupt {
            what: format!("latency sketch: {why}"),
        };
        let mut r = Reader { b: bytes, at: 0 };
        let version = r.byte().ok_or_else(|| bad("empty"))?;
        if version != ENCODING_VERSION {
            return Err(bad(&format!(
                "encoding version {version}, this build reads {ENCODING_VERSION}"
            )));
        }
        let count = r.varint().ok_or_else(|| bad("truncated count"))?;
        let zero = r.varint().ok_or_else(|| bad("truncated zero count"))?;
        let mut f = [0.0; 3];
        for x in &mut f {
            *x = r.f64().ok_or_else(|| bad("truncated min/max/sum"))?;
        }
        let n = r.varint().ok_or_else(|| bad("truncated bin count"))?;
        if n > bytes.len() as u64 {
            return Err(bad("more bins than bytes"));
        }
        let mut s = Sketch {
            zero,
            count,
            min: f[0],
            max: f[1],
            sum: f[2],
            ..Sketch::default()
        };
        let ordered = count == 0 || (s.min >= 0.0 && s.min <= s.max && s.max.is_finite());
        if !ordered || !s.sum.is_finite() {
            return Err(bad("min, max or sum out of range"));
        }
        let mut prev: Option<i64> = None;
        let mut total = zero;
        for _ in 0..n {
            let z = r.varint().ok_or_else(|| bad("truncated bin"))?;
            let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
            let i = prev
                .unwrap_or(0)
                .checked_add(d)
                .filter(|i| (-MAX_BIN..=MAX_BIN).contains(i) && prev.is_none_or(|p| *i > p))
                .ok_or_else(|| bad("bin index out of order or range"))?;
            let c = r.varint().ok_or_else(|| bad("truncated bin count"))?;
            total = total.checked_add(c).ok_or_else(|| bad("count overflow"))?;
            s.grow_to(i as i32);
            if let Some(slot) = s.counts.get_mut((i as i32 - s.offset) as usize) {
                *slot += c;
            }
            prev = Some(i);
        }
        if total != count {
            return Err(bad("bin counts do not add up to the count"));
        }
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(s)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn f64(&mut self) -> Option<f64> {
        let raw = self.b.get(self.at..self.at + 8)?;
        self.at += 8;
        Some(f64::from_le_bytes(raw.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact `quantile_cont`: interpolation between the order statistics around the
    /// rank `q·(n−1)`.
    fn quantile_cont(sorted: &[f64], q: f64) -> f64 {
        let rank = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (sorted[rank.floor() as usize], sorted[rank.ceil() as usize]);
        lo + (hi - lo) * (rank - rank.floor())
    }

    fn within(v: f64, exact: f64) -> bool {
        (v - exact).abs() <= exact * RELATIVE_ERROR + MIN_VALUE + 1e-12
    }

    /// Samples of several shapes: uniform, log-normal-ish, bimodal, constant, with zeros.
    fn values() -> impl Strategy<Value = Vec<f64>> {
        let one = prop_oneof![
            (1e-6f64..1e3),
            (-12.0f64..8.0).prop_map(f64::exp),
            prop_oneof![(0.001f64..0.002), (2.0f64..3.0)],
            Just(0.0),
            Just(0.25),
        ];
        prop::collection::vec(one, 1..2000)
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_relative_error_of_the_exact_ones(
            v in values(),
            qs in prop::collection::vec(0.0f64..=1.0, 1..8),
        ) {
            let mut s = Sketch::new();
            for x in &v { s.add(*x); }
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            for q in qs.into_iter().chain([0.0, 0.5, 0.9, 0.99, 1.0]) {
                let got = s.quantile(q).unwrap_or(f64::NAN);
                let exact = quantile_cont(&sorted, q);
                prop_assert!(within(got, exact), "q {q}: {got} not within 1% of {exact}");
            }
            prop_assert_eq!(s.count(), v.len() as u64);
        }

        #[test]
        fn merging_any_split_equals_the_sketch_of_the_whole(
            v in values(),
            cuts in prop::collection::vec(0usize..2000, 0..5),
        ) {
            let mut whole = Sketch::new();
            for x in &v { whole.add(*x); }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (v.len() + 1)).collect();
            cuts.push(0);
            cuts.push(v.len());
            cuts.sort_unstable();
            let mut merged = Sketch::new();
            for w in cuts.windows(2) {
                let mut part = Sketch::new();
                for x in &v[w[0]..w[1]] { part.add(*x); }
                merged.merge(&Sketch::decode(&part.encode()).map_err(|e| TestCaseError::fail(e.to_string()))?);
            }
            prop_assert_eq!(merged.count(), whole.count());
            prop_assert_eq!(merged.bins().collect::<Vec<_>>(), whole.bins().collect::<Vec<_>>());
            for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
                prop_assert_eq!(merged.quantile(q), whole.quantile(q));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Sketch::decode(&b);
        }
    }

    #[test]
    fn removing_values_undoes_adding_them() {
        let mut s = Sketch::new();
        let mut t = Sketch::new();
        for v in [0.0, 0.001, 0.5, 3.0, 120.0] {
            s.add(v);
        }
        for v in [0.001, 120.0] {
            t.add(v);
        }
        for v in [0.0, 0.5, 3.0] {
            s.remove(v);
        }
        assert_eq!(s.count(), 2);
        assert_eq!(s.bins().collect::<Vec<_>>(), t.bins().collect::<Vec<_>>());
        assert!((s.sum() - t.sum()).abs() < 1e-9);
        s.remove(7.0); // never added: nothing changes
        assert_eq!(s.count(), 2);
        s.remove(0.001);
        s.remove(120.0);
        assert_eq!(s, Sketch::new());
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let mut s = Sketch::new();
        for v in [0.0, 0.001, 0.5, 0.5, 3.0, 120.0] {
            s.add(v);
        }
        let bytes = s.encode();
        assert_eq!(Sketch::decode(&bytes).ok(), Some(s.clone()));
        assert!(Sketch::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        let e = Sketch::decode(&wrong).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("version 9")));
    }

    #[test]
    fn bins_cover_every_value_once() {
        let mut s = Sketch::new();
        for k in 1..=1000 {
            s.add(f64::from(k) / 1000.0);
        }
        assert_eq!(s.bins().map(|(_, c)| c).sum::<u64>(), 1000);
        for (v, _) in s.bins() {
            assert!(v > 0.0009 && v < 1.011);
        }
        assert_eq!(s.min(), Some(0.001));
        assert_eq!(s.max(), Some(1.0));
        assert!(Sketch::new().quantile(0.5).is_none());
        assert!(s.quantile(1.5).is_none());
    }
}
