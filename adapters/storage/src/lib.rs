//! `coffer-storage`: the object-storage adapter. It implements the domain's
//! [`ObjectStore`] port with opendal, so every opendal backend can hold a repository; today
//! `fs` (a local directory or a mounted NAS share) and, for tests, `memory`.
//!
//! The `fs` backend writes each object to a temporary file under `<root>/.tmp`, syncs it,
//! renames it into place and syncs the directory, so a reader or a crash (even a power
//! cut) never sees half an object. Listing
//! ignores that directory. Every call is bounded by a timeout, so a hung NAS mount turns
//! into an error instead of a hung server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_domain::storage::{ObjectKey, ObjectStore, StorageError};
use futures::TryStreamExt;
use opendal::layers::TimeoutLayer;
use opendal::{EntryMode, ErrorKind, Operator};

/// Where temporary files of atomic writes go, inside the `fs` root (same file system, so
/// the final rename is atomic).
const ATOMIC_DIR: &str = ".tmp";

/// An [`ObjectStore`] over an opendal operator.
#[derive(Clone, Debug)]
pub struct OpendalStore {
    op: Operator,
    backend: &'static str,
    /// The directory of the `fs` backend, checked by [`ObjectStore::check`].
    fs_root: Option<PathBuf>,
}

impl OpendalStore {
    /// A repository in a local directory (or NAS mount), created if missing.
    ///
    /// # Errors
    /// When the directory cannot be created or opendal refuses the configuration.
    pub fn fs(root: &Path) -> Result<Self, StorageError> {
        let atomic = root.join(ATOMIC_DIR);
        std::fs::create_dir_all(&atomic).map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot create storage directory {}: {e}",
                root.display()
            ))
        })?;
        let root_str = root.to_str().ok_or_else(|| {
            StorageError::Other(format!(
                "storage root {} is not valid UTF-8",
                root.display()
            ))
        })?;
        let atomic_str = atomic.to_str().unwrap_or_default();
        let builder = opendal::services::Fs::default()
            .root(root_str)
            .atomic_write_dir(atomic_str);
        let op = Operator::new(builder)
            .map_err(|e| StorageError::Other(format!("fs storage: {e}")))?
            .layer(Self::timeouts());
        Ok(Self {
            op,
            backend: "fs",
            fs_root: Some(root.to_path_buf()),
        })
    }

    /// An in-memory store (tests).
    ///
    /// # Panics
    /// Never in practice: the memory service has no configuration to refuse.
    #[must_use]
    pub fn memory() -> Self {
        let op = Operator::new(opendal::services::Memory::default())
            .expect("the memory service always builds")
            .layer(Self::timeouts());
        Self {
            op,
            backend: "memory",
            fs_root: None,
        }
    }

    /// The backend's name, for logs and status pages.
    #[must_use]
    pub const fn backend(&self) -> &'static str {
        self.backend
    }

    fn timeouts() -> TimeoutLayer {
        TimeoutLayer::new()
            .with_timeout(Duration::from_mins(1))
            .with_io_timeout(Duration::from_secs(30))
    }
}

fn map_err(context: &str, key: &str, err: &opendal::Error) -> StorageError {
    let message = format!("{context} {key}: {err}");
    match err.kind() {
        ErrorKind::PermissionDenied | ErrorKind::RateLimited | ErrorKind::NotFound => {
            StorageError::Unavailable(message)
        }
        _ if err.is_temporary() => StorageError::Unavailable(message),
        _ => StorageError::Other(message),
    }
}

