//! End to end over real TCP: the server as `coffer serve` builds it, on SQLite and on
//! PostgreSQL.

use coffer_tests::{Backend, TestApp, on_both, spawn_app};
use serde_json::Value;

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.client.get(app.url(path)).send().await.expect("request");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "{path}: content-type {ct}"
    );
    (status, resp.json().await.expect("JSON body"))
}

async fn health_answers_ok_with_json(app: &TestApp) {
    let (status, body) = get_json(app, "/api/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["storage"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}
on_both!(health_answers_ok_with_json);

async fn health_is_503_when_storage_vanishes(app: &TestApp) {
    std::fs::remove_dir_all(app.settings.storage_root()).expect("remove the repository");
    let (status, body) = get_json(app, "/api/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["storage"], "unreachable");
    assert_eq!(body["database"], "ok");
    assert_eq!(body["error"]["code"], "unavailable");
}
on_both!(health_is_503_when_storage_vanishes);

async fn unknown_routes_are_json_404s(app: &TestApp) {
    for path in ["/api/nope", "/nope", "/api/health/extra"] {
        let (status, body) = get_json(app, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
}
on_both!(unknown_routes_are_json_404s);

async fn spec_and_swagger_are_served(app: &TestApp) {
    let (status, spec) = get_json(app, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/api/health"]["get"].is_object());
    let resp = app
        .client
        .get(app.url("/swagger"))
        .send()
        .await
        .expect("swagger");
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.expect("html");
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
}
on_both!(spec_and_swagger_are_served);

async fn oversized_bodies_are_refused_with_413(app: &TestApp) {
    let resp = app
        .client
        .post(app.url("/api/health"))
        .header("content-type", "application/json")
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");
}
on_both!(oversized_bodies_are_refused_with_413);

async fn the_catalog_is_created_and_migrated(app: &TestApp) {
    // SQLite's file lives in the data directory; PostgreSQL's database is elsewhere.
    let sqlite_file = app.data_dir.join("coffer.db");
    assert_eq!(sqlite_file.exists(), app.settings.database.url.is_none());
    assert!(app.settings.storage_root().is_dir());
}
on_both!(the_catalog_is_created_and_migrated);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let first = spawn_app(Backend::Sqlite, "second::first")
        .await
        .expect("sqlite");
    // Jobs are run, and recovered at start-up, by one process per data directory.
    let Err(e) = coffer::Application::build(&first.settings).await else {
        panic!("a second server on one data directory must not start");
    };
    assert!(
        format!("{e:#}").contains("already running on the data directory"),
        "{e:#}"
    );
    // The first is unharmed.
    let (status, _) = first.get_as("", "/api/health").await;
    assert_eq!(status, 200);
    first.stop().await;
}
