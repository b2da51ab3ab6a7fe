//! Personal access tokens (issue 16 §2): created by a user for themselves (by an admin for
//! anyone), listed, revoked. Turning a token back into an actor is authentication's work
//! (`AuthService::authenticate`, over the same port); the rules are `coffer_domain::tokens`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission, Role};
use coffer_domain::ports::{ApiTokenRepository, Clock, NewApiToken, UserRepository};
use coffer_domain::secrets::Secret;
use coffer_domain::tokens::{
    ApiToken, TokenGrantError, TokenName, check_grant, encode_secret, secret_hash,
};
use coffer_domain::{ApiTokenId, UserId};
use rand::TryRng as _;
use rand::rngs::SysRng;

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};

/// Errors of managing tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `invalid_token_name`.
    #[error("{0}")]
    InvalidName(String),
    /// `role_above_owner`, `expiry_required`, `expiry_in_past`.
    #[error(transparent)]
    Grant(#[from] TokenGrantError),
    /// `owner_required`: the local administrator has no account to own a token.
    #[error("name the user who will own the token")]
    OwnerRequired,
    /// `owner_inactive`: a token for a deactivated user would never work.
    #[error("user {0} is deactivated")]
    OwnerInactive(String),
    /// `session_required`: a token cannot create tokens.
    #[error("tokens are created with a password session or the CLI, not with a token")]
    SessionRequired,
}

impl CodedError for TokenError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::InvalidName(_) => "invalid_token_name",
            Self::Grant(TokenGrantError::RoleAboveOwner) => "role_above_owner",
            Self::Grant(TokenGrantError::NoExpiryNeedsAdmin) => "expiry_required",
            Self::Grant(TokenGrantError::ExpiryInPast) => "expiry_in_past",
            Self::OwnerRequired => "owner_required",
            Self::OwnerInactive(_) => "owner_inactive",
            Self::SessionRequired => "session_required",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::InvalidName(_)
            | Self::Grant(_)
            | Self::OwnerRequired
            | Self::OwnerInactive(_)
            | Self::SessionRequired => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(TokenError);

/// What a new token is asked to be.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub name: String,
    /// `None`: never (admins only).
    pub expires_at: Option<DateTime<Utc>>,
    /// `None`: the owner's role, whatever it becomes.
    pub role: Option<Role>,
    /// `None`: the caller.
    pub owner: Option<UserId>,
}

/// Which tokens to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenScope {
    /// The caller's.
    #[default]
    Own,
    /// One user's (admins, or anyone for themselves).
    User(UserId),
    /// Everyone's (admins).
    All,
}

pub struct TokenService {
    tokens: Arc<dyn ApiTokenRepository>,
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl TokenService {
    #[must_use]
    pub fn new(
        tokens: Arc<dyn ApiTokenRepository>,
        users: Arc<dyn UserRepository>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            tokens,
            users,
            clock,
            audit,
        }
    }

    /// Creates a token and returns it with its secret, which is shown only now.
    ///
    /// # Errors
    /// `Forbidden` without `view`, or without `manage_users` for someone else's token;
    /// `SessionRequired` when the caller is itself a token; `NotFound` for an unknown
    /// owner; the grant rules of [`check_grant`].
    pub async fn create(
        &self,
        actor: &Actor,
        request: TokenRequest,
    ) -> Result<(ApiToken, Secret), TokenError> {
        actor.require(Permission::View)?;
        if actor.client.credential.is_some() {
            // A token minting tokens could outlive its own expiry and revocation.
            return Err(TokenError::SessionRequired);
        }
        let owner_id = match (request.owner, actor.user_id) {
            (Some(owner), own) if Some(owner) != own => {
                actor.require(Permission::ManageUsers)?;
                owner
            }
            (Some(owner), _) => owner,
            (None, Some(own)) => own,
            (None, None) => return Err(TokenError::OwnerRequired),
        };
        let owner = self
            .users
            .get(owner_id)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no user with id {owner_id}")))?;
        let entry = AuditEntry::new(&actor.username, AuditAction::TokenCreate, &actor.client)
            .resource(format!("user:{owner_id}"));
        let name = match TokenName::parse(&request.name) {
            Ok(name) => name,
            Err(e) => {
                self.audit
                    .record(entry.failed().detail(e.to_string()))
                    .await?;
                return Err(TokenError::InvalidName(e.to_string()));
            }
        };
        if !owner.is_active {
            self.audit
                .record(entry.failed().detail("the owner is deactivated"))
                .await?;
            return Err(TokenError::OwnerInactive(owner.username.to_string()));
        }
        let now = self.clock.now();
        if let Err(e) = check_grant(
            request.role,
            owner.role,
            request.expires_at,
            actor.role == Role::Admin,
            now,
        ) {
            self.audit
                .record(entry.failed().detail(e.to_string()))
                .await?;
            return Err(e.into());
        }
        let mut random = [0u8; 32];
        SysRng
            .try_fill_bytes(&mut random)
            .map_err(|e| CommonError::Unexpected(anyhow::anyhow!("no randomness: {e}")))?;
        let secret = encode_secret(&random);
        let token = self
            .tokens
            .create(&NewApiToken {
                user_id: owner_id,
                name: name.as_str().to_owned(),
                role: request.role,
                secret_hash: secret_hash(&secret),
                created_at: now,
                expires_at: request.expires_at,
            })
            .await?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::TokenCreate, &actor.client)
                    .resource(format!("token:{}", token.id))
                    .detail(format!(
                        "{} for {}, role {}, {}",
                        token.credential(),
                        owner.username,
                        token.role.map_or("the owner's", Role::as_str),
                        token.expires_at.map_or_else(
                            || "never expires".to_owned(),
                            |t| format!("expires {}", t.format("%Y-%m-%dT%H:%M:%SZ"))
                        ),
                    )),
            )
            .await?;
        Ok((token, Secret::new(secret)))
    }

    /// Tokens, newest first, never their secrets.
    ///
    /// # Errors
    /// `Forbidden` without `view`, or without `manage_users` for others' tokens.
    pub async fn list(
        &self,
        actor: &Actor,
        scope: TokenScope,
    ) -> Result<Vec<ApiToken>, TokenError> {
        actor.require(Permission::View)?;
        let owner = match scope {
            TokenScope::User(id) if Some(id) == actor.user_id => Some(id),
            // The local administrator (no account) owns none; it sees everyone's.
            TokenScope::Own => actor.user_id,
            TokenScope::User(id) => {
                actor.require(Permission::ManageUsers)?;
                Some(id)
            }
            TokenScope::All => {
                actor.require(Permission::ManageUsers)?;
                None
            }
        };
        Ok(self.tokens.list(owner).await?)
    }

    /// Revokes a token: it stops working at once.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound` for an unknown token, or someone else's
    /// without `manage_users`.
    pub async fn revoke(&self, actor: &Actor, id: ApiTokenId) -> Result<ApiToken, TokenError> {
        actor.require(Permission::View)?;
        let not_found = || CommonError::NotFound(format!("no token with id {id}"));
        let token = self.tokens.get(id).await?.ok_or_else(not_found)?;
        if Some(token.user_id) != actor.user_id && !actor.role.allows(Permission::ManageUsers) {
            // Others' tokens are not even said to exist.
            return Err(not_found().into());
        }
        if !self.tokens.delete(id).await? {
            return Err(not_found().into());
        }
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::TokenRevoke, &actor.client)
                    .resource(format!("token:{id}"))
                    .detail(format!("{} of {}", token.credential(), token.username)),
            )
            .await?;
        Ok(token)
    }
}
