//! Request type of latency percentiles (`Engine::percentiles`).

use tracelake_query::search::RangeType;

use crate::Error;

pub use tracelake_query::percentile::{
    Answered, GroupBy, Metric, Mode, PercentileGroup, Percentiles,
};

/// A percentile request. `Default` is p50/p90/p99 of response times over all time, all
/// segments in one group, fast when possible.
#[derive(Debug, Clone)]
pub struct PercentileQuery {
    /// An X-Ray filter expression selecting traces (forces the exact path).
    pub filter: Option<String>,
    /// The window `[start, end)` in epoch seconds; `None`: all time.
    pub range: Option<(f64, f64)>,
    pub metric: Metric,
    pub by: GroupBy,
    /// Quantiles in [0, 1].
    pub quantiles: Vec<f64>,
    pub mode: Mode,
    /// Also return each group's histogram.
    pub histogram: bool,
}

impl Default for PercentileQuery {
    fn default() -> Self {
        PercentileQuery {
            filter: None,
            range: None,
            metric: Metric::ResponseTime,
            by: GroupBy::All,
            quantiles: vec![0.5, 0.9, 0.99],
            mode: Mode::Auto,
            histogram: false,
        }
    }
}

impl PercentileQuery {
    pub(crate) fn trace_query_range(&self) -> Option<(f64, f64, RangeType)> {
        self.range.map(|(a, b)| (a, b, RangeType::Event))
    }
}

/// Parses a grouping: `all`, `service`, `edge`, `url` (or `http.url`), `annotation:KEY`
/// or `time:PERIOD` (seconds, or a duration such as `5m`, `1h`).
pub fn parse_group_by(text: &str) -> Result<GroupBy, Error> {
    let t = text.trim();
    Ok(match t.split_once(':') {
        None if t == "all" || t.is_empty() => GroupBy::All,
        None if t == "service" => GroupBy::Service,
        None if t == "edge" => GroupBy::Edge,
        None if t == "url" || t == "http.url" => GroupBy::HttpUrl,
        Some(("annotation", key)) if !key.trim().is_empty() => {
            GroupBy::Annotation(key.trim().to_owned())
        }
        Some(("time", p)) => {
            let period_s = match p.trim().parse::<u64>() {
                Ok(s) => s,
                Err(_) => crate::parse_duration(p)
                    .ok()
                    .filter(|d| d.subsec_nanos() == 0)
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "group by {t:?}: expected a period of whole seconds (90, 5m, 1h30m ...)"
                        ))
                    })?
                    .as_secs(),
            };
            if period_s == 0 {
                return Err(Error::InvalidArgument(format!(
                    "group by {t:?}: the period must be at least one second"
                )));
            }
            GroupBy::Time { period_s }
        }
        _ => {
            return Err(Error::InvalidArgument(format!(
                "group by {t:?}: expected all, service, edge, url, annotation:KEY or time:PERIOD"
            )));
        }
    })
}

/// A quantile's name as a percentile, without float noise: 0.9 is `p90`, 0.999 `p99.9`.
pub fn quantile_name(q: f64) -> String {
    let v = (q * 100.0 * 1e6).round() / 1e6;
    format!("p{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groupings_parse_and_bad_ones_say_why() {
        assert_eq!(parse_group_by("all").ok(), Some(GroupBy::All));
        assert_eq!(parse_group_by(" edge ").ok(), Some(GroupBy::Edge));
        assert_eq!(parse_group_by("http.url").ok(), Some(GroupBy::HttpUrl));
        assert_eq!(
            parse_group_by("annotation:tier").ok(),
            Some(GroupBy::Annotation("tier".into()))
        );
        assert_eq!(
            parse_group_by("time:5m").ok(),
            Some(GroupBy::Time { period_s: 300 })
        );
        assert_eq!(
            parse_group_by("time:90").ok(),
            Some(GroupBy::Time { period_s: 90 })
        );
        assert_eq!(
            parse_group_by("time:1h30m").ok(),
            Some(GroupBy::Time { period_s: 5400 })
        );
        for bad in [
            "colour",
            "annotation:",
            "time:0",
            "time:soon",
            "time:90.5s",
            "time:5x",
        ] {
            let e = parse_group_by(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert_eq!(quantile_name(0.5), "p50");
        assert_eq!(quantile_name(0.999), "p99.9");
        assert_eq!(quantile_name(1.0), "p100");
    }
}
