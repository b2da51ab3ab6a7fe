//! The audit trail: what is recorded, and the keyed chain that makes tampering visible.
//!
//! Each row carries a MAC (HMAC-SHA256 under the audit key, a file kept outside the
//! database) of its own canonical content together with the previous row's MAC. Editing,
//! deleting or inserting a row breaks the chain at that row, which `coffer audit verify`
//! reports; without the key nobody can rewrite the table into a chain that verifies. A
//! cut tail leaves a chain that verifies on its own: an exported head
//! (`coffer audit head`) proves it, because every row up to the head must still be there
//! with the MAC the head names.
//!
//! Rows written before the chain was keyed carry an unkeyed SHA-256 chain (version 1);
//! they verify as such, and only before the first keyed row.

use chrono::{DateTime, SubsecRound, Utc};
use hmac::{KeyInit, Mac};
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
    /// The chain went on keyed after rows of the unkeyed version 1.
    AuditChainKeyed,
    /// The chain's head was exported (`coffer audit head`).
    AuditHead,
    ReplicaCreate,
    ReplicaUpdate,
    ReplicaDelete,
    /// A copy into a replica ended.
    ReplicaCopy,
    /// A personal access token was created.
    TokenCreate,
    /// A personal access token was revoked.
    TokenRevoke,
    /// An installation of the prototype was imported (`coffer import prototype`).
    Import,
    /// A test email was sent (or failed to be).
    NotifyTest,
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
            Self::AuditChainKeyed => "audit_chain_keyed",
            Self::AuditHead => "audit_head",
            Self::ReplicaCreate => "replica_create",
            Self::ReplicaUpdate => "replica_update",
            Self::ReplicaDelete => "replica_delete",
            Self::ReplicaCopy => "replica_copy",
            Self::TokenCreate => "token_create",
            Self::TokenRevoke => "token_revoke",
            Self::Import => "import",
            Self::NotifyTest => "notify_test",
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

    /// The entry as stored: the credential the client used, if not a session, is named
    /// in the detail (`... (via token 7 "ci")`), so that the row says which token acted.
    #[must_use]
    pub fn noting_credential(mut self) -> Self {
        if let Some(credential) = self.client.credential.take() {
            self.detail = Some(match self.detail.take() {
                Some(d) => format!("{d} (via {credential})"),
                None => format!("via {credential}"),
            });
        }
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

impl AuditRecord {
    /// Whether the row is sealed under the audit key (not a version 1 row).
    #[must_use]
    pub fn is_keyed(&self) -> bool {
        self.row_hash.starts_with(KEYED_PREFIX)
    }
}

/// The hash of the chain before the first row.
pub const GENESIS_HASH: &str = "";

/// Audit timestamps keep microseconds, the precision both databases store.
#[must_use]
pub fn audit_timestamp(now: DateTime<Utc>) -> DateTime<Utc> {
    now.trunc_subsecs(6)
}

/// Feeds the canonical encoding of a row (after the previous row's hash) to `update`:
/// every field length-prefixed, so that no two different rows share an encoding.
fn encode(
    prev_hash: &str,
    timestamp: DateTime<Utc>,
    entry: &AuditEntry,
    update: &mut dyn FnMut(&[u8]),
) {
    let mut field = |value: Option<&str>| match value {
        None => update(b"-"),
        Some(v) => {
            update(b"+");
            update(&(v.len() as u64).to_be_bytes());
            update(v.as_bytes());
        }
    };
    field(Some(prev_hash));
    field(Some(
        &audit_timestamp(timestamp)
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string(),
    ));
    field(Some(&entry.username));
    field(Some(&entry.action));
    field(entry.resource.as_deref());
    field(Some(if entry.success { "1" } else { "0" }));
    field(entry.detail.as_deref());
    field(entry.client.ip.as_deref());
    field(entry.client.user_agent.as_deref());
}

/// The version 1 row hash: unkeyed SHA-256, hex, over the previous hash and every field
/// of the row. Only rows written before the chain was keyed carry it.
#[must_use]
pub fn chain_hash(prev_hash: &str, timestamp: DateTime<Utc>, entry: &AuditEntry) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"coffer-audit-v1");
    encode(prev_hash, timestamp, entry, &mut |b| hasher.update(b));
    hex::encode(hasher.finalize())
}

/// How a keyed row's hash begins: `k1:` and 64 hex digits.
const KEYED_PREFIX: &str = "k1:";

/// The audit key (32 bytes from a file outside the database) and the chain it seals.
#[derive(Clone)]
pub struct AuditChain {
    key: [u8; 32],
}

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditChain(..)")
    }
}

