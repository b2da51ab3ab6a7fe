//! Jobs: long work (backup, restore, verify, prune, check) runs in the background, a
//! bounded number at a time, each recorded in the catalog from request to outcome.
//!
//! The areas own their work: each checks and authorises a request, then queues it here
//! ([`JobQueue`]), and does it when its turn comes ([`JobExecutor`], registered per
//! kind). This area knows the queue, the records, cancelling and the scheduler, and no
//! other area.
//!
//! The queue lives in memory; the records live in the database. A job that was queued or
//! running when the process died is marked failed by [`JobService::recover`] at the next
//! start (the space a dead backup wrote is reclaimed by garbage collection).

mod ports;
pub mod scheduler;

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use async_trait::async_trait;
use futures::FutureExt as _;

use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{Cancel, Progress};
use coffer_domain::jobs::{Job, JobError, JobFilter, JobKind, JobParams, JobResult, JobState};
use coffer_domain::ports::{Clock, JobRepository, Page, Spawner};
use coffer_domain::{JobId, SourceId};

pub use ports::{
    ActiveJobs, JobExecutor, JobFailure, JobQueue, JobsError, RunningJobs, SubmitError,
};
pub use scheduler::{
    Dispatch, DispatchError, JobDispatch, SchedulePlan, ScheduledBackups, ScheduledCopies,
    ScheduledMaintenance, Scheduler, SchedulerOptions, SchedulerStatus, SourceSchedule, Task,
    TaskSchedule, TickReport,
};

use crate::audit::AuditLog;
use crate::error::CommonError;

/// Largest page of a job listing.
pub const MAX_JOB_PAGE: u64 = 500;
/// Jobs that may wait in the queue; more are refused (409 `queue_full`).
pub const MAX_QUEUED: usize = 100;

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

/// Limits the job runner works with.
#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    /// Jobs that run at once; the rest wait in order.
    pub max_running: usize,
    /// Jobs one user may have waiting in the queue at once (429 `too_many_jobs`
    /// beyond), so that nobody fills the queue for everybody else. 0: no cap. The
    /// scheduler and the local command line are not users and have no cap.
    pub max_queued_per_user: usize,
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
    /// Held weakly: each area owns its service, and holds this runner as its queue.
    executors: RwLock<HashMap<JobKind, Weak<dyn JobExecutor>>>,
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

    fn executor(&self, kind: JobKind) -> Option<Arc<dyn JobExecutor>> {
        self.executors
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&kind)
            .and_then(Weak::upgrade)
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

/// What a cancel found.
enum CancelStep {
    /// Not in this process: finished long ago, or no such job.
    NotLive,
    /// Taken out of the queue; it ends cancelled now.
    Dequeued(Box<Job>),
    /// Running: asked to stop at its next safe point.
    Asked,
}

fn finished(id: JobId, state: JobState) -> JobsError {
    JobsError::JobFinished(format!("job {id} has already ended ({state})"))
}

fn settled(job: Job) -> JobStatus {
    JobStatus {
        job,
        cancel_requested: false,
        rate_bytes_per_sec: None,
        eta_secs: None,
    }
}

/// `status` as `actor` may see it: without the `restore` permission, nothing that names
/// what is in a backup (see [`Job::without_contents`]).
#[must_use]
pub fn shown_to(actor: &Actor, mut status: JobStatus) -> JobStatus {
    if !actor.role.allows(Permission::Restore) {
        status.job = status.job.without_contents();
    }
    status
}

/// The permission a kind of job needs, to start or to cancel it.
#[must_use]
pub const fn permission_for(kind: JobKind) -> Permission {
    match kind {
        // An operator may start a copy (a backup of the backups); managing replicas is
        // the administrator's.
        JobKind::Backup | JobKind::Copy => Permission::Backup,
        JobKind::Restore | JobKind::Verify => Permission::Restore,
        JobKind::Prune | JobKind::Check => Permission::ManageSystem,
    }
}

/// The audit action a kind of job's outcome is recorded under.
const fn audit_action(kind: JobKind) -> AuditAction {
    match kind {
        JobKind::Backup => AuditAction::BackupCreate,
        JobKind::Restore => AuditAction::Restore,
        JobKind::Verify => AuditAction::Verify,
        JobKind::Prune => AuditAction::Prune,
        JobKind::Check => AuditAction::Check,
        JobKind::Copy => AuditAction::ReplicaCopy,
    }
}

