//! The backup engine through the `coffer` command, on a real data directory: round
//! trips, crash safety under `kill -9`, damage detection, keys and catalog recovery.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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
        "coffer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(data: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(data, args)).expect("JSON output")
}

/// `coffer snapshots --json`: the API's page of snapshots; its items.
fn snapshots(data: &Path) -> serde_json::Value {
    let page = json(data, &["snapshots", "--json"]);
    let items = page["items"].clone();
    assert_eq!(
        page["total"].as_u64(),
        items.as_array().map(|a| a.len() as u64),
        "{page}"
    );
    items
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn source_tree(root: &Path, files: usize, big_mib: usize) {
    std::fs::create_dir_all(root.join("docs/empty")).expect("mkdir");
    for i in 0..files {
        let dir = root.join(format!("docs/d{}", i % 17));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("f{i}.txt")),
            format!("document {i}\n").repeat(1 + i % 50),
        )
        .expect("write");
    }
    std::fs::write(root.join("big.bin"), noise(big_mib << 20, 11)).expect("write");
    std::os::unix::fs::symlink("docs/d1", root.join("link")).expect("symlink");
}

/// `diff -r --no-dereference` exit status: the trees are equal.
fn same_tree(a: &Path, b: &Path) -> bool {
    Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .status()
        .expect("diff")
        .success()
}

struct Fixture {
    _dir: tempfile::TempDir,
    src: PathBuf,
    data: PathBuf,
    out: PathBuf,
}

fn fixture(files: usize, big_mib: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    source_tree(&src, files, big_mib);
    Fixture {
        src,
        data: dir.path().join("coffer-data"),
        out: dir.path().join("out"),
        _dir: dir,
    }
}

#[test]
fn backup_list_browse_restore_verify_round_trip() {
    let f = fixture(300, 3);
    let src = f.src.to_str().expect("utf8");
    let snap = json(&f.data, &["backup", src, "--json"]);
    assert_eq!(snap["status"], "ok");
    assert_eq!(snap["encrypted"], true);
    assert_eq!(snap["file_count"], 301);
    let id = snap["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(snap["checksum"], snap["id"]);

    let second = json(&f.data, &["backup", src, "--json"]);
    assert_eq!(second["bytes_added"], 0);
    assert_eq!(second["parent_id"], id.as_str());

    let list = snapshots(&f.data);
    assert_eq!(list.as_array().expect("list").len(), 2);
    assert_eq!(list[0]["id"], second["id"], "newest first");

    let ls = json(&f.data, &["ls", &id[..12], "docs", "--json"]);
    assert_eq!(
        (&ls["snapshot_id"], &ls["path"]),
        (&snap["id"], &"docs".into())
    );
    assert!(
        ls["items"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["name"] == "empty" && e["type"] == "dir")
    );
    // `ls` is audited like browsing over the API: names reveal content.
    std::fs::create_dir_all(&f.out).expect("output directory");
    let trail = f.out.join("browsed.csv");
    ok(
        &f.data,
        &[
            "report",
            "audit-csv",
            "--output",
            trail.to_str().expect("utf8"),
            "--action",
            "backup_browse",
        ],
    );
    let trail = std::fs::read_to_string(&trail).expect("the audit CSV");
    assert!(
        trail.contains(&format!("snapshot:{id}")) && trail.contains("/docs"),
        "{trail}"
    );

    let out = f.out.join("all");
    ok(&f.data, &["restore", "latest", out.to_str().expect("utf8")]);
    assert!(same_tree(&f.src, &out), "restored tree differs");
    let part = f.out.join("part");
    ok(
        &f.data,
        &[
            "restore",
            &id,
            part.to_str().expect("utf8"),
            "--path",
            "docs/d3",
        ],
    );
    assert!(same_tree(&f.src.join("docs/d3"), &part));

    // Refused: a non-empty target.
    let again = run(&f.data, &["restore", "latest", out.to_str().expect("utf8")]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    let verified = json(&f.data, &["verify", "--read-data", "--json"]);
    assert!(
        verified
            .as_array()
            .expect("list")
            .iter()
            .all(|r| r["ok"] == true)
    );
    let list = snapshots(&f.data);
    assert!(
        list[0]["verify_result"]
            .as_str()
            .expect("recorded")
            .starts_with("ok")
    );

    // Nothing readable in storage, on a real disk too.
    let marker = b"document 7\n";
    for entry in walk(&f.data.join("repository")) {
        let bytes = std::fs::read(&entry).expect("read");
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn damage_is_detected_and_named() {
    let f = fixture(20, 3);
    let snap = json(
        &f.data,
        &["backup", f.src.to_str().expect("utf8"), "--json"],
    );
    let id = snap["id"].as_str().expect("id").to_owned();
    // The largest pack holds big.bin's chunks; flip one byte in its middle.
    let pack = walk(&f.data.join("repository/data"))
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).expect("meta").len())
        .expect("a pack");
    let mut bytes = std::fs::read(&pack).expect("read");
    let mid = bytes.len() / 3;
    bytes[mid] ^= 0x20;
    std::fs::write(&pack, bytes).expect("write");

    let out = run(&f.data, &["verify", &id, "--read-data"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DAMAGED") && text.contains("damaged file: big.bin"),
        "{text}"
    );

    let target = f.out.join("r");
    let out = run(&f.data, &["restore", &id, target.to_str().expect("utf8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("big.bin") && err.lines().filter(|l| l.starts_with("error:")).count() == 1,
        "{err}"
    );
    assert!(!target.join("big.bin").exists());
    let list = snapshots(&f.data);
    assert!(
        list[0]["verify_result"]
            .as_str()
            .expect("recorded")
            .starts_with("damaged")
    );
}

/// Pack files in the repository of `data` (what a backup stores as it goes).
fn stored_packs(data: &Path) -> usize {
    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => files(&e.path()),
                    Ok(_) => 1,
                    Err(_) => 0,
                })
                .sum()
        })
    }
    files(&data.join("repository").join("data"))
}

