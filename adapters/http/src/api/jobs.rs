use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_application::JobStatus;
use coffer_domain::joblog::{LogLevel, LogLine};
use coffer_domain::jobs::{JobFilter, JobKind, JobParams, JobResult, JobState};
use coffer_domain::{JobId, SourceId};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum JobKindDto {
    Backup,
    Restore,
    Verify,
    Prune,
    Check,
    /// A copy into a replica.
    Copy,
    /// An import of the Python prototype's installation.
    Import,
}

impl From<JobKind> for JobKindDto {
    fn from(k: JobKind) -> Self {
        match k {
            JobKind::Backup => Self::Backup,
            JobKind::Restore => Self::Restore,
            JobKind::Verify => Self::Verify,
            JobKind::Prune => Self::Prune,
            JobKind::Check => Self::Check,
            JobKind::Copy => Self::Copy,
            JobKind::Import => Self::Import,
        }
    }
}

impl From<JobKindDto> for JobKind {
    fn from(k: JobKindDto) -> Self {
        match k {
            JobKindDto::Backup => Self::Backup,
            JobKindDto::Restore => Self::Restore,
            JobKindDto::Verify => Self::Verify,
            JobKindDto::Prune => Self::Prune,
            JobKindDto::Check => Self::Check,
            JobKindDto::Copy => Self::Copy,
            JobKindDto::Import => Self::Import,
        }
    }
}

/// Where a job is: `queued` and `running` change; the other three are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum JobStateDto {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<JobState> for JobStateDto {
    fn from(s: JobState) -> Self {
        match s {
            JobState::Queued => Self::Queued,
            JobState::Running => Self::Running,
            JobState::Succeeded => Self::Succeeded,
            JobState::Failed => Self::Failed,
            JobState::Cancelled => Self::Cancelled,
        }
    }
}

impl From<JobStateDto> for JobState {
    fn from(s: JobStateDto) -> Self {
        match s {
            JobStateDto::Queued => Self::Queued,
            JobStateDto::Running => Self::Running,
            JobStateDto::Succeeded => Self::Succeeded,
            JobStateDto::Failed => Self::Failed,
            JobStateDto::Cancelled => Self::Cancelled,
        }
    }
}

/// What the job was asked to do; the fields of its kind are set.
#[derive(Debug, Default, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobParamsDto {
    /// backup: the source's name when the job was queued.
    pub source_name: Option<String>,
    /// restore: the path inside the snapshot (everything when absent).
    pub path: Option<String>,
    /// restore: the directory on the server, symlinks resolved.
    pub target: Option<String>,
    /// verify: whether every data chunk is read, not only the structure.
    pub read_data: Option<bool>,
    /// check: the share of the stored data re-read, in percent.
    pub share_percent: Option<u8>,
    /// copy: the replica's name.
    pub replica: Option<String>,
    /// import: the installation directory on the server.
    pub dir: Option<String>,
    /// import: the database file named.
    pub db: Option<String>,
    /// import: the source the snapshots go to (absent: `prototype`).
    pub source: Option<String>,
    /// import: nothing is written, the result says what would be.
    pub dry_run: Option<bool>,
    /// import: the prototype's retention and quota are adopted.
    pub adopt_settings: Option<bool>,
}

/// Counters of the job's work.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobProgressDto {
    pub files_done: u64,
    pub bytes_done: u64,
    /// Absent until known.
    pub files_total: Option<u64>,
    /// Absent until known.
    pub bytes_total: Option<u64>,
    /// The totals are complete (a backup counts its source while reading it).
    pub totals_final: bool,
    /// Bytes per second since the job started (running jobs).
    pub rate_bytes_per_sec: Option<f64>,
    /// Seconds left at the current rate, once the totals are final.
    pub eta_secs: Option<u64>,
}

