//! Tests of [`AlertService`] and [`DiskGuard`] over in-memory fakes of their ports.
//!
//! Spawned notifications go to a [`Tasks`] spawner that only collects them, so a test sees
//! that raising an alert never waits for the webhook, and then runs them itself.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::executor::block_on;

use coffer_domain::alerts::{
    Alert, AlertFilter, AlertKind, AlertNotifier, AlertRepository, DiskMonitor, DiskSpace,
    DiskSpaceError, NewAlert, NotifyError, Severity, SeverityCounts,
};
use coffer_domain::audit::{AuditEntry, AuditFilter, AuditRecord};
use coffer_domain::auth::{Actor, ClientInfo, Role};
use coffer_domain::ports::{AuditRepository, BackgroundTask, Clock, Page, RepoError, Spawner};
use coffer_domain::{AlertId, SourceId, UserId};

use super::{AlertService, AlertSink as _, MAX_ALERT_PAGE, SYSTEM_ACTOR};
use crate::storage::{AdmissionError, DiskGuard, DiskLevel, DiskThresholds};
use crate::{AuditLog, CodedError as _, CommonError};

// ---------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
}

/// A clock that moves one second each time it is read.
struct StepClock(AtomicI64);

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// Collects spawned work; `run` runs it to completion.
#[derive(Default)]
struct Tasks(Mutex<Vec<BackgroundTask>>);

impl Tasks {
    fn pending(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn run(&self) {
        let tasks = std::mem::take(&mut *self.0.lock().unwrap());
        for task in tasks {
            block_on(task);
        }
    }
}

impl Spawner for Tasks {
    fn spawn(&self, task: BackgroundTask) {
        self.0.lock().unwrap().push(task);
    }
}

/// The alert table, with the repository contract's semantics.
#[derive(Default)]
pub(crate) struct FakeAlerts {
    rows: Mutex<Vec<Alert>>,
    last_filter: Mutex<Option<AlertFilter>>,
    /// While set, every call fails as a database would.
    down: AtomicBool,
}

impl FakeAlerts {
    pub(crate) fn rows(&self) -> Vec<Alert> {
        self.rows.lock().unwrap().clone()
    }

    fn check(&self) -> Result<(), RepoError> {
        if self.down.load(Ordering::SeqCst) {
            Err(RepoError::Database("connection refused".into()))
        } else {
            Ok(())
        }
    }
}

/// Stores `alert` as the next row, open.
fn push(rows: &mut Vec<Alert>, alert: &NewAlert, now: DateTime<Utc>) -> Alert {
    let stored = Alert {
        id: AlertId::new(i64::try_from(rows.len()).unwrap() + 1),
        severity: alert.severity,
        kind: alert.kind,
        message: alert.message.clone(),
        source_id: alert.source_id,
        created_at: now,
        acknowledged_at: None,
        acknowledged_by: None,
    };
    rows.push(stored.clone());
    stored
}

#[async_trait]
impl AlertRepository for FakeAlerts {
    async fn insert(&self, alert: &NewAlert, now: DateTime<Utc>) -> Result<Alert, RepoError> {
        self.check()?;
        Ok(push(&mut self.rows.lock().unwrap(), alert, now))
    }

    async fn get(&self, id: AlertId) -> Result<Option<Alert>, RepoError> {
        self.check()?;
        Ok(self.rows().into_iter().find(|a| a.id == id))
    }

    async fn list(&self, filter: &AlertFilter) -> Result<Page<Alert>, RepoError> {
        self.check()?;
        *self.last_filter.lock().unwrap() = Some(filter.clone());
        let mut all: Vec<Alert> = self
            .rows()
            .into_iter()
            .filter(|a| !filter.active_only || a.is_active())
            .filter(|a| filter.severity.is_none_or(|s| a.severity == s))
            .collect();
        all.sort_by_key(|a| std::cmp::Reverse((a.created_at, a.id)));
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(filter.offset).unwrap())
            .take(usize::try_from(filter.limit).unwrap())
            .collect();
        Ok(Page { items, total })
    }

