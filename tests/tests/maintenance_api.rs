//! Garbage collection, quotas, the dashboard and metrics, end to end against the real
//! server, repository and catalog.

use std::path::Path;

use coffer_tests::{Api, Backend, TestApp, admin, on_both, spawn_app, spawn_app_with};
use serde_json::{Value, json};

/// Deterministic pseudo-random bytes (incompressible, undeduplicable).
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

fn fill(dir: &Path, files: u64, size: usize, seed: u64) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i}")), noise(size, (seed + i) * 2 + 1)).expect("write");
    }
}

/// Every file under `root`, relative, with its bytes.
fn files(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.push((
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("read"),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Packs in the repository's storage.
fn packs(app: &TestApp) -> usize {
    let mut n = 0;
    let data = app.settings.storage_root().join("data");
    let Ok(dirs) = std::fs::read_dir(data) else {
        return 0;
    };
    for d in dirs {
        n += std::fs::read_dir(d.expect("dir").path())
            .expect("pack dir")
            .count();
    }
    n
}

async fn stored(api: &Api<'_>) -> u64 {
    let (status, body) = api.get("/api/storage").await;
    assert_eq!(status, 200, "{body}");
    body["stored_bytes"].as_u64().expect("stored_bytes")
}

async fn active_alerts(api: &Api<'_>, kind: &str) -> Vec<Value> {
    let (status, body) = api.get("/api/alerts?active=true&limit=500").await;
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["kind"] == kind)
        .cloned()
        .collect()
}

async fn start(api: &Api<'_>, path: &str) -> Value {
    let (status, job) = api.post(path, json!({})).await;
    assert_eq!(status, 202, "{job}");
    api.wait(job["id"].as_str().expect("id")).await
}

fn none(_: &mut coffer_config::Settings) {}

/// Deleting a snapshot and pruning gives its space back; what remains restores
/// byte for byte, and the counters, the dashboard and the metrics agree.
async fn prune_frees_space_and_the_rest_restores(app: &TestApp) {
    let api = admin(app).await;
    let src = tempfile::tempdir().expect("tmp");
    fill(&src.path().join("keep"), 4, 300_000, 1);
    fill(&src.path().join("goes"), 3, 2_000_000, 100);
    let source = api.create_source("docs", src.path()).await;
    let first = api.backup(source).await;
    std::fs::remove_dir_all(src.path().join("goes")).expect("rm");
    let second = api.backup(source).await;
    let expected = files(src.path());
    let before = stored(&api).await;
    let packs_before = packs(app);

    let (status, body) = api
        .send("DELETE", &format!("/api/backups/{first}"), None)
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    assert_eq!(
        stored(&api).await,
        before,
        "deleting frees nothing before a prune"
    );

    let done = start(&api, "/api/maintenance/prune").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let result = &done["result"];
    assert_eq!(result["snapshots"], 1);
    let after = result["bytes_after"].as_u64().expect("bytes_after");
    assert!(after + 5_000_000 < before, "{before} -> {after}");
    assert_eq!(stored(&api).await, after, "the counter follows the prune");
    assert!(packs(app) <= packs_before);

    // The remaining snapshot restores whole.
    let (status, job) = api.post(&format!("/api/restore/{second}"), json!({})).await;
    assert_eq!(status, 202, "{job}");
    let restored = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(restored["state"], "succeeded", "{restored}");
    let target = restored["result"]["target"].as_str().expect("target");
    assert_eq!(files(Path::new(target)), expected);

    // A check reads everything back.
    let check = start(&api, "/api/maintenance/check?share_percent=100").await;
    assert_eq!(check["state"], "succeeded", "{check}");
    assert_eq!(check["result"]["ok"], true, "{check}");

    // Dashboard and metrics from the same counters.
    let (status, dash) = api.get("/api/dashboard").await;
    assert_eq!(status, 200, "{dash}");
    assert_eq!(dash["total_backups"], 1);
    assert_eq!(dash["storage"]["stored_bytes"], after);
    assert_eq!(dash["sources"][0]["last_backup"]["snapshot_id"], second);
    assert!(dash["disk"]["free_bytes"].as_u64().expect("free") > 0);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.expect("text");
    assert!(text.contains("coffer_backups{status=\"ok\"} 1\n"), "{text}");
    assert!(
        text.contains(&format!("coffer_storage_stored_bytes {after}\n")),
        "{text}"
    );
    assert!(
        text.contains("coffer_job_duration_seconds_count{kind=\"prune\",state=\"succeeded\"} 1"),
        "{text}"
    );

    // Only an admin may prune or check; the audit trail records both.
    app.create_user(&api.token, "olga", "a long enough passphrase", "operator")
        .await;
    let operator = Api {
        app,
        token: app.token("olga", "a long enough passphrase").await,
    };
    let (status, _) = operator.post("/api/maintenance/prune", json!({})).await;
    assert_eq!(status, 403);
    let (_, audit) = api.get("/api/audit?action=prune&limit=10").await;
    assert!(
        audit["items"].as_array().is_some_and(|a| !a.is_empty()),
        "{audit}"
    );
}
on_both!(prune_frees_space_and_the_rest_restores, none);

fn small_quota(settings: &mut coffer_config::Settings) {
    settings.quota.max_storage_mb = 3;
    settings.quota.warning_threshold_mb = 1;
}

/// Past the warning threshold an alert; a backup that would cross the quota stops,
/// leaves nothing in storage and usage unchanged; once the quota is reached new backups
/// are refused with 507.
async fn quota_warns_stops_and_refuses(app: &TestApp) {
    let api = admin(app).await;
    let src = tempfile::tempdir().expect("tmp");
    let small = src.path().join("small");
    fill(&small, 3, 500_000, 1);
    let source = api.create_source("small", &small).await;
    api.backup(source).await;
    assert_eq!(active_alerts(&api, "quota_warning").await.len(), 1);
    let (_, storage) = api.get("/api/storage").await;
    assert_eq!(storage["quota_state"], "warning", "{storage}");

    // 4 MB more would cross the 3 MiB quota.
    let big = src.path().join("big");
    fill(&big, 2, 2_000_000, 50);
    let big_source = api.create_source("big", &big).await;
    let before = stored(&api).await;
    let packs_before = packs(app);
    let (status, job) = api
        .post("/api/backup", json!({"source_id": big_source}))
        .await;
    assert_eq!(status, 202, "{job}");
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "quota_exceeded", "{done}");
    assert_eq!(stored(&api).await, before, "usage unchanged");
    assert_eq!(packs(app), packs_before, "nothing of it stayed in storage");
    let (_, list) = api
        .get(&format!("/api/backups?source_id={big_source}"))
        .await;
    assert_eq!(list["total"], 0, "{list}");
    assert_eq!(active_alerts(&api, "quota_exceeded").await.len(), 1);
}

/// Once the quota is reached (here: lowered below what is stored), new backups are
/// refused at the start with 507 and nothing is queued; raising it lets them in again.
async fn a_full_quota_refuses_backups_at_the_start(app: TestApp) -> TestApp {
    let src = tempfile::tempdir().expect("tmp");
    fill(src.path(), 2, 1_000_000, 7);
    let source = {
        let api = admin(&app).await;
        let source = api.create_source("data", src.path()).await;
        api.backup(source).await;
        source
    };
    let app = app
        .restart(|s| {
            s.quota.max_storage_mb = 1;
            s.quota.warning_threshold_mb = 0;
        })
        .await;
    let api = admin(&app).await;
    let (_, storage) = api.get("/api/storage").await;
    assert_eq!(storage["quota_state"], "exceeded", "{storage}");
    assert_eq!(active_alerts(&api, "quota_exceeded").await.len(), 1);
    let (_, jobs_before) = api.get("/api/jobs").await;
    let (status, body) = api.post("/api/backup", json!({"source_id": source})).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    let (_, jobs_after) = api.get("/api/jobs").await;
    assert_eq!(jobs_after["total"], jobs_before["total"], "nothing queued");
    drop(api);
    let app = app.restart(|s| s.quota.max_storage_mb = 100).await;
    let api = admin(&app).await;
    api.backup(source).await;
    assert!(
        active_alerts(&api, "quota_exceeded").await.is_empty(),
        "cleared"
    );
    drop(api);
    app
}

mod a_full_quota_refuses_backups_at_the_start {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let app = spawn_app_with(Backend::Sqlite, "full_quota::sqlite", none)
            .await
            .expect("sqlite is always available");
        super::a_full_quota_refuses_backups_at_the_start(app)
            .await
            .stop()
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(app) = spawn_app_with(Backend::Postgres, "full_quota::postgres", none).await
        else {
            return;
        };
        super::a_full_quota_refuses_backups_at_the_start(app)
            .await
            .stop()
            .await;
    }
}

