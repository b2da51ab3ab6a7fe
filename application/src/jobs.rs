//! Jobs: backup, restore and verify run in the background, a bounded number at a time,
//! each recorded in the catalog from request to outcome.
//!
//! The queue lives in memory; the records live in the database. A job that was queued or
//! running when the process died is marked failed by [`JobService::recover`] at the next
//! start (the space a dead backup wrote is reclaimed by garbage collection).

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::path::{Component, Path};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::FutureExt as _;

use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{Cancel, Progress};
use coffer_domain::jobs::{Job, JobError, JobFilter, JobKind, JobParams, JobResult, JobState};
use coffer_domain::ports::{Clock, JobRepository, LocalPaths, Page, Spawner};
use coffer_domain::{JobId, SourceId};

use crate::audit::AuditLog;
use crate::backups::{BackupService, BackupTarget};
use crate::error::ServiceError;
use crate::maintenance::MaintenanceService;

/// Largest page of a job listing.
pub const MAX_JOB_PAGE: u64 = 500;
/// Jobs that may wait in the queue; more are refused (409 `queue_full`).
pub const MAX_QUEUED: usize = 100;

/// Which backup of a source is queued or running, if any.
pub trait ActiveJobs: Send + Sync {
    fn backup_of(&self, source: SourceId) -> Option<JobId>;
}

/// A job as the caller sees it: the record plus what only the running process knows.
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub job: Job,
    /// A cancel was asked for and the job has not stopped yet.
    pub cancel_requested: bool,
    /// Bytes per second since the job started (running jobs only).
    pub rate_bytes_per_sec: Option<f64>,
    /// Seconds left at the current rate, once the totals are known.
    pub eta_secs: Option<u64>,
}

/// Limits and places the job runner works with.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Jobs that run at once; the rest wait in order.
    pub max_running: usize,
    /// Absolute directories a restore may write under (checked with symlinks
    /// resolved). The first is where a restore goes when no target is given.
    pub restore_roots: Vec<String>,
}

struct Live {
    job: Job,
    actor: Actor,
    progress: Arc<Progress>,
    cancel: Cancel,
}

#[derive(Default)]
struct Registry {
    live: HashMap<JobId, Live>,
    queue: VecDeque<JobId>,
    running: usize,
    backups: HashMap<SourceId, JobId>,
    /// Finished jobs whose final record could not be written yet.
    unsaved: Vec<JobId>,
    shutting_down: bool,
    /// Jobs that ran and ended since start-up, and their seconds, by kind and outcome.
    durations: HashMap<(JobKind, JobState), (u64, f64)>,
}

/// Jobs of one kind that ended one way, and how long they ran in all (since start-up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobDurations {
    pub kind: JobKind,
    pub state: JobState,
    pub count: u64,
    pub total_secs: f64,
}

struct Inner {
    repo: Arc<dyn JobRepository>,
    backups: Arc<BackupService>,
    maintenance: Arc<MaintenanceService>,
    paths: Arc<dyn LocalPaths>,
    spawner: Arc<dyn Spawner>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    options: JobOptions,
    registry: Mutex<Registry>,
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn status(&self, live: &Live) -> JobStatus {
        let mut job = live.job.clone();
        job.progress = live.progress.read();
        let now = self.clock.now();
        let running = job.state == JobState::Running;
        let started = job.started_at.filter(|_| running);
        JobStatus {
            rate_bytes_per_sec: started.and_then(|s| job.progress.rate(s, now)),
            eta_secs: started.and_then(|s| job.progress.eta_secs(s, now)),
            cancel_requested: live.cancel.is_cancelled(),
            job,
        }
    }
}

