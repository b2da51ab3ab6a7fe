//! The scheduler's leadership among server instances that share a PostgreSQL catalog: a
//! session-level advisory lock held on one connection set aside from the pool. The
//! lock lives as long as that connection: if the process dies (or its connection is cut)
//! PostgreSQL releases it, and another instance's next `lead` takes it. A SQLite
//! catalog has one server (the data directory's lock), which always leads.

use async_trait::async_trait;
use coffer_domain::ports::{Leadership, RepoError};
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{Postgres, query, query_scalar};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use tokio::sync::Mutex;

/// The advisory lock key of the scheduler (other keys: the audit chain's).
pub(crate) const SCHEDULER_LOCK_KEY: i64 = 0x00C0_FFE2_5C4E_D001;

/// [`Leadership`] over the catalog.
pub struct SeaLeadership {
    conn: DatabaseConnection,
    /// The connection holding the lock, while this process leads.
    held: Mutex<Option<PoolConnection<Postgres>>>,
}

impl SeaLeadership {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self {
            conn,
            held: Mutex::new(None),
        }
    }
}

fn db_err(e: &sea_orm::sqlx::Error) -> RepoError {
    RepoError::Database(format!("scheduler leadership: {e}"))
}

#[async_trait]
impl Leadership for SeaLeadership {
    async fn lead(&self) -> Result<bool, RepoError> {
        if self.conn.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(true);
        }
        let mut held = self.held.lock().await;
        if let Some(conn) = held.as_mut() {
            // Still ours while the connection that holds it lives.
            match query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut **conn)
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler: lost the connection that held the leadership");
                    if let Some(conn) = held.take() {
                        drop(conn.detach());
                    }
                }
            }
        }
        let pool = self.conn.get_postgres_connection_pool();
        let mut conn = pool.acquire().await.map_err(|e| db_err(&e))?;
        // A leader whose machine vanishes (power, network) sends no FIN: without
        // keepalives PostgreSQL would hold its lock until the kernel's TCP timeout
        // (hours). With these it notices within about 25 s and frees the lock.
        for setting in [
            "SET tcp_keepalives_idle = 10",
            "SET tcp_keepalives_interval = 5",
            "SET tcp_keepalives_count = 3",
        ] {
            query(setting)
                .execute(&mut *conn)
                .await
                .map_err(|e| db_err(&e))?;
        }
        let got: bool = query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SCHEDULER_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_err(&e))?;
        if got {
            *held = Some(conn);
        }
        Ok(got)
    }

    async fn resign(&self) {
        let mut held = self.held.lock().await;
        let Some(mut conn) = held.take() else {
            return;
        };
        if let Err(e) = query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
            .bind(SCHEDULER_LOCK_KEY)
            .fetch_one(&mut *conn)
            .await
        {
            // Closing the connection releases it as well.
            tracing::warn!(error = %e, "scheduler: cannot release the leadership; closing its connection");
            drop(conn.detach());
        }
    }
}
