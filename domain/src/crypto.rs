//! Crypto ports: password hashing, session tokens and the master key. The crypto adapter
//! implements them; the repository engine re-wraps its keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::secrets::Secret;

/// A failure of the crypto machinery itself (not a wrong password).
#[derive(Debug, thiserror::Error)]
#[error("crypto error: {0}")]
pub struct CryptoError(pub String);

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    Match {
        /// A new hash when the stored one used weaker parameters than today's.
        upgraded_hash: Option<String>,
    },
    Mismatch,
}

/// Password hashing (argon2id).
///
/// Contract: `hash` salts itself and returns a self-describing (PHC) string; `verify`
/// takes about as long whether or not the password matches; `verify_dummy` takes about
/// as long as a real `verify`, for unknown usernames. Work runs off the async executor
/// and is bounded in concurrency, so a flood of logins cannot exhaust memory.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: &Secret) -> Result<String, CryptoError>;
    async fn verify(&self, password: &Secret, stored: &str) -> Result<PasswordCheck, CryptoError>;
    async fn verify_dummy(&self, password: &Secret);
}

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    /// The user's id.
    pub subject: i64,
    /// Unique token id, for revocation.
    pub token_id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The user's token generation when issued.
    pub generation: i64,
    /// The value a cookie-authenticated, state-changing request must echo in
    /// `X-CSRF-Token`.
    pub csrf: String,
}

/// Why a token is refused. Deliberately coarse: the client learns only "401".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token issuer or audience mismatch")]
    Audience,
}

/// The claims of a device cookie: "this client logged in as `username` before". It
/// grants nothing but an exemption from the per-account login limit (see
/// [`crate::throttle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClaims {
    /// The username it was issued to, as stored.
    pub username: String,
    /// Unique per client; its failures are counted under it.
    pub device_id: String,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Issues and checks session tokens and device cookies (JWT, HS256, algorithm pinned).
///
/// Contract: a device token is never accepted by `verify` and a session token never by
/// `verify_device` (they are signed for different audiences); both are unforgeable
/// without the session signing key.
pub trait TokenCodec: Send + Sync {
    fn issue(&self, claims: &SessionClaims) -> Result<Secret, CryptoError>;
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<SessionClaims, TokenError>;
    fn issue_device(&self, claims: &DeviceClaims) -> Result<Secret, CryptoError>;
    fn verify_device(&self, token: &str, now: DateTime<Utc>) -> Result<DeviceClaims, TokenError>;
}

/// The master key file: exported for safekeeping, rotated on request.
///
/// Contract: `export` returns the key as text an operator can store elsewhere (hex);
/// `rotate` makes the new key durable before the repository depends on it and replaces
/// the old one only once the repository's keys are re-wrapped under the new one, so an
/// interruption at any point leaves a key that opens the repository.
#[async_trait]
pub trait MasterKeys: Send + Sync {
    async fn export(&self) -> Result<Secret, CryptoError>;
    async fn rotate(&self) -> Result<(), CryptoError>;
}

/// Re-wraps the repository's data keys under a new master key; no data is rewritten.
#[async_trait]
pub trait KeyRewrap: Send + Sync {
    async fn rewrap(&self, old: &[u8; 32], new: &[u8; 32]) -> Result<(), CryptoError>;

    /// Whether `key` opens the repository's key material as it is now: how an
    /// interrupted rotation learns which of the two key files the repository depends on.
    async fn opens(&self, key: &[u8; 32]) -> Result<bool, CryptoError>;
}
