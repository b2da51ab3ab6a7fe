//! The job queue's part of the `JobRepository` contract (what several server instances
//! sharing one catalog rely on), on both backends.

use coffer_domain::auth::{Actor, ClientInfo};
use coffer_domain::jobs::{Job, JobError, JobParams, JobProgress, JobState};
use coffer_domain::ports::{Enqueued, JobRepository, Lease, SourceRepository, SourceSpec};
use coffer_domain::{JobId, SourceId, UserId};

use super::*;

fn id(n: u128) -> JobId {
    JobId::from_uuid(uuid::Uuid::from_u128(n))
}

fn backup(n: u128, source: SourceId, created: i64) -> Job {
    Job::queued(
        id(n),
        JobParams::Backup {
            source_id: source,
            source_name: "src".to_owned(),
        },
        "olga",
        t(created),
    )
}

fn prune(n: u128, created: i64) -> Job {
    Job::queued(id(n), JobParams::Prune, "scheduler", t(created))
}

fn olga() -> Actor {
    Actor {
        username: "olga".to_owned(),
        user_id: Some(UserId::new(7)),
        role: Role::Operator,
        client: ClientInfo {
            ip: Some("192.0.2.7".to_owned()),
            user_agent: Some("coffer-cli/1".to_owned()),
            credential: Some("token 3 \"ci\"".to_owned()),
        },
    }
}

fn lease(instance: &str, until: i64) -> Lease {
    Lease {
        instance: instance.to_owned(),
        until: t(until),
    }
}

fn interrupted() -> JobError {
    JobError::new("interrupted", "its instance stopped")
}

contract!(
    one_active_job_per_subject_is_enforced_by_the_database,
    |db: Database| async move {
        let jobs = db.jobs();
        let source = db
            .sources()
            .create(&SourceSpec::plain("src", "/src"), t(0))
            .await
            .expect("source");
        let first = backup(1, source.id, 1);
        assert_eq!(
            jobs.enqueue(&first, &olga()).await.expect("enqueue"),
            Enqueued::Queued
        );
        assert_eq!(
            jobs.enqueue(&backup(2, source.id, 2), &olga())
                .await
                .expect("enqueue"),
            Enqueued::Busy(first.id),
            "a second backup of the source while the first is queued"
        );
        assert_eq!(jobs.get(id(2)).await.expect("get"), None, "nothing stored");
        // Other subjects are independent.
        assert_eq!(
            jobs.enqueue(&prune(3, 3), &olga()).await.expect("prune"),
            Enqueued::Queued
        );
        assert_eq!(
            jobs.enqueue(&prune(4, 4), &olga()).await.expect("prune"),
            Enqueued::Busy(id(3))
        );
        // Running still holds the subject; ended frees it.
        let claimed = jobs.claim(&lease("a", 100), t(10), 1).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].job.id, first.id);
        assert_eq!(
            jobs.enqueue(&backup(5, source.id, 5), &olga())
                .await
                .expect("enqueue"),
            Enqueued::Busy(first.id)
        );
        let mut done = claimed[0].job.clone();
        done.state = JobState::Succeeded;
        done.finished_at = Some(t(20));
        assert!(jobs.finish(&done, "a").await.expect("finish"));
        assert_eq!(
            jobs.enqueue(&backup(6, source.id, 6), &olga())
                .await
                .expect("enqueue"),
            Enqueued::Queued
        );
    }
);

contract!(
    claims_take_the_oldest_queued_jobs_once_with_their_actor,
    |db: Database| async move {
        let jobs = db.jobs();
        for n in 0..6u8 {
            let source = db
                .sources()
                .create(
                    &SourceSpec::plain(&format!("s{n}"), &format!("/s{n}")),
                    t(0),
                )
                .await
                .expect("source");
            jobs.enqueue(&backup(u128::from(n) + 1, source.id, i64::from(n)), &olga())
                .await
                .expect("enqueue");
        }
        assert_eq!(jobs.count_queued(None).await.expect("count"), 6);
        assert_eq!(jobs.count_queued(Some("olga")).await.expect("count"), 6);
        assert_eq!(jobs.count_queued(Some("bob")).await.expect("count"), 0);

        // Two instances claiming at once never get the same job.
        let (lease_a, lease_b) = (lease("a", 100), lease("b", 100));
        let (a, b) = tokio::join!(
            jobs.claim(&lease_a, t(10), 3),
            jobs.claim(&lease_b, t(10), 3)
        );
        let (a, b) = (a.expect("claim a"), b.expect("claim b"));
        assert!(
            a.len() <= 3 && b.len() <= 3,
            "more than asked: {} and {}",
            a.len(),
            b.len()
        );
        let mut all: Vec<JobId> = a.iter().chain(&b).map(|c| c.job.id).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), a.len() + b.len(), "a job claimed twice");
        assert!(a.len() + b.len() <= 6);
        let rest = jobs
            .claim(&lease("c", 100), t(11), 10)
            .await
            .expect("claim c");
        assert_eq!(a.len() + b.len() + rest.len(), 6, "every job taken once");
        assert_eq!(jobs.count_queued(None).await.expect("count"), 0);
        let first = a.iter().chain(&b).chain(&rest).find(|c| c.job.id == id(1));
        let first = first.expect("the oldest was taken");
        assert_eq!(first.actor, olga(), "the actor travels with the job");
        assert_eq!(first.job.state, JobState::Running);
        assert!(
            matches!(first.job.started_at, Some(at) if at == t(10) || at == t(11)),
            "{:?}",
            first.job.started_at
        );
        assert!(
            jobs.claim(&lease("a", 100), t(12), 5)
                .await
                .expect("claim")
                .is_empty()
        );
    }
);

