//! Restore: verify first, then write every file under a temporary name and rename it
//! into place when complete, never outside the target.
//!
//! The tree is walked once to create directories, symlinks and empty temporary files and
//! to plan, pack by pack, which chunk goes where; then the packs are worked through (one
//! per core at a time), each needed chunk read once with a ranged read, authenticated
//! and written at its offsets. Memory holds the plan and one chunk per worker.
//!
//! Progress: the totals (files and bytes of the selected subtree) are set once the
//! snapshot is verified, before anything is written. Cancellation is checked between
//! entries while planning and between ranged reads while filling; a cancelled restore
//! removes every temporary file, so only files that were complete remain.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{File, FileTimes, OpenOptions};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_domain::engine::{Cancel, Progress, RestoreReport};

use crate::error::EngineError;
use crate::tree::{Node, NodeKind};
use crate::{Repository, collect_refs, crypto, key, pack::pack_key};

/// Restores `path` of `snapshot` (the whole snapshot when `None`) into `target`, which
/// must not exist or be an empty directory.
///
/// # Errors
/// `Damaged` naming the affected files when objects are missing (before anything is
/// written) or fail authentication while reading (those files are not written);
/// `Invalid` for a non-empty target or entries that would escape it; `Cancelled`.
pub async fn run(
    repo: Arc<Repository>,
    snapshot: &str,
    path: Option<&str>,
    target: &Path,
    progress: Arc<Progress>,
    cancel: Cancel,
) -> Result<RestoreReport, EngineError> {
    let doc = repo.load_snapshot(snapshot).await?;
    let node = repo.resolve(&doc.root()?, path.unwrap_or("")).await?;

    // Verify before writing anything: every referenced object must exist, and no entry
    // may escape the target.
    let (data, unsafe_entries, files, bytes) = match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(subtree)) => {
            let refs = collect_refs(&repo, &subtree, String::new(), None, &cancel).await?;
            (refs.data, refs.unsafe_entries, refs.files, refs.bytes)
        }
        (NodeKind::File, _) => {
            let mut data = HashMap::new();
            for c in &node.content {
                data.entry(*c)
                    .or_insert_with(Vec::new)
                    .push(node.display_name());
            }
            (data, Vec::new(), 1, node.size)
        }
        (NodeKind::Dir, None) | (NodeKind::Symlink, _) => (HashMap::new(), Vec::new(), 0, 0),
    };
    if !unsafe_entries.is_empty() {
        return Err(EngineError::Invalid(format!(
            "refusing to restore: entries whose names would escape the target or collide: {}",
            unsafe_entries.join(", ")
        )));
    }
    let index = repo.index();
    let mut missing: BTreeSet<String> = BTreeSet::new();
    let mut packs = BTreeSet::new();
    for (chunk, paths) in &data {
        match index.get(chunk) {
            Some((pack, _)) => {
                packs.insert(*pack);
            }
            None => missing.extend(paths.iter().cloned()),
        }
    }
    for pack in &packs {
        if !repo.store.exists(&key(&pack_key(pack))?).await? {
            for (chunk, paths) in &data {
                if index.get(chunk).is_some_and(|(p, _)| p == pack) {
                    missing.extend(paths.iter().cloned());
                }
            }
        }
    }
    if !missing.is_empty() {
        return Err(EngineError::Damaged(format!(
            "snapshot {snapshot} is damaged: data of {} file(s) is missing from storage: {}; nothing was restored",
            missing.len(),
            missing.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }

    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    progress.set_totals(files, bytes);
    prepare_target(target)?;
    let handle = tokio::runtime::Handle::current();
    let target = target.to_path_buf();
    let snapshot_id = snapshot.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut planner = Planner {
            repo: &repo,
            handle: &handle,
            progress: &progress,
            cancel: &cancel,
            files: Vec::new(),
            by_pack: HashMap::new(),
            dirs: Vec::new(),
            report: RestoreReport::default(),
        };
        let walked = match node.kind {
            NodeKind::Dir => node
                .subtree
                .ok_or_else(|| EngineError::Corrupt("directory without tree".into()))
                .and_then(|subtree| planner.dir_contents(&subtree, &target, "")),
            _ => planner.entry(&node, &target, ""),
        };
        if let Err(e) = walked {
            // Leave no temporary file behind (those already renamed are complete).
            for f in &planner.files {
                let _ = std::fs::remove_file(&f.temp);
            }
            return Err(e);
        }
        if node.kind == NodeKind::Dir {
            planner.report.dirs += 1;
        }
        let Planner {
            files,
            by_pack,
            dirs,
            mut report,
            ..
        } = planner;
        let damaged = fill(&repo, &handle, &files, by_pack, &progress, &cancel);
        for f in &files {
            if !f.failed.load(Ordering::SeqCst) && f.remaining.load(Ordering::SeqCst) == 0 {
                report.files += 1;
                report.bytes += f.node.size;
            }
        }
        // Directory modes and times last, deepest first: a read-only directory must not
        // stop its own files from being renamed into it.
        for (path, node) in dirs.iter().rev() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(node.mode)).map_err(
                EngineError::io(format!("cannot set the mode of {}", path.display())),
            )?;
            set_owner(path, node);
            if let Ok(f) = File::open(path) {
                let _ = f.set_times(FileTimes::new().set_modified(time_of(node.mtime_ns)));
            }
        }
        let damaged = damaged?;
        if damaged.is_empty() {
            Ok(report)
        } else {
            Err(EngineError::Damaged(format!(
                "snapshot {} is damaged: {} file(s) failed verification and were not restored: {}",
                snapshot_id,
                damaged.len(),
                damaged.join(", ")
            )))
        }
    })
    .await
    .map_err(|e| EngineError::Other(format!("restore task failed: {e}")))?
}