    async fn find_open(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
    ) -> Result<Option<Alert>, RepoError> {
        self.check()?;
        Ok(self
            .rows()
            .into_iter()
            .rev()
            .find(|a| a.is_active() && a.kind == kind && a.source_id == source_id))
    }

    async fn acknowledge(
        &self,
        id: AlertId,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, RepoError> {
        self.check()?;
        let mut rows = self.rows.lock().unwrap();
        let Some(a) = rows.iter_mut().find(|a| a.id == id) else {
            return Ok(None);
        };
        if a.is_active() {
            a.acknowledged_at = Some(at);
            a.acknowledged_by = Some(by.to_owned());
        }
        Ok(Some(a.clone()))
    }

    async fn acknowledge_open(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        self.check()?;
        let mut n = 0;
        for a in self.rows.lock().unwrap().iter_mut() {
            if a.is_active() && a.kind == kind && a.source_id == source_id {
                a.acknowledged_at = Some(at);
                a.acknowledged_by = Some(by.to_owned());
                n += 1;
            }
        }
        Ok(n)
    }

    async fn raise_condition(
        &self,
        alert: &NewAlert,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Alert>, RepoError> {
        self.check()?;
        // One lock over the check and the insert, as the database's transaction.
        let mut rows = self.rows.lock().unwrap();
        let open =
            |a: &Alert| a.is_active() && a.kind == alert.kind && a.source_id == alert.source_id;
        if rows.iter().any(|a| open(a) && a.severity >= alert.severity) {
            return Ok(None);
        }
        for a in rows.iter_mut().filter(|a| open(a)) {
            a.acknowledged_at = Some(now);
            a.acknowledged_by = Some(by.to_owned());
        }
        Ok(Some(push(&mut rows, alert, now)))
    }

    async fn count_active_by_severity(&self) -> Result<SeverityCounts, RepoError> {
        self.check()?;
        let mut c = SeverityCounts::default();
        for a in self.rows().iter().filter(|a| a.is_active()) {
            match a.severity {
                Severity::Info => c.info += 1,
                Severity::Warning => c.warning += 1,
                Severity::Critical => c.critical += 1,
            }
        }
        Ok(c)
    }
}

/// Records what it was asked to send.
#[derive(Default)]
struct RecordingNotifier(Mutex<Vec<Alert>>);

impl RecordingNotifier {
    fn sent(&self) -> Vec<Alert> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl AlertNotifier for RecordingNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(alert.clone());
        Ok(())
    }
}

/// The audit trail: entries in order.
#[derive(Default)]
struct FakeAudit(Mutex<Vec<AuditEntry>>);

impl FakeAudit {
    fn entries(&self) -> Vec<AuditEntry> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl AuditRepository for FakeAudit {
    async fn append(
        &self,
        entry: &AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<AuditRecord, RepoError> {
        let mut rows = self.0.lock().unwrap();
        rows.push(entry.clone());
        Ok(AuditRecord {
            id: i64::try_from(rows.len()).unwrap(),
            timestamp: now,
            entry: entry.clone(),
            prev_hash: String::new(),
            row_hash: String::new(),
        })
    }

    async fn list(
        &self,
        _filter: &AuditFilter,
        _limit: u32,
    ) -> Result<Vec<AuditRecord>, RepoError> {
        Ok(Vec::new())
    }

    async fn scan(&self, _after_id: i64, _limit: u32) -> Result<Vec<AuditRecord>, RepoError> {
        Ok(Vec::new())
    }
}

/// A volume whose free space the test sets.
pub(crate) struct FakeDisk(Mutex<Result<DiskSpace, DiskSpaceError>>);

impl FakeDisk {
    pub(crate) fn free_mb(mb: u64) -> Self {
        let d = Self(Mutex::new(Err(DiskSpaceError(String::new()))));
        d.set_free_mb(mb);
        d
    }

    pub(crate) fn set_free_mb(&self, mb: u64) {
        *self.0.lock().unwrap() = Ok(DiskSpace {
            total_bytes: 100_000 * MIB,
            available_bytes: mb * MIB,
            mount_point: PathBuf::from("/srv"),
        });
    }

    fn fail(&self) {
        *self.0.lock().unwrap() = Err(DiskSpaceError("no mounted filesystem found".into()));
    }
}

impl DiskMonitor for FakeDisk {
    fn space(&self, path: &Path) -> Result<DiskSpace, DiskSpaceError> {
        assert_eq!(path, Path::new("/srv/coffer/repository"));
        self.0.lock().unwrap().clone()
    }
}

const MIB: u64 = 1024 * 1024;

struct World {
    repo: Arc<FakeAlerts>,
    notifier: Arc<RecordingNotifier>,
    tasks: Arc<Tasks>,
    audit: Arc<FakeAudit>,
    service: Arc<AlertService>,
}

impl World {
    fn new() -> Self {
        Self::build(true)
    }

    fn build(with_notifier: bool) -> Self {
        let repo = Arc::new(FakeAlerts::default());
        let notifier = Arc::new(RecordingNotifier::default());
        let tasks = Arc::new(Tasks::default());
        let audit = Arc::new(FakeAudit::default());
        let clock: Arc<dyn Clock> = Arc::new(StepClock(AtomicI64::new(0)));
        let service = Arc::new(AlertService::new(
            repo.clone(),
            with_notifier.then(|| notifier.clone() as Arc<dyn AlertNotifier>),
            tasks.clone(),
            clock.clone(),
            AuditLog::new(audit.clone(), clock),
        ));
        Self {
            repo,
            notifier,
            tasks,
            audit,
            service,
        }
    }

    fn raise(&self, alert: NewAlert) -> Option<Alert> {
        block_on(self.service.raise(alert)).expect("raise")
    }

    fn active(&self) -> Vec<Alert> {
        self.repo
            .rows()
            .into_iter()
            .filter(Alert::is_active)
            .collect()
    }
}

fn actor(name: &str, role: Role) -> Actor {
    Actor {
        username: name.to_owned(),
        user_id: Some(UserId::new(7)),
        role,
        client: ClientInfo::default(),
    }
}

fn quota(source: i64) -> NewAlert {
    NewAlert::new(AlertKind::QuotaWarning, Severity::Warning, "quota at 80%")
        .for_source(SourceId::new(source))
}

fn failed(source: i64) -> NewAlert {
    NewAlert::new(AlertKind::BackupFailed, Severity::Critical, "backup failed")
        .for_source(SourceId::new(source))
}

// ---------------------------------------------------------------------------------------
// Raising and clearing
// ---------------------------------------------------------------------------------------

#[test]
fn every_event_makes_its_own_alert() {
    let w = World::new();
    let a = w.raise(failed(1)).expect("new");
    let b = w.raise(failed(1)).expect("new again");
    assert_ne!(a.id, b.id);
    assert_eq!(w.active().len(), 2);
    for kind in [
        AlertKind::BackupPartial,
        AlertKind::Damage,
        AlertKind::PruneFailed,
    ] {
        for _ in 0..2 {
            assert!(
                w.raise(NewAlert::new(kind, Severity::Warning, "x"))
                    .is_some()
            );
        }
    }
    assert_eq!(w.active().len(), 8);
}

#[test]
fn a_condition_is_reported_once_while_it_is_open() {
    let w = World::new();
    let first = w.raise(quota(1)).expect("first report");
    assert_eq!(w.raise(quota(1)), None, "same condition, same source");
    assert_eq!(w.active(), vec![first.clone()]);
    // Another source, and the server as a whole, are other conditions.
    assert!(w.raise(quota(2)).is_some());
    assert!(
        w.raise(NewAlert::new(
            AlertKind::QuotaWarning,
            Severity::Warning,
            "server-wide"
        ))
        .is_some()
    );
    assert_eq!(w.active().len(), 3);
    for kind in [
        AlertKind::QuotaExceeded,
        AlertKind::DiskLow,
        AlertKind::KeyNotExported,
    ] {
        assert!(
            w.raise(NewAlert::new(kind, Severity::Critical, "x"))
                .is_some()
        );
        assert_eq!(w.raise(NewAlert::new(kind, Severity::Critical, "x")), None);
    }
}

#[test]
fn clearing_acknowledges_the_condition_as_system_and_lets_it_be_raised_again() {
    let w = World::new();
    let first = w.raise(quota(1)).expect("first");
    w.raise(quota(2)).expect("other source");
    assert_eq!(
        block_on(
            w.service
                .clear(AlertKind::QuotaWarning, Some(SourceId::new(1)))
        )
        .unwrap(),
        1
    );
    let row = w
        .repo
        .rows()
        .into_iter()
        .find(|a| a.id == first.id)
        .unwrap();
    assert_eq!(row.acknowledged_by.as_deref(), Some(SYSTEM_ACTOR));
    assert!(row.acknowledged_at.is_some());
    assert_eq!(w.active().len(), 1, "the other source's alert stays");
    assert_eq!(
        block_on(
            w.service
                .clear(AlertKind::QuotaWarning, Some(SourceId::new(1)))
        )
        .unwrap(),
        0,
        "nothing left to clear"
    );
    let again = w.raise(quota(1)).expect("a new episode is news");
    assert_ne!(again.id, first.id);
}

#[test]
fn an_escalation_replaces_the_open_alert_and_a_lesser_report_does_not() {
    let w = World::new();
    let low = w
        .raise(NewAlert::new(AlertKind::DiskLow, Severity::Warning, "low"))
        .expect("warning");
    let critical = w
        .raise(NewAlert::new(
            AlertKind::DiskLow,
            Severity::Critical,
            "very low",
        ))
        .expect("escalated");
    assert_eq!(w.active(), vec![critical.clone()]);
    let old = w.repo.rows().into_iter().find(|a| a.id == low.id).unwrap();
    assert_eq!(old.acknowledged_by.as_deref(), Some(SYSTEM_ACTOR));
    assert_eq!(
        w.raise(NewAlert::new(
            AlertKind::DiskLow,
            Severity::Warning,
            "low again"
        )),
        None,
        "a critical alert stays open while the disk is merely low"
    );
    assert_eq!(w.active(), vec![critical]);
}

#[test]
fn new_alerts_are_notified_in_the_background_only() {
    let w = World::new();
    let a = w.raise(failed(3)).expect("new");
    assert_eq!(
        w.raise(quota(1)).map(|q| q.kind),
        Some(AlertKind::QuotaWarning)
    );
    assert_eq!(w.raise(quota(1)), None);
    assert!(
        w.notifier.sent().is_empty(),
        "raising must not wait for the notifier"
    );
    assert_eq!(w.tasks.pending(), 2, "one notification per new alert");
    w.tasks.run();
    let sent = w.notifier.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], a, "the stored alert, id included");
    assert_eq!(sent[1].kind, AlertKind::QuotaWarning);
}

#[test]
fn without_a_notifier_nothing_is_spawned() {
    let w = World::build(false);
    w.raise(failed(1)).expect("new");
    assert_eq!(w.tasks.pending(), 0);
    assert_eq!(w.active().len(), 1);
}

#[test]
fn a_database_failure_is_reported_or_logged() {
    let w = World::new();
    w.repo.down.store(true, Ordering::SeqCst);
    let err = block_on(w.service.raise(failed(1))).expect_err("database down");
    assert!(matches!(err, CommonError::Unexpected(_)), "{err}");
    block_on(w.service.raise_best_effort(failed(1)));
    assert_eq!(w.tasks.pending(), 0, "nothing to notify");
    w.repo.down.store(false, Ordering::SeqCst);
    assert!(w.repo.rows().is_empty());
}

// ---------------------------------------------------------------------------------------
// Listing and acknowledging
// ---------------------------------------------------------------------------------------

#[test]
fn listing_needs_view_and_caps_the_page() {
    let w = World::new();
    w.raise(failed(1)).unwrap();
    w.raise(NewAlert::new(
        AlertKind::BackupPartial,
        Severity::Warning,
        "partial",
    ))
    .unwrap();
    let viewer = actor("vera", Role::Viewer);
    let page = block_on(w.service.list(
        &viewer,
        AlertFilter {
            severity: Some(Severity::Warning),
            ..AlertFilter::default()
        },
    ))
    .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.items[0].kind, AlertKind::BackupPartial);

