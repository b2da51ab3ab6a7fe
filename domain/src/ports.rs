//! Catalog ports: what the application needs from the database. The database is a
//! catalog — everything in it about snapshots can be rebuilt from storage — but users,
//! settings and the audit trail live only there.

use async_trait::async_trait;

use crate::auth::Role;

/// A failure of the catalog database.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A uniqueness rule was broken (a name already taken, for example).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be understood (corrupt or from a newer version).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Whether the database answers at all; what the health endpoint reports.
#[async_trait]
pub trait DatabaseHealth: Send + Sync {
    async fn ping(&self) -> Result<(), RepoError>;
}

/// A role as stored in the `roles` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRole {
    pub id: i64,
    pub role: Role,
}

/// The built-in roles, seeded by migration.
///
/// Contract: `list` returns every seeded role, ordered by id, with the permissions the
/// table holds; a permission list in the table that disagrees with [`Role::allows`] is
/// reported as [`RepoError::Corrupt`] rather than silently trusted.
#[async_trait]
pub trait RoleRepository: Send + Sync {
    async fn list(&self) -> Result<Vec<StoredRole>, RepoError>;
    async fn find_by_name(&self, role: Role) -> Result<Option<StoredRole>, RepoError>;
}

/// Run-time settings changed from the dashboard or API (they override configuration
/// defaults). Values are JSON text; the application layer gives them types.
///
/// Contract: `get` of a missing key is `Ok(None)`; `put` inserts or replaces; `list` is
/// ordered by key.
#[async_trait]
pub trait SettingsRepository: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<String>, RepoError>;
    async fn put(&self, key: &str, value: &str) -> Result<(), RepoError>;
    async fn list(&self) -> Result<Vec<(String, String)>, RepoError>;
    async fn delete(&self, key: &str) -> Result<bool, RepoError>;
}
