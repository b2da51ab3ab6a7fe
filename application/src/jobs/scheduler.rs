//! The in-server scheduler: backups of each source on its cron schedule, and the global
//! tasks (prune, and a check that re-reads a share of the data) on theirs.
//!
//! The scheduler holds no timer. [`Scheduler::tick`] looks at the time once and starts
//! what is due; [`Scheduler::next_wakeup`] says when to call it again. The runtime's loop
//! lives in the composition root. Every plan is persisted (`sources.next_run_at` /
//! `last_run_at`, and `scheduler.<task>.*` settings), so a restart keeps them.
//!
//! Rules, the same for sources and tasks:
//! - a subject with no planned run gets the first occurrence after now;
//! - a run that is due starts, unless the previous job of that subject is still queued
//!   or running: then this occurrence is skipped (runs never overlap);
//! - a run due more than the grace ago was missed while the server was down: it starts
//!   once if `catch_up` is on and is skipped otherwise — never once per missed occurrence;
//! - either way the next run is the first occurrence strictly after now, and
//!   `last_run_at` records when a run started;
//! - one subject's failure never stops the others.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use coffer_domain::auth::{Actor, Permission};
use coffer_domain::ports::{Clock, RepoError, SettingsRepository, Source, SourceRepository};
use coffer_domain::replicas::{Replica, ReplicaRepository};
use coffer_domain::schedule::Schedule;
use coffer_domain::{JobId, SourceId};

use crate::error::{CodedError, CommonError, ErrorClass};

/// The name scheduled jobs are requested by: audited as `system:scheduler`.
pub const SCHEDULER_USER: &str = "scheduler";

/// Why a scheduled run could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The previous job of this subject is still queued or running.
    #[error("job {0} is still queued or running")]
    StillRunning(JobId),
    /// Refused, with the area's code and message (no source, quota used up, ...).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl DispatchError {
    /// Any area's error, by its class.
    pub fn from_error<E: CodedError>(e: E) -> Self {
        match e.class() {
            ErrorClass::JobRunning(job_id) => Self::StillRunning(job_id),
            ErrorClass::Unexpected(_) => Self::Unexpected(anyhow::Error::new(e)),
            ErrorClass::Business | ErrorClass::Cancelled => Self::Refused {
                code: e.code(),
                message: e.to_string(),
            },
        }
    }
}

/// Starts the jobs the scheduler decides on. A port so that the scheduler can be tested
/// without a job runner.
///
/// Contract: `Err(DispatchError::StillRunning(..))` when a job of the same subject (that
/// source's backup; a prune; a check) is already queued or running.
#[async_trait]
pub trait Dispatch: Send + Sync {
    async fn backup(&self, source: SourceId) -> Result<JobId, DispatchError>;
    async fn prune(&self) -> Result<JobId, DispatchError>;
    async fn check(&self, share_percent: u8) -> Result<JobId, DispatchError>;
    /// A copy into the replica `replica`.
    async fn copy(&self, replica: &str) -> Result<JobId, DispatchError> {
        Err(DispatchError::Refused {
            code: "not_found",
            message: format!("no replica `{replica}` can be copied to here"),
        })
    }
}

/// Starting a scheduled copy into a replica; the replica area implements it.
#[async_trait]
pub trait ScheduledCopies: Send + Sync {
    async fn start_scheduled_copy(
        &self,
        actor: &Actor,
        replica: &str,
    ) -> Result<JobId, DispatchError>;
}

/// Starting a scheduled backup; the backup area implements it.
#[async_trait]
pub trait ScheduledBackups: Send + Sync {
    async fn start_scheduled(
        &self,
        actor: &Actor,
        source: SourceId,
    ) -> Result<JobId, DispatchError>;
}

