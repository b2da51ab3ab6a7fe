//! `coffer jobs list|log`: the server's jobs (backups, restores, verifications, prunes,
//! checks, copies, imports) and their logs, read from the catalog, so they work beside a
//! running server (and see every instance's jobs when several share a catalog).

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use coffer_application::JobService;
use coffer_config::Settings;
use coffer_domain::JobId;
use coffer_domain::joblog::{LogLevel, human_duration};
use coffer_domain::jobs::{JobFilter, JobKind, JobParams, JobState};
use coffer_http::schema::{JobDto, JobLogLineDto, to_json};

use super::{local_admin, print_json, services};

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs of this kind: backup, restore, verify, prune, check, copy, import.
        #[arg(long, value_parser = parse_name::<JobKind>)]
        kind: Option<JobKind>,
        /// Only jobs in this state: queued, running, succeeded, failed, cancelled.
        #[arg(long, value_parser = parse_name::<JobState>)]
        state: Option<JobState>,
        /// Only backups of this source (name or id).
        #[arg(long)]
        source: Option<String>,
        /// Only jobs this user asked for (`scheduler` for scheduled runs).
        #[arg(long)]
        user: Option<String>,
        /// Only jobs created at or after this time (RFC 3339, or a date: its start, UTC).
        #[arg(long, value_parser = parse_time)]
        since: Option<DateTime<Utc>>,
        /// Only jobs created before this time (RFC 3339, or a date: its start, UTC).
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
        /// At most this many (1–500).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=500))]
        limit: u64,
        /// Machine-readable output: the API's `Job` schema, one per job, in a list.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's log: its start, phases, warnings and outcome. With --follow, waits
    /// for new lines until the job ends; the exit status is then 0 when it succeeded, 1
    /// when it failed or was cancelled.
    Log {
        /// The job's id (as `coffer jobs list` and the API show it).
        id: String,
        /// Keep printing new lines until the job has ended.
        #[arg(long, short)]
        follow: bool,
        /// Machine-readable output: one JSON object per line (the API's `JobLogLine`).
        #[arg(long)]
        json: bool,
    },
}

fn parse_name<T: std::str::FromStr<Err = coffer_domain::UnknownName>>(
    text: &str,
) -> Result<T, String> {
    text.parse()
        .map_err(|e: coffer_domain::UnknownName| e.to_string())
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))
}

/// How often `--follow` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub async fn run(settings: &Settings, command: JobsCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = match command {
        JobsCommand::List {
            kind,
            state,
            source,
            user,
            since,
            until,
            limit,
            json,
        } => {
            let source_id = match source {
                Some(reference) => {
                    Some(services.sources.find(&local_admin(), &reference).await?.id)
                }
                None => None,
            };
            let filter = JobFilter {
                state,
                kind,
                source_id,
                requested_by: user,
                from: since,
                to: until,
                limit,
                offset: 0,
            };
            list(&services.jobs, filter, json).await
        }
        JobsCommand::Log { id, follow, json } => log(&services.jobs, &id, follow, json).await,
    };
    services.db.close().await?;
    result
}

async fn list(jobs: &JobService, filter: JobFilter, json: bool) -> anyhow::Result<ExitCode> {
    let page = jobs.list(&local_admin(), filter).await?;
    if json {
        let items: Vec<serde_json::Value> = page
            .items
            .into_iter()
            .map(|s| to_json(&JobDto::from(s)))
            .collect();
        print_json(&serde_json::Value::Array(items))?;
        return Ok(ExitCode::SUCCESS);
    }
    if page.items.is_empty() {
        out!("no jobs");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<36}  {:<7}  {:<9}  {:<20}  {:>10}  {:<12}  WHAT",
        "ID",
        "KIND",
        "STATE",
        "CREATED (UTC)",
        "DURATION",
        "BY"
    );
    for status in &page.items {
        let job = &status.job;
        let duration = match (job.started_at, job.finished_at) {
            (Some(s), Some(f)) => human_duration((f - s).num_milliseconds()),
            (Some(s), None) => format!(
                "{} so far",
                human_duration((Utc::now() - s).num_milliseconds())
            ),
            _ => "-".to_owned(),
        };
        let what = match &job.params {
            JobParams::Backup { source_name, .. } => {
                format!("source {source_name}")
            }
            JobParams::Restore {
                snapshot_id,
                target,
                ..
            } => format!("{} -> {target}", snapshot_id.short()),
            JobParams::Verify { snapshot_id, .. } => snapshot_id.short().to_owned(),
            JobParams::Copy { replica } => format!("replica {replica}"),
            JobParams::Import { dir, .. } => dir.clone(),
            JobParams::Prune | JobParams::Check { .. } => String::new(),
        };
        let outcome = job
            .error
            .as_ref()
            .map(|e| format!(" ({})", e.code))
            .unwrap_or_default();
        out!(
            "{:<36}  {:<7}  {:<9}  {:<20}  {:>10}  {:<12}  {what}{outcome}",
            job.id,
            job.kind().as_str(),
            job.state.as_str(),
            job.created_at.format("%Y-%m-%d %H:%M:%S"),
            duration,
            job.requested_by,
        );
    }
    if page.total > page.items.len() as u64 {
        out!(
            "({} of {} jobs shown; narrow with --kind, --state, --source, --user, --since, --until or raise --limit)",
            page.items.len(),
            page.total
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn log(jobs: &JobService, raw: &str, follow: bool, json: bool) -> anyhow::Result<ExitCode> {
    let id: JobId = raw
        .parse()
        .map_err(|e| anyhow::anyhow!("{e} (see `coffer jobs list`)"))?;
    let actor = local_admin();
    let mut after = 0;
    loop {
        let (status, page) = jobs
            .log(&actor, id, after, coffer_application::MAX_LOG_PAGE)
            .await?;
        let full = page.lines.len() as u64 >= coffer_application::MAX_LOG_PAGE;
        after = page.next_after;
        for line in page.lines {
            if json {
                out!("{}", to_json(&JobLogLineDto::from(line)));
            } else {
                let level = match line.level {
                    LogLevel::Info => "",
                    LogLevel::Warning => "warning: ",
                    LogLevel::Error => "error: ",
                };
                out!(
                    "{}  {level}{}",
                    line.at.format("%Y-%m-%d %H:%M:%S"),
                    line.message
                );
            }
        }
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        if page.complete {
            // The outcome on stderr, also for a job whose log has no end (its server was
            // killed: another one declared it interrupted).
            match &status.job.error {
                Some(e) => eprintln!("job {id} {}: {} ({})", status.job.state, e.message, e.code),
                None => eprintln!("job {id} {}", status.job.state),
            }
            return Ok(if status.job.state == JobState::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        // A full page: read on at once; otherwise wait for the job to write more.
        if !full {
            tokio::time::sleep(FOLLOW_EVERY).await;
        }
    }
}
