//! Replicas (off-site copies): further backends that copy jobs keep in step with the
//! repository, each a complete repository of the same format that the master key alone
//! opens. This module holds their vocabulary, the lag policy, and the copy port.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::engine::{Cancel, EngineFailure, Progress, PruneReport};
use crate::ports::RepoError;
use crate::schedule::Schedule;

/// A replica's name: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// a digit (it appears in URLs, metrics labels and audit rows).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplicaName(String);

/// Why a string is not a [`ReplicaName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a replica name is 1 to 64 characters of A-Z a-z 0-9 . _ -, starting with a letter or a digit"
)]
pub struct ReplicaNameError;

impl ReplicaName {
    /// Parses a name.
    ///
    /// # Errors
    /// When the name breaks the rules in the type's documentation.
    pub fn parse(raw: &str) -> Result<Self, ReplicaNameError> {
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ReplicaNameError)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a replica is kept: the same fields as the repository's own `[storage]`, and
/// nothing secret (credentials stay in files on the server, named by path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaLocation {
    /// A directory: another disk, a NAS mount. Absolute.
    Fs { root: String },
    /// A bucket (or a prefix in it) of an S3-compatible store.
    S3(S3Location),
}

/// An S3 replica's place: `[storage]`'s S3 keys. The credentials are in a file on the
/// server (mode 0600), named here; never in the catalog or the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The service's URL; `None`: AWS's endpoint for `region`.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Keys start with this path inside the bucket (`""`: the bucket's root).
    pub prefix: String,
    /// `endpoint/bucket` addressing (Garage, MinIO, Ceph) rather than `bucket.endpoint`.
    pub path_style: bool,
    /// The absolute path of the credentials file on the server.
    pub credentials_file: String,
}

impl ReplicaLocation {
    /// The backend's name, as `[storage].backend` spells it.
    #[must_use]
    pub const fn backend(&self) -> &'static str {
        match self {
            Self::Fs { .. } => "fs",
            Self::S3(_) => "s3",
        }
    }

    /// Where it is, for people: the directory, or the bucket and prefix at the endpoint
    /// (never a credential).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Fs { root } => root.clone(),
            Self::S3(s3) => format!(
                "s3://{}/{}{}",
                s3.bucket,
                s3.prefix,
                s3.endpoint
                    .as_deref()
                    .map_or_else(String::new, |e| format!(" at {e}"))
            ),
        }
    }

    /// Whether writing to one could write into the other: the same directory or one
    /// inside the other, or the same bucket of the same endpoint with one prefix inside
    /// the other.
    #[must_use]
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Fs { root: a }, Self::Fs { root: b }) => {
                std::path::Path::new(a).starts_with(b) || std::path::Path::new(b).starts_with(a)
            }
            (Self::S3(a), Self::S3(b)) => {
                let dir = |p: &str| {
                    let p = p.trim_matches('/');
                    if p.is_empty() {
                        String::new()
                    } else {
                        format!("{p}/")
                    }
                };
                let (pa, pb) = (dir(&a.prefix), dir(&b.prefix));
                a.endpoint == b.endpoint
                    && a.bucket == b.bucket
                    && (pa.starts_with(&pb) || pb.starts_with(&pa))
            }
            _ => false,
        }
    }
}

/// When a replica counts as lagging; `None` limits are not checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagLimits {
    /// More snapshots than this not yet copied.
    pub max_snapshots: Option<u32>,
    /// The oldest snapshot not yet copied older than this many hours.
    pub max_age_hours: Option<u32>,
}

/// What an administrator configures of a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSpec {
    pub name: ReplicaName,
    pub location: ReplicaLocation,
    /// Never delete anything on the replica (ransomware protection): snapshots the
    /// repository's retention removed stay there, and it is never pruned.
    pub append_only: bool,
    /// When copies start on their own (cron, UTC); `None`: only on demand.
    pub schedule: Option<Schedule>,
    pub lag: LagLimits,
}

/// A replica as recorded, with the outcome of its copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub spec: ReplicaSpec,
    /// Defined by a `[[replicas]]` entry of the configuration file: read-only in the API.
    pub from_config: bool,
    pub created_at: DateTime<Utc>,
    /// When the last successful copy ended.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Everything the repository held at this time is on the replica: the moment the
    /// last successful copy listed the repository's snapshots.
    pub copied_through: Option<DateTime<Utc>>,
    /// When the last failed copy ended, and why it failed (no secret, no server path).
    pub last_failure_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The scheduler's plan.
    pub next_run_at: Option<DateTime<Utc>>,
    pub last_run_at: Option<DateTime<Utc>>,
}

/// How far a replica is behind the repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Snapshots of the repository not yet copied.
    pub snapshots: u64,
    /// When the oldest of them was taken.
    pub oldest: Option<DateTime<Utc>>,
}

impl Lag {
    /// The age of the oldest snapshot not yet copied, at `now`.
    #[must_use]
    pub fn age(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.oldest.map(|t| (now - t).max(TimeDelta::zero()))
    }

    /// Why this lag passes `limits`, if it does.
    #[must_use]
    pub fn exceeds(&self, limits: LagLimits, now: DateTime<Utc>) -> Option<String> {
        if let Some(max) = limits.max_snapshots
            && self.snapshots > u64::from(max)
        {
            return Some(format!(
                "{} snapshots not yet copied (limit {max})",
                self.snapshots
            ));
        }
        if let (Some(max), Some(age)) = (limits.max_age_hours, self.age(now))
            && age > TimeDelta::hours(i64::from(max))
        {
            return Some(format!(
                "the oldest snapshot not yet copied is {} hours old (limit {max})",
                age.num_hours()
            ));
        }
        None
    }
}

