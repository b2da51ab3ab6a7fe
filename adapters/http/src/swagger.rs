//! Swagger UI, served offline from the assets poem-openapi ships, split into separate files
//! so the strict Content-Security-Policy (no inline script) holds on this page too. The
//! page loads the live spec from `/openapi.json`.

use poem::endpoint::make_sync;
use poem::http::header;
use poem::web::Html;
use poem::{Endpoint, IntoResponse, Response, Route};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Coffer API — Swagger UI</title>
<link rel="stylesheet" href="/swagger/swagger-ui.css">
</head>
<body>
<div id="ui"></div>
<script src="/swagger/swagger-ui-bundle.js"></script>
<script src="/swagger/init.js"></script>
</body>
</html>
"#;

const INIT_JS: &str = r##"window.addEventListener("load", function () {
  SwaggerUIBundle({
    dom_id: "#ui",
    url: "/openapi.json",
    deepLinking: true,
    persistAuthorization: false,
  });
});
"##;

pub struct SwaggerUi {
    css: String,
    js: String,
}

/// The text between `open` and the next `close` after it.
fn between<'a>(html: &'a str, open: &str, close: &str) -> &'a str {
    html.find(open)
        .map(|start| &html[start + open.len()..])
        .and_then(|rest| rest.find(close).map(|end| &rest[..end]))
        .unwrap_or_default()
}

impl SwaggerUi {
    pub fn new() -> Self {
        // The stock page inlines its stylesheet and bundle; lift them out once.
        let stock = poem_openapi::OpenApiService::new((), "", "").swagger_ui_html();
        Self {
            css: between(&stock, "<style charset=\"UTF-8\">", "</style>").to_owned(),
            js: between(&stock, "<script charset=\"UTF-8\">", "</script>").to_owned(),
        }
    }

    pub fn endpoint(self) -> impl Endpoint + 'static {
        let Self { css, js } = self;
        Route::new()
            .at("/", make_sync(|_| Html(PAGE)))
            .at(
                "/swagger-ui.css",
                make_sync(move |_| asset(css.clone(), "text/css; charset=utf-8")),
            )
            .at(
                "/swagger-ui-bundle.js",
                make_sync(move |_| asset(js.clone(), "text/javascript; charset=utf-8")),
            )
            .at(
                "/init.js",
                make_sync(|_| asset(INIT_JS.to_owned(), "text/javascript; charset=utf-8")),
            )
    }
}

fn asset(body: String, content_type: &'static str) -> Response {
    body.with_header(header::CONTENT_TYPE, content_type)
        .with_header(header::CACHE_CONTROL, "public, max-age=3600")
        .into_response()
}
