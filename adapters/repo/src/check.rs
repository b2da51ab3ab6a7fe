//! Repository check: the whole repository at once, for scheduled verification.
//!
//! Structure, always: every snapshot object passes its checksum, every tree of every
//! snapshot is readable, every chunk a file names is indexed, and every pack the index
//! names exists in storage and is long enough for its entries. Data, for one slice: the
//! packs whose id falls in the slice (`first 4 bytes of the id mod count == index`) are
//! read whole; their header is authenticated and matches the index, and every blob in
//! them is authenticated against its chunk id. Running slices `0..count` in turn reads
//! every stored byte once. Damage is reported (with the snapshots it touches), not
//! raised as an error.
//!
//! Progress: `files_*` count packs to read, `bytes_*` their stored bytes.

use std::collections::{BTreeSet, HashMap, HashSet};

use coffer_domain::engine::{Cancel, CheckReport, CheckSlice, Progress};

use crate::crypto::{self, ChunkId};
use crate::error::EngineError;
use crate::tree::NodeKind;
use crate::{Repository, key, pack};

/// Whether a pack belongs to a slice.
fn in_slice(pack: &[u8; 32], slice: CheckSlice) -> bool {
    let n = u32::from_le_bytes([pack[0], pack[1], pack[2], pack[3]]);
    slice.count > 0 && n % slice.count == slice.index % slice.count
}

