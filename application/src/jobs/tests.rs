//! Tests of [`JobService`], the background job runner, against small in-memory fakes of
//! its ports.
//!
//! Spawned jobs go to a [`Tasks`] spawner that only collects them; the test moves them
//! into a `LocalPool` and runs them with [`World::settle`], so every test decides exactly
//! when background work makes progress. The fake engine takes a plan per source: finish
//! at once, wait at a gate the test opens (then honour a cancel if one was asked for), or
//! panic.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::channel::oneshot;
use futures::executor::{LocalPool, block_on};
use futures::task::{LocalSpawnExt as _, SpawnExt as _};

use coffer_domain::audit::{AuditEntry, AuditFilter, AuditRecord, GENESIS_HASH, chain_hash};
use coffer_domain::auth::{Actor, ClientInfo, Permission, Role};
use coffer_domain::engine::{
    ArchiveFormat, BackupRequest, Cancel, CheckReport, CheckSlice, EngineFailure, EntryInfo,
    EntryKind, Progress, PruneOptions, PruneReport, RestoreReport, SnapshotEngine, SnapshotStatus,
    SnapshotSummary, VerifyReport,
};
use coffer_domain::joblog::{JobLogRepository, LogLevel, LogLine, LogPage};
use coffer_domain::jobs::{Job, JobError, JobFilter, JobParams, JobProgress, JobResult, JobState};
use coffer_domain::ports::{
    AuditRepository, BackgroundTask, BackupCatalog, BackupFilter, CatalogEntry, CatalogStats,
    ClaimedJob, Clock, CounterRepository, Enqueued, Heartbeat, JobRepository, Lease, LocalPaths,
    Page, PathProblem, RepoError, SourceRepository, SourceSpec, Spawner,
};
use coffer_domain::{BackupId, JobId, SnapshotId, SnapshotPrefix, SourceId, UserId};

use crate::alerts::tests::{FakeAlerts, FakeDisk};
use crate::catalog::CatalogService;
use crate::error::{CodedError, CommonError, ErrorClass};
use crate::maintenance::MaintenanceError;
use crate::restore::RestoreError;
use crate::retention::{RetentionService, RetentionStatus};
use crate::storage::AdmissionError;
use crate::test_fakes::FakeSources;
use crate::{
    ActiveJobs as _, AlertService, AuditLog, BackupError, BackupPorts, BackupService, DiskGuard,
    DiskThresholds, JobOptions, JobService, JobStatus, JobsError, MaintenancePorts,
    MaintenanceService, Quota, RestoreService, StorageService, TargetRoom,
};
use coffer_domain::alerts::{AlertKind, Severity};
use coffer_domain::audit::AuditAction;
use coffer_domain::jobs::JobKind;

// ---------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// A clock that moves one second each time it is read, so that "later" is visible.
struct StepClock(AtomicI64);

impl StepClock {
    fn new() -> Self {
        Self(AtomicI64::new(0))
    }
}

impl Clock for StepClock {
    fn now(&self) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// Collects spawned work; [`World::settle`] runs it.
#[derive(Default)]
struct Tasks(Mutex<Vec<BackgroundTask>>);

impl Tasks {
    fn take(&self) -> Vec<BackgroundTask> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Spawner for Tasks {
    fn spawn(&self, task: BackgroundTask) {
        self.0.lock().unwrap().push(task);
    }
}

/// Which instance holds a job, until when.
type Held = Option<(String, DateTime<Utc>)>;

/// Job records (the queue), plus every write in order.
#[derive(Default)]
struct FakeJobs {
    rows: Mutex<BTreeMap<JobId, Job>>,
    /// Who each job runs as, and which instance runs it until when.
    meta: Mutex<HashMap<JobId, (Actor, Held)>>,
    writes: Mutex<Vec<Job>>,
    /// While set, `finish` fails as a database would.
    fail_updates: AtomicBool,
    /// While set, the next write of a final state waits for it (a slow database).
    hold_final: Mutex<Option<oneshot::Receiver<()>>>,
    /// Jobs' log lines, by job and number.
    logs: Mutex<BTreeMap<(JobId, u64), LogLine>>,
    /// While set, appending log lines fails as a database would.
    fail_logs: AtomicBool,
}

impl FakeJobs {
    fn row(&self, id: JobId) -> Option<Job> {
        self.rows.lock().unwrap().get(&id).cloned()
    }

    fn count(&self) -> usize {
        self.rows.lock().unwrap().len()
    }

    /// Holds the next write of an ended job until the returned sender fires.
    fn hold_final_write(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.hold_final.lock().unwrap() = Some(rx);
        tx
    }

    /// The states written for one job, in order.
    fn states_written(&self, id: JobId) -> Vec<JobState> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|j| j.id == id)
            .map(|j| j.state)
            .collect()
    }

    /// Which instance holds `id`, and until when.
    fn lease_of(&self, id: JobId) -> Held {
        self.meta.lock().unwrap().get(&id).and_then(|m| m.1.clone())
    }

    fn write(&self, job: &Job) {
        self.writes.lock().unwrap().push(job.clone());
    }
}

#[async_trait]
impl JobLogRepository for FakeJobs {
    async fn append(&self, job: JobId, lines: &[LogLine]) -> Result<(), RepoError> {
        if self.fail_logs.load(Ordering::SeqCst) {
            return Err(RepoError::Database("the database is gone".into()));
        }
        let mut logs = self.logs.lock().unwrap();
        for line in lines {
            logs.entry((job, line.seq)).or_insert_with(|| line.clone());
        }
        Ok(())
    }

    async fn read(&self, job: JobId, after: u64, limit: u64) -> Result<Vec<LogLine>, RepoError> {
        Ok(self
            .logs
            .lock()
            .unwrap()
            .range((job, after + 1)..=(job, u64::MAX))
            .take(usize::try_from(limit).unwrap())
            .map(|(_, l)| l.clone())
            .collect())
    }
}

fn active(job: &Job) -> bool {
    matches!(job.state, JobState::Queued | JobState::Running)
}

#[async_trait]
impl JobRepository for FakeJobs {
    async fn insert(&self, job: &Job) -> Result<(), RepoError> {
        let mut rows = self.rows.lock().unwrap();
        if rows.contains_key(&job.id) {
            return Err(RepoError::Conflict(format!("job {} exists", job.id)));
        }
        rows.insert(job.id, job.clone());
        self.write(job);
        Ok(())
    }

    async fn update(&self, job: &Job) -> Result<bool, RepoError> {
        let mut rows = self.rows.lock().unwrap();
        let Some(row) = rows.get_mut(&job.id) else {
            return Ok(false);
        };
        *row = job.clone();
        self.write(job);
        Ok(true)
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        Ok(self.row(id))
    }

    async fn list(&self, filter: &JobFilter) -> Result<Page<Job>, RepoError> {
        let mut all: Vec<Job> = self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|j| filter.state.is_none_or(|s| j.state == s))
            .filter(|j| filter.kind.is_none_or(|k| j.kind() == k))
            .filter(|j| filter.source_id.is_none_or(|s| j.source_id == Some(s)))
            .filter(|j| {
                filter
                    .requested_by
                    .as_ref()
                    .is_none_or(|u| &j.requested_by == u)
            })
            .filter(|j| filter.from.is_none_or(|t| j.created_at >= t))
            .filter(|j| filter.to.is_none_or(|t| j.created_at < t))
            .cloned()
            .collect();
        all.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(filter.offset).unwrap())
            .take(usize::try_from(filter.limit).unwrap())
            .collect();
        Ok(Page { items, total })
    }

    async fn fail_unfinished(
        &self,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let mut n = 0;
        for job in self.rows.lock().unwrap().values_mut() {
            if active(job) {
                job.state = JobState::Failed;
                job.error = Some(error.clone());
                job.finished_at = Some(now);
                n += 1;
            }
        }
        Ok(n)
    }

    async fn enqueue(&self, job: &Job, actor: &Actor) -> Result<Enqueued, RepoError> {
        let mut rows = self.rows.lock().unwrap();
        if let Some(subject) = job.params.exclusive_subject()
            && let Some(other) = rows
                .values()
                .find(|j| active(j) && j.params.exclusive_subject().as_ref() == Some(&subject))
        {
            return Ok(Enqueued::Busy(other.id));
        }
        if rows.contains_key(&job.id) {
            return Err(RepoError::Conflict(format!("job {} exists", job.id)));
        }
        rows.insert(job.id, job.clone());
        self.meta
            .lock()
            .unwrap()
            .insert(job.id, (actor.clone(), None));
        self.write(job);
        Ok(Enqueued::Queued)
    }

    async fn claim(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<Vec<ClaimedJob>, RepoError> {
        let mut rows = self.rows.lock().unwrap();
        let mut meta = self.meta.lock().unwrap();
        let mut queued: Vec<&mut Job> = rows
            .values_mut()
            .filter(|j| j.state == JobState::Queued && !j.cancel_requested)
            .collect();
        queued.sort_by_key(|j| (j.created_at, j.id));
        let mut out = Vec::new();
        for job in queued.into_iter().take(usize::try_from(max).unwrap()) {
            job.state = JobState::Running;
            job.started_at = Some(now);
            let m = meta.get_mut(&job.id).expect("enqueued with an actor");
            m.1 = Some((lease.instance.clone(), lease.until));
            self.write(job);
            out.push(ClaimedJob {
                job: job.clone(),
                actor: m.0.clone(),
            });
        }
        Ok(out)
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        jobs: &[(JobId, JobProgress)],
    ) -> Result<Vec<Heartbeat>, RepoError> {
        let mut rows = self.rows.lock().unwrap();
        let mut meta = self.meta.lock().unwrap();
        Ok(jobs
            .iter()
            .map(|(id, progress)| {
                let owned = rows.get(id).is_some_and(|j| j.state == JobState::Running)
                    && meta
                        .get(id)
                        .and_then(|m| m.1.as_ref())
                        .is_some_and(|(i, _)| *i == lease.instance);
                let mut cancel_requested = false;
                if owned {
                    let job = rows.get_mut(id).expect("present");
                    job.progress = *progress;
                    cancel_requested = job.cancel_requested;
                    meta.get_mut(id).expect("present").1 =
                        Some((lease.instance.clone(), lease.until));
                }
                Heartbeat {
                    id: *id,
                    owned,
                    cancel_requested,
                }
            })
            .collect())
    }

    async fn finish(&self, job: &Job, instance: &str) -> Result<bool, RepoError> {
        let held = if job.state.is_final() {
            self.hold_final.lock().unwrap().take()
        } else {
            None
        };
        if let Some(rx) = held {
            rx.await.ok();
        }
        if self.fail_updates.load(Ordering::SeqCst) {
            return Err(RepoError::Database("connection lost".into()));
        }
        let mut rows = self.rows.lock().unwrap();
        let owner = self
            .meta
            .lock()
            .unwrap()
            .get(&job.id)
            .and_then(|m| m.1.clone());
        let Some(row) = rows.get_mut(&job.id) else {
            return Ok(false);
        };
        if row.state != JobState::Running || owner.is_none_or(|(i, _)| i != instance) {
            return Ok(false);
        }
        let cancel_requested = row.cancel_requested;
        *row = job.clone();
        row.cancel_requested = cancel_requested;
        self.write(job);
        Ok(true)
    }

    async fn request_cancel(
        &self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, RepoError> {
        if self.fail_updates.load(Ordering::SeqCst) {
            return Err(RepoError::Database("connection lost".into()));
        }
        let mut rows = self.rows.lock().unwrap();
        let Some(job) = rows.get_mut(&id) else {
            return Ok(None);
        };
        match job.state {
            JobState::Queued => {
                job.state = JobState::Cancelled;
                job.finished_at = Some(now);
                self.write(job);
            }
            JobState::Running => job.cancel_requested = true,
            _ => {}
        }
        Ok(Some(job.clone()))
    }

    async fn expire_leases(
        &self,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, RepoError> {
        let mut rows = self.rows.lock().unwrap();
        let meta = self.meta.lock().unwrap();
        let mut out = Vec::new();
        for job in rows.values_mut() {
            let expired = meta
                .get(&job.id)
                .and_then(|m| m.1.as_ref())
                .is_some_and(|(_, until)| *until < now);
            if job.state == JobState::Running && expired {
                job.state = JobState::Failed;
                job.error = Some(error.clone());
                job.finished_at = Some(now);
                self.write(job);
                out.push(job.clone());
            }
        }
        Ok(out)
    }

    async fn count_queued(&self, requested_by: Option<&str>) -> Result<u64, RepoError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .values()
            .filter(|j| j.state == JobState::Queued)
            .filter(|j| requested_by.is_none_or(|u| j.requested_by == u))
            .count() as u64)
    }

    async fn fail_queued(&self, error: &JobError, now: DateTime<Utc>) -> Result<u64, RepoError> {
        let mut n = 0;
        for job in self.rows.lock().unwrap().values_mut() {
            if job.state == JobState::Queued {
                job.state = JobState::Failed;
                job.error = Some(error.clone());
                job.finished_at = Some(now);
                self.write(job);
                n += 1;
            }
        }
        Ok(n)
    }
}

