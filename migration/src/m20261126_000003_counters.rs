//! Maintained counters, so that the dashboard and `/metrics` never scan the catalog:
//! `counters (name, value)`, one row per figure. The catalog keeps its own counters exact
//! in the transaction of each write:
//! - `backups.count.<status>`: snapshots per status (`ok`, `partial`, ...);
//! - `backups.logical_bytes`: the sum of `backups.size`;
//! - `backups.stored_bytes_added`: the sum of `backups.stored_bytes_added`.
//!
//! Other names belong to whoever writes them (storage usage, for example). This step
//! backfills the catalog's counters from the rows already there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Counters {
    Table,
    Name,
    Value,
}

/// Counts per status and the byte sums of the rows present when the step runs. Plain SQL
/// that SQLite and PostgreSQL read alike (`||` concatenates in both; `SUM` of a
/// `BIGINT` is `NUMERIC` on PostgreSQL, hence the cast).
const BACKFILL: [&str; 3] = [
    "INSERT INTO counters (name, value) \
     SELECT 'backups.count.' || status, COUNT(*) FROM backups GROUP BY status",
    "INSERT INTO counters (name, value) \
     SELECT 'backups.logical_bytes', CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM backups",
    "INSERT INTO counters (name, value) \
     SELECT 'backups.stored_bytes_added', CAST(COALESCE(SUM(stored_bytes_added), 0) AS BIGINT) \
     FROM backups",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Counters::Table)
                    .if_not_exists()
                    .col(string(Counters::Name).primary_key())
                    .col(big_integer(Counters::Value).default(0))
                    .to_owned(),
            )
            .await?;
        let conn = manager.get_connection();
        for sql in BACKFILL {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Counters::Table).if_exists().to_owned())
            .await
    }
}