    for (asked, used) in [(0, 50), (10, 10), (100_000, MAX_ALERT_PAGE)] {
        block_on(w.service.list(
            &viewer,
            AlertFilter {
                limit: asked,
                ..AlertFilter::default()
            },
        ))
        .unwrap();
        let seen = w.repo.last_filter.lock().unwrap().clone().unwrap();
        assert_eq!(seen.limit, used, "limit {asked}");
    }
    let counts = block_on(w.service.active_counts(&viewer)).unwrap();
    assert_eq!((counts.warning, counts.critical), (1, 1));
}

#[test]
fn acknowledging_needs_manage_system_and_is_audited() {
    let w = World::new();
    let a = w.raise(failed(1)).unwrap();
    for role in [Role::Viewer, Role::Operator] {
        let err = block_on(w.service.acknowledge(&actor("eve", role), a.id)).unwrap_err();
        assert!(matches!(err, CommonError::Forbidden(_)), "{role:?}: {err}");
    }
    assert!(w.audit.entries().is_empty());
    assert_eq!(w.active().len(), 1);

    let admin = actor("root", Role::Admin);
    let acked = block_on(w.service.acknowledge(&admin, a.id)).unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("root"));
    assert!(acked.acknowledged_at.is_some());
    assert!(w.active().is_empty());
    let entries = w.audit.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "alert_ack");
    assert_eq!(entries[0].username, "root");
    assert_eq!(
        entries[0].resource.as_deref(),
        Some(format!("alert:{}", a.id).as_str())
    );
    assert!(
        entries[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("backup_failed")
    );

    // Again, by someone else: the first acknowledgement stands.
    let again = block_on(w.service.acknowledge(&actor("other", Role::Admin), a.id)).unwrap();
    assert_eq!(again.acknowledged_by.as_deref(), Some("root"));
    assert_eq!(again.acknowledged_at, acked.acknowledged_at);
    let entries = w.audit.entries();
    assert_eq!(entries.len(), 2);
    assert!(
        entries[1]
            .detail
            .as_deref()
            .unwrap()
            .contains("already acknowledged by root")
    );
}

