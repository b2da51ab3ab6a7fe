use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_domain::audit::AuditFilter;
use poem::web::Data;
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;

use super::ApiTags;
use super::dto::{AuditPage, AuditRowDto};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

pub struct AuditApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Audit")]
impl AuditApi {
    /// Read the audit trail.
    ///
    /// Newest first, filtered by user, action, outcome and time range (`from` inclusive,
    /// `to` exclusive, RFC 3339). Page with `before` = the previous page's `next_before`.
    ///
    /// Permission: `audit`.
    #[oai(path = "/audit", method = "get", operation_id = "listAudit")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        username: Query<Option<String>>,
        action: Query<Option<String>>,
        success: Query<Option<bool>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        before: Query<Option<i64>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u32>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        let limit = limit.0.unwrap_or(50);
        let filter = AuditFilter {
            username: username.0,
            action: action.0,
            success: success.0,
            from: from.0,
            to: to.0,
            before_id: before.0,
        };
        let rows = state.audit.list(auth.actor(), &filter, limit).await?;
        let next_before = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        Ok(Json(AuditPage {
            items: rows.into_iter().map(AuditRowDto::from).collect(),
            next_before,
        }))
    }
}
