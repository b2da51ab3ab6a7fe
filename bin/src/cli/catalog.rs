//! `coffer snapshots`, `coffer ls` and `coffer catalog rebuild`: the snapshot catalog as
//! the local administrator. `ls` is the CLI face of browsing (`GET
//! /api/backups/{id}/tree`): audited the same way, names reveal content.

use std::process::ExitCode;

use coffer_config::Settings;
use coffer_http::schema::{BackupDto, BackupPage, TreePage, to_json};

use super::{human, local_admin, print_json, services};

/// The most snapshots `coffer snapshots` lists.
const LISTED: u64 = 10_000;

#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// Machine-readable output: the API's `BackupPage` schema.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// Snapshot id (or a unique prefix of 8+ digits), or `latest`.
    snapshot: String,
    /// Directory inside the snapshot [default: its root].
    path: Option<String>,
    /// Machine-readable output: the API's `TreePage` schema.
    #[arg(long)]
    json: bool,
    /// Also show each entry's link count and extended attributes (ACLs among them).
    #[arg(long, short = 'l')]
    long: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// Recreate catalog rows for every snapshot found in storage.
    Rebuild,
}

pub async fn snapshots(settings: &Settings, args: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let list = services.catalog.snapshots(&local_admin(), LISTED).await;
    services.db.close().await?;
    let list = list?;
    if args.json {
        let page = BackupPage {
            total: list.len() as u64,
            items: list.into_iter().map(BackupDto::from).collect(),
        };
        print_json(&to_json(&page))?;
        return Ok(ExitCode::SUCCESS);
    }
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
            e.snapshot_id.short(),
            e.created_at.format("%Y-%m-%d %H:%M:%S"),
            e.status,
            e.file_count,
            human(e.size),
            e.source_name
        );
    }
    out!("{} snapshot(s)", list.len());
    Ok(ExitCode::SUCCESS)
}

pub async fn ls(settings: &Settings, args: LsArgs) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let page = services
        .catalog
        .browse(&local_admin(), &args.snapshot, args.path.as_deref(), None)
        .await;
    services.db.close().await?;
    let page = page?;
    if args.json {
        print_json(&to_json(&TreePage::from(page)))?;
        return Ok(ExitCode::SUCCESS);
    }
    for e in &page.entries.items {
        if args.long {
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
    Ok(ExitCode::SUCCESS)
}

pub async fn run(settings: &Settings, command: CatalogCommand) -> anyhow::Result<ExitCode> {
    let CatalogCommand::Rebuild = command;
    let services = services(settings).await?;
    let result = services.catalog.rebuild_catalog(&local_admin()).await;
    services.db.close().await?;
    let (found, added) = result?;
    out!("{found} snapshot(s) in storage; {added} added to the catalog.");
    Ok(ExitCode::SUCCESS)
}
