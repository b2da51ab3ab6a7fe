//! Replicas (off-site copies): list with their lag, add, change, remove, start a copy.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_application::{NewReplica, ReplicaChanges, ReplicaStatus};
use coffer_domain::replicas::{ReplicaLocation, S3Location};
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use super::auth::NoContent;
use super::dto::{Text, not_null};
use super::jobs::JobAccepted;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// Where a replica is kept; the same backends as the repository's `[storage]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ReplicaBackendDto {
    /// A directory: another disk, a NAS mount.
    Fs,
    /// A bucket (or a prefix in it) of an S3-compatible store.
    S3,
}

/// A replica: a further copy of the repository, in the same format, that the master key
/// alone opens.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReplicaDto {
    pub name: String,
    pub backend: ReplicaBackendDto,
    /// `fs`: the directory. Where a replica is (this and the `s3` fields) is shown to
    /// administrators only.
    pub root: Option<String>,
    /// `s3`: the service's URL (absent: AWS's endpoint for `region`).
    pub endpoint: Option<String>,
    /// `s3`: the bucket.
    pub bucket: Option<String>,
    /// `s3`: the bucket's region.
    pub region: Option<String>,
    /// `s3`: keys start with this path inside the bucket.
    pub prefix: Option<String>,
    /// `s3`: `endpoint/bucket` addressing.
    pub path_style: Option<bool>,
    /// `s3`: the credentials file on the server (mode 0600); its contents are never
    /// stored or shown.
    pub credentials_file: Option<String>,
    /// Nothing is ever deleted on it (snapshots the repository's retention removed stay).
    pub append_only: bool,
    /// Five-field cron expression in UTC of its copies; absent: on demand only.
    pub schedule: Option<String>,
    /// `replica_lagging` stands while more snapshots than this are not yet copied.
    pub max_lag_snapshots: Option<u32>,
    /// `replica_lagging` stands while the oldest snapshot not yet copied is older than
    /// this.
    pub max_lag_hours: Option<u32>,
    /// Defined in the configuration file (`[[replicas]]`): read-only here.
    pub from_config: bool,
    pub created_at: DateTime<Utc>,
    /// When the last successful copy ended.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Everything the repository held at this time is on the replica.
    pub copied_through: Option<DateTime<Utc>>,
    /// When the last failed copy ended, and why.
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// Snapshots of the repository not yet copied.
    pub lag_snapshots: u64,
    /// When the oldest of them was taken.
    pub lag_oldest_at: Option<DateTime<Utc>>,
    /// Why the replica counts as lagging (a limit passed); absent when it does not.
    pub lagging: Option<String>,
    /// The next scheduled copy.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When the last scheduled copy started.
    pub last_run_at: Option<DateTime<Utc>>,
}

impl From<ReplicaStatus> for ReplicaDto {
    fn from(s: ReplicaStatus) -> Self {
        let r = s.replica;
        let (backend, root, s3) = match r.spec.location {
            ReplicaLocation::Fs { root } => (ReplicaBackendDto::Fs, Some(root), None),
            ReplicaLocation::S3(s3) => (ReplicaBackendDto::S3, None, Some(s3)),
        };
        let (root, s3) = if s.location_shown {
            (root, s3)
        } else {
            (None, None)
        };
        Self {
            name: r.spec.name.to_string(),
            backend,
            root,
            endpoint: s3.as_ref().and_then(|s| s.endpoint.clone()),
            bucket: s3.as_ref().map(|s| s.bucket.clone()),
            region: s3.as_ref().map(|s| s.region.clone()),
            prefix: s3.as_ref().map(|s| s.prefix.clone()),
            path_style: s3.as_ref().map(|s| s.path_style),
            credentials_file: s3.map(|s| s.credentials_file),
            append_only: r.spec.append_only,
            schedule: r.spec.schedule.map(|s| s.as_str().to_owned()),
            max_lag_snapshots: r.spec.lag.max_snapshots,
            max_lag_hours: r.spec.lag.max_age_hours,
            from_config: r.from_config,
            created_at: r.created_at,
            last_success_at: r.last_success_at,
            copied_through: r.copied_through,
            last_failure_at: r.last_failure_at,
            last_error: r.last_error,
            lag_snapshots: s.lag.snapshots,
            lag_oldest_at: s.lag.oldest,
            lagging: s.lagging,
            next_run_at: r.next_run_at,
            last_run_at: r.last_run_at,
        }
    }
}