#[derive(Default)]
struct FakeCatalog(Mutex<Vec<CatalogEntry>>);

impl FakeCatalog {
    fn all(&self) -> Vec<CatalogEntry> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl BackupCatalog for FakeCatalog {
    async fn insert(
        &self,
        summary: &SnapshotSummary,
        source_id: Option<SourceId>,
    ) -> Result<CatalogEntry, RepoError> {
        let mut all = self.0.lock().unwrap();
        if all.iter().any(|e| e.snapshot_id.as_str() == summary.id) {
            return Err(RepoError::Conflict(format!(
                "snapshot {} exists",
                summary.id
            )));
        }
        let entry = CatalogEntry {
            id: BackupId::new(i64::try_from(all.len()).unwrap() + 1),
            snapshot_id: SnapshotId::parse(&summary.id).unwrap(),
            source_id,
            source_name: summary.source.clone(),
            size: summary.bytes,
            created_at: summary.started_at,
            finished_at: Some(summary.finished_at),
            status: summary.status,
            checksum: summary.id.clone(),
            encrypted: summary.encrypted,
            file_count: summary.files,
            dir_count: summary.dirs,
            bytes_added: summary.bytes_added,
            stored_bytes_added: summary.stored_bytes_added,
            duration_ms: 0,
            warnings: summary.warnings.clone(),
            parent_snapshot_id: summary
                .parent
                .as_deref()
                .map(|p| SnapshotId::parse(p).unwrap()),
            protected: false,
            verified_at: None,
            verify_result: None,
            suspicious: None,
        };
        all.push(entry.clone());
        Ok(entry)
    }

    async fn list(&self, limit: u64) -> Result<Vec<CatalogEntry>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn find(&self, prefix: &SnapshotPrefix) -> Result<Option<CatalogEntry>, RepoError> {
        let id_or_prefix = prefix.as_str();
        let all = self.0.lock().unwrap();
        let hits: Vec<&CatalogEntry> = all
            .iter()
            .filter(|e| e.snapshot_id.as_str().starts_with(id_or_prefix))
            .collect();
        match hits.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            _ => Err(RepoError::Conflict(format!(
                "`{id_or_prefix}` is ambiguous"
            ))),
        }
    }

    async fn latest_for_source(
        &self,
        source_id: SourceId,
    ) -> Result<Option<CatalogEntry>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|e| e.source_id == Some(source_id))
            .cloned())
    }

    async fn record_verification(
        &self,
        snapshot_id: &SnapshotId,
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), RepoError> {
        if let Some(e) = self
            .0
            .lock()
            .unwrap()
            .iter_mut()
            .find(|e| e.snapshot_id == *snapshot_id)
        {
            e.verified_at = Some(at);
            e.verify_result = Some(result.to_owned());
        }
        Ok(())
    }

    /// By source only (what a backup asks, for its source's last good snapshot), newest
    /// first.
    async fn query(&self, filter: &BackupFilter) -> Result<Page<CatalogEntry>, RepoError> {
        let all = self.0.lock().unwrap();
        let matching: Vec<_> = all
            .iter()
            .rev()
            .filter(|e| filter.source_id.is_none_or(|id| e.source_id == Some(id)))
            .cloned()
            .collect();
        let total = matching.len() as u64;
        let items = matching
            .into_iter()
            .skip(usize::try_from(filter.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(filter.limit).unwrap_or(usize::MAX))
            .collect();
        Ok(Page { items, total })
    }

    async fn delete(&self, snapshot_id: &SnapshotId) -> Result<bool, RepoError> {
        let mut all = self.0.lock().unwrap();
        let before = all.len();
        all.retain(|e| e.snapshot_id != *snapshot_id);
        Ok(all.len() != before)
    }

    async fn set_protected(
        &self,
        snapshot_id: &SnapshotId,
        protected: bool,
    ) -> Result<bool, RepoError> {
        let mut all = self.0.lock().unwrap();
        let Some(e) = all.iter_mut().find(|e| e.snapshot_id == *snapshot_id) else {
            return Ok(false);
        };
        e.protected = protected;
        Ok(true)
    }

    async fn stats(&self) -> Result<CatalogStats, RepoError> {
        let all = self.0.lock().unwrap();
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        for e in all.iter() {
            *by_status.entry(e.status.as_str().to_owned()).or_default() += 1;
        }
        Ok(CatalogStats {
            count_by_status: by_status.into_iter().collect(),
            total: all.len() as u64,
            logical_bytes: all.iter().map(|e| e.size).sum(),
            stored_bytes_added: all.iter().map(|e| e.stored_bytes_added).sum(),
        })
    }

    async fn latest_per_source(&self) -> Result<Vec<(SourceId, CatalogEntry)>, RepoError> {
        let mut latest: BTreeMap<SourceId, CatalogEntry> = BTreeMap::new();
        // Inserted oldest first: a later row of a source replaces an earlier one.
        for e in self.0.lock().unwrap().iter() {
            if let Some(id) = e.source_id {
                latest.insert(id, e.clone());
            }
        }
        Ok(latest.into_iter().collect())
    }
}

/// What the fake engine does with the next backup of a source.
enum Plan {
    /// Wait until the test opens the gate (or drops its end), then finish, unless a
    /// cancel was asked for meanwhile: then stop with `Cancelled`.
    Gate(oneshot::Receiver<()>),
    /// Panic in the middle of the work.
    Panic,
    /// Fail as a damaged repository would.
    Fail,
    /// Finish with a snapshot that missed an unreadable file.
    Partial,
}

/// Files and bytes every fake backup reports.
const FILES: u64 = 3;
const BYTES: u64 = 300;

#[derive(Default)]
struct FakeEngine {
    /// Plans by source name, used in order; with none left a backup finishes at once.
    plans: Mutex<HashMap<String, VecDeque<Plan>>>,
    /// Sources whose backup the engine was asked for, in order.
    started: Mutex<Vec<String>>,
    /// Restores the engine was asked for (targets), in order.
    restores: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    next_snapshot: AtomicU64,
    /// Bytes each backup stores (default `BYTES`).
    stores: Mutex<Option<u64>>,
    /// Prunes run.
    prunes: AtomicUsize,
}

/// Counts one operation in flight until dropped (also when the operation panics).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeEngine {
    /// The next backup of `source` waits for the returned sender.
    fn gate(&self, source: &str) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        self.plan(source, Plan::Gate(rx));
        tx
    }

    fn plan(&self, source: &str, plan: Plan) {
        self.plans
            .lock()
            .unwrap()
            .entry(source.to_owned())
            .or_default()
            .push_back(plan);
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }

    fn enter(&self) -> InFlight<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }
}

