//! Contract of `BackupRuns`: the finished backup jobs counted per UTC day and outcome,
//! a source's recent runs and its success streak, on both backends.

use chrono::{NaiveDate, TimeDelta};
use coffer_domain::charts::{BackupRuns, RunOutcome};
use coffer_domain::engine::SnapshotStatus;
use coffer_domain::jobs::{Job, JobParams, JobResult, JobState};
use coffer_domain::ports::{JobRepository, SourceRepository, SourceSpec};
use coffer_domain::{JobId, SnapshotId, SourceId};

use super::*;

fn id(n: u128) -> JobId {
    JobId::from_uuid(uuid::Uuid::from_u128(n))
}

/// A backup job of `source` created `created` seconds after `t(0)` (2026-11-26 12:00
/// UTC), ended as `state`; a succeeded one with a snapshot of `status` that added `n`
/// bytes.
fn run(n: u128, source: SourceId, created: i64, state: JobState, status: SnapshotStatus) -> Job {
    let mut job = Job::queued(
        id(n),
        JobParams::Backup {
            source_id: source,
            source_name: "src".to_owned(),
        },
        "alice",
        t(created),
    );
    job.state = state;
    if state != JobState::Queued {
        job.started_at = Some(t(created) + TimeDelta::seconds(1));
    }
    if state.is_final() {
        job.finished_at = Some(t(created) + TimeDelta::seconds(31));
    }
    if state == JobState::Succeeded {
        job.result = Some(JobResult::Backup {
            snapshot_id: SnapshotId::parse(&format!("{:02x}", n % 256).repeat(32)).expect("an id"),
            status,
            files: 1,
            bytes: 10,
            bytes_added: u64::try_from(n).expect("small") * 100,
            // A warning that names the partial marker must not make a snapshot partial.
            warnings: vec![r#"odd "status":"partial" name"#.to_owned()],
        });
    }
    job
}

fn ok(n: u128, source: SourceId, created: i64) -> Job {
    run(n, source, created, JobState::Succeeded, SnapshotStatus::Ok)
}

const HOUR: i64 = 3600;

contract!(
    runs_are_counted_per_utc_day_and_outcome,
    |db: Database| async move {
        let jobs = db.jobs();
        let sources = db.sources();
        let a = sources
            .create(&SourceSpec::plain("a", "/srv/a"), t(0))
            .await
            .expect("source")
            .id;
        let b = sources
            .create(&SourceSpec::plain("b", "/srv/b"), t(0))
            .await
            .expect("source")
            .id;
        let partial = |n, s, at| run(n, s, at, JobState::Succeeded, SnapshotStatus::Partial);
        let ended = |n, s, at, state| run(n, s, at, state, SnapshotStatus::Ok);
        for job in [
            // 2026-11-26 (t(0) is noon UTC)
            ok(1, a, 0),
            ok(2, b, HOUR),
            partial(3, a, 2 * HOUR),
            ended(4, b, 3 * HOUR, JobState::Failed),
            ended(5, a, 4 * HOUR, JobState::Cancelled),
            // The last second of the day, and the first of the next.
            ok(6, a, 12 * HOUR - 1),
            ok(7, b, 12 * HOUR),
            ended(8, a, 13 * HOUR, JobState::Failed),
            // Not finished, or not a backup: never counted.
            ended(9, b, 14 * HOUR, JobState::Running),
            Job {
                state: JobState::Succeeded,
                ..Job::queued(id(10), JobParams::Prune, "scheduler", t(HOUR))
            },
            // Before the range, and at its (exclusive) end.
            ok(11, a, -13 * HOUR),
            ok(12, a, 36 * HOUR),
        ] {
            jobs.insert(&job).await.expect("insert");
        }
        let runs = db.backup_runs();
        let mut counts = runs
            .count_per_day(t(-12 * HOUR), t(36 * HOUR))
            .await
            .expect("count");
        counts.sort();
        let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).expect("a day");
        assert_eq!(
            counts,
            [
                (day(26), RunOutcome::Succeeded, 3),
                (day(26), RunOutcome::Warnings, 1),
                (day(26), RunOutcome::Failed, 1),
                (day(26), RunOutcome::Cancelled, 1),
                (day(27), RunOutcome::Succeeded, 1),
                (day(27), RunOutcome::Failed, 1),
            ]
        );
        assert!(
            runs.count_per_day(t(40 * HOUR), t(50 * HOUR))
                .await
                .expect("count")
                .is_empty()
        );
    }
);

