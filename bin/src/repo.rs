//! Opening the repository: the master key file and the engine, with first-start
//! initialisation guarded against a second process doing the same.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use coffer_application::{MasterKeys, ServiceError};
use coffer_config::Settings;
use coffer_domain::secrets::Secret;
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
    // One process at a time decides whether to initialise (the CLI beside the server).
    let lock_path = settings.data_dir.join("repository.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let master = if coffer_repo::is_initialized(store.as_ref()).await? {
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
    drop(lock);
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
    Ok(Engine::new(repo))
}

/// The master key file, exported and rotated.
pub struct KeyFile {
    pub path: PathBuf,
    pub store: Arc<dyn ObjectStore>,
}

fn unexpected(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unexpected(anyhow::anyhow!("{e}"))
}

#[async_trait]
impl MasterKeys for KeyFile {
    async fn export(&self) -> Result<Secret, ServiceError> {
        let (key, _) = coffer_crypto::load_or_create_key(&self.path).map_err(unexpected)?;
        Ok(Secret::new(hex::encode(key)))
    }

    async fn rotate(&self) -> Result<(), ServiceError> {
        let (old, _) = coffer_crypto::load_or_create_key(&self.path).map_err(unexpected)?;
        // The new key is durable on disk before the repository depends on it; the old one
        // stays until the repository's keys are re-wrapped and read back.
        let next = next_path(&self.path);
        let _ = std::fs::remove_file(&next);
        let (new, _) = coffer_crypto::load_or_create_key(&next).map_err(unexpected)?;
        coffer_repo::rewrap(self.store.as_ref(), &old, &new)
            .await
            .map_err(unexpected)?;
        std::fs::rename(&next, &self.path).map_err(unexpected)?;
        Ok(())
    }
}

fn next_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}