#[async_trait]
impl SnapshotEngine for FakeEngine {
    async fn backup(
        &self,
        request: BackupRequest,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<SnapshotSummary, EngineFailure> {
        let _in_flight = self.enter();
        self.started
            .lock()
            .unwrap()
            .push(request.source_name.clone());
        let plan = self
            .plans
            .lock()
            .unwrap()
            .get_mut(&request.source_name)
            .and_then(VecDeque::pop_front);
        progress.set_totals(FILES, BYTES);
        progress
            .log
            .info(format!("reading {}", request.path.display()));
        let mut partial = false;
        match plan {
            None => {}
            Some(Plan::Gate(rx)) => {
                // Either end of the gate lets the backup go on.
                let _ = rx.await;
            }
            Some(Plan::Panic) => panic!("the fake engine panics on purpose"),
            Some(Plan::Fail) => {
                return Err(EngineFailure::Damaged("pack 1234 is missing".into()));
            }
            Some(Plan::Partial) => {
                // As the engine does: each warning goes to the job's log as it happens.
                progress.log.warn_contents("secret.db: permission denied");
                partial = true;
            }
        }
        // The safe point: a cancelled backup leaves no snapshot.
        if cancel.is_cancelled() {
            return Err(EngineFailure::Cancelled);
        }
        let stores = self.stores.lock().unwrap().unwrap_or(BYTES);
        if request.budget.as_ref().is_some_and(|b| !b.try_take(stores)) {
            return Err(EngineFailure::QuotaExceeded(format!(
                "would pass the quota storing {stores} bytes"
            )));
        }
        progress.add(FILES, BYTES);
        let n = self.next_snapshot.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(SnapshotSummary {
            id: format!("{n:064x}"),
            source: request.source_name,
            path: request.path.to_string_lossy().into_owned(),
            hostname: "test".into(),
            started_at: t0(),
            finished_at: t0(),
            status: if partial {
                SnapshotStatus::Partial
            } else {
                SnapshotStatus::Ok
            },
            encrypted: true,
            parent: request.parent,
            files: FILES,
            dirs: 1,
            bytes: BYTES,
            bytes_added: BYTES,
            stored_bytes_added: stores,
            unchanged_files: 0,
            excluded: 0,
            warnings: if partial {
                vec!["secret.db: permission denied".into()]
            } else {
                Vec::new()
            },
            suspicious: None,
        })
    }

    async fn import_tree(
        &self,
        _: coffer_domain::engine::ImportRequest,
        _: Box<dyn coffer_domain::import::TreeSource>,
        _: Arc<Progress>,
        _: Cancel,
    ) -> Result<SnapshotSummary, EngineFailure> {
        Err(EngineFailure::Other("the job tests import nothing".into()))
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotSummary>, EngineFailure> {
        Ok(Vec::new())
    }

    async fn list_dir(&self, _: &str, _: &str) -> Result<Vec<EntryInfo>, EngineFailure> {
        Ok(Vec::new())
    }

    async fn stat(&self, _: &str, path: &str) -> Result<EntryInfo, EngineFailure> {
        Ok(EntryInfo {
            name: path.rsplit('/').next().unwrap_or_default().to_owned(),
            kind: EntryKind::Dir,
            size: 0,
            mtime: t0(),
            mode: 0o755,
            xattrs: Vec::new(),
            links: 1,
        })
    }

    async fn restore(
        &self,
        _: &str,
        _: Option<&str>,
        target: &Path,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<RestoreReport, EngineFailure> {
        let _in_flight = self.enter();
        self.restores
            .lock()
            .unwrap()
            .push(target.to_string_lossy().into_owned());
        if cancel.is_cancelled() {
            return Err(EngineFailure::Cancelled);
        }
        progress.set_totals(FILES, BYTES);
        progress.add(FILES, BYTES);
        Ok(RestoreReport {
            files: FILES,
            dirs: 1,
            symlinks: 0,
            bytes: BYTES,
            ..RestoreReport::default()
        })
    }

    async fn verify(
        &self,
        snapshot: &str,
        read_data: bool,
        _: Arc<Progress>,
        _: Cancel,
    ) -> Result<VerifyReport, EngineFailure> {
        Ok(VerifyReport {
            snapshot: snapshot.to_owned(),
            read_data,
            problems: Vec::new(),
            damaged_files: Vec::new(),
            bytes_read: 0,
        })
    }

    async fn export(
        &self,
        _: &str,
        _: Option<&str>,
        _: ArchiveFormat,
        _: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, EngineFailure> {
        Err(EngineFailure::Other(
            "export is not used by the job tests".into(),
        ))
    }

    async fn forget(&self, _: &str) -> Result<(), EngineFailure> {
        Err(EngineFailure::Other(
            "forget is not used by the job tests".into(),
        ))
    }

    async fn prune(
        &self,
        options: PruneOptions,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<PruneReport, EngineFailure> {
        let _in_flight = self.enter();
        if cancel.is_cancelled() {
            return Err(EngineFailure::Cancelled);
        }
        self.prunes.fetch_add(1, Ordering::SeqCst);
        progress.set_totals(1, 0);
        progress.add(1, 0);
        Ok(PruneReport {
            dry_run: options.dry_run,
            snapshots: 1,
            packs_before: 2,
            packs_deleted: 1,
            bytes_before: 2 * BYTES,
            bytes_after: BYTES,
            ..PruneReport::default()
        })
    }

    async fn check(
        &self,
        slice: Option<CheckSlice>,
        _: Arc<Progress>,
        _: Cancel,
    ) -> Result<CheckReport, EngineFailure> {
        Ok(CheckReport {
            snapshots: 1,
            packs_total: u64::from(slice.map_or(0, |s| s.count)),
            packs_read: u64::from(slice.is_some()),
            ..CheckReport::default()
        })
    }

    async fn stored_bytes(&self) -> Result<u64, EngineFailure> {
        Ok(0)
    }
}

/// Named counters, as the counters table keeps them.
#[derive(Default)]
pub(crate) struct FakeCounters(Mutex<HashMap<String, i64>>);

#[async_trait]
impl CounterRepository for FakeCounters {
    async fn get(&self, name: &str) -> Result<i64, RepoError> {
        Ok(self.0.lock().unwrap().get(name).copied().unwrap_or(0))
    }
    async fn add(&self, name: &str, delta: i64) -> Result<i64, RepoError> {
        let mut map = self.0.lock().unwrap();
        let v = map.entry(name.to_owned()).or_default();
        *v += delta;
        Ok(*v)
    }
    async fn set(&self, name: &str, value: i64) -> Result<(), RepoError> {
        self.0.lock().unwrap().insert(name.to_owned(), value);
        Ok(())
    }
}

/// Paths on a pretend filesystem: `links` maps a directory to where it points, `used`
/// holds directories that are not empty.
#[derive(Default)]
struct FakePaths {
    links: Mutex<HashMap<String, String>>,
    used: Mutex<HashSet<String>>,
}

/// Every restore target's volume, with room to spare.
struct RoomyTargets;

impl coffer_domain::alerts::DiskMonitor for RoomyTargets {
    fn space(
        &self,
        _: &Path,
    ) -> Result<coffer_domain::alerts::DiskSpace, coffer_domain::alerts::DiskSpaceError> {
        Ok(coffer_domain::alerts::DiskSpace {
            total_bytes: 1 << 50,
            available_bytes: 1 << 49,
            mount_point: "/srv".into(),
        })
    }
}

impl LocalPaths for FakePaths {
    fn readable_dir(&self, path: &str) -> Result<String, PathProblem> {
        Err(PathProblem {
            path: path.to_owned(),
            reason: "the job tests back up sources by id".into(),
        })
    }

    fn resolve_target(&self, path: &str) -> Result<String, PathProblem> {
        let p = Path::new(path);
        if !p.is_absolute()
            || p.components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(PathProblem {
                path: path.to_owned(),
                reason: "not a plain absolute path".into(),
            });
        }
        let links = self.links.lock().unwrap();
        for (from, to) in links.iter() {
            if let Ok(rest) = p.strip_prefix(from) {
                return Ok(Path::new(to).join(rest).to_string_lossy().into_owned());
            }
        }
        Ok(path.to_owned())
    }

    fn is_free(&self, path: &str) -> bool {
        !self.used.lock().unwrap().contains(path)
    }

    fn preview_excludes(
        &self,
        dir: &str,
        _: &coffer_domain::excludes::Excludes,
        _: usize,
        _: u64,
    ) -> Result<coffer_domain::excludes::ExcludePreview, PathProblem> {
        Err(PathProblem {
            path: dir.to_owned(),
            reason: "the job tests walk no directory".into(),
        })
    }
}

#[derive(Default)]
struct FakeAudit {
    rows: Mutex<Vec<AuditRecord>>,
    /// The next `append` waits for this before writing.
    hold: Mutex<Option<oneshot::Receiver<()>>>,
}

impl FakeAudit {
    /// Makes the next `append` wait until the returned sender fires.
    fn hold_next_append(&self) -> oneshot::Sender<()> {
        let (tx, rx) = oneshot::channel();
        *self.hold.lock().unwrap() = Some(rx);
        tx
    }

    /// `(action, username, success)` of every row, oldest first.
    fn rows(&self) -> Vec<(String, String, bool)> {
        self.rows
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.entry.action.clone(),
                    r.entry.username.clone(),
                    r.entry.success,
                )
            })
            .collect()
    }

    fn count(&self, action: &str) -> usize {
        self.rows().iter().filter(|(a, _, _)| a == action).count()
    }
}

#[async_trait]
impl AuditRepository for FakeAudit {
    async fn append(
        &self,
        entry: &AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<AuditRecord, RepoError> {
        let held = self.hold.lock().unwrap().take();
        if let Some(rx) = held {
            let _ = rx.await;
        }
        let mut rows = self.rows.lock().unwrap();
        let prev_hash = rows
            .last()
            .map_or_else(|| GENESIS_HASH.to_owned(), |r| r.row_hash.clone());
        let record = AuditRecord {
            id: i64::try_from(rows.len()).unwrap() + 1,
            timestamp: now,
            entry: entry.clone(),
            row_hash: chain_hash(&prev_hash, now, entry),
            prev_hash,
        };
        rows.push(record.clone());
        Ok(record)
    }

    async fn list(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>, RepoError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|r| filter.action.as_ref().is_none_or(|a| &r.entry.action == a))
            .filter(|r| {
                filter
                    .username
                    .as_ref()
                    .is_none_or(|u| &r.entry.username == u)
            })
            .take(usize::try_from(limit).unwrap())
            .cloned()
            .collect())
    }

