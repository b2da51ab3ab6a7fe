//! Opening the repository: the master key file and the engine, with first-start
//! initialisation guarded against a second process doing the same.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use coffer_config::Settings;
use coffer_domain::crypto::{CryptoError, KeyRewrap};
use coffer_domain::storage::ObjectStore;
use coffer_repo::{Engine, Repository};

/// Opens (creating on first use) the repository in `store` with the master key named
/// by the settings.
///
/// # Errors
/// A missing key for an existing repository, a key file readable by others, a wrong key,
/// storage failures.
pub async fn open_engine(
    settings: &Settings,
    store: Arc<dyn ObjectStore>,
) -> anyhow::Result<Engine> {
    let key_path = settings.encryption_key_file();
    crate::ensure_data_dir(&settings.data_dir)?;
    // One process at a time decides whether to initialise (the CLI beside the server),
    // settles an interrupted key rotation, and reads the key to open the repository: a
    // key rotation holds the same lock, so nobody reads a key it is about to replace.
    let lock_path = lock_path(settings);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let master = if coffer_repo::is_initialized(store.as_ref()).await? {
        let keys = coffer_crypto::MasterKeyFile::new(
            key_path.clone(),
            lock_path.clone(),
            Arc::new(RepositoryKeys::new(store.clone())),
        );
        match keys.recover().await.map_err(|e| anyhow::anyhow!(e.0))? {
            coffer_crypto::Recovery::Clean => {}
            coffer_crypto::Recovery::RolledBack => tracing::warn!(
                key = %key_path.display(),
                "a key rotation was interrupted before the repository changed: rolled back, the key is unchanged"
            ),
            coffer_crypto::Recovery::Finished => tracing::warn!(
                key = %key_path.display(),
                "a key rotation was interrupted after the repository was re-wrapped: finished, the new key is in place (export it: `coffer key export`)"
            ),
        }
        if !key_path.exists() {
            anyhow::bail!(
                "the repository at {} is encrypted with a master key that is not at {}: restore the key file from your key export (see `coffer key export`) or point security.encryption_key_file at it",
                settings.storage_root().display(),
                key_path.display()
            );
        }
        let (key, _) = coffer_crypto::load_or_create_key(&key_path)?;
        key
    } else {
        let (key, created) = coffer_crypto::load_or_create_key(&key_path)?;
        coffer_repo::init(store.as_ref(), &key, settings.backup.encryption_enabled).await?;
        tracing::warn!(
            key = %key_path.display(),
            created,
            "initialised a new repository; keep a copy of the master key (`coffer key export`): without it the backups cannot be read"
        );
        key
    };
    let repo = Repository::open(store, &master, settings.backup.encryption_enabled)
        .await
        .map_err(|e| match e {
            coffer_repo::EngineError::WrongKey => anyhow::anyhow!(
                "the master key in {} does not open the repository at {} (wrong or replaced key file)",
                key_path.display(),
                settings.storage_root().display()
            ),
            other => anyhow::Error::new(other).context("cannot open the repository"),
        })?;
    drop(lock);
    Ok(Engine::new(repo))
}

/// The lock file that initialising, opening the repository and rotating its key take
/// in turn: `<data_dir>/repository.lock`.
#[must_use]
pub fn lock_path(settings: &Settings) -> std::path::PathBuf {
    settings.data_dir.join("repository.lock")
}

/// The repository's side of a key rotation: re-wrapping its data keys under the new
/// master key. The engine crate implements it when it grows the trait; until then this
/// wires the domain port to `coffer_repo::rewrap`.
pub struct RepositoryKeys {
    store: Arc<dyn ObjectStore>,
}

impl RepositoryKeys {
    #[must_use]
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl KeyRewrap for RepositoryKeys {
    async fn rewrap(&self, old: &[u8; 32], new: &[u8; 32]) -> Result<(), CryptoError> {
        coffer_repo::rewrap(self.store.as_ref(), old, new)
            .await
            .map_err(|e| CryptoError(e.to_string()))
    }

    async fn opens(&self, key: &[u8; 32]) -> Result<bool, CryptoError> {
        coffer_repo::key_opens(self.store.as_ref(), key)
            .await
            .map_err(|e| CryptoError(e.to_string()))
    }
}

/// The copy port over the engine: opens the replica's storage from its location and
/// copies the repository into it.
pub struct EngineReplicator {
    engine: Arc<Engine>,
}

impl EngineReplicator {
    #[must_use]
    pub const fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[async_trait]
impl coffer_domain::replicas::Replicator for EngineReplicator {
    async fn copy(
        &self,
        to: &coffer_domain::replicas::ReplicaLocation,
        options: coffer_domain::replicas::CopyOptions,
        progress: Arc<coffer_domain::engine::Progress>,
        cancel: coffer_domain::engine::Cancel,
    ) -> Result<coffer_domain::replicas::CopyReport, coffer_domain::engine::EngineFailure> {
        // (A bucket has no foreign files to meet the same way: there the engine refuses
        // one that holds objects of a repository without this one's `config`.)
        if let coffer_domain::replicas::ReplicaLocation::Fs { root } = to {
            refuse_foreign_directory(std::path::Path::new(root))?;
        }
        let store = crate::open_replica_store(to)
            .map_err(|e| coffer_domain::engine::EngineFailure::Other(format!("{e:#}")))?;
        self.engine
            .replicate(store, options, progress, cancel)
            .await
    }
}

/// A directory that holds anything but a replica is never written to: the first copy
/// writes `config` before anything else, so a directory with entries and no `config` is
/// somebody else's (a typo naming `/etc`, a share mounted at the wrong place). Only the
/// storage adapter's own `.tmp` and lock objects may be there already.
fn refuse_foreign_directory(
    root: &std::path::Path,
) -> Result<(), coffer_domain::engine::EngineFailure> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(()); // missing: created empty when the storage opens
    };
    if root.join("config").is_file() {
        return Ok(());
    }
    let foreign = entries
        .filter_map(Result::ok)
        .any(|e| !matches!(e.file_name().to_str(), Some(".tmp" | "locks")));
    if foreign {
        return Err(coffer_domain::engine::EngineFailure::Invalid(
            "the replica's directory is not empty and holds no replica of this repository; \
             choose an empty directory; nothing was written"
                .into(),
        ));
    }
    Ok(())
}
