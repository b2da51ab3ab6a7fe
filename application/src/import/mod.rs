//! Importing an installation of the Python prototype (`coffer import prototype`): its
//! completed backups become snapshots of one source, dated with their original times;
//! its users come over with their roles (their bcrypt hashes work once, at the next
//! login, and are replaced by argon2id); its audit log comes over as imported history.
//!
//! Re-running adds nothing twice: a backup whose snapshot (same source, same original
//! time) is in the catalog is passed over, a user whose name exists is left alone, and
//! the audit history is imported once per installation (the `import` row that follows
//! it says so). A dry run reads everything, checks nothing in the archives, and writes
//! nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_domain::audit::{AuditAction, AuditEntry, AuditFilter};
use coffer_domain::auth::{Actor, ClientInfo, Permission, Role, Username};
use coffer_domain::crypto::{PasswordCheck, PasswordHasher};
use coffer_domain::engine::{Cancel, EngineFailure, ImportRequest, Progress, SnapshotEngine};
use coffer_domain::import::{
    DEFAULT_ADMIN, InstallationProblem, PrototypeBackup, PrototypeInstallation, PrototypeReader,
    parse_time, role_of,
};
use coffer_domain::ports::{
    AuditRepository, BackupCatalog, BackupFilter, Clock, SourceRepository, SourceSpec, UserChanges,
    UserRepository,
};
use coffer_domain::secrets::Secret;
use serde_json::json;

use async_trait::async_trait;
use coffer_domain::jobs::{JobParams, JobResult};

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};
use crate::jobs::{JobExecutor, JobFailure, JobQueue, JobStatus, SubmitError};
use crate::settings::{AdoptQuota, QuotaMib};
use crate::storage::Admission;

/// What to import and how.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The installation directory.
    pub dir: String,
    /// The database file, when `config.json` does not name it and it is not the brief's
    /// `backup_system.db`.
    pub db: Option<String>,
    /// The source the snapshots go to (default `prototype`).
    pub source: Option<String>,
    /// Read and report; write nothing.
    pub dry_run: bool,
    /// `config.json`'s retention becomes the source's, and its quota the server's.
    pub adopt_settings: bool,
}

/// What became of one backup row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    Imported {
        snapshot: String,
        files: u64,
        bytes: u64,
    },
    /// A dry run: it would be imported.
    WouldImport,
    /// Imported by an earlier run.
    AlreadyImported { snapshot: String },
    /// Not imported, and why (a failed run, a damaged archive, an unreadable date).
    Skipped { reason: String },
}

/// One backup row and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub id: i64,
    pub filename: String,
    pub created_at: Option<DateTime<Utc>>,
    pub outcome: BackupOutcome,
}

/// What became of one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserReport {
    pub username: String,
    pub role: Role,
    pub active: bool,
    /// `imported`, `would_import`, `exists`, `skipped`.
    pub outcome: &'static str,
    /// Why it was skipped, or disabled.
    pub note: Option<String>,
}

/// The whole import's outcome.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub dry_run: bool,
    pub dir: String,
    pub database: String,
    pub fingerprint: String,
    pub source: String,
    pub source_created: bool,
    pub backups: Vec<BackupReport>,
    pub users: Vec<UserReport>,
    /// Audit rows imported (or, in a dry run, that would be).
    pub audit_rows: u64,
    /// The audit history came over in an earlier run.
    pub audit_already: bool,
    /// What `--adopt-settings` changes (or would): lines for people.
    pub settings: Vec<String>,
    /// The quota to put in force (MiB: quota, warning), when adopted.
    pub quota: Option<(u64, u64)>,
}

impl ImportReport {
    /// How many backups were imported (or would be).
    #[must_use]
    pub fn imported(&self) -> usize {
        self.backups
            .iter()
            .filter(|b| {
                matches!(
                    b.outcome,
                    BackupOutcome::Imported { .. } | BackupOutcome::WouldImport
                )
            })
            .count()
    }

    /// How many backups an earlier run imported.
    #[must_use]
    pub fn already_imported(&self) -> usize {
        self.backups
            .iter()
            .filter(|b| matches!(b.outcome, BackupOutcome::AlreadyImported { .. }))
            .count()
    }

