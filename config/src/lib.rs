//! `coffer-config`: Coffer's typed settings tree.
//!
//! Settings come, lowest precedence first, from the built-in defaults, one configuration
//! file (TOML, or JSON when the file name ends in `.json` — so the prototype's
//! `config.json` keeps working), and `COFFER_*` environment variables: `COFFER_DATA_DIR`
//! for the top-level `data_dir`, `COFFER_SECTION__KEY` for a key in a section (for example
//! `COFFER_SERVER__PORT=9000`). A key Coffer does not know is an error that names it, in
//! the file and in the environment alike: a typo must never silently fall back to a
//! default. `config/coffer.toml` documents every key with its default.
//!
//! This crate knows nothing of the server: it only reads and checks settings.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Json, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod scheduler;
pub use scheduler::SchedulerSettings;

/// The settings tree. Every field has a default, so an empty file is a valid file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where Coffer keeps its database, repository and keys unless told otherwise.
    pub data_dir: PathBuf,
    pub server: ServerSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub storage: StorageSettings,
    pub backup: BackupSettings,
    pub retention: RetentionSettings,
    pub quota: QuotaSettings,
    pub security: SecuritySettings,
    pub restore: RestoreSettings,
    pub jobs: JobSettings,
    pub prune: PruneSettings,
    pub metrics: MetricsSettings,
    pub scheduler: SchedulerSettings,
    pub alerts: AlertSettings,
    /// Alerts by email (`[notify.email]`).
    pub notify: NotifySettings,
    pub disk: DiskSettings,
    /// Off-site copies (`[[replicas]]`), read-only in the API.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaSettings>,
    /// The configuration file these settings were read from, if any (set by the loader,
    /// not a key of the file): one of the files a source may not hold.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./coffer-data"),
            server: ServerSettings::default(),
            log: LogSettings::default(),
            database: DatabaseSettings::default(),
            storage: StorageSettings::default(),
            backup: BackupSettings::default(),
            retention: RetentionSettings::default(),
            quota: QuotaSettings::default(),
            security: SecuritySettings::default(),
            restore: RestoreSettings::default(),
            jobs: JobSettings::default(),
            prune: PruneSettings::default(),
            metrics: MetricsSettings::default(),
            config_file: None,
            scheduler: SchedulerSettings::default(),
            alerts: AlertSettings::default(),
            notify: NotifySettings::default(),
            disk: DiskSettings::default(),
            replicas: Vec::new(),
        }
    }
}

/// One `[[replicas]]` entry: a further backend that copy jobs keep in step with the
/// repository. Its `storage` takes the keys of `[storage]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSettings {
    pub name: String,
    pub storage: StorageSettings,
    /// Never delete anything on the replica.
    #[serde(default)]
    pub append_only: bool,
    /// Cron (five fields, UTC) of its copies; unset: on demand only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Alert when more snapshots than this are not yet copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_snapshots: Option<u32>,
    /// Alert when the oldest snapshot not yet copied is older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_hours: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on. Loopback by default: exposing Coffer is a deliberate choice.
    pub bind: String,
    /// TCP port (the brief's 8001). 0 picks a free port (tests).
    pub port: u16,
    /// Largest request body accepted, in bytes (answers 413 beyond).
    pub max_body_bytes: u64,
    /// Seconds that in-flight requests get to finish after SIGINT/SIGTERM.
    pub shutdown_timeout_secs: u64,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` header is believed for the
    /// client address (audit trail, login throttle). Empty: the socket's address is used;
    /// forwarding headers from other peers are ignored and warned of once.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Downloads (tar/zip) streaming at once, each holding a worker thread (HTTP 429,
    /// `too_many_downloads`, beyond).
    pub max_downloads: u32,
    /// Downloads one user may stream at once (HTTP 429, `too_many_downloads`, beyond).
    pub max_downloads_per_user: u32,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1".to_owned(),
            port: 8001,
            max_body_bytes: 1024 * 1024,
            shutdown_timeout_secs: 30,
            trusted_proxies: Vec::new(),
            max_downloads: 8,
            max_downloads_per_user: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `human` (default) or `json` (one object per line).
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `debug`, `coffer=debug,sqlx=warn`. `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://USER@HOST:PORT/DB`. Unset: `<data_dir>/coffer.db`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connection pool size.
    pub max_connections: u32,
    /// Seconds to wait for a connection before giving up with an error.
    pub connect_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: 8,
            connect_timeout_secs: 5,
        }
    }
}

