//! Settings changed at run time (quota, retention defaults), schedule previews and
//! trying retention rules, end to end against the real server and catalog.

use coffer_tests::{Api, Backend, TestApp, admin, spawn_app_with};
use serde_json::{Value, json};

const PASSPHRASE: &str = "a long enough passphrase";

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn no_quota(settings: &mut coffer_config::Settings) {
    settings.quota.max_storage_mb = 0;
    settings.quota.warning_threshold_mb = 0;
    settings.retention.enabled = true;
    settings.retention.max_backups = 10;
    settings.retention.max_age_days = 30;
    // The test's backups follow each other within seconds; what it checks is the rules'
    // counting per snapshot, not the burst window.
    settings.retention.burst_minutes = 0;
}

async fn active_alerts(api: &Api<'_>, kind: &str) -> usize {
    let (_, body) = api.get("/api/alerts?active=true&limit=500").await;
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["kind"] == kind)
        .count()
}

async fn patch(api: &Api<'_>, body: Value) -> (u16, Value) {
    api.send("PATCH", "/api/settings", Some(body)).await
}

async fn settings_change_kept_across_restarts_and_reset(app: TestApp) -> TestApp {
    let work = tempfile::tempdir().expect("tmp");
    let src = work.path().join("data");
    std::fs::create_dir(&src).expect("mkdir");
    let source = {
        let api = admin(&app).await;
        let (status, s) = api.get("/api/settings").await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["quota"]["from"], "file", "{s}");
        assert_eq!(s["quota"]["max_storage_mb"], 0, "{s}");
        assert_eq!(s["retention"]["from"], "file", "{s}");
        assert_eq!(s["retention"]["rules"]["max_backups"], 10, "{s}");
        assert_eq!(s["key"]["exported"], false, "{s}");
        assert!(
            s["key"]["export_command"]
                .as_str()
                .is_some_and(|c| c.starts_with("coffer key export")),
            "{s}"
        );

        // Only an administrator sees or changes them.
        app.create_user(&api.token, "olga", PASSPHRASE, "operator")
            .await;
        let operator = Api {
            app: &app,
            token: app.token("olga", PASSPHRASE).await,
        };
        assert_eq!(operator.get("/api/settings").await.0, 403);
        let (status, body) = patch(&operator, json!({"quota": null})).await;
        assert_eq!(status, 403, "{body}");

        // Two snapshots, about 2 MiB stored.
        std::fs::write(src.join("a"), noise(2_200_000, 1)).expect("write");
        let source = api.create_source("data", &src).await;
        api.backup(source).await;
        std::fs::write(src.join("b"), b"second").expect("write");
        api.backup(source).await;

        // Trying rules changes nothing.
        let (status, sim) = api
            .post(
                "/api/retention/preview",
                json!({"source": "data", "retention": {"max_backups": 1, "max_age_days": 0}}),
            )
            .await;
        assert_eq!(status, 200, "{sim}");
        assert_eq!(
            (sim["kept"].as_u64(), sim["removed"].as_u64()),
            (Some(1), Some(1)),
            "{sim}"
        );
        assert_eq!(sim["applied"], false);
        assert_eq!(sim["policy"]["max_backups"], 1);
        let (_, sim) = api
            .post(
                "/api/retention/preview",
                json!({"source": source.to_string()}),
            )
            .await;
        assert_eq!(sim["policy"]["max_backups"], 10, "the defaults: {sim}");
        assert_eq!(sim["removed"], 0, "{sim}");
        let (status, bad) = api
            .post(
                "/api/retention/preview",
                json!({"source": "data", "retention": {"max_backups": 1_000_000, "max_age_days": 0}}),
            )
            .await;
        assert!(status == 400 || status == 422, "{status} {bad}");
        let (status, _) = api
            .post("/api/retention/preview", json!({"source": "nope"}))
            .await;
        assert_eq!(status, 404);
        let (_, list) = api.get(&format!("/api/backups?source_id={source}")).await;
        assert_eq!(list["total"], 2, "{list}");

        // Bad quotas are refused and change nothing.
        let (status, body) = patch(
            &api,
            json!({"quota": {"max_storage_mb": 1, "warning_threshold_mb": 2}}),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_quota", "{body}");

        // A quota below what is stored: in force at once.
        let (status, s) = patch(
            &api,
            json!({
                "quota": {"max_storage_mb": 1, "warning_threshold_mb": 0},
                "retention": {"enabled": true, "rules": {"max_backups": 1, "max_age_days": 0}},
            }),
        )
        .await;
        assert_eq!(status, 200, "{s}");
        assert_eq!(s["quota"]["from"], "dashboard", "{s}");
        assert_eq!(s["quota"]["max_storage_mb"], 1, "{s}");
        assert_eq!(s["retention"]["from"], "dashboard", "{s}");
        assert_eq!(s["retention"]["rules"]["max_backups"], 1, "{s}");
        let (_, storage) = api.get("/api/storage").await;
        assert_eq!(storage["quota_state"], "exceeded", "{storage}");
        assert_eq!(active_alerts(&api, "quota_exceeded").await, 1);
        let (status, body) = api.post("/api/backup", json!({"source_id": source})).await;
        assert_eq!(status, 507, "{body}");
        assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");

        // The new retention defaults are what the preview uses.
        let (_, preview) = api.get("/api/retention/preview?source=data").await;
        assert_eq!(preview["policy"]["max_backups"], 1, "{preview}");
        assert_eq!(preview["removed"], 1, "{preview}");

        // Audited with old and new values.
        let (_, audit) = api.get("/api/audit?action=settings_change").await;
        let detail = audit["items"][0]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(
                "quota max none, warning none (file) -> max 1 MiB, warning none (dashboard)"
            ),
            "{audit}"
        );
        assert!(detail.contains("retention defaults"), "{audit}");
        source
    };

    // Kept across a restart, over the file's values.
    let app = app.restart(|_| {}).await;
    let api = admin(&app).await;
    let (_, s) = api.get("/api/settings").await;
    assert_eq!(s["quota"]["from"], "dashboard", "{s}");
    assert_eq!(s["retention"]["rules"]["max_backups"], 1, "{s}");
    let (status, _) = api.post("/api/backup", json!({"source_id": source})).await;
    assert_eq!(status, 507, "still refused after a restart");

    // Reset the quota: the file's value (none) is back and backups run; the retention
    // defaults set here keep one snapshot after it.
    let (status, s) = patch(&api, json!({"quota": null})).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["quota"]["from"], "file", "{s}");
    assert_eq!(s["quota"]["max_storage_mb"], 0, "{s}");
    assert_eq!(s["retention"]["from"], "dashboard", "untouched: {s}");
    assert_eq!(active_alerts(&api, "quota_exceeded").await, 0, "cleared");
    std::fs::write(src.join("c"), b"third").expect("write");
    api.backup(source).await;
    let (_, list) = api.get(&format!("/api/backups?source_id={source}")).await;
    assert_eq!(list["total"], 1, "retention with the new defaults: {list}");

    // Administrators saving at once: what is stored, what is in force and what the
    // last audit row says agree.
    let saves = (1..=8u64).map(|mb| {
        patch(
            &api,
            json!({"quota": {"max_storage_mb": 1000 + mb, "warning_threshold_mb": 0}}),
        )
    });
    for (status, body) in futures::future::join_all(saves).await {
        assert_eq!(status, 200, "{body}");
    }
    let (_, s) = api.get("/api/settings").await;
    let (_, storage) = api.get("/api/storage").await;
    let max = s["quota"]["max_storage_mb"].as_u64().expect("max");
    assert_eq!(
        storage["quota_bytes"].as_u64(),
        Some(max * 1024 * 1024),
        "in force: {storage}"
    );
    let (_, audit) = api.get("/api/audit?action=settings_change&limit=1").await;
    let newest = audit["items"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        newest.ends_with(&format!("-> max {max} MiB, warning none (dashboard)")),
        "{newest} / {max}"
    );
    let (_, s) = patch(&api, json!({"quota": null, "retention": null})).await;
    assert_eq!(s["quota"]["from"], "file", "{s}");
    assert_eq!(s["retention"]["from"], "file", "{s}");
    assert_eq!(s["retention"]["rules"]["max_backups"], 10, "{s}");
    drop(api);
    app
}

