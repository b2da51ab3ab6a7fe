//! The permission matrix, built from the OpenAPI document: every operation is called as
//! anonymous, viewer, operator and admin, and must answer 401 / 403 / allowed exactly as
//! the permission its description declares and the role table say. An operation added
//! later without a declared permission, a sample request or a working check fails here.

use std::collections::BTreeMap;

use coffer_domain::auth::{Permission, Role};
use coffer_tests::{Backend, TestApp, spawn_app};
use serde_json::{Value, json};

const STRONG: &str = "a long enough passphrase";

/// What an operation's description declares after `Permission:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Public,
    Authenticated,
    Permission(Permission),
}

fn declared(op: &Value, id: &str) -> Needs {
    let text = format!(
        "{} {}",
        op["summary"].as_str().unwrap_or_default(),
        op["description"].as_str().unwrap_or_default()
    );
    let line = text
        .split("Permission:")
        .nth(1)
        .unwrap_or_else(|| {
            panic!("operation {id} does not declare `Permission:` in its description")
        })
        .trim();
    if line.starts_with("none (public)") {
        Needs::Public
    } else if line.starts_with("any authenticated user") {
        Needs::Authenticated
    } else {
        let name = line
            .strip_prefix('`')
            .and_then(|l| l.split('`').next())
            .unwrap_or_else(|| panic!("operation {id}: cannot read the permission in {line:?}"));
        Needs::Permission(
            name.parse()
                .unwrap_or_else(|e| panic!("operation {id}: {e}")),
        )
    }
}

/// A request body that passes validation, per operation (so a 400 cannot hide a missing
/// permission check). `{target}` is the id of a user the calls may change.
fn sample_body(operation_id: &str) -> Option<Value> {
    Some(match operation_id {
        "login" => json!({"username": "viewer1", "password": STRONG}),
        "createUser" => json!({"username": "matrix-new", "password": STRONG, "role": "viewer"}),
        "updateUser" => json!({"is_active": true}),
        "resetUserPassword" => json!({"password": STRONG}),
        "changeMyPassword" => {
            json!({"current_password": "not my password", "new_password": STRONG})
        }
        // Valid shapes naming things that do not exist: allowed roles get 404 or 422,
        // never 401/403, and nothing is changed.
        "createSource" => json!({"name": "matrix", "path": "/nonexistent/matrix"}),
        "updateSource" => json!({"name": "matrix-renamed"}),
        "previewExcludes" => json!({"path": "/nonexistent/matrix", "exclude": ["*.tmp"]}),
        "startBackup" | "simulateRetention" => json!({"source": "no-such-source"}),
        // Replicas: adding one writes nothing until a copy runs; the calls on
        // `/api/replicas/{name}` name none that exists (404 for the allowed).
        "createReplica" => json!({"name": "matrix", "root": "/nonexistent/matrix-replica"}),
        "updateReplica" => json!({"append_only": true}),
        // `updateSettings` with every setting absent changes nothing.
        "startRestore" | "updateSettings" => json!({}),
        // Every role may create its own token (expiring: only admins may omit it).
        "createToken" => json!({"name": "matrix", "expires_at": "2099-01-01T00:00:00Z"}),
        // No installation there: the administrator gets 422 before anything is queued.
        "importPrototype" => json!({"dir": "/nonexistent/matrix"}),
        _ => return None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_obeys_the_role_table() {
    let app = spawn_app(Backend::Sqlite, "authz").await.expect("sqlite");
    let admin = app.admin_token().await;
    app.create_user(&admin, "viewer1", STRONG, "viewer").await;
    app.create_user(&admin, "operator1", STRONG, "operator")
        .await;
    let target = app.create_user(&admin, "target", STRONG, "viewer").await;

    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("JSON");
    let mut checked = BTreeMap::new();
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            let id = op["operationId"].as_str().expect("operationId").to_owned();
            let needs = declared(op, &id);
            let secured = op
                .get("security")
                .is_some_and(|s| !s.as_array().is_some_and(Vec::is_empty));
            assert_eq!(
                secured,
                needs != Needs::Public,
                "{id}: the spec's security and the declared permission disagree"
            );
            let body = if op.get("requestBody").is_some() {
                Some(
                    sample_body(&id)
                        .unwrap_or_else(|| panic!("add a sample body for {id} to the matrix test")),
                )
            } else {
                None
            };
            let mut url = path.replace("{id}", &target.to_string());
            // Required query parameters get a well-formed value naming nothing that
            // exists, so that allowed roles get past parsing (and then a 404).
            let required: Vec<String> = op
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| format!("{}=1", p["name"].as_str().expect("name")))
                .collect();
            if !required.is_empty() {
                url = format!("{url}?{}", required.join("&"));
            }
            for role in [
                None,
                Some(Role::Viewer),
                Some(Role::Operator),
                Some(Role::Admin),
            ] {
                let status = call(&app, method, &url, body.as_ref(), role).await;
                let expected = match (needs, role) {
                    (Needs::Public, _) | (Needs::Authenticated, Some(_)) => None,
                    (_, None) => Some(401),
                    (Needs::Permission(p), Some(r)) => (!r.allows(p)).then_some(403),
                };
                match expected {
                    Some(code) => assert_eq!(status, code, "{method} {path} as {role:?}"),
                    None => assert!(
                        status != 401 && status != 403 && status < 500,
                        "{method} {path} as {role:?} must be allowed, got {status}"
                    ),
                }
            }
            checked.insert(id, needs);
        }
    }
    // The matrix really ran over the API, not over an empty spec.
    for id in [
        "getHealth",
        "login",
        "logout",
        "getMe",
        "listUsers",
        "createUser",
        "listAudit",
        "listRoles",
        "createSource",
        "startBackup",
        "startRestore",
        "browseBackup",
        "downloadBackup",
        "deleteBackup",
        "listJobs",
        "cancelJob",
        "previewRetention",
        "applyRetention",
        "listAlerts",
        "acknowledgeAlert",
        "simulateRetention",
        "previewSchedule",
        "previewExcludes",
        "getSettings",
        "updateSettings",
        "exportBackupsCsv",
        "exportAuditCsv",
        "exportPdf",
        "listReplicas",
        "createReplica",
        "syncReplica",
        "listTokens",
        "createToken",
        "revokeToken",
    ] {
        assert!(checked.contains_key(id), "{id} not in the spec");
    }
    app.stop().await;
}

/// Calls one operation as `role` (logging in afresh, so `logout` cannot spoil later calls).
async fn call(
    app: &TestApp,
    method: &str,
    url: &str,
    body: Option<&Value>,
    role: Option<Role>,
) -> u16 {
    let mut req = app
        .client
        .request(method.to_uppercase().parse().expect("method"), app.url(url));
    if let Some(role) = role {
        let token = match role {
            Role::Admin => app.admin_token().await,
            Role::Operator => app.token("operator1", STRONG).await,
            Role::Viewer => app.token("viewer1", STRONG).await,
        };
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.expect("request").status().as_u16()
}
