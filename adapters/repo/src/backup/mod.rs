//! Backup: walk the source, chunk, dedup, seal, pack, store; then commit the index and
//! the snapshot.
//!
//! Threads: the walker (this function's blocking task) reads directories in name order
//! and sends a directory's other entries, in batches, to a pool of workers; a worker
//! looks at each entry (an unchanged file ends there), reads a changed one through
//! FastCDC, ids each chunk, and seals and packs the new ones. Sealing happens outside
//! any lock; appending to the current pack is a memcpy under one. A worker that fills a
//! pack finishes and stores it. The walker descends into subdirectories before it waits
//! for a directory's entries, and starts up to [`SIBLINGS_AHEAD`] sibling directories
//! before it waits for the first, so workers stay busy across small directories (an
//! unchanged backup is mostly such waits otherwise). A few helper walkers take whole
//! subdirectories from any walker that meets one while a helper is idle ([`Helpers`]);
//! each subtree's tree id lands in its parent's place, so the trees are those of one
//! walker going in name order. The job queue is bounded, and each
//! worker holds at most one chunk (≤ 4 MiB), and packs in memory are the one being
//! filled and one per uploader ([`PACKS_BUFFERED`]), so memory stays bounded whatever
//! the files.
//!
//! Progress: with a parent snapshot, its file count and size are the first estimate of
//! the totals. A backup still running after [`SCAN_DELAY`] starts a scanner thread that
//! walks the source beside it, metadata only, with the walker's rules (no symlink
//! followed, only regular files counted, unreadable entries passed over), and fills the
//! totals as it goes (never below the estimate); it marks them final when its walk is
//! complete, and stops when the backup is cancelled or ends. A shorter backup is not
//! walked twice: on two cores the scan was a fifth of an unchanged backup's CPU time.
//! Done counts grow per chunk read and per unchanged file (its whole size at once). When
//! the backup succeeds the totals become what the snapshot holds, so done and total agree
//! at the end.

mod import;
mod source;

pub use import::import;

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use coffer_domain::engine::{
    BackupRequest, Cancel, Phase, Progress, SnapshotSummary, StorageBudget,
};
use coffer_domain::excludes::{Entry, Excludes};
use coffer_domain::joblog::LogLevel;
use coffer_domain::storage::ObjectKey;
use coffer_domain::units::human_bytes;
use fastcdc::v2020::Normalization;
use rustix::fs::{FileType, Mode, OFlags};

use crate::crypto::{ChunkId, seal_blob_into};
use crate::error::EngineError;
use crate::index::{Index, seal_index};
use crate::lock::RepoLock;
use crate::pack::{BlobEntry, BlobKind, PackWriter, pack_key};
use crate::snapshot::{self, SnapshotDoc};
use crate::tree::{self, Node, NodeKind};
use crate::{Repository, crypto, key, timed};

pub const CHUNK_MIN: usize = 512 * 1024;
pub const CHUNK_AVG: usize = 1024 * 1024;
pub const CHUNK_MAX: usize = 4 * 1024 * 1024;
/// Packs are stored once they reach this size.
pub(crate) const PACK_TARGET: usize = 4 * 1024 * 1024;
/// How far past [`PACK_TARGET`] a blob may take a pack; a blob that would take it
/// further starts the next pack. So the pages a pack buffer uses stay near the target
/// plus this slack (or one largest chunk), not the target plus [`CHUNK_MAX`]: with packs
/// of up to 8 MiB, each reused buffer kept up to 8 MiB resident.
pub(crate) const PACK_SLACK: usize = 512 * 1024;
/// Data packs in memory at once beyond those being stored: the one being filled. Each
/// uploader (the store's [`parallelism`](ObjectStore::parallelism)) holds one more:
/// three on a disk, nine (about 4.5 MiB each, see [`PACK_SLACK`]) on an object store
/// with eight requests in flight. A full pack waits for a free uploader: a second
/// buffered pack was one more buffer of peak RSS (with the slack, a full backup of the
/// `/usr/share` copy peaked at 92 MiB instead of 106).
const PACKS_BUFFERED: usize = 1;

/// Runs one backup and commits its snapshot.
///
/// # Errors
/// `Invalid` when the source is not a readable directory, `Cancelled`, storage failures.
pub async fn run(
    repo: Arc<Repository>,
    request: BackupRequest,
    progress: Arc<Progress>,
    cancel: Cancel,
) -> Result<SnapshotSummary, EngineError> {
    check_encryption(&repo)?;
    let meta =
        std::fs::metadata(&request.path).map_err(|e| unreadable_source(&request.path, &e))?;
    if !meta.is_dir() {
        return Err(EngineError::Invalid(format!(
            "{} is not a directory",
            request.path.display()
        )));
    }
    ensure_initialized(&repo).await?;
    let started = std::time::Instant::now();
    // Held until the snapshot is committed: no prune can delete what this backup reuses.
    let lock = RepoLock::shared(repo.store.clone(), repo.lock_timings, "backup", &cancel).await?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        "backup: repository lock taken"
    );
    let stored = Arc::new(Mutex::new(Stored::default()));
    let result = store_and_commit(&repo, &request, progress, cancel, &lock, &stored).await;
    finish(&repo, &stored, lock, result).await
}

/// Ends a backup or an import: removes what a failed one stored, releases the lock and
/// reloads the index.
async fn finish(
    repo: &Repository,
    stored: &Mutex<Stored>,
    lock: RepoLock,
    result: Result<SnapshotSummary, EngineError>,
) -> Result<SnapshotSummary, EngineError> {
    if result.is_err() {
        remove_uncommitted(repo, stored).await;
    }
    lock.release().await;
    let summary = result?;
    if let Err(e) = repo.reload_index().await {
        tracing::warn!(error = %e, "could not reload the index after a backup");
    }
    Ok(summary)
}

/// A backup into a repository whose encryption differs from the configuration's is
/// refused.
fn check_encryption(repo: &Repository) -> Result<(), EngineError> {
    if repo.wanted_encrypt != repo.encrypt {
        return Err(EngineError::Invalid(if repo.encrypt {
            "this repository encrypts everything, and backup.encryption_enabled is false: \
             set it to true (an encrypted repository takes no unencrypted backups)"
                .into()
        } else {
            "this repository was created without encryption, and backup.encryption_enabled is \
             true: back up into a new repository to have encrypted backups, or set it to false"
                .into()
        }));
    }
    Ok(())
}

/// Refuses to write into a repository that is not there.
async fn ensure_initialized(repo: &Repository) -> Result<(), EngineError> {
    // Before anything is written (the lock too): a NAS share that is not mounted leaves
    // an empty directory where the repository was, and writing there would start a
    // second, local repository that the share hides again once mounted.
    if !crate::is_initialized(repo.store.as_ref()).await? {
        return Err(EngineError::Storage(
            coffer_domain::storage::StorageError::Unavailable(format!(
                "the repository at {} is missing (its keys object is gone): is the NAS \
                 share mounted, or the bucket the right one? Nothing was written; make the \
                 repository reachable again, then back up",
                repo.store.location()
            )),
        ));
    }
    Ok(())
}

/// What a backup has put so far.
#[derive(Default)]
struct Stored {
    /// Packs stored.
    packs: Vec<ObjectKey>,
    /// An index naming them was (or may have been) stored: from then on other backups
    /// may reuse the packs, and only a prune may remove them.
    index_attempted: bool,
}

/// Removes the packs of a failed backup while nothing can name them yet: no index was
/// written, so no other backup can have chosen to reuse them. Once an index put was
/// attempted (it may have landed even if it reported an error) nothing is removed: the
/// next prune collects what no snapshot uses. A failed delete stops the clean-up, leaving
/// the rest to prune too.
async fn remove_uncommitted(repo: &Repository, stored: &Mutex<Stored>) {
    let (packs, indexed) = {
        let mut s = stored.lock().expect("stored");
        (std::mem::take(&mut s.packs), s.index_attempted)
    };
    if indexed {
        tracing::info!(
            packs = packs.len(),
            "a failed backup's data stays for the next prune (its index may be visible)"
        );
        return;
    }
    for k in &packs {
        if let Err(e) = repo.store.delete(k).await {
            tracing::warn!(object = %k, error = %e, "could not remove a pack of a failed backup; the next prune will");
            return;
        }
    }
}

