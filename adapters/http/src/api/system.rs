use std::sync::Arc;

use coffer_application::{ComponentHealth, HealthReport};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};

use super::ApiTags;
use crate::AppState;
use crate::error::{ApiError, ErrorDetail};

pub struct SystemApi;

/// Whether a dependency answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum ComponentStatus {
    Ok,
    Unreachable,
}

/// Overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum OverallStatus {
    Ok,
    Unavailable,
}

/// The server's health, for monitors and load balancers: `status` is `ok` when every
/// dependency answers and `unavailable` otherwise (HTTP 503); `database` and `storage`
/// tell whether the catalog database and the repository storage answer; `error`, in the
/// API's usual error shape, is present when `status` is `unavailable`.
//
// The fields whose types are schemas of their own carry no doc comment: poem-openapi
// would write them as `allOf: [$ref, {description}]`, which openapi-python-client refuses
// for an enum ("Cannot take allOf a non-object", dropping `Health` from the client) and
// turns into a copy of the type for an object.
#[derive(Debug, Clone, Object)]
pub struct Health {
    pub status: OverallStatus,
    /// Coffer's version.
    pub version: String,
    pub database: ComponentStatus,
    pub storage: ComponentStatus,
    #[oai(skip_serializing_if_is_none)]
    pub error: Option<ErrorDetail>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The database or the storage does not answer.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

const fn component(health: &ComponentHealth) -> ComponentStatus {
    match health {
        ComponentHealth::Ok => ComponentStatus::Ok,
        ComponentHealth::Unreachable => ComponentStatus::Unreachable,
    }
}

fn to_response(report: &HealthReport) -> HealthResponse {
    let mut health = Health {
        status: OverallStatus::Ok,
        version: report.version.to_owned(),
        database: component(&report.database),
        storage: component(&report.storage),
        error: None,
    };
    if report.is_healthy() {
        return HealthResponse::Ok(Json(health));
    }
    let down: Vec<&str> = [
        (!report.database.is_ok()).then_some("database"),
        (!report.storage.is_ok()).then_some("storage"),
    ]
    .into_iter()
    .flatten()
    .collect();
    health.status = OverallStatus::Unavailable;
    health.error = Some(ErrorDetail {
        code: "unavailable".to_owned(),
        message: format!("unreachable: {}", down.join(", ")),
        job_id: None,
    });
    HealthResponse::Unavailable(Json(health))
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::System")]
impl SystemApi {
    /// Health of the server and its dependencies.
    ///
    /// Public (no credentials): answers 200 when the database and the storage both
    /// answer, 503 otherwise. Reveals only ok/unreachable, never paths or addresses.
    ///
    /// Permission: none (public).
    #[oai(path = "/health", method = "get", operation_id = "getHealth")]
    async fn health(&self, state: Data<&Arc<AppState>>) -> Result<HealthResponse, ApiError> {
        Ok(to_response(&state.system.health().await))
    }
}
