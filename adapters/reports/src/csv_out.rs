//! The CSV exports: one writer per call, so a table is written as a header and then page
//! after page of rows.

use std::borrow::Cow;
use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use coffer_domain::audit::AuditRecord;
use coffer_domain::ports::CatalogEntry;
use coffer_domain::reports::RenderError;

/// The backup history's columns.
const BACKUP_COLUMNS: [&str; 20] = [
    "id",
    "snapshot_id",
    "source_id",
    "source",
    "status",
    "created_at",
    "finished_at",
    "duration_seconds",
    "files",
    "directories",
    "bytes",
    "bytes_added",
    "stored_bytes_added",
    "checksum_sha256",
    "encrypted",
    "protected",
    "parent_snapshot_id",
    "verified_at",
    "verify_result",
    "warnings",
];

/// The audit trail's columns.
const AUDIT_COLUMNS: [&str; 10] = [
    "id",
    "time",
    "username",
    "action",
    "resource",
    "success",
    "client_ip",
    "user_agent",
    "details",
    "row_hash",
];

/// What starts a formula, in ASCII and in full width (some spreadsheets fold
/// `＝＋－＠` to their ASCII forms).
const FORMULA: [char; 8] = [
    '=', '+', '-', '@', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// A cell as written: a text cell that a spreadsheet would evaluate as a formula gets a
/// leading `'`, which makes spreadsheets show it as text. That is a cell starting with a
/// tab, a carriage return or a line feed, or whose first character after any leading
/// white space is `=`, `+`, `-` or `@` (or a full-width `＝ ＋ － ＠`): spreadsheets
/// skip leading spaces before a formula. Numbers and times Coffer writes itself never
/// start with any of these (none is negative) and are not passed through here.
#[must_use]
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['\t', '\r', '\n']) || cell.trim_start().starts_with(FORMULA) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

fn writer(out: &mut dyn Write) -> csv::Writer<&mut dyn Write> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .has_headers(false)
        .from_writer(out)
}

fn csv_err(e: csv::Error) -> RenderError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => RenderError::Io(io),
        other => RenderError::Render(format!("{other:?}")),
    }
}

/// UTC ISO-8601, to the second: `2026-03-01T12:00:00Z`.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

fn text(s: &str) -> String {
    neutralise(s).into_owned()
}

fn opt_text(s: Option<&str>) -> String {
    s.map(text).unwrap_or_default()
}

fn header(out: &mut dyn Write, columns: &[&str]) -> Result<(), RenderError> {
    let mut w = writer(out);
    w.write_record(columns).map_err(csv_err)?;
    w.flush()?;
    Ok(())
}

pub(crate) fn backups_header(out: &mut dyn Write) -> Result<(), RenderError> {
    header(out, &BACKUP_COLUMNS)
}

pub(crate) fn audit_header(out: &mut dyn Write) -> Result<(), RenderError> {
    header(out, &AUDIT_COLUMNS)
}

