//! `coffer-migration`: the catalog database's schema, as ordered sea-orm-migration steps.
//!
//! The server runs `Migrator::up` at every start; it applies only the steps not yet
//! recorded in `seaql_migrations`, so running it again is a no-op. Steps are frozen once
//! released: change the schema or its seeded data with a new step, never by editing one.
//! Every step must work on SQLite and PostgreSQL alike.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_initial_schema;
mod m20261126_000002_sessions_and_audit_chain;
mod m20261126_000003_counters;
mod m20261126_000005_backups_source_latest_index;
mod m20261126_000006_audit_filter_indexes;
mod m20261127_000007_storage_history;
mod m20261205_000008_backups_suspicious;
mod m20261205_000009_replicas;
mod m20261206_000010_job_leases;
mod m20261206_000011_login_throttle;
mod m20261206_000012_api_tokens;
mod m20261206_000013_source_excludes;
mod m20261206_000014_job_logs;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_initial_schema::Migration),
            Box::new(m20261126_000002_sessions_and_audit_chain::Migration),
            Box::new(m20261126_000003_counters::Migration),
            Box::new(m20261126_000005_backups_source_latest_index::Migration),
            Box::new(m20261126_000006_audit_filter_indexes::Migration),
            Box::new(m20261127_000007_storage_history::Migration),
            Box::new(m20261205_000008_backups_suspicious::Migration),
            Box::new(m20261205_000009_replicas::Migration),
            Box::new(m20261206_000010_job_leases::Migration),
            Box::new(m20261206_000011_login_throttle::Migration),
            Box::new(m20261206_000012_api_tokens::Migration),
            Box::new(m20261206_000013_source_excludes::Migration),
            Box::new(m20261206_000014_job_logs::Migration),
        ]
    }
}
