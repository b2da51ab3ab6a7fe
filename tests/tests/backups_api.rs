//! Backups over HTTP only: sources, jobs with progress and cancel, restore into the
//! allowed roots, browse, download — on SQLite and on PostgreSQL.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_tests::{Api, Backend, TestApp, admin, on_both, spawn_app, spawn_app_with};
use serde_json::json;

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

/// A small tree with a nested directory, an empty one, a file spanning several chunks
/// and a symlink.
fn source_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/sub")).expect("mkdir");
    std::fs::create_dir_all(root.join("empty")).expect("mkdir");
    for i in 0..20 {
        std::fs::write(
            root.join(format!("docs/note{i}.txt")),
            format!("note {i}\n").repeat(1 + i),
        )
        .expect("write");
    }
    std::fs::write(root.join("docs/sub/deep.txt"), b"deep\n").expect("write");
    std::fs::write(root.join("big.bin"), noise(5 << 20, 7)).expect("write");
    std::os::unix::fs::symlink("docs/sub", root.join("link")).expect("symlink");
}

/// Every entry under `root`, relative, with its kind and content (files) or target.
fn tree_listing(root: &Path) -> Vec<(PathBuf, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let rel = path.strip_prefix(root).expect("prefix").to_path_buf();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("link");
                out.push((
                    rel,
                    "link".into(),
                    target.into_os_string().into_encoded_bytes(),
                ));
            } else if meta.is_dir() {
                out.push((rel, "dir".into(), Vec::new()));
                stack.push(path);
            } else {
                out.push((rel, "file".into(), std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn untar(bytes: &[u8]) -> Vec<(PathBuf, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let path = entry
            .path()
            .expect("path")
            .components()
            .collect::<PathBuf>();
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            out.push((path, "dir".into(), Vec::new()));
        } else if kind.is_symlink() {
            let target = entry
                .link_name()
                .expect("link")
                .expect("target")
                .into_owned();
            out.push((
                path,
                "link".into(),
                target.into_os_string().into_encoded_bytes(),
            ));
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("data");
            out.push((path, "file".into(), data));
        }
    }
    out.sort();
    out
}

fn unzip(bytes: &[u8]) -> Vec<(PathBuf, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).expect("entry");
        let name = file.name().expect("name").trim_end_matches('/').to_owned();
        let is_link = file.unix_mode().is_some_and(|m| m & 0o170_000 == 0o120_000);
        let mut data = Vec::new();
        file.read_to_end(&mut data).expect("data");
        let kind = if file.is_dir() {
            data.clear();
            "dir"
        } else if is_link {
            "link"
        } else {
            "file"
        };
        out.push((PathBuf::from(name), kind.to_owned(), data));
    }
    out.sort();
    out
}

/// `listing` with every path put under `prefix`, plus the entry for `prefix` itself.
fn under(
    prefix: &str,
    listing: Vec<(PathBuf, String, Vec<u8>)>,
) -> Vec<(PathBuf, String, Vec<u8>)> {
    let mut out: Vec<_> = listing
        .into_iter()
        .map(|(p, k, d)| (Path::new(prefix).join(p), k, d))
        .collect();
    out.push((PathBuf::from(prefix), "dir".into(), Vec::new()));
    out.sort();
    out
}

