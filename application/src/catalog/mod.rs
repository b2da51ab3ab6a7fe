//! The snapshot catalog: listing and finding snapshots, browsing and downloading what
//! is in them, protecting and deleting them, and rebuilding the catalog from storage.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::{ArchiveFormat, EngineFailure, EntryInfo, SnapshotEngine};
use coffer_domain::ports::{
    BackupCatalog, BackupFilter, CatalogEntry, Clock, Page, SourceRepository, SourceSpec,
};
use coffer_domain::{SnapshotId, SnapshotRef};

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, EngineError, ErrorClass};
use crate::paths::snapshot_path;

/// Largest page of the backup listing and of a directory listing.
pub const MAX_PAGE: u64 = 1000;

/// Errors of the catalog's use cases.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `protected`: a protected snapshot must be unprotected before it is deleted.
    #[error("{0}")]
    Protected(String),
}

impl CodedError for CatalogError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Protected(_) => "protected",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Engine(e) => CodedError::class(e),
            Self::Protected(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(CatalogError);
crate::error::engine_conversion!(CatalogError);

/// A snapshot by id, unique prefix, or `latest`: the one lookup every area uses.
///
/// # Errors
/// `NotFound`; `Conflict` for a prefix that more than one snapshot starts with.
pub async fn lookup(
    catalog: &dyn BackupCatalog,
    reference: &SnapshotRef,
) -> Result<CatalogEntry, CommonError> {
    let found = match reference {
        SnapshotRef::Latest => catalog.list(1).await?.into_iter().next(),
        SnapshotRef::Prefix(prefix) => catalog.find(prefix).await?,
    };
    found.ok_or_else(|| CommonError::NotFound(format!("no snapshot `{reference}` in the catalog")))
}

/// Removes snapshots: the retention area's way to act on its verdicts.
#[async_trait]
pub trait RemoveSnapshot: Send + Sync {
    /// Removes a snapshot from the repository, then from the catalog, and records
    /// `entry` (failed, with the reason, when the removal fails).
    async fn remove(&self, snapshot_id: &SnapshotId, entry: AuditEntry)
    -> Result<(), CatalogError>;
}

/// A download that has been authorized and recorded, ready to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPlan {
    pub snapshot_id: SnapshotId,
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

/// Which part of a directory to list: `limit` entries from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub limit: u64,
    pub offset: u64,
}

