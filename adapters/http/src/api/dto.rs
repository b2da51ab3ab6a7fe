//! The API's data shapes. Domain types carry no serde or OpenAPI derives; these do, and
//! convert at the edge. Request bodies that carry passwords derive no `Debug`.

use chrono::{DateTime, Utc};
use coffer_domain::audit::AuditRecord;
use coffer_domain::auth::Role;
use coffer_domain::ports::User;
use std::borrow::Cow;

use poem::http::StatusCode;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{MaybeUndefined, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object};

use crate::error::ApiError;

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
    pub username: Text,
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub password: Text,
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
    /// With a token, those of its effective role (which may be narrower than the user's).
    pub permissions: Vec<String>,
    /// The session's CSRF token; absent when the request used a personal access token.
    pub csrf_token: Option<String>,
    /// When the session (or the token) ends; absent for a token that never expires.
    pub session_expires_at: Option<DateTime<Utc>>,
    /// The personal access token the request used, if it used one.
    #[oai(skip_serializing_if_is_none)]
    pub token: Option<TokenDto>,
}

#[derive(Object)]
pub struct CreateUserRequest {
    /// 1–64 characters of letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub username: Text,
    /// 12 to 1024 characters, not the username.
    #[oai(validator(min_length = 12, max_length = 1024), write_only)]
    pub password: Text,
    pub role: RoleName,
}

/// Fields to change; absent fields stay as they are (neither can be `null`).
#[derive(Debug, Object)]
pub struct UpdateUserRequest {
    pub role: MaybeUndefined<RoleName>,
    pub is_active: MaybeUndefined<bool>,
}

/// A string field of a request body that takes a JSON string and nothing else.
///
/// poem-openapi's `String` also accepts a number or a boolean (`12` becomes `"12"`),
/// which the schema (`"type": "string"`) does not allow: a schema-driven fuzzer sent a
/// number as a new password and it was taken. `Text` is described exactly like `String`
/// (validators included) and refuses anything but a string with 400.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.0
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.0))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) => Ok(Self(s)),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// An optional field of an object type `T` that may also be `null` (absent and `null`
/// stay apart, as in [`MaybeUndefined`]), described as
/// `{"nullable": true, "allOf": [{"$ref": "T"}]}`.
///
/// A plain `MaybeUndefined<T>` marked `nullable` comes out of poem-openapi as
/// `"allOf": [{"$ref": "T"}, {"nullable": true}]`, which code generators (for one,
/// openapi-python-client) read as a new type: clients got a copy of `T` for every such
/// field instead of `T` itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullableRef<T>(pub MaybeUndefined<T>);

impl<T: Type> Type for NullableRef<T> {
    const IS_REQUIRED: bool = false;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("nullable_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            nullable: true,
            all_of: vec![T::schema_ref()],
            ..MetaSchema::ANY
        }))
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_raw_value()
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        self.0.raw_element_iter()
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }
}

impl<T: ParseFromJSON> ParseFromJSON for NullableRef<T> {
    fn parse_from_json(value: Option<serde_json::Value>) -> ParseResult<Self> {
        MaybeUndefined::parse_from_json(value)
            .map(Self)
            .map_err(ParseError::propagate)
    }
}

impl<T: ToJSON> ToJSON for NullableRef<T> {
    fn to_json(&self) -> Option<serde_json::Value> {
        self.0.to_json()
    }
}

/// A field of a change request that cannot be cleared: absent leaves it as it is, and
/// `null`, which the schema does not allow, is refused (400) rather than read as absent.
///
/// # Errors
/// 400 `bad_request` for `null`.
pub fn not_null<T>(field: &str, value: MaybeUndefined<T>) -> Result<Option<T>, ApiError> {
    refuse_null(field, value, "to keep the current value")
}

/// An optional field of a creation request: absent is `None`, and `null`, which the
/// schema does not allow, is refused (400) rather than read as absent.
///
/// # Errors
/// 400 `bad_request` for `null`.
pub fn optional<T>(field: &str, value: MaybeUndefined<T>) -> Result<Option<T>, ApiError> {
    refuse_null(field, value, "for the default")
}

fn refuse_null<T>(
    field: &str,
    value: MaybeUndefined<T>,
    absent: &str,
) -> Result<Option<T>, ApiError> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{field}` cannot be null; leave it out {absent}"),
        )),
        MaybeUndefined::Value(v) => Ok(Some(v)),
    }
}

#[derive(Object)]
pub struct ResetPasswordRequest {
    /// 12 to 1024 characters, not the username.
    #[oai(validator(min_length = 12, max_length = 1024), write_only)]
    pub password: Text,
}

#[derive(Object)]
pub struct ChangePasswordRequest {
    #[oai(validator(min_length = 1, max_length = 4096), write_only)]
    pub current_password: Text,
    /// 12 to 1024 characters, not the username.
    #[oai(validator(min_length = 12, max_length = 1024), write_only)]
    pub new_password: Text,
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

/// A `Content-Disposition` value that saves the body as `name` (callers build names
/// that need no escaping).
pub fn attachment(name: &str) -> String {
    format!("attachment; filename=\"{name}\"")
}

/// A personal access token (never its secret). `role` is the role it is limited to;
/// absent, it acts with its owner's current role.
#[derive(Debug, Clone, Object)]
pub struct TokenDto {
    pub id: i64,
    /// The owner.
    pub user_id: i64,
    pub username: String,
    pub name: String,
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<RoleName>,
    pub created_at: DateTime<Utc>,
    /// Absent: never expires.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<DateTime<Utc>>,
    /// The last use (recorded at most once a minute).
    #[oai(skip_serializing_if_is_none)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Where the last use came from.
    #[oai(skip_serializing_if_is_none)]
    pub last_used_ip: Option<String>,
}

impl From<&coffer_domain::tokens::ApiToken> for TokenDto {
    fn from(t: &coffer_domain::tokens::ApiToken) -> Self {
        Self {
            id: t.id.get(),
            user_id: t.user_id.get(),
            username: t.username.clone(),
            name: t.name.clone(),
            role: t.role.map(Into::into),
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            last_used_ip: t.last_used_ip.clone(),
        }
    }
}

/// A new personal access token. `role` limits it to that role (at most the owner's);
/// absent, it acts with the owner's current role.
#[derive(Object)]
pub struct CreateTokenRequest {
    /// What the token is for (1–64 characters): shown in listings and the audit trail.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub name: Text,
    /// When it stops working. Absent: never — only an admin may ask for that.
    pub expires_at: MaybeUndefined<DateTime<Utc>>,
    pub role: MaybeUndefined<RoleName>,
    /// The owner; absent: the caller. Another user's id needs `manage_users`.
    pub user_id: MaybeUndefined<i64>,
}

/// A token just created, with its secret: shown this once, never again.
#[derive(Object)]
pub struct CreatedTokenResponse {
    /// Send it as `Authorization: Bearer <token>`. Store it now; it cannot be shown again.
    pub token: String,
    #[oai(flatten)]
    pub info: TokenDto,
}