/// The error recorded on a failed job: the area's own words for business failures,
/// nothing internal for the unexpected (that goes to the log).
fn job_error(id: JobId, failure: JobFailure) -> JobError {
    match failure {
        JobFailure::Unexpected(inner) => {
            tracing::error!(job = %id, error = ?inner, "job failed");
            JobError::new(
                "internal",
                "the job failed unexpectedly; the server log has the details",
            )
        }
        JobFailure::Failed { code, message } => JobError::new(code, message),
        JobFailure::Cancelled => JobError::new("cancelled", "the operation was cancelled"),
    }
}

/// The job runner: queue, records, cancel, shutdown.
pub struct JobService {
    inner: Arc<Inner>,
}

impl JobService {
    #[must_use]
    pub fn new(
        repo: Arc<dyn JobRepository>,
        spawner: Arc<dyn Spawner>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        options: JobOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                repo,
                executors: RwLock::new(HashMap::new()),
                spawner,
                clock,
                audit,
                options: JobOptions {
                    max_running: options.max_running.max(1),
                    max_queued_per_user: options.max_queued_per_user,
                },
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// Hands `kind`'s work to `executor` (the area that owns it). Done once per kind by
    /// the composition root, before jobs are accepted: the areas queue through this
    /// runner, so it cannot take them when it is built. The runner keeps a weak
    /// reference (no cycle between the runner and the areas); a job whose area has gone
    /// fails.
    pub fn register<E: JobExecutor + 'static>(&self, kind: JobKind, executor: &Arc<E>) {
        let weak: Weak<E> = Arc::downgrade(executor);
        self.inner
            .executors
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(kind, weak as Weak<dyn JobExecutor>);
    }

    /// Marks every job the previous process left queued or running as failed. Run once
    /// at start-up, before any job is accepted.
    ///
    /// # Errors
    /// Database failures.
    pub async fn recover(&self) -> Result<u64, CommonError> {
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

    fn get_live(&self, id: JobId) -> Option<JobStatus> {
        let reg = self.inner.registry();
        reg.live.get(&id).map(|l| self.inner.status(l))
    }

    /// One job.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn get(&self, actor: &Actor, id: JobId) -> Result<JobStatus, JobsError> {
        actor.require(Permission::View)?;
        if let Some(s) = self.get_live(id) {
            return Ok(shown_to(actor, s));
        }
        Ok(self
            .inner
            .repo
            .get(id)
            .await?
            .map(|job| shown_to(actor, settled(job)))
            .ok_or_else(|| CommonError::NotFound(format!("no job {id}")))?)
    }

