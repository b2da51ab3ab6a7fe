//! Import: a tree given entry by entry (an archive read as a stream) becomes a snapshot,
//! stored and committed like a backup's: the same chunker, packs, index and snapshot
//! object, so deduplication with every other snapshot holds and a failed import leaves
//! nothing visible.
//!
//! The archive's entries come in its own order; each file's content is chunked as it
//! streams (one chunker buffer, no file held whole), while the directory structure (names
//! and chunk ids only) is kept until the end, when the trees are sealed bottom-up in name
//! order. Directories the archive implies but does not list get the snapshot's time.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use coffer_domain::engine::{Cancel, ImportRequest, Progress, SnapshotSummary};
use coffer_domain::import::{TreeEntry, TreeSource, TreeSourceError};

use super::{
    CHUNK_MAX, READ_SIZE, Shared, Stored, StreamFail, check_encryption, chunk_stream, commit,
    ensure_initialized, finish, hostname,
};
use crate::crypto::ChunkId;
use crate::error::EngineError;
use crate::lock::RepoLock;
use crate::pack::BlobKind;
use crate::snapshot::SnapshotDoc;
use crate::tree::{self, Node, NodeKind};
use crate::{Repository, timed};

/// Stores `source`'s tree as a snapshot taken at `request.taken_at`.
///
/// # Errors
/// `Invalid` with the source's reason when it refuses (an archive that fails its checks)
/// or cannot be read, `Cancelled`, storage failures. Nothing of a failed import is kept.
pub async fn import(
    repo: Arc<Repository>,
    request: ImportRequest,
    source: Box<dyn TreeSource>,
    progress: Arc<Progress>,
    cancel: Cancel,
) -> Result<SnapshotSummary, EngineError> {
    check_encryption(&repo)?;
    ensure_initialized(&repo).await?;
    let lock = RepoLock::shared(repo.store.clone(), repo.lock_timings, "import", &cancel).await?;
    let stored = Arc::new(Mutex::new(Stored::default()));
    let result = store_and_commit(&repo, request, source, progress, cancel, &lock, &stored).await;
    finish(&repo, &stored, lock, result).await
}

async fn store_and_commit(
    repo: &Arc<Repository>,
    request: ImportRequest,
    mut source: Box<dyn TreeSource>,
    progress: Arc<Progress>,
    cancel: Cancel,
    lock: &RepoLock,
    stored: &Arc<Mutex<Stored>>,
) -> Result<SnapshotSummary, EngineError> {
    let index = repo.reload_index().await?;
    let shared = Arc::new(Shared::new(
        repo.clone(),
        index,
        progress,
        cancel,
        request.budget.clone(),
        stored.clone(),
    ));
    let started_at = Utc::now();
    let taken_at = request.taken_at;
    let walk_shared = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut builder = Builder::new(&walk_shared, taken_at);
        let walked = source.entries(&mut |entry, content| builder.add(entry, content));
        // A store failure reached through the visitor is the import's error as is.
        if let Some(e) = builder.fatal.take() {
            return Err(e);
        }
        walked.map_err(|e| match e {
            TreeSourceError::Refused(why) | TreeSourceError::Io(why) => EngineError::Invalid(why),
        })?;
        let outcome = builder.finish()?;
        walk_shared.flush()?;
        Ok(outcome)
    })
    .await
    .map_err(|e| EngineError::Other(format!("import task failed: {e}")))??;
    shared.progress.set_totals(outcome.files, outcome.bytes);
    let finished_at = Utc::now();
    tracing::debug!(
        elapsed_ms = (finished_at - started_at).num_milliseconds(),
        "import: every entry stored"
    );
    let doc = SnapshotDoc {
        version: 1,
        source: request.source_name.clone(),
        path: request.path.clone(),
        hostname: hostname(),
        // The snapshot is dated when its tree was taken, not when it was imported.
        started_at: taken_at,
        finished_at: taken_at,
        tree: hex::encode(outcome.root),
        parent: None,
        status: if outcome.warnings.is_empty() {
            "ok"
        } else {
            "partial"
        }
        .to_owned(),
        encrypted: repo.encrypt,
        files: outcome.files,
        dirs: outcome.dirs,
        bytes: outcome.bytes,
        bytes_added: shared.bytes_added.load(Ordering::Relaxed),
        stored_bytes_added: 0,
        unchanged_files: 0,
        excluded: 0,
        suspicious: None,
        warnings: outcome.warnings,
    };
    commit(repo, &shared, lock, stored, doc).await
}

