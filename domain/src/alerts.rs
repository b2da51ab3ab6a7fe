//! Alerts: what an operator must know about without watching the dashboard — a backup
//! that failed, a quota or a disk filling up, damage found by a repository check, a prune
//! that failed, a master key never exported — persisted until someone acknowledges them, and sent to a webhook.
//!
//! Two sorts of kind. A *condition* (`quota_warning`, `quota_exceeded`, `disk_low`,
//! `key_not_exported`, `replica_lagging`) is a state that holds for a while: one open alert stands for it,
//! however often it is observed, and it is acknowledged by the system once the state no
//! longer holds. An *event* (`backup_failed`, `backup_partial`, `damage`, `prune_failed`,
//! `replica_failed`)
//! happens once: every occurrence is its own alert.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ports::{Page, RepoError};
use crate::{AlertId, SourceId};

/// How urgent an alert is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const ALL: [Self; 3] = [Self::Info, Self::Warning, Self::Critical];

    /// The stable name stored in the `alerts` table and shown by the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    BackupFailed,
    BackupPartial,
    QuotaWarning,
    QuotaExceeded,
    DiskLow,
    Damage,
    KeyNotExported,
    PruneFailed,
    /// A backup found its source empty or collapsed (an unmounted share?).
    BackupSuspicious,
    /// A copy into a replica failed.
    ReplicaFailed,
    /// A replica is further behind than its limits allow (a condition).
    ReplicaLagging,
}

impl AlertKind {
    pub const ALL: [Self; 11] = [
        Self::BackupFailed,
        Self::BackupPartial,
        Self::QuotaWarning,
        Self::QuotaExceeded,
        Self::DiskLow,
        Self::Damage,
        Self::KeyNotExported,
        Self::PruneFailed,
        Self::BackupSuspicious,
        Self::ReplicaFailed,
        Self::ReplicaLagging,
    ];

    /// The stable name stored in the `alerts` table and shown by the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BackupFailed => "backup_failed",
            Self::BackupPartial => "backup_partial",
            Self::BackupSuspicious => "backup_suspicious",
            Self::QuotaWarning => "quota_warning",
            Self::QuotaExceeded => "quota_exceeded",
            Self::DiskLow => "disk_low",
            Self::Damage => "damage",
            Self::KeyNotExported => "key_not_exported",
            Self::PruneFailed => "prune_failed",
            Self::ReplicaFailed => "replica_failed",
            Self::ReplicaLagging => "replica_lagging",
        }
    }

    /// Whether the kind is a lasting state (one open alert at a time, cleared when it
    /// ends) rather than an event (one alert per occurrence).
    #[must_use]
    pub const fn is_condition(self) -> bool {
        matches!(
            self,
            Self::QuotaWarning
                | Self::QuotaExceeded
                | Self::DiskLow
                | Self::KeyNotExported
                | Self::ReplicaLagging
        )
    }
}

named!(Severity);
named!(AlertKind);

/// An alert to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub severity: Severity,
    pub kind: AlertKind,
    /// For people; never a secret.
    pub message: String,
    /// The source it concerns, when it concerns one.
    pub source_id: Option<SourceId>,
}

impl NewAlert {
    /// An alert about the whole server.
    #[must_use]
    pub fn new(kind: AlertKind, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            kind,
            message: message.into(),
            source_id: None,
        }
    }

    /// The same alert, about one source.
    #[must_use]
    pub const fn for_source(mut self, source_id: SourceId) -> Self {
        self.source_id = Some(source_id);
        self
    }
}

/// A stored alert. It is *active* until acknowledged, by a user or — for a condition
/// that ended — by `system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: AlertId,
    pub severity: Severity,
    pub kind: AlertKind,
    pub message: String,
    /// `None` for server-wide alerts, and once the source is deleted.
    pub source_id: Option<SourceId>,
    pub created_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
}

impl Alert {
    #[must_use]
    pub const fn is_active(&self) -> bool {
        self.acknowledged_at.is_none()
    }
}

/// Which alerts to list. Newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only alerts nobody has acknowledged yet.
    pub active_only: bool,
    pub severity: Option<Severity>,
    /// 0: no limit.
    pub limit: u64,
    pub offset: u64,
}

impl Default for AlertFilter {
    fn default() -> Self {
        Self {
            active_only: true,
            severity: None,
            limit: 50,
            offset: 0,
        }
    }
}

/// How many alerts are active, per severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeverityCounts {
    pub info: u64,
    pub warning: u64,
    pub critical: u64,
}

impl SeverityCounts {
    #[must_use]
    pub const fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Info => self.info,
            Severity::Warning => self.warning,
            Severity::Critical => self.critical,
        }
    }

    #[must_use]
    pub const fn total(&self) -> u64 {
        self.info + self.warning + self.critical
    }
}

