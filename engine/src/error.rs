//! The facade's error type.

/// Broad classes of errors; stable, and mapped to C status codes by the FFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A bad argument: an unknown option, a malformed query, ...
    InvalidArgument,
    Io,
    /// Data on disk is damaged.
    Corrupt,
    /// Data on disk was written by a newer format version.
    UnsupportedFormatVersion,
    /// Another process has the store open for writing.
    Locked,
    /// The engine is read-only or closed.
    ReadOnly,
    Internal,
}

/// Errors of the Tracelake facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] tracelake_storage::Error),
    #[error("query failed: {0}")]
    Query(#[from] tracelake_query::Error),
    #[error("cannot start the query runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the engine is closed")]
    Closed,
    #[error("the query ended without an answer (it panicked or the engine shut down)")]
    QueryAborted,
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use tracelake_query::ErrorKind as Q;
        use tracelake_storage::ErrorKind as S;
        let storage = |k: S| match k {
            S::Io => ErrorKind::Io,
            S::Corrupt => ErrorKind::Corrupt,
            S::UnsupportedFormatVersion => ErrorKind::UnsupportedFormatVersion,
            S::Locked => ErrorKind::Locked,
            S::ReadOnly => ErrorKind::ReadOnly,
            S::InvalidArgument => ErrorKind::InvalidArgument,
            S::Internal => ErrorKind::Internal,
        };
        match self {
            Error::Storage(e) => storage(e.kind()),
            Error::Query(e) => match e.kind() {
                Q::Storage(k) => storage(k),
                Q::InvalidQuery => ErrorKind::InvalidArgument,
                Q::Execution => ErrorKind::Internal,
            },
            Error::Runtime(_) | Error::Arrow(_) | Error::QueryAborted => ErrorKind::Internal,
            Error::Closed => ErrorKind::ReadOnly,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
        }
    }
}
