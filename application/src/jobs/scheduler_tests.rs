//! Tests of the [`Scheduler`] with a test clock, in-memory repositories and a fake job
//! runner that remembers which jobs are still queued or running. Time only moves when a
//! test sets the clock, so every case is exact and instant.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use futures::executor::block_on;

use coffer_domain::auth::Actor;
use coffer_domain::ports::{Clock, RepoError, SettingsRepository, SourceRepository, SourceSpec};
use coffer_domain::replicas::{
    LagLimits, Replica, ReplicaLocation, ReplicaName, ReplicaRepository, ReplicaSpec,
};
use coffer_domain::schedule::Schedule;
use coffer_domain::{JobId, SourceId};

use super::{
    Dispatch, DispatchError, Fired, Outcome, Scheduler, SchedulerOptions, Subject, Task,
    default_grace,
};
use crate::test_fakes::FakeSources;

// ---------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------

/// 2026-03-01 is a Sunday.
fn at(day: u32, hour: u32, min: u32, sec: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, min, sec).unwrap()
}

/// A clock that shows what the test set.
struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Settings in memory; every call fails while `broken` is set.
#[derive(Default)]
struct FakeSettings {
    values: Mutex<BTreeMap<String, String>>,
    broken: AtomicBool,
}

impl FakeSettings {
    fn check(&self) -> Result<(), RepoError> {
        if self.broken.load(Ordering::SeqCst) {
            Err(RepoError::Database("connection lost".into()))
        } else {
            Ok(())
        }
    }

    fn value(&self, key: &str) -> Option<String> {
        self.values.lock().unwrap().get(key).cloned()
    }
}

#[async_trait]
impl SettingsRepository for FakeSettings {
    async fn get(&self, key: &str) -> Result<Option<String>, RepoError> {
        self.check()?;
        Ok(self.value(key))
    }

