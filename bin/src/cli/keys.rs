//! `coffer key export|rotate`: the master key, as the local administrator.

use std::process::ExitCode;

use coffer_config::Settings;

use super::{local_admin, services};

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Print the master key, to keep somewhere safe away from this machine.
    Export,
    /// Replace the master key; stored data is not rewritten.
    Rotate,
}

pub async fn run(settings: &Settings, command: KeyCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let actor = local_admin();
    match command {
        KeyCommand::Export => {
            let key = services.keys.export_key(&actor).await;
            services.db.close().await?;
            let key = key?;
            out!(
                "Coffer master key for the repository at {}:",
                settings.storage_root().display()
            );
            out!();
            out!("    {}", key.expose());
            out!();
            out!(
                "Keep it offline (a password manager, a printed copy in a safe). The storage plus this key"
            );
            out!(
                "are enough to restore every backup; without it, nothing can be restored. To use it, write"
            );
            out!(
                "it into the key file ({}) with mode 0600.",
                settings.encryption_key_file().display()
            );
        }
        KeyCommand::Rotate => {
            let rotated = services.keys.rotate_key(&actor).await;
            services.db.close().await?;
            rotated?;
            out!(
                "the master key in {} was replaced; the repository's keys were re-wrapped (no data rewritten). Export the new key now: coffer key export",
                settings.encryption_key_file().display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
