//! The `coffer` binary as an operator meets it: exit codes, one-line errors, the server
//! starting on its defaults and stopping on SIGTERM.

use std::io::{Read, Write};

use sea_orm::ConnectionTrait as _;
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
        .stdin(Stdio::null());
    cmd
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A failure is one `error: ...` line: no panic, no backtrace.
fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = stderr_of(out);
    assert!(!out.status.success(), "must fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {stderr}");
    assert!(lines[0].contains(needle), "`{needle}` not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(!stderr.contains("Stack backtrace"), "{stderr}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A minimal HTTP GET, so these tests need no HTTP client crate.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn wait_for_health(child: &mut Child, port: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = http_get(port, "/api/health") {
            return answer;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("coffer serve exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "server did not answer within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn version_and_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = coffer(dir.path()).arg("--version").output().expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("coffer {}", env!("CARGO_PKG_VERSION"))
    );
    let out = coffer(dir.path()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "serve",
        "migrate",
        "openapi",
        "--config",
        "--data-dir",
        "--log-format",
    ] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
}

#[test]
fn openapi_prints_the_committed_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = coffer(dir.path()).arg("openapi").output().expect("run");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json"),
    )
    .expect("openapi/openapi.json");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        committed.trim_end(),
        "refresh with: cargo run -p coffer -- openapi > openapi/openapi.json"
    );
}

#[test]
fn a_bad_config_key_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.toml"), "[server]\nprot = 9000\n").expect("write");
    let out = coffer(dir.path())
        .args(["--config", "bad.toml", "migrate"])
        .output()
        .expect("run");
    assert_one_line_error(&out, "unknown configuration key `server.prot`");

    let out = coffer(dir.path())
        .env("COFFER_QUOTA__MAX_STORAGE", "1")
        .arg("migrate")
        .output()
        .expect("run");
    assert_one_line_error(&out, "quota.max_storage");
}

#[test]
fn an_unreachable_database_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = coffer(dir.path())
        .env(
            "COFFER_DATABASE__URL",
            "postgres://coffer:hunter2@127.0.0.1:1/coffer",
        )
        .env("COFFER_DATABASE__CONNECT_TIMEOUT_SECS", "2")
        .args(["serve", "--port", "0"])
        .output()
        .expect("run");
    assert_one_line_error(
        &out,
        "cannot connect to database postgres://coffer:***@127.0.0.1:1/coffer",
    );
    assert!(!stderr_of(&out).contains("hunter2"), "password leaked");
}

#[test]
fn a_port_in_use_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = coffer(dir.path())
        .args(["serve", "--port", &port.to_string()])
        .output()
        .expect("run");
    assert_one_line_error(
        &out,
        &format!("cannot listen on 127.0.0.1:{port}: address already in use"),
    );
}

#[test]
fn migrate_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let out = coffer(dir.path()).arg("migrate").output().expect("run");
        assert!(out.status.success(), "{}", stderr_of(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("up to date"), "{stdout}");
    }
    assert!(dir.path().join("coffer-data/coffer.db").is_file());
}

