//! Backup sources: named directories on the server, managed by administrators.

use std::sync::Arc;

use coffer_domain::SourceId;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::ports::{Clock, LocalPaths, Retention, Source, SourceRepository, SourceSpec};
use coffer_domain::schedule::Schedule;

use crate::audit::AuditLog;
use crate::error::ServiceError;
use crate::jobs::ActiveJobs;

/// Longest source name.
pub const MAX_SOURCE_NAME: usize = 200;
/// Largest retention count or age a source may set.
pub const MAX_RETENTION: u32 = 100_000;

/// A change to a source; `None` leaves a field as it is. `schedule` and `retention`
/// take `Some(None)` to clear them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceChanges {
    pub name: Option<String>,
    pub path: Option<String>,
    pub schedule: Option<Option<String>>,
    pub retention: Option<Option<Retention>>,
    /// Scheduled runs on or off (the schedule itself is kept).
    pub enabled: Option<bool>,
}

/// How many next runs a schedule preview lists.
const PREVIEW_RUNS: usize = 5;

/// A schedule as people read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulePreview {
    /// The expression, trimmed.
    pub cron: String,
    pub description: String,
    pub next_runs: Vec<chrono::DateTime<chrono::Utc>>,
}

pub struct SourceService {
    sources: Arc<dyn SourceRepository>,
    paths: Arc<dyn LocalPaths>,
    protected: Vec<String>,
    active: Arc<dyn ActiveJobs>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

/// Checks a name: trimmed, 1 to 200 characters, no control characters.
fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_SOURCE_NAME {
        return Err(ServiceError::invalid(
            "invalid_name",
            format!("a source name has 1 to {MAX_SOURCE_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "invalid_name",
            "a source name cannot contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// Refuses a directory that contains one of Coffer's own directories or lies in one:
/// backing up the repository into itself would grow it with every run.
pub(crate) fn check_not_own(dir: &str, protected: &[String]) -> Result<(), ServiceError> {
    if let Some(own) = protected.iter().find(|p| crate::overlaps(dir, p)) {
        return Err(ServiceError::invalid(
            "invalid_path",
            format!(
                "{dir} contains or lies in {own}, one of Coffer's own directories (data, repository, restore roots)"
            ),
        ));
    }
    Ok(())
}

fn check_schedule(schedule: Option<String>) -> Result<Option<String>, ServiceError> {
    schedule
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            Schedule::parse(&s)
                .map(|p| p.as_str().to_owned())
                .map_err(|e| ServiceError::invalid("invalid_schedule", e.to_string()))
        })
        .transpose()
}

pub(crate) fn check_retention(
    retention: Option<Retention>,
) -> Result<Option<Retention>, ServiceError> {
    if let Some(r) = retention
        && [
            r.max_backups,
            r.max_age_days,
            r.keep_within_days,
            r.keep_daily,
            r.keep_weekly,
            r.keep_monthly,
            r.keep_yearly,
        ]
        .iter()
        .any(|n| *n > MAX_RETENTION)
    {
        return Err(ServiceError::invalid(
            "invalid_retention",
            format!("retention counts and ages are at most {MAX_RETENTION}"),
        ));
    }
    Ok(retention)
}

impl SourceService {
    #[must_use]
    /// `protected` are Coffer's own directories (data directory, repository, restore
    /// roots), absolute with symlinks resolved: a source may not contain or lie in them.
    pub fn new(
        sources: Arc<dyn SourceRepository>,
        paths: Arc<dyn LocalPaths>,
        protected: Vec<String>,
        active: Arc<dyn ActiveJobs>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            sources,
            paths,
            protected,
            active,
            clock,
            audit,
        }
    }

    /// A schedule in words and its next runs, for checking a cron expression before
    /// saving it. Nothing is stored or audited.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `Invalid` (`invalid_schedule`, saying why).
    pub fn schedule_preview(
        &self,
        actor: &Actor,
        text: &str,
    ) -> Result<SchedulePreview, ServiceError> {
        actor.require(Permission::View)?;
        let schedule = Schedule::parse(text)
            .map_err(|e| ServiceError::invalid("invalid_schedule", e.to_string()))?;
        Ok(SchedulePreview {
            cron: schedule.as_str().to_owned(),
            description: schedule.describe(),
            next_runs: schedule.next_runs(self.clock.now(), PREVIEW_RUNS),
        })
    }

    /// Every source, by name.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<Source>, ServiceError> {
        actor.require(Permission::View)?;
        Ok(self.sources.list().await?)
    }

    /// One source.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn get(&self, actor: &Actor, id: SourceId) -> Result<Source, ServiceError> {
        actor.require(Permission::View)?;
        self.sources
            .get(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no source with id {id}")))
    }

    /// A source by id (all digits) or by name.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn find(&self, actor: &Actor, reference: &str) -> Result<Source, ServiceError> {
        actor.require(Permission::View)?;
        if let Some(s) = self.sources.find_by_name(reference).await? {
            return Ok(s);
        }
        if let Ok(id) = reference.parse::<i64>()
            && let Some(s) = self.sources.get(SourceId::new(id)).await?
        {
            return Ok(s);
        }
        Err(ServiceError::NotFound(format!(
            "no source named `{reference}`"
        )))
    }