/// What a finished job produced; the fields of its kind are set.
#[derive(Debug, Default, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobResultDto {
    /// The snapshot made (backup) or worked on (restore, verify).
    pub snapshot_id: Option<String>,
    /// backup: `ok`, or `partial` when some entries could not be read (see `warnings`).
    pub status: Option<String>,
    pub files: Option<u64>,
    /// restore: directories written.
    pub dirs: Option<u64>,
    /// restore: symlinks written.
    pub symlinks: Option<u64>,
    /// restore: names restored as hard links to a file restored before them (counted in
    /// `files`).
    pub hardlinks: Option<u64>,
    /// Logical bytes of the files backed up or restored.
    pub bytes: Option<u64>,
    /// backup: new bytes stored (before compression) after deduplication.
    pub bytes_added: Option<u64>,
    /// backup: entries that could not be read, or changed while being read; restore:
    /// metadata the target refused (extended attributes, ACLs), the data being there.
    pub warnings: Option<Vec<String>>,
    /// restore: where the files went.
    pub target: Option<String>,
    /// verify: the snapshot is intact.
    pub ok: Option<bool>,
    /// verify: what is wrong.
    pub problems: Option<Vec<String>>,
    /// verify: paths whose content is damaged or missing.
    pub damaged_files: Option<Vec<String>>,
    /// verify, check: bytes read and authenticated.
    pub bytes_read: Option<u64>,
    /// prune, check: snapshots whose data was kept or checked.
    pub snapshots: Option<u64>,
    /// prune: packs deleted whole (nothing in them was used).
    pub packs_deleted: Option<u64>,
    /// prune: mostly unused packs whose live data was copied before they were deleted.
    pub packs_repacked: Option<u64>,
    /// prune: bytes in storage before.
    pub bytes_before: Option<u64>,
    /// prune: bytes in storage after.
    pub bytes_after: Option<u64>,
    /// check: which slice of the data was re-read (0-based), of `slices`.
    pub slice: Option<u32>,
    /// check: slices that together cover all stored data.
    pub slices: Option<u32>,
    /// check: packs read and authenticated.
    pub packs_read: Option<u64>,
    /// check: snapshots that reference damaged or missing data.
    pub damaged_snapshots: Option<Vec<String>>,
    /// copy: the replica's name.
    pub replica: Option<String>,
    /// copy: snapshots on the replica once the copy ended.
    pub replica_snapshots: Option<u64>,
    /// copy: objects written to the replica (each read back and compared).
    pub objects_copied: Option<u64>,
    /// copy: their bytes.
    pub bytes_copied: Option<u64>,
    /// copy: objects the replica held already (not sent again).
    pub objects_present: Option<u64>,
    /// copy: snapshots the repository's retention removed, deleted from the replica.
    pub snapshots_deleted: Option<u64>,
    /// import: nothing was written; the counts say what would be.
    pub dry_run: Option<bool>,
    /// import: the source the snapshots went to.
    pub source: Option<String>,
    /// import: backups imported as snapshots.
    pub imported: Option<u64>,
    /// import: backups an earlier import brought over already.
    pub already_imported: Option<u64>,
    /// import: each backup not imported, and why (`backup 6 (file): ...`).
    pub skipped: Option<Vec<String>>,
    /// import: users imported.
    pub users: Option<u64>,
    /// import: users not imported as they were, and why (the default password, a name
    /// Coffer does not accept, a user that exists).
    pub user_notes: Option<Vec<String>>,
    /// import: rows of the prototype's audit log brought over.
    pub audit_rows: Option<u64>,
    /// import: what adopting the prototype's settings changed.
    pub settings: Option<Vec<String>>,
}