/// Where `wanted` lands with every symlink resolved, if that is under a restore root
/// and free (missing, or an empty directory). Checked when a restore is asked for and
/// again when it starts, so that a link made in between cannot lead it out of the roots.
fn check_target(inner: &Inner, wanted: &str) -> Result<String, ServiceError> {
    let roots = &inner.options.restore_roots;
    let not_allowed = || {
        ServiceError::invalid(
            "restore_target_not_allowed",
            format!(
                "{wanted} is not under an allowed restore root ({})",
                roots.join(", ")
            ),
        )
    };
    let resolved = inner.paths.resolve_target(wanted).map_err(|e| {
        // The reason can describe the server's filesystem; it goes to the log only.
        tracing::info!(target = wanted, reason = %e, "restore target refused");
        not_allowed()
    })?;
    let inside = roots.iter().any(|root| {
        inner
            .paths
            .resolve_target(root)
            .is_ok_and(|r| Path::new(&resolved).starts_with(Path::new(&r)))
    });
    if !inside {
        tracing::info!(
            target = wanted,
            resolved,
            "restore target outside the roots"
        );
        return Err(not_allowed());
    }
    if !inner.paths.is_free(&resolved) {
        return Err(ServiceError::invalid(
            "restore_target_not_empty",
            format!("{wanted} exists and is not an empty directory"),
        ));
    }
    Ok(resolved)
}

/// What a cancel found.
enum CancelStep {
    /// Not in this process: finished long ago, or no such job.
    NotLive,
    /// Taken out of the queue; it ends cancelled now.
    Dequeued(Box<Job>),
    /// Running: asked to stop at its next safe point.
    Asked,
}

fn finished(id: JobId, state: JobState) -> ServiceError {
    ServiceError::Conflict {
        code: "job_finished",
        message: format!("job {id} has already ended ({state})"),
    }
}

fn settled(job: Job) -> JobStatus {
    JobStatus {
        job,
        cancel_requested: false,
        rate_bytes_per_sec: None,
        eta_secs: None,
    }
}

/// The permission a kind of job needs, to start or to cancel it.
const fn permission_for(kind: JobKind) -> Permission {
    match kind {
        JobKind::Backup => Permission::Backup,
        JobKind::Restore | JobKind::Verify => Permission::Restore,
        JobKind::Prune | JobKind::Check => Permission::ManageSystem,
    }
}

/// The error recorded on a failed job: the service's own words for business failures,
/// nothing internal for the unexpected (that goes to the log).
fn job_error(id: JobId, e: &ServiceError) -> JobError {
    match e {
        ServiceError::Unexpected(inner) => {
            tracing::error!(job = %id, error = ?inner, "job failed");
            JobError::new(
                "internal",
                "the job failed unexpectedly; the server log has the details",
            )
        }
        other => JobError::new(other.code(), other.to_string()),
    }
}

pub struct JobService {
    inner: Arc<Inner>,
}

impl JobService {
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        repo: Arc<dyn JobRepository>,
        backups: Arc<BackupService>,
        maintenance: Arc<MaintenanceService>,
        paths: Arc<dyn LocalPaths>,
        spawner: Arc<dyn Spawner>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        options: JobOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                repo,
                backups,
                maintenance,
                paths,
                spawner,
                clock,
                audit,
                options: JobOptions {
                    max_running: options.max_running.max(1),
                    ..options
                },
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// Marks every job the previous process left queued or running as failed. Run once
    /// at start-up, before any job is accepted.
    ///
    /// # Errors
    /// Database failures.
    pub async fn recover(&self) -> Result<u64, ServiceError> {
        let error = JobError::new(
            "interrupted",
            "the server stopped while this job was queued or running; start it again",
        );
        let n = self
            .inner
            .repo
            .fail_unfinished(&error, self.inner.clock.now())
            .await?;
        if n > 0 {
            tracing::warn!(
                jobs = n,
                "marked jobs interrupted by the last shutdown as failed"
            );
        }
        Ok(n)
    }

