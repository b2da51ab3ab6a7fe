//! Users, sessions, throttling and the audit trail, end to end over HTTP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeDelta, Utc};
use coffer_domain::crypto::{SessionClaims, TokenCodec as _};
use coffer_tests::{Backend, TestApp, spawn_app, spawn_app_with};
use hmac::{KeyInit as _, Mac as _};
use serde_json::{Value, json};

const STRONG: &str = "a long enough passphrase";

async fn app() -> TestApp {
    spawn_app(Backend::Sqlite, "auth").await.expect("sqlite")
}

fn session_key(app: &TestApp) -> [u8; 32] {
    let hex = std::fs::read_to_string(app.settings.session_key_file()).expect("session key");
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).expect("hex");
    }
    key
}

/// A token with any header and claims, signed with the server's real key.
fn forge(key: &[u8; 32], header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key).expect("key");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

async fn error_code(resp: reqwest::Response) -> String {
    let body: Value = resp.json().await.expect("JSON error body");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn audit_rows(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    let (status, body) = app.get_as(admin, &format!("/api/audit?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().expect("items").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_gives_a_bearer_token_and_a_strict_cookie() {
    let app = app().await;
    let resp = app.login("admin", &app.admin_password()).await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for attr in [
        "coffer_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=86",
    ] {
        assert!(cookie.contains(attr), "{attr} missing in {cookie}");
    }
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["user"]["role"], "admin");
    let token = body["token"].as_str().expect("token");
    let (status, me) = app.get_as(token, "/api/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["username"], "admin");
    assert_eq!(me["csrf_token"], body["csrf_token"]);
    assert!(
        me["permissions"]
            .as_array()
            .expect("perms")
            .contains(&json!("audit"))
    );
    // last_login recorded.
    assert!(me["user"]["last_login"].is_string());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_401() {
    let app = app().await;
    let good = app.admin_token().await;
    let key = session_key(&app);
    let now = Utc::now().timestamp();
    let claims = |iss: &str, aud: &str, exp: i64| json!({"iss": iss, "aud": aud, "sub": "1", "jti": "forged", "iat": now - 10, "exp": exp, "gen": 0, "csrf": "c"});
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let alg_none = {
        let t = forge(
            &key,
            &json!({"alg": "none", "typ": "JWT"}),
            &claims("coffer", "coffer-api", now + 3600),
        );
        format!("{}.", t.rsplit_once('.').expect("dot").0)
    };
    let expired = coffer_crypto::Hs256Tokens::new(key)
        .issue(&SessionClaims {
            subject: 1,
            token_id: "expired".into(),
            issued_at: Utc::now() - TimeDelta::hours(25),
            expires_at: Utc::now() - TimeDelta::hours(1),
            generation: 0,
            csrf: "c".into(),
        })
        .expect("issue")
        .expose()
        .to_owned();
    let cases = [
        ("tampered signature", tampered),
        ("alg none", alg_none),
        (
            "other algorithm",
            forge(
                &key,
                &json!({"alg": "HS512"}),
                &claims("coffer", "coffer-api", now + 3600),
            ),
        ),
        ("expired", expired),
        (
            "wrong audience",
            forge(&key, &hs256, &claims("coffer", "someone-else", now + 3600)),
        ),
        (
            "wrong issuer",
            forge(&key, &hs256, &claims("evil", "coffer-api", now + 3600)),
        ),
        (
            "no exp",
            forge(
                &key,
                &hs256,
                &json!({"iss": "coffer", "aud": "coffer-api", "sub": "1", "jti": "x", "iat": now, "gen": 0, "csrf": "c"}),
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in cases {
        let resp = app
            .client
            .get(app.url("/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("req");
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(error_code(resp).await, "unauthorized", "{what}");
    }
    // A correctly forged token is accepted, proving the cases above fail for their flaw.
    let valid = forge(&key, &hs256, &claims("coffer", "coffer-api", now + 3600));
    assert_eq!(app.get_as(&valid, "/api/me").await.0, 200);
    let resp = app
        .client
        .get(app.url("/api/me"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 401, "no credentials");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_revokes_the_token_at_once() {
    let app = app().await;
    let token = app.admin_token().await;
    let other = app.admin_token().await;
    let resp = app
        .client
        .post(app.url("/api/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(resp.status(), 204);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert_eq!(app.get_as(&token, "/api/me").await.0, 401);
    assert_eq!(
        app.get_as(&other, "/api/me").await.0,
        200,
        "only that session ends"
    );
    let rows = audit_rows(&app, &other, "action=logout").await;
    assert_eq!(rows.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_role_change_and_password_reset_end_sessions() {
    let app = app().await;
    let admin = app.admin_token().await;
    let bob = app.create_user(&admin, "bob", STRONG, "operator").await;
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/api/users/{bob}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };

    let token = app.token("bob", STRONG).await;
    assert_eq!(
        patch(json!({"role": "viewer"}))
            .await
            .expect("patch")
            .status(),
        200
    );
    assert_eq!(
        app.get_as(&token, "/api/me").await.0,
        401,
        "role change ends sessions"
    );

    let token = app.token("bob", STRONG).await;
    let (_, me) = app.get_as(&token, "/api/me").await;
    assert_eq!(me["user"]["role"], "viewer");
    let resp = app
        .client
        .post(app.url(&format!("/api/users/{bob}/password")))
        .bearer_auth(&admin)
        .json(&json!({"password": "another long passphrase"}))
        .send()
        .await
        .expect("reset");
    assert_eq!(resp.status(), 204);
    assert_eq!(
        app.get_as(&token, "/api/me").await.0,
        401,
        "password reset ends sessions"
    );
    assert_eq!(
        app.login("bob", STRONG).await.status(),
        401,
        "old password is gone"
    );

    let token = app.token("bob", "another long passphrase").await;
    assert_eq!(
        patch(json!({"is_active": false}))
            .await
            .expect("patch")
            .status(),
        200
    );
    assert_eq!(
        app.get_as(&token, "/api/me").await.0,
        401,
        "deactivation ends sessions"
    );
    let resp = app.login("bob", "another long passphrase").await;
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(
        body["error"]["message"], "invalid username or password",
        "a disabled account is not revealed"
    );
    let updates = audit_rows(&app, &admin, "action=user_update").await;
    assert_eq!(updates.len(), 2);
    assert_eq!(
        audit_rows(&app, &admin, "action=user_password_reset")
            .await
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_rules_and_the_last_admin_are_enforced() {
    let app = app().await;
    let admin = app.admin_token().await;
    // Too short is what the schema states (minLength 12): refused as malformed.
    let resp = app
        .client
        .post(app.url("/api/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "carol", "password": "short", "role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "bad_request");
    for (body, code) in [
        (
            json!({"username": "carol-the-user", "password": "carol-the-user", "role": "viewer"}),
            "weak_password",
        ),
        (
            json!({"username": "-carol", "password": STRONG, "role": "viewer"}),
            "invalid_username",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/api/users"))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .expect("req");
        assert_eq!(resp.status(), 422, "{body}");
        assert_eq!(error_code(resp).await, code, "{body}");
    }
    app.create_user(&admin, "carol", STRONG, "viewer").await;
    let resp = app
        .client
        .post(app.url("/api/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "carol", "password": STRONG, "role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 409);
    assert_eq!(error_code(resp).await, "username_taken");

    let resp = app
        .client
        .patch(app.url("/api/users/1"))
        .bearer_auth(&admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 409);
    assert_eq!(error_code(resp).await, "last_admin");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_my_password_needs_the_current_one_and_ends_my_sessions() {
    let app = app().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "dave", STRONG, "viewer").await;
    let token = app.token("dave", STRONG).await;
    let change = |current: &str, new: &str| {
        app.client
            .post(app.url("/api/me/password"))
            .bearer_auth(&token)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };
    let resp = change("not my password", "a new long passphrase")
        .await
        .expect("req");
    assert_eq!(resp.status(), 422);
    assert_eq!(error_code(resp).await, "wrong_password");
    // Too short is what the schema states (minLength 12): refused as malformed.
    let resp = change(STRONG, "short").await.expect("req");
    assert_eq!(resp.status(), 400);
    assert_eq!(error_code(resp).await, "bad_request");
    assert_eq!(
        change(STRONG, "a new long passphrase")
            .await
            .expect("req")
            .status(),
        204
    );
    assert_eq!(app.get_as(&token, "/api/me").await.0, 401);
    app.token("dave", "a new long passphrase").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_audited_and_cannot_lock_the_owner_out() {
    let app = spawn_app_with(Backend::Sqlite, "throttle", behind_local_proxy)
        .await
        .expect("sqlite is always available");
    let from = |ip: &'static str, password: String| {
        app.client
            .post(app.url("/api/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"username": "admin", "password": password}))
            .send()
    };
    for _ in 0..5 {
        let resp = from("203.0.113.5", "wrong password!".into())
            .await
            .expect("req");
        assert_eq!(resp.status(), 401);
    }
    // Locked for this address, even with the right password.
    let resp = from("203.0.113.5", app.admin_password())
        .await
        .expect("req");
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    // Five failures: the address waits 5 s, doubling with each further failure.
    assert!((1..=5).contains(&retry), "Retry-After {retry}");
    assert_eq!(error_code(resp).await, "too_many_attempts");
    // The owner, from another address, logs in.
    let resp = from("198.51.100.7", app.admin_password())
        .await
        .expect("req");
    assert_eq!(resp.status(), 200);
    let admin: Value = resp.json().await.expect("JSON");
    let admin = admin["token"].as_str().expect("token").to_owned();

    let failed = audit_rows(&app, &admin, "action=login_failed&username=admin").await;
    assert_eq!(failed.len(), 5);
    assert!(
        failed
            .iter()
            .all(|r| r["success"] == false && r["ip_address"] == "203.0.113.5")
    );
    assert!(
        failed[0]["detail"]
            .as_str()
            .expect("detail")
            .contains("throttled")
    );
    let throttled = audit_rows(&app, &admin, "action=login_throttled").await;
    assert_eq!(throttled.len(), 1);
    let ok = audit_rows(&app, &admin, "action=login&success=true").await;
    assert_eq!(
        ok[0]["ip_address"], "198.51.100.7",
        "X-Forwarded-For from a trusted proxy"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_ignored_from_untrusted_peers() {
    let app = app().await;
    let resp = app
        .client
        .post(app.url("/api/login"))
        .header("x-forwarded-for", "192.0.2.99")
        .json(&json!({"username": "nobody", "password": "whatever it is"}))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 401);
    let admin = app.admin_token().await;
    let rows = audit_rows(&app, &admin, "action=login_failed").await;
    assert_eq!(rows[0]["ip_address"], "127.0.0.1");
    assert_eq!(rows[0]["username"], "nobody");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sessions_need_the_csrf_header_to_change_state() {
    let app = app().await;
    let resp = app.login("admin", &app.admin_password()).await;
    let body: Value = resp.json().await.expect("JSON");
    let token = body["token"].as_str().expect("token");
    let csrf = body["csrf_token"].as_str().expect("csrf");
    let cookie = format!("coffer_session={token}");
    let resp = app
        .client
        .get(app.url("/api/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 200, "reads need no CSRF header");
    let resp = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 403);
    assert_eq!(error_code(resp).await, "csrf_token_invalid");
    let resp = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", "wrong")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 403);
    let resp = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 204);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_security_headers() {
    let app = app().await;
    let resp = app
        .client
        .get(app.url("/api/users"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 401);
    let h = resp.headers();
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("script-src 'self'")
    );
    app.stop().await;
}

/// The audit listing on PostgreSQL too (the rest of the suite runs on SQLite; the
/// repository contracts cover both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_audit_on_postgres() {
    let Some(app) = spawn_app(Backend::Postgres, "auth::login_and_audit_on_postgres").await else {
        return;
    };
    let admin = app.admin_token().await;
    assert_eq!(
        app.login("admin", "wrong password here").await.status(),
        401
    );
    let rows = audit_rows(&app, &admin, "limit=10").await;
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["login_failed", "login", "user_create"]);
    app.stop().await;
}

/// A session that cannot be checked because the database failed is a server error, not a
/// bad login: with a bearer token and with the dashboard's cookie alike (poem-openapi
/// tries the schemes in turn and would answer with the last one's "missing" 401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failure_while_checking_a_session_is_not_a_bad_login() {
    use sea_orm::ConnectionTrait as _;

    let app = spawn_app(Backend::Sqlite, "auth_db_failure")
        .await
        .expect("sqlite is always available");
    let token = app.admin_token().await;
    let login = app.login("admin", &app.admin_password()).await;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned();
    let with_cookie = |path: &str| {
        app.client
            .get(app.url(path))
            .header("cookie", cookie.clone())
    };
    assert_eq!(app.get_as(&token, "/api/me").await.0, 200);
    assert_eq!(
        with_cookie("/api/me").send().await.expect("me").status(),
        200
    );

    // The table every session check reads goes away under the server.
    let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(app.settings.database_url()))
        .await
        .expect("connect");
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    db.connection()
        .execute_unprepared(&rename("revoked_sessions", "revoked_sessions_away"))
        .await
        .expect("rename");
    let (status, body) = app.get_as(&token, "/api/me").await;
    assert_eq!(status, 500, "bearer: {body}");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    let resp = with_cookie("/api/me").send().await.expect("me");
    assert_eq!(resp.status(), 500, "cookie");
    let body: serde_json::Value = resp.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    // A bad token is still a bad login, database or not.
    assert_eq!(app.get_as("not-a-token", "/api/me").await.0, 401);

    db.connection()
        .execute_unprepared(&rename("revoked_sessions_away", "revoked_sessions"))
        .await
        .expect("rename back");
    assert_eq!(app.get_as(&token, "/api/me").await.0, 200);
    app.stop().await;
}

/// The `Cookie` header a client sends back after a response: every cookie it set except
/// the session's (a device cookie, if the server hands one out).
fn cookies_to_keep(resp: &reqwest::Response) -> String {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|c| !c.starts_with("coffer_session="))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A login for `username` as if from `ip` (through the trusted proxy on loopback), with
/// an optional `Cookie` header.
async fn login_from(
    app: &TestApp,
    ip: &str,
    username: &str,
    password: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": username, "password": password}));
    if let Some(cookie) = cookie.filter(|c| !c.is_empty()) {
        req = req.header("cookie", cookie);
    }
    req.send().await.expect("login request")
}

/// Requests from loopback are a trusted proxy's: each test sends its clients' addresses in
/// `X-Forwarded-For`.
fn behind_local_proxy(settings: &mut coffer_config::Settings) {
    settings.server.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")];
}

/// Issue 14, item 9: the limits bound a burst. Fifty wrong passwords sent at once from
/// one address must not all reach the password check: the throttle reserves each
/// attempt before the check, so at most the address's free attempts are tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_wrong_passwords_are_bounded_by_the_limits() {
    let app = spawn_app_with(Backend::Sqlite, "burst", behind_local_proxy)
        .await
        .expect("sqlite is always available");
    let attempts = (0..50).map(|i| {
        let client = app.client.clone();
        let url = app.url("/api/login");
        tokio::spawn(async move {
            client
                .post(url)
                .header("x-forwarded-for", "203.0.113.5")
                .json(&json!({"username": "admin", "password": format!("wrong password {i}")}))
                .send()
                .await
                .expect("login request")
                .status()
                .as_u16()
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|s| s.expect("task"))
        .collect();
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(tried + refused, 50, "only 401 or 429: {statuses:?}");
    assert!(
        tried <= 5,
        "{tried} of 50 concurrent wrong passwords reached the password check (limit 5)"
    );
    let resp = login_from(&app, "198.51.100.7", "admin", &app.admin_password(), None).await;
    assert_eq!(resp.status(), 200, "the owner, from elsewhere");
    let admin = resp.json::<Value>().await.expect("JSON")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let failed = audit_rows(&app, &admin, "action=login_failed&limit=100").await;
    assert_eq!(
        failed.len(),
        tried,
        "one login_failed row per tried attempt"
    );
    app.stop().await;
}

/// Issue 14, item 10: a fuzzer guessing the admin's password from many addresses (and
/// from the admin's own) cannot keep the admin out: a client that logged in before holds
/// a device cookie and is exempt from the per-account limit and the address's delays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuzzer_cannot_lock_the_admin_out_of_a_known_client() {
    let app = spawn_app_with(Backend::Sqlite, "fuzzer_lockout", behind_local_proxy)
        .await
        .expect("sqlite is always available");
    let password = app.admin_password();
    // Yesterday: the admin logged in from their browser; bob from his.
    let resp = login_from(&app, "198.51.100.7", "admin", &password, None).await;
    assert_eq!(resp.status(), 200);
    let device = cookies_to_keep(&resp);
    let admin = resp.json::<Value>().await.expect("JSON")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    app.create_user(&admin, "bob", STRONG, "viewer").await;
    let resp = login_from(&app, "198.51.100.8", "bob", STRONG, None).await;
    assert_eq!(resp.status(), 200);
    let bobs_device = cookies_to_keep(&resp);

    // The fuzzer: random passwords for admin from the admin's own address and from forty
    // others.
    for i in 0..40 {
        let from = if i % 2 == 0 {
            "198.51.100.7".to_owned()
        } else {
            format!("203.0.113.{i}")
        };
        let status = login_from(&app, &from, "admin", &format!("guess number {i}"), None)
            .await
            .status();
        assert!(status == 401 || status == 429, "{status}");
    }

    // A client that never logged in as admin is refused, even with the right password.
    let resp = login_from(&app, "192.0.2.50", "admin", &password, None).await;
    assert_eq!(resp.status(), 429, "unknown client during the attack");
    assert_eq!(error_code(resp).await, "too_many_attempts");
    // Bob's device cookie, or a tampered one, is no admin's device.
    let resp = login_from(&app, "192.0.2.51", "admin", &password, Some(&bobs_device)).await;
    assert_eq!(resp.status(), 429, "another account's device cookie");
    let mut tampered = device.clone();
    if let Some(last) = tampered.pop() {
        tampered.push(if last == 'A' { 'B' } else { 'A' });
    }
    let resp = login_from(&app, "192.0.2.52", "admin", &password, Some(&tampered)).await;
    assert_eq!(resp.status(), 429, "a tampered device cookie");

    // The admin's browser gets in: from the address under attack and from another.
    let resp = login_from(&app, "198.51.100.7", "admin", &password, Some(&device)).await;
    assert_eq!(
        resp.status(),
        200,
        "the owner's known client is locked out: {}",
        resp.text().await.unwrap_or_default()
    );
    let resp = login_from(&app, "192.0.2.53", "admin", &password, Some(&device)).await;
    assert_eq!(resp.status(), 200, "the owner's known client, elsewhere");
    app.stop().await;
}

/// Issue 15 §4: servers sharing one catalog share the login throttle's counters. Failures
/// for an account on one server lock it, for unknown clients, on the other; a known
/// client and the other accounts still get in there.
async fn servers_on_one_catalog_share_the_lockout(app: &TestApp) {
    let peer = app.spawn_peer().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "carol", STRONG, "viewer").await;
    // Before: carol logs in on the peer (it serves the same catalog), and keeps its
    // device cookie.
    let resp = login_from(&peer, "198.51.100.7", "carol", STRONG, None).await;
    assert_eq!(resp.status(), 200, "carol on the second server");
    let device = cookies_to_keep(&resp);

    // Distributed guessing on the first server: one failure from each of ten addresses.
    for i in 0..10 {
        let resp = login_from(app, &format!("203.0.113.{i}"), "carol", "guess!", None).await;
        assert_eq!(resp.status(), 401, "guess {i}");
    }

    // The second server refuses carol to an unknown client, even with her password.
    let resp = login_from(&peer, "192.0.2.50", "carol", STRONG, None).await;
    assert_eq!(resp.status(), 429, "the lockout is shared");
    assert_eq!(error_code(resp).await, "too_many_attempts");
    // Her known client gets in there, and so does another account.
    let resp = login_from(&peer, "192.0.2.50", "carol", STRONG, Some(&device)).await;
    assert_eq!(resp.status(), 200, "carol's known client");
    let resp = login_from(&peer, "192.0.2.50", "admin", &app.admin_password(), None).await;
    assert_eq!(resp.status(), 200, "another account");
    peer.stop().await;
}

coffer_tests::on_both!(servers_on_one_catalog_share_the_lockout, behind_local_proxy);

/// Issue 14, item 10: an IPv6 client is one /64 (one host owns that many addresses), and
/// an IPv4-mapped IPv6 address is the IPv4 address it maps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_counts_per_64_and_mapped_ipv4_is_ipv4() {
    let app = spawn_app_with(Backend::Sqlite, "ipv6_throttle", behind_local_proxy)
        .await
        .expect("sqlite is always available");
    for i in 1..=5 {
        let resp = login_from(
            &app,
            &format!("2001:db8:1:2::{i}"),
            &format!("user{i}"),
            "not the password",
            None,
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    let resp = login_from(
        &app,
        "2001:db8:1:2:ffff::9",
        "user9",
        "not the password",
        None,
    )
    .await;
    assert_eq!(resp.status(), 429, "another address of the same /64");
    let resp = login_from(&app, "2001:db8:1:3::1", "user9", "not the password", None).await;
    assert_eq!(resp.status(), 401, "the next /64 is someone else");

    for i in 1..=5 {
        let resp = login_from(
            &app,
            "203.0.113.9",
            &format!("name{i}"),
            "not the password",
            None,
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    let resp = login_from(
        &app,
        "::ffff:203.0.113.9",
        "name9",
        "not the password",
        None,
    )
    .await;
    assert_eq!(resp.status(), 429, "IPv4-mapped IPv6 is the IPv4 address");
    let admin = app.admin_token().await;
    let rows = audit_rows(&app, &admin, "action=login_throttled").await;
    assert!(
        rows.iter().any(|r| r["ip_address"] == "203.0.113.9"),
        "the audit names the IPv4 address: {rows:?}"
    );
    app.stop().await;
}

/// Issue 14, item 11: throttled attempts do not each write an audit row; a lockout is
/// recorded once (and its count when it ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_attempts_are_coalesced_in_the_audit() {
    let app = spawn_app_with(Backend::Sqlite, "coalesce", behind_local_proxy)
        .await
        .expect("sqlite is always available");
    let (mut tried, mut refused) = (0_usize, 0_usize);
    for i in 0..40 {
        let status = login_from(
            &app,
            "203.0.113.5",
            "admin",
            &format!("wrong password {i}"),
            None,
        )
        .await
        .status();
        match status.as_u16() {
            401 => tried += 1,
            429 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    assert!(refused >= 30, "{refused} refused");
    let resp = login_from(&app, "198.51.100.7", "admin", &app.admin_password(), None).await;
    assert_eq!(resp.status(), 200);
    let admin = resp.json::<Value>().await.expect("JSON")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let throttled = audit_rows(&app, &admin, "action=login_throttled&limit=100").await;
    // One row when a lockout starts and one with the count when it ends; a lockout ends
    // only when an attempt is let through again (each such attempt is a 401).
    let lockouts = 1 + tried.saturating_sub(5);
    assert!(
        !throttled.is_empty() && throttled.len() <= 2 * lockouts,
        "{refused} throttled attempts in {lockouts} lockout(s) wrote {} audit rows",
        throttled.len()
    );
    app.stop().await;
}

/// The device cookie a login sets: HttpOnly, SameSite=Strict, sent to the login only,
/// `Secure` with `security.secure_cookies`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_cookie_is_httponly_strict_and_secure_when_configured() {
    let app = spawn_app_with(Backend::Sqlite, "device_cookie", |s| {
        s.security.secure_cookies = true;
    })
    .await
    .expect("sqlite is always available");
    let resp = app.login("admin", &app.admin_password()).await;
    assert_eq!(resp.status(), 200);
    let device = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("coffer_device="))
        .expect("a device cookie")
        .to_owned();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/api/login",
        "Max-Age=7775",
        "Secure",
    ] {
        assert!(device.contains(attr), "{attr} missing in {device}");
    }
    // A device cookie is no session.
    let value = device
        .split(';')
        .next()
        .and_then(|c| c.strip_prefix("coffer_device="))
        .expect("value");
    assert_eq!(app.get_as(value, "/api/me").await.0, 401);
    app.stop().await;
}
