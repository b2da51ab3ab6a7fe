//! What a restore brings back besides content: symlink times, hard links, extended
//! attributes and ACLs, holes; and repositories written before these were kept.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;

use rustix::fs::{AtFlags, Timespec, Timestamps, XattrFlags};

use super::*;

pub(super) fn set_link_time(path: &Path, secs: i64) {
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: secs,
                tv_nsec: 123,
            },
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

pub(super) fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(_) => None,
    }
}

/// A POSIX access ACL (`user::rw-, user:4242:r--, group::r--, mask::r--, other::---`)
/// in the kernel's xattr form.
pub(super) fn access_acl() -> Vec<u8> {
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 6u16, u32::MAX),
        (0x02, 4, 4242),
        (0x04, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    acl
}

/// Whether this file system takes user attributes and ACLs at all (tmpfs before Linux
/// 6.6 did not): the test says so and checks the rest when it does not.
pub(super) fn supports_xattrs(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    write(&probe, b"");
    let ok = rustix::fs::setxattr(&probe, "user.probe", b"1", XattrFlags::empty()).is_ok()
        && rustix::fs::setxattr(
            &probe,
            "system.posix_acl_access",
            &access_acl(),
            XattrFlags::empty(),
        )
        .is_ok();
    std::fs::remove_file(&probe).unwrap();
    if !ok {
        eprintln!(
            "note: {} takes no user attributes or ACLs; those checks are left out",
            dir.display()
        );
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_times_hard_links_attributes_and_holes_come_back() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    let xattrs = supports_xattrs(root);
    write(&root.join("a.txt"), b"one file, three names\n");
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::hard_link(root.join("a.txt"), root.join("b.txt")).unwrap();
    std::fs::hard_link(root.join("a.txt"), root.join("dir/c.txt")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("../nowhere", root.join("dir/dangling")).unwrap();
    set_link_time(&root.join("link"), 1_234_567_890);
    set_link_time(&root.join("dir/dangling"), 1_111_111_111);
    // 64 MiB, of which one 4 KiB block is data: 99.99% hole.
    let sparse = root.join("sparse.img");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &noise(4096, 3), 40 << 20).unwrap();
    drop(f);
    if xattrs {
        for (path, name, value) in [
            ("a.txt", "user.mime_type", &b"text/plain"[..]),
            ("a.txt", "user.empty", b""),
            ("dir", "user.project", b"coffer"),
        ] {
            rustix::fs::setxattr(root.join(path), name, value, XattrFlags::empty()).unwrap();
        }
        rustix::fs::setxattr(
            root.join("sparse.img"),
            "system.posix_acl_access",
            &access_acl(),
            XattrFlags::empty(),
        )
        .unwrap();
    }

    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, root, None).await;
    assert_eq!(snap.status, SnapshotStatus::Ok, "{:?}", snap.warnings);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    let report = restore_all(&engine, &snap.id, &target).await;
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.files, 4, "a, b, c and the sparse file");
    assert_eq!(report.hardlinks, 2);
    assert_eq!(report.symlinks, 2);

    // Hard links: one inode, three names, its content once.
    let a = std::fs::metadata(target.join("a.txt")).unwrap();
    for other in ["b.txt", "dir/c.txt"] {
        let m = std::fs::metadata(target.join(other)).unwrap();
        assert_eq!((m.dev(), m.ino()), (a.dev(), a.ino()), "{other}");
    }
    assert_eq!(a.nlink(), 3);
    assert_eq!(
        std::fs::read(target.join("dir/c.txt")).unwrap(),
        b"one file, three names\n"
    );

    // Symlinks keep their own times.
    for (link, secs) in [("link", 1_234_567_890), ("dir/dangling", 1_111_111_111)] {
        let m = std::fs::symlink_metadata(target.join(link)).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (secs, 123), "{link}");
    }
    // And everything else is as it was (symlink times included).
    assert_eq!(describe(&target), describe(root));

    // Holes stay holes: 64 MiB of file take little more than the data block.
    let m = std::fs::metadata(target.join("sparse.img")).unwrap();
    assert_eq!(m.len(), 64 << 20);
    assert!(
        m.blocks() * 512 < 1 << 20,
        "the sparse file takes {} bytes on disk",
        m.blocks() * 512
    );

    if xattrs {
        assert_eq!(
            xattr(&target.join("a.txt"), "user.mime_type").as_deref(),
            Some(&b"text/plain"[..])
        );
        assert_eq!(
            xattr(&target.join("b.txt"), "user.empty").as_deref(),
            Some(&b""[..])
        );
        assert_eq!(
            xattr(&target.join("dir"), "user.project").as_deref(),
            Some(&b"coffer"[..])
        );
        assert_eq!(
            xattr(&target.join("sparse.img"), "system.posix_acl_access"),
            Some(access_acl())
        );
        // Listed when browsing.
        let entries = engine.list_dir(&snap.id, "").await.unwrap();
        let a = entries.iter().find(|e| e.name == "a.txt").unwrap();
        assert_eq!(a.xattrs, ["user.empty", "user.mime_type"]);
        assert_eq!(a.links, 3);
        let s = entries.iter().find(|e| e.name == "sparse.img").unwrap();
        assert_eq!(s.xattrs, ["system.posix_acl_access"]);
    }

    // A restore of a part holds the links that fall inside it.
    let part = out.path().join("part");
    engine
        .restore(
            &snap.id,
            Some("dir"),
            &part,
            Arc::new(Progress::default()),
            Cancel::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(part.join("c.txt")).unwrap(),
        b"one file, three names\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_the_target_refuses_are_warnings_and_the_data_is_restored() {
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    // An attribute in a namespace no Linux file system takes: every set is refused.
    let data = b"kept anyway\n";
    let chunk = engine.repo.keys.chunk_id(data);
    let node = Node {
        mode: 0o640,
        size: data.len() as u64,
        content: vec![chunk],
        nlink: 1,
        mtime_ns: 1_500_000_000_000_000_000,
        xattrs: vec![crate::tree::Xattr {
            name: b"bogus.attribute".to_vec(),
            value: b"x".to_vec(),
        }],
        ..Node::new(b"file.txt".to_vec(), NodeKind::File)
    };
    let snap = forge_snapshot_with_data(&engine, &store, &node, data).await;
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("t");
    let report = restore_all(&engine, &snap, &target).await;
    assert_eq!(std::fs::read(target.join("file.txt")).unwrap(), data);
    let m = std::fs::metadata(target.join("file.txt")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1_500_000_000);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("file.txt") && report.warnings[0].contains("bogus.attribute"),
        "{:?}",
        report.warnings
    );
}