/// Stores the source's new data and commits the snapshot. Every pack put is recorded in
/// `stored` (for clean-up should this fail); the snapshot object, put last, is not: once
/// it is stored the backup has succeeded.
async fn store_and_commit(
    repo: &Arc<Repository>,
    request: &BackupRequest,
    progress: Arc<Progress>,
    cancel: Cancel,
    lock: &RepoLock,
    stored: &Arc<Mutex<Stored>>,
) -> Result<SnapshotSummary, EngineError> {
    let excludes = request
        .filter
        .compile()
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    let index = repo.reload_index().await?;
    let parent_root = match &request.parent {
        Some(id) => match repo
            .load_snapshot(id)
            .await
            .and_then(|d| Ok((d.root()?, d.files, d.bytes)))
        {
            Ok((root, files, bytes)) => {
                // The first estimate of the totals (not final: see the scanner).
                progress.files_total.store(files, Ordering::Relaxed);
                progress.bytes_total.store(bytes, Ordering::Relaxed);
                Some(root)
            }
            Err(e) => {
                tracing::warn!(parent = %id, error = %e, "parent snapshot unusable; reading every file");
                progress.log.push(
                    LogLevel::Warning,
                    false,
                    format!("the parent snapshot {id} is unusable ({e}); reading every file"),
                );
                None
            }
        },
        None => None,
    };
    progress.log.info(match (&request.parent, &parent_root) {
        (Some(parent), Some(_)) => format!(
            "reading {}: files unchanged since snapshot {} are not read again",
            request.path.display(),
            parent.get(..12).unwrap_or(parent)
        ),
        _ => format!("reading {}: every file", request.path.display()),
    });
    let started_at = Utc::now();
    let mut shared = Shared::new(
        repo.clone(),
        index,
        progress,
        cancel,
        request.budget.clone(),
        stored.clone(),
    );
    shared.never_read = request
        .never_read
        .iter()
        .filter_map(|p| rustix::fs::stat(p).ok())
        .map(|st| (st.st_dev, st.st_ino))
        .collect();
    shared.excludes = excludes;
    shared.root_dev = root_dev(&request.path)?;
    let shared = Arc::new(shared);
    let walk_shared = shared.clone();
    let path = request.path.clone();
    let WalkOutcome { root, counts } =
        tokio::task::spawn_blocking(move || walk(&walk_shared, &path, parent_root))
            .await
            .map_err(|e| EngineError::Other(format!("backup task failed: {e}")))??;
    // The scanner's count, if it finished, differs only if the tree changed meanwhile
    // or held unreadable files; what was backed up is the truth from here on.
    shared.progress.set_totals(counts.files, counts.bytes);
    tracing::debug!("backup: every file read, every pack stored");
    shared.progress.log.info(format!(
        "read {} ({} unchanged, not read again) and {}, {}; {} excluded; {} new; every \
         pack stored; writing the snapshot",
        counted(counts.files, "file", "files"),
        counts.unchanged,
        counted(counts.dirs, "directory", "directories"),
        human_bytes(counts.bytes),
        counts.excluded,
        human_bytes(shared.bytes_added.load(Ordering::Relaxed)),
    ));

    let warnings = counts.warnings;
    let doc = SnapshotDoc {
        version: 1,
        source: request.source_name.clone(),
        path: request.path.display().to_string(),
        hostname: hostname(),
        started_at,
        finished_at: Utc::now(),
        tree: hex::encode(root),
        parent: request.parent.clone(),
        status: if warnings.is_empty() { "ok" } else { "partial" }.to_owned(),
        encrypted: repo.encrypt,
        files: counts.files,
        dirs: counts.dirs,
        bytes: counts.bytes,
        bytes_added: shared.bytes_added.load(Ordering::Relaxed),
        stored_bytes_added: 0,
        unchanged_files: counts.unchanged,
        excluded: counts.excluded,
        suspicious: request.expected.as_ref().and_then(|expected| {
            coffer_domain::retention::suspicion(expected, counts.files, counts.bytes)
        }),
        warnings,
    };
    commit(repo, &shared, lock, stored, doc).await
}

/// Commits what a backup or an import stored: packs are stored; now the index that
/// points into them, then the snapshot `doc` describes.
async fn commit(
    repo: &Repository,
    shared: &Shared,
    lock: &RepoLock,
    stored: &Mutex<Stored>,
    mut doc: SnapshotDoc,
) -> Result<SnapshotSummary, EngineError> {
    let written = std::mem::take(&mut *shared.written.lock().expect("written"));
    if !written.is_empty() {
        let sealed = seal_index(&repo.keys, repo.encrypt, &written)?;
        shared.charge(sealed.len() as u64)?;
        let name = hex::encode(crypto::random::<32>()?);
        let k = key(&format!("index/{name}"))?;
        lock.ensure_held()?;
        stored.lock().expect("stored").index_attempted = true;
        repo.store.put(&k, Bytes::from(sealed)).await?;
        tracing::debug!("backup: index stored");
    }
    // Packs and index; the snapshot object itself (a few hundred bytes) is not counted:
    // its size depends on this very number.
    doc.stored_bytes_added = shared.stored_bytes.load(Ordering::Relaxed);
    let sealed = snapshot::seal(&repo.keys, repo.encrypt, &doc)?;
    let id = hex::encode(crypto::sha256(&sealed));
    if shared.cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    lock.ensure_held()?;
    repo.store
        .put(&key(&format!("snapshots/{id}"))?, Bytes::from(sealed))
        .await?;
    Ok(doc.summary(id))
}

/// The device the source directory lies on.
fn root_dev(path: &Path) -> Result<u64, EngineError> {
    rustix::fs::stat(path)
        .map(|st| st.st_dev)
        .map_err(|e| unreadable_source(path, &e.into()))
}

