//! Sources and the snapshot catalog.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::engine::{SnapshotStatus, SnapshotSummary};
use coffer_domain::excludes::SourceFilter;
use coffer_domain::ports::{
    BackupCatalog, BackupFilter, CatalogEntry, CatalogStats, Page, RepoError, Retention, Source,
    SourceRepository, SourceSpec,
};
use coffer_domain::schedule::Schedule;
use coffer_domain::{BackupId, SnapshotId, SnapshotPrefix, SourceId};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait as _,
    DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait as _,
};
use serde::{Deserialize, Serialize};

use crate::counters::{self, BackupShare};
use crate::entities::{backups, sources};
use crate::error::{is_foreign_key_violation, repo_err};
use crate::page::newest_first;

/// `sources.retention` as stored: `{"max_backups":N,"max_age_days":N,"keep_daily":N,...}`.
/// Rules added later read as 0 (off) from rows written before them.
#[derive(Serialize, Deserialize)]
struct RetentionJson {
    max_backups: u32,
    max_age_days: u32,
    #[serde(default)]
    keep_within_days: u32,
    #[serde(default)]
    keep_daily: u32,
    #[serde(default)]
    keep_weekly: u32,
    #[serde(default)]
    keep_monthly: u32,
    #[serde(default)]
    keep_yearly: u32,
}

impl From<Retention> for RetentionJson {
    fn from(r: Retention) -> Self {
        Self {
            max_backups: r.max_backups,
            max_age_days: r.max_age_days,
            keep_within_days: r.keep_within_days,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }
    }
}

impl From<RetentionJson> for Retention {
    fn from(r: RetentionJson) -> Self {
        Self {
            max_backups: r.max_backups,
            max_age_days: r.max_age_days,
            keep_within_days: r.keep_within_days,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }
    }
}

fn retention_json(retention: Option<Retention>) -> Result<Option<String>, RepoError> {
    retention
        .map(|r| {
            serde_json::to_string(&RetentionJson::from(r))
                .map_err(|e| RepoError::Database(format!("cannot encode a retention: {e}")))
        })
        .transpose()
}

/// `sources.filter_rules` as stored. Switches added later read as off from rows written
/// before them.
#[derive(Serialize, Deserialize)]
struct FilterJson {
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    exclude_caches: bool,
    #[serde(default)]
    one_file_system: bool,
    #[serde(default)]
    exclude_larger_than: Option<u64>,
}

fn filter_json(filter: &SourceFilter) -> Result<Option<String>, RepoError> {
    if filter.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&FilterJson {
        exclude: filter.exclude.clone(),
        exclude_caches: filter.exclude_caches,
        one_file_system: filter.one_file_system,
        exclude_larger_than: filter.exclude_larger_than,
    })
    .map(Some)
    .map_err(|e| RepoError::Database(format!("cannot encode a source's exclusions: {e}")))
}

fn to_source(row: sources::Model) -> Result<Source, RepoError> {
    let retention = match &row.retention {
        Some(json) => {
            let r: RetentionJson = serde_json::from_str(json)
                .map_err(|e| RepoError::Corrupt(format!("sources.id={} retention: {e}", row.id)))?;
            Some(r.into())
        }
        None => None,
    };
    let schedule = row
        .schedule
        .as_deref()
        .map(Schedule::parse)
        .transpose()
        .map_err(|e| RepoError::Corrupt(format!("sources.id={} schedule: {e}", row.id)))?;
    let filter = match &row.filter_rules {
        Some(json) => {
            let f: FilterJson = serde_json::from_str(json).map_err(|e| {
                RepoError::Corrupt(format!("sources.id={} filter_rules: {e}", row.id))
            })?;
            SourceFilter {
                exclude: f.exclude,
                exclude_caches: f.exclude_caches,
                one_file_system: f.one_file_system,
                exclude_larger_than: f.exclude_larger_than,
            }
        }
        None => SourceFilter::default(),
    };
    Ok(Source {
        id: SourceId::new(row.id),
        name: row.name,
        path: row.path,
        schedule,
        retention,
        created_at: row.created_at,
        updated_at: row.updated_at,
        enabled: row.enabled,
        last_run_at: row.last_run_at,
        next_run_at: row.next_run_at,
        filter,
    })
}