/// Where a verification has got to: the last row's hash, and whether the keyed part of
/// the chain has begun (after it, an unkeyed row is a forgery).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainState {
    pub prev_hash: String,
    pub keyed: bool,
}

impl AuditChain {
    #[must_use]
    pub const fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The MAC of a row, ready to finalise or compare.
    fn mac(
        &self,
        prev_hash: &str,
        timestamp: DateTime<Utc>,
        entry: &AuditEntry,
    ) -> hmac::Hmac<Sha256> {
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(b"coffer-audit-v2");
        encode(prev_hash, timestamp, entry, &mut |b| mac.update(b));
        mac
    }

    /// The keyed row hash: `k1:` and the HMAC-SHA256, hex, over the previous row's hash
    /// and every field of the row.
    #[must_use]
    pub fn seal(&self, prev_hash: &str, timestamp: DateTime<Utc>, entry: &AuditEntry) -> String {
        let mac = self
            .mac(prev_hash, timestamp, entry)
            .finalize()
            .into_bytes();
        format!("{KEYED_PREFIX}{}", hex::encode(mac))
    }

    /// Whether the row's stored MAC is the one its content and predecessor give, compared
    /// in constant time.
    fn opens(&self, row: &AuditRecord) -> bool {
        let Some(Ok(given)) = row.row_hash.strip_prefix(KEYED_PREFIX).map(hex::decode) else {
            return false;
        };
        self.mac(&row.prev_hash, row.timestamp, &row.entry)
            .verify_slice(&given)
            .is_ok()
    }

    /// Checks consecutive rows (in id order), continuing from `state`. Returns the state
    /// to continue from, or the first break.
    ///
    /// # Errors
    /// The first row whose stored hashes do not match its content or its predecessor,
    /// or an unkeyed row after keyed ones.
    pub fn verify<'a>(
        &self,
        mut state: ChainState,
        rows: impl IntoIterator<Item = &'a AuditRecord>,
    ) -> Result<ChainState, ChainBreak> {
        for row in rows {
            if row.prev_hash != state.prev_hash {
                return Err(ChainBreak {
                    id: row.id,
                    reason: "does not follow the previous row (a row was deleted or inserted)",
                });
            }
            if row.row_hash.starts_with(KEYED_PREFIX) {
                if !self.opens(row) {
                    return Err(ChainBreak {
                        id: row.id,
                        reason: "content does not match its MAC (the row was edited, or written without the audit key)",
                    });
                }
                state.keyed = true;
            } else if state.keyed {
                return Err(ChainBreak {
                    id: row.id,
                    reason: "an unkeyed row after keyed ones (rows were rewritten without the audit key)",
                });
            } else if chain_hash(&row.prev_hash, row.timestamp, &row.entry) != row.row_hash {
                return Err(ChainBreak {
                    id: row.id,
                    reason: "content does not match its hash (the row was edited)",
                });
            }
            state.prev_hash.clone_from(&row.row_hash);
        }
        Ok(state)
    }
}

/// Where a verified chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub id: i64,
    pub reason: &'static str,
}

/// An exported head of the chain: a row's id and hash, written `ID:HASH`. A later
/// verification proves every row up to it is still there, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub id: i64,
    pub row_hash: String,
}

impl std::fmt::Display for AuditHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.id, self.row_hash)
    }
}

