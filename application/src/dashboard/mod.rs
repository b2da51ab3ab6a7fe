//! The dashboard's figures (and the metrics'), in one read. Every figure comes from a
//! maintained counter or an indexed lookup — never from scanning the catalog or the
//! storage — so the answer stays fast with hundreds of thousands of snapshots.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use coffer_domain::SourceId;
use coffer_domain::alerts::{Alert, AlertFilter, SeverityCounts};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::jobs::{JobFilter, JobState};
use coffer_domain::ports::{BackupCatalog, CatalogEntry, CatalogStats, Clock, SourceRepository};
use coffer_domain::retention::Retention;

use crate::alerts::AlertService;
use crate::disk::DiskStatus;
use crate::error::ServiceError;
use crate::jobs::{JobService, JobStatus};
use crate::scheduler::{Scheduler, SchedulerStatus};
use crate::storage::{StorageService, StorageUsage};

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
    pub schedule: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// Its newest snapshot.
    pub last_backup: Option<CatalogEntry>,
    /// The retention rules in force for it.
    pub retention: Retention,
    /// Whether those are the source's own rules rather than the defaults.
    pub retention_overridden: bool,
}

/// Retention as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionStatus {
    /// Retention runs after each successful backup (`retention.enabled`).
    pub enabled: bool,
    pub defaults: Retention,
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

pub struct DashboardService {
    catalog: Arc<dyn BackupCatalog>,
    sources: Arc<dyn SourceRepository>,
    storage: Arc<StorageService>,
    scheduler: Arc<Scheduler>,
    alerts: Arc<AlertService>,
    jobs: Arc<JobService>,
    /// The retention defaults in force (they change when an administrator sets them).
    backup_service: Arc<crate::BackupService>,
    clock: Arc<dyn Clock>,
    disk_reading: Mutex<Option<(DateTime<Utc>, Option<DiskStatus>)>>,
}

impl DashboardService {
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        catalog: Arc<dyn BackupCatalog>,
        sources: Arc<dyn SourceRepository>,
        storage: Arc<StorageService>,
        scheduler: Arc<Scheduler>,
        alerts: Arc<AlertService>,
        jobs: Arc<JobService>,
        backup_service: Arc<crate::BackupService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            sources,
            storage,
            scheduler,
            alerts,
            jobs,
            backup_service,
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
        let reading = match self.storage.disk().check().await {
            Ok(status) => Some(status),
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
    pub async fn overview(&self, actor: &Actor) -> Result<Dashboard, ServiceError> {
        actor.require(Permission::View)?;
        let backups = self.catalog.stats().await?;
        let storage = self.storage.usage().await?;
        let key_exported = self.storage.key_was_exported().await?;
        let latest = self.catalog.latest_per_source().await?;
        let scheduler = self.scheduler.status(actor).await?;
        let sources = self.sources.list().await?;
        let alert_counts = self.alerts.active_counts(actor).await?;
        let alerts = self
            .alerts
            .list(
                actor,
                AlertFilter {
                    limit: ALERTS_SHOWN,
                    ..AlertFilter::default()
                },
            )
            .await?
            .items;
        let running_jobs = self
            .jobs
            .list(
                actor,
                JobFilter {
                    state: Some(JobState::Running),
                    limit: JOBS_SHOWN,
                    ..JobFilter::default()
                },
            )
            .await?
            .items;
        let disk = self.disk().await;
        let protected_bytes = latest.iter().map(|(_, e)| e.size).sum();
        let last_backup_at = latest.iter().map(|(_, e)| e.created_at).max();
        #[allow(clippy::cast_precision_loss)]
        let dedup_ratio = (storage.stored_bytes > 0)
            .then(|| backups.logical_bytes as f64 / storage.stored_bytes as f64);
        let retention = self.backup_service.retention_defaults();
        let sources = sources
            .into_iter()
            .map(|s| {
                let last_backup = latest
                    .iter()
                    .find(|(id, _)| *id == s.id)
                    .map(|(_, e)| e.clone());
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
