//! The daily history of the bytes in storage (`storage_history`).

use async_trait::async_trait;
use chrono::NaiveDate;
use coffer_domain::ports::RepoError;
use coffer_domain::reports::{StorageHistory, StorageSample};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _,
    QueryOrder as _,
};

use crate::entities::storage_history;
use crate::error::repo_err;

const DAY_FORMAT: &str = "%Y-%m-%d";

/// `StorageHistory` over the `storage_history` table.
#[derive(Clone)]
pub struct SeaStorageHistory {
    conn: DatabaseConnection,
}

impl SeaStorageHistory {
    pub(crate) fn new(conn: DatabaseConnection) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl StorageHistory for SeaStorageHistory {
    async fn record(&self, day: NaiveDate, stored_bytes: u64) -> Result<(), RepoError> {
        storage_history::Entity::insert(storage_history::ActiveModel {
            day: Set(day.format(DAY_FORMAT).to_string()),
            stored_bytes: Set(i64::try_from(stored_bytes).unwrap_or(i64::MAX)),
        })
        .on_conflict(
            OnConflict::column(storage_history::Column::Day)
                .update_column(storage_history::Column::StoredBytes)
                .to_owned(),
        )
        .exec(&self.conn)
        .await
        .map_err(|e| repo_err(&e))?;
        Ok(())
    }

    async fn list(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StorageSample>, RepoError> {
        storage_history::Entity::find()
            .filter(storage_history::Column::Day.gte(from.format(DAY_FORMAT).to_string()))
            .filter(storage_history::Column::Day.lte(to.format(DAY_FORMAT).to_string()))
            .order_by_asc(storage_history::Column::Day)
            .all(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .into_iter()
            .map(|row| to_sample(&row))
            .collect()
    }

    async fn latest_on_or_before(
        &self,
        day: NaiveDate,
    ) -> Result<Option<StorageSample>, RepoError> {
        // The primary key's index, read backwards from `day`: one row.
        storage_history::Entity::find()
            .filter(storage_history::Column::Day.lte(day.format(DAY_FORMAT).to_string()))
            .order_by_desc(storage_history::Column::Day)
            .one(&self.conn)
            .await
            .map_err(|e| repo_err(&e))?
            .map(|row| to_sample(&row))
            .transpose()
    }
}

fn to_sample(row: &storage_history::Model) -> Result<StorageSample, RepoError> {
    let day = NaiveDate::parse_from_str(&row.day, DAY_FORMAT)
        .map_err(|e| RepoError::Corrupt(format!("storage_history.day `{}`: {e}", row.day)))?;
    let stored_bytes = u64::try_from(row.stored_bytes).map_err(|_| {
        RepoError::Corrupt(format!(
            "storage_history `{}` is negative ({})",
            row.day, row.stored_bytes
        ))
    })?;
    Ok(StorageSample { day, stored_bytes })
}
