//! `coffer sources ...`: backup sources, as the local system administrator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use coffer_application::{NewSource, SourceChanges, SourceService};
use coffer_config::Settings;
use coffer_domain::auth::Actor;
use coffer_domain::excludes::SourceFilter;
use coffer_domain::retention::Retention;
use coffer_domain::schedule::Schedule;
use coffer_http::schema::{SourceDto, to_json};

use super::{local_admin, print_json, services};

/// A source's own retention rules. Giving any of them replaces the configured rules for
/// this source; the ones not given are off (0).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct RetentionArgs {
    /// Keep the newest N snapshots.
    #[arg(long)]
    max_backups: Option<u32>,
    /// Remove snapshots older than N days (the keep rules do not lift this).
    #[arg(long)]
    max_age_days: Option<u32>,
    /// Keep every snapshot of the last N days.
    #[arg(long)]
    keep_within_days: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    #[arg(long)]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    #[arg(long)]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    #[arg(long)]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years.
    #[arg(long)]
    keep_yearly: Option<u32>,
}

impl RetentionArgs {
    fn rules(self) -> Option<Retention> {
        let all = [
            self.max_backups,
            self.max_age_days,
            self.keep_within_days,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        all.iter().any(Option::is_some).then(|| Retention {
            max_backups: self.max_backups.unwrap_or(0),
            max_age_days: self.max_age_days.unwrap_or(0),
            keep_within_days: self.keep_within_days.unwrap_or(0),
            keep_daily: self.keep_daily.unwrap_or(0),
            keep_weekly: self.keep_weekly.unwrap_or(0),
            keep_monthly: self.keep_monthly.unwrap_or(0),
            keep_yearly: self.keep_yearly.unwrap_or(0),
        })
    }
}

/// What a source's backups leave out.
#[derive(Debug, Clone, clap::Args)]
pub struct ExcludeArgs {
    /// Leave out what this gitignore pattern matches, relative to the source directory
    /// (`*.tmp`, `/build/`, `**/node_modules`, `!keep.tmp`); repeatable.
    #[arg(long = "exclude", value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Leave out directories holding a CACHEDIR.TAG.
    #[arg(long)]
    exclude_caches: bool,
    /// Stay on the source's file system: leave out other mounts below it.
    #[arg(long)]
    one_file_system: bool,
    /// Leave out regular files larger than this many bytes.
    #[arg(long, value_name = "BYTES")]
    exclude_larger_than: Option<u64>,
}

impl ExcludeArgs {
    fn filter(self) -> SourceFilter {
        SourceFilter {
            exclude: self.exclude,
            exclude_caches: self.exclude_caches,
            one_file_system: self.one_file_system,
            exclude_larger_than: self.exclude_larger_than,
        }
    }
}

/// What a source leaves out, in a line.
fn describe(filter: &SourceFilter) -> String {
    if filter.is_empty() {
        return "nothing left out".to_owned();
    }
    let mut parts = Vec::new();
    if !filter.exclude.is_empty() {
        parts.push(format!("excluding {}", filter.exclude.join(" ")));
    }
    if filter.exclude_caches {
        parts.push("cache directories left out".to_owned());
    }
    if filter.one_file_system {
        parts.push("one file system".to_owned());
    }
    if let Some(n) = filter.exclude_larger_than {
        parts.push(format!("files over {n} bytes left out"));
    }
    parts.join("; ")
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Add a source: a directory this server can read (a relative path is taken from
    /// the working directory and stored absolute, symlinks resolved).
    Add {
        name: String,
        path: PathBuf,
        /// Five-field cron expression in UTC, e.g. "0 3 * * *" (03:00 every day).
        #[arg(long)]
        schedule: Option<String>,
        #[command(flatten)]
        retention: RetentionArgs,
        #[command(flatten)]
        excludes: ExcludeArgs,
    },
    /// Change what a source leaves out (by name or id). Options given replace the
    /// source's; `--exclude` replaces every pattern.
    SetExcludes {
        source: String,
        /// Gitignore pattern; repeatable. Replaces the source's patterns.
        #[arg(
            long = "exclude",
            value_name = "PATTERN",
            conflicts_with = "clear_excludes"
        )]
        exclude: Vec<String>,
        /// Removes every pattern.
        #[arg(long)]
        clear_excludes: bool,
        /// Leave out directories holding a CACHEDIR.TAG (true or false).
        #[arg(long, value_name = "BOOL")]
        exclude_caches: Option<bool>,
        /// Stay on the source's file system (true or false).
        #[arg(long, value_name = "BOOL")]
        one_file_system: Option<bool>,
        /// Leave out regular files larger than this many bytes; 0 removes the limit.
        #[arg(long, value_name = "BYTES")]
        exclude_larger_than: Option<u64>,
    },
    /// List sources.
    List {
        /// Machine-readable output: the API's `Source` schema, one per source.
        #[arg(long)]
        json: bool,
    },
    /// Remove a source (by name or id). Its snapshots stay.
    Remove { source: String },
    /// Pause a source's schedule (kept as it is; nothing runs until `enable`).
    Disable { source: String },
    /// Resume a source's schedule from its next occurrence.
    Enable { source: String },
}

