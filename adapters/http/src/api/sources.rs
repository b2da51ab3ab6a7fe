use std::sync::Arc;

use chrono::{DateTime, Utc};
use coffer_application::{NewSource, RetentionReport, SourceChanges};
use coffer_domain::SourceId;
use coffer_domain::excludes::SourceFilter;
use coffer_domain::ports::{Retention, Source};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::ApiTags;
use super::auth::NoContent;
use super::dto::{NullableRef, Text, not_null};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// Which snapshots of a source to keep; 0 turns a rule off. A snapshot is kept when
/// `max_backups` or any `keep_*` rule selects it, and removed once older than
/// `max_age_days` whatever the rules say. Protected snapshots and the newest complete
/// snapshot of a source are always kept. The `keep_*` rules may be left out or `null`:
/// 0, off.
#[derive(Debug, Clone, Copy, Object)]
pub struct RetentionDto {
    /// Keep the newest N snapshots. 0: off.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000")))]
    pub max_backups: u32,
    /// Remove snapshots older than N days, a limit the keep rules do not lift. 0: off.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000")))]
    pub max_age_days: u32,
    /// Keep every snapshot of the last N days. 0 (default): off.
    #[oai(
        default,
        nullable,
        validator(minimum(value = "0"), maximum(value = "100000"))
    )]
    pub keep_within_days: u32,
    /// Keep the newest snapshot of each of the last N days that have one. 0: off.
    #[oai(
        default,
        nullable,
        validator(minimum(value = "0"), maximum(value = "100000"))
    )]
    pub keep_daily: u32,
    /// ... of each of the last N ISO weeks. 0: off.
    #[oai(
        default,
        nullable,
        validator(minimum(value = "0"), maximum(value = "100000"))
    )]
    pub keep_weekly: u32,
    /// ... of each of the last N months. 0: off.
    #[oai(
        default,
        nullable,
        validator(minimum(value = "0"), maximum(value = "100000"))
    )]
    pub keep_monthly: u32,
    /// ... of each of the last N years. 0: off.
    #[oai(
        default,
        nullable,
        validator(minimum(value = "0"), maximum(value = "100000"))
    )]
    pub keep_yearly: u32,
}

impl From<Retention> for RetentionDto {
    fn from(r: Retention) -> Self {
        Self {
            max_backups: r.max_backups,
            max_age_days: r.max_age_days,
            keep_within_days: r.keep_within_days,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }
    }
}

impl From<RetentionDto> for Retention {
    fn from(r: RetentionDto) -> Self {
        Self {
            max_backups: r.max_backups,
            max_age_days: r.max_age_days,
            keep_within_days: r.keep_within_days,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
        }
    }
}

/// A directory on the server that Coffer backs up. `retention`, when present, overrides
/// the configured retention for this source.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SourceDto {
    pub id: i64,
    pub name: String,
    /// Absolute path on the server, symlinks resolved.
    pub path: String,
    /// Five-field cron expression (UTC), when backed up on a schedule.
    pub schedule: Option<String>,
    // No doc comment: on a field whose type is a schema of its own, poem-openapi writes
    // it as `allOf: [$ref, {description}]`, which generators turn into a copy of the type.
    pub retention: Option<RetentionDto>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether the schedule runs (`false`: paused; the schedule is kept).
    pub enabled: bool,
    /// When the scheduler last started a backup of this source.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When the scheduler will next start one (absent without a schedule, while paused,
    /// or until the scheduler has planned it, within a minute).
    pub next_run_at: Option<DateTime<Utc>>,
    /// Gitignore patterns of what backups leave out, matched against paths relative to
    /// the source directory (`*.tmp`, `/build/`, `**/node_modules`, `!keep.tmp`).
    pub exclude: Vec<String>,
    /// Directories holding a `CACHEDIR.TAG` with the standard signature are left out.
    pub exclude_caches: bool,
    /// Backups stay on the source's file system: other mounts below it are left out.
    pub one_file_system: bool,
    /// Regular files larger than this many bytes are left out (absent: no limit).
    pub exclude_larger_than: Option<u64>,
}

