//! Maintained counters (`counters` table): the catalog's own figures, kept exact in the
//! transaction of each catalog write, and a general [`CounterRepository`].

use async_trait::async_trait;
use coffer_domain::ports::{CatalogStats, CounterRepository, RepoError};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter as _, QueryOrder as _,
};

use crate::entities::counters;
use crate::error::repo_err;

/// Prefix of the per-status snapshot counts (`backups.count.ok`).
pub(crate) const BACKUPS_COUNT_PREFIX: &str = "backups.count.";
/// The sum of `backups.size`.
pub(crate) const BACKUPS_LOGICAL_BYTES: &str = "backups.logical_bytes";
/// The sum of `backups.stored_bytes_added`.
pub(crate) const BACKUPS_STORED_BYTES_ADDED: &str = "backups.stored_bytes_added";

/// Adds `delta` to a counter, creating it at 0 first, in one statement (an upsert), on
/// the caller's connection or transaction; returns the new value.
pub(crate) async fn add<C: ConnectionTrait>(
    conn: &C,
    name: &str,
    delta: i64,
) -> Result<i64, DbErr> {
    let stmt = Query::insert()
        .into_table(counters::Entity)
        .columns([counters::Column::Name, counters::Column::Value])
        .values([name.into(), delta.into()])
        .map_err(|e| DbErr::Custom(format!("building a counter update: {e}")))?
        .on_conflict(
            OnConflict::column(counters::Column::Name)
                .value(
                    counters::Column::Value,
                    Expr::col((counters::Entity, counters::Column::Value)).add(delta),
                )
                .to_owned(),
        )
        .returning_col(counters::Column::Value)
        .to_owned();
    let row = conn
        .query_one(&stmt)
        .await?
        .ok_or_else(|| DbErr::Custom(format!("counter `{name}`: the upsert returned no row")))?;
    row.try_get("", "value")
}

/// What one catalog row contributes to the catalog's counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackupShare<'a> {
    pub status: &'a str,
    pub size: i64,
    pub stored_bytes_added: i64,
}

/// Adds a catalog row's share to the counters (`sign` 1, after an insert) or takes it
/// away (`sign` -1, after a delete). Call it in the transaction of the write. The rows
/// are touched in one fixed order (by name) so that concurrent transactions take their
/// locks alike and cannot deadlock.
pub(crate) async fn apply_backup<C: ConnectionTrait>(
    conn: &C,
    share: BackupShare<'_>,
    sign: i64,
) -> Result<(), DbErr> {
    add(
        conn,
        &format!("{BACKUPS_COUNT_PREFIX}{}", share.status),
        sign,
    )
    .await?;
    add(conn, BACKUPS_LOGICAL_BYTES, sign.saturating_mul(share.size)).await?;
    add(
        conn,
        BACKUPS_STORED_BYTES_ADDED,
        sign.saturating_mul(share.stored_bytes_added),
    )
    .await?;
    Ok(())
}

/// The catalog's figures, from its counters.
pub(crate) async fn catalog_stats<C: ConnectionTrait>(conn: &C) -> Result<CatalogStats, RepoError> {
    let rows = counters::Entity::find()
        .filter(counters::Column::Name.starts_with("backups."))
        .order_by_asc(counters::Column::Name)
        .all(conn)
        .await
        .map_err(|e| repo_err(&e))?;
    let mut stats = CatalogStats::default();
    for row in rows {
        // A negative counter can only come from a bug or a hand edit; say so.
        let value = u64::try_from(row.value).map_err(|_| {
            RepoError::Corrupt(format!(
                "counter `{}` is negative ({})",
                row.name, row.value
            ))
        })?;
        if let Some(status) = row.name.strip_prefix(BACKUPS_COUNT_PREFIX) {
            stats.total = stats.total.saturating_add(value);
            stats.count_by_status.push((status.to_owned(), value));
        } else if row.name == BACKUPS_LOGICAL_BYTES {
            stats.logical_bytes = value;
        } else if row.name == BACKUPS_STORED_BYTES_ADDED {
            stats.stored_bytes_added = value;
        }
    }
    Ok(stats)
}

/// `CounterRepository` over the `counters` table.
#[derive(Clone)]
pub struct SeaCounterRepository {
    conn: DatabaseConnection,
}

impl SeaCounterRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl CounterRepository for SeaCounterRepository {
    async fn get(&self, name: &str) -> Result<i64, RepoError> {
        Ok(counters::Entity::find_by_id(name.to_owned())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map_or(0, |row| row.value))
    }

    async fn add(&self, name: &str, delta: i64) -> Result<i64, RepoError> {
        add(&self.conn, name, delta).await.map_err(|e| repo_err(&e))
    }

    async fn set(&self, name: &str, value: i64) -> Result<(), RepoError> {
        counters::Entity::insert(counters::ActiveModel {
            name: Set(name.to_owned()),
            value: Set(value),
        })
        .on_conflict(
            OnConflict::column(counters::Column::Name)
                .update_column(counters::Column::Value)
                .to_owned(),
        )
        .exec(&self.conn)
        .await
        .map_err(|e| repo_err(&e))?;
        Ok(())
    }
}
