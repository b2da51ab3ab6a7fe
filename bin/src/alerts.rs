//! Wiring for alerts: the process's TLS crypto provider (the webhook client's rustls), the
//! webhook notifier named by the settings, and the background watch of the storage
//! volume's free space (which also takes the day's sample of the bytes in storage).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use coffer_application::{DiskGuard, StorageService};
use coffer_config::Settings;
use coffer_domain::alerts::AlertNotifier;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often a running server re-reads the free space of the storage volume.
pub const DISK_CHECK_EVERY: Duration = Duration::from_mins(10);

/// Makes ring the process's rustls crypto provider (the one sqlx's rustls already
/// compiles), before any TLS client is built. Calling it again is harmless.
pub fn install_crypto_provider() {
    // An error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The webhook notifier, when `alerts.webhook_url` is set.
///
/// # Errors
/// When the URL cannot be used or the HTTP client cannot be built.
pub fn webhook_notifier(settings: &Settings) -> anyhow::Result<Option<Arc<dyn AlertNotifier>>> {
    let Some(url) = settings.alerts.webhook_url.as_deref() else {
        return Ok(None);
    };
    let notifier =
        coffer_notify::WebhookNotifier::new(url).context("cannot set up alerts.webhook_url")?;
    tracing::info!(host = notifier.host(), "new alerts are sent to the webhook");
    Ok(Some(Arc::new(notifier)))
}

/// The email notifier, when `[notify.email]` is set.
///
/// # Errors
/// An unreadable password or CA file, addresses that do not parse.
pub fn email_notifier(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<coffer_notify::EmailNotifier>>> {
    let Some(email) = &settings.notify.email else {
        return Ok(None);
    };
    let password = email.password()?;
    let login = match (&email.username, password) {
        (Some(user), Some(password)) => Some((user.clone(), password.expose().to_owned())),
        (Some(user), None) => Some((user.clone(), String::new())),
        (None, _) => None,
    };
    let extra_ca = match &email.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read notify.email.ca_file {}", path.display()))?,
        ),
        None => None,
    };
    let notifier = coffer_notify::EmailNotifier::new(coffer_notify::EmailOptions {
        host: email.host.clone(),
        port: email.port(),
        protection: match email.tls {
            coffer_config::EmailTls::None => coffer_notify::Protection::None,
            coffer_config::EmailTls::Starttls => coffer_notify::Protection::StartTls,
            coffer_config::EmailTls::Tls => coffer_notify::Protection::Tls,
        },
        login,
        from: email.from.clone(),
        to: email.to.clone(),
        min_interval: Duration::from_secs(u64::from(email.min_interval_minutes) * 60),
        extra_ca,
        timeout: Duration::from_secs(30),
    })
    .context("cannot set up [notify.email]")?;
    tracing::info!(server = %email.host, recipients = email.to.len(), "new alerts are emailed");
    Ok(Some(Arc::new(notifier)))
}

/// Where alerts go: every channel, and the email on its own (for its test message).
pub struct Channels {
    pub all: Option<Arc<dyn AlertNotifier>>,
    pub email: Option<Arc<coffer_notify::EmailNotifier>>,
}

/// Every channel new alerts go to: the webhook and the email, as configured.
///
/// # Errors
/// As [`webhook_notifier`] and [`email_notifier`].
pub fn notifiers(settings: &Settings) -> anyhow::Result<Channels> {
    let webhook = webhook_notifier(settings)?;
    let email = email_notifier(settings)?;
    let mut channels: Vec<Arc<dyn AlertNotifier>> = webhook.into_iter().collect();
    if let Some(email) = &email {
        channels.push(email.clone());
    }
    let all: Option<Arc<dyn AlertNotifier>> = match channels.len() {
        0 => None,
        1 => channels.pop(),
        _ => Some(Arc::new(coffer_notify::Notifiers(channels))),
    };
    Ok(Channels { all, email })
}

/// Checks the free space once, logging what it finds.
pub async fn check_disk(disk: &DiskGuard) {
    match disk.check().await {
        Ok(None) => tracing::info!("storage: object storage, no local volume to watch"),
        Ok(Some(status)) => tracing::info!(
            mount = %status.mount_point.display(),
            free_mb = status.available_bytes / (1024 * 1024),
            total_mb = status.total_bytes / (1024 * 1024),
            low = status.low,
            "storage volume"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            path = %disk.path().map(|p| p.display().to_string()).unwrap_or_default(),
            "cannot check the free space of the storage volume"
        ),
    }
}

/// The periodic disk check of a running server.
pub struct DiskWatch {
    stop: Arc<Notify>,
    task: JoinHandle<()>,
}

impl DiskWatch {
    /// Checks `disk` every `every` (the first check after one period: start-up checks
    /// once itself) until stopped; each time, `storage` records the day's sample of the
    /// bytes in storage unless it has one (so every day the server runs has one, for the
    /// reports' chart, even when no backup or prune changed them).
    #[must_use]
    pub fn spawn(disk: Arc<DiskGuard>, storage: Arc<StorageService>, every: Duration) -> Self {
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.notified() => break,
                    _ = ticks.tick() => {
                        check_disk(&disk).await;
                        storage.sample_daily().await;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// What stops the watch: `notify_one` on it (kept if the watch is busy checking).
    #[must_use]
    pub fn stopper(&self) -> Arc<Notify> {
        Arc::clone(&self.stop)
    }

    /// Stops the watch and waits for a check in progress to finish.
    pub async fn stop(self) {
        self.stop.notify_one();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the disk watch ended abnormally");
        }
    }
}
