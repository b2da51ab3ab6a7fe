//! Storage use and the quota: the bytes the repository occupies (after dedup and
//! compression), kept as a counter that each committed backup raises and each prune sets
//! (never a storage scan per request), recounted from storage on demand; the warning and
//! the limit of `quota.*`; and the admission of new backups (quota and the disk's
//! reserve).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::NaiveDate;
use coffer_domain::alerts::{AlertKind, NewAlert, Severity};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{SnapshotEngine, StorageBudget};
use coffer_domain::ports::Clock;
use coffer_domain::ports::CounterRepository;
use coffer_domain::reports::StorageHistory;
use coffer_domain::units::human_bytes;
use std::sync::OnceLock;

use async_trait::async_trait;

use crate::alerts::AlertSink;
use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};

mod disk;

pub use disk::{DiskCheck, DiskGuard, DiskLevel, DiskStatus, DiskThresholds};

/// Why a backup may not start (or go on): both are HTTP 507.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `quota_exceeded`: the storage quota is used up.
    #[error("{0}")]
    QuotaExceeded(String),
    /// `disk_full`: the repository's volume is below its reserve.
    #[error("{0}")]
    DiskFull(String),
}

impl CodedError for AdmissionError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::DiskFull(_) => "disk_full",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::QuotaExceeded(_) | Self::DiskFull(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(AdmissionError);

/// Admission of backups against the quota and the disk's reserve, and the count of
/// what they store: what the backup area holds.
#[async_trait]
pub trait Admission: Send + Sync {
    /// Whether a new backup may start, and its share of the quota's room; keep it until
    /// the backup's bytes are counted with [`Admission::added`].
    async fn admit_backup(&self) -> Result<Arc<dyn StorageBudget>, AdmissionError>;
    /// A backup committed `bytes` to storage.
    async fn added(&self, bytes: u64) -> Result<(), CommonError>;
    /// A backup of `source` was stopped because it would have passed the quota.
    async fn backup_stopped_by_quota(&self, source: &str);
}

/// The bytes in storage after a prune: what the maintenance area holds.
#[async_trait]
pub trait StoredBytes: Send + Sync {
    async fn set_stored(&self, bytes: u64) -> Result<(), CommonError>;
}

/// Storage use against the quota, for the reports and the dashboard.
#[async_trait]
pub trait StorageFigures: Send + Sync {
    async fn usage(&self) -> Result<StorageUsage, CommonError>;
}

/// The quota, changed at run time: what the settings area holds.
#[async_trait]
pub trait QuotaControl: Send + Sync {
    /// Puts a quota in force without touching the alerts (start-up).
    fn put_quota(&self, quota: Quota);
    /// Puts a quota in force and brings the quota's alerts up to date.
    async fn set_quota(&self, quota: Quota) -> Result<StorageUsage, CommonError>;
}

/// The counter of bytes in storage.
pub const STORED_BYTES: &str = "storage.stored_bytes";
/// Set to 1 once `STORED_BYTES` has been counted from storage (a repository that
/// predates the counter is counted once at start-up).
const COUNTED: &str = "storage.counted";

const MIB: u64 = 1024 * 1024;

/// `quota.*` in bytes; `None` turns a limit off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_bytes: Option<u64>,
    pub warning_bytes: Option<u64>,
}

impl Quota {
    /// From the settings' MiB, where 0 means "none".
    #[must_use]
    pub const fn from_mib(max_mb: u64, warning_mb: u64) -> Self {
        Self {
            max_bytes: if max_mb == 0 {
                None
            } else {
                Some(max_mb.saturating_mul(MIB))
            },
            warning_bytes: if warning_mb == 0 {
                None
            } else {
                Some(warning_mb.saturating_mul(MIB))
            },
        }
    }

    /// Where `stored` bytes stand.
    #[must_use]
    pub fn state(&self, stored: u64) -> QuotaState {
        if self.max_bytes.is_some_and(|max| stored >= max) {
            QuotaState::Exceeded
        } else if self.warning_bytes.is_some_and(|w| stored >= w) {
            QuotaState::Warning
        } else {
            QuotaState::Ok
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaState {
    Ok,
    Warning,
    Exceeded,
}

impl QuotaState {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Exceeded => "exceeded",
        }
    }
}

/// Storage use against the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageUsage {
    pub stored_bytes: u64,
    pub quota: Quota,
    pub state: QuotaState,
}

/// The quota's room, shared by every backup running at once: what is stored (a mirror of
/// the counter) and what running backups have taken but not yet committed.
#[derive(Debug)]
struct Room {
    /// The quota in bytes; [`NO_MAX`] when there is none. An administrator may change it
    /// while backups run: they are held to the new value from their next chunk on.
    max: AtomicU64,
    stored: AtomicU64,
    in_flight: Mutex<u64>,
}

