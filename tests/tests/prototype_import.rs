//! Importing the Python prototype over the API (`POST /api/import/prototype`, a job),
//! on both catalogs: only an administrator may; a dry run writes nothing; the imported
//! snapshots hold the generator's files (SHA-256, through a zip download) at their
//! original times; every imported user logs in with their old password (the bcrypt hash
//! is replaced at that login, so the next login goes through argon2id), a deactivated
//! one does not; the history is in the audit trail with its IPs; a second import adds
//! nothing. (`bin/tests/import_cli.rs` verifies the chain and the CLI's variants.)
//!
//! Needs a Python with `cryptography` and `bcrypt` (`COFFER_TEST_PYTHON`, else
//! `python3`); skipped with the reason printed without one, a failure under
//! `COFFER_TEST_REQUIRE_ALL=1`.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;

use coffer_tests::{Api, TestApp, admin, on_both};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn generate(py: &str, out: &Path) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/prototype/make-prototype-data.py");
    let made = Command::new(py)
        .arg(script)
        .arg(out)
        .args(["--seed", "3", "--backups", "4"])
        .output()
        .expect("generator");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    serde_json::from_slice(&made.stdout).expect("manifest")
}

async fn import(api: &Api<'_>, body: Value) -> Value {
    let (status, job) = api.post("/api/import/prototype", body).await;
    assert_eq!(status, 202, "{job}");
    let done = api.wait(job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["kind"], "import");
    done["result"].clone()
}

/// Every file of a snapshot, by path, with its SHA-256 (from its zip download).
async fn files_of(api: &Api<'_>, snapshot: &str) -> BTreeMap<String, String> {
    let (status, _, body) = api
        .bytes(&format!("/api/backups/{snapshot}/download?format=zip"))
        .await;
    assert_eq!(status, 200);
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body)).expect("a zip");
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).expect("entry");
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().expect("a name").into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read");
        files.insert(name, hex::encode(Sha256::digest(&content)));
    }
    files
}

async fn prototype_comes_over_through_the_api(app: &TestApp) {
    let Some(py) = coffer_tests::test_python("prototype_import", "cryptography, bcrypt") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("prototype");
    let manifest = generate(&py, &dir);
    let dir = dir.to_str().expect("utf8").to_owned();
    let api = admin(app).await;

    // Only an administrator: an operator is refused; a path that is no installation is
    // refused before anything is queued.
    let session = app.admin_token().await;
    app.create_user(&session, "ops", "a long enough passphrase", "operator")
        .await;
    let ops = Api {
        app,
        token: app.token("ops", "a long enough passphrase").await,
    };
    let (status, body) = ops.post("/api/import/prototype", json!({"dir": dir})).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api
        .post(
            "/api/import/prototype",
            json!({"dir": "/nonexistent/prototype"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_installation");

    let completed: Vec<&Value> = manifest["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter(|b| b["status"] == "completed")
        .collect();
    let dry = import(&api, json!({"dir": dir, "dry_run": true})).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["imported"], completed.len(), "{dry}");
    let (_, page) = api.get("/api/backups").await;
    assert_eq!(page["total"], 0, "a dry run stores nothing: {page}");

    let result = import(&api, json!({"dir": dir})).await;
    assert_eq!(result["imported"], completed.len(), "{result}");
    assert_eq!(
        result["skipped"].as_array().expect("skipped").len(),
        1,
        "{result}"
    );
    assert!(
        result["skipped"][0].as_str().unwrap().contains("backup 3"),
        "{result}"
    );
    // Coffer's own `admin` exists: the prototype's is left out, and said so.
    let notes = result["user_notes"].to_string();
    assert!(notes.contains("admin (exists)"), "{notes}");
    assert_eq!(result["users"], 3, "{result}");
    assert_eq!(result["audit_rows"], 200);

    // The snapshots, at their original times, holding the generator's files.
    let (_, page) = api.get("/api/backups?limit=100").await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), completed.len(), "{page}");
    for b in &completed {
        let original =
            coffer_domain::import::parse_time(b["created_at"].as_str().unwrap()).expect("time");
        let row = items
            .iter()
            .find(|s| {
                s["created_at"]
                    .as_str()
                    .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                    == Some(original)
            })
            .unwrap_or_else(|| panic!("no snapshot at {original}: {page}"));
        assert_eq!(row["source_name"], "prototype");
        let expected: BTreeMap<String, String> = b["files"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            files_of(&api, row["id"].as_str().unwrap()).await,
            expected,
            "backup {}",
            b["id"]
        );
    }

    // Each imported user logs in with the prototype's password, twice (the second time
    // against the argon2id hash the first login left); the deactivated one cannot.
    for u in manifest["users"].as_array().unwrap() {
        let name = u["username"].as_str().unwrap();
        if name == "admin" {
            continue;
        }
        let password = u["password"].as_str().unwrap();
        for _ in 0..2 {
            let status = app.login(name, password).await.status().as_u16();
            if u["active"] == true {
                assert_eq!(status, 200, "{name}");
            } else {
                assert_ne!(status, 200, "{name} is deactivated");
            }
        }
        if u["active"] == true {
            let token = app.token(name, password).await;
            let (_, me) = app.get_as(&token, "/api/me").await;
            assert_eq!(me["user"]["role"], u["role"], "{me}");
        }
        assert_ne!(
            app.login(name, "wrong password").await.status().as_u16(),
            200
        );
    }

    // The history: marked, with its addresses; then the import's own row; the chain holds.
    let (_, rows) = api.get("/api/audit?action=prototype.login&limit=500").await;
    let rows = rows["items"].as_array().expect("items");
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["ip_address"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("192.0.2."))),
        "{rows:?}"
    );
    let (_, imports) = api.get("/api/audit?action=import").await;
    assert_eq!(imports["items"][0]["success"], true, "{imports}");

    // Again: nothing twice.
    let again = import(&api, json!({"dir": dir})).await;
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["already_imported"], completed.len());
    assert_eq!(again["users"], 0);
    let (_, page) = api.get("/api/backups").await;
    assert_eq!(page["total"], completed.len());
}

on_both!(prototype_comes_over_through_the_api);
