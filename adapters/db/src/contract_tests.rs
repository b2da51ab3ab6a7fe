//! The repository contract, run against SQLite always and against PostgreSQL when
//! `COFFER_TEST_POSTGRES_URL` is set. Each case gets a fresh, migrated database.

use coffer_domain::audit::AuditFilter;
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

const TABLES: [&str; 9] = [
    "revoked_sessions",
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

mod auth {
    use chrono::{TimeDelta, TimeZone, Utc};
    use coffer_domain::audit::{AuditAction, AuditEntry, GENESIS_HASH, verify_chain};
    use coffer_domain::auth::{ClientInfo, Role, Username};
    use coffer_domain::ports::{
        AuditRepository, RepoError, SessionRevocations, UserChanges, UserRepository,
    };

    use super::*;

    fn name(s: &str) -> Username {
        Username::parse(s).expect("valid username")
    }

    fn t(secs: i64) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    contract!(users_contract, |db: Database| async move {
        let users = db.users();
        assert_eq!(users.count().await.expect("count"), 0);
        let alice = users
            .create(&name("alice"), "$argon2id$hash-a", Role::Operator, t(0))
            .await
            .expect("create");
        assert_eq!(alice.username.as_str(), "alice");
        assert_eq!(alice.role, Role::Operator);
        assert!(alice.is_active);
        assert_eq!(alice.token_generation, 0);
        assert_eq!(alice.last_login, None);
        let err = users
            .create(&name("alice"), "x", Role::Viewer, t(1))
            .await
            .expect_err("duplicate");
        assert!(
            matches!(err, RepoError::Conflict(ref m) if m.contains("alice")),
            "{err}"
        );

        let creds = users
            .credentials("alice")
            .await
            .expect("creds")
            .expect("exists");
        assert_eq!(creds.password_hash, "$argon2id$hash-a");
        assert!(
            users.credentials("Alice").await.expect("creds").is_none(),
            "names are exact"
        );
        assert_eq!(users.get(alice.id).await.expect("get"), Some(alice.clone()));
        assert!(
            users
                .get(coffer_domain::UserId::new(999))
                .await
                .expect("get")
                .is_none()
        );

        // A change that ends sessions bumps the generation; a no-op does not.
        let same = users
            .update(
                alice.id,
                &UserChanges {
                    role: Some(Role::Operator),
                    is_active: Some(true),
                },
                t(2),
            )
            .await
            .expect("update")
            .expect("exists");
        assert_eq!(same.token_generation, 0);
        let demoted = users
            .update(
                alice.id,
                &UserChanges {
                    role: Some(Role::Viewer),
                    is_active: None,
                },
                t(3),
            )
            .await
            .expect("update")
            .expect("exists");
        assert_eq!((demoted.role, demoted.token_generation), (Role::Viewer, 1));
        let disabled = users
            .update(
                alice.id,
                &UserChanges {
                    role: None,
                    is_active: Some(false),
                },
                t(4),
            )
            .await
            .expect("update")
            .expect("exists");
        assert_eq!((disabled.is_active, disabled.token_generation), (false, 2));
        let rehashed = users
            .set_password_hash(alice.id, "$argon2id$hash-b", t(5))
            .await
            .expect("set")
            .expect("exists");
        assert_eq!(rehashed.token_generation, 3);
        users
            .record_login(alice.id, t(6), Some("$argon2id$hash-c"))
            .await
            .expect("login");
        let creds = users
            .credentials("alice")
            .await
            .expect("creds")
            .expect("exists");
        assert_eq!(creds.password_hash, "$argon2id$hash-c");
        assert_eq!(creds.user.last_login, Some(t(6)));
        assert_eq!(
            creds.user.token_generation, 3,
            "a login does not end sessions"
        );

        users
            .create(&name("bob"), "h", Role::Admin, t(7))
            .await
            .expect("create");
        let listed: Vec<String> = users
            .list()
            .await
            .expect("list")
            .iter()
            .map(|u| u.username.to_string())
            .collect();
        assert_eq!(listed, ["alice", "bob"]);
        assert_eq!(users.count().await.expect("count"), 2);
    });

    fn entry(i: usize) -> AuditEntry {
        let client = ClientInfo {
            ip: Some(format!("10.0.0.{i}")),
            user_agent: Some("test-agent".to_owned()),
        };
        AuditEntry::new(format!("user{}", i % 3), AuditAction::Login, &client)
            .resource(format!("user:{i}"))
            .detail(format!("event {i}"))
    }

    contract!(audit_trail_is_a_hash_chain, |db: Database| async move {
        let audit = db.audit();
        for i in 0..5 {
            let mut e = entry(i);
            if i == 3 {
                e = e.failed();
            }
            audit
                .append(&e, t(i64::try_from(i).expect("small")))
                .await
                .expect("append");
        }
        let rows = audit.scan(0, 100).await.expect("scan");
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].prev_hash, GENESIS_HASH);
        verify_chain(GENESIS_HASH.to_owned(), &rows).expect("the stored chain verifies");

        // Listing: newest first, filters, keyset paging.
        let all = audit.list(&AuditFilter::default(), 10).await.expect("list");
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), {
            let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
            ids.reverse();
            ids
        });
        let failed = audit
            .list(
                &AuditFilter {
                    success: Some(false),
                    ..AuditFilter::default()
                },
                10,
            )
            .await
            .expect("list");
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].entry.detail.as_deref(), Some("event 3"));
        let by_user = audit
            .list(
                &AuditFilter {
                    username: Some("user1".into()),
                    ..AuditFilter::default()
                },
                10,
            )
            .await
            .expect("list");
        assert_eq!(by_user.len(), 2);
        let window = audit
            .list(
                &AuditFilter {
                    from: Some(t(1)),
                    to: Some(t(3)),
                    ..AuditFilter::default()
                },
                10,
            )
            .await
            .expect("list");
        assert_eq!(window.len(), 2);
        let page2 = audit
            .list(
                &AuditFilter {
                    before_id: Some(all[1].id),
                    ..AuditFilter::default()
                },
                2,
            )
            .await
            .expect("list");
        assert_eq!(
            page2.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![all[2].id, all[3].id]
        );
        let by_action = audit
            .list(
                &AuditFilter {
                    action: Some("logout".into()),
                    ..AuditFilter::default()
                },
                10,
            )
            .await
            .expect("list");
        assert!(by_action.is_empty());
    });

    contract!(
        concurrent_appends_keep_one_chain,
        |db: Database| async move {
            let mut tasks = Vec::new();
            for i in 0..40 {
                let audit = db.audit();
                tasks.push(tokio::spawn(async move {
                    audit.append(&entry(i), Utc::now()).await.expect("append")
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
            let rows = db.audit().scan(0, 100).await.expect("scan");
            assert_eq!(rows.len(), 40);
            verify_chain(GENESIS_HASH.to_owned(), &rows).expect("no fork under concurrency");
        }
    );

    contract!(
        an_edited_audit_row_breaks_the_chain,
        |db: Database| async move {
            for i in 0..4 {
                db.audit().append(&entry(i), t(0)).await.expect("append");
            }
            let third = db.audit().scan(0, 10).await.expect("scan")[2].id;
            db.connection()
                .execute_unprepared(&format!(
                    "UPDATE audit_logs SET success = false WHERE id = {third}"
                ))
                .await
                .expect("tamper");
            let rows = db.audit().scan(0, 10).await.expect("scan");
            assert_eq!(
                verify_chain(GENESIS_HASH.to_owned(), &rows)
                    .expect_err("broken")
                    .id,
                third
            );
        }
    );

    contract!(revocations_contract, |db: Database| async move {
        let r = db.revocations();
        assert!(!r.is_revoked("tok-1").await.expect("check"));
        r.revoke("tok-1", t(100)).await.expect("revoke");
        r.revoke("tok-1", t(100))
            .await
            .expect("revoking twice is fine");
        r.revoke("tok-2", t(10)).await.expect("revoke");
        assert!(r.is_revoked("tok-1").await.expect("check"));
        assert_eq!(r.purge_expired(t(50)).await.expect("purge"), 1);
        assert!(r.is_revoked("tok-1").await.expect("check"));
        assert!(!r.is_revoked("tok-2").await.expect("check"));
    });
}
