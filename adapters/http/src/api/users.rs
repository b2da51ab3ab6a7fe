use std::sync::Arc;

use coffer_domain::UserId;
use coffer_domain::ports::UserChanges;
use coffer_domain::secrets::Secret;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::NoContent;
use super::dto::{
    CreateUserRequest, ResetPasswordRequest, RoleDto, UpdateUserRequest, UserDto, not_null,
};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub struct UsersApi;

#[derive(ApiResponse)]
pub enum Created {
    /// Created.
    #[oai(status = 201)]
    User(Json<UserDto>),
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Users")]
impl UsersApi {
    /// List users.
    ///
    /// Permission: `manage_users`.
    #[oai(path = "/users", method = "get", operation_id = "listUsers")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<Vec<UserDto>>, ApiError> {
        let users = state.users.list(auth.actor()).await?;
        Ok(Json(users.iter().map(UserDto::from).collect()))
    }

    /// Create a user.
    ///
    /// The password must have at least 12 characters and differ from the username.
    ///
    /// Permission: `manage_users`.
    #[oai(path = "/users", method = "post", operation_id = "createUser")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<CreateUserRequest>,
    ) -> Result<Created, ApiError> {
        let body = body.0;
        let user = state
            .users
            .create(
                auth.actor(),
                &body.username,
                &Secret::new(body.password.into()),
                body.role.into(),
            )
            .await?;
        Ok(Created::User(Json(UserDto::from(&user))))
    }

    /// Get a user.
    ///
    /// Permission: `manage_users`.
    #[oai(path = "/users/:id", method = "get", operation_id = "getUser")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
    ) -> Result<Json<UserDto>, ApiError> {
        let user = state.users.get(auth.actor(), UserId::new(id.0)).await?;
        Ok(Json(UserDto::from(&user)))
    }

    /// Change a user's role or activation.
    ///
    /// Either change ends every session of the user. The last active admin cannot be
    /// demoted or deactivated (409 `last_admin`).
    ///
    /// Permission: `manage_users`.
    #[oai(path = "/users/:id", method = "patch", operation_id = "updateUser")]
    async fn update(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
        body: Json<UpdateUserRequest>,
    ) -> Result<Json<UserDto>, ApiError> {
        let changes = UserChanges {
            role: not_null("role", body.0.role)?.map(Into::into),
            is_active: not_null("is_active", body.0.is_active)?,
        };
        let user = state
            .users
            .update(auth.actor(), UserId::new(id.0), &changes)
            .await?;
        Ok(Json(UserDto::from(&user)))
    }

    /// Reset a user's password.
    ///
    /// Sets a new password chosen by the admin; every session of the user ends.
    ///
    /// Permission: `manage_users`.
    #[oai(
        path = "/users/:id/password",
        method = "post",
        operation_id = "resetUserPassword"
    )]
    async fn reset_password(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
        body: Json<ResetPasswordRequest>,
    ) -> Result<NoContent, ApiError> {
        state
            .users
            .reset_password(
                auth.actor(),
                UserId::new(id.0),
                &Secret::new(body.0.password.into()),
            )
            .await?;
        Ok(NoContent::Done)
    }

    /// List roles.
    ///
    /// The three built-in roles and their permissions.
    ///
    /// Permission: `view`.
    #[oai(path = "/roles", method = "get", operation_id = "listRoles")]
    async fn roles(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<Vec<RoleDto>>, ApiError> {
        let roles = state.users.roles(auth.actor()).await?;
        Ok(Json(
            roles
                .iter()
                .map(|r| RoleDto {
                    name: r.role.into(),
                    permissions: r
                        .role
                        .permissions()
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                })
                .collect(),
        ))
    }
}
