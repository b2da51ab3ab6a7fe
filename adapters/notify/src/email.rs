//! Alerts by email: [`EmailNotifier`] sends each new alert through an SMTP server
//! (lettre, rustls with the system's roots and an optional extra CA), at most one email
//! per alert kind and source within `min_interval` — one broken source sends one email an
//! hour, not one a minute; what was held back is counted in the next one.
//!
//! The password never appears in a log line, an error or `Debug`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use coffer_domain::SourceId;
use coffer_domain::alerts::{Alert, AlertKind, AlertNotifier, NotifyError, NotifyTest};
use coffer_domain::digest::DigestSender;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// Plain SMTP (a relay on a trusted network).
    None,
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// Where and how emails go.
pub struct EmailOptions {
    pub host: String,
    pub port: u16,
    pub protection: Protection,
    /// User and password, when the server wants a login.
    pub login: Option<(String, String)>,
    pub from: String,
    pub to: Vec<String>,
    /// At most one email per alert kind and source within this.
    pub min_interval: Duration,
    /// PEM of a CA to trust besides the system's.
    pub extra_ca: Option<Vec<u8>>,
    /// How long one delivery may take.
    pub timeout: Duration,
}

/// Why an email notifier cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("notify.email.from is not an email address: {0}")]
    From(String),
    #[error("notify.email.to holds {0:?}, which is not an email address")]
    To(String),
    #[error("notify.email.ca_file: {0}")]
    Ca(String),
    #[error("cannot set up TLS for {0}")]
    Tls(String),
}

/// What was last sent for one alert kind and source, and what was held back since.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    held_back: u32,
}

/// Sends alerts by email.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Mailboxes,
    /// `host:port`, for messages.
    server: String,
    min_interval: Duration,
    sent: Mutex<HashMap<(AlertKind, Option<SourceId>), Sent>>,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("server", &self.server)
            .field("to", &self.to.to_string())
            .field("min_interval", &self.min_interval)
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// A notifier sending through `options.host`.
    ///
    /// # Errors
    /// Addresses that do not parse, a CA file that is no PEM certificate, TLS that
    /// cannot be set up.
    pub fn new(options: EmailOptions) -> Result<Self, EmailError> {
        let from: Mailbox = options
            .from
            .parse()
            .map_err(|e: lettre::address::AddressError| EmailError::From(e.to_string()))?;
        let mut to = Mailboxes::new();
        for address in &options.to {
            to.push(
                address
                    .parse()
                    .map_err(|_| EmailError::To(address.clone()))?,
            );
        }
        let tls = || -> Result<TlsParameters, EmailError> {
            let mut builder = TlsParameters::builder(options.host.clone());
            if let Some(pem) = &options.extra_ca {
                // lettre reads a PEM without certificates as an empty list, silently.
                if !pem
                    .windows(b"-----BEGIN CERTIFICATE-----".len())
                    .any(|w| w == b"-----BEGIN CERTIFICATE-----")
                {
                    return Err(EmailError::Ca("holds no PEM certificate".into()));
                }
                builder = builder.add_root_certificate(
                    Certificate::from_pem(pem).map_err(|e| EmailError::Ca(e.to_string()))?,
                );
            }
            builder
                .build_rustls()
                .map_err(|e| EmailError::Tls(format!("{}: {e}", options.host)))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(options.host.clone())
                .port(options.port)
                .timeout(Some(options.timeout));
        builder = match options.protection {
            Protection::None => builder.tls(Tls::None),
            Protection::StartTls => builder.tls(Tls::Required(tls()?)),
            Protection::Tls => builder.tls(Tls::Wrapper(tls()?)),
        };
        if let Some((user, password)) = options.login {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to,
            server: format!("{}:{}", options.host, options.port),
            min_interval: options.min_interval,
            sent: Mutex::new(HashMap::new()),
        })
    }

    /// Whether an email about `alert` goes out now; when not, it is counted for the
    /// next. Returns how many were held back before this one.
    fn admit(&self, alert: &Alert, now: Instant) -> Option<u32> {
        let mut sent = self.sent.lock().expect("sent");
        let key = (alert.kind, alert.source_id);
        match sent.get_mut(&key) {
            Some(last) if now.duration_since(last.at) < self.min_interval => {
                last.held_back += 1;
                None
            }
            previous => {
                let held_back = previous.map_or(0, |p| p.held_back);
                sent.insert(
                    key,
                    Sent {
                        at: now,
                        held_back: 0,
                    },
                );
                Some(held_back)
            }
        }
    }

    async fn send(&self, subject: &str, body: String) -> Result<(), NotifyError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in self.to.iter() {
            message = message.to(to.clone());
        }
        let message = message
            .body(body)
            .map_err(|e| NotifyError(format!("cannot build the email: {e}")))?;
        self.transport.send(message).await.map(|_| ()).map_err(|e| {
            // lettre's errors name the server's answer, never the credentials.
            NotifyError(format!(
                "the SMTP server {} refused or failed: {e}",
                self.server
            ))
        })
    }
}