/// A new replica. `backend` is `fs` (the default when absent) or `s3`.
#[derive(Debug, Object)]
pub struct CreateReplicaRequest {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or a digit; unique.
    #[oai(validator(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    ))]
    pub name: Text,
    // No doc comment here: on an enum reference it becomes an `allOf` that generated
    // clients refuse (openapi-python-client); the request's doc says it instead.
    pub backend: MaybeUndefined<ReplicaBackendDto>,
    /// `fs` (required): an absolute directory (created when missing), empty or a replica
    /// of this repository; not inside the repository's own storage.
    #[oai(nullable, validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub root: Option<Text>,
    /// `s3`: the service's URL (`https://s3.eu-west-1.amazonaws.com`,
    /// `http://127.0.0.1:3900`); absent: AWS's endpoint for `region`.
    #[oai(nullable, validator(min_length = 1, max_length = 2048))]
    pub endpoint: Option<Text>,
    /// `s3` (required): the bucket (must exist; Coffer never creates buckets).
    #[oai(nullable, validator(min_length = 1, max_length = 63))]
    pub bucket: Option<Text>,
    /// `s3`: the bucket's region (default `us-east-1`; Garage's is `garage`).
    #[oai(nullable, validator(min_length = 1, max_length = 64))]
    pub region: Option<Text>,
    /// `s3`: keys start with this path inside the bucket (default: the bucket's root).
    #[oai(nullable, validator(max_length = 512))]
    pub prefix: Option<Text>,
    /// `s3`: address buckets as `endpoint/bucket` (default `true`: Garage, MinIO, Ceph)
    /// rather than `bucket.endpoint` (AWS).
    #[oai(nullable)]
    pub path_style: Option<bool>,
    /// `s3` (required): the absolute path on the server of a file (mode 0600) holding
    /// `access_key_id = ...` and `secret_access_key = ...`. Keys themselves are never
    /// sent to or stored by the API.
    #[oai(nullable, validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub credentials_file: Option<Text>,
    /// Never delete anything on the replica. Default `false`: the replica follows the
    /// repository's retention and is garbage-collected after each copy (absent or `null`
    /// alike).
    #[oai(nullable)]
    pub append_only: Option<bool>,
    /// Five-field cron expression in UTC of its copies. Absent, `null` or empty: copies on
    /// demand only.
    #[oai(nullable, validator(max_length = 200))]
    pub schedule: Option<Text>,
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "1000000")))]
    pub max_lag_snapshots: Option<u32>,
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "100000")))]
    pub max_lag_hours: Option<u32>,
}

/// Fields to change; absent fields stay as they are, `null` clears `schedule` and the lag
/// limits.
#[derive(Debug, Object)]
pub struct UpdateReplicaRequest {
    /// `fs` replicas: an absolute directory; the next copy sends everything there.
    #[oai(validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub root: MaybeUndefined<Text>,
    pub append_only: MaybeUndefined<bool>,
    #[oai(nullable, validator(max_length = 200))]
    pub schedule: MaybeUndefined<Text>,
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "1000000")))]
    pub max_lag_snapshots: MaybeUndefined<u32>,
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "100000")))]
    pub max_lag_hours: MaybeUndefined<u32>,
}

#[allow(clippy::option_option)]
fn change<T, U: From<T>>(v: MaybeUndefined<T>) -> Option<Option<U>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v.into())),
    }
}

#[derive(ApiResponse)]
pub enum ReplicaCreated {
    /// Created.
    #[oai(status = 201)]
    Replica(Json<ReplicaDto>),
}

