//! Engine tests: real directory trees, an in-memory object store.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use coffer_domain::engine::{
    ArchiveFormat, BackupRequest, Cancel, EngineFailure, EntryKind, Progress, SnapshotEngine,
    SnapshotStatus,
};
use coffer_domain::storage::{ObjectKey, ObjectStore, RangeReader, StorageError};

use super::*;

mod excludes;
mod export;
mod gc;
mod import;
mod integrity;
mod metadata;
mod replicate;
mod stores;

/// The lock objects left in `store` once every lock is gone: a lock dropped without
/// `release` (a taker that lost, or failed) is deleted by a task spawned from its `Drop`,
/// and an object store's listing may show a delete a moment late (Garage under load),
/// so this looks for up to 10 s before it answers what is still there.
async fn locks_left(store: &dyn ObjectStore) -> Vec<ObjectKey> {
    for _ in 0..100 {
        let left = store.list("locks/").await.unwrap();
        if left.is_empty() {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    store.list("locks/").await.unwrap()
}

/// Restores the whole of `snap` into `target`.
async fn restore_all(engine: &Engine, snap: &str, target: &Path) -> RestoreReport {
    try_restore(engine, snap, target).await.unwrap()
}

/// [`restore_all`], for a restore that may fail.
async fn try_restore(
    engine: &Engine,
    snap: &str,
    target: &Path,
) -> Result<RestoreReport, EngineFailure> {
    engine
        .restore(
            snap,
            None,
            target,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
}

/// Called on every ranged read, before it is answered.
type RangeHook = Box<dyn FnMut() + Send>;

/// A plain in-memory object store, with a way to tamper with objects and a hook on
/// ranged reads (the reads of file content).
#[derive(Default)]
pub struct MemStore(Mutex<BTreeMap<String, Bytes>>, Mutex<Option<RangeHook>>);

#[async_trait]
impl ObjectStore for MemStore {
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError> {
        self.0.lock().unwrap().insert(key.to_string(), bytes);
        Ok(())
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError> {
        Ok(self.0.lock().unwrap().get(key.as_str()).cloned())
    }
    async fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        if let Some(hook) = self.1.lock().unwrap().as_mut() {
            hook();
        }
        Ok(self.0.lock().unwrap().get(key.as_str()).map(|b| {
            let start = usize::try_from(offset).unwrap().min(b.len());
            let end = start
                .saturating_add(usize::try_from(len).unwrap())
                .min(b.len());
            b.slice(start..end)
        }))
    }
    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        Ok(self.0.lock().unwrap().contains_key(key.as_str()))
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.0.lock().unwrap().remove(key.as_str());
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .map(|k| ObjectKey::parse(k).unwrap())
            .collect())
    }
    async fn list_sized(&self, prefix: &str) -> Result<Vec<(ObjectKey, u64)>, StorageError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (ObjectKey::parse(k).unwrap(), v.len() as u64))
            .collect())
    }
    async fn check(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

impl MemStore {
    fn keys_with(&self, prefix: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
    fn edit(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let mut map = self.0.lock().unwrap();
        let mut bytes = map[key].to_vec();
        f(&mut bytes);
        map.insert(key.to_owned(), Bytes::from(bytes));
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().values().map(Bytes::len).sum()
    }
}

const MASTER: [u8; 32] = [42u8; 32];

async fn engine(store: &Arc<MemStore>, encrypt: bool) -> Engine {
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    if !is_initialized(dyn_store.as_ref()).await.unwrap() {
        init(dyn_store.as_ref(), &MASTER, encrypt).await.unwrap();
    }
    Engine::new(Repository::open(dyn_store, &MASTER, encrypt).await.unwrap())
}

async fn backup(
    engine: &Engine,
    src: &Path,
    parent: Option<String>,
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
                filter: coffer_domain::excludes::SourceFilter::default(),
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap()
}

/// Makes a FIFO at `path` (a special file the backup skips).
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn write(path: &Path, data: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, data).unwrap();
}

/// Pseudo-random but deterministic bytes (incompressible enough).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// A tree full of edge cases.
fn edge_cases(root: &Path) {
    std::fs::create_dir_all(root.join("empty/nested-empty")).unwrap();
    write(&root.join("zero-byte"), b"");
    write(&root.join("small.txt"), b"hello coffer\n");
    write(&root.join("name with spaces and \n newline"), b"odd name");
    write(&root.join("ünïcødé-名前.txt"), b"unicode");
    write(
        &root.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")),
        b"raw bytes name",
    );
    let mut big = vec![0u8; 12 * 1024 * 1024];
    big[3_000_000..3_000_000 + 4096].copy_from_slice(&noise(4096, 7));
    big.extend_from_slice(&noise(3 * 1024 * 1024, 9));
    write(&root.join("dir/sub/large-sparse-ish.bin"), &big);
    write(&root.join("dir/exec.sh"), b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        root.join("dir/exec.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("small.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("link-to-small")).unwrap();
    std::os::unix::fs::symlink("/does/not/exist", root.join("dangling-link")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("dir/link-up")).unwrap();
    let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("small.txt"))
        .unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(old))
        .unwrap();
}

/// Every entry under `root`: relative path → (kind, mode, mtime for files, content or target).
fn describe(root: &Path) -> BTreeMap<Vec<u8>, (String, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let (kind, content) = if m.file_type().is_symlink() {
                (
                    "link",
                    std::fs::read_link(&p)
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                )
            } else if m.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&p).unwrap())
            };
            let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
            let mode = if kind == "link" { 0 } else { m.mode() & 0o7777 };
            out.insert(rel, (kind.to_owned(), mode, mtime, content));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_cases_round_trip_byte_for_byte_and_metadata_equal() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    assert_eq!(snap.status, SnapshotStatus::Ok, "{:?}", snap.warnings);
    assert!(snap.encrypted);
    assert_eq!(snap.files, 7);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored");
    let report = engine
        .restore(
            &snap.id,
            None,
            &target,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.files, 7);
    assert_eq!(report.symlinks, 3);
    assert_eq!(describe(&target), describe(src.path()));
    // Nothing but the restored entries (no temporary files left).
    assert!(
        !describe(&target)
            .keys()
            .any(|k| k.windows(7).any(|w| w == b"coffer-"))
    );
}