    fn readable_dir(&self, path: &str) -> Result<String, ServiceError> {
        let dir = self
            .paths
            .readable_dir(path)
            .map_err(|e| ServiceError::invalid("invalid_path", e.to_string()))?;
        check_not_own(&dir, &self.protected)?;
        Ok(dir)
    }

    /// Adds a source. The path must be an absolute, readable directory; it is stored
    /// with every symlink resolved.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `Invalid` (name, path, schedule, retention);
    /// `Conflict` when the name is taken.
    pub async fn create(&self, actor: &Actor, spec: SourceSpec) -> Result<Source, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let spec = SourceSpec {
            name: check_name(&spec.name)?,
            path: self.readable_dir(&spec.path)?,
            schedule: check_schedule(spec.schedule)?,
            retention: check_retention(spec.retention)?,
        };
        let source = self
            .sources
            .create(&spec, self.clock.now())
            .await
            .map_err(|e| name_taken(e, &spec.name))?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::SourceCreate, &actor.client)
                    .resource(format!("source:{}", source.id))
                    .detail(format!("`{}` -> {}", source.name, source.path)),
            )
            .await?;
        Ok(source)
    }

    /// Changes a source.
    ///
    /// # Errors
    /// As `create`, and `NotFound`.
    pub async fn update(
        &self,
        actor: &Actor,
        id: SourceId,
        changes: SourceChanges,
    ) -> Result<Source, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let current = self.get(actor, id).await?;
        let spec = SourceSpec {
            name: match changes.name {
                Some(n) => check_name(&n)?,
                None => current.name.clone(),
            },
            path: match changes.path {
                Some(p) => self.readable_dir(&p)?,
                None => current.path.clone(),
            },
            schedule: match changes.schedule {
                Some(s) => check_schedule(s)?,
                None => current.schedule.clone(),
            },
            retention: match changes.retention {
                Some(r) => check_retention(r)?,
                None => current.retention,
            },
        };
        let now = self.clock.now();
        let mut source = self
            .sources
            .update(id, &spec, now)
            .await
            .map_err(|e| name_taken(e, &spec.name))?
            .ok_or_else(|| ServiceError::NotFound(format!("no source with id {id}")))?;
        if let Some(enabled) = changes.enabled.filter(|e| *e != source.enabled) {
            let missing = || ServiceError::NotFound(format!("no source with id {id}"));
            if !self.sources.set_enabled(id, enabled, now).await? {
                return Err(missing());
            }
            source = self.sources.get(id).await?.ok_or_else(missing)?;
        }
        let mut what = Vec::new();
        if source.name != current.name {
            what.push(format!("name `{}` -> `{}`", current.name, source.name));
        }
        if source.path != current.path {
            what.push(format!("path {} -> {}", current.path, source.path));
        }
        if source.schedule != current.schedule {
            what.push(format!(
                "schedule {} -> {}",
                current.schedule.as_deref().unwrap_or("none"),
                source.schedule.as_deref().unwrap_or("none")
            ));
        }
        if source.retention != current.retention {
            what.push("retention".to_owned());
        }
        if source.enabled != current.enabled {
            what.push(format!(
                "scheduled runs {}",
                if source.enabled { "on" } else { "off" }
            ));
        }
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::SourceUpdate, &actor.client)
                    .resource(format!("source:{id}"))
                    .detail(if what.is_empty() {
                        "no change".to_owned()
                    } else {
                        what.join("; ")
                    }),
            )
            .await?;
        Ok(source)
    }

    /// Removes a source. Its snapshots stay in the catalog and the repository.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; `JobRunning` while a backup of it
    /// is queued or running.
    pub async fn delete(&self, actor: &Actor, id: SourceId) -> Result<(), ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let current = self.get(actor, id).await?;
        if let Some(job_id) = self.active.backup_of(id) {
            return Err(ServiceError::JobRunning {
                job_id,
                message: format!(
                    "a backup of `{}` is queued or running (job {job_id}); cancel it or wait",
                    current.name
                ),
            });
        }
        if !self.sources.delete(id).await? {
            return Err(ServiceError::NotFound(format!("no source with id {id}")));
        }
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::SourceDelete, &actor.client)
                    .resource(format!("source:{id}"))
                    .detail(format!("`{}` ({})", current.name, current.path)),
            )
            .await?;
        Ok(())
    }
}

fn name_taken(e: coffer_domain::ports::RepoError, name: &str) -> ServiceError {
    match e {
        coffer_domain::ports::RepoError::Conflict(_) => ServiceError::Conflict {
            code: "name_taken",
            message: format!("a source named `{name}` already exists"),
        },
        other => other.into(),
    }
}