#[test]
fn acknowledging_an_unknown_alert_is_not_found() {
    let w = World::new();
    let err = block_on(
        w.service
            .acknowledge(&actor("root", Role::Admin), AlertId::new(99)),
    )
    .unwrap_err();
    assert!(matches!(err, CommonError::NotFound(_)), "{err}");
    assert!(w.audit.entries().is_empty());
}

// ---------------------------------------------------------------------------------------
// The disk guard
// ---------------------------------------------------------------------------------------

const THRESHOLDS: DiskThresholds = DiskThresholds {
    warning_free_mb: 5120,
    min_free_mb: 1024,
};

fn guard(w: &World, disk: &Arc<FakeDisk>) -> DiskGuard {
    DiskGuard::new(
        disk.clone(),
        Some(PathBuf::from("/srv/coffer/repository")),
        THRESHOLDS,
        w.service.clone(),
    )
}

#[test]
fn levels_follow_the_thresholds() {
    for (free_mb, level) in [
        (0, DiskLevel::BelowReserve),
        (1023, DiskLevel::BelowReserve),
        (1024, DiskLevel::Low),
        (5119, DiskLevel::Low),
        (5120, DiskLevel::Ok),
        (1_000_000, DiskLevel::Ok),
    ] {
        assert_eq!(THRESHOLDS.assess(free_mb * MIB), level, "{free_mb} MiB");
    }
    let off = DiskThresholds {
        warning_free_mb: 0,
        min_free_mb: 0,
    };
    assert_eq!(off.assess(0), DiskLevel::Ok);
    let huge = DiskThresholds {
        warning_free_mb: u64::MAX,
        min_free_mb: u64::MAX,
    };
    assert_eq!(huge.assess(u64::MAX - 1), DiskLevel::BelowReserve);
}