impl From<JobResult> for JobResultDto {
    fn from(r: JobResult) -> Self {
        match r {
            JobResult::Backup {
                snapshot_id,
                status,
                files,
                bytes,
                bytes_added,
                warnings,
            } => Self {
                snapshot_id: Some(snapshot_id.to_string()),
                status: Some(status.as_str().to_owned()),
                files: Some(files),
                bytes: Some(bytes),
                bytes_added: Some(bytes_added),
                warnings: Some(warnings),
                ..Self::default()
            },
            JobResult::Restore {
                snapshot_id,
                target,
                files,
                dirs,
                symlinks,
                hardlinks,
                bytes,
                warnings,
            } => Self {
                snapshot_id: Some(snapshot_id.to_string()),
                target: Some(target),
                files: Some(files),
                dirs: Some(dirs),
                symlinks: Some(symlinks),
                hardlinks: Some(hardlinks),
                bytes: Some(bytes),
                warnings: Some(warnings),
                ..Self::default()
            },
            JobResult::Verify {
                snapshot_id,
                ok,
                problems,
                damaged_files,
                bytes_read,
            } => Self {
                snapshot_id: Some(snapshot_id.to_string()),
                ok: Some(ok),
                problems: Some(problems),
                damaged_files: Some(damaged_files),
                bytes_read: Some(bytes_read),
                ..Self::default()
            },
            JobResult::Prune {
                snapshots,
                packs_deleted,
                packs_repacked,
                bytes_before,
                bytes_after,
            } => Self {
                snapshots: Some(snapshots),
                packs_deleted: Some(packs_deleted),
                packs_repacked: Some(packs_repacked),
                bytes_before: Some(bytes_before),
                bytes_after: Some(bytes_after),
                ..Self::default()
            },
            JobResult::Check {
                ok,
                snapshots,
                slice,
                slices,
                packs_read,
                bytes_read,
                problems,
                damaged_snapshots,
            } => Self {
                ok: Some(ok),
                snapshots: Some(snapshots),
                slice: Some(slice),
                slices: Some(slices),
                packs_read: Some(packs_read),
                bytes_read: Some(bytes_read),
                problems: Some(problems),
                damaged_snapshots: Some(damaged_snapshots),
                ..Self::default()
            },
            JobResult::Copy {
                replica,
                snapshots,
                replica_snapshots,
                objects_copied,
                bytes_copied,
                objects_present,
                snapshots_deleted,
            } => Self {
                replica: Some(replica),
                snapshots: Some(snapshots),
                replica_snapshots: Some(replica_snapshots),
                objects_copied: Some(objects_copied),
                bytes_copied: Some(bytes_copied),
                objects_present: Some(objects_present),
                snapshots_deleted: Some(snapshots_deleted),
                ..Self::default()
            },
            JobResult::Import {
                dry_run,
                source,
                imported,
                already_imported,
                skipped,
                users,
                user_notes,
                audit_rows,
                settings,
            } => Self {
                dry_run: Some(dry_run),
                source: Some(source),
                imported: Some(imported),
                already_imported: Some(already_imported),
                skipped: Some(skipped),
                users: Some(users),
                user_notes: Some(user_notes),
                audit_rows: Some(audit_rows),
                settings: Some(settings),
                ..Self::default()
            },
        }
    }
}

/// Why a job failed.
#[derive(Debug, Object)]
pub struct JobErrorDto {
    /// Stable code (`not_found`, `damaged`, `interrupted`, `internal`, ...).
    pub code: String,
    pub message: String,
}

