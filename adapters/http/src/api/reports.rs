//! Reports: the backup history and the audit trail as CSV (streamed), and the PDF report.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use coffer_application::{
    AuditReportFilter, BackupReportFilter, ReportError, ReportSink, Written, export_filename,
};
use poem::Body;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::dto::attachment;
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

#[derive(ApiResponse)]
pub enum CsvExport {
    /// RFC 4180 CSV with a header row (UTC ISO-8601 times, sizes in bytes), streamed as
    /// it is read.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Csv(
        Binary<Body>,
        /// `attachment; filename="coffer-<backups|audit>-YYYYMMDD-HHMMSS.csv"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum PdfExport {
    /// The PDF report.
    #[oai(status = 200, content_type = "application/pdf")]
    Pdf(
        Binary<Vec<u8>>,
        /// `attachment; filename="coffer-report-YYYYMMDD-HHMMSS.pdf"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

/// A CSV's pages, handed to the response body through a small bounded channel: a slow
/// client slows the export down instead of filling memory; one that goes away ends it.
struct ChannelSink(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

#[async_trait]
impl ReportSink for ChannelSink {
    async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.0
            .send(Ok(Bytes::from(bytes)))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// The CSV response: a body fed by `export`, which runs beside the response. A failure
/// is logged under `what` and cuts the body off, so the client never mistakes a partial
/// export for a complete one.
fn streamed_csv<F>(
    what: &'static str,
    name: &str,
    export: impl FnOnce(ChannelSink) -> F,
) -> CsvExport
where
    F: Future<Output = (ChannelSink, Result<Written, ReportError>)> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let job = export(ChannelSink(tx));
    tokio::spawn(async move {
        if let (sink, Err(e)) = job.await {
            tracing::warn!(error = %e, "{what} export stopped");
            let _ = sink.0.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let body = Body::from_bytes_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    CsvExport::Csv(Binary(body), attachment(name))
}

pub struct ReportsApi;

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Reports")]
impl ReportsApi {
    /// Export the backup history as CSV.
    ///
    /// One row per snapshot, newest first: id, snapshot id, source, status, start and
    /// end (UTC ISO-8601), duration in seconds, files, directories, bytes (logical),
    /// bytes added, stored bytes added, SHA-256 checksum, encrypted, protected, parent,
    /// verification and the number of warnings. Snapshots only: a failed backup leaves
    /// none (the audit CSV has it, `action=backup_create&success=false`). RFC 4180
    /// (CRLF, quoting); a text cell starting with tab, CR or LF, or whose first
    /// character after leading white space is `=`, `+`, `-`, `@` (or full-width
    /// `＝＋－＠`), gets a leading `'` so that spreadsheets do not run it as a formula. Filters: `from` (inclusive) and `to`
    /// (exclusive), RFC 3339; `source` by id or name. Streamed; the export is audited
    /// (`export`, `report:csv`).
    ///
    /// Permission: `export`.
    #[oai(
        path = "/export/csv",
        method = "get",
        operation_id = "exportBackupsCsv"
    )]
    async fn backups_csv(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(max_length = 255))] source: Query<Option<String>>,
    ) -> Result<CsvExport, ApiError> {
        let filter = BackupReportFilter {
            from: from.0,
            to: to.0,
            source: source.0,
        };
        let export = state
            .reports
            .prepare_backups_csv(auth.actor(), &filter)
            .await?;
        let name = export_filename("backups", export.at, "csv");
        let reports = Arc::clone(&state.reports);
        Ok(streamed_csv(
            "backup CSV",
            &name,
            move |mut sink| async move {
                let result = reports.write_backups_csv(&export, &mut sink).await;
                (sink, result)
            },
        ))
    }

    /// Export the audit trail as CSV.
    ///
    /// One row per audit event, newest first: id, time (UTC ISO-8601), user, action,
    /// resource, success, client IP, user agent, details and the row's chain hash. The
    /// same CSV rules as the backup history (RFC 4180, formula cells neutralised).
    /// Filters, named as in `GET /api/audit`: `from` (inclusive), `to` (exclusive),
    /// `username`, `action`, `success` (`true` or `false`; failed backups are
    /// `action=backup_create&success=false`). Streamed; the export is audited
    /// (`export`, `report:audit.csv`).
    ///
    /// Permission: `export`.
    #[oai(
        path = "/export/audit.csv",
        method = "get",
        operation_id = "exportAuditCsv"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn audit_csv(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(max_length = 255))] username: Query<Option<String>>,
        #[oai(validator(max_length = 64))] action: Query<Option<String>>,
        success: Query<Option<bool>>,
    ) -> Result<CsvExport, ApiError> {
        let filter = AuditReportFilter {
            from: from.0,
            to: to.0,
            username: username.0,
            action: action.0,
            success: success.0,
        };
        let export = state
            .reports
            .prepare_audit_csv(auth.actor(), &filter)
            .await?;
        let name = export_filename("audit", export.at, "csv");
        let reports = Arc::clone(&state.reports);
        Ok(streamed_csv(
            "audit CSV",
            &name,
            move |mut sink| async move {
                let result = reports.write_audit_csv(&export, &mut sink).await;
                (sink, result)
            },
        ))
    }

    /// Export the PDF report.
    ///
    /// Title, period and generation time; summary figures (backup attempts in the
    /// period by outcome: snapshots `ok` and `partial`, and `failed` for attempts that
    /// left no snapshot; success rate `ok / (ok + partial + failed)`; storage used
    /// against the quota; dedup ratio); a chart of the bytes in storage per day (the
    /// last known value carried over days without a change) and one of backups per day
    /// by outcome; the backup history
    /// (the newest 2,000 snapshots of the period; the page says how many more the CSV
    /// has) with its header repeated on every page; an audit summary. Every page is
    /// numbered. Period: `from` (inclusive) and `to` (exclusive), RFC 3339; default the
    /// 30 days before `to`, which defaults to now. `source` by id or name (storage
    /// figures stay the whole repository's, and say so). Audited (`export`,
    /// `report:pdf`).
    ///
    /// Permission: `export`.
    #[oai(path = "/export/pdf", method = "get", operation_id = "exportPdf")]
    async fn pdf(
        &self,
        auth: Auth,
        state: Data<&Arc<AppState>>,
        from: Query<Option<DateTime<Utc>>>,
        to: Query<Option<DateTime<Utc>>>,
        #[oai(validator(max_length = 255))] source: Query<Option<String>>,
    ) -> Result<PdfExport, ApiError> {
        let filter = BackupReportFilter {
            from: from.0,
            to: to.0,
            source: source.0,
        };
        let report = state.reports.prepare_pdf(auth.actor(), &filter).await?;
        let name = export_filename("report", report.at, "pdf");
        // Drawing is CPU work (a second or more for a long history): off the async workers.
        let reports = Arc::clone(&state.reports);
        let pdf = tokio::task::spawn_blocking(move || reports.render_pdf(&report))
            .await
            .map_err(|e| ApiError::internal(&format!("the PDF renderer stopped: {e}")))??;
        Ok(PdfExport::Pdf(Binary(pdf), attachment(&name)))
    }
}
