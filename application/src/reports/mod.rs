//! Reports: the backup history and the audit trail as CSV, and the PDF report
//! (permission `export`, admin only). Every export is audited (action `export`, resource
//! `report:csv`, `report:audit.csv` or `report:pdf`, the filters in the detail) before a
//! byte of it is written.
//!
//! Periods are half-open, like every time filter of Coffer: `from` inclusive, `to`
//! exclusive; `from` must be earlier than `to`. Defaults: the CSVs cover all time; the
//! PDF the 30 days before `to` (which defaults to now).
//!
//! The CSVs stream: rows are read from the catalog (or the trail) a page at a time by
//! keyset and written out page by page, so memory stays flat with 100,000+ snapshots.
//! The PDF reads the period the same way, keeping only figures and the newest
//! [`PDF_HISTORY_ROWS`] rows. Its backup figures count attempts, not only snapshots: a
//! backup that failed, was cancelled or was refused at the start leaves no snapshot, only
//! an unsuccessful `backup_create` row in the audit trail, which is where they are
//! counted from (by action and time, both indexed). Drawing the PDF is CPU work: the
//! caller runs [`ReportService::render_pdf`] where blocking is allowed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use coffer_domain::audit::{AuditAction, AuditEntry, AuditFilter, AuditRecord};
use coffer_domain::auth::{Actor, Permission};
use coffer_domain::ports::{
    AuditRepository, BackupCatalog, BackupFilter, CatalogEntry, Clock, RepoError, Source,
    SourceRepository,
};
use coffer_domain::reports::{
    ActionCount, AuditSummary, DailyBackups, FAILED, PDF_HISTORY_ROWS, PDF_RECENT_AUDIT_ROWS,
    ReportData, ReportPeriod, ReportRenderer, StorageHistory, fill_days,
};

use crate::audit::AuditLog;
use crate::error::{CodedError, CommonError, ErrorClass};
use crate::storage::StorageFigures;

/// Errors of the exports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Common(#[from] CommonError),
    /// `invalid_period`: `from` is not before `to`.
    #[error("{0}")]
    InvalidPeriod(String),
}

impl CodedError for ReportError {
    fn code(&self) -> &'static str {
        match self {
            Self::Common(e) => e.code(),
            Self::InvalidPeriod(_) => "invalid_period",
        }
    }

    fn class(&self) -> ErrorClass<'_> {
        match self {
            Self::Common(e) => CodedError::class(e),
            Self::InvalidPeriod(_) => ErrorClass::Business,
        }
    }
}

crate::error::common_conversions!(ReportError);

/// Rows read and written per page of a CSV.
const CSV_PAGE: u64 = 1_000;
/// Audit rows read per page.
const AUDIT_PAGE: u32 = 500;
/// The PDF's period when none is given.
pub const PDF_DEFAULT_DAYS: i64 = 30;
/// The most bars the daily chart draws; longer periods group days.
const MAX_BARS: i64 = 92;

/// Which snapshots a backup report covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReportFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// A source, by id or name.
    pub source: Option<String>,
}

/// Which audit rows the audit CSV covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReportFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub username: Option<String>,
    pub action: Option<String>,
    /// Only successful (`true`) or failed (`false`) events.
    pub success: Option<bool>,
}

/// Where a CSV goes, a page at a time (an HTTP response body, a file).
#[async_trait]
pub trait ReportSink: Send {
    async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()>;
}

/// What a CSV export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
}

/// An authorised, audited backup CSV export, ready to be written.
#[derive(Debug, Clone)]
pub struct BackupsCsv {
    filter: BackupFilter,
    /// When it was asked for (for the file name).
    pub at: DateTime<Utc>,
}

/// An authorised, audited audit CSV export, ready to be written.
#[derive(Debug, Clone)]
pub struct AuditCsv {
    filter: AuditFilter,
    pub at: DateTime<Utc>,
}

/// An authorised, audited PDF report with its figures gathered, ready to be drawn with
/// [`ReportService::render_pdf`].
#[derive(Debug, Clone)]
pub struct PdfReport {
    data: ReportData,
    /// When it was asked for (for the file name).
    pub at: DateTime<Utc>,
}