    async fn scan(&self, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>, RepoError> {
        Ok(self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.id > after_id)
            .take(usize::try_from(limit).unwrap())
            .cloned()
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// The world a test runs in
// ---------------------------------------------------------------------------------------

const ROOT: &str = "/srv/restore";

struct World {
    jobs: Arc<JobService>,
    backups: Arc<BackupService>,
    restores: Arc<RestoreService>,
    maintenance: Arc<MaintenanceService>,
    repo: Arc<FakeJobs>,
    sources: Arc<FakeSources>,
    catalog: Arc<FakeCatalog>,
    engine: Arc<FakeEngine>,
    paths: Arc<FakePaths>,
    audit: Arc<FakeAudit>,
    tasks: Arc<Tasks>,
    pool: LocalPool,
    storage: Arc<StorageService>,
    alert_rows: Arc<FakeAlerts>,
    clock: Arc<StepClock>,
}

impl World {
    fn new(max_running: usize) -> Self {
        Self::with_repo(max_running, Arc::new(FakeJobs::default()))
    }

    fn with_quota(quota: Quota) -> Self {
        Self::build(2, Arc::new(FakeJobs::default()), quota)
    }

    fn with_repo(max_running: usize, repo: Arc<FakeJobs>) -> Self {
        Self::build(max_running, repo, Quota::default())
    }

    fn build(max_running: usize, repo: Arc<FakeJobs>, quota: Quota) -> Self {
        Self::build_with(
            JobOptions {
                max_running,
                max_queued_per_user: 0,
                shared: false,
                lease: JobOptions::DEFAULT_LEASE,
            },
            repo,
            quota,
        )
    }

    fn build_with(options: JobOptions, repo: Arc<FakeJobs>, quota: Quota) -> Self {
        let sources = Arc::new(FakeSources::default());
        let catalog = Arc::new(FakeCatalog::default());
        let engine = Arc::new(FakeEngine::default());
        let paths = Arc::new(FakePaths::default());
        let audit = Arc::new(FakeAudit::default());
        let tasks = Arc::new(Tasks::default());
        let step_clock = Arc::new(StepClock::new());
        let clock: Arc<dyn Clock> = step_clock.clone();
        let log = AuditLog::new(audit.clone(), clock.clone());
        let alert_rows = Arc::new(FakeAlerts::default());
        let alerts = Arc::new(AlertService::new(
            alert_rows.clone(),
            None,
            tasks.clone(),
            clock.clone(),
            log.clone(),
        ));
        let disk = Arc::new(DiskGuard::new(
            Arc::new(FakeDisk::free_mb(100_000)),
            Some("/srv/coffer/repository".into()),
            DiskThresholds {
                warning_free_mb: 5120,
                min_free_mb: 1024,
            },
            alerts.clone(),
        ));
        let counters = Arc::new(FakeCounters::default());
        let storage = Arc::new(StorageService::new(
            counters.clone(),
            engine.clone(),
            alerts.clone(),
            disk,
            quota,
            log.clone(),
        ));
        let jobs = Arc::new(JobService::new(
            repo.clone(),
            repo.clone(),
            tasks.clone(),
            clock.clone(),
            log.clone(),
            options,
        ));
        let maintenance = Arc::new(MaintenanceService::new(
            engine.clone(),
            counters,
            MaintenancePorts {
                stored: storage.clone(),
                alerts: alerts.clone(),
                queue: jobs.clone(),
            },
            log.clone(),
            20,
        ));
        let catalog_service = Arc::new(CatalogService::new(
            engine.clone(),
            catalog.clone(),
            sources.clone(),
            clock.clone(),
            log.clone(),
        ));
        let retention = Arc::new(RetentionService::new(
            catalog.clone(),
            sources.clone(),
            catalog_service,
            RetentionStatus {
                enabled: false,
                defaults: coffer_domain::retention::Retention::default(),
            },
            clock.clone(),
        ));
        let backups = Arc::new(BackupService::new(
            engine.clone(),
            sources.clone(),
            catalog.clone(),
            paths.clone(),
            vec!["/var/lib/coffer".into()],
            BackupPorts {
                admission: storage.clone(),
                alerts,
                retention,
                queue: jobs.clone(),
            },
            clock.clone(),
            log.clone(),
        ));
        let restores = Arc::new(RestoreService::new(
            engine.clone(),
            catalog.clone(),
            paths.clone(),
            vec![ROOT.into()],
            jobs.clone(),
            TargetRoom {
                monitor: Arc::new(RoomyTargets),
                reserve_mb: 1024,
            },
            clock,
            log,
        ));
        jobs.register(JobKind::Backup, &backups);
        jobs.register(JobKind::Restore, &restores);
        jobs.register(JobKind::Verify, &restores);
        jobs.register(JobKind::Prune, &maintenance);
        jobs.register(JobKind::Check, &maintenance);
        Self {
            jobs,
            backups,
            restores,
            maintenance,
            repo,
            sources,
            catalog,
            engine,
            paths,
            audit,
            tasks,
            pool: LocalPool::new(),
            storage,
            alert_rows,
            clock: step_clock,
        }
    }

    /// Moves this world's clock `secs` seconds on.
    fn later(&self, secs: i64) {
        self.clock.0.fetch_add(secs, Ordering::SeqCst);
    }

    /// The runner's periodic step, then whatever it started.
    fn maintain(&mut self) {
        block_on(self.jobs.maintain()).unwrap();
        self.settle();
    }

    fn source(&self, name: &str) -> SourceId {
        block_on(
            self.sources
                .create(&SourceSpec::plain(name, &format!("/data/{name}")), t0()),
        )
        .unwrap()
        .id
    }

    /// Runs background work until none of it can move without the test.
    fn settle(&mut self) {
        loop {
            let spawned = self.tasks.take();
            let none = spawned.is_empty();
            for task in spawned {
                self.pool.spawner().spawn(task).unwrap();
            }
            self.pool.run_until_stalled();
            if none && self.tasks.0.lock().unwrap().is_empty() {
                break;
            }
        }
    }

    fn backup(&self, actor: &Actor, source: SourceId) -> Result<JobStatus, BackupError> {
        block_on(self.backups.start(actor, source))
    }

    fn get(&self, id: JobId) -> JobStatus {
        block_on(self.jobs.get(&operator(), id)).unwrap()
    }

    fn state(&self, id: JobId) -> JobState {
        self.get(id).job.state
    }

    fn cancel(&self, actor: &Actor, id: JobId) -> Result<JobStatus, JobsError> {
        block_on(self.jobs.cancel(actor, id))
    }
}

fn actor(name: &str, role: Role) -> Actor {
    Actor {
        username: name.into(),
        user_id: Some(UserId::new(7)),
        role,
        client: ClientInfo::default(),
    }
}

fn operator() -> Actor {
    actor("olga", Role::Operator)
}

fn viewer() -> Actor {
    actor("victor", Role::Viewer)
}

#[allow(clippy::needless_pass_by_value)] // takes what a call returns, as the callers have it
fn job_running_id(e: impl CodedError) -> JobId {
    match e.class() {
        ErrorClass::JobRunning(job_id) => job_id,
        _ => panic!("expected job_running, got {e:?}"),
    }
}

/// The common part of an area's error, if that is what it is.
trait Common: std::fmt::Debug {
    fn common(&self) -> Option<&CommonError>;
}

impl Common for BackupError {
    fn common(&self) -> Option<&CommonError> {
        match self {
            Self::Common(c) => Some(c),
            _ => None,
        }
    }
}

impl Common for RestoreError {
    fn common(&self) -> Option<&CommonError> {
        match self {
            Self::Common(c) => Some(c),
            _ => None,
        }
    }
}

impl Common for MaintenanceError {
    fn common(&self) -> Option<&CommonError> {
        match self {
            Self::Common(c) => Some(c),
            _ => None,
        }
    }
}

impl Common for JobsError {
    fn common(&self) -> Option<&CommonError> {
        match self {
            Self::Common(c) => Some(c),
            Self::JobFinished(_) | Self::InvalidPeriod(_) => None,
        }
    }
}

#[allow(clippy::needless_pass_by_value)] // takes what a call returns, as the callers have it
fn forbidden_permission(e: impl Common) -> Permission {
    match e.common() {
        Some(CommonError::Forbidden(f)) => f.permission,
        _ => panic!("expected forbidden, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 1. Queue order and the running bound
// ---------------------------------------------------------------------------------------

#[test]
fn with_one_slot_jobs_run_one_at_a_time_in_submission_order() {
    let mut w = World::new(1);
    let op = operator();
    // Names and ids in an order unlike their submission order.
    let names = ["zeta", "alpha", "mid"];
    let sources: Vec<SourceId> = names.iter().map(|n| w.source(n)).collect();
    let mut gates: Vec<_> = names.iter().map(|n| Some(w.engine.gate(n))).collect();

    let ids: Vec<JobId> = sources
        .iter()
        .map(|s| {
            let status = w.backup(&op, *s).unwrap();
            assert!(w.jobs.running() <= 1);
            status.job.id
        })
        .collect();
    w.settle();

    for step in 0..names.len() {
        // The job of this step runs; those before it are done, those after it wait.
        assert_eq!(w.engine.started(), names[..=step].to_vec(), "step {step}");
        assert_eq!(w.jobs.running(), 1, "step {step}");
        for (i, id) in ids.iter().enumerate() {
            let expected = match i.cmp(&step) {
                std::cmp::Ordering::Less => JobState::Succeeded,
                std::cmp::Ordering::Equal => JobState::Running,
                std::cmp::Ordering::Greater => JobState::Queued,
            };
            assert_eq!(w.state(*id), expected, "job {i} at step {step}");
            assert_eq!(
                w.repo.row(*id).unwrap().state,
                expected,
                "row {i} at step {step}"
            );
        }
        gates[step].take().unwrap().send(()).unwrap();
        w.settle();
        assert!(w.jobs.running() <= 1);
    }

    assert_eq!(w.engine.started(), names.to_vec());
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(w.engine.max_in_flight.load(Ordering::SeqCst), 1);
    // Each started in turn: its `started_at` is after the previous one's `finished_at`.
    let rows: Vec<Job> = ids.iter().map(|id| w.repo.row(*id).unwrap()).collect();
    for pair in rows.windows(2) {
        assert!(pair[1].started_at.unwrap() > pair[0].finished_at.unwrap());
    }
}

#[test]
fn with_two_slots_two_jobs_run_and_the_third_waits() {
    let mut w = World::new(2);
    let op = operator();
    let names = ["a", "b", "c"];
    let sources: Vec<SourceId> = names.iter().map(|n| w.source(n)).collect();
    let gates: Vec<_> = names.iter().map(|n| w.engine.gate(n)).collect();
    let ids: Vec<JobId> = sources
        .iter()
        .map(|s| w.backup(&op, *s).unwrap().job.id)
        .collect();
    w.settle();
    assert_eq!(w.jobs.running(), 2);
    assert_eq!(w.engine.started(), ["a", "b"]);
    assert_eq!(w.state(ids[2]), JobState::Queued);

    // The second one ends first: the third takes its slot.
    let mut gates = gates.into_iter();
    let (ga, gb, gc) = (
        gates.next().unwrap(),
        gates.next().unwrap(),
        gates.next().unwrap(),
    );
    gb.send(()).unwrap();
    w.settle();
    assert_eq!(w.engine.started(), ["a", "b", "c"]);
    assert_eq!(w.jobs.running(), 2);
    ga.send(()).unwrap();
    gc.send(()).unwrap();
    w.settle();
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(w.engine.max_in_flight.load(Ordering::SeqCst), 2);
    for id in ids {
        assert_eq!(w.state(id), JobState::Succeeded);
    }
}

// ---------------------------------------------------------------------------------------
// 2. One backup per source
// ---------------------------------------------------------------------------------------

#[test]
fn a_second_backup_of_a_source_is_refused_while_the_first_is_queued_or_running() {
    let mut w = World::new(1);
    let op = operator();
    let blocker = w.source("blocker");
    let a = w.source("a");
    let open_blocker = w.engine.gate("blocker");
    let open_a = w.engine.gate("a");

    w.backup(&op, blocker).unwrap();
    let first = w.backup(&op, a).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(first), JobState::Queued);

    // Queued: refused, naming the first job; nothing recorded for the refusal.
    let refused = w.backup(&op, a).unwrap_err();
    assert_eq!(refused.code(), "job_running");
    assert_eq!(job_running_id(refused), first);
    assert_eq!(w.repo.count(), 2);
    assert_eq!(w.audit.count("job_queue"), 2);
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), Some(first));

    // Running: still refused.
    open_blocker.send(()).unwrap();
    w.settle();
    assert_eq!(w.state(first), JobState::Running);
    assert_eq!(job_running_id(w.backup(&op, a).unwrap_err()), first);
    assert_eq!(w.repo.count(), 2);

    // Once it has ended, a new backup of the source is accepted and runs.
    open_a.send(()).unwrap();
    w.settle();
    assert_eq!(w.state(first), JobState::Succeeded);
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), None);
    let again = w.backup(&op, a).unwrap().job.id;
    assert_ne!(again, first);
    w.settle();
    assert_eq!(w.state(again), JobState::Succeeded);
    assert_eq!(w.engine.started(), ["blocker", "a", "a"]);
    // The second snapshot of the source builds on the first.
    let catalog = w.catalog.all();
    assert_eq!(catalog.len(), 3);
    assert_eq!(
        catalog[2].parent_snapshot_id.as_ref(),
        Some(&catalog[1].snapshot_id)
    );
}

#[test]
fn backups_of_different_sources_do_not_block_each_other() {
    let mut w = World::new(2);
    let op = operator();
    let a = w.source("a");
    let b = w.source("b");
    let _open_a = w.engine.gate("a");
    w.backup(&op, a).unwrap();
    let jb = w.backup(&op, b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(jb), JobState::Succeeded);
}

#[test]
fn a_source_is_free_for_its_next_backup_once_the_end_of_its_last_is_recorded() {
    let mut w = World::new(1);
    let op = operator();
    let s = w.source("docs");
    let first = w.backup(&op, s).unwrap().job.id;
    let release = w.repo.hold_final_write();
    w.settle();
    // Ended in memory; its final record is still being written.
    assert_eq!(w.state(first), JobState::Succeeded);
    assert_eq!(w.repo.row(first).unwrap().state, JobState::Running);

    // The catalog decides (for every instance): until the end is recorded, the source
    // is still busy, and the refusal names the job.
    assert_eq!(job_running_id(w.backup(&op, s).unwrap_err()), first);
    release.send(()).unwrap();
    w.settle();
    assert_eq!(w.repo.row(first).unwrap().state, JobState::Succeeded);
    let second = w.backup(&op, s).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(first), JobState::Succeeded);
    assert_eq!(w.state(second), JobState::Succeeded);
    assert_eq!(block_on(w.jobs.backup_of(s)).unwrap(), None);
    assert_eq!(w.jobs.running(), 0);
}

// ---------------------------------------------------------------------------------------
// 3. Cancelling a queued job
// ---------------------------------------------------------------------------------------

