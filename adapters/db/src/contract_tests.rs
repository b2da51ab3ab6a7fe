//! The repository contract, run against SQLite always and against PostgreSQL when
//! `COFFER_TEST_POSTGRES_URL` is set. Each case gets a fresh, migrated database.

use coffer_domain::auth::Role;
use coffer_domain::ports::{DatabaseHealth, RepoError, RoleRepository, SettingsRepository};
use coffer_migration::{Migrator, MigratorTrait, SchemaManager};
use sea_orm::{ConnectionTrait, Statement};

use crate::testing::TestDatabase;
use crate::{Database, DbOptions};

async fn migrated(url: &str) -> Database {
    let db = Database::connect(&DbOptions::new(url))
        .await
        .expect("connect to the test database");
    db.migrate().await.expect("migrate");
    db
}

/// Declares one contract case, run on both backends.
macro_rules! contract {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let t = TestDatabase::sqlite();
                let db = migrated(&t.url).await;
                ($body)(db.clone()).await;
                db.close().await.expect("close");
            }

            #[tokio::test]
            async fn postgres() {
                let Some(t) =
                    TestDatabase::postgres(concat!(stringify!($name), "::postgres")).await
                else {
                    return;
                };
                let db = migrated(&t.url).await;
                ($body)(db.clone()).await;
                db.close().await.expect("close");
                t.cleanup().await;
            }
        }
    };
}

const TABLES: [&str; 8] = [
    "roles",
    "users",
    "audit_logs",
    "sources",
    "backups",
    "jobs",
    "alerts",
    "settings",
];

const INDEXES: [(&str, &str); 10] = [
    ("backups", "idx_backups_created_at"),
    ("backups", "idx_backups_source_created"),
    ("backups", "idx_backups_status_created"),
    ("audit_logs", "idx_audit_timestamp"),
    ("audit_logs", "idx_audit_username_timestamp"),
    ("audit_logs", "idx_audit_action_timestamp"),
    ("users", "idx_users_role"),
    ("jobs", "idx_jobs_state_created"),
    ("jobs", "idx_jobs_source_state"),
    ("alerts", "idx_alerts_ack_created"),
];

contract!(migrations_are_idempotent, |db: Database| async move {
    db.migrate().await.expect("second migrate is a no-op");
    db.migrate().await.expect("third migrate is a no-op");
    let (applied, known) = db.migration_status().await.expect("status");
    assert_eq!(applied, known);
    assert_eq!(known, Migrator::migrations().len());
    // Seeded rows are not duplicated by re-running.
    assert_eq!(db.roles().list().await.expect("roles").len(), 3);
});

contract!(
    schema_has_every_table_and_index,
    |db: Database| async move {
        let manager = SchemaManager::new(db.connection());
        for table in TABLES {
            assert!(
                manager.has_table(table).await.expect("has_table"),
                "table {table}"
            );
        }
        for (table, index) in INDEXES {
            assert!(
                manager.has_index(table, index).await.expect("has_index"),
                "index {index} on {table}"
            );
        }
    }
);

contract!(
    roles_are_seeded_as_the_policy_says,
    |db: Database| async move {
        let roles = db.roles().list().await.expect("list roles");
        let names: Vec<Role> = roles.iter().map(|r| r.role).collect();
        assert_eq!(names, vec![Role::Admin, Role::Operator, Role::Viewer]);
        let viewer = db
            .roles()
            .find_by_name(Role::Viewer)
            .await
            .expect("find")
            .expect("viewer exists");
        assert_eq!(viewer.role, Role::Viewer);
    }
);

contract!(
    a_role_row_that_contradicts_the_policy_is_refused,
    |db: Database| async move {
        db.connection()
            .execute_unprepared(
                r#"UPDATE roles SET permissions = '["view","manage_users"]' WHERE name = 'viewer'"#,
            )
            .await
            .expect("tamper");
        let err = db
            .roles()
            .list()
            .await
            .expect_err("tampered role must be refused");
        assert!(
            matches!(err, RepoError::Corrupt(ref m) if m.contains("viewer")),
            "{err}"
        );
    }
);

contract!(settings_contract, |db: Database| async move {
    let s = db.settings();
    assert_eq!(s.get("quota.max_storage_mb").await.expect("get"), None);
    s.put("quota.max_storage_mb", "500").await.expect("put");
    s.put("a.first", r#"{"x":1}"#).await.expect("put");
    assert_eq!(
        s.get("quota.max_storage_mb").await.expect("get").as_deref(),
        Some("500")
    );
    s.put("quota.max_storage_mb", "600").await.expect("replace");
    assert_eq!(
        s.get("quota.max_storage_mb").await.expect("get").as_deref(),
        Some("600")
    );
    assert_eq!(
        s.list().await.expect("list"),
        vec![
            ("a.first".to_owned(), r#"{"x":1}"#.to_owned()),
            ("quota.max_storage_mb".to_owned(), "600".to_owned()),
        ]
    );
    assert!(s.delete("a.first").await.expect("delete"));
    assert!(!s.delete("a.first").await.expect("delete missing"));
    assert_eq!(s.list().await.expect("list").len(), 1);
});

contract!(foreign_keys_are_enforced, |db: Database| async move {
    let err = db
        .connection()
        .execute_unprepared(
            "INSERT INTO users (username, password_hash, role_id, created_at, updated_at, is_active) \
             VALUES ('ghost', 'x', 999, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', true)",
        )
        .await
        .expect_err("a user with a missing role must be refused");
    assert!(
        matches!(crate::error::repo_err(&err), RepoError::Conflict(_)),
        "{err}"
    );
});

contract!(
    unique_violations_map_to_conflict,
    |db: Database| async move {
        let err = db
            .connection()
            .execute_unprepared("INSERT INTO roles (name, permissions) VALUES ('admin', '[]')")
            .await
            .expect_err("duplicate role name");
        assert!(
            matches!(crate::error::repo_err(&err), RepoError::Conflict(_)),
            "{err}"
        );
    }
);

contract!(ping_answers, |db: Database| async move {
    db.health().ping().await.expect("ping");
});

#[tokio::test]
async fn sqlite_runs_in_wal_mode_with_full_sync_and_foreign_keys() {
    let t = TestDatabase::sqlite();
    let db = migrated(&t.url).await;
    let conn = db.connection();
    let backend = conn.get_database_backend();
    for (pragma, expected) in [
        ("journal_mode", "wal"),
        ("synchronous", "2"),
        ("foreign_keys", "1"),
    ] {
        let row = conn
            .query_one_raw(Statement::from_string(backend, format!("PRAGMA {pragma}")))
            .await
            .expect("pragma")
            .expect("a row");
        let value: String = row
            .try_get_by_index::<String>(0)
            .or_else(|_| row.try_get_by_index::<i64>(0).map(|v| v.to_string()))
            .expect("pragma value");
        assert_eq!(value.to_lowercase(), expected, "PRAGMA {pragma}");
    }
}

#[tokio::test]
async fn unreachable_database_is_one_clear_error() {
    let mut options = DbOptions::new("postgres://coffer:secret@127.0.0.1:1/coffer");
    options.connect_timeout = std::time::Duration::from_secs(2);
    let err = Database::connect(&options)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.starts_with("cannot connect to database postgres://coffer:***@127.0.0.1:1/coffer"),
        "{err}"
    );
    assert!(!err.contains("secret"), "password leaked: {err}");
    assert!(!err.contains('\n'), "one line: {err}");
}