impl From<Source> for SourceDto {
    fn from(s: Source) -> Self {
        let next_run_at = s.shown_next_run();
        Self {
            id: s.id.get(),
            name: s.name,
            path: s.path,
            schedule: s.schedule.map(|schedule| schedule.as_str().to_owned()),
            retention: s.retention.map(Into::into),
            created_at: s.created_at,
            updated_at: s.updated_at,
            enabled: s.enabled,
            last_run_at: s.last_run_at,
            next_run_at,
            exclude: s.filter.exclude,
            exclude_caches: s.filter.exclude_caches,
            one_file_system: s.filter.one_file_system,
            exclude_larger_than: s.filter.exclude_larger_than,
        }
    }
}

#[derive(Debug, Object)]
pub struct CreateSourceRequest {
    /// 1–200 characters, no control characters; unique.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Text,
    /// An absolute path to a directory the server can read.
    #[oai(validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub path: Text,
    /// Five-field cron expression in UTC, for example `0 3 * * *` (03:00 every day).
    /// Absent, `null` or empty: no schedule.
    #[oai(nullable, validator(max_length = 200))]
    pub schedule: Option<Text>,
    /// Absent or `null`: the configured retention applies.
    pub retention: NullableRef<RetentionDto>,
    /// Gitignore patterns of what backups leave out (see `Source.exclude`); 422
    /// `invalid_exclude` names a pattern that is not valid. Absent or `null`: none.
    #[oai(default, nullable, validator(max_items = 1000))]
    pub exclude: Vec<Text>,
    /// Leave out directories holding a `CACHEDIR.TAG`. Absent or `null`: `false`.
    #[oai(default, nullable)]
    pub exclude_caches: bool,
    /// Stay on the source's file system. Absent or `null`: `false`.
    #[oai(default, nullable)]
    pub one_file_system: bool,
    /// Leave out regular files larger than this many bytes (at most 2^53 - 1, the
    /// largest integer every JSON client reads exactly). Absent or `null`: no limit.
    #[oai(
        nullable,
        validator(minimum(value = "1"), maximum(value = "9007199254740991"))
    )]
    pub exclude_larger_than: Option<u64>,
}

/// Fields to change; absent fields stay as they are, `null` clears `schedule` or
/// `retention` (`name` and `path` cannot be cleared).
#[derive(Debug, Object)]
pub struct UpdateSourceRequest {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: MaybeUndefined<Text>,
    /// An absolute path to a directory the server can read.
    #[oai(validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub path: MaybeUndefined<Text>,
    #[oai(nullable, validator(max_length = 200))]
    pub schedule: MaybeUndefined<Text>,
    pub retention: NullableRef<RetentionDto>,
    /// `false` pauses the schedule (kept as it is), `true` resumes it from the next
    /// occurrence; runs missed while paused are not made up.
    pub enabled: MaybeUndefined<bool>,
    /// Replaces the exclude patterns (`[]`: none).
    #[oai(validator(max_items = 1000))]
    pub exclude: MaybeUndefined<Vec<Text>>,
    pub exclude_caches: MaybeUndefined<bool>,
    pub one_file_system: MaybeUndefined<bool>,
    /// `null` removes the size limit.
    #[oai(
        nullable,
        validator(minimum(value = "1"), maximum(value = "9007199254740991"))
    )]
    pub exclude_larger_than: MaybeUndefined<u64>,
}

/// Rules to try on a directory before saving them on a source.
#[derive(Debug, Object)]
pub struct ExcludePreviewRequest {
    /// An absolute path to a directory the server can read (the source's path).
    #[oai(validator(min_length = 1, max_length = 4096, pattern = "^/"))]
    pub path: Text,
    #[oai(default, nullable, validator(max_items = 1000))]
    pub exclude: Vec<Text>,
    #[oai(default, nullable)]
    pub exclude_caches: bool,
    #[oai(default, nullable)]
    pub one_file_system: bool,
    #[oai(
        nullable,
        validator(minimum(value = "1"), maximum(value = "9007199254740991"))
    )]
    pub exclude_larger_than: Option<u64>,
}