#[test]
fn cancelling_a_queued_job_settles_it_at_once_and_frees_its_source() {
    let mut w = World::new(1);
    let op = operator();
    let blocker = w.source("blocker");
    let b = w.source("b");
    let open_blocker = w.engine.gate("blocker");

    let running = w.backup(&op, blocker).unwrap().job.id;
    let queued = w.backup(&op, b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(queued), JobState::Queued);

    // Settled at once, with no background work run in between.
    let status = w.cancel(&op, queued).unwrap();
    assert_eq!(status.job.state, JobState::Cancelled);
    assert!(status.job.finished_at.is_some());
    assert_eq!(status.job.started_at, None);
    assert_eq!(w.state(queued), JobState::Cancelled);
    let row = w.repo.row(queued).unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.finished_at, status.job.finished_at);
    assert_eq!(w.audit.count("job_cancel"), 1);
    // The source is free again.
    assert_eq!(block_on(w.jobs.backup_of(b)).unwrap(), None);
    // Cancelling it again: it has ended.
    assert_eq!(w.cancel(&op, queued).unwrap_err().code(), "job_finished");

    // The queue goes on without it: it never reaches the engine.
    open_blocker.send(()).unwrap();
    w.settle();
    assert_eq!(w.state(running), JobState::Succeeded);
    assert_eq!(w.engine.started(), ["blocker"]);
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(w.state(queued), JobState::Cancelled);
    assert_eq!(
        w.repo.states_written(queued),
        [JobState::Queued, JobState::Cancelled]
    );

    // And a new backup of its source is accepted.
    let again = w.backup(&op, b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(again), JobState::Succeeded);
    assert_eq!(w.engine.started(), ["blocker", "b"]);
}

#[test]
fn a_cancel_the_queue_cannot_record_fails_and_says_so() {
    let mut w = World::new(1);
    let op = operator();
    let blocker = w.source("blocker");
    let b = w.source("b");
    let open_blocker = w.engine.gate("blocker");
    w.backup(&op, blocker).unwrap();
    let queued = w.backup(&op, b).unwrap().job.id;
    w.settle();

    // The queue is the catalog: a cancel it cannot record did not happen, and the
    // caller is told so (nothing audited as cancelled).
    w.repo.fail_updates.store(true, Ordering::SeqCst);
    let err = w.cancel(&op, queued).unwrap_err();
    assert_eq!(err.code(), "internal", "{err:?}");
    assert_eq!(w.repo.row(queued).unwrap().state, JobState::Queued);
    assert_eq!(w.audit.count("job_cancel"), 0);

    // Asked again once the database is back, it is cancelled and never runs.
    w.repo.fail_updates.store(false, Ordering::SeqCst);
    assert_eq!(
        w.cancel(&op, queued).unwrap().job.state,
        JobState::Cancelled
    );
    open_blocker.send(()).unwrap();
    w.settle();
    assert_eq!(w.engine.started(), ["blocker"]);
    assert_eq!(w.state(queued), JobState::Cancelled);
    assert_eq!(w.jobs.running(), 0);
}

// ---------------------------------------------------------------------------------------
// 4. Cancelling a running job
// ---------------------------------------------------------------------------------------

#[test]
fn cancelling_a_running_job_ends_it_cancelled_when_the_engine_honours_the_cancel() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let open_a = w.engine.gate("a");
    let id = w.backup(&op, a).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(id), JobState::Running);

    // Asked, not yet stopped: the job runs until its next safe point.
    let status = w.cancel(&op, id).unwrap();
    assert_eq!(status.job.state, JobState::Running);
    assert!(status.cancel_requested);
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), Some(id));

    open_a.send(()).unwrap();
    w.settle();
    let status = w.get(id);
    assert_eq!(status.job.state, JobState::Cancelled);
    assert!(!status.cancel_requested);
    let row = w.repo.row(id).unwrap();
    assert_eq!(row, status.job);
    assert_eq!(row.state, JobState::Cancelled);
    assert!(row.finished_at.is_some());
    assert_eq!(row.error, None);
    assert_eq!(row.result, None);
    assert_eq!(row.snapshot_id, None);
    assert_eq!(
        w.repo.states_written(id),
        [JobState::Queued, JobState::Running, JobState::Cancelled]
    );
    // No snapshot, the slot and the source are free.
    assert!(w.catalog.all().is_empty());
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), None);
}

// ---------------------------------------------------------------------------------------
// 5. A panic in the engine
// ---------------------------------------------------------------------------------------

#[test]
fn a_panicking_backup_fails_as_internal_and_frees_its_slot_and_source() {
    let mut w = World::new(1);
    let op = operator();
    let boom = w.source("boom");
    let next = w.source("next");
    w.engine.plan("boom", Plan::Panic);
    let open_next = w.engine.gate("next");

    let crashed = w.backup(&op, boom).unwrap().job.id;
    let waiting = w.backup(&op, next).unwrap().job.id;
    assert_eq!(w.state(waiting), JobState::Queued);
    w.settle();

    let status = w.get(crashed);
    assert_eq!(status.job.state, JobState::Failed);
    let error = status.job.error.clone().unwrap();
    assert_eq!(error.code, "internal");
    // Nothing of the panic's own words reaches the record.
    assert!(!error.message.contains("on purpose"), "{}", error.message);
    assert_eq!(w.repo.row(crashed).unwrap(), status.job);
    assert!(status.job.finished_at.is_some());

    // The next queued job took the slot.
    assert_eq!(w.engine.started(), ["boom", "next"]);
    assert_eq!(w.state(waiting), JobState::Running);
    assert_eq!(w.jobs.running(), 1);
    // The source is free: a new backup of it is accepted (and waits for the slot).
    assert_eq!(block_on(w.jobs.backup_of(boom)).unwrap(), None);
    let again = w.backup(&op, boom).unwrap().job.id;
    open_next.send(()).unwrap();
    w.settle();
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(w.state(waiting), JobState::Succeeded);
    assert_eq!(w.state(again), JobState::Succeeded);
    assert_eq!(w.engine.started(), ["boom", "next", "boom"]);
    assert_eq!(w.engine.in_flight.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panic_with_nothing_queued_leaves_no_job_running() {
    let mut w = World::new(1);
    let op = operator();
    let boom = w.source("boom");
    w.engine.plan("boom", Plan::Panic);
    let id = w.backup(&op, boom).unwrap().job.id;
    w.settle();
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(w.state(id), JobState::Failed);
    // The engine never returned: no audit row may claim a snapshot was made.
    assert!(
        !w.audit
            .rows()
            .iter()
            .any(|(action, _, ok)| action == "backup_create" && *ok)
    );
    assert!(w.catalog.all().is_empty());
}

// ---------------------------------------------------------------------------------------
// 6. Recovery at start-up
// ---------------------------------------------------------------------------------------

#[test]
fn recover_fails_unfinished_jobs_as_interrupted_and_leaves_finished_ones() {
    let repo = Arc::new(FakeJobs::default());
    let before = t0() - chrono::Duration::hours(1);
    let mut seeded = Vec::new();
    for (i, state) in JobState::ALL.into_iter().enumerate() {
        let id = JobId::from_uuid(uuid::Uuid::from_u128(u128::try_from(i).unwrap() + 1));
        let mut job = Job::queued(
            id,
            JobParams::Backup {
                source_id: SourceId::new(1),
                source_name: "a".into(),
            },
            "olga",
            before,
        );
        job.state = state;
        if state != JobState::Queued {
            job.started_at = Some(before);
        }
        if state.is_final() {
            job.finished_at = Some(before);
        }
        if state == JobState::Failed {
            job.error = Some(JobError::new("damaged", "a pack is damaged"));
        }
        block_on(repo.insert(&job)).unwrap();
        seeded.push((state, job));
    }
    let w = World::with_repo(1, repo);

    assert_eq!(block_on(w.jobs.recover()).unwrap(), 2);

    for (state, old) in &seeded {
        let row = w.repo.row(old.id).unwrap();
        if state.is_final() {
            assert_eq!(&row, old, "{state} must be left alone");
        } else {
            assert_eq!(row.state, JobState::Failed, "{state}");
            assert_eq!(row.error.as_ref().unwrap().code, "interrupted", "{state}");
            let finished = row.finished_at.unwrap();
            assert!(finished >= t0(), "finished_at is the time of recovery");
            assert_eq!(row.params, old.params);
            assert_eq!(row.started_at, old.started_at);
        }
        // The service reports the rows as they now are.
        assert_eq!(w.get(old.id).job, row);
    }
    // Nothing left to recover the second time.
    assert_eq!(block_on(w.jobs.recover()).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// 7. Permissions
// ---------------------------------------------------------------------------------------

#[test]
fn a_viewer_cannot_start_a_backup_and_nothing_is_recorded() {
    let mut w = World::new(1);
    let a = w.source("a");
    let err = w.backup(&viewer(), a).unwrap_err();
    assert_eq!(forbidden_permission(err), Permission::Backup);
    w.settle();
    assert_eq!(w.repo.count(), 0);
    assert!(w.audit.rows().is_empty());
    assert!(w.engine.started().is_empty());
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), None);
    assert_eq!(w.jobs.running(), 0);
}

#[test]
fn cancelling_a_backup_needs_the_backup_permission() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let b = w.source("b");
    let open_a = w.engine.gate("a");
    let running = w.backup(&op, a).unwrap().job.id;
    let queued = w.backup(&op, b).unwrap().job.id;
    w.settle();

    // A viewer may look but not cancel, whether the job runs or waits.
    for id in [running, queued] {
        let err = w.cancel(&viewer(), id).unwrap_err();
        assert_eq!(forbidden_permission(err), Permission::Backup);
        assert!(!w.get(id).cancel_requested);
    }
    assert_eq!(w.state(running), JobState::Running);
    assert_eq!(w.state(queued), JobState::Queued);
    assert_eq!(w.audit.count("job_cancel"), 0);

    // An operator (who has `backup`) may.
    assert_eq!(
        w.cancel(&op, queued).unwrap().job.state,
        JobState::Cancelled
    );
    assert!(w.cancel(&op, running).unwrap().cancel_requested);
    open_a.send(()).unwrap();
    w.settle();
    assert_eq!(w.state(running), JobState::Cancelled);
    assert_eq!(w.audit.count("job_cancel"), 2);

    // Once it has ended, a viewer still learns nothing more than "forbidden".
    let err = w.cancel(&viewer(), running).unwrap_err();
    assert_eq!(forbidden_permission(err), Permission::Backup);
    assert_eq!(w.cancel(&op, running).unwrap_err().code(), "job_finished");
}

// ---------------------------------------------------------------------------------------
// 8. The final record
// ---------------------------------------------------------------------------------------

#[test]
fn the_final_record_holds_the_outcome_and_matches_what_get_returns() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let open_a = w.engine.gate("a");
    let id = w.backup(&op, a).unwrap().job.id;
    w.settle();

    // While it runs, `get` shows the live counters (the engine set the totals).
    let live = w.get(id);
    assert_eq!(live.job.state, JobState::Running);
    assert_eq!(live.job.progress.files_total, Some(FILES));
    assert!(live.job.started_at.is_some());

    open_a.send(()).unwrap();
    w.settle();
    let catalog = w.catalog.all();
    assert_eq!(catalog.len(), 1);
    let snap = &catalog[0];

    let row = w.repo.row(id).unwrap();
    assert_eq!(row.state, JobState::Succeeded);
    assert_eq!(row.snapshot_id.as_ref(), Some(&snap.snapshot_id));
    assert_eq!(
        row.result,
        Some(JobResult::Backup {
            snapshot_id: snap.snapshot_id.clone(),
            status: SnapshotStatus::Ok,
            files: FILES,
            bytes: BYTES,
            bytes_added: BYTES,
            warnings: Vec::new(),
        })
    );
    assert_eq!(row.error, None);
    assert_eq!(row.started_at, live.job.started_at);
    assert!(row.finished_at.unwrap() > row.started_at.unwrap());
    assert_eq!(
        row.progress,
        JobProgress {
            files_done: FILES,
            bytes_done: BYTES,
            files_total: Some(FILES),
            bytes_total: Some(BYTES),
            totals_final: true,
        }
    );
    assert_eq!(row.requested_by, "olga");
    assert_eq!(row.source_id, Some(a));

    // No longer live: `get` and `list` answer with exactly the record.
    let status = w.get(id);
    assert_eq!(status.job, row);
    assert!(!status.cancel_requested);
    assert_eq!(status.rate_bytes_per_sec, None);
    assert_eq!(status.eta_secs, None);
    let listed = block_on(w.jobs.list(
        &op,
        JobFilter {
            limit: 10,
            ..JobFilter::default()
        },
    ))
    .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items, [status]);
    assert_eq!(
        w.repo.states_written(id),
        [JobState::Queued, JobState::Running, JobState::Succeeded]
    );
}