/// Starting a scheduled prune or check; the maintenance area implements it.
#[async_trait]
pub trait ScheduledMaintenance: Send + Sync {
    async fn start_scheduled_prune(&self, actor: &Actor) -> Result<JobId, DispatchError>;
    async fn start_scheduled_check(
        &self,
        actor: &Actor,
        share_percent: u8,
    ) -> Result<JobId, DispatchError>;
}

/// [`Dispatch`] through the areas that own the work, as the local system administrator
/// `system:scheduler`: scheduled jobs obey the same rules and leave the same audit trail
/// as jobs asked for by people.
pub struct JobDispatch {
    backups: Arc<dyn ScheduledBackups>,
    maintenance: Arc<dyn ScheduledMaintenance>,
    copies: Option<Arc<dyn ScheduledCopies>>,
    actor: Actor,
}

impl JobDispatch {
    #[must_use]
    pub fn new(
        backups: Arc<dyn ScheduledBackups>,
        maintenance: Arc<dyn ScheduledMaintenance>,
    ) -> Self {
        Self {
            backups,
            maintenance,
            copies: None,
            actor: Actor::local_admin(SCHEDULER_USER),
        }
    }

    /// Scheduled copies into replicas go to `copies`.
    #[must_use]
    pub fn with_copies(mut self, copies: Arc<dyn ScheduledCopies>) -> Self {
        self.copies = Some(copies);
        self
    }
}

#[async_trait]
impl Dispatch for JobDispatch {
    async fn backup(&self, source: SourceId) -> Result<JobId, DispatchError> {
        self.backups.start_scheduled(&self.actor, source).await
    }

    async fn prune(&self) -> Result<JobId, DispatchError> {
        self.maintenance.start_scheduled_prune(&self.actor).await
    }

    async fn check(&self, share_percent: u8) -> Result<JobId, DispatchError> {
        self.maintenance
            .start_scheduled_check(&self.actor, share_percent)
            .await
    }

    async fn copy(&self, replica: &str) -> Result<JobId, DispatchError> {
        match &self.copies {
            Some(copies) => copies.start_scheduled_copy(&self.actor, replica).await,
            None => Err(DispatchError::Refused {
                code: "not_found",
                message: format!("no replica `{replica}` can be copied to here"),
            }),
        }
    }
}

/// The scheduler's plan, for the dashboard.
#[async_trait]
pub trait SchedulePlan: Send + Sync {
    async fn plan(&self) -> Result<SchedulerStatus, CommonError>;
}

/// A repository-wide task with its own schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Garbage collection (`scheduler.prune_schedule`).
    Prune,
    /// Re-reading a share of the stored data (`scheduler.check_schedule`).
    Check,
}

impl Task {
    pub const ALL: [Self; 2] = [Self::Prune, Self::Check];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prune => "prune",
            Self::Check => "check",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Off: `tick` does nothing and nothing is planned (`scheduler.enabled`).
    pub enabled: bool,
    /// Start a run missed while the server was down, once (`scheduler.catch_up`).
    pub catch_up: bool,
    /// How late a run may start and still count as on time rather than missed.
    pub grace: TimeDelta,
    /// `None`: no scheduled prune.
    pub prune: Option<Schedule>,
    /// `None`: no scheduled check.
    pub check: Option<Schedule>,
    /// The share of the stored data each scheduled check re-reads, 1 to 100.
    pub check_share_percent: u8,
}

/// How late a run may start and still count as on time, by default.
#[must_use]
pub const fn default_grace() -> TimeDelta {
    TimeDelta::minutes(2)
}

/// What a tick was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Source { id: SourceId, name: String },
    Task(Task),
    Replica { name: String },
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Source { id, name } => write!(f, "backup of `{name}` (source {id})"),
            Self::Task(task) => write!(f, "{task}"),
            Self::Replica { name } => write!(f, "copy to replica `{name}`"),
        }
    }
}

