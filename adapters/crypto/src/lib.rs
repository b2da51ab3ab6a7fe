//! `coffer-crypto`: the crypto adapter. It implements the domain's crypto ports —
//! argon2id password hashing, HS256 session tokens and the master key file — and manages
//! secret key files.
//!
//! One provider throughout: the RustCrypto crates. Nothing here logs a secret; secrets
//! travel as `coffer_domain::secrets::Secret`.

mod keyfile;
mod master_key;
mod password;
mod token;

pub use keyfile::{KeyFileError, load_or_create_key, random_bytes, random_token};
pub use master_key::{MasterKeyFile, Recovery};
pub use password::Argon2Hasher;
pub use token::Hs256Tokens;
