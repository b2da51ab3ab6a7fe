//! `coffer-repo`: the repository engine. It turns directories into encrypted,
//! deduplicated, verifiable snapshots in an object store, and back.
//!
//! # Repository format
//!
//! Version 2. Version 1 repositories (before the mode was part of the key material and
//! unencrypted objects carried MACs) are upgraded the first time they are opened (see
//! **Upgrade**). Trees (the directory listings) carry their own version: 2 since hard
//! links and extended attributes are kept; trees of version 1 are still read (see
//! **Trees**), so every repository written before restores as it did.
//!
//! All objects live in the object store (see `coffer_domain::storage::ObjectStore`):
//! whole-object put/get/list/delete, no rename, no directories — so a local disk, a NAS
//! mount and an S3 bucket are equal.
//!
//! | key | content |
//! | --- | --- |
//! | `config` | sealed JSON (like a snapshot): format, version, repository id, creation time. Required: a repository without it is refused (an unmounted share, a half copy) |
//! | `keys/data` | the key material (encryption key, chunk-id key, chunker seed, mode: encrypted, unencrypted, or legacy unencrypted), AES-256-GCM-wrapped under the 256-bit master key (`CFRKEY02 ‖ nonce ‖ ciphertext+tag`; version 1 had no mode and `CFRKEY01`) |
//! | `data/<xx>/<pack id>` | a pack: sealed blobs, then the sealed pack header, its length (u32 LE) and `CFP1` |
//! | `index/<id>` | sealed list of (pack id, blob entries) written by one backup |
//! | `snapshots/<sha256>` | sealed JSON snapshot: source, times, root tree, stats, warnings; the key is the SHA-256 of the stored bytes, which is also the checksum the catalog keeps |
//!
//! **Chunks.** File content is cut with FastCDC (min 512 KiB, average 1 MiB, max 4 MiB;
//! gear table XORed with a secret seed). A chunk's id is HMAC-SHA256 of its plaintext
//! under a secret id key, so someone with storage access but no key cannot test whether a
//! known file is stored. Dedup is by id across every snapshot of every source.
//!
//! **Sealing.** A blob is zstd-compressed when that makes it smaller, then encrypted with
//! AES-256-GCM under a key derived for that blob alone (`HMAC-SHA256(enc key, "coffer
//! blob" ‖ salt)`, 128 random salt bits stored before the ciphertext) with the chunk id as
//! associated data: every key encrypts exactly one message, so no nonce can repeat and
//! GCM's limits are never approached; a blob cannot be passed off as another chunk; and
//! blobs can move between packs (repacking) without re-encryption. Other objects (pack
//! headers, indexes, snapshots) are sealed the same way under a key derived from 256
//! random bits in their header, with their purpose in the derivation. A repository without
//! encryption (its mode, in the key material, so nobody without the key can change it)
//! stores blobs compressed only (the keyed chunk id, re-computed on read, authenticates
//! them) and other objects with an HMAC-SHA256 trailer under a key derived from the key
//! material, over header, purpose and body. Every read enforces the mode: an unencrypted
//! object in an encrypted repository, or one without a MAC, is refused as damaged — whoever
//! can write to the storage could make one (version 1 accepted a plain SHA-256 there, so an
//! index planted that way could have steered a prune into deleting live packs).
//!
//! **Upgrade** from version 1, on the first open with the master key: the mode is
//! recorded (encrypted if every index and snapshot is; legacy unencrypted if any is not —
//! their snapshots and pack headers keep their plain checksums, a snapshot's id being the
//! SHA-256 of its bytes, while their indexes are sealed again with MACs under the
//! exclusive lock); the config is sealed; the key material goes last. The repository's
//! mode then holds whatever `backup.encryption_enabled` says: a backup against it is
//! refused (restores work).
//!
//! **Packs.** A backup fills packs of about 4 MiB (a pack is stored once it passes 4 MiB,
//! so it holds at most one chunk more); trees go into packs of their own, so reading a
//! snapshot's structure never fetches file content.
//!
//! **Trees.** Each directory is a tree blob: a version byte, an entry count, then its
//! entries sorted by name (raw bytes). Each entry (all integers little-endian): kind (u8:
//! file, directory, symlink), name (u32 length + bytes), mode (`st_mode & 0o7777`), uid,
//! gid (u32), mtime and ctime (i64 nanoseconds), inode and size (u64), then the file's
//! chunk ids (u32 count + 32 bytes each), the subdirectory's tree id (32 bytes) or the
//! symlink's target (u32 length + bytes). Version 2 appends to every entry its device
//! (u64), its link count (u32) and its extended attributes (u32 count, then name and value,
//! each u32 length + bytes, sorted by name). A version 1 entry reads as link count 0
//! ("not recorded"): a backup whose parent entry is version 1 re-reads that file instead
//! of trusting the missing attributes.
//!
//! What a tree keeps of each entry, and what a restore gives back:
//! - **symlinks** with their own modification time (`utimensat(AT_SYMLINK_NOFOLLOW)`);
//! - **hard links**: files of one snapshot with the same device and inode and a link
//!   count above 1 are restored as one inode with several names (`linkat`); the content
//!   is read once per name but stored once (deduplication), and a restore of a part of
//!   the snapshot links the names that fall inside it;
//! - **extended attributes**: every attribute the system lists (`user.*`, `security.*`,
//!   and `trusted.*` when running as root) but its own `system.*` bookkeeping, of which
//!   the POSIX ACLs are kept (`system.posix_acl_access`, `system.posix_acl_default`, the
//!   kernel's binary form); a symlink's attributes are read and set only as root. A
//!   target that refuses one (a file system without them, a user without the right)
//!   gets the data anyway, and the restore's warnings name what was not set;
//! - **holes**: nothing is recorded — a restore writes no aligned 4 KiB block of zeros,
//!   so runs of zeros become holes where the target file system has them (a sparse disk
//!   image comes back sparse; a file that was all zeros on disk comes back sparse too);
//! - owner and group (set when restoring as root), mode with set-id and sticky bits,
//!   and modification times of files and directories (directories last).
//!
//! **Commit order.** A backup stores packs, then its index, then the snapshot object;
//! the catalog row comes last. Each put is atomic (fs: temporary file, fsync, rename,
//! fsync of the directory). A crash at any point leaves earlier snapshots intact; the
//! half-done snapshot is not listed; its packs are garbage for the next prune.
//!
//! **Recovery.** Storage plus the master key are enough: `snapshots/` lists every
//! snapshot and the catalog can be rebuilt from it.
//!
//! **Replicas.** A replica is the same format in another store, written by `replicate`
//! (packs, then indexes, then snapshots, each read back; see that module): it opens with
//! the same master key, alone.

