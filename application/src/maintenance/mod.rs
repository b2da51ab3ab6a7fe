//! Repository maintenance: garbage collection (prune) and the whole-repository check,
//! run as jobs (on demand and on the scheduler's timetable) and from the CLI.

use std::sync::Arc;

use coffer_domain::alerts::{AlertKind, NewAlert, Severity};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{
    Cancel, CheckReport, CheckSlice, EngineFailure, Progress, PruneOptions, PruneReport,
    SnapshotEngine,
};

use crate::audit::AuditLog;
use crate::error::ServiceError;
use crate::storage::StorageService;

/// The counter that holds the slice the next check reads.
const NEXT_SLICE: &str = "check.next_slice";

/// How many slices a check of `share_percent` of the data per run needs to read
/// everything: `ceil(100 / share)`.
#[must_use]
pub fn slices_for(share_percent: u8) -> u32 {
    let share = u32::from(share_percent.clamp(1, 100));
    100_u32.div_ceil(share)
}

pub struct MaintenanceService {
    engine: Arc<dyn SnapshotEngine>,
    storage: Arc<StorageService>,
    audit: AuditLog,
    repack_threshold_percent: u8,
}

impl MaintenanceService {
    #[must_use]
    pub fn new(
        engine: Arc<dyn SnapshotEngine>,
        storage: Arc<StorageService>,
        audit: AuditLog,
        repack_threshold_percent: u8,
    ) -> Self {
        Self {
            engine,
            storage,
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
    ) -> Result<PruneReport, ServiceError> {
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
                    self.storage.set_stored(report.bytes_after).await?;
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
                    self.storage
                        .alerts()
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
    ) -> Result<(CheckReport, CheckSlice), ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let count = slices_for(share_percent);
        let counters = self.storage.counters();
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
            self.storage
                .alerts()
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
