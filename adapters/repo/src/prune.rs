//! Prune: garbage collection of the data no snapshot references.
//!
//! Runs under the repository's exclusive lock (see `lock`), so no backup is between
//! "decided to reuse a chunk" and "committed its snapshot" while it works, and nothing
//! reads packs it is about to delete.
//!
//! 1. **Load.** Every index object (remembering which packs each names), the size of
//!    every pack in storage, and every snapshot. A snapshot that cannot be read stops the
//!    prune: what it references is unknown, so nothing may be deleted.
//! 2. **Mark.** Walk every snapshot's trees (each distinct tree once); the live set is
//!    the trees and the chunks their files name. A tree that is missing or fails
//!    authentication stops the prune for the same reason.
//! 3. **Plan.** Per pack, the live bytes (blobs in the live set, at the location the
//!    index uses). A pack with nothing live is deleted; one whose unused share reaches
//!    the threshold is repacked; a pack no index names (left by an interrupted backup)
//!    is deleted.
//! 4. **Repack.** The live blobs of those packs are read, authenticated (a damaged blob
//!    is never copied — the prune stops and the old pack stays) and appended, still
//!    sealed, to new packs. Blobs are sealed under per-blob keys, so nothing is
//!    re-encrypted.
//! 5. **Commit, in crash-safe order.** (a) the new packs are stored; (b) one new index
//!    object lists them together with the surviving entries of every index object that
//!    named a pack about to go; (c) those old index objects are deleted; (d) the old packs
//!    are deleted. A crash after (a) leaves unindexed packs (deleted by the next prune);
//!    after (b) some blobs are indexed twice, both copies readable; after (c) unindexed
//!    old packs. At no point does an index name a missing pack, so every remaining
//!    snapshot stays complete.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use coffer_domain::engine::{Cancel, Progress, PruneOptions, PruneReport};
use coffer_domain::storage::ObjectKey;

use crate::crypto::{self, ChunkId};
use crate::error::EngineError;
use crate::index::{Index, IndexedPack, open_index, seal_index};
use crate::lock::{self, RepoLock};
use crate::pack::{BlobEntry, BlobKind, PackWriter, pack_key};
use crate::tree::NodeKind;
use crate::{Repository, key};

/// New packs are stored once they reach this size (as backups do).
const PACK_TARGET: usize = 8 * 1024 * 1024;

/// Runs a prune under the exclusive lock.
///
/// # Errors
/// `Busy` when another prune holds the repository; `Damaged` when a snapshot or tree
/// cannot be read (nothing is deleted then); `Cancelled`; storage failures.
pub async fn run(
    repo: &Arc<Repository>,
    options: PruneOptions,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<PruneReport, EngineError> {
    let lock = RepoLock::exclusive(repo.store.clone(), repo.lock_timings, "prune", cancel).await?;
    let result = prune(repo, options, progress, cancel, &lock).await;
    lock.release().await;
    if !options.dry_run {
        repo.drop_cache();
        if let Err(e) = repo.reload_index().await {
            tracing::warn!(error = %e, "could not reload the index after a prune");
        }
    }
    result
}

/// What to do with one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Delete,
    Repack,
}

struct Loaded {
    /// Index objects and the packs each lists.
    objects: Vec<(ObjectKey, Vec<IndexedPack>)>,
    /// The index as readers see it (first listing of a blob wins).
    index: Index,
    /// Every pack in storage and its size.
    sizes: HashMap<[u8; 32], u64>,
}

