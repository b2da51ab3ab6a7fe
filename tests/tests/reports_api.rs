//! Reports end to end: the CSV exports (streamed, RFC 4180, formula cells neutralised,
//! filtered), the PDF report (real text, numbered pages), the `export` permission and
//! the audit row of every export, on SQLite and PostgreSQL.

use chrono::{DateTime, TimeDelta, Utc};
use coffer_domain::engine::{SnapshotStatus, SnapshotSummary};
use coffer_domain::ports::BackupCatalog as _;
use coffer_tests::{Api, TestApp, admin, on_both};
use serde_json::Value;

const HOSTILE: &str = "=HYPERLINK(\"http://evil.example\",\"click\")";
const SYNTHETIC: i64 = 70;

/// A response's status, headers of interest and body.
struct Download {
    status: u16,
    content_type: String,
    disposition: String,
    body: Vec<u8>,
}

async fn download(api: &Api<'_>, path: &str) -> Download {
    let resp = api
        .app
        .client
        .get(api.app.url(path))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("request");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default()
    };
    Download {
        status: resp.status().as_u16(),
        content_type: header("content-type"),
        disposition: header("content-disposition"),
        body: resp.bytes().await.expect("body").to_vec(),
    }
}

fn rows(csv: &[u8]) -> Vec<csv::StringRecord> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv)
        .records()
        .map(|r| r.expect("a valid CSV record"))
        .collect()
}

fn column(header: &csv::StringRecord, name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}: {header:?}"))
}

fn json_error(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("a JSON error body")
}

/// Snapshots straight into the catalog (the report reads the catalog; building 70 real
/// snapshots would only make the test slow): one a few hours apart, newest first at
/// `now - 1h`, for source `source_id`, and one with a hostile source name.
async fn seed_catalog(app: &TestApp, source_id: i64, now: DateTime<Utc>) {
    let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(app.settings.database_url()))
        .await
        .expect("connect to the app's database");
    let catalog = db.catalog();
    let summary = |n: i64, source: &str, at: DateTime<Utc>| SnapshotSummary {
        id: format!("{n:064x}"),
        source: source.to_owned(),
        path: "/nowhere".to_owned(),
        hostname: "host".to_owned(),
        started_at: at,
        finished_at: at + TimeDelta::seconds(3),
        status: if n % 7 == 0 {
            SnapshotStatus::Partial
        } else {
            SnapshotStatus::Ok
        },
        encrypted: true,
        parent: None,
        files: 10,
        dirs: 2,
        bytes: 1_000 + u64::try_from(n).expect("small"),
        bytes_added: 10,
        stored_bytes_added: 5,
        unchanged_files: 0,
        excluded: 0,
        warnings: Vec::new(),
        suspicious: None,
    };
    for n in 1..=SYNTHETIC {
        let at = now - TimeDelta::hours(1 + 3 * (n - 1));
        catalog
            .insert(
                &summary(n, "docs", at),
                Some(coffer_domain::SourceId::new(source_id)),
            )
            .await
            .expect("insert");
    }
    catalog
        .insert(&summary(1_000, HOSTILE, now - TimeDelta::minutes(30)), None)
        .await
        .expect("insert the hostile row");
    db.close().await.expect("close");
}

fn filename_ok(disposition: &str, kind: &str, ext: &str) -> bool {
    let Some(name) = disposition
        .strip_prefix(&format!("attachment; filename=\"coffer-{kind}-"))
        .and_then(|rest| rest.strip_suffix(&format!(".{ext}\"")))
    else {
        return false;
    };
    name.len() == 15
        && name.as_bytes()[8] == b'-'
        && name
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit())
}

