//! Jobs across the life of the `coffer serve` process: a job running when the server
//! is killed reads failed after the restart, and the source backs up again; a graceful
//! stop records running jobs as interrupted before it exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

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

fn big_dir(path: &Path, seed: u64) {
    std::fs::create_dir_all(path).expect("mkdir");
    for i in 0..6 {
        std::fs::write(path.join(format!("part{i}.bin")), noise(24 << 20, seed + i))
            .expect("write");
    }
}

struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
    token: String,
}

impl Server {
    async fn start(data: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--port", &port.to_string()])
            .env("COFFER_ADMIN_PASSWORD", PASSWORD)
            .env("COFFER_LOG__LEVEL", "warn")
            .env_remove("COFFER_CONFIG")
            .env_remove("COFFER_DATA_DIR")
            .current_dir(data.parent().expect("parent"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("{base}/api/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let login: Value = client
            .post(format!("{base}/api/login"))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("JSON");
        let token = login["token"].as_str().expect("token").to_owned();
        Self {
            child,
            base,
            client,
            token,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.base),
            )
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn source(&self, name: &str, path: &Path) -> i64 {
        let (status, s) = self
            .call(
                "POST",
                "/api/sources",
                Some(json!({"name": name, "path": path.to_str().expect("utf8")})),
            )
            .await;
        assert_eq!(status, 201, "{s}");
        s["id"].as_i64().expect("id")
    }

    /// Starts a backup and waits until it has stored some bytes; returns the job id.
    async fn backup_in_flight(&self, source_id: i64) -> String {
        let (status, job) = self
            .call("POST", "/api/backup", Some(json!({"source_id": source_id})))
            .await;
        assert_eq!(status, 202, "{job}");
        let id = job["id"].as_str().expect("id").to_owned();
        for _ in 0..1500 {
            let (_, job) = self.call("GET", &format!("/api/jobs/{id}"), None).await;
            if job["progress"]["bytes_done"].as_u64().unwrap_or(0) > 0 {
                assert_eq!(job["state"], "running", "{job}");
                return id;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("backup {id} never got going");
    }

    async fn wait(&self, id: &str) -> Value {
        for _ in 0..3000 {
            let (_, job) = self.call("GET", &format!("/api/jobs/{id}"), None).await;
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not end");
    }

    fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        self.child.wait().expect("wait")
    }
}

fn snapshot_objects(data: &Path) -> usize {
    std::fs::read_dir(data.join("repository/snapshots")).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_running_when_the_server_dies_reads_failed_and_the_source_backs_up_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("coffer-data");
    let src = dir.path().join("big");
    big_dir(&src, 1);

    let server = Server::start(&data).await;
    let source = server.source("big", &src).await;
    let job = server.backup_in_flight(source).await;
    server.kill9();

    let server = Server::start(&data).await;
    let (status, after) = server.call("GET", &format!("/api/jobs/{job}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(after["state"], "failed", "{after}");
    assert_eq!(after["error"]["code"], "interrupted", "{after}");
    assert!(after["finished_at"].is_string());
    let (_, page) = server.call("GET", "/api/backups", None).await;
    assert_eq!(
        page["total"], 0,
        "a killed backup leaves no snapshot: {page}"
    );
    assert_eq!(snapshot_objects(&data), 0);

    // The same source backs up again, and the snapshot is intact.
    let (status, again) = server
        .call("POST", "/api/backup", Some(json!({"source_id": source})))
        .await;
    assert_eq!(status, 202, "{again}");
    let done = server.wait(again["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let snap = done["result"]["snapshot_id"].as_str().expect("snapshot");
    let (_, verify) = server
        .call(
            "POST",
            &format!("/api/backups/{snap}/verify?read_data=true"),
            None,
        )
        .await;
    let verified = server.wait(verify["id"].as_str().expect("id")).await;
    assert_eq!(verified["result"]["ok"], true, "{verified}");

    // A graceful stop during a backup records it as interrupted before exiting.
    let other = dir.path().join("other");
    big_dir(&other, 100);
    let other_id = server.source("other", &other).await;
    let job = server.backup_in_flight(other_id).await;
    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let server = Server::start(&data).await;
    let (_, after) = server.call("GET", &format!("/api/jobs/{job}"), None).await;
    assert_eq!(after["state"], "failed", "{after}");
    assert_eq!(after["error"]["code"], "interrupted");
    assert!(
        after["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shut down")),
        "recorded by the stopping server, not by the next start: {after}"
    );
    let (_, page) = server.call("GET", "/api/backups", None).await;
    assert_eq!(page["total"], 1);
    assert!(server.terminate().success());
}

/// `coffer jobs ...` beside a running server: the list, and a log followed live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coffer_jobs_log_follows_a_server_s_job_to_its_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data: PathBuf = dir.path().join("coffer-data");
    let src = dir.path().join("big");
    big_dir(&src, 7);
    let server = Server::start(&data).await;
    let source = server.source("big", &src).await;
    let job = server.backup_in_flight(source).await;

    // Started while the job runs: it must wait for the end to exit.
    let follower = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("--data-dir")
        .arg(&data)
        .args(["jobs", "log", &job, "--follow"])
        .env("COFFER_LOG__LEVEL", "warn")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jobs log --follow");
    let done = server.wait(&job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("backup of `big` started (queued by admin at "),
        "{text}"
    );
    assert!(
        lines.last().expect("a line").contains("succeeded after "),
        "{text}"
    );

    // The whole log again, as JSON lines, the same as the API's.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env("COFFER_LOG__LEVEL", "warn")
            .env_remove("COFFER_CONFIG")
            .env_remove("COFFER_DATA_DIR")
            .output()
            .expect("coffer")
    };
    let json = run(&["jobs", "log", &job, "--json"]);
    assert!(json.status.success());
    let parsed: Vec<Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let (_, api) = server
        .call("GET", &format!("/api/jobs/{job}/log"), None)
        .await;
    assert_eq!(&parsed, api["lines"].as_array().expect("lines"));
    assert_eq!(parsed.len(), lines.len());

    let list = run(&[
        "jobs", "list", "--kind", "backup", "--source", "big", "--json",
    ]);
    assert!(list.status.success());
    let listed: Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(listed[0]["id"], job.as_str(), "{listed}");
    assert_eq!(listed[0]["state"], "succeeded");
    let table = run(&["jobs", "list", "--user", "admin"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&job) && table.contains("source big"),
        "{table}"
    );
    let bad = run(&["jobs", "log", "not-a-job"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a job id"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    server.terminate();
}
