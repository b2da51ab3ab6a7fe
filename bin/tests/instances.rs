//! Two `coffer serve` processes on one deployment: one PostgreSQL catalog and one
//! repository on the three-node Garage cluster (`.ci/garage start`). Sessions work across
//! instances, a backup asked of both runs once, a `kill -9` of the instance running a
//! backup is noticed by the other (the job reads interrupted, nothing of it becomes a
//! snapshot), which then runs the next scheduled backup; every earlier snapshot restores.
//!
//! Needs `COFFER_TEST_POSTGRES_URL` and `COFFER_TEST_S3_*`: skipped with a printed reason
//! without them (a failure under `COFFER_TEST_REQUIRE_ALL=1`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";
/// The shortest lease the configuration allows: a dead instance's job reads
/// interrupted this long after its last heartbeat.
const LEASE_SECS: u64 = 10;

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

/// What both instances share: the configuration file, the keys, the environment.
struct Deployment {
    work: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Deployment {
    fn new(database_url: &str, s3: &coffer_storage::S3Options) -> Self {
        let work = tempfile::tempdir().expect("tempdir");
        let keys = work.path().join("shared-keys");
        let restored = work.path().join("restored");
        std::fs::create_dir_all(&restored).expect("mkdir");
        let config = work.path().join("coffer.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[database]
url = "{database_url}"

[storage]
backend = "s3"
endpoint = "{endpoint}"
bucket = "{bucket}"
region = "{region}"
prefix = "{prefix}"
path_style = true

[security]
session_key_file = "{keys}/session.key"
audit_key_file = "{keys}/audit.key"
encryption_key_file = "{keys}/master.key"

[restore]
allowed_roots = ["{restored}"]

[jobs]
lease_secs = {LEASE_SECS}

[scheduler]
enabled = true
"#,
                endpoint = s3.endpoint.as_deref().expect("endpoint"),
                bucket = s3.bucket,
                region = s3.region,
                prefix = s3.prefix,
                keys = keys.display(),
                restored = restored.display(),
            ),
        )
        .expect("config");
        Self {
            work,
            config,
            env: vec![
                (
                    "COFFER_STORAGE__ACCESS_KEY_ID".into(),
                    s3.access_key_id.clone(),
                ),
                (
                    "COFFER_STORAGE__SECRET_ACCESS_KEY".into(),
                    s3.secret_access_key.clone(),
                ),
            ],
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

struct Instance {
    name: &'static str,
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Instance {
    async fn start(deployment: &Deployment, name: &'static str) -> Self {
        let data = deployment.path(&format!("data-{name}"));
        std::fs::create_dir_all(&data).expect("mkdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("--config")
            .arg(&deployment.config)
            .arg("--data-dir")
            .arg(&data)
            .args(["serve", "--port", &port.to_string()])
            .env("COFFER_ADMIN_PASSWORD", PASSWORD)
            .env("COFFER_LOG__LEVEL", "warn")
            .env_remove("COFFER_CONFIG")
            .env_remove("COFFER_DATA_DIR")
            .envs(deployment.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(deployment.work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if client
                .get(format!("{base}/api/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_mins(1),
                "instance {name} did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            name,
            child,
            base,
            client,
        }
    }

    async fn login(&self) -> String {
        let (status, body) = self
            .call(
                "",
                "POST",
                "/api/login",
                Some(json!({"username": "admin", "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "login on {}: {body}", self.name);
        body["token"].as_str().expect("token").to_owned()
    }

    async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if !token.is_empty() {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn job(&self, token: &str, id: &str) -> Value {
        let (status, job) = self
            .call(token, "GET", &format!("/api/jobs/{id}"), None)
            .await;
        assert_eq!(status, 200, "{job}");
        job
    }

    /// Waits for a job to end (read on this instance, whoever runs it).
    async fn wait(&self, token: &str, id: &str, within: Duration) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(token, id).await;
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            assert!(
                started.elapsed() < within,
                "job {id} did not end within {within:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_sessions_jobs_and_the_scheduler_and_survive_a_kill() {
    let test = "two_instances";
    let Some(db) = coffer_db::testing::TestDatabase::postgres(test).await else {
        return;
    };
    let Some(s3) = coffer_storage::testing::s3_options(test) else {
        return;
    };
    let deployment = Deployment::new(&db.url, &s3);
    let src = deployment.path("src");
    std::fs::create_dir_all(src.join("docs")).expect("mkdir");
    for i in 0..40u64 {
        std::fs::write(
            src.join("docs").join(format!("f{i}.txt")),
            noise(3_000 + usize::try_from(i).unwrap() * 97, i + 1),
        )
        .expect("write");
    }
    let big = deployment.path("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    for i in 0..6u64 {
        std::fs::write(big.join(format!("part{i}.bin")), noise(24 << 20, 100 + i)).expect("write");
    }

    // The first instance creates the repository, the keys and the first admin; the
    // second joins with the same configuration.
    let a = Instance::start(&deployment, "a").await;
    let b = Instance::start(&deployment, "b").await;

    // A session from one instance works on the other; a logout on one ends it on both.
    let first = a.login().await;
    assert_eq!(b.call(&first, "GET", "/api/me", None).await.0, 200);
    assert_eq!(b.call(&first, "POST", "/api/logout", None).await.0, 204);
    assert_eq!(a.call(&first, "GET", "/api/me", None).await.0, 401);
    let token = b.login().await;
    assert_eq!(a.call(&token, "GET", "/api/me", None).await.0, 200);

    let (status, source) = a
        .call(
            &token,
            "POST",
            "/api/sources",
            Some(json!({"name": "docs", "path": src.to_str().expect("utf8")})),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source_id = source["id"].as_i64().expect("id");
    let (status, big_source) = b
        .call(
            &token,
            "POST",
            "/api/sources",
            Some(json!({"name": "big", "path": big.to_str().expect("utf8")})),
        )
        .await;
    assert_eq!(status, 201, "{big_source}");
    let big_id = big_source["id"].as_i64().expect("id");

    // The same backup asked of both instances at once runs exactly once.
    let body = json!({"source_id": source_id});
    let ((sa, ja), (sb, jb)) = tokio::join!(
        a.call(&token, "POST", "/api/backup", Some(body.clone())),
        b.call(&token, "POST", "/api/backup", Some(body.clone())),
    );
    let mut statuses = [sa, sb];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409], "a: {ja}, b: {jb}");
    let (accepted, refused) = if sa == 202 { (&ja, &jb) } else { (&jb, &ja) };
    assert_eq!(refused["error"]["code"], "job_running", "{refused}");
    assert_eq!(refused["error"]["job_id"], accepted["id"], "{refused}");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let done = b.wait(&token, &id, Duration::from_mins(2)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let mut snapshots = vec![
        done["result"]["snapshot_id"]
            .as_str()
            .expect("snapshot")
            .to_owned(),
    ];
    let (_, page) = a
        .call(
            &token,
            "GET",
            &format!("/api/jobs?source_id={source_id}"),
            None,
        )
        .await;
    assert_eq!(page["total"], 1, "one job recorded: {page}");

    // A backup submitted to `a` runs on `a` (the submitting instance takes it at once
    // when it has room). Kill `a` while it writes.
    let (status, job) = a
        .call(
            &token,
            "POST",
            "/api/backup",
            Some(json!({"source_id": big_id})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let doomed = job["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    loop {
        let job = a.job(&token, &doomed).await;
        if job["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(job["state"], "running", "{job}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "the backup never got going: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    let killed = Instant::now();

    // `b` declares it interrupted once the lease has run out (plus a heartbeat or two).
    let after = b
        .wait(&token, &doomed, Duration::from_secs(LEASE_SECS + 20))
        .await;
    let noticed = killed.elapsed();
    assert_eq!(after["state"], "failed", "{after}");
    assert_eq!(after["error"]["code"], "interrupted", "{after}");
    assert!(
        noticed >= Duration::from_secs(LEASE_SECS - 3),
        "declared interrupted before its lease ran out ({noticed:?})"
    );
    eprintln!("the killed instance's backup read interrupted after {noticed:?}");
    let (_, backups) = b.call(&token, "GET", "/api/backups", None).await;
    assert_eq!(
        backups["total"], 1,
        "the killed backup left no snapshot: {backups}"
    );

    // The next scheduled backup runs, on the surviving instance (it takes the
    // scheduler over within 15 s and the run is due at the next minute).
    let (status, patched) = b
        .call(
            &token,
            "PATCH",
            &format!("/api/sources/{source_id}"),
            Some(json!({"schedule": "* * * * *"})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let started = Instant::now();
    let scheduled = loop {
        let (_, page) = b
            .call(
                &token,
                "GET",
                &format!("/api/jobs?source_id={source_id}&state=succeeded"),
                None,
            )
            .await;
        let found = page["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|j| j["requested_by"] == "system:scheduler")
                .cloned()
        });
        if let Some(job) = found {
            break job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "no scheduled backup ran on the surviving instance: {page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    snapshots.push(
        scheduled["result"]["snapshot_id"]
            .as_str()
            .expect("snapshot")
            .to_owned(),
    );
    // No more scheduled runs while the snapshots are restored.
    let (status, _) = b
        .call(
            &token,
            "PATCH",
            &format!("/api/sources/{source_id}"),
            Some(json!({"schedule": null})),
        )
        .await;
    assert_eq!(status, 200);

    // Every snapshot restores, byte for byte.
    let expected = tree(&src);
    for (n, snap) in snapshots.iter().enumerate() {
        let target = deployment.path(&format!("restored/r{n}"));
        let (status, job) = b
            .call(
                &token,
                "POST",
                &format!("/api/restore/{snap}"),
                Some(json!({"target": target.to_str().expect("utf8")})),
            )
            .await;
        assert_eq!(status, 202, "{job}");
        let done = b
            .wait(
                &token,
                job["id"].as_str().expect("id"),
                Duration::from_mins(2),
            )
            .await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(
            tree(&target),
            expected,
            "snapshot {snap} restored differently"
        );
    }
    b.terminate();
    db.cleanup().await;
}
