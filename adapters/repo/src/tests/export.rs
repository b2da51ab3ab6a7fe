//! What a zip download carries besides content, checked with the tool people unpack
//! them with (Info-ZIP's unzip): long and raw names, symlinks, hard links, modes, times,
//! owners.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;

use rustix::fs::XattrFlags;

use super::metadata::{access_acl, set_link_time, supports_xattrs, xattr};
use super::*;

const LINKED: &[u8] = b"one file, three names\n";

/// Raw bytes of every long name of the tree, as built by [`metadata_tree`].
struct Long {
    /// 338 bytes; its last name alone is longer than ustar's name field.
    path: Vec<u8>,
    /// 253 bytes; its last name fits ustar's name field, but no split of it fits both
    /// fields.
    deep: Vec<u8>,
    /// 147 bytes, which ustar holds split into prefix and name.
    split: Vec<u8>,
    /// The target of `long-link`, 155 bytes.
    target: Vec<u8>,
}

fn long_names() -> Long {
    let d1 = [&b"a-"[..], &[b'a'; 68]].concat();
    let d2 = [b'b'; 70];
    // Not UTF-8: the pax records say their values are raw bytes.
    let d3 = [&[b'c'; 68][..], b"\xff\xfe"].concat();
    let dirs = [&b"long"[..], &d1[..], &d2[..], &d3[..]].join(&b'/');
    let base = [&b"file-"[..], &[b'f'; 115]].concat();
    Long {
        path: [&dirs[..], b"/", &base].concat(),
        deep: [&dirs[..], b"/short-", &[b'd'; 29]].concat(),
        split: [&b"split/"[..], &[b's'; 60], b"/", &[b't'; 80]].concat(),
        target: [&b"../"[..], &[b't'; 150], b"/x"].concat(),
    }
}