    /// Queues a backup of a source.
    ///
    /// # Errors
    /// `Forbidden` without `backup`; `NotFound`; `JobRunning` while a backup of the same
    /// source is queued or running.
    pub async fn start_backup(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::Backup)?;
        let source = self.inner.backups.source(source_id).await?;
        // Refused now (507) rather than queued to fail: the quota is used up or the disk
        // is below its reserve. The run checks again when it starts.
        self.inner.backups.admit_backup().await?;
        self.submit(
            actor,
            JobParams::Backup {
                source_id: source.id,
                source_name: source.name,
            },
        )
        .await
    }

    /// Queues a restore of a snapshot (or a path in it). `target` defaults to
    /// `<first restore root>/<snapshot id>`; a relative target is taken under the first
    /// root; either way it must lie under a restore root once symlinks are resolved,
    /// and be missing or an empty directory.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `Invalid` for a target outside the
    /// roots (`restore_target_not_allowed`) or not empty (`restore_target_not_empty`).
    pub async fn start_restore(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        target: Option<&str>,
    ) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.inner.backups.find(actor, reference).await?;
        let path = crate::backups::snapshot_path(path);
        if let Some(p) = &path {
            self.inner.backups.stat(actor, &snap.snapshot_id, p).await?;
        }
        let checked = self
            .requested_target(target, &snap.snapshot_id)
            .and_then(|wanted| check_target(&self.inner, &wanted));
        let target = match checked {
            Ok(t) => t,
            Err(e) => {
                self.inner
                    .audit
                    .record_best_effort(
                        AuditEntry::new(&actor.username, AuditAction::Restore, &actor.client)
                            .resource(format!("snapshot:{}", snap.snapshot_id))
                            .failed()
                            .detail(format!("refused: {e}")),
                    )
                    .await;
                return Err(e);
            }
        };
        self.submit(
            actor,
            JobParams::Restore {
                snapshot_id: snap.snapshot_id,
                path,
                target,
            },
        )
        .await
    }

    /// Queues a verification of one snapshot.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`.
    pub async fn start_verify(
        &self,
        actor: &Actor,
        reference: &str,
        read_data: bool,
    ) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.inner.backups.find(actor, reference).await?;
        self.submit(
            actor,
            JobParams::Verify {
                snapshot_id: snap.snapshot_id,
                read_data,
            },
        )
        .await
    }

    /// Queues a garbage collection of the repository (one at a time).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `JobRunning` while a prune is queued or running.
    pub async fn start_prune(&self, actor: &Actor) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        self.submit(actor, JobParams::Prune).await
    }

    /// Queues a repository check that re-reads `share_percent` (1–100) of the stored
    /// data (one at a time).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `Invalid` for a share outside 1–100;
    /// `JobRunning` while a check is queued or running.
    pub async fn start_check(
        &self,
        actor: &Actor,
        share_percent: u8,
    ) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        if !(1..=100).contains(&share_percent) {
            return Err(ServiceError::invalid(
                "invalid_share",
                format!("the share of data to check is 1 to 100 percent, not {share_percent}"),
            ));
        }
        self.submit(actor, JobParams::Check { share_percent }).await
    }

    /// The directory a restore asks for, before any check: the default, an absolute
    /// path, or a plain relative path under the first root.
    fn requested_target(
        &self,
        requested: Option<&str>,
        snapshot_id: &str,
    ) -> Result<String, ServiceError> {
        let roots = &self.inner.options.restore_roots;
        let Some(first) = roots.first() else {
            return Err(ServiceError::invalid(
                "restore_target_not_allowed",
                "restores over the API are turned off (restore.allowed_roots is empty)",
            ));
        };
        let wanted = match requested.map(str::trim).filter(|t| !t.is_empty()) {
            None => Path::new(first).join(snapshot_id),
            Some(t) if Path::new(t).is_absolute() => Path::new(t).to_path_buf(),
            Some(t) => {
                if Path::new(t)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(ServiceError::invalid(
                        "restore_target_not_allowed",
                        format!("a relative target is a plain path under {first}; `{t}` is not"),
                    ));
                }
                Path::new(first).join(t)
            }
        };
        Ok(wanted.to_string_lossy().into_owned())
    }

    async fn submit(&self, actor: &Actor, params: JobParams) -> Result<JobStatus, ServiceError> {
        let inner = &self.inner;
        let id = JobId::from_uuid(uuid::Uuid::now_v7());
        let job = Job::queued(id, params, &actor.username, inner.clock.now());
        {
            let mut reg = inner.registry();
            if reg.shutting_down {
                return Err(ServiceError::Conflict {
                    code: "shutting_down",
                    message: "the server is shutting down; try again once it is back".into(),
                });
            }
            if reg.queue.len() >= MAX_QUEUED {
                return Err(ServiceError::Conflict {
                    code: "queue_full",
                    message: format!(
                        "{MAX_QUEUED} jobs are already waiting; try again when some have run"
                    ),
                });
            }
            if let JobParams::Restore { target, .. } = &job.params
                && let Some(other) = reg.live.values().find(|l| {
                    !l.job.state.is_final()
                        && matches!(&l.job.params, JobParams::Restore { target: t, .. } if crate::overlaps(t, target))
                })
            {
                return Err(ServiceError::JobRunning {
                    job_id: other.job.id,
                    message: format!(
                        "restore job {} writes to or around {target}; wait for it or choose another target",
                        other.job.id
                    ),
                });
            }
            if let JobParams::Backup {
                source_id,
                source_name,
            } = &job.params
            {
                if let Some(other) = reg.backups.get(source_id) {
                    return Err(ServiceError::JobRunning {
                        job_id: *other,
                        message: format!(
                            "a backup of `{source_name}` is already queued or running (job {other})"
                        ),
                    });
                }
                reg.backups.insert(*source_id, id);
            }
            if matches!(job.params, JobParams::Prune | JobParams::Check { .. })
                && let Some(other) = reg
                    .live
                    .values()
                    .find(|l| !l.job.state.is_final() && l.job.kind() == job.kind())
            {
                return Err(ServiceError::JobRunning {
                    job_id: other.job.id,
                    message: format!(
                        "a {} of the repository is already queued or running (job {})",
                        job.kind(),
                        other.job.id
                    ),
                });
            }
            reg.live.insert(
                id,
                Live {
                    job: job.clone(),
                    actor: actor.clone(),
                    progress: Arc::new(Progress::default()),
                    cancel: Cancel::default(),
                },
            );
        }
        let what = match &job.params {
            JobParams::Backup { source_name, .. } => format!("backup of `{source_name}`"),
            JobParams::Restore {
                snapshot_id,
                path,
                target,
            } => format!(
                "restore of {snapshot_id}:/{} into {target}",
                path.as_deref().unwrap_or("")
            ),
            JobParams::Verify {
                snapshot_id,
                read_data,
            } => format!(
                "verify of {snapshot_id}{}",
                if *read_data { " (read data)" } else { "" }
            ),
            JobParams::Prune => "prune of the repository".to_owned(),
            JobParams::Check { share_percent } => {
                format!("check of the repository ({share_percent}% of the data)")
            }
        };
        let recorded = inner
            .audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::JobQueue, &actor.client)
                    .resource(format!("job:{id}"))
                    .detail(what),
            )
            .await;
        let stored = match recorded {
            Ok(_) => inner.repo.insert(&job).await.map_err(ServiceError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            let mut reg = inner.registry();
            reg.live.remove(&id);
            reg.backups.retain(|_, j| *j != id);
            return Err(e);
        }
        // A cancel may have come while the record was being stored (the id was already
        // visible through a 409): then the job is final, and it is recorded as such.
        let cancelled = {
            let mut reg = inner.registry();
            match reg.live.get(&id) {
                Some(l) if l.job.state == JobState::Queued => {
                    reg.queue.push_back(id);
                    None
                }
                Some(l) => Some(l.job.clone()),
                None => None,
            }
        };
        if let Some(done) = cancelled {
            record_end(inner, &done).await;
            return Ok(settled(done));
        }
        pump(inner);
        Ok(self.get_live(id).unwrap_or_else(|| settled(job)))
    }

    fn get_live(&self, id: JobId) -> Option<JobStatus> {
        let reg = self.inner.registry();
        reg.live.get(&id).map(|l| self.inner.status(l))
    }

    /// One job.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn get(&self, actor: &Actor, id: JobId) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::View)?;
        if let Some(s) = self.get_live(id) {
            return Ok(s);
        }
        self.inner
            .repo
            .get(id)
            .await?
            .map(settled)
            .ok_or_else(|| ServiceError::NotFound(format!("no job {id}")))
    }

    /// Jobs, newest first, with live progress for those this process is running.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: JobFilter,
    ) -> Result<Page<JobStatus>, ServiceError> {
        actor.require(Permission::View)?;
        filter.limit = filter.limit.clamp(1, MAX_JOB_PAGE);
        let page = self.inner.repo.list(&filter).await?;
        let reg = self.inner.registry();
        Ok(Page {
            total: page.total,
            items: page
                .items
                .into_iter()
                .map(|job| match reg.live.get(&job.id) {
                    Some(l) => self.inner.status(l),
                    None => settled(job),
                })
                .collect(),
        })
    }

    /// Stops a job: a queued one at once, a running one at its next safe point (a
    /// cancelled backup leaves no snapshot).
    ///
    /// # Errors
    /// `Forbidden` without the permission the job's kind needs; `NotFound`; `Conflict`
    /// (`job_finished`) for a job that has already ended.
    pub async fn cancel(&self, actor: &Actor, id: JobId) -> Result<JobStatus, ServiceError> {
        actor.require(Permission::View)?;
        let inner = &self.inner;
        let step = {
            let mut reg = inner.registry();
            match reg.live.get(&id) {
                None => CancelStep::NotLive,
                Some(l) if l.job.state.is_final() => {
                    actor.require(permission_for(l.job.kind()))?;
                    return Err(finished(id, l.job.state));
                }
                Some(l) => {
                    actor.require(permission_for(l.job.kind()))?;
                    l.cancel.cancel();
                    if l.job.state == JobState::Queued {
                        // Settled in memory at once (it will never run); the entry goes
                        // once the record is written.
                        let now = inner.clock.now();
                        reg.queue.retain(|q| *q != id);
                        reg.backups.retain(|_, j| *j != id);
                        let live = reg.live.get_mut(&id).expect("present");
                        live.job.state = JobState::Cancelled;
                        live.job.finished_at = Some(now);
                        CancelStep::Dequeued(Box::new(live.job.clone()))
                    } else {
                        CancelStep::Asked
                    }
                }
            }
        };
        if let CancelStep::NotLive = step {
            let job = inner
                .repo
                .get(id)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no job {id}")))?;
            actor.require(permission_for(job.kind()))?;
            return Err(finished(id, job.state));
        }
        if let CancelStep::Dequeued(job) = &step {
            record_end(inner, job).await;
        }
        inner
            .audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::JobCancel, &actor.client)
                    .resource(format!("job:{id}")),
            )
            .await?;
        match step {
            CancelStep::Dequeued(job) => Ok(settled(*job)),
            _ => self.get(actor, id).await,
        }
    }

    /// Stops taking jobs and asks the running ones to stop; queued ones are recorded as
    /// interrupted. The caller waits for [`running`](Self::running) to reach zero.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let queued: Vec<Job> = {
            let mut reg = inner.registry();
            reg.shutting_down = true;
            for l in reg.live.values() {
                l.cancel.cancel();
            }
            let ids: Vec<JobId> = reg.queue.drain(..).collect();
            ids.iter()
                .filter_map(|id| reg.live.remove(id))
                .map(|l| l.job)
                .collect()
        };
        let now = inner.clock.now();
        let unsaved: Vec<Job> = {
            let reg = inner.registry();
            reg.unsaved
                .iter()
                .filter_map(|id| reg.live.get(id).map(|l| l.job.clone()))
                .collect()
        };
        for job in unsaved {
            if let Err(e) = inner.repo.update(&job).await {
                tracing::error!(job = %job.id, error = %e, "cannot record the end of a job");
            }
        }
        for mut job in queued {
            job.state = JobState::Failed;
            job.finished_at = Some(now);
            job.error = Some(JobError::new(
                "interrupted",
                "the server shut down before this job ran; start it again",
            ));
            if let Err(e) = inner.repo.update(&job).await {
                tracing::error!(job = %job.id, error = %e, "cannot record an interrupted job");
            }
        }
    }

    /// Jobs running now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.inner.registry().running
    }

    /// How long the jobs that ran since start-up took, by kind and outcome, in a stable
    /// order (for metrics).
    #[must_use]
    pub fn durations(&self) -> Vec<JobDurations> {
        let reg = self.inner.registry();
        let mut out: Vec<JobDurations> = reg
            .durations
            .iter()
            .map(|(&(kind, state), &(count, total_secs))| JobDurations {
                kind,
                state,
                count,
                total_secs,
            })
            .collect();
        out.sort_by_key(|d| (d.kind.as_str(), d.state.as_str()));
        out
    }
}