/// After an incremental backup, the first backup's pack has holes (the old versions of
/// the changed files): the blobs around them are still fetched with one ranged read, and
/// every file comes back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_a_few_holes_apart_are_read_with_one_ranged_read() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..20u64 {
        // Odd seeds: `noise` sets the lowest bit, so seeds 2k and 2k+1 are the same.
        write(
            &src.path().join(format!("f{i:02}")),
            &noise(3000, 2 * i + 1),
        );
    }
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let first = backup(&engine, src.path(), None).await;
    for i in (1..20u64).step_by(2) {
        write(
            &src.path().join(format!("f{i:02}")),
            &noise(3000, 1001 + 2 * i),
        );
    }
    let second = backup(&engine, src.path(), Some(first.id)).await;
    assert_eq!(second.unchanged_files, 10);
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    *store.1.lock().unwrap() = Some(Box::new(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let out = tempfile::tempdir().unwrap();
    restore_all(&engine, &second.id, &out.path().join("t")).await;
    store.1.lock().unwrap().take();
    assert_eq!(describe(&out.path().join("t")), describe(src.path()));
    // One read per data pack: the first backup's ten unchanged files, between the
    // holes of the ten changed ones, and the second backup's ten new versions.
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_inside_the_snapshot_restores_alone() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    let out = tempfile::tempdir().unwrap();
    engine
        .restore(
            &snap.id,
            Some("dir/sub"),
            &out.path().join("t"),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        describe(&out.path().join("t")),
        describe(&src.path().join("dir/sub"))
    );
    engine
        .restore(
            &snap.id,
            Some("small.txt"),
            &out.path().join("f"),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(out.path().join("f/small.txt")).unwrap(),
        b"hello coffer\n"
    );
    let entries = engine.list_dir(&snap.id, "dir").await.unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["exec.sh", "link-up", "sub"]);
    assert!(matches!(
        engine.list_dir(&snap.id, "nope").await,
        Err(EngineFailure::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_second_backup_adds_almost_nothing_and_reads_nothing() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    for i in 0..50 {
        write(&src.path().join(format!("many/f{i}")), &noise(5000, i));
    }
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let first = backup(&engine, src.path(), None).await;
    let before = store.total();
    let second = backup(&engine, src.path(), Some(first.id.clone())).await;
    let added = store.total() - before;
    assert_eq!(second.unchanged_files, second.files, "no file re-read");
    assert_eq!(second.bytes_added, 0);
    assert!(added < 4096, "an unchanged backup stored {added} bytes");
    let snapshot_object = store.0.lock().unwrap()[&format!("snapshots/{}", second.id)].len();
    assert_eq!(
        second.stored_bytes_added,
        (added - snapshot_object) as u64,
        "packs and index only"
    );
    // A changed file is re-read; only its new chunk is stored.
    write(&src.path().join("many/f3"), &noise(5000, 999));
    let third = backup(&engine, src.path(), Some(second.id.clone())).await;
    assert_eq!(third.files - third.unchanged_files, 1);
    assert_eq!(third.bytes_added, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_readable_in_storage() {
    let src = tempfile::tempdir().unwrap();
    let marker = b"COFFER-MARKER-7f3a9c1e-do-not-leak";
    let mut text = Vec::new();
    for _ in 0..2000 {
        text.extend_from_slice(marker);
        text.push(b'\n');
    }
    write(&src.path().join("secret.txt"), &text);
    write(
        &src.path().join("COFFER-MARKER-7f3a9c1e-do-not-leak.name"),
        marker,
    );
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    backup(&engine, src.path(), None).await;
    for (k, v) in store.0.lock().unwrap().iter() {
        assert!(
            !v.windows(16).any(|w| w == &marker[..16]),
            "marker readable in {k}"
        );
        assert!(!k.contains("MARKER"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencrypted_repositories_still_verify_every_chunk() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, false).await;
    let snap = backup(&engine, src.path(), None).await;
    assert!(!snap.encrypted);
    let report = engine
        .verify(
            &snap.id,
            true,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    let pack = store.keys_with("data/")[0].clone();
    store.edit(&pack, |b| b[20] ^= 0xff);
    let report = engine
        .verify(
            &snap.id,
            true,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert!(!report.ok());
}

async fn damaged_setup() -> (tempfile::TempDir, Arc<MemStore>, Engine, String) {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a.bin"), &noise(3 * 1024 * 1024, 1));
    write(&src.path().join("b.txt"), b"small file b");
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    assert!(
        engine
            .verify(
                &snap.id,
                true,
                Arc::new(Progress::default()),
                Cancel::default()
            )
            .await
            .unwrap()
            .ok()
    );
    (src, store, engine, snap.id)
}

fn data_pack_with_most_bytes(store: &MemStore) -> String {
    let map = store.0.lock().unwrap();
    map.iter()
        .filter(|(k, _)| k.starts_with("data/"))
        .max_by_key(|(_, v)| v.len())
        .map(|(k, _)| k.clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_is_found_by_verify_and_restore() {
    let (_src, store, engine, id) = damaged_setup().await;
    let pack = data_pack_with_most_bytes(&store);
    store.edit(&pack, |b| b[1000] ^= 0x01);
    assert!(
        engine
            .verify(&id, false, Arc::new(Progress::default()), Cancel::default())
            .await
            .unwrap()
            .ok(),
        "structure is intact"
    );
    let report = engine
        .verify(&id, true, Arc::new(Progress::default()), Cancel::default())
        .await
        .unwrap();
    assert!(!report.ok());
    assert_eq!(report.damaged_files, ["a.bin"]);
    let out = tempfile::tempdir().unwrap();
    let err = engine
        .restore(
            &id,
            None,
            &out.path().join("t"),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    let EngineFailure::Damaged(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("a.bin") && message.contains(&id),
        "{message}"
    );
    assert!(
        !out.path().join("t/a.bin").exists(),
        "a damaged file is never written under its name"
    );
    assert_eq!(
        std::fs::read(out.path().join("t/b.txt")).unwrap(),
        b"small file b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_pack_is_found() {
    let (_src, store, engine, id) = damaged_setup().await;
    let pack = data_pack_with_most_bytes(&store);
    store.edit(&pack, |b| b.truncate(b.len() / 2));
    let report = engine
        .verify(&id, true, Arc::new(Progress::default()), Cancel::default())
        .await
        .unwrap();
    assert_eq!(report.damaged_files, ["a.bin"], "{report:?}");
    let out = tempfile::tempdir().unwrap();
    assert!(matches!(
        engine.restore(&id, None, &out.path().join("t"), Arc::new(Progress::default()), Cancel::default()).await,
        Err(EngineFailure::Damaged(m)) if m.contains("a.bin")
    ));
}

/// A ranged read that breaks off is taken up again where it stopped, a few times per
/// run of blobs; one that keeps breaking fails the restore, leaving only complete files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_off_read_is_taken_up_where_it_stopped() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a.bin"), &noise(3 * 1024 * 1024, 5));
    write(&src.path().join("b.txt"), b"small file b");
    let store = Arc::new(gc::Faulty::breaking_reads(Arc::new(MemStore::default())));
    let engine = gc::engine_with(store.clone()).await;
    let snap = backup(&engine, src.path(), None).await;
    let source = gc::contents(src.path());

    store.broken_reads.store(2, AtomicOrdering::SeqCst);
    let out = tempfile::tempdir().unwrap();
    try_restore(&engine, &snap.id, &out.path().join("t"))
        .await
        .expect("two broken reads are taken up again");
    assert_eq!(store.broken_reads.load(AtomicOrdering::SeqCst), 0);
    assert!(gc::contents(&out.path().join("t")) == source);

    // Reads that break before any byte make no progress: after a few the restore fails.
    store.broken_reads.store(u32::MAX, AtomicOrdering::SeqCst);
    store.break_at_once.store(true, AtomicOrdering::SeqCst);
    let target = out.path().join("u");
    let err = try_restore(&engine, &snap.id, &target).await.unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    for (path, bytes) in gc::contents(&target) {
        assert!(source.get(&path) == Some(&bytes), "{path} is not complete");
    }
    assert!(!target.join("a.bin").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pack_is_found_before_anything_is_written() {
    let (_src, store, engine, id) = damaged_setup().await;
    let pack = data_pack_with_most_bytes(&store);
    store.0.lock().unwrap().remove(&pack);
    let report = engine
        .verify(&id, false, Arc::new(Progress::default()), Cancel::default())
        .await
        .unwrap();
    assert!(
        report.damaged_files.contains(&"a.bin".to_owned()),
        "{report:?}"
    );
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    let err = engine
        .restore(
            &id,
            None,
            &target,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Damaged(m) if m.contains("a.bin") && m.contains("nothing was restored")),
        "{err:?}"
    );
    assert!(!target.exists(), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_object_fails_its_checksum() {
    let (_src, store, engine, id) = damaged_setup().await;
    store.edit(&format!("snapshots/{id}"), |b| b[50] ^= 1);
    let report = engine
        .verify(&id, false, Arc::new(Progress::default()), Cancel::default())
        .await
        .unwrap();
    assert!(report.problems[0].contains("checksum"), "{report:?}");
}

/// An index object damaged in storage after this engine read it: the engine's index
/// is read again only when the index objects' names change, but a check reads and
/// authenticates every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_reads_every_index_object_again() {
    let (_src, store, engine, _id) = damaged_setup().await;
    gc::full_check(&engine).await; // the index as the engine has it, read and used
    let index = store
        .list("index/")
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("an index object");
    store.edit(index.as_str(), |b| b[40] ^= 1);
    let err = engine
        .check(
            Some(CheckSlice { index: 0, count: 1 }),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("index"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_targets_must_be_new_or_empty() {
    let (_src, _store, engine, id) = damaged_setup().await;
    let out = tempfile::tempdir().unwrap();
    // A target holding a symlink to elsewhere is not empty: nothing is written through it.
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), out.path().join("b.txt")).unwrap();
    let err = engine
        .restore(
            &id,
            None,
            out.path(),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Invalid(m) if m.contains("not empty")),
        "{err:?}"
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

/// A file named "..", which no restore or archive may ever create.
fn evil_node() -> Node {
    Node {
        mode: 0o644,
        inode: 1,
        ..Node::new(b"..".to_vec(), NodeKind::File)
    }
}

/// Stores a snapshot whose root tree holds `node`, as a tampered repository might.
async fn forge_snapshot(engine: &Engine, store: &MemStore, node: Node) -> String {
    forge_snapshot_with(engine, store, node, &[]).await
}

/// Stores a snapshot whose root tree holds `node`, with `data` stored as a chunk.
async fn forge_snapshot_with_data(
    engine: &Engine,
    store: &MemStore,
    node: &Node,
    data: &[u8],
) -> String {
    forge_snapshot_with(engine, store, node.clone(), data).await
}

async fn forge_snapshot_with(engine: &Engine, store: &MemStore, node: Node, data: &[u8]) -> String {
    forge_snapshot_of(engine, store, &[node], data).await
}

/// Stores a snapshot whose root tree holds `nodes` as given (in that order, duplicates
/// and all), with `data` stored as a chunk.
async fn forge_snapshot_of(
    engine: &Engine,
    store: &MemStore,
    nodes: &[Node],
    data: &[u8],
) -> String {
    let repo = engine.repo.clone();
    let tree_bytes = tree::encode(nodes);
    let tree_id = repo.keys.chunk_id(&tree_bytes);
    let mut pack = pack::PackWriter::new([9u8; 32], 1024);
    let sealed = crypto::seal_blob(&repo.keys, true, &tree_id, &tree_bytes, None).unwrap();
    pack.add_sealed(tree_id, pack::BlobKind::Tree, tree_bytes.len(), &sealed)
        .unwrap();
    if !data.is_empty() {
        let id = repo.keys.chunk_id(data);
        let sealed = crypto::seal_blob(&repo.keys, true, &id, data, None).unwrap();
        pack.add_sealed(id, pack::BlobKind::Data, data.len(), &sealed)
            .unwrap();
    }
    let (bytes, entries) = pack.finish(&repo.keys, true).unwrap();
    store
        .put(&key(&pack_key(&[9u8; 32])).unwrap(), Bytes::from(bytes))
        .await
        .unwrap();
    let index = index::seal_index(&repo.keys, true, &[([9u8; 32], entries)]).unwrap();
    store
        .put(&key("index/evil").unwrap(), Bytes::from(index))
        .await
        .unwrap();
    let doc = SnapshotDoc {
        version: 1,
        source: "evil".into(),
        path: "/".into(),
        hostname: String::new(),
        started_at: chrono::Utc::now(),
        finished_at: chrono::Utc::now(),
        tree: hex::encode(tree_id),
        parent: None,
        status: "ok".into(),
        encrypted: true,
        files: 1,
        dirs: 1,
        bytes: 0,
        bytes_added: 0,
        stored_bytes_added: 0,
        unchanged_files: 0,
        excluded: 0,
        warnings: vec![],
        suspicious: None,
    };
    let sealed = snapshot::seal(&repo.keys, true, &doc).unwrap();
    let id = hex::encode(crypto::sha256(&sealed));
    store
        .put(
            &key(&format!("snapshots/{id}")).unwrap(),
            Bytes::from(sealed),
        )
        .await
        .unwrap();
    repo.reload_index().await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_would_escape_the_target_are_refused() {
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    // Forge a snapshot whose tree names an entry "..", as a tampered repository might.
    let id = forge_snapshot(&engine, &store, evil_node()).await;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    let err = engine
        .restore(
            &id,
            None,
            &target,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Invalid(m) if m.contains("escape")),
        "{err:?}"
    );
    assert!(!target.exists(), "nothing written");
    for format in [ArchiveFormat::Tar, ArchiveFormat::Zip] {
        // The whole snapshot, and the entry itself asked for by its path.
        for path in [None, Some("..")] {
            let err = engine
                .export(&id, path, format, Box::new(Sink::default()))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, EngineFailure::Invalid(m) if m.contains("escape")),
                "{format:?} {path:?}: {err:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_names_are_refused_by_restore_and_archives_alike() {
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    // Two entries named "twin" in one directory, as a tampered repository might hold:
    // unpacked, the second would silently replace the first.
    let twin = || Node {
        mode: 0o644,
        inode: 1,
        ..Node::new(b"twin".to_vec(), NodeKind::File)
    };
    let id = forge_snapshot_of(&engine, &store, &[twin(), twin()], &[]).await;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    let err = engine
        .restore(
            &id,
            None,
            &target,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Invalid(m) if m.contains("collide")),
        "{err:?}"
    );
    for format in [ArchiveFormat::Tar, ArchiveFormat::Zip] {
        let err = engine
            .export(&id, None, format, Box::new(Sink::default()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EngineFailure::Invalid(m) if m.contains("collide") && m.contains("twin")),
            "{format:?}: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_opens_nothing() {
    let (_src, store, _engine, _id) = damaged_setup().await;
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let err = Repository::open(dyn_store, &[1u8; 32], true)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::WrongKey));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_are_skipped_and_make_the_snapshot_partial() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("ok.txt"), b"fine");
    mkfifo(&src.path().join("pipe"));
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    assert_eq!(snap.status, SnapshotStatus::Partial);
    assert_eq!(snap.warnings, ["pipe: skipped (FIFO)"]);
    assert_eq!(snap.files, 1);
}

/// Several walkers take the subdirectories of a wide tree (see `backup::Helpers`): the
/// trees are the same whichever walker built which, every count and warning of a
/// subtree reaches the snapshot, and the tree restores as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_tree_walked_by_several_walkers_gives_the_same_trees_every_time() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..30u64 {
        for j in 0..4u64 {
            let dir = src.path().join(format!("d{i:02}/s{j}"));
            write(&dir.join("a"), &noise(200, 2 * (i * 4 + j) + 1));
            write(&dir.join("b"), format!("{i} {j}").as_bytes());
            write(&dir.join("deep/c"), b"c");
        }
    }
    let pipes = ["d07/s2/deep/pipe", "d23/s1/pipe"];
    for pipe in pipes {
        mkfifo(&src.path().join(pipe));
    }
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let first = backup(&engine, src.path(), None).await;
    let again = backup(&engine, src.path(), None).await;
    let unchanged = backup(&engine, src.path(), Some(again.id.clone())).await;
    let mut roots = Vec::new();
    for snap in [&first, &again, &unchanged] {
        assert_eq!(snap.status, SnapshotStatus::Partial);
        assert_eq!((snap.files, snap.dirs), (360, 1 + 30 + 120 + 120));
        let mut warnings = snap.warnings.clone();
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "d07/s2/deep/pipe: skipped (FIFO)",
                "d23/s1/pipe: skipped (FIFO)"
            ]
        );
        roots.push(engine.repo.load_snapshot(&snap.id).await.unwrap().tree);
    }
    assert_eq!(unchanged.unchanged_files, 360);
    assert!(roots.iter().all(|r| *r == roots[0]), "{roots:?}");
    // Without the FIFOs (which the snapshot skipped; removing them changes the times
    // of their directories).
    for pipe in pipes {
        std::fs::remove_file(src.path().join(pipe)).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    restore_all(&engine, &unchanged.id, &out.path().join("t")).await;
    assert_eq!(
        without_times(describe(&out.path().join("t"))),
        without_times(describe(src.path()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_backup_leaves_no_snapshot() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("big"), &noise(4 * 1024 * 1024, 3));
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let cancel = Cancel::default();
    cancel.cancel();
    let err = engine
        .backup(
            BackupRequest {
                source_name: "t".into(),
                path: src.path().to_path_buf(),
                parent: None,
                budget: None,
                expected: None,
                never_read: Vec::new(),
                filter: coffer_domain::excludes::SourceFilter::default(),
            },
            Arc::new(Progress::default()),
            cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineFailure::Cancelled));
    assert!(store.keys_with("snapshots/").is_empty());
    assert!(engine.snapshots().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_works_across_sources_and_the_key_can_be_rewrapped() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let data = noise(2 * 1024 * 1024, 5);
    write(&a.path().join("x"), &data);
    write(&b.path().join("y"), &data);
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    backup(&engine, a.path(), None).await;
    let second = backup(&engine, b.path(), None).await;
    assert_eq!(
        second.bytes_added, 0,
        "same content under another source is not stored twice"
    );

    let new_master = [7u8; 32];
    rewrap(store.as_ref(), &MASTER, &new_master).await.unwrap();
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    assert!(
        Repository::open(dyn_store.clone(), &MASTER, true)
            .await
            .is_err()
    );
    let reopened = Engine::new(
        Repository::open(dyn_store, &new_master, true)
            .await
            .unwrap(),
    );
    let snaps = reopened.snapshots().await.unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(
        reopened
            .verify(
                &snaps[1].id,
                true,
                Arc::new(Progress::default()),
                Cancel::default()
            )
            .await
            .unwrap()
            .ok()
    );
}

/// A `Write` into shared memory, to look at an archive after the engine is done with it.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_streams_as_a_tar_archive_that_unpacks_to_the_source() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    let sink = Sink::default();
    let bytes = engine
        .export(&snap.id, None, ArchiveFormat::Tar, Box::new(sink.clone()))
        .await
        .unwrap();
    assert_eq!(bytes, snap.bytes);
    let out = tempfile::tempdir().unwrap();
    let archive = sink.0.lock().unwrap().clone();
    let mut unpack = tar::Archive::new(&archive[..]);
    unpack.set_preserve_permissions(true);
    unpack.set_preserve_mtime(true);
    unpack.unpack(out.path()).unwrap();
    let want: Vec<_> = describe(src.path())
        .into_iter()
        .map(|(k, (kind, _, _, content))| (k, kind, content))
        .collect();
    let got: Vec<_> = describe(out.path())
        .into_iter()
        .map(|(k, (kind, _, _, content))| (k, kind, content))
        .collect();
    assert_eq!(got, want);

    // One directory inside keeps its name as the top entry.
    let sink = Sink::default();
    engine
        .export(
            &snap.id,
            Some("dir/sub"),
            ArchiveFormat::Tar,
            Box::new(sink.clone()),
        )
        .await
        .unwrap();
    let archive = sink.0.lock().unwrap().clone();
    let names: Vec<String> = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["sub", "sub/large-sparse-ish.bin"]);
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// Unpacks a zip archive the way `unzip` would on Unix (raw names, Unix modes,
/// symlinks), checking on the way that every entry carries the source's mtime in whole
/// seconds. Returns the entries' names in archive order.
fn unzip_into(archive: Vec<u8>, dir: &Path, src: &Path) -> Vec<Vec<u8>> {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).unwrap();
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name_raw().to_vec();
        names.push(name.clone());
        let mode = f.unix_mode().expect("a Unix mode");
        let rel = name.strip_suffix(b"/").unwrap_or(&name);
        let path = dir.join(OsStr::from_bytes(rel));
        let mtime = f
            .extra_data_fields()
            .find_map(|x| match x {
                zip::ExtraField::ExtendedTimestamp(t) => t.mod_time(),
                _ => None,
            })
            .expect("an extended timestamp");
        let source = std::fs::symlink_metadata(src.join(OsStr::from_bytes(rel))).unwrap();
        assert_eq!(
            i64::from(mtime),
            source.mtime(),
            "mtime of {}",
            String::from_utf8_lossy(&name)
        );
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        match mode & S_IFMT {
            S_IFDIR => {
                assert!(name.ends_with(b"/"), "a directory's name ends in /");
                std::fs::create_dir_all(&path).unwrap();
            }
            S_IFLNK => std::os::unix::fs::symlink(OsStr::from_bytes(&data), &path).unwrap(),
            S_IFREG => {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &data).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .unwrap();
            }
            other => panic!("unexpected file type {other:o}"),
        }
        if mode & S_IFMT == S_IFDIR {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                .unwrap();
        }
    }
    names
}

type Described = BTreeMap<Vec<u8>, (String, u32, i64, Vec<u8>)>;

fn without_times(tree: Described) -> Vec<(Vec<u8>, String, u32, Vec<u8>)> {
    tree.into_iter()
        .map(|(k, (kind, mode, _, content))| (k, kind, mode, content))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_streams_as_a_zip_archive_that_unpacks_to_the_source() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    // Text compresses, so this one is deflated for real; the rest of the tree is noise.
    write(
        &src.path().join("dir/sub/text.txt"),
        &b"coffer keeps it safe\n".repeat(300_000),
    );
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    let sink = Sink::default();
    let bytes = engine
        .export(&snap.id, None, ArchiveFormat::Zip, Box::new(sink.clone()))
        .await
        .unwrap();
    assert_eq!(bytes, snap.bytes);
    let archive = sink.0.lock().unwrap().clone();
    assert!(
        archive.len() < usize::try_from(snap.bytes).unwrap(),
        "zeros and text are deflated"
    );
    let out = tempfile::tempdir().unwrap();
    let names = unzip_into(archive, out.path(), src.path());
    assert!(
        names.contains(&b"empty/nested-empty/".to_vec()),
        "{names:?}"
    );
    assert!(names.contains(&b"not-utf8-\xff\xfe".to_vec()), "raw names");
    // Times were checked entry by entry, in the whole seconds a zip holds.
    assert_eq!(
        without_times(describe(out.path())),
        without_times(describe(src.path()))
    );

    // A directory inside keeps its name as the top entry; so does a file.
    let sink = Sink::default();
    let bytes = engine
        .export(
            &snap.id,
            Some("dir/sub"),
            ArchiveFormat::Zip,
            Box::new(sink.clone()),
        )
        .await
        .unwrap();
    let big = std::fs::metadata(src.path().join("dir/sub/large-sparse-ish.bin"))
        .unwrap()
        .len();
    assert_eq!(bytes, big + 21 * 300_000);
    let out = tempfile::tempdir().unwrap();
    let names = unzip_into(
        sink.0.lock().unwrap().clone(),
        out.path(),
        &src.path().join("dir"),
    );
    assert_eq!(
        names,
        [&b"sub/"[..], b"sub/large-sparse-ish.bin", b"sub/text.txt"]
    );
    assert_eq!(
        without_times(describe(&out.path().join("sub"))),
        without_times(describe(&src.path().join("dir/sub")))
    );
    let sink = Sink::default();
    engine
        .export(
            &snap.id,
            Some("small.txt"),
            ArchiveFormat::Zip,
            Box::new(sink.clone()),
        )
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let names = unzip_into(sink.0.lock().unwrap().clone(), out.path(), src.path());
    assert_eq!(names, [b"small.txt"]);
    assert_eq!(
        std::fs::read(out.path().join("small.txt")).unwrap(),
        b"hello coffer\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_aborts_a_zip_export_naming_the_file() {
    let (_src, store, engine, id) = damaged_setup().await;
    let pack = data_pack_with_most_bytes(&store);
    store.edit(&pack, |b| b[1000] ^= 0x01);
    let err = engine
        .export(&id, None, ArchiveFormat::Zip, Box::new(Sink::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Damaged(m) if m.contains("a.bin")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tar_export_never_ends_like_a_complete_archive() {
    let (_src, store, engine, id) = damaged_setup().await;
    let pack = data_pack_with_most_bytes(&store);
    store.edit(&pack, |b| b[1000] ^= 0x01);
    let sink = Sink::default();
    let err = engine
        .export(&id, None, ArchiveFormat::Tar, Box::new(sink.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Damaged(m) if m.contains("a.bin")),
        "{err:?}"
    );
    // tar's builder appends two zero blocks when dropped; they must not reach the
    // client, or a cut-off archive would unpack as if it were whole.
    let written = sink.0.lock().unwrap().clone();
    assert!(
        written.len() < 1024 || written[written.len() - 1024..].iter().any(|&b| b != 0),
        "the stream ends with the end-of-archive marker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_describes_one_entry() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;

    let file = engine.stat(&snap.id, "small.txt").await.unwrap();
    assert_eq!(file.name, "small.txt");
    assert_eq!(file.kind, EntryKind::File);
    assert_eq!(file.size, 13);
    assert_eq!(file.mode, 0o600);
    assert_eq!(file.mtime.timestamp(), 1_000_000_000);

    let nested = engine
        .stat(&snap.id, "/dir/sub/large-sparse-ish.bin")
        .await
        .unwrap();
    assert_eq!(nested.size, 15 * 1024 * 1024);
    let dir = engine.stat(&snap.id, "dir").await.unwrap();
    assert_eq!((dir.name.as_str(), dir.kind), ("dir", EntryKind::Dir));
    let link = engine.stat(&snap.id, "link-to-small").await.unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);

    let want_root = src
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for root in ["", "/"] {
        let info = engine.stat(&snap.id, root).await.unwrap();
        assert_eq!(info.kind, EntryKind::Dir);
        assert_eq!(info.name, want_root);
    }

    for missing in ["nope", "dir/nope", "small.txt/below-a-file"] {
        let err = engine.stat(&snap.id, missing).await.unwrap_err();
        assert!(
            matches!(&err, EngineFailure::NotFound(m) if m.contains(missing)),
            "{missing}: {err:?}"
        );
    }
    assert!(matches!(
        engine.stat(&"0".repeat(64), "").await,
        Err(EngineFailure::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_totals_are_known_before_writing_and_equal_the_report() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;

    for (path, files) in [(None, 7), (Some("dir/sub"), 1), (Some("small.txt"), 1)] {
        let progress = Arc::new(Progress::default());
        // What the progress said when the first file content was read.
        let seen = Arc::new(Mutex::new(None));
        let (p, s) = (progress.clone(), seen.clone());
        *store.1.lock().unwrap() = Some(Box::new(move || {
            s.lock()
                .unwrap()
                .get_or_insert((p.totals_final(), p.snapshot()));
        }));
        let out = tempfile::tempdir().unwrap();
        let report = engine
            .restore(
                &snap.id,
                path,
                &out.path().join("t"),
                progress.clone(),
                Cancel::default(),
            )
            .await
            .unwrap();
        store.1.lock().unwrap().take();
        assert_eq!(report.files, files, "{path:?}");
        let (final_, (_, _, files_total, bytes_total)) = seen.lock().unwrap().unwrap();
        assert!(final_, "totals final before any content is read");
        assert_eq!((files_total, bytes_total), (report.files, report.bytes));
        assert!(progress.totals_final());
        assert_eq!(
            progress.snapshot(),
            (report.files, report.bytes, report.files, report.bytes),
            "{path:?}"
        );
    }
}

/// Eight incompressible files of 3 MiB: many ranged reads for a restore.
fn many_files(root: &Path) {
    for i in 0..8 {
        write(
            &root.join(format!("f{i}")),
            &noise(3 * 1024 * 1024, 100 + i),
        );
    }
    write(&root.join("sub/empty"), b"");
}

/// Every path under `root` (recursively), hidden ones included.
fn all_names(root: &Path) -> Vec<String> {
    describe(root)
        .into_keys()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect()
}

/// A chunk that would take a pack far past its target starts the next pack: packs (and
/// the reused buffers they are built in) stay near the target, whatever the chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chunks_do_not_take_a_pack_far_past_its_target() {
    let src = tempfile::tempdir().unwrap();
    // 24 MiB of noise, in chunks of 0.5 to 4 MiB.
    many_files(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    backup(&engine, src.path(), None).await;
    let packs = store.keys_with("data/");
    assert!(packs.len() >= 2, "{packs:?}");
    let map = store.0.lock().unwrap();
    for key in &packs {
        let size = map[key.as_str()].len();
        assert!(
            size <= crate::backup::PACK_TARGET + crate::backup::PACK_SLACK + 64 * 1024,
            "{key}: {size} bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_restore_stops_and_leaves_no_partial_file() {
    let src = tempfile::tempdir().unwrap();
    many_files(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;

    // Cancelled before it starts: nothing at all is written.
    let out = tempfile::tempdir().unwrap();
    let cancel = Cancel::default();
    cancel.cancel();
    let err = engine
        .restore(
            &snap.id,
            None,
            &out.path().join("t"),
            Arc::new(Progress::default()),
            cancel,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineFailure::Cancelled), "{err:?}");
    assert!(!out.path().join("t").exists());

    // Cancelled while content is being read.
    let cancel = Cancel::default();
    let c = cancel.clone();
    *store.1.lock().unwrap() = Some(Box::new(move || c.cancel()));
    let target = out.path().join("t");
    let err = engine
        .restore(
            &snap.id,
            None,
            &target,
            Arc::new(Progress::default()),
            cancel,
        )
        .await
        .unwrap_err();
    store.1.lock().unwrap().take();
    assert!(matches!(err, EngineFailure::Cancelled), "{err:?}");
    let names = all_names(&target);
    assert!(
        !names.iter().any(|n| n.contains(".coffer-restore-")),
        "temporary files left: {names:?}"
    );
    let restored: Vec<&String> = names.iter().filter(|n| n.starts_with('f')).collect();
    assert!(restored.len() < 8, "the restore went on: {names:?}");
    for name in restored {
        assert_eq!(
            std::fs::read(target.join(name)).unwrap(),
            std::fs::read(src.path().join(name)).unwrap(),
            "{name} is complete"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_progress_and_can_be_cancelled() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;

    let progress = Arc::new(Progress::default());
    let report = engine
        .verify(&snap.id, false, progress.clone(), Cancel::default())
        .await
        .unwrap();
    assert!(report.ok());
    assert!(progress.totals_final());
    assert_eq!(
        progress.snapshot(),
        (snap.files, snap.bytes, snap.files, snap.bytes)
    );

    let progress = Arc::new(Progress::default());
    let report = engine
        .verify(&snap.id, true, progress.clone(), Cancel::default())
        .await
        .unwrap();
    assert!(report.ok());
    assert!(progress.totals_final());
    let (chunks_done, bytes_done, chunks, bytes) = progress.snapshot();
    assert_eq!((chunks_done, bytes_done), (chunks, bytes));
    // Every distinct data chunk of the snapshot, each once (the big file's runs of zeros
    // are one chunk stored once, however many times the file holds it: how many depends
    // on the repository's random chunker seed).
    let doc = engine.repo.load_snapshot(&snap.id).await.unwrap();
    let refs = collect_refs(
        &engine.repo,
        &doc.root().unwrap(),
        String::new(),
        None,
        &Cancel::default(),
    )
    .await
    .unwrap();
    assert_eq!(chunks, refs.data.len() as u64, "{chunks} chunks");
    // 5 small files (zero-byte ones have none) and at least 2 of the big one.
    assert!(chunks >= 5 + 2, "{chunks} chunks");
    assert!(
        bytes > 3 * 1024 * 1024 && bytes <= report.bytes_read,
        "{bytes}"
    );

    for read_data in [false, true] {
        let cancel = Cancel::default();
        cancel.cancel();
        let err = engine
            .verify(&snap.id, read_data, Arc::new(Progress::default()), cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineFailure::Cancelled), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_snapshot_is_gone_and_its_data_stays() {
    let src = tempfile::tempdir().unwrap();
    many_files(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let first = backup(&engine, src.path(), None).await;
    write(&src.path().join("later"), b"added later");
    let second = backup(&engine, src.path(), Some(first.id.clone())).await;
    let packs = store.keys_with("data/");

    engine.forget(&first.id).await.unwrap();
    let ids: Vec<String> = engine
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, std::slice::from_ref(&second.id));
    let out = tempfile::tempdir().unwrap();
    let err = engine
        .restore(
            &first.id,
            None,
            &out.path().join("t"),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineFailure::NotFound(_)), "{err:?}");
    assert!(matches!(
        engine.forget(&first.id).await,
        Err(EngineFailure::NotFound(_))
    ));
    assert!(matches!(
        engine.forget("../config").await,
        Err(EngineFailure::NotFound(_))
    ));
    assert_eq!(
        store.keys_with("data/"),
        packs,
        "packs wait for garbage collection"
    );
    // The other snapshot, which shares every pack, restores whole.
    engine
        .restore(
            &second.id,
            None,
            &out.path().join("t2"),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(describe(&out.path().join("t2")), describe(src.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_totals_end_final_and_equal_to_done() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    many_files(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let mut parent = None;
    for round in 0..2 {
        let progress = Arc::new(Progress::default());
        let snap = engine
            .backup(
                BackupRequest {
                    source_name: "test".into(),
                    path: src.path().to_path_buf(),
                    parent: parent.clone(),
                    budget: None,
                    expected: None,
                    never_read: Vec::new(),
                    filter: coffer_domain::excludes::SourceFilter::default(),
                },
                progress.clone(),
                Cancel::default(),
            )
            .await
            .unwrap();
        if round == 1 {
            assert_eq!(snap.unchanged_files, snap.files, "nothing re-read");
        }
        assert!(progress.totals_final(), "round {round}");
        assert_eq!(
            progress.snapshot(),
            (snap.files, snap.bytes, snap.files, snap.bytes),
            "round {round}"
        );
        parent = Some(snap.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_scanner_counts_what_the_walker_backs_up() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    mkfifo(&src.path().join("dir/pipe"));
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;

    let stop = std::sync::atomic::AtomicBool::new(false);
    let none = coffer_domain::excludes::Excludes::none();
    let scan = |progress: &Progress, cancel: &Cancel| {
        backup::scan(src.path(), &none, progress, cancel, &stop);
    };
    let progress = Progress::default();
    scan(&progress, &Cancel::default());
    assert!(progress.totals_final());
    let (_, _, files, bytes) = progress.snapshot();
    assert_eq!((files, bytes), (snap.files, snap.bytes));

    // An estimate already there (a parent snapshot's, here far too high) gives way to
    // the count once the scan is complete.
    let progress = Progress::default();
    progress
        .files_total
        .store(1_000_000, std::sync::atomic::Ordering::Relaxed);
    progress
        .bytes_total
        .store(1 << 40, std::sync::atomic::Ordering::Relaxed);
    scan(&progress, &Cancel::default());
    assert!(progress.totals_final());
    let (_, _, files, bytes) = progress.snapshot();
    assert_eq!((files, bytes), (snap.files, snap.bytes));

    // Stopped or cancelled, it leaves the totals unfinished.
    let progress = Progress::default();
    let cancel = Cancel::default();
    cancel.cancel();
    scan(&progress, &cancel);
    assert!(!progress.totals_final());
    let progress = Progress::default();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    scan(&progress, &Cancel::default());
    assert!(!progress.totals_final());
}

/// What a backup tells its job's log: the walk, each warning as it happens (here a FIFO
/// that is skipped), what was read and stored; a check and a prune say what they are
/// about to do; a source that is gone is the operator's error, named, not an internal
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_checks_and_prunes_write_their_phases_to_the_job_log() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write(&src.join("a.txt"), b"hello");
    let fifo = src.join("pipe.fifo");
    mkfifo(&fifo);
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let request = |path: &Path| BackupRequest {
        source_name: "test".into(),
        path: path.to_path_buf(),
        parent: None,
        budget: None,
        expected: None,
        never_read: Vec::new(),
        filter: coffer_domain::excludes::SourceFilter::default(),
    };
    let progress = Arc::new(Progress::default());
    let summary = engine
        .backup(request(&src), progress.clone(), Cancel::default())
        .await
        .unwrap();
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    let lines = progress.log.take(chrono::Utc::now());
    let text: Vec<(coffer_domain::joblog::LogLevel, bool, &str)> = lines
        .iter()
        .map(|l| (l.level, l.contents, l.message.as_str()))
        .collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(text[0].2.starts_with("reading ") && text[0].2.ends_with(": every file"));
    assert_eq!(
        (text[1].0, text[1].1, text[1].2),
        (
            coffer_domain::joblog::LogLevel::Warning,
            true,
            summary.warnings[0].as_str()
        ),
        "the warning, as it happened, marked as naming a file"
    );
    assert!(text[1].2.contains("pipe.fifo"), "{text:#?}");
    assert!(
        text[2]
            .2
            .starts_with("read 1 file (0 unchanged, not read again) and 1 directory"),
        "{text:#?}"
    );

    // A check and a prune say what they are about to do.
    let said = |progress: &Progress| -> Vec<String> {
        progress
            .log
            .take(chrono::Utc::now())
            .into_iter()
            .map(|l| l.message)
            .collect()
    };
    let progress = Arc::new(Progress::default());
    engine
        .check(
            Some(coffer_domain::engine::CheckSlice { index: 0, count: 1 }),
            progress.clone(),
            Cancel::default(),
        )
        .await
        .unwrap();
    let lines = said(&progress);
    assert!(
        lines.len() == 1 && lines[0].contains("re-reading data slice 1 of 1"),
        "{lines:?}"
    );
    let progress = Arc::new(Progress::default());
    engine
        .prune(
            coffer_domain::engine::PruneOptions::default(),
            progress.clone(),
            Cancel::default(),
        )
        .await
        .unwrap();
    let lines = said(&progress);
    assert!(
        lines.len() == 1 && lines[0].starts_with("0 packs hold nothing a snapshot uses"),
        "{lines:?}"
    );

    let gone = dir.path().join("gone");
    let err = engine
        .backup(
            request(&gone),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    match err {
        EngineFailure::Invalid(m) => assert!(
            m.contains("cannot read the source directory") && m.contains("gone"),
            "{m}"
        ),
        other => panic!("expected invalid, got {other:?}"),
    }
}
