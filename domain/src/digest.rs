//! The daily digest: one email a day with yesterday's backups per source, the failures
//! and the storage trend, for the people who read their mail before the dashboard.
//!
//! When it is due ([`due`]), what it says ([`DigestRuns::of`], [`render`]) and how it is
//! sent ([`DigestSender`]) are separate, so every rule is tested without a clock or a
//! server.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};

use crate::alerts::NotifyError;
use crate::charts::{BackupRun, Projection, RunOutcome, StorageTrend};
use crate::jobs::{Job, JobParams};
use crate::units::human_bytes;

/// The UTC day whose digest is due at `now`, if one is: the day before `now`'s, once
/// `at` (UTC) has passed today, unless that day's digest was sent already (`last_sent`).
/// A server that was down at `at` sends it when it is back, the same day; a day missed
/// entirely is not sent late.
#[must_use]
pub fn due(now: DateTime<Utc>, at: NaiveTime, last_sent: Option<NaiveDate>) -> Option<NaiveDate> {
    let today = now.date_naive();
    let day = today - TimeDelta::days(1);
    (now.time() >= at && last_sent.is_none_or(|sent| sent < day)).then_some(day)
}

/// One source's backups of the day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceDay {
    pub succeeded: u64,
    /// Snapshots with warnings (`partial`).
    pub warnings: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// The last failure's message, when one failed.
    pub last_error: Option<String>,
}

/// The backups of a day, by source name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestRuns {
    pub sources: BTreeMap<String, SourceDay>,
}

impl DigestRuns {
    /// The finished backup jobs among `jobs` (any order), by source.
    #[must_use]
    pub fn of(jobs: &[Job]) -> Self {
        let mut sources: BTreeMap<String, SourceDay> = BTreeMap::new();
        let mut ordered: Vec<&Job> = jobs.iter().collect();
        ordered.sort_by_key(|j| (j.created_at, j.id));
        for job in ordered {
            let (JobParams::Backup { source_name, .. }, Some(run)) =
                (&job.params, BackupRun::of(job))
            else {
                continue;
            };
            let day = sources.entry(source_name.clone()).or_default();
            match run.outcome {
                RunOutcome::Succeeded => day.succeeded += 1,
                RunOutcome::Warnings => day.warnings += 1,
                RunOutcome::Failed => {
                    day.failed += 1;
                    day.last_error = job.error.as_ref().map(|e| e.message.clone());
                }
                RunOutcome::Cancelled => day.cancelled += 1,
            }
        }
        Self { sources }
    }

    fn total(&self, f: impl Fn(&SourceDay) -> u64) -> u64 {
        self.sources.values().map(f).sum()
    }
}

/// What a digest reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Digest {
    /// The UTC day it covers.
    pub day: NaiveDate,
    pub runs: DigestRuns,
    /// Enabled, scheduled sources that ran no backup that day (their names).
    pub idle_sources: Vec<String>,
    /// Bytes in storage at the end of the day, and at the end of the day before.
    pub stored_bytes: Option<u64>,
    pub stored_day_before: Option<u64>,
    pub trend: Option<StorageTrend>,
    /// When the quota is reached at the trend's rate (`None` without a quota).
    pub quota: Option<(u64, Projection)>,
}

/// The digest's subject and body (plain text).
#[must_use]
pub fn render(d: &Digest) -> (String, String) {
    let runs = &d.runs;
    let ok = runs.total(|s| s.succeeded);
    let warned = runs.total(|s| s.warnings);
    let failed = runs.total(|s| s.failed);
    let cancelled = runs.total(|s| s.cancelled);
    let all = ok + warned + failed + cancelled;
    let problems = if failed > 0 {
        format!(", {failed} FAILED")
    } else if warned > 0 {
        format!(", {warned} with warnings")
    } else {
        String::new()
    };
    let subject = format!(
        "[Coffer] daily digest for {}: {all} backups{problems}",
        d.day
    );

    let mut body = format!("Coffer's backups on {} (UTC).\n\n", d.day);
    if all == 0 {
        body.push_str("No backup ran that day.\n");
    } else {
        let _ = writeln!(
            body,
            "{all} backups: {ok} succeeded, {warned} with warnings (some files not read), \
             {failed} failed, {cancelled} cancelled.\n"
        );
        body.push_str("By source:\n");
        for (name, s) in &runs.sources {
            let mut parts = vec![format!("{} succeeded", s.succeeded)];
            for (n, what) in [
                (s.warnings, "with warnings"),
                (s.failed, "FAILED"),
                (s.cancelled, "cancelled"),
            ] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
            let _ = writeln!(body, "  - {name}: {}", parts.join(", "));
            if let Some(error) = &s.last_error {
                let _ = writeln!(body, "      last failure: {error}");
            }
        }
    }
    if !d.idle_sources.is_empty() {
        let _ = writeln!(
            body,
            "\nScheduled sources without a backup that day: {}.",
            d.idle_sources.join(", ")
        );
    }
    body.push_str("\nStorage:\n");
    match (d.stored_bytes, d.stored_day_before) {
        (Some(now), Some(before)) => {
            let change = i128::from(now) - i128::from(before);
            let sign = if change < 0 { "-" } else { "+" };
            let _ = writeln!(
                body,
                "  {} in storage ({sign}{} since the day before)",
                human_bytes(now),
                human_bytes(u64::try_from(change.unsigned_abs()).unwrap_or(u64::MAX))
            );
        }
        (Some(now), None) => {
            let _ = writeln!(body, "  {} in storage", human_bytes(now));
        }
        (None, _) => body.push_str("  no sample of the bytes in storage yet\n"),
    }
    if let Some(t) = &d.trend {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rate = human_bytes(t.bytes_per_day.abs().round() as u64);
        let sign = if t.bytes_per_day < 0.0 { "-" } else { "+" };
        let _ = writeln!(
            body,
            "  trend: {sign}{rate} a day (linear fit over the last {} days)",
            t.days
        );
    }
    if let Some((quota, projection)) = &d.quota {
        let when = match projection {
            Projection::Reached => "reached already".to_owned(),
            Projection::On(day) => format!("reached on {day} at this rate"),
            Projection::NotWithinAYear(_) => "not reached within a year at this rate".to_owned(),
            Projection::TooFewDays => "too few days of history to tell".to_owned(),
        };
        let _ = writeln!(body, "  quota {}: {when}", human_bytes(*quota));
    }
    body.push_str(
        "\nThe dashboard's Tasks page has every job and its log. This digest is sent once a \
         day ([notify.email] digest_at).\n",
    );
    (subject, body)
}

