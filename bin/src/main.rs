//! The `coffer` command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use coffer_config::{DEFAULT_CONFIG_FILE, LogFormat, Settings};
use coffer_domain::auth::{Actor, Role};
use coffer_domain::ports::UserChanges;
use coffer_domain::secrets::Secret;

/// `println!` that ends the program quietly when stdout is closed (`coffer ls | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*)
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            std::process::exit(0);
        }
    }};
}

mod cli_backup;
mod cli_maintenance;
mod cli_report;
mod cli_seed;
use figment::providers::Serialized;

/// Coffer: encrypted, deduplicated, verifiable backups you run yourself.
///
/// Settings come from built-in defaults, then the configuration file, then `COFFER_*`
/// environment variables, then these flags. Run `coffer serve` and open
/// http://127.0.0.1:8001 (Swagger UI at /swagger).
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about, long_about, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML, or JSON if it ends in .json).
    /// [default: config/coffer.toml when it exists]
    #[arg(short, long, global = true, value_name = "FILE", env = "COFFER_CONFIG")]
    config: Option<PathBuf>,

    /// Data directory for the database, repository and keys [default: ./coffer-data].
    /// Also COFFER_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log format [default: human, or log.format].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP API, Swagger UI and dashboard. Stops cleanly on Ctrl-C or
    /// SIGTERM, letting requests in flight finish.
    Serve {
        /// Address to listen on (server.bind) [default: 127.0.0.1].
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Port to listen on (server.port) [default: 8001].
        #[arg(long)]
        port: Option<u16>,
    },
    /// Bring the database schema up to date and exit (serve does this too).
    Migrate,
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Manage user accounts, as the local system administrator (audited as
    /// `system:<your OS user>`).
    #[command(subcommand)]
    Users(UsersCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Backup sources: named directories on this server (as the local system
    /// administrator).
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Back up a directory (it becomes a source named after its path) or a configured
    /// source. Exit status 3 when the snapshot is partial (see its warnings).
    Backup {
        /// Directory to back up.
        #[arg(required_unless_present = "source", conflicts_with = "source")]
        path: Option<PathBuf>,
        /// A configured source, by name.
        #[arg(long)]
        source: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Print where the time went, phase by phase (thread time), on stderr.
        #[arg(long)]
        timings: bool,
    },
    /// List snapshots, newest first.
    Snapshots {
        #[arg(long)]
        json: bool,
    },
    /// List a directory inside a snapshot.
    Ls {
        /// Snapshot id (or a unique prefix of 8+ digits), or `latest`.
        snapshot: String,
        /// Directory inside the snapshot [default: its root].
        path: Option<String>,
        #[arg(long)]
        json: bool,
        /// Also show each entry's link count and extended attributes (ACLs among them).
        #[arg(long, short = 'l')]
        long: bool,
    },
    /// Restore a snapshot, or a path inside it, into a new or empty directory. Everything
    /// is verified before anything is written.
    Restore {
        /// Snapshot id (or a unique prefix of 8+ digits), or `latest`.
        snapshot: String,
        /// New or empty directory to restore into.
        target: PathBuf,
        /// Only this file or directory inside the snapshot.
        #[arg(long)]
        path: Option<String>,
        #[arg(long)]
        json: bool,
        /// Print where the time went, phase by phase (thread time), on stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Verify one snapshot or all: structure, and with --read-data every byte.
    /// Exit status 1 when anything is damaged.
    Verify {
        /// Snapshot id, prefix or `latest` [default: every snapshot].
        snapshot: Option<String>,
        /// Read and authenticate every chunk, not just check that it is stored.
        #[arg(long)]
        read_data: bool,
        #[arg(long)]
        json: bool,
    },
    /// Apply a source's retention rules now: remove the snapshots they do not keep
    /// (--dry-run shows each snapshot with keep or remove and why, and changes nothing).
    Forget {
        /// The source, by name or id.
        #[arg(long)]
        source: String,
        /// Only show what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Garbage collection: delete the stored data no snapshot uses and repack mostly
    /// unused packs. Waits for running backups, restores and checks (of the server too),
    /// and they wait for it; an interruption at any point leaves every snapshot whole.
    Prune {
        /// Report what would be deleted and repacked; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check the repository: every snapshot's structure, and re-read and authenticate a
    /// share of the stored data (the next slice after the previous check's, so that
    /// checks in a row read everything). Exit status 1 when anything is damaged.
    Check {
        /// Percent of the stored data to re-read (1–100; 100 reads everything).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=100))]
        share: u8,
        #[arg(long)]
        json: bool,
    },
    /// Storage use against the quota, and the volume's free space.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// The master key: without it the backups cannot be read.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The snapshot catalog in the database.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Reports: the backup history or the audit trail as CSV, or the PDF report, written
    /// to a file (as the local system administrator; audited).
    #[command(subcommand)]
    Report(cli_report::ReportCommand),
    /// Developer tools (benchmark seeding); not part of the product.
    #[command(subcommand, hide = true)]
    Dev(cli_seed::DevCommand),
}

#[derive(Debug, Subcommand)]
enum StorageCommand {
    /// Show stored bytes, quota and free disk space.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Count the repository's bytes object by object and correct the usage counter.
    Recount {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Print the master key, to keep somewhere safe away from this machine.
    Export,
    /// Replace the master key; stored data is not rewritten.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Recreate catalog rows for every snapshot found in storage.
    Rebuild,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Operator,
    Viewer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Admin => Self::Admin,
            RoleArg::Operator => Self::Operator,
            RoleArg::Viewer => Self::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user. The password is read from standard input with --password-stdin,
    /// otherwise generated and printed once.
    Add {
        username: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role (ends their sessions).
    SetRole {
        username: String,
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Deactivate a user (ends their sessions; they can no longer log in).
    Disable { username: String },
    /// Reactivate a deactivated user.
    Enable { username: String },
    /// Set a new password (ends their sessions). Read from standard input with
    /// --password-stdin, otherwise generated and printed once.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// A source's own retention rules. Giving any of them replaces the configured rules for
/// this source; the ones not given are off (0).
#[derive(Debug, Clone, Copy, clap::Args)]
struct RetentionArgs {
    /// Keep the newest N snapshots.
    #[arg(long)]
    max_backups: Option<u32>,
    /// Remove snapshots older than N days (the keep rules do not lift this).
    #[arg(long)]
    max_age_days: Option<u32>,
    /// Keep every snapshot of the last N days.
    #[arg(long)]
    keep_within_days: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long)]
    keep_yearly: Option<u32>,
}

impl RetentionArgs {
    fn rules(self) -> Option<coffer_domain::retention::Retention> {
        let all = [
            self.max_backups,
            self.max_age_days,
            self.keep_within_days,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        all.iter()
            .any(Option::is_some)
            .then(|| coffer_domain::retention::Retention {
                max_backups: self.max_backups.unwrap_or(0),
                max_age_days: self.max_age_days.unwrap_or(0),
                keep_within_days: self.keep_within_days.unwrap_or(0),
                keep_daily: self.keep_daily.unwrap_or(0),
                keep_weekly: self.keep_weekly.unwrap_or(0),
                keep_monthly: self.keep_monthly.unwrap_or(0),
                keep_yearly: self.keep_yearly.unwrap_or(0),
            })
    }
}

#[derive(Debug, Subcommand)]
enum SourcesCommand {
    /// Add a source: an absolute directory this server can read.
    Add {
        name: String,
        path: PathBuf,
        /// Five-field cron expression in UTC, e.g. "0 3 * * *" (03:00 every day).
        #[arg(long)]
        schedule: Option<String>,
        #[command(flatten)]
        retention: RetentionArgs,
    },
    /// List sources.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a source (by name or id). Its snapshots stay.
    Remove { source: String },
    /// Pause a source's schedule (kept as it is; nothing runs until `enable`).
    Disable { source: String },
    /// Resume a source's schedule from its next occurrence.
    Enable { source: String },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Re-compute the audit trail's hash chain; report the first row where it breaks
    /// (exit status 1), which shows a row edited, deleted or inserted behind Coffer's back.
    Verify,
}

fn main() -> ExitCode {
    coffer::install_crypto_provider();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            // One clear line: the chain of contexts, no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(cli.command, Command::Openapi) {
        out!("{}", coffer_http::openapi_json());
        return Ok(ExitCode::SUCCESS);
    }
    let settings = load_settings(&cli)?;
    coffer::logging::init(settings.log.format, &settings.log.level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coffer")
        .build()
        .context("cannot start the async runtime")?;
    let grace = std::time::Duration::from_secs(settings.server.shutdown_timeout_secs);
    let code = runtime.block_on(async move {
        let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
        match cli.command {
            Command::Serve { .. } => ok(serve(&settings).await),
            Command::Migrate => ok(migrate(&settings).await),
            Command::Users(command) => ok(users(&settings, command).await),
            Command::Audit(AuditCommand::Verify) => ok(audit_verify(&settings).await),
            Command::Sources(command) => ok(sources(&settings, command).await),
            Command::Forget {
                source,
                dry_run,
                json,
            } => ok(forget(&settings, &source, dry_run, json).await),
            Command::Prune { dry_run, json } => {
                cli_maintenance::prune(&settings, dry_run, json).await
            }
            Command::Check { share, json } => cli_maintenance::check(&settings, share, json).await,
            Command::Storage(StorageCommand::Show { json }) => {
                cli_maintenance::storage_show(&settings, json).await
            }
            Command::Storage(StorageCommand::Recount { json }) => {
                cli_maintenance::storage_recount(&settings, json).await
            }
            Command::Report(command) => ok(cli_report::run(&settings, command).await),
            Command::Dev(command) => ok(cli_seed::run(&settings, command).await),
            Command::Openapi => unreachable!("handled above"),
            other => cli_backup::run(&settings, other).await,
        }
    });
    // Work still on a blocking thread (a read stuck on a hung NFS source, say) must not
    // keep the process alive past the grace period.
    runtime.shutdown_timeout(grace);
    code
}

fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let file: Option<&Path> = match &cli.config {
        Some(path) => Some(path),
        None => Some(Path::new(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
    };
    let mut figment = Settings::figment(file)?;
    if let Some(dir) = &cli.data_dir {
        figment = figment.merge(Serialized::default("data_dir", dir));
    }
    if let Some(format) = cli.log_format {
        let format = match format {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        };
        figment = figment.merge(Serialized::default("log.format", format));
    }
    if let Command::Serve { bind, port } = &cli.command {
        if let Some(bind) = bind {
            figment = figment.merge(Serialized::default("server.bind", bind));
        }
        if let Some(port) = port {
            figment = figment.merge(Serialized::default("server.port", port));
        }
    }
    Ok(Settings::from_figment(&figment)?)
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = coffer::Application::build(settings).await?;
    let addr = app.local_addr();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %settings.data_dir.display(),
        "Coffer listening on http://{addr} (Swagger UI: http://{addr}/swagger)"
    );
    app.run(coffer::shutdown_signal()).await
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = coffer::open_database(settings).await?;
    let (applied, known) = db.migration_status().await?;
    out!(
        "database ({}) is up to date: {applied} of {known} migration steps applied",
        db.backend()
    );
    db.close().await?;
    Ok(())
}

/// The local system administrator: whoever runs the CLI on the server's machine.
fn local_admin() -> Actor {
    let os_user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Actor::local_admin(&os_user)
}

/// A password from standard input, or a generated one (returned to be printed).
fn password_input(from_stdin: bool) -> anyhow::Result<(Secret, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        let password = line.trim_end_matches(['\r', '\n']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok((Secret::new(password), false))
    } else {
        Ok((Secret::new(coffer_crypto::random_token(18)?), true))
    }
}

/// The services, opened for a CLI command.
async fn coffer_services(settings: &Settings) -> anyhow::Result<coffer::Services> {
    coffer::Services::open(settings).await
}

async fn users(settings: &Settings, command: UsersCommand) -> anyhow::Result<()> {
    let services = coffer_services(settings).await?;
    let actor = local_admin();
    let svc = &services.users;
    match command {
        UsersCommand::Add {
            username,
            role,
            password_stdin,
        } => {
            let (password, generated) = password_input(password_stdin)?;
            let user = svc
                .create(&actor, &username, &password, role.into())
                .await?;
            out!(
                "created user `{}` (id {}, {})",
                user.username,
                user.id,
                user.role
            );
            if generated {
                out!("password: {}", password.expose());
            }
        }
        UsersCommand::List { json } => {
            let users = svc.list(&actor).await?;
            if json {
                let rows: Vec<serde_json::Value> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "id": u.id.get(),
                            "username": u.username.as_str(),
                            "role": u.role.as_str(),
                            "is_active": u.is_active,
                            "created_at": u.created_at.to_rfc3339(),
                            "last_login": u.last_login.map(|t| t.to_rfc3339()),
                        })
                    })
                    .collect();
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                out!(
                    "{:>4}  {:<24} {:<9} {:<8} last login",
                    "id",
                    "username",
                    "role",
                    "active"
                );
                for u in &users {
                    out!(
                        "{:>4}  {:<24} {:<9} {:<8} {}",
                        u.id,
                        u.username.as_str(),
                        u.role.as_str(),
                        if u.is_active { "yes" } else { "no" },
                        u.last_login.map_or_else(
                            || "never".to_owned(),
                            |t| t.format("%Y-%m-%d %H:%M UTC").to_string()
                        )
                    );
                }
            }
        }
        UsersCommand::SetRole { username, role } => {
            let user = svc.get_by_name(&actor, &username).await?;
            let changes = UserChanges {
                role: Some(role.into()),
                is_active: None,
            };
            let user = svc.update(&actor, user.id, &changes).await?;
            out!("`{}` is now {}", user.username, user.role);
        }
        UsersCommand::Disable { username } => set_active(svc, &actor, &username, false).await?,
        UsersCommand::Enable { username } => set_active(svc, &actor, &username, true).await?,
        UsersCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let user = svc.get_by_name(&actor, &username).await?;
            let (password, generated) = password_input(password_stdin)?;
            svc.reset_password(&actor, user.id, &password).await?;
            out!(
                "password of `{}` reset; their sessions have ended",
                user.username
            );
            if generated {
                out!("password: {}", password.expose());
            }
        }
    }
    services.db.close().await?;
    Ok(())
}

async fn set_active(
    svc: &coffer_application::UserService,
    actor: &Actor,
    username: &str,
    active: bool,
) -> anyhow::Result<()> {
    let user = svc.get_by_name(actor, username).await?;
    let changes = UserChanges {
        role: None,
        is_active: Some(active),
    };
    let user = svc.update(actor, user.id, &changes).await?;
    out!(
        "`{}` is {}",
        user.username,
        if user.is_active {
            "active"
        } else {
            "disabled; their sessions have ended"
        }
    );
    Ok(())
}

async fn set_enabled(
    svc: &coffer_application::SourceService,
    actor: &coffer_domain::auth::Actor,
    source: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let found = svc.find(actor, source).await?;
    let changes = coffer_application::SourceChanges {
        enabled: Some(enabled),
        ..coffer_application::SourceChanges::default()
    };
    let s = svc.update(actor, found.id, changes).await?;
    match (enabled, s.schedule.as_deref()) {
        (false, _) => out!("paused the schedule of `{}`", s.name),
        (true, Some(schedule)) => out!(
            "resumed the schedule of `{}` ({schedule} UTC); the server plans its next run within a minute",
            s.name
        ),
        (true, None) => out!("`{}` has no schedule to resume; set one first", s.name),
    }
    Ok(())
}

async fn sources(settings: &Settings, command: SourcesCommand) -> anyhow::Result<()> {
    let services = coffer_services(settings).await?;
    let actor = local_admin();
    let svc = &services.sources;
    match command {
        SourcesCommand::Add {
            name,
            path,
            schedule,
            retention,
        } => {
            let absolute = std::path::absolute(&path)
                .with_context(|| format!("cannot make {} absolute", path.display()))?;
            let retention = retention.rules();
            let source = svc
                .create(
                    &actor,
                    coffer_domain::ports::SourceSpec {
                        name,
                        path: absolute.to_string_lossy().into_owned(),
                        schedule,
                        retention,
                    },
                )
                .await?;
            out!(
                "added source `{}` (id {}): {}",
                source.name,
                source.id,
                source.path
            );
        }
        SourcesCommand::List { json } => {
            let list = svc.list(&actor).await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "id": s.id.get(),
                            "name": s.name,
                            "path": s.path,
                            "schedule": s.schedule,
                            "retention": s.retention.map(|r| serde_json::json!({
                                "max_backups": r.max_backups,
                                "max_age_days": r.max_age_days,
                                "keep_within_days": r.keep_within_days,
                                "keep_daily": r.keep_daily,
                                "keep_weekly": r.keep_weekly,
                                "keep_monthly": r.keep_monthly,
                                "keep_yearly": r.keep_yearly,
                            })),
                            "created_at": s.created_at.to_rfc3339(),
                            "enabled": s.enabled,
                            "last_run_at": s.last_run_at.map(|t| t.to_rfc3339()),
                            "next_run_at": s.shown_next_run().map(|t| t.to_rfc3339()),
                        })
                    })
                    .collect();
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                out!(
                    "{:>4}  {:<24} {:<14} {:<17} {:<17} path",
                    "id",
                    "name",
                    "schedule",
                    "next run (UTC)",
                    "last run (UTC)"
                );
                let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or_else(
                        || "-".to_owned(),
                        |t| t.format("%Y-%m-%d %H:%M").to_string(),
                    )
                };
                for s in &list {
                    let next = if s.enabled || s.schedule.is_none() {
                        when(s.shown_next_run())
                    } else {
                        "paused".to_owned()
                    };
                    out!(
                        "{:>4}  {:<24} {:<14} {:<17} {:<17} {}",
                        s.id,
                        s.name,
                        s.schedule.as_deref().unwrap_or("-"),
                        next,
                        when(s.last_run_at),
                        s.path
                    );
                }
            }
        }
        SourcesCommand::Disable { source } => set_enabled(svc, &actor, &source, false).await?,
        SourcesCommand::Enable { source } => set_enabled(svc, &actor, &source, true).await?,
        SourcesCommand::Remove { source } => {
            let found = svc.find(&actor, &source).await?;
            svc.delete(&actor, found.id).await?;
            out!(
                "removed source `{}`; its snapshots stay in the catalog",
                found.name
            );
        }
    }
    services.db.close().await?;
    Ok(())
}

