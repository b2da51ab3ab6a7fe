//! The dashboard's charts: `GET /api/dashboard/charts` (storage over time with the
//! quota and a projection, backups per day by outcome) and `GET /api/sources/{id}/runs`
//! (a source's recent runs and its success streak).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use coffer_application::{Charts, SourceRuns};
use coffer_domain::SourceId;
use coffer_domain::charts::{
    BackupRun, DayOfRuns, FIT_DAYS, HORIZON_DAYS, NotReached, Projection, RunOutcome, StorageTrend,
};
use coffer_domain::reports::StorageSample;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};

use super::ApiTags;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// The bytes in storage at the end of one UTC day.
#[derive(Debug, Object)]
pub struct StorageDayDto {
    pub day: NaiveDate,
    pub stored_bytes: u64,
}

impl From<StorageSample> for StorageDayDto {
    fn from(s: StorageSample) -> Self {
        Self {
            day: s.day,
            stored_bytes: s.stored_bytes,
        }
    }
}

/// The growth of storage: a least-squares line through the daily samples of the last
/// 30 days.
#[derive(Debug, Object)]
pub struct StorageTrendDto {
    /// The slope of the line (negative while storage shrinks), rounded to a byte.
    pub bytes_per_day: i64,
    /// Days fitted (at most 30).
    pub days: u32,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl From<StorageTrend> for StorageTrendDto {
    fn from(t: StorageTrend) -> Self {
        #[allow(clippy::cast_possible_truncation)]
        Self {
            bytes_per_day: t.bytes_per_day.round() as i64,
            days: t.days,
            from: t.first,
            to: t.last,
        }
    }
}

/// What a projection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ProjectionStateDto {
    /// The limit is reached on `date`.
    On,
    /// Storage is at or above the limit already.
    Reached,
    /// Not within 365 days: see `reason`.
    NotWithinAYear,
    /// Fewer than two days of samples in the last 30: nothing to fit.
    TooFewDays,
}

/// Why a limit is not reached within a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum NotReachedDto {
    /// Storage neither grows nor shrinks.
    Flat,
    Shrinking,
    /// It grows, too slowly to reach the limit within a year.
    TooSlow,
}

/// When storage reaches a limit if it keeps growing at the trend's rate (a linear fit
/// of the last 30 days, extended from today's value; nothing beyond 365 days). `reason`
/// (`not_within_a_year` only): flat, shrinking, or growing too slowly.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ProjectionDto {
    pub state: ProjectionStateDto,
    /// `on`: the first day storage is at or above the limit.
    pub date: Option<NaiveDate>,
    // `reason` is described on the struct: a doc comment on a field whose type is a
    // schema of its own becomes `allOf: [$ref, {description}]`, which generators refuse.
    pub reason: Option<NotReachedDto>,
    /// The days the fit looks back (30).
    pub fit_days: u32,
    /// The days a projection looks ahead (365).
    pub horizon_days: u32,
}

impl From<Projection> for ProjectionDto {
    fn from(p: Projection) -> Self {
        let (state, date, reason) = match p {
            Projection::On(day) => (ProjectionStateDto::On, Some(day), None),
            Projection::Reached => (ProjectionStateDto::Reached, None, None),
            Projection::TooFewDays => (ProjectionStateDto::TooFewDays, None, None),
            Projection::NotWithinAYear(why) => (
                ProjectionStateDto::NotWithinAYear,
                None,
                Some(match why {
                    NotReached::Flat => NotReachedDto::Flat,
                    NotReached::Shrinking => NotReachedDto::Shrinking,
                    NotReached::TooSlow => NotReachedDto::TooSlow,
                }),
            ),
        };
        Self {
            state,
            date,
            reason,
            fit_days: u32::try_from(FIT_DAYS).unwrap_or(u32::MAX),
            horizon_days: u32::try_from(HORIZON_DAYS).unwrap_or(u32::MAX),
        }
    }
}

/// The bytes in storage over the last 90 days, the quota, and when the quota is reached
/// or the disk fills. `trend`: absent with fewer than two days of samples in the last
/// 30. `quota_projection`: when the quota is reached; absent without a quota.
/// `disk_projection`: when the disk fills, as if the repository alone grew on it (its
/// free space is used up); absent without a reading of the disk.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct StorageChartDto {
    /// One entry a day, oldest first, for each of the last 90 days (UTC) that anything
    /// is known of: a day without a change has the value of the day before.
    pub days: Vec<StorageDayDto>,
    /// Bytes in storage now.
    pub stored_bytes: u64,
    /// The quota (`quota.max_storage_mb`) in bytes; absent without one.
    pub quota_bytes: Option<u64>,
    /// The quota's warning threshold in bytes; absent without one.
    pub warning_bytes: Option<u64>,
    /// The size of the repository's volume; absent when it cannot be read (or the
    /// repository is in object storage).
    pub disk_total_bytes: Option<u64>,
    /// Its free space now.
    pub disk_free_bytes: Option<u64>,
    // `trend`, `quota_projection` and `disk_projection` are described on the struct (a
    // doc comment on a field of a schema type becomes an `allOf` generators refuse).
    pub trend: Option<StorageTrendDto>,
    pub quota_projection: Option<ProjectionDto>,
    pub disk_projection: Option<ProjectionDto>,
}

