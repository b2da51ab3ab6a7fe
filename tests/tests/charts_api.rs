//! The dashboard's charts over the API, on SQLite and PostgreSQL: the storage series
//! with the quota and the projection (from daily samples seeded beside a real backup),
//! backups per day by outcome counting real runs, and a source's recent runs with its
//! success streak; the permission and the error shape.

use chrono::{NaiveDate, TimeDelta, Utc};
use coffer_domain::reports::StorageHistory as _;
use coffer_tests::{Api, TestApp, admin, on_both};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// `len` bytes that neither compress nor deduplicate (xorshift64).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
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

/// Samples for the ten days before today, growing by `rate` a day up to `today_bytes`.
async fn seed_history(app: &TestApp, today: NaiveDate, today_bytes: u64, rate: u64) {
    let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(app.settings.database_url()))
        .await
        .expect("connect to the app's database");
    let history = db.storage_history();
    for back in 1..=10u64 {
        let day = today - TimeDelta::days(i64::try_from(back).expect("small"));
        history
            .record(day, today_bytes - back * rate)
            .await
            .expect("record a sample");
    }
    db.close().await.expect("close");
}

fn today_of(days: &Value) -> &Value {
    days.as_array()
        .and_then(|d| d.last())
        .expect("a day in the series")
}

async fn charts(api: &Api<'_>) -> Value {
    let (status, body) = api.get("/api/dashboard/charts").await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn charts_show_storage_runs_and_streaks(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let docs = work.path().join("docs");
    std::fs::create_dir_all(&docs).expect("mkdir");
    std::fs::write(docs.join("a.bin"), noise(4 << 20)).expect("write");
    let source = api.create_source("docs", &docs).await;
    let today = Utc::now().date_naive();

    // Nothing run yet: every one of the 30 days is there, empty.
    let c = charts(&api).await;
    let per_day = c["backups_per_day"].as_array().expect("days");
    assert_eq!(per_day.len(), 30, "{c}");
    assert_eq!(today_of(&c["backups_per_day"])["day"], today.to_string());
    assert!(per_day.iter().all(|d| d["total"] == 0), "{c}");

    api.backup(source).await;
    let c = charts(&api).await;
    let day = today_of(&c["backups_per_day"]);
    assert_eq!(
        (&day["succeeded"], &day["failed"], &day["total"]),
        (&json!(1), &json!(0), &json!(1)),
        "{c}"
    );
    let stored = c["storage"]["stored_bytes"].as_u64().expect("stored bytes");
    assert!(stored > 0, "{c}");
    // One day of samples: no line to fit yet, and the page is told why.
    let sample = today_of(&c["storage"]["days"]);
    assert_eq!(sample["day"], today.to_string(), "{c}");
    assert_eq!(sample["stored_bytes"], stored, "{c}");
    assert!(c["storage"].get("trend").is_none(), "{c}");

    // Ten earlier days growing by a 20th of today's bytes a day, and a quota between one
    // and two MiB above what is stored: about a week away.
    let rate = stored / 20;
    seed_history(app, today, stored, rate).await;
    let quota_mb = stored.div_ceil(MIB) + 1;
    let (status, body) = api
        .send(
            "PATCH",
            "/api/settings",
            Some(json!({"quota": {"max_storage_mb": quota_mb, "warning_threshold_mb": 0}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let c = charts(&api).await;
    let storage = &c["storage"];
    assert_eq!(storage["days"].as_array().expect("days").len(), 11, "{c}");
    assert_eq!(storage["trend"]["bytes_per_day"], rate, "{c}");
    assert_eq!(storage["trend"]["days"], 11, "{c}");
    assert_eq!(storage["quota_bytes"], quota_mb * MIB, "{c}");
    let days_left = (quota_mb * MIB - stored).div_ceil(rate);
    let expected = today + TimeDelta::days(i64::try_from(days_left).expect("small"));
    assert_eq!(storage["quota_projection"]["state"], "on", "{c}");
    assert_eq!(
        storage["quota_projection"]["date"],
        expected.to_string(),
        "{c}"
    );
    assert_eq!(storage["quota_projection"]["fit_days"], 30, "{c}");

    // A second run adds to today; a run of a source whose directory is gone fails.
    api.backup(source).await;
    let gone = work.path().join("gone");
    std::fs::create_dir_all(&gone).expect("mkdir");
    let broken = api.create_source("gone", &gone).await;
    std::fs::remove_dir(&gone).expect("rmdir");
    let (status, job) = api.post("/api/backup", json!({"source_id": broken})).await;
    assert_eq!(status, 202, "{job}");
    let done = api.wait(job["id"].as_str().expect("job id")).await;
    assert_eq!(done["state"], "failed", "{done}");
    let c = charts(&api).await;
    let day = today_of(&c["backups_per_day"]);
    assert_eq!(
        (&day["succeeded"], &day["failed"], &day["total"]),
        (&json!(2), &json!(1), &json!(3)),
        "{c}"
    );

    // The source's runs, oldest first, and its streak.
    let (status, runs) = api.get(&format!("/api/sources/{source}/runs")).await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["name"], "docs");
    assert_eq!(runs["success_streak"], 2, "{runs}");
    let list = runs["runs"].as_array().expect("runs");
    assert_eq!(list.len(), 2, "{runs}");
    for run in list {
        assert_eq!(run["outcome"], "succeeded", "{runs}");
        assert!(run["duration_ms"].is_u64(), "{runs}");
        assert!(run["bytes_added"].is_u64(), "{runs}");
    }
    assert!(list[0]["created_at"].as_str() < list[1]["created_at"].as_str());
    // The first run stored the file; the second found nothing new.
    assert!(list[0]["bytes_added"].as_u64() > Some(0), "{runs}");
    assert_eq!(list[1]["bytes_added"], 0, "{runs}");

    let (status, runs) = api.get(&format!("/api/sources/{broken}/runs")).await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["success_streak"], 0, "{runs}");
    assert_eq!(runs["runs"][0]["outcome"], "failed", "{runs}");
    assert!(runs["runs"][0].get("bytes_added").is_none(), "{runs}");

    // An unknown source is the usual 404; without a session, 401.
    let (status, body) = api.get("/api/sources/999999/runs").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let anonymous = app
        .client
        .get(app.url("/api/dashboard/charts"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);

    // A viewer sees the charts (the `view` permission).
    let admin_token = app.admin_token().await;
    app.create_user(
        &admin_token,
        "watcher",
        "a long enough passphrase",
        "viewer",
    )
    .await;
    let viewer = app.token("watcher", "a long enough passphrase").await;
    let (status, body) = app.get_as(&viewer, "/api/dashboard/charts").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .get_as(&viewer, &format!("/api/sources/{source}/runs"))
        .await;
    assert_eq!(status, 200, "{body}");
}

on_both!(charts_show_storage_runs_and_streaks);