#[test]
fn an_outcome_that_cannot_be_written_stays_visible_and_is_written_at_shutdown() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let open_a = w.engine.gate("a");
    let id = w.backup(&op, a).unwrap().job.id;
    w.settle();
    w.repo.fail_updates.store(true, Ordering::SeqCst);
    open_a.send(()).unwrap();
    w.settle();

    // The database still says running; readers see the truth from memory, and the
    // source stays busy until the catalog knows the job ended.
    assert_eq!(w.repo.row(id).unwrap().state, JobState::Running);
    assert_eq!(w.state(id), JobState::Succeeded);
    assert_eq!(w.jobs.running(), 0);
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), Some(id));

    w.repo.fail_updates.store(false, Ordering::SeqCst);
    block_on(w.jobs.shutdown());
    let row = w.repo.row(id).unwrap();
    assert_eq!(row.state, JobState::Succeeded);
    assert_eq!(row, w.get(id).job);
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

#[test]
fn shutdown_interrupts_running_and_queued_jobs_and_refuses_new_ones() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let b = w.source("b");
    let open_a = w.engine.gate("a");
    let running = w.backup(&op, a).unwrap().job.id;
    let queued = w.backup(&op, b).unwrap().job.id;
    w.settle();

    block_on(w.jobs.shutdown());
    let row = w.repo.row(queued).unwrap();
    assert_eq!(row.state, JobState::Failed);
    assert_eq!(row.error.unwrap().code, "interrupted");
    assert_eq!(w.jobs.running(), 1);
    assert!(w.get(running).cancel_requested);
    let err = w.backup(&op, w.source("c")).unwrap_err();
    assert_eq!(err.code(), "shutting_down");

    open_a.send(()).unwrap();
    w.settle();
    assert_eq!(w.jobs.running(), 0);
    let row = w.repo.row(running).unwrap();
    assert_eq!(row.state, JobState::Failed);
    assert_eq!(row.error.unwrap().code, "interrupted");
    // The queued job never ran.
    assert_eq!(w.engine.started(), ["a"]);
}

// ---------------------------------------------------------------------------------------
// Restore targets
// ---------------------------------------------------------------------------------------

/// Puts one finished snapshot in the catalog and returns its id.
fn snapshot(w: &mut World) -> String {
    let s = w.source("snap");
    w.backup(&operator(), s).unwrap();
    w.settle();
    w.catalog.all().last().unwrap().snapshot_id.to_string()
}

#[test]
fn restores_into_overlapping_targets_are_refused_while_the_first_lives() {
    let mut w = World::new(1);
    let op = operator();
    let snap = snapshot(&mut w);
    // Keep the slot busy so that the restores wait in the queue.
    let blocker = w.source("blocker");
    let open_blocker = w.engine.gate("blocker");
    w.backup(&op, blocker).unwrap();
    w.settle();

    let first = block_on(
        w.restores
            .start_restore(&op, &snap, None, Some("/srv/restore/x")),
    )
    .unwrap()
    .job
    .id;
    for overlapping in ["/srv/restore/x", "/srv/restore/x/inner", "/srv/restore"] {
        let err = block_on(
            w.restores
                .start_restore(&op, &snap, None, Some(overlapping)),
        )
        .unwrap_err();
        assert_eq!(job_running_id(err), first, "{overlapping}");
    }
    // A sibling is fine.
    let sibling = block_on(
        w.restores
            .start_restore(&op, &snap, None, Some("/srv/restore/y")),
    )
    .unwrap()
    .job
    .id;

    open_blocker.send(()).unwrap();
    w.settle();
    assert_eq!(w.state(first), JobState::Succeeded);
    assert_eq!(w.state(sibling), JobState::Succeeded);
    assert_eq!(
        *w.engine.restores.lock().unwrap(),
        ["/srv/restore/x", "/srv/restore/y"]
    );
    // Once it has ended the target may be used again (it is empty in this pretend world).
    assert!(
        block_on(
            w.restores
                .start_restore(&op, &snap, None, Some("/srv/restore/x"))
        )
        .is_ok()
    );
}

#[test]
fn one_user_cannot_fill_the_queue() {
    let mut w = World::build_with(
        JobOptions {
            max_running: 1,
            max_queued_per_user: 2,
            shared: false,
            lease: JobOptions::DEFAULT_LEASE,
        },
        Arc::new(FakeJobs::default()),
        Quota::default(),
    );
    let olga = operator();
    let open_running = w.engine.gate("running");
    w.backup(&olga, w.source("running")).unwrap();
    w.settle();
    // The running job does not count; two may wait.
    w.backup(&olga, w.source("a")).unwrap();
    w.backup(&olga, w.source("b")).unwrap();
    let c = w.source("c");
    let err = w.backup(&olga, c).unwrap_err();
    assert_eq!(err.code(), "too_many_jobs", "{err}");
    // Another user, and the scheduler (no user), still get in.
    w.backup(&actor("otto", Role::Operator), w.source("d"))
        .unwrap();
    w.backup(&Actor::local_admin("scheduler"), w.source("e"))
        .unwrap();
    open_running.send(()).unwrap();
    w.settle();
    // Once hers have run, she may queue again.
    w.backup(&olga, c).unwrap();
    w.settle();
}

#[test]
fn refused_restores_name_no_server_path() {
    let mut w = World::new(1);
    let op = operator();
    let snap = snapshot(&mut w);
    w.paths
        .used
        .lock()
        .unwrap()
        .insert("/srv/restore/busy".to_owned());
    let mut messages = Vec::new();
    for target in [
        "busy",
        "/srv/restore/busy",
        "/etc",
        "../etc",
        "/srv/restore/../x",
    ] {
        let err = block_on(w.restores.start_restore(&op, &snap, None, Some(target))).unwrap_err();
        messages.push((target, err.code(), err.to_string()));
    }
    // An overlapping restore while the first waits in the queue.
    let blocker = w.source("blocker");
    let open_blocker = w.engine.gate("blocker");
    w.backup(&op, blocker).unwrap();
    w.settle();
    block_on(w.restores.start_restore(&op, &snap, None, Some("x"))).unwrap();
    let err = block_on(w.restores.start_restore(&op, &snap, None, Some("x/inner"))).unwrap_err();
    messages.push(("x/inner", err.code(), err.to_string()));
    for (target, code, message) in &messages {
        assert!(!message.contains("/srv"), "{target} ({code}): {message}");
    }
    assert_eq!(
        messages.iter().map(|m| m.1).collect::<Vec<_>>(),
        [
            "restore_target_not_empty",
            "restore_target_not_empty",
            "restore_target_not_allowed",
            "restore_target_not_allowed",
            "restore_target_not_allowed",
            "job_running"
        ]
    );
    open_blocker.send(()).unwrap();
    w.settle();
}

#[test]
fn a_restore_outside_the_roots_is_refused_audited_and_not_queued() {
    let mut w = World::new(1);
    let op = operator();
    let snap = snapshot(&mut w);
    let jobs_before = w.repo.count();
    for target in ["/etc", "../etc", "/srv/restore/../../etc"] {
        let err = block_on(w.restores.start_restore(&op, &snap, None, Some(target))).unwrap_err();
        assert_eq!(err.code(), "restore_target_not_allowed", "{target}");
    }
    // A link inside the root that points out of it.
    w.paths
        .links
        .lock()
        .unwrap()
        .insert("/srv/restore/out".into(), "/etc".into());
    let err = block_on(w.restores.start_restore(&op, &snap, None, Some("out/x"))).unwrap_err();
    assert_eq!(err.code(), "restore_target_not_allowed");
    // A directory that is not empty.
    w.paths
        .used
        .lock()
        .unwrap()
        .insert("/srv/restore/full".into());
    let err = block_on(w.restores.start_restore(&op, &snap, None, Some("full"))).unwrap_err();
    assert_eq!(err.code(), "restore_target_not_empty");

    assert_eq!(w.repo.count(), jobs_before);
    let refused = w
        .audit
        .rows()
        .iter()
        .filter(|(action, _, ok)| action == "restore" && !ok)
        .count();
    assert_eq!(refused, 5);
    // A viewer may not even ask.
    let err = block_on(w.restores.start_restore(&viewer(), &snap, None, None)).unwrap_err();
    assert_eq!(forbidden_permission(err), Permission::Restore);
}