/// Finished backup runs of one UTC day (the day each was asked for), by outcome.
#[derive(Debug, Object)]
pub struct BackupDayDto {
    pub day: NaiveDate,
    /// A snapshot of everything.
    pub succeeded: u64,
    /// A snapshot with warnings (some entries could not be read: `partial`).
    pub warnings: u64,
    /// No snapshot: failed, refused or interrupted.
    pub failed: u64,
    /// No snapshot: cancelled.
    pub cancelled: u64,
    pub total: u64,
}

impl From<DayOfRuns> for BackupDayDto {
    fn from(d: DayOfRuns) -> Self {
        Self {
            day: d.day,
            succeeded: d.succeeded,
            warnings: d.warnings,
            failed: d.failed,
            cancelled: d.cancelled,
            total: d.total(),
        }
    }
}

/// What the overview's charts draw.
#[derive(Debug, Object)]
pub struct ChartsDto {
    pub generated_at: DateTime<Utc>,
    pub storage: StorageChartDto,
    /// Every day of the last 30 (UTC, today included), oldest first; days without a run
    /// have zeros.
    pub backups_per_day: Vec<BackupDayDto>,
}

impl From<Charts> for ChartsDto {
    fn from(c: Charts) -> Self {
        let s = c.storage;
        Self {
            generated_at: c.generated_at,
            storage: StorageChartDto {
                days: s.days.into_iter().map(Into::into).collect(),
                stored_bytes: s.stored_bytes,
                quota_bytes: s.quota.max_bytes,
                warning_bytes: s.quota.warning_bytes,
                disk_total_bytes: s.disk.as_ref().map(|d| d.total_bytes),
                disk_free_bytes: s.disk.as_ref().map(|d| d.available_bytes),
                trend: s.trend.map(Into::into),
                quota_projection: s.quota_projection.map(Into::into),
                disk_projection: s.disk_projection.map(Into::into),
            },
            backups_per_day: c.runs_per_day.into_iter().map(Into::into).collect(),
        }
    }
}

/// How a backup run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum RunOutcomeDto {
    Succeeded,
    /// Succeeded with warnings: a `partial` snapshot.
    Warnings,
    Failed,
    Cancelled,
}

impl From<RunOutcome> for RunOutcomeDto {
    fn from(o: RunOutcome) -> Self {
        match o {
            RunOutcome::Succeeded => Self::Succeeded,
            RunOutcome::Warnings => Self::Warnings,
            RunOutcome::Failed => Self::Failed,
            RunOutcome::Cancelled => Self::Cancelled,
        }
    }
}

/// One finished backup run.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct BackupRunDto {
    /// The job (`GET /api/jobs/{id}`).
    pub job_id: String,
    pub outcome: RunOutcomeDto,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Absent for a run cancelled before it started.
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From start to finish, in milliseconds; absent for a run that never started.
    pub duration_ms: Option<u64>,
    /// What the snapshot added to the repository (plaintext bytes of new chunks);
    /// absent for a run that left no snapshot.
    pub bytes_added: Option<u64>,
}

impl From<BackupRun> for BackupRunDto {
    fn from(r: BackupRun) -> Self {
        Self {
            job_id: r.job_id.to_string(),
            outcome: r.outcome.into(),
            duration_ms: r.duration_ms(),
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            bytes_added: r.bytes_added,
        }
    }
}

/// A source's recent runs.
#[derive(Debug, Object)]
pub struct SourceRunsDto {
    pub source_id: i64,
    pub name: String,
    /// Runs in a row, from the newest back, that succeeded without warnings (counted
    /// over every run, not only those listed).
    pub success_streak: u64,
    /// The newest 30 finished runs, oldest first.
    pub runs: Vec<BackupRunDto>,
}

impl From<SourceRuns> for SourceRunsDto {
    fn from(s: SourceRuns) -> Self {
        Self {
            source_id: s.source_id.get(),
            name: s.name,
            success_streak: s.success_streak,
            runs: s.runs.into_iter().map(Into::into).collect(),
        }
    }
}

pub struct ChartsApi;

#[OpenApi(prefix_path = "/api")]
impl ChartsApi {
    /// Get the dashboard's charts.
    ///
    /// The bytes in storage for each of the last 90 days with the quota, the disk's
    /// size and a projection of the day the quota is reached or the disk fills (a
    /// linear fit of the last 30 days, "not within a year" beyond 365 days); and the
    /// finished backup runs of each of the last 30 days by outcome.
    ///
    /// Permission: `view`.
    #[oai(
        path = "/dashboard/charts",
        method = "get",
        operation_id = "getDashboardCharts",
        tag = "ApiTags::System"
    )]
    async fn charts(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<ChartsDto>, ApiError> {
        let charts = state.dashboard.charts(auth.actor()).await?;
        Ok(Json(charts.into()))
    }

    /// List a source's recent runs.
    ///
    /// Its newest 30 finished backup runs (duration, bytes added, outcome), oldest
    /// first, and how many runs in a row succeeded without warnings.
    ///
    /// Permission: `view`.
    #[oai(
        path = "/sources/:id/runs",
        method = "get",
        operation_id = "listSourceRuns",
        tag = "ApiTags::Sources"
    )]
    async fn source_runs(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
    ) -> Result<Json<SourceRunsDto>, ApiError> {
        let runs = state
            .dashboard
            .source_runs(auth.actor(), SourceId::new(id.0))
            .await?;
        Ok(Json(runs.into()))
    }
}
