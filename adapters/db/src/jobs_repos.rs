//! Job records.
//!
//! A job's parameters, progress, result and error are JSON text in their columns. The
//! JSON shapes are this adapter's own (the domain types carry no serde) and are tagged
//! with the job kind, `{"kind":"backup",...}`, so that a later kind adds a variant
//! without touching the rows already stored. A row this version cannot read — an
//! unknown kind, state or shape — is reported as `RepoError::Corrupt` naming the job.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::auth::{Actor, ClientInfo, Role};
use coffer_domain::engine::SnapshotStatus;
use coffer_domain::joblog::{JobLogRepository, LogLevel, LogLine};
use coffer_domain::jobs::{
    Job, JobError, JobFilter, JobKind, JobParams, JobProgress, JobResult, JobState,
};
use coffer_domain::ports::{
    ClaimedJob, Enqueued, Heartbeat, JobRepository, Lease, Page, RepoError,
};
use coffer_domain::{InvalidSnapshotId, JobId, SnapshotId, SourceId, UnknownName, UserId};
use sea_orm::sea_query::{Expr, ExprTrait as _, LockBehavior, LockType};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait as _, TransactionTrait,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::entities::{job_logs, jobs};
use crate::error::{is_foreign_key_violation, repo_err};
use crate::page::newest_first;

/// A snapshot id in the JSON columns: its text, checked when read.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct SnapshotIdJson(SnapshotId);

impl TryFrom<String> for SnapshotIdJson {
    type Error = InvalidSnapshotId;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        SnapshotId::parse(&text).map(Self)
    }
}

impl From<SnapshotIdJson> for String {
    fn from(id: SnapshotIdJson) -> Self {
        id.0.to_string()
    }
}

/// A snapshot's status in the JSON columns (`ok`, `partial`), checked when read.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
struct StatusJson(SnapshotStatus);

impl TryFrom<String> for StatusJson {
    type Error = UnknownName;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse().map(Self)
    }
}

impl From<StatusJson> for String {
    fn from(status: StatusJson) -> Self {
        status.0.as_str().to_owned()
    }
}

/// `jobs.params`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ParamsJson {
    Backup {
        source_id: i64,
        source_name: String,
    },
    Restore {
        snapshot_id: SnapshotIdJson,
        path: Option<String>,
        target: String,
    },
    Verify {
        snapshot_id: SnapshotIdJson,
        read_data: bool,
    },
    Prune,
    Check {
        share_percent: u8,
    },
    Copy {
        replica: String,
    },
    Import {
        dir: String,
        db: Option<String>,
        source: Option<String>,
        dry_run: bool,
        adopt_settings: bool,
    },
}

impl From<&JobParams> for ParamsJson {
    fn from(p: &JobParams) -> Self {
        match p {
            JobParams::Backup {
                source_id,
                source_name,
            } => Self::Backup {
                source_id: source_id.get(),
                source_name: source_name.clone(),
            },
            JobParams::Restore {
                snapshot_id,
                path,
                target,
            } => Self::Restore {
                snapshot_id: SnapshotIdJson(snapshot_id.clone()),
                path: path.clone(),
                target: target.clone(),
            },
            JobParams::Verify {
                snapshot_id,
                read_data,
            } => Self::Verify {
                snapshot_id: SnapshotIdJson(snapshot_id.clone()),
                read_data: *read_data,
            },
            JobParams::Prune => Self::Prune,
            JobParams::Check { share_percent } => Self::Check {
                share_percent: *share_percent,
            },
            JobParams::Copy { replica } => Self::Copy {
                replica: replica.clone(),
            },
            JobParams::Import {
                dir,
                db,
                source,
                dry_run,
                adopt_settings,
            } => Self::Import {
                dir: dir.clone(),
                db: db.clone(),
                source: source.clone(),
                dry_run: *dry_run,
                adopt_settings: *adopt_settings,
            },
        }
    }
}

