//! Reading snapshots back: restores (into the server's restore roots when asked over the
//! API, anywhere from the local CLI) and verification, at once or as jobs.

use std::path::{Component, Path};
use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::alerts::DiskMonitor;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{
    Cancel, EntryKind, Progress, RestoreReport, SnapshotEngine, VerifyReport,
};
use coffer_domain::jobs::{JobParams, JobResult};
use coffer_domain::ports::{BackupCatalog, CatalogEntry, Clock, LocalPaths};
use coffer_domain::units::human_bytes;
use coffer_domain::{SnapshotId, SnapshotRef};

use crate::audit::AuditLog;
use crate::catalog::lookup;
use crate::error::{CodedError, CommonError, EngineError, ErrorClass};
use crate::jobs::{JobExecutor, JobFailure, JobQueue, JobStatus, SubmitError};
use crate::paths::{hide_path, snapshot_path};

/// Errors of restoring and verifying.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `job_running`, `queue_full`, `shutting_down`.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// `restore_target_not_allowed`: outside the restore roots (symlinks resolved).
    #[error("{0}")]
    TargetNotAllowed(String),
    /// `restore_target_not_empty`.
    #[error("{0}")]
    TargetNotEmpty(String),
    /// `disk_full`: the target's volume lacks room for the restore and the reserve.
    #[error("{0}")]
    DiskFull(String),
}

impl CodedError for RestoreError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Submit(e) => e.code(),
            Self::TargetNotAllowed(_) => "restore_target_not_allowed",
            Self::TargetNotEmpty(_) => "restore_target_not_empty",
            Self::DiskFull(_) => "disk_full",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Engine(e) => CodedError::class(e),
            Self::Submit(e) => e.class(),
            Self::TargetNotAllowed(_) | Self::TargetNotEmpty(_) | Self::DiskFull(_) => {
                ErrorClass::Business
            }
        }
    }
}

impl RestoreError {
    /// This error as a client may see it: the engine's messages (a target found not
    /// empty at the last moment, say) name the target directory on the server.
    fn hiding(self, target: &str) -> Self {
        let hide = |m: String| hide_path(m, target, "the restore target");
        match self {
            Self::Engine(EngineError::Invalid(m)) => Self::Engine(EngineError::Invalid(hide(m))),
            Self::Engine(EngineError::Damaged(m)) => Self::Engine(EngineError::Damaged(hide(m))),
            other => other,
        }
    }
}

crate::error::common_conversions!(RestoreError);
crate::error::engine_conversion!(RestoreError);

/// What a restore over the API needs free on its target's volume: the bytes it writes
/// plus `reserve_mb` (the same reserve as backups keep, `disk.min_free_mb`), read
/// through the disk probe the alerts use.
pub struct TargetRoom {
    pub monitor: Arc<dyn DiskMonitor>,
    pub reserve_mb: u64,
}

const MIB: u64 = 1024 * 1024;

