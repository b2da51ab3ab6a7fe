//! Garbage collection, locks, quota budget and the repository check.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use coffer_domain::engine::{CheckSlice, FixedBudget, PruneOptions};

use super::*;
use crate::lock::{LockTimings, RepoLock};

pub(super) fn quick() -> LockTimings {
    LockTimings {
        refresh: Duration::from_millis(500),
        stale: Duration::from_secs(20),
        poll: Duration::from_millis(20),
        max_wait: Duration::from_mins(1),
    }
}

pub(super) async fn engine_with(store: Arc<dyn ObjectStore>) -> Engine {
    if !is_initialized(store.as_ref()).await.unwrap() {
        init(store.as_ref(), &MASTER, true).await.unwrap();
    }
    Engine::new(
        Repository::open(store, &MASTER, true)
            .await
            .unwrap()
            .with_lock_timings(quick()),
    )
}

/// Every regular file under `root` and its bytes.
pub(super) fn contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    describe(root)
        .into_iter()
        .filter(|(_, (kind, ..))| kind == "file")
        .map(|(path, (_, _, _, bytes))| (String::from_utf8_lossy(&path).into_owned(), bytes))
        .collect()
}

pub(super) async fn restored(engine: &Engine, id: &str) -> BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    engine
        .restore(
            id,
            None,
            &target,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("snapshot {id} no longer restores: {e}"));
    contents(&target)
}

