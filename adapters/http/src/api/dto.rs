//! The API's data shapes. Domain types carry no serde or OpenAPI derives; these do, and
//! convert at the edge. Request bodies that carry passwords derive no `Debug`.

use chrono::{DateTime, Utc};
use coffer_domain::audit::AuditRecord;
use coffer_domain::auth::Role;
use coffer_domain::ports::User;
use poem_openapi::{Enum, Object};

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Operator,
    Viewer,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Operator => Self::Operator,
            Role::Viewer => Self::Viewer,
        }
    }
}

impl From<RoleName> for Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::Admin => Self::Admin,
            RoleName::Operator => Self::Operator,
            RoleName::Viewer => Self::Viewer,
        }
    }
}

/// A user account.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserDto {
    pub id: i64,
    pub username: String,
    pub role: RoleName,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.get(),
            username: u.username.to_string(),
            role: u.role.into(),
            is_active: u.is_active,
            created_at: u.created_at,
            last_login: u.last_login,
        }
    }
}

/// Credentials for `POST /api/login`.
#[derive(Object)]
pub struct LoginRequest {
    #[oai(validator(min_length = 1, max_length = 256))]
    pub username: String,
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub password: String,
}

/// A new session.
#[derive(Object)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`. The same token is set as the HttpOnly
    /// `coffer_session` cookie for the dashboard.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_at: DateTime<Utc>,
    /// Send in `X-CSRF-Token` on state-changing requests authorised by the cookie.
    pub csrf_token: String,
    pub user: UserDto,
}

/// The caller, with what their role allows.
#[derive(Object)]
pub struct MeResponse {
    pub user: UserDto,
    /// Permission names: view, backup, restore, export, manage_users, manage_system, audit.
    pub permissions: Vec<String>,
    pub csrf_token: String,
    pub session_expires_at: DateTime<Utc>,
}

#[derive(Object)]
pub struct CreateUserRequest {
    /// 1–64 characters of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub username: String,
    /// At least 12 characters, not the username.
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub password: String,
    pub role: RoleName,
}

/// Fields to change; absent fields stay as they are.
#[derive(Debug, Object)]
pub struct UpdateUserRequest {
    pub role: Option<RoleName>,
    pub is_active: Option<bool>,
}

#[derive(Object)]
pub struct ResetPasswordRequest {
    /// At least 12 characters, not the username.
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub password: String,
}

#[derive(Object)]
pub struct ChangePasswordRequest {
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub current_password: String,
    /// At least 12 characters, not the username.
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub new_password: String,
}

/// A role and what it allows.
#[derive(Debug, Object)]
pub struct RoleDto {
    pub name: RoleName,
    pub permissions: Vec<String>,
}

/// One row of the audit trail.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditRowDto {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub username: String,
    pub action: String,
    pub resource: Option<String>,
    pub success: bool,
    pub detail: Option<String>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    /// SHA-256 chaining this row to the previous one.
    pub row_hash: String,
}

impl From<AuditRecord> for AuditRowDto {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id,
            timestamp: r.timestamp,
            username: r.entry.username,
            action: r.entry.action,
            resource: r.entry.resource,
            success: r.entry.success,
            detail: r.entry.detail,
            ip_address: r.entry.client.ip,
            user_agent: r.entry.client.user_agent,
            row_hash: r.row_hash,
        }
    }
}

/// A page of audit rows, newest first.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AuditPage {
    pub items: Vec<AuditRowDto>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}
