//! Replicas end to end against the real server, repository and catalog: roles, audit,
//! copies as jobs, what a replica holds, lag and alerts.

use std::path::Path;

use coffer_tests::{Api, TestApp, admin, on_both};
use serde_json::{Value, json};

const STRONG: &str = "a long enough passphrase";

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

async fn as_role<'a>(app: &'a TestApp, admin_token: &str, name: &str, role: &str) -> Api<'a> {
    app.create_user(admin_token, name, STRONG, role).await;
    Api {
        app,
        token: app.token(name, STRONG).await,
    }
}

async fn replica(api: &Api<'_>, name: &str) -> Value {
    let (status, body) = api.get(&format!("/api/replicas/{name}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn sync(api: &Api<'_>, name: &str) -> Value {
    let (status, job) = api
        .post(&format!("/api/replicas/{name}/sync"), json!({}))
        .await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["kind"], "copy", "{job}");
    api.wait(job["id"].as_str().expect("id")).await
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

async fn audit_actions(api: &Api<'_>, action: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/api/audit?action={action}")).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

fn objects(root: &Path, layer: &str) -> usize {
    walkdir(&root.join(layer))
}

fn walkdir(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let p = e.expect("entry").path();
            if p.is_dir() { walkdir(&p) } else { 1 }
        })
        .sum()
}

/// Admins manage replicas, operators start copies, viewers read them; every change and
/// every copy is audited; a copy is a job with progress and a result; the replica then
/// holds the repository's snapshots, and `lag` counts what it lacks.
async fn replicas_obey_roles_copy_and_report_lag(app: &TestApp) {
    let api = admin(app).await;
    let viewer = as_role(app, &api.token, "viewer1", "viewer").await;
    let operator = as_role(app, &api.token, "operator1", "operator").await;
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(src.path().join("a.bin"), noise(3_000_000, 1)).expect("write");
    let source = api.create_source("docs", src.path()).await;
    let first = api.backup(source).await;

    let dirs = tempfile::tempdir().expect("tmp");
    let nas = dirs.path().join("nas");
    let body = json!({"name": "nas", "root": nas.to_str().expect("utf8"), "max_lag_snapshots": 0});
    for who in [&viewer, &operator] {
        let (status, err) = who.post("/api/replicas", body.clone()).await;
        assert_eq!(status, 403, "{err}");
        assert_eq!(err["error"]["code"], "forbidden");
    }
    let (status, created) = api.post("/api/replicas", body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["root"], nas.to_str().expect("utf8"));
    assert_eq!(created["append_only"], false);
    assert_eq!(created["lag_snapshots"], 1, "{created}");
    assert!(created["lagging"].is_string(), "{created}");
    let (status, err) = api.post("/api/replicas", body).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "name_taken");
    let storage = app.settings.storage_root();
    let (status, err) = api
        .post(
            "/api/replicas",
            json!({"name": "inside", "root": storage.join("copy").to_str().expect("utf8")}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_path");
    assert!(
        !err["error"]["message"]
            .as_str()
            .expect("message")
            .contains(storage.to_str().expect("utf8")),
        "{err}"
    );

    // An S3 replica: the bucket and a credentials file on the server, checked; never a key.
    let (status, err) = api
        .post(
            "/api/replicas",
            json!({"name": "s3a", "backend": "s3", "credentials_file": "/etc/coffer/s3"}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_location");
    let (status, err) = api
        .post(
            "/api/replicas",
            json!({"name": "s3a", "backend": "s3", "bucket": "Not_A_Bucket", "credentials_file": "/etc/coffer/s3"}),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_location");
    let (status, err) = api
        .post(
            "/api/replicas",
            json!({"name": "s3a", "backend": "s3", "bucket": "b", "credentials_file": "relative"}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, s3) = api
        .post(
            "/api/replicas",
            json!({"name": "s3a", "backend": "s3", "bucket": "coffer-copy", "region": "garage",
                   "endpoint": "http://127.0.0.1:9", "prefix": "site-a", "credentials_file": "/etc/coffer/s3"}),
        )
        .await;
    assert_eq!(status, 201, "{s3}");
    assert_eq!(s3["backend"], "s3");
    assert_eq!(s3["bucket"], "coffer-copy");
    assert_eq!(s3["path_style"], true);
    assert_eq!(s3["credentials_file"], "/etc/coffer/s3");
    assert!(s3.get("root").is_none(), "{s3}");
    let (status, s3_seen) = viewer.get("/api/replicas/s3a").await;
    assert_eq!(status, 200, "{s3_seen}");
    assert!(
        s3_seen.get("bucket").is_none() && s3_seen.get("credentials_file").is_none(),
        "{s3_seen}"
    );
    let (status, _) = api.send("DELETE", "/api/replicas/s3a", None).await;
    assert_eq!(status, 204);

    // A viewer sees the replica but not where it is.
    let (status, list) = viewer.get("/api/replicas").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["name"], "nas");
    assert!(list[0].get("root").is_none(), "{list}");
    let (status, err) = viewer.post("/api/replicas/nas/sync", json!({})).await;
    assert_eq!(status, 403, "{err}");

    // The operator starts the copy.
    let done = sync(&operator, "nas").await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["params"]["replica"], "nas");
    let result = &done["result"];
    assert_eq!(result["replica"], "nas");
    assert_eq!(result["snapshots"], 1);
    assert_eq!(result["replica_snapshots"], 1);
    assert!(
        result["objects_copied"].as_u64().expect("copied") >= 4,
        "{result}"
    );
    assert_eq!(
        done["progress"]["files_done"], done["progress"]["files_total"],
        "{done}"
    );
    assert_eq!(objects(&nas, "snapshots"), 1);
    assert!(nas.join("config").is_file() && nas.join("keys/data").is_file());
    let after = replica(&api, "nas").await;
    assert!(after["last_success_at"].is_string(), "{after}");
    assert_eq!(after["lag_snapshots"], 0, "{after}");
    assert!(after.get("lagging").is_none(), "{after}");
    assert!(active_alerts(&api, "replica_lagging").await.is_empty());

    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("coffer_replica_lag_snapshots{replica=\"nas\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_replica_last_success_timestamp_seconds{replica=\"nas\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_replica_lagging{replica=\"nas\"} 0"),
        "{metrics}"
    );

    // A second copy sends nothing new.
    let again = sync(&api, "nas").await;
    assert_eq!(again["result"]["objects_copied"], 0, "{again}");

    // A new snapshot is lag until the next copy.
    std::fs::write(src.path().join("b.bin"), noise(1_000_000, 2)).expect("write");
    let second = api.backup(source).await;
    assert_ne!(first, second);
    let behind = replica(&viewer, "nas").await;
    assert_eq!(behind["lag_snapshots"], 1, "{behind}");
    assert!(behind["lag_oldest_at"].is_string(), "{behind}");
    assert!(
        behind["lagging"]
            .as_str()
            .expect("lagging")
            .contains("1 snapshots"),
        "{behind}"
    );
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("coffer_replica_lag_snapshots{replica=\"nas\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_replica_lagging{replica=\"nas\"} 1"),
        "{metrics}"
    );

    // Each copy judges every replica's lag: a second replica's copy raises the alert for
    // `nas`, and the copy into `nas` clears it.
    let (status, body) = api
        .post(
            "/api/replicas",
            json!({"name": "usb", "root": dirs.path().join("usb").to_str().expect("utf8"), "append_only": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(sync(&api, "usb").await["state"], "succeeded");
    let lagging = active_alerts(&api, "replica_lagging").await;
    assert_eq!(lagging.len(), 1, "{lagging:?}");
    assert!(
        lagging[0]["message"]
            .as_str()
            .expect("message")
            .contains("`nas`"),
        "{lagging:?}"
    );
    assert_eq!(sync(&api, "nas").await["state"], "succeeded");
    assert!(active_alerts(&api, "replica_lagging").await.is_empty());
    assert_eq!(objects(&nas, "snapshots"), 2);

    // Changes and removal: admin only, audited.
    let (status, err) = operator
        .send(
            "PATCH",
            "/api/replicas/nas",
            Some(json!({"append_only": true})),
        )
        .await;
    assert_eq!(status, 403, "{err}");
    let (status, changed) = api
        .send(
            "PATCH",
            "/api/replicas/nas",
            Some(json!({"append_only": true, "schedule": "0 2 * * *"})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["append_only"], true);
    assert_eq!(changed["schedule"], "0 2 * * *");
    let (status, err) = api
        .send(
            "PATCH",
            "/api/replicas/nas",
            Some(json!({"schedule": "every day"})),
        )
        .await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid_schedule");
    let (status, _) = operator.send("DELETE", "/api/replicas/usb", None).await;
    assert_eq!(status, 403);
    let (status, _) = api.send("DELETE", "/api/replicas/usb", None).await;
    assert_eq!(status, 204);
    let (status, _) = api.get("/api/replicas/usb").await;
    assert_eq!(status, 404);
    assert!(
        dirs.path().join("usb/config").is_file(),
        "what it holds stays"
    );

    let created = audit_actions(&api, "replica_create").await;
    assert_eq!(created.len(), 3, "{created:?}");
    assert_eq!(audit_actions(&api, "replica_update").await.len(), 1);
    assert_eq!(audit_actions(&api, "replica_delete").await.len(), 2);
    let copies = audit_actions(&api, "replica_copy").await;
    assert_eq!(copies.len(), 4, "{copies:?}");
    assert!(
        copies.iter().any(|c| c["username"] == "operator1"),
        "{copies:?}"
    );
}
on_both!(replicas_obey_roles_copy_and_report_lag);

/// A copy that cannot write fails as a job with `replica_unavailable`, records why on the
/// replica (naming no server path), raises `replica_failed`, and is audited as failed; a
/// directory that holds something else is never written to.
async fn a_failed_copy_is_recorded_and_alerted(app: &TestApp) {
    let api = admin(app).await;
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(src.path().join("a"), b"hello").expect("write");
    let source = api.create_source("docs", src.path()).await;
    api.backup(source).await;

    let dirs = tempfile::tempdir().expect("tmp");
    // A file where the directory should be.
    let blocked = dirs.path().join("blocked");
    std::fs::write(&blocked, b"not a directory").expect("write");
    let (status, body) = api
        .post(
            "/api/replicas",
            json!({"name": "broken", "root": blocked.to_str().expect("utf8")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let done = sync(&api, "broken").await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "replica_unavailable", "{done}");
    let shown = replica(&api, "broken").await;
    let error = shown["last_error"].as_str().expect("last_error");
    assert!(!error.contains(blocked.to_str().expect("utf8")), "{error}");
    assert!(shown["last_failure_at"].is_string());
    assert!(shown.get("last_success_at").is_none(), "{shown}");
    let failed = active_alerts(&api, "replica_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["message"]
            .as_str()
            .expect("m")
            .contains("`broken`")
    );
    let audit = audit_actions(&api, "replica_copy").await;
    assert_eq!(audit[0]["success"], false, "{audit:?}");

    // Somebody else's directory: refused, untouched.
    let theirs = dirs.path().join("theirs");
    std::fs::create_dir_all(&theirs).expect("mkdir");
    std::fs::write(theirs.join("notes.txt"), b"mine").expect("write");
    let (status, body) = api
        .post(
            "/api/replicas",
            json!({"name": "theirs", "root": theirs.to_str().expect("utf8")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let done = sync(&api, "theirs").await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "invalid", "{done}");
    let left: Vec<_> = std::fs::read_dir(&theirs)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("notes.txt")]);
}
on_both!(a_failed_copy_is_recorded_and_alerted);

fn configured_replica(settings: &mut coffer_config::Settings) {
    let root = settings
        .data_dir
        .parent()
        .expect("data dir has a parent")
        .join("cfg-replica");
    settings.replicas = vec![coffer_config::ReplicaSettings {
        name: "cfg".into(),
        storage: coffer_config::StorageSettings {
            backend: coffer_config::StorageBackend::Fs,
            root: Some(root),
            ..coffer_config::StorageSettings::default()
        },
        append_only: true,
        schedule: Some("0 2 * * *".into()),
        max_lag_snapshots: None,
        max_lag_hours: Some(24),
    }];
}

/// A `[[replicas]]` entry of the configuration is listed and copied to like any other,
/// and cannot be changed or removed over the API.
async fn configured_replicas_are_read_only(app: &TestApp) {
    let api = admin(app).await;
    let (status, list) = api.get("/api/replicas").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["name"], "cfg", "{list}");
    assert_eq!(list[0]["from_config"], true);
    assert_eq!(list[0]["append_only"], true);
    assert_eq!(list[0]["schedule"], "0 2 * * *");
    assert_eq!(list[0]["max_lag_hours"], 24);
    let (status, err) = api
        .send(
            "PATCH",
            "/api/replicas/cfg",
            Some(json!({"append_only": false})),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "replica_from_config");
    let (status, err) = api.send("DELETE", "/api/replicas/cfg", None).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "replica_from_config");
    let (status, err) = api
        .post(
            "/api/replicas",
            json!({"name": "cfg", "root": "/tmp/elsewhere-cfg"}),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(src.path().join("a"), b"hello").expect("write");
    let source = api.create_source("docs", src.path()).await;
    api.backup(source).await;
    assert_eq!(sync(&api, "cfg").await["state"], "succeeded");
    let root = app.data_dir.parent().expect("parent").join("cfg-replica");
    assert_eq!(objects(&root, "snapshots"), 1);
}
on_both!(configured_replicas_are_read_only, configured_replica);
