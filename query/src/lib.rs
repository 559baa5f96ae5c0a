//! Tracelake query layer: the DataFusion side of the store.
//!
//! - [`provider::SpansTable`]: a `TableProvider` over a store snapshot (Parquet files
//!   plus memtable rows), applying upsert resolution where duplicates may exist and
//!   pushing filters into the Parquet scan.
//! - [`filter`]: the X-Ray filter-expression language (parser, AST, printer).
//! - [`percentile`]: latency percentiles and histograms, exact (scanning spans) or fast
//!   (merging the rollups' sketches).
//! - [`service_graph`]: GetServiceGraph, GetTraceGraph and time series of service and
//!   edge statistics, from rollups or scans.
//! - [`rollups`]: the `rollups` SQL table and the sketch functions
//!   (`sketch_merge`, `sketch_quantile`, `sketch_count`).
//! - [`lower`]: a parsed expression becomes per-row DataFusion leaves plus a trace-level
//!   program; [`search`] builds the plan that evaluates it per trace ([`trace`] holds one
//!   trace's structure; [`rootcause`] its root causes).
//!
//! [`fuzz`] holds the filter fuzz target's body.
//!
//! What the expressions mean is written down in `docs/filter-semantics.md`.

pub mod error;
pub mod filter;
pub mod fuzz;
pub mod lower;
pub mod percentile;
pub mod provider;
mod prune;
pub mod rollups;
pub mod rootcause;
pub mod search;
pub mod service_graph;
mod source;
pub mod summary;
pub(crate) mod trace;
mod udf;

pub use error::{Error, ErrorKind, Result};
pub use lower::{CompiledFilter, GroupResolver, NoGroups, compile};
pub use provider::{SnapshotSource, SpansTable};
pub use search::{Hit, RangeType, TimeRange};
pub use source::traces_matching_in_partition;
pub use summary::{TraceDocuments, TraceSummary};
