//! Replicas (off-site copies): administrators define them (or the configuration file's
//! `[[replicas]]`, read-only here), operators start copies, everyone who may view sees
//! their state and lag. A copy is a job; its outcome is recorded on the replica, audited,
//! and raises `replica_failed` when it fails; `replica_lagging` stands while a replica is
//! further behind than its limits.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::JobId;
use coffer_domain::alerts::{AlertKind, NewAlert, Severity};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{Cancel, EngineFailure, Progress};
use coffer_domain::jobs::{JobParams, JobResult};
use coffer_domain::ports::{BackupCatalog, BackupFilter, Clock, RepoError};
use coffer_domain::replicas::{
    CopyOptions, Lag, LagLimits, Replica, ReplicaLocation, ReplicaName, ReplicaRepository,
    ReplicaSpec, Replicator, S3Location,
};
use coffer_domain::schedule::Schedule;

use crate::alerts::AlertSink;
use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, EngineError, ErrorClass};
use crate::jobs::{DispatchError, JobExecutor, JobFailure, JobQueue, JobStatus, SubmitError};
use crate::paths::hide_path;

/// Errors of managing replicas and copying into them.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `job_running`, `queue_full`, `too_many_jobs`, `shutting_down`.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// `invalid_name`.
    #[error("{0}")]
    InvalidName(String),
    /// `invalid_path`: not absolute, or the repository's own storage.
    #[error("{0}")]
    InvalidPath(String),
    /// `invalid_location`: an S3 place that cannot be (a bucket name S3 refuses, a
    /// relative credentials file, an endpoint that is not an http(s) URL).
    #[error("{0}")]
    InvalidLocation(String),
    /// `invalid_schedule`.
    #[error("{0}")]
    InvalidSchedule(String),
    /// `name_taken`.
    #[error("{0}")]
    NameTaken(String),
    /// `replica_from_config`: defined by the configuration file, changed only there.
    #[error("{0}")]
    FromConfig(String),
    /// `replica_unavailable`: the replica's storage could not be opened, read or written
    /// (an unmounted share, a full disk, no permission). Retrying later may help.
    #[error("{0}")]
    Unavailable(String),
}

impl CodedError for ReplicaError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Submit(e) => e.code(),
            Self::InvalidName(_) => "invalid_name",
            Self::InvalidPath(_) => "invalid_path",
            Self::InvalidLocation(_) => "invalid_location",
            Self::InvalidSchedule(_) => "invalid_schedule",
            Self::NameTaken(_) => "name_taken",
            Self::FromConfig(_) => "replica_from_config",
            Self::Unavailable(_) => "replica_unavailable",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Engine(e) => CodedError::class(e),
            Self::Submit(e) => e.class(),
            Self::InvalidName(_)
            | Self::InvalidPath(_)
            | Self::InvalidLocation(_)
            | Self::InvalidSchedule(_)
            | Self::NameTaken(_)
            | Self::FromConfig(_)
            | Self::Unavailable(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(ReplicaError);
crate::error::engine_conversion!(ReplicaError);

/// A replica as asked for; checked by [`ReplicaService::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReplica {
    pub name: String,
    /// `fs`: the directory (absolute); `s3`: the bucket, prefix, endpoint and the path of
    /// the credentials file.
    pub location: ReplicaLocation,
    pub append_only: bool,
    /// Cron (five fields, UTC); blank or `None`: copies on demand only.
    pub schedule: Option<String>,
    pub max_lag_snapshots: Option<u32>,
    pub max_lag_hours: Option<u32>,
}

/// A change to a replica; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaChanges {
    /// A new directory (`fs` replicas only).
    pub root: Option<String>,
    pub append_only: Option<bool>,
    pub schedule: Option<Option<String>>,
    pub max_lag_snapshots: Option<Option<u32>>,
    pub max_lag_hours: Option<Option<u32>>,
}

/// A replica and how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub replica: Replica,
    pub lag: Lag,
    /// Why it counts as lagging (its limits passed), if it does.
    pub lagging: Option<String>,
    /// Whether the caller may see where the replica is (administrators only): when
    /// `false`, only its backend is to be shown.
    pub location_shown: bool,
}

