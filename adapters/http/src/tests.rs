//! The real middleware, error mapping and spec, over small test APIs.

use std::path::PathBuf;

use bytes::Bytes;
use poem::http::StatusCode;
use poem::test::TestClient;

use super::openapi_json;

/// The real middleware and Swagger UI around a small API, so the HTTP behaviour can be
/// tested without the application's services (the end-to-end tests cover those).
#[allow(clippy::unused_async)] // poem-openapi handlers must be async
mod harness {
    use poem::{EndpointExt, Route};
    use poem_openapi::payload::Json;
    use poem_openapi::{OpenApi, OpenApiService};

    pub struct PingApi;

    #[OpenApi]
    impl PingApi {
        #[oai(path = "/api/ping", method = "get")]
        async fn ping(&self) -> Json<u32> {
            Json(1)
        }
    }

    pub fn client(
        max_body: usize,
    ) -> poem::test::TestClient<poem::endpoint::BoxEndpoint<'static, poem::Response>> {
        let routes = Route::new()
            .nest("/swagger", crate::swagger::SwaggerUi::new().endpoint())
            .nest("/", OpenApiService::new(PingApi, "t", "1"));
        poem::test::TestClient::new(crate::middleware::wrap(routes, max_body).boxed())
    }
}

async fn error_of(resp: poem::test::TestResponse) -> (String, String) {
    let json = resp.json().await;
    let error = json.value().object().get("error");
    let error = error.object();
    (
        error.get("code").string().to_owned(),
        error.get("message").string().to_owned(),
    )
}

#[tokio::test]
async fn unknown_route_is_a_json_404() {
    let resp = harness::client(4096).get("/api/nothing-here").send().await;
    resp.assert_status(StatusCode::NOT_FOUND);
    resp.assert_content_type("application/json; charset=utf-8");
    let (code, message) = error_of(resp).await;
    assert_eq!(code, "not_found");
    assert_eq!(message, "no route for GET /api/nothing-here");
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let resp = harness::client(4096).delete("/api/ping").send().await;
    resp.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    let (code, _) = error_of(resp).await;
    assert_eq!(code, "method_not_allowed");
}

#[tokio::test]
async fn oversized_body_is_a_json_413() {
    let resp = harness::client(2048)
        .post("/api/ping")
        .header("content-type", "application/json")
        .body(vec![b' '; 4096])
        .send()
        .await;
    resp.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
    let (code, message) = error_of(resp).await;
    assert_eq!(code, "payload_too_large");
    assert!(message.contains("2048"), "{message}");
}

