//! Secret key files: 256-bit keys, created at first start with mode 0600 in a 0700
//! directory, refused when their permissions are looser. Stored as hex text so an operator
//! can copy one into a password manager.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::TryRng as _;
use rand::rngs::SysRng;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}` and start again"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is damaged: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot {action} key file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// `len` bytes from the operating system's CSPRNG.
///
/// # Errors
/// When the OS cannot supply randomness.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, KeyFileError> {
    let mut buf = vec![0u8; len];
    SysRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| KeyFileError::Random(e.to_string()))?;
    Ok(buf)
}

/// A random URL-safe token with `bytes` bytes of entropy.
///
/// # Errors
/// When the OS cannot supply randomness.
pub fn random_token(bytes: usize) -> Result<String, KeyFileError> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(bytes)?))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError {
    let path = path.to_path_buf();
    move |source| KeyFileError::Io {
        action,
        path,
        source,
    }
}

/// Loads the 32-byte key at `path`, creating it (and its directory) when missing.
/// Returns the key and whether it was just created.
///
/// # Errors
/// Looser permissions than 0600, a damaged file, or an I/O failure.
pub fn load_or_create_key(path: &Path) -> Result<([u8; 32], bool), KeyFileError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            check_mode(path, &meta)?;
            let text = std::fs::read_to_string(path).map_err(io("read", path))?;
            Ok((parse_key(path, &text)?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create_key(path)? {
            Some(key) => Ok((key, true)),
            // Another process created it at the same moment: use theirs.
            None => load_or_create_key(path),
        },
        Err(e) => Err(io("read", path)(e)),
    }
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &std::fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

fn parse_key(path: &Path, text: &str) -> Result<[u8; 32], KeyFileError> {
    let invalid = |reason: &str| KeyFileError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key)
        .map_err(|_| invalid("expected 64 hexadecimal characters"))?;
    Ok(key)
}

/// Creates the key file atomically: the key is written and synced under a temporary
/// name, then hard-linked to `path`, which fails if `path` exists — so a concurrent
/// creator never sees a half-written key. `None` when another process won the race.
fn create_key(path: &Path) -> Result<Option<[u8; 32]>, KeyFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(io("create the directory of", path))?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&random_bytes(32)?);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", hex::encode(random_bytes(8)?)));
    let temp: PathBuf = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io("create", path)(e));
    }
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io("create", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/session.key");
        let (first, created) = load_or_create_key(&path).expect("create");
        assert!(created);
        let (second, created) = load_or_create_key(&path).expect("load");
        assert!(!created);
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = std::fs::metadata(path.parent().expect("dir"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dir_mode, 0o700);
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_readable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.key");
        load_or_create_key(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create_key(&path).expect_err("loose permissions");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_a_damaged_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.key");
        std::fs::write(&path, "not hex\n").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        assert!(matches!(
            load_or_create_key(&path),
            Err(KeyFileError::Invalid { .. })
        ));
    }

    #[test]
    fn concurrent_creators_agree_on_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/master.key");
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_key(&path).expect("create or load").0))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(
            keys.windows(2).all(|w| w[0] == w[1]),
            "every creator ends up with the same key"
        );
        assert_eq!(
            std::fs::read_dir(path.parent().expect("dir"))
                .expect("dir")
                .count(),
            1,
            "no temporaries left"
        );
    }

    #[test]
    fn random_tokens_differ() {
        let a = random_token(16).expect("token");
        assert_eq!(a.len(), 22);
        assert_ne!(a, random_token(16).expect("token"));
    }
}
