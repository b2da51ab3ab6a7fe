//! Import: a tree given entry by entry becomes a snapshot like a backup's (dated as asked,
//! deduplicated with the rest, restorable); hostile names are refused with a warning; a
//! source that refuses at its end leaves no snapshot and no data behind.

use std::io::Read;

use chrono::{TimeZone as _, Utc};
use coffer_domain::engine::ImportRequest;
use coffer_domain::import::{TreeEntry, TreeSource, TreeSourceError};

use super::*;

/// Entries in memory: (path, dir, content); `refuse_at_end` plays an archive whose
/// token does not authenticate once read through.
struct Entries {
    items: Vec<(&'static str, bool, Vec<u8>)>,
    refuse_at_end: bool,
}

impl TreeSource for Entries {
    fn entries(
        &mut self,
        visit: &mut dyn FnMut(&TreeEntry, &mut dyn Read) -> Result<(), TreeSourceError>,
    ) -> Result<(), TreeSourceError> {
        let mtime = Utc.with_ymd_and_hms(2025, 10, 2, 3, 4, 6).unwrap();
        for (path, dir, content) in &self.items {
            let entry = TreeEntry {
                path: (*path).to_owned(),
                dir: *dir,
                mtime,
                mode: None,
            };
            visit(&entry, &mut content.as_slice())?;
        }
        if self.refuse_at_end {
            return Err(TreeSourceError::Refused(
                "backup 9: does not authenticate".into(),
            ));
        }
        Ok(())
    }
}

fn request(at: chrono::DateTime<Utc>) -> ImportRequest {
    ImportRequest {
        source_name: "prototype".into(),
        path: "/srv/prototype/storage/backups/backup_1.zip.enc".into(),
        taken_at: at,
        budget: None,
    }
}

fn tree() -> Vec<(&'static str, bool, Vec<u8>)> {
    vec![
        ("empty-dir/", true, Vec::new()),
        ("notes/deep/er/file.txt", false, b"deep".to_vec()),
        ("фото/снимок.jpg", false, noise(3 * 1024 * 1024, 5)),
        ("notes/", true, Vec::new()),
        ("report.txt", false, b"line 1\n".to_vec()),
        ("empty.txt", false, Vec::new()),
        // Refused, each with a warning; the rest of the archive goes on.
        ("../escape.txt", false, b"x".to_vec()),
        ("/etc/passwd", false, b"x".to_vec()),
        ("report.txt", false, b"twice".to_vec()),
    ]
}

#[tokio::test]
async fn an_imported_tree_restores_whole_at_its_time_and_dedups() {
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let at = Utc.with_ymd_and_hms(2025, 10, 2, 2, 13, 0).unwrap();
    let summary = engine
        .import_tree(
            request(at),
            Box::new(Entries {
                items: tree(),
                refuse_at_end: false,
            }),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(summary.started_at, at);
    assert_eq!(summary.files, 4);
    assert_eq!(
        summary.status,
        coffer_domain::engine::SnapshotStatus::Partial
    );
    assert_eq!(summary.warnings.len(), 3, "{:?}", summary.warnings);
    assert!(
        summary.warnings.iter().any(|w| w.contains("..")),
        "{:?}",
        summary.warnings
    );

    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    restore_all(&engine, &summary.id, &target).await;
    assert_eq!(
        std::fs::read(target.join("report.txt")).unwrap(),
        b"line 1\n"
    );
    assert_eq!(
        std::fs::read(target.join("notes/deep/er/file.txt")).unwrap(),
        b"deep"
    );
    assert_eq!(
        std::fs::read(target.join("фото/снимок.jpg")).unwrap(),
        noise(3 * 1024 * 1024, 5)
    );
    assert!(
        std::fs::read_dir(target.join("empty-dir"))
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(
        std::fs::metadata(target.join("empty.txt")).unwrap().len(),
        0
    );
    assert!(!dir.path().join("escape.txt").exists());
    let mtime = std::fs::metadata(target.join("report.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        chrono::DateTime::<Utc>::from(mtime),
        Utc.with_ymd_and_hms(2025, 10, 2, 3, 4, 6).unwrap()
    );

    // The same tree again (another backup of the prototype holding the same files)
    // stores nothing new but its snapshot.
    let again = engine
        .import_tree(
            request(at + chrono::TimeDelta::days(1)),
            Box::new(Entries {
                items: tree(),
                refuse_at_end: false,
            }),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(again.bytes_added, 0);
    assert_ne!(again.id, summary.id);
}

#[tokio::test]
async fn a_source_that_refuses_at_its_end_leaves_nothing() {
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let before = store.keys_with("");
    let e = engine
        .import_tree(
            request(Utc::now()),
            Box::new(Entries {
                items: vec![("big.bin", false, noise(6 * 1024 * 1024, 9))],
                refuse_at_end: true,
            }),
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EngineFailure::Invalid(m) if m.contains("does not authenticate")),
        "{e:?}"
    );
    assert!(engine.snapshots().await.unwrap().is_empty());
    assert_eq!(
        store.keys_with(""),
        before,
        "the packs it stored were removed"
    );
}
