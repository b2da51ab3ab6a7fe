//! Restore: check first, then write every file under a temporary name and give it its
//! name when complete, never outside the target, with all its metadata.
//!
//! 1. **Plan** ([`plan`]): the snapshot's trees are read into a plan of directories,
//!    files, symlinks and hard links; names that could escape the target or collide,
//!    and data missing from the index or from storage, refuse the restore before
//!    anything is written.
//! 2. **Directories** are created level by level, each level by many threads at once:
//!    creating an entry costs a round trip to the file system's journal, which many
//!    threads overlap (on a virtual disk or a NAS one thread waits ~0.5 ms per entry,
//!    sixteen threads ~30 µs).
//! 3. **Content**: readers work through the packs, each pack's needed blobs read with
//!    one ranged read per run of neighbours ([`READ_GAP`]) whose bytes are worked on as
//!    they arrive ([`Arriving`]: on S3 one `GET`, not one per few megabytes, which also
//!    spares the store reading its blocks twice where ranges cut through them; a read
//!    that breaks off is taken up where it stopped, [`RESUMES`] times); each blob is
//!    authenticated, decompressed and handed to the writers, which write it at every
//!    offset that needs it. A file is created when its first blob arrives and
//!    kept open while more are due (up to [`MAX_OPEN`] files, fewer under a low limit
//!    on open files: [`fd_budget`]), so it is opened once;
//!    aligned blocks of zeros are not written (holes, see [`target`]), and a file of
//!    256 KiB or more is written uncached where the kernel allows it (`RWF_DONTCACHE`:
//!    its pages are freed once on disk, not taken fresh for every byte). When its last
//!    blob lands, its owner, mode, extended attributes and time are set through its
//!    handle and it is renamed into place (`RENAME_NOREPLACE`).
//! 4. **Symlinks** (with their own times), then **hard links** to files now in place.
//! 5. **Directory metadata**, deepest level first (a directory's time changes with
//!    every entry made inside it; a read-only one must not stop its own entries).
//!
//! Progress: the totals are set from the plan before anything is written. Cancellation
//! is checked between reads; a cancelled or failed restore removes every temporary
//! file, so only complete files remain. Memory holds the plan (a few hundred bytes per
//! entry), one to two megabytes of arrived bytes per reader ([`GATHER`]; more for a
//! larger blob) and at most [`DECODED_BUDGET`] bytes of decoded blobs, taken from the
//! budget before a blob is decoded (its size is in the index).

mod plan;
mod target;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use coffer_domain::engine::{Cancel, Phase, Progress, RestoreReport};
use coffer_domain::storage::{ObjectKey, ObjectStore, RangeReader};
use futures::{StreamExt as _, TryStreamExt as _};

use self::plan::{BlobTargets, PackJob, Plan};
use self::target::Target;
use crate::error::EngineError;
use crate::{Repository, crypto, key, pack::pack_key, timed};

/// Bytes of a ranged read gathered at least before its blobs are worked on: one
/// hand-over from the runtime per this many bytes, not per network packet.
const GATHER: usize = 1024 * 1024;

/// Blobs of a pack at most this far apart are fetched with one ranged read, the bytes
/// between them read and dropped: after an incremental backup the packs of the first
/// are full of small holes (the old versions of changed files), and on an object store
/// a request costs far more than a few kilobytes more of it.
const READ_GAP: u64 = 256 * 1024;

/// Files kept open between their blobs at most (fewer under a low limit on open files,
/// see [`fd_budget`]); others are closed and reopened.
const MAX_OPEN: usize = 256;

/// Descriptors left to the rest of the process (catalog, sockets, logs) and, per thread
/// of the restore, to what it opens for a moment (a pack, a file being created).
const FD_RESERVE: u64 = 64;
const FD_PER_THREAD: u64 = 2;

