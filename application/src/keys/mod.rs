//! The master key: export for safekeeping, rotation, and the reminder that stays up
//! until the current key has been exported. Losing the key loses every backup.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_domain::alerts::{AlertKind, NewAlert, Severity};
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::crypto::MasterKeys;
use coffer_domain::ports::CounterRepository;
use coffer_domain::secrets::Secret;

use crate::alerts::AlertSink;
use crate::audit::AuditLog;
use crate::error::CommonError;

/// 1 once the current master key has been exported.
const KEY_EXPORTED: &str = "key.exported";

/// Whether the current master key has been exported (the settings' and the
/// dashboard's reminder).
#[async_trait]
pub trait KeyStatus: Send + Sync {
    async fn key_was_exported(&self) -> Result<bool, CommonError>;
}

pub struct KeyService {
    keys: Arc<dyn MasterKeys>,
    counters: Arc<dyn CounterRepository>,
    alerts: Arc<dyn AlertSink>,
    audit: AuditLog,
}

impl KeyService {
    #[must_use]
    pub fn new(
        keys: Arc<dyn MasterKeys>,
        counters: Arc<dyn CounterRepository>,
        alerts: Arc<dyn AlertSink>,
        audit: AuditLog,
    ) -> Self {
        Self {
            keys,
            counters,
            alerts,
            audit,
        }
    }

    /// Raises the reminder when the current key has never been exported. Run at
    /// start-up.
    ///
    /// # Errors
    /// Database failures.
    pub async fn init(&self) -> Result<(), CommonError> {
        if !self.key_was_exported().await? {
            self.raise_not_exported().await;
        }
        Ok(())
    }

    /// Whether the current master key has been exported since it was made.
    ///
    /// # Errors
    /// Database failures.
    pub async fn key_was_exported(&self) -> Result<bool, CommonError> {
        Ok(self.counters.get(KEY_EXPORTED).await? != 0)
    }

    async fn raise_not_exported(&self) {
        self.alerts
            .raise_best_effort(NewAlert::new(
                AlertKind::KeyNotExported,
                Severity::Warning,
                "the master key has never been exported: if this machine's key file is lost, \
                 every backup is lost with it. Run `coffer key export` and keep the key \
                 somewhere safe, away from this server",
            ))
            .await;
    }

    /// The master key was exported (`true`), or replaced by one that has not been
    /// (`false`): the `key_not_exported` alert is cleared or raised. Failures are logged.
    async fn exported(&self, exported: bool) {
        if let Err(e) = self.counters.set(KEY_EXPORTED, i64::from(exported)).await {
            tracing::error!(error = %e, "cannot record the key export");
        }
        if exported {
            if let Err(e) = self.alerts.clear(AlertKind::KeyNotExported, None).await {
                tracing::error!(error = %e, "cannot clear the key alert");
            }
        } else {
            self.raise_not_exported().await;
        }
    }

    /// The master key, for safekeeping. Audited.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`.
    pub async fn export_key(&self, actor: &Actor) -> Result<Secret, CommonError> {
        actor.require(Permission::ManageSystem)?;
        let key = self.keys.export().await?;
        self.audit
            .record(AuditEntry::new(
                &actor.username,
                AuditAction::KeyExport,
                &actor.client,
            ))
            .await?;
        self.exported(true).await;
        Ok(key)
    }

    /// Replaces the master key; data is not rewritten. Audited.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; key or storage failures.
    pub async fn rotate_key(&self, actor: &Actor) -> Result<(), CommonError> {
        actor.require(Permission::ManageSystem)?;
        let entry = AuditEntry::new(&actor.username, AuditAction::KeyRotate, &actor.client);
        match self.keys.rotate().await {
            Ok(()) => {
                // The new key has not been exported yet.
                self.exported(false).await;
                self.audit.record(entry).await?;
                Ok(())
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(e.0.clone()))
                    .await;
                Err(e.into())
            }
        }
    }
}

#[async_trait]
impl KeyStatus for KeyService {
    async fn key_was_exported(&self) -> Result<bool, CommonError> {
        Self::key_was_exported(self).await
    }
}
