//! No password, password hash, token or key reaches the logs, at any level. This binary
//! holds one test: it installs a TRACE-level subscriber for everything (Coffer, sqlx,
//! sea-orm, poem, hyper), drives every code path that handles a secret, and searches the
//! captured output for each secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use coffer_tests::{Backend, spawn_app};
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_ever_logged() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = spawn_app(Backend::Sqlite, "secrets").await.expect("sqlite");
    let admin_password = app.admin_password();
    let admin = app.admin_token().await;
    let user_password = "canary-user-password-3f9c1a";
    let new_password = "canary-new-password-77d2be";
    let reset_password = "canary-reset-password-c0ffee";
    let wrong_password = "canary-wrong-password-0b5e7";
    let uid = app
        .create_user(&admin, "canary", user_password, "operator")
        .await;

    let login: Value = app
        .login("canary", user_password)
        .await
        .json()
        .await
        .expect("JSON");
    let token = login["token"].as_str().expect("token").to_owned();
    let csrf = login["csrf_token"].as_str().expect("csrf").to_owned();
    assert_eq!(app.get_as(&token, "/api/me").await.0, 200);
    assert_eq!(app.login("canary", wrong_password).await.status(), 401);
    let resp = app
        .client
        .post(app.url("/api/me/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": user_password, "new_password": new_password}))
        .send()
        .await
        .expect("change");
    assert_eq!(resp.status(), 204);
    let second = app.token("canary", new_password).await;
    let resp = app
        .client
        .post(app.url(&format!("/api/users/{uid}/password")))
        .bearer_auth(&admin)
        .json(&json!({"password": reset_password}))
        .send()
        .await
        .expect("reset");
    assert_eq!(resp.status(), 204);
    // A cookie session with its CSRF token, and a logout.
    let third = app.token("canary", reset_password).await;
    let resp = app
        .client
        .post(app.url("/api/logout"))
        .header("cookie", format!("coffer_session={third}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(
        resp.status(),
        403,
        "the first session's CSRF token does not fit this one"
    );

    // A personal access token: created, used (its last use recorded), refused once its
    // owner is demoted below its role, revoked, and then refused.
    let created: Value = app
        .client
        .post(app.url("/api/tokens"))
        .bearer_auth(&admin)
        .json(&json!({"name": "canary token", "user_id": uid, "role": "operator"}))
        .send()
        .await
        .expect("create token")
        .json()
        .await
        .expect("JSON");
    let pat = created["token"].as_str().expect("secret").to_owned();
    assert_eq!(app.get_as(&pat, "/api/me").await.0, 200);
    let resp = app
        .client
        .patch(app.url(&format!("/api/users/{uid}")))
        .bearer_auth(&admin)
        .json(&json!({"role": "viewer"}))
        .send()
        .await
        .expect("demote");
    assert_eq!(resp.status(), 200);
    assert_eq!(app.get_as(&pat, "/api/me").await.0, 401);
    let resp = app
        .client
        .delete(app.url(&format!("/api/tokens/{}", created["id"])))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("revoke");
    assert_eq!(resp.status(), 204);
    assert_eq!(app.get_as(&pat, "/api/me").await.0, 401);

    // The stored hashes and the session key are secrets too.
    let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(app.settings.database_url()))
        .await
        .expect("connect");
    let rows = db
        .connection()
        .query_all_raw(Statement::from_string(
            db.connection().get_database_backend(),
            "SELECT password_hash FROM users",
        ))
        .await
        .expect("hashes");
    let hashes: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String>("", "password_hash").expect("hash"))
        .collect();
    assert!(hashes.len() >= 2);
    let session_key = std::fs::read_to_string(app.settings.session_key_file()).expect("key");
    app.stop().await;

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
    std::fs::write(std::env::temp_dir().join("coffer-secrets-test.log"), &logs).ok();
    assert!(
        logs.len() > 5_000,
        "TRACE logging really captured output ({} bytes)",
        logs.len()
    );
    assert!(
        logs.contains("canary"),
        "the canary user's actions were logged at all"
    );
    let mut secrets: Vec<(&str, String)> = vec![
        ("admin password", admin_password),
        ("user password", user_password.to_owned()),
        ("new password", new_password.to_owned()),
        ("reset password", reset_password.to_owned()),
        ("wrong password", wrong_password.to_owned()),
        ("admin token", admin.clone()),
        ("user token", token),
        ("second token", second),
        ("third token", third),
        ("personal access token", pat.clone()),
        (
            "personal access token's random part",
            pat.trim_start_matches("coffer_pat_").to_owned(),
        ),
        ("session key", session_key.trim().to_owned()),
    ];
    for (i, hash) in hashes.into_iter().enumerate() {
        secrets.push((
            if i == 0 {
                "a password hash"
            } else {
                "another password hash"
            },
            hash,
        ));
    }
    for (what, secret) in &secrets {
        // The signature part of a token alone is also a leak.
        let needle = secret.rsplit('.').next().unwrap_or(secret);
        assert!(!logs.contains(needle), "{what} appears in the logs");
    }
}