/// What became of one due run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job was queued. `catch_up`: the run had been missed while the server was
    /// down and is made up for now.
    Started { job_id: JobId, catch_up: bool },
    /// The previous job of this subject is still queued or running; this occurrence is
    /// skipped.
    StillRunning { job_id: JobId },
    /// Missed while the server was down, and `catch_up` is off.
    Missed,
    /// The job could not be started (the error's code and message).
    Failed { code: String, message: String },
}

/// One due run and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub subject: Subject,
    /// When the run was planned for.
    pub due_at: DateTime<Utc>,
    pub outcome: Outcome,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Every run that was due, in order.
    pub fired: Vec<Fired>,
    /// Problems reading or writing the scheduler's state (each one stopped only its own
    /// subject).
    pub errors: Vec<String>,
}

/// A source's schedule as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSchedule {
    pub source_id: SourceId,
    pub source_name: String,
    pub schedule: Option<Schedule>,
    /// The source's own switch (scheduled runs on or off).
    pub enabled: bool,
    /// The next run, when one will happen (scheduler and source enabled, a schedule).
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// A global task's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSchedule {
    pub task: Task,
    /// `None`: the task is not scheduled (an empty schedule in the configuration).
    pub schedule: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// For the check: the share of the data each run re-reads.
    pub share_percent: Option<u8>,
}

/// Everything the scheduler has planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerStatus {
    /// The scheduler runs (`scheduler.enabled`); when off, nothing has a next run.
    pub enabled: bool,
    pub catch_up: bool,
    /// Every source, by name.
    pub sources: Vec<SourceSchedule>,
    /// Prune, then check.
    pub tasks: Vec<TaskSchedule>,
}

/// A task's persisted state.
#[derive(Debug, Clone, Default)]
struct TaskState {
    /// The schedule the plan was made with; a different configured one is planned afresh.
    schedule: Option<String>,
    next_run_at: Option<DateTime<Utc>>,
    last_run_at: Option<DateTime<Utc>>,
}

fn key(task: Task, field: &str) -> String {
    format!("scheduler.{}.{field}", task.as_str())
}

/// Settings values are JSON text.
fn json_text(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn json_time(value: Option<DateTime<Utc>>) -> String {
    value.map_or_else(
        || "null".to_owned(),
        |t| json_text(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    )
}

fn parse_text(key: &str, raw: &str) -> Result<Option<String>, RepoError> {
    serde_json::from_str::<Option<String>>(raw)
        .map_err(|e| RepoError::Corrupt(format!("setting `{key}`: {e}")))
}

fn parse_time(key: &str, raw: &str) -> Result<Option<DateTime<Utc>>, RepoError> {
    parse_text(key, raw)?
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| RepoError::Corrupt(format!("setting `{key}`: {e}")))
        })
        .transpose()
}

/// Whether a planned run is due at `now`, and whether it is late beyond the grace.
enum Due {
    NotYet,
    OnTime,
    Late,
}

fn due(planned: DateTime<Utc>, now: DateTime<Utc>, grace: TimeDelta) -> Due {
    if planned > now {
        Due::NotYet
    } else if now - planned > grace {
        Due::Late
    } else {
        Due::OnTime
    }
}

pub struct Scheduler {
    replicas: Option<Arc<dyn ReplicaRepository>>,
    sources: Arc<dyn SourceRepository>,
    settings: Arc<dyn SettingsRepository>,
    dispatch: Arc<dyn Dispatch>,
    clock: Arc<dyn Clock>,
    options: SchedulerOptions,
}

impl Scheduler {
    #[must_use]
    pub fn new(
        sources: Arc<dyn SourceRepository>,
        settings: Arc<dyn SettingsRepository>,
        dispatch: Arc<dyn Dispatch>,
        clock: Arc<dyn Clock>,
        options: SchedulerOptions,
    ) -> Self {
        Self {
            replicas: None,
            sources,
            settings,
            dispatch,
            clock,
            options,
        }
    }

