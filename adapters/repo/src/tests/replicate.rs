//! Replication: a replica alone restores everything, copies resume without re-sending,
//! append-only replicas never delete, others follow the repository's retention.

use std::collections::BTreeSet;

use coffer_domain::engine::{CheckSlice, PruneOptions};
use coffer_domain::replicas::{CopyOptions, CopyReport};

use super::*;

/// A store that records what is written and deleted, and can fail every put after the
/// first `fail_after` (a crash half-way through a copy).
struct Recording {
    inner: Arc<MemStore>,
    puts: Mutex<Vec<String>>,
    deletes: Mutex<Vec<String>>,
    fail_after: Mutex<Option<usize>>,
}

impl Recording {
    fn new(inner: Arc<MemStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            puts: Mutex::default(),
            deletes: Mutex::default(),
            fail_after: Mutex::default(),
        })
    }

    /// Writes and deletions of repository objects (lock objects come and go).
    fn data_puts(&self) -> Vec<String> {
        let puts = self.puts.lock().unwrap();
        puts.iter()
            .filter(|k| !k.starts_with("locks/"))
            .cloned()
            .collect()
    }

    fn data_deletes(&self) -> Vec<String> {
        let deletes = self.deletes.lock().unwrap();
        deletes
            .iter()
            .filter(|k| !k.starts_with("locks/"))
            .cloned()
            .collect()
    }
}

