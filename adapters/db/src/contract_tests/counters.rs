//! Contract of the maintained counters: the catalog's figures equal a fresh `COUNT`/`SUM`
//! after any mix of writes, the counter repository never loses an update, the newest
//! snapshot per source, and the scheduler's state on `sources`.

use chrono::TimeDelta;
use coffer_domain::engine::{SnapshotStatus, SnapshotSummary};
use coffer_domain::ports::{
    BackupCatalog, CatalogStats, CounterRepository, SourceRepository, SourceSpec,
};
use coffer_domain::schedule::Schedule;
use coffer_domain::{SnapshotId, SourceId};
use sea_orm::ActiveValue::Set;
use sea_orm::{DatabaseConnection, EntityTrait as _};

use super::*;
use crate::entities::backups;

/// A 64-digit hex snapshot id made of `n`.
fn snap(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// Snapshot `n`'s id.
fn sid(n: u8) -> SnapshotId {
    SnapshotId::parse(&snap(n)).expect("an id")
}

/// A schedule.
fn cron(text: &str) -> Schedule {
    Schedule::parse(text).expect("a schedule")
}

fn summary(n: u8, source: &str, started: i64, status: SnapshotStatus) -> SnapshotSummary {
    SnapshotSummary {
        id: snap(n),
        source: source.to_owned(),
        path: format!("/data/{source}"),
        hostname: "host".to_owned(),
        started_at: t(started),
        finished_at: t(started) + TimeDelta::seconds(1),
        status,
        encrypted: true,
        parent: None,
        files: 1,
        dirs: 1,
        // Distinct sizes per snapshot, so a sum that counts one row twice or misses one
        // cannot match by accident.
        bytes: 1000 * u64::from(n) + 7,
        bytes_added: 10,
        stored_bytes_added: 100 * u64::from(n) + 3,
        unchanged_files: 0,
        excluded: 0,
        warnings: Vec::new(),
        suspicious: None,
    }
}

/// The catalog's figures counted afresh from the `backups` rows.
async fn recount(conn: &DatabaseConnection) -> CatalogStats {
    let backend = conn.get_database_backend();
    let rows = conn
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT status, COUNT(*) AS n FROM backups GROUP BY status ORDER BY status",
        ))
        .await
        .expect("count per status");
    let count_by_status: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            let n: i64 = r.try_get("", "n").expect("n");
            (
                r.try_get("", "status").expect("status"),
                u64::try_from(n).expect("a count"),
            )
        })
        .collect();
    let sums = conn
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) AS logical, \
             CAST(COALESCE(SUM(stored_bytes_added), 0) AS BIGINT) AS stored FROM backups",
        ))
        .await
        .expect("sums")
        .expect("one row");
    let sum = |col: &str| u64::try_from(sums.try_get::<i64>("", col).expect(col)).expect(col);
    CatalogStats {
        total: count_by_status.iter().map(|(_, n)| n).sum(),
        count_by_status,
        logical_bytes: sum("logical"),
        stored_bytes_added: sum("stored"),
    }
}

/// The stats without statuses whose count went back to 0 (they may stay listed).
fn nonzero(mut stats: CatalogStats) -> CatalogStats {
    stats.count_by_status.retain(|(_, n)| *n > 0);
    stats
}

/// Asserts that the maintained figures equal a fresh count.
async fn assert_exact(db: &Database, when: &str) {
    let kept = db.catalog().stats().await.expect("stats");
    let fresh = recount(db.connection()).await;
    assert_eq!(nonzero(kept), fresh, "counters after {when}");
}

/// Like `contract!`, but the case gets an empty, unmigrated database.
macro_rules! unmigrated {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let t = TestDatabase::sqlite();
                let db = Database::connect(&DbOptions::new(&t.url))
                    .await
                    .expect("connect");
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
                let db = Database::connect(&DbOptions::new(&t.url))
                    .await
                    .expect("connect");
                ($body)(db.clone()).await;
                db.close().await.expect("close");
                t.cleanup().await;
            }
        }
    };
}

