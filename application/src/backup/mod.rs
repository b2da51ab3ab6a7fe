//! Backups: taking a snapshot of a source (from the CLI at once, or as a job), under the
//! quota and the disk's reserve, with the alerts a failure raises and the retention that
//! follows a success.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::alerts::{AlertKind, NewAlert, Severity};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{
    BackupRequest, Cancel, EngineFailure, Progress, SnapshotEngine, SnapshotStatus,
};
use coffer_domain::jobs::{JobParams, JobResult};
use coffer_domain::ports::{
    BackupCatalog, BackupFilter, CatalogEntry, Clock, LocalPaths, RepoError, Source,
    SourceRepository, SourceSpec,
};
use coffer_domain::retention::Expectation;
use coffer_domain::{JobId, SourceId};

use crate::alerts::AlertSink;
use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, EngineError, ErrorClass};
use crate::jobs::{
    DispatchError, JobExecutor, JobFailure, JobQueue, JobStatus, ScheduledBackups, SubmitError,
};
use crate::paths::{own_directory, own_directory_message};
use crate::retention::AfterBackup;
use crate::storage::{Admission, AdmissionError};

/// Errors of taking backups.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `quota_exceeded`, `disk_full`.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// `job_running`, `queue_full`, `shutting_down`.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// `invalid_path`: a directory that cannot be backed up (missing, unreadable, one of
    /// Coffer's own).
    #[error("{0}")]
    InvalidPath(String),
}