/// Sends the daily digest (the email channel).
#[async_trait]
pub trait DigestSender: Send + Sync {
    async fn send_digest(&self, subject: &str, body: &str) -> Result<(), NotifyError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SnapshotStatus;
    use crate::jobs::{JobError, JobResult, JobState};
    use crate::{JobId, SnapshotId, SourceId};
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, h, m, 0).unwrap()
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    #[test]
    fn a_digest_is_due_once_a_day_after_its_time() {
        let seven = NaiveTime::from_hms_opt(7, 0, 0).unwrap();
        assert_eq!(due(at(6, 59), seven, None), None);
        assert_eq!(due(at(7, 0), seven, None), Some(day(5)));
        assert_eq!(
            due(at(23, 0), seven, Some(day(4))),
            Some(day(5)),
            "late, same day"
        );
        assert_eq!(due(at(7, 1), seven, Some(day(5))), None, "sent already");
    }

    fn backup(n: u128, source: &str, state: JobState, status: SnapshotStatus) -> Job {
        let mut job = Job::queued(
            JobId::from_uuid(uuid::Uuid::from_u128(n)),
            JobParams::Backup {
                source_id: SourceId::new(1),
                source_name: source.into(),
            },
            "scheduler",
            at(1, 0) + TimeDelta::minutes(i64::try_from(n).unwrap()),
        );
        job.state = state;
        job.started_at = Some(job.created_at);
        job.finished_at = Some(job.created_at + TimeDelta::seconds(5));
        match state {
            JobState::Succeeded => {
                job.result = Some(JobResult::Backup {
                    snapshot_id: SnapshotId::parse(&"ab".repeat(32)).unwrap(),
                    status,
                    files: 1,
                    bytes: 1,
                    bytes_added: 1,
                    warnings: Vec::new(),
                });
            }
            JobState::Failed => {
                job.error = Some(JobError::new("invalid", format!("disk {n} gone")));
            }
            _ => {}
        }
        job
    }

    #[test]
    fn the_digest_counts_each_source_s_runs_and_names_the_last_failure() {
        let jobs = [
            backup(3, "mail", JobState::Failed, SnapshotStatus::Ok),
            backup(1, "docs", JobState::Succeeded, SnapshotStatus::Ok),
            backup(2, "mail", JobState::Failed, SnapshotStatus::Ok),
            backup(4, "docs", JobState::Succeeded, SnapshotStatus::Partial),
            backup(5, "docs", JobState::Cancelled, SnapshotStatus::Ok),
            backup(6, "docs", JobState::Running, SnapshotStatus::Ok),
        ];
        let runs = DigestRuns::of(&jobs);
        assert_eq!(
            runs.sources["docs"],
            SourceDay {
                succeeded: 1,
                warnings: 1,
                failed: 0,
                cancelled: 1,
                last_error: None
            }
        );
        assert_eq!(runs.sources["mail"].failed, 2);
        assert_eq!(
            runs.sources["mail"].last_error.as_deref(),
            Some("disk 3 gone"),
            "the newest failure"
        );
        let (subject, body) = render(&Digest {
            day: day(5),
            runs,
            idle_sources: vec!["photos".into()],
            stored_bytes: Some(3 << 30),
            stored_day_before: Some(2 << 30),
            trend: Some(StorageTrend {
                bytes_per_day: 1_073_741_824.0,
                days: 30,
                first: day(5) - TimeDelta::days(29),
                last: day(5),
            }),
            quota: Some((10 << 30, Projection::On(day(12)))),
        });
        assert_eq!(
            subject,
            "[Coffer] daily digest for 2026-12-05: 5 backups, 2 FAILED"
        );
        for expected in [
            "5 backups: 1 succeeded, 1 with warnings (some files not read), 2 failed, 1 cancelled.",
            "  - docs: 1 succeeded, 1 with warnings, 1 cancelled\n",
            "  - mail: 0 succeeded, 2 FAILED\n      last failure: disk 3 gone\n",
            "Scheduled sources without a backup that day: photos.",
            "  3.00 GiB in storage (+1.00 GiB since the day before)",
            "  trend: +1.00 GiB a day (linear fit over the last 30 days)",
            "  quota 10.0 GiB: reached on 2026-12-12 at this rate",
        ] {
            assert!(body.contains(expected), "{expected:?} in\n{body}");
        }
    }

    #[test]
    fn a_quiet_day_says_so() {
        let (subject, body) = render(&Digest {
            day: day(5),
            runs: DigestRuns::default(),
            idle_sources: Vec::new(),
            stored_bytes: None,
            stored_day_before: None,
            trend: None,
            quota: None,
        });
        assert_eq!(subject, "[Coffer] daily digest for 2026-12-05: 0 backups");
        assert!(body.contains("No backup ran that day."), "{body}");
        assert!(
            body.contains("no sample of the bytes in storage yet"),
            "{body}"
        );
    }
}
