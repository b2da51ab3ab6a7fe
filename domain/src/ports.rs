//! Catalog ports: what the application needs from the database. The database is a
//! catalog — everything in it about snapshots can be rebuilt from storage — but users,
//! settings and the audit trail live only there.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{AuditEntry, AuditFilter, AuditRecord};
use crate::auth::{Role, Username};
use crate::engine::SnapshotStatus;
use crate::schedule::Schedule;
use crate::tokens::ApiToken;
use crate::{ApiTokenId, SnapshotId, SnapshotPrefix, UserId};

/// A failure of the catalog database.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A uniqueness rule was broken (a name already taken, for example).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or answered with an error.
    #[error("database error: {0}")]
    Database(String),
    /// A stored value could not be understood (corrupt or from a newer version).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Whether the database answers at all; what the health endpoint reports.
#[async_trait]
pub trait DatabaseHealth: Send + Sync {
    async fn ping(&self) -> Result<(), RepoError>;
}

/// A role as stored in the `roles` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRole {
    pub id: i64,
    pub role: Role,
}

/// The built-in roles, seeded by migration.
///
/// Contract: `list` returns every seeded role, ordered by id, with the permissions the
/// table holds; a permission list in the table that disagrees with [`Role::allows`] is
/// reported as [`RepoError::Corrupt`] rather than silently trusted.
#[async_trait]
pub trait RoleRepository: Send + Sync {
    async fn list(&self) -> Result<Vec<StoredRole>, RepoError>;
    async fn find_by_name(&self, role: Role) -> Result<Option<StoredRole>, RepoError>;
}

/// Run-time settings changed from the dashboard or API (they override configuration
/// defaults). Values are JSON text; the application layer gives them types.
///
/// Contract: `get` of a missing key is `Ok(None)`; `put` inserts or replaces; `list` is
/// ordered by key.
#[async_trait]
pub trait SettingsRepository: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<String>, RepoError>;
    async fn put(&self, key: &str, value: &str) -> Result<(), RepoError>;
    async fn list(&self) -> Result<Vec<(String, String)>, RepoError>;
    async fn delete(&self, key: &str) -> Result<bool, RepoError>;
}

/// A user account as the application sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub role: Role,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub last_login: Option<DateTime<Utc>>,
    /// Bumped whenever the user's sessions must end (deactivation, role or password
    /// change); a session token carries the generation it was issued under.
    pub token_generation: i64,
}

/// A user and the stored password hash, for login only.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

