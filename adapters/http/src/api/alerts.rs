use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_domain::alerts::{Alert, AlertFilter, AlertKind, Severity};
use coffer_domain::{AlertId, SourceId};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SeverityDto {
    Info,
    Warning,
    Critical,
}

impl From<Severity> for SeverityDto {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => Self::Info,
            Severity::Warning => Self::Warning,
            Severity::Critical => Self::Critical,
        }
    }
}

impl From<SeverityDto> for Severity {
    fn from(s: SeverityDto) -> Self {
        match s {
            SeverityDto::Info => Self::Info,
            SeverityDto::Warning => Self::Warning,
            SeverityDto::Critical => Self::Critical,
        }
    }
}

/// What an alert is about. `quota_warning`, `quota_exceeded`, `disk_low` and
/// `key_not_exported` are conditions: one alert stands while the condition lasts, and
/// Coffer acknowledges it itself (as `system`) once it ends. The others are events, one
/// alert each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AlertKindDto {
    BackupFailed,
    BackupPartial,
    QuotaWarning,
    QuotaExceeded,
    DiskLow,
    Damage,
    KeyNotExported,
    PruneFailed,
    /// A backup found its source empty, or shrunk by more than
    /// `backup.suspicious_shrink_percent` (an unmounted share?): the snapshot is kept and
    /// replaces no older one.
    BackupSuspicious,
    /// A copy into a replica failed.
    ReplicaFailed,
    /// A replica is further behind than its lag limits allow.
    ReplicaLagging,
}

impl From<AlertKind> for AlertKindDto {
    fn from(k: AlertKind) -> Self {
        match k {
            AlertKind::BackupFailed => Self::BackupFailed,
            AlertKind::BackupPartial => Self::BackupPartial,
            AlertKind::QuotaWarning => Self::QuotaWarning,
            AlertKind::QuotaExceeded => Self::QuotaExceeded,
            AlertKind::DiskLow => Self::DiskLow,
            AlertKind::Damage => Self::Damage,
            AlertKind::KeyNotExported => Self::KeyNotExported,
            AlertKind::PruneFailed => Self::PruneFailed,
            AlertKind::BackupSuspicious => Self::BackupSuspicious,
            AlertKind::ReplicaFailed => Self::ReplicaFailed,
            AlertKind::ReplicaLagging => Self::ReplicaLagging,
        }
    }
}

/// An alert. It is active until acknowledged (`acknowledged_at` set).
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct AlertDto {
    pub id: i64,
    pub severity: SeverityDto,
    pub kind: AlertKindDto,
    pub message: String,
    /// The source it concerns (absent for server-wide alerts and once the source is
    /// deleted).
    pub source_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Not yet acknowledged.
    pub active: bool,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// A username, or `system` for a condition that ended.
    pub acknowledged_by: Option<String>,
}

impl From<Alert> for AlertDto {
    fn from(a: Alert) -> Self {
        Self {
            id: a.id.get(),
            severity: a.severity.into(),
            kind: a.kind.into(),
            active: a.is_active(),
            message: a.message,
            source_id: a.source_id.map(SourceId::get),
            created_at: a.created_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
        }
    }
}

/// A page of alerts, newest first.
#[derive(Debug, Object)]
pub struct AlertPage {
    pub items: Vec<AlertDto>,
    /// Alerts matching the filter, on every page.
    pub total: u64,
}

pub struct AlertsApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Alerts")]
impl AlertsApi {
    /// List alerts.
    ///
    /// Newest first. By default only active (unacknowledged) alerts; `active=false` lists
    /// acknowledged ones too. Filter by `severity`; `limit` (1–500, default 50) and
    /// `offset` page through them.
    ///
    /// Permission: `view`.
    #[oai(path = "/alerts", method = "get", operation_id = "listAlerts")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        active: Query<Option<bool>>,
        severity: Query<Option<SeverityDto>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))] limit: Query<Option<u64>>,
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))] offset: Query<
            Option<u64>,
        >,
    ) -> Result<Json<AlertPage>, ApiError> {
        let filter = AlertFilter {
            active_only: active.0.unwrap_or(true),
            severity: severity.0.map(Into::into),
            limit: limit.0.unwrap_or(50),
            offset: offset.0.unwrap_or(0),
        };
        let page = state.alerts.list(auth.actor(), filter).await?;
        Ok(Json(AlertPage {
            total: page.total,
            items: page.items.into_iter().map(Into::into).collect(),
        }))
    }

    /// Acknowledge an alert.
    ///
    /// The alert leaves the active list; who acknowledged it and when are kept, and the
    /// acknowledgement is audited (`alert_ack`). Acknowledging an acknowledged alert
    /// changes nothing. A condition that still holds is reported again at its next check.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/alerts/:id/ack",
        method = "post",
        operation_id = "acknowledgeAlert"
    )]
    async fn acknowledge(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
    ) -> Result<Json<AlertDto>, ApiError> {
        let alert = state
            .alerts
            .acknowledge(auth.actor(), AlertId::new(id.0))
            .await?;
        Ok(Json(alert.into()))
    }

    /// Send a test email.
    ///
    /// Sends a test message through `[notify.email]` now (no interval applies), so that
    /// an administrator sees alerts reach people before one is needed; audited. 422
    /// `email_not_configured` without `[notify.email]`; 422 `notify_failed` with the SMTP
    /// server's answer when it refused or could not be reached.
    ///
    /// Permission: `manage_system`.
    #[oai(path = "/notify/test", method = "post", operation_id = "sendTestEmail")]
    async fn send_test(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<TestEmailDto>, ApiError> {
        let sent_to = state.alerts.send_test(auth.actor()).await?;
        Ok(Json(TestEmailDto { sent_to }))
    }
}

/// Where a test email went.
#[derive(Debug, Object)]
pub struct TestEmailDto {
    /// The recipients and the SMTP server (`ops@example.com through smtp.example.com:587`).
    pub sent_to: String,
}
