//! Verification: structure (snapshot checksum, trees readable, every referenced chunk
//! indexed and its pack present) and, with `read_data`, every byte authenticated.
//!
//! Progress: without `read_data` the work is reading the trees, so the totals are the
//! snapshot's files and bytes (from its stats, corrected by the walk) and each file found
//! counts as done. With `read_data` the work is reading packs: `files_*` count the chunks
//! to authenticate and `bytes_*` their stored (sealed) bytes; the totals are set once the
//! trees are read. Cancellation is checked between directories and between packs.

use std::collections::{BTreeMap, BTreeSet};

use coffer_domain::engine::{Cancel, Progress, VerifyReport};

use crate::error::EngineError;
use crate::{Repository, collect_refs, crypto, key, pack::pack_key};

/// # Errors
/// `NotFound` for an unknown snapshot; `Cancelled`; storage failures. Damage is reported
/// in the result, not as an error.
pub async fn run(
    repo: &Repository,
    snapshot: &str,
    read_data: bool,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<VerifyReport, EngineError> {
    let mut report = VerifyReport {
        snapshot: snapshot.to_owned(),
        read_data,
        problems: Vec::new(),
        damaged_files: Vec::new(),
        bytes_read: 0,
    };
    if let Err(problem) = repo.check_config().await? {
        report.problems.push(problem);
    }
    let doc = match repo.load_snapshot(snapshot).await {
        Ok(doc) => doc,
        Err(EngineError::Damaged(m) | EngineError::Corrupt(m)) => {
            report.problems.push(m);
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    if !read_data {
        progress.set_totals(doc.files, doc.bytes);
    }
    let walk_progress = (!read_data).then_some(progress);
    let refs = match collect_refs(repo, &doc.root()?, String::new(), walk_progress, cancel).await {
        Ok(refs) => refs,
        Err(EngineError::Damaged(m) | EngineError::Corrupt(m)) => {
            report
                .problems
                .push(format!("a directory listing is damaged: {m}"));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let index = repo.index();
    let mut damaged: BTreeSet<String> = BTreeSet::new();
    // Chunks grouped by pack, to read each pack once.
    let mut by_pack: BTreeMap<[u8; 32], Vec<crypto::ChunkId>> = BTreeMap::new();
    for (chunk, paths) in &refs.data {
        if let Some((pack, _)) = index.get(chunk) {
            by_pack.entry(*pack).or_default().push(*chunk);
        } else {
            report.problems.push(format!(
                "chunk {} is not in the index",
                hex::encode(&chunk[..8])
            ));
            damaged.extend(paths.iter().cloned());
        }
    }
    if read_data {
        let chunks = by_pack.values().map(|c| c.len() as u64).sum();
        let bytes = by_pack
            .values()
            .flatten()
            .filter_map(|c| index.get(c))
            .map(|(_, e)| u64::from(e.length))
            .sum();
        progress.set_totals(chunks, bytes);
    } else if (refs.files, refs.bytes) != (doc.files, doc.bytes) {
        // The stats disagree with the tree; the tree is what was counted as done.
        progress.set_totals(refs.files, refs.bytes);
    }
    // What one pack's chunks add to the progress of a data check.
    let pack_work = |chunks: &[crypto::ChunkId]| {
        let bytes = chunks
            .iter()
            .filter_map(|c| index.get(c))
            .map(|(_, e)| u64::from(e.length))
            .sum();
        (chunks.len() as u64, bytes)
    };
    for (pack, chunks) in &by_pack {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let k = key(&pack_key(pack))?;
        if !read_data {
            if !repo.store.exists(&k).await? {
                report
                    .problems
                    .push(format!("pack {} is missing", hex::encode(pack)));
                for c in chunks {
                    damaged.extend(refs.data[c].iter().cloned());
                }
            }
            continue;
        }
        let Some(bytes) = repo.store.get(&k).await? else {
            report
                .problems
                .push(format!("pack {} is missing", hex::encode(pack)));
            for c in chunks {
                damaged.extend(refs.data[c].iter().cloned());
            }
            let (n, b) = pack_work(chunks);
            progress.add(n, b);
            continue;
        };
        report.bytes_read += bytes.len() as u64;
        if let Err(e) = crate::pack::read_header(&repo.keys, &bytes, pack) {
            report.problems.push(e.to_string());
        }
        for c in chunks {
            let (_, entry) = index.get(c).expect("indexed above");
            let start = usize::try_from(entry.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(entry.length as usize);
            let ok = end <= bytes.len()
                && crypto::open_blob(&repo.keys, c, entry.raw_length as usize, &bytes[start..end])
                    .is_ok();
            if !ok {
                report.problems.push(format!(
                    "chunk {} in pack {} fails authentication",
                    hex::encode(&c[..8]),
                    hex::encode(pack)
                ));
                damaged.extend(refs.data[c].iter().cloned());
            }
            progress.add(1, u64::from(entry.length));
        }
    }
    report.damaged_files = damaged.into_iter().collect();
    Ok(report)
}
