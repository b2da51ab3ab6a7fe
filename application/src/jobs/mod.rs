//! Jobs: long work (backup, restore, verify, prune, check) runs in the background, a
//! bounded number at a time, each recorded in the catalog from request to outcome.
//!
//! The areas own their work: each checks and authorises a request, then queues it here
//! ([`JobQueue`]), and does it when its turn comes ([`JobExecutor`], registered per
//! kind). This area knows the queue, the records, cancelling and the scheduler, and no
//! other area.
//!
//! The queue is the catalog's job table, so that several server instances sharing one
//! PostgreSQL catalog share it too: a job is enqueued there (the database refuses a
//! second active job of the same subject, such as a second backup of one source), and
//! each instance claims the oldest queued jobs while it has room, under a lease it
//! renews every few seconds ([`JobService::maintain`]) together with the job's progress.
//! A running job whose lease runs out — its instance was killed or lost the database —
//! is declared interrupted by whichever instance sees it first; the space a dead backup
//! wrote is left for garbage collection and no snapshot of it is ever recorded.
//!
//! With a catalog of its own (SQLite, one server per data directory) the process is
//! alone: [`JobService::recover`] fails every job the previous process left unfinished,
//! and a shutdown fails the queued ones. With a shared catalog, queued jobs outlive an
//! instance (another one runs them), and only expired leases are failed at start.

mod ports;
pub mod scheduler;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

use async_trait::async_trait;
use futures::FutureExt as _;

use chrono::TimeDelta;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{Cancel, Progress};
use coffer_domain::joblog::{JobLog, JobLogRepository, LogPage, end_lines, start_line};
use coffer_domain::jobs::{
    Job, JobError, JobFilter, JobKind, JobParams, JobProgress, JobResult, JobState,
};
use coffer_domain::ports::{ClaimedJob, Clock, Enqueued, JobRepository, Lease, Page, Spawner};
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
/// Most lines of a job's log read at once.
pub const MAX_LOG_PAGE: u64 = 1_000;
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
    /// Jobs that run at once in this process; the rest wait in order.
    pub max_running: usize,
    /// Jobs one user may have waiting in the queue at once (429 `too_many_jobs`
    /// beyond), so that nobody fills the queue for everybody else. 0: no cap. The
    /// scheduler and the local command line are not users and have no cap.
    pub max_queued_per_user: usize,
    /// Other server instances share the catalog (PostgreSQL): queued jobs are left for
    /// them at shutdown, and only expired leases are failed at start.
    pub shared: bool,
    /// How long a running job stays this instance's without a heartbeat; another
    /// instance declares it interrupted once this has passed. Heartbeats
    /// ([`JobService::maintain`]) must come much more often.
    pub lease: TimeDelta,
}

impl JobOptions {
    /// The default lease: a minute without a heartbeat.
    pub const DEFAULT_LEASE: TimeDelta = TimeDelta::seconds(60);
}

struct Live {
    job: Job,
    actor: Actor,
    progress: Arc<Progress>,
    cancel: Cancel,
}

#[derive(Default)]
struct Registry {
    /// Jobs this process runs (and, briefly, ones whose end is being recorded).
    live: HashMap<JobId, Live>,
    /// Slots taken: running jobs, and slots reserved by a claim in flight.
    running: usize,
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
    logs: Arc<dyn JobLogRepository>,
    /// Held while a job's new log lines are taken and stored, so that lines reach the
    /// catalog in order and every line is stored before the job's final record.
    log_flush: futures::lock::Mutex<()>,
    /// Held weakly: each area owns its service, and holds this runner as its queue.
    executors: RwLock<HashMap<JobKind, Weak<dyn JobExecutor>>>,
    spawner: Arc<dyn Spawner>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    options: JobOptions,
    /// This process's name in the job table's `instance` column.
    instance: String,
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

    fn lease(&self) -> Lease {
        Lease {
            instance: self.instance.clone(),
            until: self.clock.now() + self.options.lease,
        }
    }

    /// A job's status from its record: rate and time left from the progress its runner
    /// last wrote (any instance's).
    fn status_of(&self, job: Job, cancel_requested: bool) -> JobStatus {
        let now = self.clock.now();
        let running = job.state == JobState::Running;
        let started = job.started_at.filter(|_| running);
        JobStatus {
            rate_bytes_per_sec: started.and_then(|s| job.progress.rate(s, now)),
            eta_secs: started.and_then(|s| job.progress.eta_secs(s, now)),
            cancel_requested: cancel_requested && !job.state.is_final(),
            job,
        }
    }

