//! `coffer-notify`: tells the world outside Coffer about new alerts. [`WebhookNotifier`]
//! POSTs each alert as JSON to the configured `alerts.webhook_url`, retrying with
//! backoff; [`EmailNotifier`] emails it through `[notify.email]`'s SMTP server, at most
//! once per alert kind and source per interval; [`Notifiers`] hands each alert to every
//! configured channel. The application hands alerts over in the background, so a slow or
//! dead endpoint never holds up a backup.
//!
//! The URL may carry a token (in its path or query), so only its host is ever logged or
//! put in an error. Redirects are not followed: a webhook answers where it was
//! configured, or the delivery fails.
//!
//! This crate knows the domain's alert and its notifier port, and nothing of the
//! database, the storage or the HTTP server.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use coffer_domain::alerts::{Alert, AlertNotifier, NotifyError};
use serde::Serialize;

mod email;

pub use email::{EmailError, EmailNotifier, EmailOptions, Protection};

/// How long one attempt may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The waits before the second, third and fourth attempts.
pub const DEFAULT_BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(4),
    Duration::from_secs(16),
];

/// Why a webhook notifier cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("alerts.webhook_url is not a valid URL: {0}")]
    InvalidUrl(String),
    #[error("alerts.webhook_url must be an http:// or https:// URL with a host")]
    UnsupportedUrl,
    #[error("cannot set up the HTTP client for the webhook: {0}")]
    Client(String),
}

/// The body POSTed for each alert.
#[derive(Debug, Serialize)]
struct Payload<'a> {
    product: &'static str,
    id: i64,
    severity: &'static str,
    kind: &'static str,
    message: &'a str,
    source_id: Option<i64>,
    created_at: String,
}

impl<'a> Payload<'a> {
    fn of(alert: &'a Alert) -> Self {
        Self {
            product: "coffer",
            id: alert.id.get(),
            severity: alert.severity.as_str(),
            kind: alert.kind.as_str(),
            message: &alert.message,
            source_id: alert.source_id.map(coffer_domain::SourceId::get),
            created_at: rfc3339(alert.created_at),
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Sends alerts to a webhook.
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL's host: all that is ever logged of it.
    host: String,
    backoff: Vec<Duration>,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("host", &self.host)
            .field("attempts", &self.attempts())
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier for `url` with the default timeout (10 s) and backoff (1 s, 4 s, 16 s:
    /// four attempts).
    ///
    /// # Errors
    /// A URL that is not http(s) with a host; a client that cannot be built.
    pub fn new(url: &str) -> Result<Self, WebhookError> {
        Self::with_retry(url, DEFAULT_TIMEOUT, DEFAULT_BACKOFF.to_vec())
    }

    /// A notifier with its own timeout per attempt and waits between attempts (one
    /// attempt more than there are waits).
    ///
    /// # Errors
    /// As [`WebhookNotifier::new`].
    pub fn with_retry(
        url: &str,
        timeout: Duration,
        backoff: Vec<Duration>,
    ) -> Result<Self, WebhookError> {
        // The parser's message names no part of the URL.
        let url = reqwest::Url::parse(url).map_err(|e| WebhookError::InvalidUrl(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::UnsupportedUrl);
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(WebhookError::UnsupportedUrl)?
            .to_owned();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.without_url().to_string()))?;
        Ok(Self {
            client,
            url,
            host,
            backoff,
        })
    }

    /// The host alerts go to.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    fn attempts(&self) -> usize {
        self.backoff.len() + 1
    }

    /// One POST; `Err` says why it did not succeed, without the URL.
    async fn attempt(&self, body: &Payload<'_>) -> Result<(), String> {
        let response = self
            .client
            .post(self.url.clone())
            .json(body)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// A reqwest error without its URL (which may carry a token), with its causes.
fn describe(err: &reqwest::Error) -> String {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = std::error::Error::source(err);
    let mut detail = Vec::new();
    while let Some(c) = cause {
        detail.push(c.to_string());
        cause = c.source();
    }
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {}", detail.join(": "))
    }
}

#[async_trait]
impl AlertNotifier for WebhookNotifier {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let body = Payload::of(alert);
        let attempts = self.attempts();
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(&body).await {
                Ok(()) => return Ok(()),
                Err(why) => {
                    tracing::debug!(host = %self.host, alert = %alert.id, attempt, error = %why, "webhook attempt failed");
                    last = why;
                }
            }
            if let Some(wait) = self.backoff.get(attempt - 1) {
                tokio::time::sleep(*wait).await;
            }
        }
        tracing::warn!(
            host = %self.host,
            alert = %alert.id,
            attempts,
            error = %last,
            "cannot deliver the alert to the webhook; it stays in Coffer's alert list"
        );
        Err(NotifyError(format!(
            "webhook at {} failed {attempts} times; last: {last}",
            self.host
        )))
    }
}

/// Every configured channel: each alert goes to all of them, one failing does not stop
/// the others.
pub struct Notifiers(pub Vec<std::sync::Arc<dyn AlertNotifier>>);

#[async_trait]
impl AlertNotifier for Notifiers {
    async fn notify(&self, alert: &Alert) -> Result<(), NotifyError> {
        let mut failed = Vec::new();
        for channel in &self.0 {
            if let Err(e) = channel.notify(alert).await {
                failed.push(e.0);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(NotifyError(failed.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests;
