//! `coffer backup | snapshots | ls | restore | verify | key | catalog`: the engine's
//! commands, through the application services as the local administrator.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use coffer_application::BackupTarget;
use coffer_config::Settings;
use coffer_domain::engine::{Cancel, Progress};
use coffer_domain::ports::CatalogEntry;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::{CatalogCommand, Command, KeyCommand, local_admin};

/// A spinner with live counters on a terminal (nothing when stderr is not one, or with
/// --json), updated from the operation's progress counters.
pub(crate) struct Bar {
    bar: ProgressBar,
    stop: tokio::sync::oneshot::Sender<()>,
}

fn bar(progress: &Arc<Progress>, json: bool, verb: &'static str) -> Option<Bar> {
    counted_bar(progress, json, verb, "files")
}

/// A progress spinner whose counted items are `unit` (files, packs).
pub(crate) fn counted_bar(
    progress: &Arc<Progress>,
    json: bool,
    verb: &'static str,
    unit: &'static str,
) -> Option<Bar> {
    use std::io::IsTerminal as _;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(verb);
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let progress = progress.clone();
    let shown = bar.clone();
    let started = chrono::Utc::now();
    tokio::spawn(async move {
        loop {
            let p = progress.read();
            let now = chrono::Utc::now();
            let rate = p.rate(started, now).unwrap_or(0.0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rate = indicatif::HumanBytes(rate as u64);
            let done = indicatif::HumanBytes(p.bytes_done);
            let message = match (p.files_total, p.bytes_total) {
                (Some(files), Some(bytes)) => {
                    let eta = p.eta_secs(started, now).map_or_else(
                        || ", counting".to_owned(),
                        |s| format!(", ETA {}", indicatif::HumanDuration(Duration::from_secs(s))),
                    );
                    format!(
                        "{}/{files} {unit}, {done}/{} ({rate}/s{eta})",
                        p.files_done,
                        indicatif::HumanBytes(bytes)
                    )
                }
                _ => format!("{} {unit}, {done} ({rate}/s)", p.files_done),
            };
            shown.set_message(message);
            shown.tick();
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(Duration::from_millis(150)) => {}
            }
        }
    });
    Some(Bar { bar, stop })
}

impl Bar {
    pub(crate) fn finish(self) {
        let _ = self.stop.send(());
        self.bar.finish_and_clear();
    }
}

fn entry_json(e: &CatalogEntry) -> serde_json::Value {
    json!({
        "id": e.snapshot_id,
        "source": e.source_name,
        "created_at": e.created_at.to_rfc3339(),
        "finished_at": e.finished_at.map(|t| t.to_rfc3339()),
        "status": e.status,
        "checksum": e.checksum,
        "encrypted": e.encrypted,
        "files": e.file_count,
        "dirs": e.dir_count,
        "bytes": e.size,
        "bytes_added": e.bytes_added,
        "stored_bytes_added": e.stored_bytes_added,
        "duration_ms": e.duration_ms,
        "warnings": e.warnings,
        "parent": e.parent_snapshot_id,
        "verified_at": e.verified_at.map(|t| t.to_rfc3339()),
        "verify_result": e.verify_result,
    })
}

/// Where the time of a backup or restore went, on stderr (`--timings`).
fn print_timings(progress: &Progress, wall: std::time::Duration) {
    let phases: Vec<String> = progress
        .phases
        .read()
        .iter()
        .map(|(phase, d)| format!("{} {:.2}", phase.name(), d.as_secs_f64()))
        .collect();
    eprintln!(
        "timings: wall {:.2} s; thread seconds by phase: {}",
        wall.as_secs_f64(),
        phases.join(", ")
    );
}

