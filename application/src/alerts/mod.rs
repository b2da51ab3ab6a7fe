//! Alerts: raising them (de-duplicating conditions), clearing conditions that ended,
//! listing and acknowledging them. Each new alert is logged and handed to the notifier in
//! the background, so that a slow or dead webhook never holds up the work that raised it.

use std::sync::Arc;

use coffer_domain::AlertId;
use coffer_domain::SourceId;
use coffer_domain::alerts::{
    Alert, AlertFilter, AlertKind, AlertNotifier, AlertRepository, NewAlert, NotifyTest, Severity,
    SeverityCounts,
};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::ports::{Clock, Page, Spawner};

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};

/// Why a test notification was not sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyTestError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `email_not_configured`.
    #[error("no email is configured: set [notify.email] (host, from, to) and restart")]
    NotConfigured,
    /// `notify_failed`: the SMTP server refused or could not be reached.
    #[error("{0}")]
    Failed(String),
}

impl CodedError for NotifyTestError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::NotConfigured => "email_not_configured",
            Self::Failed(_) => "notify_failed",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::NotConfigured | Self::Failed(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(NotifyTestError);

/// Raising and clearing alerts: what the areas that detect trouble (backup, storage,
/// disk, maintenance, keys) hold. [`AlertService`] implements it.
#[async_trait::async_trait]
pub trait AlertSink: Send + Sync {
    /// Raises an alert (see [`AlertService::raise`]); `None` when the condition was
    /// already reported.
    async fn raise(&self, alert: NewAlert) -> Result<Option<Alert>, CommonError>;

    /// The condition `kind` (of `source_id`, or server-wide) no longer holds.
    async fn clear(&self, kind: AlertKind, source_id: Option<SourceId>)
    -> Result<u64, CommonError>;

    /// As [`AlertSink::raise`], logging a failure instead of returning it: an alert that
    /// cannot be stored must not fail the work that raised it.
    async fn raise_best_effort(&self, alert: NewAlert) {
        let kind = alert.kind;
        if let Err(e) = self.raise(alert).await {
            tracing::error!(error = %e, kind = %kind, "cannot store an alert");
        }
    }
}

/// Largest page of the alert listing.
pub const MAX_ALERT_PAGE: u64 = 500;

/// Who acknowledges a condition that no longer holds.
pub const SYSTEM_ACTOR: &str = "system";

pub struct AlertService {
    repo: Arc<dyn AlertRepository>,
    notifier: Option<Arc<dyn AlertNotifier>>,
    /// Where `send_test` goes (the email), when configured.
    tester: Option<Arc<dyn NotifyTest>>,
    spawner: Arc<dyn Spawner>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

impl AlertService {
    /// `notifier` is `None` when no webhook is configured: alerts are then stored and
    /// logged only.
    #[must_use]
    pub fn new(
        repo: Arc<dyn AlertRepository>,
        notifier: Option<Arc<dyn AlertNotifier>>,
        spawner: Arc<dyn Spawner>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            repo,
            notifier,
            tester: None,
            spawner,
            clock,
            audit,
        }
    }

    /// With a channel that `send_test` tries (the email).
    #[must_use]
    pub fn with_test_channel(mut self, tester: Arc<dyn NotifyTest>) -> Self {
        self.tester = Some(tester);
        self
    }

    /// Sends a test email now ("send a test email" in the dashboard, `coffer notify
    /// test`), audited either way. Returns where it went.
    ///
    /// # Errors
    /// `forbidden` without `manage_system`; `email_not_configured`; `notify_failed` with
    /// the server's answer.
    pub async fn send_test(&self, actor: &Actor) -> Result<String, NotifyTestError> {
        actor.require(Permission::ManageSystem)?;
        let entry = AuditEntry::new(&actor.username, AuditAction::NotifyTest, &actor.client)
            .resource("notify:email");
        let Some(tester) = &self.tester else {
            self.audit
                .record_best_effort(entry.failed().detail("no email is configured"))
                .await;
            return Err(NotifyTestError::NotConfigured);
        };
        match tester.send_test(&actor.username).await {
            Ok(to) => {
                self.audit
                    .record(entry.detail(format!("test email sent to {to}")))
                    .await?;
                Ok(to)
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(e.to_string()))
                    .await;
                Err(NotifyTestError::Failed(e.to_string()))
            }
        }
    }

    /// Raises an alert. An event kind always makes a new alert. A condition kind makes
    /// one only when no alert of that kind and source is open — unless the open one is
    /// less severe, which is then acknowledged by `system` and replaced (an escalation,
    /// a disk going from low to below the reserve, is news; the same state again is
    /// not). Returns the new alert, or `None` when the condition was already reported.
    /// The check and the insert are one step in the database
    /// ([`AlertRepository::raise_condition`]), so server instances that see the same
    /// condition at once (a low disk, a key never exported, at start-up) open one alert
    /// and send one notification.
    ///
    /// Callers on a backup's path should log a failure here and carry on: an alert that
    /// cannot be stored must not fail the backup. [`AlertSink::raise_best_effort`] does
    /// that.
    ///
    /// # Errors
    /// Database failures.
    pub async fn raise(&self, alert: NewAlert) -> Result<Option<Alert>, CommonError> {
        let stored = if alert.kind.is_condition() {
            let Some(stored) = self
                .repo
                .raise_condition(&alert, SYSTEM_ACTOR, self.clock.now())
                .await?
            else {
                return Ok(None);
            };
            stored
        } else {
            self.repo.insert(&alert, self.clock.now()).await?
        };
        log_new(&stored);
        if let Some(notifier) = &self.notifier {
            let notifier = Arc::clone(notifier);
            let sent = stored.clone();
            self.spawner.spawn(Box::pin(async move {
                // The notifier logs its own final failure (naming the host only).
                if notifier.notify(&sent).await.is_ok() {
                    tracing::debug!(alert = %sent.id, "alert sent to the webhook");
                }
            }));
        }
        Ok(Some(stored))
    }

    /// The condition `kind` (of `source_id`, or server-wide) no longer holds: its open
    /// alerts are acknowledged by `system`. Returns how many.
    ///
    /// # Errors
    /// Database failures.
    pub async fn clear(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
    ) -> Result<u64, CommonError> {
        let cleared = self
            .repo
            .acknowledge_open(kind, source_id, SYSTEM_ACTOR, self.clock.now())
            .await?;
        if cleared > 0 {
            tracing::info!(kind = %kind, source_id = source_id.map(SourceId::get), "condition cleared");
        }
        Ok(cleared)
    }

    /// Alerts, newest first; `limit` is capped at 500 (0 means the default, 50).
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn list(
        &self,
        actor: &Actor,
        mut filter: AlertFilter,
    ) -> Result<Page<Alert>, CommonError> {
        actor.require(Permission::View)?;
        filter.limit = match filter.limit {
            0 => AlertFilter::default().limit,
            n => n.min(MAX_ALERT_PAGE),
        };
        Ok(self.repo.list(&filter).await?)
    }

    /// Active alerts per severity (dashboard, metrics).
    ///
    /// # Errors
    /// `Forbidden` without `view`.
    pub async fn active_counts(&self, actor: &Actor) -> Result<SeverityCounts, CommonError> {
        actor.require(Permission::View)?;
        Ok(self.repo.count_active_by_severity().await?)
    }

    /// Acknowledges an alert: it leaves the active list. Acknowledging it again changes
    /// nothing (the first acknowledgement stands). Audited.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`.
    pub async fn acknowledge(&self, actor: &Actor, id: AlertId) -> Result<Alert, CommonError> {
        actor.require(Permission::ManageSystem)?;
        let not_found = || CommonError::NotFound(format!("no alert with id {id}"));
        let current = self.repo.get(id).await?.ok_or_else(not_found)?;
        let (alert, detail) = if current.is_active() {
            let alert = self
                .repo
                .acknowledge(id, &actor.username, self.clock.now())
                .await?
                .ok_or_else(not_found)?;
            let detail = format!("{} ({}): {}", alert.kind, alert.severity, alert.message);
            (alert, detail)
        } else {
            let detail = format!(
                "{} ({}), already acknowledged by {}",
                current.kind,
                current.severity,
                current.acknowledged_by.as_deref().unwrap_or("?")
            );
            (current, detail)
        };
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::AlertAck, &actor.client)
                    .resource(format!("alert:{id}"))
                    .detail(detail),
            )
            .await?;
        Ok(alert)
    }
}

/// Each new alert goes to the log at a level that matches its severity.
fn log_new(alert: &Alert) {
    let source_id = alert.source_id.map(SourceId::get);
    match alert.severity {
        Severity::Info => tracing::info!(
            alert = %alert.id, kind = %alert.kind, source_id, "alert: {}", alert.message
        ),
        Severity::Warning => tracing::warn!(
            alert = %alert.id, kind = %alert.kind, source_id, "alert: {}", alert.message
        ),
        Severity::Critical => tracing::error!(
            alert = %alert.id, kind = %alert.kind, source_id, "alert: {}", alert.message
        ),
    }
}

#[async_trait::async_trait]
impl AlertSink for AlertService {
    async fn raise(&self, alert: NewAlert) -> Result<Option<Alert>, CommonError> {
        Self::raise(self, alert).await
    }

    async fn clear(
        &self,
        kind: AlertKind,
        source_id: Option<SourceId>,
    ) -> Result<u64, CommonError> {
        Self::clear(self, kind, source_id).await
    }
}

#[cfg(test)]
pub(crate) mod tests;
