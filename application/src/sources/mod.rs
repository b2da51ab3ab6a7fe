//! Backup sources: named directories on the server, managed by administrators.

use std::sync::Arc;

use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::excludes::{ExcludePreview, SourceFilter};
use coffer_domain::ports::{
    Clock, LocalPaths, RepoError, Retention, Source, SourceRepository, SourceSpec,
};
use coffer_domain::schedule::Schedule;
use coffer_domain::{JobId, SourceId};

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};
use crate::jobs::ActiveJobs;
use crate::paths::{own_directory, own_directory_message};

/// Longest source name.
pub const MAX_SOURCE_NAME: usize = 200;

/// Errors of managing sources.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `invalid_name`.
    #[error("{0}")]
    InvalidName(String),
    /// `invalid_path`: not an absolute, readable directory, or one of Coffer's own.
    #[error("{0}")]
    InvalidPath(String),
    /// `invalid_schedule`: not a five-field cron expression.
    #[error("{0}")]
    InvalidSchedule(String),
    /// `invalid_retention`: a count or age out of range.
    #[error("{0}")]
    InvalidRetention(String),
    /// `invalid_exclude`: an exclude pattern that is not valid gitignore syntax, or a
    /// size limit of zero.
    #[error("{0}")]
    InvalidExclude(String),
    /// `name_taken`.
    #[error("{0}")]
    NameTaken(String),
    /// `job_running`: a backup of the source is queued or running.
    #[error("{message}")]
    JobRunning { job_id: JobId, message: String },
}

impl CodedError for SourceError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidPath(_) => "invalid_path",
            Self::InvalidSchedule(_) => "invalid_schedule",
            Self::InvalidRetention(_) => "invalid_retention",
            Self::InvalidExclude(_) => "invalid_exclude",
            Self::NameTaken(_) => "name_taken",
            Self::JobRunning { .. } => "job_running",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::JobRunning { job_id, .. } => ErrorClass::JobRunning(*job_id),
            Self::InvalidName(_)
            | Self::InvalidPath(_)
            | Self::InvalidSchedule(_)
            | Self::InvalidRetention(_)
            | Self::InvalidExclude(_)
            | Self::NameTaken(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(SourceError);

/// A source as asked for: checked and parsed by [`SourceService::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSource {
    pub name: String,
    pub path: String,
    /// A five-field cron expression (UTC); blank means none.
    pub schedule: Option<String>,
    pub retention: Option<Retention>,
    /// What its backups leave out.
    pub filter: SourceFilter,
}

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
    /// The exclude patterns, replaced whole.
    pub exclude: Option<Vec<String>>,
    pub exclude_caches: Option<bool>,
    pub one_file_system: Option<bool>,
    /// `Some(None)` removes the size limit.
    pub exclude_larger_than: Option<Option<u64>>,
}

/// How many excluded paths a preview names.
pub const PREVIEW_SAMPLE: usize = 50;
/// How many entries a preview looks at before it stops (and says so).
pub const PREVIEW_MAX_ENTRIES: u64 = 50_000;

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
fn check_name(name: &str) -> Result<String, SourceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_SOURCE_NAME {
        return Err(SourceError::InvalidName(format!(
            "a source name has 1 to {MAX_SOURCE_NAME} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(SourceError::InvalidName(
            "a source name cannot contain control characters".to_owned(),
        ));
    }
    Ok(name.to_owned())
}

/// A schedule as typed (blank: none), parsed.
fn check_schedule(schedule: Option<String>) -> Result<Option<Schedule>, SourceError> {
    schedule
        .filter(|s| !s.trim().is_empty())
        .map(|s| Schedule::parse(&s).map_err(|e| SourceError::InvalidSchedule(e.to_string())))
        .transpose()
}

/// A filter as asked for, with its patterns checked (as given: a pattern's spaces can
/// be part of a name).
fn check_filter(filter: SourceFilter) -> Result<SourceFilter, SourceError> {
    if filter.exclude_larger_than == Some(0) {
        return Err(SourceError::InvalidExclude(
            "exclude_larger_than is a size in bytes above 0 (leave it out for no limit)".to_owned(),
        ));
    }
    filter
        .compile()
        .map_err(|e| SourceError::InvalidExclude(e.to_string()))?;
    Ok(filter)
}

