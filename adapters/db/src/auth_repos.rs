//! Users, the audit trail and session revocations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::UserId;
use coffer_domain::audit::{AuditChain, AuditEntry, AuditFilter, AuditRecord, audit_timestamp};
use coffer_domain::auth::{ClientInfo, Role, Username};
use coffer_domain::ports::{
    AuditRepository, RepoError, SessionRevocations, User, UserChanges, UserCredentials,
    UserRepository,
};
use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend,
    DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::entities::{audit_logs, revoked_sessions, roles, users};
use crate::error::repo_err;

fn to_user(row: &users::Model, role: Option<&roles::Model>) -> Result<User, RepoError> {
    let role_row = role.ok_or_else(|| {
        RepoError::Corrupt(format!(
            "users.id={} has no role row {}",
            row.id, row.role_id
        ))
    })?;
    let role: Role = role_row
        .name
        .parse()
        .map_err(|e| RepoError::Corrupt(format!("roles.id={}: {e}", role_row.id)))?;
    let username = Username::parse(&row.username)
        .map_err(|e| RepoError::Corrupt(format!("users.id={}: {e}", row.id)))?;
    Ok(User {
        id: UserId::new(row.id),
        username,
        role,
        is_active: row.is_active,
        created_at: row.created_at,
        last_login: row.last_login,
        token_generation: row.token_generation,
    })
}

/// `UserRepository` over `users` (joined with `roles`).
#[derive(Clone)]
pub struct SeaUserRepository {
    conn: DatabaseConnection,
}

impl SeaUserRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    async fn role_id(&self, role: Role) -> Result<i64, RepoError> {
        roles::Entity::find()
            .filter(roles::Column::Name.eq(role.as_str()))
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|r| r.id)
            .ok_or_else(|| RepoError::Corrupt(format!("role {role} is not in the roles table")))
    }

    async fn load(&self, id: i64) -> Result<Option<User>, RepoError> {
        users::Entity::find_by_id(id)
            .find_also_related(roles::Entity)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|(u, r)| to_user(&u, r.as_ref()))
            .transpose()
    }
}

#[async_trait]
impl UserRepository for SeaUserRepository {
    async fn count(&self) -> Result<u64, RepoError> {
        users::Entity::find()
            .count(&self.conn)
            .await
            .map_err(|e| repo_err(&e))
    }

    async fn create(
        &self,
        username: &Username,
        password_hash: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<User, RepoError> {
        let role_id = self.role_id(role).await?;
        let row = users::ActiveModel {
            username: Set(username.as_str().to_owned()),
            password_hash: Set(password_hash.to_owned()),
            role_id: Set(role_id),
            created_at: Set(now),
            updated_at: Set(now),
            last_login: Set(None),
            is_active: Set(true),
            token_generation: Set(0),
            ..Default::default()
        };
        let inserted = row
            .insert(&self.conn)
            .await
            .map_err(|e| match repo_err(&e) {
                RepoError::Conflict(_) => {
                    RepoError::Conflict(format!("username `{username}` is already taken"))
                }
                other => other,
            })?;
        self.load(inserted.id)
            .await?
            .ok_or_else(|| RepoError::Database("inserted user vanished".to_owned()))
    }

    async fn get(&self, id: UserId) -> Result<Option<User>, RepoError> {
        self.load(id.get()).await
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<User>, RepoError> {
        Ok(self.credentials(username).await?.map(|c| c.user))
    }

    async fn credentials(&self, username: &str) -> Result<Option<UserCredentials>, RepoError> {
        users::Entity::find()
            .filter(users::Column::Username.eq(username))
            .find_also_related(roles::Entity)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|(u, r)| {
                let password_hash = u.password_hash.clone();
                to_user(&u, r.as_ref()).map(|user| UserCredentials {
                    user,
                    password_hash,
                })
            })
            .transpose()
    }

    async fn list(&self) -> Result<Vec<User>, RepoError> {
        users::Entity::find()
            .find_also_related(roles::Entity)
            .order_by_asc(users::Column::Id)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(|(u, r)| to_user(&u, r.as_ref()))
            .collect()
    }

    async fn update(
        &self,
        id: UserId,
        changes: &UserChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError> {
        let Some(current) = self.load(id.get()).await? else {
            return Ok(None);
        };
        let role_changes = changes.role.is_some_and(|r| r != current.role);
        let active_changes = changes.is_active.is_some_and(|a| a != current.is_active);
        if !role_changes && !active_changes {
            return Ok(Some(current));
        }
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                users::Column::TokenGeneration,
                Expr::col(users::Column::TokenGeneration).add(1),
            )
            .filter(users::Column::Id.eq(id.get()));
        if let Some(role) = changes.role.filter(|_| role_changes) {
            update = update.col_expr(
                users::Column::RoleId,
                Expr::value(self.role_id(role).await?),
            );
        }
        if let Some(active) = changes.is_active.filter(|_| active_changes) {
            update = update.col_expr(users::Column::IsActive, Expr::value(active));
        }
        update.exec(&self.conn).await.map_err(|e| repo_err(&e))?;
        self.load(id.get()).await
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(password_hash))
            .col_expr(users::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                users::Column::TokenGeneration,
                Expr::col(users::Column::TokenGeneration).add(1),
            )
            .filter(users::Column::Id.eq(id.get()))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        if result.rows_affected == 0 {
            return Ok(None);
        }
        self.load(id.get()).await
    }

