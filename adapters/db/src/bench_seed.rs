//! Bulk seeding of a throwaway catalog for the speed-at-scale benchmark
//! (`coffer dev seed`, `tests/bench/scale.sh`). Never used by the server.
//!
//! - Snapshots: `backups` rows spread over `sources` bench sources (created, or reused by
//!   name) and over the year before `now`, mostly `ok`, some `partial`, realistic sizes
//!   and parents. With more than one source, the last one stopped half-way through the
//!   year (a decommissioned machine): its newest snapshot is six months old, the case
//!   that costs most when looking up each source's newest snapshot.
//!   Multi-row `INSERT`s in transactions. At the end the catalog's
//!   `backups.*` counters are recomputed from the table with one aggregate per figure,
//!   in one transaction, so they are exact for whatever the table holds.
//! - Audit rows: a valid continuation of the hash chain. Each transaction takes the lock
//!   the server's append takes (PostgreSQL: the same advisory lock; SQLite: the write
//!   lock, by a no-op write first), reads the last row's hash, and inserts rows with
//!   explicit ids that follow it, sealed in order under the audit key, as the server's append does.
//!
//! It refuses a catalog that looks in use (users other than the bootstrap `admin`, or
//! more than [`MAX_SNAPSHOTS_WITHOUT_FORCE`] snapshots) unless forced.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use coffer_domain::audit::{AuditEntry, audit_timestamp};
use coffer_domain::auth::ClientInfo;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait as _, ConnectionTrait as _, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
    TransactionTrait as _,
};

use crate::auth_repos::AUDIT_LOCK_KEY;
use crate::entities::{audit_logs, backups, sources, users};
use crate::{Database, error};

/// A catalog with more snapshots than this is not seeded without `force`.
pub const MAX_SNAPSHOTS_WITHOUT_FORCE: u64 = 10;
/// The user `coffer serve` creates on first start.
const BOOTSTRAP_ADMIN: &str = "admin";
/// Rows per `INSERT`: under SQLite's 32,766 bound parameters (21 and 11 columns).
const BACKUP_ROWS_PER_INSERT: usize = 1_000;
const AUDIT_ROWS_PER_INSERT: usize = 2_000;
/// Rows per transaction.
const ROWS_PER_TRANSACTION: usize = 50_000;

/// What to seed.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub snapshots: u64,
    pub audit_rows: u64,
    /// Sources the snapshots are spread over (at least 1).
    pub sources: u32,
    /// Seed even a catalog that looks in use.
    pub force: bool,
    /// The end of the seeded year.
    pub now: DateTime<Utc>,
    /// The installation's audit key, which seals the seeded rows as the server would.
    pub audit_chain: coffer_domain::audit::AuditChain,
}

/// Progress, reported after every `INSERT`.
#[derive(Debug, Clone, Copy)]
pub struct SeedProgress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
}

/// What was seeded, and how fast.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub sources_created: u32,
    pub snapshots: u64,
    pub snapshots_secs: f64,
    pub audit_rows: u64,
    pub audit_secs: f64,
    pub counters_secs: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("refusing to seed: {0} (pass --force to seed anyway)")]
    Refused(String),
    #[error("seeding failed: {0}")]
    Database(String),
}

impl From<DbErr> for SeedError {
    fn from(e: DbErr) -> Self {
        Self::Database(error::describe(&e))
    }
}

