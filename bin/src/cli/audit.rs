//! `coffer audit verify`: the audit trail's hash chain, re-computed.

use std::process::ExitCode;

use coffer_config::Settings;

use super::{local_admin, services};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Re-compute the audit trail's hash chain; report the first row where it breaks
    /// (exit status 1), which shows a row edited, deleted or inserted behind Coffer's back.
    Verify,
}

pub async fn run(settings: &Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify = command;
    let services = services(settings).await?;
    let report = services.audit.verify(&local_admin()).await;
    services.db.close().await?;
    let report = report?;
    match report.first_break {
        None => {
            out!("audit trail intact: {} rows verified", report.rows_checked);
            Ok(ExitCode::SUCCESS)
        }
        Some((id, reason)) => anyhow::bail!(
            "audit trail broken at row {id}: {reason} ({} rows before it verified)",
            report.rows_checked
        ),
    }
}