#[test]
fn a_restore_target_that_turned_into_a_link_out_of_the_roots_is_refused_at_start() {
    let mut w = World::new(1);
    let op = operator();
    let snap = snapshot(&mut w);
    let blocker = w.source("blocker");
    let open_blocker = w.engine.gate("blocker");
    w.backup(&op, blocker).unwrap();
    w.settle();
    let id = block_on(
        w.restores
            .start_restore(&op, &snap, None, Some("/srv/restore/t")),
    )
    .unwrap()
    .job
    .id;
    // While it waits, its parent becomes a link elsewhere.
    w.paths
        .links
        .lock()
        .unwrap()
        .insert("/srv/restore".into(), "/etc".into());
    open_blocker.send(()).unwrap();
    w.settle();
    let row = w.repo.row(id).unwrap();
    assert_eq!(row.state, JobState::Failed);
    assert_eq!(row.error.unwrap().code, "restore_target_not_allowed");
    assert!(w.engine.restores.lock().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// A job cancelled while it is being submitted
// ---------------------------------------------------------------------------------------

/// `submit` stores a job in the queue, then writes its `job_queue` audit row. A cancel
/// while the audit row is being written finds it queued and ends it; `submit` then must
/// not run it, and nothing may report it waiting.
#[test]
fn a_job_cancelled_while_its_audit_row_is_written_never_runs() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let release = w.audit.hold_next_append();
    let submitted: Arc<Mutex<Option<Result<JobStatus, BackupError>>>> = Arc::default();
    {
        let backups = Arc::clone(&w.backups);
        let slot = Arc::clone(&submitted);
        let op = op.clone();
        w.pool
            .spawner()
            .spawn_local(async move {
                let r = backups.start(&op, a).await;
                *slot.lock().unwrap() = Some(r);
            })
            .unwrap();
    }
    // `submit` now waits for its `job_queue` audit row.
    w.settle();
    assert!(submitted.lock().unwrap().is_none());
    assert_eq!(w.repo.count(), 1);

    // The job's id is already out, and it can be cancelled.
    let id = job_running_id(w.backup(&op, a).unwrap_err());
    assert_eq!(block_on(w.jobs.backup_of(a)).unwrap(), Some(id));
    assert_eq!(w.cancel(&op, id).unwrap().job.state, JobState::Cancelled);

    release.send(()).unwrap();
    w.settle();
    assert!(submitted.lock().unwrap().is_some());
    assert!(w.engine.started().is_empty());
    assert_eq!(w.jobs.running(), 0);
    // The job was cancelled: no reader may see it waiting, and no row may say so.
    if let Some(row) = w.repo.row(id) {
        assert_eq!(row.state, JobState::Cancelled, "the stored record");
    }
    match block_on(w.jobs.get(&op, id)) {
        Ok(status) => assert_eq!(status.job.state, JobState::Cancelled, "what `get` answers"),
        Err(e) => assert_eq!(e.code(), "not_found"),
    }
}

// ---------------------------------------------------------------------------------------
// Quota, storage use and maintenance jobs
// ---------------------------------------------------------------------------------------

fn admin() -> Actor {
    actor("admin", Role::Admin)
}

fn stored(w: &World) -> u64 {
    block_on(w.storage.usage()).unwrap().stored_bytes
}

fn open_alerts(w: &World, kind: AlertKind) -> usize {
    w.alert_rows
        .rows()
        .iter()
        .filter(|a| a.kind == kind && a.is_active())
        .count()
}

#[test]
fn stored_bytes_grow_with_each_backup_and_the_warning_is_raised_once_at_the_threshold() {
    // Warning at 500 bytes, quota 10 000: each backup stores 300.
    let mut w = World::with_quota(Quota {
        max_bytes: Some(10_000),
        warning_bytes: Some(500),
    });
    let a = w.source("a");
    w.backup(&operator(), a).unwrap();
    w.settle();
    assert_eq!(stored(&w), BYTES);
    assert_eq!(open_alerts(&w, AlertKind::QuotaWarning), 0);
    for _ in 0..2 {
        w.backup(&operator(), a).unwrap();
        w.settle();
    }
    assert_eq!(stored(&w), 3 * BYTES);
    assert_eq!(
        open_alerts(&w, AlertKind::QuotaWarning),
        1,
        "one warning however many backups pass it"
    );
    assert_eq!(
        block_on(w.storage.usage()).unwrap().state,
        crate::QuotaState::Warning
    );
}

#[test]
fn a_backup_is_refused_with_507_once_the_quota_is_used_up_and_nothing_is_queued() {
    let mut w = World::with_quota(Quota {
        max_bytes: Some(2 * BYTES),
        warning_bytes: None,
    });
    let a = w.source("a");
    for _ in 0..2 {
        w.backup(&operator(), a).unwrap();
        w.settle();
    }
    assert_eq!(stored(&w), 2 * BYTES);
    let jobs_before = w.repo.rows.lock().unwrap().len();
    let err = w.backup(&operator(), a).unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Admission(AdmissionError::QuotaExceeded(_))
        ),
        "{err:?}"
    );
    assert_eq!(
        w.repo.rows.lock().unwrap().len(),
        jobs_before,
        "no job was queued"
    );
    assert_eq!(open_alerts(&w, AlertKind::QuotaExceeded), 1);
    // A prune that frees space lifts the refusal and clears the alert.
    let prune = block_on(w.maintenance.start_prune(&admin()))
        .unwrap()
        .job
        .id;
    w.settle();
    assert_eq!(w.state(prune), JobState::Succeeded);
    assert_eq!(stored(&w), BYTES, "the prune's count of what is left");
    assert_eq!(open_alerts(&w, AlertKind::QuotaExceeded), 0);
    w.backup(&operator(), a).unwrap();
}

#[test]
fn a_backup_that_would_cross_the_quota_fails_leaves_no_snapshot_and_usage_unchanged() {
    let mut w = World::with_quota(Quota {
        max_bytes: Some(1000),
        warning_bytes: None,
    });
    let a = w.source("a");
    w.backup(&operator(), a).unwrap();
    w.settle();
    let before = stored(&w);
    let rows_before = w.catalog.all().len();
    // The next backup would store 800 bytes, with 700 left.
    *w.engine.stores.lock().unwrap() = Some(800);
    let job = w.backup(&operator(), a).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(job), JobState::Failed);
    let error = block_on(w.jobs.get(&operator(), job))
        .unwrap()
        .job
        .error
        .unwrap();
    assert_eq!(error.code, "quota_exceeded");
    assert_eq!(stored(&w), before, "usage unchanged");
    let rows_after = w.catalog.all().len();
    assert_eq!(rows_after, rows_before, "no snapshot recorded");
    assert_eq!(open_alerts(&w, AlertKind::QuotaExceeded), 1);
    assert_eq!(
        open_alerts(&w, AlertKind::BackupFailed),
        0,
        "a quota stop is reported as such, not as a failure"
    );
}

#[test]
fn one_prune_and_one_check_at_a_time_admin_only_and_audited() {
    let mut w = World::new(2);
    let err = block_on(w.maintenance.start_prune(&operator())).unwrap_err();
    assert_eq!(forbidden_permission(err), Permission::ManageSystem);
    let first = block_on(w.maintenance.start_prune(&admin()))
        .unwrap()
        .job
        .id;
    let again = block_on(w.maintenance.start_prune(&admin())).unwrap_err();
    assert_eq!(job_running_id(again), first);
    assert!(matches!(
        block_on(w.maintenance.start_check(&admin(), 0)),
        Err(MaintenanceError::InvalidShare(_))
    ));
    let check = block_on(w.maintenance.start_check(&admin(), 25))
        .unwrap()
        .job
        .id;
    w.settle();
    assert_eq!(w.state(first), JobState::Succeeded);
    assert_eq!(w.engine.prunes.load(Ordering::SeqCst), 1);
    let done = block_on(w.jobs.get(&admin(), check)).unwrap().job;
    assert!(
        matches!(
            done.result,
            Some(JobResult::Check {
                ok: true,
                slice: 0,
                slices: 4,
                ..
            })
        ),
        "{:?}",
        done.result
    );
    // The next check reads the next slice.
    let next = block_on(w.maintenance.start_check(&admin(), 25))
        .unwrap()
        .job
        .id;
    w.settle();
    let done = block_on(w.jobs.get(&admin(), next)).unwrap().job;
    assert!(
        matches!(
            done.result,
            Some(JobResult::Check {
                slice: 1,
                slices: 4,
                ..
            })
        ),
        "{:?}",
        done.result
    );
    assert_eq!(w.audit.count(AuditAction::Prune.as_str()), 1);
    assert_eq!(w.audit.count(AuditAction::Check.as_str()), 2);
}

#[test]
fn a_failed_or_partial_backup_raises_an_alert_for_its_source_and_a_cancelled_one_does_not() {
    let mut w = World::new(2);
    let a = w.source("a");
    let b = w.source("b");
    w.engine.plan("a", Plan::Fail);
    w.engine.plan("b", Plan::Partial);
    w.backup(&operator(), a).unwrap();
    w.backup(&operator(), b).unwrap();
    w.settle();
    let alerts = w.alert_rows.rows();
    let failed: Vec<_> = alerts
        .iter()
        .filter(|x| x.kind == AlertKind::BackupFailed)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].source_id, Some(a));
    assert_eq!(failed[0].severity, Severity::Critical);
    assert!(
        failed[0].message.contains("pack 1234 is missing"),
        "{}",
        failed[0].message
    );
    let partial: Vec<_> = alerts
        .iter()
        .filter(|x| x.kind == AlertKind::BackupPartial)
        .collect();
    assert_eq!(partial.len(), 1);
    assert_eq!(partial[0].source_id, Some(b));
    // Every role sees alerts; names from inside a backup need `restore`.
    assert!(
        partial[0].message.contains("1 entries could not be read")
            && !partial[0].message.contains("secret.db"),
        "{}",
        partial[0].message
    );
    // A failure again is a new event, not a repeat of an open condition.
    w.engine.plan("a", Plan::Fail);
    w.backup(&operator(), a).unwrap();
    w.settle();
    assert_eq!(open_alerts(&w, AlertKind::BackupFailed), 2);
    let gate = w.engine.gate("a");
    let job = w.backup(&operator(), a).unwrap().job.id;
    block_on(w.jobs.cancel(&operator(), job)).unwrap();
    drop(gate);
    w.settle();
    assert_eq!(w.state(job), JobState::Cancelled);
    assert_eq!(
        open_alerts(&w, AlertKind::BackupFailed),
        2,
        "a cancel is no failure"
    );
}

#[test]
fn backups_running_at_once_share_the_quota_s_room() {
    // Room for one backup of 300 bytes, not two.
    let mut w = World::with_quota(Quota {
        max_bytes: Some(450),
        warning_bytes: None,
    });
    let a = w.source("a");
    let b = w.source("b");
    let gate_a = w.engine.gate("a");
    let gate_b = w.engine.gate("b");
    let ja = w.backup(&operator(), a).unwrap().job.id;
    let jb = w.backup(&operator(), b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(ja), JobState::Running);
    assert_eq!(w.state(jb), JobState::Running);
    drop(gate_a);
    drop(gate_b);
    w.settle();
    let mut states = [w.state(ja), w.state(jb)];
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, [JobState::Failed, JobState::Succeeded]);
    assert_eq!(stored(&w), BYTES, "only the backup that fitted was counted");
    // Its share went back when it was counted: the next one fits again after a prune.
    let prune = block_on(w.maintenance.start_prune(&admin()))
        .unwrap()
        .job
        .id;
    w.settle();
    assert_eq!(w.state(prune), JobState::Succeeded);
    let again = w.backup(&operator(), b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(again), JobState::Failed, "300 stored + 300 > 450");
    assert_eq!(stored(&w), BYTES);
}

#[test]
fn a_quota_set_while_backups_run_holds_them() {
    // No quota when they start; one set before they store anything leaves room for one.
    let mut w = World::new(2);
    let a = w.source("a");
    let b = w.source("b");
    let gate_a = w.engine.gate("a");
    let gate_b = w.engine.gate("b");
    let ja = w.backup(&operator(), a).unwrap().job.id;
    let jb = w.backup(&operator(), b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(ja), JobState::Running);
    assert_eq!(w.state(jb), JobState::Running);
    block_on(w.storage.set_quota(Quota {
        max_bytes: Some(450),
        warning_bytes: None,
    }))
    .unwrap();
    drop(gate_a);
    drop(gate_b);
    w.settle();
    let mut states = [w.state(ja), w.state(jb)];
    states.sort_by_key(|s| s.as_str());
    assert_eq!(states, [JobState::Failed, JobState::Succeeded]);
    assert_eq!(stored(&w), BYTES, "only the backup that fitted was counted");
}

// ---------------------------------------------------------------------------------------
// Several server instances on one catalog
// ---------------------------------------------------------------------------------------