/// What changes in an update; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// User accounts.
///
/// Contract: usernames are unique (`create` of a taken name is `Conflict`); `update` and
/// `set_password_hash` bump `token_generation` when they change anything that must end
/// sessions (role, activation, password); lookups of missing users are `Ok(None)`.
#[async_trait]
pub trait UserRepository: Send + Sync {
    async fn count(&self) -> Result<u64, RepoError>;
    async fn create(
        &self,
        username: &Username,
        password_hash: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<User, RepoError>;
    async fn get(&self, id: UserId) -> Result<Option<User>, RepoError>;
    async fn find_by_username(&self, username: &str) -> Result<Option<User>, RepoError>;
    async fn credentials(&self, username: &str) -> Result<Option<UserCredentials>, RepoError>;
    async fn list(&self) -> Result<Vec<User>, RepoError>;
    async fn update(
        &self,
        id: UserId,
        changes: &UserChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError>;
    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<User>, RepoError>;
    /// Records a successful login, replacing the hash when it was upgraded.
    async fn record_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        upgraded_hash: Option<&str>,
    ) -> Result<(), RepoError>;
}

/// The append-only audit trail.
///
/// Contract: `append` assigns the next id and the hash chain atomically, even with
/// concurrent writers (rows are chained in id order); nothing updates or deletes rows.
/// `list` returns newest first; `scan` returns rows with id above `after_id`, oldest
/// first.
#[async_trait]
pub trait AuditRepository: Send + Sync {
    async fn append(
        &self,
        entry: &AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<AuditRecord, RepoError>;
    async fn list(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>, RepoError>;
    async fn scan(&self, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>, RepoError>;
}

/// A new personal access token, as stored: the secret's hash, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiToken {
    pub user_id: UserId,
    pub name: String,
    pub role: Option<Role>,
    /// SHA-256 of the secret, hex ([`crate::tokens::secret_hash`]).
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Personal access tokens (`api_tokens`).
///
/// Contract: hashes are unique; `find_by_hash` of an unknown hash is `Ok(None)` and
/// returns the stored hash beside the token (for a constant-time comparison); `list`
/// returns tokens newest first, of one owner or of all; `delete` of a missing id is
/// `Ok(false)`; deleting a user deletes their tokens; `touch` records a use.
#[async_trait]
pub trait ApiTokenRepository: Send + Sync {
    async fn create(&self, token: &NewApiToken) -> Result<ApiToken, RepoError>;
    async fn find_by_hash(&self, hash: &str) -> Result<Option<(ApiToken, String)>, RepoError>;
    async fn get(&self, id: ApiTokenId) -> Result<Option<ApiToken>, RepoError>;
    async fn list(&self, owner: Option<UserId>) -> Result<Vec<ApiToken>, RepoError>;
    async fn delete(&self, id: ApiTokenId) -> Result<bool, RepoError>;
    async fn touch(
        &self,
        id: ApiTokenId,
        at: DateTime<Utc>,
        ip: Option<&str>,
    ) -> Result<(), RepoError>;
}

/// Session tokens ended before their expiry (logout).
///
/// Contract: a revoked id stays revoked until `purge_expired` passes its expiry;
/// revoking twice is not an error.
#[async_trait]
pub trait SessionRevocations: Send + Sync {
    async fn revoke(&self, token_id: &str, expires_at: DateTime<Utc>) -> Result<(), RepoError>;
    async fn is_revoked(&self, token_id: &str) -> Result<bool, RepoError>;
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, RepoError>;
}

/// The time. A port so that tests can fix it; the host adapter reads the wall clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub use crate::retention::Retention;

/// A configured backup source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: crate::SourceId,
    pub name: String,
    pub path: String,
    /// When the source is backed up on a schedule.
    pub schedule: Option<Schedule>,
    /// Overrides the configured retention for this source.
    pub retention: Option<Retention>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether the scheduler runs this source's schedule (new sources: `true`).
    pub enabled: bool,
    /// When the scheduler last started a backup of it.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When the scheduler will next start one; `None` until the scheduler has planned it.
    pub next_run_at: Option<DateTime<Utc>>,
    /// What its backups leave out.
    pub filter: crate::excludes::SourceFilter,
}

impl Source {
    /// The next scheduled run as people should see it: none while the source is paused
    /// or has no schedule, whatever plan is still stored.
    #[must_use]
    pub fn shown_next_run(&self) -> Option<DateTime<Utc>> {
        self.next_run_at
            .filter(|_| self.enabled && self.schedule.is_some())
    }
}

/// What a source is made of, for creating or replacing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub name: String,
    pub path: String,
    pub schedule: Option<Schedule>,
    pub retention: Option<Retention>,
    pub filter: crate::excludes::SourceFilter,
}

impl SourceSpec {
    /// A source with no schedule and the default retention.
    #[must_use]
    pub fn plain(name: &str, path: &str) -> Self {
        Self {
            name: name.to_owned(),
            path: path.to_owned(),
            schedule: None,
            retention: None,
            filter: crate::excludes::SourceFilter::default(),
        }
    }
}

/// Backup sources.
///
/// Contract: names are unique (`create` or `update` to a taken name is `Conflict`);
/// lookups of missing sources are `Ok(None)`; `update` and `delete` of a missing source
/// are `Ok(None)` / `Ok(false)`; deleting a source keeps its snapshots (their
/// `source_id` becomes `None`, `source_name` stays); `list` is ordered by name.
///
/// Scheduling: `create` makes an enabled source with no run times; an `update` that
/// changes the schedule clears `next_run_at` (the scheduler plans the new one);
/// `set_enabled(.., false)` clears it too. `set_next_run` and `record_run` write only
/// while the source still has the schedule `for_schedule` the caller planned with (a
/// concurrent change of the schedule wins) and are `Ok(false)` otherwise or when the
/// source is missing.
#[async_trait]
pub trait SourceRepository: Send + Sync {
    async fn create(&self, spec: &SourceSpec, now: DateTime<Utc>) -> Result<Source, RepoError>;
    async fn get(&self, id: crate::SourceId) -> Result<Option<Source>, RepoError>;
    async fn find_by_name(&self, name: &str) -> Result<Option<Source>, RepoError>;
    async fn find_by_path(&self, path: &str) -> Result<Option<Source>, RepoError>;
    async fn list(&self) -> Result<Vec<Source>, RepoError>;
    async fn update(
        &self,
        id: crate::SourceId,
        spec: &SourceSpec,
        now: DateTime<Utc>,
    ) -> Result<Option<Source>, RepoError>;
    async fn delete(&self, id: crate::SourceId) -> Result<bool, RepoError>;
    /// Turns scheduled runs of a source on or off; `Ok(false)` when there is none.
    async fn set_enabled(
        &self,
        id: crate::SourceId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError>;
    /// Records when the scheduler will next run the source (`None`: not planned).
    async fn set_next_run(
        &self,
        id: crate::SourceId,
        for_schedule: &Schedule,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError>;
    /// Records a scheduled run started at `at`, and the next one.
    async fn record_run(
        &self,
        id: crate::SourceId,
        for_schedule: &Schedule,
        at: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError>;
}

/// One page of a longer list, with the size of the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// One snapshot in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub id: crate::BackupId,
    pub snapshot_id: SnapshotId,
    pub source_id: Option<crate::SourceId>,
    pub source_name: String,
    /// Logical bytes.
    pub size: u64,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub status: SnapshotStatus,
    pub checksum: String,
    pub encrypted: bool,
    pub file_count: u64,
    pub dir_count: u64,
    pub bytes_added: u64,
    pub stored_bytes_added: u64,
    pub duration_ms: u64,
    pub warnings: Vec<String>,
    pub parent_snapshot_id: Option<SnapshotId>,
    pub protected: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub verify_result: Option<String>,
    /// Why the source looked empty or collapsed when this snapshot was taken.
    pub suspicious: Option<String>,
}

impl CatalogEntry {
    /// This snapshot as a caller without the `restore` permission may see it: its
    /// warnings and a damage report name files, and browsing needs that permission.
    #[must_use]
    pub fn without_contents(mut self) -> Self {
        crate::jobs::hide_all(&mut self.warnings);
        if let Some(result) = &mut self.verify_result
            && result.starts_with("damaged")
        {
            *result = format!("damaged {}", crate::jobs::HIDDEN);
        }
        self
    }
}

impl SnapshotStatus {
    pub const ALL: [Self; 2] = [Self::Ok, Self::Partial];
}

named!(SnapshotStatus);

/// The snapshot catalog (rebuildable from storage).
///
/// Contract: `insert` of a snapshot id already present is `Conflict`; `list` is newest
/// first; `find` takes a prefix (the whole id is one) and reports a prefix that more than
/// one snapshot starts with as `Conflict`.
#[async_trait]
pub trait BackupCatalog: Send + Sync {
    async fn insert(
        &self,
        summary: &crate::engine::SnapshotSummary,
        source_id: Option<crate::SourceId>,
    ) -> Result<CatalogEntry, RepoError>;
    async fn list(&self, limit: u64) -> Result<Vec<CatalogEntry>, RepoError>;
    async fn find(&self, prefix: &SnapshotPrefix) -> Result<Option<CatalogEntry>, RepoError>;
    async fn latest_for_source(
        &self,
        source_id: crate::SourceId,
    ) -> Result<Option<CatalogEntry>, RepoError>;
    async fn record_verification(
        &self,
        snapshot_id: &SnapshotId,
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), RepoError>;
    /// Newest first, filtered, one page.
    async fn query(&self, filter: &BackupFilter) -> Result<Page<CatalogEntry>, RepoError>;
    /// Removes a row; `false` when there was none.
    async fn delete(&self, snapshot_id: &SnapshotId) -> Result<bool, RepoError>;
    /// Marks a snapshot protected from retention (or not); `false` when there was none.
    async fn set_protected(
        &self,
        snapshot_id: &SnapshotId,
        protected: bool,
    ) -> Result<bool, RepoError>;
    /// Counts and byte sums of the whole catalog, read from maintained counters (no
    /// scan, whatever the number of snapshots).
    async fn stats(&self) -> Result<CatalogStats, RepoError>;
    /// The newest snapshot of each source that has one, ordered by source id: one
    /// indexed lookup per source, never a scan of the catalog.
    async fn latest_per_source(&self) -> Result<Vec<(crate::SourceId, CatalogEntry)>, RepoError>;

    /// Keyset paging for exports: up to `limit` rows matching `filter` (whose `limit`
    /// and `offset` are ignored), newest first like `query`, that come after `after` —
    /// the `(created_at, id)` of the last row of the previous page — in that order. No
    /// total is counted, and rows inserted meanwhile never shift the pages.
    ///
    /// The default pages with `query`, bounded by `to`; a database adapter should
    /// answer it with one indexed keyset query instead.
    async fn page_after(
        &self,
        filter: &BackupFilter,
        after: Option<(DateTime<Utc>, crate::BackupId)>,
        limit: u64,
    ) -> Result<Vec<CatalogEntry>, RepoError> {
        let limit = limit.max(1);
        let mut bounded = filter.clone();
        let mut skip_until = None;
        if let Some((at, id)) = after {
            // Rows at `at` itself may lie on either side of the cursor.
            let just_after = at + chrono::TimeDelta::microseconds(1);
            bounded.to = Some(bounded.to.map_or(just_after, |to| to.min(just_after)));
            skip_until = Some((at, id));
        }
        let mut items = Vec::new();
        let mut offset = 0;
        loop {
            bounded.limit = limit;
            bounded.offset = offset;
            let page = self.query(&bounded).await?.items;
            let fetched = page.len() as u64;
            items.extend(page.into_iter().filter(|row| {
                skip_until.is_none_or(|(at, id)| (row.created_at, row.id) < (at, id))
            }));
            if items.len() as u64 >= limit || fetched < limit {
                items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                return Ok(items);
            }
            offset += fetched;
        }
    }
}

/// The catalog's figures, kept exact by every write of the catalog in the same
/// transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogStats {
    /// Snapshots per status, ordered by status. A status whose snapshots were all
    /// removed may stay listed with 0.
    pub count_by_status: Vec<(String, u64)>,
    /// Every snapshot.
    pub total: u64,
    /// The sum of the snapshots' logical sizes.
    pub logical_bytes: u64,
    /// The sum of what each snapshot added to storage when it was made (after dedup and
    /// compression). Removing snapshots does not free storage by itself (garbage
    /// collection does), so this is not the storage in use.
    pub stored_bytes_added: u64,
}

/// Named 64-bit counters kept in the database, for figures that must not be recomputed
/// per request (bytes in storage, for example).
///
/// Contract: a counter never written reads 0; `add` is atomic (concurrent adds never
/// lose an update) and returns the value after it; `set` replaces the value (a recount).
/// Names under `backups.` belong to the catalog, which maintains them itself: do not
/// write them through this port.
#[async_trait]
pub trait CounterRepository: Send + Sync {
    async fn get(&self, name: &str) -> Result<i64, RepoError>;
    async fn add(&self, name: &str, delta: i64) -> Result<i64, RepoError>;
    async fn set(&self, name: &str, value: i64) -> Result<(), RepoError>;
}

/// Which catalog rows to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupFilter {
    pub source_id: Option<crate::SourceId>,
    pub status: Option<SnapshotStatus>,
    /// Snapshots started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Snapshots started before this time.
    pub to: Option<DateTime<Utc>>,
    pub limit: u64,
    pub offset: u64,
}

/// The job records, which are also the queue every server instance takes work from.
///
/// Contract:
/// - `insert` of an id already present is `Conflict`; `update` replaces every field of
///   the job with that id and is `Ok(false)` when there is none; `list` is newest first
///   (by creation time, then id) with the total matching the filter; `fail_unfinished`
///   turns every queued or running job into a failed one with `error` and
///   `finished_at = now`, returning how many it changed.
/// - `enqueue` stores a queued job with the actor it runs as. When another queued or
///   running job has the same [`exclusive_subject`](crate::jobs::JobParams::exclusive_subject)
///   nothing is stored and the answer is `Busy` with that job's id; the database decides
///   (a unique index), so two instances enqueueing at once cannot both succeed.
/// - `claim` moves up to `max` of the oldest queued jobs (not being cancelled) to
///   running under `lease` and returns them with their actors; concurrent claims from
///   several instances never return the same job (`FOR UPDATE SKIP LOCKED` on
///   PostgreSQL; SQLite serialises writers).
/// - `heartbeat` renews the lease of each listed job the lease's instance still runs
///   and stores its progress; the answer says, per job, whether the instance still owns
///   it and whether a cancel was requested.
/// - `finish` writes the final record of a job only while the instance still owns it
///   (running, its lease); `Ok(false)` otherwise (another instance declared it
///   interrupted).
/// - `request_cancel` ends a queued job as cancelled at `now`, or marks a running one
///   `cancel_requested`; it returns the job as it is afterwards (`None`: no such job).
/// - `expire_leases` fails every running job whose lease ended before `now` with
///   `error`, and returns them.
/// - `count_queued` counts queued jobs, of one requester or of all; `fail_queued` fails
///   every queued job with `error`.
#[async_trait]
pub trait JobRepository: Send + Sync {
    async fn insert(&self, job: &crate::jobs::Job) -> Result<(), RepoError>;
    async fn update(&self, job: &crate::jobs::Job) -> Result<bool, RepoError>;
    async fn get(&self, id: crate::JobId) -> Result<Option<crate::jobs::Job>, RepoError>;
    async fn list(
        &self,
        filter: &crate::jobs::JobFilter,
    ) -> Result<Page<crate::jobs::Job>, RepoError>;
    async fn fail_unfinished(
        &self,
        error: &crate::jobs::JobError,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
    async fn enqueue(
        &self,
        job: &crate::jobs::Job,
        actor: &crate::auth::Actor,
    ) -> Result<Enqueued, RepoError>;
    async fn claim(
        &self,
        lease: &Lease,
        now: DateTime<Utc>,
        max: u64,
    ) -> Result<Vec<ClaimedJob>, RepoError>;
    async fn heartbeat(
        &self,
        lease: &Lease,
        jobs: &[(crate::JobId, crate::jobs::JobProgress)],
    ) -> Result<Vec<Heartbeat>, RepoError>;
    async fn finish(&self, job: &crate::jobs::Job, instance: &str) -> Result<bool, RepoError>;
    async fn request_cancel(
        &self,
        id: crate::JobId,
        now: DateTime<Utc>,
    ) -> Result<Option<crate::jobs::Job>, RepoError>;
    async fn expire_leases(
        &self,
        error: &crate::jobs::JobError,
        now: DateTime<Utc>,
    ) -> Result<Vec<crate::jobs::Job>, RepoError>;
    async fn count_queued(&self, requested_by: Option<&str>) -> Result<u64, RepoError>;
    async fn fail_queued(
        &self,
        error: &crate::jobs::JobError,
        now: DateTime<Utc>,
    ) -> Result<u64, RepoError>;
}

/// Which server instance runs the scheduler when several share the catalog.
///
/// Contract: `lead` answers whether this process holds the leadership now, taking it
/// when nobody holds it; at most one process holds it at any moment; a holder keeps it
/// until it calls `resign`, ends, or loses its connection to the catalog (then another
/// may take it at its next `lead`).
#[async_trait]
pub trait Leadership: Send + Sync {
    async fn lead(&self) -> Result<bool, RepoError>;
    async fn resign(&self);
}

/// What `enqueue` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// Another queued or running job holds the same subject.
    Busy(crate::JobId),
}

/// A server instance's hold on the jobs it runs: they are its own until `until`, and
/// renewing moves `until` on. A job whose lease ran out is declared interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The instance's id, unique per process.
    pub instance: String,
    pub until: DateTime<Utc>,
}

/// A job taken from the queue, with who it runs as.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub job: crate::jobs::Job,
    pub actor: crate::auth::Actor,
}