/// Path → (kind, mode, mtime of files, content or target).
type View = BTreeMap<Vec<u8>, (String, u32, Option<i64>, Vec<u8>)>;

/// Describes the tree the v1 fixture was written from (see its README), as restored.
fn fixture_expected(second: bool) -> View {
    let mut lines = Vec::new();
    let mut i = 0u64;
    while lines.len() < 5 * 1024 * 1024 + 12345 {
        lines.extend_from_slice(format!("coffer fixture line {:06}\n", i % 997).as_bytes());
        i += 1;
    }
    let file = |mode: u32, secs: i64, content: &[u8]| {
        (
            "file".to_owned(),
            mode,
            Some(secs * 1_000_000_000),
            content.to_vec(),
        )
    };
    let hello: (&[u8], i64) = if second {
        (b"hello again, coffer\n", 1_700_000_000)
    } else {
        (b"hello, coffer\n", 1_600_000_000)
    };
    let mut out = BTreeMap::new();
    out.insert(b"big.txt".to_vec(), file(0o644, 1_600_000_100, &lines));
    out.insert(
        b"caf\xe9.txt".to_vec(),
        file(0o644, 1_234_567_890, b"latin-1 name\n"),
    );
    out.insert(
        b"script.sh".to_vec(),
        file(0o755, 1_500_000_000, b"#!/bin/sh\necho coffer\n"),
    );
    out.insert(
        b"private.key".to_vec(),
        file(0o600, 1_400_000_000, b"not really a key\n"),
    );
    out.insert(b"docs/hello.txt".to_vec(), file(0o644, hello.1, hello.0));
    out.insert(b"docs/empty".to_vec(), file(0o644, 1_300_000_000, b""));
    out.insert(
        b"docs/sub/deep/note.md".to_vec(),
        file(
            0o644,
            1_650_000_000,
            b"# note\n\nwritten by format version 1\n",
        ),
    );
    out.insert(
        b"link".to_vec(),
        ("link".to_owned(), 0, None, b"docs/hello.txt".to_vec()),
    );
    out.insert(
        b"docs/dangling".to_vec(),
        ("link".to_owned(), 0, None, b"../nowhere".to_vec()),
    );
    for (dir, mode) in [
        (&b"docs"[..], 0o755),
        (b"docs/sub", 0o755),
        (b"docs/sub/deep", 0o755),
        (b"emptydir", 0o700),
    ] {
        out.insert(dir.to_vec(), ("dir".to_owned(), mode, None, Vec::new()));
    }
    out
}

/// `describe` without the times the fixture does not fix (directories', symlinks').
fn fixture_view(root: &Path) -> View {
    describe(root)
        .into_iter()
        .map(|(path, (kind, mode, mtime, content))| {
            let mtime = (kind == "file").then_some(mtime);
            (path, (kind, mode, mtime, content))
        })
        .collect()
}

/// A store holding the files of one fixture repository.
pub(super) fn fixture_store(which: &str) -> (Arc<MemStore>, Vec<String>) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/repo-v1")
        .join(which);
    let store = Arc::new(MemStore::default());
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let k = p.strip_prefix(&base).unwrap().to_str().unwrap().to_owned();
            if k == "SNAPSHOTS" {
                continue;
            }
            store
                .0
                .lock()
                .unwrap()
                .insert(k, Bytes::from(std::fs::read(&p).unwrap()));
        }
    }
    let ids = std::fs::read_to_string(base.join("SNAPSHOTS"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    (store, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_written_by_format_1_still_restores() {
    for (which, encrypted) in [("encrypted", true), ("plain", false)] {
        let (store, ids) = fixture_store(which);
        let engine = engine(&store, encrypted).await;
        let listed: Vec<String> = engine
            .snapshots()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, ids, "{which}");
        let out = tempfile::tempdir().unwrap();
        for (n, id) in ids.iter().enumerate() {
            let target = out.path().join(format!("s{n}"));
            let report = restore_all(&engine, id, &target).await;
            assert!(report.warnings.is_empty(), "{which}: {:?}", report.warnings);
            assert_eq!(
                fixture_view(&target),
                fixture_expected(n == 1),
                "{which} #{n}"
            );
            let verified = engine
                .verify(id, true, Arc::new(Progress::default()), Cancel::default())
                .await
                .unwrap();
            assert!(verified.ok(), "{which}: {verified:?}");
        }
        // A new backup on top, with a version 1 snapshot as its parent, reads every
        // file again (version 1 recorded no attributes to carry over) and restores.
        let src = out.path().join("s1");
        let next = backup(&engine, &src, Some(ids[1].clone())).await;
        assert_eq!(next.unchanged_files, 0, "{which}");
        let again = out.path().join("again");
        restore_all(&engine, &next.id, &again).await;
        assert_eq!(fixture_view(&again), fixture_expected(true), "{which}");
    }
}