/// Which storage backend holds the repository; each has its own keys beside `backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A local directory or a mounted NAS share.
    Fs,
    /// An S3-compatible object store (AWS, Garage, Ceph RGW, MinIO).
    S3,
}

impl StorageBackend {
    /// The name used in the configuration.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Fs => "fs",
            Self::S3 => "s3",
        }
    }
}

/// A secret read from the settings (today: the S3 secret key). Its `Debug` never shows
/// it, so a logged settings tree does not leak it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that hands it to the backend.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    pub backend: StorageBackend,
    /// `fs`: the repository's directory. Unset: `<data_dir>/repository`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// `s3`: the service's URL (`https://s3.eu-west-1.amazonaws.com`,
    /// `http://127.0.0.1:3900`). Unset: AWS's endpoint for `region`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `s3`: the bucket (must exist; Coffer never creates or deletes buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// `s3`: the region the bucket lives in (Garage's default is `garage`).
    pub region: String,
    /// `s3`: keys of the repository start with this path inside the bucket (`""`: the
    /// bucket's root), so one bucket can hold several repositories.
    pub prefix: String,
    /// `s3`: address buckets as `endpoint/bucket` (what Garage, MinIO and Ceph expect)
    /// instead of `bucket.endpoint` (AWS's virtual-hosted style).
    pub path_style: bool,
    /// `s3`: a file (mode 0600) holding `access_key_id = ...` and
    /// `secret_access_key = ...` lines (an AWS credentials file's `aws_` names work too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// `s3`: the access key id; from `COFFER_STORAGE__ACCESS_KEY_ID` or the credentials
    /// file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// `s3`: the secret key; only from `COFFER_STORAGE__SECRET_ACCESS_KEY` or the
    /// credentials file — a configuration file holding it is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<Secret>,
    /// `s3`: requests in flight at once per operation (uploads of packs, ranged reads
    /// of a restore).
    pub concurrency: u32,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Fs,
            root: None,
            endpoint: None,
            bucket: None,
            region: "us-east-1".to_owned(),
            prefix: String::new(),
            path_style: true,
            credentials_file: None,
            access_key_id: None,
            secret_access_key: None,
            concurrency: 8,
        }
    }
}

/// S3 credentials, resolved from the environment or the credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