    /// How many users were imported (or, in a dry run, would be).
    #[must_use]
    pub fn users_imported(&self) -> usize {
        self.users
            .iter()
            .filter(|u| matches!(u.outcome, "imported" | "would_import"))
            .count()
    }

    /// The backups not imported, with why.
    #[must_use]
    pub fn skipped(&self) -> Vec<&BackupReport> {
        self.backups
            .iter()
            .filter(|b| matches!(b.outcome, BackupOutcome::Skipped { .. }))
            .collect()
    }

    /// The report as JSON (`coffer import prototype --json`, the job's result).
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let backups: Vec<_> = self
            .backups
            .iter()
            .map(|b| {
                let mut v = json!({
                    "id": b.id,
                    "filename": b.filename,
                    "created_at": b.created_at.map(|t| t.to_rfc3339()),
                });
                let (outcome, extra) = match &b.outcome {
                    BackupOutcome::Imported {
                        snapshot,
                        files,
                        bytes,
                    } => (
                        "imported",
                        json!({"snapshot_id": snapshot, "files": files, "bytes": bytes}),
                    ),
                    BackupOutcome::WouldImport => ("would_import", json!({})),
                    BackupOutcome::AlreadyImported { snapshot } => {
                        ("already_imported", json!({"snapshot_id": snapshot}))
                    }
                    BackupOutcome::Skipped { reason } => ("skipped", json!({"reason": reason})),
                };
                v["outcome"] = json!(outcome);
                if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
                    v.extend(extra.clone());
                }
                v
            })
            .collect();
        let users: Vec<_> = self
            .users
            .iter()
            .map(|u| {
                json!({"username": u.username, "role": u.role.as_str(), "active": u.active,
                       "outcome": u.outcome, "note": u.note})
            })
            .collect();
        json!({
            "dry_run": self.dry_run,
            "installation": self.dir,
            "database": self.database,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "source_created": self.source_created,
            "backups": backups,
            "imported": self.imported(),
            "skipped": self.skipped().len(),
            "users": users,
            "audit_rows": self.audit_rows,
            "audit_already_imported": self.audit_already,
            "settings": self.settings,
        })
    }
}

