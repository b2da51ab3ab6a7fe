//! What a source leaves out: patterns, cache directories, other file systems, large
//! files; and that changing the rules keeps the unchanged-file shortcut and dedup.

use coffer_domain::engine::EntryKind;
use coffer_domain::excludes::SourceFilter;

use super::*;

async fn backup_with(
    engine: &Engine,
    src: &Path,
    parent: Option<String>,
    filter: SourceFilter,
) -> coffer_domain::engine::SnapshotSummary {
    engine
        .backup(
            BackupRequest {
                source_name: "test".into(),
                path: src.to_path_buf(),
                parent,
                budget: None,
                expected: None,
                never_read: Vec::new(),
                filter,
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap()
}

/// Every path in the snapshot, directories with a trailing `/`.
async fn paths(engine: &Engine, snapshot: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![String::new()];
    while let Some(dir) = dirs.pop() {
        for e in engine.list_dir(snapshot, &dir).await.unwrap() {
            let path = if dir.is_empty() {
                e.name.clone()
            } else {
                format!("{dir}/{}", e.name)
            };
            if e.kind == EntryKind::Dir {
                out.push(format!("{path}/"));
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn patterns(p: &[&str]) -> SourceFilter {
    SourceFilter {
        exclude: p.iter().map(|s| (*s).to_owned()).collect(),
        ..SourceFilter::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patterns_leave_out_what_they_match_and_count_it() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(&s.join("a.log"), b"1");
    write(&s.join("keep.log"), b"2");
    write(&s.join("docs/readme.txt"), b"3");
    write(&s.join("docs/x.pdf"), b"4");
    write(&s.join("docs/deep/y.pdf"), b"5");
    write(&s.join("build/out.o"), b"6");
    write(&s.join("src/build/kept.rs"), b"7");
    write(&s.join("tmp"), b"a file named tmp is kept by `tmp/`");
    write(&s.join("node/tmp/z"), b"8");
    // A directory left out is never entered: unreadable, it warns of nothing.
    std::fs::create_dir(s.join("build/locked")).unwrap();
    std::fs::set_permissions(
        s.join("build/locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup_with(
        &engine,
        s,
        None,
        patterns(&["*.log", "!keep.log", "/build", "docs/**/*.pdf", "tmp/"]),
    )
    .await;
    assert_eq!(
        paths(&engine, &snap.id).await,
        [
            "docs/",
            "docs/deep/",
            "docs/readme.txt",
            "keep.log",
            "node/",
            "src/",
            "src/build/",
            "src/build/kept.rs",
            "tmp",
        ]
    );
    // a.log, build (once, whatever it holds), docs/x.pdf, docs/deep/y.pdf, node/tmp.
    assert_eq!(snap.excluded, 5);
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    assert_eq!(snap.status, coffer_domain::engine::SnapshotStatus::Ok);
    std::fs::set_permissions(
        s.join("build/locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_directories_and_large_files_are_left_out_when_asked() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(
        &s.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write(&s.join("cache/blob"), b"cached");
    write(&s.join("fake/CACHEDIR.TAG"), b"Signature: not the one\n");
    write(&s.join("fake/kept"), b"kept");
    write(&s.join("small"), &[1u8; 100]);
    write(&s.join("big"), &[2u8; 101]);
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;

    let all = backup_with(&engine, s, None, SourceFilter::default()).await;
    assert_eq!((all.files, all.excluded), (6, 0));

    let filtered = backup_with(
        &engine,
        s,
        None,
        SourceFilter {
            exclude_caches: true,
            exclude_larger_than: Some(100),
            ..SourceFilter::default()
        },
    )
    .await;
    assert_eq!(
        paths(&engine, &filtered.id).await,
        ["fake/", "fake/CACHEDIR.TAG", "fake/kept", "small"]
    );
    assert_eq!(filtered.excluded, 2, "the cache directory and the big file");
    assert_eq!(filtered.bytes, 100 + 4 + 23);
}

/// `/dev` holds other file systems (`/dev/shm` is a tmpfs, `/dev/pts` a devpts) on
/// every Linux this runs on; no mount of our own is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_system_does_not_enter_other_mounts() {
    let dev = std::fs::metadata("/dev").unwrap().dev();
    let shm = std::fs::metadata("/dev/shm").unwrap().dev();
    assert_ne!(
        dev, shm,
        "this test needs /dev/shm to be a file system of its own"
    );
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup_with(
        &engine,
        Path::new("/dev"),
        None,
        SourceFilter {
            one_file_system: true,
            ..SourceFilter::default()
        },
    )
    .await;
    let names: Vec<String> = engine
        .list_dir(&snap.id, "")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(!names.iter().any(|n| n == "shm"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "fd"),
        "the rest is there: {names:?}"
    );
    assert!(snap.excluded >= 1);
    assert!(
        !snap.warnings.iter().any(|w| w.starts_with("shm")),
        "{:?}",
        snap.warnings
    );
}

/// Adding an exclude leaves the files still included unread: the parent snapshot's
/// entries are found by name whatever else left the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_exclude_keeps_the_unchanged_shortcut_and_dedup_for_the_rest() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for i in 0..20 {
        write(&s.join(format!("data/f{i}")), &noise(5000, i));
        write(&s.join(format!("data/f{i}.tmp")), &noise(5000, 100 + i));
    }
    write(&s.join("big"), &noise(3 * crate::backup::CHUNK_MAX, 7));
    write(&s.join("scratch/x"), &noise(5000, 500));
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let first = backup_with(&engine, s, None, SourceFilter::default()).await;
    assert_eq!(first.files, 42);

    let second = backup_with(
        &engine,
        s,
        Some(first.id.clone()),
        patterns(&["*.tmp", "/scratch/"]),
    )
    .await;
    assert_eq!(second.files, 21);
    assert_eq!(second.excluded, 21);
    assert_eq!(
        second.unchanged_files, second.files,
        "no included file re-read"
    );
    assert_eq!(second.bytes_added, 0, "nothing chunked and stored anew");

    // Taking an exclude back reads the files it had left out; they dedup against the
    // first snapshot, and the others stay unread.
    let third = backup_with(
        &engine,
        s,
        Some(second.id.clone()),
        patterns(&["/scratch/"]),
    )
    .await;
    assert_eq!(third.files, 41);
    assert_eq!(third.unchanged_files, 21);
    assert_eq!(
        third.bytes_added, 0,
        "the .tmp files' chunks were stored already"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pattern_stops_the_backup_before_anything_is_read() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a"), b"a");
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let err = engine
        .backup(
            BackupRequest {
                source_name: "test".into(),
                path: src.path().to_path_buf(),
                parent: None,
                budget: None,
                expected: None,
                never_read: Vec::new(),
                filter: patterns(&["[z-a]"]),
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, EngineFailure::Invalid(ref m) if m.contains("[z-a]")),
        "{err:?}"
    );
    assert!(store.keys_with("snapshots/").is_empty());
}

#[test]
fn the_progress_scan_counts_by_the_same_rules() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a"), &[0u8; 10]);
    write(&src.path().join("b.tmp"), &[0u8; 10]);
    write(&src.path().join("skip/c"), &[0u8; 10]);
    let excludes = patterns(&["*.tmp", "skip/"]).compile().unwrap();
    let progress = Progress::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    backup::scan(src.path(), &excludes, &progress, &Cancel::default(), &stop);
    let (_, _, files, bytes) = progress.snapshot();
    assert_eq!((files, bytes), (1, 10));
}

/// A subdirectory passed over (here one never to read) keeps the entries listed after it
/// in their places.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_after_a_subdirectory_passed_over_keep_their_places() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a/secret"), b"s");
    write(&src.path().join("b"), b"b");
    write(&src.path().join("c"), b"c");
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = engine
        .backup(
            BackupRequest {
                source_name: "test".into(),
                path: src.path().to_path_buf(),
                parent: None,
                budget: None,
                expected: None,
                never_read: vec![src.path().join("a")],
                filter: SourceFilter::default(),
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(paths(&engine, &snap.id).await, ["b", "c"]);
}
