//! `coffer backup`: a snapshot of a directory or a configured source, now, as the local
//! administrator.

use std::path::PathBuf;

use anyhow::Context as _;
use std::process::ExitCode;
use std::sync::Arc;

use coffer_application::BackupTarget;
use coffer_config::Settings;
use coffer_domain::engine::{Progress, SnapshotStatus};
use coffer_http::schema::{BackupDto, to_json};

use super::{bar, human, interruptible, local_admin, print_json, print_timings, services};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Directory to back up.
    #[arg(required_unless_present = "source", conflicts_with = "source")]
    path: Option<PathBuf>,
    /// A configured source, by name.
    #[arg(long)]
    source: Option<String>,
    /// Machine-readable output: the snapshot as the API's `Backup` schema.
    #[arg(long)]
    json: bool,
    /// Print where the time went, phase by phase (thread time), on stderr.
    #[arg(long)]
    timings: bool,
}

pub async fn run(settings: &Settings, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let BackupArgs {
        path,
        source,
        json,
        timings,
    } = args;
    // A path as people type it (`./docs`): taken from the working directory, as restic
    // and Borg do; the source stores it with every symlink resolved.
    let typed = path.clone();
    let target = match (path, source) {
        (_, Some(name)) => BackupTarget::Source(name),
        (Some(path), None) => BackupTarget::Path(
            std::path::absolute(&path)
                .with_context(|| format!("cannot make {} absolute", path.display()))?,
        ),
        (None, None) => anyhow::bail!("give a PATH or --source NAME"),
    };
    let services = services(settings).await?;
    let progress = Arc::new(Progress::default());
    let bar = bar(&progress, json, "backing up");
    let started = std::time::Instant::now();
    let result = services
        .backups
        .backup(
            &local_admin(),
            &target,
            Arc::clone(&progress),
            interruptible(),
        )
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    if timings {
        print_timings(&progress, started.elapsed());
    }
    services.db.close().await?;
    let e = result?;
    let ok = e.status == SnapshotStatus::Ok;
    if json {
        print_json(&to_json(&BackupDto::from(e)))?;
    } else {
        if let (Some(typed), BackupTarget::Path(absolute)) = (&typed, &target) {
            let canonical = std::fs::canonicalize(absolute).unwrap_or_else(|_| absolute.clone());
            out!(
                "{} is {}: source `{}`",
                typed.display(),
                canonical.display(),
                e.source_name
            );
        }
        out!(
            "snapshot {} of `{}` {}: {} files in {} directories, {} in total; {} new, {} stored after dedup and compression; took {}.{:03} s.",
            e.snapshot_id.short(),
            e.source_name,
            if ok { "saved" } else { "saved PARTIAL" },
            e.file_count,
            e.dir_count,
            human(e.size),
            human(e.bytes_added),
            human(e.stored_bytes_added),
            e.duration_ms / 1000,
            e.duration_ms % 1000
        );
        for w in &e.warnings {
            out!("  warning: {w}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
