//! Authentication at the edge: the bearer-token and cookie security schemes, the CSRF
//! rule for cookie sessions, and where a request comes from.

use std::net::IpAddr;
use std::sync::Arc;

use coffer_application::AuthError;
use coffer_domain::auth::{Actor, ClientInfo};
use coffer_domain::crypto::SessionClaims;
use poem::Request;
use poem::http::{Method, StatusCode};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::middleware::error_response;

/// The session cookie set by `POST /api/login` for the web dashboard.
pub const SESSION_COOKIE: &str = "coffer_session";
/// The header a cookie-authenticated, state-changing request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub actor: Actor,
    pub claims: SessionClaims,
}

/// `Authorization: Bearer <token>`, the token from `POST /api/login`.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "check_bearer"
)]
pub struct BearerAuth(Authenticated);

/// The `coffer_session` cookie set by `POST /api/login` (web dashboard). Requests that
/// change state must also send the session's CSRF token in `X-CSRF-Token`.
#[derive(SecurityScheme)]
#[oai(
    rename = "cookieAuth",
    ty = "api_key",
    key_name = "coffer_session",
    key_in = "cookie",
    checker = "check_cookie"
)]
pub struct CookieAuth(Authenticated);

/// Either scheme; the bearer token is tried first.
#[derive(SecurityScheme)]
pub enum Auth {
    Bearer(BearerAuth),
    Cookie(CookieAuth),
}

impl Auth {
    #[must_use]
    pub fn into_inner(self) -> Authenticated {
        match self {
            Self::Bearer(BearerAuth(a)) | Self::Cookie(CookieAuth(a)) => a,
        }
    }

    #[must_use]
    pub const fn actor(&self) -> &Actor {
        match self {
            Self::Bearer(BearerAuth(a)) | Self::Cookie(CookieAuth(a)) => &a.actor,
        }
    }
}

fn unauthorized(message: &str) -> poem::Error {
    poem::Error::from_response(error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        message,
    ))
}

fn state(req: &Request) -> poem::Result<&Arc<AppState>> {
    req.data::<Arc<AppState>>()
        .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))
}

/// Why a credential could not be checked at all (the database failed, say), kept for the
/// whole request: poem-openapi tries the schemes in turn and answers with the *last*
/// one's error, so a bearer check that failed with a 500 would otherwise reach the client
/// as the cookie scheme's "no cookie" 401 (and send the dashboard to its login page). The
/// middleware puts one in every request and answers with it instead of a 401.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuthFailure(Arc<std::sync::Mutex<Option<StoredResponse>>>);

#[derive(Debug)]
struct StoredResponse {
    status: StatusCode,
    headers: poem::http::HeaderMap,
    body: bytes::Bytes,
}

impl AuthFailure {
    fn keep(&self, status: StatusCode, headers: poem::http::HeaderMap, body: bytes::Bytes) {
        let mut slot = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(StoredResponse {
            status,
            headers,
            body,
        });
    }

    /// The failure kept by a scheme, if any.
    pub(crate) fn take(&self) -> Option<poem::Response> {
        let stored = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        let mut resp = poem::Response::builder()
            .status(stored.status)
            .body(stored.body);
        *resp.headers_mut() = stored.headers;
        Some(resp)
    }
}

async fn authenticate(req: &Request, token: &str) -> poem::Result<Authenticated> {
    let state = state(req)?;
    let client = client_info(req, &state.trusted_proxies);
    match state.auth.authenticate(token, &client).await {
        Ok((actor, claims)) => Ok(Authenticated { actor, claims }),
        Err(AuthError::Unauthenticated(message)) => Err(unauthorized(message)),
        Err(other) => {
            let resp = poem::IntoResponse::into_response(crate::error::ApiError::from(other));
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = resp.into_body().into_bytes().await.unwrap_or_default();
            if let Some(failure) = req.extensions().get::<AuthFailure>() {
                failure.keep(status, headers.clone(), body.clone());
            }
            let mut again = poem::Response::builder().status(status).body(body);
            *again.headers_mut() = headers;
            Err(poem::Error::from_response(again))
        }
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Authenticated> {
    authenticate(req, &bearer.token).await
}

async fn check_cookie(req: &Request, key: ApiKey) -> poem::Result<Authenticated> {
    let authenticated = authenticate(req, &key.key).await?;
    // A browser sends the cookie with cross-site requests too; only our own pages know
    // the session's CSRF token. Safe methods need none.
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = authenticated.claims.csrf.as_bytes();
        // Constant time: no early exit on the first differing byte.
        if !bool::from(sent.as_bytes().ct_eq(expected)) {
            return Err(poem::Error::from_response(error_response(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "a request authorised by the session cookie must send the session's CSRF token in X-CSRF-Token",
            )));
        }
    }
    Ok(authenticated)
}

/// Where the request came from: the socket's address, or — only when the socket is one
/// of the configured trusted proxies — the last address in `X-Forwarded-For` that is not
/// itself a trusted proxy.
#[must_use]
pub fn client_info(req: &Request, trusted_proxies: &[IpAddr]) -> ClientInfo {
    let socket_ip = req
        .remote_addr()
        .as_socket_addr()
        .map(std::net::SocketAddr::ip);
    let ip = match socket_ip {
        Some(ip) if trusted_proxies.contains(&ip) => req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .rev()
            .find(|ip| !trusted_proxies.contains(ip))
            .or(Some(ip)),
        other => other,
    };
    let user_agent = req
        .headers()
        .get(poem::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    ClientInfo {
        ip: ip.map(|ip| ip.to_string()),
        user_agent,
    }
}
