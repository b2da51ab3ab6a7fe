//! The restore target on disk: every entry is created below a directory handle that the
//! restore opened itself (`mkdirat`, `openat` with `O_NOFOLLOW`, `renameat2`), never
//! through a path that a symlink swapped in by someone else could redirect. Directories
//! stay `0700` until the end, so nobody else can enter them while the restore runs.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::plan::{Meta, Plan};
use crate::error::EngineError;

/// Directory handles kept open at most (fewer under a low limit on open files, see
/// [`super::fd_budget`]); beyond, the cache starts afresh (a handle is reopened from its
/// parent's in one `openat`).
pub const HANDLE_CACHE: usize = 1024;

/// File content is written in blocks of this size; an aligned block of zeros is skipped,
/// leaving a hole where the file system supports them.
const HOLE_BLOCK: usize = 4096;

/// Files at least this large are written uncached (`RWF_DONTCACHE`, Linux 6.14+): the
/// kernel starts writing each write back at once and frees its page-cache pages when
/// that is done, so a restore of gigabytes reuses a few pages instead of taking fresh
/// ones for every byte. Fresh pages are what large restores spend their time on where
/// memory is lent by a hypervisor that takes freed pages back (free page reporting, as
/// on this project's VMs: 100-230 MB/s into new pages against 700-800 MB/s uncached,
/// 2 GB in 4 MiB writes onto ext4). Smaller files are left to the kernel's own
/// write-back, which gathers many of them into one disk write.
const UNCACHED_FROM: u64 = 256 * 1024;

/// `RWF_DONTCACHE`: not yet among rustix's flags.
const RWF_DONTCACHE: u32 = 0x80;

/// The restore target: its directory handle, the plan's directories as handles, and the
/// warnings about metadata that could not be applied.
pub struct Target<'a> {
    plan: &'a Plan,
    root: Arc<OwnedFd>,
    handles: Mutex<HashMap<u32, Arc<OwnedFd>>>,
    /// Directory handles kept at most.
    handle_cap: usize,
    /// Prefix of temporary names: unique to this restore.
    temp_prefix: String,
    /// Whether ownership is restored: only root may give files away.
    as_root: bool,
    euid: u32,
    egid: u32,
    /// Metadata not applied: (what, why) → (count, first path).
    warnings: Mutex<BTreeMap<(String, String), (u64, String)>>,
    /// `renameat2(RENAME_NOREPLACE)` is refused by this file system (some network file
    /// systems): fall back to checking, then renaming.
    no_noreplace: std::sync::atomic::AtomicBool,
    /// Unnamed files (`O_TMPFILE`) are refused here, or `/proc` is missing: files of one
    /// blob are written under a temporary name too.
    no_tmpfile: std::sync::atomic::AtomicBool,
    /// `linkat(AT_EMPTY_PATH)` is refused (kernels before 6.10 without
    /// `CAP_DAC_READ_SEARCH`): unnamed files are named through `/proc/self/fd`.
    no_empty_path: std::sync::atomic::AtomicBool,
    /// Uncached writes ([`UNCACHED_FROM`]) are refused by this file system or kernel:
    /// every file is written through the page cache.
    no_uncached: std::sync::atomic::AtomicBool,
}

fn time_of(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000),
    }
}

fn times(meta: &Meta) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: time_of(meta.mtime_ns),
    }
}