/// `1 file`, `2 files`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A source directory that is gone or unreadable: the operator's to fix, not an internal
/// error, so the job, the alert and the audit trail say which directory and why.
fn unreadable_source(path: &Path, e: &std::io::Error) -> EngineError {
    EngineError::Invalid(format!(
        "cannot read the source directory {}: {e} (was it moved, deleted or unmounted?)",
        path.display()
    ))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

struct Shared {
    repo: Arc<Repository>,
    index: Arc<Index>,
    /// Chunks stored (or being stored) by this backup.
    seen: Mutex<HashSet<ChunkId>>,
    data_pack: Mutex<Option<PackWriter>>,
    tree_pack: Mutex<Option<PackWriter>>,
    written: Mutex<Vec<([u8; 32], Vec<BlobEntry>)>>,
    handle: tokio::runtime::Handle,
    progress: Arc<Progress>,
    cancel: Cancel,
    bytes_added: AtomicU64,
    stored_bytes: AtomicU64,
    /// The uploader thread's queue while a walk runs.
    uploads: Mutex<Option<SyncSender<PackWriter>>>,
    /// The first storage failure of the uploader (it also cancels the backup).
    upload_error: Mutex<Option<EngineError>>,
    /// What this backup may store.
    budget: Option<Arc<dyn StorageBudget>>,
    /// Every object this backup stored, for clean-up if it fails.
    stored_keys: Arc<Mutex<Stored>>,
    /// Whether the backup runs as root: only then are symlinks' attributes read (only
    /// root can set them again).
    as_root: bool,
    /// Buffers of stored packs for the next packs, and how many data pack buffers exist.
    pack_buffers: Mutex<(Vec<Vec<u8>>, usize)>,
    pack_returned: std::sync::Condvar,
    /// Device and inode of every file and directory never to read (see
    /// `BackupRequest::never_read`).
    never_read: HashSet<(u64, u64)>,
    /// What the source leaves out (`BackupRequest::filter`).
    excludes: Excludes,
    /// The device of the source directory, for `one_file_system`.
    root_dev: u64,
}

impl Shared {
    /// A backup's shared state with nothing stored yet, nothing left out and nothing
    /// never to read.
    fn new(
        repo: Arc<Repository>,
        index: Arc<Index>,
        progress: Arc<Progress>,
        cancel: Cancel,
        budget: Option<Arc<dyn StorageBudget>>,
        stored_keys: Arc<Mutex<Stored>>,
    ) -> Self {
        Self {
            repo,
            index,
            seen: Mutex::new(HashSet::new()),
            data_pack: Mutex::new(None),
            tree_pack: Mutex::new(None),
            written: Mutex::new(Vec::new()),
            handle: tokio::runtime::Handle::current(),
            progress,
            cancel,
            bytes_added: AtomicU64::new(0),
            stored_bytes: AtomicU64::new(0),
            uploads: Mutex::new(None),
            upload_error: Mutex::new(None),
            budget,
            stored_keys,
            as_root: rustix::process::geteuid().is_root(),
            pack_buffers: Mutex::new((Vec::new(), 0)),
            pack_returned: std::sync::Condvar::new(),
            never_read: HashSet::new(),
            excludes: Excludes::none(),
            root_dev: 0,
        }
    }

    /// Whether the entry `st` describes is one of those never to read.
    fn never_read(&self, st: &rustix::fs::Stat) -> bool {
        !self.never_read.is_empty() && self.never_read.contains(&(st.st_dev, st.st_ino))
    }
}

/// The message for an entry never read.
fn never_read_message(display: &str) -> String {
    format!(
        "{display}: not read: it is one of Coffer's own files or directories (keys, catalog, configuration, repository)"
    )
}

impl Shared {
    /// Counts `bytes` against the budget before they are stored.
    fn charge(&self, bytes: u64) -> Result<(), EngineError> {
        if let Some(budget) = &self.budget
            && !budget.try_take(bytes)
        {
            return Err(EngineError::QuotaExceeded(format!(
                "this backup would pass the storage quota after storing {}; it stopped and \
                 removed what it had stored (free space with retention and prune, or raise \
                 quota.max_storage_mb)",
                human_bytes(self.stored_bytes.load(Ordering::Relaxed))
            )));
        }
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn check_cancel(&self) -> Result<(), EngineError> {
        if self.cancel.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Stores a blob unless the repository or this backup has it already.
    fn store_blob(
        &self,
        kind: BlobKind,
        id: ChunkId,
        plain: &[u8],
        sealed: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        if self.index.contains(&id) || !self.seen.lock().expect("seen").insert(id) {
            return Ok(());
        }
        if kind == BlobKind::Data {
            self.bytes_added
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
        }
        let slot = match kind {
            BlobKind::Data => &self.data_pack,
            BlobKind::Tree => &self.tree_pack,
        };
        // Sealed outside the pack's lock, appended (a copy) under it.
        seal_blob_into(
            &self.repo.keys,
            self.repo.encrypt,
            &id,
            plain,
            Some(&self.progress.phases),
            sealed,
        )?;
        // A pack this blob would take too far past its target is stored as it is, and the
        // blob starts the next. The check and the append are one hold of the pack's lock
        // (between two, another worker's blob could land in the pack and take it past the
        // bound); a worker never waits for a buffer holding the lock or a pack (with every
        // buffer held by such waiters, nothing would free one).
        let mut spare = None;
        let full = loop {
            let mut guard = slot.lock().expect("pack");
            let early = guard
                .take_if(|p| !p.is_empty() && p.len() + sealed.len() > PACK_TARGET + PACK_SLACK);
            if let Some(pack) = early {
                drop(guard);
                self.store_pack(pack)?;
                continue;
            }
            if guard.is_none() {
                let buffer = match (spare.take(), kind) {
                    (Some(buffer), _) => buffer,
                    (None, BlobKind::Data) => {
                        // Waiting for a buffer must not hold the pack: other workers go on
                        // sealing meanwhile, and one may start a pack first.
                        drop(guard);
                        spare = Some(self.pack_buffer());
                        continue;
                    }
                    // Trees are small: a pack of them needs no data pack's buffer.
                    (None, BlobKind::Tree) => Vec::new(),
                };
                *guard = Some(PackWriter::with_buffer(crypto::random()?, buffer));
            }
            let pack = guard.as_mut().expect("set above");
            pack.add_sealed(id, kind, plain.len(), sealed)?;
            break if pack.len() >= PACK_TARGET {
                guard.take()
            } else {
                None
            };
        };
        // Another worker started the pack while this one waited for a buffer.
        if let Some(buffer) = spare {
            self.return_pack_buffer(buffer);
        }
        if let Some(pack) = full {
            self.store_pack(pack)?;
        }
        Ok(())
    }

    /// Hands a full pack to the uploader threads (waiting while one is already queued, so
    /// at most three packs are in flight), so workers do not wait on storage latency.
    fn store_pack(&self, pack: PackWriter) -> Result<(), EngineError> {
        // The uploader failed: stop. Its error stays where `walk` reports it from, so
        // that the backup ends with the cause (a quota stop, a storage failure), not with
        // the cancel that the failure triggered.
        if self.upload_error.lock().expect("upload error").is_some() {
            return Err(EngineError::Cancelled);
        }
        let sender = self.uploads.lock().expect("uploads").clone();
        match sender {
            Some(tx) => tx
                .send(pack)
                .map_err(|_| EngineError::Other("the pack uploader stopped".into())),
            None => self.upload(pack),
        }
    }

    /// A buffer for a new data pack: one a stored pack left, or a new one while fewer
    /// than [`PACKS_BUFFERED`] plus one per uploader exist (else it waits for an upload to end, which bounds
    /// memory however slow the storage).
    fn pack_buffer(&self) -> Vec<u8> {
        let mut pool = self.pack_buffers.lock().expect("pack buffers");
        loop {
            if let Some(buffer) = pool.0.pop() {
                return buffer;
            }
            if pool.1 < PACKS_BUFFERED + self.repo.store.parallelism().max(1)
                || self.upload_error.lock().expect("upload error").is_some()
            {
                pool.1 += 1;
                return Vec::with_capacity(PACK_TARGET + CHUNK_MAX + 64 * 1024);
            }
            let (next, _) = self
                .pack_returned
                .wait_timeout(pool, std::time::Duration::from_millis(100))
                .expect("pack buffers");
            pool = next;
        }
    }

    fn return_pack_buffer(&self, mut buffer: Vec<u8>) {
        buffer.clear();
        self.pack_buffers
            .lock()
            .expect("pack buffers")
            .0
            .push(buffer);
        self.pack_returned.notify_one();
    }

    /// Seals a pack's header and stores it.
    fn upload(&self, pack: PackWriter) -> Result<(), EngineError> {
        let id = pack.id;
        let (bytes, entries) = pack.finish(&self.repo.keys, self.repo.encrypt)?;
        self.charge(bytes.len() as u64)?;
        let k = key(&pack_key(&id))?;
        let bytes = Bytes::from(bytes);
        timed(&self.progress, Phase::Write, || {
            self.handle.block_on(self.repo.store.put(&k, bytes.clone()))
        })?;
        // The store let go of the bytes: their buffer serves the next pack, so packs do
        // not cost fresh memory (and the page faults that come with it) one after another.
        if let Ok(buffer) = bytes.try_into_mut() {
            self.return_pack_buffer(Vec::from(buffer));
        } else {
            // Still held elsewhere: its place goes to a new one.
            let mut pool = self.pack_buffers.lock().expect("pack buffers");
            pool.1 = pool.1.saturating_sub(1);
            drop(pool);
            self.pack_returned.notify_one();
        }
        self.stored_keys.lock().expect("stored").packs.push(k);
        self.written.lock().expect("written").push((id, entries));
        Ok(())
    }

    fn flush(&self) -> Result<(), EngineError> {
        for slot in [&self.data_pack, &self.tree_pack] {
            let pack = slot.lock().expect("pack").take();
            if let Some(pack) = pack.filter(|p| !p.is_empty()) {
                self.store_pack(pack)?;
            }
        }
        Ok(())
    }
}

struct WalkOutcome {
    root: ChunkId,
    counts: WalkCounts,
}

/// What a worker reports for one entry that is not a directory.
enum EntryResult {
    /// The entry's node (files: with content), a warning about it, and whether it is a
    /// file not re-read because it was unchanged.
    Node(Box<Node>, Option<String>, bool),
    /// Not backed up (unreadable, replaced, a socket...): why.
    Skipped(String),
    /// Left out by the source's filter.
    Excluded,
    Fatal(EngineError),
}

/// An entry for a worker: everything but directories, which the walker opens itself.
struct EntryJob {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    /// The directory's path in the snapshot, for messages.
    dir_display: Arc<str>,
    /// The parent snapshot's entries of this directory, and the one of the same name.
    parent: Option<(Arc<Vec<Node>>, usize)>,
    /// Where the result goes: the directory's results, and this entry's place in them.
    results: Arc<DirResults>,
    slot: usize,
}

impl EntryJob {
    /// The entry's path in the snapshot, for messages.
    fn display(&self) -> String {
        Walker::child_display(&self.dir_display, &self.name)
    }

    fn parent(&self) -> Option<&Node> {
        self.parent.as_ref().map(|(nodes, i)| &nodes[*i])
    }
}

/// The results of one directory's entries, filled in by the workers as they finish.
struct DirResults {
    slots: Mutex<(Vec<Option<EntryResult>>, usize)>,
    done: std::sync::Condvar,
}

impl DirResults {
    fn new(entries: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(((0..entries).map(|_| None).collect(), 0)),
            done: std::sync::Condvar::new(),
        })
    }

    fn put(&self, slot: usize, result: EntryResult) {
        self.put_all(std::iter::once((slot, result)));
    }

    /// Puts the results of a batch of entries at once: one wake-up for the walker.
    fn put_all(&self, results: impl IntoIterator<Item = (usize, EntryResult)>) {
        let mut slots = self.slots.lock().expect("results");
        for (slot, result) in results {
            slots.0[slot] = Some(result);
            slots.1 += 1;
        }
        drop(slots);
        self.done.notify_one();
    }

    /// Waits until `expected` entries have reported, and takes their results.
    fn wait(&self, expected: usize) -> Vec<Option<EntryResult>> {
        let mut slots = self.slots.lock().expect("results");
        while slots.1 < expected {
            slots = self.done.wait(slots).expect("results");
        }
        std::mem::take(&mut slots.0)
    }
}

/// Worker threads: more than cores, because looking at and opening files waits for the
/// file system (one thread at a time on a NAS or a virtual disk would wait most of the
/// time), while chunking, hashing and compressing use the cores.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .saturating_mul(2)
        .clamp(4, 12)
}