/// The stored alerts.
///
/// Contract:
/// - `insert` assigns the next id and stores the alert unacknowledged, created at `now`
///   (kept to microseconds, the precision both databases store).
/// - `get` of a missing id is `Ok(None)`.
/// - `list` is newest first (by creation time, then id), with the total matching the
///   filter.
/// - `find_open` returns the newest unacknowledged alert of that kind whose `source_id`
///   equals the one given (`None` matches only server-wide alerts).
/// - `acknowledge` of a missing id is `Ok(None)`; of an acknowledged alert it changes
///   nothing (the first acknowledgement stands) and returns the alert as stored.
/// - `acknowledge_open` acknowledges every open alert of that kind and source (matched as
///   in `find_open`) and returns how many it changed.
/// - `count_active_by_severity` counts unacknowledged alerts.
/// - `raise_condition` stores `alert` (a condition) unless an open alert of its kind and
///   source (matched as in `find_open`) has at least its severity, and then acknowledges
///   the open ones it supersedes (by `by`, at `now`). Returns the stored alert, or `None`
///   when one already stood. One step for every process sharing the database: instances
///   observing the same condition at once store it once.
#[async_trait]
pub trait AlertRepository: Send + Sync {
    async fn insert(&self, alert: &NewAlert, now: DateTime<Utc>) -> Result<Alert, RepoError>;
    async fn get(&self, id: AlertId) -> Result<Option<Alert>, RepoError>;
    async fn list(&self, filter: &AlertFilter) -> Result<Page<Alert>, RepoError>;
    async fn find_open(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
    ) -> Result<Option<Alert>, RepoError>;
    async fn acknowledge(
        &self,
        id: AlertId,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, RepoError>;
    async fn acknowledge_open(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
    async fn count_active_by_severity(&self) -> Result<SeverityCounts, RepoError>;
    async fn raise_condition(
        &self,
        alert: &NewAlert,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Alert>, RepoError>;
}

/// Why a notification could not be delivered. The message never holds a secret (a
/// webhook URL may carry a token: name its host only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// Tells someone outside Coffer about a new alert (a webhook).
///
/// Contract: `notify` retries as the implementation sees fit and reports the last
/// failure after logging it; it may take long (retries with backoff), so callers hand it
/// to a [`Spawner`](crate::ports::Spawner) and never await it on a backup's path.
#[async_trait]
pub trait AlertNotifier: Send + Sync {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError>;
}

/// Sends a test message through a channel (the email), so that an administrator sees
/// that alerts reach people before one is needed.
#[async_trait]
pub trait NotifyTest: Send + Sync {
    /// Sends it now (no interval applies); returns where it went, for people.
    async fn send_test(&self, requested_by: &str) -> Result<String, NotifyError>;
}

/// Size and free space of a mounted filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    /// What an unprivileged writer can still use.
    pub available_bytes: u64,
    /// Where the filesystem holding the path is mounted.
    pub mount_point: PathBuf,
}

/// Why the free space of a path is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DiskSpaceError(pub String);

/// The free space of the filesystem that holds a path.
///
/// Contract: `space` answers for the filesystem that holds `path` (for a path that does
/// not exist yet, the nearest existing ancestor's); it does quick metadata calls only, so
/// it is synchronous.
pub trait DiskMonitor: Send + Sync {
    fn space(&self, path: &Path) -> Result<DiskSpace, DiskSpaceError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in AlertKind::ALL {
            assert_eq!(k.as_str().parse::<AlertKind>(), Ok(k));
        }
        for s in Severity::ALL {
            assert_eq!(s.to_string().parse::<Severity>(), Ok(s));
        }
        assert!("fatal".parse::<Severity>().is_err());
        assert!("disk_full".parse::<AlertKind>().is_err());
    }

    #[test]
    fn conditions_and_events_are_told_apart() {
        let conditions: Vec<AlertKind> = AlertKind::ALL
            .into_iter()
            .filter(|k| k.is_condition())
            .collect();
        assert_eq!(
            conditions,
            vec![
                AlertKind::QuotaWarning,
                AlertKind::QuotaExceeded,
                AlertKind::DiskLow,
                AlertKind::KeyNotExported,
                AlertKind::ReplicaLagging
            ]
        );
    }

    #[test]
    fn severities_are_ordered_by_urgency() {
        assert!(Severity::Info < Severity::Warning);
        assert!(Severity::Warning < Severity::Critical);
    }

    #[test]
    fn counts_add_up() {
        let c = SeverityCounts {
            info: 1,
            warning: 2,
            critical: 3,
        };
        assert_eq!(c.get(Severity::Warning), 2);
        assert_eq!(c.total(), 6);
    }

    #[test]
    fn a_new_alert_names_its_source() {
        let a = NewAlert::new(AlertKind::BackupFailed, Severity::Critical, "boom")
            .for_source(SourceId::new(4));
        assert_eq!(a.source_id, Some(SourceId::new(4)));
        assert_eq!(a.message, "boom");
    }
}