pub struct ReportService {
    catalog: Arc<dyn BackupCatalog>,
    sources: Arc<dyn SourceRepository>,
    trail: Arc<dyn AuditRepository>,
    storage: Arc<dyn StorageFigures>,
    history: Arc<dyn StorageHistory>,
    renderer: Arc<dyn ReportRenderer>,
    clock: Arc<dyn Clock>,
    audit: AuditLog,
}

/// Writes a CSV page by page: the header, then each page `next` fetches (given the last
/// row written, for keyset paging) rendered by `rows`, until a page comes back short.
async fn write_pages<T, Fut>(
    sink: &mut dyn ReportSink,
    header: impl FnOnce(&mut Vec<u8>) -> Result<(), coffer_domain::reports::RenderError>,
    rows: impl Fn(&mut Vec<u8>, &[T]) -> Result<(), coffer_domain::reports::RenderError>,
    page_size: u64,
    mut next: impl FnMut(Option<&T>) -> Fut,
) -> Result<Written, ReportError>
where
    Fut: Future<Output = Result<Vec<T>, RepoError>>,
{
    let mut written = Written::default();
    let mut buf = Vec::new();
    header(&mut buf).map_err(render_err)?;
    let mut page: Vec<T> = Vec::new();
    loop {
        page = next(page.last()).await?;
        if !page.is_empty() {
            rows(&mut buf, &page).map_err(render_err)?;
            written.rows += page.len() as u64;
        }
        written.bytes += buf.len() as u64;
        if !buf.is_empty() {
            sink.write(std::mem::take(&mut buf))
                .await
                .map_err(sink_err)?;
        }
        if (page.len() as u64) < page_size {
            return Ok(written);
        }
    }
}

fn render_err(e: coffer_domain::reports::RenderError) -> ReportError {
    CommonError::Unexpected(anyhow::Error::new(e)).into()
}

fn sink_err(e: std::io::Error) -> ReportError {
    CommonError::Unexpected(anyhow::Error::new(e).context("the export's output failed")).into()
}