fn check_retention(retention: Option<Retention>) -> Result<Option<Retention>, SourceError> {
    if let Some(r) = retention {
        r.check()
            .map_err(|e| SourceError::InvalidRetention(e.to_string()))?;
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
    ) -> Result<SchedulePreview, SourceError> {
        actor.require(Permission::View)?;
        let schedule =
            Schedule::parse(text).map_err(|e| SourceError::InvalidSchedule(e.to_string()))?;
        Ok(SchedulePreview {
            cron: schedule.as_str().to_owned(),
            description: schedule.describe(),
            next_runs: schedule.next_runs(self.clock.now(), PREVIEW_RUNS),
        })
    }

    /// What `filter` would leave out of the directory `path` as it is now, for checking
    /// exclusions before saving them. Nothing is stored or audited. It names files on
    /// the server, so it takes what adding a source takes.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `Invalid` (`invalid_path`, `invalid_exclude`).
    pub fn exclude_preview(
        &self,
        actor: &Actor,
        path: &str,
        filter: SourceFilter,
    ) -> Result<ExcludePreview, SourceError> {
        actor.require(Permission::ManageSystem)?;
        let dir = self.readable_dir(path)?;
        let filter = check_filter(filter)?;
        let excludes = filter
            .compile()
            .map_err(|e| SourceError::InvalidExclude(e.to_string()))?;
        self.paths
            .preview_excludes(&dir, &excludes, PREVIEW_SAMPLE, PREVIEW_MAX_ENTRIES)
            .map_err(|e| SourceError::InvalidPath(e.to_string()))
    }

    /// Every source, by name.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<Source>, SourceError> {
        actor.require(Permission::View)?;
        Ok(self.sources.list().await?)
    }

    /// One source.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn get(&self, actor: &Actor, id: SourceId) -> Result<Source, SourceError> {
        actor.require(Permission::View)?;
        Ok(self
            .sources
            .get(id)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no source with id {id}")))?)
    }

    /// A source by id (all digits) or by name.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn find(&self, actor: &Actor, reference: &str) -> Result<Source, SourceError> {
        actor.require(Permission::View)?;
        if let Some(s) = self.sources.find_by_name(reference).await? {
            return Ok(s);
        }
        if let Ok(id) = reference.parse::<i64>()
            && let Some(s) = self.sources.get(SourceId::new(id)).await?
        {
            return Ok(s);
        }
        Err(CommonError::NotFound(format!("no source named `{reference}`")).into())
    }

    fn readable_dir(&self, path: &str) -> Result<String, SourceError> {
        let dir = self
            .paths
            .readable_dir(path)
            .map_err(|e| SourceError::InvalidPath(e.to_string()))?;
        if let Some(own) = own_directory(&dir, &self.protected) {
            return Err(SourceError::InvalidPath(own_directory_message(&dir, own)));
        }
        Ok(dir)
    }

    /// Adds a source. The path must be an absolute, readable directory; it is stored
    /// with every symlink resolved.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `Invalid` (name, path, schedule, retention);
    /// `Conflict` when the name is taken.
    pub async fn create(&self, actor: &Actor, spec: NewSource) -> Result<Source, SourceError> {
        actor.require(Permission::ManageSystem)?;
        let spec = SourceSpec {
            name: check_name(&spec.name)?,
            path: self.readable_dir(&spec.path)?,
            schedule: check_schedule(spec.schedule)?,
            retention: check_retention(spec.retention)?,
            filter: check_filter(spec.filter)?,
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
    ) -> Result<Source, SourceError> {
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
            filter: check_filter(SourceFilter {
                exclude: changes
                    .exclude
                    .unwrap_or_else(|| current.filter.exclude.clone()),
                exclude_caches: changes
                    .exclude_caches
                    .unwrap_or(current.filter.exclude_caches),
                one_file_system: changes
                    .one_file_system
                    .unwrap_or(current.filter.one_file_system),
                exclude_larger_than: changes
                    .exclude_larger_than
                    .unwrap_or(current.filter.exclude_larger_than),
            })?,
        };
        let now = self.clock.now();
        let mut source = self
            .sources
            .update(id, &spec, now)
            .await
            .map_err(|e| name_taken(e, &spec.name))?
            .ok_or_else(|| CommonError::NotFound(format!("no source with id {id}")))?;
        if let Some(enabled) = changes.enabled.filter(|e| *e != source.enabled) {
            let missing = || CommonError::NotFound(format!("no source with id {id}"));
            if !self.sources.set_enabled(id, enabled, now).await? {
                return Err(missing().into());
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
                current.schedule.as_ref().map_or("none", Schedule::as_str),
                source.schedule.as_ref().map_or("none", Schedule::as_str)
            ));
        }
        if source.retention != current.retention {
            what.push("retention".to_owned());
        }
        if source.filter != current.filter {
            what.push(format!(
                "exclusions: {} pattern(s){}{}{}",
                source.filter.exclude.len(),
                if source.filter.exclude_caches {
                    ", caches"
                } else {
                    ""
                },
                if source.filter.one_file_system {
                    ", one file system"
                } else {
                    ""
                },
                source
                    .filter
                    .exclude_larger_than
                    .map(|n| format!(", files over {n} bytes"))
                    .unwrap_or_default()
            ));
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
    pub async fn delete(&self, actor: &Actor, id: SourceId) -> Result<(), SourceError> {
        actor.require(Permission::ManageSystem)?;
        let current = self.get(actor, id).await?;
        if let Some(job_id) = self.active.backup_of(id).await? {
            return Err(SourceError::JobRunning {
                job_id,
                message: format!(
                    "a backup of `{}` is queued or running (job {job_id}); cancel it or wait",
                    current.name
                ),
            });
        }
        if !self.sources.delete(id).await? {
            return Err(CommonError::NotFound(format!("no source with id {id}")).into());
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

fn name_taken(e: RepoError, name: &str) -> SourceError {
    match e {
        RepoError::Conflict(_) => {
            SourceError::NameTaken(format!("a source named `{name}` already exists"))
        }
        other => other.into(),
    }
}