/// What the replica area holds of the other areas: ports, never their services.
pub struct ReplicaPorts {
    pub replicas: Arc<dyn ReplicaRepository>,
    pub replicator: Arc<dyn Replicator>,
    /// The snapshots not yet copied are counted in the catalog.
    pub catalog: Arc<dyn BackupCatalog>,
    pub alerts: Arc<dyn AlertSink>,
    pub queue: Arc<dyn JobQueue>,
}

pub struct ReplicaService {
    ports: ReplicaPorts,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    /// The repository's own place, which no replica may overlap.
    repository: Option<ReplicaLocation>,
    repack_threshold_percent: u8,
}

/// How a replica's directory is shown in messages to clients.
const SHOWN_ROOT: &str = "(the replica's directory)";

fn parse_name(name: &str) -> Result<ReplicaName, ReplicaError> {
    ReplicaName::parse(name.trim()).map_err(|e| ReplicaError::InvalidName(e.to_string()))
}

fn parse_schedule(schedule: Option<String>) -> Result<Option<Schedule>, ReplicaError> {
    schedule
        .filter(|s| !s.trim().is_empty())
        .map(|s| Schedule::parse(&s).map_err(|e| ReplicaError::InvalidSchedule(e.to_string())))
        .transpose()
}

fn describe(spec: &ReplicaSpec) -> String {
    format!(
        "{} {}{}{}",
        spec.location.backend(),
        spec.location.describe(),
        if spec.append_only {
            ", append-only"
        } else {
            ""
        },
        spec.schedule
            .as_ref()
            .map_or_else(String::new, |s| format!(", schedule `{}`", s.as_str()))
    )
}

impl ReplicaService {
    #[must_use]
    pub fn new(
        ports: ReplicaPorts,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        repository: Option<ReplicaLocation>,
        repack_threshold_percent: u8,
    ) -> Self {
        Self {
            ports,
            clock,
            audit,
            repository,
            repack_threshold_percent: repack_threshold_percent.min(100),
        }
    }

    fn check_root(root: &str) -> Result<String, ReplicaError> {
        let root = root.trim();
        if !root.starts_with('/') {
            return Err(ReplicaError::InvalidPath(
                "a replica's directory is an absolute path".into(),
            ));
        }
        let clean = root.trim_end_matches('/');
        let clean = if clean.is_empty() { "/" } else { clean };
        Ok(clean.to_owned())
    }

    /// `location` checked: an absolute directory, or an S3 place S3 accepts with an
    /// absolute credentials file; never overlapping the repository's own storage.
    fn check_location(&self, location: ReplicaLocation) -> Result<ReplicaLocation, ReplicaError> {
        let location = match location {
            ReplicaLocation::Fs { root } => ReplicaLocation::Fs {
                root: Self::check_root(&root)?,
            },
            ReplicaLocation::S3(s3) => ReplicaLocation::S3(check_s3(s3)?),
        };
        if let Some(repository) = &self.repository
            && location.overlaps(repository)
        {
            tracing::info!(
                replica = %location.describe(),
                repository = %repository.describe(),
                "replica refused: it overlaps the repository"
            );
            return Err(match location {
                ReplicaLocation::Fs { .. } => ReplicaError::InvalidPath(
                    "a replica's directory cannot contain or lie in the repository's own storage"
                        .into(),
                ),
                ReplicaLocation::S3(_) => ReplicaError::InvalidLocation(
                    "a replica cannot be the repository's own bucket and prefix, nor contain \
                     them or lie in them"
                        .into(),
                ),
            });
        }
        Ok(location)
    }

    fn spec_of(&self, new: NewReplica) -> Result<ReplicaSpec, ReplicaError> {
        Ok(ReplicaSpec {
            name: parse_name(&new.name)?,
            location: self.check_location(new.location)?,
            append_only: new.append_only,
            schedule: parse_schedule(new.schedule)?,
            lag: LagLimits {
                max_snapshots: new.max_lag_snapshots,
                max_age_hours: new.max_lag_hours,
            },
        })
    }