impl StorageSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("`{key}` {why}")));
        if !(1..=64).contains(&self.concurrency) {
            return bad("storage.concurrency", "must be between 1 and 64");
        }
        if self.backend != StorageBackend::S3 {
            return Ok(());
        }
        match self.bucket.as_deref() {
            None | Some("") => return bad("storage.bucket", "must be set when backend = \"s3\""),
            Some(b)
                if b.len() > 63
                    || !b.bytes().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.')
                    }) =>
            {
                return bad(
                    "storage.bucket",
                    "must be an S3 bucket name (at most 63 of a-z, 0-9, '-' and '.')",
                );
            }
            Some(_) => {}
        }
        if self.region.trim().is_empty() {
            return bad("storage.region", "must not be empty");
        }
        if let Some(endpoint) = &self.endpoint {
            let rest = endpoint
                .strip_prefix("https://")
                .or_else(|| endpoint.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return bad(
                    "storage.endpoint",
                    "must be an http:// or https:// URL with a host",
                );
            }
        }
        if !self.prefix.is_empty()
            && (self.prefix.starts_with('/')
                || self.prefix.split('/').any(|seg| seg == "." || seg == "..")
                || !self
                    .prefix
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/')))
        {
            return bad(
                "storage.prefix",
                "must be a relative path of [A-Za-z0-9._-/] segments (no '.' or '..')",
            );
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return bad(
                "storage.access_key_id",
                "and storage.secret_access_key must be given together",
            );
        }
        if self.access_key_id.is_some() && self.credentials_file.is_some() {
            return bad(
                "storage.credentials_file",
                "must not be set when the keys come from the environment (choose one)",
            );
        }
        if self.access_key_id.is_none() && self.credentials_file.is_none() {
            return bad(
                "storage.credentials_file",
                "must be set when backend = \"s3\" (or set COFFER_STORAGE__ACCESS_KEY_ID and \
                 COFFER_STORAGE__SECRET_ACCESS_KEY)",
            );
        }
        Ok(())
    }

    /// The S3 credentials in force: from the environment, or read from
    /// `credentials_file`, which must be a regular file readable by its owner only.
    ///
    /// # Errors
    /// A missing, unreadable or too widely readable file, or one without both keys.
    /// Messages name the file, never a key's value.
    pub fn credentials(&self) -> Result<Option<S3Credentials>, ConfigError> {
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            return Ok(Some(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
            }));
        }
        let Some(path) = &self.credentials_file else {
            return Ok(None);
        };
        let invalid = |why: String| {
            ConfigError::Invalid(format!(
                "storage.credentials_file {}: {why}",
                path.display()
            ))
        };
        let text = read_private_file(path, "storage.credentials_file")?;
        let (mut id, mut secret) = (None, None);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(
                    "holds a line that is not `name = value` (the line is not shown: it may hold a key)"
                        .to_owned(),
                ));
            };
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim() {
                "access_key_id" | "aws_access_key_id" => id = Some(value),
                "secret_access_key" | "aws_secret_access_key" => secret = Some(value),
                _ => {}
            }
        }
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                Ok(Some(S3Credentials {
                    access_key_id: id,
                    secret_access_key: Secret(secret),
                }))
            }
            _ => Err(invalid(
                "must hold both access_key_id and secret_access_key".to_owned(),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// Encrypt stored objects (AES-256-GCM), for good once the repository exists.
    pub encryption_enabled: bool,
    /// A backup whose source holds this share (percent) fewer files or bytes than its
    /// last good snapshot — or none at all — is kept but marked suspicious, raises a
    /// critical alert and replaces no older snapshot. 0: only an empty source counts.
    pub suspicious_shrink_percent: u8,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            encryption_enabled: true,
            suspicious_shrink_percent: 50,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Apply retention after each successful backup.
    pub enabled: bool,
    /// Keep at most this many snapshots per source (the newest). 0: no count limit.
    pub max_backups: u32,
    /// Remove snapshots older than this many days (a hard limit the keep rules below do
    /// not lift). 0: no age limit.
    pub max_age_days: u32,
    /// Keep every snapshot of the last N days. 0: off.
    pub keep_within_days: u32,
    /// Keep the newest snapshot of each of the last N days that have one. 0: off.
    pub keep_daily: u32,
    /// ... of each of the last N ISO weeks. 0: off.
    pub keep_weekly: u32,
    /// ... of each of the last N months. 0: off.
    pub keep_monthly: u32,
    /// ... of each of the last N years. 0: off.
    pub keep_yearly: u32,
    /// Snapshots taken within one clock-aligned window of this many minutes count once
    /// toward `max_backups` and are kept together, so a burst of backups never pushes
    /// older history out. 0: every snapshot counts.
    pub burst_minutes: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_backups: 10,
            max_age_days: 30,
            keep_within_days: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            burst_minutes: 60,
        }
    }
}

