//! A small W3C WebDriver client for the browser tests: it starts Debian's `chromedriver`
//! on a free port, opens one headless Chromium session with its own profile and download
//! directory, and offers what a test needs — go to a page, find elements by CSS (waiting
//! until they appear), click, type, read, run a script, wait for a condition, take
//! screenshots and collect downloads. Dropping the [`Browser`] ends the session and stops
//! the driver.
//!
//! Lookups wait up to [`Browser::timeout`] and fail with the selector (or condition) and
//! the page's current URL, so a broken page says where it broke.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The key under which WebDriver names an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// An error answered by the driver (or the failure to reach it).
#[derive(Debug, Clone)]
pub struct WebDriverError {
    /// The W3C error code (`no such element`, ...) or `transport`.
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// Where the browser and its driver are installed.
#[derive(Debug, Clone)]
pub struct Installation {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Installation {
    /// Finds Chromium (`/usr/bin/chromium`, or `chromium` / `chromium-browser` on `PATH`)
    /// and `chromedriver`; says what is missing otherwise.
    pub fn find() -> Result<Self, String> {
        let chromium = [PathBuf::from("/usr/bin/chromium")]
            .into_iter()
            .find(|p| p.is_file())
            .or_else(|| on_path("chromium"))
            .or_else(|| on_path("chromium-browser"));
        let chromedriver = on_path("chromedriver").or_else(|| {
            ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        });
        match (chromium, chromedriver) {
            (Some(chromium), Some(chromedriver)) => Ok(Self {
                chromium,
                chromedriver,
            }),
            (chromium, chromedriver) => {
                let mut missing = Vec::new();
                if chromium.is_none() {
                    missing.push("Chromium (/usr/bin/chromium)");
                }
                if chromedriver.is_none() {
                    missing.push("chromedriver");
                }
                Err(format!(
                    "{} not installed (Debian: apt-get install chromium chromium-driver)",
                    missing.join(" and ")
                ))
            }
        }
    }
}

/// The first executable file called `name` in a `PATH` directory.
#[must_use]
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A headless Chromium session driven through `chromedriver`.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>` of the driver.
    driver_url: String,
    driver_port: u16,
    session: String,
    driver: Child,
    downloads: tempfile::TempDir,
    /// The browser profile; removed with the browser.
    _profile: tempfile::TempDir,
    /// How long lookups and waits last before they fail, in milliseconds.
    timeout_ms: AtomicU64,
}

/// An element of the current page.
#[derive(Clone)]
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
    /// The selector that found it, for error messages.
    selector: String,
}

impl Browser {
    /// Starts the driver and a browser session, or returns `None` (printing why) when
    /// Chromium or chromedriver is not installed — a failure under
    /// `COFFER_TEST_REQUIRE_ALL=1`.
    ///
    /// # Panics
    /// When they are installed but do not start.
    pub async fn launch(test: &str) -> Option<Self> {
        let install = match Installation::find() {
            Ok(install) => install,
            Err(reason) => return coffer_db::testing::skip(test, &reason),
        };
        Some(
            Self::start(&install)
                .await
                .unwrap_or_else(|e| panic!("{test}: starting headless Chromium: {e}")),
        )
    }

    /// Starts the driver on a free port (retrying if another process takes the port
    /// between the probe and the driver's bind) and opens a session.
    pub async fn start(install: &Installation) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_mins(1))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            let mut driver = Command::new(&install.chromedriver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("spawning {}: {e}", install.chromedriver.display()))?;
            let driver_url = format!("http://127.0.0.1:{port}");
            match wait_ready(&http, &driver_url, &mut driver).await {
                Ok(()) => {
                    return Self::open_session(http, driver_url, port, driver, install).await;
                }
                Err(e) => {
                    let _ = driver.kill();
                    let _ = driver.wait();
                    last = e;
                }
            }
        }
        Err(format!("chromedriver did not become ready: {last}"))
    }

    async fn open_session(
        http: reqwest::Client,
        driver_url: String,
        driver_port: u16,
        mut driver: Child,
        install: &Installation,
    ) -> Result<Self, String> {
        let (profile, downloads) = match (tempfile::tempdir(), tempfile::tempdir()) {
            (Ok(p), Ok(d)) => (p, d),
            (Err(e), _) | (_, Err(e)) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(format!("temporary directory: {e}"));
            }
        };
        let download_dir = downloads.path().to_string_lossy().into_owned();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "unhandledPromptBehavior": "accept",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": install.chromium.to_string_lossy(),
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-search-engine-choice-screen",
                    "--password-store=basic",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": download_dir,
                    "download.prompt_for_download": false,
                    "download.directory_upgrade": true,
                    "safebrowsing.enabled": false,
                    "credentials_enable_service": false,
                    "profile.password_manager_enabled": false,
                },
            },
        }}});
        let created = request(
            &http,
            reqwest::Method::POST,
            &format!("{driver_url}/session"),
            Some(&caps),
        )
        .await;
        let session = match created {
            Ok(v) => v["sessionId"].as_str().unwrap_or_default().to_owned(),
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(format!("creating the session: {e}"));
            }
        };
        let browser = Self {
            http,
            driver_url,
            driver_port,
            session,
            driver,
            downloads,
            _profile: profile,
            timeout_ms: AtomicU64::new(20_000),
        };
        // Chromedriver applies the download directory in headless mode itself; saying it
        // again over CDP costs nothing and covers versions that do not.
        let _ = browser
            .cdp(
                "Browser.setDownloadBehavior",
                json!({"behavior": "allow", "downloadPath": download_dir, "eventsEnabled": false}),
            )
            .await;
        Ok(browser)
    }

    /// How long lookups and waits last before they fail (20 s unless set).
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Changes [`Browser::timeout`].
    pub fn set_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// Sends one command of this session (`path` is relative to `/session/{id}`).
    pub async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, WebDriverError> {
        let url = format!("{}/session/{}{path}", self.driver_url, self.session);
        request(&self.http, method, &url, body).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, WebDriverError> {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value, WebDriverError> {
        self.command(reqwest::Method::GET, path, None).await
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, WebDriverError> {
        self.post("/goog/cdp/execute", &json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Navigates to `url` and waits for the document to load.
    ///
    /// # Panics
    /// When the navigation fails.
    pub async fn goto(&self, url: &str) {
        self.post("/url", &json!({"url": url}))
            .await
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// The page's current URL (or a placeholder when it cannot be read).
    pub async fn current_url(&self) -> String {
        match self.get("/url").await {
            Ok(v) => v.as_str().unwrap_or_default().to_owned(),
            Err(e) => format!("<unknown URL: {e}>"),
        }
    }

    /// The elements matching `css` now (possibly none).
    ///
    /// # Panics
    /// When the driver fails (an invalid selector, a closed window).
    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self
            .post("/elements", &json!({"using": "css selector", "value": css}))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e}"));
        found
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element {
                        browser: self,
                        id: id.to_owned(),
                        selector: css.to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        match self
            .post("/element", &json!({"using": "css selector", "value": css}))
            .await
        {
            Ok(v) => v[ELEMENT_KEY].as_str().map(|id| Element {
                browser: self,
                id: id.to_owned(),
                selector: css.to_owned(),
            }),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{css}`: {e}"),
        }
    }

    /// The first element matching `css`, waiting until one appears.
    ///
    /// # Panics
    /// When none appears within the timeout; the message names the selector and the URL.
    pub async fn find(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + self.timeout();
        loop {
            if let Some(found) = self.try_find(css).await {
                return found;
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await;
                panic!(
                    "no element matches `{css}` after {:?} on {url}",
                    self.timeout()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until no element matches `css`.
    ///
    /// # Panics
    /// When one still does at the timeout.
    pub async fn wait_gone(&self, css: &str) {
        let script = format!("return document.querySelector({}) === null;", json!(css));
        self.wait_for(&script, &format!("`{css}` to disappear"))
            .await;
    }

    /// Runs `script` (a function body: use `return`; `arguments` holds `args`, where an
    /// [`Element`] is passed as [`Element::to_arg`]) and returns its result.
    ///
    /// # Panics
    /// When the script throws.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.try_execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// As [`Browser::execute`], returning the error instead.
    pub async fn try_execute(
        &self,
        script: &str,
        args: Vec<Value>,
    ) -> Result<Value, WebDriverError> {
        self.post("/execute/sync", &json!({"script": script, "args": args}))
            .await
    }

    /// Runs an asynchronous `script`: it ends by calling the callback passed as its last
    /// argument (`arguments[arguments.length - 1]`) with the result.
    pub async fn try_execute_async(
        &self,
        script: &str,
        args: Vec<Value>,
    ) -> Result<Value, WebDriverError> {
        self.post("/execute/async", &json!({"script": script, "args": args}))
            .await
    }

    /// Polls `script` until it returns a truthy value, and returns that value.
    /// A script that throws counts as not yet (the page may be between documents).
    ///
    /// # Panics
    /// When it does not within the timeout; the message says `what` and the URL.
    pub async fn wait_for(&self, script: &str, what: &str) -> Value {
        let deadline = Instant::now() + self.timeout();
        loop {
            let last = self.try_execute(script, Vec::new()).await;
            if let Ok(v) = &last
                && truthy(v)
            {
                return v.clone();
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await;
                panic!(
                    "timed out after {:?} waiting for {what} on {url} (last result: {last:?})",
                    self.timeout()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resizes the window (the viewport follows).
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn set_window_size(&self, width: u32, height: u32) {
        self.post("/window/rect", &json!({"width": width, "height": height}))
            .await
            .unwrap_or_else(|e| panic!("resizing the window to {width}x{height}: {e}"));
    }

    /// Emulates a device `width` × `height` CSS pixels wide (a phone: `mobile` on, the
    /// page's `<meta name="viewport">` honoured), as chromedriver's `mobileEmulation`
    /// does, but on this session: headless Chromium's window cannot be made narrower than
    /// 500 px, so [`Browser::set_window_size`] cannot show a phone's width. Until
    /// [`Browser::clear_emulation`]. Returns the page's `innerWidth` afterwards.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn emulate_device(&self, width: u32, height: u32) -> u64 {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": true,
                "screenWidth": width,
                "screenHeight": height,
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("emulating a {width}x{height} device: {e}"));
        self.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": true}),
        )
        .await
        .unwrap_or_else(|e| panic!("emulating touch: {e}"));
        self.execute("return window.innerWidth;", Vec::new())
            .await
            .as_u64()
            .unwrap_or(0)
    }

    /// Ends [`Browser::emulate_device`].
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn clear_emulation(&self) {
        self.cdp("Emulation.clearDeviceMetricsOverride", json!({}))
            .await
            .unwrap_or_else(|e| panic!("ending the device emulation: {e}"));
        self.cdp(
            "Emulation.setTouchEmulationEnabled",
            json!({"enabled": false}),
        )
        .await
        .unwrap_or_else(|e| panic!("ending the touch emulation: {e}"));
    }

    /// Saves a PNG of the viewport to `path` (creating its directory).
    ///
    /// # Panics
    /// When the screenshot cannot be taken or written.
    pub async fn screenshot(&self, path: &Path) {
        let data = self
            .get("/screenshot")
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("screenshot is not base64: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// The browser console's entries since the last call (chromedriver's log endpoint),
    /// as `(level, message)`.
    pub async fn console_log(&self) -> Vec<(String, String)> {
        let Ok(entries) = self.post("/se/log", &json!({"type": "browser"})).await else {
            return Vec::new();
        };
        entries
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The directory downloads land in.
    pub fn download_dir(&self) -> &Path {
        self.downloads.path()
    }

    /// Empties the download directory.
    ///
    /// # Panics
    /// When it cannot be read or a file cannot be removed.
    pub fn clear_downloads(&self) {
        for entry in std::fs::read_dir(self.downloads.path()).expect("download directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).expect("remove a downloaded directory");
            } else {
                std::fs::remove_file(&path).expect("remove a download");
            }
        }
    }

    /// Waits for one complete download (a file that is not a `.crdownload` while no
    /// `.crdownload` remains), returns its name and bytes, and removes it so the next
    /// download is told apart. Call [`Browser::clear_downloads`] before triggering it.
    ///
    /// # Panics
    /// When no download completes within the timeout.
    pub async fn take_download(&self) -> (String, Vec<u8>) {
        match self.try_take_download().await {
            Ok(done) => done,
            Err(e) => panic!("{e}"),
        }
    }

    /// As [`Browser::take_download`], saying why instead of panicking.
    pub async fn try_take_download(&self) -> Result<(String, Vec<u8>), String> {
        let deadline = Instant::now() + self.timeout();
        loop {
            let mut done = Vec::new();
            let mut partial = false;
            let entries = std::fs::read_dir(self.downloads.path())
                .map_err(|e| format!("reading the download directory: {e}"))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".crdownload") || name.starts_with(".com.google.Chrome") {
                    partial = true;
                } else if entry.path().is_file() {
                    done.push(name);
                }
            }
            if !partial && !done.is_empty() {
                if done.len() != 1 {
                    return Err(format!(
                        "expected one download, found {done:?} (clear the directory first)"
                    ));
                }
                let name = done.swap_remove(0);
                let path = self.downloads.path().join(&name);
                let bytes = std::fs::read(&path).map_err(|e| format!("reading {name}: {e}"))?;
                std::fs::remove_file(&path).map_err(|e| format!("removing {name}: {e}"))?;
                return Ok((name, bytes));
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await;
                return Err(format!(
                    "no download completed in {:?} (on {url}; directory holds {done:?}, partial: {partial})",
                    self.timeout()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends the session and stops the driver (also done on drop).
    pub async fn quit(mut self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
        self.session.clear();
        // Drop stops the driver.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop cannot await: end the session (which closes Chromium) with a plain,
        // blocking HTTP request, so no browser outlives a failed test.
        if !self.session.is_empty() {
            let _ = delete_session_blocking(self.driver_port, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Element<'_> {
    /// The element as a script argument.
    pub fn to_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn path(&self, rest: &str) -> String {
        format!("/element/{}{rest}", self.id)
    }

    /// Clicks it (scrolling it into view).
    ///
    /// # Panics
    /// When the driver refuses (hidden, covered, gone).
    pub async fn click(&self) {
        self.browser
            .post(&self.path("/click"), &json!({}))
            .await
            .unwrap_or_else(|e| panic!("clicking `{}`: {e}", self.selector));
    }

    /// Types `text` into it.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn send_keys(&self, text: &str) {
        self.browser
            .post(&self.path("/value"), &json!({"text": text}))
            .await
            .unwrap_or_else(|e| panic!("typing into `{}`: {e}", self.selector));
    }

    /// Empties an input.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn clear(&self) {
        self.browser
            .post(&self.path("/clear"), &json!({}))
            .await
            .unwrap_or_else(|e| panic!("clearing `{}`: {e}", self.selector));
    }

    /// Its rendered text.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn text(&self) -> String {
        self.browser
            .get(&self.path("/text"))
            .await
            .unwrap_or_else(|e| panic!("text of `{}`: {e}", self.selector))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute (`None` when absent).
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.browser
            .get(&self.path(&format!("/attribute/{name}")))
            .await
            .unwrap_or_else(|e| panic!("attribute {name} of `{}`: {e}", self.selector))
            .as_str()
            .map(str::to_owned)
    }

    /// A DOM property (`value`, `checked`, ...).
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn property(&self, name: &str) -> Value {
        self.browser
            .get(&self.path(&format!("/property/{name}")))
            .await
            .unwrap_or_else(|e| panic!("property {name} of `{}`: {e}", self.selector))
    }

    /// Whether it is displayed.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn is_displayed(&self) -> bool {
        self.browser
            .get(&self.path("/displayed"))
            .await
            .unwrap_or_else(|e| panic!("displayed of `{}`: {e}", self.selector))
            .as_bool()
            .unwrap_or(false)
    }

    /// The first descendant matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let selector = format!("{} {css}", self.selector);
        match self
            .browser
            .post(
                &self.path("/element"),
                &json!({"using": "css selector", "value": css}),
            )
            .await
        {
            Ok(v) => v[ELEMENT_KEY].as_str().map(|id| Element {
                browser: self.browser,
                id: id.to_owned(),
                selector,
            }),
            Err(e) if e.error == "no such element" => None,
            Err(e) => panic!("finding `{selector}`: {e}"),
        }
    }
}

/// JavaScript truthiness of a script result.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A port that was free a moment ago (the driver binds it itself; see the retry).
fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits for the driver's `/status` to say ready; fails early if it exits.
async fn wait_ready(http: &reqwest::Client, url: &str, driver: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = driver.try_wait() {
            return Err(format!("chromedriver exited with {status}"));
        }
        if let Ok(resp) = http.get(format!("{url}/status")).send().await
            && let Ok(body) = resp.json::<Value>().await
            && body["value"]["ready"] == true
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{url}/status never said ready"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One WebDriver HTTP exchange; unwraps `value` or turns the error object into an error.
async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
) -> Result<Value, WebDriverError> {
    let transport = |e: reqwest::Error| WebDriverError {
        error: "transport".to_owned(),
        message: format!("{url}: {e}"),
    };
    let mut req = http.request(method, url);
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let mut body: Value = resp.json().await.map_err(transport)?;
    let value = body["value"].take();
    if status.is_success() {
        Ok(value)
    } else {
        Err(WebDriverError {
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            message: value["message"].as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// `DELETE /session/{id}` over a plain socket, for `Drop`.
fn delete_session_blocking(port: u16, session: &str) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut sink = Vec::new();
    stream.read_to_end(&mut sink)?;
    Ok(())
}
