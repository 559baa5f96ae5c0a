//! Request type of latency percentiles (`Engine::percentiles`).

use tracelake_query::search::RangeType;

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