    /// Jobs, newest first, with live progress for those this process is running.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: JobFilter,
    ) -> Result<Page<JobStatus>, JobsError> {
        actor.require(Permission::View)?;
        filter.limit = filter.limit.clamp(1, MAX_JOB_PAGE);
        let page = self.page(&filter).await?;
        Ok(Page {
            total: page.total,
            items: page.items.into_iter().map(|s| shown_to(actor, s)).collect(),
        })
    }

    async fn page(&self, filter: &JobFilter) -> Result<Page<JobStatus>, CommonError> {
        let page = self.inner.repo.list(filter).await?;
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
    /// `Forbidden` without the permission the job's kind needs; `NotFound`;
    /// `JobFinished` for a job that has already ended.
    pub async fn cancel(&self, actor: &Actor, id: JobId) -> Result<JobStatus, JobsError> {
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
                .ok_or_else(|| CommonError::NotFound(format!("no job {id}")))?;
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

/// What a job is, for its `job_queue` audit row.
fn describe(params: &JobParams) -> String {
    match params {
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
        JobParams::Copy { replica } => format!("copy to replica `{replica}`"),
    }
}

#[async_trait]
impl JobQueue for JobService {
    async fn submit(&self, actor: &Actor, params: JobParams) -> Result<JobStatus, SubmitError> {
        let inner = &self.inner;
        let id = JobId::from_uuid(uuid::Uuid::now_v7());
        let job = Job::queued(id, params, &actor.username, inner.clock.now());
        {
            let mut reg = inner.registry();
            if reg.shutting_down {
                return Err(SubmitError::ShuttingDown);
            }
            if reg.queue.len() >= MAX_QUEUED {
                return Err(SubmitError::QueueFull(format!(
                    "{MAX_QUEUED} jobs are already waiting; try again when some have run"
                )));
            }
            let cap = inner.options.max_queued_per_user;
            if cap > 0 && actor.user_id.is_some() {
                let waiting = reg
                    .live
                    .values()
                    .filter(|l| {
                        l.job.state == JobState::Queued && l.job.requested_by == actor.username
                    })
                    .count();
                if waiting >= cap {
                    return Err(SubmitError::TooManyJobs(format!(
                        "you already have {waiting} jobs waiting (jobs.max_queued_per_user); \
                         try again when some have started"
                    )));
                }
            }
            if let JobParams::Restore { target, .. } = &job.params
                && let Some(other) = reg.live.values().find(|l| {
                    !l.job.state.is_final()
                        && matches!(&l.job.params, JobParams::Restore { target: t, .. } if crate::paths::overlaps(t, target))
                })
            {
                return Err(SubmitError::JobRunning {
                    job_id: other.job.id,
                    message: format!(
                        "restore job {} writes to or around the same directory; wait for it or choose another target",
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
                    return Err(SubmitError::JobRunning {
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
                return Err(SubmitError::JobRunning {
                    job_id: other.job.id,
                    message: format!(
                        "a {} of the repository is already queued or running (job {})",
                        job.kind(),
                        other.job.id
                    ),
                });
            }
            if let JobParams::Copy { replica } = &job.params
                && let Some(other) = reg.live.values().find(|l| {
                    !l.job.state.is_final()
                        && matches!(&l.job.params, JobParams::Copy { replica: r } if r == replica)
                })
            {
                return Err(SubmitError::JobRunning {
                    job_id: other.job.id,
                    message: format!(
                        "a copy to replica `{replica}` is already queued or running (job {})",
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
        let recorded = inner
            .audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::JobQueue, &actor.client)
                    .resource(format!("job:{id}"))
                    .detail(describe(&job.params)),
            )
            .await;
        let stored = match recorded {
            Ok(_) => inner.repo.insert(&job).await.map_err(CommonError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            let mut reg = inner.registry();
            reg.live.remove(&id);
            reg.backups.retain(|_, j| *j != id);
            return Err(e.into());
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
}

impl ActiveJobs for JobService {
    fn backup_of(&self, source: SourceId) -> Option<JobId> {
        self.inner.registry().backups.get(&source).copied()
    }
}

#[async_trait]
impl RunningJobs for JobService {
    async fn running(&self, limit: u64) -> Result<Vec<JobStatus>, CommonError> {
        let filter = JobFilter {
            state: Some(JobState::Running),
            limit: limit.clamp(1, MAX_JOB_PAGE),
            ..JobFilter::default()
        };
        Ok(self.page(&filter).await?.items)
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
    let outcome = match inner.executor(job.kind()) {
        Some(executor) => {
            // A panic inside the work must not leave the job running forever, its
            // source locked and its slot taken: it ends the job as failed like any
            // other error.
            let work = executor.execute(&actor, &job.params, Arc::clone(&progress), cancel);
            if let Ok(outcome) = AssertUnwindSafe(work).catch_unwind().await {
                outcome
            } else {
                // The use case never got to record its outcome; the trail still gets one.
                inner
                    .audit
                    .record_best_effort(
                        AuditEntry::new(&actor.username, audit_action(job.kind()), &actor.client)
                            .resource(format!("job:{id}"))
                            .failed()
                            .detail("internal error (the job panicked; see the server log)"),
                    )
                    .await;
                Err(JobFailure::Unexpected(anyhow::anyhow!(
                    "the job panicked; see the log above"
                )))
            }
        }
        None => Err(JobFailure::Unexpected(anyhow::anyhow!(
            "no executor is registered for {} jobs",
            job.kind()
        ))),
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
        Err(JobFailure::Cancelled) if shutting_down => {
            job.state = JobState::Failed;
            job.error = Some(JobError::new(
                "interrupted",
                "the server shut down while this job ran; start it again",
            ));
        }
        Err(JobFailure::Cancelled) => job.state = JobState::Cancelled,
        Err(failure) => {
            job.state = JobState::Failed;
            job.error = Some(job_error(id, failure));
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

#[cfg(test)]
mod tests;
