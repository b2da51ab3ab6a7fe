//! Backup: walk the source, chunk, dedup, seal, pack, store; then commit the index and
//! the snapshot.
//!
//! Threads: the walker (this function's blocking task) reads directories in name order
//! and sends file jobs to a pool of workers (one per core); a worker reads its file
//! through FastCDC, ids each chunk, and seals and packs the new ones. Sealing happens
//! outside any lock; appending to the current pack is a memcpy under one. A worker that
//! fills a pack finishes and stores it. The walker descends into subdirectories before
//! it waits for a directory's files, so workers stay busy across small directories. The
//! job queue is bounded, and each worker holds at most one chunk (≤ 4 MiB) and the pack
//! buffers at most two packs, so memory stays bounded whatever the files.
//!
//! Progress: a scanner thread walks the source beside the backup, metadata only, with the
//! walker's rules (no symlink followed, only regular files counted, unreadable entries
//! passed over), and fills the totals as it goes; it marks them final when its walk is
//! complete, and stops when the backup is cancelled or ends. Done counts grow per chunk
//! read and per unchanged file (its whole size at once). When the backup succeeds the
//! totals become what the snapshot holds, so done and total agree at the end.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use coffer_domain::engine::{BackupRequest, Cancel, Progress, SnapshotSummary, StorageBudget};
use coffer_domain::storage::ObjectKey;
use fastcdc::v2020::Normalization;

use crate::crypto::{ChunkId, seal_blob};
use crate::error::EngineError;
use crate::index::{Index, seal_index};
use crate::lock::RepoLock;
use crate::pack::{BlobEntry, BlobKind, PackWriter, pack_key};
use crate::snapshot::{self, SnapshotDoc};
use crate::tree::{self, Node, NodeKind};
use crate::{Repository, crypto, key};

pub const CHUNK_MIN: usize = 512 * 1024;
pub const CHUNK_AVG: usize = 1024 * 1024;
pub const CHUNK_MAX: usize = 4 * 1024 * 1024;
/// Packs are stored once they reach this size.
const PACK_TARGET: usize = 8 * 1024 * 1024;

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
    let meta = std::fs::metadata(&request.path).map_err(EngineError::io(format!(
        "cannot read source {}",
        request.path.display()
    )))?;
    if !meta.is_dir() {
        return Err(EngineError::Invalid(format!(
            "{} is not a directory",
            request.path.display()
        )));
    }
    // Held until the snapshot is committed: no prune can delete what this backup reuses.
    let lock = RepoLock::shared(repo.store.clone(), repo.lock_timings, "backup", &cancel).await?;
    let stored = Arc::new(Mutex::new(Stored::default()));
    let result = store_and_commit(&repo, &request, progress, cancel, &lock, &stored).await;
    if result.is_err() {
        remove_uncommitted(&repo, &stored).await;
    }
    lock.release().await;
    let summary = result?;
    if let Err(e) = repo.reload_index().await {
        tracing::warn!(error = %e, "could not reload the index after a backup");
    }
    Ok(summary)
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
    let index = repo.reload_index().await?;
    let parent_root = match &request.parent {
        Some(id) => match repo.load_snapshot(id).await.and_then(|d| d.root()) {
            Ok(root) => Some(root),
            Err(e) => {
                tracing::warn!(parent = %id, error = %e, "parent snapshot unusable; reading every file");
                None
            }
        },
        None => None,
    };
    let started_at = Utc::now();
    let shared = Arc::new(Shared {
        repo: repo.clone(),
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
        budget: request.budget.clone(),
        stored_keys: stored.clone(),
    });
    let walk_shared = shared.clone();
    let path = request.path.clone();
    let outcome = tokio::task::spawn_blocking(move || walk(&walk_shared, &path, parent_root))
        .await
        .map_err(|e| EngineError::Other(format!("backup task failed: {e}")))??;
    // The scanner's count, if it finished, differs only if the tree changed meanwhile
    // or held unreadable files; what was backed up is the truth from here on.
    shared.progress.set_totals(outcome.files, outcome.bytes);

    // Commit: packs are stored; now the index that points into them, then the snapshot.
    let written = std::mem::take(&mut *shared.written.lock().expect("written"));
    if !written.is_empty() {
        let sealed = seal_index(&repo.keys, repo.encrypt, &written)?;
        shared.charge(sealed.len() as u64)?;
        let name = hex::encode(crypto::random::<32>()?);
        let k = key(&format!("index/{name}"))?;
        lock.ensure_held()?;
        stored.lock().expect("stored").index_attempted = true;
        repo.store.put(&k, Bytes::from(sealed)).await?;
    }
    let warnings = outcome.warnings;
    let doc = SnapshotDoc {
        version: 1,
        source: request.source_name.clone(),
        path: request.path.display().to_string(),
        hostname: hostname(),
        started_at,
        finished_at: Utc::now(),
        tree: hex::encode(outcome.root),
        parent: request.parent.clone(),
        status: if warnings.is_empty() { "ok" } else { "partial" }.to_owned(),
        encrypted: repo.encrypt,
        files: outcome.files,
        dirs: outcome.dirs,
        bytes: outcome.bytes,
        bytes_added: shared.bytes_added.load(Ordering::Relaxed),
        stored_bytes_added: 0,
        unchanged_files: outcome.unchanged,
        warnings,
    };
    // Packs and index; the snapshot object itself (a few hundred bytes) is not counted:
    // its size depends on this very number.
    let mut doc = doc;
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

