//! [`DigestService::tick`] against in-memory ports: when it sends, what it reads (every
//! page of a busy day's jobs), and that a day is sent once — and again after a failure.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use coffer_domain::alerts::NotifyError;
use coffer_domain::auth::Actor;
use coffer_domain::digest::DigestSender;
use coffer_domain::jobs::{Job, JobError, JobFilter, JobParams, JobProgress, JobState};
use coffer_domain::ports::{
    ClaimedJob, Clock, Enqueued, Heartbeat, JobRepository, Lease, Page, RepoError,
    SettingsRepository, SourceRepository as _, SourceSpec,
};
use coffer_domain::reports::{StorageHistory, StorageSample};
use futures::executor::block_on;

use super::{DigestPorts, DigestService, DigestTick, LAST_DAY_KEY};
use crate::error::CommonError;
use crate::storage::{Quota, QuotaState, StorageFigures, StorageUsage};
use crate::test_fakes::FakeSources;

struct At(Mutex<DateTime<Utc>>);

impl Clock for At {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Job records: only `list` is used, with its contract (newest first, paged).
#[derive(Default)]
struct Jobs(Vec<Job>);

#[async_trait]
impl JobRepository for Jobs {
    async fn list(&self, f: &JobFilter) -> Result<Page<Job>, RepoError> {
        let mut all: Vec<Job> = self
            .0
            .iter()
            .filter(|j| f.kind.is_none_or(|k| j.kind() == k))
            .filter(|j| f.from.is_none_or(|t| j.created_at >= t))
            .filter(|j| f.to.is_none_or(|t| j.created_at < t))
            .cloned()
            .collect();
        all.sort_by_key(|j| std::cmp::Reverse((j.created_at, j.id)));
        let total = all.len() as u64;
        let items = all
            .into_iter()
            .skip(usize::try_from(f.offset).unwrap())
            .take(usize::try_from(f.limit).unwrap())
            .collect();
        Ok(Page { items, total })
    }
    async fn insert(&self, _: &Job) -> Result<(), RepoError> {
        unreachable!()
    }
    async fn update(&self, _: &Job) -> Result<bool, RepoError> {
        unreachable!()
    }
    async fn get(&self, _: coffer_domain::JobId) -> Result<Option<Job>, RepoError> {
        unreachable!()
    }
    async fn fail_unfinished(&self, _: &JobError, _: DateTime<Utc>) -> Result<u64, RepoError> {
        unreachable!()
    }
    async fn enqueue(&self, _: &Job, _: &Actor) -> Result<Enqueued, RepoError> {
        unreachable!()
    }
    async fn claim(
        &self,
        _: &Lease,
        _: DateTime<Utc>,
        _: u64,
    ) -> Result<Vec<ClaimedJob>, RepoError> {
        unreachable!()
    }
    async fn heartbeat(
        &self,
        _: &Lease,
        _: &[(coffer_domain::JobId, JobProgress)],
    ) -> Result<Vec<Heartbeat>, RepoError> {
        unreachable!()
    }
    async fn finish(&self, _: &Job, _: &str) -> Result<bool, RepoError> {
        unreachable!()
    }
    async fn request_cancel(
        &self,
        _: coffer_domain::JobId,
        _: DateTime<Utc>,
    ) -> Result<Option<Job>, RepoError> {
        unreachable!()
    }
    async fn expire_leases(&self, _: &JobError, _: DateTime<Utc>) -> Result<Vec<Job>, RepoError> {
        unreachable!()
    }
    async fn count_queued(&self, _: Option<&str>) -> Result<u64, RepoError> {
        unreachable!()
    }
    async fn fail_queued(&self, _: &JobError, _: DateTime<Utc>) -> Result<u64, RepoError> {
        unreachable!()
    }
}

#[derive(Default)]
struct Settings(Mutex<HashMap<String, String>>);

#[async_trait]
impl SettingsRepository for Settings {
    async fn get(&self, key: &str) -> Result<Option<String>, RepoError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn put(&self, key: &str, value: &str) -> Result<(), RepoError> {
        self.0.lock().unwrap().insert(key.into(), value.into());
        Ok(())
    }
    async fn list(&self) -> Result<Vec<(String, String)>, RepoError> {
        unreachable!()
    }
    async fn delete(&self, _: &str) -> Result<bool, RepoError> {
        unreachable!()
    }
}

/// No samples yet.
struct NoHistory;

#[async_trait]
impl StorageHistory for NoHistory {
    async fn record(&self, _: NaiveDate, _: u64) -> Result<(), RepoError> {
        unreachable!()
    }
    async fn list(&self, _: NaiveDate, _: NaiveDate) -> Result<Vec<StorageSample>, RepoError> {
        Ok(Vec::new())
    }
    async fn latest_on_or_before(&self, _: NaiveDate) -> Result<Option<StorageSample>, RepoError> {
        Ok(None)
    }
}

struct NoQuota;

#[async_trait]
impl StorageFigures for NoQuota {
    async fn usage(&self) -> Result<StorageUsage, CommonError> {
        Ok(StorageUsage {
            stored_bytes: 0,
            quota: Quota {
                max_bytes: None,
                warning_bytes: None,
            },
            state: QuotaState::Ok,
        })
    }
}

/// Keeps what it sends; fails while `down`.
#[derive(Default)]
struct Outbox {
    sent: Mutex<Vec<(String, String)>>,
    down: AtomicBool,
}

#[async_trait]
impl DigestSender for Outbox {
    async fn send_digest(&self, subject: &str, body: &str) -> Result<(), NotifyError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(NotifyError("the SMTP server 127.0.0.1:25 refused".into()));
        }
        self.sent
            .lock()
            .unwrap()
            .push((subject.into(), body.into()));
        Ok(())
    }
}