    async fn put(&self, key: &str, value: &str) -> Result<(), RepoError> {
        self.check()?;
        self.values
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(String, String)>, RepoError> {
        self.check()?;
        Ok(self
            .values
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<bool, RepoError> {
        self.check()?;
        Ok(self.values.lock().unwrap().remove(key).is_some())
    }
}

/// A job runner that only keeps books: which jobs were started, and which are still
/// queued or running (those of subjects the test holds, until it finishes them).
#[derive(Default)]
struct FakeDispatch(Mutex<Books>);

#[derive(Default)]
struct Books {
    issued: u128,
    /// Every job started, by subject (`backup:1`, `prune`, `check:25`), in order.
    started: Vec<String>,
    /// Every call, started or not.
    calls: usize,
    /// Subjects whose jobs stay running until `finish`.
    hold: HashSet<String>,
    /// Subjects whose dispatch fails.
    failing: HashSet<String>,
    running: HashMap<String, JobId>,
}

impl FakeDispatch {
    fn start(&self, subject: &str, label: String) -> Result<JobId, DispatchError> {
        let mut books = self.0.lock().unwrap();
        books.calls += 1;
        if books.failing.contains(subject) {
            return Err(DispatchError::Unexpected(anyhow::anyhow!(
                "the runner broke for {subject}"
            )));
        }
        if let Some(job_id) = books.running.get(subject) {
            return Err(DispatchError::StillRunning(*job_id));
        }
        books.issued += 1;
        let id = JobId::from_uuid(uuid::Uuid::from_u128(books.issued));
        books.started.push(label);
        if books.hold.contains(subject) {
            books.running.insert(subject.to_owned(), id);
        }
        Ok(id)
    }

    fn started(&self) -> Vec<String> {
        self.0.lock().unwrap().started.clone()
    }

    fn calls(&self) -> usize {
        self.0.lock().unwrap().calls
    }

    fn hold(&self, subject: &str) {
        self.0.lock().unwrap().hold.insert(subject.to_owned());
    }

    fn finish(&self, subject: &str) {
        self.0.lock().unwrap().running.remove(subject);
    }

    fn fail(&self, subject: &str) {
        self.0.lock().unwrap().failing.insert(subject.to_owned());
    }
}

#[async_trait]
impl Dispatch for FakeDispatch {
    async fn backup(&self, source: SourceId) -> Result<JobId, DispatchError> {
        let subject = format!("backup:{source}");
        self.start(&subject, subject.clone())
    }

    async fn prune(&self) -> Result<JobId, DispatchError> {
        self.start("prune", "prune".to_owned())
    }

    async fn check(&self, share_percent: u8) -> Result<JobId, DispatchError> {
        self.start("check", format!("check:{share_percent}"))
    }

    async fn copy(&self, replica: &str) -> Result<JobId, DispatchError> {
        let subject = format!("copy:{replica}");
        self.start(&subject, subject.clone())
    }
}

/// Replicas in memory (the scheduler reads them and writes their plan).
#[derive(Default)]
struct FakeReplicas(Mutex<Vec<Replica>>);

impl FakeReplicas {
    fn add(&self, name: &str, schedule: Option<&str>, now: DateTime<Utc>) {
        self.0.lock().unwrap().push(Replica {
            spec: ReplicaSpec {
                name: ReplicaName::parse(name).unwrap(),
                location: ReplicaLocation::Fs {
                    root: format!("/mnt/{name}"),
                },
                append_only: false,
                schedule: schedule.map(|s| Schedule::parse(s).unwrap()),
                lag: LagLimits::default(),
            },
            from_config: false,
            created_at: now,
            last_success_at: None,
            copied_through: None,
            last_failure_at: None,
            last_error: None,
            next_run_at: None,
            last_run_at: None,
        });
    }

    fn one(&self, name: &str) -> Replica {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.spec.name.as_str() == name)
            .cloned()
            .unwrap()
    }
}

#[async_trait]
impl ReplicaRepository for FakeReplicas {
    async fn create(
        &self,
        _: &ReplicaSpec,
        _: bool,
        _: DateTime<Utc>,
    ) -> Result<Replica, RepoError> {
        unreachable!("the scheduler creates no replica")
    }
    async fn get(&self, name: &ReplicaName) -> Result<Option<Replica>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|r| &r.spec.name == name)
            .cloned())
    }
    async fn list(&self) -> Result<Vec<Replica>, RepoError> {
        Ok(self.0.lock().unwrap().clone())
    }
    async fn update(&self, _: &ReplicaSpec, _: bool) -> Result<bool, RepoError> {
        unreachable!("the scheduler changes no replica")
    }
    async fn delete(&self, _: &ReplicaName) -> Result<bool, RepoError> {
        unreachable!("the scheduler deletes no replica")
    }
    async fn record_success(
        &self,
        _: &ReplicaName,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<(), RepoError> {
        unreachable!("the scheduler records no copy")
    }
    async fn record_failure(
        &self,
        _: &ReplicaName,
        _: DateTime<Utc>,
        _: &str,
    ) -> Result<(), RepoError> {
        unreachable!("the scheduler records no copy")
    }
    async fn set_plan(
        &self,
        name: &ReplicaName,
        next_run_at: Option<DateTime<Utc>>,
        last_run_at: Option<DateTime<Utc>>,
    ) -> Result<(), RepoError> {
        for r in self.0.lock().unwrap().iter_mut() {
            if &r.spec.name == name {
                r.next_run_at = next_run_at;
                r.last_run_at = last_run_at;
            }
        }
        Ok(())
    }
}

struct World {
    clock: Arc<TestClock>,
    sources: Arc<FakeSources>,
    settings: Arc<FakeSettings>,
    dispatch: Arc<FakeDispatch>,
}

impl World {
    /// Starts at Sunday 2026-03-01 12:00:00.
    fn new() -> Self {
        Self {
            clock: Arc::new(TestClock(Mutex::new(at(1, 12, 0, 0)))),
            sources: Arc::default(),
            settings: Arc::default(),
            dispatch: Arc::default(),
        }
    }

    fn scheduler(&self, options: SchedulerOptions) -> Scheduler {
        Scheduler::new(
            self.sources.clone(),
            self.settings.clone(),
            self.dispatch.clone(),
            self.clock.clone(),
            options,
        )
    }

    fn source(&self, name: &str, schedule: Option<&str>) -> SourceId {
        let spec = SourceSpec {
            schedule: schedule.map(|s| Schedule::parse(s).unwrap()),
            ..SourceSpec::plain(name, &format!("/srv/{name}"))
        };
        block_on(self.sources.create(&spec, self.clock.now()))
            .unwrap()
            .id
    }

    /// Sets the clock and ticks.
    fn tick_at(&self, scheduler: &Scheduler, t: DateTime<Utc>) -> Vec<Fired> {
        self.clock.set(t);
        let report = block_on(scheduler.tick());
        assert_eq!(report.errors, Vec::<String>::new(), "tick at {t}");
        report.fired
    }
}

