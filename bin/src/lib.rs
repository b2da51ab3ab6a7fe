//! `coffer`: the composition root. It reads the settings, opens the concrete adapters
//! (sea-orm catalog, opendal storage, poem HTTP), hands them to the application services
//! as ports, and runs the server or a CLI command. It is the only crate that names
//! adapters; it holds no business rules.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use coffer_application::retention::AfterBackup;
use coffer_application::{
    AlertService, AuditLog, AuditService, AuthService, BackupPorts, BackupService, CatalogService,
    DashboardService, DashboardSources, DiskGuard, DiskThresholds, JobOptions, JobService,
    KeyService, MaintenancePorts, MaintenanceService, Quota, ReportService, RestoreService,
    RetentionService, RetentionStatus, SettingsPorts, SourceService, StorageService, SystemService,
    TargetRoom, UserService,
};
use coffer_config::Settings;
use coffer_crypto::{Argon2Hasher, Hs256Tokens, MasterKeyFile};
use coffer_db::{Database, DbOptions};
use coffer_domain::auth::Actor;
use coffer_domain::jobs::JobKind;
use coffer_domain::ports::Clock;
use coffer_domain::secrets::Secret;
use coffer_http::{AppState, HttpOptions, HttpServer};
use coffer_storage::OpendalStore;
use coffer_system::SystemClock;

pub mod alerts;
pub mod logging;
pub mod repo;
pub mod scheduler_loop;

pub use alerts::install_crypto_provider;

/// Creates the data directory (mode 0700: it holds the catalog and, by default, the
/// keys) if it does not exist yet.
///
/// # Errors
/// When the directory cannot be created.
pub fn ensure_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// Connects to the catalog database named by the settings and brings its schema up to
/// date.
///
/// # Errors
/// When the database cannot be reached or a migration fails.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    ensure_data_dir(&settings.data_dir)?;
    let options = DbOptions {
        url: settings.database_url(),
        max_connections: settings.database.max_connections,
        connect_timeout: Duration::from_secs(settings.database.connect_timeout_secs),
    };
    // Two processes starting at once on one data directory (the CLI beside the server)
    // must not create the SQLite file (and switch it to WAL) or apply a migration twice.
    let lock = data_dir_lock(&settings.data_dir, "migrate.lock")?;
    let db = Database::connect(&options).await?;
    let (before, _) = db.migration_status().await.unwrap_or((0, 0));
    db.migrate().await?;
    let (after, _) = db.migration_status().await?;
    drop(lock);
    if after > before {
        tracing::info!(
            applied = after - before,
            backend = db.backend(),
            "database schema migrated"
        );
    }
    Ok(db)
}