/// splitmix64: small, fast, deterministic for a seed; a bijection of its state, so
/// `mix(i)` differs for every `i`.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in `0..n` (n > 0), near enough for test data.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `per_mille / 1000`.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// A year, in microseconds.
fn year_us() -> u64 {
    Duration::days(365)
        .num_microseconds()
        .map_or(u64::MAX, i64::cast_unsigned)
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Seeds the catalog. `progress` is called after every `INSERT`.
///
/// # Errors
/// [`SeedError::Refused`] for a catalog that looks in use (without `force`); database
/// failures.
pub async fn seed_bench(
    db: &Database,
    options: &SeedOptions,
    progress: &mut (dyn FnMut(SeedProgress) + Send),
) -> Result<SeedReport, SeedError> {
    let conn = &db.conn;
    if !options.force {
        refuse_if_in_use(conn).await?;
    }
    let mut rng = Rng(u64::try_from(options.now.timestamp_micros()).unwrap_or(7));
    let mut report = SeedReport::default();

    let started = Instant::now();
    let (source_rows, created) = bench_sources(conn, options).await?;
    report.sources_created = created;
    report.snapshots = seed_snapshots(conn, options, &source_rows, &mut rng, progress).await?;
    report.snapshots_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    recount_backup_counters(conn).await?;
    report.counters_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    report.audit_rows = seed_audit(conn, options, &mut rng, progress).await?;
    report.audit_secs = started.elapsed().as_secs_f64();

    if conn.get_database_backend() == DatabaseBackend::Postgres {
        // What autovacuum does shortly after a bulk load (the steady state of a live
        // catalog): planner statistics, and the visibility map that lets a count be
        // answered from an index alone.
        conn.execute_unprepared("VACUUM (ANALYZE) backups, audit_logs, sources, counters")
            .await?;
    }
    Ok(report)
}

async fn refuse_if_in_use(conn: &DatabaseConnection) -> Result<(), SeedError> {
    let other_users = users::Entity::find()
        .filter(users::Column::Username.ne(BOOTSTRAP_ADMIN))
        .count(conn)
        .await?;
    if other_users > 0 {
        return Err(SeedError::Refused(format!(
            "the catalog has {other_users} user(s) besides the bootstrap `{BOOTSTRAP_ADMIN}`: \
             it looks like a real installation"
        )));
    }
    // At most MAX + 1 ids are read, whatever the table holds.
    let snapshots = backups::Entity::find()
        .select_only()
        .column(backups::Column::Id)
        .limit(MAX_SNAPSHOTS_WITHOUT_FORCE + 1)
        .into_tuple::<i64>()
        .all(conn)
        .await?
        .len();
    if snapshots as u64 > MAX_SNAPSHOTS_WITHOUT_FORCE {
        return Err(SeedError::Refused(format!(
            "the catalog already has more than {MAX_SNAPSHOTS_WITHOUT_FORCE} snapshots"
        )));
    }
    Ok(())
}

/// One bench source: its row id and name.
struct BenchSource {
    id: i64,
    name: String,
}

/// The bench sources `bench-01` ... (reused when they exist). No schedule, so the server's
/// scheduler never tries to back their (missing) paths up.
async fn bench_sources(
    conn: &DatabaseConnection,
    options: &SeedOptions,
) -> Result<(Vec<BenchSource>, u32), SeedError> {
    let count = options.sources.max(1);
    let width = count.to_string().len().max(2);
    let created_at = options.now - Duration::days(366);
    let mut out = Vec::new();
    let mut created = 0;
    for n in 1..=count {
        let name = format!("bench-{n:0width$}");
        let existing = sources::Entity::find()
            .filter(sources::Column::Name.eq(name.as_str()))
            .one(conn)
            .await?;
        let id = if let Some(row) = existing {
            row.id
        } else {
            created += 1;
            sources::Entity::insert(sources::ActiveModel {
                id: NotSet,
                name: Set(name.clone()),
                path: Set(format!("/srv/bench/{name}")),
                schedule: Set(None),
                retention: Set(None),
                enabled: Set(true),
                created_at: Set(created_at),
                updated_at: Set(created_at),
                last_run_at: Set(None),
                next_run_at: Set(None),
                filter_rules: Set(None),
            })
            .exec(conn)
            .await?
            .last_insert_id
        };
        out.push(BenchSource { id, name });
    }
    Ok((out, created))
}

/// Per-source state while generating its history.
struct SourceState {
    /// Logical size at the start of the year.
    base: u64,
    parent: Option<String>,
    last_at: Option<DateTime<Utc>>,
}

const PARTIAL_WARNINGS: [&str; 3] = [
    r#"["cannot read /srv/data/locked.db: Permission denied (os error 13)"]"#,
    r#"["/srv/data/app.log changed while it was read"]"#,
    r#"["cannot read /srv/data/tmp/socket: not a regular file","/srv/data/cache.bin changed while it was read"]"#,
];

fn snapshot_id(run: u64, index: u64) -> String {
    // The first 64 bits are a bijection of `index` for a given run: unique within it.
    let w0 = mix(run ^ index);
    let w1 = mix(w0 ^ run);
    let w2 = mix(w1);
    let w3 = mix(w2);
    format!("{w0:016x}{w1:016x}{w2:016x}{w3:016x}")
}

async fn seed_snapshots(
    conn: &DatabaseConnection,
    options: &SeedOptions,
    sources: &[BenchSource],
    rng: &mut Rng,
    progress: &mut (dyn FnMut(SeedProgress) + Send),
) -> Result<u64, SeedError> {
    let total = options.snapshots;
    if total == 0 {
        return Ok(0);
    }
    let run = rng.next();
    let mut states: Vec<SourceState> = sources
        .iter()
        .map(|_| SourceState {
            // 2 GiB to 200 GiB.
            base: (2 + rng.below(198)) << 30,
            parent: None,
            last_at: None,
        })
        .collect();
    // Evenly over the year before `now` (ending an hour before it), ascending, jittered.
    let span_us = year_us();
    let step_us = (span_us / total).max(1);
    let start = options.now - Duration::days(365) - Duration::hours(1);
    let mut done = 0u64;
    let mut rows: Vec<backups::ActiveModel> = Vec::with_capacity(BACKUP_ROWS_PER_INSERT);
    let mut txn = conn.begin().await?;
    let mut in_txn = 0usize;
    for i in 0..total {
        // The last source stops half-way through the year; the others take its turns.
        let active = if sources.len() > 1 && i >= total / 2 {
            sources.len() - 1
        } else {
            sources.len()
        };
        let k = usize::try_from(i % active as u64).unwrap_or(0);
        let source = &sources[k];
        let state = &mut states[k];
        let offset = i * step_us + rng.below(step_us);
        let created_at = start + Duration::microseconds(signed(offset));
        // Sources grow by up to half over the year, with ±0.5 % of noise per snapshot.
        let first = state.parent.is_none();
        let year_share = i * 1000 / total; // 0..1000
        let trend = state.base / 2000 * year_share;
        let noise = state.base / 1000 * rng.below(11) / 2;
        let size = (state.base + trend + noise).saturating_sub(state.base / 400);
        let bytes_added = if first {
            size
        } else {
            size / 1000 * (1 + rng.below(30))
        };
        // Deduplicated and compressed: 30-70 % of what was new.
        let stored_bytes_added = bytes_added / 100 * (30 + rng.below(41));
        let duration_ms = 2_000 + bytes_added / 60_000 + rng.below(5_000);
        let partial = rng.chance(60);
        let file_count = size / (150_000 + rng.below(100_000)) + 1;
        let id = snapshot_id(run, i);
        let verified = rng.chance(100);
        rows.push(backups::ActiveModel {
            id: NotSet,
            snapshot_id: Set(id.clone()),
            source_id: Set(Some(source.id)),
            source_name: Set(source.name.clone()),
            size: Set(signed(size)),
            created_at: Set(created_at),
            finished_at: Set(Some(
                created_at + Duration::milliseconds(signed(duration_ms)),
            )),
            status: Set(if partial { "partial" } else { "ok" }.to_owned()),
            checksum: Set(Some(id.clone())),
            encrypted: Set(true),
            file_count: Set(signed(file_count)),
            dir_count: Set(signed(file_count / 20 + 1)),
            bytes_added: Set(signed(bytes_added)),
            stored_bytes_added: Set(signed(stored_bytes_added)),
            duration_ms: Set(signed(duration_ms)),
            warnings: Set(Some(if partial {
                PARTIAL_WARNINGS[usize::try_from(rng.below(3)).unwrap_or(0)].to_owned()
            } else {
                "[]".to_owned()
            })),
            parent_snapshot_id: Set(state.parent.replace(id)),
            protected: Set(rng.chance(5)),
            verified_at: Set(verified.then(|| created_at + Duration::hours(6))),
            verify_result: Set(verified.then(|| "ok".to_owned())),
            suspicious: Set(None),
        });
        state.last_at = Some(created_at);
        if rows.len() == BACKUP_ROWS_PER_INSERT || i + 1 == total {
            let n = rows.len();
            backups::Entity::insert_many(std::mem::take(&mut rows))
                .exec_without_returning(&txn)
                .await?;
            done += n as u64;
            in_txn += n;
            if in_txn >= ROWS_PER_TRANSACTION {
                txn.commit().await?;
                txn = conn.begin().await?;
                in_txn = 0;
            }
            progress(SeedProgress {
                phase: "snapshots",
                done,
                total,
            });
        }
    }
    // The sources' last run: their newest snapshot.
    for (source, state) in sources.iter().zip(&states) {
        if let Some(at) = state.last_at {
            sources::Entity::update_many()
                .col_expr(
                    sources::Column::LastRunAt,
                    sea_orm::sea_query::Expr::value(at),
                )
                .filter(sources::Column::Id.eq(source.id))
                .exec(&txn)
                .await?;
        }
    }
    txn.commit().await?;
    Ok(done)
}

/// Recomputes the catalog's `backups.*` counters from the table, in one transaction
/// (the same aggregates as the migration that introduced them).
async fn recount_backup_counters(conn: &DatabaseConnection) -> Result<(), SeedError> {
    const RECOUNT: [&str; 4] = [
        "DELETE FROM counters WHERE name LIKE 'backups.%'",
        "INSERT INTO counters (name, value) \
         SELECT 'backups.count.' || status, COUNT(*) FROM backups GROUP BY status",
        "INSERT INTO counters (name, value) \
         SELECT 'backups.logical_bytes', CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM backups",
        "INSERT INTO counters (name, value) \
         SELECT 'backups.stored_bytes_added', CAST(COALESCE(SUM(stored_bytes_added), 0) AS BIGINT) \
         FROM backups",
    ];
    let txn = conn.begin().await?;
    for sql in RECOUNT {
        txn.execute_unprepared(sql).await?;
    }
    txn.commit().await?;
    Ok(())
}

const USERNAMES: [&str; 12] = [
    "admin", "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory",
];
const USER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "coffer-cli/0.1.0",
    "python-requests/2.32.3",
];

