//! sea-orm entities, one per table of `coffer-migration`'s schema. They are the adapter's
//! private shape of the rows; ports speak in domain types.

pub mod alerts;
pub mod api_tokens;
pub mod audit_logs;
pub mod backups;
pub mod counters;
pub mod job_logs;
pub mod jobs;
pub mod login_throttle;
pub mod replicas;
pub mod revoked_sessions;
pub mod roles;
pub mod settings;
pub mod sources;
pub mod storage_history;
pub mod users;
