//! The scheduler's loop in the server: it ticks at each planned run, and at least once a
//! minute so that changed sources are picked up, until shutdown. The rules (what is due,
//! overlap, catch-up) are the application's [`Scheduler`]; this only keeps time.
//!
//! With several instances on one PostgreSQL catalog only the one holding the
//! scheduler's leadership (an advisory lock, [`Leadership`]) ticks; the others ask for it
//! every [`FOLLOWER_SLEEP`], so when the leader dies another takes over within that
//! time. The plans are in the catalog, so the new leader starts what is due, once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use coffer_application::{Scheduler, SchedulerOptions};
use coffer_config::Settings;
use coffer_domain::ports::{Clock, Leadership};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest sleep between ticks: a source created or changed meanwhile is planned
/// within this time.
pub const MAX_SLEEP: Duration = Duration::from_mins(1);
/// The pause after a tick that left a run due (its state could not be written): try
/// again soon, without spinning.
pub const RETRY_SLEEP: Duration = Duration::from_secs(10);
/// How often an instance that does not run the scheduler asks for it.
pub const FOLLOWER_SLEEP: Duration = Duration::from_secs(15);

/// The scheduler's options from the settings (schedules were checked when the settings
/// were loaded; checked again here for settings built in code).
///
/// # Errors
/// An invalid cron expression, naming the key.
pub fn options(settings: &Settings) -> anyhow::Result<SchedulerOptions> {
    let s = &settings.scheduler;
    Ok(SchedulerOptions {
        enabled: s.enabled,
        catch_up: s.catch_up,
        grace: coffer_application::jobs::scheduler::default_grace(),
        prune: s.prune()?,
        check: s.check()?,
        check_share_percent: s.check_share_percent,
    })
}

/// How long to sleep at `now` before the next tick, given the earliest planned run.
#[must_use]
pub fn pause(now: DateTime<Utc>, next: Option<DateTime<Utc>>) -> Duration {
    match next {
        None => MAX_SLEEP,
        Some(t) if t > now => (t - now).to_std().map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP)),
        Some(_) => RETRY_SLEEP,
    }
}

/// Runs the loop on the runtime until `stop` turns true (or its sender goes away). A
/// tick in progress finishes first, so no started job goes unrecorded.
pub fn spawn(
    scheduler: Arc<Scheduler>,
    replicas: Arc<coffer_application::ReplicaService>,
    digest: Option<Arc<coffer_application::DigestService>>,
    leadership: Arc<dyn Leadership>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tracing::info!(catch_up = scheduler.options().catch_up, "scheduler started");
        let mut leading = false;
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let lead = leadership.lead().await;
            match &lead {
                Ok(true) if !leading => {
                    tracing::info!("this instance runs the scheduler");
                }
                Ok(false) if leading => {
                    tracing::warn!("this instance no longer runs the scheduler");
                }
                Ok(false) if !leading => {}
                Err(e) => tracing::error!(error = %e, "scheduler: cannot ask for the leadership"),
                _ => {}
            }
            leading = matches!(lead, Ok(true));
            if !leading {
                tokio::select! {
                    () = tokio::time::sleep(FOLLOWER_SLEEP) => {}
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            break;
                        }
                    }
                }
                continue;
            }
            let report = scheduler.tick().await;
            if !report.fired.is_empty() || !report.errors.is_empty() {
                tracing::debug!(
                    fired = report.fired.len(),
                    errors = report.errors.len(),
                    "scheduler tick"
                );
            }
            // A replica falls behind as time passes, copy or not: its lag alert is
            // judged at every tick (at least once a minute).
            if let Err(e) = replicas.check_lag().await {
                tracing::error!(error = %e, "scheduler: cannot judge the replicas' lag");
            }
            // The daily digest goes out from the scheduler's instance alone.
            if let Some(digest) = &digest
                && let Err(e) = digest.tick().await
            {
                tracing::error!(error = %e, "cannot send the daily digest; trying again at the next tick");
            }
            let next = match scheduler.next_wakeup().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler: cannot read the planned runs");
                    Some(clock.now())
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause(clock.now(), next)) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
        }
        leadership.resign().await;
        tracing::info!("scheduler stopped");
    })
}

/// How often the job runner renews its leases, stores progress, looks for jobs other
/// instances left interrupted and takes queued work.
pub const JOBS_EVERY: Duration = Duration::from_secs(2);

/// Runs the job runner's periodic step until `stop` turns true.
pub fn spawn_jobs(
    jobs: Arc<coffer_application::JobService>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(JOBS_EVERY) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
            if let Err(e) = jobs.maintain().await {
                tracing::error!(error = %e, "jobs: cannot renew leases or take queued work");
            }
        }
    })
}

/// How often an instance sharing its catalog puts the settings changed on another
/// instance (quota, retention defaults) in force.
pub const SETTINGS_EVERY: Duration = Duration::from_secs(5);

/// Re-reads the runtime settings every [`SETTINGS_EVERY`] until `stop` turns true.
pub fn spawn_settings(
    settings: Arc<coffer_application::SettingsService>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SETTINGS_EVERY) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        break;
                    }
                }
            }
            if let Err(e) = settings.refresh().await {
                tracing::error!(error = %e, "settings: cannot re-read the settings other instances may have changed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn sleeps_until_the_next_run_at_most_a_minute() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let secs = chrono::TimeDelta::seconds;
        assert_eq!(pause(now, None), MAX_SLEEP);
        assert_eq!(pause(now, Some(now + secs(15))), Duration::from_secs(15));
        assert_eq!(pause(now, Some(now + secs(3600))), MAX_SLEEP);
        assert_eq!(pause(now, Some(now)), RETRY_SLEEP, "due but not handled");
        assert_eq!(pause(now, Some(now - secs(5))), RETRY_SLEEP);
    }

    #[test]
    fn options_follow_the_settings() {
        let mut settings = Settings::default();
        let o = options(&settings).unwrap();
        assert!(o.enabled && o.catch_up);
        assert_eq!(
            o.prune.map(|p| p.as_str().to_owned()).as_deref(),
            Some("30 3 * * *")
        );
        assert_eq!(
            o.check.map(|p| p.as_str().to_owned()).as_deref(),
            Some("0 4 * * 0")
        );
        assert_eq!(o.check_share_percent, 10);
        settings.scheduler.prune_schedule = String::new();
        settings.scheduler.check_schedule = "not cron".to_owned();
        let err = options(&settings).unwrap_err().to_string();
        assert!(err.contains("scheduler.check_schedule"), "{err}");
        settings.scheduler.check_schedule = String::new();
        let o = options(&settings).unwrap();
        assert!(o.prune.is_none() && o.check.is_none());
    }
}
