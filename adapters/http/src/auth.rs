//! Authentication at the edge: the bearer-token and cookie security schemes, the CSRF
//! rule for cookie sessions, and where a request comes from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coffer_application::{AuthError, Credential};
use coffer_domain::auth::{Actor, ClientInfo};
use poem::Request;
use poem::http::{HeaderMap, Method, StatusCode};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use subtle::ConstantTimeEq as _;

use crate::AppState;
use crate::middleware::error_response;

/// The session cookie set by `POST /api/login` for the web dashboard.
pub const SESSION_COOKIE: &str = "coffer_session";
/// The device cookie set by a successful `POST /api/login`: this client logged in to
/// that account before (signed; see `coffer_domain::throttle`).
pub const DEVICE_COOKIE: &str = "coffer_device";
/// The header a cookie-authenticated, state-changing request must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub actor: Actor,
    pub credential: Credential,
}

/// `Authorization: Bearer <token>`: the session token from `POST /api/login`, or a
/// personal access token (`coffer_pat_…`, from `POST /api/tokens`) for scripts and CI.
#[derive(SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT or coffer_pat_ token",
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
        Ok((actor, credential)) => Ok(Authenticated { actor, credential }),
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
    // Tokens travel in the Authorization header only: a cookie holding one would make
    // it usable by cross-site requests.
    if coffer_domain::tokens::is_token(&key.key) {
        return Err(unauthorized(
            "a personal access token is sent as `Authorization: Bearer`, never as a cookie",
        ));
    }
    let authenticated = authenticate(req, &key.key).await?;
    let Credential::Session(claims) = &authenticated.credential else {
        return Err(unauthorized("the session cookie holds no session"));
    };
    // A browser sends the cookie with cross-site requests too; only our own pages know
    // the session's CSRF token. Safe methods need none.
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let expected = claims.csrf.as_bytes();
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

/// The reverse proxies whose forwarding headers are believed (`server.trusted_proxies`),
/// and whether the operator was already warned of forwarding headers from a peer that is
/// not one of them.
#[derive(Debug, Default)]
pub struct TrustedProxies {
    list: Vec<IpAddr>,
    warned: AtomicBool,
}

/// The headers proxies use to name the client.
const FORWARDING_HEADERS: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

impl TrustedProxies {
    #[must_use]
    pub fn new(list: Vec<IpAddr>) -> Self {
        Self {
            list: list.into_iter().map(|ip| ip.to_canonical()).collect(),
            warned: AtomicBool::new(false),
        }
    }

    /// Whether `ip` (IPv4-mapped or not) is one of the trusted proxies.
    #[must_use]
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.list.contains(&ip.to_canonical())
    }

    /// Notes a request with forwarding headers from an untrusted peer; true the first
    /// time only, so that the log says it once, not once per request.
    fn first_untrusted_forwarding(&self) -> bool {
        !self.warned.swap(true, Ordering::Relaxed)
    }
}

/// Where the request came from: the socket's address, or — only when the socket is one
/// of the configured trusted proxies — the last address in `X-Forwarded-For` that is not
/// itself a trusted proxy. IPv4-mapped IPv6 addresses are given as IPv4.
///
/// Forwarding headers from any other peer are ignored (a client could name any address
/// in them); the first such request is logged as a warning, since it usually means a
/// reverse proxy that is missing from `server.trusted_proxies`.
#[must_use]
pub fn client_info(req: &Request, proxies: &TrustedProxies) -> ClientInfo {
    let socket_ip = req.remote_addr().as_socket_addr().map(SocketAddr::ip);
    client_address(
        socket_ip,
        req.headers(),
        proxies,
        req.header(poem::http::header::USER_AGENT),
    )
}

fn client_address(
    socket_ip: Option<IpAddr>,
    headers: &HeaderMap,
    proxies: &TrustedProxies,
    user_agent: Option<&str>,
) -> ClientInfo {
    let ip = match socket_ip.map(|ip| ip.to_canonical()) {
        Some(ip) if proxies.contains(&ip) => headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .rev()
            .find(|ip| !proxies.contains(ip))
            .or(Some(ip)),
        other => {
            if FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
                && proxies.first_untrusted_forwarding()
            {
                let peer = other.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
                tracing::warn!(
                    peer,
                    "a request came with forwarding headers (X-Forwarded-For, Forwarded or \
                     X-Real-IP) from a peer that is not in server.trusted_proxies: they are \
                     ignored, and every client behind that proxy shares its address for the \
                     login throttle and the audit trail. If {peer} is your reverse proxy, add \
                     it to server.trusted_proxies (warned once)"
                );
            }
            other
        }
    };
    let user_agent = user_agent.map(|ua| ua.chars().take(256).collect());
    ClientInfo {
        ip: ip.map(|ip| ip.to_string()),
        user_agent,
        credential: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        peer: &str,
        headers: &[(&'static str, &'static str)],
        proxies: &TrustedProxies,
    ) -> ClientInfo {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                poem::http::HeaderName::from_static(name),
                poem::http::HeaderValue::from_static(value),
            );
        }
        let peer: SocketAddr = peer.parse().expect("socket address");
        client_address(Some(peer.ip()), &map, proxies, None)
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_mapped_ipv4_is_ipv4() {
        let proxies = TrustedProxies::new(vec!["127.0.0.1".parse().expect("ip")]);
        let via_proxy = request(
            "[::ffff:127.0.0.1]:4000",
            &[("x-forwarded-for", "::ffff:203.0.113.5")],
            &proxies,
        );
        assert_eq!(via_proxy.ip.as_deref(), Some("203.0.113.5"));
        let direct = request("[::ffff:198.51.100.7]:4000", &[], &proxies);
        assert_eq!(direct.ip.as_deref(), Some("198.51.100.7"));
        assert!(
            !proxies.warned.load(Ordering::Relaxed),
            "nothing to warn of yet"
        );
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored_and_warned_of_once() {
        let proxies = TrustedProxies::new(Vec::new());
        let forged = request(
            "192.0.2.1:4000",
            &[("x-forwarded-for", "203.0.113.5")],
            &proxies,
        );
        assert_eq!(forged.ip.as_deref(), Some("192.0.2.1"));
        assert!(proxies.warned.load(Ordering::Relaxed), "warned");
        assert!(!proxies.first_untrusted_forwarding(), "only once");
        let forwarded = request(
            "192.0.2.1:4000",
            &[("forwarded", "for=203.0.113.5")],
            &proxies,
        );
        assert_eq!(forwarded.ip.as_deref(), Some("192.0.2.1"));
    }
}
