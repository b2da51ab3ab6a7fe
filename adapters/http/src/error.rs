//! The one error shape of the API and its mapping to HTTP statuses.

use coffer_application::error::{CodedError, ErrorClass};
use coffer_application::{
    AdmissionError, AuthError, BackupError, CatalogError, CommonError, EngineError, JobsError,
    MaintenanceError, ReportError, RestoreError, RetentionError, SettingsError, SourceError,
    SubmitError, TokenError, UserError,
};
use coffer_application::{ImportError, NotifyTestError};
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

impl ApiError {
    /// An error of the application's, with its code, the status chosen for it, and the
    /// id of the job in the way when there is one.
    fn coded(status: StatusCode, e: &dyn CodedError) -> Self {
        let job_id = match e.class() {
            ErrorClass::JobRunning(id) => Some(id.to_string()),
            ErrorClass::Business | ErrorClass::Cancelled | ErrorClass::Unexpected(_) => None,
        };
        let mut err = Self::new(status, e.code(), e.to_string());
        if let (Self::Conflict(Json(body)), Some(id)) = (&mut err, job_id) {
            body.error.job_id = Some(id);
        }
        err
    }

    /// An error the API's own request checks found (not a use case's): `code` names it.
    #[must_use]
    pub fn request(refusal: RequestError, message: impl Into<String>) -> Self {
        match refusal {
            RequestError::TooManyDownloads => Self::TooManyRequests(
                Json(ErrorBody {
                    error: ErrorDetail {
                        code: "too_many_downloads".to_owned(),
                        message: message.into(),
                        job_id: None,
                    },
                }),
                Some(5),
            ),
        }
    }
}

/// Refusals the HTTP layer makes itself, before or around a use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// 429 `too_many_downloads`, retry after 5 s.
    TooManyDownloads,
}

// Every area's error, variant by variant, to a status. The code is the application's
// (`CodedError::code`), so the API and the job records say the same.

