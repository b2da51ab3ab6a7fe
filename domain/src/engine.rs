//! The snapshot engine port: what the application asks of the repository (backup,
//! restore, verify, browse, list). The repository adapter implements it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// How a snapshot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// Everything under the source was read.
    Ok,
    /// Some entries could not be read or changed while being read; see the warnings.
    Partial,
}

impl SnapshotStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
        }
    }
}

/// A committed snapshot, as the repository describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// Hex SHA-256 of the stored snapshot object: its id and its checksum.
    pub id: String,
    pub source: String,
    pub path: String,
    pub hostname: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub status: SnapshotStatus,
    pub encrypted: bool,
    pub parent: Option<String>,
    pub files: u64,
    pub dirs: u64,
    /// Logical bytes of all files in the snapshot.
    pub bytes: u64,
    /// Plaintext bytes of chunks this backup stored for the first time.
    pub bytes_added: u64,
    /// Bytes this backup wrote to storage after dedup and compression: packs and index
    /// (the few hundred bytes of the snapshot object itself are not counted).
    pub stored_bytes_added: u64,
    /// Files not re-read because they were unchanged since the parent snapshot.
    pub unchanged_files: u64,
    /// Entries the source's filter left out (a directory left out counts once, whatever
    /// it holds).
    pub excluded: u64,
    pub warnings: Vec<String>,
    /// Why the source looked empty or collapsed, when it did: such a snapshot is kept but
    /// replaces no older one (see [`crate::retention`]).
    pub suspicious: Option<String>,
}

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub source_name: String,
    pub path: PathBuf,
    /// The previous snapshot of the same source: unchanged files are not re-read.
    pub parent: Option<String>,
    /// What this backup may add to storage (packs and index), shared with the backups
    /// running beside it. A backup that would pass it stops with `QuotaExceeded` and
    /// removes what it stored. `None`: no limit.
    pub budget: Option<Arc<dyn StorageBudget>>,
    /// What the source held before: a snapshot far below it is marked suspicious (see
    /// [`crate::retention::suspicion`]). `None`: nothing to compare with.
    pub expected: Option<crate::retention::Expectation>,
    /// Files and directories never read, wherever the walk meets them (through a symlink
    /// or a bind mount too): Coffer's own keys, database, configuration and directories.
    /// Each one met is skipped with a warning.
    pub never_read: Vec<PathBuf>,
    /// What the source leaves out (patterns, caches, other file systems, large files):
    /// counted in [`SnapshotSummary::excluded`], not warned about one by one.
    pub filter: crate::excludes::SourceFilter,
}

/// A snapshot made from a tree that is not on a file system (an imported archive).
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub source_name: String,
    /// What the snapshot records as its path (where the tree came from).
    pub path: String,
    /// When the tree was taken: the snapshot's time.
    pub taken_at: DateTime<Utc>,
    /// As [`BackupRequest::budget`].
    pub budget: Option<Arc<dyn StorageBudget>>,
}

/// A storage allowance, shared by the backups that run at once.
pub trait StorageBudget: Send + Sync + std::fmt::Debug {
    /// Takes `bytes` from the allowance before they are stored; `false` (and nothing
    /// taken) when that would pass it.
    fn try_take(&self, bytes: u64) -> bool;
}

/// A fixed allowance of bytes, for one backup on its own.
#[derive(Debug)]
pub struct FixedBudget(AtomicU64);

impl FixedBudget {
    #[must_use]
    pub fn new(bytes: u64) -> Self {
        Self(AtomicU64::new(bytes))
    }
}

impl StorageBudget for FixedBudget {
    fn try_take(&self, bytes: u64) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }
}

/// Live counters of a long operation, readable from another task.
///
/// The totals are filled as they become known: a restore or verify knows them before
/// it starts; a backup counts its source beside reading it and sets `totals_final` when
/// that count is complete.
#[derive(Debug, Default)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub files_total: AtomicU64,
    pub bytes_total: AtomicU64,
    pub totals_final: AtomicBool,
    /// Where the time goes, phase by phase.
    pub phases: PhaseTimes,
    /// What the work has to say along the way (warnings, phases), for the job's log.
    pub log: crate::joblog::JobLog,
}

/// A step of a backup or restore, for [`PhaseTimes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listing directories and reading entries' metadata (a backup's walk, a restore's
    /// reading of the snapshot's trees).
    Walk,
    /// Opening files (backup) or creating files and directories (restore).
    Open,
    /// Reading file content (backup) or stored data (restore).
    Read,
    /// Content-defined chunking.
    Chunk,
    /// Keyed hashing of chunks (their ids).
    Hash,
    /// zstd compression (backup) or decompression (restore).
    Compress,
    /// AES-256-GCM encryption (backup) or authentication and decryption (restore).
    Seal,
    /// Writing: packs to storage (backup) or file content to disk (restore).
    Write,
    /// Ownership, modes, times, extended attributes, links and renames.
    Metadata,
}

