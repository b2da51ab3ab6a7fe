//! `coffer replicas ...`: off-site copies, as the local system administrator. `sync`
//! copies in this process (under the repository's locks, beside a running server) and
//! waits, showing progress.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;
use coffer_application::{NewReplica, ReplicaChanges};
use coffer_config::Settings;
use coffer_domain::engine::Progress;
use coffer_domain::replicas::{ReplicaLocation, S3Location};
use coffer_http::schema::{JobResultDto, ReplicaDto, to_json};

use super::{counted_bar, human, interruptible, local_admin, print_json, services};

#[derive(Debug, Subcommand)]
pub enum ReplicasCommand {
    /// Add a replica: a directory (another disk, a NAS mount) that copies keep in step
    /// with the repository; a complete repository that the master key alone opens.
    Add {
        name: String,
        /// The replica's directory (created when missing; empty, or a replica of this
        /// repository). Or an S3 bucket with the --s3-* flags.
        #[arg(
            long,
            required_unless_present = "s3_bucket",
            conflicts_with = "s3_bucket"
        )]
        path: Option<PathBuf>,
        /// An S3 bucket (must exist) instead of a directory.
        #[arg(long)]
        s3_bucket: Option<String>,
        /// The S3 service's URL (unset: AWS's endpoint for the region).
        #[arg(long, requires = "s3_bucket")]
        s3_endpoint: Option<String>,
        /// The bucket's region.
        #[arg(long, requires = "s3_bucket", default_value = "us-east-1")]
        s3_region: String,
        /// Keys start with this path inside the bucket.
        #[arg(long, requires = "s3_bucket", default_value = "")]
        s3_prefix: String,
        /// Address buckets as bucket.endpoint (AWS) instead of endpoint/bucket.
        #[arg(long, requires = "s3_bucket")]
        s3_virtual_hosted: bool,
        /// A file (mode 0600) with `access_key_id = ...` and `secret_access_key = ...`.
        #[arg(long, requires = "s3_bucket")]
        s3_credentials_file: Option<PathBuf>,
        /// Never delete anything on the replica (ransomware protection).
        #[arg(long)]
        append_only: bool,
        /// Five-field cron expression in UTC of its copies, e.g. "0 2 * * *".
        #[arg(long)]
        schedule: Option<String>,
        /// Alert when more snapshots than this are not yet copied.
        #[arg(long)]
        max_lag_snapshots: Option<u32>,
        /// Alert when the oldest snapshot not yet copied is older than this.
        #[arg(long)]
        max_lag_hours: Option<u32>,
    },
    /// List replicas with their last copies and lag.
    List {
        /// Machine-readable output: the API's `Replica` schema.
        #[arg(long)]
        json: bool,
    },
    /// Change a replica's schedule, append-only mode or lag limits.
    Set {
        name: String,
        #[arg(long)]
        append_only: Option<bool>,
        /// A cron expression, or "" for none.
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long)]
        max_lag_snapshots: Option<u32>,
        #[arg(long)]
        max_lag_hours: Option<u32>,
    },
    /// Forget a replica (what it holds stays where it is).
    Remove { name: String },
    /// Copy the repository into the replica now, and wait.
    Sync {
        name: String,
        /// Machine-readable output: a copy job's result (`JobResult` schema).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(settings: &Settings, command: ReplicasCommand) -> anyhow::Result<ExitCode> {
    let services = services(settings).await?;
    let result = replicas(&services, command).await;
    services.db.close().await?;
    result.map(|()| ExitCode::SUCCESS)
}

