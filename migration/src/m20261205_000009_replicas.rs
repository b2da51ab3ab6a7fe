//! `replicas`: the off-site copies an administrator configured (or the configuration
//! file's `[[replicas]]`, marked `from_config`), with the outcome of their copies and the
//! scheduler's plan. A replica's storage is described by the fields of `[storage]`
//! (`backend`; `root` for `fs`; `endpoint`, `bucket`, `region`, `prefix`, `path_style` and
//! the path of a `credentials_file` for `s3`); nothing secret is stored here.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    boolean, boolean_null, integer_null, string, string_len, string_null, text_null,
    timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Replicas {
    Table,
    Name,
    Backend,
    Root,
    Endpoint,
    Bucket,
    Region,
    Prefix,
    PathStyle,
    CredentialsFile,
    AppendOnly,
    Schedule,
    MaxLagSnapshots,
    MaxLagHours,
    FromConfig,
    CreatedAt,
    LastSuccessAt,
    CopiedThrough,
    LastFailureAt,
    LastError,
    NextRunAt,
    LastRunAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Replicas::Table)
                    .if_not_exists()
                    .col(string_len(Replicas::Name, 64).primary_key())
                    .col(string(Replicas::Backend))
                    .col(text_null(Replicas::Root))
                    .col(text_null(Replicas::Endpoint))
                    .col(string_null(Replicas::Bucket))
                    .col(string_null(Replicas::Region))
                    .col(text_null(Replicas::Prefix))
                    .col(boolean_null(Replicas::PathStyle))
                    .col(text_null(Replicas::CredentialsFile))
                    .col(boolean(Replicas::AppendOnly).default(false))
                    .col(string_null(Replicas::Schedule))
                    .col(integer_null(Replicas::MaxLagSnapshots))
                    .col(integer_null(Replicas::MaxLagHours))
                    .col(boolean(Replicas::FromConfig).default(false))
                    .col(timestamp_with_time_zone(Replicas::CreatedAt))
                    .col(timestamp_with_time_zone_null(Replicas::LastSuccessAt))
                    .col(timestamp_with_time_zone_null(Replicas::CopiedThrough))
                    .col(timestamp_with_time_zone_null(Replicas::LastFailureAt))
                    .col(text_null(Replicas::LastError))
                    .col(timestamp_with_time_zone_null(Replicas::NextRunAt))
                    .col(timestamp_with_time_zone_null(Replicas::LastRunAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Replicas::Table).if_exists().to_owned())
            .await
    }
}