/// An exclusive lock on `<data_dir>/<name>`, held until the returned file is dropped.
///
/// # Errors
/// When the lock file cannot be opened or locked.
pub fn data_dir_lock(data_dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// The lock that makes a server the only one on its data directory (jobs are run, and
/// recovered at start-up, by one process). Held until the returned file is dropped.
///
/// # Errors
/// When another server holds it, or the lock file cannot be opened.
pub fn server_lock(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    ensure_data_dir(data_dir)?;
    let path = data_dir.join("server.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `coffer serve` is already running on the data directory {}",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The configured retention rules, for sources without their own.
#[must_use]
pub fn retention_rules(settings: &Settings) -> coffer_domain::retention::Retention {
    let r = &settings.retention;
    coffer_domain::retention::Retention {
        max_backups: r.max_backups,
        max_age_days: r.max_age_days,
        keep_within_days: r.keep_within_days,
        keep_daily: r.keep_daily,
        keep_weekly: r.keep_weekly,
        keep_monthly: r.keep_monthly,
        keep_yearly: r.keep_yearly,
    }
}

/// Coffer's own directories (data directory, repository, restore roots) and files (session
/// and master keys, SQLite catalog, configuration file), absolute with symlinks resolved
/// where they exist: no source may contain them or lie in them, and a backup never reads
/// them wherever it meets them.
///
/// # Errors
/// When the working directory is unknown.
pub fn own_directories(settings: &Settings, roots: &[String]) -> anyhow::Result<Vec<String>> {
    let mut dirs = vec![settings.data_dir.clone(), settings.storage_root()];
    dirs.extend(roots.iter().map(std::path::PathBuf::from));
    // Coffer's secrets and state, wherever they are configured to live: whoever may
    // restore could read them out of a snapshot (the session key mints admin tokens).
    dirs.push(settings.session_key_file());
    dirs.push(settings.encryption_key_file());
    dirs.push(settings.audit_key_file());
    if let Some(db) = settings.sqlite_file() {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            dirs.push(std::path::PathBuf::from(name));
        }
    }
    dirs.extend(settings.config_file.clone());
    dirs.iter()
        .map(|d| {
            let abs = std::fs::canonicalize(d).or_else(|_| std::path::absolute(d))?;
            Ok(abs.to_string_lossy().into_owned())
        })
        .collect()
}

/// Opens the repository storage named by the settings.
///
/// # Errors
/// When the storage cannot be opened.
pub fn open_storage(settings: &Settings) -> anyhow::Result<OpendalStore> {
    open_store(&settings.storage, &settings.storage_root())
}

/// Opens the store that `storage` describes (the repository's, or a replica's); `fs_root`
/// is the directory in force for `fs`.
///
/// # Errors
/// When the store cannot be opened or its credentials cannot be read.
pub fn open_store(
    storage: &coffer_config::StorageSettings,
    fs_root: &std::path::Path,
) -> anyhow::Result<OpendalStore> {
    match storage.backend {
        coffer_config::StorageBackend::Fs => Ok(OpendalStore::fs(fs_root)?),
        coffer_config::StorageBackend::S3 => {
            let credentials = storage.credentials()?.ok_or_else(|| {
                anyhow::anyhow!("storage: s3 needs credentials (storage.credentials_file)")
            })?;
            Ok(OpendalStore::s3(&coffer_storage::S3Options {
                endpoint: storage.endpoint.clone(),
                bucket: storage.bucket.clone().unwrap_or_default(),
                region: storage.region.clone(),
                prefix: storage.prefix.clone(),
                path_style: storage.path_style,
                access_key_id: credentials.access_key_id,
                secret_access_key: credentials.secret_access_key.expose().to_owned(),
                concurrency: storage.concurrency as usize,
            })?)
        }
    }
}

/// Where a replica's storage is, from its `storage` settings (the keys of `[storage]`).
///
/// # Errors
/// A backend without the keys it needs.
pub fn replica_location(
    storage: &coffer_config::StorageSettings,
) -> anyhow::Result<coffer_domain::replicas::ReplicaLocation> {
    let text = |p: &Path, what: &str| {
        p.to_str()
            .map(str::to_owned)
            .with_context(|| format!("{what} must be valid UTF-8"))
    };
    match storage.backend {
        coffer_config::StorageBackend::Fs => {
            let root = storage
                .root
                .as_ref()
                .context("an fs replica needs storage.root")?;
            Ok(coffer_domain::replicas::ReplicaLocation::Fs {
                root: text(root, "a replica's directory")?,
            })
        }
        coffer_config::StorageBackend::S3 => {
            let credentials = storage
                .credentials_file
                .as_ref()
                .context("an s3 replica needs storage.credentials_file")?;
            Ok(coffer_domain::replicas::ReplicaLocation::S3(s3_location(
                storage,
                text(credentials, "a credentials file's path")?,
            )))
        }
    }
}

/// The repository's own place, in the terms of a replica's (no replica may overlap it).
#[must_use]
pub fn repository_location(
    settings: &Settings,
) -> Option<coffer_domain::replicas::ReplicaLocation> {
    match settings.storage.backend {
        coffer_config::StorageBackend::Fs => std::path::absolute(settings.storage_root())
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
            .map(|root| coffer_domain::replicas::ReplicaLocation::Fs { root }),
        coffer_config::StorageBackend::S3 => Some(coffer_domain::replicas::ReplicaLocation::S3(
            s3_location(&settings.storage, String::new()),
        )),
    }
}

/// Where an S3 store is, in a replica's terms.
fn s3_location(
    storage: &coffer_config::StorageSettings,
    credentials_file: String,
) -> coffer_domain::replicas::S3Location {
    coffer_domain::replicas::S3Location {
        endpoint: storage.endpoint.clone(),
        bucket: storage.bucket.clone().unwrap_or_default(),
        region: storage.region.clone(),
        prefix: storage.prefix.clone(),
        path_style: storage.path_style,
        credentials_file,
    }
}

/// Opens a replica's storage (a directory is created when missing) through the same
/// [`open_store`] as the repository's: an S3 replica reads its credentials from its
/// credentials file (mode 0600) at each copy.
///
/// # Errors
/// When the storage cannot be opened or its credentials cannot be read.
pub fn open_replica_store(
    location: &coffer_domain::replicas::ReplicaLocation,
) -> anyhow::Result<Arc<dyn coffer_domain::storage::ObjectStore>> {
    use coffer_domain::replicas::ReplicaLocation;
    let store = match location {
        ReplicaLocation::Fs { root } => {
            open_store(&coffer_config::StorageSettings::default(), Path::new(root))?
        }
        ReplicaLocation::S3(s3) => open_store(
            &coffer_config::StorageSettings {
                backend: coffer_config::StorageBackend::S3,
                endpoint: s3.endpoint.clone(),
                bucket: Some(s3.bucket.clone()),
                region: s3.region.clone(),
                prefix: s3.prefix.clone(),
                path_style: s3.path_style,
                credentials_file: Some(std::path::PathBuf::from(&s3.credentials_file)),
                ..coffer_config::StorageSettings::default()
            },
            Path::new(""),
        )?,
    };
    Ok(Arc::new(store))
}

/// The configuration file's `[[replicas]]`, as the replica area takes them.
///
/// # Errors
/// A replica whose storage lacks a key it needs.
pub fn configured_replicas(
    settings: &Settings,
) -> anyhow::Result<Vec<coffer_application::NewReplica>> {
    settings
        .replicas
        .iter()
        .map(|r| {
            let location =
                replica_location(&r.storage).with_context(|| format!("replica `{}`", r.name))?;
            Ok(coffer_application::NewReplica {
                name: r.name.clone(),
                location,
                append_only: r.append_only,
                schedule: r.schedule.clone(),
                max_lag_snapshots: r.max_lag_snapshots,
                max_lag_hours: r.max_lag_hours,
            })
        })
        .collect()
}

/// Refuses to go on (and raises a critical alert naming the place) when the catalog knows
/// snapshots but the storage holds no repository: a NAS share that is not mounted, a
/// wrong bucket or prefix. Going on would create a new, empty repository there — on the
/// local disk under the mount point — and later backups would land where the share
/// hides them.
async fn refuse_a_vanished_repository(
    db: &Database,
    storage: &dyn coffer_domain::storage::ObjectStore,
) -> anyhow::Result<()> {
    use coffer_domain::alerts::{AlertKind, AlertRepository as _, NewAlert, Severity};
    use coffer_domain::ports::BackupCatalog as _;
    if coffer_repo::is_initialized(storage).await? {
        return Ok(());
    }
    let known = db.catalog().list(1).await?;
    if known.is_empty() {
        return Ok(());
    }
    let message = format!(
        "the repository at {} is missing, but the catalog knows snapshots: is the NAS share \
         mounted (or storage.bucket / storage.prefix the right ones)? Coffer will not create \
         a new, empty repository in its place. Make it reachable and start again",
        storage.location()
    );
    let alerts = db.alerts();
    let open = alerts
        .find_open(AlertKind::BackupFailed, None)
        .await
        .ok()
        .flatten();
    if open.is_none_or(|a| a.message != message) {
        let alert = NewAlert::new(AlertKind::BackupFailed, Severity::Critical, message.clone());
        if let Err(e) = alerts.insert(&alert, chrono::Utc::now()).await {
            tracing::error!(error = %e, "cannot record the alert");
        }
    }
    anyhow::bail!(message)
}

/// The application services over the concrete adapters: what `serve` and the CLI
/// commands share, so both obey the same rules.
pub struct Services {
    pub db: Database,
    pub system: Arc<SystemService>,
    pub auth: Arc<AuthService>,
    pub users: Arc<UserService>,
    /// Personal access tokens.
    pub tokens: Arc<coffer_application::TokenService>,
    pub audit: Arc<AuditService>,
    pub sources: Arc<SourceService>,
    /// Snapshots: list, find, browse, download, protect, delete, rebuild.
    pub catalog: Arc<CatalogService>,
    pub backups: Arc<BackupService>,
    /// Restores and verification.
    pub restores: Arc<RestoreService>,
    pub retention: Arc<RetentionService>,
    pub jobs: Arc<JobService>,
    pub alerts: Arc<AlertService>,
    /// The free space of the volume that holds the repository.
    pub disk: Arc<DiskGuard>,
    /// Scheduled runs; its loop runs in `serve` only ([`Application::run`]).
    pub scheduler: Arc<coffer_application::Scheduler>,
    /// Storage use and the quota.
    pub storage: Arc<StorageService>,
    /// The master key: export, rotation, the reminder.
    pub keys: Arc<KeyService>,
    /// Prune and check.
    pub maintenance: Arc<MaintenanceService>,
    /// Off-site copies.
    pub replicas: Arc<coffer_application::ReplicaService>,
    /// The overview's figures (dashboard and metrics).
    pub dashboard: Arc<DashboardService>,
    /// The quota and retention defaults set at run time (in force once `open` returns).
    pub settings: Arc<coffer_application::SettingsService>,
    /// CSV and PDF exports.
    pub reports: Arc<ReportService>,
    /// Importing installations of the Python prototype.
    pub import: Arc<coffer_application::ImportService>,
    /// The daily digest by email, when `[notify.email] digest_at` is set; sent by the
    /// scheduler's leader ([`scheduler_loop::spawn`]).
    pub digest: Option<Arc<coffer_application::DigestService>>,
}

/// The restore roots in force, absolute. The default one (`<data_dir>/restored`) is
/// created, mode 0700, when missing.
///
/// # Errors
/// When the default root cannot be created or the working directory is unknown.
pub fn restore_roots(settings: &Settings) -> anyhow::Result<Vec<String>> {
    if settings.restore.allowed_roots.is_none() {
        ensure_data_dir(&settings.data_dir.join("restored"))?;
    }
    settings
        .restore_roots()
        .iter()
        .map(|root| {
            let abs = std::path::absolute(root)
                .with_context(|| format!("cannot make {} absolute", root.display()))?;
            abs.into_os_string()
                .into_string()
                .map_err(|p| anyhow::anyhow!("restore root {} is not valid UTF-8", p.display()))
        })
        .collect()
}

/// The audit key (created at first start, mode 0600) and the chain it seals, and
/// whether the key was just created.
///
/// # Errors
/// A key file readable by others, damaged, or not creatable.
pub fn audit_chain(
    settings: &Settings,
) -> anyhow::Result<(coffer_domain::audit::AuditChain, bool)> {
    let path = settings.audit_key_file();
    let (key, created) = coffer_crypto::load_or_create_key(&path)?;
    if created {
        tracing::info!(path = %path.display(), "created the audit trail's key");
    }
    Ok((coffer_domain::audit::AuditChain::new(key), created))
}

impl Services {
    /// Opens the catalog (migrating it), the storage and the session key, and wires the
    /// services.
    ///
    /// # Errors
    /// The first adapter that cannot be opened.
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let db = open_database(settings).await?;
        let storage: Arc<dyn coffer_domain::storage::ObjectStore> =
            Arc::new(open_storage(settings)?);
        // One clear error for a store that cannot serve (a wrong key, a missing bucket, an
        // unreachable endpoint), before anything is written to it.
        storage
            .check()
            .await
            .map_err(|e| anyhow::anyhow!("cannot use the repository's storage: {e}"))?;
        refuse_a_vanished_repository(&db, storage.as_ref()).await?;
        let concrete_engine = Arc::new(repo::open_engine(settings, storage.clone()).await?);
        let engine: Arc<dyn coffer_domain::engine::SnapshotEngine> = concrete_engine.clone();
        let engine_for_import = engine.clone();
        let (session_key, created) =
            coffer_crypto::load_or_create_key(&settings.session_key_file())?;
        if created {
            tracing::info!(path = %settings.session_key_file().display(), "created the session signing key");
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let hasher = Arc::new(Argon2Hasher::new()?);
        let users_repo = Arc::new(db.users());
        let (audit_chain, audit_key_created) = audit_chain(settings)?;
        let audit_log = AuditLog::new(Arc::new(db.audit(audit_chain.clone())), clock.clone());
        if audit_key_created {
            // The first start with a keyed chain: the rows of the unkeyed version 1 chain
            // (an older installation) are sealed by the first keyed row. Only now: later,
            // an unkeyed tail is a rewrite, which `audit verify` must report, not seal.
            audit_log.seal_unkeyed_tail().await?;
        }
        let system = Arc::new(SystemService::new(
            Arc::new(db.health()),
            storage.clone(),
            env!("CARGO_PKG_VERSION"),
        ));
        let paths: Arc<dyn coffer_domain::ports::LocalPaths> = Arc::new(coffer_system::HostPaths);
        let roots = restore_roots(settings)?;
        let protected = own_directories(settings, &roots)?;
        let sources_repo = Arc::new(db.sources());
        let catalog_repo = Arc::new(db.catalog());
        let counters = Arc::new(db.counters());
        let spawner: Arc<dyn coffer_domain::ports::Spawner> =
            Arc::new(coffer_system::TokioSpawner::current());
        let channels = alerts::notifiers(settings)?;
        let mut alert_service = AlertService::new(
            Arc::new(db.alerts()),
            channels.all,
            spawner.clone(),
            clock.clone(),
            audit_log.clone(),
        );
        let digest_channel = channels.email.clone();
        if let Some(email) = channels.email {
            alert_service = alert_service.with_test_channel(email);
        }
        let alerts = Arc::new(alert_service);
        let disk = Arc::new(DiskGuard::new(
            Arc::new(coffer_system::SysinfoDiskMonitor::new()),
            (settings.storage.backend == coffer_config::StorageBackend::Fs)
                .then(|| settings.storage_root()),
            DiskThresholds {
                warning_free_mb: settings.disk.warning_free_mb,
                min_free_mb: settings.disk.min_free_mb,
            },
            alerts.clone(),
        ));
        let storage_use = Arc::new(
            StorageService::new(
                counters.clone(),
                engine.clone(),
                alerts.clone(),
                disk.clone(),
                Quota::from_mib(
                    settings.quota.max_storage_mb,
                    settings.quota.warning_threshold_mb,
                ),
                audit_log.clone(),
            )
            // Each change of the counter becomes the day's sample, for the reports' chart.
            .with_history(Arc::new(db.storage_history()), clock.clone()),
        );
        let keys = Arc::new(KeyService::new(
            Arc::new(MasterKeyFile::new(
                settings.encryption_key_file(),
                repo::lock_path(settings),
                Arc::new(repo::RepositoryKeys::new(storage)),
            )),
            counters.clone(),
            alerts.clone(),
            audit_log.clone(),
        ));
        let jobs = Arc::new(JobService::new(
            Arc::new(db.jobs()),
            Arc::new(db.jobs()),
            spawner,
            clock.clone(),
            audit_log.clone(),
            JobOptions {
                max_running: usize::try_from(settings.jobs.max_running).unwrap_or(1),
                max_queued_per_user: usize::try_from(settings.jobs.max_queued_per_user)
                    .unwrap_or(0),
                // Several servers may share a PostgreSQL catalog; a SQLite one is its
                // data directory's only server's.
                shared: db.backend() == "postgres",
                lease: chrono::TimeDelta::seconds(i64::from(settings.jobs.lease_secs)),
            },
        ));
        let catalog = Arc::new(CatalogService::new(
            engine.clone(),
            catalog_repo.clone(),
            sources_repo.clone(),
            clock.clone(),
            audit_log.clone(),
        ));
        let retention = Arc::new(
            RetentionService::new(
                catalog_repo.clone(),
                sources_repo.clone(),
                catalog.clone(),
                RetentionStatus {
                    enabled: settings.retention.enabled,
                    defaults: retention_rules(settings),
                },
                clock.clone(),
            )
            .with_burst_minutes(settings.retention.burst_minutes),
        );
        let backups = Arc::new(
            BackupService::new(
                engine.clone(),
                sources_repo.clone(),
                catalog_repo.clone(),
                paths.clone(),
                protected.clone(),
                BackupPorts {
                    admission: storage_use.clone(),
                    alerts: alerts.clone(),
                    retention: retention.clone() as Arc<dyn AfterBackup>,
                    queue: jobs.clone(),
                },
                clock.clone(),
                audit_log.clone(),
            )
            .with_suspicious_shrink_percent(settings.backup.suspicious_shrink_percent),
        );
        let restores = Arc::new(RestoreService::new(
            engine.clone(),
            catalog_repo.clone(),
            paths.clone(),
            roots,
            jobs.clone(),
            TargetRoom {
                monitor: Arc::new(coffer_system::SysinfoDiskMonitor::new()),
                reserve_mb: settings.disk.min_free_mb,
            },
            clock.clone(),
            audit_log.clone(),
        ));
        let maintenance = Arc::new(MaintenanceService::new(
            engine,
            counters,
            MaintenancePorts {
                stored: storage_use.clone(),
                alerts: alerts.clone(),
                queue: jobs.clone(),
            },
            audit_log.clone(),
            settings.prune.repack_threshold_percent,
        ));
        let replicas = Arc::new(coffer_application::ReplicaService::new(
            coffer_application::ReplicaPorts {
                replicas: Arc::new(db.replicas()),
                replicator: Arc::new(repo::EngineReplicator::new(concrete_engine)),
                catalog: catalog_repo.clone(),
                alerts: alerts.clone(),
                queue: jobs.clone(),
            },
            clock.clone(),
            audit_log.clone(),
            repository_location(settings),
            settings.prune.repack_threshold_percent,
        ));
        replicas
            .sync_config(configured_replicas(settings)?)
            .await
            .context("cannot record the configuration's [[replicas]]")?;
        // The runner does each kind of work through the area that owns it.
        jobs.register(JobKind::Backup, &backups);
        jobs.register(JobKind::Restore, &restores);
        jobs.register(JobKind::Verify, &restores);
        jobs.register(JobKind::Prune, &maintenance);
        jobs.register(JobKind::Check, &maintenance);
        jobs.register(JobKind::Copy, &replicas);
        let scheduler = Arc::new(
            coffer_application::Scheduler::new(
                sources_repo.clone(),
                Arc::new(db.settings()),
                Arc::new(
                    coffer_application::jobs::JobDispatch::new(
                        backups.clone(),
                        maintenance.clone(),
                    )
                    .with_copies(replicas.clone()),
                ),
                clock.clone(),
                scheduler_loop::options(settings)?,
            )
            .with_replicas(Arc::new(db.replicas())),
        );
        let dashboard = Arc::new(DashboardService::new(
            DashboardSources {
                catalog: catalog_repo.clone(),
                sources: sources_repo.clone(),
                alerts: Arc::new(db.alerts()),
                storage: storage_use.clone(),
                disk: disk.clone(),
                schedule: scheduler.clone(),
                jobs: jobs.clone(),
                retention: retention.clone(),
                keys: keys.clone(),
                history: Arc::new(db.storage_history()),
                runs: Arc::new(db.backup_runs()),
            },
            clock.clone(),
        ));
        let catalog_repo_for_import = catalog_repo.clone();
        let reports = Arc::new(ReportService::new(
            catalog_repo,
            sources_repo.clone(),
            Arc::new(db.audit(audit_chain.clone())),
            storage_use.clone(),
            Arc::new(db.storage_history()),
            Arc::new(coffer_reports::Reports),
            clock.clone(),
            audit_log.clone(),
        ));
        let sources_repo_for_import = sources_repo.clone();
        let sources = Arc::new(SourceService::new(
            sources_repo,
            paths,
            protected,
            jobs.clone(),
            clock.clone(),
            audit_log.clone(),
        ));
        let api_tokens: Arc<dyn coffer_domain::ports::ApiTokenRepository> =
            Arc::new(db.api_tokens());
        let tokens = Arc::new(coffer_application::TokenService::new(
            api_tokens.clone(),
            users_repo.clone(),
            clock.clone(),
            audit_log.clone(),
        ));
        let auth = Arc::new(AuthService::new(
            coffer_application::AuthPorts {
                users: users_repo.clone(),
                revocations: Arc::new(db.revocations()),
                // Shared through the catalog: failures on one server count on every other.
                throttle_counters: Arc::new(db.throttle_counters()),
                api_tokens: api_tokens.clone(),
            },
            hasher.clone(),
            Arc::new(Hs256Tokens::new(session_key)),
            clock.clone(),
            audit_log.clone(),
            chrono::TimeDelta::hours(i64::from(settings.security.session_timeout_hours)),
        ));
        let users_repo_for_import = users_repo.clone();
        let hasher_for_import = hasher.clone();
        let clock_for_import = clock.clone();
        let audit_log_for_import = audit_log.clone();
        let audit_rows_for_import = Arc::new(db.audit(audit_chain.clone()));
        let users = Arc::new(UserService::new(
            users_repo,
            Arc::new(db.roles()),
            hasher,
            clock,
            audit_log.clone(),
        ));
        let audit = Arc::new(AuditService::new(
            Arc::new(db.audit(audit_chain.clone())),
            audit_chain,
            audit_log.clone(),
        ));
        let runtime_settings = Arc::new(coffer_application::SettingsService::new(
            Arc::new(db.settings()),
            SettingsPorts {
                quota: storage_use.clone(),
                retention: retention.clone(),
                keys: keys.clone(),
            },
            coffer_application::QuotaMib {
                max_storage_mb: settings.quota.max_storage_mb,
                warning_threshold_mb: settings.quota.warning_threshold_mb,
            },
            RetentionStatus {
                enabled: settings.retention.enabled,
                defaults: retention_rules(settings),
            },
            audit_log,
        ));
        runtime_settings
            .init()
            .await
            .context("cannot read the settings stored in the database")?;
        let import = Arc::new(coffer_application::ImportService::new(
            coffer_application::ImportPorts {
                reader: Arc::new(coffer_prototype::PrototypeFiles),
                engine: engine_for_import,
                sources: sources_repo_for_import,
                catalog: catalog_repo_for_import,
                users: users_repo_for_import,
                passwords: hasher_for_import,
                audit_rows: audit_rows_for_import,
                admission: storage_use.clone(),
                queue: jobs.clone(),
                quota: runtime_settings.clone(),
            },
            clock_for_import,
            audit_log_for_import,
        ));
        jobs.register(JobKind::Import, &import);
        let digest = match (
            digest_channel,
            settings.notify.email.as_ref().and_then(|e| e.digest_time()),
        ) {
            (Some(sender), Some((hour, minute))) => {
                let at = chrono::NaiveTime::from_hms_opt(hour, minute, 0)
                    .context("notify.email.digest_at is not a time of day")?;
                tracing::info!(%at, "a daily digest is emailed at this time (UTC)");
                Some(Arc::new(coffer_application::DigestService::new(
                    coffer_application::DigestPorts {
                        jobs: Arc::new(db.jobs()),
                        sources: Arc::new(db.sources()),
                        history: Arc::new(db.storage_history()),
                        storage: storage_use.clone(),
                        state: Arc::new(db.settings()),
                    },
                    sender,
                    at,
                    Arc::new(SystemClock),
                )))
            }
            _ => None,
        };
        Ok(Self {
            db,
            system,
            auth,
            users,
            tokens,
            audit,
            sources,
            catalog,
            backups,
            restores,
            retention,
            jobs,
            alerts,
            disk,
            scheduler,
            storage: storage_use,
            keys,
            maintenance,
            replicas,
            dashboard,
            settings: runtime_settings,
            reports,
            import,
            digest,
        })
    }

    /// On first start (no users at all) creates `admin`, with the password from
    /// `COFFER_ADMIN_PASSWORD` or a generated one that is printed once and written to
    /// `<data_dir>/initial-admin-password` (mode 0600). There is no default password.
    ///
    /// # Errors
    /// A password from the environment that breaks the rules; I/O or database failures.
    pub async fn bootstrap_admin(&self, settings: &Settings) -> anyhow::Result<()> {
        let from_env = std::env::var("COFFER_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        let generated = from_env.is_none();
        let password = match from_env {
            Some(p) => Secret::new(p),
            None => Secret::new(coffer_crypto::random_token(18)?),
        };
        let actor = Actor::local_admin("bootstrap");
        let Some(user) = self
            .users
            .bootstrap_admin(&actor, &password)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the first admin: {e}"))?
        else {
            return Ok(());
        };
        if generated {
            let path = settings.data_dir.join("initial-admin-password");
            write_private_file(
                &path,
                &format!(
                    "{}
",
                    password.expose()
                ),
            )?;
            // Printed once, to the console (stdout), never through the logger.
            println!(
                "\n  Created the first user `{}` (admin) with the password:\n\n      {}\n\n  \
                 It is also in {} (mode 0600). Log in, change it, then delete that file.\n",
                user.username,
                password.expose(),
                path.display()
            );
        } else {
            tracing::info!(username = %user.username, "created the first admin with the password from COFFER_ADMIN_PASSWORD");
        }
        Ok(())
    }
}

/// Writes a new file readable by its owner only; refuses to overwrite.
///
/// # Errors
/// When the file exists or cannot be written.
pub fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A server that is bound and wired, ready to run. Tests build one on port 0.
pub struct Application {
    server: HttpServer,
    /// The data directory's one-server lock (SQLite catalogs only).
    _lock: Option<std::fs::File>,
    db: Database,
    leadership: Arc<dyn coffer_domain::ports::Leadership>,
    state: Arc<AppState>,
    options: HttpOptions,
    grace: Duration,
    scheduler: Arc<coffer_application::Scheduler>,
    digest: Option<Arc<coffer_application::DigestService>>,
}

impl Application {
    /// Opens every adapter and binds the listening socket, so any start-up failure
    /// (configuration, database, storage, port) surfaces here, before serving.
    ///
    /// # Errors
    /// The first start-up step that fails, with what Coffer was doing.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        // Bind first: a port in use is the cheapest failure to report.
        let server = HttpServer::bind(&settings.server.bind, settings.server.port).await?;
        // A SQLite catalog belongs to one server; a PostgreSQL one may be shared by
        // several instances (the job queue and the scheduler coordinate through it).
        let lock = if settings.database_url().starts_with("postgres") {
            None
        } else {
            Some(server_lock(&settings.data_dir)?)
        };
        let services = Services::open(settings).await?;
        tracing::info!(
            database = services.db.backend(),
            storage = %settings.storage_root().display(),
            "catalog and storage open"
        );
        services.bootstrap_admin(settings).await?;
        services.jobs.recover().await?;
        tracing::info!(
            instance = services.jobs.instance(),
            shared = services.db.backend() == "postgres",
            "job runner ready"
        );
        services
            .storage
            .init()
            .await
            .context("cannot count the repository's stored bytes")?;
        services
            .keys
            .init()
            .await
            .context("cannot read whether the master key was exported")?;
        alerts::check_disk(&services.disk).await;
        let Services {
            db,
            system,
            auth,
            users,
            tokens,
            audit,
            sources,
            catalog,
            backups,
            restores,
            retention,
            jobs,
            alerts,
            disk: _,
            scheduler,
            storage,
            keys: _,
            maintenance,
            replicas,
            dashboard,
            settings: runtime_settings,
            reports,
            import,
            digest,
        } = services;
        let state = Arc::new(AppState {
            system,
            auth,
            users,
            tokens,
            audit,
            sources,
            catalog,
            backups,
            restores,
            retention,
            jobs,
            maintenance,
            alerts,
            storage,
            dashboard,
            settings: runtime_settings,
            reports,
            replicas,
            import,
            metrics: coffer_http::metrics::MetricsAccess {
                token: settings.metrics.token.clone(),
            },
            trusted_proxies: coffer_http::auth::TrustedProxies::new(
                settings.server.trusted_proxies.clone(),
            ),
            secure_cookies: settings.security.secure_cookies,
            downloads: Arc::new(coffer_http::downloads::DownloadLimits::new(
                usize::try_from(settings.server.max_downloads).unwrap_or(1),
                usize::try_from(settings.server.max_downloads_per_user).unwrap_or(1),
            )),
        });
        let options = HttpOptions {
            max_body_bytes: usize::try_from(settings.server.max_body_bytes)
                .context("server.max_body_bytes does not fit this platform")?,
        };
        Ok(Self {
            server,
            _lock: lock,
            leadership: Arc::new(db.leadership()),
            db,
            state,
            options,
            grace: Duration::from_secs(settings.server.shutdown_timeout_secs),
            scheduler,
            digest,
        })
    }

    #[must_use]
    pub const fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` completes, then drains requests and closes the database.
    ///
    /// # Errors
    /// When the server fails while running.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let jobs = Arc::clone(&self.state.jobs);
        let stopping = Arc::clone(&jobs);
        let disk_watch = alerts::DiskWatch::spawn(
            Arc::clone(self.state.storage.disk()),
            Arc::clone(&self.state.storage),
            alerts::DISK_CHECK_EVERY,
        );
        let stop_disk_watch = disk_watch.stopper();
        let (stop_scheduler, scheduler_stop) = tokio::sync::watch::channel(false);
        let scheduler = if self.scheduler.options().enabled {
            Some(scheduler_loop::spawn(
                Arc::clone(&self.scheduler),
                Arc::clone(&self.state.replicas),
                self.digest.clone(),
                Arc::clone(&self.leadership),
                Arc::new(SystemClock),
                scheduler_stop.clone(),
            ))
        } else {
            tracing::info!("scheduler off (scheduler.enabled = false): nothing runs by itself");
            None
        };
        let settings_loop = (self.db.backend() == "postgres").then(|| {
            scheduler_loop::spawn_settings(Arc::clone(&self.state.settings), scheduler_stop.clone())
        });
        let job_loop = scheduler_loop::spawn_jobs(Arc::clone(&jobs), scheduler_stop);
        // Running jobs are asked to stop as soon as the signal comes, beside the drain
        // of requests in flight, and get the grace period to record that; what still
        // runs after it is marked failed at the next start.
        let shutdown = async move {
            shutdown.await;
            // No scheduled job may start once jobs are being stopped: the loop ends
            // (after the tick in progress, if any) before they are.
            let _ = stop_scheduler.send(true);
            if let Some(task) = scheduler
                && let Err(e) = task.await
            {
                tracing::error!(error = %e, "the scheduler task failed");
            }
            if let Err(e) = job_loop.await {
                tracing::error!(error = %e, "the job runner's heartbeat task failed");
            }
            if let Some(task) = settings_loop
                && let Err(e) = task.await
            {
                tracing::error!(error = %e, "the settings task failed");
            }
            stop_disk_watch.notify_one();
            stopping.shutdown().await;
        };
        let app = coffer_http::app(self.state, &self.options);
        let served = self.server.run(app, shutdown, self.grace).await;
        disk_watch.stop().await;
        served?;
        let deadline = tokio::time::Instant::now() + self.grace;
        while jobs.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if jobs.running() > 0 {
            tracing::warn!(
                jobs = jobs.running(),
                "jobs still running at shutdown; they will read failed after the next start"
            );
        }
        self.db.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