impl From<ParamsJson> for JobParams {
    fn from(p: ParamsJson) -> Self {
        match p {
            ParamsJson::Backup {
                source_id,
                source_name,
            } => Self::Backup {
                source_id: SourceId::new(source_id),
                source_name,
            },
            ParamsJson::Restore {
                snapshot_id,
                path,
                target,
            } => Self::Restore {
                snapshot_id: snapshot_id.0,
                path,
                target,
            },
            ParamsJson::Verify {
                snapshot_id,
                read_data,
            } => Self::Verify {
                snapshot_id: snapshot_id.0,
                read_data,
            },
            ParamsJson::Prune => Self::Prune,
            ParamsJson::Check { share_percent } => Self::Check { share_percent },
            ParamsJson::Copy { replica } => Self::Copy { replica },
            ParamsJson::Import {
                dir,
                db,
                source,
                dry_run,
                adopt_settings,
            } => Self::Import {
                dir,
                db,
                source,
                dry_run,
                adopt_settings,
            },
        }
    }
}

/// `jobs.progress` (the same counters for every kind).
#[derive(Serialize, Deserialize)]
struct ProgressJson {
    files_done: u64,
    bytes_done: u64,
    files_total: Option<u64>,
    bytes_total: Option<u64>,
    totals_final: bool,
}

impl From<&JobProgress> for ProgressJson {
    fn from(p: &JobProgress) -> Self {
        Self {
            files_done: p.files_done,
            bytes_done: p.bytes_done,
            files_total: p.files_total,
            bytes_total: p.bytes_total,
            totals_final: p.totals_final,
        }
    }
}

impl From<ProgressJson> for JobProgress {
    fn from(p: ProgressJson) -> Self {
        Self {
            files_done: p.files_done,
            bytes_done: p.bytes_done,
            files_total: p.files_total,
            bytes_total: p.bytes_total,
            totals_final: p.totals_final,
        }
    }
}

/// `jobs.result`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ResultJson {
    Backup {
        snapshot_id: SnapshotIdJson,
        status: StatusJson,
        files: u64,
        bytes: u64,
        bytes_added: u64,
        warnings: Vec<String>,
    },
    Restore {
        snapshot_id: SnapshotIdJson,
        target: String,
        files: u64,
        dirs: u64,
        symlinks: u64,
        /// Absent in results stored before hard links were restored.
        #[serde(default)]
        hardlinks: u64,
        bytes: u64,
        #[serde(default)]
        warnings: Vec<String>,
    },
    Verify {
        snapshot_id: SnapshotIdJson,
        ok: bool,
        problems: Vec<String>,
        damaged_files: Vec<String>,
        bytes_read: u64,
    },
    Prune {
        snapshots: u64,
        packs_deleted: u64,
        packs_repacked: u64,
        bytes_before: u64,
        bytes_after: u64,
    },
    Check {
        ok: bool,
        snapshots: u64,
        slice: u32,
        slices: u32,
        packs_read: u64,
        bytes_read: u64,
        problems: Vec<String>,
        damaged_snapshots: Vec<String>,
    },
    Copy {
        replica: String,
        snapshots: u64,
        replica_snapshots: u64,
        objects_copied: u64,
        bytes_copied: u64,
        objects_present: u64,
        snapshots_deleted: u64,
    },
    Import {
        dry_run: bool,
        source: String,
        imported: u64,
        already_imported: u64,
        skipped: Vec<String>,
        users: u64,
        user_notes: Vec<String>,
        audit_rows: u64,
        settings: Vec<String>,
    },
}

