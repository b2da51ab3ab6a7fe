//! `storage_history (day, stored_bytes)`: the bytes in storage, one sample per UTC day
//! (the last value recorded that day), for the PDF report's chart. `day` is the date as
//! `YYYY-MM-DD` text: it sorts and compares alike on SQLite and PostgreSQL, and is the
//! primary key, so a day's sample is replaced by an upsert.
//!
//! Nothing is backfilled: there is no history before this step, and the report says so
//! ("no data yet") rather than inventing one.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum StorageHistory {
    Table,
    Day,
    StoredBytes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StorageHistory::Table)
                    .if_not_exists()
                    .col(string(StorageHistory::Day).string_len(10).primary_key())
                    .col(big_integer(StorageHistory::StoredBytes))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(StorageHistory::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
