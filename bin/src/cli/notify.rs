//! `coffer notify test`: sends a test email through `[notify.email]`, as the local system
//! administrator (audited).

use std::process::ExitCode;

use clap::Subcommand;
use coffer_config::Settings;

use super::{local_admin, services};

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test email through [notify.email] now, to see that alerts reach people.
    Test,
}

pub async fn run(settings: &Settings, command: NotifyCommand) -> anyhow::Result<ExitCode> {
    let NotifyCommand::Test = command;
    let services = services(settings).await?;
    let result = services.alerts.send_test(&local_admin()).await;
    services.db.close().await?;
    let sent_to = result?;
    out!("test email sent to {sent_to}");
    Ok(ExitCode::SUCCESS)
}