fn name_of(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

impl<'a> Target<'a> {
    /// Opens the target directory (which exists and is empty) for `plan`.
    pub fn open(path: &Path, plan: &'a Plan, handle_cap: usize) -> Result<Self, EngineError> {
        let root = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            EngineError::io(format!("cannot open {}", path.display()))(std::io::Error::from(e))
        })?;
        let user = rustix::process::geteuid();
        let group = rustix::process::getegid();
        Ok(Self {
            plan,
            root: Arc::new(root),
            handles: Mutex::new(HashMap::new()),
            handle_cap: handle_cap.max(1),
            temp_prefix: format!(
                ".coffer-restore-{}-",
                hex::encode(crate::crypto::random::<6>()?)
            ),
            as_root: user.is_root(),
            euid: user.as_raw(),
            egid: group.as_raw(),
            warnings: Mutex::new(BTreeMap::new()),
            no_noreplace: std::sync::atomic::AtomicBool::new(false),
            no_tmpfile: std::sync::atomic::AtomicBool::new(false),
            no_empty_path: std::sync::atomic::AtomicBool::new(false),
            no_uncached: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn io(&self, what: &str, dir: u32, name: &[u8]) -> impl FnOnce(Errno) -> EngineError {
        let context = format!("cannot {what} {}", self.plan.shown(dir, name));
        move |e| EngineError::io(context)(std::io::Error::from(e))
    }

    /// The handle of directory `dir` (0: the target).
    pub fn dir(&self, dir: u32) -> Result<Arc<OwnedFd>, EngineError> {
        if dir == 0 {
            return Ok(self.root.clone());
        }
        if let Some(h) = self.handles.lock().expect("handles").get(&dir) {
            return Ok(h.clone());
        }
        let planned = &self.plan.dirs[dir as usize];
        let parent = self.dir(planned.parent)?;
        let handle = rustix::fs::openat(
            &*parent,
            name_of(&planned.name),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.io("open", planned.parent, &planned.name))?;
        let handle = Arc::new(handle);
        let mut cache = self.handles.lock().expect("handles");
        if cache.len() >= self.handle_cap {
            cache.clear();
        }
        cache.insert(dir, handle.clone());
        Ok(handle)
    }

    /// Creates directory `dir` (its parent exists), private until [`Self::finish_dir`].
    pub fn create_dir(&self, dir: u32) -> Result<(), EngineError> {
        let planned = &self.plan.dirs[dir as usize];
        let parent = self.dir(planned.parent)?;
        rustix::fs::mkdirat(&*parent, name_of(&planned.name), Mode::from_raw_mode(0o700))
            .map_err(self.io("create", planned.parent, &planned.name))
    }

    fn temp_name(&self, file: u32) -> PathBuf {
        PathBuf::from(format!("{}{file}", self.temp_prefix))
    }

    /// Creates file `file` under a temporary name, empty and private, `size` long.
    pub fn create_file(&self, file: u32) -> Result<File, EngineError> {
        let planned = &self.plan.files[file as usize];
        let dir = self.dir(planned.dir)?;
        let fd = rustix::fs::openat(
            &*dir,
            self.temp_name(file),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(self.io("create", planned.dir, &planned.name))?;
        // A file of several blobs is sized up front, so blocks of zeros left unwritten
        // read back as zeros (holes); a file of one blob is sized by its write.
        if planned.chunks.len() > 1 {
            rustix::fs::ftruncate(&fd, planned.size).map_err(self.io(
                "size",
                planned.dir,
                &planned.name,
            ))?;
        }
        Ok(File::from(fd))
    }

    /// Writes a file that is one blob (or none) in one go: as an unnamed file
    /// (`O_TMPFILE`) that gets its name only once complete, with its metadata
    /// (`linkat`): nothing partial is ever visible, not even after a crash, and the
    /// file system does one directory change instead of two (create, rename). Where the
    /// file system cannot (no `O_TMPFILE`, no `/proc`), under a temporary name.
    pub fn write_whole(&self, file: u32, data: &[u8]) -> Result<(), EngineError> {
        use std::sync::atomic::Ordering;
        let planned = &self.plan.files[file as usize];
        if !self.no_tmpfile.load(Ordering::Relaxed) {
            let dir = self.dir(planned.dir)?;
            match rustix::fs::openat(
                &*dir,
                ".",
                OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => {
                    let f = File::from(fd);
                    self.write(&f, file, data, 0, true)?;
                    let shown = || self.plan.shown(planned.dir, &planned.name);
                    self.apply(f.as_fd(), &planned.meta, &shown)
                        .map_err(self.io("set the metadata of", planned.dir, &planned.name))?;
                    match self.name_unnamed(&f, &dir, &planned.name) {
                        Ok(()) => return Ok(()),
                        Err(Errno::EXIST) => {
                            return Err(EngineError::Invalid(format!(
                                "{} exists already",
                                shown()
                            )));
                        }
                        // No /proc: name files the other way from now on.
                        Err(Errno::NOENT) => self.no_tmpfile.store(true, Ordering::Relaxed),
                        Err(e) => {
                            return Err(self.io("name", planned.dir, &planned.name)(e));
                        }
                    }
                }
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {
                    self.no_tmpfile.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(self.io("create", planned.dir, &planned.name)(e)),
            }
        }
        let f = self.create_file(file)?;
        self.write(&f, file, data, 0, true)?;
        self.finish_file(f, file)
    }

    /// Gives the unnamed file `f` the name `name` in `dir`: by its handle
    /// (`AT_EMPTY_PATH`, allowed to its creator since Linux 6.10, and to root), or else
    /// through `/proc/self/fd`, which costs a path walk through `/proc` per file.
    fn name_unnamed(&self, f: &File, dir: &OwnedFd, name: &[u8]) -> Result<(), Errno> {
        use std::sync::atomic::Ordering;
        if !self.no_empty_path.load(Ordering::Relaxed) {
            match rustix::fs::linkat(f, "", dir, name_of(name), AtFlags::EMPTY_PATH) {
                Err(Errno::NOENT | Errno::PERM | Errno::INVAL) => {
                    self.no_empty_path.store(true, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc.as_str(),
            dir,
            name_of(name),
            AtFlags::SYMLINK_FOLLOW,
        )
    }

    /// Opens a file created earlier (its handle was closed to bound open files).
    pub fn reopen_file(&self, file: u32) -> Result<File, EngineError> {
        let planned = &self.plan.files[file as usize];
        let dir = self.dir(planned.dir)?;
        rustix::fs::openat(
            &*dir,
            self.temp_name(file),
            OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(self.io("open", planned.dir, &planned.name))
    }

    /// Writes `data` at `offset`, skipping aligned blocks of zeros, which read back as
    /// zeros (holes, where the file system has them): a file of several blobs was sized
    /// when created; `whole` data (a file of one blob) sizes the file when its tail was
    /// skipped.
    pub fn write(
        &self,
        f: &File,
        file: u32,
        data: &[u8],
        offset: u64,
        whole: bool,
    ) -> Result<(), EngineError> {
        let mut written_to = 0u64;
        let mut pos = 0usize;
        while pos < data.len() {
            // Up to the next block boundary of the file.
            let abs = offset + pos as u64;
            let to_boundary = HOLE_BLOCK - usize::try_from(abs % HOLE_BLOCK as u64).unwrap_or(0);
            let end = (pos + to_boundary).min(data.len());
            let block = &data[pos..end];
            if block.len() == HOLE_BLOCK && is_zero(block) {
                pos = end;
                continue;
            }
            // A run of blocks that are not all zeros, written at once.
            let mut run_end = end;
            while run_end < data.len() {
                let next = (run_end + HOLE_BLOCK).min(data.len());
                if next - run_end == HOLE_BLOCK && is_zero(&data[run_end..next]) {
                    break;
                }
                run_end = next;
            }
            self.write_at(f, file, &data[pos..run_end], abs)
                .map_err(|e| {
                    let planned = &self.plan.files[file as usize];
                    EngineError::io(format!(
                        "cannot write {}",
                        self.plan.shown(planned.dir, &planned.name)
                    ))(e)
                })?;
            pos = run_end;
            written_to = offset + run_end as u64;
        }
        if whole && written_to < data.len() as u64 {
            let planned = &self.plan.files[file as usize];
            rustix::fs::ftruncate(f, data.len() as u64).map_err(self.io(
                "size",
                planned.dir,
                &planned.name,
            ))?;
        }
        Ok(())
    }

    /// Writes all of `data` at `offset`: uncached for a large file where the file system
    /// allows it ([`UNCACHED_FROM`]), else through the page cache.
    fn write_at(&self, f: &File, file: u32, data: &[u8], offset: u64) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let mut done = 0;
        if self.plan.files[file as usize].size >= UNCACHED_FROM
            && !self.no_uncached.load(Ordering::Relaxed)
        {
            let flags = rustix::io::ReadWriteFlags::from_bits_retain(RWF_DONTCACHE);
            while done < data.len() {
                let slice = [std::io::IoSlice::new(&data[done..])];
                match rustix::io::pwritev2(f, &slice, offset + done as u64, flags) {
                    Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(Errno::INTR) => {}
                    // Older kernels and file systems without it (tmpfs, NFS, FUSE).
                    Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => {
                        self.no_uncached.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        f.write_all_at(&data[done..], offset + done as u64)
    }

    /// Applies the file's metadata, closes it and gives it its name.
    pub fn finish_file(&self, f: File, file: u32) -> Result<(), EngineError> {
        let planned = &self.plan.files[file as usize];
        let shown = || self.plan.shown(planned.dir, &planned.name);
        self.apply(f.as_fd(), &planned.meta, &shown)
            .map_err(self.io("set the metadata of", planned.dir, &planned.name))?;
        drop(f);
        let dir = self.dir(planned.dir)?;
        self.rename_into_place(&dir, &self.temp_name(file), name_of(&planned.name))
            .map_err(|e| match e {
                Errno::EXIST => {
                    let _ = rustix::fs::unlinkat(&*dir, self.temp_name(file), AtFlags::empty());
                    EngineError::Invalid(format!("{} exists already", shown()))
                }
                e => self.io("rename into", planned.dir, &planned.name)(e),
            })
    }

    fn rename_into_place(&self, dir: &OwnedFd, from: &Path, to: &Path) -> Result<(), Errno> {
        use std::sync::atomic::Ordering;
        if !self.no_noreplace.load(Ordering::Relaxed) {
            match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
                Err(Errno::INVAL | Errno::NOSYS) => {
                    self.no_noreplace.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        match rustix::fs::statat(dir, to, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => return Err(Errno::EXIST),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        rustix::fs::renameat(dir, from, dir, to)
    }

    /// Removes the temporary file of `file` (failed, cancelled): nothing partial stays.
    pub fn remove_temp(&self, file: u32) {
        let planned = &self.plan.files[file as usize];
        if let Ok(dir) = self.dir(planned.dir) {
            let _ = rustix::fs::unlinkat(&*dir, self.temp_name(file), AtFlags::empty());
        }
    }

    /// Creates a symlink with its owner, times and (as root) extended attributes.
    pub fn create_symlink(&self, link: usize) -> Result<(), EngineError> {
        let planned = &self.plan.symlinks[link];
        let dir = self.dir(planned.dir)?;
        let name = name_of(&planned.name);
        rustix::fs::symlinkat(name_of(&planned.target), &*dir, name).map_err(self.io(
            "create symlink",
            planned.dir,
            &planned.name,
        ))?;
        if let Some((uid, gid)) = self.owner(&planned.meta) {
            let _ = rustix::fs::chownat(&*dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW);
        }
        // Only `trusted.*` and `security.*` attributes can sit on a symlink, and only
        // root sets them: through /proc, so the link itself is named below its
        // directory's handle (there is no `lsetxattrat`).
        if self.as_root && !planned.meta.xattrs.is_empty() {
            let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            path.push(name);
            for x in &planned.meta.xattrs {
                if let Err(e) = rustix::fs::lsetxattr(
                    &path,
                    OsStr::from_bytes(&x.name),
                    &x.value,
                    XattrFlags::empty(),
                ) {
                    self.warn_xattr(&x.name, e, &|| self.plan.shown(planned.dir, &planned.name));
                }
            }
        }
        rustix::fs::utimensat(
            &*dir,
            name,
            &times(&planned.meta),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(self.io("set the time of", planned.dir, &planned.name))
    }

    /// Gives file `file` (in place) one more name.
    pub fn create_link(&self, link: usize) -> Result<(), EngineError> {
        let planned = &self.plan.links[link];
        let file = &self.plan.files[planned.file as usize];
        let from = self.dir(file.dir)?;
        let to = self.dir(planned.dir)?;
        rustix::fs::linkat(
            &*from,
            name_of(&file.name),
            &*to,
            name_of(&planned.name),
            AtFlags::empty(),
        )
        .map_err(self.io("create hard link", planned.dir, &planned.name))
    }

    /// Applies a directory's metadata, once everything inside it is in place.
    pub fn finish_dir(&self, dir: u32) -> Result<(), EngineError> {
        let planned = &self.plan.dirs[dir as usize];
        let parent = self.dir(planned.parent)?;
        let fd = rustix::fs::openat(
            &*parent,
            name_of(&planned.name),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(self.io("open", planned.parent, &planned.name))?;
        self.apply(fd.as_fd(), &planned.meta, &|| {
            self.plan.shown(planned.parent, &planned.name)
        })
        .map_err(self.io("set the metadata of", planned.parent, &planned.name))
    }

    /// The owner to give an entry: everything as root; otherwise only a group the
    /// restoring user may choose for their own file (others are left as created).
    fn owner(&self, meta: &Meta) -> Option<(Option<rustix::fs::Uid>, Option<rustix::fs::Gid>)> {
        if self.as_root {
            Some((
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            ))
        } else if meta.uid == self.euid && meta.gid != self.egid {
            Some((None, Some(rustix::fs::Gid::from_raw(meta.gid))))
        } else {
            None
        }
    }

    /// Owner, mode, extended attributes (ACLs among them), then the modification time:
    /// in that order, because changing the owner clears set-id bits, the access ACL is
    /// the mode's group bits, and every change before moves the change time only.
    fn apply(
        &self,
        fd: rustix::fd::BorrowedFd<'_>,
        meta: &Meta,
        shown: &dyn Fn() -> String,
    ) -> Result<(), Errno> {
        if let Some((uid, gid)) = self.owner(meta) {
            match rustix::fs::fchown(fd, uid, gid) {
                Ok(()) | Err(Errno::PERM) => {}
                Err(e) => return Err(e),
            }
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))?;
        for x in &meta.xattrs {
            if let Err(e) = rustix::fs::fsetxattr(
                fd,
                OsStr::from_bytes(&x.name),
                &x.value,
                XattrFlags::empty(),
            ) {
                self.warn_xattr(&x.name, e, shown);
            }
        }
        rustix::fs::futimens(fd, &times(meta))
    }

    fn warn_xattr(&self, name: &[u8], e: Errno, shown: &dyn Fn() -> String) {
        let why = match e {
            Errno::NOTSUP => "the target file system does not support it".to_owned(),
            Errno::PERM | Errno::ACCESS => "not permitted for this user".to_owned(),
            other => std::io::Error::from(other).to_string(),
        };
        let what = format!("extended attribute {}", String::from_utf8_lossy(name));
        let mut warnings = self.warnings.lock().expect("warnings");
        warnings
            .entry((what, why))
            .and_modify(|(n, _)| *n += 1)
            .or_insert_with(|| (1, shown()));
    }

    /// What could not be applied, one line per kind of failure.
    pub fn warnings(&self) -> Vec<String> {
        let warnings = self.warnings.lock().expect("warnings");
        warnings
            .iter()
            .map(|((what, why), (count, first))| {
                if *count == 1 {
                    format!("{first}: {what} not restored: {why}")
                } else {
                    format!("{what} not restored on {count} entries ({why}), {first} among them")
                }
            })
            .collect()
    }
}

fn is_zero(block: &[u8]) -> bool {
    let words = block.chunks_exact(16);
    let rest = words.remainder();
    rest.iter().all(|&b| b == 0)
        && words
            .into_iter()
            .all(|w| u128::from_ne_bytes(w.try_into().expect("16 bytes")) == 0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    use std::sync::atomic::Ordering;

    use super::super::plan::{Meta, Plan, PlannedDir, PlannedFile};
    use super::Target;

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            mtime_ns: 1_234_567_890_123_456_789,
            xattrs: Box::default(),
        }
    }

    /// The plan's one directory: the target itself.
    fn target_dir() -> PlannedDir {
        PlannedDir {
            parent: 0,
            name: Box::default(),
            depth: 0,
            meta: meta(0o40_755),
        }
    }

    /// A file of one blob is written unnamed and named once complete: by its handle
    /// where the kernel allows it, else through `/proc/self/fd`; both give the same
    /// file, with its metadata, and leave nothing else behind.
    #[test]
    fn unnamed_files_are_named_by_their_handle_or_through_proc() {
        for through_proc in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let plan = Plan {
                dirs: vec![target_dir()],
                files: vec![PlannedFile {
                    dir: 0,
                    name: b"a.txt".to_vec().into(),
                    size: 5,
                    chunks: Box::new([[0u8; 32]]),
                    meta: meta(0o100_640),
                }],
                ..Plan::default()
            };
            let target = Target::open(dir.path(), &plan, 8).unwrap();
            target.no_empty_path.store(through_proc, Ordering::SeqCst);
            target.write_whole(0, b"hello").unwrap();
            let path = dir.path().join("a.txt");
            assert_eq!(std::fs::read(&path).unwrap(), b"hello", "{through_proc}");
            let m = std::fs::metadata(&path).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o640);
            assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 123_456_789));
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["a.txt"], "{through_proc}");
            // Where the file system has unnamed files, the file was one (neither way of
            // naming it failed over to a temporary name).
            let unnamed = rustix::fs::open(
                dir.path(),
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::TMPFILE,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .is_ok();
            assert_eq!(
                target.no_tmpfile.load(Ordering::SeqCst),
                !unnamed,
                "{through_proc}"
            );
        }
    }

    /// Files of at least [`super::UNCACHED_FROM`] bytes are written uncached where the
    /// kernel and the file system allow it, whole (one blob) or blob by blob: the same
    /// content and holes as through the page cache, without leaving it in the cache
    /// (the written-through run shows that the count can tell).
    #[test]
    fn large_files_are_written_past_the_page_cache_where_it_can() {
        use coffer_storage::testing::{resident_bytes, uncached_writes_supported};
        let size = usize::try_from(super::UNCACHED_FROM).unwrap() * 4;
        let mut data: Vec<u8> = (0..size)
            .map(|i| u8::try_from(i % 251).unwrap() | 1)
            .collect();
        data[8192..16384].fill(0); // two blocks of zeros: a hole
        // A tmpfs refuses uncached writes: written through the cache there.
        let parents = [std::env::temp_dir(), "/dev/shm".into()];
        let runs = parents.iter().filter(|p| p.is_dir());
        for (parent, cached) in runs.flat_map(|p| [(p, false), (p, true)]) {
            let dir = tempfile::tempdir_in(parent).unwrap();
            let file = |name: &[u8], chunks: usize| PlannedFile {
                dir: 0,
                name: name.to_vec().into(),
                size: size as u64,
                chunks: vec![[0u8; 32]; chunks].into(),
                meta: meta(0o100_600),
            };
            let plan = Plan {
                dirs: vec![target_dir()],
                files: vec![file(b"one", 1), file(b"two", 2)],
                ..Plan::default()
            };
            let target = Target::open(dir.path(), &plan, 8).unwrap();
            target.no_uncached.store(cached, Ordering::SeqCst);
            target.write_whole(0, &data).unwrap();
            let f = target.create_file(1).unwrap();
            let half = size / 2 + 1000;
            target
                .write(&f, 1, &data[half..], half as u64, false)
                .unwrap();
            target.write(&f, 1, &data[..half], 0, false).unwrap();
            target.finish_file(f, 1).unwrap();
            let supported = uncached_writes_supported(dir.path());
            assert_eq!(
                target.no_uncached.load(Ordering::SeqCst),
                cached || !supported
            );
            for name in ["one", "two"] {
                let path = dir.path().join(name);
                // Counted before the content is read (which caches it): written back
                // and dropped, or still in the cache.
                rustix::fs::fsync(std::fs::File::open(&path).unwrap()).unwrap();
                let resident = supported.then(|| resident_bytes(&path)).flatten();
                if let Some(resident) = resident {
                    assert_eq!(
                        resident > size as u64 / 2,
                        cached,
                        "{name} in {}: {resident} of {size} bytes cached (written cached: \
                         {cached})",
                        parent.display()
                    );
                }
                assert!(
                    std::fs::read(&path).unwrap() == data,
                    "{name} in {}, cached: {cached}",
                    parent.display()
                );
            }
        }
    }
}
