//! The storage error type.

use std::path::PathBuf;

/// Broad classes of errors, stable for callers (and for C status codes later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Io,
    Corrupt,
    UnsupportedFormatVersion,
    Locked,
    ReadOnly,
    InvalidArgument,
    Internal,
}

/// Errors of the storage layer. Rejected *documents* are not errors: they are reported
/// per document in an ingest report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt data: {what}")]
    Corrupt { what: String },
    #[error("{path}: format version {found} is not supported (this build reads up to {supported})")]
    UnsupportedFormatVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "the store at {path} is already open for writing by another process (lock file {lock}); open it read-only instead"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("the store is open read-only: {operation} needs a writable store")]
    ReadOnly { operation: &'static str },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("Parquet error in {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("the store is closed")]
    Closed,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Corrupt { .. } | Error::Parquet { .. } => ErrorKind::Corrupt,
            Error::UnsupportedFormatVersion { .. } => ErrorKind::UnsupportedFormatVersion,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Arrow(_) | Error::Closed => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