/// One plausible audit event.
fn audit_entry(rng: &mut Rng, i: u64) -> AuditEntry {
    let user = USERNAMES[usize::try_from(rng.below(USERNAMES.len() as u64)).unwrap_or(0)];
    let client = ClientInfo {
        ip: Some(format!("10.0.{}.{}", rng.below(4), 2 + rng.below(250))),
        user_agent: Some(
            USER_AGENTS[usize::try_from(rng.below(USER_AGENTS.len() as u64)).unwrap_or(0)]
                .to_owned(),
        ),
        credential: None,
    };
    let snapshot = || format!("snapshot:{:016x}", mix(i));
    let roll = rng.below(100);
    let (action, resource, success, detail) = match roll {
        0..=49 => ("login", Some(format!("user:{user}")), true, None),
        50..=56 => (
            "login_failed",
            Some(format!("user:{user}")),
            false,
            Some("wrong username or password".to_owned()),
        ),
        57..=61 => ("logout", Some(format!("user:{user}")), true, None),
        62..=76 => (
            "backup_create",
            Some(snapshot()),
            true,
            Some(format!("source:{}", 1 + rng.below(20))),
        ),
        77..=84 => ("backup_browse", Some(snapshot()), true, None),
        85..=87 => (
            "restore",
            Some(snapshot()),
            true,
            Some("/var/lib/coffer/restored".to_owned()),
        ),
        88..=91 => (
            "job_queue",
            Some(format!("job:{:08x}", mix(i) >> 32)),
            true,
            None,
        ),
        92..=94 => ("verify", Some(snapshot()), true, Some("ok".to_owned())),
        95..=96 => ("backup_download", Some(snapshot()), true, None),
        97 => (
            "source_update",
            Some(format!("source:{}", 1 + rng.below(20))),
            true,
            None,
        ),
        98 => ("prune", None, true, Some("removed 0 packs".to_owned())),
        _ => (
            "alert_ack",
            Some(format!("alert:{}", 1 + rng.below(500))),
            true,
            None,
        ),
    };
    AuditEntry {
        username: user.to_owned(),
        action: action.to_owned(),
        resource,
        success,
        detail,
        client,
    }
}

