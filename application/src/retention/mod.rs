//! Retention: which snapshots of a source its rules keep and why, previewed, tried with
//! other rules, and applied (after each backup, or on demand). The rules in force for
//! sources without their own are the configured defaults, which an administrator may
//! change at run time.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use coffer_domain::SnapshotId;
use coffer_domain::SourceId;
use coffer_domain::audit::{AuditAction, AuditEntry};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::engine::SnapshotStatus;
use coffer_domain::ports::{BackupCatalog, BackupFilter, Clock, Source, SourceRepository};
use coffer_domain::retention::{self, Candidate, Retention, Verdict};

use crate::catalog::{CatalogError, RemoveSnapshot};
use crate::error::{CodedError, CommonError, EngineError, ErrorClass};

/// Errors of retention's use cases.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// A removal the repository refused (a prune holds it, say).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// `invalid_retention`: a count or age out of range.
    #[error("{0}")]
    InvalidRetention(String),
}

impl CodedError for RetentionError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::InvalidRetention(_) => "invalid_retention",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Engine(e) => CodedError::class(e),
            Self::InvalidRetention(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(RetentionError);

impl From<CatalogError> for RetentionError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Common(e) => Self::Common(e),
            CatalogError::Engine(e) => Self::Engine(e),
            // Retention never removes a protected snapshot: the rules keep it.
            CatalogError::Protected(m) => Self::Common(CommonError::Conflict(m)),
        }
    }
}

/// Rules within range, or `invalid_retention`.
///
/// # Errors
/// `InvalidRetention` naming the limit.
pub fn check_rules(rules: Option<Retention>) -> Result<Option<Retention>, RetentionError> {
    if let Some(r) = rules {
        r.check()
            .map_err(|e| RetentionError::InvalidRetention(e.to_string()))?;
    }
    Ok(rules)
}

/// Retention as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionStatus {
    /// Retention runs after each successful backup (`retention.enabled`).
    pub enabled: bool,
    pub defaults: Retention,
}

/// What retention decided for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub source: Source,
    /// The rules in force: the source's override, or the configured defaults.
    pub policy: Retention,
    /// Every snapshot of the source, newest first, with its verdict.
    pub verdicts: Vec<Verdict<SnapshotId>>,
    /// Whether the removals were carried out (false for a preview).
    pub applied: bool,
}

/// The retention defaults in force (the settings' and the dashboard's).
pub trait RetentionDefaults: Send + Sync {
    fn retention_defaults(&self) -> RetentionStatus;
    /// Puts new defaults in force; the next backup or preview uses them.
    fn set_retention_defaults(&self, status: RetentionStatus);
}

/// Retention after a successful backup of a source: what the backup area holds.
#[async_trait]
pub trait AfterBackup: Send + Sync {
    /// Applies the source's rules when retention after backups is on, as the system
    /// (`system:retention`) under the configured policy — not as whoever ran the backup,
    /// who may lack the right to remove snapshots. A failure is logged, never returned:
    /// the snapshot is safe either way.
    async fn after_backup(&self, source: &Source);
}

/// Retention after a backup acts as `system:retention` in the audit trail.
const RETENTION_ACTOR: &str = "retention";

pub struct RetentionService {
    catalog: Arc<dyn BackupCatalog>,
    sources: Arc<dyn SourceRepository>,
    removal: Arc<dyn RemoveSnapshot>,
    /// The configuration's defaults at first, then whatever an administrator sets.
    defaults: RwLock<RetentionStatus>,
    clock: Arc<dyn Clock>,
    /// `retention.burst_minutes`: snapshots within one such window count once toward
    /// `max_backups`.
    burst_minutes: u32,
}

