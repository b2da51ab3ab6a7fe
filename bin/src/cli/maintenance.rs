//! `coffer prune`, `coffer check` and `coffer storage`: repository upkeep from the CLI,
//! as the local system administrator, under the same rules (and locks) as the server.
//! `--json` is the API's schema for the same thing (a prune or check job's result, the
//! storage figures) with the report's further details beside it.

use std::process::ExitCode;
use std::sync::Arc;

use coffer_config::Settings;
use coffer_domain::engine::Progress;
use coffer_domain::jobs::JobResult;
use coffer_http::schema::{JobResultDto, StorageDto, to_json};
use serde_json::json;

use super::{counted_bar, human, interruptible, local_admin, print_json, services};

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Report what would be deleted and repacked; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Machine-readable output: a prune job's result (`JobResult` schema) and the
    /// report's details.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Percent of the stored data to re-read (1–100; 100 reads everything).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=100))]
    share: u8,
    /// Machine-readable output: a check job's result (`JobResult` schema) and the
    /// report's details.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum StorageCommand {
    /// Show stored bytes, quota and free disk space.
    Show {
        /// Machine-readable output: the API's `Storage` schema.
        #[arg(long)]
        json: bool,
    },
    /// Count the repository's bytes object by object and correct the usage counter.
    Recount {
        #[arg(long)]
        json: bool,
    },
}

/// `base` (a JSON object) with `more`'s fields added.
fn with(mut base: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    if let (Some(object), serde_json::Value::Object(extra)) = (base.as_object_mut(), more) {
        object.extend(extra);
    }
    base
}

pub async fn prune(settings: &Settings, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let PruneArgs { dry_run, json } = args;
    let services = services(settings).await?;
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
        print_json(&with(
            to_json(&JobResultDto::from(JobResult::of_prune(&r))),
            json!({
                "dry_run": r.dry_run,
                "packs_before": r.packs_before,
                "packs_written": r.packs_written,
                "orphan_packs_deleted": r.orphan_packs_deleted,
                "blobs_removed": r.blobs_removed,
            }),
        ))?;
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

pub async fn check(settings: &Settings, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckArgs { share, json } = args;
    let services = services(settings).await?;
    let progress = Arc::new(Progress::default());
    let bar = counted_bar(&progress, json, "checking", "packs");
    let result = services
        .maintenance
        .check(&local_admin(), share, progress, interruptible())
        .await;
    if let Some(bar) = bar {
        bar.finish();
    }
    services.db.close().await?;
    let (r, slice) = result?;
    let ok = r.ok();
    if json {
        let (trees, packs_total) = (r.trees, r.packs_total);
        print_json(&with(
            to_json(&JobResultDto::from(JobResult::of_check(r, slice))),
            json!({"trees": trees, "packs_total": packs_total}),
        ))?;
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
        if ok {
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
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn storage(settings: &Settings, command: StorageCommand) -> anyhow::Result<ExitCode> {
    match command {
        StorageCommand::Show { json } => show(settings, json).await,
        StorageCommand::Recount { json } => recount(settings, json).await,
    }
}

async fn show(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let shown = services.storage.show(&local_admin()).await;
    services.db.close().await?;
    let (usage, disk) = shown?;
    let store = coffer::open_storage(settings)?;
    let location = coffer_domain::storage::ObjectStore::location(&store);
    // Locks never depend on conditional writes (see the repository's lock protocol), so a
    // store that ignores them is as safe; the probe tells the operator which it is.
    let conditional = store.probe_conditional_create().await;
    if json {
        let mut value = to_json(&StorageDto::new(
            &usage,
            disk.as_ref().ok().map(Option::as_ref),
        ));
        value["backend"] = json!(store.backend());
        value["location"] = json!(location);
        value["lock_protocol"] = json!("write-then-list");
        value["conditional_create"] = match &conditional {
            Ok(honoured) => json!(honoured),
            Err(_) => serde_json::Value::Null,
        };
        print_json(&value)?;
        return Ok(ExitCode::SUCCESS);
    }
    out!("backend: {} ({location})", store.backend());
    out!(
        "locks: write-then-list (a lock is written, then every lock is listed; safe on any \
         store whose listings show a completed write, as S3, Garage, Ceph, MinIO and local \
         disks do)"
    );
    match conditional {
        Ok(true) => out!("conditional create (If-None-Match: *): honoured by this store"),
        Ok(false) => out!(
            "conditional create (If-None-Match: *): NOT honoured by this store (an existing \
             object was overwritten or the store does not offer it); not needed by the locks"
        ),
        Err(e) => out!("conditional create: cannot probe ({e})"),
    }
    out!(
        "stored: {}{}",
        human(usage.stored_bytes),
        usage.quota.max_bytes.map_or_else(
            || " (no quota)".to_owned(),
            |m| format!(" of a {} quota ({})", human(m), usage.state.as_str())
        )
    );
    match disk {
        Ok(None) => out!("disk: not applicable (object storage: free space is the store's)"),
        Ok(Some(d)) => out!(
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
    Ok(ExitCode::SUCCESS)
}

async fn recount(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = services.storage.recount(&local_admin()).await;
    services.db.close().await?;
    let (before, counted) = result?;
    if json {
        print_json(&json!({"counter_before": before, "stored_bytes": counted}))?;
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