impl Phase {
    pub const ALL: [Self; 9] = [
        Self::Walk,
        Self::Open,
        Self::Read,
        Self::Chunk,
        Self::Hash,
        Self::Compress,
        Self::Seal,
        Self::Write,
        Self::Metadata,
    ];

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Walk => "walk",
            Self::Open => "open",
            Self::Read => "read",
            Self::Chunk => "chunk",
            Self::Hash => "hash",
            Self::Compress => "compress",
            Self::Seal => "seal",
            Self::Write => "write",
            Self::Metadata => "metadata",
        }
    }
}

/// Time spent per [`Phase`], summed over every thread that worked on it: thread time,
/// not wall time (phases overlap, and several threads run each), so the figures say where
/// the work is, and their sum can exceed the operation's duration.
#[derive(Debug, Default)]
pub struct PhaseTimes([AtomicU64; Phase::ALL.len()]);

impl PhaseTimes {
    pub fn add(&self, phase: Phase, elapsed: std::time::Duration) {
        self.0[phase as usize].fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Every phase that took any time, in the order of [`Phase::ALL`].
    #[must_use]
    pub fn read(&self) -> Vec<(Phase, std::time::Duration)> {
        Phase::ALL
            .iter()
            .map(|&p| {
                (
                    p,
                    std::time::Duration::from_nanos(self.0[p as usize].load(Ordering::Relaxed)),
                )
            })
            .filter(|(_, d)| !d.is_zero())
            .collect()
    }
}

impl Progress {
    /// Counters for a job whose log lines carry `clock`'s time.
    #[must_use]
    pub fn for_job(clock: std::sync::Arc<dyn crate::ports::Clock>) -> Self {
        Self {
            log: crate::joblog::JobLog::with_clock(clock),
            ..Self::default()
        }
    }

    pub fn add(&self, files: u64, bytes: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Sets both totals and marks them final.
    pub fn set_totals(&self, files: u64, bytes: u64) {
        self.files_total.store(files, Ordering::Relaxed);
        self.bytes_total.store(bytes, Ordering::Relaxed);
        self.totals_final.store(true, Ordering::Release);
    }

    #[must_use]
    pub fn totals_final(&self) -> bool {
        self.totals_final.load(Ordering::Acquire)
    }

    /// The counters as a plain value; totals of zero with nothing known read as `None`.
    #[must_use]
    pub fn read(&self) -> crate::jobs::JobProgress {
        let (files_done, bytes_done, files_total, bytes_total) = self.snapshot();
        let totals_final = self.totals_final();
        let known = totals_final || files_total > 0;
        crate::jobs::JobProgress {
            files_done,
            bytes_done,
            files_total: known.then_some(files_total),
            bytes_total: known.then_some(bytes_total),
            totals_final,
        }
    }

    #[must_use]
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.files_done.load(Ordering::Relaxed),
            self.bytes_done.load(Ordering::Relaxed),
            self.files_total.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        )
    }
}

/// Asks a long operation to stop at its next safe point.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// An entry of a directory inside a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The name; bytes that are not UTF-8 are shown as U+FFFD.
    pub name: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime: DateTime<Utc>,
    pub mode: u32,
    /// The names of its extended attributes (POSIX ACLs are `system.posix_acl_access`
    /// and `system.posix_acl_default`), sorted.
    pub xattrs: Vec<String>,
    /// How many names the file had when it was backed up (hard links); 1 for most.
    pub links: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

impl EntryKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Dir => "dir",
            Self::Symlink => "symlink",
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Regular files written, hard links to them included.
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Names restored as hard links to a file restored before them (counted in `files`).
    pub hardlinks: u64,
    /// Bytes of file content written (a file with several names counts once).
    pub bytes: u64,
    /// Metadata that could not be applied (extended attributes or ACLs the target file
    /// system or the restoring user may not set); the data itself is restored.
    pub warnings: Vec<String>,
}

/// What a verification found about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub snapshot: String,
    pub read_data: bool,
    /// Human-readable problems; empty when the snapshot is intact.
    pub problems: Vec<String>,
    /// Paths inside the snapshot whose content is damaged or missing.
    pub damaged_files: Vec<String>,
    pub bytes_read: u64,
}

impl VerifyReport {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.damaged_files.is_empty()
    }
}

/// How a prune (garbage collection) works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    /// A pack whose unused share reaches this percentage is repacked (its live blobs
    /// copied into new packs, the old pack deleted). 100: never repack, only delete packs
    /// that hold nothing live.
    pub repack_threshold_percent: u8,
    /// Report what would be done and change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        Self {
            repack_threshold_percent: 20,
            dry_run: false,
        }
    }
}

/// What a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub dry_run: bool,
    /// Snapshots whose data was kept.
    pub snapshots: u64,
    pub packs_before: u64,
    /// Packs that held nothing any snapshot uses, deleted whole.
    pub packs_deleted: u64,
    /// Packs that were mostly unused: their live blobs were copied, then they were deleted.
    pub packs_repacked: u64,
    /// New packs the repacking wrote.
    pub packs_written: u64,
    /// Packs no index named (left by an interrupted backup), deleted.
    pub orphan_packs_deleted: u64,
    pub blobs_removed: u64,
    /// Stored bytes (packs and indexes) before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl PruneReport {
    #[must_use]
    pub const fn bytes_freed(&self) -> u64 {
        self.bytes_before.saturating_sub(self.bytes_after)
    }
}

