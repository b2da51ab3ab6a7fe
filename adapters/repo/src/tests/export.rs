//! What a tar or zip download carries besides content, checked with the tools people
//! unpack them with (GNU tar, Info-ZIP's unzip) and, for tar, by reading the headers
//! here: long names, long symlink targets, hard links, extended attributes and ACLs,
//! symlink times, sub-second times, owners.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
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

/// The tree of [`metadata_tree`], backed up and downloaded, the archive saved for a tool
/// to unpack.
struct Downloaded {
    src: tempfile::TempDir,
    /// What [`metadata_tree`] says of the tree.
    xattrs: bool,
    as_root: bool,
    engine: Engine,
    snap: SnapshotSummary,
    archive: Vec<u8>,
    /// Holds `file`, the archive, and `target`, where to unpack it (not made yet).
    out: tempfile::TempDir,
    file: PathBuf,
    target: PathBuf,
}

async fn download_metadata_tree(format: ArchiveFormat) -> Downloaded {
    let src = tempfile::tempdir().unwrap();
    let (xattrs, as_root) = metadata_tree(src.path());
    let store = Arc::new(MemStore::default());
    let engine = engine(&store, true).await;
    let snap = backup(&engine, src.path(), None).await;
    assert_eq!(snap.status, SnapshotStatus::Ok, "{:?}", snap.warnings);
    let archive = download(&engine, &snap.id, None, format).await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join(format!("download.{}", format.extension()));
    std::fs::write(&file, &archive).unwrap();
    let target = out.path().join("t");
    Downloaded {
        src,
        xattrs,
        as_root,
        engine,
        snap,
        archive,
        out,
        file,
        target,
    }
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

/// An entry's uid, gid and extended attributes (name, value).
type Owned = (u32, u32, Vec<(String, Vec<u8>)>);

/// Owner and extended attributes of each of `names` under `root`.
fn owners_and_attributes(root: &Path, names: &[Vec<u8>]) -> BTreeMap<Vec<u8>, Owned> {
    let mut out = BTreeMap::new();
    for name in names {
        let path = root.join(OsStr::from_bytes(name));
        let m = std::fs::symlink_metadata(&path).unwrap();
        let attributes = [
            "user.mime_type",
            "user.empty",
            "user.binary",
            "user.odd=name%",
            "user.linked",
            "system.posix_acl_access",
            "system.posix_acl_default",
        ]
        .into_iter()
        .filter_map(|a| xattr(&path, a).map(|v| (a.to_owned(), v)))
        .collect();
        out.insert(name.clone(), (m.uid(), m.gid(), attributes));
    }
    out
}

/// One entry of a tar archive as its headers say.
#[derive(Debug)]
struct TarEntry {
    kind: u8,
    /// The ustar name fields, prefix and name joined.
    ustar_name: Vec<u8>,
    ustar_link: Vec<u8>,
    ustar_mtime: u64,
    /// The records of the extended header before it, in order.
    pax: Vec<(Vec<u8>, Vec<u8>)>,
    data: Vec<u8>,
}

impl TarEntry {
    fn record(&self, key: &str) -> Option<&[u8]> {
        self.pax
            .iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.as_slice())
    }
    fn path(&self) -> Vec<u8> {
        self.record("path").unwrap_or(&self.ustar_name).to_vec()
    }
    fn link(&self) -> Vec<u8> {
        self.record("linkpath").unwrap_or(&self.ustar_link).to_vec()
    }
}

/// A numeric header field: octal, or base-256 when its first byte has the high bit.
fn number(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..]
            .iter()
            .fold(u64::from(field[0] & 0x7f), |n, &b| (n << 8) | u64::from(b));
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .filter(|b| (b'0'..=b'7').contains(b))
        .collect();
    u64::from_str_radix(std::str::from_utf8(&digits).unwrap(), 8).unwrap_or(0)
}