#[test]
fn the_disk_alert_follows_free_space() {
    let w = World::new();
    let disk = Arc::new(FakeDisk::free_mb(50_000));
    let g = guard(&w, &disk);

    let status = block_on(g.check()).unwrap().expect("a local volume");
    assert!(!status.low && !status.below_reserve);
    assert_eq!(status.available_bytes, 50_000 * MIB);
    assert_eq!(status.total_bytes, 100_000 * MIB);
    assert_eq!(status.mount_point, PathBuf::from("/srv"));
    assert!(w.active().is_empty());

    disk.set_free_mb(4000);
    let status = block_on(g.check()).unwrap().expect("a local volume");
    assert!(status.low && !status.below_reserve);
    let active = w.active();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].kind, active[0].severity),
        (AlertKind::DiskLow, Severity::Warning)
    );
    assert!(
        active[0].message.contains("4000 MiB free on /srv"),
        "{}",
        active[0].message
    );
    block_on(g.check()).unwrap();
    assert_eq!(w.active().len(), 1, "still low: no second alert");

    disk.set_free_mb(500);
    let status = block_on(g.check()).unwrap().expect("a local volume");
    assert!(status.low && status.below_reserve);
    let active = w.active();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].severity, Severity::Critical);

    disk.set_free_mb(6000);
    block_on(g.check()).unwrap();
    assert!(w.active().is_empty(), "space is back: the alert is cleared");
    assert!(
        w.repo
            .rows()
            .iter()
            .all(|a| a.acknowledged_by.as_deref() == Some(SYSTEM_ACTOR))
    );
    w.tasks.run();
    assert_eq!(w.notifier.sent().len(), 2, "warning, then critical");
}