unmigrated!(
    counters_are_backfilled_from_existing_rows,
    |db: Database| async move {
        // The schema as it was before the counters, with snapshots already catalogued.
        let steps = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261126_000003_counters")
            .expect("the counters step is registered");
        Migrator::up(
            db.connection(),
            Some(u32::try_from(steps).expect("few steps")),
        )
        .await
        .expect("migrate up to the step before");
        let manager = SchemaManager::new(db.connection());
        assert!(!manager.has_table("counters").await.expect("has_table"));
        for (n, status, size, stored) in [
            (1, "ok", 100, 10),
            (2, "ok", 250, 0),
            (3, "partial", 40, 4),
            (4, "ok", 5, 5),
        ] {
            // Without RETURNING: the entity knows columns later steps add.
            backups::Entity::insert(backups::ActiveModel {
                snapshot_id: Set(snap(n)),
                source_id: Set(None),
                source_name: Set("old".to_owned()),
                size: Set(size),
                created_at: Set(t(i64::from(n))),
                status: Set(status.to_owned()),
                encrypted: Set(true),
                file_count: Set(1),
                dir_count: Set(1),
                bytes_added: Set(0),
                stored_bytes_added: Set(stored),
                duration_ms: Set(0),
                protected: Set(false),
                ..Default::default()
            })
            .exec_without_returning(db.connection())
            .await
            .expect("a row from before");
        }
        db.migrate().await.expect("the counters step");
        assert!(manager.has_table("counters").await.expect("has_table"));
        let stats = db.catalog().stats().await.expect("stats");
        assert_eq!(
            stats,
            CatalogStats {
                count_by_status: vec![("ok".to_owned(), 3), ("partial".to_owned(), 1)],
                total: 4,
                logical_bytes: 395,
                stored_bytes_added: 19,
            }
        );
        assert_exact(&db, "the backfill").await;
        // And they are kept from there on.
        assert!(db.catalog().delete(&sid(2)).await.expect("delete"));
        assert_exact(&db, "a delete after the backfill").await;
    }
);

unmigrated!(
    an_empty_catalog_backfills_to_zero,
    |db: Database| async move {
        db.migrate().await.expect("migrate");
        let stats = db.catalog().stats().await.expect("stats");
        assert_eq!(
            stats,
            CatalogStats {
                count_by_status: Vec::new(),
                total: 0,
                logical_bytes: 0,
                stored_bytes_added: 0,
            }
        );
    }
);

contract!(
    catalog_counters_stay_exact_through_every_write,
    |db: Database| async move {
        let catalog = db.catalog();
        let source = db
            .sources()
            .create(&SourceSpec::plain("docs", "/srv/docs"), t(0))
            .await
            .expect("source");
        assert_exact(&db, "nothing").await;

        for n in 1..=6u8 {
            let status = if n % 3 == 0 {
                SnapshotStatus::Partial
            } else {
                SnapshotStatus::Ok
            };
            catalog
                .insert(&summary(n, "docs", i64::from(n), status), Some(source.id))
                .await
                .expect("insert");
        }
        assert_exact(&db, "inserts").await;
        let stats = catalog.stats().await.expect("stats");
        assert_eq!(stats.total, 6);
        assert_eq!(
            stats.count_by_status,
            vec![("ok".to_owned(), 4), ("partial".to_owned(), 2)]
        );
        assert_eq!(stats.logical_bytes, 21_000 + 6 * 7);
        assert_eq!(stats.stored_bytes_added, 2100 + 6 * 3);

        // A refused insert (the id exists) changes nothing.
        catalog
            .insert(
                &summary(2, "docs", 99, SnapshotStatus::Partial),
                Some(source.id),
            )
            .await
            .expect_err("a duplicate snapshot");
        assert_exact(&db, "a refused insert").await;

        // Deletes, of present and missing rows.
        assert!(catalog.delete(&sid(3)).await.expect("delete"));
        assert!(catalog.delete(&sid(1)).await.expect("delete"));
        assert!(!catalog.delete(&sid(1)).await.expect("delete again"));
        assert!(!catalog.delete(&sid(42)).await.expect("delete missing"));
        assert_exact(&db, "deletes").await;

        // A backup whose source went away while it ran is kept without a source (the
        // insert is retried): counted once.
        let gone = db
            .sources()
            .create(&SourceSpec::plain("gone", "/srv/gone"), t(0))
            .await
            .expect("source");
        assert!(db.sources().delete(gone.id).await.expect("delete source"));
        let orphan = catalog
            .insert(&summary(7, "gone", 7, SnapshotStatus::Ok), Some(gone.id))
            .await
            .expect("insert for a deleted source");
        assert_eq!(orphan.source_id, None);
        assert_exact(&db, "an insert retried without its source").await;

        // Other writes leave the figures alone.
        assert!(catalog.set_protected(&sid(2), true).await.expect("protect"));
        catalog
            .record_verification(&sid(2), t(50), "ok")
            .await
            .expect("verify");
        assert_exact(&db, "protect and verify").await;

        // The last partial snapshot goes: its status may stay listed, at 0.
        assert!(catalog.delete(&sid(6)).await.expect("delete"));
        assert_exact(&db, "the last partial removed").await;
        let stats = catalog.stats().await.expect("stats");
        assert!(
            stats
                .count_by_status
                .iter()
                .all(|(s, n)| s != "partial" || *n == 0),
            "{stats:?}"
        );

        // Deleting a source keeps its snapshots, and the figures.
        assert!(db.sources().delete(source.id).await.expect("delete source"));
        assert_exact(&db, "a source deleted").await;

        // A rebuild re-inserts what storage holds.
        for n in [1, 3, 6] {
            catalog
                .insert(&summary(n, "docs", i64::from(n), SnapshotStatus::Ok), None)
                .await
                .expect("re-insert");
        }
        assert_exact(&db, "a rebuild").await;
    }
);

