//! The `coffer` command: argument parsing and dispatch. Each command group lives in its
//! own module under `cli/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use coffer_config::{DEFAULT_CONFIG_FILE, LogFormat, Settings};
use figment::providers::Serialized;

#[macro_use]
mod cli;

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
    Serve(cli::server::ServeArgs),
    /// Bring the database schema up to date and exit (serve does this too).
    Migrate,
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Manage user accounts, as the local system administrator (audited as
    /// `system:<your OS user>`).
    #[command(subcommand)]
    Users(cli::users::UsersCommand),
    /// Personal access tokens for scripts and CI, as the local system administrator:
    /// create (the secret is printed once), list, revoke.
    #[command(subcommand)]
    Tokens(cli::tokens::TokensCommand),
    /// Bring another system's data over: `coffer import prototype DIR` imports an
    /// installation of the Python prototype.
    #[command(subcommand)]
    Import(cli::import::ImportCommand),
    /// Alerts by email: `coffer notify test` sends a test email through [notify.email].
    #[command(subcommand)]
    Notify(cli::notify::NotifyCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(cli::audit::AuditCommand),
    /// Jobs the server ran or runs (backups, restores, checks, ...) and their logs:
    /// `coffer jobs list`, `coffer jobs log ID [--follow]`.
    #[command(subcommand)]
    Jobs(cli::jobs::JobsCommand),
    /// Backup sources: named directories on this server (as the local system
    /// administrator).
    #[command(subcommand)]
    Sources(cli::sources::SourcesCommand),
    /// Back up a directory (it becomes a source named after its path) or a configured
    /// source. Exit status 3 when the snapshot is partial (see its warnings).
    Backup(cli::backup::BackupArgs),
    /// List snapshots, newest first.
    Snapshots(cli::catalog::SnapshotsArgs),
    /// List a directory inside a snapshot (audited, like browsing it over the API).
    Ls(cli::catalog::LsArgs),
    /// Restore a snapshot, or a path inside it, into a new or empty directory. Everything
    /// is verified before anything is written.
    Restore(cli::restore::RestoreArgs),
    /// Verify one snapshot or all: structure, and with --read-data every byte.
    /// Exit status 1 when anything is damaged.
    Verify(cli::restore::VerifyArgs),
    /// Apply a source's retention rules now: remove the snapshots they do not keep
    /// (--dry-run shows each snapshot with keep or remove and why, and changes nothing).
    Forget(cli::retention::ForgetArgs),
    /// Garbage collection: delete the stored data no snapshot uses and repack mostly
    /// unused packs. Waits for running backups, restores and checks (of the server too),
    /// and they wait for it; an interruption at any point leaves every snapshot whole.
    Prune(cli::maintenance::PruneArgs),
    /// Check the repository: every snapshot's structure, and re-read and authenticate a
    /// share of the stored data (the next slice after the previous check's, so that
    /// checks in a row read everything). Exit status 1 when anything is damaged.
    Check(cli::maintenance::CheckArgs),
    /// Storage use against the quota, and the volume's free space.
    #[command(subcommand)]
    Storage(cli::maintenance::StorageCommand),
    /// Off-site copies: replicas of the repository (another disk, a NAS mount), each a
    /// complete repository the master key alone opens.
    #[command(subcommand)]
    Replicas(cli::replicas::ReplicasCommand),
    /// The master key: without it the backups cannot be read.
    #[command(subcommand)]
    Key(cli::keys::KeyCommand),
    /// The snapshot catalog in the database.
    #[command(subcommand)]
    Catalog(cli::catalog::CatalogCommand),
    /// Reports: the backup history or the audit trail as CSV, or the PDF report, written
    /// to a file (as the local system administrator; audited).
    #[command(subcommand)]
    Report(cli::report::ReportCommand),
    /// Developer tools (benchmark seeding); not part of the product.
    #[cfg(feature = "bench-seed")]
    #[command(subcommand, hide = true)]
    Dev(cli::seed::DevCommand),
}

fn main() -> ExitCode {
    coffer::install_crypto_provider();
    let _ = coffer_system::raise_open_files_limit();
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
        return Ok(cli::server::openapi());
    }
    let settings = load_settings(&cli)?;
    coffer::logging::init(settings.log.format, &settings.log.level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coffer")
        .build()
        .context("cannot start the async runtime")?;
    let grace = std::time::Duration::from_secs(settings.server.shutdown_timeout_secs);
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let code = runtime.block_on(async move {
        let s = &settings;
        match cli.command {
            Command::Serve(_) => cli::server::serve(s).await,
            Command::Migrate => cli::server::migrate(s).await,
            Command::Openapi => Ok(cli::server::openapi()),
            Command::Users(command) => cli::users::run(s, command).await,
            Command::Tokens(command) => cli::tokens::run(s, command).await,
            Command::Import(command) => cli::import::run(s, command).await,
            Command::Notify(command) => cli::notify::run(s, command).await,
            Command::Audit(command) => cli::audit::run(s, command).await,
            Command::Jobs(command) => cli::jobs::run(s, command).await,
            Command::Sources(command) => cli::sources::run(s, command).await,
            Command::Backup(args) => cli::backup::run(s, args).await,
            Command::Snapshots(args) => cli::catalog::snapshots(s, args).await,
            Command::Ls(args) => cli::catalog::ls(s, args).await,
            Command::Restore(args) => cli::restore::restore(s, args).await,
            Command::Verify(args) => cli::restore::verify(s, args).await,
            Command::Forget(args) => cli::retention::forget(s, args).await,
            Command::Prune(args) => cli::maintenance::prune(s, args).await,
            Command::Check(args) => cli::maintenance::check(s, args).await,
            Command::Storage(command) => cli::maintenance::storage(s, command).await,
            Command::Replicas(command) => cli::replicas::run(s, command).await,
            Command::Key(command) => cli::keys::run(s, command).await,
            Command::Catalog(command) => cli::catalog::run(s, command).await,
            Command::Report(command) => done(cli::report::run(s, command).await),
            #[cfg(feature = "bench-seed")]
            Command::Dev(command) => done(cli::seed::run(s, command).await),
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
    if let Command::Serve(cli::server::ServeArgs { bind, port }) = &cli.command {
        if let Some(bind) = bind {
            figment = figment.merge(Serialized::default("server.bind", bind));
        }
        if let Some(port) = port {
            figment = figment.merge(Serialized::default("server.port", port));
        }
    }
    let mut settings = Settings::from_figment(&figment)?;
    settings.config_file = file.map(Path::to_path_buf);
    Ok(settings)
}
