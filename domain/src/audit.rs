//! The audit trail: what is recorded, and the hash chain that makes tampering visible.
//!
//! Each row carries the SHA-256 of its own canonical content together with the previous
//! row's hash. Editing, deleting or inserting a row in the database breaks the chain at
//! that row, which `coffer audit verify` reports.

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};

use crate::auth::ClientInfo;

/// What happened. Stored as the stable string of [`AuditAction::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Login,
    LoginFailed,
    LoginThrottled,
    Logout,
    PasswordChange,
    UserCreate,
    UserUpdate,
    UserPasswordReset,
    SourceCreate,
    SourceUpdate,
    SourceDelete,
    BackupCreate,
    BackupDelete,
    BackupProtect,
    BackupUnprotect,
    BackupBrowse,
    BackupDownload,
    JobQueue,
    JobCancel,
    Restore,
    Verify,
    CatalogRebuild,
    KeyExport,
    KeyRotate,
    AlertAck,
    Prune,
    Check,
    StorageRecount,
    /// A report or the audit log was exported (CSV, PDF).
    Export,
    SettingsChange,
}

impl AuditAction {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::LoginThrottled => "login_throttled",
            Self::Logout => "logout",
            Self::PasswordChange => "password_change",
            Self::UserCreate => "user_create",
            Self::UserUpdate => "user_update",
            Self::UserPasswordReset => "user_password_reset",
            Self::SourceCreate => "source_create",
            Self::SourceUpdate => "source_update",
            Self::SourceDelete => "source_delete",
            Self::BackupCreate => "backup_create",
            Self::BackupDelete => "backup_delete",
            Self::BackupProtect => "backup_protect",
            Self::BackupUnprotect => "backup_unprotect",
            Self::BackupBrowse => "backup_browse",
            Self::BackupDownload => "backup_download",
            Self::JobQueue => "job_queue",
            Self::JobCancel => "job_cancel",
            Self::Restore => "restore",
            Self::Verify => "verify",
            Self::CatalogRebuild => "catalog_rebuild",
            Self::KeyExport => "key_export",
            Self::KeyRotate => "key_rotate",
            Self::AlertAck => "alert_ack",
            Self::Prune => "prune",
            Self::Check => "check",
            Self::StorageRecount => "storage_recount",
            Self::Export => "export",
            Self::SettingsChange => "settings_change",
        }
    }
}

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who acted (a username, `system:<os user>` for the CLI, or the name tried at a
    /// failed login).
    pub username: String,
    pub action: String,
    /// What it acted on (`user:7`, `snapshot:ab12…`).
    pub resource: Option<String>,
    pub success: bool,
    /// Free text for people; never a secret.
    pub detail: Option<String>,
    pub client: ClientInfo,
}

impl AuditEntry {
    #[must_use]
    pub fn new(username: impl Into<String>, action: AuditAction, client: &ClientInfo) -> Self {
        Self {
            username: username.into(),
            action: action.as_str().to_owned(),
            resource: None,
            success: true,
            detail: None,
            client: client.clone(),
        }
    }

    #[must_use]
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    #[must_use]
    pub const fn failed(mut self) -> Self {
        self.success = false;
        self
    }
}

/// A stored row of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub entry: AuditEntry,
    /// The previous row's `row_hash` (empty for the first row).
    pub prev_hash: String,
    pub row_hash: String,
}

/// The hash of the chain before the first row.
pub const GENESIS_HASH: &str = "";

/// Audit timestamps keep microseconds, the precision both databases store.
#[must_use]
pub fn audit_timestamp(now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(6)
}

