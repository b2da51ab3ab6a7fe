//! Backups, restores, verification and the catalog: the engine driven under the same
//! rules for the CLI and the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_domain::SourceId;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{
    ArchiveFormat, BackupRequest, Cancel, EngineFailure, EntryInfo, Progress, RestoreReport,
    SnapshotEngine, SnapshotStatus, VerifyReport,
};
use coffer_domain::ports::{
    BackupCatalog, BackupFilter, CatalogEntry, Clock, LocalPaths, Page, RepoError, Source,
    SourceRepository, SourceSpec,
};
use coffer_domain::retention::{self, Candidate, Retention, Verdict};
use coffer_domain::secrets::Secret;

use crate::audit::AuditLog;
use crate::dashboard::RetentionStatus;
use crate::error::ServiceError;
use crate::storage::StorageService;
use coffer_domain::alerts::{AlertKind, NewAlert, Severity};

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

impl From<EngineFailure> for ServiceError {
    fn from(e: EngineFailure) -> Self {
        match e {
            EngineFailure::NotFound(m) => Self::NotFound(m),
            EngineFailure::Invalid(m) => Self::invalid("invalid", m),
            EngineFailure::Damaged(m) => Self::Conflict {
                code: "damaged",
                message: m,
            },
            EngineFailure::Cancelled => Self::Conflict {
                code: "cancelled",
                message: "the operation was cancelled".into(),
            },
            EngineFailure::QuotaExceeded(m) => Self::InsufficientStorage {
                code: "quota_exceeded",
                message: m,
            },
            EngineFailure::Busy(m) => Self::Conflict {
                code: "repository_busy",
                message: m,
            },
            EngineFailure::Other(m) => Self::Unexpected(anyhow::anyhow!(m)),
        }
    }
}

/// Access to the master key, for export and rotation.
#[async_trait::async_trait]
pub trait MasterKeys: Send + Sync {
    /// The master key as text an operator can store safely elsewhere.
    async fn export(&self) -> Result<Secret, ServiceError>;
    /// Generates a new master key and re-wraps the repository's keys under it.
    async fn rotate(&self) -> Result<(), ServiceError>;
}

/// Largest page of the backup listing and of a directory listing.
pub const MAX_PAGE: u64 = 1000;

/// A download that has been authorized and recorded, ready to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPlan {
    pub snapshot_id: String,
    pub path: Option<String>,
    pub format: ArchiveFormat,
    /// A safe file name for the archive (ASCII letters, digits, `.`, `_`, `-`).
    pub filename: String,
}

/// One page of a directory inside a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPage {
    pub snapshot: CatalogEntry,
    /// The directory, normalised (`""` is the snapshot's root).
    pub path: String,
    pub entries: Page<EntryInfo>,
}

pub struct BackupService {
    engine: Arc<dyn SnapshotEngine>,
    sources: Arc<dyn SourceRepository>,
    catalog: Arc<dyn BackupCatalog>,
    keys: Arc<dyn MasterKeys>,
    paths: Arc<dyn LocalPaths>,
    policy: BackupPolicy,
    /// The retention defaults in force: `policy`'s at first, then whatever an
    /// administrator sets.
    defaults: std::sync::RwLock<RetentionStatus>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
    storage: Arc<StorageService>,
}

/// The rules a backup server keeps around its snapshots.
#[derive(Debug, Clone, Default)]
pub struct BackupPolicy {
    /// Coffer's own directories (data, repository, restore roots), absolute with symlinks
    /// resolved: a backup path may not contain them or lie in them.
    pub protected: Vec<String>,
    /// The retention rules of sources that have no override.
    pub retention: Retention,
    /// Apply retention to a source after each successful backup of it.
    pub retention_after_backup: bool,
}

/// What retention decided for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub source: Source,
    /// The rules in force: the source's override, or the configured defaults.
    pub policy: Retention,
    /// Every snapshot of the source, newest first, with its verdict.
    pub verdicts: Vec<Verdict>,
    /// Whether the removals were carried out (false for a preview).
    pub applied: bool,
}

