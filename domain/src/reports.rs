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

/// The outcome of a backup attempt that left no snapshot, beside the snapshot statuses
/// `ok` and `partial`.
pub const FAILED: &str = "failed";

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
    /// Backup attempts of the period by outcome (ordered by status): the catalog's
    /// snapshots by their status (`ok`, `partial`), and [`FAILED`] for attempts that left
    /// no snapshot (failed, cancelled while running, or refused at the start by the quota
    /// or the disk's reserve), counted from the audit trail's unsuccessful
    /// `backup_create` rows.
    pub backups_by_status: Vec<(String, u64)>,
    /// Logical bytes of the period's snapshots.
    pub logical_bytes_in_period: u64,
    /// What the period's snapshots added to storage (after dedup and compression).
    pub stored_bytes_added_in_period: u64,
    /// Bytes in storage now. Always the whole repository's (chunks are shared across
    /// sources, so there is no per-source figure): a per-source report says so.
    pub stored_bytes: u64,
    /// The storage quota now (`None`: no quota).
    pub quota_bytes: Option<u64>,
    /// Logical bytes of every snapshot in the catalog (for the dedup ratio).
    pub catalog_logical_bytes: u64,
    /// The bytes in storage (the whole repository's) for each day of the period that
    /// anything is known of, oldest first: see [`fill_days`].
    pub storage_history: Vec<StorageSample>,
    /// Backup attempts per day (or per `days_per_bucket` days) of the period by outcome,
    /// like `backups_by_status`, oldest first; every bucket of the period is present,
    /// empty ones too. Snapshots count on the day they started, failed attempts on the
    /// day they failed.
    pub daily: Vec<DailyBackups>,
    pub days_per_bucket: u32,
    /// The newest snapshots of the period, newest first (at most [`PDF_HISTORY_ROWS`]).
    pub history: Vec<CatalogEntry>,
    /// Snapshots of the period not in `history`.
    pub history_omitted: u64,
    pub audit: AuditSummary,
}

impl ReportData {
    /// Backup attempts in the period: snapshots and failed attempts.
    #[must_use]
    pub fn backups_in_period(&self) -> u64 {
        self.backups_by_status.iter().map(|(_, n)| n).sum()
    }

    /// The share of the period's backup attempts that completed without warnings, in
    /// percent: `ok / (ok + partial + failed)`; `None` without attempts.
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
/// - Every text cell that a spreadsheet would read as a formula is written with a
///   leading `'`: one whose first character is `=`, `+`, `-`, `@`, tab, carriage return
///   or line feed, or whose first character after leading white space is one of
///   `= + - @` or their full-width forms `＝ ＋ － ＠`. The backup CSV lists snapshots
///   only (failed attempts leave none; the audit CSV has them as `backup_create` rows
///   with `success` false).
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
/// absent (nothing is interpolated here: see [`fill_days`]); `latest_on_or_before`
/// returns the sample of the latest day not after `day`, if any.
#[async_trait]
pub trait StorageHistory: Send + Sync {
    async fn record(&self, day: NaiveDate, stored_bytes: u64) -> Result<(), RepoError>;
    async fn list(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StorageSample>, RepoError>;
    async fn latest_on_or_before(&self, day: NaiveDate)
    -> Result<Option<StorageSample>, RepoError>;
}

/// One sample for each day `first..=last` that anything is known of: a sample is taken
/// only when the bytes in storage change (and once a day while the server runs), so a
/// day without one had the value of the latest day before it. `earlier` is the latest
/// sample before `first` (if any); `samples` those of `first..=last`, oldest first.
/// Days before the first sample ever stay absent (nothing is known of them), and so do
/// days after `known_until` (today: the future is not drawn).
#[must_use]
pub fn fill_days(
    earlier: Option<StorageSample>,
    samples: &[StorageSample],
    first: NaiveDate,
    last: NaiveDate,
    known_until: NaiveDate,
) -> Vec<StorageSample> {
    let last = last.min(known_until);
    let mut carried = earlier.filter(|s| s.day < first).map(|s| s.stored_bytes);
    let mut samples = samples
        .iter()
        .filter(|s| s.day >= first && s.day <= last)
        .peekable();
    let mut out = Vec::new();
    let mut day = first;
    while day <= last {
        while let Some(s) = samples.next_if(|s| s.day <= day) {
            carried = Some(s.stored_bytes);
        }
        if let Some(stored_bytes) = carried {
            out.push(StorageSample { day, stored_bytes });
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike as _, TimeZone};

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
        // Failed attempts count against it: ok / (ok + partial + failed).
        let d = data(&[(FAILED, 2), ("ok", 6), ("partial", 2)], 0, 0);
        assert_eq!(d.success_rate_percent(), Some(60.0));
        assert_eq!(d.backups_in_period(), 10);
        assert_eq!(data(&[(FAILED, 4)], 0, 0).success_rate_percent(), Some(0.0));
        assert_eq!(
            data(&[("partial", 2)], 0, 0).success_rate_percent(),
            Some(0.0)
        );
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    fn sample(d: u32, stored_bytes: u64) -> StorageSample {
        StorageSample {
            day: day(d),
            stored_bytes,
        }
    }

    #[test]
    fn days_without_a_sample_carry_the_last_value_forward() {
        let values = |v: Vec<StorageSample>| -> Vec<(u32, u64)> {
            v.iter().map(|s| (s.day.day(), s.stored_bytes)).collect()
        };
        // A quiet period: only a sample from before it; every day up to today has it.
        assert_eq!(
            values(fill_days(
                Some(sample(1, 70)),
                &[],
                day(10),
                day(14),
                day(31)
            )),
            [(10, 70), (11, 70), (12, 70), (13, 70), (14, 70)]
        );
        // Gaps are filled from the day before; a change is taken on its day.
        assert_eq!(
            values(fill_days(
                Some(sample(2, 5)),
                &[sample(11, 20), sample(13, 10)],
                day(10),
                day(14),
                day(31)
            )),
            [(10, 5), (11, 20), (12, 20), (13, 10), (14, 10)]
        );
        // Nothing known before the first sample ever; nothing drawn after today.
        assert_eq!(
            values(fill_days(None, &[sample(12, 9)], day(10), day(16), day(14))),
            [(12, 9), (13, 9), (14, 9)]
        );
        assert_eq!(fill_days(None, &[], day(10), day(16), day(31)), []);
        // A period wholly in the future of what is known.
        assert_eq!(
            fill_days(Some(sample(1, 3)), &[], day(20), day(25), day(14)),
            []
        );
    }

    #[test]
    fn dedup_ratio_is_logical_over_stored() {
        assert_eq!(data(&[], 0, 100).dedup_ratio(), None);
        assert_eq!(data(&[], 50, 200).dedup_ratio(), Some(4.0));
    }
}
