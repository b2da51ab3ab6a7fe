//! `job_logs`: each job's log (issue 17), one row per line.
//!
//! `(job_id, seq)` is the key: `seq` numbers a job's lines 1, 2, 3, ... in the order its
//! runner wrote them, so a reader following a running job asks for the lines after the
//! last one it has. `level` is `info`, `warning` or `error`; `contents` marks a line that
//! names what is in a backup (hidden from callers without the `restore` permission).
//! A log is bounded by its writer (`coffer_domain::joblog`), and goes with its job.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, string_len, text, timestamp_with_time_zone};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum JobLogs {
    Table,
    JobId,
    Seq,
    At,
    Level,
    Message,
    Contents,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobLogs::Table)
                    .if_not_exists()
                    .col(string_len(JobLogs::JobId, 36))
                    .col(big_integer(JobLogs::Seq))
                    .col(timestamp_with_time_zone(JobLogs::At))
                    .col(string_len(JobLogs::Level, 8))
                    .col(text(JobLogs::Message))
                    .col(boolean(JobLogs::Contents).default(false))
                    .primary_key(Index::create().col(JobLogs::JobId).col(JobLogs::Seq))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_job_logs_job")
                            .from(JobLogs::Table, JobLogs::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobLogs::Table).if_exists().to_owned())
            .await
    }
}
