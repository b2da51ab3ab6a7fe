//! The master key file as the application sees it: exported as hex for safekeeping, and
//! rotated without rewriting data — a new key file made durable beside the old one, the
//! repository's data keys re-wrapped under it (by the engine, through
//! [`KeyRewrap`]), and only then the old file replaced.
//!
//! A rotation cut short (a crash, `kill -9`, a power cut) leaves `<key>.new` beside the
//! key file, and the repository wrapped under one of the two. [`MasterKeyFile::recover`],
//! run before the repository is opened, asks the repository which key opens it and
//! finishes the rotation (the new key replaces the old) or rolls it back (the new key is
//! removed), so the key file in place always opens the repository.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::crypto::{CryptoError, KeyRewrap, MasterKeys};
use coffer_domain::secrets::Secret;

use crate::keyfile::load_or_create_key;

/// The master key in `path`, with the repository that depends on it.
pub struct MasterKeyFile {
    path: PathBuf,
    lock: PathBuf,
    rewrap: Arc<dyn KeyRewrap>,
}

impl std::fmt::Debug for MasterKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What [`MasterKeyFile::recover`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// No rotation was interrupted.
    Clean,
    /// The repository still opened with the old key: the new key file was removed.
    RolledBack,
    /// The repository was already wrapped under the new key: it replaced the old one.
    Finished,
}

impl MasterKeyFile {
    /// `lock` is the file whose exclusive lock every process takes before it reads the
    /// key to open the repository (the data directory's `repository.lock`): a rotation
    /// holds it throughout, so nobody opens the repository, or recovers, half-way.
    #[must_use]
    pub fn new(path: PathBuf, lock: PathBuf, rewrap: Arc<dyn KeyRewrap>) -> Self {
        Self { path, lock, rewrap }
    }

    /// Finishes or rolls back a rotation that was cut short, so the key file opens the
    /// repository. The caller holds the lock named in [`MasterKeyFile::new`].
    ///
    /// # Errors
    /// Neither key opens the repository (the key file was replaced by hand, or the
    /// repository's key object is damaged); unreadable key files; storage failures.
    pub async fn recover(&self) -> Result<Recovery, CryptoError> {
        let next = next_path(&self.path);
        remove_temporaries(&next);
        if !next.exists() {
            return Ok(Recovery::Clean);
        }
        if self.path.exists() {
            let (current, _) = load_or_create_key(&self.path).map_err(failed)?;
            if self.rewrap.opens(&current).await? {
                // Cut short before the repository changed: the new key was never used.
                std::fs::remove_file(&next).map_err(failed)?;
                sync_dir(&self.path)?;
                return Ok(Recovery::RolledBack);
            }
        }
        let (new, _) = load_or_create_key(&next).map_err(failed)?;
        if !self.rewrap.opens(&new).await? {
            return Err(CryptoError(format!(
                "an interrupted key rotation left {} and {}, and neither opens the repository: restore the master key from your key export",
                self.path.display(),
                next.display()
            )));
        }
        // Cut short after the repository was re-wrapped: finish what was started.
        std::fs::rename(&next, &self.path).map_err(failed)?;
        sync_dir(&self.path)?;
        Ok(Recovery::Finished)
    }

    /// Takes the exclusive lock named in [`MasterKeyFile::new`], waiting for a process
    /// that is opening the repository.
    async fn lock(&self) -> Result<std::fs::File, CryptoError> {
        let path = self.lock.clone();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(failed)?
        .map_err(|e| CryptoError(format!("cannot lock {}: {e}", self.lock.display())))
    }
}

fn failed(e: impl std::fmt::Display) -> CryptoError {
    CryptoError(e.to_string())
}

/// Where the new key waits while the repository is re-wrapped: `<key file>.new`.
fn next_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// Makes a rename or removal in the key's directory durable.
fn sync_dir(path: &Path) -> Result<(), CryptoError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CryptoError(format!("cannot sync {}: {e}", dir.display())))
}