impl ActiveJobs for JobService {
    fn backup_of(&self, source: SourceId) -> Option<JobId> {
        self.inner.registry().backups.get(&source).copied()
    }
}

/// Starts queued jobs while there is room.
fn pump(inner: &Arc<Inner>) {
    let mut start = Vec::new();
    {
        let mut reg = inner.registry();
        while reg.running < inner.options.max_running && !reg.shutting_down {
            let Some(id) = reg.queue.pop_front() else {
                break;
            };
            let now = inner.clock.now();
            if let Some(l) = reg.live.get_mut(&id) {
                l.job.state = JobState::Running;
                l.job.started_at = Some(now);
                reg.running += 1;
                start.push(id);
            }
        }
    }
    for id in start {
        let inner = Arc::clone(inner);
        inner
            .spawner
            .clone()
            .spawn(Box::pin(async move { run(inner, id).await }));
    }
}

async fn run(inner: Arc<Inner>, id: JobId) {
    let Some((job, actor, progress, cancel)) = ({
        let reg = inner.registry();
        reg.live.get(&id).map(|l| {
            (
                l.job.clone(),
                l.actor.clone(),
                Arc::clone(&l.progress),
                l.cancel.clone(),
            )
        })
    }) else {
        return;
    };
    if let Err(e) = inner.repo.update(&job).await {
        tracing::error!(job = %id, error = %e, "cannot record a job as running");
    }
    // A panic inside the work must not leave the job running forever, its source
    // locked and its slot taken: it ends the job as failed like any other error.
    let outcome = if let Ok(outcome) =
        AssertUnwindSafe(execute(&inner, &job, &actor, &progress, &cancel))
            .catch_unwind()
            .await
    {
        outcome
    } else {
        // The use case never got to record its outcome; the trail still gets one.
        let action = match job.kind() {
            JobKind::Backup => AuditAction::BackupCreate,
            JobKind::Restore => AuditAction::Restore,
            JobKind::Verify => AuditAction::Verify,
            JobKind::Prune => AuditAction::Prune,
            JobKind::Check => AuditAction::Check,
        };
        inner
            .audit
            .record_best_effort(
                AuditEntry::new(&actor.username, action, &actor.client)
                    .resource(format!("job:{id}"))
                    .failed()
                    .detail("internal error (the job panicked; see the server log)"),
            )
            .await;
        Err(ServiceError::Unexpected(anyhow::anyhow!(
            "the job panicked; see the log above"
        )))
    };
    let shutting_down = inner.registry().shutting_down;
    let mut job = job;
    job.progress = progress.read();
    job.finished_at = Some(inner.clock.now());
    match outcome {
        Ok(result) => {
            if let JobResult::Backup { snapshot_id, .. } = &result {
                job.snapshot_id = Some(snapshot_id.clone());
            }
            job.state = JobState::Succeeded;
            job.result = Some(result);
        }
        Err(ref e) if is_cancelled(e) && shutting_down => {
            job.state = JobState::Failed;
            job.error = Some(JobError::new(
                "interrupted",
                "the server shut down while this job ran; start it again",
            ));
        }
        Err(ref e) if is_cancelled(e) => job.state = JobState::Cancelled,
        Err(e) => {
            job.state = JobState::Failed;
            job.error = Some(job_error(id, &e));
        }
    }
    // The final record is written while the job still counts as live, so that no
    // reader sees it running in the database after it has ended. Its source is free for
    // the next backup in the same step: whoever sees it ended may start another at once.
    {
        let mut reg = inner.registry();
        if let Some(l) = reg.live.get_mut(&id) {
            l.job = job.clone();
        }
        reg.backups.retain(|_, j| *j != id);
    }
    record_end(&inner, &job).await;
    {
        let mut reg = inner.registry();
        reg.running -= 1;
        if let (Some(start), Some(end)) = (job.started_at, job.finished_at) {
            #[allow(clippy::cast_precision_loss)]
            let secs = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
            let entry = reg.durations.entry((job.kind(), job.state)).or_default();
            entry.0 += 1;
            entry.1 += secs;
        }
    }
    pump(&inner);
}