/// Files of at least this size are read through a chunker's buffer, by one of the
/// [`large_readers`] (which bounds memory however many workers there are).
const LARGE_FILE: u64 = CHUNK_MIN as u64;

/// The most entries of one directory a worker takes at once.
const MAX_BATCH: usize = 32;

fn large_readers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

fn walk(
    shared: &Arc<Shared>,
    root: &Path,
    parent_root: Option<ChunkId>,
) -> Result<WalkOutcome, EngineError> {
    let workers = workers();
    let (jobs, queue) = sync_channel::<Vec<EntryJob>>(workers * 8);
    let queue = Arc::new(Mutex::new(queue));
    let (uploads, pending) = sync_channel::<PackWriter>(1);
    *shared.uploads.lock().expect("uploads") = Some(uploads);
    let stop_scan = AtomicBool::new(false);
    let (subtrees, subtree_queue) = std::sync::mpsc::channel::<Subtree>();
    let helper_count = helper_walkers();
    let helpers = Helpers {
        idle: AtomicUsize::new(helper_count),
        queue: Mutex::new(Some(subtrees)),
    };
    let subtree_queue = Mutex::new(subtree_queue);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            let started = std::time::Instant::now();
            while started.elapsed() < SCAN_DELAY {
                if stop_scan.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            scan(
                root,
                &shared.excludes,
                &shared.progress,
                &shared.cancel,
                &stop_scan,
            );
        });
        // However the walk ends, the scanner stops with it.
        let _stop_scan = SetOnDrop(&stop_scan);
        // Uploaders as the store wants requests in flight: on a disk two, so one pack's
        // fsync overlaps the next pack's write; on an object store more, to hide latency.
        let pending = Arc::new(Mutex::new(pending));
        for _ in 0..shared.repo.store.parallelism().max(1) {
            let uploader = shared.clone();
            let pending = pending.clone();
            scope.spawn(move || {
                loop {
                    let Ok(pack) = pending.lock().expect("pending").recv() else {
                        return;
                    };
                    if let Err(e) = uploader.upload(pack) {
                        uploader
                            .upload_error
                            .lock()
                            .expect("upload error")
                            .get_or_insert(e);
                        uploader.cancel.cancel();
                    }
                }
            });
        }
        // The readers of large files end when every worker (their only senders) has.
        let (large, large_queue) = std::sync::mpsc::channel::<Box<LargeJob>>();
        let large_queue = Arc::new(Mutex::new(large_queue));
        for _ in 0..large_readers() {
            let queue = large_queue.clone();
            let shared = shared.clone();
            scope.spawn(move || large_reader(&shared, &queue));
        }
        for _ in 0..workers {
            let queue = queue.clone();
            let shared = shared.clone();
            let large = large.clone();
            scope.spawn(move || worker(&shared, &queue, &large));
        }
        drop(large);
        for _ in 0..helper_count {
            let (helpers, subtree_queue, jobs) = (&helpers, &subtree_queue, jobs.clone());
            scope.spawn(move || helper_walker(shared, &jobs, workers, helpers, subtree_queue));
        }
        let mut walker = Walker::new(shared, jobs, workers, &helpers);
        let parent = parent_root.map(|id| walker.load_tree(&id));
        let root_id = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| unreadable_source(root, &e.into()))
        .and_then(|fd| walker.dir(fd, "", parent));
        let Walker { counts, jobs, .. } = walker;
        // The helpers end when their queue closes, then the workers when theirs does
        // (the helpers hold it too).
        helpers.queue.lock().expect("subtrees").take();
        drop(jobs);
        let flushed = shared.flush();
        // The uploader ends when its queue closes, after the last pack is stored.
        shared.uploads.lock().expect("uploads").take();
        flushed?;
        root_id.map(|root| WalkOutcome { root, counts })
    });
    if let Some(e) = shared.upload_error.lock().expect("upload error").take() {
        return Err(e);
    }
    result
}

