//! The daily digest (issue 17): once a day, at `[notify.email] digest_at` (UTC), an email
//! with the previous day's backups per source, the failures and the storage trend.
//!
//! The server instance that runs the scheduler asks [`DigestService::tick`] at every
//! scheduler tick (at least once a minute), so with several instances one sends it. The
//! day last sent is kept in the catalog's settings (`digest.last_day`): a restart or a
//! new scheduler leader does not send it twice, and a server that was down at the hour
//! sends it when it is back, the same day.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use coffer_domain::charts::{project, storage_trend};
use coffer_domain::digest::{Digest, DigestRuns, DigestSender, due, render};
use coffer_domain::jobs::{JobFilter, JobKind};
use coffer_domain::ports::{Clock, JobRepository, SettingsRepository, SourceRepository};
use coffer_domain::reports::{StorageHistory, fill_days};

use crate::error::CommonError;
use crate::storage::StorageFigures;

/// The settings key holding the last day a digest was sent for (`YYYY-MM-DD`).
pub const LAST_DAY_KEY: &str = "digest.last_day";
/// Jobs read per page while gathering a day's backups.
const PAGE: u64 = 500;

/// What the digest reads.
pub struct DigestPorts {
    pub jobs: Arc<dyn JobRepository>,
    pub sources: Arc<dyn SourceRepository>,
    pub history: Arc<dyn StorageHistory>,
    pub storage: Arc<dyn StorageFigures>,
    /// Where the day last sent is kept.
    pub state: Arc<dyn SettingsRepository>,
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestTick {
    NotDue,
    /// The digest for that day went out.
    Sent(NaiveDate),
}

pub struct DigestService {
    ports: DigestPorts,
    sender: Arc<dyn DigestSender>,
    at: NaiveTime,
    clock: Arc<dyn Clock>,
}

impl DigestService {
    #[must_use]
    pub fn new(
        ports: DigestPorts,
        sender: Arc<dyn DigestSender>,
        at: NaiveTime,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            ports,
            sender,
            at,
            clock,
        }
    }

    /// Sends the digest when it is due.
    ///
    /// # Errors
    /// Database failures; the email not sent (`CommonError::Unexpected`, naming the SMTP
    /// server's answer). Either way the next tick tries again.
    pub async fn tick(&self) -> Result<DigestTick, CommonError> {
        let now = self.clock.now();
        let last_sent = self
            .ports
            .state
            .get(LAST_DAY_KEY)
            .await?
            .and_then(|v| NaiveDate::parse_from_str(&v, "%Y-%m-%d").ok());
        let Some(day) = due(now, self.at, last_sent) else {
            return Ok(DigestTick::NotDue);
        };
        let digest = self.gather(day).await?;
        let (subject, body) = render(&digest);
        self.sender
            .send_digest(&subject, &body)
            .await
            .map_err(|e| CommonError::Unexpected(anyhow::anyhow!("the daily digest: {e}")))?;
        self.ports
            .state
            .put(LAST_DAY_KEY, &day.format("%Y-%m-%d").to_string())
            .await?;
        tracing::info!(%day, "daily digest sent");
        Ok(DigestTick::Sent(day))
    }

    /// What the digest of `day` says.
    async fn gather(&self, day: NaiveDate) -> Result<Digest, CommonError> {
        let ports = &self.ports;
        let start = day.and_time(NaiveTime::MIN).and_utc();
        let mut filter = JobFilter {
            kind: Some(JobKind::Backup),
            from: Some(start),
            to: Some(start + TimeDelta::days(1)),
            limit: PAGE,
            ..JobFilter::default()
        };
        let mut jobs = Vec::new();
        loop {
            let page = ports.jobs.list(&filter).await?;
            let n = page.items.len() as u64;
            jobs.extend(page.items);
            if n < PAGE || filter.offset + n >= page.total {
                break;
            }
            filter.offset += n;
        }
        let runs = DigestRuns::of(&jobs);
        let idle_sources = ports
            .sources
            .list()
            .await?
            .into_iter()
            // A paused source or one without a schedule is not expected to have run.
            .filter(|s| s.enabled && s.schedule.is_some() && !runs.sources.contains_key(&s.name))
            .map(|s| s.name)
            .collect();

        let first = day - TimeDelta::days(coffer_domain::charts::FIT_DAYS - 1);
        let earlier = match first.pred_opt() {
            Some(before) => ports.history.latest_on_or_before(before).await?,
            None => None,
        };
        let samples = ports.history.list(first, day).await?;
        let days = fill_days(earlier, &samples, first, day, day);
        let value_on = |d: NaiveDate| days.iter().find(|s| s.day == d).map(|s| s.stored_bytes);
        let stored_bytes = value_on(day);
        let stored_day_before = day.pred_opt().and_then(value_on);
        let trend = storage_trend(&days, day);
        let usage = ports.storage.usage().await?;
        let quota = usage.quota.max_bytes.map(|limit| {
            (
                limit,
                project(trend.as_ref(), usage.stored_bytes, limit, day),
            )
        });
        Ok(Digest {
            day,
            runs,
            idle_sources,
            stored_bytes,
            stored_day_before,
            trend,
            quota,
        })
    }
}

#[cfg(test)]
mod tests;
