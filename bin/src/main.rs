//! The `coffer` command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use coffer_config::{DEFAULT_CONFIG_FILE, LogFormat, Settings};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One clear line: the chain of contexts, no backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Command::Openapi) {
        println!("{}", coffer_http::openapi_json());
        return Ok(());
    }
    let settings = load_settings(&cli)?;
    coffer::logging::init(settings.log.format, &settings.log.level)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coffer")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { .. } => serve(&settings).await,
            Command::Migrate => migrate(&settings).await,
            Command::Openapi => unreachable!("handled above"),
        }
    })
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
    println!(
        "database ({}) is up to date: {applied} of {known} migration steps applied",
        db.backend()
    );
    db.close().await?;
    Ok(())
}