/// One job's answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub id: crate::JobId,
    /// The instance still runs it (false: its lease ran out and it was declared
    /// interrupted, or it ended).
    pub owned: bool,
    pub cancel_requested: bool,
}

/// Why a path on the server was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct PathProblem {
    pub path: String,
    pub reason: String,
}

/// Questions about paths on the server's own filesystem (sources to read, restore
/// targets to write), asked before any work starts.
///
/// Contract: `readable_dir` returns the canonical path (every symlink resolved) of an
/// existing directory the process can list; `resolve_target` returns where a path would
/// land once every symlink of its existing part is resolved, and refuses a path whose
/// missing part is not plain names (no `..`, no `.`); relative paths are refused by both.
/// Implementations do quick metadata calls only, so they are synchronous.
pub trait LocalPaths: Send + Sync {
    fn readable_dir(&self, path: &str) -> Result<String, PathProblem>;
    fn resolve_target(&self, path: &str) -> Result<String, PathProblem>;
    /// Whether a restore may write there: nothing exists at `path`, or an empty
    /// directory does.
    fn is_free(&self, path: &str) -> bool;
    /// Walks the directory `dir` (absolute) by the backup walker's rules (no symlink
    /// followed, excluded directories not entered) and tells what `excludes` would leave
    /// out: at most `sample` paths named, at most `max_entries` entries looked at (the
    /// one walk here that is not quick: the caller bounds it).
    fn preview_excludes(
        &self,
        dir: &str,
        excludes: &crate::excludes::Excludes,
        sample: usize,
        max_entries: u64,
    ) -> Result<crate::excludes::ExcludePreview, PathProblem>;
}

/// Work the application hands to the runtime to run in the background.
pub type BackgroundTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs background work; a port so that the application picks no runtime.
pub trait Spawner: Send + Sync {
    fn spawn(&self, task: BackgroundTask);
}
