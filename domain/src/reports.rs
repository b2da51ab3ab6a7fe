//! Reports: what the CSV exports and the PDF report are made of, the port that renders
//! them, and the daily history of the bytes in storage that the PDF's chart draws.
//!
//! Periods are half-open like every time filter of Coffer: `from` inclusive, `to`
//! exclusive, both UTC.

use std::io::Write;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::audit::AuditRecord;
use crate::ports::{CatalogEntry, RepoError};

/// The newest snapshots of the period listed in the PDF's history table. The rest are
/// counted in the summary and the charts; the page says how many were left out and that
/// the CSV export has them all.
pub const PDF_HISTORY_ROWS: usize = 2_000;

/// The newest audit rows listed in the PDF's audit summary.
pub const PDF_RECENT_AUDIT_ROWS: usize = 15;

/// A time range: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportPeriod {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The bytes in storage at the end of one day (UTC), as last recorded that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageSample {
    pub day: NaiveDate,
    pub stored_bytes: u64,
}

/// Snapshots started on one day (UTC) — or in a run of days, when the period is long —
/// by status, ordered by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyBackups {
    /// The first day of the bucket.
    pub day: NaiveDate,
    pub by_status: Vec<(String, u64)>,
}

impl DailyBackups {
    #[must_use]
    pub fn total(&self) -> u64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }
}

/// One action in the audit summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCount {
    pub action: String,
    pub total: u64,
    pub failures: u64,
}

/// The audit trail of the period, summarised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditSummary {
    pub total: u64,
    pub failures: u64,
    /// Most frequent first, then by name.
    pub by_action: Vec<ActionCount>,
    /// The newest rows, newest first (at most [`PDF_RECENT_AUDIT_ROWS`]).
    pub recent: Vec<AuditRecord>,
}

/// Everything the PDF report shows. Built by the application from the catalog, the
/// audit trail, the storage counters and the storage history; the renderer only draws.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    pub period: ReportPeriod,
    pub generated_at: DateTime<Utc>,
    pub generated_by: String,
    /// The source the report is limited to, by name (`None`: every source).
    pub source: Option<String>,
    /// Snapshots started in the period, by status (ordered by status).
    pub backups_by_status: Vec<(String, u64)>,
    /// Logical bytes of the period's snapshots.
    pub logical_bytes_in_period: u64,
    /// What the period's snapshots added to storage (after dedup and compression).
    pub stored_bytes_added_in_period: u64,
    /// Bytes in storage now.
    pub stored_bytes: u64,
    /// The storage quota now (`None`: no quota).
    pub quota_bytes: Option<u64>,
    /// Logical bytes of every snapshot in the catalog (for the dedup ratio).
    pub catalog_logical_bytes: u64,
    /// Daily samples of the bytes in storage in the period, oldest first.
    pub storage_history: Vec<StorageSample>,
    /// Snapshots per day (or per `days_per_bucket` days) of the period, oldest first;
    /// every bucket of the period is present, empty ones too.
    pub daily: Vec<DailyBackups>,
    pub days_per_bucket: u32,
    /// The newest snapshots of the period, newest first (at most [`PDF_HISTORY_ROWS`]).
    pub history: Vec<CatalogEntry>,
    /// Snapshots of the period not in `history`.
    pub history_omitted: u64,
    pub audit: AuditSummary,
}

impl ReportData {
    /// Snapshots started in the period.
    #[must_use]
    pub fn backups_in_period(&self) -> u64 {
        self.backups_by_status.iter().map(|(_, n)| n).sum()
    }

    /// The share of the period's snapshots that completed without warnings (`ok`), in
    /// percent; `None` without snapshots.
    #[must_use]
    pub fn success_rate_percent(&self) -> Option<f64> {
        let total = self.backups_in_period();
        if total == 0 {
            return None;
        }
        let ok = self
            .backups_by_status
            .iter()
            .filter(|(s, _)| s == "ok")
            .map(|(_, n)| n)
            .sum::<u64>();
        #[allow(clippy::cast_precision_loss)]
        Some(ok as f64 * 100.0 / total as f64)
    }

