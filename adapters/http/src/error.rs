//! The one error shape of the API and its mapping to HTTP statuses.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// What went wrong, for programs (`code`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ErrorDetail {
    /// Stable, machine-readable error code (`not_found`, `quota_exceeded`, ...).
    pub code: String,
    /// Human-readable explanation. Never contains internal details.
    pub message: String,
    /// With `job_running`: the job already doing the work.
    #[oai(skip_serializing_if_is_none)]
    pub job_id: Option<String>,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Object)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Every failure an operation can answer with, declared on every operation so that
/// generated clients and schema-driven testers meet no undocumented response.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// The request is malformed (bad JSON, missing or invalid parameter).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The caller's role lacks the permission.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The resource or route does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The route exists, but not for this method.
    #[oai(status = 405)]
    MethodNotAllowed(Json<ErrorBody>),
    /// The request conflicts with the current state (name taken, job already running).
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The request body is larger than the server accepts.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The request body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The request is well-formed but fails validation.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many requests (login throttling); retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before trying again.
        #[oai(header = "Retry-After")]
        Option<u64>,
    ),
    /// An unexpected failure; the detail is in the server's log.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The storage quota or the disk is full.
    #[oai(status = 507)]
    InsufficientStorage(Json<ErrorBody>),
}

/// The stable code for a status when nothing more specific is known.
#[must_use]
pub fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "too_many_requests",
        503 => "unavailable",
        507 => "insufficient_storage",
        _ if status.is_client_error() => "bad_request",
        _ => "internal",
    }
}

impl ApiError {
    /// An error with the given status and code. Statuses outside the declared set become
    /// 500, so nothing undocumented ever leaves.
    #[must_use]
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                job_id: None,
            },
        });
        match status.as_u16() {
            400 => Self::BadRequest(body),
            401 => Self::Unauthorized(body),
            403 => Self::Forbidden(body),
            404 => Self::NotFound(body),
            405 => Self::MethodNotAllowed(body),
            409 => Self::Conflict(body),
            413 => Self::PayloadTooLarge(body),
            415 => Self::UnsupportedMediaType(body),
            422 => Self::Unprocessable(body),
            429 => Self::TooManyRequests(body, None),
            507 => Self::InsufficientStorage(body),
            _ => Self::Internal(body),
        }
    }

    /// A 500 whose body says nothing internal; `detail` goes to the log only.
    #[must_use]
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal server error; the details are in the server log",
        )
    }
}

impl From<coffer_application::ServiceError> for ApiError {
    fn from(err: coffer_application::ServiceError) -> Self {
        use coffer_application::ServiceError as E;
        match err {
            E::Unauthenticated(message) => {
                Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            E::Forbidden(f) => Self::new(StatusCode::FORBIDDEN, "forbidden", f.to_string()),
            E::NotFound(message) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            E::JobRunning { job_id, message } => Self::Conflict(Json(ErrorBody {
                error: ErrorDetail {
                    code: "job_running".to_owned(),
                    message,
                    job_id: Some(job_id.to_string()),
                },
            })),
            E::Invalid { code, message } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            E::Throttled { retry_after_secs } => Self::TooManyRequests(
                Json(ErrorBody {
                    error: ErrorDetail {
                        job_id: None,
                        code: "too_many_attempts".to_owned(),
                        message: format!(
                            "too many failed logins; try again in {retry_after_secs} s"
                        ),
                    },
                }),
                Some(retry_after_secs),
            ),
            E::InsufficientStorage { code, message } => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, code, message)
            }
            E::Unexpected(e) => Self::internal(&format!("{e:#}")),
        }
    }
}