/// One path the rules leave out.
#[derive(Debug, Object)]
pub struct ExcludedPathDto {
    /// Relative to the directory previewed.
    pub path: String,
    /// Why: `pattern`, `cache`, `other_file_system` or `too_large`.
    pub reason: String,
}

/// What the rules would leave out of the directory as it is now.
#[derive(Debug, Object)]
pub struct ExcludePreviewDto {
    /// Entries left out; a directory counts once (what it holds is not looked at).
    pub skipped: u64,
    /// The first of them (at most 50): a directory's entries by name, then those below
    /// its subdirectories.
    pub sample: Vec<ExcludedPathDto>,
    /// Entries looked at.
    pub examined: u64,
    /// `false` when the walk stopped at its limit (50,000 entries): `skipped` is then a
    /// lower bound.
    pub complete: bool,
}

fn filter(
    exclude: Vec<Text>,
    exclude_caches: bool,
    one_file_system: bool,
    exclude_larger_than: Option<u64>,
) -> SourceFilter {
    SourceFilter {
        exclude: exclude.into_iter().map(Into::into).collect(),
        exclude_caches,
        one_file_system,
        exclude_larger_than,
    }
}

/// `Some(None)` clears a field, `None` leaves it.
#[allow(clippy::option_option)]
fn change<T, U: From<T>>(v: MaybeUndefined<T>) -> Option<Option<U>> {
    match v {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v.into())),
    }
}

#[derive(ApiResponse)]
pub enum SourceCreated {
    /// Created.
    #[oai(status = 201)]
    Source(Json<SourceDto>),
}

/// Rules to try on a source's snapshots.
#[derive(Debug, Object)]
pub struct SimulateRetentionRequest {
    /// The source's id or name.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub source: String,
    /// Absent or `null`: the configured defaults.
    pub retention: NullableRef<RetentionDto>,
}

/// A schedule in words.
#[derive(Debug, Object)]
pub struct SchedulePreviewDto {
    /// The expression, trimmed.
    pub cron: String,
    /// For example "at 03:30, on Monday to Friday (UTC)".
    pub description: String,
    /// The next five runs.
    pub next_runs: Vec<DateTime<Utc>>,
}

/// The decision for one snapshot.
#[derive(Debug, Object)]
pub struct RetentionVerdictDto {
    /// The snapshot id.
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub keep: bool,
    /// Every reason behind the decision ("last 10", "daily 2026-11-20", "protected",
    /// "older than 30 days", "no rule keeps it", ...).
    pub reasons: Vec<String>,
}

/// What retention keeps and removes for one source (`policy`: the rules in force — the
/// source's override or the configured defaults).
#[derive(Debug, Object)]
pub struct RetentionReportDto {
    pub source_id: i64,
    pub source_name: String,
    pub policy: RetentionDto,
    /// The removals were carried out (`false` for a preview).
    pub applied: bool,
    pub kept: u64,
    pub removed: u64,
    /// Every snapshot of the source, newest first.
    pub items: Vec<RetentionVerdictDto>,
}

impl From<RetentionReport> for RetentionReportDto {
    fn from(r: RetentionReport) -> Self {
        let kept = r.verdicts.iter().filter(|v| v.keep).count() as u64;
        Self {
            source_id: r.source.id.get(),
            source_name: r.source.name,
            policy: r.policy.into(),
            applied: r.applied,
            kept,
            removed: r.verdicts.len() as u64 - kept,
            items: r
                .verdicts
                .into_iter()
                .map(|v| RetentionVerdictDto {
                    id: v.id.to_string(),
                    created_at: v.created_at,
                    keep: v.keep,
                    reasons: v.reasons,
                })
                .collect(),
        }
    }
}

