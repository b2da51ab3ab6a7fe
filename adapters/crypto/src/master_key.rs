//! The master key file as the application sees it: exported as hex for safekeeping, and
//! rotated without rewriting data — a new key file made durable beside the old one, the
//! repository's data keys re-wrapped under it (by the engine, through
//! [`KeyRewrap`]), and only then the old file replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::crypto::{CryptoError, KeyRewrap, MasterKeys};
use coffer_domain::secrets::Secret;

use crate::keyfile::load_or_create_key;

/// The master key in `path`, with the repository that depends on it.
pub struct MasterKeyFile {
    path: PathBuf,
    rewrap: Arc<dyn KeyRewrap>,
}

impl std::fmt::Debug for MasterKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKeyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl MasterKeyFile {
    #[must_use]
    pub fn new(path: PathBuf, rewrap: Arc<dyn KeyRewrap>) -> Self {
        Self { path, rewrap }
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

#[async_trait]
impl MasterKeys for MasterKeyFile {
    async fn export(&self) -> Result<Secret, CryptoError> {
        let (key, _) = load_or_create_key(&self.path).map_err(failed)?;
        Ok(Secret::new(hex::encode(key)))
    }

    async fn rotate(&self) -> Result<(), CryptoError> {
        let (old, _) = load_or_create_key(&self.path).map_err(failed)?;
        // The new key is durable on disk before the repository depends on it; the old one
        // stays until the repository's keys are re-wrapped and read back.
        let next = next_path(&self.path);
        let _ = std::fs::remove_file(&next);
        let (new, _) = load_or_create_key(&next).map_err(failed)?;
        self.rewrap.rewrap(&old, &new).await?;
        std::fs::rename(&next, &self.path).map_err(failed)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Remembers the keys it was asked to re-wrap between; fails when told to.
    #[derive(Default)]
    struct Rewraps {
        seen: Mutex<Vec<([u8; 32], [u8; 32])>>,
        fail: bool,
    }

    #[async_trait]
    impl KeyRewrap for Rewraps {
        async fn rewrap(&self, old: &[u8; 32], new: &[u8; 32]) -> Result<(), CryptoError> {
            if self.fail {
                return Err(CryptoError("the repository refused".into()));
            }
            self.seen.lock().unwrap().push((*old, *new));
            Ok(())
        }
    }

    fn hex_key(text: &str) -> [u8; 32] {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text, &mut key).expect("hex");
        key
    }

    #[test]
    fn export_is_the_key_file_and_rotation_rewraps_then_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/master.key");
        let rewraps = Arc::new(Rewraps::default());
        let keys = MasterKeyFile::new(path.clone(), rewraps.clone());
        let exported = block_on(keys.export()).unwrap();
        let old = hex_key(exported.expose());
        assert_eq!(load_or_create_key(&path).unwrap().0, old);

        block_on(keys.rotate()).unwrap();
        let new = load_or_create_key(&path).unwrap().0;
        assert_ne!(new, old);
        assert_eq!(*rewraps.seen.lock().unwrap(), [(old, new)]);
        assert!(!next_path(&path).exists(), "no key left beside it");
        assert_eq!(hex_key(block_on(keys.export()).unwrap().expose()), new);
    }

    #[test]
    fn a_refused_rewrap_keeps_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let rewraps = Arc::new(Rewraps {
            fail: true,
            ..Rewraps::default()
        });
        let keys = MasterKeyFile::new(path.clone(), rewraps);
        let (old, _) = load_or_create_key(&path).unwrap();
        let err = block_on(keys.rotate()).unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(
            load_or_create_key(&path).unwrap().0,
            old,
            "the old key stays"
        );
    }

    /// The crate's tests run on tokio's current-thread runtime.
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }
}
