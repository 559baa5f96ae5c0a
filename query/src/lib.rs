//! Tracelake query layer: the DataFusion side of the store.
//!
//! - [`provider::SpansTable`]: a `TableProvider` over a store snapshot (Parquet files
//!   plus memtable rows), applying upsert resolution where duplicates may exist and
//!   pushing filters into the Parquet scan.
//!
//! Filter expressions, trace summaries and service graphs arrive here with their issues.

pub mod error;
pub mod filter;
pub mod provider;

pub use error::{Error, ErrorKind, Result};
pub use provider::{SnapshotSource, SpansTable};
