//! Personal access tokens for automation (issue 16 §2): long-lived bearer secrets that a
//! user creates for scripts and CI jobs.
//!
//! A token's secret is `coffer_pat_` and 64 hex digits (32 random bytes). It is shown once,
//! at creation; the catalog keeps only its SHA-256 (a secret of 256 random bits needs no
//! slow, salted hash: nothing can be guessed from the digest). A token acts for its owner
//! with the *narrower* of its own role (if it names one) and the owner's current role, and
//! stops working when the owner is deactivated, loses the role it names, or it expires.

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest as _, Sha256};

use crate::auth::Role;
use crate::{ApiTokenId, UserId};

/// How every token secret begins: recognisable in logs, leak scanners and config files,
/// and how the server tells a token from a session JWT.
pub const TOKEN_PREFIX: &str = "coffer_pat_";

/// How often, at most, a token's last use is written back (per token): a script calling
/// in a loop must not turn every request into a write.
pub const LAST_USE_EVERY: TimeDelta = TimeDelta::minutes(1);

/// The secret shown once: the prefix and the 32 random bytes, hex.
#[must_use]
pub fn encode_secret(random: &[u8; 32]) -> String {
    format!("{TOKEN_PREFIX}{}", hex::encode(random))
}

/// Whether a bearer value is meant as a personal access token (not a session JWT).
#[must_use]
pub fn is_token(bearer: &str) -> bool {
    bearer.starts_with(TOKEN_PREFIX)
}

/// What the catalog stores and looks a token up by: SHA-256 of the whole secret, hex.
#[must_use]
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Equality of two hashes in time independent of where they differ.
#[must_use]
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A valid token name: 1 to 64 characters, no control characters, not only spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

/// Why a string is not a [`TokenName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("token name must be 1 to 64 characters, without control characters")]
pub struct TokenNameError;

impl TokenName {
    pub const MAX_LEN: usize = 64;

    /// # Errors
    /// When the name breaks the rules in the type's documentation.
    pub fn parse(raw: &str) -> Result<Self, TokenNameError> {
        let chars = raw.chars().count();
        if chars == 0
            || chars > Self::MAX_LEN
            || raw.trim().is_empty()
            || raw.chars().any(char::is_control)
        {
            return Err(TokenNameError);
        }
        Ok(Self(raw.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub user_id: UserId,
    /// The owner's username, for listings.
    pub username: String,
    pub name: String,
    /// The role the token is limited to; `None` follows the owner's role.
    pub role: Option<Role>,
    pub created_at: DateTime<Utc>,
    /// `None`: never expires (only an admin may create such a token).
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub last_used_ip: Option<String>,
}

impl ApiToken {
    /// How the audit trail names the credential: `token 7 "ci-deploy"`.
    #[must_use]
    pub fn credential(&self) -> String {
        format!("token {} {:?}", self.id, self.name)
    }

    /// Whether its last use is old enough to be written again.
    #[must_use]
    pub fn last_use_due(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at
            .is_none_or(|last| now - last >= LAST_USE_EVERY || now < last)
    }
}

/// Why a token with a known secret is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    #[error("the token has expired")]
    Expired,
    #[error("the token's owner is deactivated")]
    OwnerInactive,
    #[error("the token's role is above its owner's current role")]
    RoleAboveOwner,
}

/// The less privileged of two roles.
#[must_use]
pub fn narrower(a: Role, b: Role) -> Role {
    // `Role`'s order runs from most to least privileged.
    a.max(b)
}

/// The policy: the role a token acts with now, or why it is refused.
///
/// # Errors
/// The first [`TokenRefusal`] that applies.
pub fn effective_role(
    token: &ApiToken,
    owner_role: Role,
    owner_active: bool,
    now: DateTime<Utc>,
) -> Result<Role, TokenRefusal> {
    if token.expires_at.is_some_and(|end| now >= end) {
        return Err(TokenRefusal::Expired);
    }
    if !owner_active {
        return Err(TokenRefusal::OwnerInactive);
    }
    match token.role {
        None => Ok(owner_role),
        Some(role) if narrower(role, owner_role) != role => Err(TokenRefusal::RoleAboveOwner),
        Some(role) => Ok(role),
    }
}

/// Why a token may not be created as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenGrantError {
    #[error("the token's role may not be above its owner's role")]
    RoleAboveOwner,
    #[error("only an admin may create a token that never expires")]
    NoExpiryNeedsAdmin,
    #[error("the expiry must be in the future")]
    ExpiryInPast,
}

/// The rules of creating a token: its role at most the owner's; no expiry only when an
/// admin asks; an expiry in the future.
///
/// # Errors
/// The first [`TokenGrantError`] that applies.
pub fn check_grant(
    requested_role: Option<Role>,
    owner_role: Role,
    expires_at: Option<DateTime<Utc>>,
    asked_by_admin: bool,
    now: DateTime<Utc>,
) -> Result<(), TokenGrantError> {
    if requested_role.is_some_and(|r| narrower(r, owner_role) != r) {
        return Err(TokenGrantError::RoleAboveOwner);
    }
    match expires_at {
        None if !asked_by_admin => Err(TokenGrantError::NoExpiryNeedsAdmin),
        Some(end) if end <= now => Err(TokenGrantError::ExpiryInPast),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Option<Role>, expires_at: Option<DateTime<Utc>>) -> ApiToken {
        ApiToken {
            id: ApiTokenId::new(1),
            user_id: UserId::new(2),
            username: "alice".to_owned(),
            name: "ci".to_owned(),
            role,
            created_at: DateTime::UNIX_EPOCH,
            expires_at,
            last_used_at: None,
            last_used_ip: None,
        }
    }

    #[test]
    fn secrets_are_prefixed_hex_and_hashed_with_sha256() {
        let secret = encode_secret(&[0xab; 32]);
        assert_eq!(secret.len(), TOKEN_PREFIX.len() + 64);
        assert!(is_token(&secret));
        assert!(!is_token("eyJhbGciOiJIUzI1NiJ9.x.y"));
        let hash = secret_hash(&secret);
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, secret_hash(&encode_secret(&[0xac; 32])));
        assert!(hashes_match(&hash, &secret_hash(&secret)));
        assert!(!hashes_match(&hash, &hash[..63]));
        assert!(!hashes_match(&hash, &secret_hash("coffer_pat_other")));
    }

