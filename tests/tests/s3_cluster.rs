//! Coffer on a real distributed S3 store: the three-node Garage cluster (replication
//! factor 3) that `.ci/garage start` runs on loopback and names in `COFFER_TEST_S3_*` and
//! `COFFER_TEST_GARAGE_DIR`. Without it these tests are skipped with a printed reason
//! (a failure under `COFFER_TEST_REQUIRE_ALL=1`).
//!
//! They stop and start cluster nodes, so they live in a test binary of their own (cargo
//! runs test binaries one after another) and take a lock among themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

use coffer_config::{Secret, StorageBackend};
use coffer_tests::{Backend, admin, spawn_app_with};
use serde_json::json;

/// The node tests one at a time: a stopped node must not surprise another test.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    s3: coffer_storage::S3Options,
    dir: PathBuf,
}

impl Cluster {
    fn from_env(test: &str) -> Option<Self> {
        let s3 = coffer_storage::testing::s3_options(test)?;
        let Some(dir) = std::env::var_os("COFFER_TEST_GARAGE_DIR") else {
            return coffer_db::testing::skip(
                test,
                "no Garage cluster to stop nodes of (COFFER_TEST_GARAGE_DIR unset; \
                 `.ci/garage start` starts one)",
            );
        };
        Some(Self {
            s3,
            dir: PathBuf::from(dir),
        })
    }

    fn node(&self, action: &str, n: u8) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ci/garage");
        let out = Command::new(&script)
            .arg(action)
            .arg(&self.dir)
            .arg(n.to_string())
            .output()
            .expect("run .ci/garage");
        assert!(
            out.status.success(),
            "{action} node {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Settings for a repository under this test's prefix of the test bucket.
    fn storage(&self, settings: &mut coffer_config::Settings) {
        settings.storage.backend = StorageBackend::S3;
        settings.storage.endpoint.clone_from(&self.s3.endpoint);
        settings.storage.bucket = Some(self.s3.bucket.clone());
        settings.storage.region.clone_from(&self.s3.region);
        settings.storage.prefix.clone_from(&self.s3.prefix);
        settings.storage.access_key_id = Some(self.s3.access_key_id.clone());
        settings.storage.secret_access_key = Some(Secret::new(self.s3.secret_access_key.clone()));
    }
}

fn write_tree(root: &Path, round: u32) {
    for i in 0..30u32 {
        let dir = root.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..40_000u32)
            .map(|j| j.wrapping_mul(31).wrapping_add(i * 7 + round).to_le_bytes()[0])
            .collect();
        std::fs::write(dir.join(format!("f{i}")), body).unwrap();
    }
    // Big enough for several packs, so the backup is still writing when a node stops.
    let big: Vec<u8> = (0..24 * 1024 * 1024u32)
        .map(|j| (j.wrapping_mul(2_654_435_761).rotate_left(round % 13) >> 7).to_le_bytes()[0])
        .collect();
    std::fs::write(root.join("big.bin"), big).unwrap();
}