/// No quota by default (0 = unlimited): a backup server that silently starts refusing
/// backups at an arbitrary size would surprise; operators set their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    /// Refuse backups once the stored bytes (after dedup and compression) exceed this many
    /// MiB. 0: no quota.
    pub max_storage_mb: u64,
    /// Raise a warning alert once stored bytes pass this many MiB. 0: no warning.
    pub warning_threshold_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// The 256-bit master key (created at first start, mode 0600). Unset:
    /// `<data_dir>/keys/master.key`. Losing it loses the backups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_key_file: Option<PathBuf>,
    /// Lifetime of a login session (JWT `exp`), in hours.
    pub session_timeout_hours: u32,
    /// The 256-bit key that signs session tokens (created at first start, mode 0600).
    /// Unset: `<data_dir>/keys/session.key`. Replacing it ends every session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key_file: Option<PathBuf>,
    /// The 256-bit key that seals the audit trail's chain (HMAC-SHA256; created at first
    /// start, mode 0600). Unset: `<data_dir>/keys/audit.key`. Keep it outside the
    /// database's reach: whoever holds it and the database can rewrite the trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_key_file: Option<PathBuf>,
    /// Mark the session and device cookies `Secure`: set to true when users reach Coffer
    /// over HTTPS.
    pub secure_cookies: bool,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            encryption_key_file: None,
            session_timeout_hours: 24,
            session_key_file: None,
            audit_key_file: None,
            secure_cookies: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreSettings {
    /// Directories that restores requested over the API may write under (checked with
    /// every symlink resolved). The first is the default target's parent. Unset:
    /// `[<data_dir>/restored]`. An empty list turns API restores off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_roots: Option<Vec<PathBuf>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobSettings {
    /// Background jobs (backup, restore, verify) that run at once; the rest queue.
    pub max_running: u32,
    /// Jobs one user may have waiting in the queue at once (HTTP 429, `too_many_jobs`,
    /// beyond). 0: no cap. Scheduled jobs are not counted.
    pub max_queued_per_user: u32,
    /// Seconds a running job stays its server's without a heartbeat (sent every 2 s).
    /// With several instances on one PostgreSQL catalog, a job whose instance died is
    /// declared interrupted by another this long after its last heartbeat.
    pub lease_secs: u32,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            max_running: 2,
            max_queued_per_user: 10,
            lease_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruneSettings {
    /// A pack whose unused share reaches this percentage is repacked by garbage
    /// collection (its live data copied, the pack deleted). 100: never repack.
    pub repack_threshold_percent: u8,
}

/// Who may scrape `GET /metrics`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Bearer token a remote scraper sends. Unset: only clients on this machine may
    /// scrape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Default for PruneSettings {
    fn default() -> Self {
        Self {
            repack_threshold_percent: 20,
        }
    }
}

/// Secrets a configuration file must not hold (they come from the environment or a
/// 0600 file).
const SECRET_KEYS: [&str; 2] = ["storage.secret_access_key", "notify.email.password"];

/// Where new alerts go besides Coffer's own alert list and log.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// POST each new alert as JSON to this `http://` or `https://` URL, retried with
    /// backoff; a backup never waits for it. Unset: no webhook. The URL may carry a token,
    /// so only its host is ever logged (and shown by `Debug`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field(
                "webhook_url",
                &self
                    .webhook_url
                    .as_deref()
                    .map(|u| format!("<a URL to {}>", url_host(u).unwrap_or("?"))),
            )
            .finish()
    }
}

/// Where alerts go besides the webhook: email.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifySettings {
    /// `[notify.email]`: unset, no email is sent. Boxed: most servers have none, and
    /// the settings travel by value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<Box<EmailSettings>>,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    /// Plain SMTP (a relay on the same host or a trusted network only).
    None,
    /// SMTP upgraded with STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl EmailTls {
    /// The port this protection is usually served on.
    #[must_use]
    pub const fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::Starttls => 587,
            Self::Tls => 465,
        }
    }
}

/// Alerts by email through an SMTP server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    /// The SMTP server's host name (checked against its certificate with TLS).
    pub host: String,
    /// Default: 25 with `tls = "none"`, 587 with `starttls`, 465 with `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: EmailTls,
    /// Log in as this user (with the password below); unset: no login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file (mode 0600) holding the password on its first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The password, only from `COFFER_NOTIFY__EMAIL__PASSWORD`: a configuration file
    /// holding it is refused.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// The sender (`Coffer <backup@example.com>` or `backup@example.com`).
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// Another email about the same alert kind and source goes out at most this often
    /// (what is held back is counted in the next one).
    #[serde(default = "default_email_interval")]
    pub min_interval_minutes: u32,
    /// A PEM file of CA certificates to trust besides the system's (an internal CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Send a daily digest (the previous day's backups per source, failures, the storage
    /// trend) at this time of day, UTC, `HH:MM`; unset: no digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_at: Option<String>,
}

/// `HH:MM` (24 hours) as hours and minutes.
fn parse_time_of_day(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

const fn default_email_interval() -> u32 {
    60
}

impl std::fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("min_interval_minutes", &self.min_interval_minutes)
            .field("ca_file", &self.ca_file)
            .field("digest_at", &self.digest_at)
            .finish()
    }
}

