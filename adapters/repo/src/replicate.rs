//! Replication: copying the repository into another object store (a replica), which
//! then is a complete repository of the same format that the same master key opens.
//!
//! 1. **Locks.** A shared lock on the repository (a prune must not delete what is being
//!    copied) and a shared lock on the replica (like a backup: it adds data). Lock
//!    objects are never copied.
//! 2. **Identity.** The replica's `config` must be the repository's (same repository id,
//!    authenticated with the same keys) or absent; a storage that holds anything of a
//!    repository without a `config` (or another repository) is refused before anything
//!    is written. Then `config` and `keys/data` are written when they differ, first: the
//!    replica is an (empty) repository from the first write on, and a key rotation of the
//!    repository reaches it at the next copy.
//! 3. **List, newest layer first.** The repository's snapshots, then its indexes, then its
//!    packs: a backup commits packs, then its index, then its snapshot, so every snapshot
//!    listed has its index and packs in the later listings. The replica's objects are
//!    listed with their sizes; an object the replica holds with the same size is not sent
//!    again (every put is atomic, so an object is there whole or not at all — which is
//!    what makes a copy interrupted by `kill -9` resume without re-sending).
//! 4. **Copy in dependency order.** Packs, then indexes, then snapshots, a few objects in
//!    flight, each read back from the replica and compared (SHA-256) with what was sent.
//!    A snapshot is only copied when its bytes match its id (its checksum). So the
//!    replica never holds a snapshot before everything it references: it is consistent
//!    at every moment.
//! 5. **Mirror deletions** (not for an append-only replica, which never deletes anything
//!    of the repository — only its own lock object goes when the copy ends): snapshots the
//!    repository no longer has (its retention removed them) are deleted from the
//!    replica, and the replica is garbage-collected by the ordinary prune, under its own
//!    exclusive lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use coffer_domain::engine::{Cancel, Progress, PruneOptions};
use coffer_domain::replicas::{CopyOptions, CopyReport};
use coffer_domain::storage::{ObjectKey, ObjectStore};
use futures::{StreamExt as _, TryStreamExt as _};

use crate::error::EngineError;
use crate::lock::RepoLock;
use crate::{CONFIG_OBJECT, KEYS_OBJECT, Repository, crypto, key, prune, read_config};

/// Objects sent at once: enough to hide the latency of a remote store, few enough that
/// memory stays bounded (packs are a few MiB each, held twice: sent and read back).
const IN_FLIGHT: usize = 4;

/// The layers of the format, in the order they are copied.
const LAYERS: [&str; 3] = ["data/", "index/", "snapshots/"];