/// How many directory handles and how many files between blobs a restore keeps open,
/// within `limit` open files (the process's soft `RLIMIT_NOFILE`; `None`: no limit) and
/// with `threads` threads: a quarter of what is left for open files, the rest for
/// handles, each at most its constant. Under `ulimit -n 1024`, the usual soft limit of
/// login shells and systemd services, 1,024 handles and 256 files did not fit: the
/// restore of a tree with a few thousand directories failed with "Too many open files".
fn fd_budget(limit: Option<u64>, threads: usize) -> (usize, usize) {
    let Some(limit) = limit else {
        return (target::HANDLE_CACHE, MAX_OPEN);
    };
    let spare = limit.saturating_sub(FD_RESERVE + FD_PER_THREAD * threads as u64);
    let spare = usize::try_from(spare).unwrap_or(usize::MAX).max(8);
    let files = (spare / 4).clamp(1, MAX_OPEN);
    let handles = (spare - files).clamp(1, target::HANDLE_CACHE);
    (handles, files)
}

/// Empty files handed to a writer at once.
const EMPTY_BATCH: usize = 64;

/// Decoded blobs waiting for a writer, in bytes at most. Twice this was no faster on
/// the benchmark's disk or on a tmpfs, and cost ~10 MiB of peak RSS: every reader's
/// allocator arena keeps the most it ever held.
const DECODED_BUDGET: usize = 8 * 1024 * 1024;

/// Threads that create and write files: far more than cores, because most of their
/// time is spent waiting for the file system, not computing.
fn writers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .saturating_mul(4)
        .clamp(4, 16)
}

/// Threads that read and decode stored data: about one per core (decoding is
/// computing), and a few more to overlap the waits for storage.
fn readers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .saturating_add(1)
}

/// Bytes allowed in flight between readers and writers. A blob larger than the whole
/// budget still passes when nothing else is in flight.
struct Budget {
    state: Mutex<BudgetState>,
    freed: std::sync::Condvar,
    limit: usize,
}