/// How long a backup runs before its progress scanner starts (see the module's notes).
const SCAN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts the regular files under `root` and their bytes into `progress`'s totals, by the
/// walker's rules (the source's filter too), and marks them final once the whole tree is
/// counted. Returns early, leaving the totals not final, when `stop` is set or the backup
/// is cancelled. Entries it cannot read are passed over: the count is an estimate for
/// display, never a failure.
pub(crate) fn scan(
    root: &Path,
    excludes: &Excludes,
    progress: &Progress,
    cancel: &Cancel,
    stop: &AtomicBool,
) {
    let (mut files, mut bytes) = (0u64, 0u64);
    // An estimate already there (the parent snapshot's) stays until the count passes it.
    let floor = (
        progress.files_total.load(Ordering::Relaxed),
        progress.bytes_total.load(Ordering::Relaxed),
    );
    let Ok(root_fd) = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let root_dev = rustix::fs::fstat(&root_fd).map_or(0, |st| st.st_dev);
    // Below the handle of the directory that holds them, as the walker reads: no path is
    // resolved again from the root, and only what the rules need is looked at (the size
    // of a regular file; an entry's path, device and tag only when a rule asks).
    // Directories wait with their parent's handle, so at most one handle per level of
    // the tree is open.
    let mut stack: Vec<(Arc<OwnedFd>, Vec<u8>, String)> = Vec::new();
    let mut next = Some((Arc::new(root_fd), String::new()));
    let mut buffer = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
    loop {
        let (dir, path) = if let Some(opened) = next.take() {
            opened
        } else {
            let Some((parent, name, path)) = stack.pop() else {
                break;
            };
            let Ok((fd, _)) = source::open_dir(&parent, &name) else {
                continue;
            };
            (Arc::new(fd), path)
        };
        let mut entries = rustix::fs::RawDir::new(&*dir, &mut buffer);
        while let Some(Ok(entry)) = entries.next() {
            if stop.load(Ordering::Relaxed) || cancel.is_cancelled() {
                return;
            }
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let mut kind = entry.file_type();
            let mut st = None;
            if kind == FileType::Unknown || kind == FileType::RegularFile || !excludes.is_empty() {
                // A symlink is never followed.
                let Ok(looked) = source::stat(&dir, name) else {
                    continue;
                };
                kind = FileType::from_raw_mode(looked.st_mode);
                st = Some(looked);
            }
            let is_dir = kind == FileType::Directory;
            if !is_dir && kind != FileType::RegularFile {
                continue;
            }
            let size = st
                .as_ref()
                .map_or(0, |st| st.st_size.max(0).cast_unsigned());
            let mut child_path = String::new();
            if !excludes.is_empty() {
                child_path = Walker::child_display(&path, name);
                let facts = Entry {
                    path: &child_path,
                    is_dir,
                    file_size: (!is_dir).then_some(size),
                    dev: st.as_ref().map_or(root_dev, |st| st.st_dev),
                };
                let cache_tag =
                    || source::open_dir(&dir, name).is_ok_and(|(fd, _)| source::has_cache_tag(&fd));
                if excludes.decide(facts, root_dev, cache_tag).is_some() {
                    continue;
                }
            }
            if is_dir {
                stack.push((dir.clone(), name.to_vec(), child_path));
            } else {
                files += 1;
                bytes += size;
                progress
                    .files_total
                    .store(files.max(floor.0), Ordering::Relaxed);
                progress
                    .bytes_total
                    .store(bytes.max(floor.1), Ordering::Relaxed);
            }
        }
    }
    progress.set_totals(files, bytes);
}

fn worker(shared: &Shared, queue: &Mutex<Receiver<Vec<EntryJob>>>, large: &Sender<Box<LargeJob>>) {
    // Small files are read whole into this buffer and sealed into the other, both reused
    // from file to file.
    let mut small = (Vec::new(), Vec::new());
    let mut done = Vec::new();
    loop {
        let Ok(batch) = queue.lock().expect("queue").recv() else {
            return;
        };
        // One batch's entries share their directory's results.
        let Some(results) = batch.first().map(|job| job.results.clone()) else {
            continue;
        };
        for job in batch {
            if shared.cancel.is_cancelled() {
                done.push((job.slot, EntryResult::Fatal(EngineError::Cancelled)));
                continue;
            }
            match entry(shared, job, &mut small) {
                Looked::Done(job, result) => done.push((job.slot, result)),
                Looked::Large(large_job) => {
                    // Its readers take it (and report it); this worker goes on with the
                    // small files.
                    if let Err(e) = large.send(large_job) {
                        done.push((
                            e.0.job.slot,
                            EntryResult::Fatal(EngineError::Other(
                                "the readers of large files stopped".into(),
                            )),
                        ));
                    }
                }
            }
        }
        results.put_all(done.drain(..));
    }
}

/// A file of at least [`LARGE_FILE`] bytes, for the readers of large files.
struct LargeJob {
    job: EntryJob,
    st: rustix::fs::Stat,
    node: Node,
}

/// Reads large files through the chunker, one at a time, with buffers of its own: a few
/// of these threads bound the memory large files take, while the workers go on with the
/// small files (a worker never waits for a large file's turn).
fn large_reader(shared: &Shared, queue: &Mutex<Receiver<Box<LargeJob>>>) {
    let mut input = vec![0u8; CHUNK_MAX + READ_SIZE];
    let mut sealed = Vec::new();
    loop {
        let Ok(large) = queue.lock().expect("large queue").recv() else {
            return;
        };
        let LargeJob { job, st, node } = *large;
        let result = if shared.cancel.is_cancelled() {
            EntryResult::Fatal(EngineError::Cancelled)
        } else {
            read_entry(
                shared,
                &job,
                &st,
                node,
                Buffer::Large(&mut input),
                &mut sealed,
            )
        };
        job.results.put(job.slot, result);
    }
}

/// What looking at an entry gave: its result, or a large file for the large readers.
enum Looked {
    Done(EntryJob, EntryResult),
    Large(Box<LargeJob>),
}

/// Looks at one entry that is not a directory and backs it up; a regular file of at
/// least [`LARGE_FILE`] bytes that must be read is handed on instead.
fn entry(shared: &Shared, job: EntryJob, small: &mut (Vec<u8>, Vec<u8>)) -> Looked {
    let progress = &shared.progress;
    let st = match timed(progress, Phase::Walk, || source::stat(&job.dir, &job.name)) {
        Ok(st) => st,
        Err(e) => {
            let message = format!(
                "{}: cannot stat: {}",
                job.display(),
                std::io::Error::from(e)
            );
            return Looked::Done(job, EntryResult::Skipped(message));
        }
    };
    if shared.never_read(&st) {
        let message = never_read_message(&job.display());
        return Looked::Done(job, EntryResult::Skipped(message));
    }
    let kind = FileType::from_raw_mode(st.st_mode);
    if !shared.excludes.is_empty() {
        let path = job.display();
        let facts = Entry {
            path: &path,
            is_dir: kind == FileType::Directory,
            file_size: (kind == FileType::RegularFile).then_some(st.st_size.max(0).cast_unsigned()),
            dev: st.st_dev,
        };
        // A directory here was a file when listed; it is skipped below whatever its tag.
        if shared
            .excludes
            .decide(facts, shared.root_dev, || false)
            .is_some()
        {
            return Looked::Done(job, EntryResult::Excluded);
        }
    }
    let result = match kind {
        FileType::RegularFile => {
            let mut node = source::node(job.name.clone(), &st, NodeKind::File);
            if let Some(old) = job.parent().filter(|old| {
                old.kind == NodeKind::File
                    // A version 1 parent recorded no attributes to carry over.
                    && !old.is_version_1()
                    && old.size == node.size
                    && old.mtime_ns == node.mtime_ns
                    && old.ctime_ns == node.ctime_ns
                    && old.inode == node.inode
                    && old.content.iter().all(|c| shared.index.contains(c))
            }) {
                // Unchanged: its content and its attributes (a change of either moves
                // the change time) are the parent's.
                node.content.clone_from(&old.content);
                node.xattrs.clone_from(&old.xattrs);
                progress.add(1, node.size);
                EntryResult::Node(Box::new(node), None, true)
            } else if node.size >= LARGE_FILE {
                return Looked::Large(Box::new(LargeJob { job, st, node }));
            } else {
                let (data, sealed) = small;
                read_entry(shared, &job, &st, node, Buffer::Small(data), sealed)
            }
        }
        FileType::Symlink => symlink_entry(shared, &job, &st),
        FileType::Directory => EntryResult::Skipped(format!(
            "{}: replaced by a directory while being read; skipped",
            job.display()
        )),
        other => {
            let what = match other {
                FileType::Socket => "socket",
                FileType::Fifo => "FIFO",
                FileType::BlockDevice | FileType::CharacterDevice => "device",
                _ => "special file",
            };
            EntryResult::Skipped(format!("{}: skipped ({what})", job.display()))
        }
    };
    Looked::Done(job, result)
}

