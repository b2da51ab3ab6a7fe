//! System status: what `GET /api/health` and `coffer` report about the server itself.

use std::sync::Arc;

use coffer_domain::ports::DatabaseHealth;
use coffer_domain::storage::ObjectStore;

/// How a dependency answered the health probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentHealth {
    Ok,
    /// The component did not answer, or answered with an error. The detail is logged, not
    /// reported: health is public and must not leak paths or addresses.
    Unreachable,
}

impl ComponentHealth {
    #[must_use]
    pub const fn is_ok(&self) -> bool {
        matches!(self, Self::Ok)
    }
}

/// The server's state as a load balancer or an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub version: &'static str,
    pub database: ComponentHealth,
    pub storage: ComponentHealth,
}

impl HealthReport {
    /// Healthy when every dependency answered.
    #[must_use]
    pub const fn is_healthy(&self) -> bool {
        self.database.is_ok() && self.storage.is_ok()
    }
}

/// Reports on the server itself. Health is public (no permission needed): monitors and
/// load balancers call it without credentials, so it reveals nothing but ok/unreachable.
///
/// Probes must not hang: the adapters bound every database and storage call with a
/// timeout, so this service needs no timer of its own.
pub struct SystemService {
    database: Arc<dyn DatabaseHealth>,
    storage: Arc<dyn ObjectStore>,
    version: &'static str,
}

impl SystemService {
    #[must_use]
    pub fn new(
        database: Arc<dyn DatabaseHealth>,
        storage: Arc<dyn ObjectStore>,
        version: &'static str,
    ) -> Self {
        Self {
            database,
            storage,
            version,
        }
    }

    /// Probes the database and the storage concurrently.
    pub async fn health(&self) -> HealthReport {
        let database = async {
            self.database.ping().await.map_or_else(
                |e| {
                    tracing::warn!(error = %e, "health: database unreachable");
                    ComponentHealth::Unreachable
                },
                |()| ComponentHealth::Ok,
            )
        };
        let storage = async {
            self.storage.check().await.map_or_else(
                |e| {
                    tracing::warn!(error = %e, "health: storage unreachable");
                    ComponentHealth::Unreachable
                },
                |()| ComponentHealth::Ok,
            )
        };
        let (database, storage) = futures::future::join(database, storage).await;
        HealthReport {
            version: self.version,
            database,
            storage,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use coffer_domain::ports::{DatabaseHealth, RepoError};
    use coffer_domain::storage::{ObjectKey, ObjectStore, StorageError};

    use super::*;

    struct Db(bool);

    #[async_trait]
    impl DatabaseHealth for Db {
        async fn ping(&self) -> Result<(), RepoError> {
            if self.0 {
                Ok(())
            } else {
                Err(RepoError::Database("refused".into()))
            }
        }
    }

    struct Store(bool);

    #[async_trait]
    impl ObjectStore for Store {
        async fn put(&self, _: &ObjectKey, _: bytes::Bytes) -> Result<(), StorageError> {
            unreachable!("health never writes")
        }
        async fn get(&self, _: &ObjectKey) -> Result<Option<bytes::Bytes>, StorageError> {
            unreachable!("health never reads")
        }
        async fn get_range(
            &self,
            _: &ObjectKey,
            _: u64,
            _: u64,
        ) -> Result<Option<bytes::Bytes>, StorageError> {
            unreachable!("health never reads")
        }
        async fn exists(&self, _: &ObjectKey) -> Result<bool, StorageError> {
            unreachable!("health never reads")
        }
        async fn delete(&self, _: &ObjectKey) -> Result<(), StorageError> {
            unreachable!("health never deletes")
        }
        async fn list(&self, _: &str) -> Result<Vec<ObjectKey>, StorageError> {
            unreachable!("health never lists")
        }
        async fn list_sized(&self, _: &str) -> Result<Vec<(ObjectKey, u64)>, StorageError> {
            unreachable!("health never lists")
        }
        async fn check(&self) -> Result<(), StorageError> {
            if self.0 {
                Ok(())
            } else {
                Err(StorageError::Unavailable("gone".into()))
            }
        }
    }

    #[test]
    fn health_reports_each_component() {
        for (db, store) in [(true, true), (false, true), (true, false), (false, false)] {
            let service = SystemService::new(Arc::new(Db(db)), Arc::new(Store(store)), "1.2.3");
            let report = futures::executor::block_on(service.health());
            assert_eq!(report.version, "1.2.3");
            assert_eq!(report.database.is_ok(), db);
            assert_eq!(report.storage.is_ok(), store);
            assert_eq!(report.is_healthy(), db && store);
        }
    }
}
