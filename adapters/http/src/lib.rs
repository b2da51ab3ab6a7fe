//! `coffer-http`: Coffer's HTTP surface. poem + poem-openapi serve the JSON API under
//! `/api`, its OpenAPI 3 document at `/openapi.json` and Swagger UI at `/swagger`.
//!
//! Handlers parse, call an application service, and map the result; they decide nothing.
//! Every failure, including those poem and poem-openapi produce themselves (unknown route,
//! malformed JSON, wrong content type, body too large, panics), leaves as the one JSON
//! error shape `{"error":{"code","message"}}`, and every response carries the security
//! headers.
//!
//! This crate knows the application layer and the domain, never a database or a store.

mod allow;
mod api;
pub mod auth;
pub mod downloads;
mod error;
pub mod metrics;
mod middleware;
mod server;
mod swagger;
mod web;

use std::sync::Arc;

use coffer_application::{
    AlertService, AuditService, AuthService, BackupService, CatalogService, DashboardService,
    JobService, MaintenanceService, ReportService, RestoreService, RetentionService,
    SettingsService, SourceService, StorageService, SystemService, UserService,
};
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

pub use error::{ApiError, ErrorBody, ErrorDetail, RequestError};
pub use server::{HttpServer, ServeError};

/// The API's schemas, for the CLI's `--json` output: the CLI and the API are two faces
/// of the same use cases and name things alike (`file_count`, `size`, `source_name`,
/// `parent_id`, ...). The CLI's JSON is as stable as the API.
pub mod schema {
    pub use crate::api::backups::{BackupDto, BackupPage, EntryDto, TreePage};
    pub use crate::api::dto::{TokenDto, UserDto};
    pub use crate::api::jobs::{JobDto, JobLogLineDto, JobResultDto};
    pub use crate::api::maintenance::StorageDto;
    pub use crate::api::replicas::ReplicaDto;
    pub use crate::api::sources::{RetentionReportDto, SourceDto};

    /// `value` as the API writes it.
    pub fn to_json<T: poem_openapi::types::ToJSON>(value: &T) -> serde_json::Value {
        value.to_json().unwrap_or_default()
    }
}

/// The services the API drives, shared by every request.
pub struct AppState {
    pub system: Arc<SystemService>,
    pub auth: Arc<AuthService>,
    pub users: Arc<UserService>,
    /// Personal access tokens.
    pub tokens: Arc<coffer_application::TokenService>,
    pub audit: Arc<AuditService>,
    pub sources: Arc<SourceService>,
    /// Snapshots: list, find, browse, download, protect, delete.
    pub catalog: Arc<CatalogService>,
    pub backups: Arc<BackupService>,
    /// Restores and verification.
    pub restores: Arc<RestoreService>,
    pub retention: Arc<RetentionService>,
    pub jobs: Arc<JobService>,
    /// Prune and check.
    pub maintenance: Arc<MaintenanceService>,
    pub alerts: Arc<AlertService>,
    /// Storage use and the quota.
    pub storage: Arc<StorageService>,
    /// The overview's figures.
    pub dashboard: Arc<DashboardService>,
    /// The quota and retention defaults set at run time.
    pub settings: Arc<SettingsService>,
    /// CSV and PDF exports.
    pub reports: Arc<ReportService>,
    /// Off-site copies.
    pub replicas: Arc<coffer_application::ReplicaService>,
    /// Importing the Python prototype's installations.
    pub import: Arc<coffer_application::ImportService>,
    /// Who may scrape `/metrics`.
    pub metrics: metrics::MetricsAccess,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: auth::TrustedProxies,
    /// Mark the session cookie `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
    /// Downloads streaming at once, in all and per user.
    pub downloads: Arc<downloads::DownloadLimits>,
}

/// Limits the HTTP layer enforces.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Every API group, composed in one place.
type Apis = (
    api::system::SystemApi,
    api::auth::AuthApi,
    api::users::UsersApi,
    api::tokens::TokensApi,
    api::audit::AuditApi,
    api::sources::SourcesApi,
    api::backups::BackupsApi,
    api::jobs::JobsApi,
    api::alerts::AlertsApi,
    api::maintenance::MaintenanceApi,
    api::dashboard::DashboardApi,
    api::charts::ChartsApi,
    api::settings::SettingsApi,
    api::reports::ReportsApi,
    api::replicas::ReplicasApi,
    api::import::ImportApi,
);

fn api_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            api::system::SystemApi,
            api::auth::AuthApi,
            api::users::UsersApi,
            api::tokens::TokensApi,
            api::audit::AuditApi,
            api::sources::SourcesApi,
            api::backups::BackupsApi,
            api::jobs::JobsApi,
            api::alerts::AlertsApi,
            api::maintenance::MaintenanceApi,
            api::dashboard::DashboardApi,
            api::charts::ChartsApi,
            api::settings::SettingsApi,
            api::reports::ReportsApi,
            api::replicas::ReplicasApi,
            api::import::ImportApi,
        ),
        "Coffer",
        env!("CARGO_PKG_VERSION"),
    )
    .summary("Self-hosted, offline backup server")
    .description(
        "Encrypted, deduplicated, verifiable snapshots of directories. Every error answers \
         with the JSON body `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`; `code` \
         is stable and meant for programs, `message` for people.",
    )
}

/// The OpenAPI document, as served at `/openapi.json` and committed as
/// `openapi/openapi.json`.
#[must_use]
pub fn openapi_json() -> String {
    api_service().spec()
}

/// The whole HTTP application.
pub fn app(state: Arc<AppState>, options: &HttpOptions) -> impl Endpoint + 'static {
    let api = api_service();
    let spec = api.spec_endpoint();
    let swagger = swagger::SwaggerUi::new();
    let routes = Route::new()
        .at("/openapi.json", spec)
        .at("/metrics", poem::get(metrics::metrics))
        .nest("/swagger", swagger.endpoint())
        .nest("/", api)
        .data(state);
    let allow = allow::AllowTable::new(<Apis as poem_openapi::OpenApi>::meta());
    allow::with_allow(
        middleware::wrap(web::with_dashboard(routes), options.max_body_bytes),
        allow,
    )
}

#[cfg(test)]
mod tests;
