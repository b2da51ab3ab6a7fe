//! Managing user accounts (permission `manage_users`) and listing roles.

use std::sync::Arc;

use coffer_domain::UserId;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission, Role, Username, check_password};
use coffer_domain::crypto::PasswordHasher;
use coffer_domain::ports::{
    Clock, RepoError, RoleRepository, StoredRole, User, UserChanges, UserRepository,
};
use coffer_domain::secrets::Secret;

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};

/// Errors of managing user accounts.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `invalid_username`.
    #[error("{0}")]
    InvalidUsername(String),
    /// `weak_password`.
    #[error("{0}")]
    WeakPassword(String),
    /// `username_taken`.
    #[error("{0}")]
    UsernameTaken(String),
    /// `last_admin`: the change would leave no active admin.
    #[error("{0}")]
    LastAdmin(String),
}

impl CodedError for UserError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::InvalidUsername(_) => "invalid_username",
            Self::WeakPassword(_) => "weak_password",
            Self::UsernameTaken(_) => "username_taken",
            Self::LastAdmin(_) => "last_admin",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::InvalidUsername(_)
            | Self::WeakPassword(_)
            | Self::UsernameTaken(_)
            | Self::LastAdmin(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(UserError);

pub struct UserService {
    users: Arc<dyn UserRepository>,
    roles: Arc<dyn RoleRepository>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

fn parse_username(raw: &str) -> Result<Username, UserError> {
    Username::parse(raw).map_err(|e| UserError::InvalidUsername(e.to_string()))
}

impl UserService {
    #[must_use]
    pub fn new(
        users: Arc<dyn UserRepository>,
        roles: Arc<dyn RoleRepository>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            users,
            roles,
            hasher,
            clock,
            audit,
        }
    }

    /// # Errors
    /// `Forbidden` without `manage_users`.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<User>, UserError> {
        actor.require(Permission::ManageUsers)?;
        Ok(self.users.list().await?)
    }

    /// # Errors
    /// `Forbidden` without `manage_users`; `NotFound`.
    pub async fn get(&self, actor: &Actor, id: UserId) -> Result<User, UserError> {
        actor.require(Permission::ManageUsers)?;
        Ok(self
            .users
            .get(id)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no user with id {id}")))?)
    }

    /// # Errors
    /// `Forbidden`; `Invalid` for a bad username or password; `Conflict` for a taken name.
    pub async fn create(
        &self,
        actor: &Actor,
        username: &str,
        password: &Secret,
        role: Role,
    ) -> Result<User, UserError> {
        actor.require(Permission::ManageUsers)?;
        let username = parse_username(username)?;
        check_password(password.expose(), &username)
            .map_err(|e| UserError::WeakPassword(e.to_string()))?;
        let hash = self.hasher.hash(password).await?;
        let user = self
            .users
            .create(&username, &hash, role, self.clock.now())
            .await
            .map_err(|e| match e {
                RepoError::Conflict(message) => UserError::UsernameTaken(message),
                other => other.into(),
            })?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::UserCreate, &actor.client)
                    .resource(format!("user:{}", user.id))
                    .detail(format!("created `{}` as {role}", user.username)),
            )
            .await?;
        Ok(user)
    }

    /// Changes role and/or activation. Every session of the user ends when either
    /// changes. Refuses to leave the server without an active admin.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound`; `Conflict` (`last_admin`).
    pub async fn update(
        &self,
        actor: &Actor,
        id: UserId,
        changes: &UserChanges,
    ) -> Result<User, UserError> {
        actor.require(Permission::ManageUsers)?;
        let current = self.get(actor, id).await?;
        let loses_admin = current.role == Role::Admin
            && current.is_active
            && (changes.role.is_some_and(|r| r != Role::Admin) || changes.is_active == Some(false));
        if loses_admin {
            let other_admins = self
                .users
                .list()
                .await?
                .iter()
                .filter(|u| u.id != id && u.role == Role::Admin && u.is_active)
                .count();
            if other_admins == 0 {
                return Err(UserError::LastAdmin(format!(
                    "`{}` is the last active admin; make another admin first",
                    current.username
                )));
            }
        }
        let updated = self
            .users
            .update(id, changes, self.clock.now())
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no user with id {id}")))?;
        let mut what = Vec::new();
        if updated.role != current.role {
            what.push(format!("role {} -> {}", current.role, updated.role));
        }
        if updated.is_active != current.is_active {
            what.push(if updated.is_active {
                "activated".to_owned()
            } else {
                "deactivated".to_owned()
            });
        }
        if !what.is_empty() {
            self.audit
                .record(
                    AuditEntry::new(&actor.username, AuditAction::UserUpdate, &actor.client)
                        .resource(format!("user:{id}"))
                        .detail(format!(
                            "`{}`: {}; sessions ended",
                            updated.username,
                            what.join(", ")
                        )),
                )
                .await?;
        }
        Ok(updated)
    }

    /// Sets a user's password (admin reset); every session of the user ends.
    ///
    /// # Errors
    /// `Forbidden`; `NotFound`; `Invalid` for a weak password.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        id: UserId,
        password: &Secret,
    ) -> Result<User, UserError> {
        actor.require(Permission::ManageUsers)?;
        let user = self.get(actor, id).await?;
        check_password(password.expose(), &user.username)
            .map_err(|e| UserError::WeakPassword(e.to_string()))?;
        let hash = self.hasher.hash(password).await?;
        let user = self
            .users
            .set_password_hash(id, &hash, self.clock.now())
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no user with id {id}")))?;
        self.audit
            .record(
                AuditEntry::new(
                    &actor.username,
                    AuditAction::UserPasswordReset,
                    &actor.client,
                )
                .resource(format!("user:{id}"))
                .detail(format!(
                    "`{}`: password reset; sessions ended",
                    user.username
                )),
            )
            .await?;
        Ok(user)
    }

    /// The built-in roles and what they allow.
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn roles(&self, actor: &Actor) -> Result<Vec<StoredRole>, UserError> {
        actor.require(Permission::View)?;
        Ok(self.roles.list().await?)
    }

    /// Creates the first admin when there are no users at all. Returns whether it did.
    ///
    /// # Errors
    /// `Invalid` when `password` breaks the rules; database failures.
    pub async fn bootstrap_admin(
        &self,
        actor: &Actor,
        password: &Secret,
    ) -> Result<Option<User>, UserError> {
        actor.require(Permission::ManageUsers)?;
        if self.users.count().await? > 0 {
            return Ok(None);
        }
        self.create(actor, "admin", password, Role::Admin)
            .await
            .map(Some)
    }

    /// Looks a user up by name (CLI convenience).
    ///
    /// # Errors
    /// `Forbidden`; `NotFound`.
    pub async fn get_by_name(&self, actor: &Actor, username: &str) -> Result<User, UserError> {
        actor.require(Permission::ManageUsers)?;
        Ok(self
            .users
            .find_by_username(username)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no user named `{username}`")))?)
    }
}