/// `entry` as `actor` may see it: without the `restore` permission (which browsing
/// needs), no file names (see [`CatalogEntry::without_contents`]).
fn shown_to(actor: &Actor, entry: CatalogEntry) -> CatalogEntry {
    if actor.role.allows(Permission::Restore) {
        entry
    } else {
        entry.without_contents()
    }
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

pub struct CatalogService {
    engine: Arc<dyn SnapshotEngine>,
    catalog: Arc<dyn BackupCatalog>,
    sources: Arc<dyn SourceRepository>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl CatalogService {
    #[must_use]
    pub fn new(
        engine: Arc<dyn SnapshotEngine>,
        catalog: Arc<dyn BackupCatalog>,
        sources: Arc<dyn SourceRepository>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            engine,
            catalog,
            sources,
            clock,
            audit,
        }
    }

    /// The catalog, filtered, newest first, one page.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: BackupFilter,
    ) -> Result<Page<CatalogEntry>, CatalogError> {
        actor.require(Permission::View)?;
        filter.limit = filter.limit.clamp(1, MAX_PAGE);
        let page = self.catalog.query(&filter).await?;
        Ok(Page {
            total: page.total,
            items: page.items.into_iter().map(|e| shown_to(actor, e)).collect(),
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
    ) -> Result<Vec<CatalogEntry>, CatalogError> {
        actor.require(Permission::View)?;
        let entries = self.catalog.list(limit).await?;
        Ok(entries.into_iter().map(|e| shown_to(actor, e)).collect())
    }

    /// A snapshot by id, unique prefix, or `latest`. Like every use case here it takes
    /// the reference as typed and parses it after the permission check: a caller without
    /// the permission learns nothing, not even whether the text names a snapshot.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn find(&self, actor: &Actor, reference: &str) -> Result<CatalogEntry, CatalogError> {
        actor.require(Permission::View)?;
        let entry = self.find_ref(&SnapshotRef::parse(reference)?).await?;
        Ok(shown_to(actor, entry))
    }

    async fn find_ref(&self, reference: &SnapshotRef) -> Result<CatalogEntry, CatalogError> {
        Ok(lookup(self.catalog.as_ref(), reference).await?)
    }

    /// A directory inside a snapshot: one page of it (the API), or all of it (`None`:
    /// the CLI's `coffer ls`). Audited either way: names reveal content.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound`; `Invalid` when the path is a file.
    pub async fn browse(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        page: Option<Paging>,
    ) -> Result<DirPage, CatalogError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let path = snapshot_path(path).unwrap_or_default();
        let all = self
            .engine
            .list_dir(snap.snapshot_id.as_str(), &path)
            .await?;
        let total = all.len() as u64;
        let items = match page {
            Some(Paging { limit, offset }) => all
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(limit.clamp(1, MAX_PAGE)).unwrap_or(usize::MAX))
                .collect(),
            None => all,
        };
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

    /// Removes a snapshot from the catalog and the repository; the space its data used
    /// is reclaimed by garbage collection. Protected snapshots must be unprotected first.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; `Conflict` (`protected`).
    pub async fn delete(&self, actor: &Actor, reference: &str) -> Result<(), CatalogError> {
        actor.require(Permission::ManageSystem)?;
        let snap = self.find(actor, reference).await?;
        if snap.protected {
            return Err(CatalogError::Protected(format!(
                "snapshot {} is protected; unprotect it first",
                snap.snapshot_id
            )));
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
        snapshot_id: &SnapshotId,
        entry: AuditEntry,
    ) -> Result<(), CatalogError> {
        match self.engine.forget(snapshot_id.as_str()).await {
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
    ) -> Result<CatalogEntry, CatalogError> {
        actor.require(Permission::ManageSystem)?;
        let snap = self.find(actor, reference).await?;
        if !self
            .catalog
            .set_protected(&snap.snapshot_id, protected)
            .await?
        {
            return Err(
                CommonError::NotFound(format!("no snapshot `{reference}` in the catalog")).into(),
            );
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
        self.find_ref(&SnapshotRef::from(&snap.snapshot_id)).await
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
    ) -> Result<DownloadPlan, CatalogError> {
        let plan = self.plan_download(actor, reference, path, format).await?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::BackupDownload, &actor.client)
                    .resource(format!("snapshot:{}", plan.snapshot_id))
                    .detail(format!(
                        "/{} as {}",
                        plan.path.as_deref().unwrap_or(""),
                        format.extension()
                    )),
            )
            .await?;
        Ok(plan)
    }

    /// What a download would be (its snapshot, path and file name), authorized but
    /// neither recorded nor started: the answer to a `HEAD`, which reads no content.
    ///
    /// # Errors
    /// `Forbidden` without `restore`; `NotFound` (snapshot or path).
    pub async fn plan_download(
        &self,
        actor: &Actor,
        reference: &str,
        path: Option<&str>,
        format: ArchiveFormat,
    ) -> Result<DownloadPlan, CatalogError> {
        actor.require(Permission::Restore)?;
        let snap = self.find(actor, reference).await?;
        let path = snapshot_path(path);
        let entry = self
            .engine
            .stat(snap.snapshot_id.as_str(), path.as_deref().unwrap_or(""))
            .await?;
        let mut stem = format!(
            "{}-{}-{}",
            file_name_part(&snap.source_name),
            snap.created_at.format("%Y%m%d-%H%M%S"),
            snap.snapshot_id.prefix(8)
        );
        if path.is_some() {
            let name = file_name_part(&entry.name);
            if !name.is_empty() {
                stem = format!("{stem}-{name}");
            }
        }
        let stem = stem.trim_start_matches('-').to_owned();
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
    /// `Damaged` naming a damaged file; the writer's failure (a client that went away)
    /// as `Unexpected`.
    pub async fn stream_download(
        &self,
        actor: &Actor,
        plan: &DownloadPlan,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, CatalogError> {
        match self
            .engine
            .export(
                plan.snapshot_id.as_str(),
                plan.path.as_deref(),
                plan.format,
                out,
            )
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
    pub async fn rebuild_catalog(&self, actor: &Actor) -> Result<(usize, usize), CatalogError> {
        actor.require(Permission::ManageSystem)?;
        let snapshots = self.engine.snapshots().await?;
        let mut added = 0;
        for s in &snapshots {
            let id = SnapshotId::parse(&s.id).map_err(CommonError::unexpected)?;
            if self.catalog.find(&(&id).into()).await?.is_some() {
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
}

#[async_trait]
impl RemoveSnapshot for CatalogService {
    async fn remove(
        &self,
        snapshot_id: &SnapshotId,
        entry: AuditEntry,
    ) -> Result<(), CatalogError> {
        self.remove_snapshot(snapshot_id, entry).await
    }
}