    async fn find(&self, name: &str) -> Result<Replica, ReplicaError> {
        let parsed =
            parse_name(name).map_err(|_| CommonError::NotFound(format!("no replica `{name}`")))?;
        self.ports
            .replicas
            .get(&parsed)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no replica `{name}`")).into())
    }

    /// How far `replica` is behind: the catalog's snapshots taken at or after the time
    /// its last successful copy listed the repository (all of them before any copy).
    async fn lag(&self, replica: &Replica) -> Result<Lag, ReplicaError> {
        let filter = BackupFilter {
            from: replica.copied_through,
            limit: 1,
            ..BackupFilter::default()
        };
        let page = self.ports.catalog.query(&filter).await?;
        if page.total == 0 {
            return Ok(Lag::default());
        }
        // Newest first: the oldest is the last one.
        let oldest = self
            .ports
            .catalog
            .query(&BackupFilter {
                offset: page.total - 1,
                ..filter
            })
            .await?;
        Ok(Lag {
            snapshots: page.total,
            oldest: oldest.items.first().map(|e| e.created_at),
        })
    }

    async fn status_of(
        &self,
        replica: Replica,
        now: DateTime<Utc>,
    ) -> Result<ReplicaStatus, ReplicaError> {
        let lag = self.lag(&replica).await?;
        let lagging = lag.exceeds(replica.spec.lag, now);
        Ok(ReplicaStatus {
            replica,
            lag,
            lagging,
            location_shown: true,
        })
    }

    /// `status` as `actor` may see it: where a replica is (a path on the server) is for
    /// administrators.
    fn shown_to(actor: &Actor, mut status: ReplicaStatus) -> ReplicaStatus {
        status.replica.last_error = status
            .replica
            .last_error
            .map(|e| hide_location(e, &status.replica.spec.location));
        status.location_shown = actor.role.allows(Permission::ManageSystem);
        status
    }