    /// Replicas with a schedule get copies on it, by the same rules as sources.
    #[must_use]
    pub fn with_replicas(mut self, replicas: Arc<dyn ReplicaRepository>) -> Self {
        self.replicas = Some(replicas);
        self
    }

    #[must_use]
    pub const fn options(&self) -> &SchedulerOptions {
        &self.options
    }

    const fn task_schedule(&self, task: Task) -> Option<&Schedule> {
        match task {
            Task::Prune => self.options.prune.as_ref(),
            Task::Check => self.options.check.as_ref(),
        }
    }

    /// Starts every run that is due now and plans the next ones (see the module's rules).
    /// Never fails as a whole: problems are in the report (and the log).
    pub async fn tick(&self) -> TickReport {
        let now = self.clock.now();
        let mut report = TickReport::default();
        if !self.options.enabled {
            return report;
        }
        match self.sources.list().await {
            Ok(sources) => {
                for source in &sources {
                    if let Err(e) = self.tick_source(source, now, &mut report).await {
                        let message = format!("source `{}`: {e}", source.name);
                        tracing::error!(error = %message, "scheduler");
                        report.errors.push(message);
                    }
                }
            }
            Err(e) => {
                let message = format!("cannot list the sources: {e}");
                tracing::error!(error = %message, "scheduler");
                report.errors.push(message);
            }
        }
        for task in Task::ALL {
            if let Err(e) = self.tick_task(task, now, &mut report).await {
                let message = format!("{task}: {e}");
                tracing::error!(error = %message, "scheduler");
                report.errors.push(message);
            }
        }
        if let Some(replicas) = &self.replicas {
            match replicas.list().await {
                Ok(list) => {
                    for replica in &list {
                        if let Err(e) = self.tick_replica(replicas, replica, now, &mut report).await
                        {
                            let message = format!("replica `{}`: {e}", replica.spec.name);
                            tracing::error!(error = %message, "scheduler");
                            report.errors.push(message);
                        }
                    }
                }
                Err(e) => {
                    let message = format!("cannot list the replicas: {e}");
                    tracing::error!(error = %message, "scheduler");
                    report.errors.push(message);
                }
            }
        }
        report
    }

    async fn tick_replica(
        &self,
        replicas: &Arc<dyn ReplicaRepository>,
        replica: &Replica,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), RepoError> {
        let name = &replica.spec.name;
        let Some(schedule) = replica.spec.schedule.as_ref() else {
            if replica.next_run_at.is_some() {
                replicas.set_plan(name, None, replica.last_run_at).await?;
            }
            return Ok(());
        };
        let Some(planned) = replica.next_run_at else {
            replicas
                .set_plan(name, schedule.next_after(now), replica.last_run_at)
                .await?;
            return Ok(());
        };
        let subject = Subject::Replica {
            name: name.to_string(),
        };
        let Some(outcome) = self
            .fire(&subject, planned, now, || self.dispatch.copy(name.as_str()))
            .await
        else {
            return Ok(());
        };
        let last = if matches!(outcome, Outcome::Started { .. }) {
            Some(now)
        } else {
            replica.last_run_at
        };
        replicas
            .set_plan(name, schedule.next_after(now), last)
            .await?;
        report.fired.push(Fired {
            subject,
            due_at: planned,
            outcome,
        });
        Ok(())
    }

    async fn tick_source(
        &self,
        source: &Source,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), RepoError> {
        let Some(schedule) = source.schedule.as_ref().filter(|_| source.enabled) else {
            return Ok(());
        };
        let Some(planned) = source.next_run_at else {
            self.sources
                .set_next_run(source.id, schedule, schedule.next_after(now))
                .await?;
            return Ok(());
        };
        let subject = Subject::Source {
            id: source.id,
            name: source.name.clone(),
        };
        let Some(outcome) = self
            .fire(&subject, planned, now, || self.dispatch.backup(source.id))
            .await
        else {
            return Ok(());
        };
        let next = schedule.next_after(now);
        if matches!(outcome, Outcome::Started { .. }) {
            self.sources
                .record_run(source.id, schedule, now, next)
                .await?;
        } else {
            self.sources.set_next_run(source.id, schedule, next).await?;
        }
        report.fired.push(Fired {
            subject,
            due_at: planned,
            outcome,
        });
        Ok(())
    }