impl std::str::FromStr for AuditHead {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("{text:?} is not an audit head (ID:HASH, as `coffer audit head` prints it)");
        let (id, row_hash) = text.trim().split_once(':').ok_or_else(bad)?;
        let id = id.parse::<i64>().map_err(|_| bad())?;
        if id < 1 || row_hash.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            id,
            row_hash: row_hash.to_owned(),
        })
    }
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

    const KEY: AuditChain = AuditChain::new([7; 32]);

    fn entry(id: i64) -> AuditEntry {
        AuditEntry::new(
            format!("user{id}"),
            AuditAction::Login,
            &ClientInfo::default(),
        )
        .resource(format!("user:{id}"))
    }

    /// `n` rows after `after`, the first `unkeyed` of them in the version 1 chain.
    fn chain(after: &[AuditRecord], n: i64, unkeyed: i64, key: &AuditChain) -> Vec<AuditRecord> {
        let mut prev = after
            .last()
            .map_or_else(String::new, |r| r.row_hash.clone());
        let first = after.last().map_or(1, |r| r.id + 1);
        (first..first + n)
            .map(|id| {
                let timestamp = Utc.timestamp_opt(1_700_000_000 + id, 123_456_789).unwrap();
                let entry = entry(id);
                let row_hash = if id - first < unkeyed {
                    chain_hash(&prev, timestamp, &entry)
                } else {
                    key.seal(&prev, timestamp, &entry)
                };
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

    fn verify(rows: &[AuditRecord]) -> Result<ChainState, ChainBreak> {
        KEY.verify(ChainState::default(), rows)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let rows = chain(&[], 5, 0, &KEY);
        assert!(rows[0].row_hash.starts_with("k1:"));
        assert_eq!(
            verify(&rows),
            Ok(ChainState {
                prev_hash: rows[4].row_hash.clone(),
                keyed: true
            })
        );
    }

    #[test]
    fn an_edited_row_is_found() {
        let mut rows = chain(&[], 5, 0, &KEY);
        rows[2].entry.success = false;
        assert_eq!(verify(&rows).unwrap_err().id, 3);
    }

    #[test]
    fn a_deleted_row_is_found() {
        let mut rows = chain(&[], 5, 0, &KEY);
        rows.remove(1);
        assert_eq!(verify(&rows).unwrap_err().id, 3);
    }

    /// Someone with write access to the database but not the key file rewrites the whole
    /// table: under another key, or as an unkeyed chain after the keyed part began.
    #[test]
    fn a_whole_table_rewritten_without_the_key_is_found() {
        let forged = chain(&[], 5, 0, &AuditChain::new([8; 32]));
        assert_eq!(verify(&forged).unwrap_err().id, 1);

        let genuine = chain(&[], 3, 0, &KEY);
        let mut rows = genuine[..1].to_vec();
        rows.extend(chain(&rows, 4, 4, &KEY));
        let cut = verify(&rows).unwrap_err();
        assert_eq!(cut.id, 2);
        assert!(cut.reason.contains("unkeyed row after keyed"), "{cut:?}");
    }

    #[test]
    fn rows_written_before_the_chain_was_keyed_verify_as_version_1() {
        let rows = chain(&[], 6, 3, &KEY);
        assert!(!rows[2].row_hash.starts_with("k1:"));
        assert!(verify(&rows).unwrap().keyed);
        let mut edited = rows.clone();
        edited[1].entry.detail = Some("changed".into());
        assert_eq!(verify(&edited).unwrap_err().id, 2);
        // An edited legacy row re-hashed (v1 needs no key) breaks the first keyed row,
        // which seals the legacy head.
        let mut rehashed = rows[..3].to_vec();
        rehashed[2].entry.detail = Some("changed".into());
        rehashed[2].row_hash = chain_hash(
            &rehashed[2].prev_hash,
            rehashed[2].timestamp,
            &rehashed[2].entry,
        );
        let mut tail = rows[3..].to_vec();
        rehashed.append(&mut tail);
        assert_eq!(verify(&rehashed).unwrap_err().id, 4);
    }

    #[test]
    fn fields_cannot_be_shifted_between_columns() {
        let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let c = ClientInfo::default();
        let a = AuditEntry::new("ab", AuditAction::Login, &c).resource("c");
        let b = AuditEntry::new("a", AuditAction::Login, &c).resource("bc");
        assert_ne!(KEY.seal("", t, &a), KEY.seal("", t, &b));
        assert_ne!(chain_hash("", t, &a), chain_hash("", t, &b));
        let none = AuditEntry::new("a", AuditAction::Login, &c);
        let empty = AuditEntry::new("a", AuditAction::Login, &c).resource("");
        assert_ne!(KEY.seal("", t, &none), KEY.seal("", t, &empty));
    }

    #[test]
    fn hashing_ignores_sub_microsecond_precision() {
        let c = ClientInfo::default();
        let e = AuditEntry::new("a", AuditAction::Login, &c);
        let t1 = Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap();
        let t2 = Utc.timestamp_opt(1_700_000_000, 123_456_999).unwrap();
        assert_eq!(KEY.seal("", t1, &e), KEY.seal("", t2, &e));
    }

    #[test]
    fn a_head_reads_back_as_printed() {
        let head = AuditHead {
            id: 42,
            row_hash: "k1:00ff".into(),
        };
        assert_eq!(head.to_string(), "42:k1:00ff");
        assert_eq!("42:k1:00ff".parse::<AuditHead>(), Ok(head));
        for bad in ["", "42", "x:k1:00", "0:k1:00", "42:"] {
            assert!(bad.parse::<AuditHead>().is_err(), "{bad:?}");
        }
    }
}
