//! `coffer import prototype` against installations made by the prototype's own generator
//! (`tests/fixtures/prototype/make-prototype-data.py`) and varied the way real ones
//! differ (`vary-prototype.py`): every imported snapshot is restored and compared with
//! the generator's manifest file by file (SHA-256), dated with the backup's original time;
//! damaged, missing and unfinished archives are named in the summary and the rest goes
//! on; a re-run adds nothing; the audit chain verifies afterwards.
//!
//! Needs a Python with `cryptography` and `bcrypt` (`COFFER_TEST_PYTHON`, else
//! `python3`): without one the tests say so and pass, and fail under
//! `COFFER_TEST_REQUIRE_ALL=1` (`.ci/run` provides one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/prototype")
}

/// The Python that runs the generator, or `None` (with the skip printed; a failure under
/// `COFFER_TEST_REQUIRE_ALL=1`).
fn python() -> Option<String> {
    let py = std::env::var("COFFER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ready = Command::new(&py)
        .args(["-c", "import cryptography, bcrypt"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Some(py);
    }
    coffer_db::testing::skip(
        "import_cli",
        &format!(
            "{py} lacks `cryptography` and `bcrypt`, which the prototype's generator needs \
             (pip install -r tests/support/requirements.txt, or set COFFER_TEST_PYTHON)"
        ),
    )
}

/// Makes an installation in `out`; returns the generator's manifest.
fn generate(py: &str, out: &Path, args: &[&str]) -> Value {
    let made = Command::new(py)
        .arg(fixtures().join("make-prototype-data.py"))
        .arg(out)
        .args(args)
        .output()
        .expect("run the generator");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    serde_json::from_slice(&made.stdout).expect("manifest")
}

fn coffer(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .current_dir(data.parent().expect("parent"))
        .stdin(Stdio::null());
    cmd
}

fn run(data: &Path, args: &[&str]) -> Output {
    coffer(data).args(args).output().expect("run coffer")
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = run(data, args);
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `coffer import prototype DIR --json ...`: the report, and the exit code.
fn import(data: &Path, dir: &Path, more: &[&str]) -> (Value, i32) {
    let mut args = vec!["import", "prototype", dir.to_str().expect("utf8"), "--json"];
    args.extend_from_slice(more);
    let out = run(data, &args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (report, out.status.code().unwrap_or(-1))
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every file under `root` by relative path, with its SHA-256; and the empty directories.
fn tree(root: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    fn walk(
        root: &Path,
        dir: &Path,
        files: &mut BTreeMap<String, String>,
        empty: &mut Vec<String>,
    ) {
        let mut any = false;
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            any = true;
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("inside")
                .to_string_lossy()
                .into_owned();
            if entry.file_type().expect("type").is_dir() {
                walk(root, &path, files, empty);
            } else {
                files.insert(rel, sha(&std::fs::read(&path).expect("read")));
            }
        }
        if !any && dir != root {
            empty.push(
                dir.strip_prefix(root)
                    .expect("inside")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    let mut files = BTreeMap::new();
    let mut empty = Vec::new();
    walk(root, root, &mut files, &mut empty);
    empty.sort();
    (files, empty)
}

fn manifest_files(backup: &Value) -> BTreeMap<String, String> {
    backup["files"]
        .as_object()
        .expect("files")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("sha").to_owned()))
        .collect()
}

fn outcome_of(report: &Value, id: i64) -> &Value {
    report["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .find(|b| b["id"] == id)
        .unwrap_or_else(|| panic!("backup {id} not in {report}"))
}

/// The original time, as Coffer reads it (no offset: UTC).
fn original_time(text: &str) -> chrono::DateTime<chrono::Utc> {
    coffer_domain::import::parse_time(text).expect("a time")
}

#[test]
fn an_installation_comes_over_whole_and_only_once() {
    let Some(py) = python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(root.path()).expect("canonical");
    let installation = root.join("prototype");
    let manifest = generate(&py, &installation, &["--seed", "7", "--backups", "6"]);
    let manifest_file = root.join("manifest.json");
    std::fs::write(&manifest_file, manifest.to_string()).expect("write");
    let varied = Command::new(&py)
        .arg(fixtures().join("vary-prototype.py"))
        .arg(&installation)
        .arg(&manifest_file)
        .output()
        .expect("vary");
    assert!(
        varied.status.success(),
        "{}",
        String::from_utf8_lossy(&varied.stderr)
    );
    let more: Value = serde_json::from_slice(&varied.stdout).expect("variant manifest");
    let data = root.join("data");

    // A dry run writes nothing and says what would come.
    let (dry, code) = import(&data, &installation, &["--dry-run", "--adopt-settings"]);
    assert_eq!(code, 3, "the unreadable rows make it exit 3: {dry}");
    assert_eq!(dry["dry_run"], true);
    let completed: Vec<&Value> = manifest["backups"]
        .as_array()
        .expect("backups")
        .iter()
        .filter(|b| b["status"] == "completed")
        .collect();
    for b in &completed {
        assert_eq!(
            outcome_of(&dry, b["id"].as_i64().unwrap())["outcome"],
            "would_import"
        );
    }
    assert!(
        dry["settings"].to_string().contains("newest 10 snapshots"),
        "{dry}"
    );
    assert!(dry["settings"].to_string().contains("500 MiB"), "{dry}");
    let listed = ok(&data, &["snapshots", "--json"]);
    assert!(
        serde_json::from_str::<Value>(&listed).expect("json")["items"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "a dry run stores nothing: {listed}"
    );

    let (report, code) = import(&data, &installation, &[]);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["source"], "prototype");
    assert_eq!(report["source_created"], true);
    // The unfinished runs and the missing archive are reported, not imported.
    for id in [3, 102] {
        let b = outcome_of(&report, id);
        assert_eq!(b["outcome"], "skipped", "{b}");
        assert!(b["reason"].as_str().unwrap().contains("no archive"), "{b}");
    }
    let missing = outcome_of(&report, 103);
    assert_eq!(missing["outcome"], "skipped");
    assert!(
        missing["reason"].as_str().unwrap().contains("missing"),
        "{missing}"
    );

    // Each imported snapshot holds exactly the archive's tree, dated as the original.
    let expected: Vec<Value> = completed
        .iter()
        .map(|b| (*b).clone())
        .chain(
            more["backups"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["files"].is_object())
                .cloned(),
        )
        .collect();
    assert_eq!(report["imported"], expected.len(), "{report}");
    let snapshots: Value =
        serde_json::from_str(&ok(&data, &["snapshots", "--json"])).expect("json");
    for (n, b) in expected.iter().enumerate() {
        let outcome = outcome_of(&report, b["id"].as_i64().unwrap());
        assert_eq!(outcome["outcome"], "imported", "{outcome}");
        let id = outcome["snapshot_id"].as_str().expect("snapshot id");
        let row = snapshots["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {snapshots}"));
        let created: chrono::DateTime<chrono::Utc> =
            row["created_at"].as_str().unwrap().parse().expect("time");
        assert_eq!(
            created,
            original_time(b["created_at"].as_str().unwrap()),
            "{row}"
        );
        assert_eq!(row["source_name"], "prototype");
        let target = root.join(format!("restored-{n}"));
        ok(&data, &["restore", id, target.to_str().unwrap()]);
        let (files, empty) = tree(&target);
        assert_eq!(files, manifest_files(b), "backup {}", b["id"]);
        assert_eq!(empty, ["empty-dir"], "backup {}", b["id"]);
    }

    // Users: roles and active flags come over; the default admin is disabled; names
    // Coffer does not accept are reported.
    let users: Value =
        serde_json::from_str(&ok(&data, &["users", "list", "--json"])).expect("json");
    let user = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .cloned()
    };
    for u in manifest["users"].as_array().unwrap() {
        let name = u["username"].as_str().unwrap();
        let got = user(name).unwrap_or_else(|| panic!("{name} not imported: {users}"));
        assert_eq!(got["role"], u["role"], "{got}");
        let active = u["active"].as_bool().unwrap() && name != "admin";
        assert_eq!(got["is_active"], active, "{got}");
    }
    assert_eq!(user("audrey").expect("audrey")["role"], "viewer");
    assert!(user("bad name!").is_none());
    let reported: Vec<&Value> = report["users"].as_array().unwrap().iter().collect();
    let admin = reported.iter().find(|u| u["username"] == "admin").unwrap();
    assert!(
        admin["note"]
            .as_str()
            .unwrap()
            .contains("reset-password admin"),
        "{admin}"
    );
    let bad = reported
        .iter()
        .find(|u| u["username"] == "bad name!")
        .unwrap();
    assert_eq!(bad["outcome"], "skipped");

    // The history came over, marked, then the import's own row; the chain verifies.
    assert_eq!(report["audit_rows"], 201);
    let verified = ok(&data, &["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");

    // Again: nothing twice.
    let (again, code) = import(&data, &installation, &[]);
    assert_eq!(code, 3, "the same rows are still unreadable: {again}");
    for b in &expected {
        let outcome = outcome_of(&again, b["id"].as_i64().unwrap());
        assert_eq!(outcome["outcome"], "already_imported", "{outcome}");
    }
    assert_eq!(again["imported"], 0);
    assert_eq!(again["audit_already_imported"], true);
    assert!(
        again["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["outcome"] != "imported"),
        "{again}"
    );
    let after: Value = serde_json::from_str(&ok(&data, &["snapshots", "--json"])).expect("json");
    assert_eq!(after["total"], snapshots["total"]);
    assert!(ok(&data, &["audit", "verify"]).contains("intact"));
}

#[test]
fn a_damaged_archive_is_named_and_the_rest_comes_over() {
    let Some(py) = python() else {
        return;
    };
    let root = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(root.path()).expect("canonical");
    let installation = root.join("prototype");
    // Checksums of the stored file, another database name, one archive damaged.
    let manifest = generate(
        &py,
        &installation,
        &[
            "--seed",
            "11",
            "--backups",
            "5",
            "--checksum-of",
            "file",
            "--db-name",
            "legacy.sqlite3",
            "--damage",
        ],
    );
    let data = root.join("data");
    let (report, code) = import(&data, &installation, &["--source", "old-server"]);
    assert_eq!(code, 3, "{report}");
    assert_eq!(report["source"], "old-server");
    assert!(
        report["database"]
            .as_str()
            .unwrap()
            .ends_with("legacy.sqlite3"),
        "{report}"
    );
    for b in manifest["backups"].as_array().unwrap() {
        let outcome = outcome_of(&report, b["id"].as_i64().unwrap());
        if b["damaged"] == true {
            assert_eq!(outcome["outcome"], "skipped", "{outcome}");
            let reason = outcome["reason"].as_str().unwrap();
            assert!(
                reason.contains(b["filename"].as_str().unwrap()) && reason.contains("damaged"),
                "{reason}"
            );
        } else if b["status"] == "completed" {
            assert_eq!(outcome["outcome"], "imported", "{outcome}");
        }
    }
    // Nothing of the damaged archive was kept: the repository checks clean.
    ok(&data, &["check"]);

    // Not an installation: one clear error, nothing written.
    let empty = root.join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let out = run(
        &root.join("other-data"),
        &["import", "prototype", empty.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no database"), "{err}");
}