fn when(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(
        || "never".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

async fn replicas(services: &coffer::Services, command: ReplicasCommand) -> anyhow::Result<()> {
    let svc = &services.replicas;
    let actor = local_admin();
    match command {
        ReplicasCommand::Add {
            name,
            path,
            s3_bucket,
            s3_endpoint,
            s3_region,
            s3_prefix,
            s3_virtual_hosted,
            s3_credentials_file,
            append_only,
            schedule,
            max_lag_snapshots,
            max_lag_hours,
        } => {
            let absolute = |p: &PathBuf| {
                std::path::absolute(p)
                    .map(|a| a.to_string_lossy().into_owned())
                    .with_context(|| format!("cannot make {} absolute", p.display()))
            };
            let location = match (path, s3_bucket) {
                (Some(path), _) => ReplicaLocation::Fs {
                    root: absolute(&path)?,
                },
                (None, Some(bucket)) => ReplicaLocation::S3(S3Location {
                    endpoint: s3_endpoint,
                    bucket,
                    region: s3_region,
                    prefix: s3_prefix,
                    path_style: !s3_virtual_hosted,
                    credentials_file: absolute(&s3_credentials_file.context(
                        "an s3 replica needs --s3-credentials-file (a 0600 file with \
                         access_key_id and secret_access_key)",
                    )?)?,
                }),
                (None, None) => anyhow::bail!("give --path DIR or --s3-bucket BUCKET"),
            };
            let status = svc
                .create(
                    &actor,
                    NewReplica {
                        name,
                        location,
                        append_only,
                        schedule,
                        max_lag_snapshots,
                        max_lag_hours,
                    },
                )
                .await?;
            out!(
                "added replica `{}`: {}{} (copy into it with `coffer replicas sync {}`)",
                status.replica.spec.name,
                status.replica.spec.location.describe(),
                if append_only { ", append-only" } else { "" },
                status.replica.spec.name
            );
        }
        ReplicasCommand::List { json } => {
            let list = svc.list(&actor).await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .into_iter()
                    .map(|s| to_json(&ReplicaDto::from(s)))
                    .collect();
                print_json(&serde_json::Value::Array(rows))?;
            } else if list.is_empty() {
                out!("no replicas (add one with `coffer replicas add NAME --path DIR`)");
            } else {
                for s in list {
                    let r = &s.replica;
                    out!(
                        "{}\t{} {}{}{}\tlast copy: {}\tbehind: {} snapshots{}{}",
                        r.spec.name,
                        r.spec.location.backend(),
                        r.spec.location.describe(),
                        if r.spec.append_only {
                            " (append-only)"
                        } else {
                            ""
                        },
                        r.spec
                            .schedule
                            .as_ref()
                            .map_or_else(String::new, |c| format!(" [{}]", c.as_str())),
                        when(r.last_success_at),
                        s.lag.snapshots,
                        s.lag
                            .oldest
                            .map_or_else(String::new, |t| format!(" (oldest {})", when(Some(t)))),
                        match (&r.last_failure_at, &r.last_error) {
                            (Some(at), Some(e)) if Some(*at) > r.last_success_at => {
                                format!("\tLAST COPY FAILED {}: {e}", when(Some(*at)))
                            }
                            _ => String::new(),
                        }
                    );
                }
            }
        }
        ReplicasCommand::Set {
            name,
            append_only,
            schedule,
            max_lag_snapshots,
            max_lag_hours,
        } => {
            let status = svc
                .update(
                    &actor,
                    &name,
                    ReplicaChanges {
                        root: None,
                        append_only,
                        schedule: schedule.map(|s| Some(s).filter(|s| !s.trim().is_empty())),
                        max_lag_snapshots: max_lag_snapshots.map(Some),
                        max_lag_hours: max_lag_hours.map(Some),
                    },
                )
                .await?;
            out!("changed replica `{}`", status.replica.spec.name);
        }
        ReplicasCommand::Remove { name } => {
            svc.delete(&actor, &name).await?;
            out!("removed replica `{name}` (what it holds stays where it is)");
        }
        ReplicasCommand::Sync { name, json } => {
            let progress = Arc::new(Progress::default());
            let bar = counted_bar(&progress, json, "copying", "objects");
            let result = svc.copy(&actor, &name, progress, interruptible()).await;
            if let Some(bar) = bar {
                bar.finish();
            }
            let result = result?;
            if json {
                print_json(&to_json(&JobResultDto::from(result)))?;
            } else if let coffer_domain::jobs::JobResult::Copy {
                snapshots,
                replica_snapshots,
                objects_copied,
                bytes_copied,
                objects_present,
                snapshots_deleted,
                ..
            } = result
            {
                out!(
                    "copied {objects_copied} objects ({}) to `{name}`; {objects_present} were there already.",
                    human(bytes_copied)
                );
                out!(
                    "The repository has {snapshots} snapshots, the replica {replica_snapshots}{}.",
                    if snapshots_deleted > 0 {
                        format!(
                            " ({snapshots_deleted} removed by the repository's retention deleted from it)"
                        )
                    } else {
                        String::new()
                    }
                );
            }
        }
    }
    Ok(())
}
