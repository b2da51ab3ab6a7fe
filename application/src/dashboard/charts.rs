//! The dashboard's charts: the bytes in storage over time with the quota and a
//! projection, backup runs per day by outcome, and a source's recent runs.
//!
//! Every figure is a bounded read: the daily storage samples of [`STORAGE_DAYS`] days,
//! one grouped count of the jobs of [`RUNS_PER_DAY_DAYS`] days, and per source its
//! newest [`RECENT_RUNS`] runs plus one count for the streak. Nothing names a file.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use coffer_domain::SourceId;
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::charts::{
    BackupRun, DayOfRuns, Projection, StorageTrend, project, runs_per_day, storage_trend,
};
use coffer_domain::reports::{StorageSample, fill_days};

use super::DashboardService;
use crate::error::CommonError;
use crate::storage::{DiskStatus, Quota};

/// The days of storage history drawn (today and the days before).
pub const STORAGE_DAYS: i64 = 90;
/// The days of backup runs counted per day (today and the days before).
pub const RUNS_PER_DAY_DAYS: i64 = 30;
/// A source's newest runs drawn.
pub const RECENT_RUNS: u64 = 30;

/// The bytes in storage over time, and when they reach the quota or fill the disk.
#[derive(Debug, Clone)]
pub struct StorageChart {
    /// One sample a day, oldest first, for the days of the last [`STORAGE_DAYS`] that
    /// anything is known of (see [`fill_days`]).
    pub days: Vec<StorageSample>,
    /// Bytes in storage now (the counter, which today's sample follows).
    pub stored_bytes: u64,
    pub quota: Quota,
    /// `None` when the free space cannot be read (or the repository is not on a disk).
    pub disk: Option<DiskStatus>,
    /// The growth fitted to the last 30 days; `None` with fewer than two days known.
    pub trend: Option<StorageTrend>,
    /// When storage reaches `quota.max_bytes` at the trend's rate; `None` without a
    /// quota.
    pub quota_projection: Option<Projection>,
    /// When the disk fills at the trend's rate, as if the repository alone grew on it:
    /// when the bytes in storage have grown by the free space of today. `None` without
    /// a reading of the disk.
    pub disk_projection: Option<Projection>,
}

/// What the overview's charts draw.
#[derive(Debug, Clone)]
pub struct Charts {
    pub generated_at: DateTime<Utc>,
    pub storage: StorageChart,
    /// Finished backup runs per UTC day (the day each was asked for) by outcome, every
    /// day of the last [`RUNS_PER_DAY_DAYS`], oldest first.
    pub runs_per_day: Vec<DayOfRuns>,
}

/// A source's recent runs.
#[derive(Debug, Clone)]
pub struct SourceRuns {
    pub source_id: SourceId,
    pub name: String,
    /// The newest [`RECENT_RUNS`] finished runs, oldest first (the order a chart draws).
    pub runs: Vec<BackupRun>,
    /// Finished runs in a row, newest backwards, that succeeded without warnings (not
    /// limited to `runs`).
    pub success_streak: u64,
}

/// The first day of the `days` days that end with `today`.
fn first_of(days: i64, today: NaiveDate) -> NaiveDate {
    today - TimeDelta::days(days - 1)
}

impl DashboardService {
    /// The overview's charts.
    ///
    /// # Errors
    /// `Forbidden` without `view`; database failures.
    pub async fn charts(&self, actor: &Actor) -> Result<Charts, CommonError> {
        actor.require(Permission::View)?;
        let now = self.clock.now();
        let today = now.date_naive();
        let read = &self.read;

        let first = first_of(STORAGE_DAYS, today);
        let earlier = match first.pred_opt() {
            Some(before) => read.history.latest_on_or_before(before).await?,
            None => None,
        };
        let samples = read.history.list(first, today).await?;
        let days = fill_days(earlier, &samples, first, today, today);
        let usage = read.storage.usage().await?;
        let disk = self.disk().await;
        let trend = storage_trend(&days, today);
        let projection = |limit| project(trend.as_ref(), usage.stored_bytes, limit, today);
        let quota_projection = usage.quota.max_bytes.map(projection);
        let disk_projection = disk
            .as_ref()
            .map(|d| projection(usage.stored_bytes.saturating_add(d.available_bytes)));

        let first_run_day = first_of(RUNS_PER_DAY_DAYS, today);
        let from = first_run_day.and_time(chrono::NaiveTime::MIN).and_utc();
        let counts = read
            .runs
            .count_per_day(from, from + TimeDelta::days(RUNS_PER_DAY_DAYS))
            .await?;
        Ok(Charts {
            generated_at: now,
            storage: StorageChart {
                days,
                stored_bytes: usage.stored_bytes,
                quota: usage.quota,
                disk,
                trend,
                quota_projection,
                disk_projection,
            },
            runs_per_day: runs_per_day(&counts, first_run_day, today),
        })
    }

    /// A source's newest runs and its success streak.
    ///
    /// # Errors
    /// `Forbidden` without `view`; `NotFound` for an unknown source; database failures.
    pub async fn source_runs(
        &self,
        actor: &Actor,
        source_id: SourceId,
    ) -> Result<SourceRuns, CommonError> {
        actor.require(Permission::View)?;
        let source = self
            .read
            .sources
            .get(source_id)
            .await?
            .ok_or_else(|| CommonError::NotFound(format!("no source with id {source_id}")))?;
        let mut runs = self.read.runs.recent(source_id, RECENT_RUNS).await?;
        runs.reverse();
        let success_streak = self.read.runs.success_streak(source_id).await?;
        Ok(SourceRuns {
            source_id,
            name: source.name,
            runs,
            success_streak,
        })
    }
}