/// Removes what a creation of `<key>.new` cut short left (`<key>.new.tmp-…`, a key that
/// was never linked into place, so never used).
fn remove_temporaries(next: &Path) {
    let (Some(dir), Some(name)) = (next.parent(), next.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.to_os_string();
    prefix.push(".tmp-");
    let prefix = prefix.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Test builds only (feature `crash-points`): ends the process on the spot, as `kill -9`
/// would, when `COFFER_CRASH_AT` names this point, so a test can cut a rotation short at
/// each of its steps.
#[cfg(feature = "crash-points")]
fn crash_point(name: &str) {
    if std::env::var("COFFER_CRASH_AT").is_ok_and(|at| at == name) {
        std::process::abort();
    }
}

#[cfg(not(feature = "crash-points"))]
fn crash_point(_: &str) {}

#[async_trait]
impl MasterKeys for MasterKeyFile {
    async fn export(&self) -> Result<Secret, CryptoError> {
        let (key, _) = load_or_create_key(&self.path).map_err(failed)?;
        Ok(Secret::new(hex::encode(key)))
    }

    async fn rotate(&self) -> Result<(), CryptoError> {
        let _lock = self.lock().await?;
        // A rotation cut short earlier is settled first, so `<key>.new` is free.
        self.recover().await?;
        let (old, _) = load_or_create_key(&self.path).map_err(failed)?;
        // The new key is durable on disk (file and directory synced) before the
        // repository depends on it; the old one stays until the repository's keys are
        // re-wrapped and read back.
        let next = next_path(&self.path);
        let (new, _) = load_or_create_key(&next).map_err(failed)?;
        crash_point("key-rotate:new-key");
        if let Err(e) = self.rewrap.rewrap(&old, &new).await {
            // Refused before the repository changed, or failed after it did (the read
            // back): the repository says which key it needs; what it cannot say now
            // (storage down) the next start settles.
            if let Err(settle) = self.recover().await {
                tracing::warn!(error = %settle, "key rotation failed and is not settled yet: the next start finishes or rolls it back");
            }
            return Err(e);
        }
        crash_point("key-rotate:rewrapped");
        std::fs::rename(&next, &self.path).map_err(failed)?;
        crash_point("key-rotate:renamed");
        sync_dir(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The repository's side, in memory: the master key its key material is wrapped
    /// under; refuses to re-wrap when told to.
    struct Repo {
        wrapped_under: Mutex<[u8; 32]>,
        fail: bool,
    }

    impl Repo {
        fn under(key: [u8; 32]) -> Arc<Self> {
            Arc::new(Self {
                wrapped_under: Mutex::new(key),
                fail: false,
            })
        }

        fn key(&self) -> [u8; 32] {
            *self.wrapped_under.lock().unwrap()
        }
    }

    #[async_trait]
    impl KeyRewrap for Repo {
        async fn rewrap(&self, old: &[u8; 32], new: &[u8; 32]) -> Result<(), CryptoError> {
            if self.fail {
                return Err(CryptoError("the repository refused".into()));
            }
            let mut under = self.wrapped_under.lock().unwrap();
            if *under != *old {
                return Err(CryptoError("wrong key".into()));
            }
            *under = *new;
            Ok(())
        }

        async fn opens(&self, key: &[u8; 32]) -> Result<bool, CryptoError> {
            Ok(self.key() == *key)
        }
    }

    fn hex_key(text: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).expect("hex");
        key
    }

    /// A key file at `dir/master.key` and the repository wrapped under it.
    fn setup(dir: &Path) -> (PathBuf, [u8; 32], Arc<Repo>, MasterKeyFile) {
        let path = dir.join("keys/master.key");
        let (key, _) = load_or_create_key(&path).unwrap();
        let repo = Repo::under(key);
        let keys = MasterKeyFile::new(path.clone(), dir.join("repository.lock"), repo.clone());
        (path, key, repo, keys)
    }

    #[test]
    fn export_is_the_key_file_and_rotation_rewraps_then_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old, repo, keys) = setup(dir.path());
        assert_eq!(hex_key(block_on(keys.export()).unwrap().expose()), old);

        block_on(keys.rotate()).unwrap();
        let new = load_or_create_key(&path).unwrap().0;
        assert_ne!(new, old);
        assert_eq!(
            repo.key(),
            new,
            "the repository is wrapped under the key in place"
        );
        assert!(!next_path(&path).exists(), "no key left beside it");
        assert_eq!(hex_key(block_on(keys.export()).unwrap().expose()), new);
    }

    #[test]
    fn a_refused_rewrap_keeps_the_old_key_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (old, _) = load_or_create_key(&path).unwrap();
        let repo = Arc::new(Repo {
            wrapped_under: Mutex::new(old),
            fail: true,
        });
        let keys = MasterKeyFile::new(path.clone(), dir.path().join("lock"), repo);
        let err = block_on(keys.rotate()).unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(
            load_or_create_key(&path).unwrap().0,
            old,
            "the old key stays"
        );
        assert!(!next_path(&path).exists(), "the unused new key is gone");
    }

    #[test]
    fn nothing_to_recover_after_a_clean_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, _, keys) = setup(dir.path());
        assert_eq!(block_on(keys.recover()).unwrap(), Recovery::Clean);
        block_on(keys.rotate()).unwrap();
        assert_eq!(block_on(keys.recover()).unwrap(), Recovery::Clean);
    }

    /// Cut short after the new key was written: the repository still needs the old key.
    #[test]
    fn a_rotation_cut_before_the_rewrap_is_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old, repo, keys) = setup(dir.path());
        load_or_create_key(&next_path(&path)).unwrap();
        let mut temp = next_path(&path).into_os_string();
        temp.push(".tmp-0123456789abcdef");
        std::fs::write(&temp, "half a key").unwrap();

        assert_eq!(block_on(keys.recover()).unwrap(), Recovery::RolledBack);
        assert_eq!(load_or_create_key(&path).unwrap().0, old);
        assert_eq!(repo.key(), old);
        assert!(!next_path(&path).exists());
        assert!(
            !Path::new(&temp).exists(),
            "leftovers of a cut creation go too"
        );
        block_on(keys.rotate()).unwrap();
        assert_eq!(repo.key(), load_or_create_key(&path).unwrap().0);
    }

    /// Cut short after the repository was re-wrapped, before the rename: the key in place
    /// no longer opens it; the new key beside it does and takes its place.
    #[test]
    fn a_rotation_cut_after_the_rewrap_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old, repo, keys) = setup(dir.path());
        let (new, _) = load_or_create_key(&next_path(&path)).unwrap();
        block_on(repo.rewrap(&old, &new)).unwrap();

        assert_eq!(block_on(keys.recover()).unwrap(), Recovery::Finished);
        assert_eq!(load_or_create_key(&path).unwrap().0, new);
        assert!(!next_path(&path).exists());
    }

    #[test]
    fn when_neither_key_opens_the_repository_both_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old, repo, keys) = setup(dir.path());
        let (new, _) = load_or_create_key(&next_path(&path)).unwrap();
        block_on(repo.rewrap(&old, &[7; 32])).unwrap();

        let err = block_on(keys.recover()).unwrap_err();
        assert!(err.to_string().contains("neither opens"), "{err}");
        assert_eq!(load_or_create_key(&path).unwrap().0, old);
        assert_eq!(load_or_create_key(&next_path(&path)).unwrap().0, new);
    }

    /// The crate's tests run on tokio's current-thread runtime.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }
}
