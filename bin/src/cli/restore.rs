//! `coffer restore` and `coffer verify`: reading snapshots back, as the local
//! administrator (a restore from the CLI is not limited to the restore roots).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use coffer_config::Settings;
use coffer_domain::engine::Progress;
use coffer_domain::jobs::JobResult;
use coffer_http::schema::{JobResultDto, to_json};

use super::{bar, human, interruptible, local_admin, print_json, print_timings, services};

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Snapshot id (or a unique prefix of 8+ digits), or `latest`.
    snapshot: String,
    /// New or empty directory to restore into.
    target: PathBuf,
    /// Only this file or directory inside the snapshot.
    #[arg(long)]
    path: Option<String>,
    /// Machine-readable output: a restore job's result (`JobResult` schema).
    #[arg(long)]
    json: bool,
    /// Print where the time went, phase by phase (thread time), on stderr.
    #[arg(long)]
    timings: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Snapshot id, prefix or `latest` [default: every snapshot].
    snapshot: Option<String>,
    /// Read and authenticate every chunk, not just check that it is stored.
    #[arg(long)]
    read_data: bool,
    /// Machine-readable output: a verify job's result (`JobResult` schema) per snapshot.
    #[arg(long)]
    json: bool,
}

pub async fn restore(settings: &Settings, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let progress = Arc::new(Progress::default());
    let bar = bar(&progress, args.json, "restoring");
    let started = std::time::Instant::now();
    let result = services
        .restores
        .restore(
            &local_admin(),
            &args.snapshot,
            args.path.as_deref(),
            &args.target,
            Arc::clone(&progress),
            interruptible(),
        )
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    if args.timings {
        print_timings(&progress, started.elapsed());
    }
    services.db.close().await?;
    let (snap, report) = result?;
    if args.json {
        let result =
            JobResult::of_restore(snap.snapshot_id, args.target.display().to_string(), report);
        print_json(&to_json(&JobResultDto::from(result)))?;
    } else {
        out!(
            "restored snapshot {} into {}: {} files ({} of them hard links), {} directories, {} symlinks, {}; every chunk was authenticated.",
            snap.snapshot_id.short(),
            args.target.display(),
            report.files,
            report.hardlinks,
            report.dirs,
            report.symlinks,
            human(report.bytes)
        );
        for w in &report.warnings {
            out!("  warning: {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(settings: &Settings, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let results = services
        .restores
        .verify(&local_admin(), args.snapshot.as_deref(), args.read_data)
        .await;
    services.db.close().await?;
    let results = results?;
    let damaged = results.iter().filter(|(_, r)| !r.ok()).count();
    if args.json {
        let rows: Vec<serde_json::Value> = results
            .into_iter()
            .map(|(e, r)| to_json(&JobResultDto::from(JobResult::of_verify(e.snapshot_id, r))))
            .collect();
        print_json(&serde_json::Value::Array(rows))?;
    } else {
        for (e, r) in &results {
            if r.ok() {
                out!("snapshot {} ({}): ok", e.snapshot_id.short(), e.source_name);
            } else {
                out!(
                    "snapshot {} ({}): DAMAGED",
                    e.snapshot_id.short(),
                    e.source_name
                );
                for p in &r.problems {
                    out!("  {p}");
                }
                for f in &r.damaged_files {
                    out!("  damaged file: {f}");
                }
            }
        }
        out!(
            "{} snapshot(s) verified{}, {} damaged.",
            results.len(),
            if args.read_data {
                " reading every byte"
            } else {
                ""
            },
            damaged
        );
    }
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
