//! `coffer-tests`: the end-to-end test harness. `spawn_app` starts the real application —
//! the same `Application::build` that `coffer serve` runs — on port 0 with a fresh data
//! directory and a fresh database (SQLite, or PostgreSQL when `COFFER_TEST_POSTGRES_URL`
//! is set), and gives back its address and an HTTP client.

use std::net::SocketAddr;
use std::path::PathBuf;

use coffer_config::Settings;
use coffer_db::testing::TestDatabase;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which catalog database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and what it owns.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub settings: Settings,
    database: Option<TestDatabase>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the server gracefully and checks that it stopped without error.
    ///
    /// # Panics
    /// When the server reports an error while stopping.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        if let Some(db) = self.database.take() {
            db.cleanup().await;
        }
    }
}

/// Starts the application, or returns `None` when the backend is not available here
/// (the skip is printed, and is a failure under `COFFER_TEST_REQUIRE_ALL=1`).
///
/// # Panics
/// When the application cannot be built.
pub async fn spawn_app(backend: Backend, test: &str) -> Option<TestApp> {
    spawn_app_with(backend, test, |_| {}).await
}

/// As [`spawn_app`], letting the test adjust the settings first.
///
/// # Panics
/// When the application cannot be built.
pub async fn spawn_app_with(
    backend: Backend,
    test: &str,
    adjust: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDatabase::postgres(test).await?),
    };
    let dir = tempfile::tempdir().expect("temporary data directory");
    let data_dir = dir.path().join("coffer-data");
    let mut settings = Settings {
        data_dir: data_dir.clone(),
        ..Settings::default()
    };
    settings.server.port = 0;
    settings.database.url = database.as_ref().map(|d| d.url.clone());
    adjust(&mut settings);
    let app = coffer::Application::build(&settings)
        .await
        .expect("the application builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .map_err(|e| format!("{e:#}"))
    });
    Some(TestApp {
        addr,
        client: reqwest::Client::new(),
        data_dir,
        settings,
        database,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    })
}
