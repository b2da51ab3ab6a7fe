//! Objects planted by someone with write access to the storage but no key, and the
//! repository's config object.

use super::*;

/// What `seal_object` wrote for an unencrypted repository before objects were keyed:
/// `CFO1 ‖ flags ‖ object id ‖ (raw length ‖ body) ‖ SHA-256` — computable without the key.
fn forge_plain_object(plain: &[u8]) -> Vec<u8> {
    let mut body = (plain.len() as u64).to_le_bytes().to_vec();
    body.extend_from_slice(plain);
    let mut out = b"CFO1".to_vec();
    out.push(0);
    out.extend_from_slice(&[7u8; 32]);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crypto::sha256(&body));
    out
}

/// An index listing every blob of the repository in a pack that does not exist: read
/// first, it would make every real pack look unused.
fn forged_index(engine: &Engine) -> Vec<u8> {
    let index = engine.repo.index();
    let entries: Vec<pack::BlobEntry> = index.iter().map(|(_, _, e)| e).collect();
    let mut plain = [0xee_u8; 32].to_vec();
    plain.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_le_bytes());
    for e in &entries {
        pack::encode_entry(&mut plain, e);
    }
    forge_plain_object(&plain)
}

fn packs(store: &MemStore) -> Vec<String> {
    store.keys_with("data/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_forged_without_the_key_are_refused_in_either_mode() {
    for encrypt in [true, false] {
        let src = tempfile::tempdir().unwrap();
        edge_cases(src.path());
        let store = Arc::new(MemStore::default());
        let engine = engine(&store, encrypt).await;
        let snap = backup(&engine, src.path(), None).await;
        let before = packs(&store);
        store
            .put(
                &key("index/0000forged").unwrap(),
                Bytes::from(forged_index(&engine)),
            )
            .await
            .unwrap();

        // Opening the repository refuses it, naming it.
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let err = Repository::open(dyn_store, &MASTER, encrypt)
            .await
            .err()
            .expect("a forged index is refused");
        assert!(
            matches!(&err, EngineError::Damaged(m) if m.contains("index")),
            "encrypt={encrypt}: {err:?}"
        );
        // The engine already open refuses to prune on it, and deletes nothing.
        let pruned = engine
            .prune(
                PruneOptions::default(),
                Arc::new(Progress::default()),
                Cancel::default(),
            )
            .await;
        assert!(
            pruned.is_err(),
            "encrypt={encrypt}: prune ran on a forged index"
        );
        assert_eq!(packs(&store), before, "encrypt={encrypt}");

        // A forged snapshot object is refused as well.
        store.0.lock().unwrap().remove("index/0000forged");
        let doc = serde_json::json!({"version": 1, "source": "forged", "path": "/",
            "hostname": "", "started_at": chrono::Utc::now(), "finished_at": chrono::Utc::now(),
            "tree": "00".repeat(32), "parent": null, "status": "ok", "encrypted": false,
            "files": 0, "dirs": 0, "bytes": 0, "bytes_added": 0, "stored_bytes_added": 0,
            "unchanged_files": 0, "warnings": []});
        let forged = forge_plain_object(&serde_json::to_vec(&doc).unwrap());
        let id = hex::encode(crypto::sha256(&forged));
        store
            .put(
                &key(&format!("snapshots/{id}")).unwrap(),
                Bytes::from(forged),
            )
            .await
            .unwrap();
        let listed = engine.snapshots().await;
        assert!(
            matches!(&listed, Err(EngineFailure::Damaged(m)) if m.contains("snapshot")),
            "encrypt={encrypt}: {listed:?}"
        );
        store.0.lock().unwrap().remove(&format!("snapshots/{id}"));

        // The real snapshot is untouched.
        let out = tempfile::tempdir().unwrap();
        restore_all(&engine, &snap.id, &out.path().join("t")).await;
        assert_eq!(describe(&out.path().join("t")), describe(src.path()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_object_is_required_authenticated_and_checked() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    let good = store.0.lock().unwrap()["config"].clone();
    let open = |store: &Arc<MemStore>| {
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        Repository::open(dyn_store, &MASTER, true)
    };
    let verify = || {
        engine.verify(
            &snap.id,
            false,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
    };
    let check = || engine.check(None, Arc::new(Progress::default()), Cancel::default());

    // Missing: what an unmounted share holding only part of a repository looks like.
    store.0.lock().unwrap().remove("config");
    let err = open(&store).await.err().expect("refused");
    assert!(
        matches!(&err, EngineError::NotFound(m) if m.contains("config")),
        "{err:?}"
    );
    assert!(!verify().await.unwrap().ok());
    assert!(!check().await.unwrap().ok());

    // Cut in half, or one byte flipped.
    for damage in [0, 1] {
        let mut bytes = good.to_vec();
        if damage == 0 {
            bytes.truncate(bytes.len() / 2);
        } else {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 1;
        }
        store
            .0
            .lock()
            .unwrap()
            .insert("config".into(), Bytes::from(bytes));
        let err = open(&store).await.err().expect("refused");
        assert!(matches!(&err, EngineError::Damaged(_)), "{err:?}");
        let report = verify().await.unwrap();
        assert!(
            report.problems.iter().any(|p| p.contains("config")),
            "{report:?}"
        );
        let report = check().await.unwrap();
        assert!(
            report.problems.iter().any(|p| p.contains("config")),
            "{report:?}"
        );
    }
    // A plaintext config in a repository of format 2 is no config at all.
    store.0.lock().unwrap().insert(
        "config".into(),
        Bytes::from_static(
            br#"{"format":"coffer-repository","version":1,"id":"00","created_at":"x"}"#,
        ),
    );
    assert!(open(&store).await.is_err());

    store.0.lock().unwrap().insert("config".into(), good);
    assert!(open(&store).await.is_ok());
    assert!(verify().await.unwrap().ok());
    assert!(check().await.unwrap().ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_keeps_its_mode_whatever_the_setting_says() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    for encrypt in [true, false] {
        let store = Arc::new(MemStore::default());
        let engine = engine(&store, encrypt).await;
        let snap = backup(&engine, src.path(), None).await;
        // The setting turned the other way: restores work, backups are refused.
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        let other = Engine::new(
            Repository::open(dyn_store, &MASTER, !encrypt)
                .await
                .unwrap(),
        );
        let err = other
            .backup(
                BackupRequest {
                    source_name: "test".into(),
                    path: src.path().to_path_buf(),
                    parent: None,
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
            matches!(&err, EngineFailure::Invalid(m) if m.contains("encryption_enabled")),
            "{err:?}"
        );
        let out = tempfile::tempdir().unwrap();
        restore_all(&other, &snap.id, &out.path().join("t")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_of_format_1_is_upgraded_when_opened() {
    for (which, encrypted) in [("encrypted", true), ("plain", false)] {
        let (store, ids) = super::metadata::fixture_store(which);
        let legacy_indexes = store.keys_with("index/");
        let engine = engine(&store, encrypted).await;
        let map = store.0.lock().unwrap().clone();
        assert!(map["keys/data"].starts_with(b"CFRKEY02"), "{which}");
        assert!(map["config"].starts_with(b"CFO1"), "{which}: config sealed");
        // A legacy unencrypted repository's indexes now carry MACs.
        for (k, v) in map.iter().filter(|(k, _)| k.starts_with("index/")) {
            assert!(!crypto::object_is_legacy(v), "{which}: {k}");
        }
        if !encrypted {
            assert!(
                store
                    .keys_with("index/")
                    .iter()
                    .all(|k| !legacy_indexes.contains(k)),
                "the legacy indexes were replaced"
            );
        }
        // Everything still restores, and it opens again as it is now.
        let out = tempfile::tempdir().unwrap();
        for id in &ids {
            engine
                .restore(
                    id,
                    None,
                    &out.path().join(&id[..8]),
                    Arc::new(Progress::default()),
                    Cancel::default(),
                )
                .await
                .unwrap();
        }
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        Repository::open(dyn_store, &MASTER, encrypted)
            .await
            .unwrap();
        // A legacy repository still refuses a forged index (no MAC).
        store
            .put(
                &key("index/0000forged").unwrap(),
                Bytes::from(forged_index(&engine)),
            )
            .await
            .unwrap();
        let dyn_store: Arc<dyn ObjectStore> = store.clone();
        assert!(
            Repository::open(dyn_store, &MASTER, encrypted)
                .await
                .is_err(),
            "{which}"
        );
    }
}
