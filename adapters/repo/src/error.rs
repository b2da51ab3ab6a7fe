/// Failures of the repository engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The master key does not open the repository.
    #[error("the master key does not open this repository (wrong or replaced key file)")]
    WrongKey,
    /// The repository exists but the master key file does not.
    #[error("{0}")]
    MissingKey(String),
    /// Stored data failed authentication or its checksum.
    #[error("damaged: {0}")]
    Damaged(String),
    /// Stored data is unreadable in structure (truncated, unknown format).
    #[error("corrupt repository: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(#[from] coffer_domain::storage::StorageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    /// A backup's storage budget would be passed.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The repository lock could not be taken or was lost.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
