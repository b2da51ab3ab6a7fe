//! Alerts by email against a real SMTP server (`aiosmtpd`, started here, with STARTTLS
//! required and a certificate of a CA made for the test, trusted through
//! `notify.email.ca_file`): the test email of the API arrives; a source that fails again
//! and again sends one email within the interval, not one per failure; only an
//! administrator may send the test; the audit trail records it; the daily digest reports
//! yesterday's backups and storage once.
//!
//! Needs a Python with `aiosmtpd` and `cryptography` (`COFFER_TEST_PYTHON`): skipped with
//! the reason printed without one, a failure under `COFFER_TEST_REQUIRE_ALL=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use coffer_config::{EmailSettings, EmailTls};
use coffer_tests::{Api, Backend, admin, spawn_app_with, test_python};
use serde_json::json;

/// A CA and a certificate it signs for `localhost` and 127.0.0.1, written as PEM files into `dir`.
fn certificates(py: &str, dir: &Path) {
    let script = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
def name(cn): return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
ca_key = ec.generate_private_key(ec.SECP256R1())
ca = (x509.CertificateBuilder().subject_name(name("coffer test CA")).issuer_name(name("coffer test CA"))
      .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                   key_encipherment=False, data_encipherment=False, key_agreement=False,
                                   encipher_only=False, decipher_only=False), critical=True)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
open(f"{out}/ca.pem", "wb").write(ca.public_bytes(serialization.Encoding.PEM))
open(f"{out}/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(f"{out}/key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM,
     serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let made = Command::new(py)
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("make certificates");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// aiosmtpd on a free loopback port, STARTTLS required, every message into a Maildir.
struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[allow(
    clippy::zombie_processes,
    reason = "the child is owned by an SmtpServer at once, whose Drop kills and reaps it"
)]
async fn smtp_server(py: &str, dir: &Path) -> SmtpServer {
    let port = free_port();
    let maildir = dir.join("maildir");
    let child = Command::new(py)
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg("--tlscert")
        .arg(dir.join("cert.pem"))
        .arg("--tlskey")
        .arg(dir.join("key.pem"))
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aiosmtpd");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return SmtpServer {
                child,
                port,
                maildir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("aiosmtpd did not listen on port {port}");
}

/// The messages the server received, as text.
fn received(maildir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for e in entries.flatten() {
                out.push(std::fs::read_to_string(e.path()).expect("message"));
            }
        }
    }
    out
}