/// A background job (backup, restore, verify, prune, check). `result` is set when `state` is
/// `succeeded`, `error` when it is `failed`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct JobDto {
    pub id: String,
    pub kind: JobKindDto,
    pub state: JobStateDto,
    /// backup: the source (absent once the source is deleted).
    pub source_id: Option<i64>,
    /// The snapshot made (backup, once done) or worked on.
    pub snapshot_id: Option<String>,
    pub requested_by: String,
    pub params: JobParamsDto,
    pub progress: JobProgressDto,
    // `result` and `error` are described on the struct: a doc comment on a field whose type
    // is a schema of its own becomes `allOf: [$ref, {description}]`, which generators turn
    // into a copy of the type.
    pub result: Option<JobResultDto>,
    pub error: Option<JobErrorDto>,
    /// A cancel was asked for and the job has not stopped yet.
    pub cancel_requested: bool,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<JobStatus> for JobDto {
    fn from(s: JobStatus) -> Self {
        let job = s.job;
        let params = match &job.params {
            JobParams::Backup { source_name, .. } => JobParamsDto {
                source_name: Some(source_name.clone()),
                ..JobParamsDto::default()
            },
            JobParams::Restore { path, target, .. } => JobParamsDto {
                path: path.clone(),
                target: Some(target.clone()),
                ..JobParamsDto::default()
            },
            JobParams::Verify { read_data, .. } => JobParamsDto {
                read_data: Some(*read_data),
                ..JobParamsDto::default()
            },
            JobParams::Prune => JobParamsDto::default(),
            JobParams::Check { share_percent } => JobParamsDto {
                share_percent: Some(*share_percent),
                ..JobParamsDto::default()
            },
            JobParams::Copy { replica } => JobParamsDto {
                replica: Some(replica.clone()),
                ..JobParamsDto::default()
            },
            JobParams::Import {
                dir,
                db,
                source,
                dry_run,
                adopt_settings,
            } => JobParamsDto {
                dir: Some(dir.clone()),
                db: db.clone(),
                source: source.clone(),
                dry_run: Some(*dry_run),
                adopt_settings: Some(*adopt_settings),
                ..JobParamsDto::default()
            },
        };
        let p = job.progress;
        Self {
            id: job.id.to_string(),
            kind: job.kind().into(),
            state: job.state.into(),
            source_id: job.source_id.map(SourceId::get),
            snapshot_id: job.snapshot_id.map(|id| id.to_string()),
            requested_by: job.requested_by,
            params,
            progress: JobProgressDto {
                files_done: p.files_done,
                bytes_done: p.bytes_done,
                files_total: p.files_total,
                bytes_total: p.bytes_total,
                totals_final: p.totals_final,
                rate_bytes_per_sec: s.rate_bytes_per_sec,
                eta_secs: s.eta_secs,
            },
            result: job.result.map(Into::into),
            error: job.error.map(|e| JobErrorDto {
                code: e.code,
                message: e.message,
            }),
            cancel_requested: s.cancel_requested,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
        }
    }
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum LogLevelDto {
    Info,
    Warning,
    Error,
}

impl From<LogLevel> for LogLevelDto {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Info => Self::Info,
            LogLevel::Warning => Self::Warning,
            LogLevel::Error => Self::Error,
        }
    }
}

/// One line of a job's log.
#[derive(Debug, Object)]
pub struct JobLogLineDto {
    /// 1, 2, 3, ... in the order the lines were written.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub level: LogLevelDto,
    pub message: String,
}

impl From<LogLine> for JobLogLineDto {
    fn from(l: LogLine) -> Self {
        Self {
            seq: l.seq,
            at: l.at,
            level: l.level.into(),
            message: l.message,
        }
    }
}

/// A page of a job's log, with the job's `state` when the page was read.
#[derive(Debug, Object)]
pub struct JobLogDto {
    pub job_id: String,
    pub state: JobStateDto,
    pub lines: Vec<JobLogLineDto>,
    /// What to send as `after` for the next lines: the last line's `seq` (or the
    /// `after` asked for, when there was none).
    pub next_after: u64,
    /// The job has ended and its whole log has been read: nothing more will come.
    pub complete: bool,
}

/// A page of jobs, newest first.
#[derive(Debug, Object)]
pub struct JobPage {
    pub items: Vec<JobDto>,
    /// Jobs matching the filter, on every page.
    pub total: u64,
}

/// The answer to a request that starts a job.
#[derive(ApiResponse)]
pub enum JobAccepted {
    /// The job is queued (or already running); follow it at `GET /api/jobs/{id}`.
    #[oai(status = 202)]
    Job(
        Json<JobDto>,
        /// `/api/jobs/{id}` of the new job.
        #[oai(header = "Location")]
        String,
    ),
}

impl JobAccepted {
    pub fn from_status(s: JobStatus) -> Self {
        let location = format!("/api/jobs/{}", s.job.id);
        Self::Job(Json(s.into()), location)
    }
}

/// A job id from a path: a UUID, or the job cannot exist.
fn job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse::<uuid::Uuid>()
        .map(JobId::from_uuid)
        .map_err(|_| coffer_application::CommonError::NotFound(format!("no job {raw}")).into())
}

