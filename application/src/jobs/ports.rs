//! What the job runner offers the areas (a queue, the live state of jobs) and what it
//! asks of them (an executor per kind of work), with the errors they exchange.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::auth::Actor;
use coffer_domain::engine::{Cancel, Progress};
use coffer_domain::jobs::{JobParams, JobResult};
use coffer_domain::{JobId, SourceId};

use super::JobStatus;
use crate::error::{CodedError, CommonError, ErrorClass};

/// Queues work an area has checked and authorised (permission, subject, room): the
/// area's `start_*` use case ends here.
///
/// Contract: the job is in the catalog's queue, then in the audit trail (`job_queue`);
/// when its audit row cannot be written it is withdrawn (cancelled) and the submit
/// fails. `SubmitError::JobRunning` while a job of the same subject (a source's backup,
/// a prune, a check, a copy to one replica, a restore into or around the same target)
/// is queued or running on any instance.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn submit(&self, actor: &Actor, params: JobParams) -> Result<JobStatus, SubmitError>;
}

/// Does one kind of job's work; each area with long work implements it for its kinds.
///
/// Contract: a cancel is honoured at the next safe point with `JobFailure::Cancelled`;
/// the executor records its own outcome in the audit trail, as its use case does.
#[async_trait]
pub trait JobExecutor: Send + Sync {
    async fn execute(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, JobFailure>;
}

/// How a job's work failed.
#[derive(Debug)]
pub enum JobFailure {
    /// It stopped at a cancel's request.
    Cancelled,
    /// A business failure, recorded with its stable code and message.
    Failed { code: &'static str, message: String },
    /// Unexpected: recorded as `internal`, the detail logged.
    Unexpected(anyhow::Error),
}

impl JobFailure {
    /// Any area's error, by its class.
    pub fn from_error<E: CodedError>(e: E) -> Self {
        match e.class() {
            ErrorClass::Cancelled => Self::Cancelled,
            ErrorClass::Unexpected(_) => Self::Unexpected(anyhow::Error::new(e)),
            ErrorClass::Business | ErrorClass::JobRunning(_) => Self::Failed {
                code: e.code(),
                message: e.to_string(),
            },
        }
    }
}

/// Which backup of a source is queued or running, if any (on any server instance).
#[async_trait]
pub trait ActiveJobs: Send + Sync {
    async fn backup_of(&self, source: SourceId) -> Result<Option<JobId>, CommonError>;
}

/// The jobs running now, with their live progress (the dashboard's).
#[async_trait]
pub trait RunningJobs: Send + Sync {
    async fn running(&self, limit: u64) -> Result<Vec<JobStatus>, CommonError>;
}

/// Why work could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `job_running`: a job of the same subject is queued or running.
    #[error("{message}")]
    JobRunning { job_id: JobId, message: String },
    /// `queue_full`.
    #[error("{0}")]
    QueueFull(String),
    /// `too_many_jobs`: the caller already has as many jobs waiting as one user may.
    #[error("{0}")]
    TooManyJobs(String),
    /// `shutting_down`.
    #[error("the server is shutting down; try again once it is back")]
    ShuttingDown,
}

impl CodedError for SubmitError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::JobRunning { .. } => "job_running",
            Self::QueueFull(_) => "queue_full",
            Self::TooManyJobs(_) => "too_many_jobs",
            Self::ShuttingDown => "shutting_down",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::JobRunning { job_id, .. } => ErrorClass::JobRunning(*job_id),
            Self::QueueFull(_) | Self::TooManyJobs(_) | Self::ShuttingDown => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(SubmitError);

/// Errors of the job records' own use cases (read, list, cancel).
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `job_finished`: the job has already ended.
    #[error("{0}")]
    JobFinished(String),
    /// `invalid_period`: a listing's `from` is after its `to`.
    #[error("{0}")]
    InvalidPeriod(String),
}

impl CodedError for JobsError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::JobFinished(_) => "job_finished",
            Self::InvalidPeriod(_) => "invalid_period",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::JobFinished(_) | Self::InvalidPeriod(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(JobsError);