fn t(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, day, h, m, 0).unwrap()
}

/// `n` backups of `docs` on 5 December (every third failed), one on the 4th and one on
/// the 6th (neither in the digest of the 5th).
fn jobs(n: u32) -> Vec<Job> {
    let mut out = Vec::new();
    let mut push = |i: u32, at: DateTime<Utc>, failed: bool| {
        let mut job = Job::queued(
            format!("0190a5b4-0000-7000-8000-{i:012}").parse().unwrap(),
            JobParams::Backup {
                source_id: coffer_domain::SourceId::new(1),
                source_name: "docs".into(),
            },
            "scheduler",
            at,
        );
        job.started_at = Some(at);
        job.finished_at = Some(at + TimeDelta::seconds(1));
        if failed {
            job.state = JobState::Failed;
            job.error = Some(JobError::new("invalid", format!("failure {i}")));
        } else {
            job.state = JobState::Cancelled;
        }
        out.push(job);
    };
    for i in 0..n {
        push(
            i,
            t(5, 0, 0) + TimeDelta::seconds(i64::from(i) * 60),
            i % 3 == 0,
        );
    }
    push(n, t(4, 23, 59), true);
    push(n + 1, t(6, 0, 0), true);
    out
}

struct World {
    service: DigestService,
    clock: Arc<At>,
    outbox: Arc<Outbox>,
    state: Arc<Settings>,
}

fn world(n: u32) -> World {
    let clock = Arc::new(At(Mutex::new(t(6, 6, 59))));
    let outbox = Arc::new(Outbox::default());
    let state = Arc::new(Settings::default());
    let sources = Arc::new(FakeSources::default());
    let mut idle = SourceSpec::plain("photos", "/srv/photos");
    idle.schedule = Some(coffer_domain::schedule::Schedule::parse("0 1 * * *").unwrap());
    block_on(sources.create(&idle, t(1, 0, 0))).unwrap();
    block_on(sources.create(&SourceSpec::plain("manual", "/srv/manual"), t(1, 0, 0))).unwrap();
    let service = DigestService::new(
        DigestPorts {
            jobs: Arc::new(Jobs(jobs(n))),
            sources,
            history: Arc::new(NoHistory),
            storage: Arc::new(NoQuota),
            state: state.clone(),
        },
        outbox.clone(),
        NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        clock.clone(),
    );
    World {
        service,
        clock,
        outbox,
        state,
    }
}

#[test]
fn the_digest_goes_out_once_after_its_hour_with_every_job_of_the_day() {
    let w = world(1_203);
    assert_eq!(block_on(w.service.tick()).unwrap(), DigestTick::NotDue);
    assert!(w.outbox.sent.lock().unwrap().is_empty());

    *w.clock.0.lock().unwrap() = t(6, 7, 0);
    let day = NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
    assert_eq!(block_on(w.service.tick()).unwrap(), DigestTick::Sent(day));
    let sent = w.outbox.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let (subject, body) = &sent[0];
    // 1,203 runs, more than two pages of the listing: 401 failed, 802 cancelled.
    assert_eq!(
        subject,
        "[Coffer] daily digest for 2026-12-05: 1203 backups, 401 FAILED"
    );
    assert!(
        body.contains(
            "  - docs: 0 succeeded, 401 FAILED, 802 cancelled\n      last failure: failure 1200\n"
        ),
        "{body}"
    );
    assert!(
        body.contains("Scheduled sources without a backup that day: photos."),
        "only scheduled sources are expected to run: {body}"
    );
    assert_eq!(
        w.state
            .0
            .lock()
            .unwrap()
            .get(LAST_DAY_KEY)
            .map(String::as_str),
        Some("2026-12-05")
    );

    *w.clock.0.lock().unwrap() = t(6, 23, 0);
    assert_eq!(block_on(w.service.tick()).unwrap(), DigestTick::NotDue);
    assert_eq!(w.outbox.sent.lock().unwrap().len(), 1, "once a day");
}

#[test]
fn a_digest_that_could_not_be_sent_is_sent_at_the_next_tick() {
    let w = world(2);
    *w.clock.0.lock().unwrap() = t(6, 8, 0);
    w.outbox.down.store(true, Ordering::SeqCst);
    let err = block_on(w.service.tick()).unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(w.state.0.lock().unwrap().get(LAST_DAY_KEY), None);

    w.outbox.down.store(false, Ordering::SeqCst);
    assert!(matches!(
        block_on(w.service.tick()).unwrap(),
        DigestTick::Sent(_)
    ));
    assert_eq!(w.outbox.sent.lock().unwrap().len(), 1);
}
