//! Request types of the service graph and time series (`Engine::service_graph`,
//! `Engine::trace_graph`, `Engine::time_series`).

pub use tracelake_query::service_graph::{
    Edge, ErrorStatistics, FaultStatistics, ForecastStatistics, HistogramEntry, Service,
    ServiceGraph, Statistics, TimeSeriesPoint,
};

use crate::percentiles::Mode;

/// A GetServiceGraph request. `Default`: all time, every trace, fast when possible.
#[derive(Debug, Clone, Default)]
pub struct GraphQuery {
    /// The window `[start, end)` in epoch seconds; `None`: all time.
    pub range: Option<(f64, f64)>,
    /// Only the traces of this group (name or ARN).
    pub group: Option<String>,
    /// Only the traces matching this filter expression (with `group`: both).
    pub filter: Option<String>,
    pub mode: Mode,
}

/// A GetTimeSeriesServiceStatistics request.
#[derive(Debug, Clone)]
pub struct TimeSeriesQuery {
    pub range: Option<(f64, f64)>,
    pub group: Option<String>,
    pub filter: Option<String>,
    /// `service("name")`, `service(id(name: "n", type: "t"))` or `edge("a", "b")`;
    /// `None`: the requests entering the system (edges from client nodes).
    pub entity_selector: Option<String>,
    /// Seconds per point (default 60).
    pub period_s: u64,
    pub mode: Mode,
    /// Also forecast each point's fault count (`ServiceForecastStatistics`).
    pub forecast: bool,
}

impl Default for TimeSeriesQuery {
    fn default() -> Self {
        TimeSeriesQuery {
            range: None,
            group: None,
            filter: None,
            entity_selector: None,
            period_s: 60,
            mode: Mode::Auto,
            forecast: false,
        }
    }
}
