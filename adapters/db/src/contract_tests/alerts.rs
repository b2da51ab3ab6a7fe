//! The `AlertRepository` contract, on both backends.

use chrono::TimeDelta;
use coffer_domain::alerts::{
    Alert, AlertFilter, AlertKind, AlertRepository, NewAlert, Severity, SeverityCounts,
};
use coffer_domain::ports::{Page, RepoError, SourceRepository, SourceSpec};
use coffer_domain::{AlertId, SourceId};
use sea_orm::ConnectionTrait;

use super::*;

fn ids(page: &Page<Alert>) -> Vec<AlertId> {
    page.items.iter().map(|a| a.id).collect()
}

fn all() -> AlertFilter {
    AlertFilter {
        active_only: false,
        severity: None,
        limit: 0,
        offset: 0,
    }
}

async fn source(db: &Database, name: &str) -> SourceId {
    db.sources()
        .create(&SourceSpec::plain(name, &format!("/{name}")), t(0))
        .await
        .expect("create source")
        .id
}

contract!(alerts_insert_get_round_trip, |db: Database| async move {
    let alerts = db.alerts();
    let src = source(&db, "docs").await;
    // Sub-microsecond precision is dropped on both backends alike.
    let now = t(5) + TimeDelta::nanoseconds(123_456_789);
    let new = NewAlert::new(
        AlertKind::BackupFailed,
        Severity::Critical,
        "backup of `docs` failed: permission denied ✗",
    )
    .for_source(src);
    let stored = alerts.insert(&new, now).await.expect("insert");
    assert_eq!(
        stored,
        Alert {
            id: stored.id,
            severity: Severity::Critical,
            kind: AlertKind::BackupFailed,
            message: new.message.clone(),
            source_id: Some(src),
            created_at: t(5) + TimeDelta::microseconds(123_456),
            acknowledged_at: None,
            acknowledged_by: None,
        }
    );
    assert_eq!(
        alerts.get(stored.id).await.expect("get"),
        Some(stored.clone())
    );
    assert_eq!(
        alerts.get(AlertId::new(999)).await.expect("get missing"),
        None
    );

    let server_wide = alerts
        .insert(
            &NewAlert::new(AlertKind::KeyNotExported, Severity::Info, "export the key"),
            t(6),
        )
        .await
        .expect("insert");
    assert!(server_wide.id > stored.id, "ids grow");
    assert_eq!(server_wide.source_id, None);

    // Every kind and severity survives the round trip.
    for kind in AlertKind::ALL {
        for severity in Severity::ALL {
            let a = alerts
                .insert(&NewAlert::new(kind, severity, kind.as_str()), t(7))
                .await
                .expect("insert");
            let back = alerts.get(a.id).await.expect("get").expect("stored");
            assert_eq!((back.kind, back.severity), (kind, severity));
        }
    }
});

contract!(
    an_alert_about_a_missing_source_is_kept_server_wide,
    |db: Database| async move {
        let alerts = db.alerts();
        let stored = alerts
            .insert(
                &NewAlert::new(AlertKind::BackupFailed, Severity::Critical, "gone")
                    .for_source(SourceId::new(4242)),
                t(1),
            )
            .await
            .expect("insert despite the missing source");
        assert_eq!(stored.source_id, None);

        // Deleting a source keeps its alerts, now server-wide.
        let src = source(&db, "temp").await;
        let a = alerts
            .insert(
                &NewAlert::new(AlertKind::BackupPartial, Severity::Warning, "partial")
                    .for_source(src),
                t(2),
            )
            .await
            .expect("insert");
        assert!(db.sources().delete(src).await.expect("delete source"));
        let back = alerts.get(a.id).await.expect("get").expect("kept");
        assert_eq!(back.source_id, None);
        assert!(back.is_active());
    }
);