impl From<&JobResult> for ResultJson {
    fn from(r: &JobResult) -> Self {
        match r.clone() {
            JobResult::Backup {
                snapshot_id,
                status,
                files,
                bytes,
                bytes_added,
                warnings,
            } => Self::Backup {
                snapshot_id: SnapshotIdJson(snapshot_id),
                status: StatusJson(status),
                files,
                bytes,
                bytes_added,
                warnings,
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
            } => Self::Restore {
                snapshot_id: SnapshotIdJson(snapshot_id),
                target,
                files,
                dirs,
                symlinks,
                hardlinks,
                bytes,
                warnings,
            },
            JobResult::Verify {
                snapshot_id,
                ok,
                problems,
                damaged_files,
                bytes_read,
            } => Self::Verify {
                snapshot_id: SnapshotIdJson(snapshot_id),
                ok,
                problems,
                damaged_files,
                bytes_read,
            },
            JobResult::Prune {
                snapshots,
                packs_deleted,
                packs_repacked,
                bytes_before,
                bytes_after,
            } => Self::Prune {
                snapshots,
                packs_deleted,
                packs_repacked,
                bytes_before,
                bytes_after,
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
            } => Self::Check {
                ok,
                snapshots,
                slice,
                slices,
                packs_read,
                bytes_read,
                problems,
                damaged_snapshots,
            },
            JobResult::Copy {
                replica,
                snapshots,
                replica_snapshots,
                objects_copied,
                bytes_copied,
                objects_present,
                snapshots_deleted,
            } => Self::Copy {
                replica,
                snapshots,
                replica_snapshots,
                objects_copied,
                bytes_copied,
                objects_present,
                snapshots_deleted,
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
            } => Self::Import {
                dry_run,
                source,
                imported,
                already_imported,
                skipped,
                users,
                user_notes,
                audit_rows,
                settings,
            },
        }
    }
}

impl From<ResultJson> for JobResult {
    fn from(r: ResultJson) -> Self {
        match r {
            ResultJson::Backup {
                snapshot_id,
                status,
                files,
                bytes,
                bytes_added,
                warnings,
            } => Self::Backup {
                snapshot_id: snapshot_id.0,
                status: status.0,
                files,
                bytes,
                bytes_added,
                warnings,
            },
            ResultJson::Restore {
                snapshot_id,
                target,
                files,
                dirs,
                symlinks,
                hardlinks,
                bytes,
                warnings,
            } => Self::Restore {
                snapshot_id: snapshot_id.0,
                target,
                files,
                dirs,
                symlinks,
                hardlinks,
                bytes,
                warnings,
            },
            ResultJson::Verify {
                snapshot_id,
                ok,
                problems,
                damaged_files,
                bytes_read,
            } => Self::Verify {
                snapshot_id: snapshot_id.0,
                ok,
                problems,
                damaged_files,
                bytes_read,
            },
            ResultJson::Prune {
                snapshots,
                packs_deleted,
                packs_repacked,
                bytes_before,
                bytes_after,
            } => Self::Prune {
                snapshots,
                packs_deleted,
                packs_repacked,
                bytes_before,
                bytes_after,
            },
            ResultJson::Check {
                ok,
                snapshots,
                slice,
                slices,
                packs_read,
                bytes_read,
                problems,
                damaged_snapshots,
            } => Self::Check {
                ok,
                snapshots,
                slice,
                slices,
                packs_read,
                bytes_read,
                problems,
                damaged_snapshots,
            },
            ResultJson::Copy {
                replica,
                snapshots,
                replica_snapshots,
                objects_copied,
                bytes_copied,
                objects_present,
                snapshots_deleted,
            } => Self::Copy {
                replica,
                snapshots,
                replica_snapshots,
                objects_copied,
                bytes_copied,
                objects_present,
                snapshots_deleted,
            },
            ResultJson::Import {
                dry_run,
                source,
                imported,
                already_imported,
                skipped,
                users,
                user_notes,
                audit_rows,
                settings,
            } => Self::Import {
                dry_run,
                source,
                imported,
                already_imported,
                skipped,
                users,
                user_notes,
                audit_rows,
                settings,
            },
        }
    }
}

/// `jobs.error`.
#[derive(Serialize, Deserialize)]
struct ErrorJson {
    code: String,
    message: String,
}

impl From<&JobError> for ErrorJson {
    fn from(e: &JobError) -> Self {
        Self {
            code: e.code.clone(),
            message: e.message.clone(),
        }
    }
}

