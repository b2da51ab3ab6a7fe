//! What a source backs up, over the API: exclusions on the source's schema, checked
//! (422 `invalid_exclude` naming the pattern), previewed on the directory as it is, and
//! obeyed by the next backup.

use coffer_tests::{Api, TestApp, admin, on_both};
use serde_json::{Value, json};

async fn exclusions_are_checked_previewed_and_obeyed(app: &TestApp) {
    let api = admin(app).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    std::fs::create_dir_all(root.join("build/deep")).expect("mkdir");
    std::fs::create_dir_all(root.join("cache")).expect("mkdir");
    std::fs::write(root.join("build/deep/o"), b"o").expect("write");
    std::fs::write(
        root.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .expect("write");
    std::fs::write(root.join("a.tmp"), b"t").expect("write");
    std::fs::write(root.join("keep.tmp"), b"k").expect("write");
    std::fs::write(root.join("notes.txt"), b"n").expect("write");
    let path = root.to_str().expect("utf8");

    // A pattern that is not valid gitignore syntax: refused, named.
    let (status, e) = api
        .post(
            "/api/sources",
            json!({"name": "s", "path": path, "exclude": ["ok", "[z-a]"]}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("invalid_exclude")),
        "{e}"
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("[z-a]"),
        "{e}"
    );
    let (status, e) = api
        .post(
            "/api/exclude/preview",
            json!({"path": path, "exclude": ["\\"]}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("invalid_exclude")),
        "{e}"
    );
    let (status, e) = api
        .post(
            "/api/sources",
            json!({"name": "s", "path": path, "exclude_larger_than": 0}),
        )
        .await;
    assert_eq!(status, 400, "below the schema's minimum: {e}");

    // The preview walks the directory with the proposed rules.
    let rules = json!({
        "exclude": ["*.tmp", "!keep.tmp", "/build/"],
        "exclude_caches": true,
    });
    let mut body = rules.clone();
    body["path"] = json!(path);
    let (status, p) = api.post("/api/exclude/preview", body).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["skipped"], 3, "{p}");
    assert_eq!(p["complete"], true);
    let sample: Vec<(String, String)> = p["sample"]
        .as_array()
        .expect("sample")
        .iter()
        .map(|x| {
            (
                x["path"].as_str().expect("path").to_owned(),
                x["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sample,
        [
            ("a.tmp".to_owned(), "pattern".to_owned()),
            ("build".to_owned(), "pattern".to_owned()),
            ("cache".to_owned(), "cache".to_owned()),
        ]
    );
    let (status, e) = api
        .post(
            "/api/exclude/preview",
            json!({"path": "/nonexistent/coffer-preview"}),
        )
        .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (422, Some("invalid_path"))
    );

    // Saved on the source, shown on it, obeyed by its backups.
    let mut body = rules.clone();
    body["name"] = json!("s");
    body["path"] = json!(path);
    let (status, s) = api.post("/api/sources", body).await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["exclude"], json!(["*.tmp", "!keep.tmp", "/build/"]));
    assert_eq!(s["exclude_caches"], true);
    assert_eq!(s["one_file_system"], false);
    assert!(s.get("exclude_larger_than").is_none(), "{s}");
    let id = s["id"].as_i64().expect("id");
    let snapshot = api.backup(id).await;
    assert_eq!(names(&api, &snapshot).await, ["keep.tmp", "notes.txt"]);

    // A PATCH changes only what it names.
    let (status, s) = api
        .send(
            "PATCH",
            &format!("/api/sources/{id}"),
            Some(json!({"exclude_caches": false, "exclude_larger_than": 1000})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["exclude"], json!(["*.tmp", "!keep.tmp", "/build/"]));
    assert_eq!(s["exclude_caches"], json!(false));
    assert_eq!(s["exclude_larger_than"], json!(1000));
    let snapshot = api.backup(id).await;
    assert_eq!(
        names(&api, &snapshot).await,
        ["cache", "keep.tmp", "notes.txt"]
    );
    let (status, s) = api
        .send(
            "PATCH",
            &format!("/api/sources/{id}"),
            Some(json!({"exclude": [], "exclude_larger_than": null})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["exclude"], json!([]));
    assert!(s.get("exclude_larger_than").is_none(), "{s}");

    // Leaving nearly everything out is a decision, not a share gone missing: the next
    // snapshot is not marked suspicious (the source changed since the last one).
    let (status, s) = api
        .send(
            "PATCH",
            &format!("/api/sources/{id}"),
            Some(json!({"exclude": ["*"]})),
        )
        .await;
    assert_eq!(status, 200, "{s}");
    let snapshot = api.backup(id).await;
    assert!(names(&api, &snapshot).await.is_empty());
    let (_, page) = api
        .get(&format!("/api/backups?source_id={id}&limit=1"))
        .await;
    assert_eq!(page["items"][0]["suspicious"], false, "{page}");

    // The backup's audit line counts what was left out.
    let (_, audit) = api.get("/api/audit?action=backup_create").await;
    let details: Vec<&str> = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["detail"].as_str())
        .collect();
    assert!(
        details.iter().any(|d| d.contains("2 entries excluded")),
        "{details:?}"
    );
}

async fn names(api: &Api<'_>, snapshot: &str) -> Vec<String> {
    let (status, page) = api.get(&format!("/api/backups/{snapshot}/tree")).await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e: &Value| e["name"].as_str().map(str::to_owned))
        .collect()
}

on_both!(exclusions_are_checked_previewed_and_obeyed);
