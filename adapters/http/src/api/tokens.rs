use std::sync::Arc;

use coffer_application::{TokenRequest, TokenScope};
use coffer_domain::{ApiTokenId, UserId};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::auth::NoContent;
use super::dto::{CreateTokenRequest, CreatedTokenResponse, TokenDto, optional};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub struct TokensApi;

#[derive(ApiResponse)]
pub enum Created {
    /// Created. The secret is in `token`, this once.
    #[oai(status = 201)]
    Token(Json<CreatedTokenResponse>),
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Tokens")]
impl TokensApi {
    /// List personal access tokens.
    ///
    /// The caller's own tokens, newest first, with their last use; never their secrets.
    /// `user_id` names another owner and `all=true` lists everyone's: both need
    /// `manage_users`.
    ///
    /// Permission: `view`.
    #[oai(path = "/tokens", method = "get", operation_id = "listTokens")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        user_id: Query<Option<i64>>,
        all: Query<Option<bool>>,
    ) -> Result<Json<Vec<TokenDto>>, ApiError> {
        let scope = match (user_id.0, all.0) {
            (Some(id), _) => TokenScope::User(UserId::new(id)),
            (None, Some(true)) => TokenScope::All,
            (None, _) => TokenScope::Own,
        };
        let tokens = state.tokens.list(auth.actor(), scope).await?;
        Ok(Json(tokens.iter().map(TokenDto::from).collect()))
    }

    /// Create a personal access token.
    ///
    /// For scripts and CI: send it as `Authorization: Bearer <token>`. The secret is in
    /// the answer once and is stored only as a hash. A token acts for its owner with the
    /// narrower of its `role` and the owner's current role, and stops working when the
    /// owner is deactivated or no longer has that role. It needs an `expires_at` unless
    /// an admin creates it. Tokens cannot create tokens: use a password session or
    /// `coffer tokens create`.
    ///
    /// Permission: `view` (`manage_users` for another user's token).
    #[oai(path = "/tokens", method = "post", operation_id = "createToken")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<CreateTokenRequest>,
    ) -> Result<Created, ApiError> {
        let body = body.0;
        let (token, secret) = state
            .tokens
            .create(
                auth.actor(),
                TokenRequest {
                    name: body.name.into(),
                    expires_at: optional("expires_at", body.expires_at)?,
                    role: optional("role", body.role)?.map(Into::into),
                    owner: optional("user_id", body.user_id)?.map(UserId::new),
                },
            )
            .await?;
        Ok(Created::Token(Json(CreatedTokenResponse {
            token: secret.expose().to_owned(),
            info: TokenDto::from(&token),
        })))
    }

    /// Revoke a personal access token.
    ///
    /// It stops working at once. Others' tokens need `manage_users` (without it they
    /// are not found).
    ///
    /// Permission: `view`.
    #[oai(path = "/tokens/:id", method = "delete", operation_id = "revokeToken")]
    async fn revoke(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
    ) -> Result<NoContent, ApiError> {
        state
            .tokens
            .revoke(auth.actor(), ApiTokenId::new(id.0))
            .await?;
        Ok(NoContent::Done)
    }
}