#[async_trait]
impl ObjectStore for OpendalStore {
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError> {
        self.op
            .write(key.as_str(), bytes)
            .await
            .map_err(|e| map_err("writing", key.as_str(), &e))?;
        // opendal syncs the file before renaming it into place; sync the directory too,
        // so the rename itself survives a power cut before anything depends on it.
        if let Some(root) = &self.fs_root {
            let dir = root.join(key.as_str());
            let dir = dir.parent().unwrap_or(root).to_path_buf();
            tokio::task::spawn_blocking(move || {
                std::fs::File::open(&dir).and_then(|d| d.sync_all())
            })
            .await
            .map_err(|e| StorageError::Other(format!("syncing {key}: {e}")))?
            .map_err(|e| {
                StorageError::Unavailable(format!("syncing the directory of {key}: {e}"))
            })?;
        }
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError> {
        match self.op.read(key.as_str()).await {
            Ok(buffer) => Ok(Some(buffer.to_bytes())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err("reading", key.as_str(), &e)),
        }
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        if len == 0 {
            return Ok(Some(Bytes::new()));
        }
        match self
            .op
            .read_with(key.as_str())
            .range(offset..offset.saturating_add(len))
            .await
        {
            Ok(buffer) => Ok(Some(buffer.to_bytes())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == ErrorKind::RangeNotSatisfied => {
                // The object is shorter than asked: return what it has from `offset`.
                let size = match self.op.stat(key.as_str()).await {
                    Ok(meta) => meta.content_length(),
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(map_err("reading", key.as_str(), &e)),
                };
                if offset >= size {
                    return Ok(Some(Bytes::new()));
                }
                self.op
                    .read_with(key.as_str())
                    .range(offset..size)
                    .await
                    .map(|b| Some(b.to_bytes()))
                    .map_err(|e| map_err("reading", key.as_str(), &e))
            }
            Err(e) => Err(map_err("reading", key.as_str(), &e)),
        }
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError> {
        match self.op.stat(key.as_str()).await {
            Ok(meta) => Ok(meta.mode() == EntryMode::FILE),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(map_err("checking", key.as_str(), &e)),
        }
    }

    async fn list_sized(&self, prefix: &str) -> Result<Vec<(ObjectKey, u64)>, StorageError> {
        let keys = self.list(prefix).await?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // Listings do not carry sizes on every backend (fs); a stat does.
            match self.op.stat(key.as_str()).await {
                Ok(meta) => out.push((key, meta.content_length())),
                Err(e) if e.kind() == ErrorKind::NotFound => {} // deleted meanwhile
                Err(e) => return Err(map_err("checking", key.as_str(), &e)),
            }
        }
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self.op.delete(key.as_str()).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err("deleting", key.as_str(), &e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StorageError> {
        // opendal lists directories; list the deepest directory the prefix names and keep
        // the entries that really start with the prefix.
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let entries = match self.op.lister_with(dir).recursive(true).await {
            Ok(lister) => lister
                .try_collect::<Vec<_>>()
                .await
                .map_err(|e| map_err("listing", prefix, &e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(map_err("listing", prefix, &e)),
        };
        let mut keys: Vec<ObjectKey> = entries
            .into_iter()
            .filter(|entry| entry.metadata().mode() == EntryMode::FILE)
            .filter(|entry| {
                let path = entry.path();
                path.starts_with(prefix) && !path.starts_with(ATOMIC_DIR)
            })
            .filter_map(|entry| match ObjectKey::parse(entry.path()) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!(path = entry.path(), error = %e, "storage: ignoring a foreign file");
                    None
                }
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn check(&self) -> Result<(), StorageError> {
        // opendal's check lists the root, which succeeds on an fs root that has vanished
        // (an unmounted NAS share); the root must also still be a directory.
        if let Some(root) = &self.fs_root {
            match tokio::fs::metadata(root).await {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(StorageError::Unavailable(format!(
                        "storage root {} is not a directory",
                        root.display()
                    )));
                }
                Err(e) => {
                    return Err(StorageError::Unavailable(format!(
                        "storage root {}: {e}",
                        root.display()
                    )));
                }
            }
        }
        self.op
            .check()
            .await
            .map_err(|e| map_err("checking", "storage root", &e))
    }
}

#[cfg(test)]
mod contract_tests;