/// Opens and reads a regular file (checking it is the one `st` describes) into `node`.
fn read_entry(
    shared: &Shared,
    job: &EntryJob,
    st: &rustix::fs::Stat,
    mut node: Node,
    buffer: Buffer<'_>,
    sealed: &mut Vec<u8>,
) -> EntryResult {
    let progress = &shared.progress;
    let (file, opened) = match timed(progress, Phase::Open, || {
        source::open_file(&job.dir, &job.name, st)
    }) {
        Ok(f) => f,
        Err(source::OpenError::Replaced) => {
            return EntryResult::Skipped(format!(
                "{}: replaced while being read; skipped",
                job.display()
            ));
        }
        Err(source::OpenError::Os(e)) => {
            return EntryResult::Skipped(format!(
                "{}: cannot read: {}",
                job.display(),
                std::io::Error::from(e)
            ));
        }
    };
    // What is recorded comes from the inode opened, not the one looked at.
    let mut node = source::node(std::mem::take(&mut node.name), &opened, NodeKind::File);
    let st = &opened;
    match read_file(shared, &job.display(), file, node.size, buffer, sealed) {
        Read::Done {
            content,
            size,
            after,
            xattrs,
        } => {
            let mut warning = match after {
                Ok(after)
                    if source::changed(st, &after)
                        || after.st_size.max(0).cast_unsigned() != size =>
                {
                    Some(format!("{}: changed while being read", job.display()))
                }
                Ok(_) => None,
                Err(e) => Some(format!(
                    "{}: cannot re-check after reading: {}",
                    job.display(),
                    std::io::Error::from(e)
                )),
            };
            match xattrs {
                Ok(x) => node.xattrs = x,
                Err(e) => {
                    warning.get_or_insert(format!(
                        "{}: cannot read its extended attributes: {}",
                        job.display(),
                        std::io::Error::from(e)
                    ));
                }
            }
            node.content = content;
            node.size = size;
            progress.add(1, 0);
            EntryResult::Node(Box::new(node), warning, false)
        }
        Read::Unreadable(message) => EntryResult::Skipped(message),
        Read::Fatal(e) => EntryResult::Fatal(e),
    }
}

fn symlink_entry(shared: &Shared, job: &EntryJob, st: &rustix::fs::Stat) -> EntryResult {
    let progress = &shared.progress;
    let mut node = source::node(job.name.clone(), st, NodeKind::Symlink);
    match timed(progress, Phase::Walk, || {
        source::read_link(&job.dir, &job.name)
    }) {
        Ok(target) => node.link_target = target,
        Err(e) => {
            return EntryResult::Skipped(format!(
                "{}: cannot read link: {}",
                job.display(),
                std::io::Error::from(e)
            ));
        }
    }
    // Only `security.*` and `trusted.*` attributes can sit on a symlink, and only root
    // can set them again.
    let mut warning = None;
    if shared.as_root {
        match timed(progress, Phase::Metadata, || {
            source::link_xattrs(&job.dir, &job.name)
        }) {
            Ok(x) => node.xattrs = x,
            Err(e) => {
                warning = Some(format!(
                    "{}: cannot read its extended attributes: {}",
                    job.display(),
                    std::io::Error::from(e)
                ));
            }
        }
    }
    EntryResult::Node(Box::new(node), warning, false)
}

/// What reading a file gave.
enum Read {
    Done {
        content: Vec<ChunkId>,
        size: u64,
        /// Its metadata once read, to tell whether it changed meanwhile.
        after: Result<rustix::fs::Stat, rustix::io::Errno>,
        xattrs: Result<Vec<crate::tree::Xattr>, rustix::io::Errno>,
    },
    Unreadable(String),
    Fatal(EngineError),
}

/// How much a large file's reader asks for at once.
const READ_SIZE: usize = 256 * 1024;

/// Where a file's content is read into.
enum Buffer<'a> {
    /// A file smaller than [`LARGE_FILE`]: read whole (the vector grows as needed).
    Small(&'a mut Vec<u8>),
    /// A larger file, through the chunker: `CHUNK_MAX + READ_SIZE` bytes.
    Large(&'a mut [u8]),
}

/// Why a stream could not be chunked: its reader failed, or storing did.
enum StreamFail {
    Read(std::io::Error),
    Store(EngineError),
}

/// Reads `input` to its end through the chunker (in `buffer`: `CHUNK_MAX + READ_SIZE`
/// bytes), storing each new chunk; returns the content's chunks and its length.
fn chunk_stream(
    shared: &Shared,
    input: &mut dyn std::io::Read,
    buffer: &mut [u8],
    sealed: &mut Vec<u8>,
) -> Result<(Vec<ChunkId>, u64), StreamFail> {
    let progress = &shared.progress;
    let mut content = Vec::new();
    let mut size = 0u64;
    // Fill the buffer, cut every chunk FastCDC finds but the last (which may be cut
    // short by the buffer's end), move that remainder to the front and read on. The
    // cut points are those of streaming over the whole file: the remainder is
    // shorter than a chunk can be, and the buffer holds the longest chunk.
    let mut filled = 0;
    let mut eof = false;
    loop {
        while !eof && filled < buffer.len() {
            let end = (filled + READ_SIZE).min(buffer.len());
            match timed(progress, Phase::Read, || {
                input.read(&mut buffer[filled..end])
            }) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamFail::Read(e)),
            }
        }
        if filled == 0 {
            break;
        }
        let chunks = cut(shared, &buffer[..filled]);
        let keep = if eof {
            chunks.len()
        } else {
            chunks.len().saturating_sub(1).max(1)
        };
        let mut consumed = 0;
        for &(offset, length) in &chunks[..keep] {
            let id = store_chunk(shared, &buffer[offset..offset + length], sealed)
                .map_err(StreamFail::Store)?;
            content.push(id);
            size += length as u64;
            consumed = offset + length;
        }
        buffer.copy_within(consumed..filled, 0);
        filled -= consumed;
        if eof && filled == 0 {
            break;
        }
    }
    Ok((content, size))
}

/// FastCDC's cut points in `data`, with the repository's seed.
fn cut(shared: &Shared, data: &[u8]) -> Vec<(usize, usize)> {
    timed(&shared.progress, Phase::Chunk, || {
        fastcdc::v2020::FastCDC::with_level_and_seed(
            data,
            CHUNK_MIN,
            CHUNK_AVG,
            CHUNK_MAX,
            Normalization::Level1,
            shared.repo.keys.chunker_seed,
        )
        .map(|c| (c.offset, c.length))
        .collect()
    })
}

/// Ids and stores one chunk.
fn store_chunk(shared: &Shared, data: &[u8], sealed: &mut Vec<u8>) -> Result<ChunkId, EngineError> {
    shared.check_cancel()?;
    let progress = &shared.progress;
    let id = timed(progress, Phase::Hash, || shared.repo.keys.chunk_id(data));
    shared.store_blob(BlobKind::Data, id, data, sealed)?;
    progress.add(0, data.len() as u64);
    Ok(id)
}

/// Reads `file` to its end into `data`, whose capacity the caller reserved for the size
/// it expects and one byte more. Plain reads: `read_to_end` would first `statx` and
/// `lseek` the file to size its buffer, a round trip per file on a NAS for a size the
/// walker already has.
fn read_all(file: &std::fs::File, data: &mut Vec<u8>) -> std::io::Result<()> {
    loop {
        if data.len() == data.capacity() {
            // It grew while we read it.
            data.reserve(data.capacity().max(64 * 1024));
        }
        match rustix::io::read(file, rustix::buffer::spare_capacity(data)) {
            Ok(0) => return Ok(()),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads a file through the chunker, storing each new chunk.
fn read_file(
    shared: &Shared,
    display: &str,
    mut file: std::fs::File,
    expected: u64,
    buffer: Buffer<'_>,
    sealed: &mut Vec<u8>,
) -> Read {
    let progress = &shared.progress;
    let mut content = Vec::new();
    let mut size = 0u64;
    match buffer {
        Buffer::Small(data) => {
            // Smaller than the smallest chunk: one read, one chunk, no chunker.
            data.clear();
            data.reserve_exact(usize::try_from(expected).unwrap_or(0) + 1);
            if let Err(e) = timed(progress, Phase::Read, || read_all(&file, data)) {
                return Read::Unreadable(format!("{display}: read failed: {e}"));
            }
            let pieces = if data.len() < CHUNK_MIN {
                vec![(0, data.len())]
            } else {
                // It grew past a chunk while we read it: cut it like any large file.
                cut(shared, data)
            };
            for (offset, length) in pieces.into_iter().filter(|&(_, l)| l > 0) {
                match store_chunk(shared, &data[offset..offset + length], sealed) {
                    Ok(id) => content.push(id),
                    Err(e) => return Read::Fatal(e),
                }
                size += length as u64;
            }
            // A file that grew far past what small files need gives its memory back.
            if data.capacity() > 2 * CHUNK_MIN {
                *data = Vec::new();
            }
        }
        Buffer::Large(buffer) => match chunk_stream(shared, &mut file, buffer, sealed) {
            Ok((chunks, length)) => {
                content = chunks;
                size = length;
            }
            Err(StreamFail::Read(e)) => {
                return Read::Unreadable(format!("{display}: read failed: {e}"));
            }
            Err(StreamFail::Store(e)) => return Read::Fatal(e),
        },
    }
    let after = rustix::fs::fstat(&file);
    let xattrs = timed(progress, Phase::Metadata, || source::xattrs(&file));
    Read::Done {
        content,
        size,
        after,
        xattrs,
    }
}

struct Walker<'a> {
    shared: &'a Arc<Shared>,
    jobs: SyncSender<Vec<EntryJob>>,
    /// How many workers take the jobs.
    workers: usize,
    /// The other walkers, for subdirectories.
    helpers: &'a Helpers,
    /// Where this walker seals trees.
    sealed: Vec<u8>,
    counts: WalkCounts,
}

/// What a walker counted in what it walked.
#[derive(Default)]
struct WalkCounts {
    files: u64,
    dirs: u64,
    bytes: u64,
    unchanged: u64,
    excluded: u64,
    warnings: Vec<String>,
}

impl WalkCounts {
    /// Adds what another walker counted (in a subtree of this one's).
    fn add(&mut self, other: Self) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.bytes += other.bytes;
        self.unchanged += other.unchanged;
        self.excluded += other.excluded;
        self.warnings.extend(other.warnings);
    }
}

/// Walkers besides the backup's own (see [`Helpers`]): listing and opening directories
/// waits on the file system like opening files does, and one walker could not keep the
/// workers busy on a tree of many small directories. An unchanged backup of a copy of
/// `/usr/lib` (62k files in 11.6k directories, two cores) took 496 ms with none, 387 ms
/// with two, 365 ms with three and 329 ms with six.
fn helper_walkers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .saturating_add(1)
        .clamp(2, 8)
}