mod backup;
mod check;
mod crypto;
mod error;
mod export;
mod index;
mod lock;
mod pack;
mod prune;
mod replicate;
mod restore;
mod snapshot;
mod tree;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use bytes::Bytes;
use coffer_domain::engine::{
    ArchiveFormat, BackupRequest, Cancel, CheckReport, CheckSlice, EngineFailure, EntryInfo,
    EntryKind, Progress, PruneOptions, PruneReport, RestoreReport, SnapshotEngine, SnapshotSummary,
    VerifyReport,
};
use coffer_domain::storage::{ObjectKey, ObjectStore};
use futures::{StreamExt as _, TryStreamExt as _};

pub use crypto::Keys;
pub use error::EngineError;
pub use lock::LockTimings;

use crate::index::Index;
use crate::pack::pack_key;
use crate::snapshot::SnapshotDoc;
use crate::tree::{Node, NodeKind};

const KEYS_OBJECT: &str = "keys/data";
const CONFIG_OBJECT: &str = "config";

/// Runs `f`, adding its duration to `phase` of the operation's timings.
pub(crate) fn timed<T>(
    progress: &coffer_domain::engine::Progress,
    phase: coffer_domain::engine::Phase,
    f: impl FnOnce() -> T,
) -> T {
    let started = std::time::Instant::now();
    let out = f();
    progress.phases.add(phase, started.elapsed());
    out
}

fn key(raw: &str) -> Result<ObjectKey, EngineError> {
    ObjectKey::parse(raw).map_err(|e| EngineError::Other(format!("object key: {e}")))
}

/// An open repository.
pub struct Repository {
    store: Arc<dyn ObjectStore>,
    keys: Keys,
    /// Whether the repository encrypts (its mode, from its key material).
    encrypt: bool,
    /// Whether the configuration asks for encryption: a backup is refused when this
    /// differs from the repository's mode.
    wanted_encrypt: bool,
    /// The index, and the index objects it was read from (as listed: sorted).
    index: RwLock<(Arc<Index>, Vec<ObjectKey>)>,
    /// Recently read tree packs.
    tree_packs: Mutex<Vec<([u8; 32], Bytes)>>,
    lock_timings: LockTimings,
}

/// Whether `store` holds a repository already.
///
/// # Errors
/// Storage failures.
pub async fn is_initialized(store: &dyn ObjectStore) -> Result<bool, EngineError> {
    Ok(store.exists(&key(KEYS_OBJECT)?).await?)
}

/// What the `config` object says.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ConfigDoc {
    format: String,
    version: u32,
    id: String,
    created_at: String,
}