/// A unique violation on `sources.name`, said in the user's terms.
fn name_conflict(err: &DbErr, name: &str) -> RepoError {
    match repo_err(err) {
        RepoError::Conflict(_) => {
            RepoError::Conflict(format!("a source named `{name}` exists already"))
        }
        other => other,
    }
}

/// `SourceRepository` over the `sources` table. Deleting a source leaves its `backups`
/// and `jobs` rows in place: the foreign keys are `ON DELETE SET NULL` (and SQLite
/// connections are opened with foreign keys enforced, so that happens there too).
#[derive(Clone)]
pub struct SeaSourceRepository {
    conn: DatabaseConnection,
}

impl SeaSourceRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl SourceRepository for SeaSourceRepository {
    async fn create(&self, spec: &SourceSpec, now: DateTime<Utc>) -> Result<Source, RepoError> {
        let row = sources::ActiveModel {
            name: Set(spec.name.clone()),
            path: Set(spec.path.clone()),
            schedule: Set(spec.schedule.as_ref().map(|s| s.as_str().to_owned())),
            retention: Set(retention_json(spec.retention)?),
            enabled: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
            last_run_at: Set(None),
            next_run_at: Set(None),
            filter_rules: Set(filter_json(&spec.filter)?),
            ..Default::default()
        }
        .insert(&self.conn)
        .await
        .map_err(|e| name_conflict(&e, &spec.name))?;
        to_source(row)
    }