/// One backup's share of the quota's room. What it took stays taken until it is
/// dropped; by then a committed backup's bytes have been added to `stored`.
#[derive(Debug)]
pub struct Allowance {
    room: Arc<Room>,
    taken: AtomicU64,
}

/// `Room::max` when there is no quota.
const NO_MAX: u64 = u64::MAX;

impl StorageBudget for Allowance {
    fn try_take(&self, bytes: u64) -> bool {
        // Counted with or without a quota: one set while backups run must see what they
        // have in flight.
        let mut in_flight = self
            .room
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let max = self.room.max.load(Ordering::SeqCst);
        let stored = self.room.stored.load(Ordering::SeqCst);
        if max != NO_MAX && stored.saturating_add(*in_flight).saturating_add(bytes) > max {
            return false;
        }
        *in_flight += bytes;
        self.taken.fetch_add(bytes, Ordering::SeqCst);
        true
    }
}

impl Drop for Allowance {
    fn drop(&mut self) {
        let mut in_flight = self
            .room
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *in_flight = in_flight.saturating_sub(self.taken.load(Ordering::SeqCst));
    }
}

pub struct StorageService {
    room: Arc<Room>,
    counters: Arc<dyn CounterRepository>,
    engine: Arc<dyn SnapshotEngine>,
    alerts: Arc<dyn AlertSink>,
    disk: Arc<DiskGuard>,
    quota: RwLock<Quota>,
    audit: AuditLog,
    /// Where each change of the counter is sampled, once a day kept (the reports' chart
    /// of stored bytes); set by [`StorageService::with_history`].
    history: OnceLock<(Arc<dyn StorageHistory>, Arc<dyn Clock>)>,
    /// Held from each change of the counter to its sample, so that samples are recorded
    /// in the order of the changes and the day's last sample is the counter's value (two
    /// backups committing at once could otherwise record theirs out of order, the stale
    /// one last). Holds the day this process last recorded a sample.
    sampling: futures::lock::Mutex<Option<NaiveDate>>,
}

impl StorageService {
    #[must_use]
    pub fn new(
        counters: Arc<dyn CounterRepository>,
        engine: Arc<dyn SnapshotEngine>,
        alerts: Arc<dyn AlertSink>,
        disk: Arc<DiskGuard>,
        quota: Quota,
        audit: AuditLog,
    ) -> Self {
        Self {
            room: Arc::new(Room {
                max: AtomicU64::new(quota.max_bytes.unwrap_or(NO_MAX)),
                stored: AtomicU64::new(0),
                in_flight: Mutex::new(0),
            }),
            counters,
            engine,
            alerts,
            disk,
            quota: RwLock::new(quota),
            audit,
            history: OnceLock::new(),
            sampling: futures::lock::Mutex::new(None),
        }
    }

    /// Records the bytes in storage into `history` (the day's sample, by `clock`)
    /// whenever the counter is set or raised, and at start-up.
    #[must_use]
    pub fn with_history(self, history: Arc<dyn StorageHistory>, clock: Arc<dyn Clock>) -> Self {
        let _ = self.history.set((history, clock));
        self
    }

    /// Today's sample of the bytes in storage; `sampled` is the guard of
    /// [`StorageService::sampling`], held since the counter was changed. A failure is
    /// logged: the history is a report's chart, never a reason to fail the work that
    /// changed the counter.
    async fn sample(&self, sampled: &mut Option<NaiveDate>, stored: u64) {
        if let Some((history, clock)) = self.history.get() {
            let today = clock.now().date_naive();
            match history.record(today, stored).await {
                Ok(()) => *sampled = Some(today),
                Err(e) => tracing::warn!(error = %e, "cannot record the daily storage sample"),
            }
        }
    }