pub struct RestoreService {
    engine: Arc<dyn SnapshotEngine>,
    catalog: Arc<dyn BackupCatalog>,
    paths: Arc<dyn LocalPaths>,
    /// Absolute directories a restore over the API may write under (checked with
    /// symlinks resolved). The first is where a restore goes when no target is given.
    restore_roots: Vec<String>,
    queue: Arc<dyn JobQueue>,
    room: TargetRoom,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl RestoreService {
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Arc<dyn SnapshotEngine>,
        catalog: Arc<dyn BackupCatalog>,
        paths: Arc<dyn LocalPaths>,
        restore_roots: Vec<String>,
        queue: Arc<dyn JobQueue>,
        room: TargetRoom,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            engine,
            catalog,
            paths,
            restore_roots,
            queue,
            room,
            clock,
            audit,
        }
    }

    /// The bytes a restore of `path` (everything when `None`) writes: the snapshot's
    /// size, or a file's. A directory inside a snapshot has no recorded total, so only the
    /// reserve is asked for then.
    async fn bytes_to_restore(
        &self,
        snap: &CatalogEntry,
        path: Option<&str>,
    ) -> Result<u64, RestoreError> {
        let Some(path) = path else {
            return Ok(snap.size);
        };
        let entry = self.engine.stat(snap.snapshot_id.as_str(), path).await?;
        Ok(match entry.kind {
            EntryKind::File => entry.size,
            EntryKind::Dir | EntryKind::Symlink => 0,
        })
    }

    /// Refuses a restore into `target` when its volume has less than `bytes` plus the
    /// reserve free. When the free space cannot be read the restore goes ahead, with a
    /// warning in the log: an unknown answer is no reason to refuse.
    fn ensure_room(&self, target: &str, bytes: u64) -> Result<(), RestoreError> {
        let space = match self.room.monitor.space(Path::new(target)) {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(target, error = %e.0, "cannot read the free space of a restore target; the restore goes ahead");
                return Ok(());
            }
        };
        let reserve = self.room.reserve_mb.saturating_mul(MIB);
        let needed = bytes.saturating_add(reserve);
        if space.available_bytes >= needed {
            return Ok(());
        }
        // The volume and the target go to the log, not to the client.
        tracing::warn!(
            target,
            mount = %space.mount_point.display(),
            available = space.available_bytes,
            needed,
            "restore refused: not enough free space on the target's volume"
        );
        Err(RestoreError::DiskFull(format!(
            "the restore needs {} free on the target's volume ({} to write and a reserve of \
             {} MiB, disk.min_free_mb), and {} are free; free space there or choose another \
             target",
            human_bytes(needed),
            human_bytes(bytes),
            self.room.reserve_mb,
            human_bytes(space.available_bytes)
        )))
    }

    /// A snapshot by id, unique prefix or `latest`, as typed: parsed after the
    /// permission checks, so a caller without them learns nothing about it.
    async fn find(&self, actor: &Actor, reference: &str) -> Result<CatalogEntry, RestoreError> {
        actor.require(Permission::View)?;
        Ok(lookup(self.catalog.as_ref(), &SnapshotRef::parse(reference)?).await?)
    }

    /// Restores a snapshot (or a path in it) into `target`. Audited as a read of backup
    /// contents.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `Invalid` (target not empty, unsafe
    /// entries); `Damaged` naming the damaged files.
    pub async fn restore(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        target: &Path,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<(CatalogEntry, RestoreReport), RestoreError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let entry = AuditEntry::new(&actor.username, AuditAction::Restore, &actor.client)
            .resource(format!("snapshot:{}", snap.snapshot_id));
        let detail = format!("{} -> {}", path.unwrap_or("/"), target.display());
        match self
            .engine
            .restore(snap.snapshot_id.as_str(), path, target, progress, cancel)
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

    /// Where `wanted` lands with every symlink resolved, if that is under a restore root
    /// and free (missing, or an empty directory). Checked when a restore is asked for
    /// and again when it starts, so that a link made in between cannot lead it out of
    /// the roots.
    fn check_target(&self, wanted: &str) -> Result<String, RestoreError> {
        // Messages name no server path (the roots, or where the target resolves to):
        // the client knows what it asked for, the log has the rest.
        let roots = &self.restore_roots;
        let not_allowed = || {
            RestoreError::TargetNotAllowed(
                "the restore target is not under an allowed restore root \
                 (restore.allowed_roots, symlinks resolved)"
                    .to_owned(),
            )
        };
        let resolved = self.paths.resolve_target(wanted).map_err(|e| {
            // The reason can describe the server's filesystem; it goes to the log only.
            tracing::info!(target = wanted, reason = %e, "restore target refused");
            not_allowed()
        })?;
        let inside = roots.iter().any(|root| {
            self.paths
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
        if !self.paths.is_free(&resolved) {
            tracing::info!(target = wanted, resolved, "restore target not empty");
            return Err(RestoreError::TargetNotEmpty(
                "the restore target exists and is not an empty directory; choose a new or \
                 empty one"
                    .to_owned(),
            ));
        }
        Ok(resolved)
    }

    /// The directory a restore asks for, before any check: the default, an absolute
    /// path, or a plain relative path under the first root.
    fn requested_target(
        &self,
        requested: Option<&str>,
        snapshot_id: &SnapshotId,
    ) -> Result<String, RestoreError> {
        let Some(first) = self.restore_roots.first() else {
            return Err(RestoreError::TargetNotAllowed(
                "restores over the API are turned off (restore.allowed_roots is empty)".to_owned(),
            ));
        };
        let wanted = match requested.map(str::trim).filter(|t| !t.is_empty()) {
            None => Path::new(first).join(snapshot_id.as_str()),
            Some(t) if Path::new(t).is_absolute() => Path::new(t).to_path_buf(),
            Some(t) => {
                if Path::new(t)
                    .components()
                    .any(|c| !matches!(c, Component::Normal(_)))
                {
                    return Err(RestoreError::TargetNotAllowed(format!(
                        "a relative target is a plain path under the first restore root; \
                         `{t}` is not"
                    )));
                }
                Path::new(first).join(t)
            }
        };
        Ok(wanted.to_string_lossy().into_owned())
    }

    /// Queues a restore of a snapshot (or a path in it). `target` defaults to
    /// `<first restore root>/<snapshot id>`; a relative target is taken under the first
    /// root; either way it must lie under a restore root once symlinks are resolved,
    /// and be missing or an empty directory.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `TargetNotAllowed`, `TargetNotEmpty`;
    /// `JobRunning` while another restore writes into or around the same target.
    pub async fn start_restore(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        target: Option<&str>,
    ) -> Result<JobStatus, RestoreError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let path = snapshot_path(path);
        let bytes = self.bytes_to_restore(&snap, path.as_deref()).await?;
        let checked = self
            .requested_target(target, &snap.snapshot_id)
            .and_then(|wanted| self.check_target(&wanted))
            .and_then(|t| self.ensure_room(&t, bytes).map(|()| t));
        let target = match checked {
            Ok(t) => t,
            Err(e) => {
                self.audit
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
        Ok(self
            .queue
            .submit(
                actor,
                JobParams::Restore {
                    snapshot_id: snap.snapshot_id,
                    path,
                    target,
                },
            )
            .await?)
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
    ) -> Result<Vec<(CatalogEntry, VerifyReport)>, RestoreError> {
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
                    snap.snapshot_id.as_str(),
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
    /// `Forbidden` without `restore`; `NotFound`; `Cancelled`.
    pub async fn verify_one(
        &self,
        actor: &Actor,
        reference: &str,
        read_data: bool,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<(CatalogEntry, VerifyReport), RestoreError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let report = self
            .engine
            .verify(snap.snapshot_id.as_str(), read_data, progress, cancel)
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
        let snap = self.find(actor, snap.snapshot_id.as_str()).await?;
        Ok((snap, report))
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
    ) -> Result<JobStatus, RestoreError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        Ok(self
            .queue
            .submit(
                actor,
                JobParams::Verify {
                    snapshot_id: snap.snapshot_id,
                    read_data,
                },
            )
            .await?)
    }

    async fn run(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, RestoreError> {
        match params {
            JobParams::Restore {
                snapshot_id,
                path,
                target,
            } => {
                // Again now: the directories above the target may have changed while the
                // job waited (a link made by another restore, say).
                if self.check_target(target)? != *target {
                    tracing::info!(target, "restore target changed while the job waited");
                    return Err(RestoreError::TargetNotAllowed(
                        "the restore target changed since the restore was asked for".to_owned(),
                    ));
                }
                // And the room: other restores may have filled the volume meanwhile.
                let snap = self.find(actor, snapshot_id.as_str()).await?;
                let bytes = self.bytes_to_restore(&snap, path.as_deref()).await?;
                self.ensure_room(target, bytes)?;
                let (_, r) = self
                    .restore(
                        actor,
                        snapshot_id.as_str(),
                        path.as_deref(),
                        Path::new(target),
                        progress,
                        cancel,
                    )
                    .await
                    .map_err(|e| e.hiding(target))?;
                Ok(JobResult::of_restore(
                    snapshot_id.clone(),
                    target.clone(),
                    r,
                ))
            }
            JobParams::Verify {
                snapshot_id,
                read_data,
            } => {
                let (_, r) = self
                    .verify_one(actor, snapshot_id.as_str(), *read_data, progress, cancel)
                    .await?;
                Ok(JobResult::of_verify(snapshot_id.clone(), r))
            }
            other => Err(CommonError::Unexpected(anyhow::anyhow!(
                "the restore area was handed a {} job",
                other.kind()
            ))
            .into()),
        }
    }
}

#[async_trait]
impl JobExecutor for RestoreService {
    async fn execute(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, JobFailure> {
        self.run(actor, params, progress, cancel)
            .await
            .map_err(JobFailure::from_error)
    }
}
