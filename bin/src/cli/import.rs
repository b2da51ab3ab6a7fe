//! `coffer import prototype DIR`: brings an installation of the Python prototype over
//! (its backups as snapshots, its users, its audit log), as the local system
//! administrator.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use coffer_application::{BackupOutcome, ImportOptions, ImportReport};
use coffer_config::Settings;
use coffer_domain::engine::Progress;

use super::{counted_bar, interruptible, local_admin, print_json, services};

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import an installation of the Python prototype: each completed backup becomes a
    /// snapshot (dated with its original time) of one source, users come over with their
    /// roles (their passwords work until their next login, then are re-hashed), the
    /// audit log comes over as imported history. Re-running adds nothing twice. Exit
    /// status 3 when an archive was skipped (the summary says why).
    Prototype {
        /// The installation directory (holding config.json, config/secret.key, the
        /// database and storage/backups).
        dir: std::path::PathBuf,
        /// The database file, relative to DIR, when config.json does not name it and it
        /// is not backup_system.db.
        #[arg(long, value_name = "FILE")]
        db: Option<String>,
        /// The source the snapshots go to [default: prototype].
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// Read everything and say what would be imported; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// config.json's retention becomes the source's, and its quota the server's.
        #[arg(long)]
        adopt_settings: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, command: ImportCommand) -> anyhow::Result<ExitCode> {
    let ImportCommand::Prototype {
        dir,
        db,
        source,
        dry_run,
        adopt_settings,
        json,
    } = command;
    let dir = std::path::absolute(&dir)?;
    let services = services(settings).await?;
    let actor = local_admin();
    let options = ImportOptions {
        dir: dir.to_string_lossy().into_owned(),
        db,
        source,
        dry_run,
        adopt_settings,
    };
    let progress = Arc::new(Progress::default());
    let bar = counted_bar(&progress, json, "importing", "archives");
    let result = services
        .import
        .import_prototype(&actor, &options, progress, interruptible())
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            services.db.close().await?;
            return Err(e.into());
        }
    };
    services.db.close().await?;
    if json {
        print_json(&report.to_json())?;
    } else {
        print_report(&report);
    }
    Ok(if report.skipped().is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn print_report(report: &ImportReport) {
    let verb = if report.dry_run {
        "would import"
    } else {
        "imported"
    };
    out!(
        "{}{} (database {}, fingerprint {})",
        if report.dry_run {
            "dry run: nothing written. "
        } else {
            ""
        },
        report.dir,
        report.database,
        report.fingerprint
    );
    out!(
        "source `{}`{}",
        report.source,
        if report.source_created {
            if report.dry_run {
                " (would be created)"
            } else {
                " (created)"
            }
        } else {
            ""
        }
    );
    for b in &report.backups {
        let when = b.created_at.map_or_else(
            || "?".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
        let line = match &b.outcome {
            BackupOutcome::Imported {
                snapshot,
                files,
                bytes,
            } => format!(
                "imported as snapshot {} ({files} files, {})",
                &snapshot[..12.min(snapshot.len())],
                super::human(*bytes)
            ),
            BackupOutcome::WouldImport => "would be imported".to_owned(),
            BackupOutcome::AlreadyImported { snapshot } => format!(
                "already imported (snapshot {})",
                &snapshot[..12.min(snapshot.len())]
            ),
            BackupOutcome::Skipped { reason } => format!("SKIPPED: {reason}"),
        };
        out!("  backup {} {} {}: {line}", b.id, when, b.filename);
    }
    for u in &report.users {
        out!(
            "  user {} ({}{}): {}{}",
            u.username,
            u.role.as_str(),
            if u.active { "" } else { ", disabled" },
            u.outcome.replace('_', " "),
            u.note
                .as_ref()
                .map(|n| format!(" — {n}"))
                .unwrap_or_default()
        );
    }
    if report.audit_already {
        out!("  audit log: imported by an earlier run");
    } else {
        out!("  audit log: {} rows {verb}", report.audit_rows);
    }
    for s in &report.settings {
        out!("  settings: {s}");
    }
    let skipped = report.skipped();
    out!(
        "{} backups {verb}, {} skipped{}",
        report.imported(),
        skipped.len(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                skipped
                    .iter()
                    .map(|b| format!("backup {}", b.id))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
}