impl RetentionService {
    #[must_use]
    pub fn new(
        catalog: Arc<dyn BackupCatalog>,
        sources: Arc<dyn SourceRepository>,
        removal: Arc<dyn RemoveSnapshot>,
        defaults: RetentionStatus,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            sources,
            removal,
            defaults: RwLock::new(defaults),
            clock,
            burst_minutes: retention::DEFAULT_BURST_MINUTES,
        }
    }

    /// Another burst window for `max_backups` (0: every snapshot counts).
    #[must_use]
    pub fn with_burst_minutes(mut self, minutes: u32) -> Self {
        self.burst_minutes = minutes;
        self
    }

    async fn source(&self, id: SourceId) -> Result<Source, RetentionError> {
        Ok(self
            .sources
            .get(id)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no source with id {id}")))?)
    }

    /// The retention defaults in force (for sources without their own rules), and
    /// whether retention runs after each backup.
    #[must_use]
    pub fn defaults(&self) -> RetentionStatus {
        *self.defaults.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn rules_for(&self, source: &Source) -> Retention {
        source.retention.unwrap_or(self.defaults().defaults)
    }

    /// What retention would keep and remove for a source, and why.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`.
    pub async fn preview(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<RetentionReport, RetentionError> {
        actor.require(Permission::View)?;
        let source = self.source(source_id).await?;
        let rules = self.rules_for(&source);
        self.enforce(actor, &source, rules, false).await
    }

    /// What other rules would keep and remove for a source (`None`: the defaults, as for
    /// a source without an override); nothing is changed or stored. For trying rules
    /// out before saving them.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound`; `InvalidRetention` (counts or ages out of
    /// range).
    pub async fn simulate(
        &self,
        actor: &Actor,
        source_id: SourceId,
        rules: Option<Retention>,
    ) -> Result<RetentionReport, RetentionError> {
        actor.require(Permission::View)?;
        let rules = check_rules(rules)?;
        let source = self.source(source_id).await?;
        let rules = rules.unwrap_or(self.defaults().defaults);
        self.enforce(actor, &source, rules, false).await
    }

    /// Applies retention to a source now: removes what its rules do not keep.
    ///
    /// # Errors
    /// `Forbidden` without `manage_system`; `NotFound`; storage or database failures
    /// (what was removed before stays removed).
    pub async fn apply(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<RetentionReport, RetentionError> {
        actor.require(Permission::ManageSystem)?;
        let source = self.source(source_id).await?;
        let rules = self.rules_for(&source);
        self.enforce(actor, &source, rules, true).await
    }

    /// Decides, and with `apply` removes, each snapshot the rules do not keep. Every
    /// removal is audited with the reason, under the caller's name.
    async fn enforce(
        &self,
        actor: &Actor,
        source: &Source,
        policy: Retention,
        apply: bool,
    ) -> Result<RetentionReport, RetentionError> {
        let rows = self
            .catalog
            .query(&BackupFilter {
                source_id: Some(source.id),
                ..BackupFilter::default()
            })
            .await?
            .items;
        let candidates: Vec<Candidate<SnapshotId>> = rows
            .iter()
            .map(|r| Candidate {
                id: r.snapshot_id.clone(),
                created_at: r.created_at,
                protected: r.protected,
                complete: r.status == SnapshotStatus::Ok,
                suspicious: r.suspicious.is_some(),
            })
            .collect();
        let verdicts =
            retention::decide_with(&policy, &candidates, self.clock.now(), self.burst_minutes);
        if apply {
            for v in verdicts.iter().filter(|v| !v.keep) {
                let entry =
                    AuditEntry::new(&actor.username, AuditAction::BackupDelete, &actor.client)
                        .resource(format!("snapshot:{}", v.id))
                        .detail(format!(
                            "retention of `{}`: {}",
                            source.name,
                            v.reasons.join(", ")
                        ));
                self.removal.remove(&v.id, entry).await?;
            }
        }
        Ok(RetentionReport {
            source: source.clone(),
            policy,
            verdicts,
            applied: apply,
        })
    }
}

impl RetentionDefaults for RetentionService {
    fn retention_defaults(&self) -> RetentionStatus {
        self.defaults()
    }

    fn set_retention_defaults(&self, status: RetentionStatus) {
        *self
            .defaults
            .write()
            .unwrap_or_else(PoisonError::into_inner) = status;
    }
}

#[async_trait]
impl AfterBackup for RetentionService {
    async fn after_backup(&self, source: &Source) {
        let defaults = self.defaults();
        if !defaults.enabled {
            return;
        }
        let rules = source.retention.unwrap_or(defaults.defaults);
        let system = Actor::local_admin(RETENTION_ACTOR);
        if let Err(e) = self.enforce(&system, source, rules, true).await {
            tracing::error!(source = %source.name, error = %e, "retention after a backup failed");
        }
    }
}
