//! The layer every request passes through: body-size limit, uniform JSON errors,
//! security headers, request logging.

use std::sync::Arc;
use std::time::Instant;

use poem::http::header::{self, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Body, Endpoint, EndpointExt, IntoResponse, Request, Response};

use crate::error::{ErrorBody, ErrorDetail, default_code};

/// Strict by default: no inline script, nothing from elsewhere, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

/// The JSON error response used for every failure the handlers did not shape themselves.
#[must_use]
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
            job_id: None,
        },
    };
    let json = poem_openapi::types::ToJSON::to_json_string(&body);
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Reads the body of a request that announced no length, refusing it past `limit`.
async fn limit_unsized_body(req: &mut Request, limit: usize) -> Result<(), Response> {
    let body = req.take_body();
    match body.into_bytes_limit(limit).await {
        Ok(bytes) => {
            req.set_body(Body::from_bytes(bytes));
            Ok(())
        }
        Err(poem::error::ReadBodyError::PayloadTooLarge) => Err(too_large(limit)),
        Err(e) => Err(error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("cannot read the request body: {e}"),
        )),
    }
}

fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("the request body is larger than {limit} bytes"),
    )
}

/// Marks a `HEAD` request. poem answers `HEAD` with the `GET` handler and drops the body,
/// but the handler sees `GET`: one whose work has side effects (a download's export and
/// audit row) looks for this mark and answers with the headers alone.
#[derive(Debug, Clone, Copy)]
pub struct HeadOnly;

/// Whether `req` is a `HEAD` (see [`HeadOnly`]).
#[must_use]
pub fn is_head(req: &Request) -> bool {
    req.extensions().get::<HeadOnly>().is_some()
}

/// Wraps the whole application: panics become 500s, then every response passes through
/// [`handle`].
pub fn wrap<E: Endpoint + 'static>(
    ep: E,
    max_body_bytes: usize,
) -> impl Endpoint<Output = Response> + 'static {
    ep.with(poem::middleware::CatchPanic::new())
        .around(layer(max_body_bytes))
}

/// The middleware, as a closure for `EndpointExt::around`.
fn layer<E: Endpoint + 'static>(
    max_body_bytes: usize,
) -> impl Fn(Arc<E>, Request) -> std::pin::Pin<Box<dyn Future<Output = poem::Result<Response>> + Send>>
+ Send
+ Sync
+ 'static {
    move |ep: Arc<E>, req: Request| Box::pin(handle(ep, req, max_body_bytes))
}

async fn handle<E: Endpoint>(ep: Arc<E>, mut req: Request, limit: usize) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let early = match declared {
        Some(n) if n > limit as u64 => Some(too_large(limit)),
        Some(_) => None,
        // No declared length (chunked, HTTP/2): count while reading.
        None => limit_unsized_body(&mut req, limit).await.err(),
    };

    let auth_failure = crate::auth::AuthFailure::default();
    req.extensions_mut().insert(auth_failure.clone());
    if method == Method::HEAD {
        req.extensions_mut().insert(HeadOnly);
    }
    let mut resp = match early {
        Some(resp) => resp,
        None => ep.get_response(req).await,
    };
    // A credential that could not be checked is not a bad credential: answer with why.
    if resp.status() == StatusCode::UNAUTHORIZED
        && let Some(failed) = auth_failure.take()
    {
        resp = failed;
    }

    let status = resp.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json(&resp) {
        resp = to_json_error(resp, &method, &path).await;
    }

    secure(&mut resp, &path);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if resp.status().is_server_error() {
        tracing::warn!(%method, path, status = resp.status().as_u16(), elapsed_ms, "request");
    } else {
        tracing::debug!(%method, path, status = resp.status().as_u16(), elapsed_ms, "request");
    }
    Ok(resp)
}

/// Rewrites a plain-text (or empty) error from poem or poem-openapi into the JSON shape.
/// Client errors keep their message, which describes the request; server errors never
/// expose theirs.
async fn to_json_error(mut resp: Response, method: &Method, path: &str) -> Response {
    let status = resp.status();
    let text = resp.take_body().into_string().await.unwrap_or_default();
    let message = if status.is_server_error() {
        if !text.is_empty() {
            tracing::error!(%method, path, status = status.as_u16(), error = %text, "request failed");
        }
        "internal server error; the details are in the server log".to_owned()
    } else if status == StatusCode::NOT_FOUND {
        format!("no route for {method} {path}")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("{method} is not allowed on {path}")
    } else if text.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_owned()
    } else {
        text.trim().to_owned()
    };
    let mut json = error_response(status, default_code(status), &message);
    // Keep headers such as Retry-After or WWW-Authenticate that the error carried.
    for (name, value) in resp.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json.into_response()
}

fn secure(resp: &mut Response, path: &str) {
    let headers = resp.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    if !headers.contains_key(header::CACHE_CONTROL) || path.starts_with("/api") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
