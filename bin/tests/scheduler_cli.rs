//! The scheduler as an operator meets it: `[scheduler]` settings checked at start, next and
//! last runs in `coffer sources list`, pausing and resuming a schedule, and a server that
//! plans every scheduled source as soon as it starts.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn coffer(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    coffer(dir).args(args).output().expect("run coffer")
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "coffer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `coffer sources list --json`, as JSON.
fn sources(dir: &Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&run_ok(dir, &["sources", "list", "--json"])).expect("JSON list")
}

fn add_source(dir: &Path, name: &str, schedule: &str) {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("source dir");
    std::fs::write(data.join("a.txt"), "hello").expect("a file");
    let path = data.to_string_lossy().into_owned();
    run_ok(
        dir,
        &["sources", "add", name, &path, "--schedule", schedule],
    );
}

#[test]
fn a_bad_scheduler_setting_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, value, needle) in [
        (
            "COFFER_SCHEDULER__PRUNE_SCHEDULE",
            "nightly",
            "scheduler.prune_schedule",
        ),
        (
            "COFFER_SCHEDULER__CHECK_SHARE_PERCENT",
            "0",
            "scheduler.check_share_percent",
        ),
    ] {
        let out = coffer(dir.path())
            .args(["sources", "list"])
            .env(key, value)
            .output()
            .expect("run coffer");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}={value} must fail");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "one error line: {stderr}");
        assert!(errors[0].contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn schedules_are_paused_and_resumed_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    add_source(dir.path(), "docs", "0 3 * * *");
    let list = sources(dir.path());
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["schedule"], "0 3 * * *");
    assert_eq!(list[0]["enabled"], true);
    // Planned by the server's scheduler only; the CLI alone never ran one.
    assert_eq!(list[0]["last_run_at"], serde_json::Value::Null);

    let out = run_ok(dir.path(), &["sources", "disable", "docs"]);
    assert!(out.contains("paused"), "{out}");
    assert_eq!(sources(dir.path())[0]["enabled"], false);
    let table = run_ok(dir.path(), &["sources", "list"]);
    assert!(table.contains("next run (UTC)"), "{table}");
    assert!(table.contains("paused"), "{table}");

    let out = run_ok(dir.path(), &["sources", "enable", "docs"]);
    assert!(out.contains("resumed"), "{out}");
    assert_eq!(sources(dir.path())[0]["enabled"], true);

    let out = run(dir.path(), &["sources", "disable", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(
        stream,
        "GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).is_ok() && response.starts_with("HTTP/1.1 200")
}

/// Polls until `done` holds (the server works at its own pace), failing after 30 s.
fn wait_until(child: &mut Child, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("coffer serve exited early with {status} while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(unix)]
#[test]
fn the_server_plans_scheduled_sources_at_start_and_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    add_source(dir.path(), "daily", "0 3 * * *");
    add_source(dir.path(), "paused", "0 4 * * *");
    run_ok(dir.path(), &["sources", "disable", "paused"]);
    let port = free_port();
    let mut child = coffer(dir.path())
        .args(["serve", "--port", &port.to_string()])
        .env("COFFER_ADMIN_PASSWORD", "a-long-test-password-42")
        .spawn()
        .expect("spawn coffer serve");
    wait_until(&mut child, "health", || healthy(port));
    wait_until(&mut child, "a planned next run", || {
        sources(dir.path())
            .iter()
            .any(|s| s["name"] == "daily" && s["next_run_at"].is_string())
    });
    let list = sources(dir.path());
    let daily = list.iter().find(|s| s["name"] == "daily").expect("daily");
    let next = chrono::DateTime::parse_from_rfc3339(daily["next_run_at"].as_str().expect("next"))
        .expect("an RFC 3339 time");
    assert_eq!(next.format("%H:%M:%S").to_string(), "03:00:00");
    let paused = list.iter().find(|s| s["name"] == "paused").expect("paused");
    assert_eq!(paused["next_run_at"], serde_json::Value::Null, "{paused}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "graceful stop exits 0: {stderr}");
    assert!(stderr.contains("scheduler started"), "{stderr}");
    assert!(stderr.contains("scheduler stopped"), "{stderr}");
}
