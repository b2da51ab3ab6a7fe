//! The web dashboard: plain HTML, CSS and JavaScript modules from `adapters/http/web/`,
//! embedded in the binary at build time and served at `/` and under `/assets/`.
//!
//! Nothing here knows the API: the page talks to `/api` on its own. Assets are answered
//! with `Cache-Control: no-cache` and a strong `ETag` (a hash of the embedded bytes), so a
//! browser revalidates each time and gets a `304` until the binary changes.

use poem::http::header::{self, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::middleware::error_response;

/// One embedded file and the URL it is served at.
struct Asset {
    url: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: u64,
}

/// FNV-1a, 64 bits: enough to tell one build's bytes from another's for `ETag`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($url:literal, $file:literal, $content_type:expr) => {
        Asset {
            url: $url,
            content_type: $content_type,
            body: include_bytes!(concat!("../web/", $file)),
            etag: fnv1a(include_bytes!(concat!("../web/", $file))),
        }
    };
}

/// Every file of the dashboard. A test checks that each file the page or a module refers
/// to is in this table.
const ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/assets/app.css", "app.css", CSS),
    asset!("/assets/favicon.svg", "favicon.svg", SVG),
    asset!("/assets/js/main.js", "js/main.js", JS),
    asset!("/assets/js/api.js", "js/api.js", JS),
    asset!("/assets/js/dom.js", "js/dom.js", JS),
    asset!("/assets/js/format.js", "js/format.js", JS),
    asset!("/assets/js/jobs.js", "js/jobs.js", JS),
    asset!("/assets/js/charts.js", "js/charts.js", JS),
    asset!("/assets/js/pages/overview.js", "js/pages/overview.js", JS),
    asset!("/assets/js/pages/backups.js", "js/pages/backups.js", JS),
    asset!("/assets/js/pages/browse.js", "js/pages/browse.js", JS),
    asset!("/assets/js/pages/sources.js", "js/pages/sources.js", JS),
    asset!("/assets/js/pages/users.js", "js/pages/users.js", JS),
    asset!("/assets/js/pages/tokens.js", "js/pages/tokens.js", JS),
    asset!("/assets/js/pages/audit.js", "js/pages/audit.js", JS),
    asset!("/assets/js/pages/reports.js", "js/pages/reports.js", JS),
    asset!("/assets/js/pages/settings.js", "js/pages/settings.js", JS),
    asset!("/assets/js/pages/account.js", "js/pages/account.js", JS),
    asset!("/assets/js/pages/tasks.js", "js/pages/tasks.js", JS),
    asset!("/assets/js/pages/task.js", "js/pages/task.js", JS),
];

fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|a| a.url == path)
}

fn serve(req: &Request) -> Response {
    let path = req.uri().path();
    let Some(asset) = find(path) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route for {} {path}", req.method()),
        );
    };
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))
        .header(header::ETAG, etag);
    if fresh {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    let builder = builder.content_type(asset.content_type);
    if req.method() == Method::HEAD {
        builder
            .header(header::CONTENT_LENGTH, asset.body.len())
            .finish()
    } else {
        builder.body(asset.body)
    }
}

/// True for the paths the dashboard owns: `/`, `/index.html` and `/assets/...`.
fn is_dashboard_path(path: &str) -> bool {
    path == "/" || path == "/index.html" || path.starts_with("/assets/")
}

/// The dashboard in front of `inner` (the API's routes): its own paths are answered here,
/// every other request goes to `inner` untouched, so each `/api/...` path still reaches
/// the API or its JSON 404.
///
/// A wrapper rather than routes, because poem's router prefers the catch-all of the API
/// nested at `/` over an exact `/`.
pub struct Dashboard<E> {
    inner: E,
}

/// Puts the dashboard in front of `inner`.
pub const fn with_dashboard<E: Endpoint>(inner: E) -> Dashboard<E> {
    Dashboard { inner }
}

impl<E: Endpoint> Endpoint for Dashboard<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if !is_dashboard_path(req.uri().path()) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("{} is not allowed on {}", req.method(), req.uri().path()),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Ok(resp);
        }
        Ok(serve(&req))
    }
}

#[cfg(test)]
mod tests {
    //! The dashboard as the server answers it, through the real middleware and beside the
    //! real API routes, plus a scan of the embedded files for what the CSP (and good
    //! sense) forbids.

    use std::collections::BTreeSet;
    use std::path::Path;

    use poem::http::StatusCode;
    use poem::test::TestClient;
    use poem::{EndpointExt, Route};

    use super::{ASSETS, with_dashboard};

