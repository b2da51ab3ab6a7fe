//! The `ObjectStore` contract, on the memory service and on `fs` in a temporary directory.

use bytes::Bytes;
use coffer_domain::storage::{ObjectKey, ObjectStore};

use super::OpendalStore;

fn key(s: &str) -> ObjectKey {
    ObjectKey::parse(s).expect("valid key")
}

async fn contract(store: &dyn ObjectStore) {
    store.check().await.expect("a fresh store is healthy");
    assert_eq!(store.get(&key("data/ab/missing")).await.expect("get"), None);
    assert!(!store.exists(&key("data/ab/missing")).await.expect("exists"));
    store
        .delete(&key("data/ab/missing"))
        .await
        .expect("deleting a missing key succeeds");

    store
        .put(&key("data/ab/one"), Bytes::from_static(b"first"))
        .await
        .expect("put");
    store
        .put(&key("data/cd/two"), Bytes::from_static(b"second"))
        .await
        .expect("put");
    store
        .put(&key("snapshots/s1"), Bytes::from_static(b""))
        .await
        .expect("put empty");
    assert_eq!(
        store
            .get(&key("data/ab/one"))
            .await
            .expect("get")
            .as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        store
            .get(&key("snapshots/s1"))
            .await
            .expect("get")
            .as_deref(),
        Some(&b""[..])
    );
    assert!(store.exists(&key("data/cd/two")).await.expect("exists"));

    store
        .put(&key("data/ab/one"), Bytes::from_static(b"replaced"))
        .await
        .expect("replace");
    assert_eq!(
        store
            .get(&key("data/ab/one"))
            .await
            .expect("get")
            .as_deref(),
        Some(&b"replaced"[..])
    );

    let all: Vec<String> = store
        .list("")
        .await
        .expect("list")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(all, ["data/ab/one", "data/cd/two", "snapshots/s1"]);
    let data: Vec<String> = store
        .list("data/")
        .await
        .expect("list")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(data, ["data/ab/one", "data/cd/two"]);
    let partial: Vec<String> = store
        .list("data/a")
        .await
        .expect("list")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(partial, ["data/ab/one"]);
    assert!(store.list("nothing/").await.expect("list").is_empty());
    let sized: Vec<(String, u64)> = store
        .list_sized("data/")
        .await
        .expect("list sized")
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
    let two = store
        .get(&key("data/cd/two"))
        .await
        .expect("get")
        .expect("two");
    assert_eq!(
        sized,
        [
            ("data/ab/one".to_owned(), b"replaced".len() as u64),
            ("data/cd/two".to_owned(), two.len() as u64)
        ]
    );

    store.delete(&key("data/ab/one")).await.expect("delete");
    assert_eq!(store.get(&key("data/ab/one")).await.expect("get"), None);
    assert_eq!(store.list("data/").await.expect("list").len(), 1);

    let ranged = store
        .get_range(&key("data/cd/two"), 1, 3)
        .await
        .expect("range");
    assert_eq!(ranged.as_deref(), Some(&b"eco"[..]));
    let tail = store
        .get_range(&key("data/cd/two"), 4, 100)
        .await
        .expect("range");
    assert_eq!(
        tail.as_deref(),
        Some(&b"nd"[..]),
        "a range past the end is cut short"
    );
    assert_eq!(
        store
            .get_range(&key("data/zz/none"), 0, 4)
            .await
            .expect("range"),
        None
    );

    let big = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    store
        .put(&key("packs/big"), big.clone())
        .await
        .expect("put big");
    assert_eq!(
        store.get(&key("packs/big")).await.expect("get big"),
        Some(big)
    );
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(&OpendalStore::memory()).await;
}

#[tokio::test]
async fn fs_store_meets_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = OpendalStore::fs(&dir.path().join("repo")).expect("fs store");
    contract(&store).await;
    // Nothing is left in the atomic-write directory after whole writes.
    let leftovers = std::fs::read_dir(dir.path().join("repo").join(".tmp"))
        .expect("atomic dir exists")
        .count();
    assert_eq!(leftovers, 0);
}

#[tokio::test]
async fn fs_store_ignores_foreign_files_and_temporaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let store = OpendalStore::fs(&root).expect("fs store");
    store
        .put(&key("config"), Bytes::from_static(b"c"))
        .await
        .expect("put");
    std::fs::write(root.join(".tmp").join("half-written"), b"x").expect("write temp");
    std::fs::write(root.join("has space"), b"x").expect("write foreign");
    let all: Vec<String> = store
        .list("")
        .await
        .expect("list")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(all, ["config"]);
}

#[tokio::test]
async fn fs_store_reports_a_vanished_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("repo");
    let store = OpendalStore::fs(&root).expect("fs store");
    store.check().await.expect("healthy at first");
    std::fs::remove_dir_all(&root).expect("remove root");
    assert!(
        store.check().await.is_err(),
        "a vanished root must fail the check"
    );
}