impl CodedError for BackupError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Admission(e) => e.code(),
            Self::Submit(e) => e.code(),
            Self::InvalidPath(_) => "invalid_path",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Engine(e) => CodedError::class(e),
            Self::Admission(e) => e.class(),
            Self::Submit(e) => e.class(),
            Self::InvalidPath(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(BackupError);
crate::error::engine_conversion!(BackupError);

/// What to back up.
#[derive(Debug, Clone)]
pub enum BackupTarget {
    /// A configured source, by name.
    Source(String),
    /// A configured source, by id.
    Id(SourceId),
    /// A directory; it becomes a source named after its path if it is not one yet.
    Path(PathBuf),
}

/// What the backup area holds of the other areas: ports, never their services.
pub struct BackupPorts {
    /// The quota and the disk's reserve, and the count of stored bytes.
    pub admission: Arc<dyn Admission>,
    pub alerts: Arc<dyn AlertSink>,
    /// Retention after each successful backup.
    pub retention: Arc<dyn AfterBackup>,
    /// Where backups asked for over the API and by the scheduler wait their turn.
    pub queue: Arc<dyn JobQueue>,
}

pub struct BackupService {
    engine: Arc<dyn SnapshotEngine>,
    sources: Arc<dyn SourceRepository>,
    catalog: Arc<dyn BackupCatalog>,
    paths: Arc<dyn LocalPaths>,
    /// Coffer's own directories (data, repository, restore roots), absolute with
    /// symlinks resolved: a backup path may not contain them or lie in them.
    protected: Vec<String>,
    ports: BackupPorts,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    /// `backup.suspicious_shrink_percent`.
    suspicious_shrink_percent: u8,
}

impl BackupService {
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<dyn SnapshotEngine>,
        sources: Arc<dyn SourceRepository>,
        catalog: Arc<dyn BackupCatalog>,
        paths: Arc<dyn LocalPaths>,
        protected: Vec<String>,
        ports: BackupPorts,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            engine,
            sources,
            catalog,
            paths,
            protected,
            ports,
            clock,
            audit,
            suspicious_shrink_percent: 50,
        }
    }

    /// The share (percent) by which a source may shrink before its backup is suspicious
    /// (`backup.suspicious_shrink_percent`; 0: only an empty source is).
    #[must_use]
    pub fn with_suspicious_shrink_percent(mut self, percent: u8) -> Self {
        self.suspicious_shrink_percent = percent.min(100);
        self
    }

    /// The newest snapshot of a source that was not suspicious itself: what a new one is
    /// compared with (two empty backups in a row must both look wrong).
    async fn last_good(&self, source: SourceId) -> Result<Option<CatalogEntry>, BackupError> {
        let page = self
            .catalog
            .query(&BackupFilter {
                source_id: Some(source),
                limit: 100,
                ..BackupFilter::default()
            })
            .await?;
        Ok(page.items.into_iter().find(|e| e.suspicious.is_none()))
    }

    /// A source by id (no permission check: callers have checked theirs).
    async fn source(&self, id: SourceId) -> Result<Source, BackupError> {
        Ok(self
            .sources
            .get(id)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no source with id {id}")))?)
    }

    async fn resolve_source(
        &self,
        actor: &Actor,
        target: &BackupTarget,
    ) -> Result<Source, BackupError> {
        match target {
            BackupTarget::Source(name) => Ok(self
                .sources
                .find_by_name(name)
                .await?
                .ok_or_else(|| CommonError::NotFound(format!("no source named `{name}`")))?),
            BackupTarget::Id(id) => self.source(*id).await,
            BackupTarget::Path(path) => {
                let text = self
                    .paths
                    .readable_dir(&path.to_string_lossy())
                    .map_err(|e| BackupError::InvalidPath(e.to_string()))?;
                if let Some(own) = own_directory(&text, &self.protected) {
                    return Err(BackupError::InvalidPath(own_directory_message(&text, own)));
                }
                if let Some(source) = self.sources.find_by_path(&text).await? {
                    return Ok(source);
                }
                if let Some(source) = self.sources.find_by_name(&text).await? {
                    return Ok(source);
                }
                let source = match self
                    .sources
                    .create(&SourceSpec::plain(&text, &text), self.clock.now())
                    .await
                {
                    Ok(source) => source,
                    // Another backup of the same new path created it a moment ago.
                    Err(RepoError::Conflict(_)) => {
                        return Ok(self.sources.find_by_name(&text).await?.ok_or_else(|| {
                            CommonError::Conflict(format!(
                                "the source `{text}` is being changed; try again"
                            ))
                        })?);
                    }
                    Err(e) => return Err(e.into()),
                };
                self.audit
                    .record(
                        AuditEntry::new(&actor.username, AuditAction::SourceCreate, &actor.client)
                            .resource(format!("source:{}", source.id))
                            .detail(format!("`{}` -> {}", source.name, source.path)),
                    )
                    .await?;
                Ok(source)
            }
        }
    }

    /// Takes a snapshot and records it in the catalog.
    ///
    /// # Errors
    /// `Forbidden` without `backup`; `NotFound`/`InvalidPath` for the target; engine
    /// failures (audited as failed backups).
    pub async fn backup(
        &self,
        actor: &Actor,
        target: &BackupTarget,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<CatalogEntry, BackupError> {
        actor.require(Permission::Backup)?;
        let source = self.resolve_source(actor, target).await?;
        let entry = AuditEntry::new(&actor.username, AuditAction::BackupCreate, &actor.client)
            .resource(format!("source:{}", source.id));
        let allowance = match self.ports.admission.admit_backup().await {
            Ok(allowance) => allowance,
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(format!("`{}`: {e}", source.name)))
                    .await;
                return Err(e.into());
            }
        };
        let parent = self
            .catalog
            .latest_for_source(source.id)
            .await?
            .map(|e| e.snapshot_id.to_string());
        // A source changed since (its path, what it leaves out) holds what it now holds:
        // it is compared only with snapshots taken under its current definition.
        let expected = self
            .last_good(source.id)
            .await?
            .filter(|good| good.created_at >= source.updated_at)
            .map(|good| Expectation {
                files: good.file_count,
                bytes: good.size,
                shrink_percent: self.suspicious_shrink_percent,
            });
        let request = BackupRequest {
            source_name: source.name.clone(),
            path: PathBuf::from(&source.path),
            parent,
            budget: Some(Arc::clone(&allowance)),
            expected,
            // Coffer's own files and directories, wherever the walk meets them.
            never_read: self.protected.iter().map(PathBuf::from).collect(),
            filter: source.filter.clone(),
        };
        match self.engine.backup(request, progress, cancel).await {
            Ok(summary) => {
                // Counted first: the data is in storage whatever happens to the catalog row.
                if let Err(e) = self.ports.admission.added(summary.stored_bytes_added).await {
                    tracing::error!(error = %e, "cannot count the stored bytes of a backup; `coffer storage recount` corrects it");
                }
                // Counted as stored now: what it took from the quota's room goes back.
                drop(allowance);
                let row = self.catalog.insert(&summary, Some(source.id)).await?;
                if let Some(why) = &summary.suspicious {
                    self.ports
                        .alerts
                        .raise_best_effort(
                            NewAlert::new(
                                AlertKind::BackupSuspicious,
                                Severity::Critical,
                                format!(
                                    "the backup of `{}` looks wrong: {why}. Is the source (a \
                                     mounted share?) all there? The snapshot is kept, and no \
                                     older snapshot is removed on its account",
                                    source.name
                                ),
                            )
                            .for_source(source.id),
                        )
                        .await;
                }
                if summary.status == SnapshotStatus::Partial {
                    self.ports
                        .alerts
                        .raise_best_effort(
                            NewAlert::new(
                                AlertKind::BackupPartial,
                                Severity::Warning,
                                // No file name: every role sees alerts, and names from
                                // inside a backup need `restore` (the snapshot's
                                // warnings have them).
                                format!(
                                    "the backup of `{}` is partial: {} entries could not be \
                                     read (the snapshot's warnings name them)",
                                    source.name,
                                    summary.warnings.len(),
                                ),
                            )
                            .for_source(source.id),
                        )
                        .await;
                }
                self.audit
                    .record(
                        entry
                            .resource(format!("snapshot:{}", summary.id))
                            .detail(format!(
                                "`{}`: {} files, {} bytes, {} added; status {}{}{}",
                                source.name,
                                summary.files,
                                summary.bytes,
                                summary.bytes_added,
                                summary.status.as_str(),
                                if summary.excluded > 0 {
                                    format!("; {} entries excluded", summary.excluded)
                                } else {
                                    String::new()
                                },
                                summary
                                    .suspicious
                                    .as_ref()
                                    .map_or_else(String::new, |why| format!("; suspicious: {why}"))
                            )),
                    )
                    .await?;
                // The snapshot is safe; a retention failure is reported, not fatal.
                self.ports.retention.after_backup(&source).await;
                Ok(row)
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(format!("`{}`: {e}", source.name)))
                    .await;
                match &e {
                    EngineFailure::Cancelled => {}
                    EngineFailure::QuotaExceeded(_) => {
                        self.ports
                            .admission
                            .backup_stopped_by_quota(&source.name)
                            .await;
                    }
                    other => {
                        self.ports
                            .alerts
                            .raise_best_effort(
                                NewAlert::new(
                                    AlertKind::BackupFailed,
                                    Severity::Critical,
                                    format!("the backup of `{}` failed: {other}", source.name),
                                )
                                .for_source(source.id),
                            )
                            .await;
                    }
                }
                Err(e.into())
            }
        }
    }

    /// Queues a backup of a source.
    ///
    /// # Errors
    /// `Forbidden` without `backup`; `NotFound`; `QuotaExceeded`/`DiskFull` when no
    /// backup may start now (the run checks again when it starts); `JobRunning` while a
    /// backup of the same source is queued or running.
    pub async fn start(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<JobStatus, BackupError> {
        actor.require(Permission::Backup)?;
        let source = self.source(source_id).await?;
        // Refused now (507) rather than queued to fail: the quota is used up or the disk
        // is below its reserve.
        drop(self.ports.admission.admit_backup().await?);
        Ok(self
            .ports
            .queue
            .submit(
                actor,
                JobParams::Backup {
                    source_id: source.id,
                    source_name: source.name,
                },
            )
            .await?)
    }
}

#[async_trait]
impl JobExecutor for BackupService {
    async fn execute(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, JobFailure> {
        let JobParams::Backup { source_id, .. } = params else {
            return Err(JobFailure::Unexpected(anyhow::anyhow!(
                "the backup area was handed a {} job",
                params.kind()
            )));
        };
        self.backup(actor, &BackupTarget::Id(*source_id), progress, cancel)
            .await
            .map(|row| JobResult::Backup {
                snapshot_id: row.snapshot_id,
                status: row.status,
                files: row.file_count,
                bytes: row.size,
                bytes_added: row.bytes_added,
                warnings: row.warnings,
            })
            .map_err(JobFailure::from_error)
    }
}

#[async_trait]
impl ScheduledBackups for BackupService {
    async fn start_scheduled(
        &self,
        actor: &Actor,
        source: SourceId,
    ) -> Result<JobId, DispatchError> {
        self.start(actor, source)
            .await
            .map(|status| status.job.id)
            .map_err(DispatchError::from_error)
    }
}
