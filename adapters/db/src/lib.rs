//! `coffer-db`: the catalog database adapter. It implements the domain's repository ports
//! with sea-orm over SQLite (the default, a file in the data directory) or PostgreSQL
//! (chosen by URL), and runs `coffer-migration` at start-up.
//!
//! SQLite is opened in WAL mode with `synchronous=FULL` (a committed catalog row survives a
//! power cut), foreign keys on, and a busy timeout so the CLI and a running server can
//! share one database file. Library errors stop here: callers see `RepoError`.

mod alerts_repos;
mod auth_repos;
mod backup_repos;
mod backup_runs;
#[cfg(feature = "bench-seed")]
pub mod bench_seed;
mod counters;
pub mod entities;
mod error;
mod jobs_repos;
mod leadership;
mod page;
mod replica_repos;
mod repos;
mod source_runs;
mod storage_history;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod throttle_counters;
mod token_repos;

use std::time::Duration;

use coffer_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, DatabaseBackend, DatabaseConnection};

pub use alerts_repos::SeaAlertRepository;
pub use auth_repos::{SeaAuditRepository, SeaSessionRevocations, SeaUserRepository};
pub use backup_repos::{SeaBackupCatalog, SeaSourceRepository};
pub use backup_runs::SeaBackupRuns;
pub use counters::SeaCounterRepository;
pub use error::DbError;
pub use jobs_repos::SeaJobRepository;
pub use leadership::SeaLeadership;
pub use replica_repos::SeaReplicaRepository;
pub use repos::{SeaDatabaseHealth, SeaRoleRepository, SeaSettingsRepository};
pub use storage_history::SeaStorageHistory;
pub use throttle_counters::SeaThrottleCounters;
pub use token_repos::SeaApiTokenRepository;

/// How to reach the catalog database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl DbOptions {
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A connected, migrated catalog. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Database {
    conn: DatabaseConnection,
}