async fn load(repo: &Repository) -> Result<Loaded, EngineError> {
    let mut objects = Vec::new();
    let mut index = Index::default();
    for k in repo.store.list("index/").await? {
        let sealed = repo
            .store
            .get(&k)
            .await?
            .ok_or_else(|| EngineError::Corrupt(format!("{k} vanished")))?;
        let packs = open_index(&repo.keys, &sealed)?;
        for (pack, entries) in &packs {
            for e in entries {
                index.insert(*pack, *e);
            }
        }
        objects.push((k, packs));
    }
    index.finish();
    let mut sizes = HashMap::new();
    for (k, size) in repo.store.list_sized("data/").await? {
        if let Some(id) = k
            .as_str()
            .rsplit('/')
            .next()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
        {
            sizes.insert(id, size);
        }
    }
    Ok(Loaded {
        objects,
        index,
        sizes,
    })
}

/// The live set: every tree and chunk some snapshot references.
async fn mark(repo: &Repository, cancel: &Cancel) -> Result<(u64, HashSet<ChunkId>), EngineError> {
    let mut live = HashSet::new();
    let snapshots = repo.store.list("snapshots/").await?;
    let mut stack = Vec::new();
    let mut kept = 0;
    for k in &snapshots {
        let id = k.as_str().trim_start_matches("snapshots/");
        let doc = match repo.load_snapshot(id).await {
            Ok(doc) => doc,
            // Forgotten since the listing (a deletion does not wait for the lock): its
            // data may go.
            Err(EngineError::NotFound(_)) => continue,
            Err(e) => {
                return Err(EngineError::Damaged(format!(
                    "snapshot {id} cannot be read ({e}); prune deletes nothing until it is \
                     forgotten or readable again"
                )));
            }
        };
        stack.push((id.to_owned(), doc.root()?));
        kept += 1;
    }
    while let Some((snapshot, tree)) = stack.pop() {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        if !live.insert(tree) {
            continue;
        }
        let nodes = repo.tree(&tree).await.map_err(|e| {
            EngineError::Damaged(format!(
                "snapshot {snapshot}: a tree cannot be read ({e}); prune deletes nothing \
                 until the snapshot is forgotten or repaired"
            ))
        })?;
        for node in nodes {
            match node.kind {
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        stack.push((snapshot.clone(), sub));
                    }
                }
                NodeKind::File => live.extend(node.content),
                NodeKind::Symlink => {}
            }
        }
    }
    Ok((kept, live))
}

