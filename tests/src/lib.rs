//! `coffer-tests`: the end-to-end test harness. `spawn_app` starts the real application —
//! the same `Application::build` that `coffer serve` runs — on port 0 with a fresh data
//! directory and a fresh database (SQLite, or PostgreSQL when `COFFER_TEST_POSTGRES_URL`
//! is set), and gives back its address and an HTTP client. [`browser`] drives headless
//! Chromium through chromedriver for the dashboard's browser tests.

mod api;
pub mod browser;

pub use api::{Api, admin};
pub use browser::Browser;

/// Runs an end-to-end test `async fn $name(app: &TestApp)` of the calling module on both
/// catalog databases: `mod $name { sqlite, postgres }`, the PostgreSQL one returning early
/// (with the harness's printed reason) when no server is configured. A second argument
/// adjusts the settings first, as [`spawn_app_with`] does.
#[macro_export]
macro_rules! on_both {
    ($name:ident) => {
        $crate::on_both!($name, |_| {});
    };
    ($name:ident, $adjust:expr) => {
        mod $name {
            // The adjustment is written at the call site, in the caller's scope.
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::spawn_app_with(
                    $crate::Backend::Sqlite,
                    concat!(stringify!($name), "::sqlite"),
                    $adjust,
                )
                .await
                .expect("sqlite is always available");
                super::$name(&app).await;
                app.stop().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::spawn_app_with(
                    $crate::Backend::Postgres,
                    concat!(stringify!($name), "::postgres"),
                    $adjust,
                )
                .await
                else {
                    return;
                };
                super::$name(&app).await;
                app.stop().await;
            }
        }
    };
}

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
    /// Owns the data directory: it goes when the app is dropped.
    dir: tempfile::TempDir,
}

impl TestApp {
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The first admin's generated password, as a new operator finds it.
    ///
    /// # Panics
    /// When the file is missing.
    #[must_use]
    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("initial-admin-password"))
            .expect("the generated admin password file")
            .trim()
            .to_owned()
    }

    /// `POST /api/login`.
    ///
    /// # Panics
    /// When the request cannot be sent.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Logs in and returns the bearer token.
    ///
    /// # Panics
    /// When the login fails.
    pub async fn token(&self, username: &str, password: &str) -> String {
        let resp = self.login(username, password).await;
        assert_eq!(resp.status(), 200, "login of {username}");
        let body: serde_json::Value = resp.json().await.expect("login JSON");
        body["token"].as_str().expect("token").to_owned()
    }

    /// The admin's bearer token.
    pub async fn admin_token(&self) -> String {
        self.token("admin", &self.admin_password()).await
    }

    /// Creates a user as admin; returns its id.
    ///
    /// # Panics
    /// When the creation fails.
    pub async fn create_user(
        &self,
        admin: &str,
        username: &str,
        password: &str,
        role: &str,
    ) -> i64 {
        let resp = self
            .client
            .post(self.url("/api/users"))
            .bearer_auth(admin)
            .json(&serde_json::json!({"username": username, "password": password, "role": role}))
            .send()
            .await
            .expect("create user");
        assert_eq!(resp.status(), 201, "create {username}");
        let body: serde_json::Value = resp.json().await.expect("JSON");
        body["id"].as_i64().expect("id")
    }

    /// A GET with a bearer token; returns the status and the JSON body (null if none).
    pub async fn get_as(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
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

    /// Starts another server beside this one, as a second `coffer serve` of a deployment
    /// with many: its own data directory and port, this one's catalog database,
    /// repository and keys (session, audit, master). Stop it before this one.
    ///
    /// # Panics
    /// When the second server cannot be built.
    pub async fn spawn_peer(&self) -> Self {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let data_dir = dir.path().join("coffer-data");
        let mut settings = self.settings.clone();
        settings.data_dir.clone_from(&data_dir);
        settings.database.url = Some(self.settings.database_url());
        settings.storage.root = Some(self.settings.storage_root());
        settings.security.session_key_file = Some(self.settings.session_key_file());
        settings.security.audit_key_file = Some(self.settings.audit_key_file());
        settings.security.encryption_key_file = Some(self.settings.encryption_key_file());
        let (addr, stop, task) = start(&settings).await;
        Self {
            addr,
            client: reqwest::Client::new(),
            data_dir,
            settings,
            // The database is this one's to clean up.
            database: None,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// Stops the server and starts it again on the same data directory and database,
    /// with the settings adjusted (a changed configuration, as an operator would make).
    ///
    /// # Panics
    /// When the server does not stop cleanly or does not start again.
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Settings)) -> Self {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        let mut settings = self.settings.clone();
        adjust(&mut settings);
        let (addr, stop, task) = start(&settings).await;
        Self {
            addr,
            client: self.client.clone(),
            data_dir: self.data_dir.clone(),
            settings,
            database: self.database.take(),
            stop: Some(stop),
            task: Some(task),
            dir: self.dir,
        }
    }
}

type Running = (
    SocketAddr,
    oneshot::Sender<()>,
    JoinHandle<Result<(), String>>,
);

/// Builds and runs the application on `settings`.
async fn start(settings: &Settings) -> Running {
    let app = coffer::Application::build(settings)
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
    (addr, stop, task)
}

/// The Python the tests call (`COFFER_TEST_PYTHON`, else `python3`) when it can import
/// every module of `modules` (`"cryptography, bcrypt"`); `None` (the skip printed, a
/// failure under `COFFER_TEST_REQUIRE_ALL=1`) when not. `.ci/run` provides one with
/// `tests/support/requirements.txt`.
#[must_use]
pub fn test_python(test: &str, modules: &str) -> Option<String> {
    let py = std::env::var("COFFER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ready = std::process::Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Some(py);
    }
    coffer_db::testing::skip(
        test,
        &format!(
            "{py} cannot import {modules} (pip install -r tests/support/requirements.txt, \
             or set COFFER_TEST_PYTHON)"
        ),
    )
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
    // No scheduled prune or check may land in the middle of a test that runs at 03:30
    // UTC; tests of the scheduler turn it back on.
    settings.scheduler.enabled = false;
    adjust(&mut settings);
    let (addr, stop, task) = start(&settings).await;
    Some(TestApp {
        addr,
        client: reqwest::Client::new(),
        data_dir,
        settings,
        database,
        stop: Some(stop),
        task: Some(task),
        dir,
    })
}
