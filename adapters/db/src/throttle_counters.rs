//! The login throttle's failure counters (`login_throttle`), shared by every server on the
//! catalog: [`ThrottleCounters`].
//!
//! `lock` opens a transaction and upserts each key's row in key order (`INSERT ... ON
//! CONFLICT DO UPDATE ... RETURNING`): on PostgreSQL the upsert takes the row's lock, also
//! for a row another transaction is inserting; on SQLite the first write takes the
//! database's write lock. Either way the counters stay locked until `save` commits or the
//! lock is dropped (rolled back), and two attempts lock their common keys in the same
//! order, so they cannot deadlock. A key without a row gets a blank one for the length of
//! the transaction; `save` deletes blank counters, so only counters with failures or a
//! lock have rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::ports::RepoError;
use coffer_domain::throttle::{
    CounterKey, CounterKind, CounterLock, FailureCounter, SharedCounters, ThrottleCounters,
};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait as _, DatabaseConnection, DatabaseTransaction,
    EntityTrait as _, FromQueryResult as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
    TransactionTrait as _,
};

use crate::entities::login_throttle::{self, Column};
use crate::error::repo_err;

/// `ThrottleCounters` over `login_throttle`.
#[derive(Clone)]
pub struct SeaThrottleCounters {
    conn: DatabaseConnection,
}

impl SeaThrottleCounters {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

fn of_key(key: &CounterKey) -> Condition {
    Condition::all()
        .add(Column::Kind.eq(key.kind.as_str()))
        .add(Column::Key.eq(key.key.as_str()))
}

fn to_counter(row: &login_throttle::Model) -> Result<FailureCounter, RepoError> {
    let failures = u32::try_from(row.failures).map_err(|_| {
        RepoError::Corrupt(format!(
            "login_throttle ({}, {}): failures = {}",
            row.kind, row.key, row.failures
        ))
    })?;
    Ok(FailureCounter {
        failures,
        last: row.last_failure,
        locked_until: row.locked_until,
    })
}

/// Upserts `key`'s row (a blank one if there is none) and returns it, locked for `txn`.
async fn lock_row(
    txn: &DatabaseTransaction,
    key: &CounterKey,
) -> Result<login_throttle::Model, RepoError> {
    let stmt = Query::insert()
        .into_table(login_throttle::Entity)
        .columns([
            Column::Kind,
            Column::Key,
            Column::Failures,
            Column::LastFailure,
        ])
        .values([
            key.kind.as_str().into(),
            key.key.as_str().into(),
            0_i64.into(),
            DateTime::<Utc>::UNIX_EPOCH.into(),
        ])
        .map_err(|e| RepoError::Database(format!("building a throttle counter lock: {e}")))?
        .on_conflict(
            // A write that changes nothing, for the lock it takes.
            OnConflict::columns([Column::Kind, Column::Key])
                .value(
                    Column::Failures,
                    Expr::col((login_throttle::Entity, Column::Failures)),
                )
                .to_owned(),
        )
        .returning_all()
        .to_owned();
    let row = txn
        .query_one(&stmt)
        .await
        .map_err(|e| repo_err(&e))?
        .ok_or_else(|| {
            RepoError::Database(format!(
                "throttle counter ({}, {}): the upsert returned no row",
                key.kind, key.key
            ))
        })?;
    login_throttle::Model::from_query_result(&row, "").map_err(|e| repo_err(&e))
}

#[async_trait]
impl ThrottleCounters for SeaThrottleCounters {
    async fn lock(
        &self,
        keys: &[CounterKey],
    ) -> Result<(SharedCounters, Box<dyn CounterLock>), RepoError> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let txn = self.conn.begin().await.map_err(|e| repo_err(&e))?;
        let mut counters = SharedCounters::new();
        for key in &keys {
            let counter = to_counter(&lock_row(&txn, key).await?)?;
            if !counter.is_blank() {
                counters.insert(key.clone(), counter);
            }
        }
        Ok((counters, Box::new(SeaCounterLock { txn, keys })))
    }

    async fn purge(
        &self,
        now: DateTime<Utc>,
        idle_since: DateTime<Utc>,
        keep: u64,
    ) -> Result<u64, RepoError> {
        let mut gone = login_throttle::Entity::delete_many()
            .filter(Column::LastFailure.lt(idle_since))
            .filter(
                Condition::any()
                    .add(Column::LockedUntil.is_null())
                    .add(Column::LockedUntil.lte(now)),
            )
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .rows_affected;
        for kind in CounterKind::ALL {
            // The newest failure beyond the `keep` newest: it and older ones go.
            let cutoff: Option<DateTime<Utc>> = login_throttle::Entity::find()
                .select_only()
                .column(Column::LastFailure)
                .filter(Column::Kind.eq(kind.as_str()))
                .order_by_desc(Column::LastFailure)
                .offset(keep)
                .limit(1)
                .into_tuple()
                .one(&self.conn)
                .await
                .map_err(|e| repo_err(&e))?;
            if let Some(cutoff) = cutoff {
                gone += login_throttle::Entity::delete_many()
                    .filter(Column::Kind.eq(kind.as_str()))
                    .filter(Column::LastFailure.lte(cutoff))
                    .exec(&self.conn)
                    .await
                    .map_err(|e| repo_err(&e))?
                    .rows_affected;
            }
        }
        Ok(gone)
    }
}

/// Counters locked by a transaction; dropped unsaved, the transaction rolls back.
struct SeaCounterLock {
    txn: DatabaseTransaction,
    keys: Vec<CounterKey>,
}

#[async_trait]
impl CounterLock for SeaCounterLock {
    async fn save(self: Box<Self>, counters: &SharedCounters) -> Result<(), RepoError> {
        let Self { txn, keys } = *self;
        if let Some(stray) = counters.keys().find(|k| keys.binary_search(k).is_err()) {
            return Err(RepoError::Conflict(format!(
                "throttle counter ({}, {}) was not locked",
                stray.kind, stray.key
            )));
        }
        for key in &keys {
            match counters.get(key).filter(|c| !c.is_blank()) {
                Some(c) => {
                    login_throttle::Entity::update_many()
                        .col_expr(Column::Failures, Expr::value(i64::from(c.failures)))
                        .col_expr(Column::LastFailure, Expr::value(c.last))
                        .col_expr(Column::LockedUntil, Expr::value(c.locked_until))
                        .filter(of_key(key))
                        .exec(&txn)
                        .await
                        .map_err(|e| repo_err(&e))?;
                }
                None => {
                    login_throttle::Entity::delete_many()
                        .filter(of_key(key))
                        .exec(&txn)
                        .await
                        .map_err(|e| repo_err(&e))?;
                }
            }
        }
        txn.commit().await.map_err(|e| repo_err(&e))
    }
}