#[test]
fn backups_are_refused_below_the_reserve_only() {
    let w = World::new();
    let disk = Arc::new(FakeDisk::free_mb(2000));
    let g = guard(&w, &disk);
    block_on(g.ensure_room_for_backup()).expect("low, but above the reserve");
    assert_eq!(w.active().len(), 1, "the warning is raised on the way");

    disk.set_free_mb(800);
    let err = block_on(g.ensure_room_for_backup()).expect_err("below the reserve");
    let AdmissionError::DiskFull(message) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(err.code(), "disk_full");
    assert!(message.contains("800 MiB free"), "{message}");
    assert!(message.contains("1024 MiB"), "{message}");
    assert_eq!(w.active()[0].severity, Severity::Critical);

    // The refusal does not depend on the alert being stored.
    w.repo.down.store(true, Ordering::SeqCst);
    assert!(matches!(
        block_on(g.ensure_room_for_backup()),
        Err(AdmissionError::DiskFull(_))
    ));
    assert!(block_on(g.check()).is_err(), "check reports the failure");
}

#[test]
fn an_unknown_free_space_lets_backups_through_but_check_reports_it() {
    let w = World::new();
    let disk = Arc::new(FakeDisk::free_mb(10));
    disk.fail();
    let g = guard(&w, &disk);
    block_on(g.ensure_room_for_backup()).expect("an unknown answer is no reason to stop");
    let err = block_on(g.check()).unwrap_err();
    assert!(err.to_string().contains("/srv/coffer/repository"), "{err}");
    assert!(w.repo.rows().is_empty());
}

#[test]
fn object_storage_has_no_volume_to_watch() {
    let w = World::new();
    // A volume that would be below the reserve, were it Coffer's to watch.
    let disk = Arc::new(FakeDisk::free_mb(10));
    let g = DiskGuard::new(disk, None, THRESHOLDS, w.service.clone());
    assert_eq!(block_on(g.check()).unwrap(), None, "not applicable");
    block_on(g.ensure_room_for_backup()).expect("no reserve applies");
    assert!(w.repo.rows().is_empty(), "no disk_low alert");
    assert_eq!(g.path(), None);
}
