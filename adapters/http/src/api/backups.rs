use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use coffer_application::{DirPage, Paging};
use coffer_domain::SourceId;
use coffer_domain::engine::{ArchiveFormat, EntryInfo, EntryKind, SnapshotStatus};
use coffer_domain::ports::{BackupFilter, CatalogEntry};
use poem::Body;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, Union};

use super::ApiTags;
use super::auth::NoContent;
use super::dto::Text;
use super::jobs::JobAccepted;
use crate::AppState;
use crate::auth::Auth;
use crate::downloads::NoSlot;
use crate::error::{ApiError, RequestError};

/// One snapshot in the catalog.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BackupDto {
    /// The snapshot id: hex SHA-256 of the stored snapshot object. Any unique prefix of
    /// at least 8 digits, or `latest`, works wherever an id is taken.
    pub id: String,
    /// The source (absent once the source is deleted).
    pub source_id: Option<i64>,
    /// The source's name when the snapshot was taken.
    pub source_name: String,
    /// `ok`, or `partial` when some entries could not be read (see `warnings`).
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: u64,
    /// Logical bytes of the files in the snapshot.
    pub size: u64,
    pub file_count: u64,
    pub dir_count: u64,
    /// New bytes (before compression) this snapshot stored after deduplication.
    pub bytes_added: u64,
    /// Bytes this snapshot added to storage (compressed, encrypted).
    pub stored_bytes_added: u64,
    /// SHA-256 of the snapshot object (equal to `id`).
    pub checksum: String,
    pub encrypted: bool,
    pub warnings: Vec<String>,
    /// The previous snapshot of the same source (unchanged files were not re-read).
    pub parent_id: Option<String>,
    /// Protected snapshots are never removed by retention.
    pub protected: bool,
    pub verified_at: Option<DateTime<Utc>>,
    /// `ok`, `ok (data read)` or `damaged: ...`.
    pub verify_result: Option<String>,
    /// The source looked empty or collapsed when this snapshot was taken (against its
    /// last good snapshot; see `backup.suspicious_shrink_percent`): kept, and it
    /// replaces no older snapshot in retention.
    pub suspicious: bool,
    /// Why, when `suspicious`.
    pub suspicious_reason: Option<String>,
}

impl From<CatalogEntry> for BackupDto {
    fn from(e: CatalogEntry) -> Self {
        Self {
            id: e.snapshot_id.to_string(),
            source_id: e.source_id.map(SourceId::get),
            source_name: e.source_name,
            status: e.status.as_str().to_owned(),
            created_at: e.created_at,
            finished_at: e.finished_at,
            duration_ms: e.duration_ms,
            size: e.size,
            file_count: e.file_count,
            dir_count: e.dir_count,
            bytes_added: e.bytes_added,
            stored_bytes_added: e.stored_bytes_added,
            checksum: e.checksum,
            encrypted: e.encrypted,
            warnings: e.warnings,
            parent_id: e.parent_snapshot_id.map(|p| p.to_string()),
            protected: e.protected,
            verified_at: e.verified_at,
            verify_result: e.verify_result,
            suspicious: e.suspicious.is_some(),
            suspicious_reason: e.suspicious,
        }
    }
}

/// A page of snapshots, newest first.
#[derive(Debug, Object)]
pub struct BackupPage {
    pub items: Vec<BackupDto>,
    /// Snapshots matching the filter, on every page.
    pub total: u64,
}

/// Which source to back up: by `source_id` or by `source` (its name), exactly one.
#[derive(Debug, Union)]
#[oai(one_of)]
pub enum StartBackupRequest {
    ById(BackupBySourceId),
    ByName(BackupBySourceName),
}

/// The source to back up, by its id.
#[derive(Debug, Object)]
pub struct BackupBySourceId {
    pub source_id: i64,
}

/// The source to back up, by its name.
#[derive(Debug, Object)]
pub struct BackupBySourceName {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub source: Text,
}

/// What to restore, and where.
#[derive(Debug, Object)]
pub struct RestoreRequest {
    /// A path inside the snapshot (a file or a directory); everything when absent or
    /// `null`.
    #[oai(nullable, validator(max_length = 4096))]
    pub path: Option<Text>,
    /// A directory on the server under one of `restore.allowed_roots`: absolute, or
    /// relative to the first root. It must not exist yet or be empty. Default:
    /// `<first root>/<snapshot id>` (when absent or `null`).
    #[oai(nullable, validator(max_length = 4096))]
    pub target: Option<Text>,
}

