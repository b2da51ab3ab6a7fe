//! Replicas through the `coffer` command on real directories: a replica alone plus the
//! master key is a working deployment (`catalog rebuild`, restore, check), and a copy
//! killed with `kill -9` resumes without sending again what arrived.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn coffer(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .env_remove("COFFER_STORAGE__BACKEND")
        .env_remove("COFFER_STORAGE__ROOT")
        .current_dir(data.parent().expect("parent"))
        .stdin(Stdio::null());
    cmd
}

fn check(out: &Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(data: &Path, args: &[&str]) -> String {
    check(&coffer(data).args(args).output().expect("run coffer"), args)
}

fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(data, args)).expect("JSON output")
}

/// `coffer` on a deployment whose storage is the replica at `replica`.
fn on_replica(data: &Path, replica: &Path, args: &[&str]) -> String {
    let out = coffer(data)
        .env("COFFER_STORAGE__BACKEND", "fs")
        .env("COFFER_STORAGE__ROOT", replica)
        .args(args)
        .output()
        .expect("run coffer");
    check(&out, args)
}

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

fn tree(root: &Path, big: usize, seed: u64) {
    std::fs::create_dir_all(root.join("docs/sub")).expect("mkdir");
    for i in 0..40 {
        std::fs::write(
            root.join(format!("docs/sub/f{i}.txt")),
            format!("line {i}\n").repeat(1 + i * 3),
        )
        .expect("write");
    }
    std::fs::write(root.join("big.bin"), noise(big, seed)).expect("write");
    std::os::unix::fs::symlink("docs/sub", root.join("link")).expect("symlink");
}

fn same_tree(a: &Path, b: &Path) -> bool {
    Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .status()
        .expect("diff")
        .success()
}

/// The master key of `data`, put where a new deployment at `other` looks for it.
fn copy_key(data: &Path, other: &Path) {
    let keys = other.join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    std::fs::copy(data.join("keys/master.key"), keys.join("master.key")).expect("copy key");
}

/// Every object file of a replica (not its locks or temporary files) and its inode.
fn objects(root: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.expect("entry");
            let rel = e.path().strip_prefix(root).expect("under").to_path_buf();
            if rel.starts_with(".tmp") || rel.starts_with("locks") {
                continue;
            }
            let meta = e.metadata().expect("meta");
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.insert(rel, meta.ino());
            }
        }
    }
    out
}

#[test]
fn a_replica_alone_with_the_master_key_is_a_working_deployment() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    let data = dir.path().join("coffer-data");
    let nas = dir.path().join("nas");
    tree(&src, 6 << 20, 1);
    let first = json(&data, &["backup", src.to_str().expect("utf8"), "--json"]);
    let first_copy = dir.path().join("first-src");
    assert!(
        Command::new("cp")
            .args(["-a"])
            .arg(&src)
            .arg(&first_copy)
            .status()
            .expect("cp")
            .success()
    );
    std::fs::write(src.join("docs/new.txt"), b"added later").expect("write");
    std::fs::remove_file(src.join("docs/sub/f3.txt")).expect("rm");
    let second = json(&data, &["backup", src.to_str().expect("utf8"), "--json"]);

    let out = ok(
        &data,
        &[
            "replicas",
            "add",
            "nas",
            "--path",
            nas.to_str().expect("utf8"),
        ],
    );
    assert!(out.contains("added replica `nas`"), "{out}");
    let listed = json(&data, &["replicas", "list", "--json"]);
    assert_eq!(listed[0]["lag_snapshots"], 2, "{listed}");
    let result = json(&data, &["replicas", "sync", "nas", "--json"]);
    assert_eq!(result["snapshots"], 2, "{result}");
    assert_eq!(result["replica_snapshots"], 2, "{result}");
    let listed = json(&data, &["replicas", "list", "--json"]);
    assert_eq!(listed[0]["name"], "nas");
    assert_eq!(listed[0]["lag_snapshots"], 0, "{listed}");
    assert!(listed[0]["last_success_at"].is_string(), "{listed}");
    let text = ok(&data, &["replicas", "list"]);
    assert!(text.contains("behind: 0 snapshots"), "{text}");

    // The original repository is gone: only the replica and the key are left.
    std::fs::remove_dir_all(data.join("repository")).expect("rm repository");
    let other = dir.path().join("elsewhere");
    copy_key(&data, &other);
    let rebuilt = on_replica(&other, &nas, &["catalog", "rebuild"]);
    assert!(
        rebuilt.contains("2 snapshot(s) in storage; 2 added"),
        "{rebuilt}"
    );
    let snapshots: serde_json::Value =
        serde_json::from_str(&on_replica(&other, &nas, &["snapshots", "--json"])).expect("json");
    let ids: Vec<&str> = snapshots["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            second["id"].as_str().expect("id"),
            first["id"].as_str().expect("id")
        ]
    );
    for (snap, expected) in [(&first, &first_copy), (&second, &src)] {
        let target = dir.path().join(format!(
            "restored-{}",
            &snap["id"].as_str().expect("id")[..8]
        ));
        on_replica(
            &other,
            &nas,
            &[
                "restore",
                snap["id"].as_str().expect("id"),
                target.to_str().expect("utf8"),
            ],
        );
        assert!(
            same_tree(expected, &target),
            "snapshot {} differs",
            snap["id"]
        );
    }
    let checked = on_replica(&other, &nas, &["check", "--share", "100", "--json"]);
    let checked: serde_json::Value = serde_json::from_str(&checked).expect("json");
    assert_eq!(checked["ok"], true, "{checked}");
}