pub(super) async fn prune(engine: &Engine, threshold: u8) -> Result<PruneReport, EngineFailure> {
    engine
        .prune(
            PruneOptions {
                repack_threshold_percent: threshold,
                dry_run: false,
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
}

pub(super) async fn full_check(engine: &Engine) -> CheckReport {
    engine
        .check(
            Some(CheckSlice { index: 0, count: 1 }),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap()
}

/// Small files (they share packs) and a few chunked ones; `round` changes some of each.
pub(super) fn generation(root: &Path, round: u64) {
    for i in 0..40u64 {
        // A quarter of the small files change each round.
        let seed = if i % 4 == round % 4 {
            1000 * round + i
        } else {
            i
        };
        write(&root.join(format!("small/{i}")), &noise(20_000, seed));
    }
    for i in 0..3u64 {
        let seed = if i == round % 3 {
            5000 + round
        } else {
            7000 + i
        };
        write(
            &root.join(format!("big/{i}")),
            &noise(2 * 1024 * 1024, seed),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_frees_what_no_snapshot_uses_and_every_other_snapshot_restores() {
    let src = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::default());
    let engine = engine_with(store.clone()).await;
    generation(src.path(), 0);
    let first = backup(&engine, src.path(), None).await;
    generation(src.path(), 1);
    let second = backup(&engine, src.path(), Some(first.id.clone())).await;
    let keep = contents(src.path());
    let before = engine.stored_bytes().await.unwrap();
    assert_eq!(
        before,
        store.total() as u64,
        "every object counts (no lock is left)"
    );

    // With both snapshots alive there is nothing to collect.
    let idle = prune(&engine, 20).await.unwrap();
    assert_eq!(
        (
            idle.packs_deleted,
            idle.packs_repacked,
            idle.orphan_packs_deleted
        ),
        (0, 0, 0),
        "{idle:?}"
    );
    assert_eq!(idle.bytes_after, before);

    engine.forget(&first.id).await.unwrap();
    let before = engine.stored_bytes().await.unwrap();
    let dry = engine
        .prune(
            PruneOptions {
                repack_threshold_percent: 20,
                dry_run: true,
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert!(
        dry.dry_run && dry.packs_deleted + dry.packs_repacked > 0,
        "{dry:?}"
    );
    assert_eq!(
        engine.stored_bytes().await.unwrap(),
        before,
        "a dry run changes nothing"
    );

    let report = prune(&engine, 20).await.unwrap();
    assert!(
        report.packs_deleted + report.packs_repacked > 0,
        "{report:?}"
    );
    assert!(report.blobs_removed > 0, "{report:?}");
    assert!(report.bytes_after < before, "{report:?}");
    assert_eq!(report.bytes_after, engine.stored_bytes().await.unwrap());
    assert_eq!(restored(&engine, &second.id).await, keep);
    let check = full_check(&engine).await;
    assert!(check.ok(), "{check:?}");
    assert_eq!(check.packs_read, check.packs_total);

    // A second prune finds nothing more to do, even with the lowest threshold (pack
    // headers are no garbage).
    let again = prune(&engine, 1).await.unwrap();
    assert_eq!(
        (
            again.packs_deleted,
            again.packs_repacked,
            again.blobs_removed
        ),
        (0, 0, 0),
        "{again:?}"
    );
    // Forgetting the last snapshot frees every pack.
    engine.forget(&second.id).await.unwrap();
    prune(&engine, 20).await.unwrap();
    assert!(store.keys_with("data/").is_empty());
    assert!(store.keys_with("locks/").is_empty(), "locks are released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mostly_unused_pack_is_repacked_and_its_live_blobs_survive() {
    let src = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::default());
    let engine = engine_with(store.clone()).await;
    // One pack of small files; then most of them change.
    for i in 0..40u64 {
        write(&src.path().join(format!("f{i}")), &noise(50_000, i));
    }
    let first = backup(&engine, src.path(), None).await;
    for i in 0..30u64 {
        write(&src.path().join(format!("f{i}")), &noise(50_000, 100 + i));
    }
    let second = backup(&engine, src.path(), Some(first.id.clone())).await;
    let keep = contents(src.path());
    engine.forget(&first.id).await.unwrap();
    let report = prune(&engine, 20).await.unwrap();
    assert!(report.packs_repacked >= 1, "{report:?}");
    assert!(report.packs_written >= 1, "{report:?}");
    assert_eq!(restored(&engine, &second.id).await, keep);
    assert!(full_check(&engine).await.ok());
    // With repacking off, a partly used pack stays as it is.
    let third_src = tempfile::tempdir().unwrap();
    for i in 0..40u64 {
        write(
            &third_src.path().join(format!("g{i}")),
            &noise(50_000, 900 + i),
        );
    }
    let third = backup(&engine, third_src.path(), None).await;
    for i in 0..30u64 {
        write(
            &third_src.path().join(format!("g{i}")),
            &noise(50_000, 1900 + i),
        );
    }
    let fourth = backup(&engine, third_src.path(), Some(third.id.clone())).await;
    engine.forget(&third.id).await.unwrap();
    let kept = prune(&engine, 100).await.unwrap();
    assert_eq!(kept.packs_repacked, 0, "{kept:?}");
    assert_eq!(
        restored(&engine, &fourth.id).await,
        contents(third_src.path())
    );
}

/// Backups and prunes, from two engines (two processes) on the same storage, racing
/// round after round while old snapshots are forgotten; afterwards every remaining
/// snapshot restores byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_racing_prunes_lose_nothing() {
    backups_racing_prunes(Arc::new(MemStore::default()), 10).await;
}

/// `rounds` of a backup and a prune started together (on odd rounds the prune a little
/// later, to land mid-backup), every kept snapshot restored whole at the end.
pub(super) async fn backups_racing_prunes(store: Arc<dyn ObjectStore>, rounds: u64) {
    let src = tempfile::tempdir().unwrap();
    let backups = Arc::new(engine_with(store.clone()).await);
    let pruner = Arc::new(engine_with(store.clone()).await);
    let mut expected: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for round in 0..rounds {
        generation(src.path(), round);
        // `fresh` is new each round; `revived` brings back the `fresh` of three rounds
        // ago, which only the snapshot forgotten this round holds: the backup reuses
        // chunks that are garbage at that moment — the case a prune must not break.
        write(&src.path().join("fresh"), &noise(1_500_000, 9000 + round));
        write(
            &src.path().join("revived"),
            &noise(1_500_000, 9000 + round.saturating_sub(3)),
        );
        let content = contents(src.path());
        let parent = order.last().cloned();
        // Forget the oldest snapshots so the prune has work that touches shared packs.
        while order.len() > 2 {
            let old = order.remove(0);
            pruner.forget(&old).await.unwrap();
            expected.remove(&old);
        }
        let (b, p) = {
            let (backups, pruner) = (backups.clone(), pruner.clone());
            let path = src.path().to_path_buf();
            let backup = tokio::spawn(async move {
                backups
                    .backup(
                        BackupRequest {
                            source_name: "race".into(),
                            path,
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
            });
            // Start the prune a little later on odd rounds, so it lands mid-backup.
            let delay = Duration::from_millis(if round % 2 == 1 { 30 } else { 0 });
            let prune = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                prune(&pruner, 1).await
            });
            (backup.await.unwrap(), prune.await.unwrap())
        };
        let snap = b.unwrap_or_else(|e| panic!("round {round}: backup failed: {e}"));
        p.unwrap_or_else(|e| panic!("round {round}: prune failed: {e}"));
        expected.insert(snap.id.clone(), content);
        order.push(snap.id);
    }
    let last = prune(&pruner, 1).await.unwrap();
    assert_eq!(last.snapshots, expected.len() as u64);
    for (id, content) in &expected {
        // Through the backup engine, whose index predates the last prune.
        assert_eq!(&restored(&backups, id).await, content, "snapshot {id}");
    }
    let check = full_check(&pruner).await;
    assert!(check.ok(), "{check:?}");
    assert_eq!(locks_left(store.as_ref()).await, Vec::<ObjectKey>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_waits_for_running_work_and_new_work_waits_for_it() {
    prune_waits_for_work(Arc::new(MemStore::default())).await;
}

/// A prune waits for a shared lock; new shared locks wait behind the prune; a cancelled
/// wait leaves no lock; a second prune is told the repository is busy.
pub(super) async fn prune_waits_for_work(store: Arc<dyn ObjectStore>) {
    let engine = Arc::new(engine_with(store.clone()).await);
    let held = RepoLock::shared(store.clone(), quick(), "backup", &Cancel::default())
        .await
        .unwrap();
    let pruning = {
        let engine = engine.clone();
        tokio::spawn(async move { prune(&engine, 20).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pruning.is_finished(),
        "prune must wait for the shared lock"
    );
    // While the prune waits, a new reader waits too (no starvation of the prune).
    let cancel = Cancel::default();
    let waiting = {
        let (store, cancel) = (store.clone(), cancel.clone());
        tokio::spawn(async move { RepoLock::shared(store, quick(), "restore", &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "a new shared lock waits behind the prune"
    );
    held.release().await;
    pruning.await.unwrap().unwrap();
    let lock = waiting.await.unwrap().unwrap();
    lock.release().await;
    // A cancelled wait ends with `Cancelled` and leaves no lock behind.
    let exclusive = RepoLock::exclusive(store.clone(), quick(), "prune", &Cancel::default())
        .await
        .unwrap();
    let cancel = Cancel::default();
    let waiter = {
        let (store, cancel) = (store.clone(), cancel.clone());
        tokio::spawn(async move { RepoLock::shared(store, quick(), "backup", &cancel).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    assert!(matches!(waiter.await.unwrap(), Err(EngineError::Cancelled)));
    // A second prune is told the repository is busy.
    let second = RepoLock::exclusive(store.clone(), quick(), "prune", &Cancel::default()).await;
    assert!(matches!(second, Err(EngineError::Busy(_))));
    exclusive.release().await;
    assert_eq!(locks_left(store.as_ref()).await, Vec::<ObjectKey>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lock_of_a_crashed_process_does_not_block_and_is_removed() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let engine = engine_with(store.clone()).await;
    let old = chrono::Utc::now() - chrono::Duration::hours(2);
    let doc = serde_json::json!({
        "version": 1, "exclusive": false, "purpose": "backup", "hostname": "gone",
        "pid": 1, "created_at": old, "refreshed_at": old,
    });
    let k = ObjectKey::parse("locks/00stale").unwrap();
    store
        .put(&k, Bytes::from(serde_json::to_vec(&doc).unwrap()))
        .await
        .unwrap();
    prune(&engine, 20).await.unwrap();
    assert!(
        !store.exists(&k).await.unwrap(),
        "the prune removes a stale lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_not_refreshed_in_time_is_given_up() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let timings = LockTimings {
        refresh: Duration::from_millis(100),
        stale: Duration::from_millis(150),
        poll: Duration::from_millis(10),
        max_wait: Duration::from_mins(1),
    };
    let lock = RepoLock::shared(store.clone(), timings, "backup", &Cancel::default())
        .await
        .unwrap();
    lock.ensure_held().unwrap();
    // The holder "sleeps" past the point where others may take its lock for stale.
    std::thread::sleep(Duration::from_millis(200));
    assert!(matches!(lock.ensure_held(), Err(EngineError::Busy(_))));
    lock.release().await;
}

/// An object store that fails every put and delete (of anything but locks) after a
/// number of them — a crash at that point, as far as storage can tell — or that loses the
/// acknowledgement of some puts, or whose ranged reads of packs break off.
pub(super) struct Faulty {
    inner: Arc<dyn ObjectStore>,
    left: AtomicI64,
    /// Puts of keys with this prefix store the object, then report an error (a lost
    /// acknowledgement: a timeout, a failed fsync after the rename).
    lost_ack: Option<&'static str>,
    /// Ranged reads (`read_range`) of packs still to break off (a connection reset):
    /// after their first piece, or before it when `break_at_once`.
    pub(super) broken_reads: AtomicU32,
    pub(super) break_at_once: AtomicBool,
}

impl Faulty {
    /// Fails every put and delete after `writes` of them.
    pub(super) fn crash_after(inner: Arc<dyn ObjectStore>, writes: i64) -> Self {
        Self::with(inner, writes, None)
    }

    /// Stores puts under `prefix` and reports them failed.
    fn lose_ack(inner: Arc<dyn ObjectStore>, prefix: &'static str) -> Self {
        Self::with(inner, i64::MAX, Some(prefix))
    }

    /// Writes everything; ranged reads break off as `broken_reads` says (none at first).
    pub(super) fn breaking_reads(inner: Arc<dyn ObjectStore>) -> Self {
        Self::with(inner, i64::MAX, None)
    }

    fn with(inner: Arc<dyn ObjectStore>, writes: i64, lost_ack: Option<&'static str>) -> Self {
        Self {
            inner,
            left: AtomicI64::new(writes),
            lost_ack,
            broken_reads: AtomicU32::new(0),
            break_at_once: AtomicBool::new(false),
        }
    }
}

/// A ranged read that breaks off after its first piece (`served` set: at once).
struct BreakAfterFirst<'a> {
    inner: Box<dyn RangeReader + 'a>,
    served: bool,
    breaks: bool,
}

#[async_trait]
impl RangeReader for BreakAfterFirst<'_> {
    async fn next(&mut self) -> Result<Bytes, StorageError> {
        if self.breaks && self.served {
            return Err(StorageError::Unavailable("connection reset by peer".into()));
        }
        self.served = true;
        self.inner.next().await
    }
}

impl Faulty {
    fn step(&self, key: &ObjectKey) -> Result<(), StorageError> {
        if key.as_str().starts_with("locks/") {
            return Ok(());
        }
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(StorageError::Unavailable("simulated crash".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError> {
        self.step(key)?;
        if self.lost_ack.is_some_and(|p| key.as_str().starts_with(p)) {
            self.inner.put(key, bytes).await?;
            return Err(StorageError::Unavailable("timed out".into()));
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
    async fn read_range<'a>(
        &'a self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Box<dyn RangeReader + 'a>>, StorageError> {
        let Some(inner) = self.inner.read_range(key, offset, len).await? else {
            return Ok(None);
        };
        let breaks = key.as_str().starts_with("data/")
            && self
                .broken_reads
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        Ok(Some(Box::new(BreakAfterFirst {
            inner,
            served: self.break_at_once.load(Ordering::SeqCst),
            breaks,
        })))
    }
    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        self.inner.exists(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        self.step(key)?;
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

/// A prune stopped after every possible number of storage writes leaves every remaining
/// snapshot complete, and the next prune finishes the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_interrupted_at_any_step_leaves_every_snapshot_whole() {
    let src = tempfile::tempdir().unwrap();
    let mut step = 0;
    loop {
        let mem = Arc::new(MemStore::default());
        let setup = engine_with(mem.clone()).await;
        generation(src.path(), 0);
        let a = backup(&setup, src.path(), None).await;
        generation(src.path(), 1);
        let b = backup(&setup, src.path(), Some(a.id.clone())).await;
        let keep = contents(src.path());
        setup.forget(&a.id).await.unwrap();
        let faulty = Arc::new(Faulty::crash_after(mem.clone(), step));
        let crashing = engine_with(faulty).await;
        let outcome = prune(&crashing, 1).await;
        // "Restart": a fresh process on the same storage.
        let after = engine_with(mem.clone()).await;
        assert_eq!(
            restored(&after, &b.id).await,
            keep,
            "crash after {step} writes"
        );
        let check = full_check(&after).await;
        assert!(check.ok(), "crash after {step} writes: {check:?}");
        let clean = prune(&after, 1).await.unwrap();
        assert_eq!(restored(&after, &b.id).await, keep);
        if outcome.is_ok() {
            // Every step has been interrupted once; the last run went through whole.
            assert_eq!(
                clean.packs_deleted + clean.orphan_packs_deleted,
                0,
                "{clean:?}"
            );
            assert!(
                step > 2,
                "the prune must have had several steps to interrupt"
            );
            break;
        }
        step += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_over_its_budget_stops_and_leaves_nothing() {
    let src = tempfile::tempdir().unwrap();
    many_files(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine_with(store.clone()).await;
    let before: BTreeMap<String, Bytes> = store.0.lock().unwrap().clone();
    let err = engine
        .backup(
            BackupRequest {
                source_name: "big".into(),
                path: src.path().to_path_buf(),
                parent: None,
                budget: Some(Arc::new(FixedBudget::new(5 * 1024 * 1024))),
                expected: None,
                never_read: Vec::new(),
                filter: coffer_domain::excludes::SourceFilter::default(),
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineFailure::QuotaExceeded(_)), "{err:?}");
    assert_eq!(
        *store.0.lock().unwrap(),
        before,
        "nothing of it stays in storage"
    );
    // With just enough room it goes through, and storage grows by no more than that.
    let room = 26 * 1024 * 1024;
    let size_before = store.total() as u64;
    let done = engine
        .backup(
            BackupRequest {
                source_name: "big".into(),
                path: src.path().to_path_buf(),
                parent: None,
                budget: Some(Arc::new(FixedBudget::new(room))),
                expected: None,
                never_read: Vec::new(),
                filter: coffer_domain::excludes::SourceFilter::default(),
            },
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    let grown = store.total() as u64 - size_before;
    assert!(grown <= room + 4096, "grew {grown} with a budget of {room}");
    assert!(done.stored_bytes_added + 4096 >= grown, "{done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_reads_each_pack_once_per_cycle_and_names_damaged_snapshots() {
    let src = tempfile::tempdir().unwrap();
    generation(src.path(), 0);
    let store = Arc::new(MemStore::default());
    let engine = engine_with(store.clone()).await;
    let snap = backup(&engine, src.path(), None).await;
    let mut read = 0;
    for index in 0..4 {
        let report = engine
            .check(
                Some(CheckSlice { index, count: 4 }),
                Arc::new(Progress::default()),
                Cancel::default(),
            )
            .await
            .unwrap();
        assert!(report.ok(), "{report:?}");
        assert_eq!(report.snapshots, 1);
        read += report.packs_read;
    }
    assert_eq!(read, store.keys_with("data/").len() as u64);

    let pack = data_pack_with_most_bytes(&store);
    store.edit(&pack, |b| b[100] ^= 0xff);
    let report = full_check(&engine).await;
    assert!(!report.ok());
    assert_eq!(report.damaged_snapshots, vec![snap.id.clone()]);
}

/// A prune never copies a damaged blob into a new pack: it stops, and deletes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_that_meets_damaged_live_data_stops_and_deletes_nothing() {
    let src = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::default());
    let engine = engine_with(store.clone()).await;
    // One pack of small files; most of them change, so the first snapshot's pack is
    // mostly garbage once it is forgotten and gets repacked.
    for i in 0..40u64 {
        write(&src.path().join(format!("f{i}")), &noise(50_000, i));
    }
    let first = backup(&engine, src.path(), None).await;
    let packs = store.keys_with("data/");
    for i in 0..30u64 {
        write(&src.path().join(format!("f{i}")), &noise(50_000, 100 + i));
    }
    backup(&engine, src.path(), Some(first.id.clone())).await;
    engine.forget(&first.id).await.unwrap();
    // Damage every blob of the first snapshot's data pack (its live ones included).
    let old = packs
        .iter()
        .find(|k| store.0.lock().unwrap()[k.as_str()].len() > 1_000_000)
        .unwrap()
        .clone();
    store.edit(&old, |b| {
        for at in (100..b.len() - 10_000).step_by(20_000) {
            b[at] ^= 0xff;
        }
    });
    let before = store.keys_with("");
    let err = prune(&engine, 20).await.unwrap_err();
    assert!(matches!(err, EngineFailure::Damaged(_)), "{err:?}");
    assert_eq!(store.keys_with(""), before, "nothing was deleted or added");
}

/// A backup that fails once its index may be visible removes nothing (another backup
/// may already reuse those packs); the next prune collects what no snapshot uses, and
/// every snapshot stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_failing_after_its_index_leaves_its_data_to_prune() {
    let src = tempfile::tempdir().unwrap();
    generation(src.path(), 0);
    let mem = Arc::new(MemStore::default());
    let engine = engine_with(mem.clone()).await;
    let keep = backup(&engine, src.path(), None).await;
    let kept = contents(src.path());
    for (round, prefix) in [(5, "index/"), (6, "snapshots/")] {
        generation(src.path(), round);
        let failing = engine_with(Arc::new(Faulty::lose_ack(mem.clone(), prefix))).await;
        let packs = mem.keys_with("data/");
        let err = failing
            .backup(
                BackupRequest {
                    source_name: "t".into(),
                    path: src.path().to_path_buf(),
                    parent: Some(keep.id.clone()),
                    budget: None,
                    expected: None,
                    never_read: Vec::new(),
                    filter: coffer_domain::excludes::SourceFilter::default(),
                },
                Arc::new(Progress::default()),
                Cancel::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, EngineFailure::Unavailable(_)),
            "{prefix}: {err:?}"
        );
        assert!(
            mem.keys_with("data/").len() > packs.len(),
            "{prefix}: the packs stay (an index that landed may name them)"
        );
        // Every snapshot in storage, the stray one included, is whole.
        let check = full_check(&engine).await;
        assert!(check.ok(), "{prefix}: {check:?}");
    }
    // The stray snapshot (stored although its put "failed") is a real one; forget it,
    // and the prune removes all that the failed backups left.
    for s in engine.snapshots().await.unwrap() {
        if s.id != keep.id {
            engine.forget(&s.id).await.unwrap();
        }
    }
    let report = prune(&engine, 20).await.unwrap();
    assert!(report.packs_deleted > 0, "{report:?}");
    assert_eq!(restored(&engine, &keep.id).await, kept);
    assert!(full_check(&engine).await.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_gives_way_to_long_running_work_and_refuses_unreadable_locks() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemStore::default());
    let timings = LockTimings {
        max_wait: Duration::from_millis(300),
        ..quick()
    };
    let held = RepoLock::shared(store.clone(), timings, "export", &Cancel::default())
        .await
        .unwrap();
    let err = RepoLock::exclusive(store.clone(), timings, "prune", &Cancel::default())
        .await
        .err()
        .expect("the prune gives way");
    assert!(matches!(err, EngineError::Busy(_)), "{err:?}");
    // Its lock is gone: new work is not held up.
    let next = RepoLock::shared(store.clone(), timings, "backup", &Cancel::default())
        .await
        .unwrap();
    next.release().await;
    held.release().await;

    let junk = ObjectKey::parse("locks/junk").unwrap();
    store
        .put(&junk, Bytes::from_static(b"not json"))
        .await
        .unwrap();
    let err = RepoLock::exclusive(store.clone(), timings, "prune", &Cancel::default())
        .await
        .err()
        .expect("an unreadable lock stops a prune");
    assert!(
        matches!(err, EngineError::Busy(ref m) if m.contains("locks/junk")),
        "{err:?}"
    );
    // Backups are not stopped by it.
    RepoLock::shared(store.clone(), timings, "backup", &Cancel::default())
        .await
        .unwrap()
        .release()
        .await;
    store.delete(&junk).await.unwrap();
    assert_eq!(locks_left(store.as_ref()).await, Vec::<ObjectKey>::new());
}
