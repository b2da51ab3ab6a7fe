//! The overview: the brief's `GET /api/dashboard`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_application::jobs::Task;
use coffer_application::{Dashboard, SourceOverview};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use super::alerts::AlertDto;
use super::jobs::JobDto;
use super::maintenance::QuotaStateDto;
use super::sources::RetentionDto;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

#[allow(clippy::cast_precision_loss)]
fn ratio(bytes: u64, unit: f64) -> f64 {
    (bytes as f64 / unit * 100.0).round() / 100.0
}

/// Snapshots of one status.
#[derive(Debug, Object)]
pub struct StatusCountDto {
    /// `ok` or `partial`.
    pub status: String,
    pub count: u64,
}

/// The catalog's figures.
#[derive(Debug, Object)]
pub struct BackupTotalsDto {
    /// Every snapshot in the catalog.
    pub total: u64,
    pub by_status: Vec<StatusCountDto>,
    /// Logical bytes of every snapshot (what restoring them all would write).
    pub logical_bytes: u64,
}

/// Storage use against the quota.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StorageUseDto {
    /// Bytes in storage, after deduplication and compression.
    pub stored_bytes: u64,
    /// The same in MiB, rounded to 0.01.
    pub stored_mb: f64,
    /// `quota.max_storage_mb` in bytes; absent without a quota.
    pub quota_bytes: Option<u64>,
    /// `quota.warning_threshold_mb` in bytes; absent without one.
    pub warning_bytes: Option<u64>,
    /// Share of the quota in use, 0–100+ (absent without a quota).
    pub quota_used_percent: Option<f64>,
    pub quota_state: QuotaStateDto,
}

/// The free space of the repository's volume.
#[derive(Debug, Object)]
pub struct DiskDto {
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Free space in GiB, rounded to 0.01.
    pub free_gb: f64,
    pub mount_point: String,
    /// Below `disk.warning_free_mb`.
    pub low: bool,
    /// Below `disk.min_free_mb`: new backups are refused.
    pub below_reserve: bool,
}

/// A source's newest snapshot.
#[derive(Debug, Object)]
pub struct LastBackupDto {
    pub snapshot_id: String,
    pub created_at: DateTime<Utc>,
    /// `ok` or `partial`.
    pub status: String,
    /// Logical bytes.
    pub size: u64,
    pub duration_ms: u64,
}

/// One source: its schedule, last backup and retention.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SourceOverviewDto {
    pub id: i64,
    pub name: String,
    pub path: String,
    /// Scheduled runs are on for this source.
    pub enabled: bool,
    /// Cron expression (five fields, UTC).
    pub schedule: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_backup: Option<LastBackupDto>,
    pub retention: RetentionDto,
    /// The source has its own retention rules (otherwise the defaults apply).
    pub retention_overridden: bool,
}

impl From<SourceOverview> for SourceOverviewDto {
    fn from(s: SourceOverview) -> Self {
        Self {
            id: s.id.get(),
            name: s.name,
            path: s.path,
            enabled: s.enabled,
            schedule: s.schedule.map(|schedule| schedule.as_str().to_owned()),
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_backup: s.last_backup.map(|e| LastBackupDto {
                snapshot_id: e.snapshot_id.to_string(),
                created_at: e.created_at,
                status: e.status.as_str().to_owned(),
                size: e.size,
                duration_ms: e.duration_ms,
            }),
            retention: s.retention.into(),
            retention_overridden: s.retention_overridden,
        }
    }
}

/// A repository task the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum TaskDto {
    Prune,
    Check,
}

/// A scheduled repository task.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TaskScheduleDto {
    pub task: TaskDto,
    /// Cron expression; absent when the task is not scheduled.
    pub schedule: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// check: the share of stored data each run re-reads.
    pub share_percent: Option<u8>,
}

/// The scheduler.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SchedulerOverviewDto {
    /// Schedules run (`scheduler.enabled`).
    pub enabled: bool,
    /// A run missed while the server was down starts once when it is back.
    pub catch_up: bool,
    /// The next scheduled backup of any source.
    pub next_backup_at: Option<DateTime<Utc>>,
    pub tasks: Vec<TaskScheduleDto>,
}

/// Retention as configured.
#[derive(Debug, Object)]
pub struct RetentionOverviewDto {
    /// Applied after each successful backup (`retention.enabled`).
    pub enabled: bool,
    /// The rules of sources without their own.
    pub defaults: RetentionDto,
    /// Sources with their own rules.
    pub overridden_sources: u64,
}

/// Active alerts.
#[derive(Debug, Object)]
pub struct AlertsOverviewDto {
    pub critical: u64,
    pub warning: u64,
    pub info: u64,
    /// The newest active alerts (at most 10).
    pub latest: Vec<AlertDto>,
}