    async fn tick_task(
        &self,
        task: Task,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), RepoError> {
        let Some(schedule) = self.task_schedule(task) else {
            // Unscheduled: forget the plan, so that scheduling it again later starts
            // afresh instead of catching up a run from long ago.
            self.settings.delete(&key(task, "next_run_at")).await?;
            self.settings.delete(&key(task, "schedule")).await?;
            return Ok(());
        };
        let state = self.task_state(task).await?;
        let planned = state
            .next_run_at
            .filter(|_| state.schedule.as_deref() == Some(schedule.as_str()));
        let Some(planned) = planned else {
            self.save_task(task, schedule, schedule.next_after(now), None)
                .await?;
            return Ok(());
        };
        let share = self.options.check_share_percent;
        let subject = Subject::Task(task);
        let Some(outcome) = self
            .fire(&subject, planned, now, || async move {
                match task {
                    Task::Prune => self.dispatch.prune().await,
                    Task::Check => self.dispatch.check(share).await,
                }
            })
            .await
        else {
            return Ok(());
        };
        let last = matches!(outcome, Outcome::Started { .. }).then_some(now);
        self.save_task(task, schedule, schedule.next_after(now), last)
            .await?;
        report.fired.push(Fired {
            subject,
            due_at: planned,
            outcome,
        });
        Ok(())
    }

    /// Starts a run planned for `planned` if it is due; `None` when it is not.
    async fn fire<F, Fut>(
        &self,
        subject: &Subject,
        planned: DateTime<Utc>,
        now: DateTime<Utc>,
        start: F,
    ) -> Option<Outcome>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<JobId, DispatchError>>,
    {
        let catch_up = match due(planned, now, self.options.grace) {
            Due::NotYet => return None,
            Due::OnTime => false,
            Due::Late if self.options.catch_up => true,
            Due::Late => {
                tracing::warn!(%subject, %planned, "scheduled run missed while the server was down; skipped (scheduler.catch_up is off)");
                return Some(Outcome::Missed);
            }
        };
        let outcome = match start().await {
            Ok(job_id) => {
                if catch_up {
                    tracing::info!(%subject, %planned, %job_id, "scheduled run missed while the server was down; started now");
                } else {
                    tracing::info!(%subject, %job_id, "scheduled run started");
                }
                Outcome::Started { job_id, catch_up }
            }
            Err(DispatchError::StillRunning(job_id)) => {
                tracing::warn!(%subject, %planned, running = %job_id, "scheduled run skipped: the previous one is still queued or running");
                Outcome::StillRunning { job_id }
            }
            Err(DispatchError::Unexpected(inner)) => {
                tracing::error!(%subject, error = ?inner, "scheduled run could not start");
                Outcome::Failed {
                    code: "internal".to_owned(),
                    message: inner.to_string(),
                }
            }
            Err(DispatchError::Refused { code, message }) => {
                tracing::warn!(%subject, error = %message, "scheduled run could not start");
                Outcome::Failed {
                    code: code.to_owned(),
                    message,
                }
            }
        };
        Some(outcome)
    }

