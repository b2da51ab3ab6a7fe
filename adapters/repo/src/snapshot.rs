//! The snapshot object: the root of one backup.

use chrono::{DateTime, Utc};
use coffer_domain::engine::{SnapshotStatus, SnapshotSummary};
use serde::{Deserialize, Serialize};

use crate::crypto::{ChunkId, Keys, Legacy, open_object_with, seal_object};
use crate::error::EngineError;

const SNAPSHOT_PURPOSE: &[u8] = b"coffer snapshot";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotDoc {
    pub version: u32,
    pub source: String,
    pub path: String,
    pub hostname: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Hex id of the root tree.
    pub tree: String,
    pub parent: Option<String>,
    pub status: String,
    pub encrypted: bool,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    pub bytes_added: u64,
    pub stored_bytes_added: u64,
    pub unchanged_files: u64,
    /// Entries the source's filter left out (absent when none, and in snapshots of older
    /// versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub excluded: u64,
    pub warnings: Vec<String>,
    /// Why the source looked empty or collapsed (absent in snapshots of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicious: Option<String>,
}

impl SnapshotDoc {
    /// # Errors
    /// `Corrupt` when the root id is not 32 bytes of hex.
    pub fn root(&self) -> Result<ChunkId, EngineError> {
        let mut id = [0u8; 32];
        hex::decode_to_slice(&self.tree, &mut id)
            .map_err(|_| EngineError::Corrupt("snapshot root tree id".into()))?;
        Ok(id)
    }

    #[must_use]
    pub fn summary(&self, id: String) -> SnapshotSummary {
        SnapshotSummary {
            id,
            source: self.source.clone(),
            path: self.path.clone(),
            hostname: self.hostname.clone(),
            started_at: self.started_at,
            finished_at: self.finished_at,
            status: if self.status == "ok" {
                SnapshotStatus::Ok
            } else {
                SnapshotStatus::Partial
            },
            encrypted: self.encrypted,
            parent: self.parent.clone(),
            files: self.files,
            dirs: self.dirs,
            bytes: self.bytes,
            bytes_added: self.bytes_added,
            stored_bytes_added: self.stored_bytes_added,
            unchanged_files: self.unchanged_files,
            excluded: self.excluded,
            warnings: self.warnings.clone(),
            suspicious: self.suspicious.clone(),
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// # Errors
/// Serialisation or sealing failures.
pub fn seal(keys: &Keys, encrypt: bool, doc: &SnapshotDoc) -> Result<Vec<u8>, EngineError> {
    let json = serde_json::to_vec(doc).map_err(|e| EngineError::Other(e.to_string()))?;
    seal_object(keys, encrypt, SNAPSHOT_PURPOSE, &json)
}

/// # Errors
/// `Damaged` when the object fails authentication; `Corrupt` when it is not a snapshot.
pub fn open(keys: &Keys, sealed: &[u8]) -> Result<SnapshotDoc, EngineError> {
    // Snapshots of a legacy unencrypted repository keep their plain checksums: their ids
    // are the SHA-256 of these very bytes.
    let (json, _) = open_object_with(keys, SNAPSHOT_PURPOSE, sealed, "snapshot", Legacy::Allowed)?;
    serde_json::from_slice(&json).map_err(|e| EngineError::Corrupt(format!("snapshot: {e}")))
}