/// The messages holding `text`, once there is at least one (fails after 20 s). Other
/// alerts (the key not yet exported, raised at start-up) arrive in any order.
async fn wait_for(maildir: &Path, text: &str) -> Vec<String> {
    for _ in 0..400 {
        let got: Vec<String> = received(maildir)
            .into_iter()
            .filter(|m| m.contains(text))
            .collect();
        if !got.is_empty() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email with {text:?}; got {:?}", received(maildir));
}

/// `[notify.email]` through the test's SMTP server (STARTTLS, its CA trusted), to `to`.
fn through(port: u16, ca: PathBuf, to: &[&str]) -> EmailSettings {
    EmailSettings {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: EmailTls::Starttls,
        username: None,
        password_file: None,
        password: None,
        from: "Coffer <coffer@example.com>".into(),
        to: to.iter().map(|t| (*t).to_owned()).collect(),
        min_interval_minutes: 60,
        ca_file: Some(ca),
        digest_at: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_people_by_email_once_per_interval() {
    let Some(py) = test_python("email", "aiosmtpd, cryptography") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    certificates(&py, work.path());
    let smtp = smtp_server(&py, work.path()).await;
    let ca = work.path().join("ca.pem");
    let port = smtp.port;
    let Some(app) = spawn_app_with(Backend::Sqlite, "email", move |s| {
        s.notify.email = Some(Box::new(through(
            port,
            ca,
            &["ops@example.com", "night-shift@example.com"],
        )));
    })
    .await
    else {
        return;
    };
    let api = admin(&app).await;

    // The test email: over STARTTLS, to both recipients.
    let (status, body) = api.post("/api/notify/test", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["sent_to"]
            .as_str()
            .unwrap()
            .contains("ops@example.com"),
        "{body}"
    );
    let mail = wait_for(&smtp.maildir, "Subject: [Coffer] test email").await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("night-shift@example.com"), "{}", mail[0]);

    // Only an administrator; audited.
    let session = app.admin_token().await;
    app.create_user(&session, "ops", "a long enough passphrase", "operator")
        .await;
    let ops = Api {
        app: &app,
        token: app.token("ops", "a long enough passphrase").await,
    };
    let (status, _) = ops.post("/api/notify/test", json!({})).await;
    assert_eq!(status, 403);
    let (_, audit) = api.get("/api/audit?action=notify_test").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 1, "{audit}");

    // A source that keeps failing: three failures, one email.
    let src = work.path().join("docs");
    std::fs::create_dir(&src).expect("mkdir");
    let id = api.create_source("docs", &src).await;
    std::fs::remove_dir(&src).expect("rmdir");
    for _ in 0..3 {
        let (status, job) = api.post("/api/backup", json!({"source_id": id})).await;
        assert_eq!(status, 202, "{job}");
        let done = api.wait(job["id"].as_str().unwrap()).await;
        assert_eq!(done["state"], "failed", "{done}");
    }
    wait_for(&smtp.maildir, "Subject: [Coffer] critical").await;
    // Give a second email time to arrive, were one (wrongly) sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mail = received(&smtp.maildir);
    let failures: Vec<&String> = mail
        .iter()
        .filter(|m| m.contains("Subject: [Coffer] critical"))
        .collect();
    assert_eq!(failures.len(), 1, "one email for three failures: {mail:?}");
    assert!(failures[0].contains("docs"), "{}", failures[0]);
    let (_, alerts) = api.get("/api/alerts").await;
    assert!(
        alerts["items"].as_array().unwrap().len() >= 3,
        "every failure is still in the alert list: {alerts}"
    );
}

/// Seeds, before the server starts, a catalog with yesterday's backups of `docs` (one
/// succeeded, one failed) and the storage samples of yesterday and the day before.
fn seed_yesterday(url: &str) {
    use chrono::{TimeDelta, Utc};
    use coffer_domain::engine::SnapshotStatus;
    use coffer_domain::jobs::{Job, JobError, JobParams, JobResult, JobState};
    use coffer_domain::ports::{JobRepository as _, SourceRepository as _, SourceSpec};
    use coffer_domain::reports::StorageHistory as _;
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(url))
                .await
                .expect("connect");
            db.migrate().await.expect("migrate");
            let now = Utc::now();
            let yesterday = now - TimeDelta::days(1);
            let source = db
                .sources()
                .create(&SourceSpec::plain("docs", "/srv/docs"), yesterday)
                .await
                .expect("source");
            for (n, ok) in [(1_u128, true), (2, false)] {
                let mut job = Job::queued(
                    format!("0190a5b4-0000-7000-8000-{n:012}")
                        .parse()
                        .expect("a job id"),
                    JobParams::Backup {
                        source_id: source.id,
                        source_name: "docs".into(),
                    },
                    "scheduler",
                    yesterday
                        .date_naive()
                        .and_hms_opt(12, 0, 0)
                        .expect("noon")
                        .and_utc()
                        + TimeDelta::minutes(i64::try_from(n).expect("small")),
                );
                job.started_at = Some(job.created_at);
                job.finished_at = Some(job.created_at + TimeDelta::seconds(3));
                if ok {
                    job.state = JobState::Succeeded;
                    job.result = Some(JobResult::Backup {
                        snapshot_id: coffer_domain::SnapshotId::parse(&"ab".repeat(32))
                            .expect("id"),
                        status: SnapshotStatus::Ok,
                        files: 3,
                        bytes: 300,
                        bytes_added: 300,
                        warnings: Vec::new(),
                    });
                } else {
                    job.state = JobState::Failed;
                    job.error = Some(JobError::new(
                        "invalid",
                        "cannot read the source directory /srv/docs: No such file or directory",
                    ));
                }
                db.jobs().insert(&job).await.expect("job");
            }
            let history = db.storage_history();
            let day = yesterday.date_naive();
            history
                .record(day - TimeDelta::days(1), 1 << 20)
                .await
                .expect("sample");
            history.record(day, 3 << 20).await.expect("sample");
            db.close().await.expect("close");
        });
    })
    .join()
    .expect("seeding");
}

/// The daily digest: sent by the scheduler's instance once its time of day has passed,
/// about yesterday (per source, the failure named, the storage trend), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_digest_reports_yesterday_once() {
    let Some(py) = test_python("email_digest", "aiosmtpd, cryptography") else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    certificates(&py, work.path());
    let smtp = smtp_server(&py, work.path()).await;
    let ca = work.path().join("ca.pem");
    let port = smtp.port;
    let Some(app) = spawn_app_with(Backend::Sqlite, "email_digest", move |s| {
        std::fs::create_dir_all(&s.data_dir).expect("the data directory");
        seed_yesterday(&s.database_url());
        s.scheduler.enabled = true;
        // Nothing else may run by itself during the test.
        s.scheduler.prune_schedule = String::new();
        s.scheduler.check_schedule = String::new();
        s.notify.email = Some(Box::new(EmailSettings {
            // Midnight: always passed, so the digest is due at the first tick.
            digest_at: Some("00:00".into()),
            ..through(port, ca, &["ops@example.com"])
        }));
    })
    .await
    else {
        return;
    };
    let digest = wait_for(&smtp.maildir, "daily digest for").await;
    assert_eq!(digest.len(), 1, "{digest:?}");
    let mail = &digest[0];
    let yesterday = (chrono::Utc::now() - chrono::TimeDelta::days(1)).date_naive();
    for expected in [
        format!("Subject: [Coffer] daily digest for {yesterday}: 2 backups, 1 FAILED"),
        "  - docs: 1 succeeded, 1 FAILED".to_owned(),
        "last failure: cannot read the source directory /srv/docs".to_owned(),
        "3.00 MiB in storage (+2.00 MiB since the day before)".to_owned(),
    ] {
        assert!(mail.contains(&expected), "{expected:?} in\n{mail}");
    }
    // The day is recorded as sent: a restart or another instance taking the scheduler
    // over does not send it again (the rule is `coffer_domain::digest::due`'s tests').
    let db = coffer_db::Database::connect(&coffer_db::DbOptions::new(app.settings.database_url()))
        .await
        .expect("connect");
    let sent = coffer_domain::ports::SettingsRepository::get(&db.settings(), "digest.last_day")
        .await
        .expect("read");
    assert_eq!(sent, Some(yesterday.to_string()));
    db.close().await.expect("close");
    app.stop().await;
}
