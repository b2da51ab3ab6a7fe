//! Repository maintenance (prune, check) and storage use.

use std::sync::Arc;

use coffer_application::{DiskStatus, QuotaState, StorageUsage};
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use super::jobs::JobAccepted;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// The share of stored data a check re-reads when none is asked for.
const DEFAULT_CHECK_SHARE: u8 = 10;

/// Where storage use stands against the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum QuotaStateDto {
    /// Below the warning threshold (or no quota).
    Ok,
    /// Past `quota.warning_threshold_mb`.
    Warning,
    /// At or past `quota.max_storage_mb`: new backups are refused (507).
    Exceeded,
}

impl From<QuotaState> for QuotaStateDto {
    fn from(s: QuotaState) -> Self {
        match s {
            QuotaState::Ok => Self::Ok,
            QuotaState::Warning => Self::Warning,
            QuotaState::Exceeded => Self::Exceeded,
        }
    }
}

/// Storage use: the repository's bytes after deduplication and compression, the quota,
/// and the free space of the volume that holds it.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StorageDto {
    /// Bytes the repository occupies (counted as backups and prunes change it).
    pub stored_bytes: u64,
    /// `quota.max_storage_mb` in bytes; absent without a quota.
    pub quota_bytes: Option<u64>,
    /// `quota.warning_threshold_mb` in bytes; absent without a warning threshold.
    pub warning_bytes: Option<u64>,
    pub quota_state: QuotaStateDto,
    /// Whether the repository is on a local volume (a disk or a NAS mount) whose free
    /// space Coffer watches; false for object storage (S3), where the `disk_*` fields
    /// do not apply.
    pub disk_applicable: bool,
    /// Free bytes on the repository's volume; absent when it cannot be read or does not
    /// apply.
    pub disk_free_bytes: Option<u64>,
    /// Size of the repository's volume; absent when it cannot be read.
    pub disk_total_bytes: Option<u64>,
    /// Free space is below `disk.warning_free_mb`.
    pub disk_low: bool,
    /// Free space is below `disk.min_free_mb`: new backups are refused (507 `disk_full`).
    pub disk_below_reserve: bool,
}

impl StorageDto {
    /// Storage use, and the volume's free space when it could be read (`disk`: `None`
    /// when unreadable, `Some(None)` when not applicable).
    #[must_use]
    pub fn new(usage: &StorageUsage, disk: Option<Option<&DiskStatus>>) -> Self {
        let applicable = !matches!(disk, Some(None));
        let disk = disk.flatten();
        Self {
            disk_applicable: applicable,
            stored_bytes: usage.stored_bytes,
            quota_bytes: usage.quota.max_bytes,
            warning_bytes: usage.quota.warning_bytes,
            quota_state: usage.state.into(),
            disk_free_bytes: disk.map(|d| d.available_bytes),
            disk_total_bytes: disk.map(|d| d.total_bytes),
            disk_low: disk.is_some_and(|d| d.low),
            disk_below_reserve: disk.is_some_and(|d| d.below_reserve),
        }
    }
}

pub struct MaintenanceApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Maintenance")]
impl MaintenanceApi {
    /// Start a prune.
    ///
    /// Queues garbage collection (202 with the job): the stored data no snapshot
    /// references is deleted and mostly unused packs are repacked. It waits for running
    /// backups, restores and checks, and they wait for it; a crash at any point leaves
    /// every remaining snapshot complete. 409 `job_running` while a prune is queued or
    /// running.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/maintenance/prune",
        method = "post",
        operation_id = "startPrune"
    )]
    async fn start_prune(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<JobAccepted, ApiError> {
        let job = state.maintenance.start_prune(auth.actor()).await?;
        Ok(JobAccepted::from_status(job))
    }

    /// Start a repository check.
    ///
    /// Queues a check (202 with the job) of every snapshot's structure that also
    /// re-reads and authenticates `share_percent` of the stored data (default 10): the
    /// next slice after the previous check's, so that consecutive checks read
    /// everything. Damage raises a critical alert. 409 `job_running` while a check is
    /// queued or running.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/maintenance/check",
        method = "post",
        operation_id = "startCheck"
    )]
    async fn start_check(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] share_percent: Query<
            Option<u8>,
        >,
    ) -> Result<JobAccepted, ApiError> {
        let job = state
            .maintenance
            .start_check(auth.actor(), share_percent.0.unwrap_or(DEFAULT_CHECK_SHARE))
            .await?;
        Ok(JobAccepted::from_status(job))
    }

    /// Get storage use.
    ///
    /// The repository's stored bytes against the quota, and the free space of its
    /// volume.
    ///
    /// Permission: `view`.
    #[oai(path = "/storage", method = "get", operation_id = "getStorage")]
    async fn storage(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<StorageDto>, ApiError> {
        let (usage, disk) = state.storage.show(auth.actor()).await?;
        Ok(Json(StorageDto::new(
            &usage,
            disk.as_ref().ok().map(Option::as_ref),
        )))
    }
}