impl From<ErrorJson> for JobError {
    fn from(e: ErrorJson) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

/// `jobs.actor`: who a queued job runs as.
#[derive(Serialize, Deserialize)]
struct ActorJson {
    username: String,
    user_id: Option<i64>,
    role: String,
    ip: Option<String>,
    user_agent: Option<String>,
    /// The token it was queued with, if not a session (absent in older rows).
    #[serde(default)]
    credential: Option<String>,
}

impl From<&Actor> for ActorJson {
    fn from(a: &Actor) -> Self {
        Self {
            username: a.username.clone(),
            user_id: a.user_id.map(UserId::get),
            role: a.role.as_str().to_owned(),
            ip: a.client.ip.clone(),
            user_agent: a.client.user_agent.clone(),
            credential: a.client.credential.clone(),
        }
    }
}

/// The actor of the row `row`, or — for a job queued before actors were stored — one
/// named after its requester with no rights beyond viewing.
fn actor_of(row: &jobs::Model) -> Result<Actor, RepoError> {
    let Some(json) = row.actor.as_deref() else {
        return Ok(Actor {
            username: row.requested_by.clone(),
            user_id: None,
            role: Role::Viewer,
            client: ClientInfo::default(),
        });
    };
    let a: ActorJson = decode(json, &row.id, "actor")?;
    Ok(Actor {
        role: a
            .role
            .parse()
            .map_err(|e| RepoError::Corrupt(format!("jobs.id={} actor role: {e}", row.id)))?,
        username: a.username,
        user_id: a.user_id.map(UserId::new),
        client: ClientInfo {
            ip: a.ip,
            user_agent: a.user_agent,
            credential: a.credential,
        },
    })
}

const QUEUED: &str = "queued";
const RUNNING: &str = "running";

fn encode<T: Serialize>(value: &T, what: &str) -> Result<String, RepoError> {
    serde_json::to_string(value)
        .map_err(|e| RepoError::Database(format!("cannot encode a job's {what}: {e}")))
}

fn decode<T: DeserializeOwned>(json: &str, id: &str, column: &str) -> Result<T, RepoError> {
    serde_json::from_str(json)
        .map_err(|e| RepoError::Corrupt(format!("jobs.id={id} {column}: {e}")))
}

/// The row for `job`. `source_id` is passed separately so that a write can drop a
/// reference to a source deleted meanwhile.
fn to_row(job: &Job, source_id: Option<SourceId>) -> Result<jobs::ActiveModel, RepoError> {
    Ok(jobs::ActiveModel {
        id: Set(job.id.to_string()),
        kind: Set(job.kind().as_str().to_owned()),
        state: Set(job.state.as_str().to_owned()),
        source_id: Set(source_id.map(SourceId::get)),
        snapshot_id: Set(job.snapshot_id.as_ref().map(ToString::to_string)),
        requested_by: Set(job.requested_by.clone()),
        params: Set(encode(&ParamsJson::from(&job.params), "parameters")?),
        progress: Set(Some(encode(
            &ProgressJson::from(&job.progress),
            "progress",
        )?)),
        result: Set(job
            .result
            .as_ref()
            .map(|r| encode(&ResultJson::from(r), "result"))
            .transpose()?),
        error: Set(job
            .error
            .as_ref()
            .map(|e| encode(&ErrorJson::from(e), "error"))
            .transpose()?),
        created_at: Set(job.created_at),
        started_at: Set(job.started_at),
        finished_at: Set(job.finished_at),
        // The queue's own columns are written by the queue's operations only.
        subject: NotSet,
        actor: NotSet,
        instance: NotSet,
        lease_until: NotSet,
        cancel_requested: NotSet,
    })
}

pub(crate) fn to_job(row: jobs::Model) -> Result<Job, RepoError> {
    let id = &row.id;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        RepoError::Corrupt(format!("jobs.id={id} {what}: {e}"))
    };
    let uuid = uuid::Uuid::parse_str(id).map_err(|e| corrupt("id", &e))?;
    let kind: JobKind = row.kind.parse().map_err(|e| corrupt("kind", &e))?;
    let state: JobState = row.state.parse().map_err(|e| corrupt("state", &e))?;
    let params: JobParams = decode::<ParamsJson>(&row.params, id, "params")?.into();
    if params.kind() != kind {
        return Err(RepoError::Corrupt(format!(
            "jobs.id={id} is a {kind} job with {} parameters",
            params.kind()
        )));
    }
    let progress = row
        .progress
        .as_deref()
        .map(|json| decode::<ProgressJson>(json, id, "progress"))
        .transpose()?
        .map(JobProgress::from)
        .unwrap_or_default();
    let result = row
        .result
        .as_deref()
        .map(|json| decode::<ResultJson>(json, id, "result"))
        .transpose()?
        .map(JobResult::from);
    let error = row
        .error
        .as_deref()
        .map(|json| decode::<ErrorJson>(json, id, "error"))
        .transpose()?
        .map(JobError::from);
    let snapshot_id = row
        .snapshot_id
        .as_deref()
        .map(SnapshotId::parse)
        .transpose()
        .map_err(|e| corrupt("snapshot_id", &e))?;
    Ok(Job {
        id: JobId::from_uuid(uuid),
        state,
        params,
        source_id: row.source_id.map(SourceId::new),
        snapshot_id,
        requested_by: row.requested_by,
        progress,
        result,
        error,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        cancel_requested: row.cancel_requested,
    })
}

