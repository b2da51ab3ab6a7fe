//! `coffer`: the composition root. It reads the settings, opens the concrete adapters
//! (sea-orm catalog, opendal storage, poem HTTP), hands them to the application services
//! as ports, and runs the server or a CLI command. It is the only crate that names
//! adapters; it holds no business rules.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use coffer_application::SystemService;
use coffer_config::Settings;
use coffer_db::{Database, DbOptions};
use coffer_http::{AppState, HttpOptions, HttpServer};
use coffer_storage::OpendalStore;

pub mod logging;

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
    let db = Database::connect(&options).await?;
    db.migrate().await?;
    Ok(db)
}

/// Opens the repository storage named by the settings.
///
/// # Errors
/// When the storage cannot be opened.
pub fn open_storage(settings: &Settings) -> anyhow::Result<OpendalStore> {
    match settings.storage.backend {
        coffer_config::StorageBackend::Fs => Ok(OpendalStore::fs(&settings.storage_root())?),
    }
}

/// A server that is bound and wired, ready to run. Tests build one on port 0.
pub struct Application {
    server: HttpServer,
    db: Database,
    state: Arc<AppState>,
    options: HttpOptions,
    grace: Duration,
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
        let db = open_database(settings).await?;
        let storage = open_storage(settings)?;
        tracing::info!(
            database = db.backend(),
            storage = storage.backend(),
            root = %settings.storage_root().display(),
            "catalog and storage open"
        );
        let system = Arc::new(SystemService::new(
            Arc::new(db.health()),
            Arc::new(storage),
            env!("CARGO_PKG_VERSION"),
        ));
        let state = Arc::new(AppState { system });
        let options = HttpOptions {
            max_body_bytes: usize::try_from(settings.server.max_body_bytes)
                .context("server.max_body_bytes does not fit this platform")?,
        };
        Ok(Self {
            server,
            db,
            state,
            options,
            grace: Duration::from_secs(settings.server.shutdown_timeout_secs),
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
        let app = coffer_http::app(self.state, &self.options);
        self.server.run(app, shutdown, self.grace).await?;
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