contract!(
    racing_writes_keep_the_counters_exact,
    |db: Database| async move {
        let catalog = db.catalog();
        let inserts: Vec<_> = (1..=12u8)
            .map(|n| {
                let catalog = catalog.clone();
                tokio::spawn(async move {
                    catalog
                        .insert(&summary(n, "s", i64::from(n), SnapshotStatus::Ok), None)
                        .await
                })
            })
            .collect();
        for task in inserts {
            task.await.expect("task").expect("insert");
        }
        assert_exact(&db, "concurrent inserts").await;
        // Three deletes race for each of four rows: each row leaves the counters once.
        let deletes: Vec<_> = (1..=4u8)
            .flat_map(|n| std::iter::repeat_n(n, 3))
            .map(|n| {
                let catalog = catalog.clone();
                tokio::spawn(async move { catalog.delete(&sid(n)).await })
            })
            .collect();
        let mut removed = 0;
        for task in deletes {
            if task.await.expect("task").expect("delete") {
                removed += 1;
            }
        }
        assert_eq!(removed, 4, "each row is removed by exactly one delete");
        assert_exact(&db, "racing deletes").await;
        assert_eq!(catalog.stats().await.expect("stats").total, 8);
    }
);

contract!(counter_repository_contract, |db: Database| async move {
    let counters = db.counters();
    assert_eq!(counters.get("storage.stored_bytes").await.expect("get"), 0);
    assert_eq!(
        counters
            .add("storage.stored_bytes", 500)
            .await
            .expect("add"),
        500
    );
    assert_eq!(
        counters
            .add("storage.stored_bytes", -120)
            .await
            .expect("add"),
        380
    );
    assert_eq!(
        counters.get("storage.stored_bytes").await.expect("get"),
        380
    );
    assert_eq!(
        counters.add("other", -5).await.expect("add"),
        -5,
        "created at 0"
    );
    counters.set("storage.stored_bytes", 7).await.expect("set");
    assert_eq!(counters.get("storage.stored_bytes").await.expect("get"), 7);
    counters.set("fresh", 42).await.expect("set a new one");
    assert_eq!(counters.get("fresh").await.expect("get"), 42);
    assert_eq!(
        counters.get("other").await.expect("get"),
        -5,
        "others untouched"
    );

    // Concurrent adds never lose an update.
    let tasks: Vec<_> = (1..=20i64)
        .map(|i| {
            let counters = counters.clone();
            tokio::spawn(async move { counters.add("raced", i).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.expect("task").expect("add"));
    }
    assert_eq!(counters.get("raced").await.expect("get"), 210);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 20, "each add saw its own result");

    // The catalog's figures are not disturbed by other names.
    assert_eq!(
        db.catalog().stats().await.expect("stats"),
        CatalogStats::default()
    );
});

contract!(
    latest_per_source_is_the_newest_row_of_each,
    |db: Database| async move {
        let sources = db.sources();
        let catalog = db.catalog();
        let a = sources
            .create(&SourceSpec::plain("a", "/a"), t(0))
            .await
            .expect("a");
        let b = sources
            .create(&SourceSpec::plain("b", "/b"), t(0))
            .await
            .expect("b");
        let _empty = sources
            .create(&SourceSpec::plain("empty", "/e"), t(0))
            .await
            .expect("empty");
        let gone = sources
            .create(&SourceSpec::plain("gone", "/g"), t(0))
            .await
            .expect("gone");
        assert!(
            catalog
                .latest_per_source()
                .await
                .expect("latest")
                .is_empty()
        );
        for (n, source, at) in [(1, a.id, 10), (2, a.id, 30), (3, a.id, 20), (4, b.id, 5)] {
            catalog
                .insert(&summary(n, "x", at, SnapshotStatus::Ok), Some(source))
                .await
                .expect("insert");
        }
        // Two snapshots started in the same second: the later row is the newer.
        for n in [5, 6] {
            catalog
                .insert(&summary(n, "x", 40, SnapshotStatus::Partial), Some(b.id))
                .await
                .expect("insert");
        }
        catalog
            .insert(&summary(7, "gone", 99, SnapshotStatus::Ok), Some(gone.id))
            .await
            .expect("insert");
        assert!(sources.delete(gone.id).await.expect("delete"));

        let latest = catalog.latest_per_source().await.expect("latest");
        let got: Vec<(SourceId, String)> = latest
            .iter()
            .map(|(id, e)| (*id, e.snapshot_id.to_string()))
            .collect();
        assert_eq!(got, vec![(a.id, snap(2)), (b.id, snap(6))]);
        for (id, entry) in &latest {
            assert_eq!(entry.source_id, Some(*id));
            assert_eq!(
                Some(entry),
                catalog
                    .latest_for_source(*id)
                    .await
                    .expect("latest for source")
                    .as_ref(),
                "the same row as latest_for_source"
            );
        }
    }
);

contract!(source_schedule_state_contract, |db: Database| async move {
    let sources = db.sources();
    let spec = |schedule: Option<&str>| SourceSpec {
        schedule: schedule.map(cron),
        ..SourceSpec::plain("s", "/s")
    };
    let s = sources
        .create(&spec(Some("0 3 * * *")), t(0))
        .await
        .expect("create");
    assert!(s.enabled);
    assert_eq!((s.last_run_at, s.next_run_at), (None, None));

    assert!(
        sources
            .set_next_run(s.id, &cron("0 3 * * *"), Some(t(100)))
            .await
            .expect("plan")
    );
    let got = sources.get(s.id).await.expect("get").expect("exists");
    assert_eq!((got.last_run_at, got.next_run_at), (None, Some(t(100))));

    // Planned with a schedule the source no longer has: refused, nothing written.
    assert!(
        !sources
            .set_next_run(s.id, &cron("0 4 * * *"), Some(t(5)))
            .await
            .expect("stale plan")
    );
    assert!(
        !sources
            .record_run(s.id, &cron("0 4 * * *"), t(5), Some(t(6)))
            .await
            .expect("stale run")
    );
    assert_eq!(
        sources.get(s.id).await.expect("get"),
        Some(got.clone()),
        "unchanged"
    );

    assert!(
        sources
            .record_run(s.id, &cron("0 3 * * *"), t(100), Some(t(200)))
            .await
            .expect("run")
    );
    let got = sources.get(s.id).await.expect("get").expect("exists");
    assert_eq!(
        (got.last_run_at, got.next_run_at),
        (Some(t(100)), Some(t(200)))
    );

    // An update that keeps the schedule keeps the plan ...
    let same = sources
        .update(
            s.id,
            &SourceSpec {
                name: "renamed".to_owned(),
                ..spec(Some("0 3 * * *"))
            },
            t(150),
        )
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (same.last_run_at, same.next_run_at),
        (Some(t(100)), Some(t(200)))
    );
    // ... one that changes it clears the next run and keeps the last.
    let changed = sources
        .update(s.id, &spec(Some("*/5 * * * *")), t(160))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(
        (changed.last_run_at, changed.next_run_at),
        (Some(t(100)), None)
    );
    assert!(
        sources
            .set_next_run(s.id, &cron("*/5 * * * *"), Some(t(300)))
            .await
            .expect("plan")
    );
    let cleared = sources
        .update(s.id, &spec(None), t(170))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!((cleared.schedule, cleared.next_run_at), (None, None));
    let unscheduled = sources
        .update(s.id, &spec(None), t(175))
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(unscheduled.next_run_at, None);

    // Disabling clears the plan; enabling leaves planning to the scheduler.
    sources
        .update(s.id, &spec(Some("0 3 * * *")), t(180))
        .await
        .expect("update");
    assert!(
        sources
            .set_next_run(s.id, &cron("0 3 * * *"), Some(t(400)))
            .await
            .expect("plan")
    );
    assert!(sources.set_enabled(s.id, false, t(190)).await.expect("off"));
    let off = sources.get(s.id).await.expect("get").expect("exists");
    assert!(!off.enabled);
    assert_eq!(off.next_run_at, None);
    assert_eq!(off.last_run_at, Some(t(100)));
    assert_eq!(off.updated_at, t(190));
    assert!(sources.set_enabled(s.id, true, t(195)).await.expect("on"));
    let on = sources.get(s.id).await.expect("get").expect("exists");
    assert!(on.enabled);
    assert_eq!(on.next_run_at, None);
    assert_eq!(
        sources.list().await.expect("list"),
        vec![on.clone()],
        "list carries the same state"
    );

    let missing = SourceId::new(9999);
    assert!(
        !sources
            .set_enabled(missing, false, t(0))
            .await
            .expect("missing")
    );
    assert!(
        !sources
            .set_next_run(missing, &cron("0 3 * * *"), None)
            .await
            .expect("missing")
    );
    assert!(
        !sources
            .record_run(missing, &cron("0 3 * * *"), t(0), None)
            .await
            .expect("missing")
    );
});

contract!(counters_table_exists, |db: Database| async move {
    let manager = SchemaManager::new(db.connection());
    assert!(manager.has_table("counters").await.expect("has_table"));
});