/// Sources only: no global task.
fn options() -> SchedulerOptions {
    SchedulerOptions {
        enabled: true,
        catch_up: true,
        grace: default_grace(),
        prune: None,
        check: None,
        check_share_percent: 10,
    }
}

fn cron(text: &str) -> Schedule {
    Schedule::parse(text).unwrap()
}

fn backup_subject(world: &World, id: SourceId) -> Subject {
    Subject::Source {
        id,
        name: world.sources.one(id).name,
    }
}

fn started(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Started { .. })
}

// ---------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------

#[test]
fn a_schedule_fires_at_its_time_and_not_before() {
    let w = World::new();
    let docs = w.source("docs", Some("0 3 * * *"));
    let s = w.scheduler(options());

    // First sight: planned for the next 03:00, nothing started.
    assert!(w.tick_at(&s, at(1, 12, 0, 0)).is_empty());
    assert_eq!(w.sources.one(docs).next_run_at, Some(at(2, 3, 0, 0)));
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(2, 3, 0, 0)));

    assert!(
        w.tick_at(&s, at(2, 2, 59, 59)).is_empty(),
        "one second early"
    );
    assert!(w.dispatch.started().is_empty());

    let fired = w.tick_at(&s, at(2, 3, 0, 0));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, backup_subject(&w, docs));
    assert_eq!(fired[0].due_at, at(2, 3, 0, 0));
    assert!(
        matches!(
            fired[0].outcome,
            Outcome::Started {
                catch_up: false,
                ..
            }
        ),
        "{fired:?}"
    );
    assert_eq!(w.dispatch.started(), ["backup:1"]);
    let after = w.sources.one(docs);
    assert_eq!(after.last_run_at, Some(at(2, 3, 0, 0)));
    assert_eq!(
        after.next_run_at,
        Some(at(3, 3, 0, 0)),
        "strictly after now"
    );

    // Ticking again in the same minute starts nothing more.
    assert!(w.tick_at(&s, at(2, 3, 0, 40)).is_empty());
    assert_eq!(w.dispatch.started().len(), 1);

    let status = block_on(s.status(&Actor::local_admin("test"))).unwrap();
    assert_eq!(status.sources.len(), 1);
    let row = &status.sources[0];
    assert_eq!(
        (
            row.source_name.as_str(),
            row.schedule.as_ref().map(Schedule::as_str),
            row.enabled
        ),
        ("docs", Some("0 3 * * *"), true)
    );
    assert_eq!(
        (row.last_run_at, row.next_run_at),
        (Some(at(2, 3, 0, 0)), Some(at(3, 3, 0, 0)))
    );
}

#[test]
fn a_run_never_overlaps_the_previous_one_and_the_next_still_fires() {
    let w = World::new();
    let docs = w.source("docs", Some("*/10 * * * *"));
    w.dispatch.hold("backup:1");
    let s = w.scheduler(options());
    w.tick_at(&s, at(1, 12, 0, 0));

    let fired = w.tick_at(&s, at(1, 12, 10, 0));
    assert!(started(&fired[0].outcome));
    let Outcome::Started { job_id: first, .. } = fired[0].outcome else {
        unreachable!()
    };

    // Still running at the next occurrence: skipped, not queued behind it.
    let fired = w.tick_at(&s, at(1, 12, 20, 0));
    assert_eq!(
        fired[0].outcome,
        Outcome::StillRunning { job_id: first },
        "{fired:?}"
    );
    assert_eq!(w.dispatch.started(), ["backup:1"], "no second job");
    let after = w.sources.one(docs);
    assert_eq!(
        after.last_run_at,
        Some(at(1, 12, 10, 0)),
        "last run unchanged"
    );
    assert_eq!(
        after.next_run_at,
        Some(at(1, 12, 30, 0)),
        "next one planned"
    );

    // It ends; the next occurrence fires as usual.
    w.dispatch.finish("backup:1");
    let fired = w.tick_at(&s, at(1, 12, 30, 0));
    assert!(started(&fired[0].outcome), "{fired:?}");
    assert_eq!(w.dispatch.started(), ["backup:1", "backup:1"]);
    assert_eq!(w.sources.one(docs).last_run_at, Some(at(1, 12, 30, 0)));
}