/// The kind of an entry in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum EntryType {
    File,
    Dir,
    Symlink,
}

/// An entry of a directory inside a snapshot.
#[derive(Debug, Object)]
pub struct EntryDto {
    /// The name; bytes that are not UTF-8 show as U+FFFD.
    pub name: String,
    #[oai(rename = "type")]
    pub kind: EntryType,
    /// Bytes (files); 0 for directories and symlinks.
    pub size: u64,
    pub mtime: DateTime<Utc>,
    /// Unix permission bits.
    pub mode: u32,
    /// Names of the entry's extended attributes, sorted (POSIX ACLs are
    /// `system.posix_acl_access` and `system.posix_acl_default`).
    pub xattrs: Vec<String>,
    /// Names the file had when it was backed up (hard links); 1 for most entries.
    pub links: u32,
}

impl From<EntryInfo> for EntryDto {
    fn from(e: EntryInfo) -> Self {
        Self {
            name: e.name,
            kind: match e.kind {
                EntryKind::File => EntryType::File,
                EntryKind::Dir => EntryType::Dir,
                EntryKind::Symlink => EntryType::Symlink,
            },
            size: e.size,
            mtime: e.mtime,
            mode: e.mode,
            xattrs: e.xattrs,
            links: e.links,
        }
    }
}

/// One page of a directory inside a snapshot.
#[derive(Debug, Object)]
pub struct TreePage {
    pub snapshot_id: String,
    /// The directory listed (`""` is the snapshot's root).
    pub path: String,
    pub items: Vec<EntryDto>,
    /// Entries in the directory, on every page.
    pub total: u64,
}

impl From<DirPage> for TreePage {
    fn from(page: DirPage) -> Self {
        Self {
            snapshot_id: page.snapshot.snapshot_id.to_string(),
            path: page.path,
            total: page.entries.total,
            items: page.entries.items.into_iter().map(Into::into).collect(),
        }
    }
}

/// Archive formats for downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ArchiveFormatDto {
    Tar,
    Zip,
}

#[derive(ApiResponse)]
pub enum Download {
    /// The archive, streamed as it is read from the repository.
    #[oai(status = 200, content_type = "application/octet-stream")]
    Archive(
        Binary<Body>,
        /// `attachment; filename="<source>-<time>-<id>[-<name>].<tar|zip>"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

/// The response body of a download: the engine writes the archive on a worker thread,
/// in pieces, into a bounded channel that the response reads. A client that goes away
/// closes the channel, which stops the engine at its next write.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    handle: tokio::runtime::Handle,
    buf: Vec<u8>,
}

const PIECE: usize = 256 * 1024;

/// A client that reads nothing for this long is dropped, freeing its worker thread.
const STALLED_CLIENT: std::time::Duration = std::time::Duration::from_mins(2);

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE)));
        // Called from the engine's blocking thread, never from the runtime's workers.
        match self.handle.block_on(tokio::time::timeout(
            STALLED_CLIENT,
            self.tx.send(Ok(piece)),
        )) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "client went away",
            )),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "client stopped reading",
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

pub struct BackupsApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Backups")]
impl BackupsApi {
    /// Start a backup.
    ///
    /// Queues a backup of a source, named by `source_id` or by `source` (exactly one:
    /// 400 otherwise), and answers at once with the job (202); follow it at
    /// `GET /api/jobs/{id}`. 409 `job_running` (with `job_id`) while a backup of the same
    /// source is queued or running; 429 `too_many_jobs` when the caller already has
    /// `jobs.max_queued_per_user` jobs waiting.
    ///
    /// Permission: `backup`.
    #[oai(path = "/backup", method = "post", operation_id = "startBackup")]
    async fn start_backup(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<StartBackupRequest>,
    ) -> Result<JobAccepted, ApiError> {
        let actor = auth.actor();
        let id = match &body.0 {
            StartBackupRequest::ById(by) => SourceId::new(by.source_id),
            StartBackupRequest::ByName(by) => {
                actor.require(coffer_domain::auth::Permission::Backup)?;
                state.sources.find(actor, &by.source).await?.id
            }
        };
        let job = state.backups.start(actor, id).await?;
        Ok(JobAccepted::from_status(job))
    }