    fn status(&self, live: &Live) -> JobStatus {
        let mut job = live.job.clone();
        job.progress = live.progress.read();
        let cancel = live.cancel.is_cancelled() || job.cancel_requested;
        self.status_of(job, cancel)
    }

    fn record(&self, job: Job) -> JobStatus {
        let cancel = job.cancel_requested;
        self.status_of(job, cancel)
    }
}

fn finished(id: JobId, state: JobState) -> JobsError {
    JobsError::JobFinished(format!("job {id} has already ended ({state})"))
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
        // Users come over too: an administrator's (the import checks both).
        JobKind::Import => Permission::ManageUsers,
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
        JobKind::Import => AuditAction::Import,
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
        logs: Arc<dyn JobLogRepository>,
        spawner: Arc<dyn Spawner>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        options: JobOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                repo,
                logs,
                log_flush: futures::lock::Mutex::new(()),
                executors: RwLock::new(HashMap::new()),
                spawner,
                clock,
                audit,
                options: JobOptions {
                    max_running: options.max_running.max(1),
                    lease: options.lease.max(TimeDelta::seconds(1)),
                    ..options
                },
                instance: uuid::Uuid::now_v7().to_string(),
                registry: Mutex::new(Registry::default()),
            }),
        }
    }

    /// This process's name in the job records (`instance`), for its log.
    #[must_use]
    pub fn instance(&self) -> &str {
        &self.inner.instance
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

    /// Run once at start-up, before any job is accepted. Alone on its catalog, marks
    /// every job the previous process left queued or running as failed. Sharing it,
    /// fails only the running jobs whose lease has run out (their instance is gone):
    /// the others belong to live instances, and queued jobs wait for any of them.
    ///
    /// # Errors
    /// Database failures.
    pub async fn recover(&self) -> Result<u64, CommonError> {
        let inner = &self.inner;
        let n = if inner.options.shared {
            self.expire().await?
        } else {
            let error = JobError::new(
                "interrupted",
                "the server stopped while this job was queued or running; start it again",
            );
            inner
                .repo
                .fail_unfinished(&error, inner.clock.now())
                .await?
        };
        if n > 0 {
            tracing::warn!(
                jobs = n,
                "marked jobs interrupted by a server's end as failed"
            );
        }
        Ok(n)
    }

    /// Fails the running jobs whose instance stopped renewing their lease.
    async fn expire(&self) -> Result<u64, CommonError> {
        let inner = &self.inner;
        let error = JobError::new(
            "interrupted",
            format!(
                "the server instance running this job stopped answering for {} s (killed, \
                 or cut off from the database); start it again",
                inner.options.lease.num_seconds()
            ),
        );
        let expired = inner.repo.expire_leases(&error, inner.clock.now()).await?;
        for job in &expired {
            tracing::warn!(job = %job.id, kind = %job.kind(), "job interrupted: its instance's lease ran out");
        }
        Ok(expired.len() as u64)
    }

    /// The runner's periodic step (every couple of seconds, from the composition root):
    /// renews the leases of the jobs this process runs and stores their progress, stops
    /// those cancelled elsewhere or lost, declares other instances' expired jobs
    /// interrupted (shared catalogs only), and takes queued work while there is room.
    ///
    /// # Errors
    /// Database failures (the next step tries again).
    pub async fn maintain(&self) -> Result<(), CommonError> {
        let inner = &self.inner;
        let running: Vec<(JobId, Arc<Progress>)> = {
            let reg = inner.registry();
            reg.live
                .values()
                .filter(|l| l.job.state == JobState::Running)
                .map(|l| (l.job.id, Arc::clone(&l.progress)))
                .collect()
        };
        let beats: Vec<(JobId, JobProgress)> =
            running.iter().map(|(id, p)| (*id, p.read())).collect();
        for (id, progress) in &running {
            flush_log(inner, *id, &progress.log).await;
        }
        if !beats.is_empty() {
            let answers = inner.repo.heartbeat(&inner.lease(), &beats).await?;
            let reg = inner.registry();
            for beat in answers {
                let Some(live) = reg.live.get(&beat.id) else {
                    continue;
                };
                if !beat.owned && live.job.state == JobState::Running {
                    tracing::error!(
                        job = %beat.id,
                        "this instance lost a job's lease (another one declared it interrupted); stopping it"
                    );
                    live.cancel.cancel();
                } else if beat.cancel_requested {
                    live.cancel.cancel();
                }
            }
        }
        // Alone on its catalog, a process has nobody else's jobs to declare interrupted
        // (and its own cannot be: the previous process's were failed at start).
        if inner.options.shared {
            self.expire().await?;
        }
        pump(inner).await;
        Ok(())
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
            .map(|job| shown_to(actor, self.inner.record(job)))
            .ok_or_else(|| CommonError::NotFound(format!("no job {id}")))?)
    }

    /// Jobs, newest first, with live progress for those this process is running (and
    /// the last stored progress of those other instances run).
    ///
    /// # Errors
    /// `Forbidden` without `view`; `InvalidPeriod` when `from` is after `to`.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: JobFilter,
    ) -> Result<Page<JobStatus>, JobsError> {
        actor.require(Permission::View)?;
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from > to
        {
            return Err(JobsError::InvalidPeriod(format!(
                "`from` ({from}) is after `to` ({to})"
            )));
        }
        filter.limit = filter.limit.clamp(1, MAX_JOB_PAGE);
        let page = self.page(&filter).await?;
        Ok(Page {
            total: page.total,
            items: page.items.into_iter().map(|s| shown_to(actor, s)).collect(),
        })
    }

    /// Up to `limit` lines (1–[`MAX_LOG_PAGE`]) of a job's log after line `after`, with
    /// the job: a reader follows a running job by asking again with the page's
    /// `next_after` until the page is `complete`. Without the `restore` permission, lines
    /// that name what is in a backup read [`HIDDEN`](coffer_domain::jobs::HIDDEN).
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn log(
        &self,
        actor: &Actor,
        id: JobId,
        after: u64,
        limit: u64,
    ) -> Result<(JobStatus, LogPage), JobsError> {
        // Its state is read first: when it has ended, every line is already stored.
        let status = self.get(actor, id).await?;
        let live = {
            let reg = self.inner.registry();
            reg.live.get(&id).map(|l| Arc::clone(&l.progress))
        };
        if let Some(progress) = live {
            // This process runs it: what it has written so far is stored now, not at the
            // runner's next step.
            flush_log(&self.inner, id, &progress.log).await;
        }
        let limit = limit.clamp(1, MAX_LOG_PAGE);
        let may_see_contents = actor.role.allows(Permission::Restore);
        let lines: Vec<_> = self
            .inner
            .logs
            .read(id, after, limit)
            .await?
            .into_iter()
            .map(|l| l.shown(may_see_contents))
            .collect();
        let page = LogPage {
            next_after: lines.last().map_or(after, |l| l.seq),
            complete: status.job.state.is_final() && (lines.len() as u64) < limit,
            lines,
        };
        Ok((status, page))
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
                    None => self.inner.record(job),
                })
                .collect(),
        })
    }

    /// Stops a job: a queued one at once, a running one at its next safe point (a
    /// cancelled backup leaves no snapshot), on whichever instance runs it.
    ///
    /// # Errors
    /// `Forbidden` without the permission the job's kind needs; `NotFound`;
    /// `JobFinished` for a job that has already ended.
    pub async fn cancel(&self, actor: &Actor, id: JobId) -> Result<JobStatus, JobsError> {
        actor.require(Permission::View)?;
        let inner = &self.inner;
        let live = {
            let reg = inner.registry();
            reg.live.get(&id).map(|l| (l.job.kind(), l.job.state))
        };
        let (kind, state) = if let Some(found) = live {
            found
        } else {
            let job = inner
                .repo
                .get(id)
                .await?
                .ok_or_else(|| CommonError::NotFound(format!("no job {id}")))?;
            (job.kind(), job.state)
        };
        actor.require(permission_for(kind))?;
        if state.is_final() {
            return Err(finished(id, state));
        }
        if let Some(l) = inner.registry().live.get(&id) {
            l.cancel.cancel();
        }
        let after = inner
            .repo
            .request_cancel(id, inner.clock.now())
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no job {id}")))?;
        if after.state.is_final() && after.state != JobState::Cancelled {
            // It ended on its own in between.
            return Err(finished(id, after.state));
        }
        inner
            .audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::JobCancel, &actor.client)
                    .resource(format!("job:{id}")),
            )
            .await?;
        self.get(actor, id).await
    }

    /// Stops taking jobs and asks the running ones to stop; alone on the catalog, the
    /// queued ones are recorded as interrupted (sharing it, they wait for another
    /// instance). The caller waits for [`running`](Self::running) to reach zero.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let unsaved: Vec<Job> = {
            let mut reg = inner.registry();
            reg.shutting_down = true;
            for l in reg.live.values() {
                l.cancel.cancel();
            }
            reg.unsaved
                .iter()
                .filter_map(|id| reg.live.get(id).map(|l| l.job.clone()))
                .collect()
        };
        for job in unsaved {
            if let Err(e) = inner.repo.finish(&job, &inner.instance).await {
                tracing::error!(job = %job.id, error = %e, "cannot record the end of a job");
            }
        }
        if !inner.options.shared {
            let error = JobError::new(
                "interrupted",
                "the server shut down before this job ran; start it again",
            );
            if let Err(e) = inner.repo.fail_queued(&error, inner.clock.now()).await {
                tracing::error!(error = %e, "cannot record the queued jobs as interrupted");
            }
        }
    }

    /// Jobs running now in this process.
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
        JobParams::Import { dir, dry_run, .. } => format!(
            "import of the prototype installation {dir}{}",
            if *dry_run { " (dry run)" } else { "" }
        ),
    }
}