const CONFIG_PURPOSE: &[u8] = b"coffer config";
const REPOSITORY_FORMAT: &str = "coffer-repository";
/// Format 2: key material records the mode, unencrypted objects carry keyed MACs, the
/// config object is sealed. Format 1 repositories are upgraded when opened.
const REPOSITORY_VERSION: u32 = 2;

/// Writes the sealed config object.
async fn write_config(
    store: &dyn ObjectStore,
    keys: &Keys,
    id: String,
    created_at: String,
) -> Result<(), EngineError> {
    let doc = ConfigDoc {
        format: REPOSITORY_FORMAT.into(),
        version: REPOSITORY_VERSION,
        id,
        created_at,
    };
    let json = serde_json::to_vec(&doc).map_err(|e| EngineError::Other(e.to_string()))?;
    let mode = keys
        .mode
        .ok_or_else(|| EngineError::Other("no mode".into()))?;
    let sealed = crypto::seal_object(keys, mode.encrypts(), CONFIG_PURPOSE, &json)?;
    store.put(&key(CONFIG_OBJECT)?, Bytes::from(sealed)).await?;
    Ok(())
}

/// Reads and authenticates the config object. A missing one is an error of its own:
/// the key object without it is what an unmounted share or a half-copied repository
/// looks like.
async fn read_config(store: &dyn ObjectStore, keys: &Keys) -> Result<ConfigDoc, EngineError> {
    let sealed = store.get(&key(CONFIG_OBJECT)?).await?.ok_or_else(|| {
        EngineError::NotFound(
            "the repository has no `config` object beside its key: this is not a whole \
             repository (a storage that is not mounted, or a copy that stopped half-way?); \
             nothing was written"
                .into(),
        )
    })?;
    let (json, _) = crypto::open_object(keys, CONFIG_PURPOSE, &sealed, "the repository config")?;
    let doc: ConfigDoc = serde_json::from_slice(&json)
        .map_err(|e| EngineError::Damaged(format!("the repository config: {e}")))?;
    if doc.format != REPOSITORY_FORMAT || doc.version > REPOSITORY_VERSION {
        return Err(EngineError::Invalid(format!(
            "the repository is format {} version {}: this Coffer reads {REPOSITORY_FORMAT} up to version {REPOSITORY_VERSION}",
            doc.format, doc.version
        )));
    }
    Ok(doc)
}

/// Creates a new repository in `store` (which must hold none) under `master`,
/// encrypting everything or not (for good: the mode is part of the key material).
///
/// # Errors
/// When a repository exists already, or storage fails.
pub async fn init(
    store: &dyn ObjectStore,
    master: &[u8; 32],
    encrypt: bool,
) -> Result<(), EngineError> {
    if is_initialized(store).await? {
        return Err(EngineError::Invalid(
            "a repository exists here already".into(),
        ));
    }
    let keys = Keys::generate(if encrypt {
        crypto::Mode::Encrypted
    } else {
        crypto::Mode::Plain
    })?;
    // The config first: a repository is there once its key is (see `is_initialized`).
    write_config(
        store,
        &keys,
        hex::encode(crypto::random::<16>()?),
        chrono::Utc::now().to_rfc3339(),
    )
    .await?;
    store
        .put(&key(KEYS_OBJECT)?, Bytes::from(keys.wrap(master)?))
        .await?;
    Ok(())
}

