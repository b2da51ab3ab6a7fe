//! argon2id password hashing, off the async executor and bounded in concurrency.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use coffer_domain::crypto::{CryptoError, PasswordCheck, PasswordHasher};
use coffer_domain::secrets::Secret;
use tokio::sync::Semaphore;

/// argon2id with OWASP's minimum parameters (m = 19 MiB, t = 2, p = 1) or stronger.
/// At most `concurrency` hashes run at once (each holds `m` of memory); further logins
/// wait their turn instead of exhausting memory.
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A real hash of a random password, made on first need (commands that never log
    /// anyone in never pay for it).
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Argon2Hasher {
    /// The default: m = 19456 KiB, t = 2, p = 1, two hashes at a time.
    ///
    /// # Errors
    /// When the parameters are refused (never for the defaults).
    pub fn new() -> Result<Self, CryptoError> {
        Self::with_params(19 * 1024, 2, 1, 2)
    }

    /// Custom parameters (tests use cheaper ones only through this).
    ///
    /// # Errors
    /// When argon2 refuses the parameters.
    pub fn with_params(
        m_kib: u32,
        t: u32,
        p: u32,
        concurrency: usize,
    ) -> Result<Self, CryptoError> {
        let params = Params::new(m_kib, t, p, None).map_err(|e| CryptoError(e.to_string()))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: tokio::sync::OnceCell::new(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(Params) -> T + Send + 'static,
    ) -> Result<T, CryptoError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| CryptoError(e.to_string()))?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || work(params))
            .await
            .map_err(|e| CryptoError(format!("password hashing task failed: {e}")))
    }
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(params: &Params, password: &[u8]) -> Result<String, CryptoError> {
    argon2(params.clone())
        .hash_password(password)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError(e.to_string()))
}

/// Whether a stored hash used weaker settings than `current`.
fn outdated(stored: &PasswordHash, current: &Params) -> bool {
    if stored.algorithm.as_str() != "argon2id" || stored.version != Some(Version::V0x13.into()) {
        return true;
    }
    Params::try_from(stored).map_or(true, |p| {
        p.m_cost() < current.m_cost()
            || p.t_cost() < current.t_cost()
            || p.p_cost() != current.p_cost()
    })
}