on_both!(quota_warns_stops_and_refuses, small_quota);

fn metrics_token(settings: &mut coffer_config::Settings) {
    settings.metrics.token = Some("scrape-me-please-0123".into());
}

/// With a token configured, a scrape must carry it.
async fn metrics_need_their_token(app: &TestApp) {
    let get = |token: Option<&'static str>| {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(get(None).await.expect("send").status().as_u16(), 401);
    assert_eq!(
        get(Some("scrape-me-please-wrong"))
            .await
            .expect("send")
            .status()
            .as_u16(),
        401
    );
    let ok = get(Some("scrape-me-please-0123")).await.expect("send");
    assert_eq!(ok.status().as_u16(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    assert!(ok.text().await.expect("text").contains("coffer_up 1"));
}
on_both!(metrics_need_their_token, metrics_token);

/// A NAS share that is not mounted leaves an empty directory where the repository was.
/// While the server runs, a backup is refused with a critical alert naming the path (and
/// writes nothing there); at the next start the server refuses to create a new, empty
/// repository in its place. With the share back, backups work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmounted_share_never_becomes_a_new_empty_repository() {
    let Some(app) = spawn_app(Backend::Sqlite, "unmounted_share").await else {
        return;
    };
    let api = admin(&app).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"kept safe").unwrap();
    let source = api.create_source("share", &src).await;
    api.backup(source).await;

    // "Unmount": the repository moves away, an empty mount point stays.
    let repo = app.settings.storage_root();
    let away = work.path().join("share-contents");
    std::fs::rename(&repo, &away).unwrap();
    std::fs::create_dir_all(&repo).unwrap();
    let (status, job) = api.post("/api/backup", json!({"source_id": source})).await;
    assert_eq!(status, 202, "{job}");
    let failed = api.wait(job["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["error"].to_string().contains("is missing"),
        "{failed}"
    );
    let (_, alerts) = api.get("/api/alerts?severity=critical").await;
    let alerts = alerts.to_string();
    assert!(
        alerts.contains("backup_failed") && alerts.contains(&repo.display().to_string()),
        "a critical alert names the path: {alerts}"
    );
    let written: Vec<_> = std::fs::read_dir(&repo)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".tmp")
        .collect();
    assert!(
        written.is_empty(),
        "nothing written at the mount point: {written:?}"
    );

    // A new process (a restart, the CLI) does not create a new repository there either.
    let settings = app.settings.clone();
    let err = match coffer::Services::open(&settings).await {
        Ok(_) => panic!("the server must refuse to start on a vanished repository"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("is missing") && err.contains(&repo.display().to_string()),
        "{err}"
    );
    assert!(
        !repo.join("keys").exists(),
        "no new repository was initialised at the mount point"
    );

    // "Mount" again: everything works.
    std::fs::remove_dir_all(&repo).unwrap();
    std::fs::rename(&away, &repo).unwrap();
    let services = coffer::Services::open(&settings)
        .await
        .expect("starts with the share back");
    services.db.close().await.unwrap();
    api.backup(source).await;
    app.stop().await;
}