    /// Logical bytes of every snapshot per byte in storage; `None` while nothing is
    /// stored.
    #[must_use]
    pub fn dedup_ratio(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.stored_bytes > 0)
            .then(|| self.catalog_logical_bytes as f64 / self.stored_bytes as f64)
    }
}

/// A report that could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The output refused the bytes (a closed connection, a full disk).
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot render the report: {0}")]
    Render(String),
}

/// Renders reports. Pure CPU work over the data it is given; no I/O but the writer.
///
/// Contract:
/// - CSV is RFC 4180: a header row, CRLF line ends, fields quoted when they hold a
///   comma, a quote or a line break; times UTC ISO-8601 (`2026-03-01T12:00:00Z`); sizes
///   in bytes. A CSV is written as a header (`*_csv_header`) and then any number of row
///   pages (`*_csv_rows`), so that the caller never holds the whole table.
/// - Every text cell that a spreadsheet would read as a formula (first character `=`,
///   `+`, `-`, `@`, tab or carriage return) is written with a leading `'`.
/// - `pdf` returns a complete PDF document whose text can be extracted.
pub trait ReportRenderer: Send + Sync {
    fn backups_csv_header(&self, out: &mut dyn Write) -> Result<(), RenderError>;
    fn backups_csv_rows(
        &self,
        out: &mut dyn Write,
        rows: &[CatalogEntry],
    ) -> Result<(), RenderError>;
    fn audit_csv_header(&self, out: &mut dyn Write) -> Result<(), RenderError>;
    fn audit_csv_rows(&self, out: &mut dyn Write, rows: &[AuditRecord]) -> Result<(), RenderError>;
    fn pdf(&self, data: &ReportData) -> Result<Vec<u8>, RenderError>;
}

/// The daily history of the bytes in storage: one sample per UTC day, the last value
/// recorded that day.
///
/// Contract: `record` inserts the day's sample or replaces its value; `list` returns
/// the samples of the days `from..=to`, oldest first; a day without a sample is simply
/// absent (nothing is interpolated).
#[async_trait]
pub trait StorageHistory: Send + Sync {
    async fn record(&self, day: NaiveDate, stored_bytes: u64) -> Result<(), RepoError>;
    async fn list(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StorageSample>, RepoError>;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn data(by_status: &[(&str, u64)], stored: u64, logical: u64) -> ReportData {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        ReportData {
            period: ReportPeriod { from: t, to: t },
            generated_at: t,
            generated_by: "admin".into(),
            source: None,
            backups_by_status: by_status.iter().map(|(s, n)| ((*s).into(), *n)).collect(),
            logical_bytes_in_period: 0,
            stored_bytes_added_in_period: 0,
            stored_bytes: stored,
            quota_bytes: None,
            catalog_logical_bytes: logical,
            storage_history: vec![],
            daily: vec![],
            days_per_bucket: 1,
            history: vec![],
            history_omitted: 0,
            audit: AuditSummary::default(),
        }
    }

    #[test]
    fn success_rate_counts_ok_snapshots_only() {
        assert_eq!(data(&[], 0, 0).success_rate_percent(), None);
        assert_eq!(
            data(&[("ok", 3), ("partial", 1)], 0, 0).success_rate_percent(),
            Some(75.0)
        );
        assert_eq!(
            data(&[("partial", 2)], 0, 0).success_rate_percent(),
            Some(0.0)
        );
    }

    #[test]
    fn dedup_ratio_is_logical_over_stored() {
        assert_eq!(data(&[], 0, 100).dedup_ratio(), None);
        assert_eq!(data(&[], 50, 200).dedup_ratio(), Some(4.0));
    }
}
