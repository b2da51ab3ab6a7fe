//! The browser tests' driver: Debian's `chromedriver` started on a free port, one
//! headless Chromium session with its own profile and download directory, spoken to
//! through `thirtyfour` (a maintained W3C WebDriver client). On top of it, what a test
//! needs — find elements by CSS (waiting until they appear), click, type, read, run a
//! script, wait for a condition, take screenshots, collect downloads — with failures
//! that name the selector (or condition) and the page's URL, so a broken page says
//! where it broke. Dropping the [`Browser`] ends the session and stops the driver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thirtyfour::common::command::FormatRequestData;
use thirtyfour::common::requestdata::RequestData;
use thirtyfour::{By, SessionId, WebDriver, WebElement};

/// How often waits poll.
const POLL: Duration = Duration::from_millis(100);

/// A command the driver refused (or the failure to reach it).
pub type WebDriverError = thirtyfour::error::WebDriverError;

/// Whether the driver said there is no such element.
fn no_such_element(e: &WebDriverError) -> bool {
    matches!(
        e.as_inner(),
        thirtyfour::error::WebDriverErrorInner::NoSuchElement(_)
    )
}

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
    /// The session; taken when it ends (before the driver stops).
    client: Option<WebDriver>,
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
    inner: WebElement,
    /// The selector that found it, for error messages.
    selector: String,
}

/// A chromedriver command beside the W3C set, posted under the session
/// (`/session/{id}/<path>`): the DevTools bridge and the browser log.
#[derive(Debug)]
struct SessionPost {
    path: &'static str,
    body: Value,
}

impl FormatRequestData for SessionPost {
    fn format_request(&self, session_id: &SessionId) -> RequestData {
        RequestData::new(
            http::Method::POST,
            format!("session/{session_id}/{}", self.path),
        )
        .add_body(self.body.clone())
    }
}

impl Browser {
    /// Starts the driver and a browser session, or returns `None` (printing why) when
    /// Chromium or chromedriver is not installed — a failure under
    /// `COFFER_TEST_REQUIRE_ALL=1`.
    ///
    /// # Panics
    /// When they are installed but do not start.
    pub async fn launch(test: &str) -> Option<Self> {
        // The WebDriver client's rustls has no provider of its own (the workspace builds
        // reqwest with `rustls-no-provider`): the process's one, as `coffer` installs it.
        coffer::install_crypto_provider();
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
            match wait_ready(&driver_url, &mut driver).await {
                Ok(()) => return Self::open_session(driver_url, driver, install).await,
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
        driver_url: String,
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
        let caps = json!({
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
        });
        let Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        let client = match WebDriver::new(driver_url, caps).await {
            Ok(client) => client,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(format!("creating the session: {e}"));
            }
        };
        let browser = Self {
            client: Some(client),
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

    /// The WebDriver client itself, for what this wrapper does not offer.
    ///
    /// # Panics
    /// Never while the browser lives (the session ends with it).
    pub fn client(&self) -> &WebDriver {
        self.client
            .as_ref()
            .expect("the session lives as long as the browser")
    }

    /// A chromedriver command beside the W3C set, with its `value`.
    async fn post(&self, path: &'static str, body: Value) -> Result<Value, WebDriverError> {
        self.client()
            .cmd(SessionPost { path, body })
            .await?
            .value_json()
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Result<Value, WebDriverError> {
        self.post("goog/cdp/execute", json!({"cmd": cmd, "params": params}))
            .await
    }

    /// Navigates to `url` and waits for the document to load.
    ///
    /// # Panics
    /// When the navigation fails.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// The page's current URL (or a placeholder when it cannot be read).
    pub async fn current_url(&self) -> String {
        match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("<unknown URL: {e}>"),
        }
    }

    fn element(&self, inner: WebElement, selector: &str) -> Element<'_> {
        Element {
            browser: self,
            inner,
            selector: selector.to_owned(),
        }
    }

    /// The elements matching `css` now (possibly none).
    ///
    /// # Panics
    /// When the driver fails (an invalid selector, a closed window).
    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        self.client()
            .find_all(By::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding `{css}`: {e}"))
            .into_iter()
            .map(|e| self.element(e, css))
            .collect()
    }

    /// The first element matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        match self.client().find(By::Css(css)).await {
            Ok(e) => Some(self.element(e, css)),
            Err(e) if no_such_element(&e) => None,
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
        Ok(self.client().execute(script, args).await?.json().clone())
    }

    /// Runs an asynchronous `script`: it ends by calling the callback passed as its last
    /// argument (`arguments[arguments.length - 1]`) with the result.
    pub async fn try_execute_async(
        &self,
        script: &str,
        args: Vec<Value>,
    ) -> Result<Value, WebDriverError> {
        Ok(self
            .client()
            .execute_async(script, args)
            .await?
            .json()
            .clone())
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
        self.client()
            .set_window_rect(0, 0, width, height)
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
        let png = self
            .client()
            .screenshot_as_png()
            .await
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
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
        let Ok(entries) = self.post("se/log", json!({"type": "browser"})).await else {
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
        if let Some(client) = self.client.take() {
            let _ = client.quit().await;
        }
        // Drop stops the driver.
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session ends first (which closes Chromium), while the driver still runs:
        // dropping a session that was not quit ends it synchronously (thirtyfour's own
        // teardown), so no browser outlives a failed test.
        drop(self.client.take());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Element<'_> {
    /// The element as a script argument.
    pub fn to_arg(&self) -> Value {
        self.inner.to_json().unwrap_or_default()
    }

    /// Clicks it (scrolling it into view).
    ///
    /// # Panics
    /// When the driver refuses (hidden, covered, gone).
    pub async fn click(&self) {
        self.inner
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{}`: {e}", self.selector));
    }

    /// Types `text` into it.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn send_keys(&self, text: &str) {
        self.inner
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into `{}`: {e}", self.selector));
    }

    /// Empties an input.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn clear(&self) {
        self.inner
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clearing `{}`: {e}", self.selector));
    }

    /// Its rendered text.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn text(&self) -> String {
        self.inner
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of `{}`: {e}", self.selector))
    }

    /// An attribute (`None` when absent).
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn attribute(&self, name: &str) -> Option<String> {
        self.inner
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("attribute {name} of `{}`: {e}", self.selector))
    }

    /// A DOM property (`value`, `checked`, ...), as text (`None` when unset).
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn property(&self, name: &str) -> Option<String> {
        self.inner
            .prop(name)
            .await
            .unwrap_or_else(|e| panic!("property {name} of `{}`: {e}", self.selector))
    }

    /// Whether it is displayed.
    ///
    /// # Panics
    /// When the driver refuses.
    pub async fn is_displayed(&self) -> bool {
        self.inner
            .is_displayed()
            .await
            .unwrap_or_else(|e| panic!("displayed of `{}`: {e}", self.selector))
    }

    /// The first descendant matching `css` now, if any.
    pub async fn try_find(&self, css: &str) -> Option<Element<'_>> {
        let selector = format!("{} {css}", self.selector);
        match self.inner.find(By::Css(css)).await {
            Ok(inner) => Some(Element {
                browser: self.browser,
                inner,
                selector,
            }),
            Err(e) if no_such_element(&e) => None,
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
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Waits for the driver's `/status` to say ready; fails early if it exits.
async fn wait_ready(url: &str, driver: &mut Child) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
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