fn duration(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

pub(crate) fn backups_rows(out: &mut dyn Write, rows: &[CatalogEntry]) -> Result<(), RenderError> {
    let mut w = writer(out);
    for r in rows {
        let record: [String; 20] = [
            r.id.get().to_string(),
            text(r.snapshot_id.as_str()),
            r.source_id.map(|s| s.get().to_string()).unwrap_or_default(),
            text(&r.source_name),
            text(r.status.as_str()),
            time(r.created_at),
            opt_time(r.finished_at),
            duration(r.duration_ms),
            r.file_count.to_string(),
            r.dir_count.to_string(),
            r.size.to_string(),
            r.bytes_added.to_string(),
            r.stored_bytes_added.to_string(),
            text(&r.checksum),
            r.encrypted.to_string(),
            r.protected.to_string(),
            opt_text(
                r.parent_snapshot_id
                    .as_ref()
                    .map(coffer_domain::SnapshotId::as_str),
            ),
            opt_time(r.verified_at),
            opt_text(r.verify_result.as_deref()),
            r.warnings.len().to_string(),
        ];
        w.write_record(&record).map_err(csv_err)?;
    }
    w.flush()?;
    Ok(())
}

pub(crate) fn audit_rows(out: &mut dyn Write, rows: &[AuditRecord]) -> Result<(), RenderError> {
    let mut w = writer(out);
    for r in rows {
        let e = &r.entry;
        let record: [String; 10] = [
            r.id.to_string(),
            time(r.timestamp),
            text(&e.username),
            text(&e.action),
            opt_text(e.resource.as_deref()),
            e.success.to_string(),
            opt_text(e.client.ip.as_deref()),
            opt_text(e.client.user_agent.as_deref()),
            opt_text(e.detail.as_deref()),
            text(&r.row_hash),
        ];
        w.write_record(&record).map_err(csv_err)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use coffer_domain::audit::{AuditAction, AuditEntry};
    use coffer_domain::auth::ClientInfo;
    use coffer_domain::{BackupId, SourceId};

    use super::*;

    fn entry(id: i64, source: &str) -> CatalogEntry {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        CatalogEntry {
            id: BackupId::new(id),
            snapshot_id: coffer_domain::SnapshotId::parse(&format!("{id:064x}")).unwrap(),
            source_id: Some(SourceId::new(3)),
            source_name: source.to_owned(),
            size: 1_048_576,
            created_at: t,
            finished_at: Some(t + chrono::TimeDelta::milliseconds(2_345)),
            status: coffer_domain::engine::SnapshotStatus::Ok,
            checksum: format!("{id:064x}"),
            encrypted: true,
            file_count: 12,
            dir_count: 3,
            bytes_added: 4096,
            stored_bytes_added: 2000,
            duration_ms: 2_345,
            warnings: vec!["w".to_owned()],
            parent_snapshot_id: None,
            protected: false,
            verified_at: None,
            verify_result: None,
            suspicious: None,
        }
    }

    fn backups(rows: &[CatalogEntry]) -> String {
        let mut out = Vec::new();
        backups_header(&mut out).unwrap();
        backups_rows(&mut out, rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn parse(csv: &str) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn a_row_has_every_column_in_bytes_and_utc() {
        let csv = backups(&[entry(7, "docs")]);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines.len(),
            3,
            "header, row, empty after the last CRLF: {csv:?}"
        );
        assert!(lines[0].starts_with("id,snapshot_id,source_id,source,status,created_at,"));
        assert_eq!(lines[2], "");
        let rows = parse(&csv);
        assert_eq!(rows[0].len(), BACKUP_COLUMNS.len());
        let row = &rows[1];
        assert_eq!(row[0], "7");
        assert_eq!(row[3], "docs");
        assert_eq!(row[5], "2026-03-01T12:00:00Z");
        assert_eq!(row[6], "2026-03-01T12:00:02Z");
        assert_eq!(row[7], "2.345");
        assert_eq!(row[10], "1048576");
        assert_eq!(row[14], "true");
        assert_eq!(row[19], "1");
    }

    #[test]
    fn commas_quotes_and_line_breaks_are_quoted_per_rfc_4180() {
        let csv = backups(&[entry(1, "a, \"quoted\"\r\nname\nhere")]);
        assert!(
            csv.contains(",\"a, \"\"quoted\"\"\r\nname\nhere\","),
            "{csv:?}"
        );
        assert_eq!(parse(&csv)[1][3], "a, \"quoted\"\r\nname\nhere");
        // Plain cells are not quoted.
        assert!(csv.contains(",ok,"), "{csv:?}");
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for hostile in [
            "=HYPERLINK(\"http://evil\",\"x\")",
            "+1+2",
            "-2+3",
            "@SUM(A1)",
            "\tleading tab",
            "\rleading cr",
            "\nleading lf",
            "  =cmd|' /C calc'!A0",
            " \t+1+2",
            "\u{3000}@SUM(A1)",
            "\u{FF1D}1+1",
            "\u{FF0B}1",
            "\u{FF0D}1",
            "\u{FF20}SUM(A1)",
            "  \u{FF1D}cmd",
        ] {
            let csv = backups(&[entry(1, hostile)]);
            let cell = &parse(&csv)[1][3];
            assert_eq!(cell, &format!("'{hostile}"), "{hostile:?}");
        }
        // Inside a cell these characters are harmless and kept as they are.
        assert_eq!(neutralise("a=b-c"), "a=b-c");
        assert_eq!(neutralise("  a = b"), "  a = b");
        assert_eq!(neutralise("a\n=b"), "a\n=b");
        assert_eq!(neutralise(""), "");
        assert_eq!(neutralise("   "), "   ");
        // The numbers we write ourselves are never touched (never negative).
        let csv = backups(&[entry(7, "docs")]);
        let row = &parse(&csv)[1];
        assert_eq!((row[0].as_str(), row[7].as_str()), ("7", "2.345"));
        assert_eq!(row[10], "1048576");
    }

    #[test]
    fn audit_rows_neutralise_users_agents_and_details() {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let client = ClientInfo {
            ip: Some("10.0.0.1".to_owned()),
            user_agent: Some("=cmd|' /C calc'!A0".to_owned()),
            credential: None,
        };
        let record = AuditRecord {
            id: 9,
            timestamp: t,
            entry: AuditEntry::new("@admin", AuditAction::Login, &client)
                .resource("user:1")
                .detail("-bad, \"worse\""),
            prev_hash: String::new(),
            row_hash: "ab".repeat(32),
        };
        let mut out = Vec::new();
        audit_header(&mut out).unwrap();
        audit_rows(&mut out, &[record]).unwrap();
        let csv = String::from_utf8(out).unwrap();
        let rows = parse(&csv);
        assert_eq!(rows[0], AUDIT_COLUMNS);
        let row = &rows[1];
        assert_eq!(row[1], "2026-03-01T12:00:00Z");
        assert_eq!(row[2], "'@admin");
        assert_eq!(row[3], "login");
        assert_eq!(row[5], "true");
        assert_eq!(row[6], "10.0.0.1");
        assert_eq!(row[7], "'=cmd|' /C calc'!A0");
        assert_eq!(row[8], "'-bad, \"worse\"");
        assert_eq!(row[9], "ab".repeat(32));
    }

    #[test]
    fn pages_concatenate_into_one_table() {
        let mut out = Vec::new();
        backups_header(&mut out).unwrap();
        backups_rows(&mut out, &[entry(1, "a"), entry(2, "b")]).unwrap();
        backups_rows(&mut out, &[]).unwrap();
        backups_rows(&mut out, &[entry(3, "c")]).unwrap();
        let rows = parse(&String::from_utf8(out).unwrap());
        let ids: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(ids, ["1", "2", "3"]);
    }
}