/// Every regular file under `root`, relative, with its bytes.
fn files(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// The server on S3: back up over the API, with node 3 stopped part-way through (the
/// backup still succeeds: two of three replicas are a quorum); with nodes 2 and 3
/// stopped a backup fails with a clear error and no snapshot appears; once they are
/// back the next backup works, and every snapshot restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_on_garage_survives_one_node_and_fails_cleanly_without_two() {
    let test = "garage_nodes";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let _one_at_a_time = CLUSTER.lock().await;
    let Some(app) = spawn_app_with(Backend::Sqlite, test, |s| cluster.storage(s)).await else {
        return;
    };
    let api = admin(&app).await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_tree(&src, 0);
    let source = api.create_source("s3-src", &src).await;
    let first = api.backup(source).await;
    let first_files = files(&src);

    // One node down mid-backup: still a quorum.
    write_tree(&src, 1);
    let (status, job) = api.post("/api/backup", json!({"source_id": source})).await;
    assert_eq!(status, 202, "{job}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cluster.node("stop-node", 3);
    let done = api.wait(job["id"].as_str().unwrap()).await;
    cluster.node("start-node", 3);
    assert_eq!(done["state"], "succeeded", "one node down: {done}");
    let second = done["result"]["snapshot_id"].as_str().unwrap().to_owned();
    let second_files = files(&src);

    // Two nodes down: no quorum, a clear failure, nothing half-written visible.
    write_tree(&src, 2);
    cluster.node("stop-node", 2);
    cluster.node("stop-node", 3);
    let (status, job) = api.post("/api/backup", json!({"source_id": source})).await;
    assert_eq!(status, 202, "{job}");
    let failed = api.wait(job["id"].as_str().unwrap()).await;
    cluster.node("start-node", 2);
    cluster.node("start-node", 3);
    assert_eq!(failed["state"], "failed", "two nodes down: {failed}");
    let message = failed["error"].to_string();
    assert!(message.contains("storage"), "{failed}");
    assert!(!message.contains(&cluster.s3.secret_access_key), "{failed}");
    let (status, list) = api.get("/api/backups").await;
    assert_eq!(status, 200);
    let listed = list.to_string();
    assert!(
        listed.contains(&first) && listed.contains(&second),
        "{list}"
    );

    // The nodes are back: the next backup works, and every snapshot restores.
    let mut third = None;
    for _ in 0..40 {
        let (status, job) = api.post("/api/backup", json!({"source_id": source})).await;
        assert_eq!(status, 202, "{job}");
        let done = api.wait(job["id"].as_str().unwrap()).await;
        if done["state"] == "succeeded" {
            third = done["result"]["snapshot_id"].as_str().map(str::to_owned);
            break;
        }
        // The returning nodes need a moment to rejoin.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let third = third.expect("a backup after the nodes returned");
    let third_files = files(&src);
    for (snap, want) in [
        (&first, &first_files),
        (&second, &second_files),
        (&third, &third_files),
    ] {
        let target = format!("check-{snap}");
        let (status, job) = api
            .post(&format!("/api/restore/{snap}"), json!({"target": target}))
            .await;
        assert_eq!(status, 202, "{job}");
        let done = api.wait(job["id"].as_str().unwrap()).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        let restored = files(&app.data_dir.join("restored").join(&target));
        assert!(
            restored == *want,
            "snapshot {snap} restores what was backed up"
        );
    }
    let (status, health) = api.get("/api/health").await;
    assert_eq!(status, 200, "{health}");
    app.stop().await;
}

/// A wrong secret or a missing bucket stops the server at start with one clear error
/// that names the bucket and no secret, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_or_bucket_is_one_clear_error_at_start() {
    let test = "garage_start_errors";
    let Some(cluster) = Cluster::from_env(test) else {
        return;
    };
    let _one_at_a_time = CLUSTER.lock().await;
    for (what, wrong) in [("secret", true), ("bucket", false)] {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = coffer_config::Settings {
            data_dir: dir.path().join("data"),
            ..coffer_config::Settings::default()
        };
        cluster.storage(&mut settings);
        if wrong {
            settings.storage.secret_access_key = Some(Secret::new("x".repeat(64)));
        } else {
            settings.storage.bucket = Some("coffer-missing-bucket".into());
        }
        let err = match coffer::Services::open(&settings).await {
            Ok(_) => panic!("a wrong {what} must fail at start"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("storage"), "{what}: {err}");
        assert!(
            !err.contains(&cluster.s3.secret_access_key),
            "{what}: {err}"
        );
        assert!(!err.contains(&"x".repeat(64)), "{what}: {err}");
        if !wrong {
            assert!(err.contains("coffer-missing-bucket"), "{err}");
        }
    }
    // Nothing was written under the prefix by either attempt.
    let store = coffer_storage_probe(&cluster).await;
    assert!(store.is_empty(), "{store:?}");
}

/// The keys under the test's prefix in the test bucket, through the server's own storage code.
async fn coffer_storage_probe(cluster: &Cluster) -> Vec<String> {
    let mut settings = coffer_config::Settings::default();
    cluster.storage(&mut settings);
    let store = coffer::open_storage(&settings).expect("store");
    coffer_domain::storage::ObjectStore::list(&store, "")
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.to_string())
        .collect()
}
