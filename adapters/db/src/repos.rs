use async_trait::async_trait;
use chrono::Utc;
use coffer_domain::auth::{Permission, Role};
use coffer_domain::ports::{
    DatabaseHealth, RepoError, RoleRepository, SettingsRepository, StoredRole,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
};

use crate::entities::{roles, settings};
use crate::error::repo_err;

/// `DatabaseHealth` over a sea-orm pool.
#[derive(Clone)]
pub struct SeaDatabaseHealth {
    conn: DatabaseConnection,
}

impl SeaDatabaseHealth {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl DatabaseHealth for SeaDatabaseHealth {
    async fn ping(&self) -> Result<(), RepoError> {
        self.conn.ping().await.map_err(|e| repo_err(&e))
    }
}

/// `RoleRepository` over the `roles` table.
#[derive(Clone)]
pub struct SeaRoleRepository {
    conn: DatabaseConnection,
}

impl SeaRoleRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

/// Turns a row into a domain role, refusing rows whose stored permissions disagree with
/// the domain policy: the table documents the policy, it does not override it.
fn to_stored_role(row: &roles::Model) -> Result<StoredRole, RepoError> {
    let role: Role = row
        .name
        .parse()
        .map_err(|e| RepoError::Corrupt(format!("roles.id={}: {e}", row.id)))?;
    let names: Vec<String> = serde_json::from_str(&row.permissions).map_err(|e| {
        RepoError::Corrupt(format!(
            "roles.id={} permissions are not a JSON list: {e}",
            row.id
        ))
    })?;
    let mut stored = names
        .iter()
        .map(|n| n.parse::<Permission>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RepoError::Corrupt(format!("roles.id={}: {e}", row.id)))?;
    stored.sort();
    stored.dedup();
    if stored != role.permissions() {
        return Err(RepoError::Corrupt(format!(
            "roles.id={} ({role}) lists permissions {names:?}, but the built-in policy grants {:?}",
            row.id,
            role.permissions()
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
        )));
    }
    Ok(StoredRole { id: row.id, role })
}

#[async_trait]
impl RoleRepository for SeaRoleRepository {
    async fn list(&self) -> Result<Vec<StoredRole>, RepoError> {
        roles::Entity::find()
            .order_by_asc(roles::Column::Id)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(|row| to_stored_role(&row))
            .collect()
    }

    async fn find_by_name(&self, role: Role) -> Result<Option<StoredRole>, RepoError> {
        roles::Entity::find()
            .filter(roles::Column::Name.eq(role.as_str()))
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|row| to_stored_role(&row))
            .transpose()
    }
}

/// `SettingsRepository` over the `settings` table.
#[derive(Clone)]
pub struct SeaSettingsRepository {
    conn: DatabaseConnection,
}

impl SeaSettingsRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl SettingsRepository for SeaSettingsRepository {
    async fn get(&self, key: &str) -> Result<Option<String>, RepoError> {
        Ok(settings::Entity::find_by_id(key.to_owned())
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|row| row.value))
    }

    async fn put(&self, key: &str, value: &str) -> Result<(), RepoError> {
        let row = settings::ActiveModel {
            key: Set(key.to_owned()),
            value: Set(value.to_owned()),
            updated_at: Set(Utc::now()),
        };
        settings::Entity::insert(row)
            .on_conflict(
                OnConflict::column(settings::Column::Key)
                    .update_columns([settings::Column::Value, settings::Column::UpdatedAt])
                    .to_owned(),
            )
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(String, String)>, RepoError> {
        Ok(settings::Entity::find()
            .order_by_asc(settings::Column::Key)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(|row| (row.key, row.value))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<bool, RepoError> {
        let result = settings::Entity::delete_by_id(key.to_owned())
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(result.rows_affected > 0)
    }
}