/// Bytes for people: `1.5 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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
    fn store_blob(&self, kind: BlobKind, id: ChunkId, plain: &[u8]) -> Result<(), EngineError> {
        if self.index.contains(&id) || !self.seen.lock().expect("seen").insert(id) {
            return Ok(());
        }
        let sealed = seal_blob(&self.repo.keys, self.repo.encrypt, &id, plain)?;
        if kind == BlobKind::Data {
            self.bytes_added
                .fetch_add(plain.len() as u64, Ordering::Relaxed);
        }
        let slot = match kind {
            BlobKind::Data => &self.data_pack,
            BlobKind::Tree => &self.tree_pack,
        };
        let full = {
            let mut guard = slot.lock().expect("pack");
            let pack = match guard.as_mut() {
                Some(p) => p,
                None => guard.insert(PackWriter::new(crypto::random()?, PACK_TARGET + CHUNK_MAX)),
            };
            pack.add_sealed(id, kind, plain.len(), &sealed)?;
            if pack.len() >= PACK_TARGET {
                guard.take()
            } else {
                None
            }
        };
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

    /// Seals a pack's header and stores it.
    fn upload(&self, pack: PackWriter) -> Result<(), EngineError> {
        let id = pack.id;
        let (bytes, entries) = pack.finish(&self.repo.keys, self.repo.encrypt)?;
        self.charge(bytes.len() as u64)?;
        let k = key(&pack_key(&id))?;
        self.handle
            .block_on(self.repo.store.put(&k, Bytes::from(bytes)))?;
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
    files: u64,
    dirs: u64,
    bytes: u64,
    unchanged: u64,
    warnings: Vec<String>,
}

/// What a worker reports for one file.
enum FileResult {
    Done {
        content: Vec<ChunkId>,
        size: u64,
        warning: Option<String>,
    },
    Unreadable(String),
    Fatal(EngineError),
}

struct FileJob {
    path: PathBuf,
    display: String,
    meta: std::fs::Metadata,
    reply: SyncSender<FileResult>,
}

fn walk(
    shared: &Arc<Shared>,
    root: &Path,
    parent_root: Option<ChunkId>,
) -> Result<WalkOutcome, EngineError> {
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .max(2);
    let (jobs, queue) = sync_channel::<FileJob>(workers * 16);
    let queue = Arc::new(Mutex::new(queue));
    let (uploads, pending) = sync_channel::<PackWriter>(1);
    *shared.uploads.lock().expect("uploads") = Some(uploads);
    let stop_scan = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| scan(root, &shared.progress, &shared.cancel, &stop_scan));
        // However the walk ends, the scanner stops with it.
        let _stop_scan = SetOnDrop(&stop_scan);
        // Two uploaders, so one pack's fsync overlaps the next pack's write.
        let pending = Arc::new(Mutex::new(pending));
        for _ in 0..2 {
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
        for _ in 0..workers {
            let queue = queue.clone();
            let shared = shared.clone();
            scope.spawn(move || worker(&shared, &queue));
        }
        let mut walker = Walker {
            shared,
            jobs,
            files: 0,
            dirs: 0,
            bytes: 0,
            unchanged: 0,
            warnings: Vec::new(),
        };
        let parent = parent_root.map(|id| walker.load_tree(&id));
        let root_id = walker.dir(root, "", parent);
        let Walker {
            files,
            dirs,
            bytes,
            unchanged,
            warnings,
            jobs,
            ..
        } = walker;
        drop(jobs); // workers end when the queue closes
        let flushed = shared.flush();
        // The uploader ends when its queue closes, after the last pack is stored.
        shared.uploads.lock().expect("uploads").take();
        flushed?;
        root_id.map(|root| WalkOutcome {
            root,
            files,
            dirs,
            bytes,
            unchanged,
            warnings,
        })
    });
    if let Some(e) = shared.upload_error.lock().expect("upload error").take() {
        return Err(e);
    }
    result
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Counts the regular files under `root` and their bytes into `progress`'s totals, by the
/// walker's rules, and marks them final once the whole tree is counted. Returns early,
/// leaving the totals not final, when `stop` is set or the backup is cancelled. Entries it
/// cannot read are passed over: the count is an estimate for display, never a failure.
pub(crate) fn scan(root: &Path, progress: &Progress, cancel: &Cancel, stop: &AtomicBool) {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            if stop.load(Ordering::Relaxed) || cancel.is_cancelled() {
                return;
            }
            let Ok(entry) = entry else {
                continue;
            };
            // Like `symlink_metadata`: a symlink is never followed.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file()
                && let Ok(meta) = entry.metadata()
            {
                files += 1;
                bytes += meta.len();
                progress.files_total.store(files, Ordering::Relaxed);
                progress.bytes_total.store(bytes, Ordering::Relaxed);
            }
        }
    }
    progress.set_totals(files, bytes);
}