/// Everything the overview shows, in one answer.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct DashboardDto {
    pub generated_at: DateTime<Utc>,
    /// Snapshots in the catalog (the brief's "total backups").
    pub total_backups: u64,
    pub backups: BackupTotalsDto,
    pub storage: StorageUseDto,
    /// Logical bytes of the newest snapshot of every source: what is protected now.
    pub protected_bytes: u64,
    /// Logical bytes of every snapshot per byte stored (absent while nothing is stored).
    pub dedup_ratio: Option<f64>,
    /// Absent when the free space cannot be read.
    pub disk: Option<DiskDto>,
    /// When the newest snapshot of any source was taken.
    pub last_backup_at: Option<DateTime<Utc>>,
    pub sources: Vec<SourceOverviewDto>,
    pub scheduler: SchedulerOverviewDto,
    pub retention: RetentionOverviewDto,
    pub alerts: AlertsOverviewDto,
    /// Jobs running now, with their progress.
    pub running_jobs: Vec<JobDto>,
    /// Whether the current master key has been exported; until it has, losing this
    /// server's key file loses every backup.
    pub key_exported: bool,
}

impl From<Dashboard> for DashboardDto {
    fn from(d: Dashboard) -> Self {
        let storage = d.storage;
        #[allow(clippy::cast_precision_loss)]
        let quota_used_percent = storage
            .quota
            .max_bytes
            .filter(|m| *m > 0)
            .map(|m| (storage.stored_bytes as f64 / m as f64 * 10_000.0).round() / 100.0);
        let next_backup_at = d.sources.iter().filter_map(|s| s.next_run_at).min();
        let overridden_sources = d.sources.iter().filter(|s| s.retention_overridden).count();
        Self {
            generated_at: d.generated_at,
            total_backups: d.backups.total,
            backups: BackupTotalsDto {
                total: d.backups.total,
                by_status: d
                    .backups
                    .count_by_status
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(status, count)| StatusCountDto { status, count })
                    .collect(),
                logical_bytes: d.backups.logical_bytes,
            },
            storage: StorageUseDto {
                stored_bytes: storage.stored_bytes,
                stored_mb: ratio(storage.stored_bytes, MIB),
                quota_bytes: storage.quota.max_bytes,
                warning_bytes: storage.quota.warning_bytes,
                quota_used_percent,
                quota_state: storage.state.into(),
            },
            protected_bytes: d.protected_bytes,
            dedup_ratio: d.dedup_ratio.map(|r| (r * 100.0).round() / 100.0),
            disk: d.disk.map(|disk| DiskDto {
                free_bytes: disk.available_bytes,
                total_bytes: disk.total_bytes,
                free_gb: ratio(disk.available_bytes, GIB),
                mount_point: disk.mount_point.display().to_string(),
                low: disk.low,
                below_reserve: disk.below_reserve,
            }),
            last_backup_at: d.last_backup_at,
            scheduler: SchedulerOverviewDto {
                enabled: d.scheduler.enabled,
                catch_up: d.scheduler.catch_up,
                next_backup_at,
                tasks: d
                    .scheduler
                    .tasks
                    .into_iter()
                    .map(|t| TaskScheduleDto {
                        task: match t.task {
                            Task::Prune => TaskDto::Prune,
                            Task::Check => TaskDto::Check,
                        },
                        schedule: t.schedule,
                        next_run_at: t.next_run_at,
                        last_run_at: t.last_run_at,
                        share_percent: t.share_percent,
                    })
                    .collect(),
            },
            retention: RetentionOverviewDto {
                enabled: d.retention.enabled,
                defaults: d.retention.defaults.into(),
                overridden_sources: overridden_sources as u64,
            },
            sources: d.sources.into_iter().map(Into::into).collect(),
            alerts: AlertsOverviewDto {
                critical: d.alert_counts.critical,
                warning: d.alert_counts.warning,
                info: d.alert_counts.info,
                latest: d.alerts.into_iter().map(Into::into).collect(),
            },
            running_jobs: d.running_jobs.into_iter().map(Into::into).collect(),
            key_exported: d.key_exported,
        }
    }
}

pub struct DashboardApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::System")]
impl DashboardApi {
    /// Get the dashboard.
    ///
    /// The overview in one answer: total backups, storage used against the quota,
    /// logical bytes protected and the dedup ratio, free disk, the last backup of each
    /// source, the scheduler's next runs, retention, active alerts and running jobs with
    /// their progress. Every figure comes from maintained counters or indexed lookups.
    ///
    /// Permission: `view`.
    #[oai(path = "/dashboard", method = "get", operation_id = "getDashboard")]
    async fn dashboard(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<DashboardDto>, ApiError> {
        let dashboard = state.dashboard.overview(auth.actor()).await?;
        Ok(Json(dashboard.into()))
    }
}
