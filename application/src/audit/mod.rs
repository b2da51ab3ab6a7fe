//! Writing and reading the audit trail.

use std::sync::Arc;

use coffer_domain::audit::{
    AuditAction, AuditChain, AuditEntry, AuditFilter, AuditHead, AuditRecord, ChainState,
};
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
        Ok(self
            .repo
            .append(&entry.noting_credential(), self.clock.now())
            .await?)
    }

    /// Starts the keyed chain after rows of the unkeyed version 1 chain (an installation
    /// from before the chain was keyed): one row, sealed under the key, that seals their
    /// head. Nothing when the newest row is keyed already, or there is none. Call it only
    /// when the audit key was just created: later, an unkeyed tail is a rewrite.
    ///
    /// # Errors
    /// When the trail cannot be read or the row cannot be written.
    pub async fn seal_unkeyed_tail(&self) -> Result<(), CommonError> {
        let newest = self.repo.list(&AuditFilter::default(), 1).await?;
        if newest.first().is_some_and(|row| !row.is_keyed()) {
            self.record(
                AuditEntry::new(
                    "system",
                    AuditAction::AuditChainKeyed,
                    &coffer_domain::auth::ClientInfo::default(),
                )
                .detail(
                    "the rows before this one carry the unkeyed version 1 chain; from here on each row is sealed under the audit key",
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// Records a failure that is already being reported; a failure to record it is logged
    /// rather than hiding the original error.
    pub async fn record_best_effort(&self, entry: AuditEntry) {
        let entry = entry.noting_credential();
        if let Err(e) = self.repo.append(&entry, self.clock.now()).await {
            tracing::error!(error = %e, action = entry.action, "cannot write an audit row");
        }
    }
}

/// The outcome of `coffer audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub rows_checked: u64,
    /// The first row where the chain breaks (or the exported head it fails), and why.
    pub first_break: Option<(i64, &'static str)>,
}

/// Reading and verifying the trail (permission `audit`).
pub struct AuditService {
    repo: Arc<dyn AuditRepository>,
    chain: AuditChain,
    log: AuditLog,
}

/// Largest page of the audit listing.
pub const MAX_AUDIT_PAGE: u32 = 500;

impl AuditService {
    #[must_use]
    pub fn new(repo: Arc<dyn AuditRepository>, chain: AuditChain, log: AuditLog) -> Self {
        Self { repo, chain, log }
    }

    /// The chain's head, to keep outside Coffer (`coffer audit head`): a later
    /// [`AuditService::verify`] given it proves no row up to it was cut or rewritten. The
    /// export is itself recorded, and its row is the head.
    ///
    /// # Errors
    /// `Forbidden` without the `audit` permission; database failures.
    pub async fn head(&self, actor: &Actor) -> Result<AuditHead, CommonError> {
        actor.require(Permission::Audit)?;
        let row = self
            .log
            .record(AuditEntry::new(
                &actor.username,
                AuditAction::AuditHead,
                &actor.client,
            ))
            .await?;
        Ok(AuditHead {
            id: row.id,
            row_hash: row.row_hash,
        })
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

    /// Re-computes the keyed chain over every row, in pages; with `head` (an exported
    /// head), also proves the row it names is still there, unchanged.
    ///
    /// # Errors
    /// `Forbidden` without the `audit` permission; database failures.
    pub async fn verify(
        &self,
        actor: &Actor,
        head: Option<&AuditHead>,
    ) -> Result<ChainReport, CommonError> {
        actor.require(Permission::Audit)?;
        let mut state = ChainState::default();
        let mut after = 0;
        let mut rows_checked = 0u64;
        let mut head_seen = false;
        let broken = |rows_checked: u64, id: i64, reason: &'static str| {
            Ok::<_, CommonError>(ChainReport {
                rows_checked,
                first_break: Some((id, reason)),
            })
        };
        loop {
            let page = self.repo.scan(after, 1000).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.id;
            match self.chain.verify(state, &page) {
                Ok(next) => {
                    state = next;
                    rows_checked += page.len() as u64;
                }
                Err(b) => {
                    rows_checked += page.iter().take_while(|r| r.id < b.id).count() as u64;
                    return broken(rows_checked, b.id, b.reason);
                }
            }
            if let Some(head) = head
                && let Some(row) = page.iter().find(|r| r.id == head.id)
            {
                if row.row_hash != head.row_hash {
                    return broken(
                        rows_checked,
                        head.id,
                        "does not match the exported head (the trail was rewritten)",
                    );
                }
                head_seen = true;
            }
        }
        if let Some(head) = head
            && !head_seen
        {
            return broken(
                rows_checked,
                head.id,
                "is missing: the trail ends before the exported head (rows were cut)",
            );
        }
        if rows_checked > 0 && !state.keyed {
            return broken(
                rows_checked,
                after,
                "ends in unkeyed rows: the keyed part of the trail was cut",
            );
        }
        Ok(ChainReport {
            rows_checked,
            first_break: None,
        })
    }
}
