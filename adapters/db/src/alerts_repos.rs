//! Alerts, in the `alerts` table. Severity and kind are stored as their stable names; a
//! row with a name this version does not know is reported as `RepoError::Corrupt` naming
//! the alert. Open alerts are found through `idx_alerts_ack_created`
//! (`acknowledged_at`, `created_at`).

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use coffer_domain::alerts::{
    Alert, AlertFilter, AlertKind, AlertRepository, NewAlert, Severity, SeverityCounts,
};
use coffer_domain::ports::{Page, RepoError};
use coffer_domain::{AlertId, SourceId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Select, TransactionTrait, UpdateMany,
};

use crate::entities::alerts;
use crate::error::{is_foreign_key_violation, repo_err};
use crate::page::newest_first;

/// Both databases keep microseconds.
fn stored_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn to_alert(row: alerts::Model) -> Result<Alert, RepoError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        RepoError::Corrupt(format!("alerts.id={} {what}: {e}", row.id))
    };
    Ok(Alert {
        id: AlertId::new(row.id),
        severity: row
            .severity
            .parse::<Severity>()
            .map_err(|e| corrupt("severity", &e))?,
        kind: row
            .kind
            .parse::<AlertKind>()
            .map_err(|e| corrupt("kind", &e))?,
        message: row.message,
        source_id: row.source_id.map(SourceId::new),
        created_at: row.created_at,
        acknowledged_at: row.acknowledged_at,
        acknowledged_by: row.acknowledged_by,
    })
}

/// Unacknowledged alerts of `kind` about `source_id` (`None`: server-wide ones).
fn open_of(kind: AlertKind, source_id: Option<SourceId>) -> Select<alerts::Entity> {
    let select = alerts::Entity::find()
        .filter(alerts::Column::AcknowledgedAt.is_null())
        .filter(alerts::Column::Kind.eq(kind.as_str()));
    match source_id {
        Some(id) => select.filter(alerts::Column::SourceId.eq(id.get())),
        None => select.filter(alerts::Column::SourceId.is_null()),
    }
}

/// The newest unacknowledged alert of `kind` about `source_id`.
fn newest_open(kind: AlertKind, source_id: Option<SourceId>) -> Select<alerts::Entity> {
    open_of(kind, source_id)
        .order_by_desc(alerts::Column::CreatedAt)
        .order_by_desc(alerts::Column::Id)
}

/// Acknowledges (by `by`, at `at`) the unacknowledged alerts of `kind` about `source_id`.
fn acknowledge_open_of(
    kind: AlertKind,
    source_id: Option<SourceId>,
    by: &str,
    at: DateTime<Utc>,
) -> UpdateMany<alerts::Entity> {
    let update = alerts::Entity::update_many()
        .col_expr(alerts::Column::AcknowledgedAt, Expr::value(stored_time(at)))
        .col_expr(alerts::Column::AcknowledgedBy, Expr::value(by))
        .filter(alerts::Column::AcknowledgedAt.is_null())
        .filter(alerts::Column::Kind.eq(kind.as_str()));
    match source_id {
        Some(id) => update.filter(alerts::Column::SourceId.eq(id.get())),
        None => update.filter(alerts::Column::SourceId.is_null()),
    }
}

/// Serialises `raise_condition` on PostgreSQL (an arbitrary, fixed advisory-lock key;
/// the others: the audit chain's and the scheduler's).
const ALERT_CONDITION_LOCK_KEY: i64 = 0x00C0_FFE2_A1E2_7001;

/// `AlertRepository` over the `alerts` table.
///
/// An alert about a source deleted meanwhile (or never known) is stored server-wide
/// (`source_id` `None`, as the foreign key's `ON DELETE SET NULL` would have left it)
/// rather than lost.
#[derive(Clone)]
pub struct SeaAlertRepository {
    conn: DatabaseConnection,
}

impl SeaAlertRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    fn row(
        alert: &NewAlert,
        source_id: Option<SourceId>,
        now: DateTime<Utc>,
    ) -> alerts::ActiveModel {
        alerts::ActiveModel {
            id: NotSet,
            severity: Set(alert.severity.as_str().to_owned()),
            kind: Set(alert.kind.as_str().to_owned()),
            message: Set(alert.message.clone()),
            source_id: Set(source_id.map(SourceId::get)),
            created_at: Set(stored_time(now)),
            acknowledged_at: Set(None),
            acknowledged_by: Set(None),
        }
    }
}

#[async_trait]
impl AlertRepository for SeaAlertRepository {
    async fn insert(&self, alert: &NewAlert, now: DateTime<Utc>) -> Result<Alert, RepoError> {
        let first = Self::row(alert, alert.source_id, now)
            .insert(&self.conn)
            .await;
        let row = match first {
            Err(e) if alert.source_id.is_some() && is_foreign_key_violation(&e) => {
                Self::row(alert, None, now).insert(&self.conn).await
            }
            other => other,
        }
        .map_err(|e| repo_err(&e))?;
        to_alert(row)
    }

