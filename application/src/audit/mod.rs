//! Writing and reading the audit trail.

use std::sync::Arc;

use coffer_domain::audit::{AuditEntry, AuditFilter, AuditRecord, GENESIS_HASH, verify_chain};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::ports::{AuditRepository, Clock};

use crate::error::CommonError;

/// Appends to the trail. Every use case that changes state or reads protected content
/// records through this; if the row cannot be written the use case fails, so nothing
/// happens unrecorded.
#[derive(Clone)]
pub struct AuditLog {
    repo: Arc<dyn AuditRepository>,
    clock: Arc<dyn Clock>,
}

impl AuditLog {
    #[must_use]
    pub fn new(repo: Arc<dyn AuditRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { repo, clock }
    }

    /// Records `entry` now.
    ///
    /// # Errors
    /// When the row cannot be written.
    pub async fn record(&self, entry: AuditEntry) -> Result<AuditRecord, CommonError> {
        Ok(self.repo.append(&entry, self.clock.now()).await?)
    }

    /// Records a failure that is already being reported; a failure to record it is logged
    /// rather than hiding the original error.
    pub async fn record_best_effort(&self, entry: AuditEntry) {
        if let Err(e) = self.repo.append(&entry, self.clock.now()).await {
            tracing::error!(error = %e, action = entry.action, "cannot write an audit row");
        }
    }
}

/// The outcome of `coffer audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub rows_checked: u64,
    /// The first row where the chain breaks, and why.
    pub first_break: Option<(i64, &'static str)>,
}

/// Reading and verifying the trail (permission `audit`).
pub struct AuditService {
    repo: Arc<dyn AuditRepository>,
}

/// Largest page of the audit listing.
pub const MAX_AUDIT_PAGE: u32 = 500;

impl AuditService {
    #[must_use]
    pub fn new(repo: Arc<dyn AuditRepository>) -> Self {
        Self { repo }
    }

    /// Rows matching `filter`, newest first, at most `limit` (capped at 500).
    ///
    /// # Errors
    /// `Forbidden` without the `audit` permission.
    pub async fn list(
        &self,
        actor: &Actor,
        filter: &AuditFilter,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, CommonError> {
        actor.require(Permission::Audit)?;
        Ok(self
            .repo
            .list(filter, limit.clamp(1, MAX_AUDIT_PAGE))
            .await?)
    }

    /// Re-computes the hash chain over every row, in pages.
    ///
    /// # Errors
    /// `Forbidden` without the `audit` permission; database failures.
    pub async fn verify(&self, actor: &Actor) -> Result<ChainReport, CommonError> {
        actor.require(Permission::Audit)?;
        let mut prev = GENESIS_HASH.to_owned();
        let mut after = 0;
        let mut rows_checked = 0u64;
        loop {
            let page = self.repo.scan(after, 1000).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.id;
            match verify_chain(prev, &page) {
                Ok(next) => {
                    prev = next;
                    rows_checked += page.len() as u64;
                }
                Err(b) => {
                    rows_checked += page.iter().take_while(|r| r.id < b.id).count() as u64;
                    return Ok(ChainReport {
                        rows_checked,
                        first_break: Some((b.id, b.reason)),
                    });
                }
            }
        }
        Ok(ChainReport {
            rows_checked,
            first_break: None,
        })
    }
}