impl EmailSettings {
    /// The port in force.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad =
            |key: &str, why: &str| Err(ConfigError::Invalid(format!("`notify.email.{key}` {why}")));
        if self.host.trim().is_empty() {
            return bad("host", "must name the SMTP server");
        }
        if self.port == Some(0) {
            return bad("port", "must be between 1 and 65535");
        }
        if self.to.is_empty() {
            return bad("to", "must name at least one recipient");
        }
        if !(1..=1440).contains(&self.min_interval_minutes) {
            return bad("min_interval_minutes", "must be between 1 and 1440");
        }
        if self.password_file.is_some() && self.password.is_some() {
            return bad(
                "password_file",
                "and COFFER_NOTIFY__EMAIL__PASSWORD must not both be set",
            );
        }
        if (self.password_file.is_some() || self.password.is_some()) && self.username.is_none() {
            return bad("username", "must be set when a password is");
        }
        if self.username.is_some() && self.password_file.is_none() && self.password.is_none() {
            return bad(
                "username",
                "needs a password: `password_file` or COFFER_NOTIFY__EMAIL__PASSWORD",
            );
        }
        if let Some(at) = &self.digest_at
            && parse_time_of_day(at).is_none()
        {
            return bad(
                "digest_at",
                "must be a time of day, UTC, as HH:MM (for example 07:00)",
            );
        }
        Ok(())
    }

    /// The time of day of the daily digest (hours, minutes; UTC), when one is set.
    #[must_use]
    pub fn digest_time(&self) -> Option<(u32, u32)> {
        self.digest_at.as_deref().and_then(parse_time_of_day)
    }

    /// The password in force: from the environment, or the first line of
    /// `password_file`, which must be a regular file readable by its owner only.
    ///
    /// # Errors
    /// A missing, unreadable or too widely readable file. Messages name the file, never
    /// the password.
    pub fn password(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = read_private_file(path, "notify.email.password_file")?;
        let line = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r');
        if line.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "notify.email.password_file {}: its first line is empty",
                path.display()
            )));
        }
        Ok(Some(Secret(line.to_owned())))
    }
}

/// A file only its owner may read, as text. Messages name the file and `key`, never
/// what it holds.
fn read_private_file(path: &Path, key: &str) -> Result<String, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid(format!("{key} {}: {why}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
    if !meta.is_file() {
        return Err(invalid("is not a regular file".to_owned()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(invalid(format!(
                "is readable by others (mode {mode:o}); run chmod 600 on it"
            )));
        }
    }
    std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))
}

/// The host (and port) of an `http(s)://` URL, without any user information; `None` when
/// the URL is not http(s) or names no host.
#[must_use]
pub fn url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty() && !host.starts_with(':')).then_some(host)
}

/// Free space of the volume that holds the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskSettings {
    /// Raise a `disk_low` warning alert below this many MiB free. 0: no warning.
    pub warning_free_mb: u64,
    /// Refuse new backups (HTTP 507, `disk_full`) and make the alert critical below this
    /// many MiB free. 0: no reserve. At most `warning_free_mb`. A restore likewise needs
    /// its bytes plus this reserve free on the target's volume.
    pub min_free_mb: u64,
}

impl Default for DiskSettings {
    fn default() -> Self {
        Self {
            warning_free_mb: 5120,
            min_free_mb: 1024,
        }
    }
}

/// Why settings could not be loaded. The message names the offending key and source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        // figment reports one error per problem; join them so every bad key is named.
        let messages: Vec<String> = err.into_iter().map(|e| describe(&e)).collect();
        Self::Invalid(messages.join("; "))
    }
}

fn describe(err: &figment::Error) -> String {
    let key = err.path.join(".");
    let origin = err
        .metadata
        .as_ref()
        .map(|m| match &m.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", m.name),
        })
        .unwrap_or_default();
    match &err.kind {
        // figment's path already ends with the unknown field.
        figment::error::Kind::UnknownField(field, _) => {
            let full = if key.is_empty() {
                field.as_str()
            } else {
                key.as_str()
            };
            format!("unknown configuration key `{full}`{origin}")
        }
        kind => {
            if key.is_empty() {
                format!("invalid configuration: {kind}{origin}")
            } else {
                format!("invalid configuration key `{key}`: {kind}{origin}")
            }
        }
    }
}

/// The top-level keys and sections; environment variables outside them are not ours
/// (`COFFER_ADMIN_PASSWORD`, `COFFER_TEST_*`) and are left alone.
const ENV_ROOTS: [&str; 17] = [
    "data_dir",
    "server",
    "log",
    "database",
    "storage",
    "backup",
    "retention",
    "quota",
    "security",
    "restore",
    "jobs",
    "prune",
    "metrics",
    "scheduler",
    "alerts",
    "notify",
    "disk",
];

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/coffer.toml";

