use std::sync::Arc;

use coffer_domain::secrets::Secret;
use poem::Request;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use coffer_application::Credential;

use super::dto::{
    ChangePasswordRequest, LoginRequest, LoginResponse, MeResponse, TokenDto, UserDto,
};
use crate::AppState;
use crate::auth::{Auth, DEVICE_COOKIE, SESSION_COOKIE, client_info};
use crate::error::ApiError;

pub struct AuthApi;

#[derive(ApiResponse)]
pub enum LoginResult {
    /// Logged in. The token also comes as the HttpOnly session cookie; a second
    /// `Set-Cookie` renews the `coffer_device` cookie (HttpOnly, SameSite=Strict, path
    /// `/api/login`, 90 days): send it back with later logins (CLI and API clients too)
    /// to stay exempt from the per-account login limit while someone else guesses.
    #[oai(status = 200)]
    Ok(Json<LoginResponse>, #[oai(header = "Set-Cookie")] String),
}

/// [`LoginResult`] with the device cookie appended: poem-openapi sets one header per
/// name, and a login sets two cookies.
pub struct LoginOk {
    result: LoginResult,
    device_cookie: String,
}

impl poem::IntoResponse for LoginOk {
    fn into_response(self) -> poem::Response {
        let mut resp = self.result.into_response();
        if let Ok(value) = poem::http::HeaderValue::from_str(&self.device_cookie) {
            resp.headers_mut()
                .append(poem::http::header::SET_COOKIE, value);
        }
        resp
    }
}

impl ApiResponse for LoginOk {
    fn meta() -> poem_openapi::registry::MetaResponses {
        LoginResult::meta()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        LoginResult::register(registry);
    }
}

/// The value of the cookie `name` sent with the request, if any.
fn request_cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim())
}

fn device_cookie(state: &AppState, token: &str, max_age_secs: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!(
        "{DEVICE_COOKIE}={token}; Path=/api/login; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    )
}

#[derive(ApiResponse)]
pub enum LogoutResult {
    /// The session is ended server-side and the cookie cleared.
    #[oai(status = 204)]
    Ended(#[oai(header = "Set-Cookie")] String),
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

fn session_cookie(state: &AppState, token: &str, max_age_secs: i64) -> String {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    )
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Log in.
    ///
    /// Checks a username and password and opens a session: a JWT to send as
    /// `Authorization: Bearer`, also set as an HttpOnly, SameSite=Strict cookie for the
    /// dashboard. Repeated failures are throttled (429 with `Retry-After`): delays that
    /// grow per client address, and a per-account limit that clients holding a
    /// `coffer_device` cookie from an earlier login to that account are exempt from.
    /// Every checked attempt is audited, refusals once per lockout. The error never says
    /// whether the username exists.
    ///
    /// Permission: none (public).
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(
        &self,
        state: Data<&Arc<AppState>>,
        req: &Request,
        body: Json<LoginRequest>,
    ) -> Result<LoginOk, ApiError> {
        let client = client_info(req, &state.trusted_proxies);
        let password = Secret::new(body.0.password.into());
        let session = state
            .auth
            .login(
                &body.0.username,
                &password,
                &client,
                request_cookie(req, DEVICE_COOKIE),
            )
            .await?;
        let now = chrono::Utc::now();
        let max_age = (session.expires_at - now).num_seconds().max(0);
        let cookie = session_cookie(&state, session.token.expose(), max_age);
        let device_max_age = (session.device.expires_at - now).num_seconds().max(0);
        let device_cookie = device_cookie(&state, session.device.token.expose(), device_max_age);
        let result = LoginResult::Ok(
            Json(LoginResponse {
                token: session.token.expose().to_owned(),
                token_type: "Bearer".to_owned(),
                expires_at: session.expires_at,
                csrf_token: session.csrf,
                user: UserDto::from(&session.user),
            }),
            cookie,
        );
        Ok(LoginOk {
            result,
            device_cookie,
        })
    }

    /// Log out.
    ///
    /// Ends this session at once, server-side (the token stops working everywhere), and
    /// clears the cookie.
    ///
    /// Permission: any authenticated user.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<LogoutResult, ApiError> {
        let a = auth.into_inner();
        state.auth.logout(&a.actor, &a.credential).await?;
        Ok(LogoutResult::Ended(session_cookie(&state, "", 0)))
    }

    /// The caller.
    ///
    /// Who is logged in, their role's permissions, and the session's CSRF token.
    ///
    /// Permission: `view`.
    #[oai(path = "/me", method = "get", operation_id = "getMe")]
    async fn me(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<MeResponse>, ApiError> {
        let a = auth.into_inner();
        let user_id = a
            .actor
            .user_id
            .ok_or_else(|| ApiError::internal(&"an HTTP session without a user"))?;
        let user = state.auth.current_user(&a.actor, user_id).await?;
        let (csrf_token, session_expires_at, token) = match a.credential {
            Credential::Session(claims) => (Some(claims.csrf), Some(claims.expires_at), None),
            Credential::Token(token) => (None, token.expires_at, Some(TokenDto::from(&token))),
        };
        Ok(Json(MeResponse {
            // What this request may do: with a token, its role may be narrower.
            permissions: a
                .actor
                .role
                .permissions()
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            user: UserDto::from(&user),
            csrf_token,
            session_expires_at,
            token,
        }))
    }

    /// Change my password.
    ///
    /// Needs the current password. Every session of the caller ends, this one included:
    /// log in again with the new password.
    ///
    /// Permission: `view`.
    #[oai(
        path = "/me/password",
        method = "post",
        operation_id = "changeMyPassword"
    )]
    async fn change_password(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<ChangePasswordRequest>,
    ) -> Result<NoContent, ApiError> {
        let body = body.0;
        state
            .auth
            .change_own_password(
                auth.actor(),
                &Secret::new(body.current_password.into()),
                &Secret::new(body.new_password.into()),
            )
            .await?;
        Ok(NoContent::Done)
    }
}
