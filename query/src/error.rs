//! The query error type.

/// Broad classes of query errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Storage(tracelake_storage::ErrorKind),
    /// The query text or plan is wrong (SQL syntax, unknown column, ...).
    InvalidQuery,
    Execution,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] tracelake_storage::Error),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A filter expression that does not parse (the message shows where).
    #[error("{0}")]
    Parse(#[from] crate::filter::ParseError),
    /// A filter expression that parses but cannot be evaluated (unknown group, cycle...).
    #[error("invalid filter expression: {0}")]
    InvalidFilter(String),
    /// A request that cannot be answered as asked (the message says why and what to do).
    #[error("{0}")]
    InvalidRequest(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use datafusion::error::DataFusionError as D;
        match self {
            Error::Storage(e) => ErrorKind::Storage(e.kind()),
            Error::Parse(_) | Error::InvalidFilter(_) | Error::InvalidRequest(_) => {
                ErrorKind::InvalidQuery
            }
            Error::DataFusion(e) => match e.find_root() {
                D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) => {
                    ErrorKind::InvalidQuery
                }
                // a data file that does not read as Parquet, or not at all
                D::ParquetError(_) => ErrorKind::Storage(tracelake_storage::ErrorKind::Corrupt),
                D::ObjectStore(_) | D::IoError(_) => {
                    ErrorKind::Storage(tracelake_storage::ErrorKind::Io)
                }
                D::External(e) => match e.downcast_ref::<tracelake_storage::Error>() {
                    Some(s) => ErrorKind::Storage(s.kind()),
                    None => ErrorKind::Execution,
                },
                _ => ErrorKind::Execution,
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