impl Settings {
    /// Loads defaults, then `file` (TOML, or JSON for `*.json`), then `COFFER_*`
    /// environment variables, and checks the result.
    ///
    /// # Errors
    /// A missing file, a syntax error, an unknown key, a value of the wrong type or a
    /// value out of range, with the key named.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::figment(file)?.extract::<Self>()?.validated()
    }

    /// The layered sources, for callers that want to add one (the CLI's `--data-dir`).
    ///
    /// # Errors
    /// When `file` is given but does not exist.
    pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Missing(file.to_path_buf()));
            }
            let is_json = file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            let (merged, holds_secret) = if is_json {
                let only = Figment::from(Json::file_exact(file));
                (
                    figment.merge(Json::file_exact(file)),
                    SECRET_KEYS.iter().find(|k| only.find_value(k).is_ok()),
                )
            } else {
                let only = Figment::from(Toml::file_exact(file));
                (
                    figment.merge(Toml::file_exact(file)),
                    SECRET_KEYS.iter().find(|k| only.find_value(k).is_ok()),
                )
            };
            if let Some(key) = holds_secret {
                let (file_key, env) = if *key == "notify.email.password" {
                    (
                        "notify.email.password_file",
                        "COFFER_NOTIFY__EMAIL__PASSWORD",
                    )
                } else {
                    (
                        "storage.credentials_file",
                        "COFFER_STORAGE__SECRET_ACCESS_KEY",
                    )
                };
                return Err(ConfigError::Invalid(format!(
                    "`{key}` must not be written in {}: configuration files are read by \
                     many; put it in a 0600 file named by `{file_key}`, or in {env}",
                    file.display()
                )));
            }
            figment = merged;
        }
        Ok(figment.merge(env_provider()))
    }

    /// Extracts and validates settings from a prepared figment.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        figment.extract::<Self>()?.validated()
    }

    /// Range checks that types alone cannot express.
    ///
    /// # Errors
    /// The first rule broken, with the key named.
    pub fn validated(self) -> Result<Self, ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("`{key}` {why}")));
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty");
        }
        if self.server.bind.trim().is_empty() {
            return bad("server.bind", "must not be empty");
        }
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes", "must be at least 1024");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if self.database.connect_timeout_secs == 0 {
            return bad("database.connect_timeout_secs", "must be at least 1");
        }
        if self.database.url.as_deref().is_some_and(|u| {
            !(u.starts_with("sqlite:")
                || u.starts_with("postgres://")
                || u.starts_with("postgresql://"))
        }) {
            return bad(
                "database.url",
                "must start with sqlite: or postgres:// (MySQL is not supported)",
            );
        }
        if self.security.session_timeout_hours == 0 || self.security.session_timeout_hours > 24 * 30
        {
            return bad(
                "security.session_timeout_hours",
                "must be between 1 and 720 hours",
            );
        }
        if self.jobs.max_running == 0 || self.jobs.max_running > 64 {
            return bad("jobs.max_running", "must be between 1 and 64");
        }
        if !(10..=3600).contains(&self.jobs.lease_secs) {
            return bad(
                "jobs.lease_secs",
                "must be between 10 and 3600 seconds (heartbeats come every 2 s)",
            );
        }
        if self.jobs.max_queued_per_user > 100 {
            return bad(
                "jobs.max_queued_per_user",
                "must be at most 100 (the queue's size); 0 turns the cap off",
            );
        }
        if self.server.max_downloads == 0 || self.server.max_downloads > 256 {
            return bad("server.max_downloads", "must be between 1 and 256");
        }
        if self.server.max_downloads_per_user == 0
            || self.server.max_downloads_per_user > self.server.max_downloads
        {
            return bad(
                "server.max_downloads_per_user",
                "must be between 1 and server.max_downloads",
            );
        }
        if self
            .metrics
            .token
            .as_deref()
            .is_some_and(|t| t.len() < 16 || t.chars().any(char::is_whitespace))
        {
            return bad(
                "metrics.token",
                "must be at least 16 characters without spaces (or unset for local-only scraping)",
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let key = format!("replicas[{i}]");
            if r.name.trim().is_empty() {
                return bad(&format!("{key}.name"), "must not be empty");
            }
            if !names.insert(r.name.trim().to_owned()) {
                return bad(&format!("{key}.name"), "is the name of another replica");
            }
            match r.storage.backend {
                StorageBackend::Fs => {
                    if r.storage.root.as_ref().is_none_or(|p| !p.is_absolute()) {
                        return bad(
                            &format!("{key}.storage.root"),
                            "must be set to an absolute directory",
                        );
                    }
                }
                StorageBackend::S3 => {
                    // A replica's keys come from its own file: the environment's
                    // COFFER_STORAGE__* keys are the repository's.
                    if r.storage.access_key_id.is_some() || r.storage.secret_access_key.is_some() {
                        return bad(
                            &format!("{key}.storage"),
                            "takes its S3 keys from credentials_file only (a 0600 file), never \
                             written in the configuration",
                        );
                    }
                    if r.storage
                        .credentials_file
                        .as_ref()
                        .is_none_or(|p| !p.is_absolute())
                    {
                        return bad(
                            &format!("{key}.storage.credentials_file"),
                            "must be set to an absolute path (a 0600 file with access_key_id \
                             and secret_access_key)",
                        );
                    }
                    r.storage
                        .validate()
                        .map_err(|e| ConfigError::Invalid(format!("{key}: {e}")))?;
                }
            }
        }
        if self.backup.suspicious_shrink_percent > 100 {
            return bad("backup.suspicious_shrink_percent", "must be at most 100");
        }
        if self.prune.repack_threshold_percent > 100 {
            return bad(
                "prune.repack_threshold_percent",
                "must be between 0 and 100",
            );
        }
        if self
            .restore
            .allowed_roots
            .as_ref()
            .is_some_and(|roots| roots.iter().any(|r| r.as_os_str().is_empty()))
        {
            return bad("restore.allowed_roots", "must not contain an empty path");
        }
        let q = &self.quota;
        if q.max_storage_mb > 0 && q.warning_threshold_mb > q.max_storage_mb {
            return bad(
                "quota.warning_threshold_mb",
                "must not be above quota.max_storage_mb",
            );
        }
        if self
            .alerts
            .webhook_url
            .as_deref()
            .is_some_and(|u| url_host(u).is_none())
        {
            return bad(
                "alerts.webhook_url",
                "must be an http:// or https:// URL with a host",
            );
        }
        if let Some(email) = &self.notify.email {
            email.validate()?;
        }
        if self.disk.min_free_mb > self.disk.warning_free_mb {
            return bad("disk.min_free_mb", "must not be above disk.warning_free_mb");
        }
        self.scheduler.validate()?;
        self.storage.validate()?;
        Ok(self)
    }

    /// The database URL in force: the configured one, or a SQLite file in `data_dir`.
    #[must_use]
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("coffer.db").display()
            )
        })
    }

    /// The repository directory of the `fs` backend.
    #[must_use]
    pub fn storage_root(&self) -> PathBuf {
        self.storage
            .root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("repository"))
    }

    /// The session-signing key file in force.
    #[must_use]
    pub fn session_key_file(&self) -> PathBuf {
        self.security
            .session_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("session.key"))
    }

    /// The audit-chain key file in force.
    #[must_use]
    pub fn audit_key_file(&self) -> PathBuf {
        self.security
            .audit_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("audit.key"))
    }

    /// The directories API restores may write under, in force.
    #[must_use]
    pub fn restore_roots(&self) -> Vec<PathBuf> {
        self.restore
            .allowed_roots
            .clone()
            .unwrap_or_else(|| vec![self.data_dir.join("restored")])
    }

    /// The SQLite database file in force, when the catalog is one (`None` for PostgreSQL).
    #[must_use]
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = self.database_url();
        let rest = url.strip_prefix("sqlite://")?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The master key file in force.
    #[must_use]
    pub fn encryption_key_file(&self) -> PathBuf {
        self.security
            .encryption_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("master.key"))
    }
}

fn env_provider() -> Env {
    Env::prefixed("COFFER_").split("__").filter(|key| {
        let key = key.as_str().to_ascii_lowercase();
        ENV_ROOTS
            .iter()
            .any(|root| key == *root || key.starts_with(&format!("{root}.")))
    })
}

#[cfg(test)]
mod tests;
