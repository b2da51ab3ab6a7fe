//! The jobs table becomes the queue every server instance takes work from:
//!
//! - `subject`: what at most one queued or running job may work on (`backup:<source>`,
//!   `prune`, `check`, `copy:<replica>`), enforced by a partial unique index, so that
//!   "one backup per source at a time" holds across instances;
//! - `actor`: who the job runs as (JSON), so that any instance can run it;
//! - `instance` and `lease_until`: which instance runs it and until when it may without
//!   renewing; a running job whose lease ran out is declared interrupted by another;
//! - `cancel_requested`: a cancel asked on one instance reaches the one running it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{boolean, string_null, text_null, timestamp_with_time_zone_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Subject,
    Actor,
    Instance,
    LeaseUntil,
    CancelRequested,
}

const ACTIVE_SUBJECT_INDEX: &str = "CREATE UNIQUE INDEX idx_jobs_active_subject ON jobs (subject) \
     WHERE subject IS NOT NULL AND state IN ('queued', 'running')";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite takes one column per ALTER TABLE.
        let mut cancel_requested = boolean(Jobs::CancelRequested);
        cancel_requested.default(false);
        for mut column in [
            string_null(Jobs::Subject),
            text_null(Jobs::Actor),
            string_null(Jobs::Instance),
            timestamp_with_time_zone_null(Jobs::LeaseUntil),
            cancel_requested,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        // A partial unique index: the same statement on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(ACTIVE_SUBJECT_INDEX)
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX idx_jobs_active_subject")
            .await?;
        for column in [
            Jobs::CancelRequested,
            Jobs::LeaseUntil,
            Jobs::Instance,
            Jobs::Actor,
            Jobs::Subject,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Jobs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
