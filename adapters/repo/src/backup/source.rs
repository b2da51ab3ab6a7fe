//! Reading the source: directories listed and entries opened below the handle of the
//! directory that holds them (`openat`, `O_NOFOLLOW`), so that a symlink swapped in for
//! an entry after it was listed is never followed; every opened entry is checked to be
//! the one that was looked at (same device and inode).

use std::ffi::{CStr, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, Stat};
use rustix::io::Errno;

use crate::tree::{Node, NodeKind, Xattr};

/// One entry of a directory listing: its name and the type the listing gave
/// (`Unknown` on file systems that do not say).
pub struct Listed {
    pub name: Vec<u8>,
    pub kind: FileType,
}

/// Lists a directory (without `.` and `..`), sorted by name (raw bytes).
pub fn list(dir: &OwnedFd) -> Result<Vec<Listed>, Errno> {
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 64 * 1024];
    let mut raw = RawDir::new(dir, &mut buf);
    let mut out = Vec::new();
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push(Listed {
            name: name.to_vec(),
            kind: entry.file_type(),
        });
    }
    out.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn name_of(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

/// The entry's metadata, without following a symlink.
pub fn stat(dir: &OwnedFd, name: &[u8]) -> Result<Stat, Errno> {
    rustix::fs::statat(dir, name_of(name), AtFlags::SYMLINK_NOFOLLOW)
}

/// Opens a subdirectory (never through a symlink) and checks it is the one `expected`
/// describes, when given.
pub fn open_dir(dir: &OwnedFd, name: &[u8]) -> Result<(OwnedFd, Stat), Errno> {
    let fd = rustix::fs::openat(
        dir,
        name_of(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    Ok((fd, st))
}

/// Why an entry that was looked at could not be opened as it was.
pub enum OpenError {
    /// It was replaced (by a symlink, another file) since it was looked at.
    Replaced,
    Os(Errno),
}

/// Opens a regular file for reading (never through a symlink) and checks that it is the
/// file `seen` describes (same device and inode). Returns it with its metadata as opened:
/// what the snapshot records comes from the very inode that is read, so a file swapped
/// in at the same inode number cannot pass under the other's owner and mode.
pub fn open_file(
    dir: &OwnedFd,
    name: &[u8],
    seen: &Stat,
) -> Result<(std::fs::File, Stat), OpenError> {
    let fd = rustix::fs::openat(
        dir,
        name_of(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::LOOP => OpenError::Replaced,
        e => OpenError::Os(e),
    })?;
    let st = rustix::fs::fstat(&fd).map_err(OpenError::Os)?;
    if st.st_dev != seen.st_dev
        || st.st_ino != seen.st_ino
        || FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
    {
        return Err(OpenError::Replaced);
    }
    Ok((std::fs::File::from(fd), st))
}

/// Whether the directory holds a `CACHEDIR.TAG` that starts with the cache signature
/// (opened below the directory's handle, never through a symlink).
pub fn has_cache_tag(dir: &OwnedFd) -> bool {
    let Ok(fd) = rustix::fs::openat(
        dir,
        coffer_domain::excludes::CACHEDIR_TAG,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut head = [0u8; coffer_domain::excludes::CACHEDIR_SIGNATURE.len()];
    let mut filled = 0;
    while filled < head.len() {
        match rustix::io::read(&fd, &mut head[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    coffer_domain::excludes::is_cache_tag(&head[..filled])
}

/// A symlink's target.
pub fn read_link(dir: &OwnedFd, name: &[u8]) -> Result<Vec<u8>, Errno> {
    rustix::fs::readlinkat(dir, name_of(name), Vec::new()).map(std::ffi::CString::into_bytes)
}

fn nanos(secs: i64, nsecs: u32) -> i64 {
    secs.saturating_mul(1_000_000_000)
        .saturating_add(i64::from(nsecs))
}

/// The tree entry `st` describes, without content.
#[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
pub fn node(name: Vec<u8>, st: &Stat, kind: NodeKind) -> Node {
    Node {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec as u32),
        ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec as u32),
        inode: st.st_ino,
        size: if kind == NodeKind::File {
            st.st_size.max(0) as u64
        } else {
            0
        },
        dev: st.st_dev,
        nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
        ..Node::new(name, kind)
    }
}

/// Whether a file's metadata says it changed between two looks at it.
pub fn changed(before: &Stat, after: &Stat) -> bool {
    before.st_size != after.st_size
        || before.st_mtime != after.st_mtime
        || before.st_mtime_nsec != after.st_mtime_nsec
        || before.st_ctime != after.st_ctime
        || before.st_ctime_nsec != after.st_ctime_nsec
}

/// Which attributes are kept: everything the system lists but its own `system.*`
/// attributes, of which only the POSIX ACLs are data (the others describe the file
/// system's own bookkeeping and cannot be set).
fn kept(name: &[u8]) -> bool {
    !name.starts_with(b"system.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// Reads `size` bytes (or more, when they grew meanwhile) with `get`, which fills a buffer
/// and returns how much it wrote; `query` tells the size needed.
fn grow_read(
    mut get: impl FnMut(&mut [u8]) -> Result<usize, Errno>,
    query: impl Fn() -> Result<usize, Errno>,
) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; 1024];
    for _ in 0..8 {
        match get(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => buf.resize(query()?.max(buf.len() * 2), 0),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// The extended attributes of an open file or directory, sorted by name; none where the
/// file system has none.
pub fn xattrs(fd: impl AsFd) -> Result<Vec<Xattr>, Errno> {
    let fd = fd.as_fd();
    let names = match grow_read(
        |b| rustix::fs::flistxattr(fd, b),
        || rustix::fs::flistxattr_query(fd),
    ) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    collect(&names, |name| {
        grow_read(
            |b| rustix::fs::fgetxattr(fd, name, b),
            || rustix::fs::fgetxattr_query(fd, name),
        )
    })
}

/// The extended attributes of a symlink (only `security.*` and `trusted.*` can be there):
/// named through `/proc`, below its directory's handle, as there is no `llistxattrat`.
pub fn link_xattrs(dir: &OwnedFd, name: &[u8]) -> Result<Vec<Xattr>, Errno> {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name_of(name));
    let names = match grow_read(
        |b| rustix::fs::llistxattr(&path, b),
        || rustix::fs::llistxattr_query(&path),
    ) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    collect(&names, |attr| {
        grow_read(
            |b| rustix::fs::lgetxattr(&path, attr, b),
            || rustix::fs::lgetxattr_query(&path, attr),
        )
    })
}

fn collect(
    names: &[u8],
    mut value: impl FnMut(&CStr) -> Result<Vec<u8>, Errno>,
) -> Result<Vec<Xattr>, Errno> {
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !kept(name) {
            continue;
        }
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        match value(&cname) {
            Ok(v) => out.push(Xattr {
                name: name.to_vec(),
                value: v,
            }),
            // Removed between the listing and the read.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn open_dir_of(path: &std::path::Path) -> OwnedFd {
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    /// A local user who can write in the source swaps an entry between the moment the
    /// backup looks at it and the moment it opens it: a symlink to a file only root can
    /// read, or another file. Neither is read in its place.
    #[test]
    fn an_entry_swapped_after_it_was_looked_at_is_never_read_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"root only").unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("a"), b"mine").unwrap();
        let fd = open_dir_of(&src);

        let seen = stat(&fd, b"a").unwrap();
        std::fs::remove_file(src.join("a")).unwrap();
        std::os::unix::fs::symlink(&secret, src.join("a")).unwrap();
        assert!(matches!(
            open_file(&fd, b"a", &seen),
            Err(OpenError::Replaced)
        ));

        // Another file in its place: refused, unless it got the same inode number (a
        // file system may reuse it at once); then what is read and what is recorded both
        // come from the file opened.
        std::fs::remove_file(src.join("a")).unwrap();
        std::fs::write(src.join("a"), b"another file").unwrap();
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o600)).unwrap();
        match open_file(&fd, b"a", &seen) {
            Err(OpenError::Replaced) => {}
            Ok((mut f, opened)) => {
                assert_eq!(opened.st_mode & 0o7777, 0o600);
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut content).unwrap();
                assert_eq!(content, b"another file");
            }
            Err(OpenError::Os(e)) => panic!("{e}"),
        }

        let seen = stat(&fd, b"a").unwrap();
        assert!(
            open_file(&fd, b"a", &seen).is_ok(),
            "the file looked at opens"
        );

        // A directory swapped for a symlink to elsewhere is not entered.
        std::fs::create_dir(src.join("d")).unwrap();
        std::fs::remove_dir(src.join("d")).unwrap();
        std::os::unix::fs::symlink(dir.path(), src.join("d")).unwrap();
        assert!(open_dir(&fd, b"d").is_err());
    }
}