/// Brings a repository of format 1 to format 2 (see the crate documentation): records
/// its mode in its key material — encrypted when every index and snapshot it holds is
/// encrypted (or, when it holds none, as `encrypt` asks), legacy unencrypted when any is
/// not — seals its config object, and, for a legacy unencrypted one, seals its indexes
/// again with a MAC, under the exclusive lock (they decide what a prune keeps). The key
/// material goes last, so an interrupted upgrade runs again at the next open; two
/// processes upgrading at once write the same.
async fn upgrade(
    store: &Arc<dyn ObjectStore>,
    master: &[u8; 32],
    keys: Keys,
    encrypt: bool,
) -> Result<Keys, EngineError> {
    let mut any = false;
    let mut any_plain = false;
    for prefix in ["index/", "snapshots/"] {
        for k in store.list(prefix).await? {
            let Some(bytes) = store.get(&k).await? else {
                continue;
            };
            if let Some(unencrypted) = crypto::object_is_unencrypted(&bytes) {
                any = true;
                any_plain |= unencrypted;
            }
        }
    }
    let mode = match (any_plain, any, encrypt) {
        (true, _, _) => crypto::Mode::PlainLegacy,
        (false, true, _) | (false, false, true) => crypto::Mode::Encrypted,
        (false, false, false) => crypto::Mode::Plain,
    };
    tracing::warn!(
        ?mode,
        "upgrading the repository to format {REPOSITORY_VERSION} (its mode recorded in its key, \
         its config sealed)"
    );
    let keys = keys.with_mode(mode);
    if mode == crypto::Mode::PlainLegacy {
        let lock = lock::RepoLock::exclusive(
            store.clone(),
            LockTimings::default(),
            "upgrade",
            &Cancel::default(),
        )
        .await?;
        let result = index::reseal_legacy(store.as_ref(), &keys).await;
        let held = lock.ensure_held();
        lock.release().await;
        result?;
        held?;
    }
    let (id, created_at) = match store.get(&key(CONFIG_OBJECT)?).await? {
        Some(bytes) => serde_json::from_slice::<ConfigDoc>(&bytes).map_or_else(
            |_| (hex::encode([0u8; 16]), chrono::Utc::now().to_rfc3339()),
            |c| (c.id, c.created_at),
        ),
        None => {
            return Err(EngineError::NotFound(
                "the repository has no `config` object beside its key: this is not a whole \
                 repository (a storage that is not mounted, or a copy that stopped half-way?)"
                    .into(),
            ));
        }
    };
    write_config(store.as_ref(), &keys, id, created_at).await?;
    store
        .put(&key(KEYS_OBJECT)?, Bytes::from(keys.wrap(master)?))
        .await?;
    let check = store
        .get(&key(KEYS_OBJECT)?)
        .await?
        .ok_or_else(|| EngineError::Other("the upgraded key vanished".into()))?;
    let back = Keys::unwrap(&check, master)?;
    if back.mode != Some(mode) {
        return Err(EngineError::Other(
            "the upgraded key does not read back as written".into(),
        ));
    }
    Ok(back)
}

/// Re-wraps the repository's key material under a new master key, without touching
/// data. The caller keeps both keys until this returns.
///
/// # Errors
/// `WrongKey` when `old` does not open the repository.
pub async fn rewrap(
    store: &dyn ObjectStore,
    old: &[u8; 32],
    new: &[u8; 32],
) -> Result<(), EngineError> {
    let wrapped = store
        .get(&key(KEYS_OBJECT)?)
        .await?
        .ok_or_else(|| EngineError::NotFound("no repository here".into()))?;
    let keys = Keys::unwrap(&wrapped, old)?;
    store
        .put(&key(KEYS_OBJECT)?, Bytes::from(keys.wrap(new)?))
        .await?;
    // Read back: the new wrapping must open with the new key before the old key goes.
    let check = store
        .get(&key(KEYS_OBJECT)?)
        .await?
        .ok_or_else(|| EngineError::Other("the rewrapped key vanished".into()))?;
    Keys::unwrap(&check, new)?;
    Ok(())
}