/// Errors of an import as a whole (one archive's trouble is a skipped row, not this).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `invalid_installation`: the directory is not a readable installation.
    #[error("{0}")]
    Installation(#[from] InstallationProblem),
    /// `source_conflict`: the source name belongs to a source of another path.
    #[error("{0}")]
    SourceTaken(String),
    /// Storage failed, or the import was cancelled: what was imported so far stays.
    #[error("{0}")]
    Engine(String),
    #[error("cancelled")]
    Cancelled,
    /// `invalid_path`: the directory is not an absolute path.
    #[error("{0}")]
    InvalidPath(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

impl CodedError for ImportError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::Installation(_) => "invalid_installation",
            Self::SourceTaken(_) => "source_conflict",
            Self::Engine(_) => "storage_error",
            Self::Cancelled => "cancelled",
            Self::InvalidPath(_) => "invalid_path",
            Self::Submit(e) => e.code(),
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::Cancelled => ErrorClass::Cancelled,
            Self::Submit(e) => e.class(),
            Self::Installation(_)
            | Self::SourceTaken(_)
            | Self::Engine(_)
            | Self::InvalidPath(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(ImportError);

/// The ports an import writes through.
pub struct ImportPorts {
    pub reader: Arc<dyn PrototypeReader>,
    pub engine: Arc<dyn SnapshotEngine>,
    pub sources: Arc<dyn SourceRepository>,
    pub catalog: Arc<dyn BackupCatalog>,
    pub users: Arc<dyn UserRepository>,
    pub passwords: Arc<dyn PasswordHasher>,
    /// The trail's rows, appended with their original times for the imported history.
    pub audit_rows: Arc<dyn AuditRepository>,
    pub admission: Arc<dyn Admission>,
    /// Where imports asked for over the API wait their turn.
    pub queue: Arc<dyn JobQueue>,
    /// Puts the prototype's quota in force (`adopt_settings`).
    pub quota: Arc<dyn AdoptQuota>,
}

/// Imports prototype installations (permission `manage_users` and `manage_system`: an
/// administrator's).
pub struct ImportService {
    ports: ImportPorts,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

/// The default name of the source an installation's snapshots go to.
pub const DEFAULT_SOURCE: &str = "prototype";

impl ImportService {
    #[must_use]
    pub fn new(ports: ImportPorts, clock: Arc<dyn Clock>, audit: AuditLog) -> Self {
        Self {
            ports,
            clock,
            audit,
        }
    }

    /// Queues an import (the API's way: it runs as a job, its report the job's result).
    ///
    /// # Errors
    /// `forbidden` for anyone but an administrator; `invalid_path` for a relative
    /// directory, `invalid_installation` for one that is not an installation;
    /// `job_running` while another import is queued or running.
    pub async fn start(
        &self,
        actor: &Actor,
        options: ImportOptions,
    ) -> Result<JobStatus, ImportError> {
        actor.require(Permission::ManageUsers)?;
        actor.require(Permission::ManageSystem)?;
        if !options.dir.starts_with('/') {
            return Err(ImportError::InvalidPath(format!(
                "{:?}: the installation directory must be an absolute path on the server",
                options.dir
            )));
        }
        // A directory that is no installation is told now, not as a failed job.
        self.ports
            .reader
            .read(&options.dir, options.db.as_deref())
            .await?;
        let ImportOptions {
            dir,
            db,
            source,
            dry_run,
            adopt_settings,
        } = options;
        Ok(self
            .ports
            .queue
            .submit(
                actor,
                JobParams::Import {
                    dir,
                    db,
                    source,
                    dry_run,
                    adopt_settings,
                },
            )
            .await?)
    }

    /// Imports (or, with `dry_run`, reports what would be imported from) the
    /// installation in `options.dir`. Progress counts archives.
    ///
    /// # Errors
    /// `forbidden` for anyone but an administrator; `invalid_installation` when the
    /// directory cannot be read as one; `source_conflict`; storage failures and cancel
    /// stop the import (what was imported stays, a re-run goes on from there).
    pub async fn import_prototype(
        &self,
        actor: &Actor,
        options: &ImportOptions,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<ImportReport, ImportError> {
        actor.require(Permission::ManageUsers)?;
        actor.require(Permission::ManageSystem)?;
        let entry = AuditEntry::new(&actor.username, AuditAction::Import, &actor.client)
            .resource(format!("prototype:{}", options.dir));
        let installation = match self
            .ports
            .reader
            .read(&options.dir, options.db.as_deref())
            .await
        {
            Ok(i) => i,
            Err(e) => {
                if !options.dry_run {
                    self.audit
                        .record_best_effort(entry.failed().detail(e.to_string()))
                        .await;
                }
                return Err(e.into());
            }
        };
        let entry = entry.resource(format!("prototype:{}", installation.fingerprint));
        let result = self
            .run(actor, options, &installation, progress, cancel)
            .await;
        if options.dry_run {
            return result;
        }
        match &result {
            Ok(report) => {
                self.audit
                    .record(entry.detail(format!(
                        "{}: {} backups imported, {} skipped, {} already there; {} users imported; {} audit rows imported{}",
                        installation.dir,
                        report.imported(),
                        report.skipped().len(),
                        report.already_imported(),
                        report.users_imported(),
                        report.audit_rows,
                        if report.audit_already { " (history imported before)" } else { "" },
                    )))
                    .await?;
            }
            Err(e) => {
                self.audit
                    .record_best_effort(entry.failed().detail(format!("{}: {e}", installation.dir)))
                    .await;
            }
        }
        result
    }

    async fn run(
        &self,
        actor: &Actor,
        options: &ImportOptions,
        installation: &PrototypeInstallation,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<ImportReport, ImportError> {
        let now = self.clock.now();
        let source_name = options.source.as_deref().unwrap_or(DEFAULT_SOURCE);
        let retention = options
            .adopt_settings
            .then(|| installation.settings.retention())
            .flatten();
        let mut settings = Vec::new();
        let mut quota = None;
        if options.adopt_settings {
            match retention {
                Some(r) => settings.push(format!(
                    "source `{source_name}` keeps the newest {} snapshots and none older than {} days (the prototype's retention)",
                    r.max_backups, r.max_age_days
                )),
                None => settings.push(format!(
                    "source `{source_name}` keeps the configured retention (the prototype's retention was off or unset)"
                )),
            }
            if let Some(max) = installation.settings.max_storage_mb {
                let warning = installation
                    .settings
                    .warning_threshold_mb
                    .unwrap_or(0)
                    .min(max);
                settings.push(format!(
                    "the server's storage quota becomes {max} MiB, with a warning at {warning} MiB (the prototype's quota)"
                ));
                quota = Some((max, warning));
            }
        }
        let existing = self.ports.sources.find_by_name(source_name).await?;
        if let Some(s) = &existing
            && s.path != installation.dir
        {
            return Err(ImportError::SourceTaken(format!(
                "a source named `{source_name}` exists for {}: name another with --source NAME",
                s.path
            )));
        }
        let source_created = existing.is_none();
        let source = match existing {
            Some(s) => Some(s),
            None if options.dry_run => None,
            None => {
                let mut spec = SourceSpec::plain(source_name, &installation.dir);
                spec.retention = retention;
                let created = self.ports.sources.create(&spec, now).await?;
                self.audit
                    .record(
                        AuditEntry::new(&actor.username, AuditAction::SourceCreate, &actor.client)
                            .resource(format!("source:{}", created.id))
                            .detail(format!(
                                "`{}`: {} (for the prototype's imported backups)",
                                created.name, created.path
                            )),
                    )
                    .await?;
                Some(created)
            }
        };
        if options.adopt_settings
            && !source_created
            && let Some(s) = &source
            && retention.is_some()
            && s.retention != retention
        {
            settings.push(format!(
                "source `{source_name}` exists: its retention is left as it is (change it with `coffer sources set-retention`)"
            ));
        }
        // Snapshots of this source already in the catalog, by their time.
        let mut taken: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
        if let Some(s) = &source {
            let mut offset = 0;
            loop {
                let page = self
                    .ports
                    .catalog
                    .query(&BackupFilter {
                        source_id: Some(s.id),
                        limit: 500,
                        offset,
                        ..BackupFilter::default()
                    })
                    .await?;
                let n = page.items.len() as u64;
                for e in page.items {
                    taken.insert(micros(e.created_at), e.snapshot_id.to_string());
                }
                if n < 500 {
                    break;
                }
                offset += n;
            }
        }
        let candidates = installation
            .backups
            .iter()
            .filter(|b| b.completed())
            .count() as u64;
        progress.set_totals(candidates, 0);
        let mut backups = Vec::new();
        for backup in &installation.backups {
            if cancel.is_cancelled() {
                return Err(ImportError::Cancelled);
            }
            let created_at = parse_time(&backup.created_at);
            let outcome = self
                .one_backup(
                    backup,
                    created_at,
                    source.as_ref().map(|s| (s.id, s.name.as_str())),
                    source_name,
                    installation,
                    &taken,
                    options.dry_run,
                    &cancel,
                )
                .await?;
            if let BackupOutcome::Imported { snapshot, .. } = &outcome
                && let Some(t) = created_at
            {
                taken.insert(micros(t), snapshot.clone());
            }
            if backup.completed() {
                progress.add(1, 0);
            }
            backups.push(BackupReport {
                id: backup.id,
                filename: backup.filename.clone(),
                created_at,
                outcome,
            });
        }
        let users = self.users(actor, installation, options.dry_run).await?;
        let (audit_rows, audit_already) = self.history(installation, options.dry_run).await?;
        if let (Some((max, warning)), false) = (quota, options.dry_run)
            && let Err(e) = self
                .ports
                .quota
                .adopt_quota(
                    actor,
                    QuotaMib {
                        max_storage_mb: max,
                        warning_threshold_mb: warning,
                    },
                )
                .await
        {
            settings.push(format!("the prototype's quota was not adopted: {e}"));
        }
        Ok(ImportReport {
            dry_run: options.dry_run,
            dir: installation.dir.clone(),
            database: installation.database.clone(),
            fingerprint: installation.fingerprint.clone(),
            source: source_name.to_owned(),
            source_created,
            backups,
            users,
            audit_rows,
            audit_already,
            settings,
            quota,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn one_backup(
        &self,
        backup: &PrototypeBackup,
        created_at: Option<DateTime<Utc>>,
        source: Option<(coffer_domain::SourceId, &str)>,
        source_name: &str,
        installation: &PrototypeInstallation,
        taken: &std::collections::HashMap<i64, String>,
        dry_run: bool,
        cancel: &Cancel,
    ) -> Result<BackupOutcome, ImportError> {
        if !backup.completed() {
            return Ok(BackupOutcome::Skipped {
                reason: format!(
                    "the prototype recorded this run as `{}`: there is no archive to import",
                    backup.status
                ),
            });
        }
        let Some(created_at) = created_at else {
            return Ok(BackupOutcome::Skipped {
                reason: format!(
                    "its time {:?} is in no format Coffer reads",
                    backup.created_at
                ),
            });
        };
        if let Some(snapshot) = taken.get(&micros(created_at)) {
            return Ok(BackupOutcome::AlreadyImported {
                snapshot: snapshot.clone(),
            });
        }
        let Some((source_id, _)) = source.filter(|_| !dry_run) else {
            return Ok(BackupOutcome::WouldImport);
        };
        let allowance = self
            .ports
            .admission
            .admit_backup()
            .await
            .map_err(|e| ImportError::Engine(e.to_string()))?;
        let request = ImportRequest {
            source_name: source_name.to_owned(),
            path: format!("{}/{}", installation.archives, backup.filename),
            taken_at: created_at,
            budget: Some(Arc::clone(&allowance)),
        };
        let archive = self.ports.reader.archive(installation, backup);
        match self
            .ports
            .engine
            .import_tree(
                request,
                archive,
                Arc::new(Progress::default()),
                cancel.clone(),
            )
            .await
        {
            Ok(summary) => {
                if let Err(e) = self.ports.admission.added(summary.stored_bytes_added).await {
                    tracing::error!(error = %e, "cannot count the stored bytes of an import; `coffer storage recount` corrects it");
                }
                drop(allowance);
                self.ports.catalog.insert(&summary, Some(source_id)).await?;
                Ok(BackupOutcome::Imported {
                    snapshot: summary.id,
                    files: summary.files,
                    bytes: summary.bytes,
                })
            }
            // The archive's own trouble: this row is skipped, the import goes on.
            Err(EngineFailure::Invalid(reason)) => Ok(BackupOutcome::Skipped { reason }),
            Err(EngineFailure::Cancelled) => Err(ImportError::Cancelled),
            Err(e) => Err(ImportError::Engine(format!(
                "importing backup {} ({}) failed: {e}; what was imported before stays, and a re-run goes on from there",
                backup.id, backup.filename
            ))),
        }
    }

    async fn users(
        &self,
        actor: &Actor,
        installation: &PrototypeInstallation,
        dry_run: bool,
    ) -> Result<Vec<UserReport>, ImportError> {
        let mut out = Vec::new();
        for user in &installation.users {
            let role = role_of(user);
            let mut report = UserReport {
                username: user.username.clone(),
                role,
                active: user.active,
                outcome: "imported",
                note: None,
            };
            let username = match Username::parse(&user.username) {
                Ok(u) => u,
                Err(e) => {
                    report.outcome = "skipped";
                    report.note = Some(format!("not a Coffer username: {e}"));
                    out.push(report);
                    continue;
                }
            };
            if !user.password_hash.starts_with("$2") {
                report.outcome = "skipped";
                report.note = Some("its password hash is not a bcrypt hash".into());
                out.push(report);
                continue;
            }
            if self
                .ports
                .users
                .find_by_username(username.as_str())
                .await?
                .is_some()
            {
                report.outcome = "exists";
                report.note = Some("a Coffer user of this name exists; left as it is".into());
                out.push(report);
                continue;
            }
            let default_password = user.username == DEFAULT_ADMIN.0
                && matches!(
                    self.ports
                        .passwords
                        .verify(&Secret::from(DEFAULT_ADMIN.1), &user.password_hash)
                        .await,
                    Ok(PasswordCheck::Match { .. })
                );
            if default_password {
                report.active = false;
                report.note = Some(format!(
                    "still had the prototype's default password: imported disabled; set a new one with `coffer users reset-password {0}`, then `coffer users enable {0}`",
                    user.username
                ));
            }
            if dry_run {
                report.outcome = "would_import";
                out.push(report);
                continue;
            }
            let created_at = parse_time(&user.created_at).unwrap_or_else(|| self.clock.now());
            let created = self
                .ports
                .users
                .create(&username, &user.password_hash, role, created_at)
                .await?;
            if !report.active {
                self.ports
                    .users
                    .update(
                        created.id,
                        &UserChanges {
                            is_active: Some(false),
                            ..UserChanges::default()
                        },
                        self.clock.now(),
                    )
                    .await?;
            }
            self.audit
                .record(
                    AuditEntry::new(&actor.username, AuditAction::UserCreate, &actor.client)
                        .resource(format!("user:{}", created.id))
                        .detail(format!(
                            "`{}` ({}) from the prototype, {}{}",
                            user.username,
                            role.as_str(),
                            if report.active { "active" } else { "disabled" },
                            if report.note.is_some() {
                                ": default password"
                            } else {
                                ""
                            }
                        )),
                )
                .await?;
            out.push(report);
        }
        Ok(out)
    }

    /// The prototype's audit log, once per installation: each row appended with its
    /// original time, IP and user agent, its action marked `prototype.<action>`.
    async fn history(
        &self,
        installation: &PrototypeInstallation,
        dry_run: bool,
    ) -> Result<(u64, bool), ImportError> {
        let marker = format!("prototype:{}", installation.fingerprint);
        let earlier = self
            .ports
            .audit_rows
            .list(
                &AuditFilter {
                    action: Some(AuditAction::Import.as_str().to_owned()),
                    success: Some(true),
                    ..AuditFilter::default()
                },
                1000,
            )
            .await?;
        if earlier
            .iter()
            .any(|r| r.entry.resource.as_deref() == Some(marker.as_str()))
        {
            return Ok((0, true));
        }
        let rows = installation.audit.len() as u64;
        if dry_run {
            return Ok((rows, false));
        }
        for row in &installation.audit {
            let at = parse_time(&row.timestamp).unwrap_or_else(|| self.clock.now());
            let mut entry = AuditEntry {
                username: if row.username.is_empty() {
                    "unknown".into()
                } else {
                    row.username.clone()
                },
                action: format!("prototype.{}", row.action),
                resource: row.resource.clone(),
                success: row.success,
                detail: Some(format!(
                    "imported from the prototype ({}), its audit row {}",
                    installation.fingerprint, row.id
                )),
                client: ClientInfo {
                    ip: row.ip_address.clone(),
                    user_agent: row.user_agent.clone(),
                    credential: None,
                },
            };
            if parse_time(&row.timestamp).is_none() {
                entry.detail = Some(format!(
                    "{} (its time {:?} was unreadable: recorded at the import)",
                    entry.detail.unwrap_or_default(),
                    row.timestamp
                ));
            }
            self.ports.audit_rows.append(&entry, at).await?;
        }
        Ok((rows, false))
    }
}

impl ImportReport {
    /// The report as a job's result.
    #[must_use]
    pub fn job_result(&self) -> JobResult {
        JobResult::Import {
            dry_run: self.dry_run,
            source: self.source.clone(),
            imported: self.imported() as u64,
            already_imported: self.already_imported() as u64,
            skipped: self
                .backups
                .iter()
                .filter_map(|b| match &b.outcome {
                    BackupOutcome::Skipped { reason } => {
                        Some(format!("backup {} ({}): {reason}", b.id, b.filename))
                    }
                    _ => None,
                })
                .collect(),
            users: self.users_imported() as u64,
            user_notes: self
                .users
                .iter()
                .filter_map(|u| {
                    u.note
                        .as_ref()
                        .map(|n| format!("{} ({}): {n}", u.username, u.outcome.replace('_', " ")))
                })
                .collect(),
            audit_rows: self.audit_rows,
            settings: self.settings.clone(),
        }
    }
}

#[async_trait]
impl JobExecutor for ImportService {
    async fn execute(
        &self,
        actor: &Actor,
        params: &JobParams,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Result<JobResult, JobFailure> {
        let JobParams::Import {
            dir,
            db,
            source,
            dry_run,
            adopt_settings,
        } = params
        else {
            return Err(JobFailure::Unexpected(anyhow::anyhow!(
                "the import area was handed a {} job",
                params.kind()
            )));
        };
        let options = ImportOptions {
            dir: dir.clone(),
            db: db.clone(),
            source: source.clone(),
            dry_run: *dry_run,
            adopt_settings: *adopt_settings,
        };
        self.import_prototype(actor, &options, progress, cancel)
            .await
            .map(|report| report.job_result())
            .map_err(JobFailure::from_error)
    }
}

/// A time's microseconds since the epoch: the precision both databases keep.
fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}