pub async fn run(settings: &Settings, command: SourcesCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = sources(&services.sources, command).await;
    services.db.close().await?;
    result.map(|()| ExitCode::SUCCESS)
}

async fn sources(svc: &SourceService, command: SourcesCommand) -> anyhow::Result<()> {
    let actor = local_admin();
    match command {
        SourcesCommand::Add {
            name,
            path,
            schedule,
            retention,
            excludes,
        } => {
            let absolute = std::path::absolute(&path)
                .with_context(|| format!("cannot make {} absolute", path.display()))?;
            let source = svc
                .create(
                    &actor,
                    NewSource {
                        name,
                        path: absolute.to_string_lossy().into_owned(),
                        schedule,
                        retention: retention.rules(),
                        filter: excludes.filter(),
                    },
                )
                .await?;
            out!(
                "added source `{}` (id {}): {}{}; {}",
                source.name,
                source.id,
                source.path,
                typed_as(&path, &source.path),
                describe(&source.filter)
            );
        }
        SourcesCommand::SetExcludes {
            source,
            exclude,
            clear_excludes,
            exclude_caches,
            one_file_system,
            exclude_larger_than,
        } => {
            let found = svc.find(&actor, &source).await?;
            let changes = SourceChanges {
                exclude: (clear_excludes || !exclude.is_empty()).then_some(exclude),
                exclude_caches,
                one_file_system,
                exclude_larger_than: exclude_larger_than.map(|n| (n > 0).then_some(n)),
                ..SourceChanges::default()
            };
            let s = svc.update(&actor, found.id, changes).await?;
            out!("`{}`: {}", s.name, describe(&s.filter));
        }
        SourcesCommand::List { json } => {
            let list = svc.list(&actor).await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .into_iter()
                    .map(|s| to_json(&SourceDto::from(s)))
                    .collect();
                print_json(&serde_json::Value::Array(rows))?;
            } else {
                out!(
                    "{:>4}  {:<24} {:<14} {:<17} {:<17} path",
                    "id",
                    "name",
                    "schedule",
                    "next run (UTC)",
                    "last run (UTC)"
                );
                let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or_else(
                        || "-".to_owned(),
                        |t| t.format("%Y-%m-%d %H:%M").to_string(),
                    )
                };
                for s in &list {
                    let next = if s.enabled || s.schedule.is_none() {
                        when(s.shown_next_run())
                    } else {
                        "paused".to_owned()
                    };
                    out!(
                        "{:>4}  {:<24} {:<14} {:<17} {:<17} {}",
                        s.id,
                        s.name,
                        s.schedule.as_ref().map_or("-", Schedule::as_str),
                        next,
                        when(s.last_run_at),
                        s.path
                    );
                }
            }
        }
        SourcesCommand::Disable { source } => set_enabled(svc, &actor, &source, false).await?,
        SourcesCommand::Enable { source } => set_enabled(svc, &actor, &source, true).await?,
        SourcesCommand::Remove { source } => {
            let found = svc.find(&actor, &source).await?;
            svc.delete(&actor, found.id).await?;
            out!(
                "removed source `{}`; its snapshots stay in the catalog",
                found.name
            );
        }
    }
    Ok(())
}

/// `" (from ./docs)"` when the path was typed otherwise than stored.
pub(super) fn typed_as(typed: &std::path::Path, stored: &str) -> String {
    if typed.as_os_str() == stored {
        String::new()
    } else {
        format!(" (from {})", typed.display())
    }
}

async fn set_enabled(
    svc: &SourceService,
    actor: &Actor,
    source: &str,
    enabled: bool,
) -> anyhow::Result<()> {
    let found = svc.find(actor, source).await?;
    let changes = SourceChanges {
        enabled: Some(enabled),
        ..SourceChanges::default()
    };
    let s = svc.update(actor, found.id, changes).await?;
    match (enabled, s.schedule.as_ref()) {
        (false, _) => out!("paused the schedule of `{}`", s.name),
        (true, Some(schedule)) => out!(
            "resumed the schedule of `{}` ({schedule} UTC); the server plans its next run within a minute",
            s.name
        ),
        (true, None) => out!("`{}` has no schedule to resume; set one first", s.name),
    }
    Ok(())
}