/// How to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Delete nothing on the replica.
    pub append_only: bool,
    /// The prune of a replica that is not append-only repacks packs this unused.
    pub repack_threshold_percent: u8,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// When the repository's snapshots were listed: everything committed before is on
    /// the replica now.
    pub listed_at: DateTime<Utc>,
    /// Snapshots in the repository, and on the replica once the copy ended.
    pub snapshots: u64,
    pub replica_snapshots: u64,
    /// Objects written (and read back) and their bytes.
    pub objects_copied: u64,
    pub bytes_copied: u64,
    /// Objects the replica already held (not sent again).
    pub objects_present: u64,
    /// Snapshots the repository no longer has, deleted from the replica (never for an
    /// append-only one).
    pub snapshots_deleted: u64,
    /// Snapshot objects that failed their checksum in the repository: not copied.
    pub damaged_skipped: Vec<String>,
    /// The replica's garbage collection, when it ran.
    pub prune: Option<PruneReport>,
}

/// The replicas as recorded in the catalog.
///
/// Contract: names are unique (`create` of a taken name is `Conflict`); `list` is sorted
/// by name; `update` replaces the configured fields (`spec`, `from_config`) and keeps the
/// outcome of copies; `record_*` and `set_plan` of an unknown name change nothing and
/// succeed (the replica was removed meanwhile); a failure keeps the last success and a
/// success keeps the last failure (both are shown).
#[async_trait]
pub trait ReplicaRepository: Send + Sync {
    async fn create(
        &self,
        spec: &ReplicaSpec,
        from_config: bool,
        now: DateTime<Utc>,
    ) -> Result<Replica, RepoError>;
    async fn get(&self, name: &ReplicaName) -> Result<Option<Replica>, RepoError>;
    async fn list(&self) -> Result<Vec<Replica>, RepoError>;
    async fn update(&self, spec: &ReplicaSpec, from_config: bool) -> Result<bool, RepoError>;
    async fn delete(&self, name: &ReplicaName) -> Result<bool, RepoError>;
    async fn record_success(
        &self,
        name: &ReplicaName,
        at: DateTime<Utc>,
        copied_through: DateTime<Utc>,
    ) -> Result<(), RepoError>;
    async fn record_failure(
        &self,
        name: &ReplicaName,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), RepoError>;
    async fn set_plan(
        &self,
        name: &ReplicaName,
        next_run_at: Option<DateTime<Utc>>,
        last_run_at: Option<DateTime<Utc>>,
    ) -> Result<(), RepoError>;
}

/// Copies the repository into a replica's storage.
///
/// Contract: objects go in dependency order (packs, then indexes, then snapshots), so the
/// replica is a consistent repository at every moment; what the replica holds already
/// (same key and size) is not sent again, so a copy interrupted at any point (even by
/// `kill -9`) resumes where it stopped; every object written is read back and compared;
/// progress counts objects and bytes to send; `cancel` is honoured between objects.
#[async_trait]
pub trait Replicator: Send + Sync {
    async fn copy(
        &self,
        to: &ReplicaLocation,
        options: CopyOptions,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<CopyReport, EngineFailure>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names() {
        for ok in ["nas", "offsite-1", "b2.bucket_x", "9"] {
            assert_eq!(ReplicaName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "ü", &"a".repeat(65)] {
            assert!(ReplicaName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlapping_places() {
        let fs = |root: &str| ReplicaLocation::Fs { root: root.into() };
        assert!(fs("/srv/coffer").overlaps(&fs("/srv/coffer/repository")));
        assert!(fs("/srv/coffer/repository").overlaps(&fs("/srv")));
        assert!(!fs("/srv/coffer-replica").overlaps(&fs("/srv/coffer")));
        let s3 = |bucket: &str, prefix: &str| {
            ReplicaLocation::S3(S3Location {
                endpoint: Some("http://127.0.0.1:3900".into()),
                bucket: bucket.into(),
                region: "garage".into(),
                prefix: prefix.into(),
                path_style: true,
                credentials_file: "/etc/coffer/s3".into(),
            })
        };
        assert!(s3("b", "").overlaps(&s3("b", "repo")));
        assert!(s3("b", "repo/").overlaps(&s3("b", "repo/copy")));
        assert!(!s3("b", "repo").overlaps(&s3("b", "repo-copy")));
        assert!(!s3("b", "repo").overlaps(&s3("c", "repo")));
        assert!(!s3("b", "repo").overlaps(&fs("/repo")));
        assert_eq!(s3("b", "x").backend(), "s3");
        assert_eq!(s3("b", "x").describe(), "s3://b/x at http://127.0.0.1:3900");
    }

    #[test]
    fn lag_limits() {
        let now = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let lag = Lag {
            snapshots: 3,
            oldest: Some(now - TimeDelta::hours(30)),
        };
        assert_eq!(lag.exceeds(LagLimits::default(), now), None);
        let by_count = LagLimits {
            max_snapshots: Some(2),
            max_age_hours: None,
        };
        assert!(lag.exceeds(by_count, now).unwrap().contains("3 snapshots"));
        let count_ok = LagLimits {
            max_snapshots: Some(3),
            max_age_hours: None,
        };
        assert_eq!(lag.exceeds(count_ok, now), None);
        let by_age = LagLimits {
            max_snapshots: None,
            max_age_hours: Some(24),
        };
        assert!(lag.exceeds(by_age, now).unwrap().contains("30 hours"));
        let age_ok = LagLimits {
            max_snapshots: None,
            max_age_hours: Some(30),
        };
        assert_eq!(lag.exceeds(age_ok, now), None);
        assert_eq!(Lag::default().exceeds(by_age, now), None);
    }
}