fn prepare_target(target: &Path) -> Result<(), EngineError> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => {
            let mut entries = std::fs::read_dir(target)
                .map_err(EngineError::io(format!("cannot read {}", target.display())))?;
            if entries.next().is_some() {
                return Err(EngineError::Invalid(format!(
                    "restore target {} is not empty; choose a new or empty directory",
                    target.display()
                )));
            }
            Ok(())
        }
        Ok(_) => Err(EngineError::Invalid(format!(
            "restore target {} exists and is not a directory",
            target.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(target)
            .map_err(EngineError::io(format!(
                "cannot create {}",
                target.display()
            ))),
        Err(e) => Err(EngineError::io(format!(
            "cannot inspect {}",
            target.display()
        ))(e)),
    }
}

/// A file being restored: written under `temp`, renamed to `path` once every chunk is in.
struct PlannedFile {
    temp: PathBuf,
    path: PathBuf,
    node: Node,
    shown: String,
    remaining: AtomicUsize,
    failed: AtomicBool,
}

/// The most bytes one ranged read fetches during a restore.
const READ_SPAN: u64 = 4 * 1024 * 1024;

/// Where one chunk goes: a file and an offset in it.
type Target = (usize, u64);

/// Walks the snapshot's tree: creates directories and symlinks, creates every file empty
/// under a temporary name, and groups what must be written by pack.
struct Planner<'a> {
    repo: &'a Repository,
    handle: &'a tokio::runtime::Handle,
    progress: &'a Progress,
    cancel: &'a Cancel,
    files: Vec<PlannedFile>,
    by_pack: HashMap<[u8; 32], HashMap<crypto::ChunkId, Vec<Target>>>,
    dirs: Vec<(PathBuf, Node)>,
    report: RestoreReport,
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn set_owner(path: &Path, node: &Node) {
    // Only root may give files away; others keep their own ownership.
    if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
        && e.kind() != std::io::ErrorKind::PermissionDenied
    {
        tracing::debug!(path = %path.display(), error = %e, "cannot restore ownership");
    }
}

impl Planner<'_> {
    fn dir_contents(
        &mut self,
        tree: &crypto::ChunkId,
        dir: &Path,
        display: &str,
    ) -> Result<(), EngineError> {
        let nodes = self.handle.block_on(self.repo.tree(tree))?;
        for node in &nodes {
            self.entry(node, dir, display)?;
        }
        Ok(())
    }

    fn entry(&mut self, node: &Node, dir: &Path, display: &str) -> Result<(), EngineError> {
        if self.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        if !Node::safe_name(&node.name) {
            return Err(EngineError::Invalid(format!(
                "refusing entry `{}`",
                node.display_name()
            )));
        }
        let path = dir.join(OsStr::from_bytes(&node.name));
        let shown = if display.is_empty() {
            node.display_name()
        } else {
            format!("{display}/{}", node.display_name())
        };
        match node.kind {
            NodeKind::Dir => {
                // create_dir fails on anything already there, a symlink included: we only
                // ever descend into directories we created ourselves.
                std::fs::create_dir(&path)
                    .map_err(EngineError::io(format!("cannot create {}", path.display())))?;
                if let Some(sub) = node.subtree {
                    self.dir_contents(&sub, &path, &shown)?;
                }
                self.dirs.push((path, node.clone()));
                self.report.dirs += 1;
            }
            NodeKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.link_target), &path).map_err(
                    EngineError::io(format!("cannot create symlink {}", path.display())),
                )?;
                set_owner(&path, node);
                self.report.symlinks += 1;
            }
            NodeKind::File => {
                let temp = dir.join(format!(
                    ".coffer-restore-{}",
                    hex::encode(crypto::random::<8>()?)
                ));
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&temp)
                    .and_then(|f| f.set_len(node.size))
                    .map_err(EngineError::io(format!("cannot create {}", temp.display())))?;
                let index = self.repo.index();
                let number = self.files.len();
                let mut offset = 0u64;
                for chunk in &node.content {
                    let (pack, entry) = index.get(chunk).ok_or_else(|| {
                        EngineError::Damaged(format!("{shown}: a chunk is not in the index"))
                    })?;
                    self.by_pack
                        .entry(*pack)
                        .or_default()
                        .entry(*chunk)
                        .or_default()
                        .push((number, offset));
                    offset += u64::from(entry.raw_length);
                }
                let file = PlannedFile {
                    temp,
                    path,
                    node: node.clone(),
                    shown,
                    remaining: AtomicUsize::new(node.content.len()),
                    failed: AtomicBool::new(offset != node.size),
                };
                if file.failed.load(Ordering::SeqCst) {
                    tracing::error!(
                        file = file.shown,
                        "chunk sizes do not add up to the file size"
                    );
                }
                // Pushed before it can fail, so that a failure removes its temporary file.
                self.files.push(file);
                if node.content.is_empty() {
                    let file = self.files.last().expect("pushed above");
                    finalize(file)?;
                    if !file.failed.load(Ordering::SeqCst) {
                        self.progress.add(1, 0);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Renames a complete file into place with its metadata, or removes a failed one.
fn finalize(file: &PlannedFile) -> Result<(), EngineError> {
    if file.failed.load(Ordering::SeqCst) {
        let _ = std::fs::remove_file(&file.temp);
        return Ok(());
    }
    let f = OpenOptions::new()
        .write(true)
        .open(&file.temp)
        .map_err(EngineError::io(format!(
            "cannot open {}",
            file.temp.display()
        )))?;
    f.set_permissions(std::fs::Permissions::from_mode(file.node.mode))
        .map_err(EngineError::io(format!(
            "cannot set the mode of {}",
            file.temp.display()
        )))?;
    let _ = f.set_times(FileTimes::new().set_modified(time_of(file.node.mtime_ns)));
    drop(f);
    set_owner(&file.temp, &file.node);
    if std::fs::symlink_metadata(&file.path).is_ok() {
        let _ = std::fs::remove_file(&file.temp);
        return Err(EngineError::Invalid(format!(
            "{} exists already",
            file.path.display()
        )));
    }
    std::fs::rename(&file.temp, &file.path).map_err(EngineError::io(format!(
        "cannot rename into {}",
        file.path.display()
    )))
}

/// Works through the packs (one per core at a time), reading each needed chunk once in
/// pack order, authenticating it and writing it at every offset that needs it; a file is
/// renamed into place when its last chunk lands.
/// Returns the files that failed verification (removed, never renamed). On cancel or a
/// fatal error every temporary file is removed; files renamed into place stay.
fn fill(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    files: &[PlannedFile],
    by_pack: HashMap<[u8; 32], HashMap<crypto::ChunkId, Vec<Target>>>,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<Vec<String>, EngineError> {
    let queue = Mutex::new(by_pack.into_iter().collect::<Vec<_>>());
    let fatal: Mutex<Option<EngineError>> = Mutex::new(None);
    let fail = |number: usize, why: &str| {
        let file = &files[number];
        if !file.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(file = file.shown, "damaged: {why}");
        }
    };
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .clamp(1, 4);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let Some((pack_id, chunks)) = queue.lock().expect("queue").pop() else {
                        return;
                    };
                    if fatal.lock().expect("fatal").is_some() {
                        return;
                    }
                    if cancel.is_cancelled() {
                        fatal
                            .lock()
                            .expect("fatal")
                            .get_or_insert(EngineError::Cancelled);
                        return;
                    }
                    // In pack order; neighbouring chunks are fetched with one ranged read
                    // of at most READ_SPAN bytes, so memory stays at one span per worker.
                    let index = repo.index();
                    let mut chunks: Vec<_> = chunks
                        .into_iter()
                        .filter_map(|(c, t)| index.get(&c).map(|(_, e)| (*e, t)))
                        .collect();
                    chunks.sort_by_key(|(e, _)| e.offset);
                    let mut i = 0;
                    while i < chunks.len() {
                        if cancel.is_cancelled() {
                            fatal
                                .lock()
                                .expect("fatal")
                                .get_or_insert(EngineError::Cancelled);
                            return;
                        }
                        if fatal.lock().expect("fatal").is_some() {
                            return;
                        }
                        let start = chunks[i].0.offset;
                        let mut end = start + u64::from(chunks[i].0.length);
                        let mut j = i + 1;
                        while j < chunks.len()
                            && chunks[j].0.offset == end
                            && end - start + u64::from(chunks[j].0.length) <= READ_SPAN
                        {
                            end += u64::from(chunks[j].0.length);
                            j += 1;
                        }
                        let span = match key(&pack_key(&pack_id)) {
                            Ok(k) => handle.block_on(repo.store.get_range(&k, start, end - start)),
                            Err(e) => {
                                *fatal.lock().expect("fatal") = Some(e);
                                return;
                            }
                        };
                        let span = match span {
                            Ok(span) => span,
                            Err(e) => {
                                *fatal.lock().expect("fatal") = Some(e.into());
                                return;
                            }
                        };
                        for (entry, targets) in &chunks[i..j] {
                            let from = usize::try_from(entry.offset - start).unwrap_or(usize::MAX);
                            let to = from.saturating_add(entry.length as usize);
                            let plain = match &span {
                                Some(bytes) if to <= bytes.len() => crypto::open_blob(
                                    &repo.keys,
                                    &entry.id,
                                    entry.raw_length as usize,
                                    &bytes[from..to],
                                ),
                                Some(_) => Err(EngineError::Damaged(format!(
                                    "pack {} is truncated",
                                    hex::encode(pack_id)
                                ))),
                                None => Err(EngineError::Damaged(format!(
                                    "pack {} is missing",
                                    hex::encode(pack_id)
                                ))),
                            };
                            for &(number, offset) in targets {
                                let file = &files[number];
                                match &plain {
                                    Ok(data) if !file.failed.load(Ordering::SeqCst) => {
                                        let written = OpenOptions::new()
                                            .write(true)
                                            .open(&file.temp)
                                            .and_then(|f| f.write_all_at(data, offset));
                                        if let Err(e) = written {
                                            *fatal.lock().expect("fatal") = Some(EngineError::io(
                                                format!("cannot write {}", file.temp.display()),
                                            )(
                                                e
                                            ));
                                            return;
                                        }
                                        progress.add(0, data.len() as u64);
                                    }
                                    Ok(_) => {}
                                    Err(e) => fail(number, &e.to_string()),
                                }
                                if file.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                                    if let Err(e) = finalize(file) {
                                        *fatal.lock().expect("fatal") = Some(e);
                                        return;
                                    }
                                    if !file.failed.load(Ordering::SeqCst) {
                                        progress.add(1, 0);
                                    }
                                }
                            }
                        }
                        i = j;
                    }
                }
            });
        }
    });
    if let Some(e) = fatal.into_inner().expect("fatal") {
        // Leave no temporary file behind.
        for f in files {
            let _ = std::fs::remove_file(&f.temp);
        }
        return Err(e);
    }
    Ok(files
        .iter()
        .filter(|f| f.failed.load(Ordering::SeqCst))
        .map(|f| f.shown.clone())
        .collect())
}