    async fn get(&self, id: SourceId) -> Result<Option<Source>, RepoError> {
        sources::Entity::find_by_id(id.get())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_source)
            .transpose()
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<Source>, RepoError> {
        sources::Entity::find()
            .filter(sources::Column::Name.eq(name))
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_source)
            .transpose()
    }

    async fn find_by_path(&self, path: &str) -> Result<Option<Source>, RepoError> {
        sources::Entity::find()
            .filter(sources::Column::Path.eq(path))
            .order_by_asc(sources::Column::Id)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_source)
            .transpose()
    }

    async fn list(&self) -> Result<Vec<Source>, RepoError> {
        sources::Entity::find()
            .order_by_asc(sources::Column::Name)
            .order_by_asc(sources::Column::Id)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_source)
            .collect()
    }

    async fn update(
        &self,
        id: SourceId,
        spec: &SourceSpec,
        now: DateTime<Utc>,
    ) -> Result<Option<Source>, RepoError> {
        let changes = sources::ActiveModel {
            name: Set(spec.name.clone()),
            path: Set(spec.path.clone()),
            schedule: Set(spec.schedule.as_ref().map(|s| s.as_str().to_owned())),
            retention: Set(retention_json(spec.retention)?),
            filter_rules: Set(filter_json(&spec.filter)?),
            updated_at: Set(now),
            ..Default::default()
        };
        let result = sources::Entity::update_many()
            .set(changes)
            // A changed schedule is planned afresh by the scheduler (SET sees the old row).
            .col_expr(
                sources::Column::NextRunAt,
                crate::source_runs::next_run_if_schedule_is(
                    spec.schedule.as_ref().map(Schedule::as_str),
                ),
            )
            .filter(sources::Column::Id.eq(id.get()))
            .exec(&self.conn)
            .await
            .map_err(|e| name_conflict(&e, &spec.name))?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
        self.get(id).await
    }

    async fn delete(&self, id: SourceId) -> Result<bool, RepoError> {
        let result = sources::Entity::delete_by_id(id.get())
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected > 0)
    }

    async fn set_enabled(
        &self,
        id: SourceId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        crate::source_runs::set_enabled(&self.conn, id, enabled, now).await
    }

    async fn set_next_run(
        &self,
        id: SourceId,
        for_schedule: &Schedule,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError> {
        crate::source_runs::set_runs(&self.conn, id, for_schedule.as_str(), None, next).await
    }

    async fn record_run(
        &self,
        id: SourceId,
        for_schedule: &Schedule,
        at: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError> {
        crate::source_runs::set_runs(&self.conn, id, for_schedule.as_str(), Some(at), next).await
    }
}

fn to_entry(row: backups::Model) -> Result<CatalogEntry, RepoError> {
    let warnings = match &row.warnings {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| RepoError::Corrupt(format!("backups.id={} warnings: {e}", row.id)))?,
        None => Vec::new(),
    };
    let unsigned = |v: i64| u64::try_from(v).unwrap_or(0);
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        RepoError::Corrupt(format!("backups.id={} {what}: {e}", row.id))
    };
    let snapshot_id =
        SnapshotId::parse(&row.snapshot_id).map_err(|e| corrupt("snapshot_id", &e))?;
    let parent_snapshot_id = row
        .parent_snapshot_id
        .as_deref()
        .map(SnapshotId::parse)
        .transpose()
        .map_err(|e| corrupt("parent_snapshot_id", &e))?;
    let status: SnapshotStatus = row.status.parse().map_err(|e| corrupt("status", &e))?;
    Ok(CatalogEntry {
        id: BackupId::new(row.id),
        snapshot_id,
        source_id: row.source_id.map(SourceId::new),
        source_name: row.source_name,
        size: unsigned(row.size),
        created_at: row.created_at,
        finished_at: row.finished_at,
        status,
        checksum: row.checksum.unwrap_or_default(),
        encrypted: row.encrypted,
        file_count: unsigned(row.file_count),
        dir_count: unsigned(row.dir_count),
        bytes_added: unsigned(row.bytes_added),
        stored_bytes_added: unsigned(row.stored_bytes_added),
        duration_ms: unsigned(row.duration_ms),
        warnings,
        parent_snapshot_id,
        protected: row.protected,
        verified_at: row.verified_at,
        verify_result: row.verify_result,
        suspicious: row.suspicious,
    })
}

/// `BackupCatalog` over the `backups` table.
#[derive(Clone)]
pub struct SeaBackupCatalog {
    conn: DatabaseConnection,
}

impl SeaBackupCatalog {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SeaBackupCatalog {
    /// Inserts a row and adds it to the counters, in one transaction.
    async fn insert_counted(&self, row: backups::ActiveModel) -> Result<backups::Model, DbErr> {
        // The insert comes first: on SQLite it takes the write lock at once.
        let txn = self.conn.begin().await?;
        let row = row.insert(&txn).await?;
        counters::apply_backup(&txn, share(&row), 1).await?;
        txn.commit().await?;
        Ok(row)
    }
}

fn share(row: &backups::Model) -> BackupShare<'_> {
    BackupShare {
        status: &row.status,
        size: row.size,
        stored_bytes_added: row.stored_bytes_added,
    }
}

fn backup_row(s: &SnapshotSummary, source_id: Option<SourceId>) -> backups::ActiveModel {
    let duration = (s.finished_at - s.started_at).num_milliseconds().max(0);
    backups::ActiveModel {
        snapshot_id: Set(s.id.clone()),
        source_id: Set(source_id.map(SourceId::get)),
        source_name: Set(s.source.clone()),
        size: Set(signed(s.bytes)),
        created_at: Set(s.started_at),
        finished_at: Set(Some(s.finished_at)),
        status: Set(s.status.as_str().to_owned()),
        checksum: Set(Some(s.id.clone())),
        encrypted: Set(s.encrypted),
        file_count: Set(signed(s.files)),
        dir_count: Set(signed(s.dirs)),
        bytes_added: Set(signed(s.bytes_added)),
        stored_bytes_added: Set(signed(s.stored_bytes_added)),
        duration_ms: Set(duration),
        warnings: Set(Some(
            serde_json::to_string(&s.warnings).unwrap_or_else(|_| "[]".into()),
        )),
        parent_snapshot_id: Set(s.parent.clone()),
        protected: Set(false),
        verified_at: Set(None),
        verify_result: Set(None),
        suspicious: Set(s.suspicious.clone()),
        ..Default::default()
    }
}

