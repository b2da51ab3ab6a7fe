//! Restore: verify first, then write every file under a temporary name and rename it
//! into place when complete, never outside the target.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{File, FileTimes, OpenOptions};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_domain::engine::{Progress, RestoreReport};

use crate::error::EngineError;
use crate::tree::{Node, NodeKind};
use crate::{Repository, collect_refs, crypto, key, pack::pack_key};

/// Restores `path` of `snapshot` (the whole snapshot when `None`) into `target`, which
/// must not exist or be an empty directory.
///
/// # Errors
/// `Damaged` naming the affected files when objects are missing (before anything is
/// written) or fail authentication while reading (those files are not written);
/// `Invalid` for a non-empty target or entries that would escape it.
pub async fn run(
    repo: Arc<Repository>,
    snapshot: &str,
    path: Option<&str>,
    target: &Path,
    progress: Arc<Progress>,
) -> Result<RestoreReport, EngineError> {
    let doc = repo.load_snapshot(snapshot).await?;
    let node = repo.resolve(&doc.root()?, path.unwrap_or("")).await?;

    // Verify before writing anything: every referenced object must exist, and no entry
    // may escape the target.
    let (data, unsafe_entries) = if let (NodeKind::Dir, Some(subtree)) = (node.kind, node.subtree) {
        let refs = collect_refs(&repo, &subtree, String::new()).await?;
        (refs.data, refs.unsafe_entries)
    } else {
        let mut data = std::collections::HashMap::new();
        for c in &node.content {
            data.entry(*c)
                .or_insert_with(Vec::new)
                .push(node.display_name());
        }
        (data, Vec::new())
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

    prepare_target(target)?;
    let handle = tokio::runtime::Handle::current();
    let target = target.to_path_buf();
    let snapshot_id = snapshot.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut restorer = Restorer {
            repo: &repo,
            handle,
            progress,
            report: RestoreReport::default(),
            damaged: Vec::new(),
        };
        match node.kind {
            NodeKind::Dir => {
                let subtree = node
                    .subtree
                    .ok_or_else(|| EngineError::Corrupt("directory without tree".into()))?;
                restorer.dir_contents(&subtree, &target, "")?;
                restorer.report.dirs += 1;
            }
            _ => restorer.entry(&node, &target, "")?,
        }
        if restorer.damaged.is_empty() {
            Ok(restorer.report)
        } else {
            Err(EngineError::Damaged(format!(
                "snapshot {} is damaged: {} file(s) failed verification and were not restored: {}",
                snapshot_id,
                restorer.damaged.len(),
                restorer.damaged.join(", ")
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

struct Restorer<'a> {
    repo: &'a Repository,
    handle: tokio::runtime::Handle,
    progress: Arc<Progress>,
    report: RestoreReport,
    damaged: Vec<String>,
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

impl Restorer<'_> {
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
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))
                    .map_err(EngineError::io(format!(
                        "cannot set the mode of {}",
                        path.display()
                    )))?;
                set_owner(&path, node);
                if let Ok(f) = File::open(&path) {
                    let _ = f.set_times(FileTimes::new().set_modified(time_of(node.mtime_ns)));
                }
                self.report.dirs += 1;
            }
            NodeKind::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&node.link_target), &path).map_err(
                    EngineError::io(format!("cannot create symlink {}", path.display())),
                )?;
                set_owner(&path, node);
                self.report.symlinks += 1;
            }
            NodeKind::File => self.file(node, &path, &shown)?,
        }
        Ok(())
    }

    fn file(&mut self, node: &Node, path: &Path, shown: &str) -> Result<(), EngineError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let temp: PathBuf = dir.join(format!(
            ".coffer-restore-{}",
            hex::encode(crypto::random::<8>()?)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(EngineError::io(format!("cannot create {}", temp.display())))?;
        let mut written = 0u64;
        for chunk in &node.content {
            match self.handle.block_on(self.repo.blob(chunk)) {
                Ok(data) => {
                    file.write_all(&data)
                        .map_err(EngineError::io(format!("cannot write {}", temp.display())))?;
                    written += data.len() as u64;
                    self.progress.add(0, data.len() as u64);
                }
                Err(EngineError::Damaged(why)) => {
                    drop(file);
                    let _ = std::fs::remove_file(&temp);
                    tracing::error!(file = shown, "damaged: {why}");
                    self.damaged.push(format!("{shown} ({why})"));
                    return Ok(());
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(e);
                }
            }
        }
        if written != node.size {
            let _ = std::fs::remove_file(&temp);
            self.damaged
                .push(format!("{shown} (size {written} instead of {})", node.size));
            return Ok(());
        }
        file.sync_all()
            .map_err(EngineError::io(format!("cannot write {}", temp.display())))?;
        file.set_permissions(std::fs::Permissions::from_mode(node.mode))
            .map_err(EngineError::io(format!(
                "cannot set the mode of {}",
                temp.display()
            )))?;
        let _ = file.set_times(FileTimes::new().set_modified(time_of(node.mtime_ns)));
        drop(file);
        set_owner(&temp, node);
        if std::fs::symlink_metadata(path).is_ok() {
            let _ = std::fs::remove_file(&temp);
            return Err(EngineError::Invalid(format!(
                "{} exists already",
                path.display()
            )));
        }
        std::fs::rename(&temp, path).map_err(EngineError::io(format!(
            "cannot rename into {}",
            path.display()
        )))?;
        self.report.files += 1;
        self.report.bytes += written;
        self.progress.add(1, 0);
        Ok(())
    }
}
