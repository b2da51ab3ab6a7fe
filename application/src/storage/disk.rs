//! The free space of the volume that holds the repository: a `disk_low` alert below a
//! warning threshold (critical below the reserve), cleared when space comes back, and new
//! backups refused below the reserve so that a full disk never breaks a backup half-way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::alerts::{AlertKind, DiskMonitor, NewAlert, Severity};

use super::AdmissionError;
use crate::alerts::AlertSink;
use crate::error::CommonError;

/// The volume's free space, read now (the dashboard's); `None` when the repository is
/// not on a local volume (object storage), where free space is not Coffer's to watch.
#[async_trait]
pub trait DiskCheck: Send + Sync {
    async fn check(&self) -> Result<Option<DiskStatus>, CommonError>;
}

const MIB: u64 = 1024 * 1024;

/// The thresholds, in MiB of free space. 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskThresholds {
    /// Below this, a `disk_low` warning.
    pub warning_free_mb: u64,
    /// Below this, `disk_low` is critical and new backups are refused.
    pub min_free_mb: u64,
}

/// How full the volume is, by the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskLevel {
    Ok,
    Low,
    BelowReserve,
}

impl DiskThresholds {
    /// The level of a volume with `available_bytes` free.
    #[must_use]
    pub const fn assess(&self, available_bytes: u64) -> DiskLevel {
        if available_bytes < self.min_free_mb.saturating_mul(MIB) {
            DiskLevel::BelowReserve
        } else if available_bytes < self.warning_free_mb.saturating_mul(MIB) {
            DiskLevel::Low
        } else {
            DiskLevel::Ok
        }
    }
}

/// The volume's space and what the thresholds make of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStatus {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub mount_point: PathBuf,
    /// Below the warning threshold (or the reserve).
    pub low: bool,
    /// Below the reserve: new backups are refused.
    pub below_reserve: bool,
}

/// Watches the storage volume.
pub struct DiskGuard {
    monitor: Arc<dyn DiskMonitor>,
    /// The repository's directory; `None` for object storage (nothing to watch).
    path: Option<PathBuf>,
    thresholds: DiskThresholds,
    alerts: Arc<dyn AlertSink>,
}

impl DiskGuard {
    /// `path` is the repository's directory (its volume is the one watched); `None` for
    /// a repository in object storage, whose free space is the store's business: every
    /// reading is then "not applicable" and no `disk_low` alert is raised.
    #[must_use]
    pub fn new(
        monitor: Arc<dyn DiskMonitor>,
        path: Option<PathBuf>,
        thresholds: DiskThresholds,
        alerts: Arc<dyn AlertSink>,
    ) -> Self {
        Self {
            monitor,
            path,
            thresholds,
            alerts,
        }
    }

    /// The repository's directory, when it is on a local volume.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the free space now, raises `disk_low` (warning, or critical below the
    /// reserve) or clears it when space is back above the warning threshold.
    ///
    /// # Errors
    /// When the free space cannot be read or the alert cannot be stored.
    pub async fn check(&self) -> Result<Option<DiskStatus>, CommonError> {
        let Some(status) = self.read()? else {
            return Ok(None);
        };
        self.report(&status).await?;
        Ok(Some(status))
    }

    /// Refuses a new backup while the volume is below the reserve (and raises or clears
    /// the alert as [`DiskGuard::check`] does). When the free space cannot be read the
    /// backup is let through, with a warning in the log: an unknown answer is no reason
    /// to stop backing up.
    ///
    /// # Errors
    /// `DiskFull` naming the free and the required space.
    pub async fn ensure_room_for_backup(&self) -> Result<(), AdmissionError> {
        let status = match self.read() {
            Ok(Some(status)) => status,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "disk check failed; the backup goes ahead");
                return Ok(());
            }
        };
        if let Err(e) = self.report(&status).await {
            tracing::error!(error = %e, "cannot record the disk alert");
        }
        if status.below_reserve {
            // The mount point goes to the log and the alert, not to API clients.
            tracing::warn!(mount = %status.mount_point.display(), "backup refused: disk below its reserve");
            return Err(AdmissionError::DiskFull(format!(
                "only {} MiB free on the repository's volume; backups need at least {} MiB \
                 free (disk.min_free_mb). Free space on that volume, then try again",
                mib(status.available_bytes),
                self.thresholds.min_free_mb
            )));
        }
        Ok(())
    }

    fn read(&self) -> Result<Option<DiskStatus>, CommonError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let space = self.monitor.space(path).map_err(|e| {
            anyhow::anyhow!("cannot read the free space of {}: {e}", path.display())
        })?;
        let level = self.thresholds.assess(space.available_bytes);
        Ok(Some(DiskStatus {
            total_bytes: space.total_bytes,
            available_bytes: space.available_bytes,
            mount_point: space.mount_point,
            low: level != DiskLevel::Ok,
            below_reserve: level == DiskLevel::BelowReserve,
        }))
    }

    async fn report(&self, status: &DiskStatus) -> Result<(), CommonError> {
        let free = mib(status.available_bytes);
        let mount = status.mount_point.display();
        let alert = if status.below_reserve {
            NewAlert::new(
                AlertKind::DiskLow,
                Severity::Critical,
                format!(
                    "{free} MiB free on {mount}, below the reserve of {} MiB \
                     (disk.min_free_mb): new backups are refused until space is freed",
                    self.thresholds.min_free_mb
                ),
            )
        } else if status.low {
            NewAlert::new(
                AlertKind::DiskLow,
                Severity::Warning,
                format!(
                    "{free} MiB free on {mount}, below the warning threshold of {} MiB \
                     (disk.warning_free_mb)",
                    self.thresholds.warning_free_mb
                ),
            )
        } else {
            self.alerts.clear(AlertKind::DiskLow, None).await?;
            return Ok(());
        };
        self.alerts.raise(alert).await?;
        Ok(())
    }
}

const fn mib(bytes: u64) -> u64 {
    bytes / MIB
}

#[async_trait]
impl DiskCheck for DiskGuard {
    async fn check(&self) -> Result<Option<DiskStatus>, CommonError> {
        Self::check(self).await
    }
}