impl From<CommonError> for ApiError {
    fn from(e: CommonError) -> Self {
        let status = match &e {
            CommonError::Forbidden(_) => StatusCode::FORBIDDEN,
            CommonError::NotFound(_) => StatusCode::NOT_FOUND,
            CommonError::Conflict(_) => StatusCode::CONFLICT,
            CommonError::Unexpected(inner) => return Self::internal(&format!("{inner:#}")),
        };
        Self::coded(status, &e)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::Damaged(_) | EngineError::Cancelled | EngineError::RepositoryBusy(_) => {
                StatusCode::CONFLICT
            }
            EngineError::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            EngineError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::coded(status, &e)
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Common(c) => c.into(),
            SubmitError::JobRunning { .. }
            | SubmitError::QueueFull(_)
            | SubmitError::ShuttingDown => Self::coded(StatusCode::CONFLICT, &e),
            SubmitError::TooManyJobs(_) => Self::coded(StatusCode::TOO_MANY_REQUESTS, &e),
        }
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        match e {
            AdmissionError::Common(c) => c.into(),
            AdmissionError::QuotaExceeded(_) | AdmissionError::DiskFull(_) => {
                Self::coded(StatusCode::INSUFFICIENT_STORAGE, &e)
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Common(c) => c.into(),
            AuthError::Unauthenticated(_) => Self::coded(StatusCode::UNAUTHORIZED, &e),
            AuthError::Throttled { retry_after_secs } => Self::TooManyRequests(
                Json(ErrorBody {
                    error: ErrorDetail {
                        job_id: None,
                        code: e.code().to_owned(),
                        message: format!(
                            "too many failed logins; try again in {retry_after_secs} s"
                        ),
                    },
                }),
                Some(retry_after_secs),
            ),
            AuthError::SessionRequired(_) => Self::coded(StatusCode::BAD_REQUEST, &e),
            AuthError::NoAccount | AuthError::WrongPassword | AuthError::WeakPassword(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Common(c) => c.into(),
            TokenError::InvalidName(_)
            | TokenError::Grant(_)
            | TokenError::OwnerRequired
            | TokenError::OwnerInactive(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
            TokenError::SessionRequired => Self::coded(StatusCode::FORBIDDEN, &e),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Common(c) => c.into(),
            ImportError::Submit(s) => s.into(),
            ImportError::InvalidPath(_) | ImportError::Installation(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
            ImportError::SourceTaken(_) => Self::coded(StatusCode::CONFLICT, &e),
            ImportError::Engine(_) | ImportError::Cancelled => {
                Self::coded(StatusCode::SERVICE_UNAVAILABLE, &e)
            }
        }
    }
}

impl From<NotifyTestError> for ApiError {
    fn from(e: NotifyTestError) -> Self {
        match e {
            NotifyTestError::Common(c) => c.into(),
            // The server cannot do it as configured: the configuration or the SMTP
            // server's answer says why.
            NotifyTestError::NotConfigured | NotifyTestError::Failed(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Common(c) => c.into(),
            UserError::InvalidUsername(_) | UserError::WeakPassword(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
            UserError::UsernameTaken(_) | UserError::LastAdmin(_) => {
                Self::coded(StatusCode::CONFLICT, &e)
            }
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Common(c) => c.into(),
            SourceError::InvalidName(_)
            | SourceError::InvalidPath(_)
            | SourceError::InvalidSchedule(_)
            | SourceError::InvalidRetention(_)
            | SourceError::InvalidExclude(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
            SourceError::NameTaken(_) | SourceError::JobRunning { .. } => {
                Self::coded(StatusCode::CONFLICT, &e)
            }
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Common(c) => c.into(),
            CatalogError::Engine(x) => x.into(),
            CatalogError::Protected(_) => Self::coded(StatusCode::CONFLICT, &e),
        }
    }
}

impl From<RetentionError> for ApiError {
    fn from(e: RetentionError) -> Self {
        match e {
            RetentionError::Common(c) => c.into(),
            RetentionError::Engine(x) => x.into(),
            RetentionError::InvalidRetention(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
        }
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Common(c) => c.into(),
            BackupError::Engine(x) => x.into(),
            BackupError::Admission(a) => a.into(),
            BackupError::Submit(s) => s.into(),
            BackupError::InvalidPath(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    }
}

impl From<RestoreError> for ApiError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Common(c) => c.into(),
            RestoreError::Engine(x) => x.into(),
            RestoreError::Submit(s) => s.into(),
            RestoreError::TargetNotAllowed(_) | RestoreError::TargetNotEmpty(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
            RestoreError::DiskFull(_) => Self::coded(StatusCode::INSUFFICIENT_STORAGE, &e),
        }
    }
}

impl From<MaintenanceError> for ApiError {
    fn from(e: MaintenanceError) -> Self {
        match e {
            MaintenanceError::Common(c) => c.into(),
            MaintenanceError::Engine(x) => x.into(),
            MaintenanceError::Submit(s) => s.into(),
            MaintenanceError::InvalidShare(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    }
}

impl From<coffer_application::ReplicaError> for ApiError {
    fn from(e: coffer_application::ReplicaError) -> Self {
        use coffer_application::ReplicaError;
        match e {
            ReplicaError::Common(c) => c.into(),
            ReplicaError::Engine(x) => x.into(),
            ReplicaError::Submit(s) => s.into(),
            ReplicaError::InvalidName(_)
            | ReplicaError::InvalidPath(_)
            | ReplicaError::InvalidLocation(_)
            | ReplicaError::InvalidSchedule(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
            // `replica_unavailable` ends copy jobs only; no request answers with it.
            ReplicaError::NameTaken(_)
            | ReplicaError::FromConfig(_)
            | ReplicaError::Unavailable(_) => Self::coded(StatusCode::CONFLICT, &e),
        }
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::Common(c) => c.into(),
            JobsError::JobFinished(_) => Self::coded(StatusCode::CONFLICT, &e),
            JobsError::InvalidPeriod(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    }
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Common(c) => c.into(),
            ReportError::InvalidPeriod(_) => Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e),
        }
    }
}

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Common(c) => c.into(),
            SettingsError::InvalidQuota(_) | SettingsError::InvalidRetention(_) => {
                Self::coded(StatusCode::UNPROCESSABLE_ENTITY, &e)
            }
        }
    }
}

impl From<coffer_domain::auth::Forbidden> for ApiError {
    fn from(e: coffer_domain::auth::Forbidden) -> Self {
        CommonError::from(e).into()
    }
}