fn worker(shared: &Shared, queue: &Mutex<Receiver<FileJob>>) {
    // One buffer per worker for the whole backup: chunks are cut and sealed from it
    // in place, so no chunk-sized allocation is made (or faulted in) per chunk.
    let mut buffer = vec![0u8; 2 * CHUNK_MAX];
    loop {
        let Ok(job) = queue.lock().expect("queue").recv() else {
            return;
        };
        let result = if shared.cancel.is_cancelled() {
            FileResult::Fatal(EngineError::Cancelled)
        } else {
            read_file(shared, &job, &mut buffer)
        };
        let _ = job.reply.send(result);
    }
}

fn changed(before: &std::fs::Metadata, after: &std::fs::Metadata) -> bool {
    before.len() != after.len()
        || before.mtime() != after.mtime()
        || before.mtime_nsec() != after.mtime_nsec()
        || before.ctime() != after.ctime()
        || before.ctime_nsec() != after.ctime_nsec()
}

fn read_file(shared: &Shared, job: &FileJob, buffer: &mut [u8]) -> FileResult {
    let mut file = match std::fs::File::open(&job.path) {
        Ok(f) => f,
        Err(e) => return FileResult::Unreadable(format!("{}: cannot read: {e}", job.display)),
    };
    let mut content = Vec::new();
    let mut size = 0u64;
    let mut store = |data: &[u8]| -> Result<(), EngineError> {
        shared.check_cancel()?;
        let id = shared.repo.keys.chunk_id(data);
        shared.store_blob(BlobKind::Data, id, data)?;
        size += data.len() as u64;
        shared.progress.add(0, data.len() as u64);
        content.push(id);
        Ok(())
    };
    // Most files are smaller than the smallest chunk: one read, one chunk, no chunker.
    if job.meta.len() < CHUNK_MIN as u64 {
        let mut data = Vec::with_capacity(usize::try_from(job.meta.len()).unwrap_or(0) + 1);
        if let Err(e) = std::io::Read::read_to_end(&mut file, &mut data) {
            return FileResult::Unreadable(format!("{}: read failed: {e}", job.display));
        }
        if data.len() < CHUNK_MIN {
            if !data.is_empty()
                && let Err(e) = store(&data)
            {
                return FileResult::Fatal(e);
            }
        } else {
            // It grew past a chunk while we read it: cut it like any large file.
            for chunk in fastcdc::v2020::FastCDC::with_level_and_seed(
                &data,
                CHUNK_MIN,
                CHUNK_AVG,
                CHUNK_MAX,
                Normalization::Level1,
                shared.repo.keys.chunker_seed,
            ) {
                if let Err(e) = store(&data[chunk.offset..chunk.offset + chunk.length]) {
                    return FileResult::Fatal(e);
                }
            }
        }
    } else {
        // Fill the buffer, cut every chunk FastCDC finds but the last (which may be cut
        // short by the buffer's end), move that remainder to the front and read on. The
        // cut points are those of streaming over the whole file.
        let mut filled = 0;
        let mut eof = false;
        loop {
            while !eof && filled < buffer.len() {
                match std::io::Read::read(&mut file, &mut buffer[filled..]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return FileResult::Unreadable(format!(
                            "{}: read failed: {e}",
                            job.display
                        ));
                    }
                }
            }
            if filled == 0 {
                break;
            }
            let chunks: Vec<(usize, usize)> = fastcdc::v2020::FastCDC::with_level_and_seed(
                &buffer[..filled],
                CHUNK_MIN,
                CHUNK_AVG,
                CHUNK_MAX,
                Normalization::Level1,
                shared.repo.keys.chunker_seed,
            )
            .map(|c| (c.offset, c.length))
            .collect();
            let keep = if eof {
                chunks.len()
            } else {
                chunks.len().saturating_sub(1).max(1)
            };
            let mut consumed = 0;
            for &(offset, length) in &chunks[..keep] {
                if let Err(e) = store(&buffer[offset..offset + length]) {
                    return FileResult::Fatal(e);
                }
                consumed = offset + length;
            }
            buffer.copy_within(consumed..filled, 0);
            filled -= consumed;
            if eof && filled == 0 {
                break;
            }
        }
    }
    shared.progress.add(1, 0);
    let warning = match file.metadata() {
        Ok(after) if changed(&job.meta, &after) || after.len() != size => {
            Some(format!("{}: changed while being read", job.display))
        }
        Ok(_) => None,
        Err(e) => Some(format!(
            "{}: cannot re-check after reading: {e}",
            job.display
        )),
    };
    FileResult::Done {
        content,
        size,
        warning,
    }
}