/// Which part of the stored data a repository check re-reads: slice `index` of `count`
/// (packs are assigned to slices by their id), so that `count` checks in a row read
/// everything once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckSlice {
    pub index: u32,
    pub count: u32,
}

/// What a repository check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub snapshots: u64,
    pub trees: u64,
    pub packs_total: u64,
    /// Packs read and authenticated blob by blob in this check.
    pub packs_read: u64,
    pub bytes_read: u64,
    /// Human-readable problems; empty when everything checked is intact.
    pub problems: Vec<String>,
    /// Snapshots that reference damaged or missing data.
    pub damaged_snapshots: Vec<String>,
}

impl CheckReport {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A failure of the engine, in terms the application can act on.
#[derive(Debug, thiserror::Error)]
pub enum EngineFailure {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// Stored data is damaged; the message names what.
    #[error("{0}")]
    Damaged(String),
    #[error("cancelled")]
    Cancelled,
    /// The backup would have passed its storage budget (`BackupRequest::budget`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Another process holds the repository (a prune waiting on a prune, say).
    #[error("{0}")]
    Busy(String),
    /// The storage could not be reached or refused the work (an S3 store without a
    /// quorum, a NAS share that is not mounted); trying again later may succeed.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

/// The archive formats a snapshot path can be downloaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    Zip,
}

impl ArchiveFormat {
    #[must_use]
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Tar => "tar",
            Self::Zip => "zip",
        }
    }

    #[must_use]
    pub const fn media_type(self) -> &'static str {
        match self {
            Self::Tar => "application/x-tar",
            Self::Zip => "application/zip",
        }
    }
}

/// The repository engine.
///
/// Contract: `backup` makes the snapshot visible (listable, restorable) only after
/// everything it references is durably stored; a failed or cancelled backup leaves no
/// snapshot. `restore` verifies before writing and never writes outside `target`, which
/// must be new or empty; a cancelled restore stops between files and leaves no partial
/// file behind. `forget` removes the snapshot object only (its data goes when garbage
/// is collected); forgetting a missing snapshot is `NotFound`.
#[async_trait]
pub trait SnapshotEngine: Send + Sync {
    async fn backup(
        &self,
        request: BackupRequest,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<SnapshotSummary, EngineFailure>;
    /// Stores a tree given entry by entry (an archive) as a snapshot dated
    /// `request.taken_at`, with the same guarantees as `backup`: visible only once
    /// complete, nothing of it kept when the source fails or refuses (`Invalid`, with
    /// the source's reason).
    async fn import_tree(
        &self,
        request: ImportRequest,
        source: Box<dyn crate::import::TreeSource>,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<SnapshotSummary, EngineFailure>;
    async fn snapshots(&self) -> Result<Vec<SnapshotSummary>, EngineFailure>;
    async fn list_dir(&self, snapshot: &str, path: &str) -> Result<Vec<EntryInfo>, EngineFailure>;
    /// The entry at `path` (`""` or `/` is the snapshot's root directory, named after
    /// the source's directory).
    async fn stat(&self, snapshot: &str, path: &str) -> Result<EntryInfo, EngineFailure>;
    async fn restore(
        &self,
        snapshot: &str,
        path: Option<&str>,
        target: &Path,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<RestoreReport, EngineFailure>;
    async fn verify(
        &self,
        snapshot: &str,
        read_data: bool,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<VerifyReport, EngineFailure>;
    /// Streams `path` of the snapshot (everything when `None`) as an archive into `out`,
    /// fetching content chunk by chunk (no full-size buffer or temporary file). Returns
    /// the bytes of file content written.
    async fn export(
        &self,
        snapshot: &str,
        path: Option<&str>,
        format: ArchiveFormat,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, EngineFailure>;
    async fn forget(&self, snapshot: &str) -> Result<(), EngineFailure>;
    /// Garbage collection: deletes the stored data no snapshot references and repacks
    /// mostly-unused packs. Never runs beside a backup, restore, verify, check or
    /// export (of this or another process): it waits for them, and they wait for it.
    /// A crash at any point leaves every remaining snapshot complete.
    async fn prune(
        &self,
        options: PruneOptions,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<PruneReport, EngineFailure>;
    /// Checks the whole repository: every snapshot's trees are readable and every chunk
    /// they name is indexed; with a slice, the packs of that slice are also read and
    /// every blob in them authenticated.
    async fn check(
        &self,
        slice: Option<CheckSlice>,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<CheckReport, EngineFailure>;
    /// The bytes the repository occupies in storage, counted object by object.
    async fn stored_bytes(&self) -> Result<u64, EngineFailure>;
}
