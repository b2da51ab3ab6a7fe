//! The scheduler's state on `sources` (`enabled`, `last_run_at`, `next_run_at`) and the
//! newest snapshot per source.

use chrono::{DateTime, Utc};
use coffer_domain::SourceId;
use coffer_domain::ports::RepoError;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait as _, DatabaseConnection, EntityTrait, QueryFilter as _, Statement};

use crate::entities::{backups, sources};
use crate::error::repo_err;

/// `next_run_at` kept while the row's schedule is `schedule`, else `NULL`: the value to
/// set in an update that writes `schedule` (SQL evaluates every `SET` on the old row).
pub(crate) fn next_run_if_schedule_is(schedule: Option<&str>) -> Expr {
    let unchanged = match schedule {
        Some(s) => Expr::col(sources::Column::Schedule).eq(s),
        None => Expr::col(sources::Column::Schedule).is_null(),
    };
    Expr::case(unchanged, Expr::col(sources::Column::NextRunAt))
        .finally(Expr::value(Option::<DateTime<Utc>>::None))
        .into()
}

pub(crate) async fn set_enabled(
    conn: &DatabaseConnection,
    id: SourceId,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<bool, RepoError> {
    let mut update = sources::Entity::update_many()
        .col_expr(sources::Column::Enabled, Expr::value(enabled))
        .col_expr(sources::Column::UpdatedAt, Expr::value(now))
        .filter(sources::Column::Id.eq(id.get()));
    if !enabled {
        update = update.col_expr(
            sources::Column::NextRunAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    }
    let result = update.exec(conn).await.map_err(|e| repo_err(&e))?;
    Ok(result.rows_affected > 0)
}

/// Writes `next_run_at` (and `last_run_at` when `last` is given) while the source still
/// has the schedule the caller planned with.
pub(crate) async fn set_runs(
    conn: &DatabaseConnection,
    id: SourceId,
    for_schedule: &str,
    last: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
) -> Result<bool, RepoError> {
    let mut update = sources::Entity::update_many()
        .col_expr(sources::Column::NextRunAt, Expr::value(next))
        .filter(sources::Column::Id.eq(id.get()))
        .filter(sources::Column::Schedule.eq(for_schedule));
    if let Some(at) = last {
        update = update.col_expr(sources::Column::LastRunAt, Expr::value(at));
    }
    let result = update.exec(conn).await.map_err(|e| repo_err(&e))?;
    Ok(result.rows_affected > 0)
}

/// The newest row of each source, by source id. One query; for each source, its newest
/// row is found through `idx_backups_source_created` (a few index probes per source,
/// never a scan of the catalog).
pub(crate) async fn latest_per_source(
    conn: &DatabaseConnection,
) -> Result<Vec<backups::Model>, RepoError> {
    const SQL: &str = "SELECT * FROM backups WHERE id IN (\
         SELECT (SELECT b.id FROM backups b WHERE b.source_id = s.id \
                 ORDER BY b.created_at DESC, b.id DESC LIMIT 1) \
         FROM sources s) \
         ORDER BY source_id";
    backups::Entity::find()
        .from_raw_sql(Statement::from_string(conn.get_database_backend(), SQL))
        .all(conn)
        .await
        .map_err(|e| repo_err(&e))
}
