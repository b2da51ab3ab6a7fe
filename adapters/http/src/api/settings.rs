//! Settings an administrator changes while the server runs: the quota and the default
//! retention rules (stored in the database, winning over the configuration file until
//! reset), and the master key's export reminder.

use std::sync::Arc;

use coffer_application::{Origin, QuotaMib, RetentionStatus, SettingsChange, SystemSettings};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use super::dto::NullableRef;
use super::sources::RetentionDto;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// Where a setting's value comes from.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename_all = "snake_case")]
pub enum OriginDto {
    /// The configuration file (or its default, or the environment).
    File,
    /// Set by an administrator from the dashboard or the API; stored in the database.
    Dashboard,
}

impl From<Origin> for OriginDto {
    fn from(o: Origin) -> Self {
        match o {
            Origin::File => Self::File,
            Origin::Dashboard => Self::Dashboard,
        }
    }
}

/// The storage quota, in MiB after dedup and compression; 0 turns a limit off.
#[derive(Debug, Clone, Copy, Object)]
pub struct QuotaSettingDto {
    /// New backups are refused (507 `quota_exceeded`) once storage use reaches it.
    #[oai(validator(minimum(value = "0"), maximum(value = "1099511627776")))]
    pub max_storage_mb: u64,
    /// A warning alert is raised once storage use passes it; not above the quota.
    #[oai(validator(minimum(value = "0"), maximum(value = "1099511627776")))]
    pub warning_threshold_mb: u64,
}

impl From<QuotaMib> for QuotaSettingDto {
    fn from(q: QuotaMib) -> Self {
        Self {
            max_storage_mb: q.max_storage_mb,
            warning_threshold_mb: q.warning_threshold_mb,
        }
    }
}

impl From<QuotaSettingDto> for QuotaMib {
    fn from(q: QuotaSettingDto) -> Self {
        Self {
            max_storage_mb: q.max_storage_mb,
            warning_threshold_mb: q.warning_threshold_mb,
        }
    }
}

/// The quota in force and where it comes from.
#[derive(Debug, Object)]
pub struct QuotaSettingsDto {
    pub max_storage_mb: u64,
    pub warning_threshold_mb: u64,
    pub from: OriginDto,
}

/// Retention for sources without their own rules.
#[derive(Debug, Clone, Copy, Object)]
pub struct RetentionSettingDto {
    /// Apply retention to a source after each of its successful backups.
    pub enabled: bool,
    pub rules: RetentionDto,
}

impl From<RetentionSettingDto> for RetentionStatus {
    fn from(r: RetentionSettingDto) -> Self {
        Self {
            enabled: r.enabled,
            defaults: r.rules.into(),
        }
    }
}

/// The retention defaults in force and where they come from.
#[derive(Debug, Object)]
pub struct RetentionSettingsDto {
    pub enabled: bool,
    pub rules: RetentionDto,
    pub from: OriginDto,
}

/// The master key's export state: losing the key loses every backup.
#[derive(Debug, Object)]
pub struct KeySettingsDto {
    /// Whether the current master key has been exported since it was made.
    pub exported: bool,
    /// The command that exports it, run on the server by an administrator.
    pub export_command: String,
}

/// The settings in force.
#[derive(Debug, Object)]
pub struct SettingsDto {
    pub quota: QuotaSettingsDto,
    pub retention: RetentionSettingsDto,
    pub key: KeySettingsDto,
}

impl From<SystemSettings> for SettingsDto {
    fn from(s: SystemSettings) -> Self {
        Self {
            quota: QuotaSettingsDto {
                max_storage_mb: s.quota.max_storage_mb,
                warning_threshold_mb: s.quota.warning_threshold_mb,
                from: s.quota_from.into(),
            },
            retention: RetentionSettingsDto {
                enabled: s.retention.enabled,
                rules: s.retention.defaults.into(),
                from: s.retention_from.into(),
            },
            key: KeySettingsDto {
                exported: s.key_exported,
                export_command: "coffer key export --output FILE".to_owned(),
            },
        }
    }
}

/// Settings to change: an absent field stays as it is; `null` goes back to the
/// configuration file's value.
#[derive(Debug, Object)]
pub struct UpdateSettingsRequest {
    pub quota: NullableRef<QuotaSettingDto>,
    pub retention: NullableRef<RetentionSettingDto>,
}

pub struct SettingsApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Settings")]
impl SettingsApi {
    /// The settings in force.
    ///
    /// The quota and the retention defaults, each with where its value comes from
    /// (`file`: the configuration; `dashboard`: set here, stored in the database), and
    /// whether the master key has been exported.
    ///
    /// Permission: `manage_system`.
    #[oai(path = "/settings", method = "get", operation_id = "getSettings")]
    async fn get_settings(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<SettingsDto>, ApiError> {
        Ok(Json(state.settings.get(auth.actor()).await?.into()))
    }

    /// Change settings.
    ///
    /// In force when the response is sent, kept across restarts, and audited with the
    /// old and new values. A new quota applies to running backups from their next chunk
    /// on; new retention defaults apply from the next backup or preview. `null` goes back
    /// to the configuration file's value. 422 `invalid_quota` when the warning threshold
    /// is above the quota.
    ///
    /// Permission: `manage_system`.
    #[oai(path = "/settings", method = "patch", operation_id = "updateSettings")]
    async fn update_settings(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<UpdateSettingsRequest>,
    ) -> Result<Json<SettingsDto>, ApiError> {
        let body = body.0;
        let change = SettingsChange {
            quota: optional(body.quota.0),
            retention: optional(body.retention.0),
        };
        Ok(Json(
            state.settings.update(auth.actor(), change).await?.into(),
        ))
    }
}

/// `Some(None)` resets a setting, `None` leaves it.
#[allow(clippy::option_option)]
fn optional<T, U: From<T>>(v: poem_openapi::types::MaybeUndefined<T>) -> Option<Option<U>> {
    match v {
        poem_openapi::types::MaybeUndefined::Undefined => None,
        poem_openapi::types::MaybeUndefined::Null => Some(None),
        poem_openapi::types::MaybeUndefined::Value(v) => Some(Some(v.into())),
    }
}
