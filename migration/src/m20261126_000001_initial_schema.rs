//! The first schema: the prototype's tables (`backups`, `users`, `roles`, `audit_logs`)
//! and the ones the server needs beside them (`sources`, `jobs`, `alerts`, `settings`),
//! with the indexes that serve the product's queries, and the three built-in roles.
//!
//! Ids are 64-bit everywhere (`BIGINT` on PostgreSQL; SQLite's `INTEGER` is 64-bit).
//! Times are UTC timestamps with time zone.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, big_pk_auto, boolean, string, string_len, string_null,
    string_uniq, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Roles {
    Table,
    Id,
    Name,
    Permissions,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    PasswordHash,
    RoleId,
    CreatedAt,
    UpdatedAt,
    LastLogin,
    IsActive,
}

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    Id,
    Username,
    Action,
    Resource,
    Timestamp,
    IpAddress,
    UserAgent,
    Success,
    Detail,
}

#[derive(DeriveIden)]
enum Sources {
    Table,
    Id,
    Name,
    Path,
    Schedule,
    Retention,
    Enabled,
    CreatedAt,
    UpdatedAt,
    LastRunAt,
    NextRunAt,
}

#[derive(DeriveIden)]
enum Backups {
    Table,
    Id,
    SnapshotId,
    SourceId,
    SourceName,
    Size,
    CreatedAt,
    FinishedAt,
    Status,
    Checksum,
    Encrypted,
    FileCount,
    DirCount,
    BytesAdded,
    StoredBytesAdded,
    DurationMs,
    Warnings,
    ParentSnapshotId,
    Protected,
    VerifiedAt,
    VerifyResult,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Kind,
    State,
    SourceId,
    SnapshotId,
    RequestedBy,
    Params,
    Progress,
    Result,
    Error,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    Severity,
    Kind,
    Message,
    SourceId,
    CreatedAt,
    AcknowledgedAt,
    AcknowledgedBy,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
    UpdatedAt,
}