/// How long a SQLite writer waits for another process's write lock (the CLI beside a
/// running server) before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl Database {
    /// Connects. Does not migrate; call [`Database::migrate`].
    ///
    /// # Errors
    /// [`DbError::Connect`] naming the (password-redacted) URL when the database cannot be
    /// reached within the connect timeout or the URL is not understood.
    pub async fn connect(options: &DbOptions) -> Result<Self, DbError> {
        let shown = redact_url(&options.url);
        let backend = if options.url.starts_with("sqlite:") {
            DatabaseBackend::Sqlite
        } else if options.url.starts_with("postgres://") || options.url.starts_with("postgresql://")
        {
            DatabaseBackend::Postgres
        } else {
            return Err(DbError::Connect {
                url: shown,
                reason: "unsupported database URL (use sqlite: or postgres://)".to_owned(),
            });
        };
        let mut opts = ConnectOptions::new(options.url.clone());
        opts.max_connections(options.max_connections)
            .min_connections(0)
            .connect_timeout(options.connect_timeout)
            .acquire_timeout(options.connect_timeout)
            .sqlx_logging(false);
        if backend == DatabaseBackend::Sqlite {
            opts.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
            });
        }
        let conn = sea_orm::Database::connect(opts)
            .await
            .map_err(|e| DbError::Connect {
                url: shown.clone(),
                reason: error::describe(&e),
            })?;
        // The pool may connect lazily; make sure the database really answers now, so a
        // wrong URL fails at start-up and not at the first request.
        conn.ping().await.map_err(|e| DbError::Connect {
            url: shown,
            reason: error::describe(&e),
        })?;
        Ok(Self { conn })
    }

    /// Applies every migration step not applied yet. Idempotent.
    ///
    /// # Errors
    /// [`DbError::Migrate`] when a step fails (the database is left at the last step
    /// that completed).
    pub async fn migrate(&self) -> Result<(), DbError> {
        Migrator::up(&self.conn, None)
            .await
            .map_err(|e| DbError::Migrate(error::describe(&e)))
    }

    /// Steps applied and steps known, to report in `coffer migrate`.
    ///
    /// # Errors
    /// When the migration table cannot be read.
    pub async fn migration_status(&self) -> Result<(usize, usize), DbError> {
        let applied = Migrator::get_applied_migrations(&self.conn)
            .await
            .map_err(|e| DbError::Migrate(error::describe(&e)))?
            .len();
        Ok((applied, Migrator::migrations().len()))
    }

    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self.conn.get_database_backend() {
            DatabaseBackend::Postgres => "postgres",
            DatabaseBackend::Sqlite => "sqlite",
            _ => "other",
        }
    }

    #[must_use]
    pub fn health(&self) -> SeaDatabaseHealth {
        SeaDatabaseHealth::new(self.conn.clone())
    }

    #[must_use]
    pub fn roles(&self) -> SeaRoleRepository {
        SeaRoleRepository::new(self.conn.clone())
    }

    #[must_use]
    pub fn settings(&self) -> SeaSettingsRepository {
        SeaSettingsRepository::new(self.conn.clone())
    }

    #[must_use]
    pub fn users(&self) -> SeaUserRepository {
        SeaUserRepository::new(self.conn.clone())
    }

    /// The audit trail, its rows sealed under `chain` (the audit key).
    #[must_use]
    pub fn audit(&self, chain: coffer_domain::audit::AuditChain) -> SeaAuditRepository {
        SeaAuditRepository::new(self.conn.clone(), chain)
    }

    #[must_use]
    pub fn sources(&self) -> SeaSourceRepository {
        SeaSourceRepository::new(self.conn.clone())
    }

    #[must_use]
    pub fn catalog(&self) -> SeaBackupCatalog {
        SeaBackupCatalog::new(self.conn.clone())
    }

    #[must_use]
    pub fn counters(&self) -> SeaCounterRepository {
        SeaCounterRepository::new(self.conn.clone())
    }

    #[must_use]
    pub fn jobs(&self) -> SeaJobRepository {
        SeaJobRepository::new(self.conn.clone())
    }

    /// The scheduler's leadership among the instances sharing this catalog (one per
    /// process: it holds a connection while leading).
    #[must_use]
    pub fn leadership(&self) -> SeaLeadership {
        SeaLeadership::new(self.conn.clone())
    }

    #[must_use]
    pub fn alerts(&self) -> SeaAlertRepository {
        SeaAlertRepository::new(self.conn.clone())
    }

    #[must_use]
    pub fn replicas(&self) -> SeaReplicaRepository {
        SeaReplicaRepository::new(self.conn.clone())
    }

    /// The finished backup runs, as the dashboard's charts count them.
    #[must_use]
    pub fn backup_runs(&self) -> SeaBackupRuns {
        SeaBackupRuns::new(self.conn.clone())
    }

    #[must_use]
    pub fn storage_history(&self) -> SeaStorageHistory {
        SeaStorageHistory::new(self.conn.clone())
    }

    #[must_use]
    pub fn revocations(&self) -> SeaSessionRevocations {
        SeaSessionRevocations::new(self.conn.clone())
    }

    /// Personal access tokens.
    #[must_use]
    pub fn api_tokens(&self) -> SeaApiTokenRepository {
        SeaApiTokenRepository::new(self.conn.clone())
    }

    /// The login throttle's failure counters, shared by every server on this catalog.
    #[must_use]
    pub fn throttle_counters(&self) -> SeaThrottleCounters {
        SeaThrottleCounters::new(self.conn.clone())
    }

    /// Closes the pool, waiting for connections in use (graceful shutdown).
    ///
    /// # Errors
    /// When closing fails.
    pub async fn close(self) -> Result<(), DbError> {
        self.conn
            .close()
            .await
            .map_err(|e| DbError::Query(error::describe(&e)))
    }

    /// The raw connection, for tests in this crate and the test-support helpers.
    #[cfg(any(test, feature = "test-support"))]
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod contract_tests;

#[cfg(test)]
mod unit_tests {
    use super::redact_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://coffer:s3cret@db:5432/coffer"),
            "postgres://coffer:***@db:5432/coffer"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("sqlite://./coffer-data/coffer.db?mode=rwc"),
            "sqlite://./coffer-data/coffer.db?mode=rwc"
        );
    }
}