pub(crate) fn human(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let services = crate::coffer_services(settings).await?;
    let svc = &services.backups;
    let actor = local_admin();
    let code = match command {
        Command::Backup {
            path,
            source,
            json,
            timings,
        } => {
            let target = match (path, source) {
                (_, Some(name)) => BackupTarget::Source(name),
                (Some(path), None) => BackupTarget::Path(path),
                (None, None) => anyhow::bail!("give a PATH or --source NAME"),
            };
            let progress = Arc::new(Progress::default());
            let cancel = Cancel::default();
            let on_interrupt = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_interrupt.cancel();
                }
            });
            let bar = bar(&progress, json, "backing up");
            let started = std::time::Instant::now();
            let result = svc.backup(&actor, &target, progress.clone(), cancel).await;
            if let Some(bar) = bar {
                bar.finish();
            }
            if timings {
                print_timings(&progress, started.elapsed());
            }
            let e = result?;
            if json {
                out!("{}", serde_json::to_string_pretty(&entry_json(&e))?);
            } else {
                out!(
                    "snapshot {} of `{}` {}: {} files in {} directories, {} in total; {} new, {} stored after dedup and compression; took {}.{:03} s.",
                    &e.snapshot_id[..12],
                    e.source_name,
                    if e.status == "ok" {
                        "saved"
                    } else {
                        "saved PARTIAL"
                    },
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
            if e.status == "ok" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Command::Snapshots { json } => {
            let list = svc.snapshots(&actor, 10_000).await?;
            if json {
                let rows: Vec<_> = list.iter().map(entry_json).collect();
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                out!(
                    "{:<12}  {:<20} {:<8} {:>8} {:>10}  source",
                    "id",
                    "time (UTC)",
                    "status",
                    "files",
                    "size"
                );
                for e in &list {
                    out!(
                        "{:<12}  {:<20} {:<8} {:>8} {:>10}  {}",
                        &e.snapshot_id[..12],
                        e.created_at.format("%Y-%m-%d %H:%M:%S"),
                        e.status,
                        e.file_count,
                        human(e.size),
                        e.source_name
                    );
                }
                out!("{} snapshot(s)", list.len());
            }
            ExitCode::SUCCESS
        }
        Command::Ls {
            snapshot,
            path,
            json,
            long,
        } => {
            let path = path.unwrap_or_default();
            let entries = svc.list_dir(&actor, &snapshot, &path).await?;
            if json {
                let rows: Vec<_> = entries
                    .iter()
                    .map(|e| json!({"name": e.name, "type": e.kind.as_str(), "size": e.size, "mtime": e.mtime.to_rfc3339(), "mode": format!("{:o}", e.mode), "links": e.links, "xattrs": e.xattrs}))
                    .collect();
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for e in &entries {
                    if long {
                        let xattrs = if e.xattrs.is_empty() {
                            String::new()
                        } else {
                            format!("  [{}]", e.xattrs.join(", "))
                        };
                        out!(
                            "{:<7} {:>5o} {:>3} {:>12} {}  {}{xattrs}",
                            e.kind.as_str(),
                            e.mode,
                            e.links,
                            e.size,
                            e.mtime.format("%Y-%m-%d %H:%M:%S"),
                            e.name
                        );
                    } else {
                        out!(
                            "{:<7} {:>5o} {:>12} {}  {}",
                            e.kind.as_str(),
                            e.mode,
                            e.size,
                            e.mtime.format("%Y-%m-%d %H:%M"),
                            e.name
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Command::Restore {
            snapshot,
            target,
            path,
            json,
            timings,
        } => {
            let progress = Arc::new(Progress::default());
            let cancel = Cancel::default();
            let on_interrupt = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    on_interrupt.cancel();
                }
            });
            let bar = bar(&progress, json, "restoring");
            let started = std::time::Instant::now();
            let result = svc
                .restore(
                    &actor,
                    &snapshot,
                    path.as_deref(),
                    &target,
                    progress.clone(),
                    cancel,
                )
                .await;
            if let Some(bar) = bar {
                bar.finish();
            }
            if timings {
                print_timings(&progress, started.elapsed());
            }
            let (snap, report) = result?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "snapshot": snap.snapshot_id, "target": target.display().to_string(),
                        "files": report.files, "dirs": report.dirs, "symlinks": report.symlinks,
                        "hardlinks": report.hardlinks, "bytes": report.bytes, "warnings": report.warnings,
                    }))?
                );
            } else {
                out!(
                    "restored snapshot {} into {}: {} files ({} of them hard links), {} directories, {} symlinks, {}; every chunk was authenticated.",
                    &snap.snapshot_id[..12],
                    target.display(),
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
            ExitCode::SUCCESS
        }
        Command::Verify {
            snapshot,
            read_data,
            json,
        } => {
            let results = svc.verify(&actor, snapshot.as_deref(), read_data).await?;
            let damaged = results.iter().filter(|(_, r)| !r.ok()).count();
            if json {
                let rows: Vec<_> = results
                    .iter()
                    .map(|(e, r)| json!({"id": e.snapshot_id, "ok": r.ok(), "read_data": r.read_data, "problems": r.problems, "damaged_files": r.damaged_files, "bytes_read": r.bytes_read}))
                    .collect();
                out!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for (e, r) in &results {
                    if r.ok() {
                        out!("snapshot {} ({}): ok", &e.snapshot_id[..12], e.source_name);
                    } else {
                        out!(
                            "snapshot {} ({}): DAMAGED",
                            &e.snapshot_id[..12],
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
                    if read_data { " reading every byte" } else { "" },
                    damaged
                );
            }
            if damaged == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Key(KeyCommand::Export) => {
            let key = svc.export_key(&actor).await?;
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
            ExitCode::SUCCESS
        }
        Command::Key(KeyCommand::Rotate) => {
            svc.rotate_key(&actor).await?;
            out!(
                "the master key in {} was replaced; the repository's keys were re-wrapped (no data rewritten). Export the new key now: coffer key export",
                settings.encryption_key_file().display()
            );
            ExitCode::SUCCESS
        }
        Command::Catalog(CatalogCommand::Rebuild) => {
            let (found, added) = svc.rebuild_catalog(&actor).await?;
            out!("{found} snapshot(s) in storage; {added} added to the catalog.");
            ExitCode::SUCCESS
        }
        _ => unreachable!("dispatched in main"),
    };
    services.db.close().await?;
    Ok(code)
}
