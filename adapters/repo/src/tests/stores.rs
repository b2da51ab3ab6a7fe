//! The engine's contract on every kind of store it runs on: the test double
//! ([`MemStore`]), opendal's `memory` service, a directory (`fs`), and an S3 bucket on a
//! real distributed store — a three-node Garage cluster with replication factor 3
//! (`.ci/garage start`), named by `COFFER_TEST_S3_*`. Without those variables the S3
//! variants are skipped with a printed reason, and fail under
//! `COFFER_TEST_REQUIRE_ALL=1` (CI).
//!
//! Each contract is one function over an `Arc<dyn ObjectStore>`; [`on_every_store!`]
//! makes one test of it per store. On S3 every test works under its own key prefix.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coffer_storage::OpendalStore;
use coffer_storage::testing::s3_options;

use super::gc::{Faulty, contents, engine_with, full_check, generation, prune, restored};
use super::*;
use crate::lock::RepoLock;

/// A store for one test, and what keeps it alive.
pub(super) struct TestStore {
    pub store: Arc<dyn ObjectStore>,
    _dir: Option<tempfile::TempDir>,
}

pub(super) fn store_of(kind: &str, test: &str) -> Option<TestStore> {
    Some(match kind {
        "mem" => TestStore {
            store: Arc::new(MemStore::default()),
            _dir: None,
        },
        "opendal_memory" => TestStore {
            store: Arc::new(OpendalStore::memory()),
            _dir: None,
        },
        "fs" => {
            let dir = tempfile::tempdir().unwrap();
            TestStore {
                store: Arc::new(OpendalStore::fs(&dir.path().join("repo")).unwrap()),
                _dir: Some(dir),
            }
        }
        "s3" => TestStore {
            store: Arc::new(OpendalStore::s3(&s3_options(test)?).unwrap()),
            _dir: None,
        },
        other => unreachable!("no store kind {other}"),
    })
}

