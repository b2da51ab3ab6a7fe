//! The web dashboard in a real browser: headless Chromium, driven through chromedriver,
//! against the real server on SQLite. An admin logs in (after a wrong password), adds a
//! source, backs it up and watches the job finish, browses the snapshot and downloads a
//! file, restores it, and downloads the CSV and PDF reports; a viewer finds no control
//! that changes anything. Every page visited is saved as a screenshot under
//! `$CARGO_TARGET_TMPDIR/screenshots/`.
//!
//! Elements are found only by the hooks in `adapters/http/web/README.md`. Without
//! Chromium or chromedriver the tests skip with a reason (they fail instead under
//! `COFFER_TEST_REQUIRE_ALL=1`).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use coffer_tests::browser::on_path;
use coffer_tests::{Api, Backend, Browser, TestApp, admin, spawn_app};
use serde_json::{Value, json};

const HELLO: &[u8] = b"Hello from the browser test.\n";
const VIEWER_PASSWORD: &str = "a long enough passphrase";
/// The schedule given in the source form, and one the preview must call wrong.
const SCHEDULE: &str = "30 3 * * *";
const BAD_SCHEDULE: &str = "61 25 * * *";

/// Where the screenshots go (printed once per test).
fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

async fn shot(browser: &Browser, name: &str) {
    browser
        .screenshot(&screenshot_dir().join(format!("{name}.png")))
        .await;
}