/// The helper walkers: a walker hands a subdirectory to one of them when one is idle (it
/// takes the whole subtree, and may hand on parts of it in turn), and walks it itself
/// otherwise. A subtree is handed on only to a helper claimed for it, so every handed
/// subtree has a thread and a walker waiting for one never waits in vain.
struct Helpers {
    idle: AtomicUsize,
    /// Closed when the walk ends, which ends the helpers.
    queue: Mutex<Option<Sender<Subtree>>>,
}

impl Helpers {
    /// Claims an idle helper, when there is one, for a [`Helpers::hand`] to follow.
    fn claim(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Gives back a claim: the helper is idle again (or was never handed its subtree).
    fn release(&self) {
        self.idle.fetch_add(1, Ordering::AcqRel);
    }

    /// Hands `subtree` to the helper claimed for it.
    fn hand(&self, subtree: Subtree) -> Result<(), EngineError> {
        let queue = self.queue.lock().expect("subtrees");
        queue
            .as_ref()
            .and_then(|queue| queue.send(subtree).ok())
            .ok_or_else(|| {
                self.release();
                EngineError::Other("the walkers of the source stopped".into())
            })
    }
}

/// A subdirectory handed to a helper walker: its handle, path, tree in the parent
/// snapshot, and where the helper answers. A helper that stops without answering drops
/// the sender, which ends the handing walker's wait with an error.
struct Subtree {
    fd: OwnedFd,
    display: String,
    old: Option<ChunkId>,
    answer: Sender<Walked>,
}

/// A helper's walk of one subtree: its tree id and the walker's counts.
type Walked = Result<(ChunkId, WalkCounts), EngineError>;

/// A helper walker: walks the subtrees handed to it, one at a time, until the walk ends.
fn helper_walker(
    shared: &Arc<Shared>,
    jobs: &SyncSender<Vec<EntryJob>>,
    workers: usize,
    helpers: &Helpers,
    queue: &Mutex<Receiver<Subtree>>,
) {
    loop {
        let Ok(subtree) = queue.lock().expect("subtrees").recv() else {
            return;
        };
        let Subtree {
            fd,
            display,
            old,
            answer,
        } = subtree;
        let mut walker = Walker::new(shared, jobs.clone(), workers, helpers);
        let old = old.map(|id| walker.load_tree(&id));
        let outcome = walker
            .dir(fd, &display, old)
            .map(|id| (id, std::mem::take(&mut walker.counts)));
        drop(walker);
        // Idle again before it answers: the walker it answers may hand it the next.
        helpers.release();
        // The walker that handed it on stopped waiting only if it failed.
        let _ = answer.send(outcome);
    }
}

/// A directory the walker has started: its subdirectories are done, its other entries
/// are with the workers.
struct Begun {
    /// One place per entry, in name order; the subdirectories' filled in.
    nodes: Vec<Option<Node>>,
    /// Where the workers put the other entries.
    results: Arc<DirResults>,
    /// How many entries went to the workers.
    sent: usize,
}

/// How many subdirectories of one directory the walker starts before it waits for the
/// first of them (see [`Walker::begin`]).
const SIBLINGS_AHEAD: usize = 16;

/// A subdirectory being walked: by this walker, or by a helper.
enum Child {
    Begun(Begun),
    Handed(Receiver<Walked>),
}

/// An entry of the directory being built.
enum Pending {
    /// A subdirectory: its name and its tree in the parent snapshot.
    Dir(Vec<u8>, Option<ChunkId>),
    /// An entry a worker looks at.
    Entry,
}

impl<'a> Walker<'a> {
    fn new(
        shared: &'a Arc<Shared>,
        jobs: SyncSender<Vec<EntryJob>>,
        workers: usize,
        helpers: &'a Helpers,
    ) -> Self {
        Self {
            shared,
            jobs,
            workers,
            helpers,
            sealed: Vec::new(),
            counts: WalkCounts::default(),
        }
    }

    /// Hands the entries in `batch` to the workers (nothing when it is empty).
    fn send(&self, batch: &mut Vec<EntryJob>, batch_len: usize) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(batch, Vec::with_capacity(batch_len));
        self.jobs
            .send(full)
            .map_err(|_| EngineError::Other("backup workers stopped".into()))
    }

    fn load_tree(&mut self, id: &ChunkId) -> Vec<Node> {
        match self.shared.handle.block_on(self.shared.repo.tree(id)) {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a tree of the parent snapshot; re-reading its files");
                Vec::new()
            }
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.shared.progress.log.warn_contents(message.clone());
        self.counts.warnings.push(message);
    }

    fn child_display(display: &str, name: &[u8]) -> String {
        if display.is_empty() {
            String::from_utf8_lossy(name).into_owned()
        } else {
            format!("{display}/{}", String::from_utf8_lossy(name))
        }
    }

    /// Backs up one directory (open, below its parent's handle) and returns its tree id.
    fn dir(
        &mut self,
        fd: OwnedFd,
        display: &str,
        parent: Option<Vec<Node>>,
    ) -> Result<ChunkId, EngineError> {
        let begun = self.begin(fd, display, parent)?;
        self.finish(begun)
    }

