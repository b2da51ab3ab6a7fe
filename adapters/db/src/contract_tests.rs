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

const TABLES: [&str; 12] = [
    "api_tokens",
    "login_throttle",
    "replicas",
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

const INDEXES: [(&str, &str); 13] = [
    ("api_tokens", "idx_api_tokens_secret_hash"),
    ("api_tokens", "idx_api_tokens_user"),
    ("login_throttle", "idx_login_throttle_kind_last"),
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
    use coffer_domain::audit::{AuditAction, AuditChain, AuditEntry, ChainState, GENESIS_HASH};

    /// The audit key of these tests.
    const CHAIN: AuditChain = AuditChain::new([3; 32]);
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
            credential: None,
        };
        AuditEntry::new(format!("user{}", i % 3), AuditAction::Login, &client)
            .resource(format!("user:{i}"))
            .detail(format!("event {i}"))
    }

    contract!(audit_trail_is_a_hash_chain, |db: Database| async move {
        let audit = db.audit(CHAIN);
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
        CHAIN
            .verify(ChainState::default(), &rows)
            .expect("the stored chain verifies");

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
                let audit = db.audit(CHAIN);
                tasks.push(tokio::spawn(async move {
                    audit.append(&entry(i), Utc::now()).await.expect("append")
                }));
            }
            for task in tasks {
                task.await.expect("task");
            }
            let rows = db.audit(CHAIN).scan(0, 100).await.expect("scan");
            assert_eq!(rows.len(), 40);
            CHAIN
                .verify(ChainState::default(), &rows)
                .expect("no fork under concurrency");
        }
    );

    contract!(
        an_edited_audit_row_breaks_the_chain,
        |db: Database| async move {
            for i in 0..4 {
                db.audit(CHAIN)
                    .append(&entry(i), t(0))
                    .await
                    .expect("append");
            }
            let third = db.audit(CHAIN).scan(0, 10).await.expect("scan")[2].id;
            db.connection()
                .execute_unprepared(&format!(
                    "UPDATE audit_logs SET success = false WHERE id = {third}"
                ))
                .await
                .expect("tamper");
            let rows = db.audit(CHAIN).scan(0, 10).await.expect("scan");
            assert_eq!(
                CHAIN
                    .verify(ChainState::default(), &rows)
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

fn t(secs: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 26, 12, 0, 0)
        .unwrap()
        + chrono::TimeDelta::seconds(secs)
}

mod sources_and_catalog {
    use chrono::TimeDelta;
    use coffer_domain::engine::{SnapshotStatus, SnapshotSummary};
    use coffer_domain::jobs::{Job, JobParams};
    use coffer_domain::ports::{
        BackupCatalog, BackupFilter, CatalogEntry, JobRepository, RepoError, Retention,
        SourceRepository, SourceSpec,
    };
    use coffer_domain::schedule::Schedule;
    use coffer_domain::{SnapshotId, SnapshotPrefix, SnapshotRef, SourceId};

    use super::*;

    /// A 64-digit hex snapshot id made of `n`.
    fn snap(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// Snapshot `n`'s id.
    fn sid(n: u8) -> SnapshotId {
        SnapshotId::parse(&snap(n)).expect("an id")
    }

    /// A prefix to look a snapshot up by (the whole id is one).
    fn prefix(text: &str) -> SnapshotPrefix {
        match SnapshotRef::parse(text).expect("a prefix") {
            SnapshotRef::Prefix(p) => p,
            SnapshotRef::Latest => unreachable!("not `latest`"),
        }
    }

    fn summary(n: u8, source: &str, started: i64, status: SnapshotStatus) -> SnapshotSummary {
        SnapshotSummary {
            id: snap(n),
            source: source.to_owned(),
            path: format!("/data/{source}"),
            hostname: "host".to_owned(),
            started_at: t(started),
            finished_at: t(started) + TimeDelta::milliseconds(1500),
            status,
            encrypted: true,
            parent: None,
            files: 10,
            dirs: 2,
            bytes: 1000,
            bytes_added: 100,
            stored_bytes_added: 50,
            unchanged_files: 0,
            excluded: 0,
            warnings: if status == SnapshotStatus::Partial {
                vec!["a/b: permission denied".to_owned()]
            } else {
                Vec::new()
            },
            suspicious: None,
        }
    }

    fn spec(name: &str, path: &str, schedule: Option<&str>, r: Option<(u32, u32)>) -> SourceSpec {
        SourceSpec {
            name: name.to_owned(),
            path: path.to_owned(),
            schedule: schedule.map(|s| Schedule::parse(s).expect("a schedule")),
            retention: r.map(|(max_backups, max_age_days)| Retention {
                max_backups,
                max_age_days,
                ..Retention::default()
            }),
            filter: coffer_domain::excludes::SourceFilter::default(),
        }
    }

    fn ids(entries: &[CatalogEntry]) -> Vec<String> {
        entries.iter().map(|e| e.snapshot_id.to_string()).collect()
    }

    contract!(sources_crud_contract, |db: Database| async move {
        let sources = db.sources();
        let zeta = sources
            .create(
                &spec("zeta", "/srv/zeta", Some("0 3 * * *"), Some((7, 30))),
                t(0),
            )
            .await
            .expect("create");
        assert_eq!(zeta.name, "zeta");
        assert_eq!(zeta.path, "/srv/zeta");
        assert_eq!(
            zeta.schedule.as_ref().map(Schedule::as_str),
            Some("0 3 * * *")
        );
        assert_eq!(
            zeta.retention,
            Some(Retention {
                max_backups: 7,
                max_age_days: 30,
                ..Retention::default()
            })
        );
        assert_eq!((zeta.created_at, zeta.updated_at), (t(0), t(0)));
        let alpha = sources
            .create(&SourceSpec::plain("alpha", "/srv/alpha"), t(1))
            .await
            .expect("create");
        assert_eq!((alpha.schedule.clone(), alpha.retention), (None, None));
        assert!(alpha.filter.is_empty());
        assert_ne!(alpha.id, zeta.id);

        // What a source leaves out comes back as it was stored, and goes with an update.
        let filter = coffer_domain::excludes::SourceFilter {
            exclude: vec!["*.tmp".into(), "!keep.tmp".into(), "/build/".into()],
            exclude_caches: true,
            one_file_system: true,
            exclude_larger_than: Some(1 << 30),
        };
        let filtered = sources
            .create(
                &SourceSpec {
                    filter: filter.clone(),
                    ..SourceSpec::plain("filtered", "/srv/filtered")
                },
                t(1),
            )
            .await
            .expect("create");
        assert_eq!(filtered.filter, filter);
        assert_eq!(
            sources
                .get(filtered.id)
                .await
                .expect("get")
                .map(|s| s.filter),
            Some(filter)
        );
        let cleared = sources
            .update(
                filtered.id,
                &SourceSpec::plain("filtered", "/srv/filtered"),
                t(1),
            )
            .await
            .expect("update")
            .expect("there");
        assert!(cleared.filter.is_empty());
        assert!(sources.delete(filtered.id).await.expect("delete"));

        let err = sources
            .create(&SourceSpec::plain("zeta", "/elsewhere"), t(2))
            .await
            .expect_err("a taken name");
        assert!(
            matches!(err, RepoError::Conflict(ref m) if m.contains("zeta")),
            "{err}"
        );

        assert_eq!(sources.get(zeta.id).await.expect("get"), Some(zeta.clone()));
        assert_eq!(
            sources.get(SourceId::new(9999)).await.expect("get missing"),
            None
        );
        assert_eq!(
            sources.find_by_name("alpha").await.expect("find"),
            Some(alpha.clone())
        );
        assert_eq!(sources.find_by_name("nope").await.expect("find"), None);
        assert_eq!(
            sources.find_by_path("/srv/zeta").await.expect("find"),
            Some(zeta.clone())
        );
        let names: Vec<String> = sources
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["alpha", "zeta"], "ordered by name");

        // Renaming onto a taken name is a conflict and changes nothing.
        let err = sources
            .update(alpha.id, &SourceSpec::plain("zeta", "/srv/alpha"), t(3))
            .await
            .expect_err("rename onto a taken name");
        assert!(
            matches!(err, RepoError::Conflict(ref m) if m.contains("zeta")),
            "{err}"
        );
        assert_eq!(
            sources.get(alpha.id).await.expect("get"),
            Some(alpha.clone())
        );

        // An update replaces every field of the spec and stamps updated_at.
        let beta = sources
            .update(
                alpha.id,
                &spec("beta", "/srv/beta", Some("*/5 * * * *"), Some((3, 0))),
                t(4),
            )
            .await
            .expect("update")
            .expect("exists");
        assert_eq!(beta.id, alpha.id);
        assert_eq!(beta.name, "beta");
        assert_eq!(beta.path, "/srv/beta");
        assert_eq!(
            beta.schedule.as_ref().map(Schedule::as_str),
            Some("*/5 * * * *")
        );
        assert_eq!(
            beta.retention,
            Some(Retention {
                max_backups: 3,
                max_age_days: 0,
                ..Retention::default()
            })
        );
        assert_eq!((beta.created_at, beta.updated_at), (t(1), t(4)));
        assert_eq!(
            sources.get(alpha.id).await.expect("get"),
            Some(beta.clone())
        );
        let cleared = sources
            .update(zeta.id, &SourceSpec::plain("zeta", "/srv/zeta2"), t(5))
            .await
            .expect("update keeping its own name")
            .expect("exists");
        assert_eq!((cleared.schedule, cleared.retention), (None, None));
        assert_eq!(cleared.path, "/srv/zeta2");
        assert_eq!(cleared.updated_at, t(5));
        assert_eq!(sources.find_by_name("alpha").await.expect("find"), None);

        assert_eq!(
            sources
                .update(SourceId::new(9999), &SourceSpec::plain("x", "/x"), t(6))
                .await
                .expect("update missing"),
            None
        );
        assert!(sources.delete(zeta.id).await.expect("delete"));
        assert!(!sources.delete(zeta.id).await.expect("delete again"));
        assert_eq!(sources.get(zeta.id).await.expect("get"), None);
        let names: Vec<String> = sources
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["beta"]);
    });

    contract!(
        retention_is_stored_as_json_and_bad_json_is_corrupt,
        |db: Database| async move {
            let sources = db.sources();
            let s = sources
                .create(&spec("docs", "/srv/docs", None, Some((12, 90))), t(0))
                .await
                .expect("create");
            let conn = db.connection();
            let row = conn
                .query_one_raw(Statement::from_string(
                    conn.get_database_backend(),
                    format!("SELECT retention FROM sources WHERE id = {}", s.id),
                ))
                .await
                .expect("select")
                .expect("a row");
            let stored: String = row.try_get_by_index(0).expect("text");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&stored).expect("json"),
                serde_json::json!({"max_backups": 12, "max_age_days": 90, "keep_within_days": 0,
                    "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, "keep_yearly": 0})
            );
            // A row written before the keep rules existed reads with them off.
            conn.execute_unprepared(&format!(
                "UPDATE sources SET retention = '{{\"max_backups\":4,\"max_age_days\":9}}' WHERE id = {}",
                s.id
            ))
            .await
            .expect("old shape");
            assert_eq!(
                sources
                    .get(s.id)
                    .await
                    .expect("get")
                    .expect("row")
                    .retention,
                Some(Retention {
                    max_backups: 4,
                    max_age_days: 9,
                    ..Retention::default()
                })
            );
            // Every rule round-trips.
            let all = Retention {
                max_backups: 1,
                max_age_days: 2,
                keep_within_days: 3,
                keep_daily: 4,
                keep_weekly: 5,
                keep_monthly: 6,
                keep_yearly: 7,
            };
            let mut full = spec("docs", "/srv/docs", None, None);
            full.retention = Some(all);
            let updated = sources
                .update(s.id, &full, t(1))
                .await
                .expect("update")
                .expect("row");
            assert_eq!(updated.retention, Some(all));
            assert_eq!(
                sources
                    .get(s.id)
                    .await
                    .expect("get")
                    .expect("row")
                    .retention,
                Some(all)
            );
            conn.execute_unprepared(&format!(
                "UPDATE sources SET retention = '{{\"keep\":3}}' WHERE id = {}",
                s.id
            ))
            .await
            .expect("tamper");
            let err = sources.get(s.id).await.expect_err("unreadable retention");
            assert!(
                matches!(err, RepoError::Corrupt(ref m) if m.contains(&format!("sources.id={}", s.id))),
                "{err}"
            );
            assert!(matches!(
                sources.list().await.expect_err("list reads it too"),
                RepoError::Corrupt(_)
            ));
        }
    );

    contract!(
        deleting_a_source_keeps_its_backups_and_jobs,
        |db: Database| async move {
            let sources = db.sources();
            let catalog = db.catalog();
            let jobs = db.jobs();
            let src = sources
                .create(&SourceSpec::plain("home", "/home"), t(0))
                .await
                .expect("create");
            let other = sources
                .create(&SourceSpec::plain("other", "/other"), t(0))
                .await
                .expect("create");
            for (n, source) in [(1, src.id), (2, src.id), (3, other.id)] {
                catalog
                    .insert(
                        &summary(
                            n,
                            if n == 3 { "other" } else { "home" },
                            i64::from(n),
                            SnapshotStatus::Ok,
                        ),
                        Some(source),
                    )
                    .await
                    .expect("insert");
            }
            let job = Job::queued(
                coffer_domain::JobId::from_uuid(uuid::Uuid::from_u128(1)),
                JobParams::Backup {
                    source_id: src.id,
                    source_name: "home".to_owned(),
                },
                "alice",
                t(5),
            );
            jobs.insert(&job).await.expect("insert job");

            assert!(sources.delete(src.id).await.expect("delete"));

            for n in [1, 2] {
                let entry = catalog
                    .find(&prefix(&snap(n)))
                    .await
                    .expect("find")
                    .expect("the snapshot row outlives its source");
                assert_eq!(entry.source_id, None);
                assert_eq!(entry.source_name, "home");
            }
            let kept = catalog
                .find(&prefix(&snap(3)))
                .await
                .expect("find")
                .expect("kept");
            assert_eq!(kept.source_id, Some(other.id), "other sources untouched");
            assert_eq!(
                catalog.latest_for_source(src.id).await.expect("latest"),
                None
            );
            let page = catalog
                .query(&BackupFilter::default())
                .await
                .expect("query");
            assert_eq!(page.total, 3);

            let stored = jobs.get(job.id).await.expect("get").expect("job kept");
            assert_eq!(stored.source_id, None);
            assert_eq!(stored.params, job.params, "the parameters still name it");

            // The job's runner still holds the old id: its writes succeed and drop it.
            let mut running = job.clone();
            running.state = coffer_domain::jobs::JobState::Running;
            running.started_at = Some(t(6));
            assert!(jobs.update(&running).await.expect("update after delete"));
            let stored = jobs.get(job.id).await.expect("get").expect("job kept");
            assert_eq!(stored.source_id, None);
            assert_eq!(stored.state, coffer_domain::jobs::JobState::Running);

            // So does the catalog row of the backup that was running.
            let late = catalog
                .insert(&summary(4, "home", 7, SnapshotStatus::Ok), Some(src.id))
                .await
                .expect("a snapshot finished after its source was deleted");
            assert_eq!(late.source_id, None);
            let mut late_job = job.clone();
            late_job.id = coffer_domain::JobId::from_uuid(uuid::Uuid::from_u128(2));
            jobs.insert(&late_job).await.expect("insert after delete");
            assert_eq!(
                jobs.get(late_job.id)
                    .await
                    .expect("get")
                    .expect("stored")
                    .source_id,
                None
            );
        }
    );

    contract!(
        catalog_query_filters_pages_and_orders,
        |db: Database| async move {
            let sources = db.sources();
            let catalog = db.catalog();
            let a = sources
                .create(&SourceSpec::plain("a", "/a"), t(0))
                .await
                .expect("create");
            let b = sources
                .create(&SourceSpec::plain("b", "/b"), t(0))
                .await
                .expect("create");
            // (snapshot, source, start, status); 4 and 5 start at the same second.
            let rows = [
                (1, &a, 10, SnapshotStatus::Ok),
                (2, &b, 20, SnapshotStatus::Partial),
                (3, &a, 30, SnapshotStatus::Ok),
                (4, &a, 40, SnapshotStatus::Partial),
                (5, &b, 40, SnapshotStatus::Ok),
                (6, &a, 60, SnapshotStatus::Ok),
            ];
            // A status no snapshot has: an empty page, counted 0 (no counter yet).
            let none = catalog
                .query(&BackupFilter {
                    status: Some(SnapshotStatus::Partial),
                    ..BackupFilter::default()
                })
                .await
                .expect("query");
            assert_eq!((none.total, none.items.len()), (0, 0));
            let mut inserted = Vec::new();
            for (n, source, start, status) in rows {
                inserted.push(
                    catalog
                        .insert(&summary(n, &source.name, start, status), Some(source.id))
                        .await
                        .expect("insert"),
                );
            }
            let query = |filter: BackupFilter| {
                let catalog = catalog.clone();
                async move { catalog.query(&filter).await.expect("query") }
            };

            let all = query(BackupFilter::default()).await;
            assert_eq!(all.total, 6);
            // Newest first; same time: the later row (higher id) first.
            assert_eq!(
                ids(&all.items),
                [snap(6), snap(5), snap(4), snap(3), snap(2), snap(1)]
            );
            assert_eq!(all.items[5], inserted[0], "rows come back whole");

            let only_a = query(BackupFilter {
                source_id: Some(a.id),
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(only_a.total, 4);
            assert_eq!(ids(&only_a.items), [snap(6), snap(4), snap(3), snap(1)]);

            let partial = query(BackupFilter {
                status: Some(SnapshotStatus::Partial),
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(
                (partial.total, ids(&partial.items)),
                (2, vec![snap(4), snap(2)])
            );

            // `from` is inclusive, `to` exclusive.
            let window = query(BackupFilter {
                from: Some(t(20)),
                to: Some(t(40)),
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(
                (window.total, ids(&window.items)),
                (2, vec![snap(3), snap(2)])
            );
            let from_only = query(BackupFilter {
                from: Some(t(40)),
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(ids(&from_only.items), [snap(6), snap(5), snap(4)]);
            let to_only = query(BackupFilter {
                to: Some(t(10) + TimeDelta::microseconds(1)),
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(ids(&to_only.items), [snap(1)]);

            let combined = query(BackupFilter {
                source_id: Some(a.id),
                status: Some(SnapshotStatus::Ok),
                from: Some(t(10)),
                to: Some(t(60)),
                limit: 1,
                offset: 1,
            })
            .await;
            assert_eq!((combined.total, ids(&combined.items)), (2, vec![snap(1)]));

            let page2 = query(BackupFilter {
                limit: 2,
                offset: 2,
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(
                (page2.total, ids(&page2.items)),
                (6, vec![snap(4), snap(3)])
            );
            let last = query(BackupFilter {
                limit: 4,
                offset: 4,
                ..BackupFilter::default()
            })
            .await;
            assert_eq!((last.total, ids(&last.items)), (6, vec![snap(2), snap(1)]));
            let offset_only = query(BackupFilter {
                offset: 5,
                ..BackupFilter::default()
            })
            .await;
            assert_eq!(ids(&offset_only.items), [snap(1)], "limit 0 is no limit");
            let beyond = query(BackupFilter {
                limit: 10,
                offset: 10,
                ..BackupFilter::default()
            })
            .await;
            assert_eq!((beyond.total, beyond.items.len()), (6, 0));
        }
    );

    contract!(catalog_delete_and_protect, |db: Database| async move {
        let catalog = db.catalog();
        for n in [1, 2] {
            catalog
                .insert(&summary(n, "s", i64::from(n), SnapshotStatus::Ok), None)
                .await
                .expect("insert");
        }
        assert!(
            !catalog
                .find(&prefix(&snap(1)))
                .await
                .expect("find")
                .expect("exists")
                .protected
        );
        assert!(catalog.set_protected(&sid(1), true).await.expect("protect"));
        assert!(
            catalog
                .find(&prefix(&snap(1)))
                .await
                .expect("find")
                .expect("exists")
                .protected
        );
        assert!(
            !catalog
                .find(&prefix(&snap(2)))
                .await
                .expect("find")
                .expect("exists")
                .protected,
            "only the one named"
        );
        assert!(catalog.set_protected(&sid(1), true).await.expect("again"));
        assert!(
            catalog
                .set_protected(&sid(1), false)
                .await
                .expect("unprotect")
        );
        assert!(
            !catalog
                .find(&prefix(&snap(1)))
                .await
                .expect("find")
                .expect("exists")
                .protected
        );
        assert!(!catalog.set_protected(&sid(9), true).await.expect("missing"));

        assert!(
            SnapshotId::parse(&snap(1)[..16]).is_err(),
            "delete takes the full id only: a prefix is no `SnapshotId`"
        );
        assert!(catalog.delete(&sid(1)).await.expect("delete"));
        assert!(!catalog.delete(&sid(1)).await.expect("delete again"));
        assert_eq!(catalog.find(&prefix(&snap(1))).await.expect("find"), None);
        assert!(
            catalog
                .find(&prefix(&snap(2)))
                .await
                .expect("find")
                .is_some()
        );
        let page = catalog
            .query(&BackupFilter::default())
            .await
            .expect("query");
        assert_eq!((page.total, ids(&page.items)), (1, vec![snap(2)]));
        // The id is free again: the snapshot can be catalogued anew (a rebuild).
        catalog
            .insert(&summary(1, "s", 1, SnapshotStatus::Ok), None)
            .await
            .expect("re-insert");
    });
}

mod jobs {
    use chrono::TimeDelta;
    use coffer_domain::engine::SnapshotStatus;
    use coffer_domain::jobs::{
        Job, JobError, JobFilter, JobKind, JobParams, JobProgress, JobResult, JobState,
    };
    use coffer_domain::ports::{JobRepository, RepoError, SourceRepository, SourceSpec};
    use coffer_domain::{JobId, SnapshotId, SourceId};

    /// The id of 32 repetitions of `pair`.
    fn sid(pair: &str) -> SnapshotId {
        SnapshotId::parse(&pair.repeat(32)).expect("an id")
    }

    use super::*;

    fn id(n: u128) -> JobId {
        JobId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn backup(n: u128, source: SourceId, created: i64) -> Job {
        Job::queued(
            id(n),
            JobParams::Backup {
                source_id: source,
                source_name: "src".to_owned(),
            },
            "alice",
            t(created),
        )
    }

    fn verify(n: u128, created: i64) -> Job {
        Job::queued(
            id(n),
            JobParams::Verify {
                snapshot_id: sid("ab"),
                read_data: false,
            },
            "bob",
            t(created),
        )
    }

    fn listed(page: &coffer_domain::ports::Page<Job>) -> Vec<JobId> {
        page.items.iter().map(|j| j.id).collect()
    }

    contract!(jobs_insert_get_update, |db: Database| async move {
        let jobs = db.jobs();
        let source = db
            .sources()
            .create(&SourceSpec::plain("src", "/src"), t(0))
            .await
            .expect("create source");
        let job = backup(1, source.id, 1);
        jobs.insert(&job).await.expect("insert");
        assert_eq!(jobs.get(job.id).await.expect("get"), Some(job.clone()));
        assert_eq!(jobs.get(id(99)).await.expect("get missing"), None);

        let mut again = verify(1, 2);
        again.requested_by = "mallory".to_owned();
        let err = jobs.insert(&again).await.expect_err("same id");
        assert!(
            matches!(err, RepoError::Conflict(ref m) if m.contains(&job.id.to_string())),
            "{err}"
        );
        assert_eq!(
            jobs.get(job.id).await.expect("get"),
            Some(job.clone()),
            "the refused insert changed nothing"
        );

        let mut running = job.clone();
        running.state = JobState::Running;
        running.started_at = Some(t(2) + TimeDelta::microseconds(250_001));
        running.progress = JobProgress {
            files_done: 3,
            bytes_done: 4096,
            files_total: None,
            bytes_total: None,
            totals_final: false,
        };
        assert!(jobs.update(&running).await.expect("update"));
        assert_eq!(jobs.get(job.id).await.expect("get"), Some(running.clone()));

        let mut done = running.clone();
        done.state = JobState::Succeeded;
        done.snapshot_id = Some(sid("cd"));
        done.progress = JobProgress {
            files_done: 10,
            bytes_done: 10_000,
            files_total: Some(10),
            bytes_total: Some(10_000),
            totals_final: true,
        };
        done.result = Some(JobResult::Backup {
            snapshot_id: sid("cd"),
            status: SnapshotStatus::Ok,
            files: 10,
            bytes: 10_000,
            bytes_added: 0,
            warnings: Vec::new(),
        });
        done.finished_at = Some(t(9));
        assert!(jobs.update(&done).await.expect("update"));
        assert_eq!(jobs.get(job.id).await.expect("get"), Some(done.clone()));

        // An update replaces every field, clearing what the new value leaves empty.
        let mut requeued = done.clone();
        requeued.state = JobState::Queued;
        requeued.source_id = None;
        requeued.snapshot_id = None;
        requeued.result = None;
        requeued.started_at = None;
        requeued.finished_at = None;
        requeued.progress = JobProgress::default();
        requeued.requested_by = "carol".to_owned();
        requeued.created_at = t(3);
        assert!(jobs.update(&requeued).await.expect("update"));
        assert_eq!(jobs.get(job.id).await.expect("get"), Some(requeued));

        assert!(!jobs.update(&verify(42, 0)).await.expect("update missing"));
        assert_eq!(
            jobs.get(id(42)).await.expect("get"),
            None,
            "update never inserts"
        );
    });

    contract!(
        every_kind_of_job_round_trips_exactly,
        |db: Database| async move {
            let jobs = db.jobs();
            let source = db
                .sources()
                .create(&SourceSpec::plain("src", "/src"), t(0))
                .await
                .expect("create source");
            let at = |s: i64, micros: i64| t(s) + TimeDelta::microseconds(micros);
            let mut b = backup(1, source.id, 0);
            b.created_at = at(0, 1);
            b.state = JobState::Succeeded;
            b.snapshot_id = Some(sid("01"));
            b.started_at = Some(at(1, 999_999));
            b.finished_at = Some(at(5, 123_456));
            b.progress = JobProgress {
                files_done: u64::MAX,
                bytes_done: u64::MAX - 1,
                files_total: Some(u64::MAX),
                bytes_total: Some(0),
                totals_final: true,
            };
            b.result = Some(JobResult::Backup {
                snapshot_id: sid("01"),
                status: SnapshotStatus::Partial,
                files: 7,
                bytes: 1 << 40,
                bytes_added: 12,
                warnings: vec![
                    "a/b: permission denied".to_owned(),
                    "ünïcødé \"quoted\" \\ path".to_owned(),
                ],
            });

            let mut r = Job::queued(
                id(2),
                JobParams::Restore {
                    snapshot_id: sid("02"),
                    path: Some("docs/report.pdf".to_owned()),
                    target: "/restore/here".to_owned(),
                },
                "alice",
                at(10, 500_000),
            );
            r.state = JobState::Cancelled;
            r.error = Some(JobError::new("cancelled", "cancelled by alice"));
            r.result = Some(JobResult::Restore {
                snapshot_id: sid("02"),
                target: "/restore/here".to_owned(),
                files: 1,
                dirs: 0,
                symlinks: 3,
                hardlinks: 1,
                bytes: 42,
                warnings: vec!["docs: extended attribute user.a not restored".to_owned()],
            });
            r.finished_at = Some(at(11, 0));

            let r_all = Job::queued(
                id(3),
                JobParams::Restore {
                    snapshot_id: sid("03"),
                    path: None,
                    target: "/t".to_owned(),
                },
                "alice",
                at(12, 0),
            );

            let mut v = Job::queued(
                id(4),
                JobParams::Verify {
                    snapshot_id: sid("04"),
                    read_data: true,
                },
                "bob",
                at(13, 7),
            );
            v.state = JobState::Failed;
            v.result = Some(JobResult::Verify {
                snapshot_id: sid("04"),
                ok: false,
                problems: vec!["pack 9f: authentication failed".to_owned()],
                damaged_files: vec!["x/y".to_owned(), "z".to_owned()],
                bytes_read: 99,
            });
            v.error = Some(JobError::new("damaged", "2 files are damaged"));
            v.progress = JobProgress {
                files_done: 2,
                bytes_done: 99,
                files_total: Some(2),
                bytes_total: None,
                totals_final: false,
            };

            let mut v_ok = verify(5, 14);
            v_ok.state = JobState::Succeeded;
            v_ok.result = Some(JobResult::Verify {
                snapshot_id: sid("ab"),
                ok: true,
                problems: Vec::new(),
                damaged_files: Vec::new(),
                bytes_read: 0,
            });

            for job in [&b, &r, &r_all, &v, &v_ok] {
                jobs.insert(job).await.expect("insert");
                assert_eq!(
                    jobs.get(job.id).await.expect("get").as_ref(),
                    Some(job),
                    "{:?} round-trips",
                    job.kind()
                );
            }
            // Every field of every kind survives an update too.
            let mut b2 = b.clone();
            b2.result = Some(JobResult::Backup {
                snapshot_id: sid("0f"),
                status: SnapshotStatus::Ok,
                files: 0,
                bytes: 0,
                bytes_added: u64::MAX,
                warnings: Vec::new(),
            });
            b2.error = Some(JobError::new("", ""));
            assert!(jobs.update(&b2).await.expect("update"));
            assert_eq!(jobs.get(b.id).await.expect("get"), Some(b2));
        }
    );

    contract!(
        jobs_list_filters_pages_and_orders,
        |db: Database| async move {
            let jobs = db.jobs();
            let sources = db.sources();
            let s1 = sources
                .create(&SourceSpec::plain("one", "/1"), t(0))
                .await
                .expect("create");
            let s2 = sources
                .create(&SourceSpec::plain("two", "/2"), t(0))
                .await
                .expect("create");
            // Ids are not in creation order, and 4 and 5 share a creation time.
            let mut all = vec![
                backup(9, s1.id, 10),
                backup(2, s2.id, 20),
                verify(7, 30),
                backup(4, s1.id, 40),
                verify(5, 40),
                backup(1, s1.id, 50),
            ];
            all[0].state = JobState::Succeeded;
            all[1].state = JobState::Failed;
            all[2].state = JobState::Running;
            all[3].state = JobState::Running;
            for job in &all {
                jobs.insert(job).await.expect("insert");
            }
            let list = |filter: JobFilter| {
                let jobs = jobs.clone();
                async move { jobs.list(&filter).await.expect("list") }
            };

            let everything = list(JobFilter::default()).await;
            assert_eq!(everything.total, 6);
            assert_eq!(
                listed(&everything),
                [id(1), id(5), id(4), id(7), id(2), id(9)],
                "newest first, then by id descending"
            );
            assert_eq!(everything.items[5], all[0], "rows come back whole");

            let running = list(JobFilter {
                state: Some(JobState::Running),
                ..JobFilter::default()
            })
            .await;
            assert_eq!((running.total, listed(&running)), (2, vec![id(4), id(7)]));

            let verifies = list(JobFilter {
                kind: Some(JobKind::Verify),
                ..JobFilter::default()
            })
            .await;
            assert_eq!((verifies.total, listed(&verifies)), (2, vec![id(5), id(7)]));

            let of_s1 = list(JobFilter {
                source_id: Some(s1.id),
                ..JobFilter::default()
            })
            .await;
            assert_eq!(
                (of_s1.total, listed(&of_s1)),
                (3, vec![id(1), id(4), id(9)])
            );

            let combined = list(JobFilter {
                state: Some(JobState::Queued),
                kind: Some(JobKind::Backup),
                source_id: Some(s1.id),
                limit: 10,
                ..JobFilter::default()
            })
            .await;
            assert_eq!((combined.total, listed(&combined)), (1, vec![id(1)]));

            let page = list(JobFilter {
                limit: 2,
                offset: 1,
                ..JobFilter::default()
            })
            .await;
            assert_eq!((page.total, listed(&page)), (6, vec![id(5), id(4)]));
            let tail = list(JobFilter {
                offset: 4,
                ..JobFilter::default()
            })
            .await;
            assert_eq!(listed(&tail), [id(2), id(9)], "limit 0 is no limit");
            let beyond = list(JobFilter {
                limit: 3,
                offset: 6,
                ..JobFilter::default()
            })
            .await;
            assert_eq!((beyond.total, beyond.items.len()), (6, 0));
            let none = list(JobFilter {
                kind: Some(JobKind::Restore),
                ..JobFilter::default()
            })
            .await;
            assert_eq!((none.total, none.items.len()), (0, 0));
        }
    );

    contract!(
        jobs_list_by_requester_and_period,
        |db: Database| async move {
            let jobs = db.jobs();
            let s1 = db
                .sources()
                .create(&SourceSpec::plain("one", "/1"), t(0))
                .await
                .expect("create");
            // alice's backups at 10 and 50, bob's verifications at 30 and 40.
            for job in [
                backup(1, s1.id, 10),
                verify(2, 30),
                verify(3, 40),
                backup(4, s1.id, 50),
            ] {
                jobs.insert(&job).await.expect("insert");
            }
            let ids = |filter: JobFilter| {
                let jobs = jobs.clone();
                async move {
                    let page = jobs.list(&filter).await.expect("list");
                    (page.total, listed(&page))
                }
            };
            assert_eq!(
                ids(JobFilter {
                    requested_by: Some("bob".into()),
                    ..JobFilter::default()
                })
                .await,
                (2, vec![id(3), id(2)])
            );
            // `from` inclusive, `to` exclusive.
            assert_eq!(
                ids(JobFilter {
                    from: Some(t(30)),
                    to: Some(t(50)),
                    ..JobFilter::default()
                })
                .await,
                (2, vec![id(3), id(2)])
            );
            assert_eq!(
                ids(JobFilter {
                    requested_by: Some("alice".into()),
                    from: Some(t(11)),
                    ..JobFilter::default()
                })
                .await,
                (1, vec![id(4)])
            );
            assert_eq!(
                ids(JobFilter {
                    requested_by: Some("carol".into()),
                    ..JobFilter::default()
                })
                .await,
                (0, vec![])
            );
        }
    );

    contract!(
        job_logs_append_read_after_and_survive_retries,
        |db: Database| async move {
            use coffer_domain::joblog::{JobLogRepository as _, LogLevel, LogLine};
            let jobs = db.jobs();
            jobs.insert(&verify(1, 0)).await.expect("insert");
            jobs.insert(&verify(2, 0)).await.expect("insert");
            let line = |seq: u64, level: LogLevel, message: &str| LogLine {
                seq,
                at: t(i64::try_from(seq).expect("small")),
                level,
                message: message.to_owned(),
                contents: level == LogLevel::Warning,
            };
            let first: Vec<LogLine> = (1..=450)
                .map(|n| line(n, LogLevel::Info, &format!("line {n} — ünïcödé")))
                .collect();
            jobs.append(id(1), &first).await.expect("append");
            let later = [
                line(451, LogLevel::Warning, "a.txt: changed while read"),
                line(452, LogLevel::Error, "failed"),
            ];
            jobs.append(id(1), &later).await.expect("append");
            // A retried append (its first try may have landed) changes nothing.
            jobs.append(id(1), &later).await.expect("append again");
            jobs.append(id(2), &[line(1, LogLevel::Info, "other job")])
                .await
                .expect("append to another job");

            let all = jobs.read(id(1), 0, 1000).await.expect("read");
            assert_eq!(all.len(), 452);
            assert_eq!(all[..450], first[..]);
            assert_eq!(all[450..], later[..], "rows come back whole");
            // A follower asks for what comes after the last line it has.
            let page = jobs.read(id(1), 449, 2).await.expect("read");
            assert_eq!(page.iter().map(|l| l.seq).collect::<Vec<_>>(), [450, 451]);
            assert!(jobs.read(id(1), 452, 10).await.expect("read").is_empty());
            assert_eq!(jobs.read(id(2), 0, 10).await.expect("read").len(), 1);
            assert!(jobs.read(id(3), 0, 10).await.expect("read").is_empty());
        }
    );

    contract!(
        fail_unfinished_only_touches_queued_and_running,
        |db: Database| async move {
            let jobs = db.jobs();
            let mut all = Vec::new();
            for (n, state) in JobState::ALL.into_iter().enumerate() {
                let n = u128::try_from(n).expect("small");
                let mut job = verify(n + 1, i64::try_from(n).expect("small"));
                job.state = state;
                job.progress.files_done = 5;
                if state != JobState::Queued {
                    job.started_at = Some(t(100));
                }
                if state.is_final() {
                    job.finished_at = Some(t(200));
                }
                if state == JobState::Failed {
                    job.error = Some(JobError::new("io", "disk on fire"));
                }
                jobs.insert(&job).await.expect("insert");
                all.push(job);
            }
            let error = JobError::new("interrupted", "the server stopped while it ran");
            assert_eq!(jobs.fail_unfinished(&error, t(300)).await.expect("fail"), 2);
            for before in &all {
                let after = jobs.get(before.id).await.expect("get").expect("exists");
                if before.state.is_final() {
                    assert_eq!(&after, before, "a finished job is untouched");
                } else {
                    let mut expected = before.clone();
                    expected.state = JobState::Failed;
                    expected.error = Some(error.clone());
                    expected.finished_at = Some(t(300));
                    assert_eq!(after, expected);
                }
            }
            assert_eq!(
                jobs.fail_unfinished(&error, t(400)).await.expect("again"),
                0
            );
            let failed = jobs
                .list(&JobFilter {
                    state: Some(JobState::Failed),
                    ..JobFilter::default()
                })
                .await
                .expect("list");
            assert_eq!(failed.total, 3);
        }
    );

    contract!(
        an_unreadable_job_row_is_corrupt_and_named,
        |db: Database| async move {
            let jobs = db.jobs();
            for n in 1..=4 {
                jobs.insert(&verify(n, 0)).await.expect("insert");
            }
            let conn = db.connection();
            for (n, set) in [
                (1, r#"params = '{"kind":"prune","snapshot_id":"x"}'"#),
                (2, "state = 'paused'"),
                (3, "result = 'not json'"),
                (4, "kind = 'backup'"),
            ] {
                conn.execute_unprepared(&format!("UPDATE jobs SET {set} WHERE id = '{}'", id(n)))
                    .await
                    .expect("tamper");
                let err = jobs.get(id(n)).await.expect_err("unreadable");
                assert!(
                    matches!(err, RepoError::Corrupt(ref m) if m.contains(&id(n).to_string())),
                    "{set}: {err}"
                );
            }
            assert!(matches!(
                jobs.list(&JobFilter::default()).await.expect_err("list"),
                RepoError::Corrupt(_)
            ));
        }
    );
}

mod counters;

mod alerts;

mod reports;

mod replicas;

mod jobs_queue;

mod backup_runs;

mod throttle;

mod tokens;
