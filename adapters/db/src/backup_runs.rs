//! The backup runs the dashboard's charts draw, read from `jobs`.
//!
//! Whether a succeeded backup left a `partial` snapshot is in the job's `result` JSON
//! (see `jobs_repos`). The queries that count by outcome test it with `LIKE` on the
//! encoded field, `"status":"partial"`: serde_json writes no spaces, and a quote inside
//! a string value (a warning naming a file) is escaped, so only the field itself matches.
//! The contract tests pin this down on both databases.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use coffer_domain::SourceId;
use coffer_domain::charts::{BackupRun, BackupRuns, RunOutcome};
use coffer_domain::jobs::{JobKind, JobState};
use coffer_domain::ports::RepoError;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait as _, Condition, DatabaseBackend, DatabaseConnection, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};

use crate::entities::jobs;
use crate::error::repo_err;
use crate::jobs_repos::to_job;

/// A `partial` snapshot's status in a backup job's `result`, as a `LIKE` pattern.
const PARTIAL: &str = r#"%"status":"partial"%"#;

const FINAL: [JobState; 3] = [JobState::Succeeded, JobState::Failed, JobState::Cancelled];

/// 1 for a result naming a `partial` snapshot, else 0. Literal SQL (no bound values), so
/// that the `GROUP BY` repeats the very same expression: PostgreSQL does not see two
/// expressions with different placeholders as one.
const PARTIAL_FLAG: &str = r#"CASE WHEN result LIKE '%"status":"partial"%' THEN 1 ELSE 0 END"#;

/// The UTC day of `created_at` as `YYYY-MM-DD`. SQLite keeps the time as RFC 3339 text
/// in UTC, whose first ten characters are the day.
fn created_day(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        _ => "substr(created_at, 1, 10)",
    }
}

/// `BackupRuns` over the `jobs` table.
#[derive(Clone)]
pub struct SeaBackupRuns {
    conn: DatabaseConnection,
}

impl SeaBackupRuns {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

/// The finished backup jobs of `source`.
fn finished_of(source: SourceId) -> sea_orm::Select<jobs::Entity> {
    jobs::Entity::find()
        .filter(jobs::Column::SourceId.eq(source.get()))
        .filter(jobs::Column::Kind.eq(JobKind::Backup.as_str()))
        .filter(jobs::Column::State.is_in(FINAL.map(JobState::as_str)))
}

#[async_trait]
impl BackupRuns for SeaBackupRuns {
    async fn count_per_day(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(NaiveDate, RunOutcome, u64)>, RepoError> {
        let day = created_day(self.conn.get_database_backend());
        // The state's index with the creation time: one range per final state.
        let rows: Vec<(String, String, i32, i64)> = jobs::Entity::find()
            .select_only()
            .column_as(Expr::cust(day), "day")
            .column(jobs::Column::State)
            .column_as(Expr::cust(PARTIAL_FLAG), "partial")
            .column_as(jobs::Column::Id.count(), "n")
            .filter(jobs::Column::State.is_in(FINAL.map(JobState::as_str)))
            .filter(jobs::Column::Kind.eq(JobKind::Backup.as_str()))
            .filter(jobs::Column::CreatedAt.gte(from))
            .filter(jobs::Column::CreatedAt.lt(to))
            .group_by(Expr::cust(day))
            .group_by(jobs::Column::State)
            .group_by(Expr::cust(PARTIAL_FLAG))
            .into_tuple()
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        rows.into_iter()
            .map(|(day, state, partial, n)| {
                let corrupt = |what: &str| RepoError::Corrupt(format!("jobs {what}"));
                let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                    .map_err(|e| corrupt(&format!("created_at day `{day}`: {e}")))?;
                let outcome = match state.parse::<JobState>() {
                    Ok(JobState::Succeeded) if partial != 0 => RunOutcome::Warnings,
                    Ok(JobState::Succeeded) => RunOutcome::Succeeded,
                    Ok(JobState::Failed) => RunOutcome::Failed,
                    Ok(JobState::Cancelled) => RunOutcome::Cancelled,
                    _ => return Err(corrupt(&format!("state `{state}` among final ones"))),
                };
                Ok((day, outcome, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    async fn recent(&self, source: SourceId, limit: u64) -> Result<Vec<BackupRun>, RepoError> {
        let rows = finished_of(source)
            .order_by_desc(jobs::Column::CreatedAt)
            .order_by_desc(jobs::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in rows {
            let job = to_job(row)?;
            let run = BackupRun::of(&job).ok_or_else(|| {
                RepoError::Corrupt(format!("jobs.id={} is no finished backup", job.id))
            })?;
            runs.push(run);
        }
        Ok(runs)
    }

    async fn success_streak(&self, source: SourceId) -> Result<u64, RepoError> {
        // The newest run that broke the streak: failed, cancelled or with warnings.
        let broken = Condition::any()
            .add(jobs::Column::State.ne(JobState::Succeeded.as_str()))
            .add(jobs::Column::Result.is_null())
            .add(jobs::Column::Result.like(PARTIAL));
        let last_break: Option<(DateTime<Utc>, String)> = finished_of(source)
            .filter(broken)
            .select_only()
            .column(jobs::Column::CreatedAt)
            .column(jobs::Column::Id)
            .order_by_desc(jobs::Column::CreatedAt)
            .order_by_desc(jobs::Column::Id)
            .into_tuple()
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        let mut clean = finished_of(source)
            .filter(jobs::Column::State.eq(JobState::Succeeded.as_str()))
            .filter(jobs::Column::Result.not_like(PARTIAL));
        if let Some((at, id)) = last_break {
            clean = clean.filter(
                Condition::any().add(jobs::Column::CreatedAt.gt(at)).add(
                    Condition::all()
                        .add(jobs::Column::CreatedAt.eq(at))
                        .add(jobs::Column::Id.gt(id)),
                ),
            );
        }
        clean.count(&self.conn).await.map_err(|e| repo_err(&e))
    }
}
