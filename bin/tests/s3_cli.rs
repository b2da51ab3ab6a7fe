//! The `coffer` command on an S3 repository (the Garage cluster of `.ci/garage`, named by
//! `COFFER_TEST_S3_*`): what works on a directory works on a bucket — backup, restore,
//! key rotation, catalog rebuild from storage alone, stored bytes recounted from the
//! bucket's listing, `storage show`. Skipped with a printed reason without a cluster (a
//! failure under `COFFER_TEST_REQUIRE_ALL=1`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct S3 {
    vars: Vec<(String, String)>,
    secret: String,
    prefix: String,
}

fn s3(test: &str) -> Option<S3> {
    let o = coffer_storage::testing::s3_options(test)?;
    Some(S3 {
        vars: vec![
            ("COFFER_STORAGE__BACKEND".into(), "s3".into()),
            (
                "COFFER_STORAGE__ENDPOINT".into(),
                o.endpoint.clone().unwrap_or_default(),
            ),
            ("COFFER_STORAGE__BUCKET".into(), o.bucket),
            ("COFFER_STORAGE__REGION".into(), o.region),
            ("COFFER_STORAGE__PREFIX".into(), o.prefix.clone()),
            ("COFFER_STORAGE__ACCESS_KEY_ID".into(), o.access_key_id),
            (
                "COFFER_STORAGE__SECRET_ACCESS_KEY".into(),
                o.secret_access_key.clone(),
            ),
        ],
        secret: o.secret_access_key,
        prefix: o.prefix,
    })
}

fn run(s3: &S3, data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .envs(s3.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(data.parent().expect("parent"))
        .stdin(Stdio::null())
        .output()
        .expect("run coffer")
}

fn ok(s3: &S3, data: &Path, args: &[&str]) -> String {
    let out = run(s3, data, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "coffer {args:?} failed: {stderr}");
    assert!(
        !stderr.contains(&s3.secret),
        "the secret in stderr: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !stdout.contains(&s3.secret),
        "the secret in stdout: {stdout}"
    );
    stdout
}

fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("inside").to_path_buf();
                out.push((rel, std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn backup_rotate_rebuild_recount_and_show_on_s3() {
    let Some(s3) = s3("s3_cli") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let data = work.path().join("data");
    let src = work.path().join("src");
    for i in 0..20u32 {
        let dir = src.join(format!("d{}", i % 4));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("f{i}")),
            format!("file {i} ").repeat(500 + i as usize),
        )
        .expect("write");
    }
    let src_str = src.to_str().expect("utf8");
    ok(&s3, &data, &["backup", src_str]);
    std::fs::write(src.join("d0/new"), b"a second snapshot").expect("write");
    ok(&s3, &data, &["backup", src_str]);

    // Key rotation on the bucket: the repository opens with the new key only.
    let key_file = data.join("keys/master.key");
    let before = std::fs::read(&key_file).expect("key");
    ok(&s3, &data, &["key", "rotate"]);
    assert_ne!(std::fs::read(&key_file).expect("key"), before);
    let restored = work.path().join("restored");
    ok(
        &s3,
        &data,
        &["restore", "latest", restored.to_str().expect("utf8")],
    );
    assert_eq!(tree(&restored), tree(&src));

    // The catalog rebuilt from the bucket and the key alone.
    for file in ["coffer.db", "coffer.db-wal", "coffer.db-shm"] {
        let _ = std::fs::remove_file(data.join(file));
    }
    let out = ok(&s3, &data, &["catalog", "rebuild"]);
    assert!(out.contains("2 snapshot(s) in storage; 2 added"), "{out}");

    // Stored bytes, counted from the bucket's listing.
    let recount: serde_json::Value =
        serde_json::from_str(&ok(&s3, &data, &["storage", "recount", "--json"])).expect("json");
    assert!(
        recount["stored_bytes"].as_u64().expect("bytes") > 1_000,
        "{recount}"
    );

    let shown = ok(&s3, &data, &["storage", "show"]);
    assert!(shown.contains("backend: s3 (s3://"), "{shown}");
    assert!(shown.contains(&s3.prefix), "{shown}");
    assert!(shown.contains("write-then-list"), "{shown}");
    assert!(shown.contains("disk: not applicable"), "{shown}");
    if let Ok(known) = std::env::var("COFFER_TEST_S3_CONDITIONAL_CREATE") {
        let expected = if known == "true" {
            "honoured by this store"
        } else {
            "NOT honoured"
        };
        assert!(shown.contains(expected), "{shown}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&ok(&s3, &data, &["storage", "show", "--json"])).expect("json");
    assert_eq!(json["backend"], "s3");
    assert_eq!(json["disk_applicable"], false);
    assert_eq!(json["stored_bytes"], recount["stored_bytes"]);

    // A configuration file holding the secret is refused, naming the key, not the value.
    let config = work.path().join("coffer.toml");
    std::fs::write(
        &config,
        "[storage]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"x\"\nsecret_access_key = \"file-secret\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .args(["snapshots"])
        .env_remove("COFFER_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run coffer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("storage.secret_access_key"), "{stderr}");
    assert!(!stderr.contains("file-secret"), "{stderr}");
}

/// Debug logging is what an operator turns on when storage misbehaves: the S3 keys must
/// stay out of it. The request signer's own debug lines print its credential provider,
/// secret key included; Coffer drops the signer's log lines whatever `RUST_LOG` asks.
/// Needs no cluster: the endpoint is a closed local port, and the keys are loaded and
/// the request signed before the connection is refused.
#[test]
fn debug_logs_never_carry_the_secret_key() {
    let work = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let secret = "debug-log-secret-7f3a9c";
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .args(["storage", "show"])
        .env("RUST_LOG", "trace,reqsign_core::api=trace")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .env("COFFER_STORAGE__BACKEND", "s3")
        .env(
            "COFFER_STORAGE__ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env("COFFER_STORAGE__BUCKET", "coffer")
        .env("COFFER_STORAGE__REGION", "us-east-1")
        .env("COFFER_STORAGE__ACCESS_KEY_ID", "GKdebuglogtest")
        .env("COFFER_STORAGE__SECRET_ACCESS_KEY", secret)
        .stdin(Stdio::null())
        .output()
        .expect("run coffer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}{stderr}");
    // Trace logging was on, and a request was signed and sent.
    assert!(stderr.contains("TRACE"), "{stderr}");
    assert!(stderr.contains(&port.to_string()), "{stderr}");
    assert!(!stderr.contains(secret), "the secret in stderr: {stderr}");
    assert!(!stdout.contains(secret), "the secret in stdout: {stdout}");
}