    async fn record_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        upgraded_hash: Option<&str>,
    ) -> Result<(), RepoError> {
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::LastLogin, Expr::value(now))
            .filter(users::Column::Id.eq(id.get()));
        if let Some(hash) = upgraded_hash {
            update = update.col_expr(users::Column::PasswordHash, Expr::value(hash));
        }
        update.exec(&self.conn).await.map_err(|e| repo_err(&e))?;
        Ok(())
    }
}

fn to_record(row: audit_logs::Model) -> AuditRecord {
    AuditRecord {
        id: row.id,
        timestamp: row.timestamp,
        entry: AuditEntry {
            username: row.username,
            action: row.action,
            resource: row.resource,
            success: row.success,
            detail: row.detail,
            client: ClientInfo {
                ip: row.ip_address,
                user_agent: row.user_agent,
                credential: None,
            },
        },
        prev_hash: row.prev_hash,
        row_hash: row.row_hash,
    }
}

/// `AuditRepository` over `audit_logs`, with the keyed chain sealed at append.
#[derive(Clone)]
pub struct SeaAuditRepository {
    conn: DatabaseConnection,
    chain: AuditChain,
}

impl SeaAuditRepository {
    pub(crate) fn new(conn: DatabaseConnection, chain: AuditChain) -> Self {
        Self { conn, chain }
    }
}

/// Serialises appends on PostgreSQL (an arbitrary, fixed advisory-lock key).
pub(crate) const AUDIT_LOCK_KEY: i64 = 0x00C0_FFE2_A0D1_7001;

#[async_trait]
impl AuditRepository for SeaAuditRepository {
    async fn append(
        &self,
        entry: &AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<AuditRecord, RepoError> {
        let timestamp = audit_timestamp(now);
        let txn = self.conn.begin().await.map_err(|e| repo_err(&e))?;
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})"))
                .await
                .map_err(|e| repo_err(&e))?;
        }
        // Insert first: on SQLite the write takes the database's write lock at once, so
        // concurrent appends (server and CLI) queue here instead of forking the chain.
        let inserted = audit_logs::ActiveModel {
            username: Set(entry.username.clone()),
            action: Set(entry.action.clone()),
            resource: Set(entry.resource.clone()),
            timestamp: Set(timestamp),
            ip_address: Set(entry.client.ip.clone()),
            user_agent: Set(entry.client.user_agent.clone()),
            success: Set(entry.success),
            detail: Set(entry.detail.clone()),
            prev_hash: Set(String::new()),
            row_hash: Set(String::new()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(|e| repo_err(&e))?;
        let prev_hash = audit_logs::Entity::find()
            .filter(audit_logs::Column::Id.lt(inserted.id))
            .order_by_desc(audit_logs::Column::Id)
            .one(&txn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|row| row.row_hash)
            .unwrap_or_default();
        let row_hash = self.chain.seal(&prev_hash, timestamp, entry);
        audit_logs::Entity::update_many()
            .col_expr(audit_logs::Column::PrevHash, Expr::value(prev_hash.clone()))
            .col_expr(audit_logs::Column::RowHash, Expr::value(row_hash.clone()))
            .filter(audit_logs::Column::Id.eq(inserted.id))
            .exec(&txn)
            .await
            .map_err(|e| repo_err(&e))?;
        txn.commit().await.map_err(|e| repo_err(&e))?;
        Ok(AuditRecord {
            id: inserted.id,
            timestamp,
            entry: entry.clone(),
            prev_hash,
            row_hash,
        })
    }

    async fn list(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>, RepoError> {
        let mut query = audit_logs::Entity::find();
        if let Some(username) = &filter.username {
            query = query.filter(audit_logs::Column::Username.eq(username.as_str()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_logs::Column::Action.eq(action.as_str()));
        }
        if let Some(success) = filter.success {
            query = query.filter(audit_logs::Column::Success.eq(success));
        }
        if let Some(from) = filter.from {
            query = query.filter(audit_logs::Column::Timestamp.gte(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(audit_logs::Column::Timestamp.lt(to));
        }
        if let Some(before) = filter.before_id {
            query = query.filter(audit_logs::Column::Id.lt(before));
        }
        Ok(query
            .order_by_desc(audit_logs::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_record)
            .collect())
    }

    async fn scan(&self, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>, RepoError> {
        Ok(audit_logs::Entity::find()
            .filter(audit_logs::Column::Id.gt(after_id))
            .order_by_asc(audit_logs::Column::Id)
            .limit(u64::from(limit))
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(to_record)
            .collect())
    }
}

/// `SessionRevocations` over `revoked_sessions`.
#[derive(Clone)]
pub struct SeaSessionRevocations {
    conn: DatabaseConnection,
}

impl SeaSessionRevocations {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl SessionRevocations for SeaSessionRevocations {
    async fn revoke(&self, token_id: &str, expires_at: DateTime<Utc>) -> Result<(), RepoError> {
        revoked_sessions::Entity::insert(revoked_sessions::ActiveModel {
            token_id: Set(token_id.to_owned()),
            expires_at: Set(expires_at),
        })
        .on_conflict(
            OnConflict::column(revoked_sessions::Column::TokenId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.conn)
        .await
        .map_err(|e| repo_err(&e))?;
        Ok(())
    }

    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepoError> {
        Ok(revoked_sessions::Entity::find_by_id(token_id.to_owned())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .is_some())
    }

    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, RepoError> {
        Ok(revoked_sessions::Entity::delete_many()
            .filter(revoked_sessions::Column::ExpiresAt.lt(now))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .rows_affected)
    }
}
