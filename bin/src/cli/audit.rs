//! `coffer audit verify|head`: the audit trail's keyed chain, re-computed, and its head
//! exported to prove later that nothing was cut.

use std::process::ExitCode;

use coffer_config::Settings;
use coffer_domain::audit::AuditHead;

use super::{local_admin, services};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Re-compute the audit trail's keyed chain; report the first row where it breaks
    /// (exit status 1), which shows a row edited, deleted or inserted behind Coffer's back.
    Verify {
        /// A head printed earlier by `coffer audit head` (ID:HASH): also prove that every
        /// row up to it is still there, unchanged (a cut tail verifies otherwise).
        #[arg(long, value_parser = parse_head)]
        head: Option<AuditHead>,
    },
    /// Print the chain's head (ID:HASH, after recording its export). Keep it outside this
    /// machine — a ticket, a mail, paper — and pass it to `audit verify --head` later.
    Head,
}

fn parse_head(text: &str) -> Result<AuditHead, String> {
    text.parse()
}

pub async fn run(settings: &Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = match command {
        AuditCommand::Verify { head } => services.audit.verify(&local_admin(), head.as_ref()).await,
        AuditCommand::Head => {
            let head = services.audit.head(&local_admin()).await;
            services.db.close().await?;
            out!("{}", head?);
            return Ok(ExitCode::SUCCESS);
        }
    };
    services.db.close().await?;
    let report = result?;
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