contract!(
    alerts_list_newest_first_filtered_and_paged,
    |db: Database| async move {
        let alerts = db.alerts();
        let mut made = Vec::new();
        for (i, severity) in [
            Severity::Info,
            Severity::Warning,
            Severity::Critical,
            Severity::Warning,
            Severity::Warning,
        ]
        .into_iter()
        .enumerate()
        {
            let i = i64::try_from(i).unwrap();
            made.push(
                alerts
                    .insert(
                        &NewAlert::new(AlertKind::Damage, severity, format!("#{i}")),
                        t(10 + i),
                    )
                    .await
                    .expect("insert"),
            );
        }
        // Two at the same instant: the higher id is newer.
        let same = alerts
            .insert(
                &NewAlert::new(AlertKind::Damage, Severity::Info, "same time"),
                t(14),
            )
            .await
            .expect("insert");
        let everything = alerts.list(&all()).await.expect("list");
        assert_eq!(everything.total, 6);
        assert_eq!(
            ids(&everything),
            vec![
                same.id, made[4].id, made[3].id, made[2].id, made[1].id, made[0].id
            ]
        );

        alerts
            .acknowledge(made[3].id, "root", t(30))
            .await
            .expect("ack")
            .expect("exists");
        let active = alerts
            .list(&AlertFilter {
                active_only: true,
                ..all()
            })
            .await
            .expect("list");
        assert_eq!(active.total, 5);
        assert!(!ids(&active).contains(&made[3].id));

        let warnings = alerts
            .list(&AlertFilter {
                active_only: true,
                severity: Some(Severity::Warning),
                ..all()
            })
            .await
            .expect("list");
        assert_eq!(ids(&warnings), vec![made[4].id, made[1].id]);
        assert_eq!(warnings.total, 2);

        let page = alerts
            .list(&AlertFilter {
                limit: 2,
                offset: 1,
                ..all()
            })
            .await
            .expect("list");
        assert_eq!(ids(&page), vec![made[4].id, made[3].id]);
        assert_eq!(page.total, 6, "the total counts every page");

        let past_the_end = alerts
            .list(&AlertFilter {
                limit: 10,
                offset: u64::MAX,
                ..all()
            })
            .await
            .expect("list");
        assert!(past_the_end.items.is_empty());
        assert_eq!(past_the_end.total, 6);
    }
);

contract!(
    open_alerts_are_found_and_acknowledged_by_kind_and_source,
    |db: Database| async move {
        let alerts = db.alerts();
        let a = source(&db, "a").await;
        let b = source(&db, "b").await;
        let quota = |s: Option<SourceId>, at: i64| {
            let alerts = alerts.clone();
            async move {
                let mut n = NewAlert::new(AlertKind::QuotaWarning, Severity::Warning, "quota");
                n.source_id = s;
                alerts.insert(&n, t(at)).await.expect("insert")
            }
        };
        assert_eq!(
            alerts
                .find_open(AlertKind::QuotaWarning, Some(a))
                .await
                .expect("find"),
            None
        );
        let older_a = quota(Some(a), 1).await;
        let newer_a = quota(Some(a), 2).await;
        let of_b = quota(Some(b), 3).await;
        let server = quota(None, 4).await;
        alerts
            .insert(
                &NewAlert::new(AlertKind::DiskLow, Severity::Warning, "disk").for_source(a),
                t(5),
            )
            .await
            .expect("insert");

        let find = |kind, s| {
            let alerts = alerts.clone();
            async move { alerts.find_open(kind, s).await.expect("find").map(|x| x.id) }
        };
        assert_eq!(
            find(AlertKind::QuotaWarning, Some(a)).await,
            Some(newer_a.id)
        );
        assert_eq!(find(AlertKind::QuotaWarning, Some(b)).await, Some(of_b.id));
        assert_eq!(
            find(AlertKind::QuotaWarning, None).await,
            Some(server.id),
            "None matches server-wide alerts only"
        );
        assert_eq!(find(AlertKind::QuotaExceeded, Some(a)).await, None);

        assert_eq!(
            alerts
                .acknowledge_open(AlertKind::QuotaWarning, Some(a), "system", t(9))
                .await
                .expect("ack open"),
            2
        );
        for id in [older_a.id, newer_a.id] {
            let row = alerts.get(id).await.expect("get").expect("kept");
            assert_eq!(row.acknowledged_by.as_deref(), Some("system"));
            assert_eq!(row.acknowledged_at, Some(t(9)));
        }
        assert_eq!(find(AlertKind::QuotaWarning, Some(a)).await, None);
        assert_eq!(find(AlertKind::QuotaWarning, Some(b)).await, Some(of_b.id));
        assert!(find(AlertKind::DiskLow, Some(a)).await.is_some());
        assert_eq!(
            alerts
                .acknowledge_open(AlertKind::QuotaWarning, Some(a), "system", t(10))
                .await
                .expect("ack open"),
            0,
            "nothing open is left"
        );
        assert_eq!(
            alerts
                .acknowledge_open(AlertKind::QuotaWarning, None, "system", t(10))
                .await
                .expect("ack open"),
            1
        );
        assert_eq!(find(AlertKind::QuotaWarning, Some(b)).await, Some(of_b.id));
    }
);