/// A directory being assembled: its own entry and what it holds, by name.
struct PendingDir {
    node: Node,
    children: BTreeMap<Vec<u8>, Pending>,
}

enum Pending {
    Dir(PendingDir),
    Leaf(Node),
}

struct Outcome {
    root: ChunkId,
    files: u64,
    dirs: u64,
    bytes: u64,
    warnings: Vec<String>,
}

struct Builder<'a> {
    shared: &'a Shared,
    taken_at: DateTime<Utc>,
    root: PendingDir,
    buffer: Vec<u8>,
    sealed: Vec<u8>,
    files: u64,
    bytes: u64,
    warnings: Vec<String>,
    /// A storage failure met while the source was being read.
    fatal: Option<EngineError>,
    uid: u32,
    gid: u32,
}

fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(0)
}

impl<'a> Builder<'a> {
    fn new(shared: &'a Shared, taken_at: DateTime<Utc>) -> Self {
        let mut root = Node::new(Vec::new(), NodeKind::Dir);
        root.mode = 0o755;
        Self {
            shared,
            taken_at,
            root: PendingDir {
                node: root,
                children: BTreeMap::new(),
            },
            buffer: Vec::new(),
            sealed: Vec::new(),
            files: 0,
            bytes: 0,
            warnings: Vec::new(),
            fatal: None,
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    /// A new entry with the importing user as owner and `mtime` for both times.
    fn node(&self, name: &[u8], kind: NodeKind, mtime: DateTime<Utc>, mode: u32) -> Node {
        let mut node = Node::new(name.to_vec(), kind);
        node.mode = mode & 0o7777;
        node.uid = self.uid;
        node.gid = self.gid;
        node.mtime_ns = nanos(mtime);
        node.ctime_ns = node.mtime_ns;
        node
    }

    /// The directory that holds `parts`' last part, made (with the snapshot's time) where
    /// the archive did not list it; `Err` with a warning when a file stands in the way.
    fn parent_of<'b>(
        root: &'b mut PendingDir,
        parts: &[&str],
        template: &Node,
        path: &str,
    ) -> Result<&'b mut PendingDir, String> {
        let mut dir = root;
        for part in &parts[..parts.len() - 1] {
            let entry = dir
                .children
                .entry(part.as_bytes().to_vec())
                .or_insert_with(|| {
                    let mut node = template.clone();
                    node.name = part.as_bytes().to_vec();
                    Pending::Dir(PendingDir {
                        node,
                        children: BTreeMap::new(),
                    })
                });
            dir = match entry {
                Pending::Dir(d) => d,
                Pending::Leaf(_) => {
                    return Err(format!(
                        "{path}: skipped: a file of the archive has the name of its directory"
                    ));
                }
            };
        }
        Ok(dir)
    }

