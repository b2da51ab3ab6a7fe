//! The errors every area shares, and what every area's error tells the edges.
//!
//! Each area has its own error enum with one variant per stable error code (the `code`
//! the API sends and jobs record); the groups below are the codes several areas share.
//! The HTTP adapter maps every variant to a status, exhaustively; nothing matches on a
//! code's text.

use coffer_domain::JobId;
use coffer_domain::UnknownSnapshot;
use coffer_domain::auth::Forbidden;
use coffer_domain::crypto::CryptoError;
use coffer_domain::engine::EngineFailure;
use coffer_domain::ports::RepoError;

/// Outcomes any use case can have.
#[derive(Debug, thiserror::Error)]
pub enum CommonError {
    /// `forbidden`: the caller's role lacks the permission.
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    /// `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// `conflict`: a uniqueness rule of the catalog (a name taken meanwhile, a snapshot
    /// prefix that matches more than one snapshot).
    #[error("{0}")]
    Conflict(String),
    /// `internal`: what should never happen; the detail is for the log only.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl CommonError {
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::Unexpected(_) => "internal",
        }
    }

    const fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Unexpected(e) => ErrorClass::Unexpected(e),
            Self::Forbidden(_) | Self::NotFound(_) | Self::Conflict(_) => ErrorClass::Business,
        }
    }

    pub(crate) fn unexpected(e: impl std::fmt::Display) -> Self {
        Self::Unexpected(anyhow::anyhow!("{e}"))
    }
}

impl From<RepoError> for CommonError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Conflict(message) => Self::Conflict(message),
            other => Self::Unexpected(anyhow::Error::new(other)),
        }
    }
}

impl From<CryptoError> for CommonError {
    fn from(err: CryptoError) -> Self {
        Self::Unexpected(anyhow::Error::new(err))
    }
}

impl From<UnknownSnapshot> for CommonError {
    fn from(err: UnknownSnapshot) -> Self {
        Self::NotFound(err.to_string())
    }
}

/// Outcomes of work on the repository (the engine), shared by the areas that drive it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// `invalid`: a request the repository cannot carry out (a path that is a file where
    /// a directory is needed, an unsafe entry, a target that is not empty).
    #[error("{0}")]
    Invalid(String),
    /// `damaged`: stored data is damaged; the message names what.
    #[error("{0}")]
    Damaged(String),
    /// `cancelled`: the work stopped at a cancel's request.
    #[error("the operation was cancelled")]
    Cancelled,
    /// `quota_exceeded`: a backup would have passed the storage quota.
    #[error("{0}")]
    QuotaExceeded(String),
    /// `repository_busy`: another process holds the repository (a prune).
    #[error("{0}")]
    RepositoryBusy(String),
    /// `storage_unavailable`: the repository's storage could not be reached or refused
    /// the work; nothing half-done is visible, and trying again later may succeed.
    #[error("{0}")]
    StorageUnavailable(String),
}

impl EngineError {
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Damaged(_) => "damaged",
            Self::Cancelled => "cancelled",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::RepositoryBusy(_) => "repository_busy",
            Self::StorageUnavailable(_) => "storage_unavailable",
        }
    }

    const fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Cancelled => ErrorClass::Cancelled,
            Self::Invalid(_)
            | Self::Damaged(_)
            | Self::QuotaExceeded(_)
            | Self::RepositoryBusy(_)
            | Self::StorageUnavailable(_) => ErrorClass::Business,
        }
    }

    /// An engine failure in these terms, or in the common ones (a missing snapshot or
    /// path is `not_found`; anything else unexpected).
    pub(crate) fn split(failure: EngineFailure) -> Result<Self, CommonError> {
        match failure {
            EngineFailure::NotFound(m) => Err(CommonError::NotFound(m)),
            EngineFailure::Invalid(m) => Ok(Self::Invalid(m)),
            EngineFailure::Damaged(m) => Ok(Self::Damaged(m)),
            EngineFailure::Cancelled => Ok(Self::Cancelled),
            EngineFailure::QuotaExceeded(m) => Ok(Self::QuotaExceeded(m)),
            EngineFailure::Busy(m) => Ok(Self::RepositoryBusy(m)),
            EngineFailure::Unavailable(m) => Ok(Self::StorageUnavailable(m)),
            EngineFailure::Other(m) => Err(CommonError::Unexpected(anyhow::anyhow!(m))),
        }
    }
}

/// How the machinery around a use case treats its error (the job runner, the
/// scheduler, the HTTP adapter's log).
#[derive(Debug)]
pub enum ErrorClass<'a> {
    /// A business outcome, told to the caller as it is.
    Business,
    /// The work stopped at a cancel's request.
    Cancelled,
    /// A job of the same subject is queued or running.
    JobRunning(JobId),
    /// Should never happen: the detail goes to the log, the caller learns `internal`.
    Unexpected(&'a anyhow::Error),
}

/// What every area's error offers: its stable code and its class.
pub trait CodedError: std::error::Error + Send + Sync + 'static {
    /// The stable code (`error.code` of the API, `error.code` of a failed job).
    fn code(&self) -> &'static str;
    fn class(&self) -> ErrorClass<'_>;
}

impl CodedError for CommonError {
    fn code(&self) -> &'static str {
        Self::code(self)
    }

    fn class(&self) -> ErrorClass<'_> {
        Self::class(self)
    }
}

impl CodedError for EngineError {
    fn code(&self) -> &'static str {
        Self::code(self)
    }

    fn class(&self) -> ErrorClass<'_> {
        Self::class(self)
    }
}

/// The conversions every area error with a `Common` variant has: what `?` needs on the
/// ports' errors.
macro_rules! common_conversions {
    ($area:ty) => {
        impl From<coffer_domain::ports::RepoError> for $area {
            fn from(e: coffer_domain::ports::RepoError) -> Self {
                Self::Common(e.into())
            }
        }

        impl From<coffer_domain::auth::Forbidden> for $area {
            fn from(e: coffer_domain::auth::Forbidden) -> Self {
                Self::Common(e.into())
            }
        }

        impl From<anyhow::Error> for $area {
            fn from(e: anyhow::Error) -> Self {
                Self::Common(e.into())
            }
        }

        impl From<coffer_domain::crypto::CryptoError> for $area {
            fn from(e: coffer_domain::crypto::CryptoError) -> Self {
                Self::Common(e.into())
            }
        }

        impl From<coffer_domain::UnknownSnapshot> for $area {
            fn from(e: coffer_domain::UnknownSnapshot) -> Self {
                Self::Common(e.into())
            }
        }
    };
}

/// `From<EngineFailure>` for an area error with `Common` and `Engine` variants.
macro_rules! engine_conversion {
    ($area:ty) => {
        impl From<coffer_domain::engine::EngineFailure> for $area {
            fn from(e: coffer_domain::engine::EngineFailure) -> Self {
                match $crate::error::EngineError::split(e) {
                    Ok(engine) => Self::Engine(engine),
                    Err(common) => Self::Common(common),
                }
            }
        }
    };
}

pub(crate) use {common_conversions, engine_conversion};
