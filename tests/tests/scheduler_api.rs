//! Schedules over the API: a source's schedule is paused and resumed with
//! `PATCH /api/sources/{id}` (`enabled`), shown with its run times, and audited.

use coffer_tests::{TestApp, on_both};
use serde_json::{Value, json};

async fn send(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .request(method.parse().expect("method"), app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn a_schedule_is_paused_and_resumed(app: &TestApp) {
    let admin = app.admin_token().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, s) = send(
        app,
        &admin,
        "POST",
        "/api/sources",
        json!({"name": "docs", "path": dir.path(), "schedule": "0 3 * * *"}),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["enabled"], true);
    assert!(s.get("last_run_at").is_none(), "never run: {s}");
    let id = s["id"].as_i64().expect("id");
    let path = format!("/api/sources/{id}");

    let (status, s) = send(app, &admin, "PATCH", &path, json!({"enabled": false})).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["enabled"], false);
    assert_eq!(s["schedule"], "0 3 * * *", "the schedule is kept");
    assert!(
        s.get("next_run_at").is_none(),
        "no next run while paused: {s}"
    );
    let (_, got) = app.get_as(&admin, &path).await;
    assert_eq!(got["enabled"], false);

    let (status, e) = send(app, &admin, "PATCH", &path, json!({"enabled": null})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // An operator may not pause a schedule.
    app.create_user(&admin, "otto", "a long enough passphrase", "operator")
        .await;
    let operator = app.token("otto", "a long enough passphrase").await;
    let (status, e) = send(app, &operator, "PATCH", &path, json!({"enabled": true})).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    let (status, s) = send(app, &admin, "PATCH", &path, json!({"enabled": true})).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["enabled"], true);

    let (_, audit) = app
        .get_as(&admin, "/api/audit?action=source_update&limit=10")
        .await;
    let details: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["detail"].as_str())
        .collect();
    assert!(
        details.contains(&"scheduled runs off") && details.contains(&"scheduled runs on"),
        "{audit}"
    );
}

on_both!(a_schedule_is_paused_and_resumed);
