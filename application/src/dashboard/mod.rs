//! The dashboard's figures (and the metrics'), in one read. Every figure comes from a
//! maintained counter or an indexed lookup — never from scanning the catalog or the
//! storage — so the answer stays fast with hundreds of thousands of snapshots. The charts
//! ([`charts`]) read bounded windows of the history beside it.

pub mod charts;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use coffer_domain::SourceId;
use coffer_domain::alerts::{Alert, AlertFilter, AlertRepository, SeverityCounts};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::charts::BackupRuns;
use coffer_domain::ports::{BackupCatalog, CatalogEntry, CatalogStats, Clock, SourceRepository};
use coffer_domain::reports::StorageHistory;
use coffer_domain::retention::Retention;
use coffer_domain::schedule::Schedule;

use crate::error::CommonError;
use crate::jobs::scheduler::SchedulePlan;
use crate::jobs::{JobStatus, RunningJobs, SchedulerStatus, shown_to};
use crate::keys::KeyStatus;
use crate::retention::{RetentionDefaults, RetentionStatus};
use crate::storage::{DiskCheck, DiskStatus, StorageFigures, StorageUsage};

/// Active alerts shown in full on the dashboard (the counts cover all of them).
const ALERTS_SHOWN: u64 = 10;
/// Running jobs shown.
const JOBS_SHOWN: u64 = 50;
/// How long a reading of the free disk space is reused.
const DISK_READING_TTL: TimeDelta = TimeDelta::seconds(10);

/// One source on the dashboard.
#[derive(Debug, Clone)]
pub struct SourceOverview {
    pub id: SourceId,
    pub name: String,
    pub path: String,
    pub enabled: bool,
    pub schedule: Option<Schedule>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// Its newest snapshot.
    pub last_backup: Option<CatalogEntry>,
    /// The retention rules in force for it.
    pub retention: Retention,
    /// Whether those are the source's own rules rather than the defaults.
    pub retention_overridden: bool,
}

/// Everything the overview page shows.
#[derive(Debug, Clone)]
pub struct Dashboard {
    pub generated_at: DateTime<Utc>,
    pub backups: CatalogStats,
    /// Logical bytes of the newest snapshot of every source: what is protected now.
    pub protected_bytes: u64,
    pub storage: StorageUsage,
    /// Logical bytes of every snapshot per byte stored; `None` while nothing is stored.
    pub dedup_ratio: Option<f64>,
    /// `None` when the free space cannot be read.
    pub disk: Option<DiskStatus>,
    pub last_backup_at: Option<DateTime<Utc>>,
    pub sources: Vec<SourceOverview>,
    pub scheduler: SchedulerStatus,
    pub retention: RetentionStatus,
    pub alert_counts: SeverityCounts,
    /// The newest active alerts.
    pub alerts: Vec<Alert>,
    pub running_jobs: Vec<JobStatus>,
    /// Whether the current master key has been exported (the reminder stays up until
    /// it has, however many newer alerts there are).
    pub key_exported: bool,
}

/// What the dashboard reads: the catalog and alert records, and each area's figures
/// through the port it offers. A read model: it changes nothing, and no area uses it.
pub struct DashboardSources {
    pub catalog: Arc<dyn BackupCatalog>,
    pub sources: Arc<dyn SourceRepository>,
    pub alerts: Arc<dyn AlertRepository>,
    pub storage: Arc<dyn StorageFigures>,
    pub disk: Arc<dyn DiskCheck>,
    pub schedule: Arc<dyn SchedulePlan>,
    pub jobs: Arc<dyn RunningJobs>,
    /// The retention defaults in force (they change when an administrator sets them).
    pub retention: Arc<dyn RetentionDefaults>,
    pub keys: Arc<dyn KeyStatus>,
    /// The daily samples of the bytes in storage (the storage chart).
    pub history: Arc<dyn StorageHistory>,
    /// The finished backup runs (the runs charts).
    pub runs: Arc<dyn BackupRuns>,
}

pub struct DashboardService {
    read: DashboardSources,
    clock: Arc<dyn Clock>,
    disk_reading: Mutex<Option<(DateTime<Utc>, Option<DiskStatus>)>>,
}

impl DashboardService {
    #[must_use]
    pub fn new(read: DashboardSources, clock: Arc<dyn Clock>) -> Self {
        Self {
            read,
            clock,
            disk_reading: Mutex::new(None),
        }
    }

    /// The free space, read at most every few seconds (reading it lists every mount).
    async fn disk(&self) -> Option<DiskStatus> {
        let now = self.clock.now();
        if let Some((at, reading)) = self
            .disk_reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            && now - *at < DISK_READING_TTL
        {
            return reading.clone();
        }
        let reading = match self.read.disk.check().await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the free disk space");
                None
            }
        };
        *self
            .disk_reading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((now, reading.clone()));
        reading
    }

    /// The overview.
    ///
    /// # Errors
    /// `Forbidden` without `view`; database failures.
    pub async fn overview(&self, actor: &Actor) -> Result<Dashboard, CommonError> {
        actor.require(Permission::View)?;
        let read = &self.read;
        let backups = read.catalog.stats().await?;
        let storage = read.storage.usage().await?;
        let key_exported = read.keys.key_was_exported().await?;
        let latest = read.catalog.latest_per_source().await?;
        let scheduler = read.schedule.plan().await?;
        let sources = read.sources.list().await?;
        let alert_counts = read.alerts.count_active_by_severity().await?;
        let alerts = read
            .alerts
            .list(&AlertFilter {
                limit: ALERTS_SHOWN,
                ..AlertFilter::default()
            })
            .await?
            .items;
        let running_jobs = read
            .jobs
            .running(JOBS_SHOWN)
            .await?
            .into_iter()
            .map(|s| shown_to(actor, s))
            .collect();
        let may_browse = actor.role.allows(Permission::Restore);
        let disk = self.disk().await;
        let protected_bytes = latest.iter().map(|(_, e)| e.size).sum();
        let last_backup_at = latest.iter().map(|(_, e)| e.created_at).max();
        #[allow(clippy::cast_precision_loss)]
        let dedup_ratio = (storage.stored_bytes > 0)
            .then(|| backups.logical_bytes as f64 / storage.stored_bytes as f64);
        let retention = read.retention.retention_defaults();
        let sources = sources
            .into_iter()
            .map(|s| {
                let last_backup = latest.iter().find(|(id, _)| *id == s.id).map(|(_, e)| {
                    if may_browse {
                        e.clone()
                    } else {
                        e.clone().without_contents()
                    }
                });
                let planned = scheduler.sources.iter().find(|p| p.source_id == s.id);
                SourceOverview {
                    id: s.id,
                    retention: s.retention.unwrap_or(retention.defaults),
                    retention_overridden: s.retention.is_some(),
                    next_run_at: planned.and_then(|p| p.next_run_at),
                    last_run_at: s.last_run_at,
                    name: s.name,
                    path: s.path,
                    enabled: s.enabled,
                    schedule: s.schedule,
                    last_backup,
                }
            })
            .collect();
        Ok(Dashboard {
            generated_at: self.clock.now(),
            backups,
            protected_bytes,
            storage,
            dedup_ratio,
            disk,
            last_backup_at,
            sources,
            scheduler,
            retention,
            alert_counts,
            alerts,
            running_jobs,
            key_exported,
        })
    }
}
