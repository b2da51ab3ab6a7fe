//! The errors use cases return. Each variant is a business outcome the edge (HTTP, CLI)
//! maps to its own terms; `Unexpected` carries what should never happen, for the log.

use coffer_domain::auth::Forbidden;
use coffer_domain::ports::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No valid credentials (or wrong ones; never says which).
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Input that is well-formed but breaks a rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A job already does this (a second backup of one source, say).
    #[error("{message}")]
    JobRunning {
        job_id: coffer_domain::JobId,
        message: String,
    },
    #[error("too many attempts; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// The storage quota or the disk's reserve would be exceeded (`quota_exceeded`,
    /// `disk_full`).
    #[error("{message}")]
    InsufficientStorage { code: &'static str, message: String },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ServiceError {
    /// The stable code of the error, as the API reports it.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict { code, .. }
            | Self::Invalid { code, .. }
            | Self::InsufficientStorage { code, .. } => code,
            Self::JobRunning { .. } => "job_running",
            Self::Throttled { .. } => "throttled",
            Self::Unexpected(_) => "internal",
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl From<RepoError> for ServiceError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Conflict(message) => Self::Conflict {
                code: "conflict",
                message,
            },
            other => Self::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl From<coffer_domain::crypto::CryptoError> for ServiceError {
    fn from(err: coffer_domain::crypto::CryptoError) -> Self {
        Self::Unexpected(anyhow::Error::new(err))
    }
}