    /// Starts a directory: lists it, hands its entries to the workers and backs up its
    /// subdirectories; what is left is to wait for its own entries ([`Walker::finish`]).
    /// The walker finishes a subdirectory only once it has started up to
    /// [`SIBLINGS_AHEAD`] of the ones after it: the workers look at the entries of those
    /// meanwhile, rather than wait while the walker lists and opens the next directory.
    fn begin(
        &mut self,
        fd: OwnedFd,
        display: &str,
        parent: Option<Vec<Node>>,
    ) -> Result<Begun, EngineError> {
        self.shared.check_cancel()?;
        self.counts.dirs += 1;
        let progress = &self.shared.progress;
        let listed = match timed(progress, Phase::Walk, || source::list(&fd)) {
            Ok(l) => l,
            Err(e) => {
                self.warn(format!(
                    "{}: cannot read directory: {}",
                    if display.is_empty() { "/" } else { display },
                    std::io::Error::from(e)
                ));
                Vec::new()
            }
        };
        let fd = Arc::new(fd);
        let parent_nodes = Arc::new(parent.unwrap_or_default());
        let find_parent = |name: &[u8]| {
            parent_nodes
                .binary_search_by(|n| n.name.as_slice().cmp(name))
                .ok()
        };
        let dir_display: Arc<str> = Arc::from(display);
        let results = DirResults::new(listed.len());
        let mut sent = 0;
        // Entries go to the workers in batches: one hand-over (and one wake-up) per
        // batch rather than per entry, and still at least two batches per worker in a
        // directory, so that the files of one directory are read side by side.
        let batch_len = (listed.len() / (2 * self.workers)).clamp(1, MAX_BATCH);
        let mut batch = Vec::with_capacity(batch_len);

        let mut pending = Vec::with_capacity(listed.len());
        for entry in listed {
            let mut kind = entry.kind;
            if kind == FileType::Unknown {
                // The listing does not say (some file systems): look.
                kind = match timed(progress, Phase::Walk, || source::stat(&fd, &entry.name)) {
                    Ok(st) => FileType::from_raw_mode(st.st_mode),
                    Err(_) => FileType::Unknown,
                };
            }
            if self.shared.excludes.has_patterns()
                && self.shared.excludes.by_pattern(
                    &Self::child_display(display, &entry.name),
                    kind == FileType::Directory,
                )
            {
                // Never opened: an excluded directory that cannot be read warns of nothing.
                self.counts.excluded += 1;
                continue;
            }
            if kind == FileType::Directory {
                let old = find_parent(&entry.name)
                    .map(|i| &parent_nodes[i])
                    .filter(|n| n.kind == NodeKind::Dir)
                    .and_then(|n| n.subtree);
                pending.push(Pending::Dir(entry.name, old));
                continue;
            }
            batch.push(EntryJob {
                dir: fd.clone(),
                parent: find_parent(&entry.name).map(|i| (parent_nodes.clone(), i)),
                name: entry.name,
                dir_display: dir_display.clone(),
                results: results.clone(),
                slot: pending.len(),
            });
            if batch.len() == batch_len {
                self.send(&mut batch, batch_len)?;
            }
            sent += 1;
            pending.push(Pending::Entry);
        }
        self.send(&mut batch, batch_len)?;

        // Subdirectories first, while this directory's other entries are being read.
        // One place per entry, so that a subdirectory passed over (unreadable, replaced,
        // excluded) leaves the entries after it in their places.
        let mut nodes: Vec<Option<Node>> = (0..pending.len()).map(|_| None).collect();
        let mut ahead: std::collections::VecDeque<(usize, Node, Child)> =
            std::collections::VecDeque::new();
        for (place, p) in pending.into_iter().enumerate() {
            match p {
                Pending::Dir(name, old) => {
                    let child_display = Self::child_display(display, &name);
                    let opened = timed(progress, Phase::Walk, || source::open_dir(&fd, &name));
                    let (child, st) = match opened {
                        Ok(opened) => opened,
                        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                            self.warn(format!(
                                "{child_display}: replaced while being read; skipped"
                            ));
                            continue;
                        }
                        Err(e) => {
                            self.warn(format!(
                                "{child_display}: cannot read directory: {}",
                                std::io::Error::from(e)
                            ));
                            continue;
                        }
                    };
                    if self.shared.never_read(&st) {
                        self.warn(never_read_message(&child_display));
                        continue;
                    }
                    let facts = Entry {
                        path: &child_display,
                        is_dir: true,
                        file_size: None,
                        dev: st.st_dev,
                    };
                    if self
                        .shared
                        .excludes
                        .decide(facts, self.shared.root_dev, || {
                            source::has_cache_tag(&child)
                        })
                        .is_some()
                    {
                        self.counts.excluded += 1;
                        continue;
                    }
                    let mut node = source::node(name, &st, NodeKind::Dir);
                    match timed(progress, Phase::Metadata, || source::xattrs(&child)) {
                        Ok(x) => node.xattrs = x,
                        Err(e) => self.warn(format!(
                            "{child_display}: cannot read its extended attributes: {}",
                            std::io::Error::from(e)
                        )),
                    }
                    let walking = if self.helpers.claim() {
                        let (answer, answered) = std::sync::mpsc::channel();
                        self.helpers.hand(Subtree {
                            fd: child,
                            display: child_display,
                            old,
                            answer,
                        })?;
                        Child::Handed(answered)
                    } else {
                        let old_nodes = old.map(|id| self.load_tree(&id));
                        Child::Begun(self.begin(child, &child_display, old_nodes)?)
                    };
                    ahead.push_back((place, node, walking));
                    if ahead.len() > SIBLINGS_AHEAD
                        && let Some((place, mut node, walking)) = ahead.pop_front()
                    {
                        node.subtree = Some(self.finish_child(walking)?);
                        nodes[place] = Some(node);
                    }
                }
                Pending::Entry => {}
            }
        }
        for (place, mut node, walking) in ahead {
            node.subtree = Some(self.finish_child(walking)?);
            nodes[place] = Some(node);
        }
        Ok(Begun {
            nodes,
            results,
            sent,
        })
    }

    /// Ends a subdirectory: this walker's own, or a helper's (whose counts and
    /// warnings become this walker's).
    fn finish_child(&mut self, child: Child) -> Result<ChunkId, EngineError> {
        match child {
            Child::Begun(begun) => self.finish(begun),
            Child::Handed(answered) => {
                let (id, counts) = answered
                    .recv()
                    .map_err(|_| EngineError::Other("a walker of the source stopped".into()))??;
                self.counts.add(counts);
                Ok(id)
            }
        }
    }

    /// Ends a directory [`Walker::begin`] started: waits for its entries, then stores its
    /// tree and returns its id.
    fn finish(&mut self, begun: Begun) -> Result<ChunkId, EngineError> {
        let Begun {
            mut nodes,
            results,
            sent,
        } = begun;
        for (slot, result) in results.wait(sent).into_iter().enumerate() {
            let Some(result) = result else {
                continue;
            };
            match result {
                EntryResult::Node(node, warning, unchanged) => {
                    if node.kind == NodeKind::File {
                        self.counts.files += 1;
                        self.counts.bytes += node.size;
                        self.counts.unchanged += u64::from(unchanged);
                    }
                    if let Some(w) = warning {
                        self.warn(w);
                    }
                    nodes[slot] = Some(*node);
                }
                EntryResult::Skipped(message) => self.warn(message),
                EntryResult::Excluded => self.counts.excluded += 1,
                EntryResult::Fatal(e) => return Err(e),
            }
        }
        let nodes: Vec<Node> = nodes.into_iter().flatten().collect();
        let encoded = tree::encode(&nodes);
        let id = self.shared.repo.keys.chunk_id(&encoded);
        self.shared
            .store_blob(BlobKind::Tree, id, &encoded, &mut self.sealed)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::read_all;

    /// Reads `content` back through `read_all` into a buffer that has room for
    /// `capacity` bytes, as the backup does with the size it saw.
    fn read_back(content: &[u8], capacity: usize) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut data = Vec::with_capacity(capacity);
        read_all(&file, &mut data).unwrap();
        data
    }

    #[test]
    fn a_file_of_the_size_seen_is_read_whole() {
        let content: Vec<u8> = (0..=250u8).cycle().take(5000).collect();
        // The backup reserves the size seen plus one, so that the end is one read.
        assert_eq!(read_back(&content, content.len() + 1), content);
        assert_eq!(read_back(&content, content.len()), content);
        assert!(read_back(b"", 1).is_empty());
        assert!(read_back(b"", 0).is_empty());
    }

    /// The file grew between the walk's `statx` and the read: everything that is there
    /// when it is read is read, past the capacity reserved for it, over several growths.
    #[test]
    fn a_file_that_grew_after_its_size_was_taken_is_read_to_its_new_end() {
        let content: Vec<u8> = (0..=252u8).cycle().take(300_000).collect();
        for capacity in [0, 1, 10, 4096, 65_536] {
            let data = read_back(&content, capacity);
            assert_eq!(data.len(), content.len(), "capacity {capacity}");
            assert!(data == content, "capacity {capacity}: content differs");
        }
    }
}