/// Writes the final record of a job that has ended, then lets go of its live entry.
/// Until the write succeeds the job stays live, so readers keep seeing its true outcome
/// from memory; the write is retried at shutdown (or the job is marked failed at the
/// next start). No row yet means `submit` is still storing it: `submit` sees the final
/// state and records it itself.
async fn record_end(inner: &Inner, job: &Job) {
    let saved = inner.repo.update(job).await;
    let mut reg = inner.registry();
    match saved {
        Ok(true) => {
            reg.live.remove(&job.id);
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "cannot record the end of a job");
            reg.unsaved.push(job.id);
        }
    }
}

/// The error a job's work ends with when it honoured a cancel.
fn is_cancelled(e: &ServiceError) -> bool {
    matches!(
        e,
        ServiceError::Conflict {
            code: "cancelled",
            ..
        }
    )
}

/// Does a job's work.
async fn execute(
    inner: &Inner,
    job: &Job,
    actor: &Actor,
    progress: &Arc<Progress>,
    cancel: &Cancel,
) -> Result<JobResult, ServiceError> {
    let backups = &inner.backups;
    match &job.params {
        JobParams::Backup { source_id, .. } => backups
            .backup(
                actor,
                &BackupTarget::Id(*source_id),
                Arc::clone(progress),
                cancel.clone(),
            )
            .await
            .map(|row| JobResult::Backup {
                snapshot_id: row.snapshot_id,
                status: row.status,
                files: row.file_count,
                bytes: row.size,
                bytes_added: row.bytes_added,
                warnings: row.warnings,
            }),
        JobParams::Restore {
            snapshot_id,
            path,
            target,
        } => {
            // Again now: the directories above the target may have changed while the
            // job waited (a link made by another restore, say).
            if check_target(inner, target)? != *target {
                return Err(ServiceError::invalid(
                    "restore_target_not_allowed",
                    format!("{target} changed since the restore was asked for"),
                ));
            }
            backups
                .restore(
                    actor,
                    snapshot_id,
                    path.as_deref(),
                    Path::new(target),
                    Arc::clone(progress),
                    cancel.clone(),
                )
                .await
                .map(|(_, r)| JobResult::Restore {
                    snapshot_id: snapshot_id.clone(),
                    target: target.clone(),
                    files: r.files,
                    dirs: r.dirs,
                    symlinks: r.symlinks,
                    hardlinks: r.hardlinks,
                    bytes: r.bytes,
                    warnings: r.warnings,
                })
        }
        JobParams::Verify {
            snapshot_id,
            read_data,
        } => backups
            .verify_one(
                actor,
                snapshot_id,
                *read_data,
                Arc::clone(progress),
                cancel.clone(),
            )
            .await
            .map(|(_, r)| JobResult::Verify {
                snapshot_id: snapshot_id.clone(),
                ok: r.ok(),
                problems: r.problems,
                damaged_files: r.damaged_files,
                bytes_read: r.bytes_read,
            }),
        JobParams::Prune => inner
            .maintenance
            .prune(actor, false, Arc::clone(progress), cancel.clone())
            .await
            .map(|r| JobResult::Prune {
                snapshots: r.snapshots,
                packs_deleted: r.packs_deleted + r.orphan_packs_deleted,
                packs_repacked: r.packs_repacked,
                bytes_before: r.bytes_before,
                bytes_after: r.bytes_after,
            }),
        JobParams::Check { share_percent } => inner
            .maintenance
            .check(actor, *share_percent, Arc::clone(progress), cancel.clone())
            .await
            .map(|(r, slice)| JobResult::Check {
                ok: r.ok(),
                snapshots: r.snapshots,
                slice: slice.index,
                slices: slice.count,
                packs_read: r.packs_read,
                bytes_read: r.bytes_read,
                problems: r.problems,
                damaged_snapshots: r.damaged_snapshots,
            }),
    }
}
