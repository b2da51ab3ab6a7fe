//! Personal access tokens (issue 16 §2), end to end over HTTP: created once with their
//! secret, used as `Authorization: Bearer` with the narrower of their role and their
//! owner's, refused when the owner is demoted below it or deactivated, never as a cookie
//! and never to mint more tokens; listed with their last use; revoked at once; every use
//! audited under the owner with the token named.

use chrono::{TimeDelta, Utc};
use coffer_tests::{Backend, TestApp, spawn_app};
use serde_json::{Value, json};

const STRONG: &str = "a long enough passphrase";

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method.parse().expect("method"), app.url(path))
        .bearer_auth(bearer);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn in_days(days: i64) -> String {
    (Utc::now() + TimeDelta::days(days)).to_rfc3339()
}

/// Creates a token as `session`; returns (id, secret).
async fn create(app: &TestApp, session: &str, body: Value) -> (i64, String) {
    let (status, created) = send(app, "POST", "/api/tokens", session, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_i64().expect("id"),
        created["token"].as_str().expect("secret").to_owned(),
    )
}

async fn tokens_work_end_to_end(app: TestApp) {
    let admin = app.admin_token().await;
    let ops_id = app.create_user(&admin, "ops", STRONG, "operator").await;
    let ops = app.token("ops", STRONG).await;

    // Refused grants: no expiry (not an admin), a role above the owner's, a past expiry.
    for (body, code) in [
        (json!({"name": "forever"}), "expiry_required"),
        (
            json!({"name": "too high", "role": "admin", "expires_at": in_days(1)}),
            "role_above_owner",
        ),
        (
            json!({"name": "past", "expires_at": in_days(-1)}),
            "expiry_in_past",
        ),
        (
            json!({"name": "someone else's", "expires_at": in_days(1), "user_id": 1}),
            "forbidden",
        ),
    ] {
        let (status, err) = send(&app, "POST", "/api/tokens", &ops, Some(body)).await;
        assert!(status == 422 || status == 403, "{status} {err}");
        assert_eq!(err["error"]["code"], code, "{err}");
    }

    // `null` is not "absent": the schema allows neither, and it must not mean "never".
    let (status, err) = send(
        &app,
        "POST",
        "/api/tokens",
        &ops,
        Some(json!({"name": "nulls", "expires_at": null})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // An operator's token limited to viewer, and one following the owner's role.
    let (narrow_id, narrow) = create(
        &app,
        &ops,
        json!({"name": "ci read-only", "role": "viewer", "expires_at": in_days(30)}),
    )
    .await;
    assert!(narrow.starts_with("coffer_pat_"), "{narrow}");
    assert_eq!(narrow.len(), "coffer_pat_".len() + 64);
    let (full_id, full) = create(
        &app,
        &ops,
        json!({"name": "nightly", "expires_at": in_days(30)}),
    )
    .await;

    let (status, me) = send(&app, "GET", "/api/me", &narrow, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["username"], "ops");
    assert_eq!(
        me["permissions"],
        json!(["view"]),
        "the token's role, not the owner's"
    );
    assert_eq!(me["token"]["name"], "ci read-only");
    assert!(me["csrf_token"].is_null(), "{me}");
    let (status, me) = send(&app, "GET", "/api/me", &full, None).await;
    assert_eq!(status, 200);
    assert_eq!(me["permissions"], json!(["view", "backup", "restore"]));

    // The narrow token may view but not back up; the full one may (a 404/422 for the
    // missing source, never 403).
    assert_eq!(
        send(&app, "GET", "/api/backups", &narrow, None).await.0,
        200
    );
    let backup = json!({"source": "no-such-source"});
    assert_eq!(
        send(&app, "POST", "/api/backup", &narrow, Some(backup.clone()))
            .await
            .0,
        403
    );
    let (status, _) = send(&app, "POST", "/api/backup", &full, Some(backup)).await;
    assert!(status != 401 && status != 403, "{status}");

    // Header only: not as the session cookie. No CSRF token is needed in the header.
    let as_cookie = app
        .client
        .get(app.url("/api/me"))
        .header("cookie", format!("coffer_session={full}"))
        .send()
        .await
        .expect("request");
    assert_eq!(as_cookie.status(), 401);
    // A token cannot mint tokens, change the password or log out.
    let (status, err) = send(
        &app,
        "POST",
        "/api/tokens",
        &full,
        Some(json!({"name": "child", "expires_at": in_days(1)})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("session_required"))
    );
    let (status, _) = send(&app, "POST", "/api/logout", &full, None).await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &app,
        "POST",
        "/api/me/password",
        &full,
        Some(json!({"current_password": STRONG, "new_password": "another long passphrase"})),
    )
    .await;
    assert_eq!(status, 400);

    // Listed with the last use and its address, never with the secret.
    let (status, list) = send(&app, "GET", "/api/tokens", &ops, None).await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().expect("list").clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], full_id, "newest first");
    assert_eq!(list[1]["role"], "viewer");
    assert!(
        list.iter().all(|t| t["last_used_at"].is_string()),
        "{list:?}"
    );
    assert!(
        list.iter().all(|t| t["last_used_ip"] == "127.0.0.1"),
        "{list:?}"
    );
    let text = serde_json::to_string(&list).expect("json");
    assert!(
        !text.contains(&full) && !text.contains(&narrow),
        "no secret in a listing"
    );
    assert_eq!(
        send(&app, "GET", "/api/tokens?all=true", &ops, None)
            .await
            .0,
        403
    );
    assert_eq!(
        send(
            &app,
            "GET",
            &format!("/api/tokens?user_id={ops_id}"),
            &ops,
            None
        )
        .await
        .0,
        200
    );

    // An admin's token without expiry; its actions are audited under the admin, naming it.
    let (admin_tok_id, admin_tok) = create(&app, &admin, json!({"name": "provisioning"})).await;
    let (status, _) = send(
        &app,
        "POST",
        "/api/users",
        &admin_tok,
        Some(json!({"username": "made-by-token", "password": STRONG, "role": "viewer"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, audit) = send(&app, "GET", "/api/audit?action=user_create", &admin, None).await;
    let row = &audit["items"][0];
    assert_eq!(row["username"], "admin", "{row}");
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("via token {admin_tok_id} \"provisioning\"")),
        "{row}"
    );
    let (status, all) = send(&app, "GET", "/api/tokens?all=true", &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().map(Vec::len), Some(3));

    // The owner demoted to viewer: the token limited to viewer still works (as viewer),
    // the one following the owner works as viewer; then one limited to operator would
    // be above the owner and is refused.
    let (_, above) = create(
        &app,
        &admin,
        json!({"name": "ops-level", "role": "operator", "expires_at": in_days(1), "user_id": ops_id}),
    )
    .await;
    assert_eq!(send(&app, "GET", "/api/me", &above, None).await.0, 200);
    let (status, _) = send(
        &app,
        "PATCH",
        &format!("/api/users/{ops_id}"),
        &admin,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(send(&app, "GET", "/api/me", &narrow, None).await.0, 200);
    let (_, me) = send(&app, "GET", "/api/me", &full, None).await;
    assert_eq!(me["permissions"], json!(["view"]));
    assert_eq!(send(&app, "GET", "/api/me", &above, None).await.0, 401);

    // Deactivated: nothing works.
    let (status, _) = send(
        &app,
        "PATCH",
        &format!("/api/users/{ops_id}"),
        &admin,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(send(&app, "GET", "/api/me", &narrow, None).await.0, 401);
    let (status, _) = send(
        &app,
        "PATCH",
        &format!("/api/users/{ops_id}"),
        &admin,
        Some(json!({"is_active": true})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(send(&app, "GET", "/api/me", &narrow, None).await.0, 200);

    // Revocation: others' tokens are not found without manage_users; revoked is refused.
    let viewer = {
        app.create_user(&admin, "vic", STRONG, "viewer").await;
        app.token("vic", STRONG).await
    };
    let (status, _) = send(
        &app,
        "DELETE",
        &format!("/api/tokens/{narrow_id}"),
        &viewer,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &app,
        "DELETE",
        &format!("/api/tokens/{narrow_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(send(&app, "GET", "/api/me", &narrow, None).await.0, 401);
    let (status, _) = send(
        &app,
        "DELETE",
        &format!("/api/tokens/{narrow_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, audit) = send(&app, "GET", "/api/audit?action=token_revoke", &admin, None).await;
    assert_eq!(audit["items"][0]["resource"], format!("token:{narrow_id}"));
    let (_, audit) = send(&app, "GET", "/api/audit?action=token_create", &admin, None).await;
    assert!(
        audit["items"].as_array().map_or(0, Vec::len) >= 4,
        "{audit}"
    );

    // Unknown and malformed token-shaped values are plain 401s.
    for bogus in ["coffer_pat_", "coffer_pat_00", &format!("{full}x")] {
        assert_eq!(
            send(&app, "GET", "/api/me", bogus, None).await.0,
            401,
            "{bogus}"
        );
    }

    // The secrets are nowhere in the data directory (the catalog keeps hashes).
    for entry in walk(&app.data_dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        for secret in [&full, &narrow, &admin_tok] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a token secret",
                entry.display()
            );
        }
    }
    app.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_sqlite() {
    let app = spawn_app(Backend::Sqlite, "tokens").await.expect("sqlite");
    tokens_work_end_to_end(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_on_postgres() {
    let Some(app) = spawn_app(Backend::Postgres, "tokens::postgres").await else {
        return;
    };
    tokens_work_end_to_end(app).await;
}
