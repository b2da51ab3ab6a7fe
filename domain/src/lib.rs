//! `coffer-domain`: the vocabulary of Coffer — identifiers, roles and permissions, the
//! storage and catalog ports — and the pure policies that decide things about them.
//!
//! This crate does no I/O and picks no runtime: no tokio, no database, no web framework,
//! no object store. Time, randomness and configuration come in as arguments so that every
//! rule can be table-tested. Adapters implement the ports declared here; the application
//! layer drives them.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod crypto;
pub mod engine;
pub mod ids;
pub mod jobs;
pub mod ports;
pub mod retention;
pub mod schedule;
pub mod secrets;
pub mod storage;
pub mod throttle;

pub use ids::{AlertId, BackupId, JobId, SourceId, UserId};
