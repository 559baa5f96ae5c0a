//! Exact conversion between X-Ray epoch-second floats and integer nanoseconds.
//!
//! SDKs send `start_time` as an `f64` with up to 7 decimals (the Python SDK uses
//! `time.time()`), so microseconds would lose information. Nanoseconds hold every such
//! value exactly: [`seconds_to_ns`] converts through the shortest decimal form of the
//! float, and [`ns_to_seconds`] parses the decimal back, which gives the same `f64`.

/// Largest magnitude accepted: about year 2262 in nanoseconds.
const MAX_SECONDS: f64 = 9.2e9;

/// Converts epoch seconds to nanoseconds when that is exact (the float's shortest
/// decimal form has at most 9 decimals). `None` for non-finite, out-of-range, or
/// over-precise values; callers then keep the original number elsewhere.
pub fn seconds_to_ns(seconds: f64) -> Option<i64> {
    if !seconds.is_finite() || seconds.abs() > MAX_SECONDS {
        return None;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(seconds);
    let ns = parse_decimal_ns(text)?;
    // Guard: the decimal must give back the very same float.
    if ns_to_seconds(ns) == seconds {
        Some(ns)
    } else {
        None
    }
}

/// Nearest nanosecond value, for columns when the exact form is not available.
pub fn seconds_to_ns_lossy(seconds: f64) -> Option<i64> {
    if !seconds.is_finite() || seconds.abs() > MAX_SECONDS {
        return None;
    }
    Some((seconds * 1e9).round() as i64)
}

/// Nanoseconds back to epoch seconds, the nearest `f64` to the exact decimal.
pub fn ns_to_seconds(ns: i64) -> f64 {
    let neg = ns < 0;
    let abs = ns.unsigned_abs();
    let secs = abs / 1_000_000_000;
    let frac = abs % 1_000_000_000;
    let mut s = String::with_capacity(24);
    if neg {
        s.push('-');
    }
    use std::fmt::Write;
    let _ = write!(s, "{secs}.{frac:09}");
    s.parse::<f64>().unwrap_or(f64::NAN)
}

/// Parses the decimal text written by ryu (`123.456`, `1.5e9`, `1e-7`) into nanoseconds,
/// if it has no more than 9 decimals.
fn parse_decimal_ns(text: &str) -> Option<i64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    // digits * 10^(exp - frac_len) seconds = digits * 10^(exp - frac_len + 9) ns
    let mut digits: i128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        if !c.is_ascii_digit() {
            return None;
        }
        digits = digits.checked_mul(10)?.checked_add(i128::from(c - b'0'))?;
        if digits > i128::from(i64::MAX) * 1000 {
            return None;
        }
    }
    let scale = exp - frac_part.len() as i32 + 9;
    let value = if scale >= 0 {
        digits.checked_mul(10i128.checked_pow(scale as u32)?)?
    } else {
        let div = 10i128.checked_pow((-scale) as u32)?;
        if digits % div != 0 {
            return None;
        }
        digits / div
    };
    let value = if neg { -value } else { value };
    i64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sdk_times_are_exact() {
        for v in [
            1795246291.2449157,
            1795245052.254,
            1.795245052254E9,
            0.0,
            1.5,
            1e-7,
        ] {
            let ns = seconds_to_ns(v).unwrap();
            assert_eq!(ns_to_seconds(ns), v, "{v}");
        }
        assert_eq!(
            seconds_to_ns(1795245052.254),
            Some(1_795_245_052_254_000_000)
        );
        assert_eq!(seconds_to_ns(f64::NAN), None);
        assert_eq!(seconds_to_ns(1e300), None);
        // 12 decimals cannot be held in nanoseconds
        assert_eq!(seconds_to_ns(12.345678901234), None);
    }

    proptest! {
        #[test]
        fn realistic_times_round_trip(us in 1_000_000_000_000_000i64..2_000_000_000_000_000i64, extra in 0i64..10) {
            let v = (us as f64) / 1e6 + (extra as f64) * 1e-7;
            if let Some(ns) = seconds_to_ns(v) {
                prop_assert_eq!(ns_to_seconds(ns), v);
            } else {
                // every float of this magnitude has at most 7 decimals in shortest form
                prop_assert!(false, "not exact: {}", v);
            }
        }
    }
}
