//! Tracelake storage: how X-Ray segment documents become durable, partitioned Parquet.
//!
//! A document's path through this crate:
//! 1. [`segment::framing::split`] cuts an input buffer into documents;
//! 2. [`segment::parse`] parses one (sonic-rs, typed) and validates it, or rejects it
//!    with an X-Ray error code;
//! 3. [`flatten::SpanBuilder`] turns it into rows of the [`schema::spans`] table;
//! 4. [`store::Store`] logs it in the [`wal`], keeps it in the [`memtable`], and flushes
//!    partitions ([`partition`]) into Parquet files ([`datafile`]) with bitmap index
//!    sidecars ([`index`]) and rollups of service and edge statistics with latency
//!    [`sketch`]es ([`rollup`], over each trace's structure: [`graph`]), listed by the
//!    [`manifest`]; point reads decompress pages with one zstd context per thread
//!    (`page`);
//! 5. [`rebuild`] turns rows back into documents, value-equal to what was sent;
//! 6. [`compaction`] merges a partition's small files into large sorted ones, and
//!    [`store::Store::drop_partitions`] and pins serve retention.
//!
//! [`fuzz`] holds the bodies of the fuzz targets over what the crate decodes.
//!
//! This crate never depends on DataFusion; the query crate reads [`snapshot::Snapshot`]s.

pub mod error;
pub mod flatten;
pub mod fuzz;
pub mod rebuild;
pub mod schema;
pub mod segment;

pub use error::{Error, ErrorKind, Result};
pub mod compaction;
pub mod datafile;
pub mod graph;
pub mod index;
pub mod manifest;
pub mod memtable;
mod page;
pub mod partition;
pub mod rollup;
pub mod sketch;
pub mod snapshot;
pub mod store;
pub mod wal;

pub use compaction::CompactionOptions;
pub use partition::PartitionKey;
pub use segment::{Limits, RejectCode, SegmentId, TraceId};
pub use snapshot::Snapshot;
pub use store::{
    CompactionReport, Durability, IngestReport, PartitionStats, Rejection, Store, StoreOptions,
    StoreStats,
};