/// Whether `stored` is a bcrypt hash (`$2a$`, `$2b$`, `$2y$`): the prototype's, carried
/// over by `coffer import prototype`.
fn is_bcrypt(stored: &str) -> bool {
    ["$2a$", "$2b$", "$2x$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
}

fn verify_blocking(
    params: &Params,
    password: &[u8],
    stored: &str,
) -> Result<PasswordCheck, CryptoError> {
    if is_bcrypt(stored) {
        // Accepted once: a match is answered with an argon2id hash that replaces it.
        return match bcrypt::verify(password, stored) {
            Ok(true) => Ok(PasswordCheck::Match {
                upgraded_hash: Some(hash_blocking(params, password)?),
            }),
            Ok(false) => Ok(PasswordCheck::Mismatch),
            Err(e) => Err(CryptoError(format!("stored bcrypt hash: {e}"))),
        };
    }
    let parsed = PasswordHash::new(stored).map_err(|e| CryptoError(format!("stored hash: {e}")))?;
    match argon2(params.clone()).verify_password(password, &parsed) {
        Ok(()) => {
            let upgraded_hash = if outdated(&parsed, params) {
                Some(hash_blocking(params, password)?)
            } else {
                None
            };
            Ok(PasswordCheck::Match { upgraded_hash })
        }
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(PasswordCheck::Mismatch),
        Err(e) => Err(CryptoError(e.to_string())),
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Secret) -> Result<String, CryptoError> {
        let password = password.clone();
        self.blocking(move |params| hash_blocking(&params, password.expose().as_bytes()))
            .await?
    }

    async fn verify(&self, password: &Secret, stored: &str) -> Result<PasswordCheck, CryptoError> {
        let password = password.clone();
        let stored = stored.to_owned();
        self.blocking(move |params| verify_blocking(&params, password.expose().as_bytes(), &stored))
            .await?
    }

    async fn verify_dummy(&self, password: &Secret) {
        // A real hash of a random password, so a dummy verification costs exactly what
        // a real one does.
        let dummy = self
            .dummy_hash
            .get_or_try_init(|| async {
                let filler =
                    Secret::new(crate::random_token(24).map_err(|e| CryptoError(e.to_string()))?);
                self.hash(&filler).await
            })
            .await;
        if let Ok(dummy) = dummy {
            let _ = self.verify(password, dummy).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bcrypt_hash_matches_once_and_is_replaced_by_argon2id() {
        let hasher = Argon2Hasher::new().expect("hasher");
        // Made by Python's `bcrypt.hashpw(b"Op-4711", bcrypt.gensalt(rounds=4))`-style
        // hashing (the prototype used rounds 10-12).
        let stored = bcrypt::hash("Op-4711", 4).expect("bcrypt");
        assert!(stored.starts_with("$2b$04$"), "{stored}");
        let PasswordCheck::Match {
            upgraded_hash: Some(upgraded),
        } = hasher
            .verify(&Secret::from("Op-4711"), &stored)
            .await
            .expect("verify")
        else {
            panic!("a bcrypt match is upgraded");
        };
        assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
        assert_eq!(
            hasher
                .verify(&Secret::from("Op-4711"), &upgraded)
                .await
                .expect("verify"),
            PasswordCheck::Match {
                upgraded_hash: None
            }
        );
        assert_eq!(
            hasher
                .verify(&Secret::from("op-4711"), &stored)
                .await
                .expect("verify"),
            PasswordCheck::Mismatch
        );
        // The `$2y$` spelling of PHP and the `$2a$` of older libraries verify too.
        let y = stored.replacen("$2b$", "$2y$", 1);
        assert!(matches!(
            hasher
                .verify(&Secret::from("Op-4711"), &y)
                .await
                .expect("verify"),
            PasswordCheck::Match { .. }
        ));
        assert!(
            hasher
                .verify(&Secret::from("x"), "$2b$04$broken")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn hashes_verify_and_mismatch() {
        let hasher = Argon2Hasher::new().expect("hasher");
        let good = Secret::from("correct horse battery staple");
        let hash = hasher.hash(&good).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        assert_eq!(
            hasher.verify(&good, &hash).await.expect("verify"),
            PasswordCheck::Match {
                upgraded_hash: None
            }
        );
        assert_eq!(
            hasher
                .verify(&Secret::from("wrong horse battery staple"), &hash)
                .await
                .expect("verify"),
            PasswordCheck::Mismatch
        );
        // Two salts, two hashes.
        assert_ne!(hash, hasher.hash(&good).await.expect("hash"));
    }

    #[tokio::test]
    async fn weaker_hashes_are_upgraded_on_login() {
        let weak = Argon2Hasher::with_params(8 * 1024, 1, 1, 1).expect("weak hasher");
        let strong = Argon2Hasher::new().expect("hasher");
        let pw = Secret::from("correct horse battery staple");
        let old = weak.hash(&pw).await.expect("hash");
        let PasswordCheck::Match {
            upgraded_hash: Some(new),
        } = strong.verify(&pw, &old).await.expect("verify")
        else {
            panic!("a weaker hash must be upgraded");
        };
        assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert_eq!(
            strong.verify(&pw, &new).await.expect("verify"),
            PasswordCheck::Match {
                upgraded_hash: None
            }
        );
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        let hasher = Argon2Hasher::new().expect("hasher");
        let long = "x".repeat(1000);
        let hash = hasher
            .hash(&Secret::from(long.as_str()))
            .await
            .expect("hash");
        let mut other = long.clone();
        other.push('y');
        assert_eq!(
            hasher
                .verify(&Secret::from(other.as_str()), &hash)
                .await
                .expect("verify"),
            PasswordCheck::Mismatch
        );
    }

    #[tokio::test]
    async fn dummy_verification_does_not_fail() {
        let hasher = Argon2Hasher::new().expect("hasher");
        hasher.verify_dummy(&Secret::from("anything at all")).await;
    }
}
