//! `coffer forget`: a source's retention rules applied now (or previewed), as the local
//! administrator.

use std::process::ExitCode;

use coffer_config::Settings;
use coffer_http::schema::{RetentionReportDto, to_json};

use super::{local_admin, print_json, services};

#[derive(Debug, clap::Args)]
pub struct ForgetArgs {
    /// The source, by name or id.
    #[arg(long)]
    source: String,
    /// Only show what would be removed.
    #[arg(long)]
    dry_run: bool,
    /// Machine-readable output: the API's `RetentionReport` schema.
    #[arg(long)]
    json: bool,
}

pub async fn forget(settings: &Settings, args: ForgetArgs) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let actor = local_admin();
    let report = async {
        let found = services.sources.find(&actor, &args.source).await?;
        Ok::<_, anyhow::Error>(if args.dry_run {
            services.retention.preview(&actor, found.id).await?
        } else {
            services.retention.apply(&actor, found.id).await?
        })
    }
    .await;
    services.db.close().await?;
    let report = report?;
    if args.json {
        print_json(&to_json(&RetentionReportDto::from(report)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let removed = report.verdicts.iter().filter(|v| !v.keep).count();
    out!("{:<12}  {:<20} {:<7} why", "snapshot", "taken (UTC)", "");
    for v in &report.verdicts {
        out!(
            "{:<12}  {:<20} {:<7} {}",
            v.id.short(),
            v.created_at.format("%Y-%m-%d %H:%M:%S"),
            if v.keep { "keep" } else { "REMOVE" },
            v.reasons.join(", ")
        );
    }
    out!(
        "`{}`: {} kept, {} {}",
        report.source.name,
        report.verdicts.len() - removed,
        removed,
        if report.applied {
            "removed (their data goes when garbage is collected)"
        } else {
            "would be removed (dry run: nothing changed)"
        }
    );
    Ok(ExitCode::SUCCESS)
}