/// The subject and body of the email about `alert`.
fn compose(alert: &Alert, held_back: u32, interval: Duration) -> (String, String) {
    let first_line = alert.message.lines().next().unwrap_or_default();
    let mut short: String = first_line.chars().take(120).collect();
    if short.len() < first_line.len() {
        short.push('…');
    }
    let subject = format!(
        "[Coffer] {}: {}",
        alert.severity.as_str(),
        if short.is_empty() {
            alert.kind.as_str().to_owned()
        } else {
            short
        }
    );
    let mut body = format!(
        "{}\n\nSeverity: {}\nKind: {}\nAlert: {}\nRaised: {}\n",
        alert.message,
        alert.severity.as_str(),
        alert.kind.as_str(),
        alert.id,
        alert.created_at.to_rfc3339()
    );
    if let Some(source) = alert.source_id {
        let _ = writeln!(body, "Source: {source}");
    }
    if held_back > 0 {
        let _ = writeln!(
            body,
            "\n{held_back} more alert(s) of this kind{} were raised since the last email \
             and not sent on their own (at most one email per {} minutes): see the \
             dashboard's alert list.",
            if alert.source_id.is_some() {
                " for this source"
            } else {
                ""
            },
            interval.as_secs() / 60
        );
    }
    body.push_str("\nAcknowledge it in the dashboard (Alerts) or with the API.\n");
    (subject, body)
}

#[async_trait]
impl AlertNotifier for EmailNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let Some(held_back) = self.admit(alert, Instant::now()) else {
            tracing::debug!(alert = %alert.id, kind = %alert.kind.as_str(), "alert email held back (one per interval)");
            return Ok(());
        };
        let (subject, body) = compose(alert, held_back, self.min_interval);
        let sent = self.send(&subject, body).await;
        if let Err(e) = &sent {
            tracing::warn!(alert = %alert.id, error = %e, "cannot email the alert; it stays in Coffer's alert list");
        }
        sent
    }
}

#[async_trait]
impl NotifyTest for EmailNotifier {
    async fn send_test(&self, requested_by: &str) -> Result<String, NotifyError> {
        self.send(
            "[Coffer] test email",
            format!(
                "This is a test email from Coffer, sent at {requested_by}'s request.\n\n\
                 Alerts (backup failed, source suspicious, quota warning, disk low, key \
                 not exported, replica lagging, damage found) come to this address, at most \
                 one email per alert kind and source every {} minutes.\n",
                self.min_interval.as_secs() / 60
            ),
        )
        .await?;
        Ok(format!("{} through {}", self.to, self.server))
    }
}

#[async_trait]
impl DigestSender for EmailNotifier {
    async fn send_digest(&self, subject: &str, body: &str) -> Result<(), NotifyError> {
        self.send(subject, body.to_owned()).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use coffer_domain::AlertId;
    use coffer_domain::alerts::Severity;

    use super::*;

    fn alert(kind: AlertKind, source: Option<i64>) -> Alert {
        Alert {
            id: AlertId::new(1),
            kind,
            severity: Severity::Critical,
            message: "the backup of `docs` failed: cannot read /srv/docs".into(),
            source_id: source.map(SourceId::new),
            created_at: Utc::now(),
            acknowledged_at: None,
            acknowledged_by: None,
        }
    }

    fn notifier(interval: Duration) -> EmailNotifier {
        EmailNotifier::new(EmailOptions {
            host: "127.0.0.1".into(),
            port: 2525,
            protection: Protection::None,
            login: Some(("coffer".into(), "hunter2".into())),
            from: "Coffer <backup@example.com>".into(),
            to: vec!["ops@example.com".into()],
            min_interval: interval,
            extra_ca: None,
            timeout: Duration::from_secs(1),
        })
        .expect("notifier")
    }

    #[test]
    fn one_email_per_kind_and_source_per_interval_counting_the_rest() {
        let n = notifier(Duration::from_hours(1));
        let t0 = Instant::now();
        let failed_3 = alert(AlertKind::BackupFailed, Some(3));
        assert_eq!(n.admit(&failed_3, t0), Some(0));
        assert_eq!(n.admit(&failed_3, t0 + Duration::from_mins(1)), None);
        assert_eq!(n.admit(&failed_3, t0 + Duration::from_mins(2)), None);
        // Another source, another kind: their own emails.
        assert_eq!(
            n.admit(&alert(AlertKind::BackupFailed, Some(4)), t0),
            Some(0)
        );
        assert_eq!(n.admit(&alert(AlertKind::DiskLow, None), t0), Some(0));
        // An hour on: it goes out, saying two were held back.
        assert_eq!(n.admit(&failed_3, t0 + Duration::from_secs(3601)), Some(2));
        let (subject, body) = compose(&failed_3, 2, Duration::from_hours(1));
        assert!(subject.starts_with("[Coffer] critical: the backup of `docs` failed"));
        assert!(
            body.contains("2 more alert(s) of this kind for this source"),
            "{body}"
        );
        assert!(body.contains("60 minutes"), "{body}");
    }

    #[test]
    fn addresses_are_checked_and_the_password_never_shown() {
        let n = notifier(Duration::from_mins(1));
        assert!(!format!("{n:?}").contains("hunter2"));
        let bad = EmailNotifier::new(EmailOptions {
            to: vec!["not an address".into()],
            ..options()
        })
        .unwrap_err();
        assert!(bad.to_string().contains("not an address"), "{bad}");
        let bad = EmailNotifier::new(EmailOptions {
            extra_ca: Some(b"not a certificate".to_vec()),
            protection: Protection::StartTls,
            ..options()
        })
        .unwrap_err();
        assert!(bad.to_string().contains("ca_file"), "{bad}");
    }

    fn options() -> EmailOptions {
        EmailOptions {
            host: "smtp.example.com".into(),
            port: 587,
            protection: Protection::StartTls,
            login: None,
            from: "backup@example.com".into(),
            to: vec!["ops@example.com".into()],
            min_interval: Duration::from_mins(1),
            extra_ca: None,
            timeout: Duration::from_secs(1),
        }
    }
}