#[async_trait]
impl ObjectStore for Recording {
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError> {
        if !key.as_str().starts_with("locks/") {
            let mut left = self.fail_after.lock().unwrap();
            if let Some(n) = left.as_mut() {
                if *n == 0 {
                    return Err(StorageError::Unavailable("the process died".into()));
                }
                *n -= 1;
            }
            self.puts.lock().unwrap().push(key.to_string());
        }
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        self.inner.get_range(key, offset, len).await
    }
    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        self.inner.exists(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.deletes.lock().unwrap().push(key.to_string());
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        self.inner.list(prefix).await
    }
    async fn list_sized(&self, prefix: &str) -> Result<Vec<(ObjectKey, u64)>, StorageError> {
        self.inner.list_sized(prefix).await
    }
    async fn check(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

const KEEP_ALL: CopyOptions = CopyOptions {
    append_only: true,
    repack_threshold_percent: 20,
};
const MIRROR: CopyOptions = CopyOptions {
    append_only: false,
    repack_threshold_percent: 20,
};

async fn copy(
    engine: &Engine,
    dest: Arc<dyn ObjectStore>,
    options: CopyOptions,
) -> Result<CopyReport, EngineFailure> {
    engine
        .replicate(
            dest,
            options,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
}

/// Every regular file under `root` and its bytes.
fn files(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    describe(root)
        .into_iter()
        .filter(|(_, (kind, ..))| kind == "file")
        .map(|(path, (_, _, _, bytes))| (path, bytes))
        .collect()
}

/// The replica opened on its own, with the master key only.
async fn open_replica(store: Arc<MemStore>) -> Engine {
    let dyn_store: Arc<dyn ObjectStore> = store;
    assert!(is_initialized(dyn_store.as_ref()).await.unwrap());
    Engine::new(Repository::open(dyn_store, &MASTER, true).await.unwrap())
}

async fn restores_to(engine: &Engine, snapshot: &str, expected: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    restore_all(engine, snapshot, &target).await;
    assert_eq!(&files(&target), expected, "snapshot {snapshot}");
}

fn repository_keys(store: &MemStore) -> BTreeSet<String> {
    store
        .keys_with("")
        .into_iter()
        .filter(|k| !k.starts_with("locks/"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_alone_restores_every_snapshot_with_the_master_key() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let primary = Arc::new(MemStore::default());
    let engine = engine(&primary, true).await;
    let first = backup(&engine, src.path(), None).await;
    let first_files = files(src.path());
    write(&src.path().join("dir/new.bin"), &noise(700_000, 3));
    let second = backup(&engine, src.path(), Some(first.id.clone())).await;
    let second_files = files(src.path());

    let replica = Arc::new(MemStore::default());
    let progress = Arc::new(Progress::default());
    let report = engine
        .replicate(
            replica.clone(),
            KEEP_ALL,
            progress.clone(),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.snapshots, 2);
    assert_eq!(report.replica_snapshots, 2);
    assert_eq!(report.objects_present, 0);
    // Every object of the repository (but its locks) is on the replica, byte for byte.
    assert_eq!(repository_keys(&replica), repository_keys(&primary));
    for k in repository_keys(&primary) {
        let key = ObjectKey::parse(&k).unwrap();
        assert_eq!(
            replica.get(&key).await.unwrap(),
            primary.get(&key).await.unwrap(),
            "{k}"
        );
    }
    // Progress counted the objects and bytes after config and key.
    let sent = progress
        .files_done
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sent, report.objects_copied - 2);
    assert_eq!(
        progress
            .files_total
            .load(std::sync::atomic::Ordering::Relaxed),
        sent
    );
    assert!(
        progress
            .totals_final
            .load(std::sync::atomic::Ordering::Relaxed)
    );

    drop(engine);
    primary.0.lock().unwrap().clear();
    let alone = open_replica(replica).await;
    let listed: Vec<String> = alone
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![first.id.clone(), second.id.clone()]);
    restores_to(&alone, &first.id, &first_files).await;
    restores_to(&alone, &second.id, &second_files).await;
    let check = alone
        .check(
            Some(CheckSlice { index: 0, count: 1 }),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert!(check.ok(), "{:?}", check.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_resumes_without_sending_anything_twice() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..6u64 {
        write(&src.path().join(format!("f{i}")), &noise(3_000_000, i + 1));
    }
    let primary = Arc::new(MemStore::default());
    let engine = engine(&primary, true).await;
    let snap = backup(&engine, src.path(), None).await;

    let replica = Arc::new(MemStore::default());
    let dest = Recording::new(replica.clone());
    *dest.fail_after.lock().unwrap() = Some(4);
    let err = copy(&engine, dest.clone(), KEEP_ALL).await.unwrap_err();
    assert!(err.to_string().contains("died"), "{err}");
    let first_run = dest.data_puts();
    assert_eq!(first_run.len(), 4);
    // Dependency order: no snapshot on the replica before its packs and index.
    assert!(replica.keys_with("snapshots/").is_empty());
    assert!(replica.keys_with("index/").is_empty());
    let held = repository_keys(&replica);

    dest.puts.lock().unwrap().clear();
    *dest.fail_after.lock().unwrap() = None;
    let report = copy(&engine, dest.clone(), KEEP_ALL).await.unwrap();
    let second_run = dest.data_puts();
    for k in &second_run {
        assert!(!held.contains(k), "{k} was sent again");
    }
    assert_eq!(report.objects_present, held.len() as u64);
    assert_eq!(report.objects_copied, second_run.len() as u64);
    assert_eq!(repository_keys(&replica), repository_keys(&primary));

    // A third copy sends nothing at all.
    dest.puts.lock().unwrap().clear();
    let report = copy(&engine, dest.clone(), KEEP_ALL).await.unwrap();
    assert_eq!(report.objects_copied, 0);
    assert!(dest.data_puts().is_empty());

    let alone = open_replica(replica).await;
    restores_to(&alone, &snap.id, &files(src.path())).await;
}

/// Two snapshots with nothing in common, copied; then the first forgotten and pruned in
/// the repository, and the copy run again with `options`.
async fn after_retention(
    options: CopyOptions,
) -> (
    Arc<MemStore>,
    Arc<Recording>,
    [String; 2],
    [BTreeMap<Vec<u8>, Vec<u8>>; 2],
) {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a"), &noise(2_000_000, 11));
    let primary = Arc::new(MemStore::default());
    let engine = engine(&primary, true).await;
    let old = backup(&engine, src.path(), None).await;
    let old_files = files(src.path());
    std::fs::remove_file(src.path().join("a")).unwrap();
    write(&src.path().join("b"), &noise(2_000_000, 12));
    let new = backup(&engine, src.path(), None).await;
    let new_files = files(src.path());

    let replica = Arc::new(MemStore::default());
    let dest = Recording::new(replica.clone());
    copy(&engine, dest.clone(), options).await.unwrap();
    assert!(dest.data_deletes().is_empty());

    engine.forget(&old.id).await.unwrap();
    engine
        .prune(
            PruneOptions {
                repack_threshold_percent: 20,
                dry_run: false,
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    let report = copy(&engine, dest.clone(), options).await.unwrap();
    assert_eq!(report.snapshots, 1);
    (replica, dest, [old.id, new.id], [old_files, new_files])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_only_replica_never_deletes() {
    let (replica, dest, [old, new], [old_files, new_files]) = after_retention(KEEP_ALL).await;
    assert_eq!(dest.data_deletes(), Vec::<String>::new());
    let alone = open_replica(replica).await;
    restores_to(&alone, &old, &old_files).await;
    restores_to(&alone, &new, &new_files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_the_repository_s_retention_and_is_pruned() {
    let (replica, dest, [old, new], [_, new_files]) = after_retention(MIRROR).await;
    let deleted = dest.data_deletes();
    assert!(deleted.contains(&format!("snapshots/{old}")), "{deleted:?}");
    assert!(
        deleted.iter().any(|k| k.starts_with("data/")),
        "{deleted:?}"
    );
    let before = replica.total();
    let alone = open_replica(replica.clone()).await;
    let listed: Vec<String> = alone
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![new.clone()]);
    restores_to(&alone, &new, &new_files).await;
    // The old snapshot's data is gone: the replica is no bigger than needed.
    assert!(before < 3_000_000, "{before} bytes left on the replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_holding_another_repository_is_refused_untouched() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a"), b"hello");
    let primary = Arc::new(MemStore::default());
    let engine = engine(&primary, true).await;
    backup(&engine, src.path(), None).await;

    let other = Arc::new(MemStore::default());
    init(other.as_ref(), &MASTER, true).await.unwrap();
    let before = repository_keys(&other);
    let dest = Recording::new(other.clone());
    let err = copy(&engine, dest.clone(), MIRROR).await.unwrap_err();
    assert!(matches!(err, EngineFailure::Invalid(_)), "{err}");
    assert!(dest.puts.lock().unwrap().is_empty());
    assert_eq!(repository_keys(&other), before);

    // Stray objects without a config: refused too.
    let stray = Arc::new(MemStore::default());
    stray
        .put(
            &ObjectKey::parse("snapshots/x").unwrap(),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap();
    let err = copy(&engine, stray, KEEP_ALL).await.unwrap_err();
    assert!(matches!(err, EngineFailure::Invalid(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_master_key_reaches_the_replica_at_the_next_copy() {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a"), b"hello");
    let primary = Arc::new(MemStore::default());
    let engine = engine(&primary, true).await;
    let snap = backup(&engine, src.path(), None).await;
    let replica = Arc::new(MemStore::default());
    copy(&engine, replica.clone(), KEEP_ALL).await.unwrap();
    let new_key = [7u8; 32];
    rewrap(primary.as_ref(), &MASTER, &new_key).await.unwrap();
    let report = copy(&engine, replica.clone(), KEEP_ALL).await.unwrap();
    assert_eq!(report.objects_copied, 1, "only the key object changed");
    let dyn_store: Arc<dyn ObjectStore> = replica;
    let alone = Engine::new(Repository::open(dyn_store, &new_key, true).await.unwrap());
    restores_to(&alone, &snap.id, &files(src.path())).await;
}