on_both!(a_source_is_backed_up_browsed_downloaded_and_restored_over_http);
async fn a_source_is_backed_up_browsed_downloaded_and_restored_over_http(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    let source_id = api.create_source("projects", &src).await;

    // Back up, follow the job to its end.
    let (status, job) = api.post("/api/backup", json!({"source": "projects"})).await;
    assert_eq!(status, 202, "{job}");
    assert!(["queued", "running"].contains(&job["state"].as_str().expect("state")));
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["kind"], "backup");
    assert_eq!(done["source_id"], source_id);
    let progress = &done["progress"];
    assert_eq!(progress["totals_final"], true, "{done}");
    assert_eq!(progress["files_done"], progress["files_total"], "{done}");
    assert_eq!(progress["bytes_done"], progress["bytes_total"], "{done}");
    let expected_bytes: u64 = tree_listing(&src)
        .iter()
        .filter(|(_, k, _)| k == "file")
        .map(|(_, _, d)| d.len() as u64)
        .sum();
    assert_eq!(progress["bytes_total"], expected_bytes);
    let snap = done["result"]["snapshot_id"]
        .as_str()
        .expect("snapshot")
        .to_owned();
    assert_eq!(done["snapshot_id"], snap.as_str());
    assert!(done["finished_at"].is_string() && done["started_at"].is_string());

    // The catalog.
    let (status, page) = api
        .get(&format!("/api/backups?source_id={source_id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["id"], snap.as_str());
    let (status, one) = api.get(&format!("/api/backups/{}", &snap[..12])).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], snap.as_str());
    assert_eq!(one["status"], "ok");
    assert_eq!(one["size"], expected_bytes);
    assert_eq!(one["file_count"], 22);
    assert_eq!(one["encrypted"], true);
    let (_, none) = api.get("/api/backups?status=partial").await;
    assert_eq!(none["total"], 0);
    // A status no snapshot can have is a filter that matches nothing, not an error.
    let (status, none) = api.get("/api/backups?status=failed").await;
    assert_eq!(status, 200, "{none}");
    assert_eq!(
        (&none["total"], &none["items"]),
        (&0.into(), &serde_json::json!([]))
    );

    // Browse the root and a nested directory, with paging.
    let (status, root) = api.get(&format!("/api/backups/{snap}/tree")).await;
    assert_eq!(status, 200, "{root}");
    let names: Vec<&str> = root["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["big.bin", "docs", "empty", "link"]);
    assert_eq!(root["items"][0]["size"], 5 << 20);
    assert_eq!(root["items"][0]["links"], 1);
    assert_eq!(root["items"][0]["xattrs"], json!([]));
    assert_eq!(root["items"][3]["type"], "symlink");
    let (status, docs) = api
        .get(&format!(
            "/api/backups/{snap}/tree?path=docs&limit=5&offset=20"
        ))
        .await;
    assert_eq!(status, 200, "{docs}");
    assert_eq!(docs["total"], 21);
    assert_eq!(docs["items"].as_array().expect("items").len(), 1);
    assert_eq!(docs["items"][0]["name"], "sub");
    let (status, _) = api
        .get(&format!("/api/backups/{snap}/tree?path=nope"))
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .get(&format!("/api/backups/{snap}/tree?path=big.bin"))
        .await;
    assert_eq!(status, 422);

    // Download one file, one folder (tar and zip) and everything.
    let (status, disposition, body) = api
        .bytes(&format!(
            "/api/backups/{snap}/download?path=docs/sub/deep.txt"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(
        disposition.starts_with("attachment; filename=\"projects-"),
        "{disposition}"
    );
    assert!(disposition.ends_with("-deep.txt.tar\""), "{disposition}");
    assert_eq!(
        untar(&body),
        [(
            PathBuf::from("deep.txt"),
            "file".to_owned(),
            b"deep\n".to_vec()
        )]
    );
    let docs_listing = under("docs", tree_listing(&src.join("docs")));
    let (status, _, body) = api
        .bytes(&format!(
            "/api/backups/{snap}/download?path=docs&format=tar"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(untar(&body), docs_listing);
    let (status, disposition, body) = api
        .bytes(&format!(
            "/api/backups/{snap}/download?path=/docs/&format=zip"
        ))
        .await;
    assert_eq!(status, 200);
    assert!(disposition.ends_with("-docs.zip\""), "{disposition}");
    assert_eq!(unzip(&body), docs_listing);
    let (status, _, body) = api
        .bytes(&format!("/api/backups/{snap}/download?format=zip"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(unzip(&body), tree_listing(&src));
    let (status, _, _) = api
        .bytes(&format!("/api/backups/{snap}/download?path=missing"))
        .await;
    assert_eq!(status, 404);

    // Restore everything into the default target, then one folder into a named one.
    let (status, job) = api.post(&format!("/api/restore/{snap}"), json!({})).await;
    assert_eq!(status, 202, "{job}");
    let target = app.data_dir.join("restored").join(&snap);
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let resolved = std::fs::canonicalize(&target).expect("restored");
    assert_eq!(done["result"]["target"], resolved.to_str().expect("utf8"));
    assert_eq!(done["result"]["files"], 22);
    assert_eq!(done["result"]["hardlinks"], 0);
    assert_eq!(done["result"]["warnings"], json!([]), "{done}");
    assert_eq!(done["progress"]["bytes_total"], expected_bytes);
    assert_eq!(tree_listing(&target), tree_listing(&src));
    let (status, job) = api
        .post(
            &format!("/api/restore/{snap}"),
            json!({"path": "docs/sub", "target": "just-sub"}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let written = tree_listing(&app.data_dir.join("restored/just-sub"));
    assert!(
        written
            .iter()
            .any(|(p, _, d)| p.ends_with("deep.txt") && d == b"deep\n"),
        "{written:?}"
    );

    // Verify, reading every chunk; the result lands on the snapshot.
    let (status, job) = api
        .post(
            &format!("/api/backups/{snap}/verify?read_data=true"),
            json!(null),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["result"]["ok"], true);
    assert!(done["result"]["bytes_read"].as_u64().expect("read") >= expected_bytes);
    let (_, one) = api.get(&format!("/api/backups/{snap}")).await;
    assert_eq!(one["verify_result"], "ok (data read)");

    // Jobs are listed newest first, filterable.
    let (status, jobs) = api.get("/api/jobs?kind=restore").await;
    assert_eq!(status, 200);
    assert_eq!(jobs["total"], 2, "{jobs}");
    let (_, all) = api.get("/api/jobs?limit=1").await;
    assert_eq!(all["total"], 4);
    assert_eq!(all["items"][0]["kind"], "verify");

    // Protect, refuse deletion, unprotect, delete; the source outlives it and goes last.
    let (status, p) = api
        .post(&format!("/api/backups/{snap}/protect"), json!(null))
        .await;
    assert_eq!((status, &p["protected"]), (200, &json!(true)));
    let (status, e) = api
        .send("DELETE", &format!("/api/backups/{snap}"), None)
        .await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "protected");
    api.post(&format!("/api/backups/{snap}/unprotect"), json!(null))
        .await;
    let (status, _) = api
        .send("DELETE", &format!("/api/backups/{snap}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/api/backups/{snap}")).await;
    assert_eq!(status, 404);
    let (status, _) = api
        .send("DELETE", &format!("/api/sources/{source_id}"), None)
        .await;
    assert_eq!(status, 204);

    // Every step is in the audit trail.
    let (_, audit) = api.get("/api/audit?limit=100").await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    for action in [
        "source_create",
        "backup_create",
        "backup_browse",
        "backup_download",
        "restore",
        "verify",
        "backup_protect",
        "backup_unprotect",
        "backup_delete",
        "source_delete",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
}

on_both!(sources_are_checked_and_managed);
async fn sources_are_checked_and_managed(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = std::fs::canonicalize(work.path()).expect("canonical");
    std::fs::create_dir(dir.join("a")).expect("mkdir");
    std::fs::write(dir.join("file"), b"x").expect("write");
    std::os::unix::fs::symlink(dir.join("a"), dir.join("via-link")).expect("symlink");

    let data = std::fs::canonicalize(&app.data_dir).expect("data dir");
    // A relative path breaks the schema's `pattern` (`^/`): refused as malformed.
    let (status, e) = api
        .post(
            "/api/sources",
            json!({"name": "x", "path": "relative/path"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    for (body, code) in [
        // Coffer's own directories, and any directory holding them, are refused: the
        // repository would back itself up, growing with every run.
        (json!({"name": "x", "path": data}), "invalid_path"),
        (
            json!({"name": "x", "path": data.join("restored")}),
            "invalid_path",
        ),
        (
            json!({"name": "x", "path": data.parent().expect("parent")}),
            "invalid_path",
        ),
        (
            json!({"name": "x", "path": dir.join("missing")}),
            "invalid_path",
        ),
        (
            json!({"name": "x", "path": dir.join("file")}),
            "invalid_path",
        ),
        (json!({"name": "  ", "path": dir.join("a")}), "invalid_name"),
        (
            json!({"name": "x", "path": dir.join("a"), "schedule": "every day"}),
            "invalid_schedule",
        ),
    ] {
        let (status, e) = api.post("/api/sources", body.clone()).await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}: {e}"
        );
    }
    let (status, s) = api
        .post(
            "/api/sources",
            json!({"name": "alpha", "path": dir.join("via-link"), "schedule": "0 3 * * *",
                   "retention": {"max_backups": 3, "max_age_days": 7}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(
        s["path"],
        dir.join("a").to_str().expect("utf8"),
        "symlinks resolved"
    );
    assert_eq!(s["retention"]["max_backups"], 3);
    let id = s["id"].as_i64().expect("id");
    let (status, e) = api
        .post(
            "/api/sources",
            json!({"name": "alpha", "path": dir.join("a")}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("name_taken"))
    );

    // PATCH: absent fields stay, null clears.
    let (status, s) = api
        .send(
            "PATCH",
            &format!("/api/sources/{id}"),
            Some(json!({"name": "beta", "schedule": null})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["name"], "beta");
    assert!(s["schedule"].is_null());
    assert_eq!(s["retention"]["max_age_days"], 7);
    let (_, list) = api.get("/api/sources").await;
    assert_eq!(list.as_array().expect("list").len(), 1);

    // A viewer sees sources but cannot change them.
    let viewer = app
        .create_user(&api.token, "watcher", "correct horse battery", "viewer")
        .await;
    assert!(viewer > 0);
    let v = Api {
        app,
        token: app.token("watcher", "correct horse battery").await,
    };
    assert_eq!(v.get(&format!("/api/sources/{id}")).await.0, 200);
    assert_eq!(
        v.send("DELETE", &format!("/api/sources/{id}"), None)
            .await
            .0,
        403
    );
    assert_eq!(v.post("/api/backup", json!({"source_id": id})).await.0, 403);

    let (status, _) = api
        .send("DELETE", &format!("/api/sources/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.get(&format!("/api/sources/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_targets_outside_the_allowed_roots_are_refused() {
    let app = spawn_app(Backend::Sqlite, "restore_roots")
        .await
        .expect("sqlite");
    let api = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let base = std::fs::canonicalize(work.path()).expect("canonical");
    let src = base.join("src");
    source_tree(&src);
    let id = api.create_source("src", &src).await;
    let snap = api.backup(id).await;

    let outside = base.join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let root = app.data_dir.join("restored");
    std::os::unix::fs::symlink(&outside, root.join("escape")).expect("symlink");
    std::fs::create_dir(root.join("busy")).expect("mkdir");
    std::fs::write(root.join("busy/file"), b"x").expect("write");

    for (target, code) in [
        (json!(outside.join("x")), "restore_target_not_allowed"),
        (json!("/etc"), "restore_target_not_allowed"),
        (json!("escape"), "restore_target_not_allowed"),
        (json!("escape/deeper"), "restore_target_not_allowed"),
        (json!("../outside"), "restore_target_not_allowed"),
        (
            json!(root.join("new/../../x")),
            "restore_target_not_allowed",
        ),
        (json!("busy"), "restore_target_not_empty"),
    ] {
        let (status, e) = api
            .post(&format!("/api/restore/{snap}"), json!({"target": target}))
            .await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (422, Some(code)),
            "{target}: {e}"
        );
    }
    let (status, e) = api
        .post(&format!("/api/restore/{snap}"), json!({"path": "nope"}))
        .await;
    assert_eq!(status, 404, "{e}");
    // Nothing was written anywhere, and no job was started.
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    assert!(!base.join("x").exists());
    let (_, jobs) = api.get("/api/jobs?kind=restore").await;
    assert_eq!(jobs["total"], 0);
    // A viewer may not restore at all.
    app.create_user(&api.token, "looker", "correct horse battery", "viewer")
        .await;
    let v = Api {
        app: &app,
        token: app.token("looker", "correct horse battery").await,
    };
    assert_eq!(
        v.post(&format!("/api/restore/{snap}"), json!({})).await.0,
        403
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_per_source_and_a_cancelled_backup_leaves_nothing() {
    let app = spawn_app_with(Backend::Sqlite, "cancel", |s| s.jobs.max_running = 1)
        .await
        .expect("sqlite");
    let api = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let big = work.path().join("big");
    std::fs::create_dir(&big).expect("mkdir");
    for i in 0..6 {
        std::fs::write(big.join(format!("part{i}.bin")), noise(24 << 20, i + 1)).expect("write");
    }
    let small = work.path().join("small");
    source_tree(&small);
    let big_id = api.create_source("big", &big).await;
    let small_id = api.create_source("small", &small).await;

    let (status, first) = api.post("/api/backup", json!({"source_id": big_id})).await;
    assert_eq!(status, 202, "{first}");
    let first_id = first["id"].as_str().expect("id").to_owned();
    // A second backup of the same source is refused, naming the job doing it.
    let (status, e) = api.post("/api/backup", json!({"source": "big"})).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "job_running");
    assert_eq!(e["error"]["job_id"], first_id.as_str());
    // Only one job runs at a time here: the small backup waits in the queue...
    let (status, queued) = api
        .post("/api/backup", json!({"source_id": small_id}))
        .await;
    assert_eq!(status, 202);
    assert_eq!(queued["state"], "queued", "{queued}");
    // ... and cancelling it there ends it at once.
    let queued_id = queued["id"].as_str().expect("id");
    let (status, c) = api
        .post(&format!("/api/jobs/{queued_id}/cancel"), json!(null))
        .await;
    assert_eq!(status, 202, "{c}");
    assert_eq!(c["state"], "cancelled");

    // Wait until the big backup is really moving, then cancel it.
    let mut moving = false;
    for _ in 0..1500 {
        let (_, job) = api.get(&format!("/api/jobs/{first_id}")).await;
        if job["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(job["state"], "running", "{job}");
            assert!(job["started_at"].is_string());
            moving = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moving, "the big backup never reported progress");
    let (status, c) = api
        .post(&format!("/api/jobs/{first_id}/cancel"), json!(null))
        .await;
    assert_eq!(status, 202, "{c}");
    let done = api.wait(&first_id).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert!(done["result"].is_null());
    let (status, e) = api
        .post(&format!("/api/jobs/{first_id}/cancel"), json!(null))
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("job_finished"))
    );
    // No snapshot is visible, in the catalog or in storage.
    let (_, page) = api.get("/api/backups").await;
    assert_eq!(page["total"], 0, "{page}");
    let snapshots =
        std::fs::read_dir(app.data_dir.join("repository/snapshots")).map_or(0, Iterator::count);
    assert_eq!(snapshots, 0);

    // The next backup of the same source works.
    let snap = api.backup(big_id).await;
    let (_, page) = api.get("/api/backups").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], snap.as_str());
    let (_, cancelled) = api.get("/api/jobs?state=cancelled").await;
    assert_eq!(cancelled["total"], 2);

    // Two restores may not write into the same place: while one is queued or running,
    // a target equal to it, inside it or around it is refused.
    let (status, verify) = api
        .post(
            &format!("/api/backups/{snap}/verify?read_data=true"),
            json!(null),
        )
        .await;
    assert_eq!(status, 202, "{verify}");
    let (status, first) = api
        .post(&format!("/api/restore/{snap}"), json!({"target": "x"}))
        .await;
    assert_eq!(status, 202, "{first}");
    for target in ["x", "x/inner"] {
        let (status, e) = api
            .post(&format!("/api/restore/{snap}"), json!({"target": target}))
            .await;
        assert_eq!(status, 409, "{target}: {e}");
        assert_eq!(e["error"]["job_id"], first["id"]);
    }
    let (status, other) = api
        .post(&format!("/api/restore/{snap}"), json!({"target": "y"}))
        .await;
    assert_eq!(status, 202);
    // A target checked when asked for is checked again when the job starts: a link
    // planted in between (by an earlier restore, or a local user) cannot lead it out.
    let (status, planted) = api
        .post(
            &format!("/api/restore/{snap}"),
            json!({"target": "a/escape/new"}),
        )
        .await;
    assert_eq!(status, 202, "{planted}");
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let root = app.data_dir.join("restored");
    std::fs::create_dir(root.join("a")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, root.join("a/escape")).expect("symlink");
    for job in [&verify, &first] {
        let id = job["id"].as_str().expect("id");
        api.post(&format!("/api/jobs/{id}/cancel"), json!(null))
            .await;
        api.wait(id).await;
    }
    let done = api.wait(other["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let done = api.wait(planted["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(
        done["error"]["code"], "restore_target_not_allowed",
        "{done}"
    );
    assert_eq!(std::fs::read_dir(&outside).expect("outside").count(), 0);
    app.stop().await;
}

/// Every snapshot counts on its own (no burst window): the backups of a test follow each
/// other within seconds, and what such a test checks is the counting itself.
fn each_snapshot_counts(settings: &mut coffer_config::Settings) {
    settings.retention.burst_minutes = 0;
}

/// A source at `path` keeping the newest `max_backups` (no age limit); its id.
async fn source_keeping(api: &Api<'_>, name: &str, path: &Path, max_backups: u32) -> i64 {
    let (status, s) = api
        .post(
            "/api/sources",
            json!({"name": name, "path": path, "retention": {"max_backups": max_backups, "max_age_days": 0}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    s["id"].as_i64().expect("id")
}

on_both!(
    retention_runs_after_each_backup_and_can_be_previewed_and_applied,
    each_snapshot_counts
);
async fn retention_runs_after_each_backup_and_can_be_previewed_and_applied(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("docs");
    source_tree(&src);
    let (status, s) = api
        .post(
            "/api/sources",
            json!({"name": "docs", "path": src, "retention": {"max_backups": 2, "max_age_days": 0}}),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    let id = s["id"].as_i64().expect("id");
    assert_eq!(s["retention"]["keep_daily"], 0, "absent rules read as off");

    let mut snaps = Vec::new();
    for i in 0..3 {
        std::fs::write(src.join("changing.txt"), format!("version {i}")).expect("write");
        snaps.push(api.backup(id).await);
    }
    // Applied after each backup: the oldest of the three is gone.
    let (_, page) = api.get(&format!("/api/backups?source_id={id}")).await;
    assert_eq!(page["total"], 2, "{page}");
    let ids: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [snaps[2].as_str(), snaps[1].as_str()]);
    assert_eq!(api.get(&format!("/api/backups/{}", snaps[0])).await.0, 404);

    // Preview with tighter rules: nothing changes until applied.
    let (status, _) = api
        .send(
            "PATCH",
            &format!("/api/sources/{id}"),
            Some(json!({"retention": {"max_backups": 1, "max_age_days": 0}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, preview) = api.get("/api/retention/preview?source=docs").await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["applied"], false);
    assert_eq!(
        (preview["kept"].as_u64(), preview["removed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(preview["items"][0]["id"], snaps[2].as_str());
    assert_eq!(preview["items"][0]["keep"], true);
    assert_eq!(preview["items"][1]["keep"], false);
    assert_eq!(preview["items"][1]["reasons"], json!(["no rule keeps it"]));
    let (_, page) = api.get(&format!("/api/backups?source_id={id}")).await;
    assert_eq!(page["total"], 2);

    // A protected snapshot survives; a viewer may preview but not apply.
    api.post(&format!("/api/backups/{}/protect", snaps[1]), json!(null))
        .await;
    app.create_user(&api.token, "peek", "correct horse battery", "viewer")
        .await;
    let v = Api {
        app,
        token: app.token("peek", "correct horse battery").await,
    };
    assert_eq!(
        v.get(&format!("/api/retention/preview?source={id}"))
            .await
            .0,
        200
    );
    assert_eq!(
        v.post("/api/retention/apply?source=docs", json!(null))
            .await
            .0,
        403
    );
    let (status, applied) = api
        .post("/api/retention/apply?source=docs", json!(null))
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["removed"], 0);
    assert_eq!(applied["items"][1]["reasons"], json!(["protected"]));
    api.post(&format!("/api/backups/{}/unprotect", snaps[1]), json!(null))
        .await;
    let (_, applied) = api
        .post("/api/retention/apply?source=docs", json!(null))
        .await;
    assert_eq!(
        (applied["applied"].as_bool(), applied["removed"].as_u64()),
        (Some(true), Some(1))
    );
    let (_, page) = api.get(&format!("/api/backups?source_id={id}")).await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], snaps[2].as_str());
    // The removed snapshots are gone from storage too, and each removal is audited.
    let left =
        std::fs::read_dir(app.data_dir.join("repository/snapshots")).map_or(0, Iterator::count);
    assert_eq!(left, 1);
    let (_, audit) = api.get("/api/audit?action=backup_delete").await;
    let details: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["detail"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details.iter().all(|d| d.starts_with("retention of `docs`")),
        "{details:?}"
    );
    // After a backup, retention acts as the system under the configured policy; applied
    // by hand, as the administrator who applied it.
    let users: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["username"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(users, ["admin", "system:retention"], "newest first");
}

on_both!(a_burst_of_backups_by_an_operator_removes_no_history);
/// Ten quick backups by an operator (or ten runs of a script) with `max_backups = 3`:
/// they count as one burst, and retention after them removes nothing.
async fn a_burst_of_backups_by_an_operator_removes_no_history(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("docs");
    source_tree(&src);
    let id = source_keeping(&api, "docs", &src, 3).await;
    app.create_user(&api.token, "op", "correct horse battery", "operator")
        .await;
    let op = Api {
        app,
        token: app.token("op", "correct horse battery").await,
    };
    for i in 0..10 {
        std::fs::write(src.join("changing.txt"), format!("version {i}")).expect("write");
        op.backup(id).await;
    }
    let (_, page) = api.get(&format!("/api/backups?source_id={id}")).await;
    assert_eq!(page["total"], 10, "{page}");
    let (_, audit) = api.get("/api/audit?action=backup_delete").await;
    assert_eq!(audit["items"], json!([]), "{audit}");
}

on_both!(
    an_emptied_source_is_kept_marked_and_keeps_its_history,
    each_snapshot_counts
);
/// A share that is not mounted looks like an empty directory: its backups are kept,
/// marked suspicious with a critical alert, and retention keeps the snapshots before.
async fn an_emptied_source_is_kept_marked_and_keeps_its_history(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("share");
    source_tree(&src);
    let id = source_keeping(&api, "share", &src, 1).await;
    let good = api.backup(id).await;
    // The share "unmounts": the directory is there, and empty.
    for entry in std::fs::read_dir(&src).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path).expect("rm");
        } else {
            std::fs::remove_file(&path).expect("rm");
        }
    }
    let empty1 = api.backup(id).await;
    let empty2 = api.backup(id).await;
    let (_, page) = api.get(&format!("/api/backups?source_id={id}")).await;
    let listed: Vec<(&str, bool)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|b| (b["id"].as_str().expect("id"), b["suspicious"] == true))
        .collect();
    assert_eq!(
        listed,
        [
            (empty2.as_str(), true),
            (empty1.as_str(), true),
            (good.as_str(), false)
        ],
        "{page}"
    );
    let reason = page["items"][0]["suspicious_reason"]
        .as_str()
        .expect("reason");
    assert!(reason.contains("empty"), "{reason}");
    let (_, alerts) = api.get("/api/alerts").await;
    let suspicious: Vec<&serde_json::Value> = alerts["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["kind"] == "backup_suspicious")
        .collect();
    assert_eq!(suspicious.len(), 2, "{alerts}");
    assert_eq!(suspicious[0]["severity"], "critical");
    // A source that shrank by more than half is suspicious too.
    source_tree(&src);
    api.backup(id).await;
    for i in 0..15 {
        std::fs::remove_file(src.join(format!("docs/note{i}.txt"))).expect("rm");
    }
    std::fs::remove_file(src.join("big.bin")).expect("rm");
    api.backup(id).await;
    let (_, page) = api
        .get(&format!("/api/backups?source_id={id}&limit=1"))
        .await;
    assert_eq!(page["items"][0]["suspicious"], true, "{page}");
}

/// Coffer's own secrets cannot be backed up: a source that holds the master key (kept
/// outside the data directory here) is refused, and a backup never reads a key it
/// meets inside a source anyway (a hard link to the session key, here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coffer_secrets_are_never_backed_up() {
    let outside = tempfile::tempdir().expect("tempdir");
    let keys = outside.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let master = keys.join("master.key");
    let key_file = master.clone();
    let app = spawn_app_with(Backend::Sqlite, "coffer_secrets", move |s| {
        s.security.encryption_key_file = Some(key_file);
    })
    .await
    .expect("sqlite");
    let api = admin(&app).await;
    assert!(
        master.is_file(),
        "the key was created outside the data directory"
    );

    // A source that contains the master key: refused.
    let (status, body) = api
        .post(
            "/api/sources",
            json!({"name": "keys", "path": outside.path()}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_path", "{body}");

    // A hard link to the session key inside a source: skipped with a warning.
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("docs");
    source_tree(&src);
    std::fs::hard_link(
        app.data_dir.join("keys/session.key"),
        src.join("innocent.txt"),
    )
    .expect("hard link");
    let id = api.create_source("docs", &src).await;
    let snap = api.backup(id).await;
    let (_, one) = api.get(&format!("/api/backups/{snap}")).await;
    let warnings = one["warnings"].as_array().expect("warnings");
    assert!(
        warnings.iter().any(|w| {
            let w = w.as_str().unwrap_or("");
            w.contains("innocent.txt") && w.contains("Coffer's own")
        }),
        "{one}"
    );
    let (_, root) = api.get(&format!("/api/backups/{snap}/tree")).await;
    assert!(
        !root["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["name"] == "innocent.txt"),
        "{root}"
    );
    app.stop().await;
}

on_both!(a_head_on_a_download_exports_nothing_and_is_not_audited);
async fn a_head_on_a_download_exports_nothing_and_is_not_audited(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    let id = api.create_source("projects", &src).await;
    let snap = api.backup(id).await;

    for query in ["", "?path=docs&format=zip"] {
        let resp = app
            .client
            .head(app.url(&format!("/api/backups/{snap}/download{query}")))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("head");
        assert_eq!(resp.status(), 200, "{query}");
        let disposition = resp
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            disposition.starts_with("attachment; filename=\"projects-"),
            "{disposition}"
        );
        assert!(resp.bytes().await.expect("body").is_empty());
    }
    // A HEAD of what does not exist answers as the GET would.
    let resp = app
        .client
        .head(app.url(&format!("/api/backups/{snap}/download?path=missing")))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("head");
    assert_eq!(resp.status(), 404);
    // Give a stray export time to fail and record itself, then: nothing in the trail.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, audit) = api.get("/api/audit?action=backup_download").await;
    assert_eq!(audit["items"], json!([]), "{audit}");
    // The GET is still audited.
    let (status, _, body) = api
        .bytes(&format!("/api/backups/{snap}/download?path=docs"))
        .await;
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    let (_, audit) = api.get("/api/audit?action=backup_download").await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_no_server_path() {
    let app = spawn_app(Backend::Sqlite, "refusals_name_no_server_path")
        .await
        .expect("sqlite");
    let api = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    source_tree(&src);
    let id = api.create_source("src", &src).await;
    let snap = api.backup(id).await;
    let data_dir = std::fs::canonicalize(&app.data_dir).expect("canonical");
    let root = app.data_dir.join("restored");
    std::fs::create_dir(root.join("busy")).expect("mkdir");
    std::fs::write(root.join("busy/file"), b"x").expect("write");

    let mut refusals = Vec::new();
    for target in [json!("busy"), json!("/etc"), json!("../outside")] {
        let (status, e) = api
            .post(&format!("/api/restore/{snap}"), json!({"target": target}))
            .await;
        assert_eq!(status, 422, "{e}");
        refusals.push(e);
    }
    let (status, e) = api
        .post(
            "/api/sources",
            json!({"name": "own", "path": data_dir.join("restored")}),
        )
        .await;
    assert_eq!(status, 422, "{e}");
    refusals.push(e);
    for e in &refusals {
        let message = e["error"]["message"].as_str().expect("message");
        for server_path in [&data_dir, &app.data_dir] {
            let shown = server_path.to_str().expect("utf8");
            assert!(!message.contains(shown), "{message} names {shown}");
        }
    }
    app.stop().await;
}

on_both!(viewers_see_no_file_names_or_restore_targets);
async fn viewers_see_no_file_names_or_restore_targets(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    // A FIFO is skipped with a warning that names it.
    let status = std::process::Command::new("mkfifo")
        .arg(src.join("secret-plans.fifo"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let id = api.create_source("projects", &src).await;
    let snap = api.backup(id).await;
    let (status, job) = api
        .post(
            &format!("/api/restore/{snap}"),
            json!({"path": "docs/sub", "target": "restored-here"}),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    // The admin sees it all.
    let (_, backup) = api.get(&format!("/api/backups/{snap}")).await;
    assert!(backup.to_string().contains("secret-plans"), "{backup}");
    assert!(done.to_string().contains("restored-here"), "{done}");

    app.create_user(&api.token, "looker", "correct horse battery", "viewer")
        .await;
    let viewer = Api {
        app,
        token: app.token("looker", "correct horse battery").await,
    };
    // The jobs' logs name them too, for the admin.
    let (_, backups) = api.get("/api/jobs?kind=backup&limit=1").await;
    let backup_job = backups["items"][0]["id"].as_str().expect("id").to_owned();
    let (status, backup_log) = api.get(&format!("/api/jobs/{backup_job}/log")).await;
    assert_eq!(status, 200, "{backup_log}");
    assert!(
        backup_log.to_string().contains("secret-plans"),
        "{backup_log}"
    );
    let (_, restore_log) = api
        .get(&format!(
            "/api/jobs/{}/log",
            done["id"].as_str().expect("id")
        ))
        .await;
    assert!(
        restore_log.to_string().contains("restored-here"),
        "{restore_log}"
    );

    let mut seen = Vec::new();
    for path in [
        "/api/jobs".to_owned(),
        format!("/api/jobs/{}", done["id"].as_str().expect("id")),
        format!("/api/jobs/{}/log", done["id"].as_str().expect("id")),
        format!("/api/jobs/{backup_job}/log"),
        "/api/backups".to_owned(),
        format!("/api/backups/{snap}"),
        "/api/dashboard".to_owned(),
    ] {
        let (status, body) = viewer.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        seen.push(body);
    }
    for body in &seen {
        let text = body.to_string();
        for secret in ["secret-plans", "restored-here", "docs/sub"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    // What is left says that something is hidden, and how much.
    let (_, backup) = viewer.get(&format!("/api/backups/{snap}")).await;
    assert_eq!(backup["status"], "partial");
    assert_eq!(backup["warnings"].as_array().map(Vec::len), Some(1));
    let (_, restore) = viewer
        .get(&format!("/api/jobs/{}", done["id"].as_str().expect("id")))
        .await;
    assert_eq!(restore["result"]["files"], done["result"]["files"]);
    let (_, shown_log) = viewer.get(&format!("/api/jobs/{backup_job}/log")).await;
    assert_eq!(
        shown_log["lines"].as_array().map(Vec::len),
        backup_log["lines"].as_array().map(Vec::len),
        "the viewer reads every line, some hidden: {shown_log}"
    );
    assert!(
        shown_log["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|l| l["level"] == "warning"
                && l["message"] == "(hidden: needs the restore permission)"),
        "{shown_log}"
    );
}

on_both!(a_job_s_log_follows_it_and_the_list_filters_by_user_and_period);

async fn a_job_s_log_follows_it_and_the_list_filters_by_user_and_period(app: &TestApp) {
    let api = admin(app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("logged");
    source_tree(&src);
    let id = api.create_source("logged", &src).await;
    let (status, job) = api.post("/api/backup", json!({"source_id": id})).await;
    assert_eq!(status, 202, "{job}");
    let job_id = job["id"].as_str().expect("id").to_owned();

    // Follow it as the dashboard and `coffer jobs log --follow` do: ask for what comes
    // after the last line read until the page says the log is complete.
    let mut lines: Vec<serde_json::Value> = Vec::new();
    let mut after = 0;
    for _ in 0..2400 {
        let (status, page) = api
            .get(&format!("/api/jobs/{job_id}/log?after={after}"))
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["job_id"], job_id.as_str());
        lines.extend(page["lines"].as_array().expect("lines").iter().cloned());
        after = page["next_after"].as_u64().expect("next_after");
        if page["complete"] == true {
            assert_eq!(page["state"], "succeeded", "{page}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| l["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every line once, in order: {lines:#?}"
    );
    let text: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().expect("message"))
        .collect();
    assert!(
        text[0].starts_with("backup of `logged` started (queued by admin at "),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("reading ") && t.contains("logged")),
        "{text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("read ") && t.contains("files")),
        "{text:#?}"
    );
    let last = text.last().expect("a last line");
    assert!(
        last.starts_with("succeeded after ") && last.contains("(ok)"),
        "{text:#?}"
    );
    assert_eq!(*seqs.last().expect("seq"), after);
    // Read from the middle, with a page size.
    let (_, tail) = api
        .get(&format!("/api/jobs/{job_id}/log?after=1&limit=1"))
        .await;
    assert_eq!(tail["lines"][0]["seq"], 2);
    assert_eq!(
        (tail["next_after"].as_u64(), tail["complete"].as_bool()),
        (Some(2), Some(false))
    );
    for bad in ["limit=0", "limit=1001", "after=-1"] {
        let (status, body) = api.get(&format!("/api/jobs/{job_id}/log?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = api
        .get("/api/jobs/0190a5b4-0000-7000-8000-000000000000/log")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );

    // The Tasks page's filters: requester and period.
    let (_, mine) = api.get("/api/jobs?user=admin&kind=backup").await;
    assert_eq!(mine["total"], 1, "{mine}");
    let (_, nobody) = api.get("/api/jobs?user=scheduler").await;
    assert_eq!(nobody["total"], 0, "{nobody}");
    let (_, future) = api.get("/api/jobs?from=2999-01-01T00:00:00Z").await;
    assert_eq!(future["total"], 0, "{future}");
    let (_, past) = api
        .get("/api/jobs?from=2000-01-01T00:00:00Z&to=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(past["total"], 1, "{past}");
    let (status, body) = api
        .get("/api/jobs?from=2999-01-01T00:00:00Z&to=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_period")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_without_room_on_its_target_is_refused_with_507() {
    let app = spawn_app(Backend::Sqlite, "restore_disk_full")
        .await
        .expect("sqlite");
    let api = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    source_tree(&src);
    let id = api.create_source("src", &src).await;
    let snap = api.backup(id).await;
    // A reserve larger than any disk: no volume has room for the restore and it.
    let app = app
        .restart(|s| {
            s.disk.warning_free_mb = 1 << 40;
            s.disk.min_free_mb = 1 << 40;
        })
        .await;
    let api = admin(&app).await;
    for body in [
        json!({}),
        json!({"path": "docs/sub/deep.txt"}),
        json!({"path": "docs"}),
    ] {
        let (status, e) = api
            .post(&format!("/api/restore/{snap}"), body.clone())
            .await;
        assert_eq!(
            (status, e["error"]["code"].as_str()),
            (507, Some("disk_full")),
            "{body}: {e}"
        );
        let message = e["error"]["message"].as_str().expect("message");
        assert!(
            !message.contains(app.data_dir.to_str().expect("utf8")),
            "{message}"
        );
    }
    let (_, jobs) = api.get("/api/jobs?kind=restore").await;
    assert_eq!(jobs["total"], 0, "{jobs}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_take_every_download() {
    let app = spawn_app_with(Backend::Sqlite, "downloads_per_user", |s| {
        s.server.max_downloads_per_user = 1;
    })
    .await
    .expect("sqlite");
    let api = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    // More than the response's buffers hold: a client that does not read holds its slot.
    std::fs::write(src.join("big.bin"), noise(64 << 20, 11)).expect("write");
    let id = api.create_source("src", &src).await;
    let snap = api.backup(id).await;
    let url = app.url(&format!("/api/backups/{snap}/download"));

    let held = app
        .client
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("first download");
    assert_eq!(held.status(), 200);
    let (status, _, body) = api.bytes(&format!("/api/backups/{snap}/download")).await;
    assert_eq!(status, 429);
    let e: serde_json::Value = serde_json::from_slice(&body).expect("error JSON");
    assert_eq!(e["error"]["code"], "too_many_downloads", "{e}");
    // Another user is not held up by the first one's download.
    app.create_user(&api.token, "otto", "correct horse battery", "operator")
        .await;
    let otto = Api {
        app: &app,
        token: app.token("otto", "correct horse battery").await,
    };
    let (status, _, body) = otto
        .bytes(&format!("/api/backups/{snap}/download?format=zip"))
        .await;
    assert_eq!(status, 200);
    assert!(body.len() > 64 << 20);
    // The slot comes back once the first download is gone.
    drop(held);
    let mut status = 0;
    for _ in 0..100 {
        status = api.bytes(&format!("/api/backups/{snap}/download")).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    app.stop().await;
}