#[test]
fn downtime_over_several_occurrences_catches_up_exactly_once() {
    let w = World::new();
    let docs = w.source("docs", Some("0 * * * *"));
    let s = w.scheduler(options());
    w.tick_at(&s, at(1, 12, 0, 0));
    assert_eq!(w.sources.one(docs).next_run_at, Some(at(1, 13, 0, 0)));

    // The server was down from 12:00 to 17:30: 13, 14, 15, 16 and 17 o'clock missed.
    // A new process (a new scheduler) starts over the persisted plan.
    let s = w.scheduler(options());
    let fired = w.tick_at(&s, at(1, 17, 30, 0));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].due_at, at(1, 13, 0, 0));
    assert!(
        matches!(fired[0].outcome, Outcome::Started { catch_up: true, .. }),
        "{fired:?}"
    );
    assert_eq!(w.dispatch.started(), ["backup:1"]);
    let after = w.sources.one(docs);
    assert_eq!(
        (after.last_run_at, after.next_run_at),
        (Some(at(1, 17, 30, 0)), Some(at(1, 18, 0, 0)))
    );

    // Nothing more until the next occurrence, which is on time again.
    assert!(w.tick_at(&s, at(1, 17, 31, 0)).is_empty());
    assert!(w.tick_at(&s, at(1, 17, 59, 59)).is_empty());
    let fired = w.tick_at(&s, at(1, 18, 0, 5));
    assert!(
        matches!(
            fired[0].outcome,
            Outcome::Started {
                catch_up: false,
                ..
            }
        ),
        "{fired:?}"
    );
    assert_eq!(w.dispatch.started().len(), 2);
}

#[test]
fn without_catch_up_a_missed_run_is_skipped() {
    let w = World::new();
    let docs = w.source("docs", Some("0 * * * *"));
    let s = w.scheduler(SchedulerOptions {
        catch_up: false,
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));

    let fired = w.tick_at(&s, at(1, 17, 30, 0));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].outcome, Outcome::Missed);
    assert_eq!(w.dispatch.calls(), 0, "no job, not even an attempt");
    let after = w.sources.one(docs);
    assert_eq!(
        (after.last_run_at, after.next_run_at),
        (None, Some(at(1, 18, 0, 0)))
    );

    let fired = w.tick_at(&s, at(1, 18, 0, 0));
    assert!(started(&fired[0].outcome), "the next one runs: {fired:?}");
    assert_eq!(w.dispatch.started(), ["backup:1"]);
}

#[test]
fn a_tick_late_within_the_grace_is_on_time() {
    let w = World::new();
    w.source("docs", Some("0 * * * *"));
    let s = w.scheduler(SchedulerOptions {
        catch_up: false,
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));
    let fired = w.tick_at(&s, at(1, 13, 2, 0));
    assert!(
        matches!(
            fired[0].outcome,
            Outcome::Started {
                catch_up: false,
                ..
            }
        ),
        "exactly the grace late: {fired:?}"
    );
    let fired = w.tick_at(&s, at(1, 14, 2, 1));
    assert_eq!(
        fired[0].outcome,
        Outcome::Missed,
        "one second past the grace"
    );
}

#[test]
fn disabled_and_unscheduled_sources_never_fire() {
    let w = World::new();
    let plain = w.source("plain", None);
    let paused = w.source("paused", Some("* * * * *"));
    let busy = w.source("busy", Some("* * * * *"));
    block_on(w.sources.set_enabled(paused, false, at(1, 12, 0, 0))).unwrap();
    let s = w.scheduler(options());

    for minute in 0..=90 {
        w.tick_at(&s, at(1, 12, 0, 0) + TimeDelta::minutes(minute));
    }
    let started = w.dispatch.started();
    assert_eq!(started.len(), 90, "every minute after the first sight");
    assert!(started.iter().all(|s| *s == format!("backup:{busy}")));
    assert_eq!(w.sources.one(plain).next_run_at, None);
    assert_eq!(w.sources.one(paused).next_run_at, None);
    assert_eq!(w.sources.one(paused).last_run_at, None);

    let status = block_on(s.status(&Actor::local_admin("test"))).unwrap();
    let by_name: HashMap<&str, _> = status
        .sources
        .iter()
        .map(|r| (r.source_name.as_str(), r))
        .collect();
    assert_eq!(by_name["plain"].next_run_at, None);
    assert!(!by_name["paused"].enabled);
    assert_eq!(by_name["paused"].next_run_at, None);
    assert!(by_name["busy"].next_run_at.is_some());

    // Back on after a long pause: planned from now, no catch-up of the paused time.
    block_on(w.sources.set_enabled(paused, true, at(1, 13, 30, 30))).unwrap();
    let fired = w.tick_at(&s, at(1, 13, 30, 30));
    assert!(
        fired
            .iter()
            .all(|f| f.subject != backup_subject(&w, paused)),
        "{fired:?}"
    );
    assert_eq!(w.sources.one(paused).next_run_at, Some(at(1, 13, 31, 0)));
}