    /// Records today's sample of the bytes in storage unless this process has recorded
    /// one today already; called periodically while the server runs, so that each day
    /// it runs has a sample even when nothing changed the counter. Failures are logged.
    pub async fn sample_daily(&self) {
        let Some((_, clock)) = self.history.get() else {
            return;
        };
        let mut sampled = self.sampling.lock().await;
        if *sampled == Some(clock.now().date_naive()) {
            return;
        }
        match self.counters.get(STORED_BYTES).await {
            Ok(stored) => {
                self.sample(&mut sampled, u64::try_from(stored).unwrap_or(0))
                    .await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the bytes in storage to sample them"),
        }
    }

    #[must_use]
    pub fn disk(&self) -> &Arc<DiskGuard> {
        &self.disk
    }

    /// The quota in force.
    #[must_use]
    pub fn quota(&self) -> Quota {
        *self.quota.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a new quota in force (an administrator changed it): new backups are admitted
    /// against it, running ones are held to it from their next chunk on, and the quota's
    /// alerts are brought up to date at once.
    ///
    /// # Errors
    /// Database failures reading the stored bytes (the quota is in force regardless).
    pub async fn set_quota(&self, quota: Quota) -> Result<StorageUsage, CommonError> {
        self.put_quota(quota);
        let usage = self.usage().await?;
        self.evaluate(usage.stored_bytes).await;
        Ok(usage)
    }

    /// Puts a quota in force without touching the database or the alerts: for start-up,
    /// where [`StorageService::init`] brings the alerts up to date once the stored bytes
    /// are known.
    pub fn put_quota(&self, quota: Quota) {
        *self.quota.write().unwrap_or_else(PoisonError::into_inner) = quota;
        self.room
            .max
            .store(quota.max_bytes.unwrap_or(NO_MAX), Ordering::SeqCst);
    }

    /// Counts the repository once if its counter has never been set (a repository made
    /// before the counter existed); then the quota's alerts are brought up to date.
    ///
    /// # Errors
    /// Storage or database failures.
    pub async fn init(&self) -> Result<StorageUsage, CommonError> {
        if self.counters.get(COUNTED).await? == 0 {
            let bytes = self
                .engine
                .stored_bytes()
                .await
                .map_err(CommonError::unexpected)?;
            self.counters.set(STORED_BYTES, to_i64(bytes)).await?;
            self.counters.set(COUNTED, 1).await?;
            tracing::info!(bytes, "counted the bytes in storage");
        }
        let usage = {
            let mut sampled = self.sampling.lock().await;
            let usage = self.usage().await?;
            self.sample(&mut sampled, usage.stored_bytes).await;
            usage
        };
        self.evaluate(usage.stored_bytes).await;
        Ok(usage)
    }

    /// The bytes in storage and where they stand against the quota.
    ///
    /// # Errors
    /// Database failures.
    pub async fn usage(&self) -> Result<StorageUsage, CommonError> {
        let stored = u64::try_from(self.counters.get(STORED_BYTES).await?).unwrap_or(0);
        self.room.stored.store(stored, Ordering::SeqCst);
        let quota = self.quota();
        Ok(StorageUsage {
            stored_bytes: stored,
            quota,
            state: quota.state(stored),
        })
    }

    /// Whether a new backup may start, and its share of the quota's room (shared with
    /// the backups running beside it; given without a quota too, so that a quota set while
    /// the backup runs holds it). Refused when the quota is
    /// already reached (`quota_exceeded`) or the disk is below its reserve
    /// (`disk_full`); both map to HTTP 507. Keep the allowance until the backup's bytes
    /// are counted ([`StorageService::added`]).
    ///
    /// # Errors
    /// `QuotaExceeded`, `DiskFull`; database failures.
    pub async fn admit_backup(&self) -> Result<Arc<Allowance>, AdmissionError> {
        self.disk.ensure_room_for_backup().await?;
        let usage = self.usage().await?;
        match usage.quota.max_bytes {
            Some(max) if usage.stored_bytes >= max => {
                self.evaluate(usage.stored_bytes).await;
                Err(AdmissionError::QuotaExceeded(format!(
                    "the storage quota is used up ({} of {}); free space with retention and \
                     prune, or raise quota.max_storage_mb",
                    human_bytes(usage.stored_bytes),
                    human_bytes(max)
                )))
            }
            // Handed out without a quota too, so that one set while this backup runs
            // holds it from its next chunk on.
            _ => Ok(Arc::new(Allowance {
                room: Arc::clone(&self.room),
                taken: AtomicU64::new(0),
            })),
        }
    }

    /// A backup committed `bytes` to storage.
    ///
    /// # Errors
    /// Database failures.
    pub async fn added(&self, bytes: u64) -> Result<(), CommonError> {
        let mut sampled = self.sampling.lock().await;
        let now = u64::try_from(self.counters.add(STORED_BYTES, to_i64(bytes)).await?).unwrap_or(0);
        self.room.stored.store(now, Ordering::SeqCst);
        self.sample(&mut sampled, now).await;
        drop(sampled);
        self.evaluate(now).await;
        Ok(())
    }

    /// A backup of `source` was stopped because it would have passed the quota.
    pub async fn backup_stopped_by_quota(&self, source: &str) {
        let max = self.quota().max_bytes.unwrap_or(0);
        self.alerts
            .raise_best_effort(NewAlert::new(
                AlertKind::QuotaExceeded,
                Severity::Critical,
                format!(
                    "the backup of `{source}` was stopped: it would have passed the storage \
                     quota of {}; nothing of it was kept",
                    human_bytes(max)
                ),
            ))
            .await;
    }

    /// The repository now occupies `bytes` (after a prune or a recount).
    ///
    /// # Errors
    /// Database failures.
    pub async fn set_stored(&self, bytes: u64) -> Result<(), CommonError> {
        let mut sampled = self.sampling.lock().await;
        self.counters.set(STORED_BYTES, to_i64(bytes)).await?;
        self.room.stored.store(bytes, Ordering::SeqCst);
        self.sample(&mut sampled, bytes).await;
        drop(sampled);
        self.counters.set(COUNTED, 1).await?;
        self.evaluate(bytes).await;
        Ok(())
    }

    /// Storage use against the quota, and the storage volume's free space read now
    /// (its own result: a volume that cannot be read does not hide the usage).
    ///
    /// # Errors
    /// `Forbidden` without `view`; database failures.
    pub async fn show(
        &self,
        actor: &Actor,
    ) -> Result<(StorageUsage, Result<Option<DiskStatus>, CommonError>), CommonError> {
        actor.require(Permission::View)?;
        let usage = self.usage().await?;
        let disk = self.disk.check().await;
        if let Err(e) = &disk {
            tracing::warn!(error = %e, "cannot read the free disk space");
        }
        Ok((usage, disk))
    }

    /// Counts the bytes in storage object by object and resets the counter to it.
    /// Returns (counter before, count).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; storage or database failures.
    pub async fn recount(&self, actor: &Actor) -> Result<(u64, u64), CommonError> {
        actor.require(Permission::ManageSystem)?;
        let before = self.usage().await?.stored_bytes;
        let counted = self
            .engine
            .stored_bytes()
            .await
            .map_err(CommonError::unexpected)?;
        self.set_stored(counted).await?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::StorageRecount, &actor.client)
                    .resource("storage")
                    .detail(format!("counter {before} B, storage {counted} B")),
            )
            .await?;
        Ok((before, counted))
    }

