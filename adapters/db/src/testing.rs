//! Test support: fresh, isolated databases for contract and end-to-end tests.
//!
//! SQLite databases live in a temporary directory. PostgreSQL databases are created,
//! one per test, on the server named by `COFFER_TEST_POSTGRES_URL`; when it is unset the
//! test is skipped with a printed reason — unless `COFFER_TEST_REQUIRE_ALL=1`, which CI
//! sets, and which turns every skip into a failure.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, Database as SeaDatabase, Statement};

/// The variable naming a PostgreSQL server for tests (an admin URL: it creates databases).
pub const POSTGRES_URL_VAR: &str = "COFFER_TEST_POSTGRES_URL";
/// Set to `1` to make every skipped test fail instead (CI).
pub const REQUIRE_ALL_VAR: &str = "COFFER_TEST_REQUIRE_ALL";

/// Whether skipping is forbidden (`COFFER_TEST_REQUIRE_ALL=1`).
#[must_use]
pub fn require_all() -> bool {
    std::env::var(REQUIRE_ALL_VAR).is_ok_and(|v| v == "1")
}

/// Skips (returns `None` after printing why) or, when skipping is forbidden, panics.
///
/// # Panics
/// When `COFFER_TEST_REQUIRE_ALL=1`.
pub fn skip<T>(test: &str, reason: &str) -> Option<T> {
    assert!(
        !require_all(),
        "{test}: {reason}, and {REQUIRE_ALL_VAR}=1 forbids skipping"
    );
    eprintln!("skipped: {test}: {reason}");
    None
}

/// A database made for one test.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP: Once = Once::new();

impl TestDatabase {
    /// A new SQLite file in a fresh temporary directory.
    ///
    /// # Panics
    /// When no temporary directory can be made.
    #[must_use]
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("coffer.db").display()
        );
        Self {
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// A new, empty PostgreSQL database, or `None` (skipped) when no server is configured.
    ///
    /// # Panics
    /// When the server is configured but cannot create a database.
    pub async fn postgres(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
            return skip(
                test,
                &format!("no PostgreSQL ({POSTGRES_URL_VAR} is not set)"),
            );
        };
        let admin = SeaDatabase::connect(admin_url.as_str())
            .await
            .unwrap_or_else(|e| {
                panic!("{test}: cannot reach PostgreSQL at {POSTGRES_URL_VAR}: {e}")
            });
        let pid = std::process::id();
        sweep_stale(&admin, pid).await;
        let name = format!(
            "coffer_test_{pid}_{}",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .expect("drop a leftover test database");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        let url = replace_database(&admin_url, &name);
        Some(Self {
            url,
            _dir: None,
            postgres: Some((admin_url, name)),
        })
    }

    /// Drops the PostgreSQL database (SQLite files go with the temporary directory).
    pub async fn cleanup(self) {
        if let Some((admin_url, name)) = &self.postgres
            && let Ok(admin) = SeaDatabase::connect(admin_url.as_str()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
            let _ = admin.close().await;
        }
    }
}

/// Drops test databases left by earlier test processes (a panicking test never reaches
/// `cleanup`): those whose process (the pid in the name) no longer runs. A database of a
/// live process belongs to a test run beside this one (two checkouts testing at once).
async fn sweep_stale(admin: &sea_orm::DatabaseConnection, pid: u32) {
    let mut first = false;
    SWEEP.call_once(|| first = true);
    if !first {
        return;
    }
    let backend = admin.get_database_backend();
    let Ok(rows) = admin
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT datname FROM pg_database WHERE datname LIKE 'coffer\\_test\\_%'",
        ))
        .await
    else {
        return;
    };
    let ours = format!("coffer_test_{pid}_");
    for row in rows {
        if let Ok(name) = row.try_get::<String>("", "datname")
            && !name.starts_with(&ours)
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !owner_alive(&name)
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name}"))
                .await;
        }
    }
}

/// Whether the test process that named a database `coffer_test_<pid>_<n>` still runs.
fn owner_alive(name: &str) -> bool {
    name.strip_prefix("coffer_test_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// `postgres://u@h:p/db?x` with `db` replaced by `name` (query kept).
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            super::replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            super::replace_database("postgres://p@h/test?sslmode=disable", "x"),
            "postgres://p@h/x?sslmode=disable"
        );
        assert_eq!(
            super::replace_database("postgres://p@h", "x"),
            "postgres://p@h/x"
        );
    }
}