contract!(
    recent_runs_are_a_sources_newest_finished_ones,
    |db: Database| async move {
        let jobs = db.jobs();
        let sources = db.sources();
        let a = sources
            .create(&SourceSpec::plain("a", "/srv/a"), t(0))
            .await
            .expect("source")
            .id;
        let b = sources
            .create(&SourceSpec::plain("b", "/srv/b"), t(0))
            .await
            .expect("source")
            .id;
        for job in [
            ok(1, a, 0),
            run(2, a, 60, JobState::Failed, SnapshotStatus::Ok),
            run(3, a, 120, JobState::Succeeded, SnapshotStatus::Partial),
            ok(4, b, 130),
            ok(5, a, 180),
            run(6, a, 240, JobState::Running, SnapshotStatus::Ok),
        ] {
            jobs.insert(&job).await.expect("insert");
        }
        let runs = db.backup_runs();
        let recent = runs.recent(a, 3).await.expect("recent");
        let seen: Vec<_> = recent
            .iter()
            .map(|r| (r.job_id, r.outcome, r.bytes_added, r.duration_ms()))
            .collect();
        assert_eq!(
            seen,
            [
                (id(5), RunOutcome::Succeeded, Some(500), Some(30_000)),
                (id(3), RunOutcome::Warnings, Some(300), Some(30_000)),
                (id(2), RunOutcome::Failed, None, Some(30_000)),
            ]
        );
        assert_eq!(recent[0].created_at, t(180));
        assert_eq!(runs.recent(a, 30).await.expect("recent").len(), 4);
        assert!(
            runs.recent(SourceId::new(9_999), 30)
                .await
                .expect("recent")
                .is_empty()
        );
    }
);

contract!(
    the_success_streak_ends_at_the_newest_unclean_run,
    |db: Database| async move {
        let jobs = db.jobs();
        let sources = db.sources();
        let a = sources
            .create(&SourceSpec::plain("a", "/srv/a"), t(0))
            .await
            .expect("source")
            .id;
        let b = sources
            .create(&SourceSpec::plain("b", "/srv/b"), t(0))
            .await
            .expect("source")
            .id;
        let runs = db.backup_runs();
        let streak = |s| {
            let runs = runs.clone();
            async move { runs.success_streak(s).await.expect("streak") }
        };
        assert_eq!(streak(a).await, 0, "no run yet");
        for job in [ok(1, a, 0), ok(2, a, 60), ok(3, a, 120)] {
            jobs.insert(&job).await.expect("insert");
        }
        assert_eq!(streak(a).await, 3, "every run succeeded");
        jobs.insert(&run(
            4,
            a,
            180,
            JobState::Succeeded,
            SnapshotStatus::Partial,
        ))
        .await
        .expect("insert");
        assert_eq!(streak(a).await, 0, "warnings break it");
        for job in [
            ok(5, a, 240),
            ok(6, a, 300),
            // Another source's failure and a running job do not count.
            run(7, b, 310, JobState::Failed, SnapshotStatus::Ok),
            run(8, a, 320, JobState::Running, SnapshotStatus::Ok),
        ] {
            jobs.insert(&job).await.expect("insert");
        }
        assert_eq!(streak(a).await, 2);
        assert_eq!(streak(b).await, 0);
        jobs.insert(&run(9, a, 400, JobState::Cancelled, SnapshotStatus::Ok))
            .await
            .expect("insert");
        assert_eq!(streak(a).await, 0, "a cancelled run breaks it");
        // Two runs created in the same instant are told apart by id.
        jobs.insert(&ok(10, a, 400)).await.expect("insert");
        assert_eq!(streak(a).await, 1);
    }
);