/// One test of `$contract` per kind of store.
macro_rules! on_every_store {
    ($name:ident, $contract:path) => {
        mod $name {
            use super::*;

            async fn run(kind: &str) {
                let test = concat!(stringify!($name), "::", "store");
                if let Some(store) = store_of(kind, test) {
                    $contract(store.store.clone()).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn mem() {
                run("mem").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn opendal_memory() {
                run("opendal_memory").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn fs() {
                run("fs").await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn s3() {
                run("s3").await;
            }
        }
    };
}

on_every_store!(round_trip_and_dedup, round_trip_and_dedup_contract);
on_every_store!(damage_is_found, damage_is_found_contract);
on_every_store!(backups_racing_prunes, backups_racing_prunes_contract);
on_every_store!(exclusive_locks_exclude, exclusive_locks_exclude_contract);
on_every_store!(prune_waits_for_work, prune_waits_for_work_contract);
on_every_store!(interrupted_writes, interrupted_writes_contract);

/// Two snapshots restore byte for byte; the second, of an unchanged tree, stores almost
/// nothing; the check is clean; no lock is left.
async fn round_trip_and_dedup_contract(store: Arc<dyn ObjectStore>) {
    let src = tempfile::tempdir().unwrap();
    generation(src.path(), 0);
    edge_cases(&src.path().join("edges"));
    let engine = engine_with(store.clone()).await;
    let first = backup(&engine, src.path(), None).await;
    let stored = store.list_sized("").await.unwrap();
    let before: u64 = stored.iter().map(|(_, n)| n).sum();
    let second = backup(&engine, src.path(), Some(first.id.clone())).await;
    let after: u64 = store
        .list_sized("")
        .await
        .unwrap()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(
        after - before < 64 * 1024,
        "an unchanged tree stored {} bytes again",
        after - before
    );
    let out = tempfile::tempdir().unwrap();
    for id in [&first.id, &second.id] {
        let target = out.path().join(id);
        restore_all(&engine, id, &target).await;
        assert_eq!(describe(&target), describe(src.path()), "snapshot {id}");
    }
    assert!(full_check(&engine).await.ok());
    assert_eq!(locks_left(store.as_ref()).await, Vec::<ObjectKey>::new());
}

/// A flipped byte in stored data is found by a full verify and by the check, and its
/// file is never restored under its name.
async fn damage_is_found_contract(store: Arc<dyn ObjectStore>) {
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("a.bin"), &noise(3 * 1024 * 1024, 11));
    write(&src.path().join("b.txt"), b"small file b");
    let engine = engine_with(store.clone()).await;
    let snap = backup(&engine, src.path(), None).await;
    let (pack, _) = store
        .list_sized("data/")
        .await
        .unwrap()
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("a data pack");
    let mut bytes = store.get(&pack).await.unwrap().unwrap().to_vec();
    bytes[1000] ^= 0x01;
    store.put(&pack, Bytes::from(bytes)).await.unwrap();
    let report = engine
        .verify(
            &snap.id,
            true,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.damaged_files, ["a.bin"], "{report:?}");
    assert!(!full_check(&engine).await.ok());
    let out = tempfile::tempdir().unwrap();
    let err = engine
        .restore(
            &snap.id,
            None,
            &out.path().join("t"),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineFailure::Damaged(_)), "{err:?}");
    assert!(!out.path().join("t/a.bin").exists());

    // The same pack cut short: a restore reads past its end (one ranged read over its
    // blobs, which the store answers with fewer bytes or refuses) and names the file.
    let mut bytes = store.get(&pack).await.unwrap().unwrap().to_vec();
    bytes[1000] ^= 0x01;
    bytes.truncate(bytes.len() / 2);
    store.put(&pack, Bytes::from(bytes)).await.unwrap();
    let err = try_restore(&engine, &snap.id, &out.path().join("u"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineFailure::Damaged(m) if m.contains("a.bin")),
        "{err:?}"
    );
    assert!(!out.path().join("u/a.bin").exists());
    assert_eq!(
        std::fs::read(out.path().join("u/b.txt")).unwrap(),
        b"small file b"
    );
}

/// Backups and prunes started together, round after round, lose nothing: every kept
/// snapshot restores whole through an engine whose index predates the prunes.
async fn backups_racing_prunes_contract(store: Arc<dyn ObjectStore>) {
    super::gc::backups_racing_prunes(store, 6).await;
}

/// Several processes asking for the exclusive lock at once: never two hold it together,
/// and the repository is never left locked.
async fn exclusive_locks_exclude_contract(store: Arc<dyn ObjectStore>) {
    let holders = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let won = Arc::new(AtomicUsize::new(0));
    for _round in 0..3 {
        let mut takers = Vec::new();
        for _ in 0..4 {
            let (store, holders, most, won) =
                (store.clone(), holders.clone(), most.clone(), won.clone());
            takers.push(tokio::spawn(async move {
                match RepoLock::exclusive(store, super::gc::quick(), "prune", &Cancel::default())
                    .await
                {
                    Ok(lock) => {
                        let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        won.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        holders.fetch_sub(1, Ordering::SeqCst);
                        lock.release().await;
                    }
                    Err(EngineError::Busy(_)) => {}
                    Err(e) => panic!("taking the lock: {e}"),
                }
            }));
        }
        for taker in takers {
            taker.await.unwrap();
        }
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two held the exclusive lock"
    );
    // Write-then-list can make every taker of a round back off, never let two through;
    // over three rounds of four, someone must have won.
    assert!(won.load(Ordering::SeqCst) >= 1, "nobody ever got the lock");
    assert_eq!(locks_left(store.as_ref()).await, Vec::<ObjectKey>::new());
}

async fn prune_waits_for_work_contract(store: Arc<dyn ObjectStore>) {
    super::gc::prune_waits_for_work(store).await;
}

/// Writes that stop part-way (a crash, a store that goes away) leave nothing visible:
/// an interrupted backup adds no snapshot, an interrupted prune leaves every snapshot
/// whole, and the next prune removes what the backup left.
async fn interrupted_writes_contract(store: Arc<dyn ObjectStore>) {
    let src = tempfile::tempdir().unwrap();
    let engine = engine_with(store.clone()).await;
    generation(src.path(), 0);
    let a = backup(&engine, src.path(), None).await;
    let keep = contents(src.path());
    generation(src.path(), 1);
    for writes in [0, 1, 3] {
        let crashing = engine_with(Arc::new(Faulty::crash_after(store.clone(), writes))).await;
        let outcome = crashing
            .backup(
                BackupRequest {
                    source_name: "crash".into(),
                    path: src.path().to_path_buf(),
                    parent: Some(a.id.clone()),
                    budget: None,
                    expected: None,
                    never_read: Vec::new(),
                    filter: coffer_domain::excludes::SourceFilter::default(),
                },
                Arc::new(Progress::default()),
                Cancel::default(),
            )
            .await;
        assert!(outcome.is_err(), "a backup whose writes fail must fail");
        let snapshots: BTreeSet<String> = engine
            .repo
            .list_snapshots()
            .await
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            snapshots,
            BTreeSet::from([a.id.clone()]),
            "after {writes} writes"
        );
    }
    for writes in [0, 2, 5] {
        let crashing = engine_with(Arc::new(Faulty::crash_after(store.clone(), writes))).await;
        let _ = prune(&crashing, 1).await;
        assert_eq!(
            restored(&engine, &a.id).await,
            keep,
            "prune crashed after {writes}"
        );
    }
    prune(&engine, 1).await.unwrap();
    let again = prune(&engine, 1).await.unwrap();
    assert_eq!(
        again.packs_deleted + again.orphan_packs_deleted,
        0,
        "the first whole prune removes everything the interrupted work left: {again:?}"
    );
    assert!(full_check(&engine).await.ok());
    assert_eq!(restored(&engine, &a.id).await, keep);
    assert_eq!(locks_left(store.as_ref()).await, Vec::<ObjectKey>::new());
}