#[test]
fn a_changed_schedule_is_planned_afresh() {
    let w = World::new();
    let docs = w.source("docs", Some("0 3 * * *"));
    let s = w.scheduler(options());
    w.tick_at(&s, at(1, 12, 0, 0));
    assert_eq!(w.sources.one(docs).next_run_at, Some(at(2, 3, 0, 0)));

    let spec = SourceSpec {
        schedule: Some(Schedule::parse("30 12 * * *").unwrap()),
        ..SourceSpec::plain("docs", "/srv/docs")
    };
    block_on(w.sources.update(docs, &spec, at(1, 12, 5, 0))).unwrap();
    assert!(w.tick_at(&s, at(1, 12, 6, 0)).is_empty());
    assert_eq!(w.sources.one(docs).next_run_at, Some(at(1, 12, 30, 0)));
    let fired = w.tick_at(&s, at(1, 12, 30, 0));
    assert!(started(&fired[0].outcome));
}

#[test]
fn a_dispatch_error_does_not_stop_the_others() {
    let w = World::new();
    let broken = w.source("a-broken", Some("0 * * * *"));
    let fine = w.source("b-fine", Some("0 * * * *"));
    w.dispatch.fail(&format!("backup:{broken}"));
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("0 * * * *")),
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));

    let fired = w.tick_at(&s, at(1, 13, 0, 0));
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!(
        matches!(&fired[0].outcome, Outcome::Failed { code, .. } if code == "internal"),
        "{fired:?}"
    );
    assert!(started(&fired[1].outcome));
    assert_eq!(fired[2].subject, Subject::Task(Task::Prune));
    assert!(started(&fired[2].outcome));
    assert_eq!(
        w.dispatch.started(),
        [format!("backup:{fine}"), "prune".into()]
    );
    // The failed one is planned again like the others, with no run recorded.
    let after = w.sources.one(broken);
    assert_eq!(
        (after.last_run_at, after.next_run_at),
        (None, Some(at(1, 14, 0, 0)))
    );
}

#[test]
fn a_broken_settings_store_stops_only_the_global_tasks() {
    let w = World::new();
    w.source("docs", Some("0 * * * *"));
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("0 * * * *")),
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));
    w.settings.broken.store(true, Ordering::SeqCst);
    w.clock.set(at(1, 13, 0, 0));
    let report = block_on(s.tick());
    assert_eq!(report.fired.len(), 1);
    assert!(started(&report.fired[0].outcome));
    assert_eq!(
        report.errors.len(),
        2,
        "prune and check: {:?}",
        report.errors
    );
    assert!(
        report.errors[0].starts_with("prune:"),
        "{:?}",
        report.errors
    );
    assert_eq!(w.dispatch.started(), ["backup:1"]);
}

// ---------------------------------------------------------------------------------------
// Global tasks
// ---------------------------------------------------------------------------------------