    /// Restore a snapshot.
    ///
    /// Queues a restore of the snapshot (or of one path in it) into a directory under
    /// `restore.allowed_roots`, checked with symlinks resolved (422
    /// `restore_target_not_allowed` otherwise, nothing written); the target must not
    /// exist or be empty (422 `restore_target_not_empty`). Every chunk is authenticated
    /// before it is written. Answers 202 with the job.
    ///
    /// Permission: `restore`.
    #[oai(path = "/restore/:id", method = "post", operation_id = "startRestore")]
    async fn start_restore(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        body: Json<RestoreRequest>,
    ) -> Result<JobAccepted, ApiError> {
        let job = state
            .restores
            .start_restore(
                auth.actor(),
                &id.0,
                body.0.path.as_deref(),
                body.0.target.as_deref(),
            )
            .await?;
        Ok(JobAccepted::from_status(job))
    }

    /// List snapshots.
    ///
    /// Newest first, filtered by source, status (`ok`, `partial`) and start time (`from`
    /// inclusive, `to` exclusive, RFC 3339); `limit` (1–1000, default 50) and `offset`
    /// page through them.
    ///
    /// Permission: `view`.
    #[oai(path = "/backups", method = "get", operation_id = "listBackups")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        source_id: Query<Option<i64>>,
        #[oai(validator(max_length = 32))] status: Query<Option<String>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u64>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))] offset: Query<
            Option<u64>,
        >,
    ) -> Result<Json<BackupPage>, ApiError> {
        let status = match status.0.as_deref().map(str::parse::<SnapshotStatus>) {
            None => None,
            Some(Ok(status)) => Some(status),
            Some(Err(_)) => {
                // No snapshot has any other status: the page is empty, as a filter
                // that matches nothing answers.
                auth.actor()
                    .require(coffer_domain::auth::Permission::View)?;
                return Ok(Json(BackupPage {
                    items: Vec::new(),
                    total: 0,
                }));
            }
        };
        let filter = BackupFilter {
            source_id: source_id.0.map(SourceId::new),
            status,
            from: from.0,
            to: to.0,
            limit: limit.0.unwrap_or(50),
            offset: offset.0.unwrap_or(0),
        };
        let page = state.catalog.list(auth.actor(), filter).await?;
        Ok(Json(BackupPage {
            total: page.total,
            items: page.items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Get a snapshot.
    ///
    /// Every catalog field: sizes, counts, timings, warnings, verification state.
    ///
    /// Permission: `view`.
    #[oai(path = "/backups/:id", method = "get", operation_id = "getBackup")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<BackupDto>, ApiError> {
        Ok(Json(state.catalog.find(auth.actor(), &id.0).await?.into()))
    }

    /// Delete a snapshot.
    ///
    /// Removes it from the catalog and the repository; the space its data used is
    /// reclaimed by garbage collection. 409 `protected` for a protected snapshot.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/backups/:id",
        method = "delete",
        operation_id = "deleteBackup"
    )]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<NoContent, ApiError> {
        state.catalog.delete(auth.actor(), &id.0).await?;
        Ok(NoContent::Done)
    }

    /// Protect a snapshot.
    ///
    /// Protected snapshots are never removed by retention and cannot be deleted.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/backups/:id/protect",
        method = "post",
        operation_id = "protectBackup"
    )]
    async fn protect(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<BackupDto>, ApiError> {
        let e = state
            .catalog
            .set_protected(auth.actor(), &id.0, true)
            .await?;
        Ok(Json(e.into()))
    }

    /// Unprotect a snapshot.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/backups/:id/unprotect",
        method = "post",
        operation_id = "unprotectBackup"
    )]
    async fn unprotect(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<BackupDto>, ApiError> {
        let e = state
            .catalog
            .set_protected(auth.actor(), &id.0, false)
            .await?;
        Ok(Json(e.into()))
    }

    /// Verify a snapshot.
    ///
    /// Queues a check that everything the snapshot references is present and intact;
    /// with `read_data=true` every data chunk is also read and authenticated (slow).
    /// The result is recorded on the snapshot. Answers 202 with the job.
    ///
    /// Permission: `restore`.
    #[oai(
        path = "/backups/:id/verify",
        method = "post",
        operation_id = "startVerify"
    )]
    async fn verify(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        read_data: Query<Option<bool>>,
    ) -> Result<JobAccepted, ApiError> {
        let job = state
            .restores
            .start_verify(auth.actor(), &id.0, read_data.0.unwrap_or(false))
            .await?;
        Ok(JobAccepted::from_status(job))
    }

    /// Browse a snapshot.
    ///
    /// The entries of one directory (`path`, default the root), in name order; `limit`
    /// (1–1000, default 200) and `offset` page through huge directories. Audited: names
    /// reveal content.
    ///
    /// Permission: `restore`.
    #[oai(
        path = "/backups/:id/tree",
        method = "get",
        operation_id = "browseBackup"
    )]
    async fn tree(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        #[oai(validator(max_length = 4096))] path: Query<Option<String>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u64>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))] offset: Query<
            Option<u64>,
        >,
    ) -> Result<Json<TreePage>, ApiError> {
        let page = state
            .catalog
            .browse(
                auth.actor(),
                &id.0,
                path.0.as_deref(),
                Some(Paging {
                    limit: limit.0.unwrap_or(200),
                    offset: offset.0.unwrap_or(0),
                }),
            )
            .await?;
        Ok(Json(page.into()))
    }

    /// Download from a snapshot.
    ///
    /// A file or a directory (`path`, default everything) as a `tar` (default) or `zip`
    /// archive, streamed as it is read (each chunk authenticated first) with a
    /// `Content-Disposition` file name. Audited as a read of backup contents. At most
    /// `server.max_downloads` downloads stream at once (default 8), and at most
    /// `server.max_downloads_per_user` of one user (default 2): 429 `too_many_downloads`
    /// beyond. A client that reads nothing for two minutes is dropped. A download that
    /// fails midway ends the connection without completing the archive. `HEAD` answers
    /// with the headers only: it reads no content and is not audited.
    ///
    /// Permission: `restore`.
    #[oai(
        path = "/backups/:id/download",
        method = "get",
        operation_id = "downloadBackup"
    )]
    async fn download(
        &self,
        req: &poem::Request,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        #[oai(validator(max_length = 4096))] path: Query<Option<String>>,
        format: Query<Option<ArchiveFormatDto>>,
    ) -> Result<Download, ApiError> {
        let format = match format.0.unwrap_or(ArchiveFormatDto::Tar) {
            ArchiveFormatDto::Tar => ArchiveFormat::Tar,
            ArchiveFormatDto::Zip => ArchiveFormat::Zip,
        };
        if crate::middleware::is_head(req) {
            let plan = state
                .catalog
                .plan_download(auth.actor(), &id.0, path.0.as_deref(), format)
                .await?;
            return Ok(Download::Archive(
                Binary(Body::empty()),
                super::dto::attachment(&plan.filename),
            ));
        }
        let actor = auth.actor().clone();
        let permit = match state.downloads.try_acquire(&actor.username) {
            Ok(slot) => slot,
            Err(NoSlot::Total(n)) => {
                return Err(ApiError::request(
                    RequestError::TooManyDownloads,
                    format!("{n} downloads are already streaming; try again shortly"),
                ));
            }
            Err(NoSlot::PerUser(n)) => {
                return Err(ApiError::request(
                    RequestError::TooManyDownloads,
                    format!(
                        "you already have {n} downloads streaming (server.max_downloads_per_user); \
                         try again when one has finished"
                    ),
                ));
            }
        };
        let plan = state
            .catalog
            .prepare_download(&actor, &id.0, path.0.as_deref(), format)
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
        let writer = ChannelWriter {
            tx: tx.clone(),
            handle: tokio::runtime::Handle::current(),
            buf: Vec::with_capacity(PIECE),
        };
        let disposition = super::dto::attachment(&plan.filename);
        let catalog = Arc::clone(&state.catalog);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = catalog
                .stream_download(&actor, &plan, Box::new(writer))
                .await
            {
                tracing::warn!(snapshot = %plan.snapshot_id, error = %e, "download stopped");
                // The client sees a cut-off body rather than a complete-looking archive.
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Download::Archive(
            Binary(Body::from_bytes_stream(stream)),
            disposition,
        ))
    }
}
