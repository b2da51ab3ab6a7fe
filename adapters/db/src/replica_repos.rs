//! The replicas (`replicas`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::ports::RepoError;
use coffer_domain::replicas::{
    LagLimits, Replica, ReplicaLocation, ReplicaName, ReplicaRepository, ReplicaSpec, S3Location,
};
use coffer_domain::schedule::Schedule;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _,
    QueryFilter as _, QueryOrder as _,
};

use crate::entities::replicas;
use crate::error::repo_err;

/// `ReplicaRepository` over the `replicas` table.
#[derive(Clone)]
pub struct SeaReplicaRepository {
    conn: DatabaseConnection,
}

impl SeaReplicaRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn limit(value: Option<u32>) -> Option<i32> {
    value.map(|v| i32::try_from(v).unwrap_or(i32::MAX))
}

fn configured(spec: &ReplicaSpec, from_config: bool) -> replicas::ActiveModel {
    let (root, s3) = match &spec.location {
        ReplicaLocation::Fs { root } => (Some(root.clone()), None),
        ReplicaLocation::S3(s3) => (None, Some(s3)),
    };
    replicas::ActiveModel {
        name: Set(spec.name.as_str().to_owned()),
        backend: Set(spec.location.backend().to_owned()),
        root: Set(root),
        endpoint: Set(s3.and_then(|s| s.endpoint.clone())),
        bucket: Set(s3.map(|s| s.bucket.clone())),
        region: Set(s3.map(|s| s.region.clone())),
        prefix: Set(s3.map(|s| s.prefix.clone())),
        path_style: Set(s3.map(|s| s.path_style)),
        credentials_file: Set(s3.map(|s| s.credentials_file.clone())),
        append_only: Set(spec.append_only),
        schedule: Set(spec.schedule.as_ref().map(|s| s.as_str().to_owned())),
        max_lag_snapshots: Set(limit(spec.lag.max_snapshots)),
        max_lag_hours: Set(limit(spec.lag.max_age_hours)),
        from_config: Set(from_config),
        created_at: NotSet,
        last_success_at: NotSet,
        copied_through: NotSet,
        last_failure_at: NotSet,
        last_error: NotSet,
        next_run_at: NotSet,
        last_run_at: NotSet,
    }
}

fn to_replica(row: replicas::Model) -> Result<Replica, RepoError> {
    let corrupt = |what: &str| RepoError::Corrupt(format!("replica `{}`: {what}", row.name));
    let name = ReplicaName::parse(&row.name).map_err(|e| corrupt(&e.to_string()))?;
    let location = match row.backend.as_str() {
        "fs" => ReplicaLocation::Fs {
            root: row
                .root
                .clone()
                .ok_or_else(|| corrupt("an fs replica without a root"))?,
        },
        "s3" => ReplicaLocation::S3(S3Location {
            endpoint: row.endpoint.clone(),
            bucket: row
                .bucket
                .clone()
                .ok_or_else(|| corrupt("an s3 replica without a bucket"))?,
            region: row.region.clone().unwrap_or_default(),
            prefix: row.prefix.clone().unwrap_or_default(),
            path_style: row.path_style.unwrap_or(true),
            credentials_file: row
                .credentials_file
                .clone()
                .ok_or_else(|| corrupt("an s3 replica without a credentials file"))?,
        }),
        other => return Err(corrupt(&format!("unknown backend `{other}`"))),
    };
    let schedule = row
        .schedule
        .as_deref()
        .map(Schedule::parse)
        .transpose()
        .map_err(|e| corrupt(&e.to_string()))?;
    let lag = LagLimits {
        max_snapshots: row.max_lag_snapshots.and_then(|v| u32::try_from(v).ok()),
        max_age_hours: row.max_lag_hours.and_then(|v| u32::try_from(v).ok()),
    };
    Ok(Replica {
        spec: ReplicaSpec {
            name,
            location,
            append_only: row.append_only,
            schedule,
            lag,
        },
        from_config: row.from_config,
        created_at: row.created_at,
        last_success_at: row.last_success_at,
        copied_through: row.copied_through,
        last_failure_at: row.last_failure_at,
        last_error: row.last_error,
        next_run_at: row.next_run_at,
        last_run_at: row.last_run_at,
    })
}

impl SeaReplicaRepository {
    async fn set(&self, name: &ReplicaName, model: replicas::ActiveModel) -> Result<(), RepoError> {
        replicas::Entity::update_many()
            .set(model)
            .filter(replicas::Column::Name.eq(name.as_str()))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(())
    }
}

#[async_trait]
impl ReplicaRepository for SeaReplicaRepository {
    async fn create(
        &self,
        spec: &ReplicaSpec,
        from_config: bool,
        now: DateTime<Utc>,
    ) -> Result<Replica, RepoError> {
        let mut model = configured(spec, from_config);
        model.created_at = Set(now);
        let row = model.insert(&self.conn).await.map_err(|e| repo_err(&e))?;
        to_replica(row)
    }

    async fn get(&self, name: &ReplicaName) -> Result<Option<Replica>, RepoError> {
        replicas::Entity::find_by_id(name.as_str().to_owned())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_replica)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<Replica>, RepoError> {
        replicas::Entity::find()
            .order_by_asc(replicas::Column::Name)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_replica)
            .collect()
    }

    async fn update(&self, spec: &ReplicaSpec, from_config: bool) -> Result<bool, RepoError> {
        let result = replicas::Entity::update_many()
            .set(configured(spec, from_config))
            .filter(replicas::Column::Name.eq(spec.name.as_str()))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected > 0)
    }

    async fn delete(&self, name: &ReplicaName) -> Result<bool, RepoError> {
        let result = replicas::Entity::delete_by_id(name.as_str().to_owned())
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected > 0)
    }

    async fn record_success(
        &self,
        name: &ReplicaName,
        at: DateTime<Utc>,
        copied_through: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        self.set(
            name,
            replicas::ActiveModel {
                last_success_at: Set(Some(at)),
                copied_through: Set(Some(copied_through)),
                ..Default::default()
            },
        )
        .await
    }

    async fn record_failure(
        &self,
        name: &ReplicaName,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), RepoError> {
        self.set(
            name,
            replicas::ActiveModel {
                last_failure_at: Set(Some(at)),
                last_error: Set(Some(error.to_owned())),
                ..Default::default()
            },
        )
        .await
    }

    async fn set_plan(
        &self,
        name: &ReplicaName,
        next_run_at: Option<DateTime<Utc>>,
        last_run_at: Option<DateTime<Utc>>,
    ) -> Result<(), RepoError> {
        self.set(
            name,
            replicas::ActiveModel {
                next_run_at: Set(next_run_at),
                last_run_at: Set(last_run_at),
                ..Default::default()
            },
        )
        .await
    }
}