/// Keeps what is safe in a file name, so that a `Content-Disposition` header needs no
/// escaping.
fn file_name_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    out = out.trim_matches(|c| c == '_' || c == '.').to_owned();
    out.truncate(80);
    out
}

/// A path inside a snapshot as the engine takes it: no leading or trailing `/`.
pub(crate) fn snapshot_path(path: Option<&str>) -> Option<String> {
    path.map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
}

impl BackupService {
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<dyn SnapshotEngine>,
        sources: Arc<dyn SourceRepository>,
        catalog: Arc<dyn BackupCatalog>,
        keys: Arc<dyn MasterKeys>,
        paths: Arc<dyn LocalPaths>,
        policy: BackupPolicy,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
        storage: Arc<StorageService>,
    ) -> Self {
        Self {
            engine,
            sources,
            catalog,
            keys,
            paths,
            defaults: std::sync::RwLock::new(RetentionStatus {
                enabled: policy.retention_after_backup,
                defaults: policy.retention,
            }),
            policy,
            clock,
            audit,
            storage,
        }
    }

    /// Whether a backup may start now (quota and disk reserve).
    ///
    /// # Errors
    /// `InsufficientStorage` (`quota_exceeded`, `disk_full`).
    pub async fn admit_backup(&self) -> Result<(), ServiceError> {
        self.storage.admit_backup().await.map(drop)
    }

    /// A source by id (no permission check: callers have checked theirs).
    pub(crate) async fn source(&self, id: SourceId) -> Result<Source, ServiceError> {
        self.sources
            .get(id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("no source with id {id}")))
    }

    async fn resolve_source(
        &self,
        actor: &Actor,
        target: &BackupTarget,
    ) -> Result<Source, ServiceError> {
        match target {
            BackupTarget::Source(name) => self
                .sources
                .find_by_name(name)
                .await?
                .ok_or_else(|| ServiceError::NotFound(format!("no source named `{name}`"))),
            BackupTarget::Id(id) => self.source(*id).await,
            BackupTarget::Path(path) => {
                let text = self
                    .paths
                    .readable_dir(&path.to_string_lossy())
                    .map_err(|e| ServiceError::invalid("invalid_path", e.to_string()))?;
                crate::sources::check_not_own(&text, &self.policy.protected)?;
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
                        return self.sources.find_by_name(&text).await?.ok_or_else(|| {
                            ServiceError::Conflict {
                                code: "conflict",
                                message: format!("the source `{text}` is being changed; try again"),
                            }
                        });
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
    /// `Forbidden` without `backup`; `NotFound`/`Invalid` for the target; engine failures
    /// (audited as failed backups).
    pub async fn backup(
        &self,
        actor: &Actor,
        target: &BackupTarget,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<CatalogEntry, ServiceError> {
        actor.require(Permission::Backup)?;
        let source = self.resolve_source(actor, target).await?;
        let entry = AuditEntry::new(&actor.username, AuditAction::BackupCreate, &actor.client)
            .resource(format!("source:{}", source.id));
        let allowance = match self.storage.admit_backup().await {
            Ok(allowance) => allowance,
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(format!("`{}`: {e}", source.name)))
                    .await;
                return Err(e);
            }
        };
        let parent = self
            .catalog
            .latest_for_source(source.id)
            .await?
            .map(|e| e.snapshot_id);
        let request = BackupRequest {
            source_name: source.name.clone(),
            path: PathBuf::from(&source.path),
            parent,
            budget: Some(allowance.clone() as Arc<dyn coffer_domain::engine::StorageBudget>),
        };
        match self.engine.backup(request, progress, cancel).await {
            Ok(summary) => {
                // Counted first: the data is in storage whatever happens to the catalog row.
                if let Err(e) = self.storage.added(summary.stored_bytes_added).await {
                    tracing::error!(error = %e, "cannot count the stored bytes of a backup; `coffer storage recount` corrects it");
                }
                // Counted as stored now: what it took from the quota's room goes back.
                drop(allowance);
                let row = self.catalog.insert(&summary, Some(source.id)).await?;
                if summary.status == SnapshotStatus::Partial {
                    self.storage
                        .alerts()
                        .raise_best_effort(
                            NewAlert::new(
                                AlertKind::BackupPartial,
                                Severity::Warning,
                                format!(
                                    "the backup of `{}` is partial: {} entries could not be read (first: {})",
                                    source.name,
                                    summary.warnings.len(),
                                    summary.warnings.first().map_or("", String::as_str)
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
                                "`{}`: {} files, {} bytes, {} added; status {}",
                                source.name,
                                summary.files,
                                summary.bytes,
                                summary.bytes_added,
                                summary.status.as_str()
                            )),
                    )
                    .await?;
                let defaults = self.retention_defaults();
                if defaults.enabled {
                    // The snapshot is safe; a retention failure is reported, not fatal.
                    let rules = source.retention.unwrap_or(defaults.defaults);
                    if let Err(e) = self.enforce_retention(actor, &source, rules, true).await {
                        tracing::error!(source = %source.name, error = %e, "retention after a backup failed");
                    }
                }
                Ok(row)
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(format!("`{}`: {e}", source.name)))
                    .await;
                match &e {
                    EngineFailure::Cancelled => {}
                    EngineFailure::QuotaExceeded(_) => {
                        self.storage.backup_stopped_by_quota(&source.name).await;
                    }
                    other => {
                        self.storage
                            .alerts()
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

    /// What retention would keep and remove for a source, and why.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn retention_preview(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<RetentionReport, ServiceError> {
        actor.require(Permission::View)?;
        let source = self.source(source_id).await?;
        let rules = self.rules_for(&source);
        self.enforce_retention(actor, &source, rules, false).await
    }

    /// What other rules would keep and remove for a source (`None`: the defaults, as for
    /// a source without an override); nothing is changed or stored. For trying rules
    /// out before saving them.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`; `Invalid` (counts or ages out of range).
    pub async fn retention_simulate(
        &self,
        actor: &Actor,
        source_id: SourceId,
        rules: Option<Retention>,
    ) -> Result<RetentionReport, ServiceError> {
        actor.require(Permission::View)?;
        let rules = crate::sources::check_retention(rules)?;
        let source = self.source(source_id).await?;
        let rules = rules.unwrap_or(self.retention_defaults().defaults);
        self.enforce_retention(actor, &source, rules, false).await
    }

    /// The retention defaults in force (for sources without their own rules), and
    /// whether retention runs after each backup.
    #[must_use]
    pub fn retention_defaults(&self) -> RetentionStatus {
        *self
            .defaults
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts new retention defaults in force (an administrator changed them); the next
    /// backup or preview uses them.
    pub fn set_retention_defaults(&self, status: RetentionStatus) {
        *self
            .defaults
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }

    fn rules_for(&self, source: &Source) -> Retention {
        source
            .retention
            .unwrap_or(self.retention_defaults().defaults)
    }

    /// Applies retention to a source now: removes what its rules do not keep.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; storage or database failures
    /// (what was removed before stays removed).
    pub async fn apply_retention(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<RetentionReport, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let source = self.source(source_id).await?;
        let rules = self.rules_for(&source);
        self.enforce_retention(actor, &source, rules, true).await
    }

    /// Decides, and with `apply` removes, each snapshot the rules do not keep. Every
    /// removal is audited with the reason, under the caller's name.
    async fn enforce_retention(
        &self,
        actor: &Actor,
        source: &Source,
        policy: Retention,
        apply: bool,
    ) -> Result<RetentionReport, ServiceError> {
        let rows = self
            .catalog
            .query(&BackupFilter {
                source_id: Some(source.id),
                ..BackupFilter::default()
            })
            .await?
            .items;
        let candidates: Vec<Candidate> = rows
            .iter()
            .map(|r| Candidate {
                id: r.snapshot_id.clone(),
                created_at: r.created_at,
                protected: r.protected,
                complete: r.status == "ok",
            })
            .collect();
        let verdicts = retention::decide(&policy, &candidates, self.clock.now());
        if apply {
            for v in verdicts.iter().filter(|v| !v.keep) {
                let entry =
                    AuditEntry::new(&actor.username, AuditAction::BackupDelete, &actor.client)
                        .resource(format!("snapshot:{}", v.id))
                        .detail(format!(
                            "retention of `{}`: {}",
                            source.name,
                            v.reasons.join(", ")
                        ));
                self.remove_snapshot(&v.id, entry).await?;
            }
        }
        Ok(RetentionReport {
            source: source.clone(),
            policy,
            verdicts,
            applied: apply,
        })
    }

    /// The catalog, newest first.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn snapshots(
        &self,
        actor: &Actor,
        limit: u64,
    ) -> Result<Vec<CatalogEntry>, ServiceError> {
        actor.require(Permission::View)?;
        Ok(self.catalog.list(limit).await?)
    }

    /// A snapshot by id, unique prefix, or `latest`.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn find(&self, actor: &Actor, reference: &str) -> Result<CatalogEntry, ServiceError> {
        actor.require(Permission::View)?;
        let found = if reference == "latest" {
            self.catalog.list(1).await?.into_iter().next()
        } else {
            self.catalog.find(reference).await?
        };
        found.ok_or_else(|| {
            ServiceError::NotFound(format!("no snapshot `{reference}` in the catalog"))
        })
    }

    /// The entries of a directory inside a snapshot.
    ///
    /// # Errors
    /// `Forbidden` without `restore` (names reveal content); `NotFound`.
    pub async fn list_dir(
        &self,
        actor: &Actor,
        reference: &str,
        path: &str,
    ) -> Result<Vec<EntryInfo>, ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        Ok(self.engine.list_dir(&snap.snapshot_id, path).await?)
    }

    /// Restores a snapshot (or a path in it) into `target`. Audited as a read of backup
    /// contents.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `Invalid` (target not empty, unsafe
    /// entries); `Conflict` with code `damaged` naming the damaged files.
    pub async fn restore(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        target: &Path,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<(CatalogEntry, RestoreReport), ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let entry = AuditEntry::new(&actor.username, AuditAction::Restore, &actor.client)
            .resource(format!("snapshot:{}", snap.snapshot_id));
        let detail = format!("{} -> {}", path.unwrap_or("/"), target.display());
        match self
            .engine
            .restore(&snap.snapshot_id, path, target, progress, cancel)
            .await
        {
            Ok(report) => {
                self.audit
                    .record(entry.detail(format!(
                        "{detail}: {} files, {} bytes",
                        report.files, report.bytes
                    )))
                    .await?;
                Ok((snap, report))
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(format!("{detail}: {e}")))
                    .await;
                Err(e.into())
            }
        }
    }

    /// Verifies one snapshot, or every snapshot in the catalog, and records each result.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`.
    pub async fn verify(
        &self,
        actor: &Actor,
        reference: Option<&str>,
        read_data: bool,
    ) -> Result<Vec<(CatalogEntry, VerifyReport)>, ServiceError> {
        actor.require(Permission::Restore)?;
        let snaps = match reference {
            Some(r) => vec![self.find(actor, r).await?],
            None => self.catalog.list(u64::MAX >> 1).await?,
        };
        let mut out = Vec::with_capacity(snaps.len());
        for snap in snaps {
            out.push(
                self.verify_one(
                    actor,
                    &snap.snapshot_id,
                    read_data,
                    Arc::new(Progress::default()),
                    Cancel::default(),
                )
                .await?,
            );
        }
        Ok(out)
    }

    /// Verifies one snapshot and records the result in the catalog and the trail.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `Conflict` (`cancelled`).
    pub async fn verify_one(
        &self,
        actor: &Actor,
        reference: &str,
        read_data: bool,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<(CatalogEntry, VerifyReport), ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let report = self
            .engine
            .verify(&snap.snapshot_id, read_data, progress, cancel)
            .await?;
        let result = if report.ok() {
            if read_data {
                "ok (data read)".to_owned()
            } else {
                "ok".to_owned()
            }
        } else {
            let mut what = report.problems.first().cloned().unwrap_or_default();
            if !report.damaged_files.is_empty() {
                what = format!("damaged files: {}", report.damaged_files.join(", "));
            }
            format!("damaged: {what}")
        };
        self.catalog
            .record_verification(&snap.snapshot_id, self.clock.now(), &result)
            .await?;
        let mut entry = AuditEntry::new(&actor.username, AuditAction::Verify, &actor.client)
            .resource(format!("snapshot:{}", snap.snapshot_id))
            .detail(result);
        if !report.ok() {
            entry = entry.failed();
        }
        self.audit.record(entry).await?;
        let snap = self.find(actor, &snap.snapshot_id).await?;
        Ok((snap, report))
    }

    /// The catalog, filtered, newest first, one page.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: BackupFilter,
    ) -> Result<Page<CatalogEntry>, ServiceError> {
        actor.require(Permission::View)?;
        filter.limit = filter.limit.clamp(1, MAX_PAGE);
        Ok(self.catalog.query(&filter).await?)
    }

    /// The entry at a path inside a snapshot.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`.
    pub async fn stat(
        &self,
        actor: &Actor,
        snapshot_id: &str,
        path: &str,
    ) -> Result<EntryInfo, ServiceError> {
        actor.require(Permission::Restore)?;
        Ok(self.engine.stat(snapshot_id, path).await?)
    }

    /// Removes a snapshot from the catalog and the repository; the space its data used
    /// is reclaimed by garbage collection. Protected snapshots must be unprotected first.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; `Conflict` (`protected`).
    pub async fn delete(&self, actor: &Actor, reference: &str) -> Result<(), ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let snap = self.find(actor, reference).await?;
        if snap.protected {
            return Err(ServiceError::Conflict {
                code: "protected",
                message: format!(
                    "snapshot {} is protected; unprotect it first",
                    snap.snapshot_id
                ),
            });
        }
        let entry = AuditEntry::new(&actor.username, AuditAction::BackupDelete, &actor.client)
            .resource(format!("snapshot:{}", snap.snapshot_id))
            .detail(format!("`{}` of {}", snap.source_name, snap.created_at));
        self.remove_snapshot(&snap.snapshot_id, entry).await
    }

    /// Removes a snapshot from the repository, then from the catalog, and records
    /// `entry`. The repository goes first: a catalog row left without its snapshot is
    /// removed by a retry; a snapshot left without its row would come back with the next
    /// catalog rebuild.
    async fn remove_snapshot(
        &self,
        snapshot_id: &str,
        entry: AuditEntry,
    ) -> Result<(), ServiceError> {
        match self.engine.forget(snapshot_id).await {
            Ok(()) | Err(EngineFailure::NotFound(_)) => {}
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(e.to_string()))
                    .await;
                return Err(e.into());
            }
        }
        self.catalog.delete(snapshot_id).await?;
        self.audit.record(entry).await?;
        Ok(())
    }

    /// Protects a snapshot from retention, or lifts that.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`.
    pub async fn set_protected(
        &self,
        actor: &Actor,
        reference: &str,
        protected: bool,
    ) -> Result<CatalogEntry, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let snap = self.find(actor, reference).await?;
        if !self
            .catalog
            .set_protected(&snap.snapshot_id, protected)
            .await?
        {
            return Err(ServiceError::NotFound(format!(
                "no snapshot `{reference}` in the catalog"
            )));
        }
        let action = if protected {
            AuditAction::BackupProtect
        } else {
            AuditAction::BackupUnprotect
        };
        self.audit
            .record(
                AuditEntry::new(&actor.username, action, &actor.client)
                    .resource(format!("snapshot:{}", snap.snapshot_id)),
            )
            .await?;
        self.find(actor, &snap.snapshot_id).await
    }

    /// One page of a directory inside a snapshot. Audited: names reveal content.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `Invalid` when the path is a file.
    pub async fn browse(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        limit: u64,
        offset: u64,
    ) -> Result<DirPage, ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let path = snapshot_path(path).unwrap_or_default();
        let all = self.engine.list_dir(&snap.snapshot_id, &path).await?;
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(usize::MAX))
            .collect();
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::BackupBrowse, &actor.client)
                    .resource(format!("snapshot:{}", snap.snapshot_id))
                    .detail(format!("/{path}")),
            )
            .await?;
        Ok(DirPage {
            snapshot: snap,
            path,
            entries: Page { items, total },
        })
    }

    /// Authorizes and records a download of a snapshot (or a path in it) as an archive.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound` (snapshot or path).
    pub async fn prepare_download(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        format: ArchiveFormat,
    ) -> Result<DownloadPlan, ServiceError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let path = snapshot_path(path);
        let entry = self
            .engine
            .stat(&snap.snapshot_id, path.as_deref().unwrap_or(""))
            .await?;
        let mut stem = format!(
            "{}-{}-{}",
            file_name_part(&snap.source_name),
            snap.created_at.format("%Y%m%d-%H%M%S"),
            &snap.snapshot_id[..snap.snapshot_id.len().min(8)]
        );
        if path.is_some() {
            let name = file_name_part(&entry.name);
            if !name.is_empty() {
                stem = format!("{stem}-{name}");
            }
        }
        let stem = stem.trim_start_matches('-').to_owned();
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::BackupDownload, &actor.client)
                    .resource(format!("snapshot:{}", snap.snapshot_id))
                    .detail(format!(
                        "/{} as {}",
                        path.as_deref().unwrap_or(""),
                        format.extension()
                    )),
            )
            .await?;
        Ok(DownloadPlan {
            snapshot_id: snap.snapshot_id,
            path,
            format,
            filename: format!("{stem}.{}", format.extension()),
        })
    }

    /// Streams a prepared download into `out`. Returns the bytes of file content sent.
    ///
    /// # Errors
    /// `Conflict` (`damaged`) naming a damaged file; the writer's failure (a client that
    /// went away) as `Unexpected`.
    pub async fn stream_download(
        &self,
        actor: &Actor,
        plan: &DownloadPlan,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, ServiceError> {
        match self
            .engine
            .export(&plan.snapshot_id, plan.path.as_deref(), plan.format, out)
            .await
        {
            Ok(n) => Ok(n),
            Err(e) => {
                self.audit
                    .record_best_effort(
                        AuditEntry::new(
                            &actor.username,
                            AuditAction::BackupDownload,
                            &actor.client,
                        )
                        .resource(format!("snapshot:{}", plan.snapshot_id))
                        .failed()
                        .detail(format!("stopped: {e}")),
                    )
                    .await;
                Err(e.into())
            }
        }
    }

    /// Re-creates catalog rows for snapshots found in storage but missing from the
    /// catalog. Returns how many were added.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; storage or database failures.
    pub async fn rebuild_catalog(&self, actor: &Actor) -> Result<(usize, usize), ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let snapshots = self.engine.snapshots().await?;
        let mut added = 0;
        for s in &snapshots {
            if self.catalog.find(&s.id).await?.is_some() {
                continue;
            }
            let source = match self.sources.find_by_name(&s.source).await? {
                Some(src) => src,
                None => {
                    self.sources
                        .create(&SourceSpec::plain(&s.source, &s.path), self.clock.now())
                        .await?
                }
            };
            self.catalog.insert(s, Some(source.id)).await?;
            added += 1;
        }
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::CatalogRebuild, &actor.client)
                    .detail(format!(
                        "{} snapshots in storage, {added} added to the catalog",
                        snapshots.len()
                    )),
            )
            .await?;
        Ok((snapshots.len(), added))
    }

    /// The master key, for safekeeping. Audited.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`.
    pub async fn export_key(&self, actor: &Actor) -> Result<Secret, ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let key = self.keys.export().await?;
        self.audit
            .record(AuditEntry::new(
                &actor.username,
                AuditAction::KeyExport,
                &actor.client,
            ))
            .await?;
        self.storage.key_exported(true).await;
        Ok(key)
    }

    /// Replaces the master key; data is not rewritten. Audited.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; key or storage failures.
    pub async fn rotate_key(&self, actor: &Actor) -> Result<(), ServiceError> {
        actor.require(Permission::ManageSystem)?;
        let entry = AuditEntry::new(&actor.username, AuditAction::KeyRotate, &actor.client);
        match self.keys.rotate().await {
            Ok(()) => {
                // The new key has not been exported yet.
                self.storage.key_exported(false).await;
                self.audit.record(entry).await?;
                Ok(())
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(e.to_string()))
                    .await;
                Err(e)
            }
        }
    }
}