#[tokio::test]
async fn oversized_chunked_body_is_a_json_413() {
    let stream = futures::stream::iter(
        vec![Bytes::from(vec![b'x'; 1500]); 3]
            .into_iter()
            .map(Ok::<_, std::io::Error>),
    );
    let resp = harness::client(2048)
        .post("/api/ping")
        .header("transfer-encoding", "chunked")
        .body(poem::Body::from_bytes_stream(stream))
        .send()
        .await;
    resp.assert_status(StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let client = harness::client(4096);
    for path in ["/api/ping", "/api/missing", "/swagger/"] {
        let resp = client.get(path).send().await;
        let headers = resp.0.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    }
    let resp = client.get("/api/ping").send().await;
    assert_eq!(resp.0.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn swagger_ui_is_served_offline_without_inline_script() {
    let client = harness::client(4096);
    let resp = client.get("/swagger/").send().await;
    resp.assert_status_is_ok();
    let html = resp.0.into_body().into_string().await.expect("html");
    assert!(html.contains(r#"<div id="ui">"#));
    assert!(html.contains(r#"<script src="/swagger/swagger-ui-bundle.js">"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    assert!(!html.contains("<script>"), "no inline script");
    for (asset, needle) in [
        ("/swagger/swagger-ui-bundle.js", "SwaggerUIBundle"),
        ("/swagger/swagger-ui.css", ".swagger-ui"),
        ("/swagger/init.js", "/openapi.json"),
    ] {
        let resp = client.get(asset).send().await;
        resp.assert_status_is_ok();
        let text = resp.0.into_body().into_string().await.expect("asset");
        assert!(text.len() > 20 && text.contains(needle), "{asset}");
    }
}

#[test]
fn every_operation_has_an_id_and_documents_its_errors() {
    let spec: serde_json::Value = serde_json::from_str(&openapi_json()).expect("spec is JSON");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(!paths.is_empty());
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("operations") {
            assert!(
                op["operationId"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no operationId"
            );
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
            let responses = op["responses"].as_object().expect("responses");
            for status in [
                "400", "401", "403", "404", "405", "409", "413", "415", "422", "429", "500",
            ] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
}

/// What a client can know before it asks is in the schema, so that generated clients and
/// fuzzers do not send what the server will refuse: the password rules, absolute source
/// paths, and the choice between `source_id` and `source`.
#[test]
fn the_spec_states_the_rules_a_client_can_know_up_front() {
    let spec: serde_json::Value = serde_json::from_str(&openapi_json()).expect("spec is JSON");
    let schemas = &spec["components"]["schemas"];
    for (schema, field) in [
        ("CreateUserRequest", "password"),
        ("ResetPasswordRequest", "password"),
        ("ChangePasswordRequest", "new_password"),
    ] {
        let prop = &schemas[schema]["properties"][field];
        assert_eq!(
            (&prop["minLength"], &prop["maxLength"]),
            (&12.into(), &1024.into()),
            "{schema}.{field}: {prop}"
        );
    }
    for schema in ["CreateSourceRequest", "UpdateSourceRequest"] {
        let prop = &schemas[schema]["properties"]["path"];
        assert_eq!(prop["pattern"], "^/", "{schema}.path: {prop}");
    }
    let body = &spec["paths"]["/api/backup"]["post"]["requestBody"]["content"]["application/json; charset=utf-8"]
        ["schema"];
    let name = body["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .expect("a named schema");
    let choices: Vec<&str> = schemas[name]["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{name} is no oneOf: {}", schemas[name]))
        .iter()
        .filter_map(|c| c["$ref"].as_str()?.rsplit('/').next())
        .collect();
    let required: Vec<&serde_json::Value> =
        choices.iter().map(|c| &schemas[*c]["required"]).collect();
    assert_eq!(
        required,
        [
            &serde_json::json!(["source_id"]),
            &serde_json::json!(["source"])
        ]
    );
}

/// The committed spec must match the code. Refresh it with
/// `cargo run -p coffer -- openapi > openapi/openapi.json`.
#[test]
fn committed_openapi_json_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = openapi_json();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date with the code.\n\
         Refresh it with:  cargo run -p coffer -- openapi > openapi/openapi.json\n\
         and commit the result."
    );
}

/// poem-openapi's own rejections (malformed JSON, wrong content type, bad parameters)
/// are plain text; the middleware must turn them into the JSON shape.
#[allow(clippy::unused_async)] // poem-openapi handlers must be async
mod framework_errors {
    use poem::{EndpointExt, Route};
    use poem_openapi::payload::Json;
    use poem_openapi::{Object, OpenApi, OpenApiService, param::Query};

    use super::*;

    #[derive(Object)]
    struct Input {
        name: String,
    }

    struct EchoApi;

    #[OpenApi]
    impl EchoApi {
        #[oai(path = "/echo", method = "post")]
        async fn echo(&self, body: Json<Input>) -> Json<String> {
            Json(body.0.name)
        }

        #[oai(path = "/count", method = "get")]
        async fn count(&self, n: Query<u32>) -> Json<u32> {
            Json(n.0)
        }

        #[oai(path = "/panic", method = "get")]
        async fn panics(&self) -> Json<u32> {
            panic!("secret state in a panic message")
        }

        #[oai(path = "/boom", method = "get")]
        async fn boom(&self) -> poem::Result<Json<u32>> {
            Err(poem::Error::from_string(
                "db password is hunter2",
                StatusCode::INTERNAL_SERVER_ERROR,
            ))
        }
    }

    fn client() -> TestClient<poem::endpoint::BoxEndpoint<'static, poem::Response>> {
        let api = OpenApiService::new(EchoApi, "t", "1");
        let ep = crate::middleware::wrap(Route::new().nest("/", api), 4096).boxed();
        TestClient::new(ep)
    }

    #[tokio::test]
    async fn malformed_json_is_a_json_400() {
        let resp = client()
            .post("/echo")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        resp.assert_content_type("application/json; charset=utf-8");
        let (code, message) = error_of(resp).await;
        assert_eq!(code, "bad_request");
        assert!(!message.is_empty());
    }

    #[tokio::test]
    async fn wrong_content_type_is_a_json_415() {
        let resp = client()
            .post("/echo")
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await;
        resp.assert_status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let (code, _) = error_of(resp).await;
        assert_eq!(code, "unsupported_media_type");
    }

    #[tokio::test]
    async fn a_bad_parameter_is_a_json_400() {
        let resp = client().get("/count").query("n", &"many").send().await;
        resp.assert_status(StatusCode::BAD_REQUEST);
        let (code, _) = error_of(resp).await;
        assert_eq!(code, "bad_request");
    }

    #[tokio::test]
    async fn a_server_error_says_nothing_internal() {
        let resp = client().get("/boom").send().await;
        resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
        let (code, message) = error_of(resp).await;
        assert_eq!(code, "internal");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn a_panic_is_a_json_500() {
        let resp = client().get("/panic").send().await;
        resp.assert_status(StatusCode::INTERNAL_SERVER_ERROR);
        let (code, message) = error_of(resp).await;
        assert_eq!(code, "internal");
        assert!(!message.contains("secret"), "{message}");
    }
}
