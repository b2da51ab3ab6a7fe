//! `coffer prune`, `coffer check` and `coffer storage`: repository upkeep from the CLI,
//! as the local system administrator, under the same rules (and locks) as the server.

use std::process::ExitCode;
use std::sync::Arc;

use coffer_domain::engine::{Cancel, Progress};
use serde_json::json;

use crate::cli_backup::{counted_bar, human};
use crate::{coffer_services, local_admin};

/// A cancel that Ctrl-C triggers (the work stops at its next safe point).
fn interruptible() -> Cancel {
    let cancel = Cancel::default();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    cancel
}

pub async fn prune(
    settings: &coffer_config::Settings,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let services = coffer_services(settings).await?;
    let progress = Arc::new(Progress::default());
    let bar = counted_bar(
        &progress,
        json,
        if dry_run { "planning" } else { "pruning" },
        "packs",
    );
    let result = services
        .maintenance
        .prune(&local_admin(), dry_run, progress, interruptible())
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    services.db.close().await?;
    let r = result?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "dry_run": r.dry_run,
                "snapshots": r.snapshots,
                "packs_before": r.packs_before,
                "packs_deleted": r.packs_deleted,
                "packs_repacked": r.packs_repacked,
                "packs_written": r.packs_written,
                "orphan_packs_deleted": r.orphan_packs_deleted,
                "blobs_removed": r.blobs_removed,
                "bytes_before": r.bytes_before,
                "bytes_after": r.bytes_after,
            }))?
        );
    } else {
        let verb = if r.dry_run { "would be" } else { "were" };
        out!(
            "{} snapshots keep their data. Of {} packs, {} {verb} deleted (nothing in use), {} {verb} repacked{}, and {} left by interrupted backups {verb} removed.",
            r.snapshots,
            r.packs_before,
            r.packs_deleted,
            r.packs_repacked,
            if r.dry_run {
                String::new()
            } else {
                format!(" into {} new", r.packs_written)
            },
            r.orphan_packs_deleted
        );
        out!(
            "Storage: {} -> {}{} ({} {verb} freed).",
            human(r.bytes_before),
            if r.dry_run { "about " } else { "" },
            human(r.bytes_after),
            human(r.bytes_before.saturating_sub(r.bytes_after)),
        );
        if r.dry_run {
            out!("Dry run: nothing was changed.");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn check(
    settings: &coffer_config::Settings,
    share_percent: u8,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let services = coffer_services(settings).await?;
    let progress = Arc::new(Progress::default());
    let bar = counted_bar(&progress, json, "checking", "packs");
    let result = services
        .maintenance
        .check(&local_admin(), share_percent, progress, interruptible())
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    services.db.close().await?;
    let (r, slice) = result?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "ok": r.ok(),
                "snapshots": r.snapshots,
                "trees": r.trees,
                "slice": slice.index,
                "slices": slice.count,
                "packs_total": r.packs_total,
                "packs_read": r.packs_read,
                "bytes_read": r.bytes_read,
                "problems": r.problems,
                "damaged_snapshots": r.damaged_snapshots,
            }))?
        );
    } else {
        out!(
            "{} snapshots, {} trees: structure checked. Data slice {} of {}: {} of {} packs read ({}).",
            r.snapshots,
            r.trees,
            slice.index + 1,
            slice.count,
            r.packs_read,
            r.packs_total,
            human(r.bytes_read)
        );
        if r.ok() {
            out!("No damage found.");
        } else {
            out!("DAMAGE FOUND:");
            for p in &r.problems {
                out!("  {p}");
            }
            for s in &r.damaged_snapshots {
                out!("  damaged snapshot: {s}");
            }
        }
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn storage_show(
    settings: &coffer_config::Settings,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let services = coffer_services(settings).await?;
    let usage = services.storage.usage().await?;
    let disk = services.storage.disk().check().await;
    services.db.close().await?;
    if json {
        let disk = disk.as_ref().ok();
        out!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "stored_bytes": usage.stored_bytes,
                "quota_bytes": usage.quota.max_bytes,
                "warning_bytes": usage.quota.warning_bytes,
                "quota_state": usage.state.as_str(),
                "disk_free_bytes": disk.map(|d| d.available_bytes),
                "disk_total_bytes": disk.map(|d| d.total_bytes),
            }))?
        );
    } else {
        out!(
            "stored: {}{}",
            human(usage.stored_bytes),
            usage.quota.max_bytes.map_or_else(
                || " (no quota)".to_owned(),
                |m| format!(" of a {} quota ({})", human(m), usage.state.as_str())
            )
        );
        match disk {
            Ok(d) => out!(
                "disk: {} free of {} on {}{}",
                human(d.available_bytes),
                human(d.total_bytes),
                d.mount_point.display(),
                if d.below_reserve {
                    " — BELOW THE RESERVE: backups are refused"
                } else if d.low {
                    " — low"
                } else {
                    ""
                }
            ),
            Err(e) => out!("disk: cannot read the free space ({e})"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn storage_recount(
    settings: &coffer_config::Settings,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let services = coffer_services(settings).await?;
    let result = services.storage.recount(&local_admin()).await;
    services.db.close().await?;
    let (before, counted) = result?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"counter_before": before, "stored_bytes": counted})
            )?
        );
    } else if before == counted {
        out!("stored: {} (the counter was right)", human(counted));
    } else {
        out!(
            "stored: {} (the counter said {}; corrected)",
            human(counted),
            human(before)
        );
    }
    Ok(ExitCode::SUCCESS)
}