/// Copies `repo` into `dest` (see the module documentation).
///
/// # Errors
/// `Invalid` when `dest` holds another repository or something else; `Damaged` when an
/// object reads back different from what was written; `Cancelled`; `Busy`; storage
/// failures; the replica's prune's errors.
pub async fn run(
    repo: &Arc<Repository>,
    dest: Arc<dyn ObjectStore>,
    options: CopyOptions,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<CopyReport, EngineError> {
    let source_lock = repo.shared_lock("copy", cancel).await?;
    let result = copy_locked(repo, &dest, options, progress, cancel, &source_lock).await;
    source_lock.release().await;
    let mut report = result?;
    if !options.append_only {
        let replica = Arc::new(repo.beside(dest));
        let pruned = prune::run(
            &replica,
            PruneOptions {
                repack_threshold_percent: options.repack_threshold_percent,
                dry_run: false,
            },
            &Progress::default(),
            cancel,
        )
        .await?;
        report.prune = Some(pruned);
    }
    Ok(report)
}

async fn copy_locked(
    repo: &Arc<Repository>,
    dest: &Arc<dyn ObjectStore>,
    options: CopyOptions,
    progress: &Progress,
    cancel: &Cancel,
    source_lock: &RepoLock,
) -> Result<CopyReport, EngineError> {
    let source = repo.store.clone();
    let config_key = key(CONFIG_OBJECT)?;
    let keys_key = key(KEYS_OBJECT)?;
    let ours = read_config(source.as_ref(), &repo.keys).await?;
    let config = source
        .get(&config_key)
        .await?
        .ok_or_else(|| EngineError::NotFound("the repository has no config object".into()))?;
    let wrapped = source
        .get(&keys_key)
        .await?
        .ok_or_else(|| EngineError::NotFound("the repository has no key object".into()))?;
    check_identity(repo, dest.as_ref(), &ours.id, &config).await?;

    let dest_lock = RepoLock::shared(dest.clone(), repo.lock_timings, "copy", cancel).await?;
    let result = copy_objects(
        repo,
        dest,
        options,
        progress,
        cancel,
        [source_lock, &dest_lock],
        [(config_key, config), (keys_key, wrapped)],
    )
    .await;
    dest_lock.release().await;
    result
}

/// Refuses a destination that holds another repository, or objects of one without its
/// `config` (not a replica this code wrote: it writes `config` first).
async fn check_identity(
    repo: &Repository,
    dest: &dyn ObjectStore,
    id: &str,
    config: &Bytes,
) -> Result<(), EngineError> {
    let foreign = || {
        EngineError::Invalid(
            "the replica's storage holds another repository (or objects that are not a \
             replica of this one); choose an empty directory or bucket; nothing was written"
                .into(),
        )
    };
    match dest.get(&key(CONFIG_OBJECT)?).await? {
        Some(theirs) if theirs == *config => Ok(()),
        Some(_) => match read_config(dest, &repo.keys).await {
            Ok(doc) if doc.id == id => Ok(()),
            Ok(_) | Err(EngineError::Damaged(_) | EngineError::Invalid(_)) => Err(foreign()),
            Err(e) => Err(e),
        },
        None => {
            if dest.exists(&key(KEYS_OBJECT)?).await? {
                return Err(foreign());
            }
            for layer in LAYERS {
                if !dest.list(layer).await?.is_empty() {
                    return Err(foreign());
                }
            }
            Ok(())
        }
    }
}

/// What became of one object to send.
enum Sent {
    Copied(u64),
    /// Gone from the repository since it was listed (a forgotten snapshot, the packs of
    /// a backup that stopped): nothing to copy.
    Vanished,
    /// A snapshot whose bytes do not match its id.
    Damaged,
}

async fn copy_objects(
    repo: &Arc<Repository>,
    dest: &Arc<dyn ObjectStore>,
    options: CopyOptions,
    progress: &Progress,
    cancel: &Cancel,
    locks: [&RepoLock; 2],
    head: [(ObjectKey, Bytes); 2],
) -> Result<CopyReport, EngineError> {
    let source = repo.store.clone();
    let mut report = CopyReport {
        listed_at: chrono::Utc::now(),
        snapshots: 0,
        replica_snapshots: 0,
        objects_copied: 0,
        bytes_copied: 0,
        objects_present: 0,
        snapshots_deleted: 0,
        damaged_skipped: Vec::new(),
        prune: None,
    };
    // The config, then the key: a repository from the first write on.
    for (k, bytes) in head {
        if dest.get(&k).await?.as_ref() == Some(&bytes) {
            report.objects_present += 1;
            continue;
        }
        let len = bytes.len() as u64;
        put_checked(dest.as_ref(), &k, bytes).await?;
        report.objects_copied += 1;
        report.bytes_copied += len;
    }

    // Newest layer first (see the module documentation).
    let mut listed: HashMap<&str, Vec<(ObjectKey, u64)>> = HashMap::new();
    for layer in LAYERS.iter().rev() {
        listed.insert(layer, source.list_sized(layer).await?);
    }
    let snapshots: HashSet<String> = listed
        .get("snapshots/")
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str().to_owned())
        .collect();
    report.snapshots = snapshots.len() as u64;
    let mut theirs: HashMap<String, u64> = HashMap::new();
    for layer in LAYERS {
        for (k, size) in dest.list_sized(layer).await? {
            theirs.insert(k.as_str().to_owned(), size);
        }
    }
    let mut plan: Vec<(&str, Vec<(ObjectKey, u64)>)> = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    for layer in LAYERS {
        let missing: Vec<(ObjectKey, u64)> = listed
            .remove(layer)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, size)| {
                let present = theirs.get(k.as_str()) == Some(size);
                if present {
                    report.objects_present += 1;
                }
                !present
            })
            .collect();
        count += missing.len() as u64;
        bytes += missing.iter().map(|(_, s)| s).sum::<u64>();
        plan.push((layer, missing));
    }
    progress.set_totals(count, bytes);
    progress.log.info(format!(
        "the replica lacks {count} objects ({}); {} it holds already are not sent again",
        coffer_domain::units::human_bytes(bytes),
        report.objects_present
    ));

    let mut on_replica: HashSet<String> = theirs
        .keys()
        .filter(|k| k.starts_with("snapshots/"))
        .cloned()
        .collect();

    for (layer, objects) in plan {
        for lock in locks {
            lock.ensure_held()?;
        }
        let is_snapshot = layer == "snapshots/";
        let mut sent = futures::stream::iter(objects)
            .map(|(k, _)| {
                let (source, dest) = (source.clone(), dest.clone());
                async move {
                    if cancel.is_cancelled() {
                        return Err(EngineError::Cancelled);
                    }
                    let outcome = copy_one(source.as_ref(), dest.as_ref(), &k, is_snapshot).await;
                    outcome.map(|o| (k, o))
                }
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some((k, outcome)) = sent.try_next().await? {
            match outcome {
                Sent::Copied(len) => {
                    progress.add(1, len);
                    report.objects_copied += 1;
                    report.bytes_copied += len;
                    if is_snapshot {
                        on_replica.insert(k.as_str().to_owned());
                    }
                }
                Sent::Vanished => progress.add(1, 0),
                Sent::Damaged => {
                    tracing::warn!(object = %k, "not copied to the replica: it fails its checksum in the repository");
                    progress.add(1, 0);
                    report
                        .damaged_skipped
                        .push(k.as_str().trim_start_matches("snapshots/").to_owned());
                }
            }
        }
    }

    if !options.append_only {
        // The repository's retention removed these; the prune that follows frees their
        // data on the replica.
        let gone: Vec<String> = on_replica
            .iter()
            .filter(|k| !snapshots.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            dest.delete(&key(&k)?).await?;
            on_replica.remove(&k);
            report.snapshots_deleted += 1;
        }
    }
    report.replica_snapshots = on_replica.len() as u64;
    Ok(report)
}

async fn copy_one(
    source: &dyn ObjectStore,
    dest: &dyn ObjectStore,
    k: &ObjectKey,
    is_snapshot: bool,
) -> Result<Sent, EngineError> {
    let Some(bytes) = source.get(k).await? else {
        return Ok(Sent::Vanished);
    };
    if is_snapshot
        && hex::encode(crypto::sha256(&bytes)) != k.as_str().trim_start_matches("snapshots/")
    {
        return Ok(Sent::Damaged);
    }
    let len = bytes.len() as u64;
    put_checked(dest, k, bytes).await?;
    Ok(Sent::Copied(len))
}

/// Writes `bytes` and reads them back: the replica must return exactly what was sent.
async fn put_checked(
    dest: &dyn ObjectStore,
    k: &ObjectKey,
    bytes: Bytes,
) -> Result<(), EngineError> {
    let digest = crypto::sha256(&bytes);
    dest.put(k, bytes).await?;
    let back = dest.get(k).await?.ok_or_else(|| {
        EngineError::Damaged(format!("the replica lost {k} right after it was written"))
    })?;
    if crypto::sha256(&back) != digest {
        return Err(EngineError::Damaged(format!(
            "{k} reads back from the replica different from what was written"
        )));
    }
    Ok(())
}