/// A log that goes to a file or a pipe (not a terminal) holds plain lines, no colour
/// escape codes; `--log-format json` is one JSON object per line, as before.
#[test]
fn logs_are_plain_text_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = coffer(dir.path()).arg("migrate").output().expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("database schema migrated"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a redirected log: {stderr:?}"
    );
    let json_dir = tempfile::tempdir().expect("tempdir");
    let out = coffer(json_dir.path())
        .args(["--log-format", "json", "migrate"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    let line = stderr
        .lines()
        .find(|l| l.contains("database schema migrated"))
        .unwrap_or_else(|| panic!("no migration line: {stderr}"));
    let parsed: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
    assert_eq!(parsed["level"], "INFO", "{line}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// The README's run command, as a new user runs it: no configuration, defaults under
/// ./coffer-data, health answers, SIGTERM stops it cleanly.
#[cfg(unix)]
#[test]
fn serve_on_defaults_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = coffer(dir.path())
        .args(["serve", "--port", &port.to_string(), "--log-format", "json"])
        .env_remove("COFFER_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer serve");
    let (status, body) = wait_for_health(&mut child, port);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    let (status, _) = http_get(port, "/swagger").expect("swagger");
    assert_eq!(status, 200);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "graceful stop exits 0: {stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
    // JSON logs: every line is one JSON object.
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
    }
    assert!(dir.path().join("coffer-data/coffer.db").is_file());
    assert!(dir.path().join("coffer-data/repository").is_dir());

    // No default password: a generated one, shown once on the console and kept in a
    // file only its owner can read; never in the logs.
    let password_file = dir.path().join("coffer-data/initial-admin-password");
    let password = std::fs::read_to_string(&password_file).expect("initial-admin-password");
    let password = password.trim();
    assert!(password.len() >= 20, "a strong generated password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&password_file)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(password),
        "printed once on the console: {stdout}"
    );
    assert!(
        !stderr.contains(password),
        "the password must not reach the logs"
    );
}

fn run_ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = coffer(dir);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("spawn");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "coffer {args:?}: {}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn users_are_managed_from_the_cli_as_the_local_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_ok(
        dir.path(),
        &["users", "add", "erin", "--role", "operator"],
        None,
    );
    assert!(out.contains("created user `erin`"), "{out}");
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password is printed once");
    assert!(generated.len() >= 20);
    run_ok(
        dir.path(),
        &[
            "users",
            "add",
            "frank",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("frank's long passphrase\n"),
    );
    run_ok(dir.path(), &["users", "set-role", "frank", "admin"], None);
    run_ok(dir.path(), &["users", "disable", "erin"], None);
    run_ok(
        dir.path(),
        &["users", "reset-password", "frank", "--password-stdin"],
        Some("another long passphrase\n"),
    );
    let list = run_ok(dir.path(), &["users", "list", "--json"], None);
    let list = list.replace(char::is_whitespace, "");
    assert!(
        list.contains(r#""username":"erin""#) && list.contains(r#""is_active":false"#),
        "{list}"
    );
    assert!(
        list.contains(r#""username":"frank""#) && list.contains(r#""role":"admin""#),
        "{list}"
    );

    let weak = coffer(dir.path())
        .args([
            "users",
            "add",
            "gina",
            "--role",
            "viewer",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(b"short\n")?;
            c.wait_with_output()
        })
        .expect("run");
    assert_one_line_error(&weak, "at least 12 characters");

    // Every change was audited as the local administrator, and the chain is intact.
    let out = run_ok(dir.path(), &["audit", "verify"], None);
    assert!(out.contains("audit trail intact: 5 rows verified"), "{out}");
}

/// `coffer tokens`: created for a user with the secret printed once (and only its hash
/// kept), listed without secrets, refused above the owner's role, revoked; all audited.
#[test]
fn tokens_are_managed_from_the_cli_as_the_local_admin() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_ok(
        dir.path(),
        &["users", "add", "ci-owner", "--role", "operator"],
        None,
    );
    let out = run_ok(
        dir.path(),
        &[
            "tokens",
            "create",
            "--user",
            "ci-owner",
            "--name",
            "nightly",
            "--expires-days",
            "30",
            "--role",
            "viewer",
        ],
        None,
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("the secret is printed once")
        .to_owned();
    assert!(
        secret.starts_with("coffer_pat_") && secret.len() == 75,
        "{out}"
    );
    assert!(out.contains("(viewer, expires "), "{out}");
    let never = run_ok(
        dir.path(),
        &[
            "tokens",
            "create",
            "--user",
            "ci-owner",
            "--name",
            "provisioning",
            "--no-expiry",
        ],
        None,
    );
    assert!(never.contains("never expires"), "{never}");

    let above = coffer(dir.path())
        .args([
            "tokens",
            "create",
            "--user",
            "ci-owner",
            "--name",
            "x",
            "--no-expiry",
            "--role",
            "admin",
        ])
        .output()
        .expect("run");
    assert_one_line_error(&above, "above its owner's role");
    let no_expiry_given = coffer(dir.path())
        .args(["tokens", "create", "--user", "ci-owner", "--name", "x"])
        .output()
        .expect("run");
    assert!(
        !no_expiry_given.status.success(),
        "an expiry or --no-expiry is required"
    );

    let list = run_ok(dir.path(), &["tokens", "list", "--json"], None);
    assert!(!list.contains(&secret), "no secret in a listing: {list}");
    let compact = list.replace(char::is_whitespace, "");
    assert!(
        compact.contains(r#""name":"nightly""#) && compact.contains(r#""role":"viewer""#),
        "{list}"
    );
    let table = run_ok(dir.path(), &["tokens", "list", "--user", "ci-owner"], None);
    assert!(
        table.contains("provisioning") && table.contains("never"),
        "{table}"
    );

    let out = run_ok(dir.path(), &["tokens", "revoke", "1"], None);
    assert!(out.contains(r#"revoked token 1 "nightly""#), "{out}");
    let again = coffer(dir.path())
        .args(["tokens", "revoke", "1"])
        .output()
        .expect("run");
    assert_one_line_error(&again, "no token with id 1");
    let list = run_ok(dir.path(), &["tokens", "list", "--json"], None);
    assert!(!list.contains("nightly"), "{list}");

    // Nothing in the data directory holds the secret; every change is in the trail.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret",
            entry.display()
        );
    }
    let out = run_ok(dir.path(), &["audit", "verify"], None);
    assert!(out.contains("audit trail intact: 5 rows verified"), "{out}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn audit_verify_finds_a_row_edited_in_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["hank", "ivy", "jack"] {
        run_ok(
            dir.path(),
            &["users", "add", name, "--role", "viewer"],
            None,
        );
    }
    assert!(run_ok(dir.path(), &["audit", "verify"], None).contains("3 rows verified"));

    let url = format!(
        "sqlite://{}",
        dir.path().join("coffer-data/coffer.db").display()
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(url))
            .await
            .expect("connect");
        db.connection()
            .execute_unprepared("UPDATE audit_logs SET username = 'someone-else' WHERE id = 2")
            .await
            .expect("tamper");
        db.close().await.expect("close");
    });
    let out = coffer(dir.path())
        .args(["audit", "verify"])
        .output()
        .expect("run");
    assert_one_line_error(&out, "audit trail broken at row 2");
}

/// Someone who can write the database but cannot read the audit key rewrites the whole
/// table (one row edited, every hash after it re-computed, as the unkeyed chain allowed),
/// and later cuts the tail: the first is found by `audit verify`, the second by `audit
/// verify --head` with a head exported before.
#[test]
fn audit_verify_finds_a_rewritten_table_and_a_tail_cut_after_an_exported_head() {
    use coffer_domain::audit::{AuditChain, chain_hash};

    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["hank", "ivy", "jack"] {
        run_ok(
            dir.path(),
            &["users", "add", name, "--role", "viewer"],
            None,
        );
    }
    let head = run_ok(dir.path(), &["audit", "head"], None);
    let head = head.trim();
    assert!(head.starts_with("4:k1:"), "{head}");
    run_ok(
        dir.path(),
        &["users", "add", "kate", "--role", "viewer"],
        None,
    );
    let verified = run_ok(dir.path(), &["audit", "verify", "--head", head], None);
    assert!(verified.contains("5 rows verified"), "{verified}");

    let url = format!(
        "sqlite://{}",
        dir.path().join("coffer-data/coffer.db").display()
    );
    let sql = |statements: Vec<String>| {
        let url = url.clone();
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async move {
                let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(url))
                    .await
                    .expect("connect");
                for statement in statements {
                    db.connection()
                        .execute_unprepared(&statement)
                        .await
                        .expect("tamper");
                }
                db.close().await.expect("close");
            });
    };
    // The tail cut: rows from the head on are gone. The rest verifies on its own; the
    // head proves the cut.
    sql(vec!["DELETE FROM audit_logs WHERE id >= 4".into()]);
    assert!(run_ok(dir.path(), &["audit", "verify"], None).contains("3 rows verified"));
    let out = coffer(dir.path())
        .args(["audit", "verify", "--head", head])
        .output()
        .expect("run");
    assert_one_line_error(&out, "rows were cut");

    // The rewrite: row 2 names someone else, and every hash is re-computed.
    let rows = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(url.clone()))
                .await
                .expect("connect");
            // Reading needs no key; the chain given is never used to seal here.
            let rows = coffer_domain::ports::AuditRepository::scan(
                &db.audit(AuditChain::new([0; 32])),
                0,
                100,
            )
            .await
            .expect("scan");
            db.close().await.expect("close");
            rows
        });
    let mut prev = String::new();
    let mut statements = Vec::new();
    for mut row in rows {
        if row.id == 2 {
            row.entry.username = "someone-else".into();
        }
        let hash = chain_hash(&prev, row.timestamp, &row.entry);
        statements.push(format!(
            "UPDATE audit_logs SET username = '{}', prev_hash = '{prev}', row_hash = '{hash}' WHERE id = {}",
            row.entry.username, row.id
        ));
        prev = hash;
    }
    sql(statements);
    let out = coffer(dir.path())
        .args(["audit", "verify"])
        .output()
        .expect("run");
    assert_one_line_error(&out, "the keyed part of the trail was cut");
}
