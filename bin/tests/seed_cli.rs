//! `coffer dev seed` (the benchmark seeder): the catalog it leaves is consistent — exact
//! counters, an audit chain that verifies, a stale source — and it refuses a catalog that
//! looks in use unless forced.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sea_orm::{ConnectionTrait as _, Statement};

fn coffer(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .env_remove("COFFER_DATABASE__URL")
        .stdin(Stdio::null());
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

/// One integer from the catalog.
fn query_i64(dir: &Path, sql: &str) -> i64 {
    let url = format!("sqlite://{}", dir.join("coffer-data/coffer.db").display());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(url))
            .await
            .expect("connect");
        let conn = db.connection();
        let row = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect("query")
            .expect("a row");
        let value: i64 = row.try_get_by_index(0).expect("an integer");
        db.close().await.expect("close");
        value
    })
}

#[test]
fn seeds_a_consistent_catalog_and_refuses_to_reseed_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = run_ok(
        d,
        &[
            "dev",
            "seed",
            "--snapshots",
            "300",
            "--audit-rows",
            "2500",
            "--sources",
            "4",
        ],
    );
    assert!(out.contains("seeded 300 snapshots"), "{out}");
    assert!(out.contains("2500 audit rows"), "{out}");
    assert!(run_ok(d, &["audit", "verify"]).contains("2500 rows verified"));

    let counted = |d: &Path| {
        (
            query_i64(
                d,
                "SELECT SUM(value) FROM counters WHERE name LIKE 'backups.count.%'",
            ),
            query_i64(
                d,
                "SELECT value FROM counters WHERE name = 'backups.logical_bytes'",
            ),
            query_i64(
                d,
                "SELECT value FROM counters WHERE name = 'backups.stored_bytes_added'",
            ),
        )
    };
    let actual = |d: &Path| {
        (
            query_i64(d, "SELECT COUNT(*) FROM backups"),
            query_i64(d, "SELECT SUM(size) FROM backups"),
            query_i64(d, "SELECT SUM(stored_bytes_added) FROM backups"),
        )
    };
    assert_eq!(counted(d), actual(d));
    assert_eq!(actual(d).0, 300);
    assert_eq!(
        query_i64(d, "SELECT COUNT(*) FROM backups WHERE status = 'partial'")
            + query_i64(d, "SELECT COUNT(*) FROM backups WHERE status = 'ok'"),
        300
    );
    assert_eq!(query_i64(d, "SELECT COUNT(*) FROM sources"), 4);
    // The last source stopped half-way: its newest snapshot is months older than the
    // others'.
    let newest_of = |name: &str| {
        query_i64(
            d,
            &format!(
                "SELECT CAST(julianday(MAX(created_at)) AS INTEGER) FROM backups \
                 WHERE source_name = '{name}'"
            ),
        )
    };
    assert!(newest_of("bench-01") - newest_of("bench-04") > 150);

    // A catalog with snapshots is not seeded again without --force.
    let out = run(
        d,
        &["dev", "seed", "--snapshots", "10", "--audit-rows", "10"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refusing to seed"), "{stderr}");
    assert_eq!(actual(d).0, 300);

    // With --force it adds to what is there, sources reused, chain continued.
    run_ok(
        d,
        &[
            "dev",
            "seed",
            "--snapshots",
            "10",
            "--audit-rows",
            "10",
            "--sources",
            "4",
            "--force",
        ],
    );
    assert_eq!(query_i64(d, "SELECT COUNT(*) FROM sources"), 4);
    assert_eq!(actual(d).0, 310);
    assert_eq!(counted(d), actual(d));
    assert!(run_ok(d, &["audit", "verify"]).contains("2510 rows verified"));
}

#[test]
fn refuses_a_catalog_with_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    run_ok(d, &["users", "add", "bob", "--role", "viewer"]);
    let out = run(d, &["dev", "seed", "--snapshots", "5", "--audit-rows", "5"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("besides the bootstrap `admin`"), "{stderr}");
    assert_eq!(query_i64(d, "SELECT COUNT(*) FROM backups"), 0);
}

#[test]
fn is_hidden_from_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    let help = run_ok(dir.path(), &["--help"]);
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("dev ")),
        "{help}"
    );
}