pub struct SourcesApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Sources")]
impl SourcesApi {
    /// List sources.
    ///
    /// Every configured source, by name.
    ///
    /// Permission: `view`.
    #[oai(path = "/sources", method = "get", operation_id = "listSources")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
    ) -> Result<Json<Vec<SourceDto>>, ApiError> {
        let sources = state.sources.list(auth.actor()).await?;
        Ok(Json(sources.into_iter().map(Into::into).collect()))
    }

    /// Add a source.
    ///
    /// The path must be an absolute directory the server can read; it is stored with
    /// symlinks resolved. 409 `name_taken` when the name is in use.
    ///
    /// Permission: `manage_system`.
    #[oai(path = "/sources", method = "post", operation_id = "createSource")]
    async fn create(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<CreateSourceRequest>,
    ) -> Result<SourceCreated, ApiError> {
        let b = body.0;
        let source = state
            .sources
            .create(
                auth.actor(),
                NewSource {
                    name: b.name.into(),
                    path: b.path.into(),
                    schedule: b.schedule.map(Into::into),
                    retention: b.retention.0.take().map(Into::into),
                    filter: filter(
                        b.exclude,
                        b.exclude_caches,
                        b.one_file_system,
                        b.exclude_larger_than,
                    ),
                },
            )
            .await?;
        Ok(SourceCreated::Source(Json(source.into())))
    }

    /// Get a source.
    ///
    /// Permission: `view`.
    #[oai(path = "/sources/:id", method = "get", operation_id = "getSource")]
    async fn get(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
    ) -> Result<Json<SourceDto>, ApiError> {
        let source = state.sources.get(auth.actor(), SourceId::new(id.0)).await?;
        Ok(Json(source.into()))
    }

    /// Change a source.
    ///
    /// Permission: `manage_system`.
    #[oai(path = "/sources/:id", method = "patch", operation_id = "updateSource")]
    async fn update(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
        body: Json<UpdateSourceRequest>,
    ) -> Result<Json<SourceDto>, ApiError> {
        let b = body.0;
        let changes = SourceChanges {
            name: not_null("name", b.name)?.map(Into::into),
            path: not_null("path", b.path)?.map(Into::into),
            schedule: change(b.schedule),
            retention: change(b.retention.0),
            enabled: not_null("enabled", b.enabled)?,
            exclude: not_null("exclude", b.exclude)?
                .map(|patterns| patterns.into_iter().map(Into::into).collect()),
            exclude_caches: not_null("exclude_caches", b.exclude_caches)?,
            one_file_system: not_null("one_file_system", b.one_file_system)?,
            exclude_larger_than: change(b.exclude_larger_than),
        };
        let source = state
            .sources
            .update(auth.actor(), SourceId::new(id.0), changes)
            .await?;
        Ok(Json(source.into()))
    }

    /// Remove a source.
    ///
    /// Its snapshots stay (listed with their source name). 409 `job_running` while a
    /// backup of it is queued or running.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/sources/:id",
        method = "delete",
        operation_id = "deleteSource"
    )]
    async fn delete(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        id: Path<i64>,
    ) -> Result<NoContent, ApiError> {
        state
            .sources
            .delete(auth.actor(), SourceId::new(id.0))
            .await?;
        Ok(NoContent::Done)
    }

    /// Preview what exclusions leave out.
    ///
    /// Walks the directory `path` with the proposed rules (as a backup would: no symlink
    /// followed, excluded directories not entered) and returns how many entries they
    /// leave out with the first 50 of them; at most 50,000 entries are looked at. 422
    /// `invalid_exclude` names a pattern that is not valid gitignore syntax, 422
    /// `invalid_path` a directory that cannot be read. Nothing is stored.
    ///
    /// Permission: `manage_system` (it names files on the server).
    #[oai(
        path = "/exclude/preview",
        method = "post",
        operation_id = "previewExcludes"
    )]
    #[allow(clippy::unused_async)] // poem-openapi handlers are async
    async fn exclude_preview(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<ExcludePreviewRequest>,
    ) -> Result<Json<ExcludePreviewDto>, ApiError> {
        let b = body.0;
        let rules = filter(
            b.exclude,
            b.exclude_caches,
            b.one_file_system,
            b.exclude_larger_than,
        );
        let p = state
            .sources
            .exclude_preview(auth.actor(), &b.path, rules)?;
        Ok(Json(ExcludePreviewDto {
            skipped: p.skipped,
            sample: p
                .sample
                .into_iter()
                .map(|(path, why)| ExcludedPathDto {
                    path,
                    reason: why.as_str().to_owned(),
                })
                .collect(),
            examined: p.examined,
            complete: p.complete,
        }))
    }

    /// Preview retention for a source.
    ///
    /// Every snapshot of the source (`source`: its id or name), newest first, with keep or
    /// remove and every reason; nothing is changed.
    ///
    /// Permission: `view`.
    #[oai(
        path = "/retention/preview",
        method = "get",
        operation_id = "previewRetention"
    )]
    async fn retention_preview(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(min_length = 1, max_length = 200))] source: Query<String>,
    ) -> Result<Json<RetentionReportDto>, ApiError> {
        let found = state.sources.find(auth.actor(), &source.0).await?;
        let report = state.retention.preview(auth.actor(), found.id).await?;
        Ok(Json(report.into()))
    }

    /// Try retention rules on a source.
    ///
    /// What `retention` (absent or `null`: the configured defaults) would keep and
    /// remove among the source's snapshots (`source`: its id or name), with every
    /// reason. Nothing is changed or stored: for trying rules before saving them.
    ///
    /// Permission: `view`.
    #[oai(
        path = "/retention/preview",
        method = "post",
        operation_id = "simulateRetention"
    )]
    async fn retention_simulate(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        body: Json<SimulateRetentionRequest>,
    ) -> Result<Json<RetentionReportDto>, ApiError> {
        let body = body.0;
        let found = state.sources.find(auth.actor(), &body.source).await?;
        let rules = match body.retention.0 {
            MaybeUndefined::Value(r) => Some(r.into()),
            MaybeUndefined::Null | MaybeUndefined::Undefined => None,
        };
        let report = state
            .retention
            .simulate(auth.actor(), found.id, rules)
            .await?;
        Ok(Json(report.into()))
    }

    /// A cron expression in words.
    ///
    /// Checks a five-field cron expression (UTC) and describes it ("at 03:30, every day
    /// (UTC)") with its next five runs; 422 `invalid_schedule` says what is wrong.
    /// Nothing is stored.
    ///
    /// Permission: `view`.
    #[oai(
        path = "/schedule/preview",
        method = "get",
        operation_id = "previewSchedule"
    )]
    #[allow(clippy::unused_async)] // poem-openapi handlers are async
    async fn schedule_preview(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(min_length = 1, max_length = 200))] cron: Query<String>,
    ) -> Result<Json<SchedulePreviewDto>, ApiError> {
        let p = state.sources.schedule_preview(auth.actor(), &cron.0)?;
        Ok(Json(SchedulePreviewDto {
            cron: p.cron,
            description: p.description,
            next_runs: p.next_runs,
        }))
    }

    /// Apply retention to a source now.
    ///
    /// Removes the snapshots its rules do not keep (as `previewRetention` shows them),
    /// from the catalog and the repository; each removal is audited with its reasons.
    /// The space their data used is reclaimed by garbage collection. Retention also runs
    /// by itself after each successful backup when `retention.enabled` is set.
    ///
    /// Permission: `manage_system`.
    #[oai(
        path = "/retention/apply",
        method = "post",
        operation_id = "applyRetention"
    )]
    async fn retention_apply(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        #[oai(validator(min_length = 1, max_length = 200))] source: Query<String>,
    ) -> Result<Json<RetentionReportDto>, ApiError> {
        auth.actor()
            .require(coffer_domain::auth::Permission::ManageSystem)?;
        let found = state.sources.find(auth.actor(), &source.0).await?;
        let report = state.retention.apply(auth.actor(), found.id).await?;
        Ok(Json(report.into()))
    }
}