/// `JobRepository` over the `jobs` table.
///
/// A job whose source has been deleted keeps its row with `source_id` `None` (the
/// foreign key is `ON DELETE SET NULL`); writing such a job again — its runner reporting
/// progress after the source went — stores `None` rather than failing.
#[derive(Clone)]
pub struct SeaJobRepository {
    conn: DatabaseConnection,
}

impl SeaJobRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// Overwrites the row `id` with `row`; whether there was one.
    async fn overwrite(&self, id: JobId, mut row: jobs::ActiveModel) -> Result<bool, DbErr> {
        row.id = NotSet;
        let result = jobs::Entity::update_many()
            .set(row)
            .filter(jobs::Column::Id.eq(id.to_string()))
            .exec(&self.conn)
            .await?;
        Ok(result.rows_affected > 0)
    }
}

#[async_trait]
impl JobRepository for SeaJobRepository {
    async fn insert(&self, job: &Job) -> Result<(), RepoError> {
        let first = to_row(job, job.source_id)?.insert(&self.conn).await;
        let outcome = match first {
            Err(e) if job.source_id.is_some() && is_foreign_key_violation(&e) => {
                to_row(job, None)?.insert(&self.conn).await
            }
            other => other,
        };
        outcome.map(|_| ()).map_err(|e| match repo_err(&e) {
            RepoError::Conflict(_) => RepoError::Conflict(format!("job {} exists already", job.id)),
            other => other,
        })
    }

    async fn update(&self, job: &Job) -> Result<bool, RepoError> {
        let first = self.overwrite(job.id, to_row(job, job.source_id)?).await;
        let outcome = match first {
            Err(e) if job.source_id.is_some() && is_foreign_key_violation(&e) => {
                self.overwrite(job.id, to_row(job, None)?).await
            }
            other => other,
        };
        outcome.map_err(|e| repo_err(&e))
    }

