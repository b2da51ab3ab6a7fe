//! In-memory fakes of the ports, shared by the application's unit tests.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use coffer_domain::SourceId;
use coffer_domain::ports::{RepoError, Source, SourceRepository, SourceSpec};
use coffer_domain::schedule::Schedule;

/// Sources, keeping the repository contract's scheduling rules.
#[derive(Default)]
pub(crate) struct FakeSources(Mutex<Vec<Source>>);

impl FakeSources {
    pub(crate) fn one(&self, id: SourceId) -> Source {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .expect("the source exists")
    }

    fn with<T>(
        &self,
        id: SourceId,
        schedule: &Schedule,
        f: impl FnOnce(&mut Source) -> T,
    ) -> Option<T> {
        let mut all = self.0.lock().unwrap();
        all.iter_mut()
            .find(|s| s.id == id && s.schedule.as_ref() == Some(schedule))
            .map(f)
    }
}

#[async_trait]
impl SourceRepository for FakeSources {
    async fn create(&self, spec: &SourceSpec, now: DateTime<Utc>) -> Result<Source, RepoError> {
        let mut all = self.0.lock().unwrap();
        if all.iter().any(|s| s.name == spec.name) {
            return Err(RepoError::Conflict(format!(
                "source `{}` exists",
                spec.name
            )));
        }
        let source = Source {
            id: SourceId::new(i64::try_from(all.len()).unwrap() + 1),
            name: spec.name.clone(),
            path: spec.path.clone(),
            schedule: spec.schedule.clone(),
            retention: spec.retention,
            created_at: now,
            updated_at: now,
            enabled: true,
            last_run_at: None,
            next_run_at: None,
            filter: spec.filter.clone(),
        };
        all.push(source.clone());
        Ok(source)
    }

    async fn get(&self, id: SourceId) -> Result<Option<Source>, RepoError> {
        Ok(self.0.lock().unwrap().iter().find(|s| s.id == id).cloned())
    }

    async fn find_by_name(&self, name: &str) -> Result<Option<Source>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name)
            .cloned())
    }

    async fn find_by_path(&self, path: &str) -> Result<Option<Source>, RepoError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.path == path)
            .cloned())
    }

    async fn list(&self) -> Result<Vec<Source>, RepoError> {
        let mut all = self.0.lock().unwrap().clone();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    async fn update(
        &self,
        id: SourceId,
        spec: &SourceSpec,
        now: DateTime<Utc>,
    ) -> Result<Option<Source>, RepoError> {
        let mut all = self.0.lock().unwrap();
        let Some(s) = all.iter_mut().find(|s| s.id == id) else {
            return Ok(None);
        };
        if s.schedule != spec.schedule {
            s.next_run_at = None;
        }
        s.name.clone_from(&spec.name);
        s.path.clone_from(&spec.path);
        s.schedule.clone_from(&spec.schedule);
        s.retention = spec.retention;
        s.filter.clone_from(&spec.filter);
        s.updated_at = now;
        Ok(Some(s.clone()))
    }

    async fn delete(&self, id: SourceId) -> Result<bool, RepoError> {
        let mut all = self.0.lock().unwrap();
        let before = all.len();
        all.retain(|s| s.id != id);
        Ok(all.len() != before)
    }

    async fn set_enabled(
        &self,
        id: SourceId,
        enabled: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, RepoError> {
        let mut all = self.0.lock().unwrap();
        let Some(s) = all.iter_mut().find(|s| s.id == id) else {
            return Ok(false);
        };
        s.enabled = enabled;
        s.updated_at = now;
        if !enabled {
            s.next_run_at = None;
        }
        Ok(true)
    }

    async fn set_next_run(
        &self,
        id: SourceId,
        for_schedule: &Schedule,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError> {
        Ok(self
            .with(id, for_schedule, |s| s.next_run_at = next)
            .is_some())
    }

    async fn record_run(
        &self,
        id: SourceId,
        for_schedule: &Schedule,
        at: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
    ) -> Result<bool, RepoError> {
        Ok(self
            .with(id, for_schedule, |s| {
                s.last_run_at = Some(at);
                s.next_run_at = next;
            })
            .is_some())
    }
}
