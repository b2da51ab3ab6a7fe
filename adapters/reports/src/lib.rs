//! `coffer-reports`: renders Coffer's reports — the backup history and the audit trail as
//! CSV, and the PDF report — from plain domain data. It implements the domain's
//! [`ReportRenderer`] port and nothing else.
//!
//! It knows no database, web framework, runtime or store: the application gathers the
//! data (in pages, for the CSV) and hands it over; the bytes go to whatever `Write` the
//! caller gives.
//!
//! - CSV: RFC 4180 (CRLF, quoting where needed), a header row, UTC ISO-8601 times, sizes
//!   in bytes. Any text cell a spreadsheet would take for a formula gets a leading `'`:
//!   first character tab, carriage return or line feed, or first character after any
//!   leading white space `=`, `+`, `-`, `@` or a full-width `＝ ＋ － ＠` (OWASP's list,
//!   widened). The backup CSV lists snapshots: a failed backup leaves none (the audit
//!   CSV has it, as a `backup_create` row with `success` false).
//! - PDF: A4 portrait, the 14 standard fonts (Helvetica), so nothing is embedded and all
//!   text stays extractable. Those fonts cover Latin-1 only: any other character is
//!   written as `?`, deliberately, rather than dropped.

mod csv_out;
mod pdf;
mod text;

use std::io::Write;

use coffer_domain::audit::AuditRecord;
use coffer_domain::ports::CatalogEntry;
use coffer_domain::reports::{RenderError, ReportData, ReportRenderer};

pub use csv_out::neutralise;

/// The renderer of every report.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reports;

impl ReportRenderer for Reports {
    fn backups_csv_header(&self, out: &mut dyn Write) -> Result<(), RenderError> {
        csv_out::backups_header(out)
    }

    fn backups_csv_rows(
        &self,
        out: &mut dyn Write,
        rows: &[CatalogEntry],
    ) -> Result<(), RenderError> {
        csv_out::backups_rows(out, rows)
    }

    fn audit_csv_header(&self, out: &mut dyn Write) -> Result<(), RenderError> {
        csv_out::audit_header(out)
    }

    fn audit_csv_rows(&self, out: &mut dyn Write, rows: &[AuditRecord]) -> Result<(), RenderError> {
        csv_out::audit_rows(out, rows)
    }

    fn pdf(&self, data: &ReportData) -> Result<Vec<u8>, RenderError> {
        pdf::render(data)
    }
}
