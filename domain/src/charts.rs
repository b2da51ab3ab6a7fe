//! The dashboard's charts: the trend of the bytes in storage and when it reaches a limit,
//! backup runs by outcome, and the port that reads the runs from the job records.
//!
//! The projection is deliberately simple and says so: a least-squares line through the
//! daily samples of the last [`FIT_DAYS`] days, extended from today's value. Nothing is
//! promised beyond [`HORIZON_DAYS`].

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::engine::SnapshotStatus;
use crate::jobs::{Job, JobKind, JobResult, JobState};
use crate::ports::RepoError;
use crate::reports::StorageSample;
use crate::{JobId, SourceId};

/// The days of samples the storage trend is fitted to (today and the 29 before).
pub const FIT_DAYS: i64 = 30;
/// How far ahead a projection is stated; beyond it, "not within a year".
pub const HORIZON_DAYS: i64 = 365;
/// Below this growth (bytes per day) storage counts as flat.
const FLAT_BYTES_PER_DAY: f64 = 1.0;

/// The growth of the bytes in storage: the slope of the least-squares line through the
/// daily samples of `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StorageTrend {
    pub bytes_per_day: f64,
    /// The days fitted (one sample each).
    pub days: u32,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// The trend of the samples of the [`FIT_DAYS`] days up to `today` (`samples` one per
/// day, as [`crate::reports::fill_days`] makes them); `None` with fewer than two days,
/// through which no line says anything.
#[must_use]
pub fn storage_trend(samples: &[StorageSample], today: NaiveDate) -> Option<StorageTrend> {
    let first = today - TimeDelta::days(FIT_DAYS - 1);
    let mut days: Vec<(f64, f64)> = Vec::new();
    let mut window: Option<(NaiveDate, NaiveDate)> = None;
    for s in samples.iter().filter(|s| s.day >= first && s.day <= today) {
        // One point per day: a repeated day keeps its last value.
        if window.is_some_and(|(_, last)| last == s.day) {
            days.pop();
        }
        #[allow(clippy::cast_precision_loss)]
        days.push(((s.day - first).num_days() as f64, s.stored_bytes as f64));
        window = Some((window.map_or(s.day, |(f, _)| f), s.day));
    }
    let (first, last) = window?;
    if days.len() < 2 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = days.len() as f64;
    let mean_x = days.iter().map(|(x, _)| x).sum::<f64>() / n;
    let mean_y = days.iter().map(|(_, y)| y).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in &days {
        sxy += (x - mean_x) * (y - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    Some(StorageTrend {
        bytes_per_day: sxy / sxx,
        days: u32::try_from(days.len()).unwrap_or(u32::MAX),
        first,
        last,
    })
}

/// Why a limit is not reached within [`HORIZON_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReached {
    /// Storage neither grew nor shrank (less than a byte a day).
    Flat,
    Shrinking,
    /// It grows, but too slowly to reach the limit within a year.
    TooSlow,
}

/// When the bytes in storage reach a limit at the trend's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Fewer than two days of samples: nothing to fit.
    TooFewDays,
    /// Storage is at or above the limit already.
    Reached,
    /// The first day on which storage is at or above the limit.
    On(NaiveDate),
    NotWithinAYear(NotReached),
}

/// When `stored_bytes` (today's) reaches `limit` growing by `trend` from `today` on.
#[must_use]
pub fn project(
    trend: Option<&StorageTrend>,
    stored_bytes: u64,
    limit: u64,
    today: NaiveDate,
) -> Projection {
    if stored_bytes >= limit {
        return Projection::Reached;
    }
    let Some(trend) = trend else {
        return Projection::TooFewDays;
    };
    let rate = trend.bytes_per_day;
    if rate.abs() < FLAT_BYTES_PER_DAY {
        return Projection::NotWithinAYear(NotReached::Flat);
    }
    if rate < 0.0 {
        return Projection::NotWithinAYear(NotReached::Shrinking);
    }
    #[allow(clippy::cast_precision_loss)]
    let days = ((limit - stored_bytes) as f64 / rate).ceil();
    #[allow(clippy::cast_precision_loss)]
    if days > HORIZON_DAYS as f64 {
        return Projection::NotWithinAYear(NotReached::TooSlow);
    }
    #[allow(clippy::cast_possible_truncation)]
    let days = days as i64;
    Projection::On(today + TimeDelta::days(days))
}

