//! `api_tokens`: personal access tokens for automation (issue 16 §2).
//!
//! One row per token: its owner (`user_id`, deleted with the user), a `name`, the `role`
//! it is limited to (null: the owner's), `created_at`, `expires_at` (null: never) and the
//! last use (`last_used_at`, `last_used_ip`, written at most once a minute). The secret
//! itself is never stored: `secret_hash` is its SHA-256, hex, unique, and how a bearer
//! value finds its row (`coffer_domain::tokens`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_pk_auto, string, string_len, string_len_null, string_null,
    timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    UserId,
    Name,
    Role,
    SecretHash,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    LastUsedIp,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

const HASH_INDEX: &str = "idx_api_tokens_secret_hash";
const USER_INDEX: &str = "idx_api_tokens_user";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ApiTokens::Id))
                    .col(big_integer(ApiTokens::UserId))
                    .col(string(ApiTokens::Name))
                    .col(string_len_null(ApiTokens::Role, 16))
                    .col(string_len(ApiTokens::SecretHash, 64))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(string_null(ApiTokens::LastUsedIp))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_api_tokens_user")
                            .from(ApiTokens::Table, ApiTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(HASH_INDEX)
                    .table(ApiTokens::Table)
                    .col(ApiTokens::SecretHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(USER_INDEX)
                    .table(ApiTokens::Table)
                    .col(ApiTokens::UserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApiTokens::Table).if_exists().to_owned())
            .await
    }
}