    fn add(
        &mut self,
        entry: &TreeEntry,
        content: &mut dyn std::io::Read,
    ) -> Result<(), TreeSourceError> {
        if self.shared.cancel.is_cancelled() {
            self.fatal = Some(EngineError::Cancelled);
            return Err(TreeSourceError::Io("cancelled".into()));
        }
        // Absolute names, `..` and empty names are refused, never reinterpreted.
        let path = match coffer_domain::import::clean_entry_path(&entry.path) {
            Ok(path) => path,
            Err(why) => {
                self.warnings.push(format!("{why}: skipped"));
                return Ok(());
            }
        };
        let parts: Vec<&str> = path.split('/').collect();
        let Some(name) = parts.last().filter(|n| Node::safe_name(n.as_bytes())) else {
            self.warnings
                .push(format!("{}: skipped: not a safe name", entry.path));
            return Ok(());
        };
        let name = name.as_bytes();
        let implied = self.node(b"", NodeKind::Dir, self.taken_at, 0o755);
        let mut node = if entry.dir {
            self.node(
                name,
                NodeKind::Dir,
                entry.mtime,
                entry.mode.unwrap_or(0o755),
            )
        } else {
            self.node(
                name,
                NodeKind::File,
                entry.mtime,
                entry.mode.unwrap_or(0o644),
            )
        };
        if !entry.dir {
            if self.buffer.is_empty() {
                self.buffer = vec![0u8; CHUNK_MAX + READ_SIZE];
            }
            match chunk_stream(self.shared, content, &mut self.buffer, &mut self.sealed) {
                Ok((chunks, size)) => {
                    node.content = chunks;
                    node.size = size;
                }
                Err(StreamFail::Read(e)) => {
                    return Err(TreeSourceError::Io(format!(
                        "{}: cannot be read from the archive: {e}",
                        entry.path
                    )));
                }
                Err(StreamFail::Store(e)) => {
                    self.fatal = Some(e);
                    return Err(TreeSourceError::Io("storing failed".into()));
                }
            }
        }
        let dir = match Self::parent_of(&mut self.root, &parts, &implied, &path) {
            Ok(dir) => dir,
            Err(warning) => {
                self.warnings.push(warning);
                return Ok(());
            }
        };
        match dir.children.get_mut(name) {
            // Listed after a file inside it made it: the listing's times are the truth.
            Some(Pending::Dir(existing)) if entry.dir => {
                existing.node.mtime_ns = node.mtime_ns;
                existing.node.ctime_ns = node.ctime_ns;
                existing.node.mode = node.mode;
            }
            Some(_) => self.warnings.push(format!(
                "{}: skipped: the archive holds this name twice; the first is kept",
                entry.path
            )),
            None => {
                if entry.dir {
                    dir.children.insert(
                        name.to_vec(),
                        Pending::Dir(PendingDir {
                            node,
                            children: BTreeMap::new(),
                        }),
                    );
                } else {
                    self.files += 1;
                    self.bytes += node.size;
                    self.shared.progress.add(1, 0);
                    dir.children.insert(name.to_vec(), Pending::Leaf(node));
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Outcome, EngineError> {
        let root = std::mem::replace(
            &mut self.root,
            PendingDir {
                node: Node::new(Vec::new(), NodeKind::Dir),
                children: BTreeMap::new(),
            },
        );
        let mut dirs = 0;
        let id = self.seal(root.children, &mut dirs)?;
        Ok(Outcome {
            root: id,
            files: self.files,
            dirs: dirs + 1,
            bytes: self.bytes,
            warnings: self.warnings,
        })
    }

    /// Seals a directory's entries (subdirectories first), returning its tree's id.
    fn seal(
        &mut self,
        children: BTreeMap<Vec<u8>, Pending>,
        dirs: &mut u64,
    ) -> Result<ChunkId, EngineError> {
        let mut nodes = Vec::with_capacity(children.len());
        for (_, child) in children {
            match child {
                Pending::Leaf(node) => nodes.push(node),
                Pending::Dir(PendingDir { mut node, children }) => {
                    *dirs += 1;
                    node.subtree = Some(self.seal(children, dirs)?);
                    nodes.push(node);
                }
            }
        }
        let encoded = tree::encode(&nodes);
        let id = timed(
            &self.shared.progress,
            coffer_domain::engine::Phase::Hash,
            || self.shared.repo.keys.chunk_id(&encoded),
        );
        self.shared
            .store_blob(BlobKind::Tree, id, &encoded, &mut self.sealed)?;
        Ok(id)
    }
}
