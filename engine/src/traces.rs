//! Request and response types of trace search (GetTraceSummaries) and retrieval
//! (BatchGetTraces).

use serde::Serialize;
use tracelake_query::search::{Hit, RangeType, TimeRange};
use tracelake_storage::TraceId;

pub use tracelake_query::rootcause::{CauseEntity, CauseException, CauseService, RootCause};
pub use tracelake_query::summary::{
    AnnotationValueWithServices, HttpSummary, SegmentDocument, ServiceId, TraceDocuments,
    TraceSummary, UserSummary,
};

use crate::error::Error;

/// A GetTraceSummaries request. `Default` is: every trace, newest first, 100 per page.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    /// An X-Ray filter expression; `None` matches every trace.
    pub filter: Option<String>,
    /// The window `[start, end)` in epoch seconds, and how it selects traces. `None`: all
    /// time.
    pub range: Option<(f64, f64, RangeType)>,
    /// Page size (default 100).
    pub limit: usize,
    /// `NextToken` of the previous page.
    pub next_token: Option<String>,
    /// FixedRate sampling: the fraction (0..=1) of traces to look at.
    pub sampling_rate: Option<f64>,
}

impl Default for TraceQuery {
    fn default() -> Self {
        TraceQuery {
            filter: None,
            range: None,
            limit: 100,
            next_token: None,
            sampling_rate: None,
        }
    }
}

/// A page of trace summaries, newest first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryPage {
    pub trace_summaries: Vec<TraceSummary>,
    /// Traces looked at (in the range, after sampling), matched or not.
    pub traces_processed_count: u64,
    /// Traces that matched over all pages, when the search evaluated every candidate
    /// (the first page only; an index-limited search stops once its page is full).
    #[serde(skip)]
    pub matched_count: Option<u64>,
    /// Start time (epoch seconds) of this page's newest trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approximate_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A BatchGetTraces answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracesAnswer {
    pub traces: Vec<TraceDocuments>,
    /// Ids that are malformed or not in the store.
    pub unprocessed_trace_ids: Vec<String>,
}

pub(crate) fn time_range(q: &TraceQuery) -> Result<Option<TimeRange>, Error> {
    let Some((start, end, kind)) = q.range else {
        return Ok(None);
    };
    let ns = |s: f64, what: &str| {
        tracelake_storage::segment::time::seconds_to_ns_lossy(s).ok_or_else(|| {
            Error::InvalidArgument(format!("{what} time {s} is not a valid epoch time"))
        })
    };
    let (start_ns, end_ns) = (ns(start, "start")?, ns(end, "end")?);
    if end_ns <= start_ns {
        return Err(Error::InvalidArgument(format!(
            "the end time {end} must be after the start time {start}"
        )));
    }
    Ok(Some(TimeRange {
        start_ns,
        end_ns,
        kind,
    }))
}

/// Checks a FixedRate sampling fraction.
pub(crate) fn check_rate(rate: Option<f64>) -> Result<(), Error> {
    match rate {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(Error::InvalidArgument(format!(
            "the sampling rate must be a fraction from 0 to 1, not {r}"
        ))),
        _ => Ok(()),
    }
}

/// Newest first by trace id (its time, then its random part): a key that never changes
/// as segments arrive, so pages neither repeat nor skip traces.
pub(crate) fn order_key(h: &Hit) -> TraceId {
    h.trace_id
}

pub(crate) fn encode_token(key: TraceId) -> String {
    format!("after:{key}")
}

pub(crate) fn decode_token(token: &str) -> Result<TraceId, Error> {
    token
        .strip_prefix("after:")
        .and_then(TraceId::parse)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("NextToken {token:?} is not one this store made"))
        })
}