async fn forget(
    settings: &Settings,
    source: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let services = coffer_services(settings).await?;
    let actor = local_admin();
    let found = services.sources.find(&actor, source).await?;
    let report = if dry_run {
        services.backups.retention_preview(&actor, found.id).await?
    } else {
        services.backups.apply_retention(&actor, found.id).await?
    };
    services.db.close().await?;
    let removed = report.verdicts.iter().filter(|v| !v.keep).count();
    if json {
        let items: Vec<serde_json::Value> = report
            .verdicts
            .iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.id,
                    "created_at": v.created_at.to_rfc3339(),
                    "keep": v.keep,
                    "reasons": v.reasons,
                })
            })
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "source": report.source.name,
                "applied": report.applied,
                "kept": report.verdicts.len() - removed,
                "removed": removed,
                "items": items,
            }))?
        );
        return Ok(());
    }
    out!("{:<12}  {:<20} {:<7} why", "snapshot", "taken (UTC)", "");
    for v in &report.verdicts {
        out!(
            "{:<12}  {:<20} {:<7} {}",
            &v.id[..v.id.len().min(12)],
            v.created_at.format("%Y-%m-%d %H:%M:%S"),
            if v.keep { "keep" } else { "REMOVE" },
            v.reasons.join(", ")
        );
    }
    out!(
        "`{}`: {} kept, {} {}",
        report.source.name,
        report.verdicts.len() - removed,
        removed,
        if report.applied {
            "removed (their data goes when garbage is collected)"
        } else {
            "would be removed (dry run: nothing changed)"
        }
    );
    Ok(())
}

async fn audit_verify(settings: &Settings) -> anyhow::Result<()> {
    let services = coffer_services(settings).await?;
    let report = services.audit.verify(&local_admin()).await?;
    services.db.close().await?;
    match report.first_break {
        None => {
            out!("audit trail intact: {} rows verified", report.rows_checked);
            Ok(())
        }
        Some((id, reason)) => anyhow::bail!(
            "audit trail broken at row {id}: {reason} ({} rows before it verified)",
            report.rows_checked
        ),
    }
}