struct Walker<'a> {
    shared: &'a Arc<Shared>,
    jobs: SyncSender<FileJob>,
    files: u64,
    dirs: u64,
    bytes: u64,
    unchanged: u64,
    warnings: Vec<String>,
}

/// An entry of the directory being built.
enum Pending {
    Ready(Node),
    File(Node, Receiver<FileResult>),
    Dir(Node, PathBuf, Option<Vec<Node>>),
}

fn nanos(secs: i64, nsecs: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
}

fn node_from(name: &OsStr, meta: &std::fs::Metadata, kind: NodeKind) -> Node {
    Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        mtime_ns: nanos(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: nanos(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
        size: if kind == NodeKind::File {
            meta.len()
        } else {
            0
        },
        content: Vec::new(),
        subtree: None,
        link_target: Vec::new(),
    }
}

impl Walker<'_> {
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
        self.warnings.push(message);
    }

    /// Backs up one directory and returns its tree id.
    fn dir(
        &mut self,
        path: &Path,
        display: &str,
        parent: Option<Vec<Node>>,
    ) -> Result<ChunkId, EngineError> {
        self.shared.check_cancel()?;
        self.dirs += 1;
        let mut entries: Vec<std::fs::DirEntry> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| match e {
                    Ok(e) => Some(e),
                    Err(err) => {
                        self.warn(format!("{display}/: cannot list an entry: {err}"));
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.warn(format!(
                    "{}: cannot read directory: {e}",
                    if display.is_empty() { "/" } else { display }
                ));
                Vec::new()
            }
        };
        entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        let parent_nodes = parent.unwrap_or_default();
        let find_parent = |name: &[u8]| parent_nodes.iter().find(|n| n.name == name);

        let mut pending = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.file_name();
            let child_path = entry.path();
            let child_display = if display.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{display}/{}", name.to_string_lossy())
            };
            let meta = match std::fs::symlink_metadata(&child_path) {
                Ok(m) => m,
                Err(e) => {
                    self.warn(format!("{child_display}: cannot stat: {e}"));
                    continue;
                }
            };
            let ft = meta.file_type();
            if ft.is_file() {
                let mut node = node_from(&name, &meta, NodeKind::File);
                self.files += 1;
                self.bytes += meta.len();
                if let Some(old) = find_parent(name.as_bytes()).filter(|old| {
                    old.kind == NodeKind::File
                        && old.size == node.size
                        && old.mtime_ns == node.mtime_ns
                        && old.ctime_ns == node.ctime_ns
                        && old.inode == node.inode
                        && old.content.iter().all(|c| self.shared.index.contains(c))
                }) {
                    node.content.clone_from(&old.content);
                    self.unchanged += 1;
                    self.shared.progress.add(1, node.size);
                    pending.push(Pending::Ready(node));
                    continue;
                }
                let (reply, result) = sync_channel(1);
                self.jobs
                    .send(FileJob {
                        path: child_path,
                        display: child_display,
                        meta,
                        reply,
                    })
                    .map_err(|_| EngineError::Other("backup workers stopped".into()))?;
                pending.push(Pending::File(node, result));
            } else if ft.is_dir() {
                let node = node_from(&name, &meta, NodeKind::Dir);
                let old = find_parent(name.as_bytes())
                    .filter(|n| n.kind == NodeKind::Dir)
                    .and_then(|n| n.subtree);
                let old_nodes = old.map(|id| self.load_tree(&id));
                pending.push(Pending::Dir(node, child_path, old_nodes));
            } else if ft.is_symlink() {
                let mut node = node_from(&name, &meta, NodeKind::Symlink);
                match std::fs::read_link(&child_path) {
                    Ok(target) => {
                        node.link_target = target.as_os_str().as_bytes().to_vec();
                        pending.push(Pending::Ready(node));
                    }
                    Err(e) => self.warn(format!("{child_display}: cannot read link: {e}")),
                }
            } else {
                use std::os::unix::fs::FileTypeExt as _;
                let what = if ft.is_socket() {
                    "socket"
                } else if ft.is_fifo() {
                    "FIFO"
                } else if ft.is_block_device() || ft.is_char_device() {
                    "device"
                } else {
                    "special file"
                };
                self.warn(format!("{child_display}: skipped ({what})"));
            }
        }

        // Subdirectories first, while this directory's files are being read.
        let mut nodes = Vec::with_capacity(pending.len());
        let mut waiting = Vec::new();
        for p in pending {
            match p {
                Pending::Dir(mut node, child, old) => {
                    let child_display = if display.is_empty() {
                        node.display_name()
                    } else {
                        format!("{display}/{}", node.display_name())
                    };
                    node.subtree = Some(self.dir(&child, &child_display, old)?);
                    nodes.push(Some(node));
                }
                Pending::Ready(node) => nodes.push(Some(node)),
                Pending::File(node, rx) => {
                    waiting.push((nodes.len(), node, rx));
                    nodes.push(None);
                }
            }
        }
        for (slot, mut node, rx) in waiting {
            match rx
                .recv()
                .map_err(|_| EngineError::Other("a backup worker stopped".into()))?
            {
                FileResult::Done {
                    content,
                    size,
                    warning,
                } => {
                    node.content = content;
                    self.bytes = self.bytes - node.size + size;
                    node.size = size;
                    if let Some(w) = warning {
                        self.warn(w);
                    }
                    nodes[slot] = Some(node);
                }
                FileResult::Unreadable(message) => {
                    self.files -= 1;
                    self.bytes -= node.size;
                    self.warn(message);
                }
                FileResult::Fatal(e) => return Err(e),
            }
        }
        let nodes: Vec<Node> = nodes.into_iter().flatten().collect();
        let encoded = tree::encode(&nodes);
        let id = self.shared.repo.keys.chunk_id(&encoded);
        self.shared.store_blob(BlobKind::Tree, id, &encoded)?;
        Ok(id)
    }
}
