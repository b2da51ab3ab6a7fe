//! `coffer serve` and `coffer migrate`: the server, and the database schema.

use std::process::ExitCode;

use coffer_config::Settings;

/// Where to listen; flags over `server.bind` and `server.port`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (server.bind) [default: 127.0.0.1].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Port to listen on (server.port) [default: 8001].
    #[arg(long)]
    pub port: Option<u16>,
}

pub async fn serve(settings: &Settings) -> anyhow::Result<ExitCode> {
    let app = coffer::Application::build(settings).await?;
    let addr = app.local_addr();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %settings.data_dir.display(),
        "Coffer listening on http://{addr} (Swagger UI: http://{addr}/swagger)"
    );
    app.run(coffer::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let db = coffer::open_database(settings).await?;
    let (applied, known) = db.migration_status().await?;
    out!(
        "database ({}) is up to date: {applied} of {known} migration steps applied",
        db.backend()
    );
    db.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// `coffer openapi`: the OpenAPI document, as the server serves it.
pub fn openapi() -> ExitCode {
    out!("{}", coffer_http::openapi_json());
    ExitCode::SUCCESS
}