    fn client() -> TestClient<poem::endpoint::BoxEndpoint<'static, poem::Response>> {
        let routes = Route::new().nest("/", crate::api_service());
        TestClient::new(crate::middleware::wrap(with_dashboard(routes), 4096).boxed())
    }

    fn text(asset: &super::Asset) -> &'static str {
        std::str::from_utf8(asset.body).expect("dashboard files are UTF-8")
    }

    fn expected_type(url: &str) -> &'static str {
        match url.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/html; charset=utf-8",
        }
    }

    /// Resolves a module specifier (`./x.js`, `../y.js`, `/assets/z.js`) against the URL of
    /// the module that names it.
    fn resolve(base: &str, spec: &str) -> String {
        if spec.starts_with('/') {
            return spec.to_owned();
        }
        let mut parts: Vec<&str> = base.split('/').collect();
        parts.pop();
        for seg in spec.split('/') {
            match seg {
                "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        parts.join("/")
    }

    /// The quoted strings that follow `marker` in `src`.
    fn quoted_after<'a>(src: &'a str, marker: &str) -> Vec<&'a str> {
        let mut found = Vec::new();
        let mut rest = src;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let trimmed = rest.trim_start();
            let Some(quote) = trimmed.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
                continue;
            };
            let body = &trimmed[1..];
            if let Some(end) = body.find(quote) {
                found.push(&body[..end]);
            }
        }
        found
    }

    /// Every URL the page or a module refers to: `src=`/`href=` of the HTML, module
    /// imports, and `/assets/...` literals in scripts.
    fn references() -> BTreeSet<String> {
        let mut refs = BTreeSet::new();
        for asset in ASSETS {
            let src = text(asset);
            if asset.url == "/" {
                for marker in ["src=", "href="] {
                    for url in quoted_after(src, marker) {
                        if url.starts_with('/') {
                            refs.insert(url.to_owned());
                        }
                    }
                }
            } else if asset.content_type == super::JS {
                for marker in [" from ", "import("] {
                    for spec in quoted_after(src, marker) {
                        refs.insert(resolve(asset.url, spec));
                    }
                }
                for literal in quoted_after(src, "src: ") {
                    if literal.starts_with("/assets/") {
                        refs.insert(literal.to_owned());
                    }
                }
            }
        }
        refs
    }

    #[tokio::test]
    async fn the_page_is_served_with_the_strict_csp() {
        let resp = client().get("/").send().await;
        resp.assert_status_is_ok();
        resp.assert_content_type("text/html; charset=utf-8");
        let headers = resp.0.headers().clone();
        let csp = headers["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("style-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-frame-options"], "DENY");
        let html = resp.0.into_body().into_string().await.expect("html");
        assert!(html.contains(r#"<main id="page""#), "{html}");
        assert!(html.contains(r#"src="/assets/js/main.js""#));
    }

    #[tokio::test]
    async fn every_referenced_asset_is_served_with_its_content_type() {
        let client = client();
        let refs = references();
        assert!(refs.contains("/assets/app.css"), "{refs:?}");
        assert!(refs.contains("/assets/js/main.js"), "{refs:?}");
        assert!(refs.contains("/assets/js/pages/backups.js"), "{refs:?}");
        for url in &refs {
            let resp = client.get(url).send().await;
            assert_eq!(resp.0.status(), StatusCode::OK, "{url}");
            resp.assert_content_type(expected_type(url));
            assert_eq!(resp.0.headers()["cache-control"], "no-cache", "{url}");
            assert!(resp.0.headers().contains_key("etag"), "{url}");
        }
        // And nothing is embedded that nobody uses.
        for asset in ASSETS {
            assert!(
                asset.url == "/" || refs.contains(asset.url),
                "{} is embedded but never referenced",
                asset.url
            );
        }
    }

    #[test]
    fn every_file_of_the_dashboard_is_embedded() {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
            for entry in std::fs::read_dir(dir).expect("web dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let rel = path.strip_prefix(root).expect("under root");
                    out.insert(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut files = BTreeSet::new();
        walk(&root, &root, &mut files);
        files.remove("README.md");
        let embedded: BTreeSet<String> = ASSETS
            .iter()
            .map(|a| {
                if a.url == "/" {
                    "index.html".to_owned()
                } else {
                    a.url.trim_start_matches("/assets/").to_owned()
                }
            })
            .collect();
        assert_eq!(files, embedded, "add new files of web/ to ASSETS");
    }

    #[tokio::test]
    async fn revalidation_answers_304_and_head_has_no_body() {
        let client = client();
        let first = client.get("/assets/app.css").send().await;
        let etag = first.0.headers()["etag"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let again = client
            .get("/assets/app.css")
            .header("if-none-match", &etag)
            .send()
            .await;
        again.assert_status(StatusCode::NOT_MODIFIED);
        let head = client.head("/").send().await;
        head.assert_status_is_ok();
        let body = head.0.into_body().into_bytes().await.expect("body");
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_stay_json_404s() {
        let client = client();
        for path in [
            "/api/nothing-here",
            "/api/",
            "/api/assets/app.css",
            "/assets/nothing.js",
            "/assets/../Cargo.toml",
            "/elsewhere",
        ] {
            let resp = client.get(path).send().await;
            assert_eq!(resp.0.status(), StatusCode::NOT_FOUND, "{path}");
            resp.assert_content_type("application/json; charset=utf-8");
            let json = resp.json().await;
            json.value()
                .object()
                .get("error")
                .object()
                .get("code")
                .assert_string("not_found");
        }
        // The API's own routes are still reached beside the dashboard's.
        let resp = client.get("/api/me").send().await;
        resp.assert_status(StatusCode::UNAUTHORIZED);
        let resp = client.post("/").send().await;
        resp.assert_status(StatusCode::METHOD_NOT_ALLOWED);
    }

    /// Lines of `src` that contain `needle` (case-sensitive), for the failure message.
    fn lines_with<'a>(src: &'a str, needle: &str) -> Vec<&'a str> {
        src.lines().filter(|l| l.contains(needle)).collect()
    }

    /// `on<letters>=` followed by a quote: an inline event handler attribute.
    fn inline_handlers(src: &str) -> Vec<String> {
        let bytes = src.as_bytes();
        let mut found = Vec::new();
        for i in 0..bytes.len().saturating_sub(3) {
            let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
            let on =
                bytes[i].eq_ignore_ascii_case(&b'o') && bytes[i + 1].eq_ignore_ascii_case(&b'n');
            if !starts_word || !on {
                continue;
            }
            let mut j = i + 2;
            while j < bytes.len() && bytes[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == i + 2 {
                continue;
            }
            let mut k = j;
            while k < bytes.len() && bytes[k] == b' ' {
                k += 1;
            }
            if bytes.get(k) == Some(&b'=') {
                let mut q = k + 1;
                while q < bytes.len() && bytes[q] == b' ' {
                    q += 1;
                }
                if matches!(bytes.get(q), Some(b'"' | b'\'')) {
                    found.push(String::from_utf8_lossy(&bytes[i..=q]).into_owned());
                }
            }
        }
        found
    }

    #[test]
    fn the_files_hold_nothing_the_csp_or_xss_rules_forbid() {
        // Only the SVG namespace may name another host; it is an identifier, never fetched.
        const ALLOWED_URLS: &[&str] = &["http://www.w3.org/2000/svg"];
        const FORBIDDEN: &[&str] = &[
            "style=\"",
            "style='",
            "setAttribute(\"style\"",
            "setAttribute('style'",
            "cssText",
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "javascript:",
            "<style",
        ];
        for asset in ASSETS {
            let src = text(asset);
            let url = asset.url;
            for needle in FORBIDDEN {
                let hits = lines_with(src, needle);
                assert!(hits.is_empty(), "{url} contains {needle}: {hits:?}");
            }
            let handlers = inline_handlers(src);
            assert!(
                handlers.is_empty(),
                "{url} has inline handlers: {handlers:?}"
            );
            for scheme in ["http://", "https://"] {
                let mut rest = src;
                while let Some(i) = rest.find(scheme) {
                    let tail = &rest[i..];
                    assert!(
                        ALLOWED_URLS.iter().any(|ok| tail.starts_with(ok)),
                        "{url} names another host: {}",
                        tail.lines().next().unwrap_or_default()
                    );
                    rest = &rest[i + scheme.len()..];
                }
            }
            if url == "/" {
                // Every <script> loads a file; none carries code.
                for (i, _) in src.match_indices("<script") {
                    let tag = &src[i..src[i..].find('>').map_or(src.len(), |e| i + e)];
                    assert!(
                        tag.contains("src=\"/assets/"),
                        "inline script in {url}: {tag}"
                    );
                    assert!(
                        src[i..].starts_with(&format!("{tag}></script>")),
                        "script with a body in {url}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_scanner_catches_what_it_should() {
        assert_eq!(
            inline_handlers(r#"<a onclick="x()">"#),
            vec![r#"onclick=""#.to_owned()]
        );
        assert_eq!(inline_handlers("<a onClick = 'x()'>").len(), 1);
        assert!(inline_handlers("h(\"button\", { onclick: fn })").is_empty());
        assert!(inline_handlers("const done = \"x\"").is_empty());
        assert_eq!(
            resolve("/assets/js/pages/a.js", "../api.js"),
            "/assets/js/api.js"
        );
        assert_eq!(
            resolve("/assets/js/main.js", "./dom.js"),
            "/assets/js/dom.js"
        );
    }
}