/// # Errors
/// `Cancelled`; storage failures. Damage is in the report.
pub async fn run(
    repo: &Repository,
    slice: Option<CheckSlice>,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<CheckReport, EngineError> {
    let mut report = CheckReport::default();
    if let Err(problem) = repo.check_config().await? {
        report.problems.push(problem);
    }
    let index = repo.reread_index().await?;
    let sizes: HashMap<[u8; 32], u64> = repo
        .store
        .list_sized("data/")
        .await?
        .into_iter()
        .filter_map(|(k, size)| {
            let id = hex::decode(k.as_str().rsplit('/').next()?).ok()?;
            Some((<[u8; 32]>::try_from(id).ok()?, size))
        })
        .collect();
    report.packs_total = sizes.len() as u64;

    // Packs the index names: present and long enough.
    let mut bad: HashSet<ChunkId> = HashSet::new();
    let mut per_pack: HashMap<[u8; 32], Vec<(ChunkId, pack::BlobEntry)>> = HashMap::new();
    for (id, pack, entry) in index.iter() {
        per_pack.entry(*pack).or_default().push((*id, entry));
    }
    let mut missing: BTreeSet<[u8; 32]> = BTreeSet::new();
    for (pack_id, entries) in &per_pack {
        match sizes.get(pack_id) {
            None => {
                missing.insert(*pack_id);
                bad.extend(entries.iter().map(|(id, _)| *id));
            }
            Some(&size) => {
                if entries
                    .iter()
                    .any(|(_, e)| e.offset + u64::from(e.length) > size)
                {
                    report.problems.push(format!(
                        "pack {} is shorter than its index says",
                        hex::encode(pack_id)
                    ));
                    bad.extend(entries.iter().map(|(id, _)| *id));
                }
            }
        }
    }
    for pack_id in &missing {
        report
            .problems
            .push(format!("pack {} is missing", hex::encode(pack_id)));
    }

    // Data: read the slice's packs — every pack an index names, also those that hold
    // only second copies, which a later index order could make the ones readers use.
    if let Some(slice) = slice {
        let indexed: HashSet<[u8; 32]> = index.packs.iter().copied().collect();
        let chosen: Vec<([u8; 32], u64)> = sizes
            .iter()
            .filter(|(p, _)| in_slice(p, slice) && indexed.contains(*p))
            .map(|(p, s)| (*p, *s))
            .collect();
        progress.set_totals(chosen.len() as u64, chosen.iter().map(|(_, s)| s).sum());
        progress.log.info(format!(
            "every snapshot's structure checked; re-reading data slice {} of {}: {} packs, {}",
            slice.index + 1,
            slice.count,
            chosen.len(),
            coffer_domain::units::human_bytes(chosen.iter().map(|(_, s)| s).sum())
        ));
        for (pack_id, size) in chosen {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            let Some(bytes) = repo.store.get(&key(&pack::pack_key(&pack_id))?).await? else {
                report.problems.push(format!(
                    "pack {} vanished while checking",
                    hex::encode(pack_id)
                ));
                continue;
            };
            report.packs_read += 1;
            report.bytes_read += bytes.len() as u64;
            let used = per_pack.get(&pack_id).map_or(&[][..], Vec::as_slice);
            // Every blob the authenticated header lists; what the index puts in this pack
            // must be among them.
            let header = match pack::read_header(&repo.keys, &bytes, &pack_id) {
                Ok(header) => header,
                Err(e) => {
                    report.problems.push(e.to_string());
                    bad.extend(used.iter().map(|(id, _)| *id));
                    progress.add(1, size);
                    continue;
                }
            };
            let listed: HashMap<ChunkId, pack::BlobEntry> =
                header.iter().map(|e| (e.id, *e)).collect();
            for (id, e) in used {
                if listed.get(id) != Some(e) {
                    report.problems.push(format!(
                        "pack {}: its header does not list chunk {} where the index puts it",
                        hex::encode(pack_id),
                        hex::encode(&id[..8])
                    ));
                    bad.insert(*id);
                }
            }
            for e in &header {
                let start = usize::try_from(e.offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(e.length as usize);
                let ok = bytes.get(start..end).is_some_and(|sealed| {
                    crypto::open_blob(&repo.keys, &e.id, e.raw_length as usize, sealed).is_ok()
                });
                if !ok {
                    report.problems.push(format!(
                        "chunk {} in pack {} fails authentication",
                        hex::encode(&e.id[..8]),
                        hex::encode(pack_id)
                    ));
                    if used.iter().any(|(id, _)| *id == e.id) {
                        bad.insert(e.id);
                    }
                }
            }
            progress.add(1, size);
        }
    } else {
        progress.set_totals(0, 0);
    }

    // Structure: every snapshot, every tree once; which snapshots touch bad data.
    let mut damaged: BTreeSet<String> = BTreeSet::new();
    let mut seen_trees: HashMap<ChunkId, bool> = HashMap::new();
    for k in repo.store.list("snapshots/").await? {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let id = k.as_str().trim_start_matches("snapshots/").to_owned();
        report.snapshots += 1;
        let root = match repo.load_snapshot(&id).await.and_then(|d| d.root()) {
            Ok(root) => root,
            Err(e) => {
                report.problems.push(format!("snapshot {id}: {e}"));
                damaged.insert(id);
                continue;
            }
        };
        if !tree_ok(
            repo,
            root,
            &index,
            &bad,
            &mut seen_trees,
            &mut report,
            cancel,
        )
        .await?
        {
            damaged.insert(id);
        }
    }
    report.trees = seen_trees.len() as u64;
    report.damaged_snapshots = damaged.into_iter().collect();
    Ok(report)
}

/// Whether the tree `root` and everything under it is intact; each tree is examined once
/// (its verdict remembered for the snapshots that share it).
async fn tree_ok(
    repo: &Repository,
    root: ChunkId,
    index: &crate::index::Index,
    bad: &HashSet<ChunkId>,
    seen: &mut HashMap<ChunkId, bool>,
    report: &mut CheckReport,
    cancel: &Cancel,
) -> Result<bool, EngineError> {
    // Iterative post-order: a tree is intact when it reads, names only good indexed
    // chunks, and all its subtrees are intact.
    let mut stack: Vec<(ChunkId, bool)> = vec![(root, false)];
    let mut children: HashMap<ChunkId, Vec<ChunkId>> = HashMap::new();
    while let Some((tree, expanded)) = stack.pop() {
        if seen.contains_key(&tree) && !expanded {
            continue;
        }
        if expanded {
            let ok = children
                .remove(&tree)
                .unwrap_or_default()
                .iter()
                .all(|c| seen.get(c).copied().unwrap_or(false))
                && seen.get(&tree).copied().unwrap_or(true);
            seen.insert(tree, ok);
            continue;
        }
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let nodes = if bad.contains(&tree) {
            Err(EngineError::Damaged("its data is damaged".into()))
        } else {
            repo.tree(&tree).await
        };
        let nodes = match nodes {
            Ok(nodes) => nodes,
            Err(e) => {
                report.problems.push(format!(
                    "tree {} cannot be read: {e}",
                    hex::encode(&tree[..8])
                ));
                seen.insert(tree, false);
                continue;
            }
        };
        let mut own_ok = true;
        let mut subs = Vec::new();
        for node in nodes {
            match node.kind {
                NodeKind::Dir => subs.extend(node.subtree),
                NodeKind::File => {
                    for c in &node.content {
                        if !index.contains(c) {
                            report.problems.push(format!(
                                "{}: chunk {} is not in the index",
                                node.display_name(),
                                hex::encode(&c[..8])
                            ));
                            own_ok = false;
                        } else if bad.contains(c) {
                            own_ok = false;
                        }
                    }
                }
                NodeKind::Symlink => {}
            }
        }
        // Provisional verdict for this tree alone; finalised once the subtrees are done.
        seen.insert(tree, own_ok);
        stack.push((tree, true));
        for s in &subs {
            if !seen.contains_key(s) {
                stack.push((*s, false));
            }
        }
        children.insert(tree, subs);
    }
    Ok(seen.get(&root).copied().unwrap_or(false))
}
