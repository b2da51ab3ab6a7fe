//! `coffer-domain`: the vocabulary of Coffer — identifiers, roles and permissions, the
//! storage and catalog ports — and the pure policies that decide things about them.
//!
//! This crate does no I/O and picks no runtime: no tokio, no database, no web framework,
//! no object store. Time, randomness and configuration come in as arguments so that every
//! rule can be table-tested. Adapters implement the ports declared here; the application
//! layer drives them.

/// A name that is not one of an enum's names (a job kind, an alert severity, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownName(pub String);

/// `Display` and `FromStr` for an enum with `ALL` and `as_str`.
macro_rules! named {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $t {
            type Err = $crate::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::UnknownName(s.to_owned()))
            }
        }
    };
}

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod charts;
pub mod crypto;
pub mod digest;
pub mod engine;
pub mod excludes;
pub mod ids;
pub mod import;
pub mod joblog;
pub mod jobs;
pub mod ports;
pub mod replicas;
pub mod reports;
pub mod retention;
pub mod schedule;
pub mod secrets;
pub mod storage;
pub mod throttle;
pub mod tokens;
pub mod units;

pub use ids::{
    AlertId, ApiTokenId, BackupId, InvalidSnapshotId, JobId, SnapshotId, SnapshotPrefix,
    SnapshotRef, SourceId, UnknownSnapshot, UserId,
};
