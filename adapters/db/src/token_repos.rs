//! Personal access tokens (`api_tokens`, joined with `users` for the owner's name).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::auth::Role;
use coffer_domain::ports::{ApiTokenRepository, NewApiToken, RepoError};
use coffer_domain::tokens::ApiToken;
use coffer_domain::{ApiTokenId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder,
};

use crate::entities::{api_tokens, users};
use crate::error::repo_err;

fn to_token(row: api_tokens::Model, owner: Option<users::Model>) -> Result<ApiToken, RepoError> {
    let owner = owner.ok_or_else(|| {
        RepoError::Corrupt(format!(
            "api_tokens.id={} has no user {}",
            row.id, row.user_id
        ))
    })?;
    let role = row
        .role
        .as_deref()
        .map(str::parse::<Role>)
        .transpose()
        .map_err(|e| RepoError::Corrupt(format!("api_tokens.id={}: {e}", row.id)))?;
    Ok(ApiToken {
        id: ApiTokenId::new(row.id),
        user_id: UserId::new(row.user_id),
        username: owner.username,
        name: row.name,
        role,
        created_at: row.created_at,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
        last_used_ip: row.last_used_ip,
    })
}

/// `ApiTokenRepository` over `api_tokens`.
#[derive(Clone)]
pub struct SeaApiTokenRepository {
    conn: DatabaseConnection,
}

impl SeaApiTokenRepository {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl ApiTokenRepository for SeaApiTokenRepository {
    async fn create(&self, token: &NewApiToken) -> Result<ApiToken, RepoError> {
        let row = api_tokens::ActiveModel {
            user_id: Set(token.user_id.get()),
            name: Set(token.name.clone()),
            role: Set(token.role.map(|r| r.as_str().to_owned())),
            secret_hash: Set(token.secret_hash.clone()),
            created_at: Set(token.created_at),
            expires_at: Set(token.expires_at),
            last_used_at: Set(None),
            last_used_ip: Set(None),
            ..Default::default()
        }
        .insert(&self.conn)
        .await
        .map_err(|e| repo_err(&e))?;
        self.get(ApiTokenId::new(row.id))
            .await?
            .ok_or_else(|| RepoError::Corrupt(format!("api_tokens.id={} vanished", row.id)))
    }

    async fn find_by_hash(&self, hash: &str) -> Result<Option<(ApiToken, String)>, RepoError> {
        api_tokens::Entity::find()
            .filter(api_tokens::Column::SecretHash.eq(hash))
            .find_also_related(users::Entity)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|(row, owner)| {
                let stored = row.secret_hash.clone();
                to_token(row, owner).map(|t| (t, stored))
            })
            .transpose()
    }

    async fn get(&self, id: ApiTokenId) -> Result<Option<ApiToken>, RepoError> {
        api_tokens::Entity::find_by_id(id.get())
            .find_also_related(users::Entity)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|(row, owner)| to_token(row, owner))
            .transpose()
    }

    async fn list(&self, owner: Option<UserId>) -> Result<Vec<ApiToken>, RepoError> {
        let mut query = api_tokens::Entity::find();
        if let Some(owner) = owner {
            query = query.filter(api_tokens::Column::UserId.eq(owner.get()));
        }
        query
            .find_also_related(users::Entity)
            .order_by_desc(api_tokens::Column::Id)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(|(row, owner)| to_token(row, owner))
            .collect()
    }

    async fn delete(&self, id: ApiTokenId) -> Result<bool, RepoError> {
        Ok(api_tokens::Entity::delete_by_id(id.get())
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .rows_affected
            > 0)
    }

    async fn touch(
        &self,
        id: ApiTokenId,
        at: DateTime<Utc>,
        ip: Option<&str>,
    ) -> Result<(), RepoError> {
        api_tokens::Entity::update_many()
            .col_expr(api_tokens::Column::LastUsedAt, Expr::value(Some(at)))
            .col_expr(
                api_tokens::Column::LastUsedIp,
                Expr::value(ip.map(str::to_owned)),
            )
            .filter(api_tokens::Column::Id.eq(id.get()))
            .exec(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?;
        Ok(())
    }
}