/// An instance sharing `repo` (the catalog's job table) with others.
fn instance(repo: &Arc<FakeJobs>, max_running: usize) -> World {
    World::build_with(
        JobOptions {
            max_running,
            max_queued_per_user: 0,
            shared: true,
            lease: JobOptions::DEFAULT_LEASE,
        },
        repo.clone(),
        Quota::default(),
    )
}

#[test]
fn a_backup_asked_of_two_instances_runs_once() {
    let repo = Arc::new(FakeJobs::default());
    let mut a = instance(&repo, 2);
    let mut b = instance(&repo, 2);
    let op = operator();
    let on_a = a.source("photos");
    assert_eq!(b.source("photos"), on_a, "one catalog, one source");
    let open = a.engine.gate("photos");

    let first = a.backup(&op, on_a).unwrap().job.id;
    a.settle();
    let refused = b.backup(&op, on_a).unwrap_err();
    assert_eq!(refused.code(), "job_running");
    assert_eq!(job_running_id(refused), first);
    assert_eq!(block_on(b.jobs.backup_of(on_a)).unwrap(), Some(first));
    // The other instance reads it as running, with the progress its runner stored.
    a.maintain();
    assert_eq!(b.state(first), JobState::Running);

    open.send(()).unwrap();
    a.settle();
    b.maintain();
    assert_eq!(b.state(first), JobState::Succeeded);
    assert_eq!(a.engine.started(), ["photos"]);
    assert!(
        b.engine.started().is_empty(),
        "it ran once, on the instance that took it"
    );
    assert_eq!(repo.count(), 1);
}

#[test]
fn queued_work_goes_to_whichever_instance_has_room() {
    let repo = Arc::new(FakeJobs::default());
    let mut a = instance(&repo, 1);
    let mut b = instance(&repo, 1);
    let op = operator();
    let busy = a.source("busy");
    let waiting = a.source("waiting");
    b.source("busy");
    b.source("waiting");
    let open = a.engine.gate("busy");

    a.backup(&op, busy).unwrap();
    let queued = a.backup(&op, waiting).unwrap().job.id;
    a.settle();
    assert_eq!(a.state(queued), JobState::Queued, "a has no room");
    b.maintain();
    assert_eq!(
        b.state(queued),
        JobState::Succeeded,
        "b took it from the queue"
    );
    assert_eq!(b.engine.started(), ["waiting"]);
    assert_eq!(a.engine.started(), ["busy"]);
    open.send(()).unwrap();
    a.settle();
    a.maintain();
    assert_eq!(a.engine.started(), ["busy"], "nothing ran twice");
}

#[test]
fn a_cancel_asked_of_one_instance_stops_the_job_on_another() {
    let repo = Arc::new(FakeJobs::default());
    let mut a = instance(&repo, 1);
    let b = instance(&repo, 1);
    let op = operator();
    let s = a.source("photos");
    b.source("photos");
    let gate = a.engine.gate("photos");
    let id = a.backup(&op, s).unwrap().job.id;
    a.settle();

    let asked = b.cancel(&op, id).unwrap();
    assert!(asked.cancel_requested, "{asked:?}");
    assert_eq!(asked.job.state, JobState::Running);
    // The runner hears of it at its next heartbeat and stops at its next safe point.
    a.maintain();
    drop(gate);
    a.settle();
    assert_eq!(b.state(id), JobState::Cancelled);
    assert_eq!(b.audit.count("job_cancel"), 1);
    assert_eq!(a.jobs.running(), 0);
}

#[test]
fn a_job_whose_instance_died_is_declared_interrupted_by_another() {
    let repo = Arc::new(FakeJobs::default());
    let mut a = instance(&repo, 1);
    let mut b = instance(&repo, 1);
    let op = operator();
    let s = a.source("photos");
    b.source("photos");
    let gate = a.engine.gate("photos");
    let id = a.backup(&op, s).unwrap().job.id;
    a.settle();
    let (holder, _) = repo.lease_of(id).expect("claimed");
    assert_eq!(holder, a.jobs.instance());

    // `a` stops answering. Within its lease nothing happens ...
    b.later(30);
    b.maintain();
    assert_eq!(b.state(id), JobState::Running);
    // ... after it, the other instance fails the job as interrupted, and the source is
    // free for the next backup, which it runs.
    b.later(60);
    b.maintain();
    let job = b.get(id).job;
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.error.as_ref().map(|e| e.code.as_str()),
        Some("interrupted")
    );
    assert!(job.error.unwrap().message.contains("60 s"));
    assert_eq!(block_on(b.jobs.backup_of(s)).unwrap(), None);
    let next = b.backup(&op, s).unwrap().job.id;
    b.settle();
    assert_eq!(b.state(next), JobState::Succeeded);
    assert!(
        a.catalog.all().is_empty(),
        "the dead run recorded no snapshot"
    );

    // If `a` comes back, it learns at its next heartbeat that the job is not its own
    // any more, stops it, and leaves the record as the other instance wrote it.
    drop(gate);
    a.maintain();
    assert_eq!(a.jobs.running(), 0);
    assert_eq!(b.state(id), JobState::Failed);
}

#[test]
fn a_shared_instance_leaves_queued_jobs_for_the_others_when_it_stops() {
    let repo = Arc::new(FakeJobs::default());
    let mut a = instance(&repo, 1);
    let mut b = instance(&repo, 1);
    let op = operator();
    let busy = a.source("busy");
    let waiting = a.source("waiting");
    b.source("busy");
    b.source("waiting");
    let gate = a.engine.gate("busy");
    let running = a.backup(&op, busy).unwrap().job.id;
    let queued = a.backup(&op, waiting).unwrap().job.id;
    a.settle();
    block_on(a.jobs.shutdown());
    drop(gate);
    a.settle();
    assert_eq!(
        b.state(running),
        JobState::Failed,
        "interrupted by the shutdown"
    );
    assert_eq!(
        b.state(queued),
        JobState::Queued,
        "still waiting, for another instance"
    );
    b.maintain();
    assert_eq!(b.state(queued), JobState::Succeeded);
}

// ---------------------------------------------------------------------------------------
// Job logs
// ---------------------------------------------------------------------------------------

fn read_log(w: &World, actor: &Actor, id: JobId, after: u64) -> (JobStatus, LogPage) {
    block_on(w.jobs.log(actor, id, after, 100)).unwrap()
}

fn messages(page: &LogPage) -> Vec<(u64, LogLevel, String)> {
    page.lines
        .iter()
        .map(|l| (l.seq, l.level, l.message.clone()))
        .collect()
}

#[test]
fn a_job_s_log_tells_its_start_its_work_and_its_end_and_follows_it_live() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let open_a = w.engine.gate("a");
    let id = w.backup(&op, a).unwrap().job.id;
    w.settle();

    // The runner's step stores what the work has written so far.
    w.maintain();
    assert_eq!(w.repo.logs.lock().unwrap().len(), 2);
    let (status, page) = read_log(&w, &op, id, 0);
    assert_eq!(status.job.state, JobState::Running);
    let lines = messages(&page);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0]
            .2
            .starts_with("backup of `a` started (queued by olga at 2026-"),
        "{lines:?}"
    );
    assert_eq!(lines[1], (2, LogLevel::Info, "reading /data/a".to_owned()));
    assert_eq!((page.next_after, page.complete), (2, false));
    // Nothing new yet: an empty page that asks for the same place again.
    let (_, empty) = read_log(&w, &op, id, 2);
    assert_eq!(
        (empty.lines.len(), empty.next_after, empty.complete),
        (0, 2, false)
    );

    open_a.send(()).unwrap();
    w.settle();
    let (status, end) = read_log(&w, &op, id, page.next_after);
    assert_eq!(status.job.state, JobState::Succeeded);
    let lines = messages(&end);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, 3);
    assert!(
        lines[0].2.starts_with("succeeded after ") && lines[0].2.contains("3 files"),
        "{lines:?}"
    );
    assert!(
        end.complete,
        "an ended job's log is complete once read to its end"
    );
    // Pages are bounded by the caller's limit; a short page of an ended job is the end.
    let (_, first) = block_on(w.jobs.log(&op, id, 0, 1)).unwrap();
    assert_eq!(
        (first.lines.len(), first.next_after, first.complete),
        (1, 1, false)
    );
}

#[test]
fn a_log_that_cannot_be_stored_is_kept_and_stored_at_the_next_step() {
    let mut w = World::new(1);
    let op = operator();
    let a = w.source("a");
    let open_a = w.engine.gate("a");
    let id = w.backup(&op, a).unwrap().job.id;
    w.settle();
    w.repo.fail_logs.store(true, Ordering::SeqCst);
    w.maintain();
    assert!(w.repo.logs.lock().unwrap().is_empty());
    w.repo.fail_logs.store(false, Ordering::SeqCst);
    open_a.send(()).unwrap();
    w.settle();
    let (_, page) = read_log(&w, &op, id, 0);
    assert_eq!(
        page.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
        [1, 2, 3],
        "nothing lost, nothing twice, in order"
    );
    assert!(page.complete);
}

#[test]
fn a_viewer_reads_a_log_without_the_names_of_what_is_backed_up() {
    let mut w = World::new(1);
    let b = w.source("b");
    w.engine.plan("b", Plan::Partial);
    let id = w.backup(&operator(), b).unwrap().job.id;
    w.settle();
    assert_eq!(w.state(id), JobState::Succeeded);

    let (_, full) = read_log(&w, &operator(), id, 0);
    let (_, shown) = read_log(&w, &viewer(), id, 0);
    assert_eq!(full.lines.len(), 4, "{:?}", messages(&full));
    assert_eq!(
        full.lines[2].message, "secret.db: permission denied",
        "the warning is written as it happens, before the end"
    );
    assert_eq!(shown.lines.len(), full.lines.len());
    assert_eq!(shown.lines[2].level, LogLevel::Warning);
    assert_eq!(shown.lines[2].message, coffer_domain::jobs::HIDDEN);
    assert!(
        shown.lines.iter().all(|l| !l.message.contains("secret")),
        "{:?}",
        messages(&shown)
    );
    // The end line counts the warnings and says the snapshot is partial.
    assert!(
        shown.lines[3].message.contains("(partial)"),
        "{:?}",
        messages(&shown)
    );
    assert_eq!(shown.lines[3].level, LogLevel::Warning);

    let missing = JobId::from_uuid(uuid::Uuid::from_u128(99));
    assert!(matches!(
        block_on(w.jobs.log(&viewer(), missing, 0, 10)),
        Err(JobsError::Common(CommonError::NotFound(_)))
    ));
}

#[test]
fn a_restore_s_log_names_its_target_only_to_those_who_may_restore() {
    let mut w = World::new(1);
    let snap = snapshot(&mut w);
    let id = block_on(
        w.restores
            .start_restore(&operator(), &snap, None, Some("/srv/restore/x")),
    )
    .unwrap()
    .job
    .id;
    w.settle();
    let (_, full) = read_log(&w, &operator(), id, 0);
    assert!(
        full.lines[0].message.contains("/srv/restore/x"),
        "{:?}",
        messages(&full)
    );
    assert!(
        full.lines
            .last()
            .unwrap()
            .message
            .contains("/srv/restore/x")
    );
    let (_, shown) = read_log(&w, &viewer(), id, 0);
    assert!(
        shown.lines.iter().all(|l| !l.message.contains("/srv")),
        "{:?}",
        messages(&shown)
    );
}