#[test]
fn global_tasks_fire_and_persist_next_and_last() {
    let w = World::new();
    let with_tasks = || SchedulerOptions {
        prune: Some(cron("30 3 * * *")),
        check: Some(cron("0 4 * * 0")),
        check_share_percent: 25,
        ..options()
    };
    let s = w.scheduler(with_tasks());
    assert!(w.tick_at(&s, at(1, 12, 0, 0)).is_empty());
    assert_eq!(
        w.settings.value("scheduler.prune.next_run_at").as_deref(),
        Some("\"2026-03-02T03:30:00Z\"")
    );
    assert_eq!(
        w.settings.value("scheduler.check.next_run_at").as_deref(),
        Some("\"2026-03-08T04:00:00Z\""),
        "the next Sunday"
    );
    assert_eq!(
        w.settings.value("scheduler.prune.schedule").as_deref(),
        Some("\"30 3 * * *\"")
    );
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(2, 3, 30, 0)));

    let fired = w.tick_at(&s, at(2, 3, 30, 0));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].subject, Subject::Task(Task::Prune));
    assert!(started(&fired[0].outcome));
    assert_eq!(
        w.settings.value("scheduler.prune.last_run_at").as_deref(),
        Some("\"2026-03-02T03:30:00Z\"")
    );
    assert_eq!(
        w.settings.value("scheduler.prune.next_run_at").as_deref(),
        Some("\"2026-03-03T03:30:00Z\"")
    );

    // A restart after days away: the check is on time; the prune, missed on several
    // nights, catches up once.
    let s = w.scheduler(with_tasks());
    let fired = w.tick_at(&s, at(8, 4, 0, 0));
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[0].subject, Subject::Task(Task::Prune));
    assert!(matches!(
        fired[0].outcome,
        Outcome::Started { catch_up: true, .. }
    ));
    assert_eq!(fired[1].subject, Subject::Task(Task::Check));
    assert!(matches!(
        fired[1].outcome,
        Outcome::Started {
            catch_up: false,
            ..
        }
    ));
    assert_eq!(w.dispatch.started(), ["prune", "prune", "check:25"]);

    let status = block_on(s.status(&Actor::local_admin("test"))).unwrap();
    assert!(status.enabled && status.catch_up);
    assert_eq!(status.tasks.len(), 2);
    let prune = &status.tasks[0];
    assert_eq!(prune.task, Task::Prune);
    assert_eq!(prune.schedule.as_deref(), Some("30 3 * * *"));
    assert_eq!(
        (prune.last_run_at, prune.next_run_at),
        (Some(at(8, 4, 0, 0)), Some(at(9, 3, 30, 0)))
    );
    assert_eq!(prune.share_percent, None);
    let check = &status.tasks[1];
    assert_eq!(
        (check.last_run_at, check.next_run_at),
        (Some(at(8, 4, 0, 0)), Some(at(15, 4, 0, 0)))
    );
    assert_eq!(check.share_percent, Some(25));
}

#[test]
fn a_task_still_running_is_not_started_again() {
    let w = World::new();
    w.dispatch.hold("prune");
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("0 * * * *")),
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));
    assert!(started(&w.tick_at(&s, at(1, 13, 0, 0))[0].outcome));
    let fired = w.tick_at(&s, at(1, 14, 0, 0));
    assert!(
        matches!(fired[0].outcome, Outcome::StillRunning { .. }),
        "{fired:?}"
    );
    assert_eq!(
        w.settings.value("scheduler.prune.last_run_at").as_deref(),
        Some("\"2026-03-01T13:00:00Z\"")
    );
    w.dispatch.finish("prune");
    assert!(started(&w.tick_at(&s, at(1, 15, 0, 0))[0].outcome));
    assert_eq!(w.dispatch.started(), ["prune", "prune"]);
}

#[test]
fn a_changed_task_schedule_does_not_catch_up_the_old_plan() {
    let w = World::new();
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("30 3 * * *")),
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));
    // Restarted days later with another prune schedule.
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("0 5 * * *")),
        ..options()
    });
    assert!(w.tick_at(&s, at(5, 12, 0, 0)).is_empty());
    assert_eq!(w.dispatch.calls(), 0);
    assert_eq!(
        w.settings.value("scheduler.prune.next_run_at").as_deref(),
        Some("\"2026-03-06T05:00:00Z\"")
    );
}

#[test]
fn an_empty_task_schedule_turns_the_task_off() {
    let w = World::new();
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("0 * * * *")),
        ..options()
    });
    w.tick_at(&s, at(1, 12, 0, 0));
    assert!(w.settings.value("scheduler.prune.next_run_at").is_some());

    let s = w.scheduler(options());
    for hour in 12..=20 {
        assert!(w.tick_at(&s, at(1, hour, 0, 0)).is_empty());
    }
    assert_eq!(w.dispatch.calls(), 0);
    assert_eq!(w.settings.value("scheduler.prune.next_run_at"), None);
    let status = block_on(s.status(&Actor::local_admin("test"))).unwrap();
    assert_eq!(
        (
            status.tasks[0].schedule.clone(),
            status.tasks[0].next_run_at
        ),
        (None, None)
    );
    assert_eq!(block_on(s.next_wakeup()).unwrap(), None);

    // Scheduled again later: planned from then, nothing caught up.
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("0 * * * *")),
        ..options()
    });
    assert!(w.tick_at(&s, at(2, 9, 30, 0)).is_empty());
    assert_eq!(
        w.settings.value("scheduler.prune.next_run_at").as_deref(),
        Some("\"2026-03-02T10:00:00Z\"")
    );
}