contract!(
    the_first_acknowledgement_stands,
    |db: Database| async move {
        let alerts = db.alerts();
        let a = alerts
            .insert(
                &NewAlert::new(AlertKind::PruneFailed, Severity::Critical, "prune failed"),
                t(1),
            )
            .await
            .expect("insert");
        let acked = alerts
            .acknowledge(a.id, "alice", t(2) + TimeDelta::nanoseconds(7_000_500))
            .await
            .expect("ack")
            .expect("exists");
        assert_eq!(acked.acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(
            acked.acknowledged_at,
            Some(t(2) + TimeDelta::microseconds(7000))
        );
        assert_eq!(
            Alert {
                acknowledged_at: None,
                acknowledged_by: None,
                ..acked.clone()
            },
            a,
            "nothing else changed"
        );
        let again = alerts
            .acknowledge(a.id, "bob", t(3))
            .await
            .expect("ack again")
            .expect("exists");
        assert_eq!(again, acked);
        assert_eq!(
            alerts
                .acknowledge(AlertId::new(12345), "bob", t(3))
                .await
                .expect("ack missing"),
            None
        );
    }
);

contract!(
    active_alerts_are_counted_by_severity,
    |db: Database| async move {
        let alerts = db.alerts();
        assert_eq!(
            alerts.count_active_by_severity().await.expect("count"),
            SeverityCounts::default()
        );
        let mut critical = Vec::new();
        for (severity, n) in [
            (Severity::Info, 1),
            (Severity::Warning, 3),
            (Severity::Critical, 2),
        ] {
            for _ in 0..n {
                let a = alerts
                    .insert(&NewAlert::new(AlertKind::Damage, severity, "x"), t(1))
                    .await
                    .expect("insert");
                if severity == Severity::Critical {
                    critical.push(a.id);
                }
            }
        }
        alerts
            .acknowledge(critical[0], "root", t(2))
            .await
            .expect("ack");
        assert_eq!(
            alerts.count_active_by_severity().await.expect("count"),
            SeverityCounts {
                info: 1,
                warning: 3,
                critical: 1
            }
        );
    }
);

contract!(
    an_alert_row_this_version_cannot_read_is_corrupt,
    |db: Database| async move {
        let alerts = db.alerts();
        let a = alerts
            .insert(
                &NewAlert::new(AlertKind::Damage, Severity::Warning, "x"),
                t(1),
            )
            .await
            .expect("insert");
        db.connection()
            .execute_unprepared(&format!(
                "UPDATE alerts SET kind = 'meteor_strike' WHERE id = {}",
                a.id
            ))
            .await
            .expect("tamper");
        let err = alerts.get(a.id).await.expect_err("unknown kind");
        assert!(
            matches!(err, RepoError::Corrupt(ref m) if m.contains(&format!("alerts.id={}", a.id))),
            "{err}"
        );
        assert!(matches!(
            alerts.list(&all()).await,
            Err(RepoError::Corrupt(_))
        ));
    }
);

contract!(
    a_condition_is_raised_once_and_replaced_only_by_a_worse_one,
    |db: Database| async move {
        let alerts = db.alerts();
        let src = source(&db, "docs").await;
        let disk = |severity| NewAlert::new(AlertKind::DiskLow, severity, "the disk is filling");
        let first = alerts
            .raise_condition(&disk(Severity::Warning), "system", t(1))
            .await
            .expect("raise")
            .expect("none was open");
        assert_eq!(
            (first.kind, first.severity, first.source_id),
            (AlertKind::DiskLow, Severity::Warning, None)
        );
        assert!(first.is_active());
        // The same state again, or a milder one: already reported.
        for severity in [Severity::Warning, Severity::Info] {
            assert_eq!(
                alerts
                    .raise_condition(&disk(severity), "system", t(2))
                    .await
                    .expect("raise"),
                None
            );
        }
        // Worse: the open one is acknowledged by the system and replaced.
        let worse = alerts
            .raise_condition(&disk(Severity::Critical), "system", t(3))
            .await
            .expect("raise")
            .expect("an escalation is news");
        let superseded = alerts.get(first.id).await.expect("get").expect("kept");
        assert_eq!(superseded.acknowledged_by.as_deref(), Some("system"));
        assert_eq!(superseded.acknowledged_at, Some(t(3)));
        assert_eq!(
            alerts
                .find_open(AlertKind::DiskLow, None)
                .await
                .expect("open"),
            Some(worse)
        );
        // Another source, or the same kind about a source, is another condition.
        let quota = NewAlert::new(AlertKind::QuotaWarning, Severity::Warning, "quota");
        let of_source = alerts
            .raise_condition(&quota.clone().for_source(src), "system", t(4))
            .await
            .expect("raise")
            .expect("about the source");
        assert_eq!(of_source.source_id, Some(src));
        let server_wide = alerts
            .raise_condition(&quota, "system", t(4))
            .await
            .expect("raise")
            .expect("server-wide");
        assert_eq!(server_wide.source_id, None);
        // A source that is gone: the alert is kept server-wide, as `insert` keeps it.
        let gone = alerts
            .raise_condition(
                &NewAlert::new(AlertKind::ReplicaLagging, Severity::Warning, "lag")
                    .for_source(SourceId::new(987_654)),
                "system",
                t(5),
            )
            .await
            .expect("raise")
            .expect("stored");
        assert_eq!(gone.source_id, None);
        assert_eq!(
            alerts.count_active_by_severity().await.expect("count"),
            SeverityCounts {
                info: 0,
                warning: 3,
                critical: 1
            }
        );
    }
);

contract!(
    instances_raising_one_condition_at_once_store_one_alert,
    |db: Database| async move {
        // Each raiser has its own repository over the shared pool and runs as its own
        // task, as instances sharing the database do; the database alone keeps them from
        // each opening the alert.
        let key = NewAlert::new(
            AlertKind::KeyNotExported,
            Severity::Warning,
            "export the key",
        );
        let mut raisers = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (alerts, key) = (db.alerts(), key.clone());
            raisers.spawn(async move { alerts.raise_condition(&key, "system", t(1)).await });
        }
        let mut stored = Vec::new();
        while let Some(raised) = raisers.join_next().await {
            stored.extend(raised.expect("task").expect("raise"));
        }
        assert_eq!(stored.len(), 1, "one alert stored: {stored:?}");
        let open = db
            .alerts()
            .list(&AlertFilter {
                active_only: true,
                ..all()
            })
            .await
            .expect("list");
        assert_eq!(ids(&open), vec![stored[0].id]);
        assert_eq!(open.total, 1);
    }
);