pub struct JobsApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Jobs")]
impl JobsApi {
    /// List jobs.
    ///
    /// Newest first, filtered by state, kind, source, requester (`user`: a username, or
    /// `scheduler` for scheduled runs) and creation time (`from` inclusive, `to`
    /// exclusive, RFC 3339); `limit` (1–500, default 50) and `offset` page through them.
    /// 422 `invalid_period` when `from` is after `to`.
    ///
    /// Permission: `view`.
    #[oai(path = "/jobs", method = "get", operation_id = "listJobs")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        #[oai(name = "state")] job_state: Query<Option<JobStateDto>>,
        kind: Query<Option<JobKindDto>>,
        source_id: Query<Option<i64>>,
        #[oai(validator(min_length = 1, max_length = 128))] user: Query<Option<String>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))] offset: Query<
            Option<u64>,
        >,
    ) -> Result<Json<JobPage>, ApiError> {
        let filter = JobFilter {
            state: job_state.0.map(Into::into),
            kind: kind.0.map(Into::into),
            source_id: source_id.0.map(SourceId::new),
            requested_by: user.0,
            from: from.0,
            to: to.0,
            limit: limit.0.unwrap_or(50),
            offset: offset.0.unwrap_or(0),
        };
        let page = state.jobs.list(auth.actor(), filter).await?;
        Ok(Json(JobPage {
            total: page.total,
            items: page.items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Get a job.
    ///
    /// State, live progress (files and bytes done and total, rate, ETA), timings, and the
    /// result or the error.
    ///
    /// Permission: `view`.
    #[oai(path = "/jobs/:id", method = "get", operation_id = "getJob")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<Json<JobDto>, ApiError> {
        let job = state.jobs.get(auth.actor(), job_id(&id.0)?).await?;
        Ok(Json(job.into()))
    }

    /// Read a job's log.
    ///
    /// Its lines in order (start, phases, warnings such as unreadable or changed files,
    /// the outcome and a summary): up to `limit` (1–1000, default 500) lines after line
    /// `after` (default 0: from the start). Follow a running job by asking again with
    /// the answer's `next_after` every second or two until `complete` is true (the job
    /// has ended and every line has been read). A log keeps at most 2,000 lines and
    /// 512 KiB (its last line says how many more were left out) plus its final lines.
    /// Without the `restore` permission, lines that name what is in a backup (a file, a
    /// restore target) read `(hidden: needs the restore permission)`.
    ///
    /// Permission: `view`.
    #[oai(path = "/jobs/:id/log", method = "get", operation_id = "getJobLog")]
    async fn log(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))] after: Query<
            Option<u64>,
        >,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<u64>>,
    ) -> Result<Json<JobLogDto>, ApiError> {
        let (status, page) = state
            .jobs
            .log(
                auth.actor(),
                job_id(&id.0)?,
                after.0.unwrap_or(0),
                limit.0.unwrap_or(500),
            )
            .await?;
        Ok(Json(JobLogDto {
            job_id: status.job.id.to_string(),
            state: status.job.state.into(),
            lines: page.lines.into_iter().map(JobLogLineDto::from).collect(),
            next_after: page.next_after,
            complete: page.complete,
        }))
    }

    /// Cancel a job.
    ///
    /// A queued job ends at once; a running one stops at its next safe point (a cancelled
    /// backup leaves no snapshot) and reads `cancelled` when it has. 409 `job_finished`
    /// for a job that has already ended. Needs the permission that starting the job
    /// needs (`backup` for a backup, `restore` for a restore or verify).
    ///
    /// Permission: `view`.
    #[oai(path = "/jobs/:id/cancel", method = "post", operation_id = "cancelJob")]
    async fn cancel(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<String>,
    ) -> Result<JobAccepted, ApiError> {
        let job = state.jobs.cancel(auth.actor(), job_id(&id.0)?).await?;
        Ok(JobAccepted::from_status(job))
    }
}