    async fn get(&self, id: JobId) -> Result<Option<Job>, RepoError> {
        jobs::Entity::find_by_id(id.to_string())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_job)
            .transpose()
    }

    async fn list(&self, filter: &JobFilter) -> Result<Page<Job>, RepoError> {
        let mut select = jobs::Entity::find();
        if let Some(state) = filter.state {
            select = select.filter(jobs::Column::State.eq(state.as_str()));
        }
        if let Some(kind) = filter.kind {
            select = select.filter(jobs::Column::Kind.eq(kind.as_str()));
        }
        if let Some(source_id) = filter.source_id {
            select = select.filter(jobs::Column::SourceId.eq(source_id.get()));
        }
        if let Some(user) = &filter.requested_by {
            select = select.filter(jobs::Column::RequestedBy.eq(user.as_str()));
        }
        if let Some(from) = filter.from {
            select = select.filter(jobs::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            select = select.filter(jobs::Column::CreatedAt.lt(to));
        }
        newest_first(
            &self.conn,
            select,
            (jobs::Column::CreatedAt, jobs::Column::Id),
            (filter.limit, filter.offset),
            None,
            to_job,
        )
        .await
    }

    async fn fail_unfinished(
        &self,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let error = encode(&ErrorJson::from(error), "error")?;
        let result = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Failed.as_str()))
            .col_expr(jobs::Column::Error, Expr::value(error))
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .filter(
                jobs::Column::State.is_in([JobState::Queued.as_str(), JobState::Running.as_str()]),
            )
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected)
    }

    async fn enqueue(&self, job: &Job, actor: &Actor) -> Result<Enqueued, RepoError> {
        let subject = job.params.exclusive_subject();
        let with_queue_columns = |source_id| -> Result<jobs::ActiveModel, RepoError> {
            let mut row = to_row(job, source_id)?;
            row.subject = Set(subject.clone());
            row.actor = Set(Some(encode(&ActorJson::from(actor), "actor")?));
            row.instance = Set(None);
            row.lease_until = Set(None);
            row.cancel_requested = Set(false);
            Ok(row)
        };
        let first = with_queue_columns(job.source_id)?.insert(&self.conn).await;
        let outcome = match first {
            Err(e) if job.source_id.is_some() && is_foreign_key_violation(&e) => {
                with_queue_columns(None)?.insert(&self.conn).await
            }
            other => other,
        };
        match outcome {
            Ok(_) => Ok(Enqueued::Queued),
            Err(e) => match (repo_err(&e), &subject) {
                (RepoError::Conflict(_), Some(subject)) => {
                    let holder = jobs::Entity::find()
                        .filter(jobs::Column::Subject.eq(subject.as_str()))
                        .filter(jobs::Column::State.is_in([QUEUED, RUNNING]))
                        .one(&self.conn)
                        .await
                        .map_err(|e| repo_err(&e))?;
                    match holder {
                        Some(row) => Ok(Enqueued::Busy(to_job(row)?.id)),
                        // It ended in between: the caller may try again.
                        None => Err(RepoError::Conflict(format!(
                            "a job of {subject} was active a moment ago; try again"
                        ))),
                    }
                }
                (RepoError::Conflict(_), None) => Err(RepoError::Conflict(format!(
                    "job {} exists already",
                    job.id
                ))),
                (other, _) => Err(other),
            },
        }
    }

    async fn claim(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<Vec<ClaimedJob>, RepoError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let oldest = jobs::Entity::find()
            .select_only()
            .column(jobs::Column::Id)
            .filter(jobs::Column::State.eq(QUEUED))
            .filter(jobs::Column::CancelRequested.eq(false))
            .order_by_asc(jobs::Column::CreatedAt)
            .order_by_asc(jobs::Column::Id)
            .limit(max);
        let take = |ids: sea_orm::sea_query::SimpleExpr| {
            jobs::Entity::update_many()
                .col_expr(jobs::Column::State, Expr::value(RUNNING))
                .col_expr(jobs::Column::StartedAt, Expr::value(now))
                .col_expr(jobs::Column::Instance, Expr::value(lease.instance.as_str()))
                .col_expr(jobs::Column::LeaseUntil, Expr::value(lease.until))
                .filter(ids)
                .filter(jobs::Column::State.eq(QUEUED))
        };
        let mut rows = if self.conn.get_database_backend() == DatabaseBackend::Postgres {
            // Lock the chosen rows first, skipping those another instance is claiming at
            // this moment, then take exactly those. (A LIMIT ... FOR UPDATE sub-select
            // inside the UPDATE may be evaluated more than once by the planner and take
            // more rows than asked.)
            let txn = self.conn.begin().await.map_err(|e| repo_err(&e))?;
            let ids: Vec<String> = oldest
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .into_tuple()
                .all(&txn)
                .await
                .map_err(|e| repo_err(&e))?;
            let rows = if ids.is_empty() {
                Vec::new()
            } else {
                take(jobs::Column::Id.is_in(ids))
                    .exec_with_returning(&txn)
                    .await
                    .map_err(|e| repo_err(&e))?
            };
            txn.commit().await.map_err(|e| repo_err(&e))?;
            rows
        } else {
            // SQLite: one statement (it runs one writer at a time, and a transaction that
            // reads before it writes could not upgrade its lock beside another writer).
            take(Expr::col(jobs::Column::Id).in_subquery(oldest.into_query()))
                .exec_with_returning(&self.conn)
                .await
                .map_err(|e| repo_err(&e))?
        };
        rows.sort_by(|x, y| (x.created_at, &x.id).cmp(&(y.created_at, &y.id)));
        rows.into_iter()
            .map(|row| {
                let actor = actor_of(&row)?;
                Ok(ClaimedJob {
                    job: to_job(row)?,
                    actor,
                })
            })
            .collect()
    }

    async fn heartbeat(
        &self,
        lease: &Lease,
        beats: &[(JobId, JobProgress)],
    ) -> Result<Vec<Heartbeat>, RepoError> {
        let mut out = Vec::with_capacity(beats.len());
        for (id, progress) in beats {
            let owned = jobs::Entity::update_many()
                .col_expr(jobs::Column::LeaseUntil, Expr::value(lease.until))
                .col_expr(
                    jobs::Column::Progress,
                    Expr::value(encode(&ProgressJson::from(progress), "progress")?),
                )
                .filter(jobs::Column::Id.eq(id.to_string()))
                .filter(jobs::Column::State.eq(RUNNING))
                .filter(jobs::Column::Instance.eq(lease.instance.as_str()))
                .exec(&self.conn)
                .await
                .map_err(|e| repo_err(&e))?
                .rows_affected
                > 0;
            let cancel_requested = owned
                && jobs::Entity::find_by_id(id.to_string())
                    .select_only()
                    .column(jobs::Column::CancelRequested)
                    .into_tuple::<bool>()
                    .one(&self.conn)
                    .await
                    .map_err(|e| repo_err(&e))?
                    .unwrap_or(false);
            out.push(Heartbeat {
                id: *id,
                owned,
                cancel_requested,
            });
        }
        Ok(out)
    }

    async fn finish(&self, job: &Job, instance: &str) -> Result<bool, RepoError> {
        let write = |source_id| -> Result<_, RepoError> {
            let mut row = to_row(job, source_id)?;
            row.id = NotSet;
            row.lease_until = Set(None);
            Ok(jobs::Entity::update_many()
                .set(row)
                .filter(jobs::Column::Id.eq(job.id.to_string()))
                .filter(jobs::Column::State.eq(RUNNING))
                .filter(jobs::Column::Instance.eq(instance)))
        };
        let first = write(job.source_id)?.exec(&self.conn).await;
        let outcome = match first {
            Err(e) if job.source_id.is_some() && is_foreign_key_violation(&e) => {
                write(None)?.exec(&self.conn).await
            }
            other => other,
        };
        Ok(outcome.map_err(|e| repo_err(&e))?.rows_affected > 0)
    }

    async fn request_cancel(
        &self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>, RepoError> {
        jobs::Entity::update_many()
            .col_expr(
                jobs::Column::State,
                Expr::value(JobState::Cancelled.as_str()),
            )
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .filter(jobs::Column::Id.eq(id.to_string()))
            .filter(jobs::Column::State.eq(QUEUED))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        jobs::Entity::update_many()
            .col_expr(jobs::Column::CancelRequested, Expr::value(true))
            .filter(jobs::Column::Id.eq(id.to_string()))
            .filter(jobs::Column::State.eq(RUNNING))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        self.get(id).await
    }

    async fn expire_leases(
        &self,
        error: &JobError,
        now: DateTime<Utc>,
    ) -> Result<Vec<Job>, RepoError> {
        let expired = jobs::Entity::find()
            .filter(jobs::Column::State.eq(RUNNING))
            .filter(jobs::Column::LeaseUntil.lt(now))
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        let error_json = encode(&ErrorJson::from(error), "error")?;
        let mut out = Vec::new();
        for row in expired {
            // Only if nobody renewed it meanwhile.
            let changed = jobs::Entity::update_many()
                .col_expr(jobs::Column::State, Expr::value(JobState::Failed.as_str()))
                .col_expr(jobs::Column::Error, Expr::value(error_json.clone()))
                .col_expr(jobs::Column::FinishedAt, Expr::value(now))
                .filter(jobs::Column::Id.eq(row.id.as_str()))
                .filter(jobs::Column::State.eq(RUNNING))
                .filter(jobs::Column::LeaseUntil.lt(now))
                .exec(&self.conn)
                .await
                .map_err(|e| repo_err(&e))?
                .rows_affected
                > 0;
            if changed {
                let mut job = to_job(row)?;
                job.state = JobState::Failed;
                job.error = Some(error.clone());
                job.finished_at = Some(now);
                out.push(job);
            }
        }
        Ok(out)
    }

    async fn count_queued(&self, requested_by: Option<&str>) -> Result<u64, RepoError> {
        let mut select = jobs::Entity::find().filter(jobs::Column::State.eq(QUEUED));
        if let Some(user) = requested_by {
            select = select.filter(jobs::Column::RequestedBy.eq(user));
        }
        select.count(&self.conn).await.map_err(|e| repo_err(&e))
    }

    async fn fail_queued(&self, error: &JobError, now: DateTime<Utc>) -> Result<u64, RepoError> {
        let error = encode(&ErrorJson::from(error), "error")?;
        let result = jobs::Entity::update_many()
            .col_expr(jobs::Column::State, Expr::value(JobState::Failed.as_str()))
            .col_expr(jobs::Column::Error, Expr::value(error))
            .col_expr(jobs::Column::FinishedAt, Expr::value(now))
            .filter(jobs::Column::State.eq(QUEUED))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected)
    }
}