    async fn raise_condition(
        &self,
        alert: &NewAlert,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Alert>, RepoError> {
        let txn = self.conn.begin().await.map_err(|e| repo_err(&e))?;
        // Whoever raises second waits here until the first has committed, then finds its
        // alert open. PostgreSQL: an advisory lock held to the end of the transaction.
        // SQLite: a write first takes the database's write lock at once (a read first
        // would let two raisers each see no open alert before either writes).
        let serialise = if txn.get_database_backend() == DatabaseBackend::Postgres {
            format!("SELECT pg_advisory_xact_lock({ALERT_CONDITION_LOCK_KEY})")
        } else {
            "UPDATE alerts SET id = id WHERE id < 0".to_owned()
        };
        txn.execute_unprepared(&serialise)
            .await
            .map_err(|e| repo_err(&e))?;
        let open = newest_open(alert.kind, alert.source_id)
            .one(&txn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_alert)
            .transpose()?;
        if open.is_some_and(|open| open.severity >= alert.severity) {
            txn.commit().await.map_err(|e| repo_err(&e))?;
            return Ok(None);
        }
        acknowledge_open_of(alert.kind, alert.source_id, by, now)
            .exec(&txn)
            .await
            .map_err(|e| repo_err(&e))?;
        // As `insert`: a source deleted meanwhile leaves a server-wide alert. The first
        // try runs under a savepoint, as PostgreSQL ends a transaction at a failed
        // statement.
        let attempt = txn.begin().await.map_err(|e| repo_err(&e))?;
        let row = match Self::row(alert, alert.source_id, now)
            .insert(&attempt)
            .await
        {
            Ok(row) => {
                attempt.commit().await.map_err(|e| repo_err(&e))?;
                row
            }
            Err(e) if alert.source_id.is_some() && is_foreign_key_violation(&e) => {
                attempt.rollback().await.map_err(|e| repo_err(&e))?;
                Self::row(alert, None, now)
                    .insert(&txn)
                    .await
                    .map_err(|e| repo_err(&e))?
            }
            Err(e) => return Err(repo_err(&e)),
        };
        txn.commit().await.map_err(|e| repo_err(&e))?;
        to_alert(row).map(Some)
    }

    async fn get(&self, id: AlertId) -> Result<Option<Alert>, RepoError> {
        alerts::Entity::find_by_id(id.get())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_alert)
            .transpose()
    }

    async fn list(&self, filter: &AlertFilter) -> Result<Page<Alert>, RepoError> {
        let mut select = alerts::Entity::find();
        if filter.active_only {
            select = select.filter(alerts::Column::AcknowledgedAt.is_null());
        }
        if let Some(severity) = filter.severity {
            select = select.filter(alerts::Column::Severity.eq(severity.as_str()));
        }
        newest_first(
            &self.conn,
            select,
            (alerts::Column::CreatedAt, alerts::Column::Id),
            (filter.limit, filter.offset),
            None,
            to_alert,
        )
        .await
    }

    async fn find_open(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
    ) -> Result<Option<Alert>, RepoError> {
        newest_open(kind, source_id)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(to_alert)
            .transpose()
    }

    async fn acknowledge(
        &self,
        id: AlertId,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, RepoError> {
        // Only an open alert changes, so the first acknowledgement stands even when two
        // arrive at once.
        alerts::Entity::update_many()
            .col_expr(alerts::Column::AcknowledgedAt, Expr::value(stored_time(at)))
            .col_expr(alerts::Column::AcknowledgedBy, Expr::value(by))
            .filter(alerts::Column::Id.eq(id.get()))
            .filter(alerts::Column::AcknowledgedAt.is_null())
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        self.get(id).await
    }

    async fn acknowledge_open(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, RepoError> {
        let result = acknowledge_open_of(kind, source_id, by, at)
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected)
    }

    async fn count_active_by_severity(&self) -> Result<SeverityCounts, RepoError> {
        let rows: Vec<(String, i64)> = alerts::Entity::find()
            .select_only()
            .column(alerts::Column::Severity)
            .column_as(alerts::Column::Id.count(), "n")
            .filter(alerts::Column::AcknowledgedAt.is_null())
            .group_by(alerts::Column::Severity)
            .into_tuple()
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        let mut counts = SeverityCounts::default();
        for (severity, n) in rows {
            let n = u64::try_from(n).map_err(|e| {
                RepoError::Corrupt(format!("alerts: negative count for {severity}: {e}"))
            })?;
            match severity.parse::<Severity>() {
                Ok(Severity::Info) => counts.info = n,
                Ok(Severity::Warning) => counts.warning = n,
                Ok(Severity::Critical) => counts.critical = n,
                Err(e) => return Err(RepoError::Corrupt(format!("alerts severity: {e}"))),
            }
        }
        Ok(counts)
    }
}
