//! `coffer report csv|audit-csv|pdf --output FILE`: the exports of the HTTP API, written
//! to a file as the local system administrator (audited as `system:<os user>`).
//!
//! The file is created with mode 0600 (it can hold usernames, client addresses and the
//! audit trail's details) and never replaces an existing file without `--force`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use coffer_application::{AuditReportFilter, BackupReportFilter, ReportSink};

use crate::{coffer_services, local_admin};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The backup history as CSV (RFC 4180; formula-like cells neutralised), newest
    /// first; all time unless --from/--to.
    Csv {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        period: Period,
        /// Only this source (name or id).
        #[arg(long)]
        source: Option<String>,
    },
    /// The audit trail as CSV, newest first; all time unless --from/--to.
    AuditCsv {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        period: Period,
        /// Only this user's events.
        #[arg(long)]
        username: Option<String>,
        /// Only this action (`login`, `backup_create`, `export`, ...).
        #[arg(long)]
        action: Option<String>,
    },
    /// The PDF report: summary, charts, backup history, audit summary; the last 30 days
    /// unless --from/--to.
    Pdf {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        period: Period,
        /// Only this source (name or id).
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct Output {
    /// The file to write (created with mode 0600).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct Period {
    /// Start of the period, inclusive (RFC 3339, e.g. 2026-03-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    from: Option<DateTime<Utc>>,
    /// End of the period, exclusive (RFC 3339).
    #[arg(long, value_name = "TIME")]
    to: Option<DateTime<Utc>>,
}

/// Opens `path` for a report: a new file (mode 0600), or with `force` an existing one
/// truncated.
fn create(path: &Path, force: bool) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} exists already; choose another file or pass --force to replace it",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
        }
    })
}

/// The output file and the bytes written to it.
struct FileSink(std::fs::File, u64);

#[async_trait]
impl ReportSink for FileSink {
    async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.0.write_all(&bytes)?;
        self.1 += bytes.len() as u64;
        Ok(())
    }
}

/// Writes the report into `out`; a failed export removes the file it started.
async fn write_to<F>(out: &Output, export: F) -> anyhow::Result<(u64, u64)>
where
    F: AsyncFnOnce(&mut FileSink) -> anyhow::Result<u64>,
{
    let mut sink = FileSink(create(&out.output, out.force)?, 0);
    let result = async {
        let rows = export(&mut sink).await?;
        // A regular file is made durable; /dev/stdout and pipes cannot be synced.
        if sink.0.metadata()?.is_file() {
            sink.0
                .sync_all()
                .with_context(|| format!("cannot write {}", out.output.display()))?;
        }
        Ok::<_, anyhow::Error>((rows, sink.1))
    }
    .await;
    if result.is_err() && std::fs::metadata(&out.output).is_ok_and(|m| m.is_file()) {
        let _ = std::fs::remove_file(&out.output);
    }
    result
}

pub async fn run(settings: &coffer_config::Settings, command: ReportCommand) -> anyhow::Result<()> {
    let (ReportCommand::Csv { out, .. }
    | ReportCommand::AuditCsv { out, .. }
    | ReportCommand::Pdf { out, .. }) = &command;
    // Refused before anything is exported (and audited).
    if !out.force && out.output.exists() {
        anyhow::bail!(
            "{} exists already; choose another file or pass --force to replace it",
            out.output.display()
        );
    }
    let services = coffer_services(settings).await?;
    let actor = local_admin();
    let reports = &services.reports;
    let result = async {
        match &command {
            ReportCommand::Csv {
                out,
                period,
                source,
            } => {
                let filter = BackupReportFilter {
                    from: period.from,
                    to: period.to,
                    source: source.clone(),
                };
                let export = reports.prepare_backups_csv(&actor, &filter).await?;
                let (rows, bytes) = write_to(out, async |sink: &mut FileSink| {
                    Ok(reports.write_backups_csv(&export, sink).await?.rows)
                })
                .await?;
                out!(
                    "wrote {}: {rows} snapshots, {bytes} bytes (CSV)",
                    out.output.display()
                );
            }
            ReportCommand::AuditCsv {
                out,
                period,
                username,
                action,
            } => {
                let filter = AuditReportFilter {
                    from: period.from,
                    to: period.to,
                    username: username.clone(),
                    action: action.clone(),
                };
                let export = reports.prepare_audit_csv(&actor, &filter).await?;
                let (rows, bytes) = write_to(out, async |sink: &mut FileSink| {
                    Ok(reports.write_audit_csv(&export, sink).await?.rows)
                })
                .await?;
                out!(
                    "wrote {}: {rows} audit events, {bytes} bytes (CSV)",
                    out.output.display()
                );
            }
            ReportCommand::Pdf {
                out,
                period,
                source,
            } => {
                let filter = BackupReportFilter {
                    from: period.from,
                    to: period.to,
                    source: source.clone(),
                };
                let (_, pdf) = reports.pdf(&actor, &filter).await?;
                let (_, bytes) = write_to(out, async |sink: &mut FileSink| {
                    sink.write(pdf).await?;
                    Ok(0)
                })
                .await?;
                out!("wrote {}: PDF report, {bytes} bytes", out.output.display());
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    services.db.close().await?;
    result
}