/// The built-in roles as the prototype stored them: a name and a JSON list of
/// permissions. The domain's `Role::allows` is the policy; the database adapter refuses
/// rows that disagree with it, so a change of policy comes with a new migration step.
const SEEDED_ROLES: [(i64, &str, &str); 3] = [
    (
        1,
        "admin",
        r#"["view","backup","restore","export","manage_users","manage_system"]"#,
    ),
    (2, "operator", r#"["view","backup","restore"]"#),
    (3, "viewer", r#"["view"]"#),
];

fn index(name: &str, table: impl IntoIden + 'static) -> IndexCreateStatement {
    Index::create()
        .if_not_exists()
        .name(name)
        .table(table)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Roles::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Roles::Id))
                    .col(string_uniq(Roles::Name))
                    .col(text(Roles::Permissions))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Users::Id))
                    .col(string_uniq(Users::Username))
                    .col(string(Users::PasswordHash))
                    .col(big_integer(Users::RoleId))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::LastLogin))
                    .col(boolean(Users::IsActive).default(true))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_users_role")
                            .from(Users::Table, Users::RoleId)
                            .to(Roles::Table, Roles::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuditLogs::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AuditLogs::Id))
                    .col(string(AuditLogs::Username))
                    .col(string(AuditLogs::Action))
                    .col(string_null(AuditLogs::Resource))
                    .col(timestamp_with_time_zone(AuditLogs::Timestamp))
                    .col(string_null(AuditLogs::IpAddress))
                    .col(text_null(AuditLogs::UserAgent))
                    .col(boolean(AuditLogs::Success).default(true))
                    .col(text_null(AuditLogs::Detail))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sources::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Sources::Id))
                    .col(string_uniq(Sources::Name))
                    .col(text(Sources::Path))
                    .col(string_null(Sources::Schedule))
                    .col(text_null(Sources::Retention))
                    .col(boolean(Sources::Enabled).default(true))
                    .col(timestamp_with_time_zone(Sources::CreatedAt))
                    .col(timestamp_with_time_zone(Sources::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Sources::LastRunAt))
                    .col(timestamp_with_time_zone_null(Sources::NextRunAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Backups::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Backups::Id))
                    .col(string_len(Backups::SnapshotId, 64).unique_key())
                    .col(big_integer_null(Backups::SourceId))
                    .col(string(Backups::SourceName))
                    .col(big_integer(Backups::Size).default(0))
                    .col(timestamp_with_time_zone(Backups::CreatedAt))
                    .col(timestamp_with_time_zone_null(Backups::FinishedAt))
                    .col(string(Backups::Status))
                    .col(string_null(Backups::Checksum))
                    .col(boolean(Backups::Encrypted).default(false))
                    .col(big_integer(Backups::FileCount).default(0))
                    .col(big_integer(Backups::DirCount).default(0))
                    .col(big_integer(Backups::BytesAdded).default(0))
                    .col(big_integer(Backups::StoredBytesAdded).default(0))
                    .col(big_integer(Backups::DurationMs).default(0))
                    .col(text_null(Backups::Warnings))
                    .col(string_null(Backups::ParentSnapshotId))
                    .col(boolean(Backups::Protected).default(false))
                    .col(timestamp_with_time_zone_null(Backups::VerifiedAt))
                    .col(string_null(Backups::VerifyResult))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_backups_source")
                            .from(Backups::Table, Backups::SourceId)
                            .to(Sources::Table, Sources::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(string_len(Jobs::Id, 36).primary_key())
                    .col(string(Jobs::Kind))
                    .col(string(Jobs::State))
                    .col(big_integer_null(Jobs::SourceId))
                    .col(string_null(Jobs::SnapshotId))
                    .col(string(Jobs::RequestedBy))
                    .col(text(Jobs::Params))
                    .col(text_null(Jobs::Progress))
                    .col(text_null(Jobs::Result))
                    .col(text_null(Jobs::Error))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_jobs_source")
                            .from(Jobs::Table, Jobs::SourceId)
                            .to(Sources::Table, Sources::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Alerts::Id))
                    .col(string(Alerts::Severity))
                    .col(string(Alerts::Kind))
                    .col(text(Alerts::Message))
                    .col(big_integer_null(Alerts::SourceId))
                    .col(timestamp_with_time_zone(Alerts::CreatedAt))
                    .col(timestamp_with_time_zone_null(Alerts::AcknowledgedAt))
                    .col(string_null(Alerts::AcknowledgedBy))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alerts_source")
                            .from(Alerts::Table, Alerts::SourceId)
                            .to(Sources::Table, Sources::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .if_not_exists()
                    .col(string(Settings::Key).primary_key())
                    .col(text(Settings::Value))
                    .col(timestamp_with_time_zone(Settings::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        // Indexes for the product's queries: history newest first, by source and status;
        // audit by time, user and action; the job queue; unacknowledged alerts.
        for statement in [
            index("idx_backups_created_at", Backups::Table)
                .col(Backups::CreatedAt)
                .to_owned(),
            index("idx_backups_source_created", Backups::Table)
                .col(Backups::SourceId)
                .col(Backups::CreatedAt)
                .to_owned(),
            index("idx_backups_status_created", Backups::Table)
                .col(Backups::Status)
                .col(Backups::CreatedAt)
                .to_owned(),
            index("idx_audit_timestamp", AuditLogs::Table)
                .col(AuditLogs::Timestamp)
                .to_owned(),
            index("idx_audit_username_timestamp", AuditLogs::Table)
                .col(AuditLogs::Username)
                .col(AuditLogs::Timestamp)
                .to_owned(),
            index("idx_audit_action_timestamp", AuditLogs::Table)
                .col(AuditLogs::Action)
                .col(AuditLogs::Timestamp)
                .to_owned(),
            index("idx_users_role", Users::Table)
                .col(Users::RoleId)
                .to_owned(),
            index("idx_jobs_state_created", Jobs::Table)
                .col(Jobs::State)
                .col(Jobs::CreatedAt)
                .to_owned(),
            index("idx_jobs_source_state", Jobs::Table)
                .col(Jobs::SourceId)
                .col(Jobs::State)
                .to_owned(),
            index("idx_alerts_ack_created", Alerts::Table)
                .col(Alerts::AcknowledgedAt)
                .col(Alerts::CreatedAt)
                .to_owned(),
        ] {
            manager.create_index(statement).await?;
        }

        let mut insert = Query::insert()
            .into_table(Roles::Table)
            .columns([Roles::Id, Roles::Name, Roles::Permissions])
            .to_owned();
        for (id, name, permissions) in SEEDED_ROLES {
            insert
                .values([id.into(), name.into(), permissions.into()])
                .map_err(|e| DbErr::Migration(format!("seeding roles: {e}")))?;
        }
        manager.exec_stmt(insert).await?;

        // The roles were inserted with explicit ids: move PostgreSQL's sequence past them
        // so a later insert without an id cannot collide.
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared(
                    "SELECT setval(pg_get_serial_sequence('roles', 'id'), (SELECT MAX(id) FROM roles))",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Settings::Table.into_iden(),
            Alerts::Table.into_iden(),
            Jobs::Table.into_iden(),
            Backups::Table.into_iden(),
            Sources::Table.into_iden(),
            AuditLogs::Table.into_iden(),
            Users::Table.into_iden(),
            Roles::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