/// Lines of a log stored by one statement (six bound values each: well under every
/// backend's limit on bound values).
const LOG_LINES_PER_INSERT: usize = 200;

#[async_trait]
impl JobLogRepository for SeaJobRepository {
    async fn append(&self, job: JobId, lines: &[LogLine]) -> Result<(), RepoError> {
        let job_id = job.to_string();
        for chunk in lines.chunks(LOG_LINES_PER_INSERT) {
            let rows = chunk
                .iter()
                .map(|l| {
                    Ok(job_logs::ActiveModel {
                        job_id: Set(job_id.clone()),
                        seq: Set(i64::try_from(l.seq).map_err(|_| {
                            RepoError::Conflict(format!(
                                "log line number {} is out of range",
                                l.seq
                            ))
                        })?),
                        at: Set(l.at),
                        level: Set(l.level.as_str().to_owned()),
                        message: Set(l.message.clone()),
                        contents: Set(l.contents),
                    })
                })
                .collect::<Result<Vec<_>, RepoError>>()?;
            // A line stored by an earlier try of the same append is left as it is.
            job_logs::Entity::insert_many(rows)
                .on_conflict_do_nothing()
                .exec_without_returning(&self.conn)
                .await
                .map_err(|e| repo_err(&e))?;
        }
        Ok(())
    }

    async fn read(&self, job: JobId, after: u64, limit: u64) -> Result<Vec<LogLine>, RepoError> {
        job_logs::Entity::find()
            .filter(job_logs::Column::JobId.eq(job.to_string()))
            .filter(job_logs::Column::Seq.gt(i64::try_from(after).unwrap_or(i64::MAX)))
            .order_by_asc(job_logs::Column::Seq)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_log_line)
            .collect()
    }
}

fn to_log_line(row: job_logs::Model) -> Result<LogLine, RepoError> {
    let corrupt = |what: &str| {
        RepoError::Corrupt(format!(
            "line {} of job {}'s log: {what}",
            row.seq, row.job_id
        ))
    };
    Ok(LogLine {
        seq: u64::try_from(row.seq).map_err(|_| corrupt("negative line number"))?,
        at: row.at,
        level: row
            .level
            .parse::<LogLevel>()
            .map_err(|e| corrupt(&format!("level: {e}")))?,
        message: row.message,
        contents: row.contents,
    })
}