fn set_time(path: &Path, secs: u64, nanos: u32) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with everything an archive must carry besides content. Returns whether it
/// has extended attributes and ACLs (the file system may refuse them) and owners (only
/// root can give files away).
fn metadata_tree(root: &Path) -> (bool, bool) {
    let xattrs = supports_xattrs(root);
    let as_root = rustix::process::geteuid().is_root();
    let long = long_names();
    write(&root.join(OsStr::from_bytes(&long.path)), b"a long path\n");
    write(&root.join(OsStr::from_bytes(&long.deep)), b"a deep path\n");
    write(
        &root.join(OsStr::from_bytes(&long.split)),
        b"a split path\n",
    );
    std::os::unix::fs::symlink(OsStr::from_bytes(&long.target), root.join("long-link")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9"), root.join("raw-link")).unwrap();

    write(&root.join("hl/one"), LINKED);
    std::fs::create_dir(root.join("other")).unwrap();
    std::fs::hard_link(root.join("hl/one"), root.join("hl/two")).unwrap();
    std::fs::hard_link(root.join("hl/one"), root.join("other/three")).unwrap();

    write(&root.join("attrs.txt"), b"with attributes\n");
    write(&root.join("acl.txt"), b"with an access ACL\n");
    std::fs::create_dir(root.join("acl-dir")).unwrap();
    if xattrs {
        for (path, name, value) in [
            ("attrs.txt", "user.mime_type", &b"text/plain"[..]),
            ("attrs.txt", "user.empty", b""),
            ("attrs.txt", "user.binary", b"bin\0ary\nvalue"),
            ("attrs.txt", "user.odd=name%", b"escaped"),
            ("hl/one", "user.linked", b"once"),
        ] {
            rustix::fs::setxattr(root.join(path), name, value, XattrFlags::empty()).unwrap();
        }
        for (path, name) in [
            ("acl.txt", "system.posix_acl_access"),
            ("acl-dir", "system.posix_acl_default"),
        ] {
            rustix::fs::setxattr(root.join(path), name, &access_acl(), XattrFlags::empty())
                .unwrap();
        }
    }

    write(&root.join("plain.txt"), b"nothing special\n");
    set_time(&root.join("plain.txt"), 1_500_000_000, 0);
    write(&root.join("subsec.txt"), b"a time with nanoseconds\n");
    set_time(&root.join("subsec.txt"), 1_600_000_000, 123_456_789);
    std::os::unix::fs::symlink("plain.txt", root.join("old-link")).unwrap();
    set_link_time(&root.join("old-link"), 1_234_567_890);

    write(&root.join("setuid.sh"), b"#!/bin/sh\n");
    chmod(&root.join("setuid.sh"), 0o4755);
    std::fs::create_dir(root.join("setgid-dir")).unwrap();
    chmod(&root.join("setgid-dir"), 0o2775);
    if as_root {
        write(&root.join("owned.txt"), b"someone else's\n");
        std::os::unix::fs::chown(root.join("owned.txt"), Some(4242), Some(4343)).unwrap();
        // Past ustar's 7 octal digits: a pax record carries it.
        write(&root.join("big-owner.txt"), b"a large uid\n");
        std::os::unix::fs::chown(root.join("big-owner.txt"), Some(3_000_000), Some(3_000_001))
            .unwrap();
    } else {
        eprintln!("note: not root; owners are left out of the archive checks");
    }
    (xattrs, as_root)
}

async fn download(
    engine: &Engine,
    snap: &str,
    path: Option<&str>,
    format: ArchiveFormat,
) -> Vec<u8> {
    let sink = Sink::default();
    engine
        .export(snap, path, format, Box::new(sink.clone()))
        .await
        .unwrap();
    sink.0.lock().unwrap().clone()
}

/// One entry as [`shown`] describes it: name, kind, mode, mtime, content or target.
type Shown = (String, String, u32, Option<i64>, String);

/// `describe`'s view with readable names and contents short enough to print: a failed
/// comparison shows what differs.
fn shown(tree: Described, times: impl Fn(&str, i64) -> Option<i64>) -> Vec<Shown> {
    tree.into_iter()
        .map(|(name, (kind, mode, mtime, content))| {
            let content = if content.len() <= 64 {
                content.escape_ascii().to_string()
            } else {
                let digest = hex::encode(crypto::sha256(&content));
                format!("{} bytes, SHA-256 {digest}", content.len())
            };
            let mtime = times(&kind, mtime);
            (name.escape_ascii().to_string(), kind, mode, mtime, content)
        })
        .collect()
}

/// Asserts two `shown` views are equal, printing only the entries that differ.
fn assert_same(got: &[Shown], want: &[Shown]) {
    if got == want {
        return;
    }
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
    panic!("expected but not found: {missing:#?}\nfound but not expected: {extra:#?}");
}

/// Whether Info-ZIP's unzip is installed. Without it, a test says what it leaves out, or
/// fails under `COFFER_TEST_REQUIRE_ALL=1`.
fn unzip_installed() -> bool {
    if Command::new("unzip").arg("-v").output().is_ok() {
        return true;
    }
    let require = std::env::var("COFFER_TEST_REQUIRE_ALL").is_ok_and(|v| v == "1");
    assert!(
        !require,
        "unzip is not installed, and COFFER_TEST_REQUIRE_ALL=1 forbids skipping"
    );
    eprintln!("note: unzip is not installed; the checks with it are left out");
    false
}

fn run(command: &mut Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_download_unpacks_with_unzip_and_each_linked_name_holds_the_content() {
    if !unzip_installed() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    let (_, as_root) = metadata_tree(root);
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, root, None).await;
    assert_eq!(snap.status, SnapshotStatus::Ok, "{:?}", snap.warnings);
    let archive = download(&engine, &snap.id, None, ArchiveFormat::Zip).await;

    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("download.zip");
    std::fs::write(&file, &archive).unwrap();
    let target = out.path().join("t");
    // -^: names as they are (control characters too); -X: owners; -K: setuid and setgid
    // bits.
    run(Command::new("unzip")
        .args(["-q", "-^", "-X", "-K"])
        .arg(&file)
        .arg("-d")
        .arg(&target));
    // Names, kinds, modes and contents, and mtimes in whole seconds but for symlinks'
    // (unzip leaves those at the time it made them; the archive carries them, see the
    // other zip tests).
    let seconds =
        |kind: &str, mtime: i64| (kind != "link").then_some(mtime.div_euclid(1_000_000_000));
    assert_same(
        &shown(describe(&target), seconds),
        &shown(describe(root), seconds),
    );
    // Zip has no hard links: three files, each with the content.
    for name in ["hl/one", "hl/two", "other/three"] {
        let m = std::fs::metadata(target.join(name)).unwrap();
        assert_eq!(m.nlink(), 1, "{name}");
        assert_eq!(std::fs::read(target.join(name)).unwrap(), LINKED, "{name}");
    }
    if as_root {
        for name in ["owned.txt", "big-owner.txt"] {
            let (got, want) = (
                std::fs::metadata(target.join(name)).unwrap(),
                std::fs::metadata(root.join(name)).unwrap(),
            );
            assert_eq!((got.uid(), got.gid()), (want.uid(), want.gid()), "{name}");
        }
    }
    // No extended attributes: zip has no field for them.
    assert_eq!(xattr(&target.join("attrs.txt"), "user.mime_type"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip64_download_unpacks_the_same() {
    let src = tempfile::tempdir().unwrap();
    edge_cases(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    let sink = Sink::default();
    let bytes = crate::export::write_forcing_zip64(
        engine.repo.clone(),
        &snap.id,
        None,
        Box::new(sink.clone()),
    )
    .await
    .unwrap();
    assert_eq!(bytes, snap.bytes);
    let archive = sink.0.lock().unwrap().clone();
    // The ZIP64 end record and its locator.
    assert!(archive.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x06]));
    assert!(archive.windows(4).any(|w| w == [0x50, 0x4b, 0x06, 0x07]));
    let out = tempfile::tempdir().unwrap();
    let unzipped = out.path().join("read-back");
    std::fs::create_dir(&unzipped).unwrap();
    unzip_into(archive.clone(), &unzipped, src.path());
    let no_times = |_: &str, _: i64| None;
    assert_same(
        &shown(describe(&unzipped), no_times),
        &shown(describe(src.path()), no_times),
    );
    if unzip_installed() {
        let file = out.path().join("download.zip");
        std::fs::write(&file, &archive).unwrap();
        let target = out.path().join("unzipped");
        run(Command::new("unzip")
            .args(["-q", "-^"])
            .arg(&file)
            .arg("-d")
            .arg(&target));
        assert_same(
            &shown(describe(&target), no_times),
            &shown(describe(src.path()), no_times),
        );
    }
}
