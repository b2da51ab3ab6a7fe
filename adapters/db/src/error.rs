use coffer_domain::ports::RepoError;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Errors of the database adapter's own lifecycle (connect, migrate). Repository calls
/// return the domain's `RepoError`.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to database {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Query(String),
}

/// One line describing a sea-orm error, without the nesting noise of its `Display`.
pub(crate) fn describe(err: &DbErr) -> String {
    match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_message(e),
        other => other.to_string(),
    }
}

fn sqlx_message(err: &sea_orm::sqlx::Error) -> String {
    use sea_orm::sqlx::Error;
    match err {
        Error::Io(io) => io.to_string(),
        Error::PoolTimedOut => "timed out waiting for the database".to_owned(),
        Error::Database(db) => db.message().to_owned(),
        Error::Configuration(e) => format!("invalid database URL: {e}"),
        other => other.to_string(),
    }
}

/// Maps a sea-orm error to the port's error: unique violations become `Conflict`.
pub(crate) fn repo_err(err: &DbErr) -> RepoError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(m)) => RepoError::Conflict(m),
        Some(SqlErr::ForeignKeyConstraintViolation(m)) => {
            RepoError::Conflict(format!("referenced row missing or still in use: {m}"))
        }
        _ => RepoError::Database(describe(err)),
    }
}

/// Whether a write was refused because a referenced row (a source) is missing.
pub(crate) fn is_foreign_key_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(SqlErr::ForeignKeyConstraintViolation(_))
    )
}