    /// Every replica with its lag, by name.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<ReplicaStatus>, ReplicaError> {
        actor.require(Permission::View)?;
        let now = self.clock.now();
        let mut out = Vec::new();
        for replica in self.ports.replicas.list().await? {
            out.push(Self::shown_to(actor, self.status_of(replica, now).await?));
        }
        Ok(out)
    }

    /// One replica with its lag.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn get(&self, actor: &Actor, name: &str) -> Result<ReplicaStatus, ReplicaError> {
        actor.require(Permission::View)?;
        let replica = self.find(name).await?;
        Ok(Self::shown_to(
            actor,
            self.status_of(replica, self.clock.now()).await?,
        ))
    }

    /// Adds a replica (nothing is copied until a copy runs).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `InvalidName`, `InvalidPath`,
    /// `InvalidSchedule`; `NameTaken`.
    pub async fn create(
        &self,
        actor: &Actor,
        new: NewReplica,
    ) -> Result<ReplicaStatus, ReplicaError> {
        actor.require(Permission::ManageSystem)?;
        let spec = self.spec_of(new)?;
        let replica = match self
            .ports
            .replicas
            .create(&spec, false, self.clock.now())
            .await
        {
            Ok(r) => r,
            Err(RepoError::Conflict(_)) => {
                return Err(ReplicaError::NameTaken(format!(
                    "a replica named `{}` exists already",
                    spec.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::ReplicaCreate, &actor.client)
                    .resource(format!("replica:{}", spec.name))
                    .detail(describe(&spec)),
            )
            .await?;
        Ok(Self::shown_to(
            actor,
            self.status_of(replica, self.clock.now()).await?,
        ))
    }

    /// Changes a replica. Its copies' history stays; a new directory starts empty (the
    /// next copy sends everything).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; `FromConfig`; the checks of
    /// `create`.
    pub async fn update(
        &self,
        actor: &Actor,
        name: &str,
        changes: ReplicaChanges,
    ) -> Result<ReplicaStatus, ReplicaError> {
        actor.require(Permission::ManageSystem)?;
        let replica = self.find(name).await?;
        if replica.from_config {
            return Err(from_config(name));
        }
        let mut spec = replica.spec.clone();
        if let Some(root) = changes.root {
            if !matches!(spec.location, ReplicaLocation::Fs { .. }) {
                return Err(ReplicaError::InvalidLocation(
                    "only a directory replica has a root; to move an s3 replica, remove it \
                     and add it again"
                        .into(),
                ));
            }
            spec.location = self.check_location(ReplicaLocation::Fs { root })?;
        }
        if let Some(append_only) = changes.append_only {
            spec.append_only = append_only;
        }
        if let Some(schedule) = changes.schedule {
            spec.schedule = parse_schedule(schedule)?;
        }
        if let Some(max) = changes.max_lag_snapshots {
            spec.lag.max_snapshots = max;
        }
        if let Some(max) = changes.max_lag_hours {
            spec.lag.max_age_hours = max;
        }
        if !self.ports.replicas.update(&spec, false).await? {
            return Err(CommonError::NotFound(format!("no replica `{name}`")).into());
        }
        if spec.schedule != replica.spec.schedule {
            // Planned afresh by the scheduler from the new schedule.
            self.ports
                .replicas
                .set_plan(&spec.name, None, replica.last_run_at)
                .await?;
        }
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::ReplicaUpdate, &actor.client)
                    .resource(format!("replica:{}", spec.name))
                    .detail(format!(
                        "{} -> {}",
                        describe(&replica.spec),
                        describe(&spec)
                    )),
            )
            .await?;
        let replica = self.find(name).await?;
        Ok(Self::shown_to(
            actor,
            self.status_of(replica, self.clock.now()).await?,
        ))
    }

    /// Forgets a replica. What it holds stays where it is (it is a repository of its
    /// own: delete it by hand if it should go).
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; `FromConfig`.
    pub async fn delete(&self, actor: &Actor, name: &str) -> Result<(), ReplicaError> {
        actor.require(Permission::ManageSystem)?;
        let replica = self.find(name).await?;
        if replica.from_config {
            return Err(from_config(name));
        }
        if !self.ports.replicas.delete(&replica.spec.name).await? {
            return Err(CommonError::NotFound(format!("no replica `{name}`")).into());
        }
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::ReplicaDelete, &actor.client)
                    .resource(format!("replica:{}", replica.spec.name))
                    .detail(describe(&replica.spec)),
            )
            .await?;
        Ok(())
    }

    /// Queues a copy into the replica (one per replica at a time).
    ///
    /// # Errors
    /// `Forbidden` without `backup`; `NotFound`; `JobRunning` while a copy into it is
    /// queued or running.
    pub async fn start_copy(&self, actor: &Actor, name: &str) -> Result<JobStatus, ReplicaError> {
        actor.require(Permission::Backup)?;
        let replica = self.find(name).await?;
        Ok(self
            .ports
            .queue
            .submit(
                actor,
                JobParams::Copy {
                    replica: replica.spec.name.to_string(),
                },
            )
            .await?)
    }

    /// Makes the catalog's configuration-file replicas those of `specs`: new ones are
    /// added, changed ones updated, ones no longer there removed (replicas added over the
    /// API stay). A name taken by a replica added over the API is an error.
    ///
    /// # Errors
    /// `NameTaken`; `InvalidPath`; database failures.
    pub async fn sync_config(&self, specs: Vec<NewReplica>) -> Result<(), ReplicaError> {
        let mut wanted = Vec::new();
        for new in specs {
            wanted.push(self.spec_of(new)?);
        }
        let existing = self.ports.replicas.list().await?;
        for spec in &wanted {
            match existing.iter().find(|r| r.spec.name == spec.name) {
                None => {
                    self.ports
                        .replicas
                        .create(spec, true, self.clock.now())
                        .await?;
                }
                Some(r) if !r.from_config => {
                    return Err(ReplicaError::NameTaken(format!(
                        "the configuration's replica `{}` has the name of a replica added \
                         over the API; rename one of them",
                        spec.name
                    )));
                }
                Some(r) if r.spec != *spec => {
                    self.ports.replicas.update(spec, true).await?;
                    if r.spec.schedule != spec.schedule {
                        self.ports
                            .replicas
                            .set_plan(&spec.name, None, r.last_run_at)
                            .await?;
                    }
                }
                Some(_) => {}
            }
        }
        for r in existing.iter().filter(|r| r.from_config) {
            if !wanted.iter().any(|s| s.name == r.spec.name) {
                self.ports.replicas.delete(&r.spec.name).await?;
            }
        }
        Ok(())
    }

    /// Raises `replica_lagging` while any replica is further behind than its limits, and
    /// clears it once none is. Returns the lagging replicas' names.
    ///
    /// # Errors
    /// Database failures.
    pub async fn check_lag(&self) -> Result<Vec<String>, ReplicaError> {
        let now = self.clock.now();
        let mut lagging = Vec::new();
        for replica in self.ports.replicas.list().await? {
            let name = replica.spec.name.to_string();
            if let Some(why) = self.status_of(replica, now).await?.lagging {
                lagging.push((name, why));
            }
        }
        if lagging.is_empty() {
            self.ports
                .alerts
                .clear(AlertKind::ReplicaLagging, None)
                .await?;
        } else {
            self.ports
                .alerts
                .raise(NewAlert::new(
                    AlertKind::ReplicaLagging,
                    Severity::Warning,
                    format!(
                        "replicas behind their limits: {}",
                        lagging
                            .iter()
                            .map(|(n, why)| format!("`{n}`: {why}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ))
                .await?;
        }
        Ok(lagging.into_iter().map(|(n, _)| n).collect())
    }

    /// The copy itself (what a copy job runs), recording its outcome.
    ///
    /// # Errors
    /// `Forbidden` without `backup`; `NotFound`; the engine's failures (`invalid` when
    /// the replica's storage holds something else, `damaged`, `cancelled`,
    /// `repository_busy`).
    pub async fn copy(
        &self,
        actor: &Actor,
        name: &str,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, ReplicaError> {
        actor.require(Permission::Backup)?;
        let replica = self.find(name).await?;
        let spec = &replica.spec;
        let entry = AuditEntry::new(&actor.username, AuditAction::ReplicaCopy, &actor.client)
            .resource(format!("replica:{}", spec.name));
        let options = CopyOptions {
            append_only: spec.append_only,
            repack_threshold_percent: self.repack_threshold_percent,
        };
        match self
            .ports
            .replicator
            .copy(&spec.location, options, progress, cancel)
            .await
        {
            Ok(report) => {
                self.ports
                    .replicas
                    .record_success(&spec.name, self.clock.now(), report.listed_at)
                    .await?;
                let detail = format!(
                    "{} objects ({} bytes) copied, {} already there; {} snapshots in the \
                     repository, {} on the replica, {} deleted from it",
                    report.objects_copied,
                    report.bytes_copied,
                    report.objects_present,
                    report.snapshots,
                    report.replica_snapshots,
                    report.snapshots_deleted
                );
                let detail = if report.damaged_skipped.is_empty() {
                    detail
                } else {
                    format!(
                        "{detail}; damaged in the repository, not copied: {}",
                        report.damaged_skipped.join(", ")
                    )
                };
                self.audit.record(entry.detail(detail)).await?;
                if !report.damaged_skipped.is_empty() {
                    self.ports
                        .alerts
                        .raise_best_effort(NewAlert::new(
                            AlertKind::Damage,
                            Severity::Critical,
                            format!(
                                "snapshots fail their checksum and were not copied to replica \
                                 `{}`: {}",
                                spec.name,
                                report.damaged_skipped.join(", ")
                            ),
                        ))
                        .await;
                }
                if let Err(e) = self.check_lag().await {
                    tracing::warn!(error = %e, "cannot evaluate the replicas' lag");
                }
                Ok(JobResult::of_copy(spec.name.to_string(), &report))
            }
            Err(e) => {
                let cancelled = matches!(e, EngineFailure::Cancelled);
                let message = hide_location(e.to_string(), &spec.location);
                self.ports
                    .replicas
                    .record_failure(&spec.name, self.clock.now(), &message)
                    .await?;
                self.audit
                    .record_best_effort(entry.failed().detail(message.clone()))
                    .await;
                if !cancelled {
                    self.ports
                        .alerts
                        .raise_best_effort(NewAlert::new(
                            AlertKind::ReplicaFailed,
                            Severity::Warning,
                            format!("the copy to replica `{}` failed: {message}", spec.name),
                        ))
                        .await;
                }
                Err(match EngineError::split(e) {
                    Ok(EngineError::Invalid(_)) => EngineError::Invalid(message).into(),
                    Ok(EngineError::Damaged(_)) => EngineError::Damaged(message).into(),
                    // The replica's storage (or the repository's) could not be reached,
                    // opened or written (storage failures of the replica's most of all):
                    // the operator's to fix, so told as they are.
                    Ok(EngineError::StorageUnavailable(_)) | Err(CommonError::Unexpected(_)) => {
                        ReplicaError::Unavailable(message)
                    }
                    Ok(other) => other.into(),
                    Err(CommonError::NotFound(_)) => CommonError::NotFound(message).into(),
                    Err(common) => common.into(),
                })
            }
        }
    }

    /// Starts a scheduled copy (the scheduler's side).
    ///
    /// # Errors
    /// As [`ReplicaService::start_copy`], as a dispatch error.
    pub async fn start_scheduled_copy(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<JobId, DispatchError> {
        self.start_copy(actor, name)
            .await
            .map(|status| status.job.id)
            .map_err(DispatchError::from_error)
    }
}

/// `message` without the server paths of `location` (a replica's directory, an S3
/// replica's credentials file).
fn hide_location(message: String, location: &ReplicaLocation) -> String {
    match location {
        ReplicaLocation::Fs { root } => hide_path(message, root, SHOWN_ROOT),
        ReplicaLocation::S3(s3) => hide_path(
            message,
            &s3.credentials_file,
            "(the replica's credentials file)",
        ),
    }
}

/// An S3 place checked as `[storage]` checks the repository's.
fn check_s3(mut s3: S3Location) -> Result<S3Location, ReplicaError> {
    let bad = |why: &str| Err(ReplicaError::InvalidLocation(why.to_owned()));
    s3.bucket = s3.bucket.trim().to_owned();
    if s3.bucket.is_empty()
        || s3.bucket.len() > 63
        || !s3
            .bucket
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'))
    {
        return bad("the bucket must be an S3 bucket name (1 to 63 of a-z, 0-9, '-' and '.')");
    }
    if s3.region.trim().is_empty() {
        return bad("the region must not be empty");
    }
    if let Some(endpoint) = &s3.endpoint {
        let rest = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return bad("the endpoint must be an http:// or https:// URL with a host");
        }
    }
    if !s3.prefix.is_empty()
        && (s3.prefix.starts_with('/')
            || s3.prefix.split('/').any(|seg| seg == "." || seg == "..")
            || !s3
                .prefix
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/')))
    {
        return bad(
            "the prefix must be a relative path of [A-Za-z0-9._-/] segments (no '.' or '..')",
        );
    }
    if !s3.credentials_file.starts_with('/') {
        return bad(
            "the credentials file is an absolute path on the server (a 0600 file with \
             access_key_id and secret_access_key)",
        );
    }
    Ok(s3)
}

fn from_config(name: &str) -> ReplicaError {
    ReplicaError::FromConfig(format!(
        "replica `{name}` is defined in the configuration file ([[replicas]]); change it there"
    ))
}

#[async_trait]
impl JobExecutor for ReplicaService {
    async fn execute(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, JobFailure> {
        match params {
            JobParams::Copy { replica } => self
                .copy(actor, replica, progress, cancel)
                .await
                .map_err(JobFailure::from_error),
            other => Err(JobFailure::Unexpected(anyhow::anyhow!(
                "the replica area was handed a {} job",
                other.kind()
            ))),
        }
    }
}

#[async_trait]
impl crate::jobs::ScheduledCopies for ReplicaService {
    async fn start_scheduled_copy(
        &self,
        actor: &Actor,
        replica: &str,
    ) -> Result<JobId, DispatchError> {
        Self::start_scheduled_copy(self, actor, replica).await
    }
}