/// The row hash: SHA-256, hex, over the previous hash and every field of the row, each
/// length-prefixed so that no two different rows share an encoding.
#[must_use]
pub fn chain_hash(prev_hash: &str, timestamp: DateTime<Utc>, entry: &AuditEntry) -> String {
    fn field(hasher: &mut Sha256, value: Option<&str>) {
        match value {
            None => hasher.update(b"-"),
            Some(v) => {
                hasher.update(b"+");
                hasher.update((v.len() as u64).to_be_bytes());
                hasher.update(v.as_bytes());
            }
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(b"coffer-audit-v1");
    field(&mut hasher, Some(prev_hash));
    field(
        &mut hasher,
        Some(
            &audit_timestamp(timestamp)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
        ),
    );
    field(&mut hasher, Some(&entry.username));
    field(&mut hasher, Some(&entry.action));
    field(&mut hasher, entry.resource.as_deref());
    field(&mut hasher, Some(if entry.success { "1" } else { "0" }));
    field(&mut hasher, entry.detail.as_deref());
    field(&mut hasher, entry.client.ip.as_deref());
    field(&mut hasher, entry.client.user_agent.as_deref());
    hex::encode(hasher.finalize())
}

/// Where a verified chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub id: i64,
    pub reason: &'static str,
}

/// Checks consecutive rows (in id order), continuing from `prev_hash`. Returns the hash to
/// continue from, or the first break.
///
/// # Errors
/// The first row whose stored hashes do not match its content or its predecessor.
pub fn verify_chain<'a>(
    mut prev_hash: String,
    rows: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<String, ChainBreak> {
    for row in rows {
        if row.prev_hash != prev_hash {
            return Err(ChainBreak {
                id: row.id,
                reason: "does not follow the previous row (a row was deleted or inserted)",
            });
        }
        if chain_hash(&row.prev_hash, row.timestamp, &row.entry) != row.row_hash {
            return Err(ChainBreak {
                id: row.id,
                reason: "content does not match its hash (the row was edited)",
            });
        }
        prev_hash.clone_from(&row.row_hash);
    }
    Ok(prev_hash)
}

/// Which rows to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub username: Option<String>,
    pub action: Option<String>,
    pub success: Option<bool>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only rows with an id below this (keyset paging, newest first).
    pub before_id: Option<i64>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|id| {
                let timestamp = Utc.timestamp_opt(1_700_000_000 + id, 123_456_789).unwrap();
                let entry = AuditEntry::new(
                    format!("user{id}"),
                    AuditAction::Login,
                    &ClientInfo::default(),
                )
                .resource(format!("user:{id}"));
                let row_hash = chain_hash(&prev, timestamp, &entry);
                let record = AuditRecord {
                    id,
                    timestamp: audit_timestamp(timestamp),
                    entry,
                    prev_hash: prev.clone(),
                    row_hash: row_hash.clone(),
                };
                prev = row_hash;
                record
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(5);
        assert_eq!(
            verify_chain(GENESIS_HASH.to_owned(), &rows),
            Ok(rows[4].row_hash.clone())
        );
    }

    #[test]
    fn an_edited_row_is_found() {
        let mut rows = chain(5);
        rows[2].entry.success = false;
        assert_eq!(
            verify_chain(GENESIS_HASH.to_owned(), &rows).unwrap_err().id,
            3
        );
    }

    #[test]
    fn a_deleted_row_is_found() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(
            verify_chain(GENESIS_HASH.to_owned(), &rows).unwrap_err().id,
            3
        );
    }

    #[test]
    fn fields_cannot_be_shifted_between_columns() {
        let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let c = ClientInfo::default();
        let a = AuditEntry::new("ab", AuditAction::Login, &c).resource("c");
        let b = AuditEntry::new("a", AuditAction::Login, &c).resource("bc");
        assert_ne!(chain_hash("", t, &a), chain_hash("", t, &b));
        let none = AuditEntry::new("a", AuditAction::Login, &c);
        let empty = AuditEntry::new("a", AuditAction::Login, &c).resource("");
        assert_ne!(chain_hash("", t, &none), chain_hash("", t, &empty));
    }

    #[test]
    fn hashing_ignores_sub_microsecond_precision() {
        let c = ClientInfo::default();
        let e = AuditEntry::new("a", AuditAction::Login, &c);
        let t1 = Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap();
        let t2 = Utc.timestamp_opt(1_700_000_000, 123_456_999).unwrap();
        assert_eq!(chain_hash("", t1, &e), chain_hash("", t2, &e));
    }
}