/// CSS for a page once its data has loaded.
fn ready(page: &str) -> String {
    format!(r#"main#page[data-page="{page}"][data-ready="true"]"#)
}

/// Follows a navigation link and waits for the page's data.
async fn open(browser: &Browser, page: &str) {
    browser
        .find(&format!(r##"nav a[href="#/{page}"]"##))
        .await
        .click()
        .await;
    browser.find(&ready(page)).await;
}

/// Fills the login form and submits it.
async fn submit_login(browser: &Browser, app: &TestApp, username: &str, password: &str) {
    browser.goto(&app.url("/")).await;
    let user = browser.find("#login-username").await;
    user.clear().await;
    user.send_keys(username).await;
    let pass = browser.find("#login-password").await;
    pass.clear().await;
    pass.send_keys(password).await;
    browser.find("#login-submit").await.click().await;
}

/// The hrefs of the navigation's page links.
async fn nav_links(browser: &Browser) -> Vec<String> {
    let links = browser
        .execute(
            r##"return [...document.querySelectorAll('nav a[href^="#/"]')].map(a => a.getAttribute('href'));"##,
            Vec::new(),
        )
        .await;
    serde_json::from_value(links).expect("hrefs")
}

/// The ids of the jobs shown on the page.
async fn job_ids_shown(browser: &Browser) -> Vec<String> {
    let ids = browser
        .execute(
            "return [...document.querySelectorAll('[data-job-id]')].map(e => e.getAttribute('data-job-id'));",
            Vec::new(),
        )
        .await;
    serde_json::from_value(ids).expect("job ids")
}

/// Installs a `MutationObserver` that records into `window.__jobLog`, as
/// `[id, state, progress value or null, has a cancel button, when (ms)]`, every change of a job
/// card on the page (except those of the jobs in `skip`), so states shown for a moment
/// between two polls of a test are seen all the same. The document stays across the
/// dashboard's pages (they are URL fragments).
async fn record_job_cards(browser: &Browser, skip: &[String]) {
    browser
        .execute(
            "const skip = new Set(arguments[0]); \
             if (window.__jobObserver) window.__jobObserver.disconnect(); \
             window.__jobLog = []; \
             const record = () => { \
               for (const e of document.querySelectorAll('[data-job-id]')) { \
                 const id = e.getAttribute('data-job-id'); \
                 if (skip.has(id)) continue; \
                 const p = e.querySelector('progress'); \
                 const entry = [id, e.getAttribute('data-job-state'), \
                   p && p.hasAttribute('value') ? Number(p.getAttribute('value')) : null, \
                   e.querySelector('[data-action=\"cancel\"]') !== null]; \
                 const last = window.__jobLog.filter(x => x[0] === id).pop(); \
                 if (!last || entry.some((v, i) => v !== last[i])) \
                   window.__jobLog.push([...entry, performance.now()]); \
               } \
             }; \
             window.__jobObserver = new MutationObserver(record); \
             window.__jobObserver.observe(document.body, {subtree: true, childList: true, \
               attributes: true, attributeFilter: ['data-job-state', 'value']}); \
             record();",
            vec![json!(skip)],
        )
        .await;
}

/// What [`record_job_cards`] has seen: `(id, state, progress value, cancel button, when
/// in ms)`.
async fn job_log(browser: &Browser) -> Vec<(String, String, Option<f64>, bool, f64)> {
    let log = browser
        .execute("return window.__jobLog || [];", Vec::new())
        .await;
    serde_json::from_value(log).expect("job log")
}

const FINAL_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// A job the page showed unfinished for less than this may end without a percentage: a
/// backup has one only once its scanner, started after a second, has counted the
/// source, and the page polls every 500 ms.
const NO_PERCENTAGE_MS: f64 = 1500.0;

/// Clicks `button` and follows the job it starts on the page until it ends: returns
/// the job id. Every state the page showed is recorded as it is drawn; the job must have
/// been shown queued or running, with a progress value, before it was shown succeeded.
async fn click_and_follow_job(browser: &Browser, button: &str) -> String {
    let before = job_ids_shown(browser).await;
    record_job_cards(browser, &before).await;
    browser.find(button).await.click().await;
    let deadline = Instant::now() + browser.timeout() * 3;
    loop {
        let log = job_log(browser).await;
        if let Some((id, ..)) = log.first() {
            let id = id.clone();
            let mine: Vec<_> = log.iter().filter(|e| e.0 == id).collect();
            let states: Vec<&str> = mine.iter().map(|e| e.1.as_str()).collect();
            let last = *states.last().expect("one entry");
            match last {
                "succeeded" => {
                    let first_final = states
                        .iter()
                        .position(|s| FINAL_STATES.contains(s))
                        .expect("final");
                    let before_end = &mine[..first_final];
                    assert!(
                        before_end
                            .iter()
                            .any(|e| e.1 == "running" || e.1 == "queued"),
                        "job {id} was never shown queued or running before it ended \
                         (states shown: {states:?})"
                    );
                    // How long the page showed the job unfinished.
                    let shown_ms = mine[first_final].4 - mine[0].4;
                    if before_end.iter().all(|e| e.2.is_none()) {
                        assert!(
                            shown_ms < NO_PERCENTAGE_MS,
                            "job {id} showed no progress value while it ran \
                             ({shown_ms} ms): {mine:?}"
                        );
                        eprintln!(
                            "job {id} (`{button}`) ended {shown_ms} ms after the page \
                             showed it, before a percentage was known"
                        );
                    }
                    let values: Vec<f64> = before_end.iter().filter_map(|e| e.2).collect();
                    eprintln!("job {id} (`{button}`): shown {states:?}, progress {values:?}");
                    return id;
                }
                "failed" | "cancelled" => {
                    panic!(
                        "job {id} ended {last} on {} ({mine:?})",
                        browser.current_url().await
                    )
                }
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "no job started by `{button}` reached succeeded on {} (seen: {log:?})",
            browser.current_url().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Clicks the download link `css` and returns the file the browser saved. When nothing
/// arrives, the link is fetched from the page to say what the server answered.
async fn download(browser: &Browser, css: &str) -> (String, Vec<u8>) {
    browser.clear_downloads();
    let link = browser.find(css).await;
    let href = link.attribute("href").await.unwrap_or_default();
    link.click().await;
    match browser.try_take_download().await {
        Ok(done) => done,
        Err(e) => {
            let answer = browser
                .try_execute_async(
                    "const done = arguments[arguments.length - 1]; \
                     fetch(arguments[0]).then(async r => done(r.status + ' ' + (await r.text()).slice(0, 300))) \
                       .catch(e => done(String(e)));",
                    vec![json!(href)],
                )
                .await;
            panic!("`{css}` ({href}) downloaded nothing: {e}; the server answers: {answer:?}");
        }
    }
}

/// The entries of a tar archive, as `(path, bytes)` of its files.
fn untar(bytes: &[u8]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("tar data");
            out.push((entry.path().expect("path").into_owned(), data));
        }
    }
    out
}

/// Every file under `dir` whose name is `name`.
fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// The records of a CSV file, header included; every record must have the header's width.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("invalid CSV ({e}):\n{text}"))
                .iter()
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// How far the page scrolls sideways, and the widest elements sticking out of the
/// viewport (outside the tables' own scrolling wrappers), or `None` when it does not.
async fn sideways(browser: &Browser) -> Option<String> {
    let found = browser
        .execute(
            "const de = document.documentElement; \
             const over = Math.max(de.scrollWidth, document.body.scrollWidth) - de.clientWidth; \
             if (over <= 1) return null; \
             const vw = de.clientWidth; \
             const culprits = [...document.querySelectorAll('body *')] \
               .filter(e => !e.closest('.table-wrap') || e.matches('.table-wrap')) \
               .map(e => [e, e.getBoundingClientRect().right]) \
               .filter(([, r]) => r > vw + 1) \
               .sort((a, b) => b[1] - a[1]).slice(0, 5) \
               .map(([e, r]) => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}.${[...e.classList].join('.')} right=${Math.round(r)}`); \
             return `${over} px; ${culprits.join(', ')}`;",
            Vec::new(),
        )
        .await;
    found.as_str().map(str::to_owned)
}

/// Fails on Content-Security-Policy violations and uncaught exceptions in the console.
async fn assert_console_clean(browser: &Browser) {
    let bad: Vec<(String, String)> = browser
        .console_log()
        .await
        .into_iter()
        .filter(|(_, message)| {
            message.contains("Content Security Policy") || message.contains("Uncaught")
        })
        .collect();
    assert!(bad.is_empty(), "the browser console reports: {bad:#?}");
}

/// A source tree with a known file.
fn source_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs")).expect("mkdir");
    std::fs::write(root.join("hello.txt"), HELLO).expect("write");
    std::fs::write(root.join("docs/readme.md"), b"# Notes\n").expect("write");
    std::fs::write(root.join("docs/data.csv"), b"a,b\n1,2\n").expect("write");
}

/// The size of [`random_file`]s: a restore of one is seen running for several of the
/// page's polls (neither deduplication nor compression shortens it); a backup of one is
/// seen running, but may end before its scanner's delay is over and a percentage shows.
const BIG: usize = 48 << 20;

/// Writes `len` pseudo-random bytes (xorshift64, seeded by `seed`) to `path`, quickly.
fn random_file(path: &Path, len: usize, seed: u64) {
    use std::io::Write as _;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len());
        file.write_all(&buf[..n]).expect("write");
        left -= n;
    }
    file.flush().expect("flush");
}

/// The client itself, against a page that exists whatever the dashboard's state:
/// Swagger UI renders (under the strict CSP), scripts run, waits and screenshots work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_drives_swagger_ui() {
    let Some(browser) = Browser::launch("the_browser_client_drives_swagger_ui").await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_swagger")
        .await
        .expect("sqlite is always available");
    browser.goto(&app.url("/swagger/")).await;
    let title = browser.find(".swagger-ui .info .title").await;
    assert!(
        title.text().await.contains("Coffer"),
        "{}",
        title.text().await
    );
    browser
        .wait_for(
            "return document.querySelectorAll('.opblock').length > 5;",
            "the operations to render",
        )
        .await;
    assert!(browser.try_find("#no-such-element").await.is_none());
    let count = browser
        .execute(
            "return document.querySelectorAll(arguments[0]).length;",
            vec![json!(".opblock")],
        )
        .await;
    assert!(count.as_u64().unwrap_or(0) > 5, "{count}");
    // Downloads land in the browser's download directory.
    browser.clear_downloads();
    browser
        .execute(
            "const a = document.createElement('a'); \
             a.href = URL.createObjectURL(new Blob(['downloaded by Chromium'])); \
             a.download = 'smoke.txt'; document.body.append(a); a.click();",
            Vec::new(),
        )
        .await;
    let (name, bytes) = browser.take_download().await;
    assert_eq!(name, "smoke.txt");
    assert_eq!(bytes, b"downloaded by Chromium");
    browser.set_window_size(1280, 900).await;
    shot(&browser, "swagger").await;
    // The console is readable (so the checks of it below are not vacuous).
    browser
        .execute("console.warn('coffer console probe');", Vec::new())
        .await;
    let console = browser.console_log().await;
    assert!(
        console
            .iter()
            .any(|(_, m)| m.contains("coffer console probe")),
        "{console:?}"
    );
    assert!(
        !console
            .iter()
            .any(|(_, m)| m.contains("Content Security Policy") || m.contains("Uncaught")),
        "{console:#?}"
    );
    browser.quit().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_backs_up_browses_restores_and_exports_in_the_browser() {
    let started = Instant::now();
    let Some(browser) =
        Browser::launch("an_admin_backs_up_browses_restores_and_exports_in_the_browser").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_admin")
        .await
        .expect("sqlite is always available");
    let api = admin(&app).await;
    eprintln!("screenshots: {}", screenshot_dir().display());

    // A wrong password: the form says so.
    browser.goto(&app.url("/")).await;
    browser.find("#login-username").await;
    shot(&browser, "admin-01-login").await;
    submit_login(&browser, &app, "admin", "not the password").await;
    let error = browser.find("#login-error").await;
    let message = browser
        .wait_for(
            "const e = document.querySelector('#login-error'); \
             return e && e.offsetParent !== null && e.textContent.trim();",
            "#login-error to show a message",
        )
        .await;
    assert_eq!(error.attribute("role").await.as_deref(), Some("alert"));
    assert!(
        !message.as_str().unwrap_or_default().is_empty(),
        "{message}"
    );
    shot(&browser, "admin-02-login-error").await;

    // The right one: the overview.
    submit_login(&browser, &app, "admin", &app.admin_password()).await;
    browser.find(&ready("overview")).await;
    shot(&browser, "admin-03-overview").await;
    let links = nav_links(&browser).await;
    for page in [
        "overview", "backups", "sources", "users", "audit", "reports", "settings",
    ] {
        assert!(
            links.contains(&format!("#/{page}")),
            "the admin's navigation lacks #/{page}: {links:?}"
        );
    }

    // Add a source through the form, with a live cron preview.
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    // Big enough for the backup and the restore to be seen running, the restore with a
    // percentage; the backup (one file of `BIG` took under a second once sealing got
    // faster) may end before its scanner, started after a second, has counted the
    // source for a percentage (see `click_and_follow_job`).
    for part in 0..3 {
        random_file(&src.join(format!("big{part}.bin")), BIG, 1 + part);
    }
    open(&browser, "sources").await;
    add_source(&browser, "projects", &src).await;
    let row = r#"tr[data-source="projects"]"#;
    browser.find(row).await;
    shot(&browser, "admin-05-sources").await;
    let (_, sources) = api.get("/api/sources").await;
    let source = sources["items"]
        .as_array()
        .or(sources.as_array())
        .and_then(|items| items.iter().find(|s| s["name"] == "projects"))
        .unwrap_or_else(|| panic!("the source was not created: {sources}"))
        .clone();
    assert_eq!(source["path"], src.to_str().expect("utf8"), "{source}");
    assert_eq!(source["schedule"], SCHEDULE, "{source}");

    // Back it up from its row; the job's progress shows until it succeeds.
    let job =
        click_and_follow_job(&browser, &format!(r#"{row} button[data-action="backup"]"#)).await;
    shot(&browser, "admin-06-backup-done").await;
    let done = api.wait(&job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let snap = done["result"]["snapshot_id"]
        .as_str()
        .expect("snapshot id")
        .to_owned();

    // Backups: the row; browse the snapshot and download the known file.
    open(&browser, "backups").await;
    let backup_row = format!(r#"tr[data-backup-id="{snap}"]"#);
    browser.find(&backup_row).await;
    shot(&browser, "admin-07-backups").await;
    // The admin's controls carry the marker the viewer's pages are checked for.
    let marked = browser
        .execute(
            "return document.querySelectorAll('[data-mutating]').length;",
            Vec::new(),
        )
        .await;
    assert!(
        marked.as_u64().unwrap_or(0) >= 5,
        "the admin's Backups page marks only {marked} controls data-mutating"
    );
    browser
        .find(&format!(r#"{backup_row} [data-action="browse"]"#))
        .await
        .click()
        .await;
    browser.find(&ready("browse")).await;
    let hello = r#"[data-entry="hello.txt"]"#;
    browser.find(hello).await;
    browser.find(r#"[data-entry="docs"]"#).await;
    shot(&browser, "admin-08-browse").await;
    let (name, bytes) = download(&browser, &format!(r#"{hello} a[data-action="download"]"#)).await;
    if Path::new(&name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tar"))
    {
        assert_eq!(
            untar(&bytes),
            [(PathBuf::from("hello.txt"), HELLO.to_vec())],
            "{name}"
        );
    } else {
        assert_eq!(bytes, HELLO, "{name}");
    }

    // Restore from the Backups page into the default target.
    open(&browser, "backups").await;
    browser
        .find(&format!(r#"{backup_row} [data-action="restore"]"#))
        .await
        .click()
        .await;
    browser
        .wait_for(
            "const d = document.querySelector('dialog#restore-dialog'); return d && d.open;",
            "dialog#restore-dialog to open",
        )
        .await;
    browser.find("#restore-target").await;
    shot(&browser, "admin-09-restore-dialog").await;
    let restore_job = click_and_follow_job(&browser, "#restore-submit").await;
    let done = api.wait(&restore_job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["kind"], "restore", "{done}");
    let restored = find_files(&app.data_dir.join("restored"), "hello.txt");
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(std::fs::read(&restored[0]).expect("restored file"), HELLO);
    shot(&browser, "admin-10-restore-done").await;

    // Reports: CSV and PDF, downloaded by the browser.
    open(&browser, "reports").await;
    shot(&browser, "admin-11-reports").await;
    let (name, bytes) = download(&browser, "a#export-csv").await;
    let csv = String::from_utf8(bytes).expect("UTF-8 CSV");
    let rows = parse_csv(&csv);
    assert!(rows.len() >= 2, "{name}: header and a row expected:\n{csv}");
    let header = &rows[0];
    assert!(
        header.iter().any(|h| h.eq_ignore_ascii_case("source")),
        "{name}: header {header:?}"
    );
    let row = rows
        .iter()
        .skip(1)
        .find(|r| r.iter().any(|c| c == &snap))
        .unwrap_or_else(|| panic!("{name}: no row for snapshot {snap}:\n{csv}"));
    assert_eq!(row.len(), header.len(), "{row:?} vs {header:?}");
    assert!(row.iter().any(|c| c == "projects"), "{row:?}");

    let (name, bytes) = download(&browser, "a#export-audit-csv").await;
    let audit = String::from_utf8(bytes).expect("UTF-8 CSV");
    let rows = parse_csv(&audit);
    assert!(
        rows.len() >= 2,
        "{name}: header and rows expected:\n{audit}"
    );
    assert!(
        rows.iter().skip(1).all(|r| r.len() == rows[0].len()),
        "{name}: ragged rows:\n{audit}"
    );
    assert!(
        rows.iter()
            .skip(1)
            .any(|r| r.iter().any(|c| c.contains("restore"))),
        "{name}: the restore is not in the audit log:\n{audit}"
    );

    let (name, pdf) = download(&browser, "a#export-pdf").await;
    assert!(pdf.starts_with(b"%PDF"), "{name} is not a PDF");
    // Its headings, and the snapshot's row (the short id).
    check_pdf_text(
        &pdf,
        &[
            "Coffer backup report",
            "Backup history",
            "projects",
            &snap[..12],
        ],
    );

    // An impossible period: said on the page, and nothing is asked of the server.
    browser.clear_downloads();
    browser
        .execute(
            "for (const [id, v] of [['report-from', '2026-03-10'], ['report-to', '2026-03-01']]) { \
               const e = document.getElementById(id); e.value = v; \
               e.dispatchEvent(new Event('change', {bubbles: true})); }",
            Vec::new(),
        )
        .await;
    // (A script's click: a toast may cover the button.)
    browser
        .execute(
            "document.querySelector('a#export-pdf').click();",
            Vec::new(),
        )
        .await;
    let said = browser
        .wait_for(
            "const e = document.querySelector('#report-error'); \
             return e && !e.hidden && e.getAttribute('role') === 'alert' && e.textContent.trim();",
            "#report-error to say the period is wrong",
        )
        .await;
    assert!(said.as_str().unwrap_or_default().contains("From"), "{said}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let saved = std::fs::read_dir(browser.download_dir())
        .expect("download directory")
        .count();
    assert_eq!(saved, 0, "an impossible period downloaded something");
    shot(&browser, "admin-11b-reports-bad-period").await;

    // The other admin pages.
    open(&browser, "users").await;
    shot(&browser, "admin-12-users").await;
    open(&browser, "audit").await;
    shot(&browser, "admin-13-audit").await;
    open(&browser, "settings").await;
    shot(&browser, "admin-14-settings").await;

    // A phone's width, on every page: nothing scrolls sideways.
    let phone = browser.emulate_device(375, 812).await;
    assert_eq!(phone, 375, "the emulated phone's viewport");
    let browse = format!("backups/{snap}/browse/");
    let pages = [
        ("overview", "overview"),
        ("backups", "backups"),
        (browse.as_str(), "browse"),
        ("sources", "sources"),
        ("users", "users"),
        ("audit", "audit"),
        ("reports", "reports"),
        ("settings", "settings"),
        ("tasks", "tasks"),
        ("account", "account"),
    ];
    let mut wide = Vec::new();
    for (route, page) in pages {
        browser
            .execute(
                "location.hash = arguments[0];",
                vec![json!(format!("#/{route}"))],
            )
            .await;
        browser.find(&ready(page)).await;
        shot(&browser, &format!("admin-15-phone-{page}")).await;
        if let Some(problem) = sideways(&browser).await {
            wide.push(format!("{page}: {problem}"));
        }
    }
    assert!(
        wide.is_empty(),
        "pages scroll sideways at 375 px: {wide:#?}"
    );
    browser.clear_emulation().await;

    assert_console_clean(&browser).await;
    browser.quit().await;
    app.stop().await;
    eprintln!("admin flow: {:?}", started.elapsed());
}

/// The buttons a viewer may see: navigation, sign out, refresh, filters and paging, and
/// closing things (a finished job's card, a toast, a dialog). They change nothing.
const VIEWER_BUTTONS: &str = "#logout, [data-action=\"refresh\"], [data-action=\"reset\"], \
     #filter-reset, [data-pager], [data-action=\"dismiss\"], .toast-close, .dialog-close, \
     form.filters button[type=\"submit\"]";

/// No control marked `data-mutating`, no cancel button and no button outside
/// [`VIEWER_BUTTONS`] on the viewer's `page`.
async fn assert_nothing_mutating(browser: &Browser, page: &str) {
    let found = browser
        .execute(
            "return { \
               mutating: [...document.querySelectorAll('[data-mutating], [data-action=\"cancel\"]')] \
                 .map(e => e.outerHTML.slice(0, 200)), \
               buttons: [...document.querySelectorAll('button, [role=\"button\"], input[type=\"submit\"]')] \
                 .filter(e => !e.matches(arguments[0])).map(e => e.outerHTML.slice(0, 200)) };",
            vec![json!(VIEWER_BUTTONS)],
        )
        .await;
    assert_eq!(
        found["mutating"],
        json!([]),
        "the viewer's {page} page has controls that change state"
    );
    assert_eq!(
        found["buttons"],
        json!([]),
        "the viewer's {page} page has buttons outside the allowlist ({VIEWER_BUTTONS})"
    );
}

/// Fills and saves the source form; checks the cron preview on the way: an error for a
/// bad expression, then words for [`SCHEDULE`].
async fn add_source(browser: &Browser, name: &str, path: &Path) {
    // The form opens in a dialog from the page's "Add source" button.
    browser.find("#source-add").await.click().await;
    browser.find("#source-name").await.send_keys(name).await;
    browser
        .find("#source-path")
        .await
        .send_keys(path.to_str().expect("utf8"))
        .await;
    let field = browser.find("#source-schedule").await;

    field.clear().await;
    field.send_keys(BAD_SCHEDULE).await;
    let bad = browser
        .wait_for(
            "const p = document.querySelector('#schedule-preview'); \
             const invalid = document.querySelector('#source-schedule').getAttribute('aria-invalid') === 'true' \
               || p.getAttribute('role') === 'alert' || p.matches('.is-error, .error, [data-error]'); \
             return invalid && p.textContent.trim();",
            &format!("#schedule-preview to report `{BAD_SCHEDULE}` as an error"),
        )
        .await;

    field.clear().await;
    field.send_keys(SCHEDULE).await;
    let good = browser
        .wait_for(
            &format!(
                "const p = document.querySelector('#schedule-preview'); \
                 const t = p.textContent.trim(); \
                 const invalid = document.querySelector('#source-schedule').getAttribute('aria-invalid') === 'true' \
                   || p.getAttribute('role') === 'alert' || p.matches('.is-error, .error, [data-error]'); \
                 return !invalid && t !== {bad} && t;"
            ),
            &format!("#schedule-preview to describe `{SCHEDULE}`"),
        )
        .await;
    let good = good.as_str().unwrap_or_default();
    assert!(
        good.contains("03:30"),
        "the preview of `{SCHEDULE}` does not name its time: {good:?}"
    );

    // Exclusions are previewed on the directory as typed, then taken back.
    let excludes = browser.find("#source-exclude").await;
    excludes.send_keys("*.csv").await;
    let skipped = browser
        .wait_for(
            "const p = document.querySelector('#exclude-preview'); \
             const t = p.querySelector('.preview-title[data-skipped=\"1\"]'); \
             return t && p.textContent.includes('docs/data.csv') && p.textContent.trim();",
            "#exclude-preview to name docs/data.csv as skipped",
        )
        .await;
    assert!(
        skipped
            .as_str()
            .unwrap_or_default()
            .contains("1 path would be skipped"),
        "{skipped}"
    );
    excludes.clear().await;
    excludes.send_keys("[z-a]").await;
    browser
        .wait_for(
            "return document.querySelector('#source-exclude').getAttribute('aria-invalid') === 'true' \
               && document.querySelector('#exclude-preview').textContent.includes('[z-a]');",
            "#exclude-preview to name the pattern that is not valid",
        )
        .await;
    excludes.clear().await;
    browser
        .wait_for(
            "return document.querySelector('#exclude-preview .preview-title[data-skipped=\"0\"]') !== null;",
            "#exclude-preview to say nothing is skipped",
        )
        .await;

    shot(browser, "admin-04-source-form").await;
    browser.find("#source-save").await.click().await;
}

/// Checks the PDF's text with `pdftotext` (required under `COFFER_TEST_REQUIRE_ALL=1`).
fn check_pdf_text(pdf: &[u8], expected: &[&str]) {
    let Some(pdftotext) = on_path("pdftotext") else {
        let _: Option<()> = coffer_db::testing::skip(
            "the PDF's text",
            "pdftotext is not installed (Debian: apt-get install poppler-utils)",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf).expect("write the PDF");
    let out = std::process::Command::new(pdftotext)
        .arg(&file)
        .arg("-")
        .output()
        .expect("run pdftotext");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for want in expected {
        assert!(text.contains(want), "the PDF lacks {want:?}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_finds_no_control_that_changes_anything() {
    let Some(browser) = Browser::launch("a_viewer_finds_no_control_that_changes_anything").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_viewer")
        .await
        .expect("sqlite is always available");
    let api: Api<'_> = admin(&app).await;
    eprintln!("screenshots: {}", screenshot_dir().display());
    // Something to look at: a source with a backup.
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    let source_id = api.create_source("projects", &src).await;
    let snap = api.backup(source_id).await;
    // A replica, shown on the overview without its "Copy now" (operators and admins).
    let (status, body) = api
        .post(
            "/api/replicas",
            json!({"name": "nas", "root": work.path().join("nas").to_str().expect("utf8")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.create_user(&api.token, "vera", VIEWER_PASSWORD, "viewer")
        .await;

    submit_login(&browser, &app, "vera", VIEWER_PASSWORD).await;
    browser.find(&ready("overview")).await;
    let links = nav_links(&browser).await;
    for admin_only in ["#/sources", "#/users", "#/audit", "#/reports", "#/settings"] {
        assert!(
            !links.iter().any(|l| l == admin_only),
            "a viewer's navigation shows {admin_only}: {links:?}"
        );
    }
    assert!(links.iter().any(|l| l == "#/overview"), "{links:?}");
    assert!(links.iter().any(|l| l == "#/backups"), "{links:?}");

    for href in &links {
        let page = href.trim_start_matches("#/");
        open(&browser, page).await;
        if page == "backups" {
            browser
                .find(&format!(r#"tr[data-backup-id="{snap}"]"#))
                .await;
        }
        if page == "overview" {
            let row = browser.find(r#"tr[data-overview-replica="nas"]"#).await;
            let text = row.text().await;
            assert!(text.contains("Never copied"), "{text}");
        }
        assert_nothing_mutating(&browser, page).await;
        shot(&browser, &format!("viewer-{page}")).await;
    }

    // A backup an admin started is shown to the viewer while it runs, without a cancel
    // button. Each page is recorded as it is drawn (a MutationObserver), so the job is
    // seen in the state the page showed it, even if it ends a moment later; a job that
    // ended before the page asked is tried again with fresh data.
    let big = work.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    let big_id = api.create_source("big", &big).await;
    let mut seen_running = Vec::new();
    for attempt in 1..=3_u64 {
        random_file(&big.join("big.bin"), BIG, attempt);
        // From a page without jobs, so that each page below is drawn afresh.
        browser
            .execute("location.hash = '#/account';", Vec::new())
            .await;
        browser.find(&ready("account")).await;
        record_job_cards(&browser, &[]).await;
        let (status, job) = api.post("/api/backup", json!({"source_id": big_id})).await;
        assert!(status == 200 || status == 202, "{status} {job}");
        let job_id = job["id"].as_str().expect("job id").to_owned();
        for page in ["backups", "overview"] {
            browser
                .execute(
                    "location.hash = arguments[0];",
                    vec![json!(format!("#/{page}"))],
                )
                .await;
            browser.find(&ready(page)).await;
            assert_nothing_mutating(&browser, page).await;
            let log = job_log(&browser).await;
            let mine: Vec<_> = log.iter().filter(|e| e.0 == job_id).collect();
            assert!(
                !mine.iter().any(|e| e.3),
                "the viewer's {page} page offered to cancel the admin's backup: {mine:?}"
            );
            if mine.iter().any(|e| !FINAL_STATES.contains(&e.1.as_str())) {
                seen_running.push(page);
                shot(&browser, &format!("viewer-{page}-running-job")).await;
            }
        }
        let done = api.wait(&job_id).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        if seen_running.len() == 2 {
            break;
        }
        eprintln!("attempt {attempt}: the viewer saw the backup running on {seen_running:?} only");
        seen_running.clear();
    }
    assert_eq!(
        seen_running,
        ["backups", "overview"],
        "the viewer's pages never showed the admin's backup running"
    );

    // An admin page typed into the address bar sends the viewer back to the overview.
    browser.goto(&app.url("/#/settings")).await;
    browser.find(&ready("overview")).await;
    assert!(
        browser
            .try_find(r#"main#page[data-page="settings"]"#)
            .await
            .is_none(),
        "a viewer reached the settings page"
    );

    // The server refuses anyway.
    let viewer = Api {
        app: &app,
        token: app.token("vera", VIEWER_PASSWORD).await,
    };
    let (status, body): (u16, Value) = viewer
        .post("/api/backup", json!({"source_id": source_id}))
        .await;
    assert_eq!(status, 403, "{body}");

    assert_console_clean(&browser).await;
    browser.quit().await;
    app.stop().await;
}

/// Repeated wrong passwords: the form says the login is locked and for how long, and the
/// right password is refused until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_out_login_says_when_to_try_again() {
    let Some(browser) = Browser::launch("a_locked_out_login_says_when_to_try_again").await else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_lockout")
        .await
        .expect("sqlite is always available");
    let mut locked = None;
    for attempt in 1..=20 {
        submit_login(
            &browser,
            &app,
            "admin",
            &format!("wrong password {attempt}"),
        )
        .await;
        let text = browser
            .wait_for(
                "const e = document.querySelector('#login-error'); \
                 const b = document.querySelector('#login-submit'); \
                 return e && e.offsetParent !== null && b && !b.disabled && e.textContent.trim();",
                "#login-error to show a message",
            )
            .await;
        let text = text.as_str().unwrap_or_default().to_owned();
        if text.contains("try again in") {
            locked = Some((attempt, text));
            break;
        }
    }
    let (attempt, message) = locked.expect("no lockout message after 20 wrong passwords");
    assert!(attempt > 1, "locked at the first failure: {message}");
    assert!(
        message.contains("too many failed logins") && message.ends_with(" s"),
        "{message}"
    );
    shot(&browser, "login-locked").await;
    // Locked means locked: the right password does not get in either, and says why.
    submit_login(&browser, &app, "admin", &app.admin_password()).await;
    let text = browser
        .wait_for(
            "const e = document.querySelector('#login-error'); \
             return e && e.offsetParent !== null && e.textContent.includes('try again in') \
                    && e.textContent.trim();",
            "#login-error to say the login is still locked",
        )
        .await;
    assert!(
        browser.try_find(&ready("overview")).await.is_none(),
        "signed in while locked: {text}"
    );
    app.stop().await;
}

/// The overview's replicas panel: an admin starts a copy from it, and the panel then
/// shows the copy and no lag; a lagging replica says how far behind it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_replicas_and_starts_a_copy() {
    let Some(browser) = Browser::launch("the_overview_shows_replicas_and_starts_a_copy").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_replicas")
        .await
        .expect("sqlite is always available");
    let api: Api<'_> = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    let source_id = api.create_source("projects", &src).await;
    api.backup(source_id).await;
    let nas = work.path().join("nas");
    let (status, body) = api
        .post(
            "/api/replicas",
            json!({"name": "nas", "root": nas.to_str().expect("utf8"), "max_lag_snapshots": 0}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    submit_login(&browser, &app, "admin", &app.admin_password()).await;
    browser.find(&ready("overview")).await;
    let row = r#"tr[data-overview-replica="nas"]"#;
    let text = browser.find(row).await.text().await;
    assert!(
        text.contains("Never copied") && text.contains("1 behind"),
        "{text}"
    );
    shot(&browser, "overview-replica-behind").await;
    browser
        .find(&format!(r#"{row} [data-action="sync"]"#))
        .await
        .click()
        .await;
    browser
        .wait_for(
            "const r = document.querySelector('tr[data-overview-replica=\"nas\"]'); \
             return r && !r.textContent.includes('Never copied') \
               && r.textContent.includes('0 snapshot(s)');",
            "the copy to show on the overview",
        )
        .await;
    assert!(nas.join("config").is_file(), "the copy wrote the replica");
    shot(&browser, "overview-replica-copied").await;
    assert_console_clean(&browser).await;
    browser.quit().await;
    app.stop().await;
}

/// API tokens in the dashboard: an operator reaches the page from My account, creates a
/// token limited to viewer and sees its secret once, the secret works over the API with
/// the viewer's permissions, the list shows its last use, and revoking it in the page
/// ends it. An admin sees everyone's tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_creates_uses_and_revokes_a_token_in_the_browser() {
    let Some(browser) =
        Browser::launch("an_operator_creates_uses_and_revokes_a_token_in_the_browser").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_tokens")
        .await
        .expect("sqlite is always available");
    let api: Api<'_> = admin(&app).await;
    let olga = app
        .create_user(&api.token, "olga", VIEWER_PASSWORD, "operator")
        .await;
    submit_login(&browser, &app, "olga", VIEWER_PASSWORD).await;
    browser.find(&ready("overview")).await;
    let links = nav_links(&browser).await;
    assert!(!links.iter().any(|l| l == "#/tokens"), "{links:?}");
    browser.find("#current-user").await.click().await;
    browser.find(&ready("account")).await;
    browser.find("#account-tokens").await.click().await;
    browser.find(&ready("tokens")).await;

    browser.find("#token-add").await.click().await;
    browser
        .find("#token-name")
        .await
        .send_keys("ci read-only")
        .await;
    // Only roles up to the operator's, and no "never" expiry for a non-admin.
    let choices = browser
        .execute(
            "return { roles: [...document.querySelectorAll('#token-role option')].map(o => o.value), \
                      expiry: [...document.querySelectorAll('#token-expiry option')].map(o => o.value) };",
            Vec::new(),
        )
        .await;
    assert_eq!(
        choices["roles"],
        json!(["", "operator", "viewer"]),
        "{choices}"
    );
    assert!(
        !choices["expiry"]
            .as_array()
            .expect("options")
            .contains(&json!("never")),
        "{choices}"
    );
    browser
        .execute(
            "const s = document.querySelector('#token-role'); s.value = 'viewer'; \
             s.dispatchEvent(new Event('change'));",
            Vec::new(),
        )
        .await;
    browser.find("#token-save").await.click().await;
    let secret = browser.find("#token-secret").await.text().await;
    assert!(secret.starts_with("coffer_pat_"), "{secret}");
    shot(&browser, "token-created").await;
    browser.find("#token-done").await.click().await;
    browser.wait_gone("dialog#token-created-dialog[open]").await;

    let (status, me) = app.get_as(&secret, "/api/me").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["permissions"], json!(["view"]));

    // Opened again, the row shows the use; the secret is nowhere on the page any more.
    browser.find("#current-user").await.click().await;
    browser.find(&ready("account")).await;
    browser.find("#account-tokens").await.click().await;
    browser.find(&ready("tokens")).await;
    let row = browser.find("tr[data-token]").await;
    let text = row.text().await;
    assert!(
        text.contains("ci read-only") && text.contains("127.0.0.1"),
        "{text}"
    );
    let page = browser
        .execute("return document.body.innerText;", Vec::new())
        .await;
    assert!(!page.as_str().unwrap_or_default().contains(&secret));
    shot(&browser, "tokens").await;

    row.try_find("[data-action=\"revoke\"]")
        .await
        .expect("a revoke button")
        .click()
        .await;
    browser.find("#confirm-dialog-confirm").await.click().await;
    browser.wait_gone("tr[data-token]").await;
    assert_eq!(app.get_as(&secret, "/api/me").await.0, 401);
    assert_console_clean(&browser).await;

    // The admin's view: everyone's tokens, with the owner.
    let (status, _) = api
        .post(
            "/api/tokens",
            json!({"name": "olga's deploy", "user_id": olga, "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201);
    browser.find("#logout").await.click().await;
    browser.find("#login-username").await;
    submit_login(&browser, &app, "admin", &app.admin_password()).await;
    browser.find(&ready("overview")).await;
    browser.goto(&app.url("/#/tokens")).await;
    browser.find(&ready("tokens")).await;
    assert!(
        browser.try_find("tr[data-token]").await.is_none(),
        "the admin has none"
    );
    browser.find("#tokens-all").await.click().await;
    let row = browser.find("tr[data-token]").await;
    let text = row.text().await;
    assert!(
        text.contains("olga's deploy") && text.contains("olga"),
        "{text}"
    );
    assert_console_clean(&browser).await;
    app.stop().await;
}

/// What the page shows of the chart `css`: its data attributes, whether each of its SVGs
/// is an image with a label (and the labels), the rows of its table of numbers, and the
/// chart's width against the viewport's.
async fn chart_facts(browser: &Browser, css: &str) -> Value {
    browser
        .execute(
            "const f = document.querySelector(arguments[0]); \
             if (!f) return null; \
             const svgs = [...f.querySelectorAll('svg.chart-svg')]; \
             return { \
               data: {...f.dataset}, \
               images: svgs.length, \
               labelled: svgs.every(s => s.getAttribute('role') === 'img' \
                 && (s.getAttribute('aria-label') || '').length > 20), \
               labels: svgs.map(s => s.getAttribute('aria-label')), \
               caption: (f.querySelector('figcaption') || {}).textContent || '', \
               legend: [...f.querySelectorAll('.chart-legend li')].map(l => l.textContent), \
               rows: f.querySelectorAll('details.chart-data table tbody tr').length, \
               headers: [...f.querySelectorAll('details.chart-data table th')].map(t => t.textContent), \
               right: Math.max(...svgs.map(s => s.getBoundingClientRect().right)), \
               viewport: document.documentElement.clientWidth, \
             };",
            vec![json!(css)],
        )
        .await
}

/// Checks the overview's two charts; returns today's count of backup runs.
async fn check_overview_charts(browser: &Browser, stored_days: u64) -> u64 {
    let storage = chart_facts(browser, "#chart-storage").await;
    assert_eq!(storage["images"], 1, "{storage}");
    assert_eq!(storage["labelled"], true, "{storage}");
    assert!(
        storage["labels"][0]
            .as_str()
            .is_some_and(|l| l.contains("Stored bytes")),
        "{storage}"
    );
    assert_eq!(
        storage["data"]["points"],
        stored_days.to_string(),
        "{storage}"
    );
    assert_eq!(storage["rows"], stored_days, "{storage}");
    // The sentence states the projection and how it was made.
    let caption = storage["caption"].as_str().unwrap_or_default();
    assert!(caption.contains("linear fit"), "{storage}");
    if stored_days > 1 {
        // The quota of 1 MiB is far above what the test stores: not within a year.
        assert!(
            caption.contains("does not reach the quota within a year"),
            "{storage}"
        );
        assert_eq!(
            storage["data"]["projection"], "not_within_a_year",
            "{storage}"
        );
    } else {
        assert!(caption.contains("Not enough history"), "{storage}");
    }
    let per_day = chart_facts(browser, "#chart-backups-per-day").await;
    assert_eq!(per_day["labelled"], true, "{per_day}");
    assert_eq!(per_day["data"]["points"], "30", "{per_day}");
    assert_eq!(per_day["rows"], 30, "{per_day}");
    // Readable without colour: every outcome is named in the legend and the table.
    for outcome in ["Succeeded", "With warnings", "Failed", "Cancelled"] {
        assert!(
            per_day["legend"]
                .as_array()
                .is_some_and(|l| l.iter().any(|t| t == outcome)),
            "{per_day}"
        );
        assert!(
            per_day["headers"]
                .as_array()
                .is_some_and(|h| h.iter().any(|t| t == outcome)),
            "{per_day}"
        );
    }
    for facts in [&storage, &per_day] {
        assert!(
            facts["right"].as_f64() <= facts["viewport"].as_f64(),
            "a chart sticks out of the viewport: {facts}"
        );
    }
    per_day["data"]["todayTotal"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .expect("today's count")
}

/// Scrolls the element `css` to the top of the window (for a screenshot).
async fn scroll_to(browser: &Browser, css: &str) {
    browser
        .execute(
            "const top = document.querySelector(arguments[0]).getBoundingClientRect().top; \
             window.scrollTo(0, Math.max(0, window.scrollY + top - 110));",
            vec![json!(css)],
        )
        .await;
}

/// Ten days of storage samples before today, growing to what is stored now (the server
/// records today's), straight into the app's database: history takes days to gather.
async fn seed_storage_history(app: &TestApp) {
    use coffer_domain::reports::StorageHistory as _;

    let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(app.settings.database_url()))
        .await
        .expect("connect to the app's database");
    let today = chrono::Utc::now().date_naive();
    let history = db.storage_history();
    let now = history
        .latest_on_or_before(today)
        .await
        .expect("read the history")
        .expect("today's sample")
        .stored_bytes;
    for back in 1..=10u64 {
        let day = today - chrono::TimeDelta::days(i64::try_from(back).expect("small"));
        history
            .record(day, now - now * back / 20)
            .await
            .expect("record a sample");
    }
    db.close().await.expect("close");
}

/// Opens the runs of the source `name` on the sources page and waits until they show
/// `runs` runs; returns the chart's facts.
async fn open_source_runs(browser: &Browser, name: &str, runs: usize) -> Value {
    browser
        .find(&format!(r#"tr[data-source="{name}"] [data-action="runs"]"#))
        .await
        .click()
        .await;
    browser
        .find(&format!(r#"#chart-source-runs[data-runs="{runs}"]"#))
        .await;
    chart_facts(browser, "#chart-source-runs").await
}

/// The charts: the overview's stored bytes and backups per day, and a source's last runs
/// on the sources page; each an image with a label, a legend in words and a table of its
/// numbers; updated after a backup; and at a phone's width, nothing scrolls sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_are_labelled_have_their_numbers_and_follow_backups() {
    let Some(browser) =
        Browser::launch("the_charts_are_labelled_have_their_numbers_and_follow_backups").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_charts")
        .await
        .expect("sqlite is always available");
    let api: Api<'_> = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("charted");
    source_tree(&src);
    let source_id = api.create_source("charted", &src).await;
    api.backup(source_id).await;

    submit_login(&browser, &app, "admin", &app.admin_password()).await;
    browser.find(&ready("overview")).await;
    assert_eq!(check_overview_charts(&browser, 1).await, 1);
    scroll_to(&browser, "#overview-charts").await;
    shot(&browser, "charts-overview").await;

    // Ten earlier days of growth, a quota, and another backup: the storage chart draws
    // eleven days with a projection, and today's bar grows once the overview reloads.
    seed_storage_history(&app).await;
    let (status, body) = api
        .send(
            "PATCH",
            "/api/settings",
            Some(json!({"quota": {"max_storage_mb": 1, "warning_threshold_mb": 0}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    api.backup(source_id).await;
    browser.execute("window.scrollTo(0, 0);", Vec::new()).await;
    browser
        .find(r#"[data-action="refresh"]"#)
        .await
        .click()
        .await;
    browser
        .find(r#"#chart-backups-per-day[data-today-total="2"]"#)
        .await;
    assert_eq!(check_overview_charts(&browser, 11).await, 2);
    scroll_to(&browser, "#overview-charts").await;
    shot(&browser, "charts-overview-history").await;

    // The source's runs: two, both clean.
    open(&browser, "sources").await;
    let runs = open_source_runs(&browser, "charted", 2).await;
    assert_eq!(runs["images"], 2, "duration and bytes added: {runs}");
    assert_eq!(runs["labelled"], true, "{runs}");
    assert_eq!(runs["data"]["streak"], "2", "{runs}");
    assert_eq!(runs["rows"], 2, "{runs}");
    let streak = browser.find("#source-streak").await.text().await;
    assert!(streak.contains("2 successful runs in a row"), "{streak}");
    // A backup from the page: the chart follows when it ends.
    browser
        .find(r#"tr[data-source="charted"] [data-action="backup"]"#)
        .await
        .click()
        .await;
    browser
        .find(r#"#chart-source-runs[data-runs="3"][data-streak="3"]"#)
        .await;
    shot(&browser, "charts-source-runs").await;

    // A phone's width: the same charts, within the screen.
    let phone = browser.emulate_device(375, 812).await;
    assert_eq!(phone, 375, "the emulated phone's viewport");
    open(&browser, "overview").await;
    assert_eq!(check_overview_charts(&browser, 11).await, 3);
    let mut wide = Vec::new();
    if let Some(problem) = sideways(&browser).await {
        wide.push(format!("overview: {problem}"));
    }
    scroll_to(&browser, "#chart-storage").await;
    shot(&browser, "charts-phone-overview").await;
    open(&browser, "sources").await;
    let runs = open_source_runs(&browser, "charted", 3).await;
    assert_eq!(runs["labelled"], true, "{runs}");
    assert!(
        runs["right"].as_f64() <= runs["viewport"].as_f64(),
        "the runs chart sticks out: {runs}"
    );
    if let Some(problem) = sideways(&browser).await {
        wide.push(format!("sources: {problem}"));
    }
    shot(&browser, "charts-phone-source-runs").await;
    assert!(
        wide.is_empty(),
        "pages scroll sideways at 375 px: {wide:#?}"
    );
    browser.clear_emulation().await;

    assert_console_clean(&browser).await;
    browser.quit().await;
    app.stop().await;
}

/// The Tasks page and a job's log: the list shows every job with its filters, a running
/// backup's page follows its log live to the final line, a failed job's page says why,
/// and both read at a phone's width.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_list_jobs_and_a_job_s_log_follows_it_live() {
    let Some(browser) = Browser::launch("tasks_list_jobs_and_a_job_s_log_follows_it_live").await
    else {
        return;
    };
    let app = spawn_app(Backend::Sqlite, "browser_tasks")
        .await
        .expect("sqlite is always available");
    let api: Api<'_> = admin(&app).await;
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("projects");
    source_tree(&src);
    let projects = api.create_source("projects", &src).await;
    api.backup(projects).await;
    // A job that fails: a restore of a snapshot into a target that is not empty.
    let big = work.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    let big_id = api.create_source("big", &big).await;

    submit_login(&browser, &app, "admin", &app.admin_password()).await;
    browser.find(&ready("overview")).await;
    assert!(
        nav_links(&browser).await.iter().any(|l| l == "#/tasks"),
        "the navigation links the Tasks page"
    );

    // A backup big enough to be seen running; its page is opened at once and must follow
    // the log to its end. Each line is recorded as it is drawn, with whether the log was
    // complete then; a backup that ended before the page read it is tried again.
    let mut followed = false;
    let mut big_backups = 0;
    for attempt in 1..=3_u64 {
        big_backups += 1;
        for part in 0..3 {
            random_file(
                &big.join(format!("part{part}.bin")),
                BIG,
                attempt * 10 + part,
            );
        }
        browser
            .execute("location.hash = '#/account';", Vec::new())
            .await;
        browser.find(&ready("account")).await;
        let (status, job) = api.post("/api/backup", json!({"source_id": big_id})).await;
        assert_eq!(status, 202, "{job}");
        let job_id = job["id"].as_str().expect("job id").to_owned();
        browser
            .execute(
                "window.__logSeen = []; \
                 new MutationObserver(() => { \
                   const log = document.getElementById('job-log'); \
                   if (log) window.__logSeen.push([log.childElementCount, log.dataset.complete]); \
                 }).observe(document.getElementById('page'), { childList: true, subtree: true, attributes: true }); \
                 location.hash = arguments[0];",
                vec![json!(format!("#/tasks/{job_id}"))],
            )
            .await;
        browser.find(&ready("task")).await;
        // The job's own time is not the page's: a loaded 2-core machine can take longer
        // than the page's timeout to back up 144 MiB. Once it ended, the page must show
        // the complete log within its timeout (it reads the log every 1.5 s).
        let done = api.wait(&job_id).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        browser.find(r#"#job-log[data-complete="true"]"#).await;
        let seen = browser
            .execute("return window.__logSeen;", Vec::new())
            .await;
        let seen: Vec<(u64, String)> = seen
            .as_array()
            .expect("records")
            .iter()
            .map(|r| {
                (
                    r[0].as_u64().unwrap_or(0),
                    r[1].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        let lines = browser.find_all("#job-log li").await;
        let first = lines[0].text().await;
        let last = lines[lines.len() - 1].text().await;
        assert!(first.contains("backup of `big` started"), "{first}");
        assert!(last.contains("succeeded after"), "{last}");
        let state = browser.find("#task-state").await.text().await;
        assert!(state.contains("succeeded"), "{state}");
        // Lines shown while the log was still open, then more by the end: followed live.
        let live = seen.iter().any(|(n, c)| *n > 0 && c == "false");
        let total = lines.len() as u64;
        if live && seen.iter().any(|(n, c)| *n == total && c == "true") {
            followed = true;
            shot(&browser, "tasks-log-followed").await;
            break;
        }
        eprintln!("attempt {attempt}: the backup ended before its page read the log: {seen:?}");
    }
    assert!(
        followed,
        "no attempt saw a running job's log grow on its page"
    );

    // A job that fails: the backup of a source whose directory is gone.
    let gone = work.path().join("gone");
    std::fs::create_dir_all(&gone).expect("mkdir");
    let gone_id = api.create_source("gone", &gone).await;
    std::fs::remove_dir(&gone).expect("rmdir");
    let (status, job) = api.post("/api/backup", json!({"source_id": gone_id})).await;
    assert_eq!(status, 202, "{job}");
    let failed_id = job["id"].as_str().expect("id").to_owned();
    let done = api.wait(&failed_id).await;
    assert_eq!(done["state"], "failed", "{done}");

    // The list: every job, newest first, filtered by kind and state.
    open(&browser, "tasks").await;
    let rows = browser.find_all("tr[data-task-id]").await;
    assert_eq!(
        rows.len(),
        big_backups + 2,
        "the backups of big, of projects and of gone"
    );
    assert_eq!(
        rows[0].attribute("data-task-id").await.as_deref(),
        Some(failed_id.as_str()),
        "newest first"
    );
    let select = |css: &'static str, value: &'static str| {
        let browser = &browser;
        async move {
            browser
                .execute(
                    "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                     s.dispatchEvent(new Event('change'));",
                    vec![json!(css), json!(value)],
                )
                .await;
            browser.find(&ready("tasks")).await;
        }
    };
    select("#tasks-kind", "restore").await;
    browser.find("#page .empty").await;
    select("#tasks-kind", "backup").await;
    select("#tasks-state", "failed").await;
    let rows = browser.find_all("tr[data-task-id]").await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].text().await.contains("Backup of gone"));
    select("#tasks-state", "succeeded").await;
    let projects_only = browser
        .execute(
            "const s = document.querySelector('#tasks-source'); \
             const o = [...s.options].find(o => o.textContent === 'projects'); \
             s.value = o.value; s.dispatchEvent(new Event('change')); return o.value;",
            Vec::new(),
        )
        .await;
    assert_eq!(projects_only, json!(projects.to_string()));
    browser.find(&ready("tasks")).await;
    let rows = browser.find_all("tr[data-task-id]").await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].text().await.contains("Backup of projects"));
    shot(&browser, "tasks-filtered").await;

    // The failed job's page says why, in its facts and at the end of its log.
    browser
        .execute(
            "location.hash = arguments[0];",
            vec![json!(format!("#/tasks/{failed_id}"))],
        )
        .await;
    browser.find(&ready("task")).await;
    browser.find(r#"#job-log[data-complete="true"]"#).await;
    let error = browser.find(r#"#job-log li[data-level="error"]"#).await;
    let said = error.text().await;
    assert!(said.contains("failed after"), "{said}");
    // A vanished source is the operator's to fix, and the log says so plainly.
    assert!(
        said.contains("cannot read the source directory") && said.contains("(invalid)"),
        "{said}"
    );
    let message = done["error"]["message"].as_str().expect("message");
    let facts = browser.find("#task-facts").await.text().await;
    assert!(facts.contains(message), "{facts} / {message}");
    shot(&browser, "tasks-failed-job").await;

    // A phone's width: the list and a log read without scrolling sideways.
    let phone = browser.emulate_device(375, 812).await;
    assert_eq!(phone, 375);
    for route in ["tasks".to_owned(), format!("tasks/{failed_id}")] {
        let hash = format!("#/{route}");
        browser
            .execute("location.hash = arguments[0];", vec![json!(hash)])
            .await;
        let page = if route == "tasks" { "tasks" } else { "task" };
        browser.find(&ready(page)).await;
        shot(&browser, &format!("tasks-phone-{page}")).await;
        assert_eq!(sideways(&browser).await, None, "{route} at 375 px");
    }
    browser.clear_emulation().await;
    assert_console_clean(&browser).await;
    browser.quit().await;
    app.stop().await;
}