async fn exports(app: &TestApp) {
    let api = admin(app).await;
    // One real backup of a real source, then the synthetic history beside it.
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::write(work.path().join("a.txt"), b"report me").expect("write");
    let source_id = api.create_source("docs", work.path()).await;
    api.backup(source_id).await;
    let now = Utc::now();
    seed_catalog(app, source_id, now).await;
    let total = usize::try_from(SYNTHETIC).expect("small") + 2;

    // The whole history.
    let all = download(&api, "/api/export/csv").await;
    assert_eq!(all.status, 200, "{}", String::from_utf8_lossy(&all.body));
    assert_eq!(all.content_type, "text/csv; charset=utf-8");
    assert!(
        filename_ok(&all.disposition, "backups", "csv"),
        "{}",
        all.disposition
    );
    let text = String::from_utf8(all.body.clone()).expect("UTF-8");
    assert!(text.contains("\r\n"), "CRLF line ends");
    let table = rows(&all.body);
    assert_eq!(table.len(), 1 + total, "a header and one row per snapshot");
    let header = &table[0];
    let source = column(header, "source");
    let created = column(header, "created_at");
    for name in [
        "status",
        "checksum_sha256",
        "encrypted",
        "duration_seconds",
        "files",
        "bytes",
        "bytes_added",
    ] {
        column(header, name);
    }
    // The hostile name is written as text, and nothing else starts like a formula.
    let hostile: Vec<&str> = table[1..]
        .iter()
        .map(|r| &r[source])
        .filter(|s| *s != "docs")
        .collect();
    assert_eq!(hostile, [format!("'{HOSTILE}")]);
    assert!(
        table
            .iter()
            .flat_map(|r| r.iter())
            .all(|cell| !cell.starts_with(['=', '+', '-', '@'])),
        "a cell starts like a formula"
    );
    assert!(table[1..].iter().all(|r| r[created].ends_with('Z')));
    assert!(
        table[1..]
            .windows(2)
            .all(|w| w[0][created] >= w[1][created]),
        "newest first"
    );

    // By source (name or id) and period.
    let docs = rows(&download(&api, "/api/export/csv?source=docs").await.body);
    assert_eq!(
        docs.len(),
        total,
        "every row of `docs`, not the hostile one"
    );
    assert!(docs[1..].iter().all(|r| &r[source] == "docs"));
    let by_id = rows(
        &download(&api, &format!("/api/export/csv?source={source_id}"))
            .await
            .body,
    );
    assert_eq!(by_id.len(), docs.len());
    // Synthetic rows 1..=10 lie 1..=28 hours back: 10 of them in the last 29 hours,
    // besides the real backup made a moment ago.
    let from = (now - TimeDelta::hours(29)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (now - TimeDelta::minutes(45)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let window = rows(
        &download(
            &api,
            &format!("/api/export/csv?source=docs&from={from}&to={to}"),
        )
        .await
        .body,
    );
    assert_eq!(window.len(), 1 + 10, "{window:?}");

    // Refused filters, in the JSON error shape.
    let backwards = download(&api, &format!("/api/export/csv?from={to}&to={from}")).await;
    assert_eq!(backwards.status, 422);
    assert_eq!(
        json_error(&backwards.body)["error"]["code"],
        "invalid_period"
    );
    let unknown = download(&api, "/api/export/pdf?source=nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(json_error(&unknown.body)["error"]["code"], "not_found");

    // The PDF: several pages of history, numbered, with real text.
    let pdf = download(&api, "/api/export/pdf").await;
    assert_eq!(pdf.status, 200, "{}", String::from_utf8_lossy(&pdf.body));
    assert_eq!(pdf.content_type, "application/pdf");
    assert!(
        filename_ok(&pdf.disposition, "report", "pdf"),
        "{}",
        pdf.disposition
    );
    assert!(pdf.body.starts_with(b"%PDF-"));
    if let Some(text) = pdf_text(&pdf.body) {
        for want in [
            "Coffer backup report",
            "Backups in period",
            "Backup history",
            "Audit summary",
            "docs",
            "Page 1 of",
            "Page 3 of",
        ] {
            assert!(text.contains(want), "the PDF lacks {want:?}:\n{text}");
        }
        // The server sampled the stored bytes (at start and after the backup).
        assert!(!text.contains("No data yet"), "{text}");
    }

    // The audit trail's own export, filtered.
    let audit = download(&api, "/api/export/audit.csv?username=admin&action=export").await;
    assert_eq!(audit.status, 200);
    assert!(
        filename_ok(&audit.disposition, "audit", "csv"),
        "{}",
        audit.disposition
    );
    let trail = rows(&audit.body);
    let action = column(&trail[0], "action");
    let resource = column(&trail[0], "resource");
    assert!(trail[1..].iter().all(|r| &r[action] == "export"));
    let resources: Vec<&str> = trail[1..].iter().map(|r| &r[resource]).collect();
    assert_eq!(resources[0], "report:audit.csv", "its own row first");
    for want in ["report:csv", "report:pdf"] {
        assert!(resources.contains(&want), "{resources:?}");
    }

    // `success`, named as in GET /api/audit, filters the export too (the dashboard's
    // audit page passes it along).
    let refused = download(&api, "/api/export/csv?from=x").await;
    assert_eq!(refused.status, 400, "a bad time is refused, unaudited");
    let ok_only = rows(
        &download(&api, "/api/export/audit.csv?success=true")
            .await
            .body,
    );
    let success = column(&ok_only[0], "success");
    assert!(ok_only.len() > 1);
    assert!(
        ok_only[1..].iter().all(|r| &r[success] == "true"),
        "{ok_only:?}"
    );
    let wrong = app.login("admin", "not the password").await;
    assert_eq!(wrong.status(), 401);
    let failed_only = rows(
        &download(&api, "/api/export/audit.csv?success=false")
            .await
            .body,
    );
    assert!(
        failed_only.len() > 1,
        "the wrong password's row: {failed_only:?}"
    );
    assert!(
        failed_only[1..].iter().all(|r| &r[success] == "false"),
        "{failed_only:?}"
    );
    let everything = rows(&download(&api, "/api/export/audit.csv").await.body);
    assert!(
        (ok_only.len() - 1) + (failed_only.len() - 1) < everything.len() - 1,
        "the filtered exports are parts of the whole"
    );

    // Every export is in the audit trail of the API too.
    let (status, page) = api.get("/api/audit?action=export&limit=100").await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["resource"].as_str())
        .collect();
    for want in ["report:csv", "report:audit.csv", "report:pdf"] {
        assert!(listed.contains(&want), "{listed:?}");
    }
    // Refused exports (400, 422, 404) left no export row: 4 CSVs, 1 PDF, 4 audit CSVs.
    assert_eq!(listed.len(), 9, "{listed:?}");
}
on_both!(exports);

async fn only_admins_export(app: &TestApp) {
    let admin_token = app.admin_token().await;
    for (user, role) in [("olga", "operator"), ("vic", "viewer")] {
        let password = "a long enough password 1";
        app.create_user(&admin_token, user, password, role).await;
        let api = Api {
            app,
            token: app.token(user, password).await,
        };
        for path in [
            "/api/export/csv",
            "/api/export/audit.csv",
            "/api/export/pdf",
        ] {
            let refused = download(&api, path).await;
            assert_eq!(refused.status, 403, "{role} {path}");
            assert_eq!(json_error(&refused.body)["error"]["code"], "forbidden");
        }
    }
    let anonymous = app
        .client
        .get(app.url("/api/export/csv"))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
}
on_both!(only_admins_export);

/// The text `pdftotext` reads, or `None` (a skip) when it is not installed.
fn pdf_text(pdf: &[u8]) -> Option<String> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("pdftotext"))
            .find(|p| p.is_file())
    });
    let Some(pdftotext) = found else {
        return coffer_db::testing::skip(
            "the PDF's text",
            "pdftotext is not installed (Debian: apt-get install poppler-utils)",
        );
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf).expect("write");
    let out = std::process::Command::new(pdftotext)
        .arg(&file)
        .arg("-")
        .output()
        .expect("run pdftotext");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}
