//! `coffer-crypto`: the crypto adapter. It implements the domain's crypto ports —
//! argon2id password hashing and HS256 session tokens — and manages secret key files.
//!
//! One provider throughout: the RustCrypto crates. Nothing here logs a secret; secrets
//! travel as `coffer_domain::secrets::Secret`.

mod keyfile;
mod password;
mod token;

pub use keyfile::{KeyFileError, load_or_create_key, random_bytes, random_token};
pub use password::Argon2Hasher;
pub use token::Hs256Tokens;