/// The rows `filter` selects (its source, status and time range; not its page).
fn filtered(filter: &BackupFilter) -> sea_orm::Select<backups::Entity> {
    let mut select = backups::Entity::find();
    if let Some(source_id) = filter.source_id {
        select = select.filter(backups::Column::SourceId.eq(source_id.get()));
    }
    if let Some(status) = filter.status {
        select = select.filter(backups::Column::Status.eq(status.as_str()));
    }
    if let Some(from) = filter.from {
        select = select.filter(backups::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.to {
        select = select.filter(backups::Column::CreatedAt.lt(to));
    }
    select
}

#[async_trait]
impl BackupCatalog for SeaBackupCatalog {
    async fn insert(
        &self,
        s: &SnapshotSummary,
        source_id: Option<SourceId>,
    ) -> Result<CatalogEntry, RepoError> {
        let row = match self.insert_counted(backup_row(s, source_id)).await {
            Ok(row) => row,
            // The source was deleted while its backup ran: keep the snapshot, as deleting
            // the source would have done had the row been there first. (A new transaction:
            // PostgreSQL refuses further statements in one that failed.)
            Err(e) if source_id.is_some() && is_foreign_key_violation(&e) => self
                .insert_counted(backup_row(s, None))
                .await
                .map_err(|e| repo_err(&e))?,
            Err(e) => return Err(repo_err(&e)),
        };
        to_entry(row)
    }

    async fn list(&self, limit: u64) -> Result<Vec<CatalogEntry>, RepoError> {
        backups::Entity::find()
            .order_by_desc(backups::Column::CreatedAt)
            .order_by_desc(backups::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_entry)
            .collect()
    }

    async fn find(&self, prefix: &SnapshotPrefix) -> Result<Option<CatalogEntry>, RepoError> {
        let rows = backups::Entity::find()
            .filter(backups::Column::SnapshotId.starts_with(prefix.as_str()))
            .limit(2)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        match rows.len() {
            0 => Ok(None),
            1 => rows.into_iter().next().map(to_entry).transpose(),
            _ => Err(RepoError::Conflict(format!(
                "`{}` matches more than one snapshot; give more digits",
                prefix.as_str()
            ))),
        }
    }

    async fn latest_for_source(
        &self,
        source_id: SourceId,
    ) -> Result<Option<CatalogEntry>, RepoError> {
        backups::Entity::find()
            .filter(backups::Column::SourceId.eq(source_id.get()))
            .order_by_desc(backups::Column::CreatedAt)
            .order_by_desc(backups::Column::Id)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_entry)
            .transpose()
    }

    async fn record_verification(
        &self,
        snapshot_id: &SnapshotId,
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), RepoError> {
        backups::Entity::update_many()
            .col_expr(backups::Column::VerifiedAt, Expr::value(at))
            .col_expr(backups::Column::VerifyResult, Expr::value(result))
            .filter(backups::Column::SnapshotId.eq(snapshot_id.as_str()))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(())
    }

    async fn query(&self, filter: &BackupFilter) -> Result<Page<CatalogEntry>, RepoError> {
        let select = filtered(filter);
        // Without a source or time filter the total is the catalog's own counter (kept in
        // the transaction of every insert and delete): counting 100,000 rows per page is
        // what made this endpoint slow. Bounded filters still count their rows.
        let known = if filter.source_id.is_none() && filter.from.is_none() && filter.to.is_none() {
            let stats = crate::counters::catalog_stats(&self.conn).await?;
            Some(match filter.status {
                None => stats.total,
                Some(wanted) => stats
                    .count_by_status
                    .iter()
                    .find(|(name, _)| name == wanted.as_str())
                    .map_or(0, |(_, n)| *n),
            })
        } else {
            None
        };
        newest_first(
            &self.conn,
            select,
            (backups::Column::CreatedAt, backups::Column::Id),
            (filter.limit, filter.offset),
            known,
            to_entry,
        )
        .await
    }

    async fn delete(&self, snapshot_id: &SnapshotId) -> Result<bool, RepoError> {
        // DELETE ... RETURNING: the row's share leaves the counters in the transaction
        // that removed it, and only once however many deletes race for it. Built with
        // sea-query directly: sea-orm uses RETURNING on SQLite only behind a feature.
        let stmt = Query::delete()
            .from_table(backups::Entity)
            .and_where(backups::Column::SnapshotId.eq(snapshot_id.as_str()))
            .returning(Query::returning().columns([
                backups::Column::Status,
                backups::Column::Size,
                backups::Column::StoredBytesAdded,
            ]))
            .to_owned();
        let txn = self.conn.begin().await.map_err(|e| repo_err(&e))?;
        let removed = txn.query_all(&stmt).await.map_err(|e| repo_err(&e))?;
        for row in &removed {
            let read = |col: &str| row.try_get::<i64>("", col);
            let status: String = row.try_get("", "status").map_err(|e| repo_err(&e))?;
            let share = BackupShare {
                status: &status,
                size: read("size").map_err(|e| repo_err(&e))?,
                stored_bytes_added: read("stored_bytes_added").map_err(|e| repo_err(&e))?,
            };
            counters::apply_backup(&txn, share, -1)
                .await
                .map_err(|e| repo_err(&e))?;
        }
        txn.commit().await.map_err(|e| repo_err(&e))?;
        Ok(!removed.is_empty())
    }

    async fn set_protected(
        &self,
        snapshot_id: &SnapshotId,
        protected: bool,
    ) -> Result<bool, RepoError> {
        let result = backups::Entity::update_many()
            .col_expr(backups::Column::Protected, Expr::value(protected))
            .filter(backups::Column::SnapshotId.eq(snapshot_id.as_str()))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected > 0)
    }

    async fn stats(&self) -> Result<CatalogStats, RepoError> {
        counters::catalog_stats(&self.conn).await
    }

    async fn latest_per_source(&self) -> Result<Vec<(SourceId, CatalogEntry)>, RepoError> {
        crate::source_runs::latest_per_source(&self.conn)
            .await?
            .into_iter()
            .filter_map(|row| row.source_id.map(|id| (SourceId::new(id), row)))
            .map(|(id, row)| to_entry(row).map(|entry| (id, entry)))
            .collect()
    }

    async fn page_after(
        &self,
        filter: &BackupFilter,
        after: Option<(DateTime<Utc>, BackupId)>,
        limit: u64,
    ) -> Result<Vec<CatalogEntry>, RepoError> {
        let mut select = filtered(filter);
        if let Some((at, id)) = after {
            // (created_at, id) < (at, id), spelled so that the created_at index serves it.
            select = select.filter(
                Condition::any().add(backups::Column::CreatedAt.lt(at)).add(
                    Condition::all()
                        .add(backups::Column::CreatedAt.eq(at))
                        .add(backups::Column::Id.lt(id.get())),
                ),
            );
        }
        select
            .order_by_desc(backups::Column::CreatedAt)
            .order_by_desc(backups::Column::Id)
            .limit(limit.clamp(1, i64::MAX.unsigned_abs()))
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_entry)
            .collect()
    }
}