#[derive(Default)]
struct BudgetState {
    used: usize,
    waiting: usize,
    closed: bool,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new(BudgetState::default()),
            freed: std::sync::Condvar::new(),
            limit,
        }
    }

    /// Waits for room for `n` bytes; `false` once the budget is closed (stopping).
    fn acquire(&self, n: usize) -> bool {
        let mut state = self.state.lock().expect("budget");
        while !state.closed && state.used > 0 && state.used + n > self.limit {
            state.waiting += 1;
            state = self.freed.wait(state).expect("budget");
            state.waiting -= 1;
        }
        if state.closed {
            return false;
        }
        state.used += n;
        true
    }

    fn release(&self, n: usize) {
        let mut state = self.state.lock().expect("budget");
        state.used = state.used.saturating_sub(n);
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.freed.notify_all();
        }
    }

    /// Wakes and refuses every waiting reader.
    fn close(&self) {
        self.state.lock().expect("budget").closed = true;
        self.freed.notify_all();
    }
}

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
    let mut plan = plan::build(&repo, &node, &progress, &cancel).await?;

    // Check before writing anything: every referenced object must exist.
    let index = repo.index();
    let damage = plan::assign_packs(&mut plan, &index);
    let mut missing: BTreeSet<String> = damage.missing.into_iter().collect();
    // Asked side by side: on an object store each question is a request (a `HEAD`), and
    // a restore may need thousands of packs.
    let keys = plan
        .packs
        .iter()
        .map(|job| key(&pack_key(&job.pack)))
        .collect::<Result<Vec<_>, _>>()?;
    let store = repo.store.clone();
    let present: Vec<bool> = futures::stream::iter(keys)
        .map(move |k| {
            let store = store.clone();
            async move { store.exists(&k).await }
        })
        .buffered(repo.store.parallelism().saturating_mul(2).max(4))
        .try_collect()
        .await?;
    for (job, present) in plan.packs.iter().zip(present) {
        if !present {
            for blob in &job.blobs {
                for &(file, _) in &blob.targets {
                    let f = &plan.files[file as usize];
                    missing.insert(plan.shown(f.dir, &f.name));
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
    progress.set_totals((plan.files.len() + plan.links.len()) as u64, plan.bytes);
    progress.log.info(format!(
        "every object the restore needs is in storage: {} files, {} hard links, {} in {} packs to read",
        plan.files.len(),
        plan.links.len(),
        coffer_domain::units::human_bytes(plan.bytes),
        plan.packs.len()
    ));
    prepare_target(target)?;
    let handle = tokio::runtime::Handle::current();
    let target = target.to_path_buf();
    let snapshot_id = snapshot.to_owned();
    let restores_dir = node.kind == crate::tree::NodeKind::Dir;
    tokio::task::spawn_blocking(move || {
        let mut outcome = execute(
            &Work {
                repo: &repo,
                handle: &handle,
                plan: &plan,
                progress: &progress,
                cancel: &cancel,
            },
            &target,
            &damage.mismatched,
        )?;
        if restores_dir {
            outcome.report.dirs += 1;
        }
        if outcome.damaged.is_empty() {
            Ok(outcome.report)
        } else {
            Err(EngineError::Damaged(format!(
                "snapshot {} is damaged: {} file(s) failed verification and were not restored: {}",
                snapshot_id,
                outcome.damaged.len(),
                outcome.damaged.join(", ")
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

/// What every thread of a restore shares.
struct Work<'a> {
    repo: &'a Repository,
    handle: &'a tokio::runtime::Handle,
    plan: &'a Plan,
    progress: &'a Progress,
    cancel: &'a Cancel,
}

/// A report, and the files that failed verification.
struct Outcome {
    report: RestoreReport,
    damaged: Vec<String>,
}

/// Where a file of the plan stands.
enum Slot {
    /// Not created yet.
    New,
    /// Created, open for more blobs.
    Open(Arc<File>),
    /// Created, closed to bound open files; reopened for its next blob.
    Closed,
    /// Renamed into place, or removed after a failure.
    Done,
}

struct FileState {
    /// Blobs still to write.
    remaining: AtomicU32,
    /// A blob failed authentication (or the chunks do not add up): never renamed.
    failed: AtomicBool,
    slot: Mutex<Slot>,
}

/// A decoded blob on its way to the files that hold it.
struct Decoded<'a> {
    blob: &'a BlobTargets,
    data: Result<Vec<u8>, String>,
    /// Bytes of the [`Budget`] taken for it (its size as the index gives it), given back
    /// once it is written.
    reserved: usize,
}

/// Work for the writers.
enum Write<'a> {
    /// Blobs of one span of a pack, in pack order.
    Blobs(Vec<Decoded<'a>>),
    Empty(&'a [u32]),
}

/// Blobs handed to a writer at once at most (fewer hand-overs between threads), and
/// their bytes.
const BATCH_BLOBS: usize = 16;
const BATCH_BYTES: usize = 1024 * 1024;

impl Decoded<'_> {
    fn reserved(batch: &[Self]) -> usize {
        batch.iter().map(|d| d.reserved).sum()
    }
}

fn execute(
    work: &Work<'_>,
    target_path: &Path,
    mismatched: &[u32],
) -> Result<Outcome, EngineError> {
    let plan = work.plan;
    let writers = writers();
    let readers = readers().max(work.repo.store.parallelism());
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let (handles, max_open) = fd_budget(limit, writers + readers);
    let target = Target::open(target_path, plan, handles)?;
    let states: Vec<FileState> = plan
        .files
        .iter()
        .map(|f| FileState {
            remaining: AtomicU32::new(u32::try_from(f.chunks.len()).unwrap_or(u32::MAX)),
            failed: AtomicBool::new(false),
            slot: Mutex::new(Slot::New),
        })
        .collect();
    for &m in mismatched {
        states[m as usize].failed.store(true, Ordering::SeqCst);
    }
    let content = Content {
        work,
        target: &target,
        states: &states,
        open: AtomicUsize::new(0),
        max_open,
    };

    let result = (|| {
        let levels = plan.levels();
        for level in &levels {
            parallel(writers, level, work.cancel, |&dir| {
                timed(work.progress, Phase::Open, || target.create_dir(dir))
            })?;
        }
        content.write_all(writers)?;
        let indices: Vec<usize> = (0..plan.symlinks.len()).collect();
        parallel(writers, &indices, work.cancel, |&i| {
            timed(work.progress, Phase::Metadata, || target.create_symlink(i))
        })?;
        Ok(levels)
    })();
    let levels = match result {
        Ok(levels) => levels,
        Err(e) => {
            content.remove_unfinished();
            return Err(e);
        }
    };

    let linked: Vec<usize> = (0..plan.links.len())
        .filter(|&i| is_done(&states[plan.links[i].file as usize]))
        .collect();
    parallel(writers, &linked, work.cancel, |&i| {
        timed(work.progress, Phase::Metadata, || target.create_link(i))?;
        work.progress.add(1, 0);
        Ok(())
    })?;
    for level in levels.iter().rev() {
        parallel(writers, level, work.cancel, |&dir| {
            timed(work.progress, Phase::Metadata, || target.finish_dir(dir))
        })?;
    }

    let mut report = RestoreReport {
        dirs: (plan.dirs.len() - 1) as u64,
        symlinks: plan.symlinks.len() as u64,
        hardlinks: linked.len() as u64,
        warnings: target.warnings(),
        ..RestoreReport::default()
    };
    let mut damaged = Vec::new();
    for (file, state) in plan.files.iter().zip(&states) {
        if is_done(state) {
            report.files += 1;
            report.bytes += file.size;
        } else {
            damaged.push(plan.shown(file.dir, &file.name));
        }
    }
    for link in &plan.links {
        if !is_done(&states[link.file as usize]) {
            damaged.push(plan.shown(link.dir, &link.name));
        }
    }
    report.files += report.hardlinks;
    Ok(Outcome { report, damaged })
}

/// Whether a file was renamed into place complete.
fn is_done(state: &FileState) -> bool {
    !state.failed.load(Ordering::SeqCst) && matches!(*state.slot.lock().expect("slot"), Slot::Done)
}

/// Runs `work` on every item with up to `threads` threads; the first error (or a
/// cancel) stops every thread at its next item and is returned.
fn parallel<T: Sync>(
    threads: usize,
    items: &[T],
    cancel: &Cancel,
    work: impl Fn(&T) -> Result<(), EngineError> + Sync,
) -> Result<(), EngineError> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<EngineError>> = Mutex::new(None);
    let fail = |e: EngineError| {
        failure.lock().expect("failure").get_or_insert(e);
        stop.store(true, Ordering::SeqCst);
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.min(items.len()) {
            scope.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    if cancel.is_cancelled() {
                        fail(EngineError::Cancelled);
                        return;
                    }
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    if let Err(e) = work(item) {
                        fail(e);
                        return;
                    }
                }
            });
        }
    });
    failure.into_inner().expect("failure").map_or(Ok(()), Err)
}

/// Ranged reads broken off (a connection reset, a timeout) taken up again from where
/// they stopped, at most, per run of a pack's blobs.
const RESUMES: u32 = 3;

/// A ranged read of a pack, its bytes kept from the blob being decoded on: what is
/// behind it is dropped as the next bytes arrive. A read that breaks off is taken up
/// again where it stopped ([`RESUMES`]).
struct Arriving<'r> {
    store: &'r dyn ObjectStore,
    key: ObjectKey,
    reader: Box<dyn RangeReader + 'r>,
    /// The pack offset of `buf[0]`, and where the range ends.
    base: u64,
    end: u64,
    buf: Vec<u8>,
    /// The store has nothing more (the range is read, or the pack ended early).
    done: bool,
    resumed: u32,
}

impl<'r> Arriving<'r> {
    /// Starts reading `start..end` of the pack `key`; `None` when the pack is missing.
    fn open(
        store: &'r dyn ObjectStore,
        handle: &tokio::runtime::Handle,
        key: &ObjectKey,
        start: u64,
        end: u64,
    ) -> Result<Option<Self>, EngineError> {
        let Some(reader) = handle.block_on(store.read_range(key, start, end - start))? else {
            return Ok(None);
        };
        Ok(Some(Self {
            store,
            key: key.clone(),
            reader,
            base: start,
            end,
            buf: Vec::new(),
            done: false,
            resumed: 0,
        }))
    }

    /// The bytes `from..to` of the pack, once they have arrived; `None` when the pack
    /// ends before `to`. Blobs are asked for in pack order: what lies before `from` is
    /// not needed again.
    fn until(
        &mut self,
        handle: &tokio::runtime::Handle,
        from: u64,
        to: u64,
    ) -> Result<Option<&mut [u8]>, EngineError> {
        if self.base + (self.buf.len() as u64) < to && !self.done {
            // More must arrive. First drop what lies before `from`: what stays is the part
            // of this blob that has arrived, so a byte is moved at most once.
            let behind = usize::try_from(from - self.base).unwrap_or(usize::MAX);
            if behind >= self.buf.len() {
                // The gap up to `from` is still to arrive: read, then dropped.
                self.base += self.buf.len() as u64;
                self.buf.clear();
            } else {
                self.buf.drain(..behind);
                self.base = from;
            }
            let wanted = usize::try_from(to - self.base)
                .unwrap_or(usize::MAX)
                .max(GATHER)
                .min(usize::try_from(self.end - self.base).unwrap_or(usize::MAX));
            let Self {
                store,
                key,
                reader,
                base,
                end,
                buf,
                resumed,
                ..
            } = self;
            let done = handle.block_on(async {
                while buf.len() < wanted {
                    let piece = match reader.next().await {
                        Ok(piece) => piece,
                        Err(e) if *resumed < RESUMES => {
                            *resumed += 1;
                            let at = *base + buf.len() as u64;
                            tracing::warn!(
                                pack = %key,
                                offset = at,
                                "a ranged read broke off ({e}); reading on from where it stopped"
                            );
                            match store.read_range(key, at, *end - at).await? {
                                Some(again) => *reader = again,
                                None => return Ok(true), // gone: what is missing is damaged
                            }
                            continue;
                        }
                        Err(e) => return Err(EngineError::from(e)),
                    };
                    if piece.is_empty() {
                        return Ok::<_, EngineError>(true);
                    }
                    if buf.is_empty() && piece.len() >= wanted {
                        *buf = Vec::from(piece); // no copy where the piece is not shared
                    } else {
                        // Room for what is wanted at once, exactly: pieces come one network
                        // read at a time, and doubling would hold up to twice the gathered
                        // bytes per reader.
                        if buf.capacity() - buf.len() < piece.len() {
                            buf.reserve_exact(piece.len().max(wanted - buf.len()));
                        }
                        buf.extend_from_slice(&piece);
                    }
                }
                Ok(false)
            })?;
            self.done = done;
        }
        let needed = usize::try_from(to - self.base).unwrap_or(usize::MAX);
        if self.buf.len() < needed {
            return Ok(None);
        }
        let from = usize::try_from(from - self.base).unwrap_or(usize::MAX);
        Ok(Some(&mut self.buf[from..needed]))
    }
}

/// Writing file content.
struct Content<'a> {
    work: &'a Work<'a>,
    target: &'a Target<'a>,
    states: &'a [FileState],
    /// Files open between blobs.
    open: AtomicUsize,
    /// Files kept open between blobs at most.
    max_open: usize,
}

impl Content<'_> {
    /// Writes every file's content: readers fetch and decode the packs' blobs, writers
    /// put them into the files. Decoded blobs waiting for a writer are bounded by
    /// [`DECODED_BUDGET`] bytes, so memory does not grow with the number of writers.
    fn write_all(&self, writers: usize) -> Result<(), EngineError> {
        let plan = self.work.plan;
        let empty: Vec<u32> = (0..plan.files.len())
            .filter(|&i| plan.files[i].chunks.is_empty())
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        let budget = Budget::new(DECODED_BUDGET);
        let next_pack = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failure: Mutex<Option<EngineError>> = Mutex::new(None);
        let fail = |e: EngineError| {
            failure.lock().expect("failure").get_or_insert(e);
            stop.store(true, Ordering::SeqCst);
            budget.close();
        };
        let (queue, inbox) = std::sync::mpsc::channel::<Write<'_>>();
        let inbox = Mutex::new(inbox);
        std::thread::scope(|scope| {
            for _ in 0..writers {
                scope.spawn(|| {
                    loop {
                        let Ok(item) = inbox.lock().expect("inbox").recv() else {
                            return;
                        };
                        if stop.load(Ordering::SeqCst) || self.work.cancel.is_cancelled() {
                            if let Write::Blobs(batch) = &item {
                                budget.release(Decoded::reserved(batch));
                            }
                            continue;
                        }
                        let result = match &item {
                            Write::Blobs(batch) => {
                                let r = batch.iter().try_for_each(|d| self.put(d));
                                budget.release(Decoded::reserved(batch));
                                r
                            }
                            Write::Empty(files) => files.iter().try_for_each(|&f| {
                                if self.states[f as usize].failed.load(Ordering::SeqCst) {
                                    self.finish(f)
                                } else {
                                    self.whole(f, &[])
                                }
                            }),
                        };
                        if let Err(e) = result {
                            fail(e);
                        }
                    }
                });
            }
            for batch in empty.chunks(EMPTY_BATCH) {
                let _ = queue.send(Write::Empty(batch));
            }
            let readers = readers()
                .max(self.work.repo.store.parallelism())
                .min(plan.packs.len());
            std::thread::scope(|inner| {
                for _ in 0..readers {
                    let queue = queue.clone();
                    inner.spawn(|| {
                        let queue = queue;
                        while !stop.load(Ordering::SeqCst) {
                            if self.work.cancel.is_cancelled() {
                                fail(EngineError::Cancelled);
                                return;
                            }
                            let Some(job) =
                                plan.packs.get(next_pack.fetch_add(1, Ordering::Relaxed))
                            else {
                                return;
                            };
                            if let Err(e) = self.read_pack(job, &queue, &budget, &stop) {
                                fail(e);
                                return;
                            }
                        }
                    });
                }
            });
            // Every reader is done: the writers end once the queue is empty.
            drop(queue);
        });
        failure.into_inner().expect("failure").map_or(Ok(()), Err)
    }

    /// Reads one pack's needed blobs in pack order, neighbours (at most [`READ_GAP`]
    /// apart) with one ranged read whose bytes are worked on as they arrive, decodes
    /// them and hands them to the writers.
    fn read_pack<'p>(
        &self,
        job: &'p PackJob,
        queue: &std::sync::mpsc::Sender<Write<'p>>,
        budget: &Budget,
        stop: &AtomicBool,
    ) -> Result<(), EngineError> {
        let work = self.work;
        let k = key(&pack_key(&job.pack))?;
        let mut i = 0;
        while i < job.blobs.len() {
            if work.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let start = job.blobs[i].entry.offset;
            let mut end = start + u64::from(job.blobs[i].entry.length);
            let mut j = i + 1;
            while j < job.blobs.len()
                && job.blobs[j].entry.offset >= end
                && job.blobs[j].entry.offset - end <= READ_GAP
            {
                end = job.blobs[j].entry.offset + u64::from(job.blobs[j].entry.length);
                j += 1;
            }
            let mut range = timed(work.progress, Phase::Read, || {
                Arriving::open(&*work.repo.store, work.handle, &k, start, end)
            })?;
            let missing = range.is_none();
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            for blob in &job.blobs[i..j] {
                let entry = &blob.entry;
                let blob_end = entry.offset + u64::from(entry.length);
                let sealed = match &mut range {
                    Some(arriving) => timed(work.progress, Phase::Read, || {
                        arriving.until(work.handle, entry.offset, blob_end)
                    })?,
                    None => None,
                };
                // Room for the decoded blob is taken before it is decoded, so decoded
                // data waiting for writers never exceeds the budget.
                let reserved = if sealed.is_some() {
                    entry.raw_length as usize
                } else {
                    0
                };
                if !budget.acquire(reserved) {
                    return Ok(()); // stopped
                }
                let data = match sealed {
                    Some(bytes) => crypto::open_blob_in_place(
                        &work.repo.keys,
                        &entry.id,
                        entry.raw_length as usize,
                        bytes,
                        Some(&work.progress.phases),
                    )
                    .map_err(|e| e.to_string()),
                    None if missing => Err(format!("pack {} is missing", hex::encode(job.pack))),
                    None => Err(format!("pack {} is truncated", hex::encode(job.pack))),
                };
                batch_bytes += reserved;
                batch.push(Decoded {
                    blob,
                    data,
                    reserved,
                });
                if batch.len() >= BATCH_BLOBS || batch_bytes >= BATCH_BYTES {
                    batch_bytes = 0;
                    if queue
                        .send(Write::Blobs(std::mem::take(&mut batch)))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() && queue.send(Write::Blobs(batch)).is_err() {
                return Ok(());
            }
            i = j;
        }
        Ok(())
    }

    /// Writes a decoded blob into every file that holds it; a file whose last blob this
    /// was is finished.
    fn put(&self, decoded: &Decoded<'_>) -> Result<(), EngineError> {
        for &(file, offset) in &decoded.blob.targets {
            if let Ok(data) = &decoded.data
                && self.work.plan.files[file as usize].chunks.len() == 1
                && !self.states[file as usize].failed.load(Ordering::SeqCst)
            {
                self.whole(file, data)?;
                continue;
            }
            match &decoded.data {
                Ok(data) => self.write(file, offset, data)?,
                Err(why) => self.fail(file, why),
            }
            if self.states[file as usize]
                .remaining
                .fetch_sub(1, Ordering::AcqRel)
                == 1
            {
                self.finish(file)?;
            }
        }
        Ok(())
    }

    /// Writes a file of one blob (or none) in one go.
    fn whole(&self, file: u32, data: &[u8]) -> Result<(), EngineError> {
        let state = &self.states[file as usize];
        let progress = self.work.progress;
        timed(progress, Phase::Write, || {
            self.target.write_whole(file, data)
        })?;
        state.remaining.store(0, Ordering::Release);
        *state.slot.lock().expect("slot") = Slot::Done;
        progress.add(1, data.len() as u64);
        Ok(())
    }

    fn fail(&self, file: u32, why: &str) {
        if !self.states[file as usize]
            .failed
            .swap(true, Ordering::SeqCst)
        {
            let f = &self.work.plan.files[file as usize];
            tracing::error!(
                file = self.work.plan.shown(f.dir, &f.name),
                "damaged: {why}"
            );
        }
    }

    /// Writes one blob into a file, creating the file for its first one.
    fn write(&self, file: u32, offset: u64, data: &[u8]) -> Result<(), EngineError> {
        let state = &self.states[file as usize];
        if state.failed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let progress = self.work.progress;
        let handle = {
            let mut slot = state.slot.lock().expect("slot");
            match &*slot {
                Slot::Open(f) => f.clone(),
                Slot::New | Slot::Closed => {
                    let created = matches!(*slot, Slot::Closed);
                    let f = Arc::new(timed(progress, Phase::Open, || {
                        if created {
                            self.target.reopen_file(file)
                        } else {
                            self.target.create_file(file)
                        }
                    })?);
                    self.open.fetch_add(1, Ordering::Relaxed);
                    *slot = Slot::Open(f.clone());
                    f
                }
                Slot::Done => return Ok(()),
            }
        };
        timed(progress, Phase::Write, || {
            self.target.write(&handle, file, data, offset, false)
        })?;
        progress.add(0, data.len() as u64);
        drop(handle);
        // More blobs due but too many files open: close this one until then.
        if state.remaining.load(Ordering::Acquire) > 1
            && self.open.load(Ordering::Relaxed) > self.max_open
        {
            let mut slot = state.slot.lock().expect("slot");
            if matches!(*slot, Slot::Open(_)) {
                *slot = Slot::Closed;
                self.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The file's last blob is written: give it its metadata and its name, or remove it
    /// when a blob failed.
    fn finish(&self, file: u32) -> Result<(), EngineError> {
        let state = &self.states[file as usize];
        let slot = std::mem::replace(&mut *state.slot.lock().expect("slot"), Slot::Done);
        let progress = self.work.progress;
        let created = !matches!(slot, Slot::New);
        let handle = match slot {
            Slot::Open(f) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                Some(f)
            }
            Slot::Closed | Slot::New | Slot::Done => None,
        };
        if state.failed.load(Ordering::SeqCst) {
            drop(handle);
            if created {
                self.target.remove_temp(file);
            }
            return Ok(());
        }
        let f = match handle {
            // Every writer dropped its clone before counting its blob as done.
            Some(f) => Arc::try_unwrap(f)
                .map_err(|_| EngineError::Other("a restored file is still in use".into()))?,
            None => timed(progress, Phase::Open, || self.target.reopen_file(file))?,
        };
        timed(progress, Phase::Metadata, || {
            self.target.finish_file(f, file)
        })?;
        progress.add(1, 0);
        Ok(())
    }

    /// Removes the temporary file of every file not finished (a failed or cancelled
    /// restore leaves only complete files).
    fn remove_unfinished(&self) {
        for (file, state) in self.states.iter().enumerate() {
            let slot = std::mem::replace(&mut *state.slot.lock().expect("slot"), Slot::Done);
            if matches!(slot, Slot::Open(_) | Slot::Closed) {
                drop(slot);
                self.target
                    .remove_temp(u32::try_from(file).unwrap_or(u32::MAX));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_OPEN, fd_budget, target::HANDLE_CACHE};

    #[test]
    fn open_descriptors_stay_within_the_limit_on_open_files() {
        let threads = 19; // 16 writers and 3 readers, as on two cores
        for limit in [64, 100, 256, 512, 1024, 4096] {
            let (handles, files) = fd_budget(Some(limit), threads);
            assert!(handles >= 1 && files >= 1, "limit {limit}");
            if limit >= 256 {
                // Within the limit, with the reserve and the threads' own descriptors.
                let used = (handles + files) as u64 + 64 + 2 * threads as u64;
                assert!(used <= limit, "limit {limit}: {handles} + {files}");
            }
        }
        // `ulimit -n 1024`: well below what a tree of thousands of directories would
        // otherwise keep open.
        let (handles, files) = fd_budget(Some(1024), threads);
        assert!(handles + files <= 1024 - 64 - 38, "{handles} + {files}");
        assert!(handles >= 512 && files >= 128, "{handles} + {files}");
        // Plenty of descriptors, or none counted: the constants.
        assert_eq!(fd_budget(Some(1 << 20), threads), (HANDLE_CACHE, MAX_OPEN));
        assert_eq!(fd_budget(None, threads), (HANDLE_CACHE, MAX_OPEN));
    }
}