fn c_string(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Reads a pax extended header's records, checking that each one's length counts it
/// whole.
fn pax_records(mut data: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').unwrap();
        let len: usize = std::str::from_utf8(&data[..space])
            .unwrap()
            .parse()
            .unwrap();
        let record = &data[..len];
        assert_eq!(record.last(), Some(&b'\n'), "a record ends in a newline");
        let body = &record[space + 1..len - 1];
        let eq = body.iter().position(|&b| b == b'=').unwrap();
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    out
}

/// Reads a tar archive's headers block by block, as the format defines them (and not as
/// a particular tool reads them).
fn tar_entries(archive: &[u8]) -> Vec<TarEntry> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut pax = Vec::new();
    loop {
        let block = &archive[pos..pos + 512];
        if block.iter().all(|&b| b == 0) {
            assert!(
                archive[pos..].iter().all(|&b| b == 0),
                "only zeros after the end"
            );
            assert!(
                archive.len() - pos >= 1024,
                "two zero blocks end the archive"
            );
            assert!(pax.is_empty(), "an extended header with no entry after it");
            return out;
        }
        let sum: u64 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        assert_eq!(number(&block[148..156]), sum, "header checksum");
        assert_eq!(&block[257..265], b"ustar\x0000", "a ustar header");
        let size = usize::try_from(number(&block[124..136])).unwrap();
        let kind = block[156];
        let data = archive[pos + 512..pos + 512 + size].to_vec();
        pos += 512 + size.div_ceil(512) * 512;
        if kind == b'x' {
            assert!(pax.is_empty(), "two extended headers in a row");
            pax = pax_records(&data);
            continue;
        }
        let (name, prefix) = (c_string(&block[..100]), c_string(&block[345..500]));
        let ustar_name = if prefix.is_empty() {
            name.to_vec()
        } else {
            [prefix, b"/", name].concat()
        };
        out.push(TarEntry {
            kind,
            ustar_name,
            ustar_link: c_string(&block[157..257]).to_vec(),
            ustar_mtime: number(&block[136..148]),
            pax: std::mem::take(&mut pax),
            data,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_download_carries_what_a_restore_brings_back() {
    let Downloaded {
        src,
        xattrs,
        as_root,
        engine,
        snap,
        archive,
        out: _out,
        file,
        target,
    } = download_metadata_tree(ArchiveFormat::Tar).await;
    let root = src.path();

    // GNU tar unpacks it to the source: names, kinds, modes, contents and times (to
    // the nanosecond, symlinks' and directories' included).
    std::fs::create_dir(&target).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&file)
        .arg("-C")
        .arg(&target));
    let src_view = describe(root);
    let exact = |_: &str, mtime: i64| Some(mtime);
    assert_same(
        &shown(describe(&target), exact),
        &shown(src_view.clone(), exact),
    );
    // Hard links are one file again.
    let one = std::fs::metadata(target.join("hl/one")).unwrap();
    assert_eq!(one.nlink(), 3);
    for other in ["hl/two", "other/three"] {
        let m = std::fs::metadata(target.join(other)).unwrap();
        assert_eq!((m.dev(), m.ino()), (one.dev(), one.ino()), "{other}");
    }
    // Owners, extended attributes and ACLs.
    let names: Vec<Vec<u8>> = src_view.keys().cloned().collect();
    let got = owners_and_attributes(&target, &names);
    let want = owners_and_attributes(root, &names);
    for name in &names {
        let (got, want) = (&got[name], &want[name]);
        if as_root {
            assert_eq!(
                (got.0, got.1),
                (want.0, want.1),
                "owner of {}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(
            got.2,
            want.2,
            "attributes of {}",
            String::from_utf8_lossy(name)
        );
    }
    if xattrs {
        assert_eq!(
            xattr(&target.join("acl.txt"), "system.posix_acl_access"),
            Some(access_acl())
        );
        assert_eq!(
            xattr(&target.join("acl-dir"), "system.posix_acl_default"),
            Some(access_acl())
        );
        assert_eq!(
            xattr(&target.join("attrs.txt"), "user.binary").as_deref(),
            Some(&b"bin\0ary\nvalue"[..])
        );
    }

    // The headers themselves, read here.
    let entries = tar_entries(&archive);
    let by_path: BTreeMap<Vec<u8>, &TarEntry> = entries.iter().map(|e| (e.path(), e)).collect();
    assert_eq!(by_path.len(), entries.len(), "one entry per path");
    assert_eq!(by_path.keys().cloned().collect::<Vec<_>>(), names);
    let long = long_names();
    for path in [&long.path, &long.deep] {
        let e = by_path[path];
        assert_eq!(e.record("path"), Some(path.as_slice()));
        assert_eq!(e.record("hdrcharset"), Some(&b"BINARY"[..]), "a raw name");
        // The ustar name, for readers without pax: the leading directories and the
        // last name, cut.
        assert!(!e.ustar_name.is_empty() && e.ustar_name.len() <= 256);
        let (dir, base) = match e.ustar_name.iter().rposition(|&b| b == b'/') {
            Some(i) => (&e.ustar_name[..i], &e.ustar_name[i + 1..]),
            None => (&[][..], &e.ustar_name[..]),
        };
        assert!(
            path.starts_with(dir)
                && path
                    .rsplit(|&b| b == b'/')
                    .next()
                    .unwrap()
                    .starts_with(base)
        );
        assert_eq!(
            e.data,
            std::fs::read(root.join(OsStr::from_bytes(path))).unwrap()
        );
    }
    let split = by_path[&long.split];
    assert_eq!(split.record("path"), None, "ustar's prefix holds it");
    assert_eq!(split.ustar_name, long.split);
    let link = by_path[&b"long-link".to_vec()];
    assert_eq!((link.kind, link.link()), (b'2', long.target.clone()));
    assert_eq!(link.record("linkpath"), Some(long.target.as_slice()));
    assert_eq!(by_path[&b"raw-link".to_vec()].link(), b"caf\xe9");
    // The content once, under the first name; the other names link to it.
    let first = by_path[&b"hl/one".to_vec()];
    assert_eq!((first.kind, first.data.as_slice()), (b'0', LINKED));
    for other in [&b"hl/two"[..], b"other/three"] {
        let e = by_path[&other.to_vec()];
        assert_eq!(
            (e.kind, e.link(), e.data.len()),
            (b'1', b"hl/one".to_vec(), 0)
        );
    }
    // Times: whole seconds in ustar, the rest in pax; a plain entry has no pax header.
    let subsec = by_path[&b"subsec.txt".to_vec()];
    assert_eq!(subsec.ustar_mtime, 1_600_000_000);
    assert_eq!(subsec.record("mtime"), Some(&b"1600000000.123456789"[..]));
    let old = by_path[&b"old-link".to_vec()];
    assert_eq!((old.kind, old.ustar_mtime), (b'2', 1_234_567_890));
    assert_eq!(old.record("mtime"), Some(&b"1234567890.000000123"[..]));
    assert!(by_path[&b"plain.txt".to_vec()].pax.is_empty());
    if xattrs {
        let attrs = by_path[&b"attrs.txt".to_vec()];
        assert_eq!(
            attrs
                .pax
                .iter()
                .filter(|(k, _)| k.starts_with(b"SCHILY."))
                .cloned()
                .collect::<Vec<_>>(),
            [
                (&b"SCHILY.xattr.user.binary"[..], &b"bin\0ary\nvalue"[..]),
                (b"SCHILY.xattr.user.empty", b""),
                (b"SCHILY.xattr.user.mime_type", b"text/plain"),
                (b"SCHILY.xattr.user.odd%3Dname%25", b"escaped"),
            ]
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
        );
        let acl = access_acl();
        assert_eq!(
            by_path[&b"acl.txt".to_vec()].record("SCHILY.xattr.system.posix_acl_access"),
            Some(acl.as_slice())
        );
        assert_eq!(
            by_path[&b"acl-dir".to_vec()].record("SCHILY.xattr.system.posix_acl_default"),
            Some(acl.as_slice())
        );
        assert_eq!(first.record("SCHILY.xattr.user.linked"), Some(&b"once"[..]));
    }
    if as_root {
        let big = by_path[&b"big-owner.txt".to_vec()];
        assert_eq!(big.record("uid"), Some(&b"3000000"[..]));
        assert_eq!(big.record("gid"), Some(&b"3000001"[..]));
    }

    // A part holding one name of a linked file has it as a plain file.
    let part = tar_entries(&download(&engine, &snap.id, Some("other"), ArchiveFormat::Tar).await);
    let three = part.iter().find(|e| e.path() == b"other/three").unwrap();
    assert_eq!((three.kind, three.data.as_slice()), (b'0', LINKED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_download_unpacks_with_unzip_and_each_linked_name_holds_the_content() {
    if !unzip_installed() {
        return;
    }
    let Downloaded {
        src,
        as_root,
        out: _out,
        file,
        target,
        ..
    } = download_metadata_tree(ArchiveFormat::Zip).await;
    let root = src.path();
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