// ---------------------------------------------------------------------------------------
// Wake-ups and the switch
// ---------------------------------------------------------------------------------------

#[test]
fn next_wakeup_is_the_earliest_planned_run() {
    let w = World::new();
    w.source("daily", Some("0 3 * * *"));
    w.source("quarter", Some("*/15 * * * *"));
    w.source("plain", None);
    let s = w.scheduler(SchedulerOptions {
        prune: Some(cron("20 12 * * *")),
        ..options()
    });
    // Before the first tick: what it will plan.
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(1, 12, 15, 0)));
    w.tick_at(&s, at(1, 12, 0, 0));
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(1, 12, 15, 0)));
    w.tick_at(&s, at(1, 12, 15, 0));
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(1, 12, 20, 0)));
    w.tick_at(&s, at(1, 12, 20, 0));
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(1, 12, 30, 0)));
    assert_eq!(w.dispatch.started(), ["backup:2", "prune"]);
}

#[test]
fn a_disabled_scheduler_does_nothing() {
    let w = World::new();
    let docs = w.source("docs", Some("* * * * *"));
    let s = w.scheduler(SchedulerOptions {
        enabled: false,
        prune: Some(cron("* * * * *")),
        ..options()
    });
    for minute in 0..10 {
        assert!(
            w.tick_at(&s, at(1, 12, 0, 0) + TimeDelta::minutes(minute))
                .is_empty()
        );
    }
    assert_eq!(w.dispatch.calls(), 0);
    assert_eq!(w.sources.one(docs).next_run_at, None);
    assert_eq!(block_on(s.next_wakeup()).unwrap(), None);
    let status = block_on(s.status(&Actor::local_admin("test"))).unwrap();
    assert!(!status.enabled);
    assert_eq!(status.sources[0].next_run_at, None);
    assert_eq!(status.tasks[0].next_run_at, None);
}

// ---------------------------------------------------------------------------------------
// Replicas
// ---------------------------------------------------------------------------------------

#[test]
fn replica_copies_follow_the_same_rules_as_backups() {
    let w = World::new();
    let replicas = Arc::new(FakeReplicas::default());
    replicas.add("nas", Some("0 2 * * *"), w.clock.now());
    replicas.add("manual", None, w.clock.now());
    let s = w.scheduler(options()).with_replicas(replicas.clone());
    // Planned, not fired, at the first tick; the plan is the next wakeup.
    assert!(w.tick_at(&s, at(1, 12, 0, 0)).is_empty());
    assert_eq!(replicas.one("nas").next_run_at, Some(at(2, 2, 0, 0)));
    assert_eq!(block_on(s.next_wakeup()).unwrap(), Some(at(2, 2, 0, 0)));
    assert!(w.tick_at(&s, at(2, 1, 59, 59)).is_empty());

    w.dispatch.hold("copy:nas");
    let fired = w.tick_at(&s, at(2, 2, 0, 1));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].subject, Subject::Replica { name: "nas".into() });
    assert!(started(&fired[0].outcome));
    let nas = replicas.one("nas");
    assert_eq!(
        (nas.last_run_at, nas.next_run_at),
        (Some(at(2, 2, 0, 1)), Some(at(3, 2, 0, 0)))
    );

    // Still copying a day later: that occurrence is skipped, never overlapped.
    let fired = w.tick_at(&s, at(3, 2, 0, 0));
    assert!(
        matches!(fired[0].outcome, Outcome::StillRunning { .. }),
        "{fired:?}"
    );
    assert_eq!(replicas.one("nas").last_run_at, Some(at(2, 2, 0, 1)));
    w.dispatch.finish("copy:nas");

    // Down for three days: caught up once.
    let fired = w.tick_at(&s, at(7, 9, 0, 0));
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(
        matches!(fired[0].outcome, Outcome::Started { catch_up: true, .. }),
        "{fired:?}"
    );
    assert_eq!(w.dispatch.started(), ["copy:nas", "copy:nas"]);
    assert_eq!(replicas.one("manual").next_run_at, None);
}
