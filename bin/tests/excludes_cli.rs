//! What a source backs up, from the command line: paths as people type them (`./docs`),
//! exclude patterns and switches on `sources add` and `sources set-excludes`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn coffer(data: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env_remove("COFFER_CONFIG")
        .env_remove("COFFER_DATA_DIR")
        .current_dir(cwd)
        .stdin(Stdio::null());
    cmd
}

fn run(data: &Path, cwd: &Path, args: &[&str]) -> Output {
    coffer(data, cwd).args(args).output().expect("run coffer")
}

fn ok(data: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = run(data, cwd, args);
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(data: &Path, cwd: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(data, cwd, args)).expect("JSON output")
}

/// Names at the root of the latest snapshot of `source`.
fn names(data: &Path, cwd: &Path, snapshot: &str) -> Vec<String> {
    let page = json(data, cwd, &["ls", snapshot, "--json"]);
    let mut names: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn relative_paths_are_taken_from_the_working_directory_and_stored_canonical() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(root.path()).expect("canonical");
    let data = root.join("data");
    let work = root.join("work");
    std::fs::create_dir_all(work.join("docs/sub")).expect("mkdir");
    std::fs::write(work.join("docs/a.txt"), b"a").expect("write");
    std::fs::write(work.join("docs/sub/b.txt"), b"b").expect("write");
    // A symlink in the typed path is resolved in what is stored.
    std::os::unix::fs::symlink("docs", work.join("alias")).expect("symlink");

    let out = ok(&data, &work.join("docs/sub"), &["backup", "../../alias/."]);
    let canonical = work.join("docs");
    assert!(
        out.contains(&format!(
            "../../alias/. is {}: source `{}`",
            canonical.display(),
            canonical.display()
        )),
        "{out}"
    );
    let sources = json(&data, &work, &["sources", "list", "--json"]);
    assert_eq!(
        sources[0]["path"],
        canonical.display().to_string(),
        "{sources}"
    );

    // The same directory typed otherwise is the same source.
    ok(&data, &work, &["backup", "./docs"]);
    let sources = json(&data, &work, &["sources", "list", "--json"]);
    assert_eq!(sources.as_array().map(Vec::len), Some(1), "{sources}");

    let out = ok(&data, &work, &["sources", "add", "named", "docs/sub"]);
    assert!(
        out.contains(&format!(
            "{} (from docs/sub)",
            canonical.join("sub").display()
        )),
        "{out}"
    );
    // A path that does not exist is still refused, named as typed and as resolved.
    let out = run(&data, &work, &["backup", "./nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn exclusions_are_set_shown_and_obeyed() {
    let root = tempfile::tempdir().expect("tempdir");
    let root = std::fs::canonicalize(root.path()).expect("canonical");
    let data = root.join("data");
    let src = root.join("src");
    std::fs::create_dir_all(src.join("cache")).expect("mkdir");
    std::fs::create_dir_all(src.join("build")).expect("mkdir");
    std::fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n",
    )
    .expect("write");
    std::fs::write(src.join("keep.txt"), b"kept").expect("write");
    std::fs::write(src.join("x.tmp"), b"tmp").expect("write");
    std::fs::write(src.join("build/out"), b"out").expect("write");
    std::fs::write(src.join("huge"), vec![0u8; 2000]).expect("write");

    let out = ok(
        &data,
        &root,
        &[
            "sources",
            "add",
            "src",
            "./src",
            "--exclude",
            "*.tmp",
            "--exclude",
            "/build/",
            "--exclude-caches",
            "--one-file-system",
            "--exclude-larger-than",
            "1000",
        ],
    );
    assert!(out.contains("excluding *.tmp /build/"), "{out}");
    let listed = json(&data, &root, &["sources", "list", "--json"]);
    assert_eq!(
        listed[0]["exclude"],
        serde_json::json!(["*.tmp", "/build/"])
    );
    assert_eq!(listed[0]["exclude_caches"], true);
    assert_eq!(listed[0]["one_file_system"], true);
    assert_eq!(listed[0]["exclude_larger_than"], 1000);

    ok(&data, &root, &["backup", "--source", "src"]);
    assert_eq!(names(&data, &root, "latest"), ["keep.txt"]);

    // Taking the patterns back and lifting the limit brings those entries back.
    let out = ok(
        &data,
        &root,
        &[
            "sources",
            "set-excludes",
            "src",
            "--clear-excludes",
            "--exclude-larger-than",
            "0",
        ],
    );
    assert!(!out.contains("excluding"), "{out}");
    ok(&data, &root, &["backup", "--source", "src"]);
    assert_eq!(
        names(&data, &root, "latest"),
        ["build", "huge", "keep.txt", "x.tmp"]
    );

    // A pattern that is not valid is refused, naming it; nothing changes.
    let out = run(
        &data,
        &root,
        &["sources", "set-excludes", "src", "--exclude", "[z-a]"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("[z-a]"), "{stderr}");
    let listed = json(&data, &root, &["sources", "list", "--json"]);
    assert_eq!(listed[0]["exclude"], serde_json::json!([]));
}