contract!(
    heartbeats_renew_carry_progress_and_cancels,
    |db: Database| async move {
        let jobs = db.jobs();
        jobs.enqueue(&prune(1, 1), &olga()).await.expect("enqueue");
        let claimed = jobs.claim(&lease("a", 60), t(2), 1).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        let progress = JobProgress {
            files_done: 12,
            bytes_done: 3_000,
            ..JobProgress::default()
        };
        let beat = jobs
            .heartbeat(&lease("a", 120), &[(id(1), progress)])
            .await
            .expect("beat");
        assert!(beat[0].owned && !beat[0].cancel_requested);
        let stored = jobs.get(id(1)).await.expect("get").expect("row");
        assert_eq!(
            stored.progress, progress,
            "other instances read the progress"
        );
        // Another instance's heartbeat for it does not own it.
        let other = jobs
            .heartbeat(&lease("b", 120), &[(id(1), progress)])
            .await
            .expect("beat");
        assert!(!other[0].owned);

        // A cancel from anywhere reaches the runner through its heartbeat.
        let after = jobs
            .request_cancel(id(1), t(30))
            .await
            .expect("cancel")
            .expect("row");
        assert_eq!(after.state, JobState::Running);
        assert!(after.cancel_requested);
        let beat = jobs
            .heartbeat(&lease("a", 150), &[(id(1), progress)])
            .await
            .expect("beat");
        assert!(beat[0].owned && beat[0].cancel_requested);

        // The renewed lease keeps it from expiring at 100; at 151 it has run out.
        assert!(
            jobs.expire_leases(&interrupted(), t(100))
                .await
                .expect("expire")
                .is_empty()
        );
        let expired = jobs
            .expire_leases(&interrupted(), t(151))
            .await
            .expect("expire");
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].state, JobState::Failed);
        let stored = jobs.get(id(1)).await.expect("get").expect("row");
        assert_eq!(stored.state, JobState::Failed);
        assert_eq!(stored.error, Some(interrupted()));
        assert_eq!(stored.finished_at, Some(t(151)));
        // The instance that lost it can neither renew nor record its end.
        let beat = jobs
            .heartbeat(&lease("a", 200), &[(id(1), progress)])
            .await
            .expect("beat");
        assert!(!beat[0].owned);
        let mut late = stored.clone();
        late.state = JobState::Succeeded;
        late.error = None;
        assert!(!jobs.finish(&late, "a").await.expect("finish"));
        assert_eq!(
            jobs.get(id(1)).await.expect("get").expect("row").state,
            JobState::Failed
        );
    }
);

contract!(
    queued_jobs_cancel_at_once_and_fail_on_request,
    |db: Database| async move {
        let jobs = db.jobs();
        jobs.enqueue(&prune(1, 1), &olga()).await.expect("enqueue");
        let cancelled = jobs
            .request_cancel(id(1), t(5))
            .await
            .expect("cancel")
            .expect("row");
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert_eq!(cancelled.finished_at, Some(t(5)));
        assert!(
            jobs.claim(&lease("a", 100), t(6), 5)
                .await
                .expect("claim")
                .is_empty(),
            "a cancelled job is not taken"
        );
        assert_eq!(
            jobs.request_cancel(id(9), t(6)).await.expect("cancel"),
            None
        );
        // The subject is free again.
        assert_eq!(
            jobs.enqueue(&prune(2, 7), &olga()).await.expect("enqueue"),
            Enqueued::Queued
        );
        assert_eq!(
            jobs.fail_queued(&interrupted(), t(8)).await.expect("fail"),
            1
        );
        let failed = jobs.get(id(2)).await.expect("get").expect("row");
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.error, Some(interrupted()));
        // Failing it freed the subject too.
        assert_eq!(
            jobs.enqueue(&prune(3, 9), &olga()).await.expect("enqueue"),
            Enqueued::Queued
        );
    }
);

contract!(
    one_instance_leads_the_scheduler_at_a_time,
    |db: Database| async move {
        use coffer_domain::ports::Leadership;
        let (a, b) = (db.leadership(), db.leadership());
        assert!(a.lead().await.expect("a"), "nobody held it");
        assert!(a.lead().await.expect("a again"), "a keeps it");
        let postgres = db.backend() == "postgres";
        // SQLite: one server per data directory, which always leads.
        assert_eq!(b.lead().await.expect("b"), !postgres);
        if !postgres {
            return;
        }
        a.resign().await;
        assert!(b.lead().await.expect("b"), "free once a resigned");
        assert!(!a.lead().await.expect("a"), "b holds it now");

        // The holder's connection dies (its process was killed, its network cut):
        // PostgreSQL frees the lock and another instance takes it over.
        db.connection()
            .execute_unprepared(
                "SELECT pg_terminate_backend(pid) FROM pg_locks \
                 WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid() \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .await
            .expect("terminate the holder's session");
        let mut taken = false;
        for _ in 0..50 {
            if a.lead().await.expect("a") {
                taken = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(taken, "the lock of a dead session was not freed");
        assert!(!b.lead().await.expect("b"), "b learns it lost it");
    }
);