mod settings_change {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = spawn_app_with(Backend::Sqlite, "settings::sqlite", no_quota)
            .await
            .expect("sqlite is always available");
        super::settings_change_kept_across_restarts_and_reset(app)
            .await
            .stop()
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(app) = spawn_app_with(Backend::Postgres, "settings::postgres", no_quota).await
        else {
            return;
        };
        super::settings_change_kept_across_restarts_and_reset(app)
            .await
            .stop()
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_described_with_their_next_runs() {
    let app = spawn_app_with(Backend::Sqlite, "schedule_preview", no_quota)
        .await
        .expect("sqlite is always available");
    {
        let api = admin(&app).await;
        app.create_user(&api.token, "vera", PASSPHRASE, "viewer")
            .await;
        let viewer = Api {
            app: &app,
            token: app.token("vera", PASSPHRASE).await,
        };
        let (status, p) = viewer
            .get("/api/schedule/preview?cron=30%203%20*%20*%201-5")
            .await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["cron"], "30 3 * * 1-5");
        assert_eq!(p["description"], "at 03:30, on Monday to Friday (UTC)");
        let runs = p["next_runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 5, "{p}");
        for r in runs {
            let t =
                chrono::DateTime::parse_from_rfc3339(r.as_str().expect("time")).expect("rfc3339");
            assert_eq!(t.format("%H:%M").to_string(), "03:30");
            assert!(!matches!(
                t.format("%a").to_string().as_str(),
                "Sat" | "Sun"
            ));
        }
        let (status, bad) = viewer
            .get("/api/schedule/preview?cron=61%20*%20*%20*%20*")
            .await;
        assert_eq!(status, 422, "{bad}");
        assert_eq!(bad["error"]["code"], "invalid_schedule", "{bad}");
        assert!(
            bad["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("61 * * * *")),
            "{bad}"
        );
    }
    app.stop().await;
}

/// Several instances on one PostgreSQL catalog: a quota set on one is in force on the
/// others within seconds (they re-read the stored settings, retention defaults alike),
/// and resetting it on one resets it everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_changed_on_one_instance_is_in_force_on_the_others() {
    let Some(app) = spawn_app_with(Backend::Postgres, "settings_across_instances", no_quota).await
    else {
        return;
    };
    let peer = app.spawn_peer().await;
    let on_app = admin(&app).await;
    // The session from the first instance serves on the second.
    let on_peer = coffer_tests::Api {
        app: &peer,
        token: on_app.token.clone(),
    };
    let (_, storage) = on_peer.get("/api/storage").await;
    assert!(storage["quota_bytes"].is_null(), "{storage}");

    let (status, body) = patch(
        &on_app,
        json!({"quota": {"max_storage_mb": 7, "warning_threshold_mb": 5}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let in_force = |storage: &Value| storage["quota_bytes"] == json!(7u64 << 20);
    let mut storage = Value::Null;
    for _ in 0..100 {
        storage = on_peer.get("/api/storage").await.1;
        if in_force(&storage) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        in_force(&storage),
        "the peer never put the quota in force: {storage}"
    );
    assert_eq!(storage["warning_bytes"], json!(5u64 << 20), "{storage}");

    // Reset on the peer: the file's values again, on both.
    let (status, body) = patch(&on_peer, json!({"quota": null})).await;
    assert_eq!(status, 200, "{body}");
    let mut storage = Value::Null;
    for _ in 0..100 {
        storage = on_app.get("/api/storage").await.1;
        if storage["quota_bytes"].is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(storage["quota_bytes"].is_null(), "{storage}");
    peer.stop().await;
    app.stop().await;
}