async fn prune(
    repo: &Arc<Repository>,
    options: PruneOptions,
    progress: &Progress,
    cancel: &Cancel,
    lock: &RepoLock,
) -> Result<PruneReport, EngineError> {
    if !options.dry_run {
        lock::remove_stale(repo.store.as_ref(), repo.lock_timings.stale).await?;
    }
    // What other processes committed before the lock was taken.
    repo.drop_cache();
    repo.reload_index().await?;
    let loaded = load(repo).await?;
    let (snapshots, live) = mark(repo, cancel).await?;
    let index = &loaded.index;

    // Live bytes per pack, at the locations readers use.
    let mut live_bytes: HashMap<[u8; 32], u64> = HashMap::new();
    let mut live_in: HashMap<[u8; 32], Vec<BlobEntry>> = HashMap::new();
    for (id, pack, entry) in index.iter() {
        if live.contains(id) {
            *live_bytes.entry(*pack).or_default() += u64::from(entry.length);
            live_in.entry(*pack).or_default().push(entry);
        }
    }
    // A live blob in a pack that is not in storage: the repository is damaged already,
    // and repacking around it could hide that. Stop.
    for pack in live_bytes.keys() {
        if !loaded.sizes.contains_key(pack) {
            return Err(EngineError::Damaged(format!(
                "pack {} holds data snapshots use but is missing from storage; run \
                 `coffer check` and forget the damaged snapshots before pruning",
                hex::encode(pack)
            )));
        }
    }
    let indexed: HashSet<[u8; 32]> = index.packs.iter().copied().collect();
    // Blob bytes per pack (headers and trailers are not garbage): every entry the
    // indexes list for it, each blob once even if listed twice.
    let mut blob_bytes: HashMap<[u8; 32], u64> = HashMap::new();
    let mut counted: HashSet<([u8; 32], u64)> = HashSet::new();
    for (_, packs) in &loaded.objects {
        for (pack, entries) in packs {
            for e in entries {
                if counted.insert((*pack, e.offset)) {
                    *blob_bytes.entry(*pack).or_default() += u64::from(e.length);
                }
            }
        }
    }
    let threshold = u64::from(options.repack_threshold_percent.min(100));
    let mut fates: HashMap<[u8; 32], Fate> = HashMap::new();
    let mut report = PruneReport {
        dry_run: options.dry_run,
        snapshots,
        packs_before: loaded.sizes.len() as u64,
        ..PruneReport::default()
    };
    for pack in loaded.sizes.keys() {
        let used = live_bytes.get(pack).copied().unwrap_or(0);
        let blobs = blob_bytes.get(pack).copied().unwrap_or(0).max(used);
        let fate = if !indexed.contains(pack) {
            report.orphan_packs_deleted += 1;
            Fate::Delete
        } else if used == 0 {
            report.packs_deleted += 1;
            Fate::Delete
        } else if threshold < 100 && blobs > used && (blobs - used) * 100 >= threshold * blobs {
            report.packs_repacked += 1;
            Fate::Repack
        } else {
            Fate::Keep
        };
        fates.insert(*pack, fate);
    }
    // Indexed packs missing from storage with nothing live in them: drop their entries.
    let gone = |pack: &[u8; 32]| !matches!(fates.get(pack), Some(Fate::Keep));
    report.blobs_removed = index
        .iter()
        .filter(|(id, pack, _)| !live.contains(*id) && gone(pack))
        .count() as u64;
    let repack: Vec<[u8; 32]> = fates
        .iter()
        .filter(|(_, f)| **f == Fate::Repack)
        .map(|(p, _)| *p)
        .collect();
    let repack_bytes: u64 = repack.iter().filter_map(|p| live_bytes.get(p)).sum();
    progress.set_totals(
        fates.values().filter(|f| **f != Fate::Keep).count() as u64,
        repack_bytes,
    );
    progress.log.info(format!(
        "{} packs hold nothing a snapshot uses and go, {} are mostly unused and are \
         repacked ({} still used in them), {} stay as they are{}",
        fates.values().filter(|f| **f == Fate::Delete).count(),
        repack.len(),
        coffer_domain::units::human_bytes(repack_bytes),
        fates.values().filter(|f| **f == Fate::Keep).count(),
        if options.dry_run {
            " (dry run: nothing changes)"
        } else {
            ""
        }
    ));
    report.bytes_before = stored_total(repo).await?;
    if options.dry_run {
        let freed: u64 = fates
            .iter()
            .filter(|(_, f)| **f != Fate::Keep)
            .map(|(p, _)| loaded.sizes[p])
            .sum();
        report.bytes_after = report.bytes_before.saturating_sub(freed) + repack_bytes;
        return Ok(report);
    }

    // Repack: copy live blobs into new packs; on any failure remove the new packs.
    let mut written: Vec<IndexedPack> = Vec::new();
    let copied = repack_packs(repo, &repack, &live_in, progress, cancel, &mut written).await;
    if let Err(e) = copied {
        for (pack, _) in &written {
            let _ = repo.store.delete(&key(&pack_key(pack))?).await;
        }
        return Err(e);
    }
    report.packs_written = written.len() as u64;

    // Commit point: from here the prune completes (no cancel), in crash-safe order.
    let affected: Vec<&(ObjectKey, Vec<IndexedPack>)> = loaded
        .objects
        .iter()
        .filter(|(_, packs)| packs.iter().any(|(p, _)| gone(p)))
        .collect();
    let mut survivors: Vec<IndexedPack> = Vec::new();
    for (_, packs) in &affected {
        survivors.extend(packs.iter().filter(|(p, _)| !gone(p)).cloned());
    }
    survivors.extend(written);
    if !survivors.is_empty() {
        let sealed = seal_index(&repo.keys, repo.encrypt, &survivors)?;
        let k = key(&format!("index/{}", hex::encode(crypto::random::<32>()?)))?;
        lock.ensure_held()?;
        repo.store.put(&k, Bytes::from(sealed)).await?;
    }
    for (k, _) in &affected {
        lock.ensure_held()?;
        repo.store.delete(k).await?;
    }
    for (pack, fate) in &fates {
        if *fate != Fate::Keep {
            lock.ensure_held()?;
            repo.store.delete(&key(&pack_key(pack))?).await?;
            progress.add(1, 0);
        }
    }
    report.bytes_after = stored_total(repo).await?;
    tracing::info!(
        snapshots = report.snapshots,
        deleted = report.packs_deleted,
        repacked = report.packs_repacked,
        orphans = report.orphan_packs_deleted,
        freed = report.bytes_freed(),
        "prune finished"
    );
    Ok(report)
}

