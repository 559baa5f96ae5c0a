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
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use datafusion::error::DataFusionError as D;
        match self {
            Error::Storage(e) => ErrorKind::Storage(e.kind()),
            Error::DataFusion(e) => match e.find_root() {
                D::SQL(..) | D::Plan(_) | D::SchemaError(..) | D::NotImplemented(_) => {
                    ErrorKind::InvalidQuery
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