/// The conflict `enqueue` reported, in the caller's words.
fn busy(params: &JobParams, other: JobId) -> SubmitError {
    let message = match params {
        JobParams::Backup { source_name, .. } => {
            format!("a backup of `{source_name}` is already queued or running (job {other})")
        }
        JobParams::Copy { replica } => {
            format!("a copy to replica `{replica}` is already queued or running (job {other})")
        }
        JobParams::Import { .. } => {
            format!("an import is already queued or running (job {other})")
        }
        other_params => format!(
            "a {} of the repository is already queued or running (job {other})",
            other_params.kind()
        ),
    };
    SubmitError::JobRunning {
        job_id: other,
        message,
    }
}

impl JobService {
    /// A restore queued or running (on any instance) whose target overlaps `target`.
    async fn overlapping_restore(&self, target: &str) -> Result<Option<JobId>, CommonError> {
        for state in [JobState::Queued, JobState::Running] {
            let filter = JobFilter {
                state: Some(state),
                kind: Some(JobKind::Restore),
                limit: MAX_JOB_PAGE,
                ..JobFilter::default()
            };
            let page = self.inner.repo.list(&filter).await?;
            if let Some(other) = page.items.iter().find(|j| {
                matches!(&j.params, JobParams::Restore { target: t, .. } if crate::paths::overlaps(t, target))
            }) {
                return Ok(Some(other.id));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl JobQueue for JobService {
    async fn submit(&self, actor: &Actor, params: JobParams) -> Result<JobStatus, SubmitError> {
        let inner = &self.inner;
        if inner.registry().shutting_down {
            return Err(SubmitError::ShuttingDown);
        }
        let id = JobId::from_uuid(uuid::Uuid::now_v7());
        let job = Job::queued(id, params, &actor.username, inner.clock.now());
        if inner.repo.count_queued(None).await? >= MAX_QUEUED as u64 {
            return Err(SubmitError::QueueFull(format!(
                "{MAX_QUEUED} jobs are already waiting; try again when some have run"
            )));
        }
        let cap = inner.options.max_queued_per_user;
        if cap > 0 && actor.user_id.is_some() {
            let waiting = inner.repo.count_queued(Some(&actor.username)).await?;
            if waiting >= u64::try_from(cap).unwrap_or(u64::MAX) {
                return Err(SubmitError::TooManyJobs(format!(
                    "you already have {waiting} jobs waiting (jobs.max_queued_per_user); \
                     try again when some have started"
                )));
            }
        }
        if let JobParams::Restore { target, .. } = &job.params
            && let Some(other) = self.overlapping_restore(target).await?
        {
            return Err(SubmitError::JobRunning {
                job_id: other,
                message: format!(
                    "restore job {other} writes to or around the same directory; wait for it or choose another target"
                ),
            });
        }
        // The database decides conflicts of the same subject (across instances).
        if let Enqueued::Busy(other) = inner
            .repo
            .enqueue(&job, actor)
            .await
            .map_err(CommonError::from)?
        {
            return Err(busy(&job.params, other));
        }
        let recorded = inner
            .audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::JobQueue, &actor.client)
                    .resource(format!("job:{id}"))
                    .detail(describe(&job.params)),
            )
            .await;
        if let Err(e) = recorded {
            // Not in the trail: it must not run.
            if let Err(undo) = inner.repo.request_cancel(id, inner.clock.now()).await {
                tracing::error!(job = %id, error = %undo, "cannot withdraw a job whose audit row failed");
            }
            return Err(e.into());
        }
        pump(inner).await;
        if let Some(live) = self.get_live(id) {
            return Ok(live);
        }
        Ok(match inner.repo.get(id).await {
            Ok(Some(stored)) => inner.record(stored),
            _ => inner.record(job),
        })
    }
}

#[async_trait]
impl ActiveJobs for JobService {
    async fn backup_of(&self, source: SourceId) -> Result<Option<JobId>, CommonError> {
        for state in [JobState::Running, JobState::Queued] {
            let filter = JobFilter {
                state: Some(state),
                kind: Some(JobKind::Backup),
                source_id: Some(source),
                limit: 1,
                ..JobFilter::default()
            };
            if let Some(job) = self.inner.repo.list(&filter).await?.items.first() {
                return Ok(Some(job.id));
            }
        }
        Ok(None)
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

/// Takes queued jobs from the catalog while this process has room, and starts them.
/// Boxed: a job's end takes the next one, so the runner's future refers to its own type.
fn pump(inner: &Arc<Inner>) -> futures::future::BoxFuture<'_, ()> {
    Box::pin(take_queued(inner))
}

async fn take_queued(inner: &Arc<Inner>) {
    // Slots are reserved before the claim, so that two pumps at once cannot take more
    // than the room there is.
    let wanted = {
        let mut reg = inner.registry();
        if reg.shutting_down {
            return;
        }
        let free = inner.options.max_running.saturating_sub(reg.running);
        reg.running += free;
        free
    };
    if wanted == 0 {
        return;
    }
    let claimed = match inner
        .repo
        .claim(&inner.lease(), inner.clock.now(), wanted as u64)
        .await
    {
        Ok(claimed) => claimed,
        Err(e) => {
            tracing::error!(error = %e, "cannot take queued jobs from the catalog");
            Vec::new()
        }
    };
    let mut start = Vec::new();
    {
        let mut reg = inner.registry();
        reg.running -= wanted - claimed.len();
        for ClaimedJob { job, actor } in claimed {
            start.push(job.id);
            reg.live.insert(
                job.id,
                Live {
                    job,
                    actor,
                    progress: Arc::new(Progress::for_job(Arc::clone(&inner.clock))),
                    cancel: Cancel::default(),
                },
            );
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
    let (level, contents, line) = start_line(&job, &describe(&job.params), &inner.instance);
    progress.log.push(level, contents, line);
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
    for (level, contents, line) in end_lines(&job) {
        progress.log.push_final(level, contents, line);
    }
    progress.log.note_dropped();
    // Every line is stored before the final record: a reader that sees the job ended
    // has its whole log.
    flush_log(&inner, id, &progress.log).await;
    // The final record is written while the job still counts as live, so that no
    // reader sees it running in the database after it has ended.
    {
        let mut reg = inner.registry();
        if let Some(l) = reg.live.get_mut(&id) {
            l.job = job.clone();
        }
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
    pump(&inner).await;
}

/// Stores the lines `log` has gathered since the last flush. A failure keeps them for
/// the next one (the runner's next step, or the job's end).
async fn flush_log(inner: &Inner, id: JobId, log: &JobLog) {
    let _order = inner.log_flush.lock().await;
    let lines = log.take(inner.clock.now());
    if lines.is_empty() {
        return;
    }
    if let Err(e) = inner.logs.append(id, &lines).await {
        tracing::error!(job = %id, error = %e, "cannot store a job's log lines; trying again later");
        log.give_back(lines);
    }
}

/// Writes the final record of a job that has ended, then lets go of its live entry.
/// Until the write succeeds the job stays live, so readers keep seeing its true outcome
/// from memory; the write is retried at shutdown (or the job's lease runs out and it is
/// declared interrupted). A record this instance no longer owns — another declared the
/// job interrupted after its lease ran out — is left as the other wrote it.
async fn record_end(inner: &Inner, job: &Job) {
    let saved = inner.repo.finish(job, &inner.instance).await;
    let mut reg = inner.registry();
    match saved {
        Ok(true) => {
            reg.live.remove(&job.id);
        }
        Ok(false) => {
            tracing::error!(
                job = %job.id,
                state = %job.state,
                "a job ended after another instance declared it interrupted; its record stays failed"
            );
            reg.live.remove(&job.id);
        }
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "cannot record the end of a job");
            reg.unsaved.push(job.id);
        }
    }
}

#[cfg(test)]
mod tests;