/// Kills `child` (`SIGKILL`, as `kill -9`) once `ready()` holds (asked every 2 ms) and
/// `extra` more has passed — or once it ended or `limit` passed — and reaps it.
fn kill_when(mut child: Child, limit: Duration, extra: Duration, ready: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() && started.elapsed() < limit {
        if ready() {
            std::thread::sleep(extra);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn kill_nine_at_random_moments_never_hurts_earlier_snapshots() {
    let f = fixture(200, 48);
    let src = f.src.to_str().expect("utf8");
    let first = json(&f.data, &["backup", src, "--json"]);
    let first_id = first["id"].as_str().expect("id").to_owned();
    let mut seed = 0x9e37_79b9_u64;
    for round in 0..5u64 {
        // New data each round, so every backup has real work to interrupt.
        std::fs::write(
            f.src.join(format!("round{round}.bin")),
            noise(24 << 20, round + 100),
        )
        .expect("write");
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        // Killed once 1 to 4 of the round's ~6 new packs are stored, plus up to 30 ms:
        // a moment inside the backup however fast the build and the machine are (a
        // fixed delay of up to a second missed every backup once they got faster).
        let wanted = 1 + usize::from(u8::try_from((seed >> 33) % 4).expect("< 4"));
        let extra = Duration::from_millis((seed >> 40) % 30);
        let before = stored_packs(&f.data);
        let child = coffer(&f.data)
            .args(["backup", src, "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        kill_when(child, Duration::from_mins(2), extra, || {
            stored_packs(&f.data) >= before + wanted
        });

        // Earlier snapshots still verify and restore; the next backup works.
        ok(&f.data, &["verify"]);
        let target = f.out.join(format!("round{round}"));
        ok(
            &f.data,
            &["restore", &first_id, target.to_str().expect("utf8")],
        );
        assert!(target.join("big.bin").is_file());
    }
    // At least one kill landed mid-backup (otherwise this test proved nothing).
    let kept = snapshots(&f.data).as_array().expect("list").len();
    assert!(kept < 6, "every kill came too late: {kept} snapshots");
    let last = json(&f.data, &["backup", src, "--json"]);
    assert_eq!(last["status"], "ok");
    let target = f.out.join("final");
    ok(
        &f.data,
        &["restore", "latest", target.to_str().expect("utf8")],
    );
    assert!(same_tree(&f.src, &target));
    ok(&f.data, &["verify", "--read-data"]);
}

/// Runs `coffer ARGS`, killing it if it takes longer than `limit`; returns its output and
/// how long it took.
fn run_within(data: &Path, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = std::time::Instant::now();
    let mut child = coffer(data)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (out, started.elapsed())
}

/// The names in `dir` (none when it is missing).
fn entries(dir: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(dir).map_or_else(
        |_| std::collections::BTreeSet::new(),
        |d| d.filter_map(Result::ok).map(|e| e.file_name()).collect(),
    )
}

#[test]
fn a_prune_killed_at_random_moments_never_makes_the_next_command_wait() {
    let f = fixture(600, 8);
    let src = f.src.to_str().expect("utf8");
    ok(&f.data, &["backup", src]);
    // Garbage for the prune: a second snapshot, then only the newest kept.
    std::fs::write(f.src.join("extra.bin"), noise(16 << 20, 7)).expect("write");
    ok(&f.data, &["backup", src]);
    std::fs::remove_file(f.src.join("extra.bin")).expect("remove");
    ok(&f.data, &["backup", src]);
    let locks = f.data.join("repository/locks");
    let mut seed = 0x2545_f491_u64;
    let mut left_behind = 0;
    for round in 0..6u64 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        // Every other round a backup runs meanwhile: the prune then waits for it, holding
        // its lock, and dies waiting.
        let backup = (round % 2 == 0).then(|| {
            std::fs::write(f.src.join("growing.bin"), noise(48 << 20, round + 50)).expect("write");
            let child = coffer(&f.data)
                .args(["backup", src])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn backup");
            std::thread::sleep(Duration::from_millis(300));
            child
        });
        // Killed once the prune's own lock is there (a name the directory did not hold
        // before), plus up to 60 ms, or once it ended: a fixed delay from the start
        // missed the lock in every round once backups and prunes wrote faster.
        let held_before = entries(&locks);
        let child = coffer(&f.data)
            .args(["prune"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let extra = Duration::from_millis((seed >> 33) % 60);
        kill_when(child, Duration::from_mins(1), extra, || {
            !entries(&locks).is_subset(&held_before)
        });
        if let Some(mut backup) = backup {
            assert!(
                backup.wait().expect("backup").success(),
                "round {round}: backup"
            );
        }
        if std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_some()) {
            left_behind += 1;
        }
        // The dead prune's lock must not hold anybody up: its process is gone.
        let (out, took) = run_within(&f.data, &["verify"], Duration::from_mins(1));
        assert!(
            out.status.success(),
            "round {round}: verify failed after {took:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            took < Duration::from_secs(15),
            "round {round}: verify waited {took:?} for a dead process's lock: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // At least one kill landed while the prune held its lock (else this proved nothing).
    assert!(left_behind > 0, "no kill left a lock behind");
    // The next prune runs and removes what the dead ones left.
    ok(&f.data, &["prune"]);
    assert!(
        std::fs::read_dir(&locks).is_ok_and(|mut d| d.next().is_none()),
        "no lock is left"
    );
    ok(&f.data, &["verify", "--read-data"]);
}

#[test]
fn keys_export_rotate_and_refuse_what_they_must() {
    let f = fixture(10, 1);
    let src = f.src.to_str().expect("utf8");
    ok(&f.data, &["backup", src]);
    let key_file = f.data.join("keys/master.key");
    let mode = std::fs::metadata(&key_file)
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let exported = ok(&f.data, &["key", "export"]);
    let key = std::fs::read_to_string(&key_file).expect("key");
    assert!(exported.contains(key.trim()), "{exported}");

    ok(&f.data, &["key", "rotate"]);
    let rotated = std::fs::read_to_string(&key_file).expect("key");
    assert_ne!(rotated, key);
    let target = f.out.join("after-rotate");
    ok(
        &f.data,
        &["restore", "latest", target.to_str().expect("utf8")],
    );
    assert!(same_tree(&f.src, &target));

    // Looser permissions: refuse to start.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = run(&f.data, &["snapshots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    // The old key no longer opens the repository: a clear error, nothing written.
    std::fs::write(&key_file, &key).expect("write old key");
    let before = walk(&f.data.join("repository")).len();
    let out = run(&f.data, &["backup", src]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not open the repository"), "{err}");
    assert_eq!(
        walk(&f.data.join("repository")).len(),
        before,
        "nothing written"
    );

    // A missing key: never a new one silently.
    std::fs::remove_file(&key_file).expect("rm key");
    let out = run(&f.data, &["snapshots"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("master key that is not at"));
    assert!(
        !key_file.exists(),
        "no new key made for an existing repository"
    );
}

/// `coffer key rotate` killed at each of its steps (the test build's crash points end the
/// process on the spot): the next command settles the rotation — rolled back while the
/// repository still needs the old key, finished once it needs the new one — and the
/// backups restore with the key file in place.
#[test]
fn a_key_rotation_killed_at_any_step_is_settled_by_the_next_command() {
    let f = fixture(10, 1);
    let src = f.src.to_str().expect("utf8");
    ok(&f.data, &["backup", src]);
    let key_file = f.data.join("keys/master.key");
    let next = f.data.join("keys/master.key.new");
    for (step, settled) in [
        ("key-rotate:new-key", Some("rolled back")),
        ("key-rotate:rewrapped", Some("finished")),
        ("key-rotate:renamed", None),
    ] {
        let before = std::fs::read_to_string(&key_file).expect("key");
        let out = coffer(&f.data)
            .args(["key", "rotate"])
            .env("COFFER_CRASH_AT", step)
            .output()
            .expect("run coffer");
        assert!(
            !out.status.success() && out.status.code().is_none(),
            "{step}: the rotation was meant to die: {out:?}"
        );
        assert_eq!(
            next.exists(),
            settled.is_some(),
            "{step}: the new key's file"
        );

        let out = run(&f.data, &["snapshots"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{step}: {stderr}");
        match settled {
            Some(word) => assert!(stderr.contains(word), "{step}: {stderr}"),
            None => assert!(!stderr.contains("interrupted"), "{step}: {stderr}"),
        }
        assert!(!next.exists(), "{step}: nothing left beside the key");
        let after = std::fs::read_to_string(&key_file).expect("key");
        assert_eq!(after == before, step == "key-rotate:new-key", "{step}");
        let target = f.out.join(step.replace(':', "-"));
        ok(
            &f.data,
            &["restore", "latest", target.to_str().expect("utf8")],
        );
        assert!(same_tree(&f.src, &target), "{step}");
    }
    ok(&f.data, &["key", "rotate"]);
    ok(&f.data, &["verify", "--read-data"]);
}

#[test]
fn the_catalog_is_rebuilt_from_storage_and_the_key_alone() {
    let f = fixture(10, 1);
    let src = f.src.to_str().expect("utf8");
    let a = json(&f.data, &["backup", src, "--json"]);
    let b = json(&f.data, &["backup", src, "--json"]);
    for file in ["coffer.db", "coffer.db-wal", "coffer.db-shm"] {
        let _ = std::fs::remove_file(f.data.join(file));
    }
    assert_eq!(snapshots(&f.data).as_array().expect("list").len(), 0);
    let out = ok(&f.data, &["catalog", "rebuild"]);
    assert!(out.contains("2 snapshot(s) in storage; 2 added"), "{out}");
    let list = snapshots(&f.data);
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [b["id"].as_str().expect("b"), a["id"].as_str().expect("a")]
    );
    let target = f.out.join("r");
    ok(
        &f.data,
        &["restore", "latest", target.to_str().expect("utf8")],
    );
    assert!(same_tree(&f.src, &target));
}

#[test]
fn the_cli_works_beside_a_running_server() {
    let f = fixture(50, 2);
    // Two backups of a new path at once on a fresh data directory: migrations, key and
    // repository creation and the new source must all survive the race.
    let spawn_backup = || {
        coffer(&f.data)
            .args(["backup", f.src.to_str().expect("utf8"), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("backup")
    };
    let (a, b) = (spawn_backup(), spawn_backup());
    for out in [
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    ] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut server = coffer(&f.data)
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    std::thread::sleep(Duration::from_millis(800));
    let src = f.src.to_str().expect("utf8");
    // Two backups at once, beside the server, on one data directory.
    let spawn = || {
        coffer(&f.data)
            .args(["backup", src, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("backup")
    };
    let (a, b) = (spawn(), spawn());
    let a = a.wait_with_output().expect("a");
    let b = b.wait_with_output().expect("b");
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    ok(&f.data, &["verify", "--read-data"]);
    let health = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let status = server.wait().expect("wait");
    assert!(health, "the server kept running");
    assert!(status.success());
}