    /// Raises or clears the quota's alerts for `stored` bytes. Alert failures are logged:
    /// they never fail the work that changed the usage.
    async fn evaluate(&self, stored: u64) {
        let quota = self.quota();
        let state = quota.state(stored);
        let outcome = async {
            match state {
                QuotaState::Exceeded => {
                    let max = quota.max_bytes.unwrap_or(0);
                    self.alerts
                        .raise(NewAlert::new(
                            AlertKind::QuotaExceeded,
                            Severity::Critical,
                            format!(
                                "storage use {} has reached the quota of {}; new backups are refused",
                                human_bytes(stored),
                                human_bytes(max)
                            ),
                        ))
                        .await?;
                }
                QuotaState::Warning => {
                    self.alerts.clear(AlertKind::QuotaExceeded, None).await?;
                    let warning = quota.warning_bytes.unwrap_or(0);
                    self.alerts
                        .raise(NewAlert::new(
                            AlertKind::QuotaWarning,
                            Severity::Warning,
                            format!(
                                "storage use {} has passed the warning threshold of {}{}",
                                human_bytes(stored),
                                human_bytes(warning),
                                quota
                                    .max_bytes
                                    .map(|m| format!(" (quota {})", human_bytes(m)))
                                    .unwrap_or_default()
                            ),
                        ))
                        .await?;
                }
                QuotaState::Ok => {
                    self.alerts.clear(AlertKind::QuotaExceeded, None).await?;
                    self.alerts.clear(AlertKind::QuotaWarning, None).await?;
                }
            }
            Ok::<(), CommonError>(())
        };
        if let Err(e) = outcome.await {
            tracing::error!(error = %e, "cannot update the quota alerts");
        }
    }
}

#[async_trait]
impl Admission for StorageService {
    async fn admit_backup(&self) -> Result<Arc<dyn StorageBudget>, AdmissionError> {
        Ok(Self::admit_backup(self).await?)
    }

    async fn added(&self, bytes: u64) -> Result<(), CommonError> {
        Self::added(self, bytes).await
    }

    async fn backup_stopped_by_quota(&self, source: &str) {
        Self::backup_stopped_by_quota(self, source).await;
    }
}

#[async_trait]
impl StoredBytes for StorageService {
    async fn set_stored(&self, bytes: u64) -> Result<(), CommonError> {
        Self::set_stored(self, bytes).await
    }
}

#[async_trait]
impl StorageFigures for StorageService {
    async fn usage(&self) -> Result<StorageUsage, CommonError> {
        Self::usage(self).await
    }
}

#[async_trait]
impl QuotaControl for StorageService {
    fn put_quota(&self, quota: Quota) {
        Self::put_quota(self, quota);
    }

    async fn set_quota(&self, quota: Quota) -> Result<StorageUsage, CommonError> {
        Self::set_quota(self, quota).await
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