    #[test]
    fn the_effective_role_is_the_narrower_and_a_role_above_the_owner_is_refused() {
        use Role::{Admin, Operator, Viewer};
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(10);
        // (token role, owner role, expected)
        let table = [
            (None, Admin, Ok(Admin)),
            (None, Viewer, Ok(Viewer)),
            (Some(Viewer), Admin, Ok(Viewer)),
            (Some(Operator), Operator, Ok(Operator)),
            (Some(Operator), Viewer, Err(TokenRefusal::RoleAboveOwner)),
            (Some(Admin), Operator, Err(TokenRefusal::RoleAboveOwner)),
        ];
        for (role, owner, expected) in table {
            assert_eq!(
                effective_role(&token(role, None), owner, true, now),
                expected,
                "{role:?} of {owner}"
            );
        }
        assert_eq!(
            effective_role(&token(None, None), Admin, false, now),
            Err(TokenRefusal::OwnerInactive)
        );
        assert_eq!(
            effective_role(&token(None, Some(now)), Admin, true, now),
            Err(TokenRefusal::Expired)
        );
        assert_eq!(
            effective_role(
                &token(None, Some(now + TimeDelta::seconds(1))),
                Admin,
                true,
                now
            ),
            Ok(Admin)
        );
    }

    #[test]
    fn grants() {
        use Role::{Admin, Operator, Viewer};
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(10);
        let later = Some(now + TimeDelta::days(1));
        assert_eq!(
            check_grant(Some(Viewer), Operator, later, false, now),
            Ok(())
        );
        assert_eq!(check_grant(None, Viewer, later, false, now), Ok(()));
        assert_eq!(
            check_grant(Some(Admin), Operator, later, true, now),
            Err(TokenGrantError::RoleAboveOwner)
        );
        assert_eq!(
            check_grant(None, Operator, None, false, now),
            Err(TokenGrantError::NoExpiryNeedsAdmin)
        );
        assert_eq!(check_grant(None, Operator, None, true, now), Ok(()));
        assert_eq!(
            check_grant(None, Admin, Some(now), true, now),
            Err(TokenGrantError::ExpiryInPast)
        );
    }

    #[test]
    fn names_and_last_use() {
        assert!(TokenName::parse("ci deploy").is_ok());
        assert!(TokenName::parse(&"x".repeat(64)).is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(65)] {
            assert_eq!(TokenName::parse(bad), Err(TokenNameError), "{bad:?}");
        }
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(1);
        let mut t = token(None, None);
        assert!(t.last_use_due(now));
        t.last_used_at = Some(now - TimeDelta::seconds(59));
        assert!(!t.last_use_due(now));
        t.last_used_at = Some(now - LAST_USE_EVERY);
        assert!(t.last_use_due(now));
        assert_eq!(t.credential(), "token 1 \"ci\"");
    }
}