/// Whether `master` opens the repository's key material as stored now.
///
/// # Errors
/// `NotFound` when there is no repository, storage failures, damaged key material.
pub async fn key_opens(store: &dyn ObjectStore, master: &[u8; 32]) -> Result<bool, EngineError> {
    let wrapped = store
        .get(&key(KEYS_OBJECT)?)
        .await?
        .ok_or_else(|| EngineError::NotFound("no repository here".into()))?;
    match Keys::unwrap(&wrapped, master) {
        Ok(_) => Ok(true),
        Err(EngineError::WrongKey) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Repository {
    /// Opens the repository with `master`, loading the index.
    ///
    /// # Errors
    /// `WrongKey`, `NotFound` (no repository), storage failures, a damaged index.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        master: &[u8; 32],
        encrypt: bool,
    ) -> Result<Self, EngineError> {
        let wrapped = store
            .get(&key(KEYS_OBJECT)?)
            .await?
            .ok_or_else(|| EngineError::NotFound("no repository in this storage".into()))?;
        let mut keys = Keys::unwrap(&wrapped, master)?;
        if keys.mode.is_none() {
            keys = upgrade(&store, master, keys, encrypt).await?;
        }
        read_config(store.as_ref(), &keys).await?;
        let mode = keys
            .mode
            .ok_or_else(|| EngineError::Other("the repository's mode is unknown".into()))?;
        if mode.encrypts() != encrypt {
            tracing::warn!(
                repository_encrypts = mode.encrypts(),
                "backup.encryption_enabled differs from the repository's mode: restores work, \
                 backups are refused"
            );
        }
        let repo = Self {
            store,
            keys,
            encrypt: mode.encrypts(),
            wanted_encrypt: encrypt,
            index: RwLock::default(),
            tree_packs: Mutex::new(Vec::new()),
            lock_timings: LockTimings::default(),
        };
        repo.reload_index().await?;
        Ok(repo)
    }

    /// The same repository in another store (a replica): same keys, same mode.
    fn beside(&self, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            keys: self.keys.clone(),
            encrypt: self.encrypt,
            wanted_encrypt: self.wanted_encrypt,
            index: RwLock::default(),
            tree_packs: Mutex::new(Vec::new()),
            lock_timings: self.lock_timings,
        }
    }

    /// Reads the config object again: `Ok(Err(problem))` when it is missing or damaged
    /// (verify and check report it), `Err` for storage failures.
    pub(crate) async fn check_config(&self) -> Result<Result<(), String>, EngineError> {
        match read_config(self.store.as_ref(), &self.keys).await {
            Ok(_) => Ok(Ok(())),
            Err(EngineError::Storage(e)) => Err(EngineError::Storage(e)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Other lock timings (tests use short ones).
    #[must_use]
    pub fn with_lock_timings(mut self, timings: LockTimings) -> Self {
        self.lock_timings = timings;
        self
    }

    /// Takes a shared repository lock for work that reads packs (see `lock`).
    async fn shared_lock(
        &self,
        purpose: &str,
        cancel: &Cancel,
    ) -> Result<lock::RepoLock, EngineError> {
        lock::RepoLock::shared(self.store.clone(), self.lock_timings, purpose, cancel).await
    }

    /// Reads the index objects again when they are not the ones the index was read from
    /// (another process may have added or replaced some); several at once. Index
    /// objects are never changed under their name, only added and removed, so the same
    /// names mean the same index: a restore right after opening lists, and reads
    /// nothing twice.
    async fn reload_index(&self) -> Result<Arc<Index>, EngineError> {
        self.read_index(false).await
    }

    /// Reads every index object, authenticating each, also when their names are the
    /// ones already read: a check looks for damage done in storage since then.
    async fn reread_index(&self) -> Result<Arc<Index>, EngineError> {
        self.read_index(true).await
    }

    async fn read_index(&self, again: bool) -> Result<Arc<Index>, EngineError> {
        let names = self.store.list("index/").await?;
        {
            let loaded = self.index.read().expect("index lock");
            // (No names: an empty repository, whose index is read, not kept unfinished.)
            if !again && loaded.1 == names && !names.is_empty() {
                return Ok(loaded.0.clone());
            }
        }
        let objects: Vec<Bytes> = futures::stream::iter(names.clone())
            .map(|k| {
                let store = self.store.clone();
                async move {
                    store
                        .get(&k)
                        .await?
                        .ok_or_else(|| EngineError::Corrupt(format!("{k} vanished")))
                }
            })
            .buffered(self.store.parallelism().max(2))
            .try_collect()
            .await?;
        let mut index = Index::default();
        index.load_objects(&self.keys, objects.iter().map(|o| &o[..]))?;
        let index = Arc::new(index);
        *self.index.write().expect("index lock") = (index.clone(), names);
        Ok(index)
    }

    fn index(&self) -> Arc<Index> {
        self.index.read().expect("index lock").0.clone()
    }

    /// A tree pack's bytes, from a cache of the last few.
    async fn tree_pack(&self, id: &[u8; 32]) -> Result<Bytes, EngineError> {
        if let Some((_, bytes)) = self
            .tree_packs
            .lock()
            .expect("cache")
            .iter()
            .find(|(p, _)| p == id)
        {
            return Ok(bytes.clone());
        }
        let bytes =
            self.store.get(&key(&pack_key(id))?).await?.ok_or_else(|| {
                EngineError::Damaged(format!("pack {} is missing", hex::encode(id)))
            })?;
        let mut cache = self.tree_packs.lock().expect("cache");
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push((*id, bytes.clone()));
        Ok(bytes)
    }

    /// Forgets cached tree packs, so what follows reads storage as it is now.
    fn drop_cache(&self) {
        self.tree_packs.lock().expect("cache").clear();
    }

    /// A blob's plaintext, authenticated. A reader without a repository lock (browsing)
    /// may hold an index from before a prune moved the blob: when its pack is gone, the
    /// index is reloaded and the read tried once more.
    async fn blob(&self, id: &crypto::ChunkId) -> Result<Vec<u8>, EngineError> {
        match self.blob_once(id).await {
            Err(EngineError::Damaged(m)) if m.ends_with("is missing") => {
                let before = self.index().get(id).map(|(p, _)| *p);
                let after = self.reload_index().await?.get(id).map(|(p, _)| *p);
                if after.is_some() && after != before {
                    self.blob_once(id).await
                } else {
                    Err(EngineError::Damaged(m))
                }
            }
            other => other,
        }
    }

    async fn blob_once(&self, id: &crypto::ChunkId) -> Result<Vec<u8>, EngineError> {
        let index = self.index();
        let (pack_id, entry) = index.get(id).ok_or_else(|| {
            EngineError::Damaged(format!(
                "chunk {} is not in the index",
                hex::encode(&id[..8])
            ))
        })?;
        let pack_id = *pack_id;
        if entry.kind == pack::BlobKind::Tree {
            // Trees are small and read in bursts (a whole parent snapshot, a restore plan):
            // keep their packs, which hold nothing else, in a small cache.
            let pack = self.tree_pack(&pack_id).await?;
            let start = usize::try_from(entry.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(entry.length as usize);
            if end > pack.len() {
                return Err(EngineError::Damaged(format!(
                    "pack {} is truncated",
                    hex::encode(pack_id)
                )));
            }
            return crypto::open_blob(&self.keys, id, entry.raw_length as usize, &pack[start..end]);
        }
        let sealed = self
            .store
            .get_range(
                &key(&pack_key(&pack_id))?,
                entry.offset,
                u64::from(entry.length),
            )
            .await?
            .ok_or_else(|| {
                EngineError::Damaged(format!("pack {} is missing", hex::encode(pack_id)))
            })?;
        if sealed.len() != entry.length as usize {
            return Err(EngineError::Damaged(format!(
                "pack {} is truncated",
                hex::encode(pack_id)
            )));
        }
        crypto::open_blob(&self.keys, id, entry.raw_length as usize, &sealed)
    }

    async fn tree(&self, id: &crypto::ChunkId) -> Result<Vec<Node>, EngineError> {
        tree::decode(&self.blob(id).await?)
    }

    /// Every snapshot in storage, oldest first.
    ///
    /// # Errors
    /// Storage failures; a snapshot object that fails its checksum.
    pub async fn list_snapshots(&self) -> Result<Vec<(String, SnapshotDoc)>, EngineError> {
        let mut out = Vec::new();
        for k in self.store.list("snapshots/").await? {
            let id = k.as_str().trim_start_matches("snapshots/").to_owned();
            out.push((id.clone(), self.load_snapshot(&id).await?));
        }
        out.sort_by_key(|(_, d)| d.started_at);
        Ok(out)
    }

    /// Loads and checks a snapshot object: its SHA-256 must equal its id.
    async fn load_snapshot(&self, id: &str) -> Result<SnapshotDoc, EngineError> {
        if !is_snapshot_id(id) {
            return Err(EngineError::NotFound(format!("no snapshot `{id}`")));
        }
        let sealed = self
            .store
            .get(&key(&format!("snapshots/{id}"))?)
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("no snapshot {id} in storage")))?;
        if hex::encode(crypto::sha256(&sealed)) != id {
            return Err(EngineError::Damaged(format!(
                "snapshot {id} fails its SHA-256 checksum"
            )));
        }
        snapshot::open(&self.keys, &sealed)
    }

    /// Deletes a snapshot object, and only it: the packs it references stay until garbage
    /// collection, which must first learn that no other snapshot uses them. The object is
    /// not opened, so a damaged snapshot can be forgotten too.
    ///
    /// # Errors
    /// `NotFound` when there is no such snapshot; storage failures.
    pub async fn forget(&self, id: &str) -> Result<(), EngineError> {
        if !is_snapshot_id(id) {
            return Err(EngineError::NotFound(format!("no snapshot `{id}`")));
        }
        let k = key(&format!("snapshots/{id}"))?;
        if !self.store.exists(&k).await? {
            return Err(EngineError::NotFound(format!(
                "no snapshot {id} in storage"
            )));
        }
        self.store.delete(&k).await?;
        Ok(())
    }

    /// The nodes at `path` ("" or "/" for the root) inside a snapshot's tree.
    async fn resolve(&self, root: &crypto::ChunkId, path: &str) -> Result<Node, EngineError> {
        let mut current = Node {
            mode: 0o755,
            subtree: Some(*root),
            ..Node::new(Vec::new(), NodeKind::Dir)
        };
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let Some(subtree) = current.subtree.filter(|_| current.kind == NodeKind::Dir) else {
                return Err(EngineError::NotFound(format!("`{path}`: not a directory")));
            };
            let nodes = self.tree(&subtree).await?;
            current = nodes
                .into_iter()
                .find(|n| n.name == part.as_bytes())
                .ok_or_else(|| EngineError::NotFound(format!("`{path}` is not in the snapshot")))?;
        }
        Ok(current)
    }
}

/// Whether `id` has the shape of a snapshot id (64 hex digits): anything else cannot name
/// a snapshot object, and must never reach a storage key.
fn is_snapshot_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How an entry of a snapshot is shown to the application.
fn entry_info(node: &Node) -> EntryInfo {
    EntryInfo {
        name: node.display_name(),
        kind: match node.kind {
            NodeKind::File => EntryKind::File,
            NodeKind::Dir => EntryKind::Dir,
            NodeKind::Symlink => EntryKind::Symlink,
        },
        size: node.size,
        mtime: chrono::DateTime::from_timestamp_nanos(node.mtime_ns),
        mode: node.mode,
        xattrs: node
            .xattrs
            .iter()
            .map(|x| String::from_utf8_lossy(&x.name).into_owned())
            .collect(),
        links: node.nlink.max(1),
    }
}

/// The engine behind the application's port; owns an open repository.
pub struct Engine {
    repo: Arc<Repository>,
}

impl Engine {
    #[must_use]
    pub fn new(repo: Repository) -> Self {
        Self {
            repo: Arc::new(repo),
        }
    }
}

impl Engine {
    /// Copies the repository into `dest`, a replica (see `replicate`).
    ///
    /// # Errors
    /// `Invalid` when `dest` holds something else; `Damaged` when the replica does not
    /// read back what was written; `Cancelled`; `Busy`; storage failures.
    pub async fn replicate(
        &self,
        dest: Arc<dyn ObjectStore>,
        options: coffer_domain::replicas::CopyOptions,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<coffer_domain::replicas::CopyReport, EngineFailure> {
        replicate::run(&self.repo, dest, options, &progress, &cancel)
            .await
            .map_err(EngineFailure::from)
    }
}

#[async_trait]
impl SnapshotEngine for Engine {
    async fn backup(
        &self,
        request: BackupRequest,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<SnapshotSummary, EngineFailure> {
        backup::run(self.repo.clone(), request, progress, cancel)
            .await
            .map_err(EngineFailure::from)
    }

    async fn import_tree(
        &self,
        request: coffer_domain::engine::ImportRequest,
        source: Box<dyn coffer_domain::import::TreeSource>,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<SnapshotSummary, EngineFailure> {
        backup::import(self.repo.clone(), request, source, progress, cancel)
            .await
            .map_err(EngineFailure::from)
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotSummary>, EngineFailure> {
        Ok(self
            .repo
            .list_snapshots()
            .await
            .map_err(EngineFailure::from)?
            .into_iter()
            .map(|(id, doc)| doc.summary(id))
            .collect())
    }

    async fn list_dir(&self, snapshot: &str, path: &str) -> Result<Vec<EntryInfo>, EngineFailure> {
        let doc = self
            .repo
            .load_snapshot(snapshot)
            .await
            .map_err(EngineFailure::from)?;
        let node = self
            .repo
            .resolve(&doc.root()?, path)
            .await
            .map_err(EngineFailure::from)?;
        let subtree = node
            .subtree
            .filter(|_| node.kind == NodeKind::Dir)
            .ok_or_else(|| EngineFailure::Invalid(format!("`{path}` is not a directory")))?;
        let nodes = self
            .repo
            .tree(&subtree)
            .await
            .map_err(EngineFailure::from)?;
        Ok(nodes.iter().map(entry_info).collect())
    }

    async fn stat(&self, snapshot: &str, path: &str) -> Result<EntryInfo, EngineFailure> {
        let doc = self
            .repo
            .load_snapshot(snapshot)
            .await
            .map_err(EngineFailure::from)?;
        let node = self
            .repo
            .resolve(&doc.root()?, path)
            .await
            .map_err(EngineFailure::from)?;
        if !node.name.is_empty() {
            return Ok(entry_info(&node));
        }
        // The root directory's own metadata is not recorded (a tree lists its entries,
        // not itself): it is named after the source's directory and dated by the snapshot.
        let name = std::path::Path::new(&doc.path)
            .file_name()
            .map_or_else(|| doc.path.clone(), |n| n.to_string_lossy().into_owned());
        Ok(EntryInfo {
            name,
            kind: EntryKind::Dir,
            size: 0,
            mtime: doc.started_at,
            mode: node.mode,
            xattrs: Vec::new(),
            links: 1,
        })
    }

    async fn restore(
        &self,
        snapshot: &str,
        path: Option<&str>,
        target: &std::path::Path,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<RestoreReport, EngineFailure> {
        let lock = self.repo.shared_lock("restore", &cancel).await?;
        // Under the lock the index cannot change: read it as it is now (a prune of
        // another process may have moved blobs since this process last looked).
        self.repo.drop_cache();
        let result = match self.repo.reload_index().await {
            Ok(_) => {
                restore::run(self.repo.clone(), snapshot, path, target, progress, cancel).await
            }
            Err(e) => Err(e),
        };
        lock.release().await;
        result.map_err(EngineFailure::from)
    }

    async fn verify(
        &self,
        snapshot: &str,
        read_data: bool,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<VerifyReport, EngineFailure> {
        let lock = self.repo.shared_lock("verify", &cancel).await?;
        self.repo.drop_cache();
        let result = match self.repo.reload_index().await {
            Ok(_) => verify::run(&self.repo, snapshot, read_data, &progress, &cancel).await,
            Err(e) => Err(e),
        };
        lock.release().await;
        result.map_err(EngineFailure::from)
    }

    async fn export(
        &self,
        snapshot: &str,
        path: Option<&str>,
        format: ArchiveFormat,
        out: Box<dyn std::io::Write + Send>,
    ) -> Result<u64, EngineFailure> {
        let lock = self.repo.shared_lock("export", &Cancel::default()).await?;
        self.repo.drop_cache();
        let result = match self.repo.reload_index().await {
            Ok(_) => export::write(self.repo.clone(), snapshot, path, format, out).await,
            Err(e) => Err(e),
        };
        lock.release().await;
        result.map_err(EngineFailure::from)
    }

    async fn forget(&self, snapshot: &str) -> Result<(), EngineFailure> {
        self.repo
            .forget(snapshot)
            .await
            .map_err(EngineFailure::from)
    }

    async fn prune(
        &self,
        options: PruneOptions,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<PruneReport, EngineFailure> {
        prune::run(&self.repo, options, &progress, &cancel)
            .await
            .map_err(EngineFailure::from)
    }

    async fn check(
        &self,
        slice: Option<CheckSlice>,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<CheckReport, EngineFailure> {
        let lock = self.repo.shared_lock("check", &cancel).await?;
        self.repo.drop_cache();
        let result = check::run(&self.repo, slice, &progress, &cancel).await;
        lock.release().await;
        result.map_err(EngineFailure::from)
    }

    async fn stored_bytes(&self) -> Result<u64, EngineFailure> {
        prune::stored_total(&self.repo)
            .await
            .map_err(EngineFailure::from)
    }
}

impl From<EngineError> for EngineFailure {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(m) => Self::NotFound(m),
            EngineError::Invalid(m) => Self::Invalid(m),
            EngineError::Damaged(m) => Self::Damaged(m),
            EngineError::Cancelled => Self::Cancelled,
            EngineError::QuotaExceeded(m) => Self::QuotaExceeded(m),
            EngineError::Busy(m) => Self::Busy(m),
            EngineError::Storage(coffer_domain::storage::StorageError::Unavailable(m)) => {
                Self::Unavailable(format!("storage unavailable: {m}"))
            }
            other => Self::Other(other.to_string()),
        }
    }
}

/// Everything a tree references, checked for names that could escape a restore target.
pub(crate) struct Refs {
    /// Data chunk → the paths (inside the snapshot) of the files that use it.
    pub data: HashMap<crypto::ChunkId, Vec<String>>,
    /// Entries that must never be restored: unsafe or duplicate names.
    pub unsafe_entries: Vec<String>,
    /// Regular files in the tree, and their logical bytes.
    pub files: u64,
    pub bytes: u64,
}

/// Walks a tree, collecting what it references. Each file found is added to `progress`
/// (when given); `cancel` is honoured between directories.
async fn collect_refs(
    repo: &Repository,
    root: &crypto::ChunkId,
    base: String,
    progress: Option<&Progress>,
    cancel: &Cancel,
) -> Result<Refs, EngineError> {
    let mut refs = Refs {
        data: HashMap::new(),
        unsafe_entries: Vec::new(),
        files: 0,
        bytes: 0,
    };
    let mut stack = vec![(*root, base)];
    while let Some((id, path)) = stack.pop() {
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let nodes = repo.tree(&id).await?;
        let mut names = tree::DirNames::default();
        for node in nodes {
            let child = if path.is_empty() {
                node.display_name()
            } else {
                format!("{path}/{}", node.display_name())
            };
            if !names.admit(&node.name) {
                refs.unsafe_entries.push(child.clone());
            }
            match node.kind {
                NodeKind::File => {
                    refs.files += 1;
                    refs.bytes += node.size;
                    if let Some(progress) = progress {
                        progress.add(1, node.size);
                    }
                    for c in node.content {
                        refs.data.entry(c).or_default().push(child.clone());
                    }
                }
                NodeKind::Dir => {
                    if let Some(sub) = node.subtree {
                        stack.push((sub, child));
                    }
                }
                NodeKind::Symlink => {}
            }
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests;