pub struct ReplicasApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Replicas")]
impl ReplicasApi {
    /// List replicas.
    ///
    /// Every replica, by name, with the outcome of its copies and its lag (snapshots not
    /// yet copied, the oldest of them).
    ///
    /// Permission: `view`.
    #[oai(path = "/replicas", method = "get", operation_id = "listReplicas")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<Vec<ReplicaDto>>, ApiError> {
        let replicas = state.replicas.list(auth.actor()).await?;
        Ok(Json(replicas.into_iter().map(Into::into).collect()))
    }

    /// Add a replica.
    ///
    /// A directory (`fs`: `root`) or an S3 bucket and prefix (`s3`: `bucket`,
    /// `credentials_file`, optional `endpoint`, `region`, `prefix`, `path_style`).
    /// Nothing is copied until a copy runs (on its schedule, or `POST
    /// /api/replicas/{name}/sync`). 409 `name_taken` when the name is in use; 422
    /// `invalid_path` for a directory inside the repository's own storage, 422
    /// `invalid_location` for an S3 place that cannot be (or is the repository's own).
    ///
    /// Permission: `manage_system`.
    #[oai(path = "/replicas", method = "post", operation_id = "createReplica")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<CreateReplicaRequest>,
    ) -> Result<ReplicaCreated, ApiError> {
        let b = body.0;
        let missing = |what: &str| {
            ApiError::new(
                poem::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_location",
                format!("`{what}` is required for this backend"),
            )
        };
        let location = match not_null("backend", b.backend)?.unwrap_or(ReplicaBackendDto::Fs) {
            ReplicaBackendDto::Fs => ReplicaLocation::Fs {
                root: b.root.ok_or_else(|| missing("root"))?.into(),
            },
            ReplicaBackendDto::S3 => ReplicaLocation::S3(S3Location {
                endpoint: b.endpoint.map(Into::into),
                bucket: b.bucket.ok_or_else(|| missing("bucket"))?.into(),
                region: b.region.map_or_else(|| "us-east-1".to_owned(), Into::into),
                prefix: b.prefix.map(Into::into).unwrap_or_default(),
                path_style: b.path_style.unwrap_or(true),
                credentials_file: b
                    .credentials_file
                    .ok_or_else(|| missing("credentials_file"))?
                    .into(),
            }),
        };
        let replica = state
            .replicas
            .create(
                auth.actor(),
                NewReplica {
                    name: b.name.into(),
                    location,
                    append_only: b.append_only.unwrap_or(false),
                    schedule: b.schedule.map(Into::into),
                    max_lag_snapshots: b.max_lag_snapshots,
                    max_lag_hours: b.max_lag_hours,
                },
            )
            .await?;
        Ok(ReplicaCreated::Replica(Json(replica.into())))
    }

    /// Get a replica.
    ///
    /// Its state and lag.
    ///
    /// Permission: `view`.
    #[oai(path = "/replicas/:name", method = "get", operation_id = "getReplica")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        name: Path<String>,
    ) -> Result<Json<ReplicaDto>, ApiError> {
        let replica = state.replicas.get(auth.actor(), &name.0).await?;
        Ok(Json(replica.into()))
    }

    /// Change a replica.
    ///
    /// 409 `replica_from_config` for a replica of the configuration file.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/replicas/:name",
        method = "patch",
        operation_id = "updateReplica"
    )]
    async fn update(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        name: Path<String>,
        body: Json<UpdateReplicaRequest>,
    ) -> Result<Json<ReplicaDto>, ApiError> {
        let b = body.0;
        let changes = ReplicaChanges {
            root: not_null("root", b.root)?.map(Into::into),
            append_only: not_null("append_only", b.append_only)?,
            schedule: change(b.schedule),
            max_lag_snapshots: change(b.max_lag_snapshots),
            max_lag_hours: change(b.max_lag_hours),
        };
        let replica = state
            .replicas
            .update(auth.actor(), &name.0, changes)
            .await?;
        Ok(Json(replica.into()))
    }

    /// Remove a replica.
    ///
    /// Coffer forgets it; what it holds stays where it is. 409 `replica_from_config` for
    /// a replica of the configuration file.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/replicas/:name",
        method = "delete",
        operation_id = "deleteReplica"
    )]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        name: Path<String>,
    ) -> Result<NoContent, ApiError> {
        state.replicas.delete(auth.actor(), &name.0).await?;
        Ok(NoContent::Done)
    }

    /// Start a copy into a replica.
    ///
    /// Queues a copy (202 with the job, kind `copy`): what the replica lacks is sent —
    /// packs, then indexes, then snapshots, so the replica is a consistent repository at
    /// every moment — each object read back and compared; an interrupted copy resumes
    /// without sending again what arrived. Unless the replica is append-only, snapshots
    /// the repository no longer has are then deleted from it and it is garbage-collected.
    /// 409 `job_running` while a copy into it is queued or running.
    ///
    /// Permission: `backup`.
    #[oai(
        path = "/replicas/:name/sync",
        method = "post",
        operation_id = "syncReplica"
    )]
    async fn sync(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        name: Path<String>,
    ) -> Result<JobAccepted, ApiError> {
        let job = state.replicas.start_copy(auth.actor(), &name.0).await?;
        Ok(JobAccepted::from_status(job))
    }
}