#[test]
fn a_copy_killed_mid_way_resumes_without_sending_anything_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    let data = dir.path().join("coffer-data");
    let nas = dir.path().join("nas");
    // About 40 MiB of incompressible data: ten packs or more.
    tree(&src, 40 << 20, 7);
    json(&data, &["backup", src.to_str().expect("utf8"), "--json"]);
    ok(
        &data,
        &[
            "replicas",
            "add",
            "nas",
            "--path",
            nas.to_str().expect("utf8"),
        ],
    );

    let mut child = coffer(&data)
        .args(["replicas", "sync", "nas", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let packs = |root: &Path| {
        objects(root)
            .keys()
            .filter(|k| k.starts_with("data"))
            .count()
    };
    while packs(&nas) < 2 {
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "the copy never started"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the copy ended too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    child.wait().expect("reap");
    let before = objects(&nas);
    assert!(
        !before.keys().any(|k| k.starts_with("snapshots")),
        "killed after the end: this test proved nothing ({before:?})"
    );
    let total_packs = {
        let mut n = 0;
        for d in std::fs::read_dir(data.join("repository/data")).expect("packs") {
            n += std::fs::read_dir(d.expect("d").path())
                .expect("dir")
                .count();
        }
        n
    };
    assert!(
        packs(&nas) < total_packs,
        "every pack arrived before the kill"
    );

    let result = json(&data, &["replicas", "sync", "nas", "--json"]);
    assert_eq!(
        result["objects_present"].as_u64(),
        Some(before.len() as u64),
        "{result}"
    );
    let after = objects(&nas);
    for (path, inode) in &before {
        assert_eq!(
            after.get(path),
            Some(inode),
            "{} was written again",
            path.display()
        );
    }
    assert_eq!(
        result["objects_copied"].as_u64(),
        Some((after.len() - before.len()) as u64),
        "{result}"
    );

    // What arrived is a whole repository.
    std::fs::remove_dir_all(data.join("repository")).expect("rm repository");
    let other = dir.path().join("elsewhere");
    copy_key(&data, &other);
    on_replica(&other, &nas, &["catalog", "rebuild"]);
    let target = dir.path().join("restored");
    on_replica(
        &other,
        &nas,
        &["restore", "latest", target.to_str().expect("utf8")],
    );
    assert!(same_tree(&src, &target));
}

#[test]
fn an_s3_replica_alone_restores_everything() {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(g) = coffer_storage::testing::s3_options("an_s3_replica_alone_restores_everything")
    else {
        return;
    };
    let endpoint = g
        .endpoint
        .clone()
        .expect("the test store names its endpoint");
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("src");
    let data = dir.path().join("coffer-data");
    tree(&src, 5 << 20, 3);
    let snap = json(&data, &["backup", src.to_str().expect("utf8"), "--json"]);
    let credentials = dir.path().join("s3.credentials");
    std::fs::write(
        &credentials,
        format!(
            "access_key_id = {}\nsecret_access_key = {}\n",
            g.access_key_id, g.secret_access_key
        ),
    )
    .expect("write credentials");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let prefix = &g.prefix;
    let out = ok(
        &data,
        &[
            "replicas",
            "add",
            "offsite",
            "--s3-bucket",
            &g.bucket,
            "--s3-endpoint",
            &endpoint,
            "--s3-region",
            &g.region,
            "--s3-prefix",
            prefix,
            "--s3-credentials-file",
            credentials.to_str().expect("utf8"),
        ],
    );
    assert!(out.contains("s3://"), "{out}");
    let listed = json(&data, &["replicas", "list", "--json"]);
    assert_eq!(listed[0]["backend"], "s3", "{listed}");
    assert_eq!(listed[0]["bucket"], g.bucket.as_str(), "{listed}");
    assert!(
        !listed.to_string().contains(&g.secret_access_key),
        "a key is shown"
    );
    let result = json(&data, &["replicas", "sync", "offsite", "--json"]);
    assert_eq!(result["replica_snapshots"], 1, "{result}");
    let again = json(&data, &["replicas", "sync", "offsite", "--json"]);
    assert_eq!(again["objects_copied"], 0, "{again}");

    // The original repository gone: a deployment on the bucket with the key alone.
    std::fs::remove_dir_all(data.join("repository")).expect("rm repository");
    let other = dir.path().join("elsewhere");
    copy_key(&data, &other);
    let on_bucket = |args: &[&str]| {
        let out = coffer(&other)
            .env("COFFER_STORAGE__BACKEND", "s3")
            .env("COFFER_STORAGE__ENDPOINT", &endpoint)
            .env("COFFER_STORAGE__BUCKET", &g.bucket)
            .env("COFFER_STORAGE__REGION", &g.region)
            .env("COFFER_STORAGE__PREFIX", prefix)
            .env("COFFER_STORAGE__CREDENTIALS_FILE", &credentials)
            .args(args)
            .output()
            .expect("run coffer");
        check(&out, args)
    };
    let rebuilt = on_bucket(&["catalog", "rebuild"]);
    assert!(
        rebuilt.contains("1 snapshot(s) in storage; 1 added"),
        "{rebuilt}"
    );
    let target = dir.path().join("restored");
    on_bucket(&[
        "restore",
        snap["id"].as_str().expect("id"),
        target.to_str().expect("utf8"),
    ]);
    assert!(same_tree(&src, &target));
}
