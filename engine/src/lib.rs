//! Tracelake: an embedded analytics engine and trace store for AWS X-Ray segment
//! documents.
//!
//! ```no_run
//! use tracelake::{Engine, EngineOptions};
//!
//! # fn main() -> Result<(), tracelake::Error> {
//! let engine = Engine::open("/var/lib/myapp/traces", EngineOptions::default())?;
//! // Any framing: one document, a JSON array, JSON lines, daemon datagrams or a
//! // PutTraceSegments body. Bad documents are reported one by one; the rest are stored.
//! let report = engine.ingest(br#"{"name":"api","id":"70de5b6f19ff9a0a",
//!     "trace_id":"1-6b0143fc-5a02990aabf3c62c483652dd",
//!     "start_time":1795245052.254,"end_time":1795245052.31}"#)?;
//! assert_eq!(report.accepted, 1);
//! let result = engine.sql("SELECT name, count(*) AS n FROM spans GROUP BY name")?;
//! println!("{}", result.to_table()?);
//! engine.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! - [`Engine`]: open a store directory, ingest, query with SQL, flush, close.
//! - [`EngineOptions`]: durability, limits, flush thresholds and maintenance policies.
//! - [`Engine::compact`], [`Engine::apply_retention`] ([`RetentionPolicy`],
//!   [`KeepRule`]), [`Engine::pin`]: maintenance on demand (a background thread runs
//!   the same code).
//! - [`QueryResult`]: Arrow record batches with table and JSON renderings.
//! - [`PercentileQuery`] / [`Percentiles`]: latency percentiles, exact or from rollups.
//! - [`GraphQuery`] / [`ServiceGraph`] and [`TimeSeriesQuery`]: the service graph and
//!   time series of service and edge statistics.
//! - [`Error`] / [`ErrorKind`]: one error type for the facade.
//! - [`fuzz`]: the end-to-end fuzz target's body (index against full scan).

mod engine;
mod error;
pub mod fuzz;
mod group;
mod maintenance;
mod percentiles;
mod result;
mod service_graph;
mod traces;

pub use engine::{Engine, EngineOptions, Stats};
pub use error::{Error, ErrorKind};
pub use group::{Group, InsightsConfiguration};
pub use maintenance::{
    Clock, CompactionSummary, Expiry, KeepRule, PartitionRetention, PlannedMerge, RetentionPolicy,
    RetentionReport, SystemClock, parse_duration,
};
pub use percentiles::{
    Answered, GroupBy, Metric, Mode, PercentileGroup, PercentileQuery, Percentiles, parse_group_by,
    quantile_name,
};
pub use result::QueryResult;
pub use service_graph::{
    Edge, ErrorStatistics, FaultStatistics, ForecastStatistics, GraphQuery, HistogramEntry,
    Service, ServiceGraph, Statistics, TimeSeriesPoint, TimeSeriesQuery,
};
pub use tracelake_query::RangeType;
pub use tracelake_storage::{
    CompactionOptions, Durability, IngestReport, Limits, PartitionStats, RejectCode, Rejection,
};
pub use traces::{
    AnnotationValueWithServices, CauseEntity, CauseException, CauseService, HttpSummary, RootCause,
    SegmentDocument, ServiceId, SummaryPage, TraceDocuments, TraceQuery, TraceSummary,
    TracesAnswer, UserSummary,
};

/// The Arrow version results are built with.
pub use arrow;