async fn seed_audit(
    conn: &DatabaseConnection,
    options: &SeedOptions,
    rng: &mut Rng,
    progress: &mut (dyn FnMut(SeedProgress) + Send),
) -> Result<u64, SeedError> {
    let total = options.audit_rows;
    if total == 0 {
        return Ok(0);
    }
    let backend = conn.get_database_backend();
    let span_us = year_us();
    let step_us = (span_us / total).max(1);
    let start = options.now - Duration::days(365) - Duration::minutes(1);
    let mut done = 0u64;
    while done < total {
        let txn = conn.begin().await?;
        // The lock the server's append takes, so the chain cannot fork.
        if backend == DatabaseBackend::Postgres {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({AUDIT_LOCK_KEY})"))
                .await?;
        } else {
            txn.execute_unprepared("DELETE FROM audit_logs WHERE 1 = 0")
                .await?;
        }
        let last = audit_logs::Entity::find()
            .order_by_desc(audit_logs::Column::Id)
            .one(&txn)
            .await?;
        let (mut id, mut prev) = last.map_or((0, String::new()), |r| (r.id, r.row_hash));
        let in_txn = (total - done).min(ROWS_PER_TRANSACTION as u64);
        let mut rows = Vec::with_capacity(AUDIT_ROWS_PER_INSERT);
        for j in 0..in_txn {
            let i = done + j;
            let entry = audit_entry(rng, i);
            let offset = i * step_us + rng.below(step_us);
            let timestamp = audit_timestamp(start + Duration::microseconds(signed(offset)));
            let row_hash = options.audit_chain.seal(&prev, timestamp, &entry);
            id += 1;
            rows.push(audit_logs::ActiveModel {
                id: Set(id),
                username: Set(entry.username),
                action: Set(entry.action),
                resource: Set(entry.resource),
                timestamp: Set(timestamp),
                ip_address: Set(entry.client.ip),
                user_agent: Set(entry.client.user_agent),
                success: Set(entry.success),
                detail: Set(entry.detail),
                prev_hash: Set(std::mem::replace(&mut prev, row_hash.clone())),
                row_hash: Set(row_hash),
            });
            if rows.len() == AUDIT_ROWS_PER_INSERT || j + 1 == in_txn {
                let n = rows.len() as u64;
                audit_logs::Entity::insert_many(std::mem::take(&mut rows))
                    .exec_without_returning(&txn)
                    .await?;
                progress(SeedProgress {
                    phase: "audit rows",
                    done: done + j + 1,
                    total,
                });
                debug_assert!(n > 0);
            }
        }
        if backend == DatabaseBackend::Postgres {
            // Explicit ids: move the sequence past them for the server's next append.
            txn.execute_unprepared(
                "SELECT setval(pg_get_serial_sequence('audit_logs', 'id'), (SELECT MAX(id) FROM audit_logs))",
            )
            .await?;
        }
        txn.commit().await?;
        done += in_txn;
    }
    Ok(done)
}
