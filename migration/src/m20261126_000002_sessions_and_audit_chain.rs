//! Sessions and the tamper-evident audit trail:
//! - `users.token_generation`: bumped to end every session of a user at once;
//! - `revoked_sessions`: token ids ended by logout before their expiry;
//! - `audit_logs.prev_hash` / `row_hash`: the SHA-256 hash chain;
//! - the `audit` permission (read the audit trail), granted to admin.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, string, string_len, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    TokenGeneration,
}

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    PrevHash,
    RowHash,
}

#[derive(DeriveIden)]
enum RevokedSessions {
    Table,
    TokenId,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(big_integer(Users::TokenGeneration).default(0))
                    .to_owned(),
            )
            .await?;
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLogs::Table)
                    .add_column(string(AuditLogs::PrevHash).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(AuditLogs::Table)
                    .add_column(string(AuditLogs::RowHash).default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RevokedSessions::Table)
                    .if_not_exists()
                    .col(string_len(RevokedSessions::TokenId, 64).primary_key())
                    .col(timestamp_with_time_zone(RevokedSessions::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idx_revoked_sessions_expires")
                    .table(RevokedSessions::Table)
                    .col(RevokedSessions::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                r#"UPDATE roles SET permissions = '["view","backup","restore","export","manage_users","manage_system","audit"]' WHERE name = 'admin'"#,
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                r#"UPDATE roles SET permissions = '["view","backup","restore","export","manage_users","manage_system"]' WHERE name = 'admin'"#,
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(RevokedSessions::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        for column in [AuditLogs::RowHash, AuditLogs::PrevHash] {
            manager
                .alter_table(
                    Table::alter()
                        .table(AuditLogs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::TokenGeneration)
                    .to_owned(),
            )
            .await
    }
}
