//! Repository maintenance: garbage collection (prune) and the whole-repository check,
//! run as jobs (on demand and on the scheduler's timetable) and from the CLI.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::JobId;
use coffer_domain::alerts::{AlertKind, NewAlert, Severity};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{
    Cancel, CheckReport, CheckSlice, EngineFailure, Progress, PruneOptions, PruneReport,
    SnapshotEngine,
};
use coffer_domain::jobs::{JobParams, JobResult};
use coffer_domain::ports::CounterRepository;

use crate::alerts::AlertSink;
use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, EngineError, ErrorClass};
use crate::jobs::{
    DispatchError, JobExecutor, JobFailure, JobQueue, JobStatus, ScheduledMaintenance, SubmitError,
};
use crate::storage::StoredBytes;

/// Errors of garbage collection and checks.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `job_running`, `queue_full`, `shutting_down`.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// `invalid_share`: a check's share outside 1–100 percent.
    #[error("{0}")]
    InvalidShare(String),
}

impl CodedError for MaintenanceError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Submit(e) => e.code(),
            Self::InvalidShare(_) => "invalid_share",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Engine(e) => CodedError::class(e),
            Self::Submit(e) => e.class(),
            Self::InvalidShare(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(MaintenanceError);
crate::error::engine_conversion!(MaintenanceError);

/// The counter that holds the slice the next check reads.
const NEXT_SLICE: &str = "check.next_slice";

/// How many slices a check of `share_percent` of the data per run needs to read
/// everything: `ceil(100 / share)`.
#[must_use]
pub fn slices_for(share_percent: u8) -> u32 {
    let share = u32::from(share_percent.clamp(1, 100));
    100_u32.div_ceil(share)
}

/// What the maintenance area holds of the other areas: ports, never their services.
pub struct MaintenancePorts {
    /// The bytes in storage, set after a prune.
    pub stored: Arc<dyn StoredBytes>,
    pub alerts: Arc<dyn AlertSink>,
    /// Where prunes and checks asked for over the API and by the scheduler wait.
    pub queue: Arc<dyn JobQueue>,
}

pub struct MaintenanceService {
    engine: Arc<dyn SnapshotEngine>,
    /// Where the next check's slice is kept.
    counters: Arc<dyn CounterRepository>,
    ports: MaintenancePorts,
    audit: AuditLog,
    repack_threshold_percent: u8,
}

impl MaintenanceService {
    #[must_use]
    pub fn new(
        engine: Arc<dyn SnapshotEngine>,
        counters: Arc<dyn CounterRepository>,
        ports: MaintenancePorts,
        audit: AuditLog,
        repack_threshold_percent: u8,
    ) -> Self {
        Self {
            engine,
            counters,
            ports,
            audit,
            repack_threshold_percent: repack_threshold_percent.min(100),
        }
    }

    /// Garbage collection. Waits for running backups, restores and checks (of any
    /// process) to finish, and they wait for it. With `dry_run`, reports what it would
    /// do and changes nothing.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `Conflict` (`repository_busy`) when another
    /// prune holds the repository, (`damaged`) when a snapshot cannot be read — nothing
    /// is deleted then; `cancelled`; storage failures.
    pub async fn prune(
        &self,
        actor: &Actor,
        dry_run: bool,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<PruneReport, MaintenanceError> {
        actor.require(Permission::ManageSystem)?;
        let options = PruneOptions {
            repack_threshold_percent: self.repack_threshold_percent,
            dry_run,
        };
        let entry = AuditEntry::new(&actor.username, AuditAction::Prune, &actor.client)
            .resource("repository");
        match self.engine.prune(options, progress, cancel).await {
            Ok(report) => {
                if !dry_run {
                    self.ports.stored.set_stored(report.bytes_after).await?;
                }
                self.audit
                    .record(entry.detail(format!(
                        "{}{} snapshots kept; {} packs deleted, {} repacked ({} new), {} orphaned \
                         packs removed; {} -> {} bytes",
                        if dry_run { "dry run: " } else { "" },
                        report.snapshots,
                        report.packs_deleted,
                        report.packs_repacked,
                        report.packs_written,
                        report.orphan_packs_deleted,
                        report.bytes_before,
                        report.bytes_after
                    )))
                    .await?;
                Ok(report)
            }
            Err(e) => {
                let cancelled = matches!(e, EngineFailure::Cancelled);
                self.audit
                    .record_best_effort(entry.failed().detail(e.to_string()))
                    .await;
                if !cancelled && !dry_run {
                    self.ports
                        .alerts
                        .raise_best_effort(NewAlert::new(
                            AlertKind::PruneFailed,
                            Severity::Warning,
                            format!("garbage collection failed: {e}"),
                        ))
                        .await;
                }
                Err(e.into())
            }
        }
    }

    /// Checks the repository: the structure of every snapshot, and the data of the
    /// next slice of `share_percent` (so that consecutive checks re-read everything
    /// once per `slices_for(share_percent)` runs). Damage raises a critical alert.
    /// Returns the report and the slice read.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `cancelled`; storage failures.
    pub async fn check(
        &self,
        actor: &Actor,
        share_percent: u8,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<(CheckReport, CheckSlice), MaintenanceError> {
        actor.require(Permission::ManageSystem)?;
        let count = slices_for(share_percent);
        let counters = &self.counters;
        let next = u32::try_from(counters.get(NEXT_SLICE).await?.rem_euclid(i64::from(count)))
            .unwrap_or(0);
        let slice = CheckSlice { index: next, count };
        let entry = AuditEntry::new(&actor.username, AuditAction::Check, &actor.client)
            .resource("repository");
        let report = match self.engine.check(Some(slice), progress, cancel).await {
            Ok(report) => report,
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(e.to_string()))
                    .await;
                return Err(e.into());
            }
        };
        counters
            .set(NEXT_SLICE, i64::from((next + 1) % count))
            .await?;
        let summary = format!(
            "{} snapshots, {} trees; data slice {} of {} ({} packs, {} bytes read); {}",
            report.snapshots,
            report.trees,
            next + 1,
            count,
            report.packs_read,
            report.bytes_read,
            if report.ok() {
                "intact".to_owned()
            } else {
                format!(
                    "{} problems, damaged snapshots: {}",
                    report.problems.len(),
                    if report.damaged_snapshots.is_empty() {
                        "none".to_owned()
                    } else {
                        report.damaged_snapshots.join(", ")
                    }
                )
            }
        );
        let entry = entry.detail(summary.clone());
        self.audit
            .record(if report.ok() { entry } else { entry.failed() })
            .await?;
        if !report.ok() {
            self.ports
                .alerts
                .raise_best_effort(NewAlert::new(
                    AlertKind::Damage,
                    Severity::Critical,
                    format!(
                        "the repository check found damage: {}; first problem: {}",
                        summary,
                        report.problems.first().map_or("", String::as_str)
                    ),
                ))
                .await;
        }
        Ok((report, slice))
    }
}

impl MaintenanceService {
    /// Queues a garbage collection of the repository (one at a time).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `JobRunning` while a prune is queued or
    /// running.
    pub async fn start_prune(&self, actor: &Actor) -> Result<JobStatus, MaintenanceError> {
        actor.require(Permission::ManageSystem)?;
        Ok(self.ports.queue.submit(actor, JobParams::Prune).await?)
    }

    /// Queues a repository check that re-reads `share_percent` (1–100) of the stored
    /// data (one at a time).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `InvalidShare` for a share outside 1–100;
    /// `JobRunning` while a check is queued or running.
    pub async fn start_check(
        &self,
        actor: &Actor,
        share_percent: u8,
    ) -> Result<JobStatus, MaintenanceError> {
        actor.require(Permission::ManageSystem)?;
        if !(1..=100).contains(&share_percent) {
            return Err(MaintenanceError::InvalidShare(format!(
                "the share of data to check is 1 to 100 percent, not {share_percent}"
            )));
        }
        Ok(self
            .ports
            .queue
            .submit(actor, JobParams::Check { share_percent })
            .await?)
    }

    async fn run(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, MaintenanceError> {
        match params {
            JobParams::Prune => {
                let r = self.prune(actor, false, progress, cancel).await?;
                Ok(JobResult::of_prune(&r))
            }
            JobParams::Check { share_percent } => {
                let (r, slice) = self.check(actor, *share_percent, progress, cancel).await?;
                Ok(JobResult::of_check(r, slice))
            }
            other => Err(CommonError::Unexpected(anyhow::anyhow!(
                "the maintenance area was handed a {} job",
                other.kind()
            ))
            .into()),
        }
    }
}

#[async_trait]
impl JobExecutor for MaintenanceService {
    async fn execute(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, JobFailure> {
        self.run(actor, params, progress, cancel)
            .await
            .map_err(JobFailure::from_error)
    }
}

#[async_trait]
impl ScheduledMaintenance for MaintenanceService {
    async fn start_scheduled_prune(&self, actor: &Actor) -> Result<JobId, DispatchError> {
        self.start_prune(actor)
            .await
            .map(|status| status.job.id)
            .map_err(DispatchError::from_error)
    }

    async fn start_scheduled_check(
        &self,
        actor: &Actor,
        share_percent: u8,
    ) -> Result<JobId, DispatchError> {
        self.start_check(actor, share_percent)
            .await
            .map(|status| status.job.id)
            .map_err(DispatchError::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::slices_for;

    #[test]
    fn slices_cover_everything_once_per_cycle() {
        assert_eq!(slices_for(100), 1);
        assert_eq!(slices_for(10), 10);
        assert_eq!(slices_for(30), 4);
        assert_eq!(slices_for(1), 100);
        assert_eq!(slices_for(0), 100);
        assert_eq!(slices_for(200), 1);
    }
}