    async fn task_state(&self, task: Task) -> Result<TaskState, RepoError> {
        let get = |field: &'static str| async move {
            let k = key(task, field);
            let raw = self.settings.get(&k).await?;
            Ok::<_, RepoError>((k, raw))
        };
        let mut state = TaskState::default();
        if let (k, Some(raw)) = get("schedule").await? {
            state.schedule = parse_text(&k, &raw)?;
        }
        if let (k, Some(raw)) = get("next_run_at").await? {
            state.next_run_at = parse_time(&k, &raw)?;
        }
        if let (k, Some(raw)) = get("last_run_at").await? {
            state.last_run_at = parse_time(&k, &raw)?;
        }
        Ok(state)
    }

    async fn save_task(
        &self,
        task: Task,
        schedule: &Schedule,
        next: Option<DateTime<Utc>>,
        last: Option<DateTime<Utc>>,
    ) -> Result<(), RepoError> {
        if let Some(at) = last {
            self.settings
                .put(&key(task, "last_run_at"), &json_time(Some(at)))
                .await?;
        }
        self.settings
            .put(&key(task, "next_run_at"), &json_time(next))
            .await?;
        // Written last: a plan is only trusted once both are there.
        self.settings
            .put(&key(task, "schedule"), &json_text(schedule.as_str()))
            .await
    }

    /// When the next run is planned, if any: the earliest planned (or, for a subject not
    /// planned yet, would-be) run of any source or task. A time in the past means a tick
    /// is due now.
    ///
    /// # Errors
    /// Database failures.
    pub async fn next_wakeup(&self) -> Result<Option<DateTime<Utc>>, CommonError> {
        let status = self.plan().await?;
        let mut replicas = Vec::new();
        if let Some(repo) = &self.replicas {
            for r in repo.list().await? {
                match (&r.spec.schedule, r.next_run_at) {
                    (Some(_), Some(t)) => replicas.push(t),
                    // Not planned yet: a tick now plans it.
                    (Some(_), None) => replicas.push(self.clock.now()),
                    (None, _) => {}
                }
            }
        }
        Ok(status
            .sources
            .iter()
            .filter_map(|s| s.next_run_at)
            .chain(status.tasks.iter().filter_map(|t| t.next_run_at))
            .chain(replicas)
            .min())
    }

    /// Every source's and task's schedule with its next and last runs.
    ///
    /// # Errors
    /// `Forbidden` without `view`; database failures.
    pub async fn status(&self, actor: &Actor) -> Result<SchedulerStatus, CommonError> {
        actor.require(Permission::View)?;
        self.plan().await
    }

    async fn plan(&self) -> Result<SchedulerStatus, CommonError> {
        let now = self.clock.now();
        let on = self.options.enabled;
        let sources = self
            .sources
            .list()
            .await?
            .into_iter()
            .map(|s| {
                let next_run_at = if on && s.enabled {
                    // Not planned yet: what the next tick will plan.
                    s.schedule
                        .as_ref()
                        .and_then(|schedule| s.next_run_at.or_else(|| schedule.next_after(now)))
                } else {
                    None
                };
                SourceSchedule {
                    source_id: s.id,
                    source_name: s.name,
                    schedule: s.schedule,
                    enabled: s.enabled,
                    next_run_at,
                    last_run_at: s.last_run_at,
                }
            })
            .collect();
        let mut tasks = Vec::new();
        for task in Task::ALL {
            let schedule = self.task_schedule(task);
            let state = self.task_state(task).await?;
            let next_run_at = schedule.filter(|_| on).and_then(|schedule| {
                state
                    .next_run_at
                    .filter(|_| state.schedule.as_deref() == Some(schedule.as_str()))
                    .or_else(|| schedule.next_after(now))
            });
            tasks.push(TaskSchedule {
                task,
                schedule: schedule.map(|s| s.as_str().to_owned()),
                next_run_at,
                last_run_at: state.last_run_at,
                share_percent: (task == Task::Check).then_some(self.options.check_share_percent),
            });
        }
        Ok(SchedulerStatus {
            enabled: on,
            catch_up: self.options.catch_up,
            sources,
            tasks,
        })
    }
}

#[async_trait]
impl SchedulePlan for Scheduler {
    async fn plan(&self) -> Result<SchedulerStatus, CommonError> {
        Self::plan(self).await
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