fn check_period(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ReportError> {
    match (from, to) {
        (Some(from), Some(to)) if from >= to => Err(ReportError::InvalidPeriod(format!(
            "`from` ({}) must be earlier than `to` ({}); `to` is exclusive",
            from.to_rfc3339(),
            to.to_rfc3339()
        ))),
        _ => Ok(()),
    }
}

/// The filters of an export, for its audit row.
fn describe(parts: &[(&str, Option<String>)]) -> String {
    let set: Vec<String> = parts
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() {
        "all rows".to_owned()
    } else {
        set.join(" ")
    }
}

fn rfc3339(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

impl ReportService {
    #[allow(clippy::too_many_arguments)]
    #[must_use]
    pub fn new(
        catalog: Arc<dyn BackupCatalog>,
        sources: Arc<dyn SourceRepository>,
        trail: Arc<dyn AuditRepository>,
        storage: Arc<dyn StorageFigures>,
        history: Arc<dyn StorageHistory>,
        renderer: Arc<dyn ReportRenderer>,
        clock: Arc<dyn Clock>,
        audit: AuditLog,
    ) -> Self {
        Self {
            catalog,
            sources,
            trail,
            storage,
            history,
            renderer,
            clock,
            audit,
        }
    }

    /// A source by id (digits) or name.
    async fn source(&self, wanted: Option<&str>) -> Result<Option<Source>, ReportError> {
        let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else {
            return Ok(None);
        };
        if let Ok(id) = wanted.parse::<i64>()
            && let Some(source) = self.sources.get(coffer_domain::SourceId::new(id)).await?
        {
            return Ok(Some(source));
        }
        match self.sources.find_by_name(wanted).await? {
            Some(source) => Ok(Some(source)),
            None => Err(CommonError::NotFound(format!("no source `{wanted}`")).into()),
        }
    }

    /// Authorises and audits a backup history CSV; write it with
    /// [`ReportService::write_backups_csv`].
    ///
    /// # Errors
    /// `Forbidden` without `export`; `Invalid` (`invalid_period`) when `from` is not
    /// before `to`; `NotFound` for an unknown source; database failures.
    pub async fn prepare_backups_csv(
        &self,
        actor: &Actor,
        filter: &BackupReportFilter,
    ) -> Result<BackupsCsv, ReportError> {
        actor.require(Permission::Export)?;
        check_period(filter.from, filter.to)?;
        let source = self.source(filter.source.as_deref()).await?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::Export, &actor.client)
                    .resource("report:csv")
                    .detail(describe(&[
                        ("from", rfc3339(filter.from)),
                        ("to", rfc3339(filter.to)),
                        ("source", source.as_ref().map(|s| s.name.clone())),
                    ])),
            )
            .await?;
        Ok(BackupsCsv {
            filter: BackupFilter {
                source_id: source.map(|s| s.id),
                from: filter.from,
                to: filter.to,
                ..BackupFilter::default()
            },
            at: self.clock.now(),
        })
    }

    /// Writes a prepared backup CSV, newest snapshot first, page by page.
    ///
    /// # Errors
    /// Database failures; the sink's failure (the client went away).
    pub async fn write_backups_csv(
        &self,
        export: &BackupsCsv,
        sink: &mut dyn ReportSink,
    ) -> Result<Written, ReportError> {
        let mut after = None;
        write_pages(
            sink,
            |buf| self.renderer.backups_csv_header(buf),
            |buf, page| self.renderer.backups_csv_rows(buf, page),
            CSV_PAGE,
            |last: Option<&CatalogEntry>| {
                if let Some(last) = last {
                    after = Some((last.created_at, last.id));
                }
                let (catalog, filter, after) = (&self.catalog, &export.filter, after);
                async move { catalog.page_after(filter, after, CSV_PAGE).await }
            },
        )
        .await
    }

    /// Authorises and audits an audit-trail CSV.
    ///
    /// # Errors
    /// `Forbidden` without `export`; `Invalid` (`invalid_period`); database failures.
    pub async fn prepare_audit_csv(
        &self,
        actor: &Actor,
        filter: &AuditReportFilter,
    ) -> Result<AuditCsv, ReportError> {
        actor.require(Permission::Export)?;
        check_period(filter.from, filter.to)?;
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let audit_filter = AuditFilter {
            username: nonempty(&filter.username),
            action: nonempty(&filter.action),
            success: filter.success,
            from: filter.from,
            to: filter.to,
            before_id: None,
        };
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::Export, &actor.client)
                    .resource("report:audit.csv")
                    .detail(describe(&[
                        ("from", rfc3339(filter.from)),
                        ("to", rfc3339(filter.to)),
                        ("username", audit_filter.username.clone()),
                        ("action", audit_filter.action.clone()),
                        ("success", audit_filter.success.map(|s| s.to_string())),
                    ])),
            )
            .await?;
        Ok(AuditCsv {
            filter: audit_filter,
            at: self.clock.now(),
        })
    }

    /// Writes a prepared audit CSV, newest row first, page by page.
    ///
    /// # Errors
    /// Database failures; the sink's failure.
    pub async fn write_audit_csv(
        &self,
        export: &AuditCsv,
        sink: &mut dyn ReportSink,
    ) -> Result<Written, ReportError> {
        let mut filter = export.filter.clone();
        write_pages(
            sink,
            |buf| self.renderer.audit_csv_header(buf),
            |buf, page| self.renderer.audit_csv_rows(buf, page),
            u64::from(AUDIT_PAGE),
            |last: Option<&AuditRecord>| {
                if let Some(last) = last {
                    filter.before_id = Some(last.id);
                }
                let (trail, filter) = (&self.trail, filter.clone());
                async move { trail.list(&filter, AUDIT_PAGE).await }
            },
        )
        .await
    }

    /// Authorises and audits the PDF report of a period (default: the 30 days before
    /// `to`, which defaults to now), for one source or all, and gathers its figures;
    /// draw it with [`ReportService::render_pdf`].
    ///
    /// # Errors
    /// `Forbidden` without `export`; `Invalid` (`invalid_period`); `NotFound` for an
    /// unknown source; database failures.
    pub async fn prepare_pdf(
        &self,
        actor: &Actor,
        filter: &BackupReportFilter,
    ) -> Result<PdfReport, ReportError> {
        actor.require(Permission::Export)?;
        check_period(filter.from, filter.to)?;
        let now = self.clock.now();
        let default = TimeDelta::days(PDF_DEFAULT_DAYS);
        let period = match (filter.from, filter.to) {
            (Some(from), Some(to)) => ReportPeriod { from, to },
            (Some(from), None) => ReportPeriod {
                from,
                to: now.max(from + TimeDelta::seconds(1)),
            },
            (None, Some(to)) => ReportPeriod {
                from: to - default,
                to,
            },
            (None, None) => ReportPeriod {
                from: now - default,
                to: now,
            },
        };
        let source = self.source(filter.source.as_deref()).await?;
        self.audit
            .record(
                AuditEntry::new(&actor.username, AuditAction::Export, &actor.client)
                    .resource("report:pdf")
                    .detail(describe(&[
                        ("from", rfc3339(Some(period.from))),
                        ("to", rfc3339(Some(period.to))),
                        ("source", source.as_ref().map(|s| s.name.clone())),
                    ])),
            )
            .await?;
        let data = self
            .gather(period, source, actor.username.clone(), now)
            .await?;
        Ok(PdfReport { data, at: now })
    }

    /// Draws a prepared PDF report. CPU-bound (a second or more for a long history):
    /// call it where blocking is allowed, not on an async worker.
    ///
    /// # Errors
    /// The renderer's failure.
    pub fn render_pdf(&self, report: &PdfReport) -> Result<Vec<u8>, ReportError> {
        self.renderer.pdf(&report.data).map_err(render_err)
    }

    async fn gather(
        &self,
        period: ReportPeriod,
        source: Option<Source>,
        generated_by: String,
        now: DateTime<Utc>,
    ) -> Result<ReportData, ReportError> {
        let first_day = period.from.date_naive();
        let last_day = (period.to - TimeDelta::microseconds(1))
            .date_naive()
            .max(first_day);
        let days = (last_day - first_day).num_days() + 1;
        let per = (days + MAX_BARS - 1) / MAX_BARS;
        let buckets = usize::try_from((days + per - 1) / per).unwrap_or(1);
        let mut daily: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); buckets];
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut logical = 0u64;
        let mut stored_added = 0u64;
        let mut history = Vec::new();
        let mut omitted = 0u64;

        let filter = BackupFilter {
            source_id: source.as_ref().map(|s| s.id),
            from: Some(period.from),
            to: Some(period.to),
            ..BackupFilter::default()
        };
        let mut after = None;
        loop {
            let page = self.catalog.page_after(&filter, after, CSV_PAGE).await?;
            let full = page.len() as u64 == CSV_PAGE;
            if let Some(last) = page.last() {
                after = Some((last.created_at, last.id));
            }
            for row in page {
                *by_status.entry(row.status.as_str().to_owned()).or_default() += 1;
                logical = logical.saturating_add(row.size);
                stored_added = stored_added.saturating_add(row.stored_bytes_added);
                let bucket = (row.created_at.date_naive() - first_day).num_days() / per;
                if let Some(counts) = usize::try_from(bucket).ok().and_then(|b| daily.get_mut(b)) {
                    *counts.entry(row.status.as_str().to_owned()).or_default() += 1;
                }
                if history.len() < PDF_HISTORY_ROWS {
                    history.push(row);
                } else {
                    omitted += 1;
                }
            }
            if !full {
                break;
            }
        }

        // Attempts that left no snapshot, on the day they ended.
        for at in self
            .failed_backups(period, source.as_ref().map(|s| s.id))
            .await?
        {
            *by_status.entry(FAILED.to_owned()).or_default() += 1;
            let bucket = (at.date_naive() - first_day).num_days() / per;
            if let Some(counts) = usize::try_from(bucket).ok().and_then(|b| daily.get_mut(b)) {
                *counts.entry(FAILED.to_owned()).or_default() += 1;
            }
        }

        let stats = self.catalog.stats().await?;
        let usage = self.storage.usage().await?;
        // Samples are taken when the bytes change (and daily while the server runs): the
        // value at the period's start is the latest sample before it.
        let earlier = match first_day.pred_opt() {
            Some(before) => self.history.latest_on_or_before(before).await?,
            None => None,
        };
        let samples = self.history.list(first_day, last_day).await?;
        let samples = fill_days(earlier, &samples, first_day, last_day, now.date_naive());
        let audit = self.audit_summary(period).await?;
        let day = |i: usize| {
            first_day + TimeDelta::days(i64::try_from(i).unwrap_or(0).saturating_mul(per))
        };
        Ok(ReportData {
            period,
            generated_at: now,
            generated_by,
            source: source.map(|s| s.name),
            backups_by_status: by_status.into_iter().collect(),
            logical_bytes_in_period: logical,
            stored_bytes_added_in_period: stored_added,
            stored_bytes: usage.stored_bytes,
            quota_bytes: usage.quota.max_bytes,
            catalog_logical_bytes: stats.logical_bytes,
            storage_history: samples,
            daily: daily
                .into_iter()
                .enumerate()
                .map(|(i, counts)| DailyBackups {
                    day: day(i),
                    by_status: counts.into_iter().collect(),
                })
                .collect(),
            days_per_bucket: u32::try_from(per).unwrap_or(1),
            history,
            history_omitted: omitted,
            audit,
        })
    }

    /// When each backup attempt of the period (of `source`, if given) that left no
    /// snapshot ended: the trail's unsuccessful `backup_create` rows, whose resource is
    /// `source:<id>` (`job:<id>` for a job that panicked: counted for all sources only).
    async fn failed_backups(
        &self,
        period: ReportPeriod,
        source: Option<coffer_domain::SourceId>,
    ) -> Result<Vec<DateTime<Utc>>, RepoError> {
        let resource = source.map(|id| format!("source:{id}"));
        let mut filter = AuditFilter {
            action: Some(AuditAction::BackupCreate.as_str().to_owned()),
            success: Some(false),
            from: Some(period.from),
            to: Some(period.to),
            ..AuditFilter::default()
        };
        let mut ended = Vec::new();
        loop {
            let page = self.trail.list(&filter, AUDIT_PAGE).await?;
            let full = page.len() == AUDIT_PAGE as usize;
            if let Some(last) = page.last() {
                filter.before_id = Some(last.id);
            }
            ended.extend(
                page.into_iter()
                    .filter(|r| {
                        resource
                            .as_deref()
                            .is_none_or(|want| r.entry.resource.as_deref() == Some(want))
                    })
                    .map(|r| r.timestamp),
            );
            if !full {
                return Ok(ended);
            }
        }
    }

    async fn audit_summary(&self, period: ReportPeriod) -> Result<AuditSummary, RepoError> {
        let mut filter = AuditFilter {
            from: Some(period.from),
            to: Some(period.to),
            ..AuditFilter::default()
        };
        let mut summary = AuditSummary::default();
        let mut actions: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        loop {
            let page = self.trail.list(&filter, AUDIT_PAGE).await?;
            let full = page.len() == AUDIT_PAGE as usize;
            if let Some(last) = page.last() {
                filter.before_id = Some(last.id);
            }
            for row in page {
                summary.total += 1;
                let counts = actions.entry(row.entry.action.clone()).or_default();
                counts.0 += 1;
                if !row.entry.success {
                    summary.failures += 1;
                    counts.1 += 1;
                }
                if summary.recent.len() < PDF_RECENT_AUDIT_ROWS {
                    summary.recent.push(row);
                }
            }
            if !full {
                break;
            }
        }
        summary.by_action = actions
            .into_iter()
            .map(|(action, (total, failures))| ActionCount {
                action,
                total,
                failures,
            })
            .collect();
        summary
            .by_action
            .sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.action.cmp(&b.action)));
        Ok(summary)
    }
}

/// A file name for an export made at `at`: `coffer-<kind>-YYYYMMDD-HHMMSS.<ext>`.
#[must_use]
pub fn export_filename(kind: &str, at: DateTime<Utc>, ext: &str) -> String {
    format!("coffer-{kind}-{}.{ext}", at.format("%Y%m%d-%H%M%S"))
}

#[cfg(test)]
mod tests;