/// Copies the live blobs of `packs` into new packs (data and trees apart, as backups
/// keep them), recording each stored pack in `written`.
async fn repack_packs(
    repo: &Repository,
    packs: &[[u8; 32]],
    live_in: &HashMap<[u8; 32], Vec<BlobEntry>>,
    progress: &Progress,
    cancel: &Cancel,
    written: &mut Vec<IndexedPack>,
) -> Result<(), EngineError> {
    let mut writers: [Option<PackWriter>; 2] = [None, None];
    for pack in packs {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let bytes = repo
            .store
            .get(&key(&pack_key(pack))?)
            .await?
            .ok_or_else(|| EngineError::Damaged(format!("pack {} vanished", hex::encode(pack))))?;
        let mut entries = live_in.get(pack).cloned().unwrap_or_default();
        entries.sort_by_key(|e| e.offset);
        for e in entries {
            let start = usize::try_from(e.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(e.length as usize);
            let sealed = bytes.get(start..end).ok_or_else(|| {
                EngineError::Damaged(format!("pack {} is truncated", hex::encode(pack)))
            })?;
            // Authenticate before copying: damage must never be carried into new packs.
            crypto::open_blob(&repo.keys, &e.id, e.raw_length as usize, sealed).map_err(|err| {
                EngineError::Damaged(format!(
                    "pack {}: a live blob fails authentication ({err}); prune stopped \
                     without deleting anything — run `coffer check`",
                    hex::encode(pack)
                ))
            })?;
            let slot = &mut writers[usize::from(e.kind == BlobKind::Tree)];
            let writer = match slot {
                Some(w) => w,
                None => slot.insert(PackWriter::new(crypto::random()?, PACK_TARGET * 2)),
            };
            writer.add_sealed(e.id, e.kind, e.raw_length as usize, sealed)?;
            progress.add(0, u64::from(e.length));
            if writer.len() >= PACK_TARGET {
                let full = slot.take().expect("writer");
                store_pack(repo, full, written).await?;
            }
        }
    }
    for slot in &mut writers {
        if let Some(w) = slot.take().filter(|w| !w.is_empty()) {
            store_pack(repo, w, written).await?;
        }
    }
    Ok(())
}

async fn store_pack(
    repo: &Repository,
    pack: PackWriter,
    written: &mut Vec<IndexedPack>,
) -> Result<(), EngineError> {
    let id = pack.id;
    let (bytes, entries) = pack.finish(&repo.keys, repo.encrypt)?;
    repo.store
        .put(&key(&pack_key(&id))?, Bytes::from(bytes))
        .await?;
    written.push((id, entries));
    Ok(())
}

/// The bytes the repository occupies: every object but the locks.
pub async fn stored_total(repo: &Repository) -> Result<u64, EngineError> {
    Ok(repo
        .store
        .list_sized("")
        .await?
        .iter()
        .filter(|(k, _)| !k.as_str().starts_with("locks/"))
        .map(|(_, size)| size)
        .sum())
}