/// How a backup run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunOutcome {
    /// A snapshot of everything under the source.
    Succeeded,
    /// A snapshot, but some entries could not be read (a `partial` snapshot).
    Warnings,
    /// No snapshot: the run failed (or was refused, or interrupted).
    Failed,
    /// No snapshot: cancelled, queued or running.
    Cancelled,
}

impl RunOutcome {
    pub const ALL: [Self; 4] = [
        Self::Succeeded,
        Self::Warnings,
        Self::Failed,
        Self::Cancelled,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Warnings => "warnings",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Backup runs of one UTC day by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayOfRuns {
    pub day: NaiveDate,
    pub succeeded: u64,
    pub warnings: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl DayOfRuns {
    #[must_use]
    pub const fn empty(day: NaiveDate) -> Self {
        Self {
            day,
            succeeded: 0,
            warnings: 0,
            failed: 0,
            cancelled: 0,
        }
    }

    #[must_use]
    pub const fn total(&self) -> u64 {
        self.succeeded + self.warnings + self.failed + self.cancelled
    }

    fn add(&mut self, outcome: RunOutcome, n: u64) {
        let slot = match outcome {
            RunOutcome::Succeeded => &mut self.succeeded,
            RunOutcome::Warnings => &mut self.warnings,
            RunOutcome::Failed => &mut self.failed,
            RunOutcome::Cancelled => &mut self.cancelled,
        };
        *slot = slot.saturating_add(n);
    }
}

/// Every day of `first..=last`, oldest first, with the counts of `counts` (by day and
/// outcome, in any order; days outside the range are left out). Days without a run are
/// present with zeros, so a chart has one bar per day.
#[must_use]
pub fn runs_per_day(
    counts: &[(NaiveDate, RunOutcome, u64)],
    first: NaiveDate,
    last: NaiveDate,
) -> Vec<DayOfRuns> {
    let mut days: Vec<DayOfRuns> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(DayOfRuns::empty)
        .collect();
    for (day, outcome, n) in counts {
        if let Some(i) = usize::try_from((*day - first).num_days())
            .ok()
            .filter(|_| *day <= last)
            && let Some(d) = days.get_mut(i)
        {
            d.add(*outcome, *n);
        }
    }
    days
}

/// One finished backup run of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRun {
    pub job_id: JobId,
    /// When it was asked for (scheduled or by hand).
    pub created_at: DateTime<Utc>,
    /// `None` for a run cancelled before it started.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    /// What the snapshot added to the repository (plaintext bytes of new chunks); `None`
    /// for a run that left no snapshot.
    pub bytes_added: Option<u64>,
}

impl BackupRun {
    /// The run a job record describes: `None` unless it is a finished backup job.
    #[must_use]
    pub fn of(job: &Job) -> Option<Self> {
        if job.kind() != JobKind::Backup {
            return None;
        }
        let backup = match &job.result {
            Some(JobResult::Backup {
                status,
                bytes_added,
                ..
            }) => Some((*status, *bytes_added)),
            _ => None,
        };
        let outcome = match job.state {
            JobState::Queued | JobState::Running => return None,
            JobState::Succeeded => match backup {
                Some((SnapshotStatus::Partial, _)) => RunOutcome::Warnings,
                _ => RunOutcome::Succeeded,
            },
            JobState::Failed => RunOutcome::Failed,
            JobState::Cancelled => RunOutcome::Cancelled,
        };
        Some(Self {
            job_id: job.id,
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            outcome,
            bytes_added: backup.map(|(_, added)| added),
        })
    }

    /// From start to finish, in milliseconds; `None` for a run that never started.
    #[must_use]
    pub fn duration_ms(&self) -> Option<u64> {
        let (start, end) = (self.started_at?, self.finished_at?);
        u64::try_from((end - start).num_milliseconds()).ok()
    }
}

/// The backup runs, read from the job records: finished backup jobs (succeeded, failed
/// or cancelled). The per-day counts include the runs of sources deleted since.
///
/// Contract:
/// - `count_per_day` counts the finished backup jobs created in `from..to` (half-open)
///   by the UTC day they were created and their [`RunOutcome`] (a succeeded job whose
///   snapshot is `partial` is `Warnings`); each (day, outcome) at most once, only
///   non-zero counts, in any order.
/// - `recent` returns the newest `limit` finished backup runs of `source`, newest first
///   (by creation time, then id).
/// - `success_streak` counts the finished runs of `source` newer than its newest run
///   that did not succeed without warnings (all of them when there is none).
#[async_trait]
pub trait BackupRuns: Send + Sync {
    async fn count_per_day(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(NaiveDate, RunOutcome, u64)>, RepoError>;
    async fn recent(&self, source: SourceId, limit: u64) -> Result<Vec<BackupRun>, RepoError>;
    async fn success_streak(&self, source: SourceId) -> Result<u64, RepoError>;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn day(d: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() + TimeDelta::days(d)
    }

    fn series(values: &[(i64, u64)]) -> Vec<StorageSample> {
        values
            .iter()
            .map(|(d, v)| StorageSample {
                day: day(*d),
                stored_bytes: *v,
            })
            .collect()
    }

    const TODAY: i64 = 40;

    #[test]
    fn the_trend_is_the_least_squares_slope_of_the_last_30_days() {
        // Exactly linear: 100 bytes a day.
        let linear: Vec<_> = (11..=TODAY)
            .map(|d| (d, 1_000 + 100 * d.unsigned_abs()))
            .collect();
        let t = storage_trend(&series(&linear), day(TODAY)).unwrap();
        assert!((t.bytes_per_day - 100.0).abs() < 1e-9, "{t:?}");
        assert_eq!((t.days, t.first, t.last), (30, day(11), day(TODAY)));

        // Days older than the window do not count: a jump 31 days ago is ignored.
        let mut old = vec![(10, 1_000_000)];
        old.extend((11..=TODAY).map(|d| (d, 5_000)));
        let t = storage_trend(&series(&old), day(TODAY)).unwrap();
        assert!(t.bytes_per_day.abs() < 1e-9, "{t:?}");
        assert_eq!(t.days, 30);

        // Noisy points: the fitted slope of (0,0) (1,10) (2,8) (3,30) is 8.8.
        let noisy = series(&[(37, 0), (38, 10), (39, 8), (40, 30)]);
        let t = storage_trend(&noisy, day(TODAY)).unwrap();
        assert!((t.bytes_per_day - 8.8).abs() < 1e-9, "{t:?}");

        // Gaps are fine: x is the day, not the index.
        let gaps = series(&[(20, 0), (40, 2_000)]);
        let t = storage_trend(&gaps, day(TODAY)).unwrap();
        assert!((t.bytes_per_day - 100.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn fewer_than_two_days_give_no_trend() {
        assert_eq!(storage_trend(&[], day(TODAY)), None);
        assert_eq!(storage_trend(&series(&[(40, 5)]), day(TODAY)), None);
        // The same day twice is still one day.
        assert_eq!(
            storage_trend(&series(&[(40, 5), (40, 9)]), day(TODAY)),
            None
        );
        // A sample outside the window does not make a second day; nor does the future.
        assert_eq!(
            storage_trend(&series(&[(1, 5), (40, 9), (41, 20)]), day(TODAY)),
            None
        );
    }

    fn trend(bytes_per_day: f64) -> StorageTrend {
        StorageTrend {
            bytes_per_day,
            days: 30,
            first: day(11),
            last: day(TODAY),
        }
    }

    #[test]
    fn the_projection_extends_todays_value_at_the_trends_rate() {
        let today = day(TODAY);
        // 1000 bytes to go at 100 a day: ten days from today.
        assert_eq!(
            project(Some(&trend(100.0)), 9_000, 10_000, today),
            Projection::On(day(TODAY + 10))
        );
        // A partial day counts as a whole one: the limit is reached on the 11th day.
        assert_eq!(
            project(Some(&trend(95.0)), 9_000, 10_000, today),
            Projection::On(day(TODAY + 11))
        );
        // Exactly a year is within a year; a day more is not.
        assert_eq!(
            project(Some(&trend(1.0)), 0, 365, today),
            Projection::On(today + TimeDelta::days(365))
        );
        assert_eq!(
            project(Some(&trend(1.0)), 0, 366, today),
            Projection::NotWithinAYear(NotReached::TooSlow)
        );
        assert_eq!(
            project(Some(&trend(0.0)), 9_000, 10_000, today),
            Projection::NotWithinAYear(NotReached::Flat)
        );
        assert_eq!(
            project(Some(&trend(0.4)), 9_000, 10_000, today),
            Projection::NotWithinAYear(NotReached::Flat)
        );
        assert_eq!(
            project(Some(&trend(-50.0)), 9_000, 10_000, today),
            Projection::NotWithinAYear(NotReached::Shrinking)
        );
        // At the limit already, whatever the trend; without one, say why.
        assert_eq!(
            project(Some(&trend(-50.0)), 10_000, 10_000, today),
            Projection::Reached
        );
        assert_eq!(project(None, 10_001, 10_000, today), Projection::Reached);
        assert_eq!(project(None, 9_000, 10_000, today), Projection::TooFewDays);
    }

    #[test]
    fn runs_per_day_has_every_day_once() {
        let counts = [
            (day(2), RunOutcome::Failed, 1),
            (day(0), RunOutcome::Succeeded, 3),
            (day(2), RunOutcome::Succeeded, 2),
            (day(2), RunOutcome::Warnings, 1),
            (day(1), RunOutcome::Cancelled, 4),
            // Outside the range: ignored.
            (day(-1), RunOutcome::Succeeded, 7),
            (day(3), RunOutcome::Succeeded, 7),
        ];
        let days = runs_per_day(&counts, day(0), day(2));
        assert_eq!(
            days,
            [
                DayOfRuns {
                    succeeded: 3,
                    ..DayOfRuns::empty(day(0))
                },
                DayOfRuns {
                    cancelled: 4,
                    ..DayOfRuns::empty(day(1))
                },
                DayOfRuns {
                    succeeded: 2,
                    warnings: 1,
                    failed: 1,
                    ..DayOfRuns::empty(day(2))
                },
            ]
        );
        assert_eq!(days[2].total(), 4);
        assert_eq!(runs_per_day(&[], day(0), day(29)).len(), 30);
        assert!(runs_per_day(&counts, day(2), day(1)).is_empty());
    }

    #[test]
    fn a_finished_backup_job_is_a_run() {
        use crate::jobs::JobParams;

        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mut job = Job::queued(
            JobId::from_uuid(uuid::Uuid::nil()),
            JobParams::Backup {
                source_id: SourceId::new(1),
                source_name: "docs".into(),
            },
            "alice",
            t,
        );
        assert_eq!(BackupRun::of(&job), None, "queued");
        job.state = JobState::Running;
        job.started_at = Some(t + TimeDelta::seconds(1));
        assert_eq!(BackupRun::of(&job), None, "running");

        job.state = JobState::Succeeded;
        job.finished_at = Some(t + TimeDelta::seconds(11));
        let result = |status| JobResult::Backup {
            snapshot_id: crate::SnapshotId::parse(&"ab".repeat(32)).unwrap(),
            status,
            files: 3,
            bytes: 300,
            bytes_added: 120,
            warnings: vec![],
        };
        job.result = Some(result(SnapshotStatus::Ok));
        let run = BackupRun::of(&job).unwrap();
        assert_eq!(run.outcome, RunOutcome::Succeeded);
        assert_eq!(
            (run.bytes_added, run.duration_ms()),
            (Some(120), Some(10_000))
        );
        job.result = Some(result(SnapshotStatus::Partial));
        assert_eq!(BackupRun::of(&job).unwrap().outcome, RunOutcome::Warnings);

        job.result = None;
        job.state = JobState::Failed;
        let run = BackupRun::of(&job).unwrap();
        assert_eq!((run.outcome, run.bytes_added), (RunOutcome::Failed, None));
        job.state = JobState::Cancelled;
        assert_eq!(BackupRun::of(&job).unwrap().outcome, RunOutcome::Cancelled);

        let prune = Job {
            state: JobState::Succeeded,
            ..Job::queued(job.id, JobParams::Prune, "scheduler", t)
        };
        assert_eq!(BackupRun::of(&prune), None);
    }

    #[test]
    fn a_run_lasts_from_start_to_finish() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let mut run = BackupRun {
            job_id: JobId::from_uuid(uuid::Uuid::nil()),
            created_at: t,
            started_at: Some(t + TimeDelta::seconds(2)),
            finished_at: Some(t + TimeDelta::milliseconds(92_900)),
            outcome: RunOutcome::Succeeded,
            bytes_added: Some(5),
        };
        assert_eq!(run.duration_ms(), Some(90_900));
        run.started_at = None;
        assert_eq!(run.duration_ms(), None);
    }
}
