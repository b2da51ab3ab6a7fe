//! Tests of [`ReportService`] over in-memory fakes: permissions, validation, the audit
//! row of each export, CSV paging (every row once, in order, in several writes) and the
//! figures handed to the PDF renderer.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use futures::executor::block_on;

use coffer_domain::audit::{AuditEntry, AuditFilter, AuditRecord};
use coffer_domain::auth::{Actor, ClientInfo, Role};
use coffer_domain::engine::SnapshotSummary;
use coffer_domain::ports::{
    AuditRepository, BackupCatalog, BackupFilter, CatalogEntry, CatalogStats, Clock, Page,
    RepoError, SourceRepository, SourceSpec,
};
use coffer_domain::reports::{
    PDF_HISTORY_ROWS, RenderError, ReportData, ReportRenderer, StorageHistory, StorageSample,
};
use coffer_domain::{BackupId, SnapshotId, SnapshotPrefix, SourceId};

use crate::CodedError as _;
use crate::test_fakes::FakeSources;
use crate::{
    AuditLog, AuditReportFilter, BackupReportFilter, CommonError, Quota, QuotaState, ReportError,
    ReportService, ReportSink, StorageFigures, StorageUsage,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 31, 12, 0, 0).unwrap()
}

struct Fixed;

impl Clock for Fixed {
    fn now(&self) -> DateTime<Utc> {
        now()
    }
}

#[derive(Default)]
struct Catalog(Vec<CatalogEntry>);

#[async_trait]
impl BackupCatalog for Catalog {
    async fn insert(
        &self,
        _: &SnapshotSummary,
        _: Option<SourceId>,
    ) -> Result<CatalogEntry, RepoError> {
        unreachable!("reports never write the catalog")
    }
    async fn list(&self, _: u64) -> Result<Vec<CatalogEntry>, RepoError> {
        unreachable!()
    }
    async fn find(&self, _: &SnapshotPrefix) -> Result<Option<CatalogEntry>, RepoError> {
        unreachable!()
    }
    async fn latest_for_source(&self, _: SourceId) -> Result<Option<CatalogEntry>, RepoError> {
        unreachable!()
    }
    async fn record_verification(
        &self,
        _: &SnapshotId,
        _: DateTime<Utc>,
        _: &str,
    ) -> Result<(), RepoError> {
        unreachable!()
    }
    async fn query(&self, f: &BackupFilter) -> Result<Page<CatalogEntry>, RepoError> {
        let mut rows: Vec<CatalogEntry> = self
            .0
            .iter()
            .filter(|r| f.source_id.is_none_or(|s| r.source_id == Some(s)))
            .filter(|r| f.from.is_none_or(|t| r.created_at >= t))
            .filter(|r| f.to.is_none_or(|t| r.created_at < t))
            .cloned()
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));
        let total = rows.len() as u64;
        let limit = if f.limit == 0 {
            usize::MAX
        } else {
            usize::try_from(f.limit).unwrap()
        };
        Ok(Page {
            items: rows
                .into_iter()
                .skip(usize::try_from(f.offset).unwrap())
                .take(limit)
                .collect(),
            total,
        })
    }
    async fn delete(&self, _: &SnapshotId) -> Result<bool, RepoError> {
        unreachable!()
    }
    async fn set_protected(&self, _: &SnapshotId, _: bool) -> Result<bool, RepoError> {
        unreachable!()
    }
    async fn stats(&self) -> Result<CatalogStats, RepoError> {
        Ok(CatalogStats {
            logical_bytes: self.0.iter().map(|r| r.size).sum(),
            total: self.0.len() as u64,
            ..CatalogStats::default()
        })
    }
    async fn latest_per_source(&self) -> Result<Vec<(SourceId, CatalogEntry)>, RepoError> {
        unreachable!()
    }
}

#[derive(Default)]
struct Trail(Mutex<Vec<AuditRecord>>);

impl Trail {
    fn rows(&self) -> Vec<AuditRecord> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl AuditRepository for Trail {
    async fn append(
        &self,
        entry: &AuditEntry,
        now: DateTime<Utc>,
    ) -> Result<AuditRecord, RepoError> {
        let mut rows = self.0.lock().unwrap();
        let record = AuditRecord {
            id: i64::try_from(rows.len()).unwrap() + 1,
            timestamp: now,
            entry: entry.clone(),
            prev_hash: String::new(),
            row_hash: String::new(),
        };
        rows.push(record.clone());
        Ok(record)
    }
    async fn list(&self, f: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>, RepoError> {
        let mut rows: Vec<AuditRecord> = self
            .rows()
            .into_iter()
            .filter(|r| f.username.as_ref().is_none_or(|u| &r.entry.username == u))
            .filter(|r| f.action.as_ref().is_none_or(|a| &r.entry.action == a))
            .filter(|r| f.success.is_none_or(|ok| r.entry.success == ok))
            .filter(|r| f.from.is_none_or(|t| r.timestamp >= t))
            .filter(|r| f.to.is_none_or(|t| r.timestamp < t))
            .filter(|r| f.before_id.is_none_or(|b| r.id < b))
            .collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.id));
        rows.truncate(limit as usize);
        Ok(rows)
    }
    async fn scan(&self, _: i64, _: u32) -> Result<Vec<AuditRecord>, RepoError> {
        unreachable!()
    }
}

struct Storage;

#[async_trait]
impl StorageFigures for Storage {
    async fn usage(&self) -> Result<StorageUsage, CommonError> {
        Ok(StorageUsage {
            stored_bytes: 1_000,
            quota: Quota {
                max_bytes: Some(10_000),
                warning_bytes: None,
            },
            state: QuotaState::Ok,
        })
    }
}

/// The daily samples, with the port's semantics; remembers what was listed and every
/// value recorded, in order.
#[derive(Default)]
struct History {
    listed: Mutex<Vec<(NaiveDate, NaiveDate)>>,
    samples: Mutex<Vec<StorageSample>>,
    recorded: Mutex<Vec<(NaiveDate, u64)>>,
}

impl History {
    fn with(samples: &[(NaiveDate, u64)]) -> Self {
        let h = Self::default();
        for (day, stored_bytes) in samples {
            block_on(h.record(*day, *stored_bytes)).unwrap();
        }
        h.recorded.lock().unwrap().clear();
        h
    }
}

#[async_trait]
impl StorageHistory for History {
    async fn record(&self, day: NaiveDate, stored_bytes: u64) -> Result<(), RepoError> {
        self.recorded.lock().unwrap().push((day, stored_bytes));
        let mut samples = self.samples.lock().unwrap();
        samples.retain(|s| s.day != day);
        samples.push(StorageSample { day, stored_bytes });
        samples.sort_by_key(|s| s.day);
        Ok(())
    }
    async fn list(&self, from: NaiveDate, to: NaiveDate) -> Result<Vec<StorageSample>, RepoError> {
        self.listed.lock().unwrap().push((from, to));
        Ok(self
            .samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.day >= from && s.day <= to)
            .copied()
            .collect())
    }
    async fn latest_on_or_before(
        &self,
        day: NaiveDate,
    ) -> Result<Option<StorageSample>, RepoError> {
        Ok(self
            .samples
            .lock()
            .unwrap()
            .iter()
            .rfind(|s| s.day <= day)
            .copied())
    }
}

/// Writes one line per row (its id) and keeps the PDF's data.
#[derive(Default)]
struct Renderer(Mutex<Option<ReportData>>);

impl ReportRenderer for Renderer {
    fn backups_csv_header(&self, out: &mut dyn Write) -> Result<(), RenderError> {
        Ok(out.write_all(b"id\n")?)
    }
    fn backups_csv_rows(
        &self,
        out: &mut dyn Write,
        rows: &[CatalogEntry],
    ) -> Result<(), RenderError> {
        for r in rows {
            writeln!(out, "{}", r.id.get())?;
        }
        Ok(())
    }
    fn audit_csv_header(&self, out: &mut dyn Write) -> Result<(), RenderError> {
        Ok(out.write_all(b"id\n")?)
    }
    fn audit_csv_rows(&self, out: &mut dyn Write, rows: &[AuditRecord]) -> Result<(), RenderError> {
        for r in rows {
            writeln!(out, "{}", r.id)?;
        }
        Ok(())
    }
    fn pdf(&self, data: &ReportData) -> Result<Vec<u8>, RenderError> {
        *self.0.lock().unwrap() = Some(data.clone());
        Ok(b"%PDF-fake".to_vec())
    }
}

#[derive(Default)]
struct Collect(Vec<Vec<u8>>);

#[async_trait]
impl ReportSink for Collect {
    async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.0.push(bytes);
        Ok(())
    }
}

impl Collect {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.concat())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

struct World {
    service: ReportService,
    trail: Arc<Trail>,
    renderer: Arc<Renderer>,
    history: Arc<History>,
}

fn snapshot(id: i64, source: i64, at: DateTime<Utc>, status: &str) -> CatalogEntry {
    CatalogEntry {
        id: BackupId::new(id),
        snapshot_id: SnapshotId::parse(&format!("{id:064x}")).unwrap(),
        source_id: Some(SourceId::new(source)),
        source_name: format!("s{source}"),
        size: 10,
        created_at: at,
        finished_at: Some(at),
        status: status.parse().unwrap(),
        checksum: String::new(),
        encrypted: true,
        file_count: 1,
        dir_count: 1,
        bytes_added: 1,
        stored_bytes_added: 2,
        duration_ms: 1,
        warnings: vec![],
        parent_snapshot_id: None,
        protected: false,
        verified_at: None,
        verify_result: None,
        suspicious: None,
    }
}

fn world(rows: Vec<CatalogEntry>) -> World {
    world_with(rows, History::default())
}

fn world_with(rows: Vec<CatalogEntry>, history: History) -> World {
    let trail = Arc::new(Trail::default());
    let renderer = Arc::new(Renderer::default());
    let history = Arc::new(history);
    let sources = Arc::new(FakeSources::default());
    block_on(async {
        sources
            .create(&SourceSpec::plain("s1", "/s1"), now())
            .await
            .unwrap();
        sources
            .create(&SourceSpec::plain("s2", "/s2"), now())
            .await
            .unwrap();
    });
    let service = ReportService::new(
        Arc::new(Catalog(rows)),
        sources,
        trail.clone(),
        Arc::new(Storage),
        history.clone(),
        renderer.clone(),
        Arc::new(Fixed),
        AuditLog::new(trail.clone(), Arc::new(Fixed)),
    );
    World {
        service,
        trail,
        renderer,
        history,
    }
}

/// The PDF as the adapters make it: prepared (authorised, audited, gathered), then drawn.
fn pdf(
    w: &World,
    actor: &Actor,
    f: &BackupReportFilter,
) -> Result<(DateTime<Utc>, Vec<u8>), ReportError> {
    let report = block_on(w.service.prepare_pdf(actor, f))?;
    Ok((report.at, w.service.render_pdf(&report)?))
}

fn actor(role: Role) -> Actor {
    Actor {
        username: role.as_str().to_owned(),
        user_id: None,
        role,
        client: ClientInfo::default(),
    }
}

/// Snapshots `1..=n`, alternating sources 1 and 2 (odd ids: source 2), two an hour
/// back from an hour before `now` (pairs share a time, so pages split ties).
fn many(n: i64) -> Vec<CatalogEntry> {
    (1..=n)
        .map(|i| {
            let at = now() - TimeDelta::hours(1 + (n - i) / 2);
            snapshot(i, 1 + i % 2, at, if i % 10 == 0 { "partial" } else { "ok" })
        })
        .collect()
}

#[test]
fn only_export_may_export() {
    let w = world(many(3));
    for role in [Role::Operator, Role::Viewer] {
        let a = actor(role);
        let f = BackupReportFilter::default();
        assert!(matches!(
            block_on(w.service.prepare_backups_csv(&a, &f)),
            Err(ReportError::Common(CommonError::Forbidden(_)))
        ));
        assert!(matches!(
            block_on(
                w.service
                    .prepare_audit_csv(&a, &AuditReportFilter::default())
            ),
            Err(ReportError::Common(CommonError::Forbidden(_)))
        ));
        assert!(matches!(
            pdf(&w, &a, &f),
            Err(ReportError::Common(CommonError::Forbidden(_)))
        ));
    }
    assert!(
        w.trail.rows().is_empty(),
        "nothing was exported, nothing audited"
    );
}

#[test]
fn bad_periods_and_unknown_sources_are_refused() {
    let w = world(many(3));
    let admin = actor(Role::Admin);
    for (from, to) in [(now(), now()), (now(), now() - TimeDelta::seconds(1))] {
        let f = BackupReportFilter {
            from: Some(from),
            to: Some(to),
            source: None,
        };
        let err = block_on(w.service.prepare_backups_csv(&admin, &f)).unwrap_err();
        assert_eq!(err.code(), "invalid_period", "{err}");
        assert_eq!(pdf(&w, &admin, &f).unwrap_err().code(), "invalid_period");
        let a = AuditReportFilter {
            from: Some(from),
            to: Some(to),
            ..AuditReportFilter::default()
        };
        assert_eq!(
            block_on(w.service.prepare_audit_csv(&admin, &a))
                .unwrap_err()
                .code(),
            "invalid_period"
        );
    }
    let f = BackupReportFilter {
        source: Some("nope".to_owned()),
        ..BackupReportFilter::default()
    };
    assert!(matches!(
        block_on(w.service.prepare_backups_csv(&admin, &f)),
        Err(ReportError::Common(CommonError::NotFound(_)))
    ));
    assert!(w.trail.rows().is_empty());
}

#[test]
fn the_backup_csv_streams_every_row_once_newest_first_and_is_audited() {
    let w = world(many(2_500));
    let admin = actor(Role::Admin);
    let export = block_on(
        w.service
            .prepare_backups_csv(&admin, &BackupReportFilter::default()),
    )
    .unwrap();
    let audit = w.trail.rows();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].entry.action, "export");
    assert_eq!(audit[0].entry.resource.as_deref(), Some("report:csv"));
    assert_eq!(audit[0].entry.detail.as_deref(), Some("all rows"));

    let mut sink = Collect::default();
    let written = block_on(w.service.write_backups_csv(&export, &mut sink)).unwrap();
    assert_eq!(written.rows, 2_500);
    assert_eq!(
        written.bytes,
        sink.0.iter().map(|b| b.len() as u64).sum::<u64>()
    );
    assert!(
        sink.0.len() >= 3,
        "written in pages, not at once: {}",
        sink.0.len()
    );
    let lines = sink.lines();
    assert_eq!(lines[0], "id");
    let ids: Vec<i64> = lines[1..].iter().map(|l| l.parse().unwrap()).collect();
    let want: Vec<i64> = (1..=2_500).rev().collect();
    assert_eq!(ids, want, "every snapshot once, newest first");
}

#[test]
fn the_backup_csv_filters_by_source_and_time() {
    let w = world(many(40));
    let admin = actor(Role::Admin);
    let f = BackupReportFilter {
        from: Some(now() - TimeDelta::hours(5)),
        to: Some(now() - TimeDelta::hours(2)),
        source: Some("s2".to_owned()),
    };
    let export = block_on(w.service.prepare_backups_csv(&admin, &f)).unwrap();
    let mut sink = Collect::default();
    block_on(w.service.write_backups_csv(&export, &mut sink)).unwrap();
    // Hours back 5, 4 and 3 (`to` exclusive); source 2 has the odd ids.
    let ids: Vec<String> = sink.lines()[1..].to_vec();
    assert_eq!(ids, ["35", "33", "31"]);
    let detail = w.trail.rows()[0].entry.detail.clone().unwrap();
    assert_eq!(
        detail,
        "from=2026-03-31T07:00:00Z to=2026-03-31T10:00:00Z source=s2"
    );
    // By id as well as by name.
    let by_id = BackupReportFilter {
        source: Some("2".to_owned()),
        ..f
    };
    let export = block_on(w.service.prepare_backups_csv(&admin, &by_id)).unwrap();
    let mut sink = Collect::default();
    block_on(w.service.write_backups_csv(&export, &mut sink)).unwrap();
    assert_eq!(sink.lines()[1..], ["35", "33", "31"]);
}

#[test]
fn the_audit_csv_pages_through_the_trail_with_its_filters() {
    let w = world(vec![]);
    let client = ClientInfo::default();
    block_on(async {
        for i in 0..1_200 {
            let user = if i % 3 == 0 { "alice" } else { "bob" };
            w.trail
                .append(
                    &AuditEntry::new(user, coffer_domain::audit::AuditAction::Login, &client),
                    now() - TimeDelta::minutes(2_000 - i),
                )
                .await
                .unwrap();
        }
    });
    let admin = actor(Role::Admin);
    let all = block_on(
        w.service
            .prepare_audit_csv(&admin, &AuditReportFilter::default()),
    )
    .unwrap();
    let mut sink = Collect::default();
    let written = block_on(w.service.write_audit_csv(&all, &mut sink)).unwrap();
    // The export's own row is there too: it was recorded first.
    assert_eq!(written.rows, 1_201);
    assert_eq!(sink.lines()[1], "1201");
    let alice = AuditReportFilter {
        username: Some("alice".to_owned()),
        action: Some("login".to_owned()),
        ..AuditReportFilter::default()
    };
    let export = block_on(w.service.prepare_audit_csv(&admin, &alice)).unwrap();
    let mut sink = Collect::default();
    let written = block_on(w.service.write_audit_csv(&export, &mut sink)).unwrap();
    assert_eq!(written.rows, 400);
    let last = w.trail.rows().pop().unwrap();
    assert_eq!(last.entry.resource.as_deref(), Some("report:audit.csv"));
    assert_eq!(
        last.entry.detail.as_deref(),
        Some("username=alice action=login")
    );
}

#[test]
fn the_pdf_gets_the_period_figures_capped_history_and_audit() {
    let w = world(many(2_100));
    let admin = actor(Role::Admin);
    block_on(async {
        let client = ClientInfo::default();
        let login = AuditEntry::new("bob", coffer_domain::audit::AuditAction::Login, &client);
        let old = now() - TimeDelta::days(31);
        w.trail.append(&login, old).await.unwrap();
        w.trail
            .append(&login, now() - TimeDelta::days(2))
            .await
            .unwrap();
        w.trail
            .append(&login.failed(), now() - TimeDelta::days(1))
            .await
            .unwrap();
    });
    let (at, pdf) = pdf(&w, &admin, &BackupReportFilter::default()).unwrap();
    assert_eq!(at, now());
    assert_eq!(pdf, b"%PDF-fake");
    let data = w.renderer.0.lock().unwrap().clone().unwrap();
    // Default: the 30 days up to now.
    assert_eq!(data.period.from, now() - TimeDelta::days(30));
    assert_eq!(data.period.to, now());
    // 2,100 snapshots two an hour: about 44 days back, so only the last 30 days count.
    let in_period = many(2_100)
        .into_iter()
        .filter(|r| r.created_at >= data.period.from && r.created_at < data.period.to)
        .collect::<Vec<_>>();
    assert_eq!(data.backups_in_period(), in_period.len() as u64);
    let partial = in_period
        .iter()
        .filter(|r| r.status == coffer_domain::engine::SnapshotStatus::Partial)
        .count() as u64;
    assert_eq!(
        data.backups_by_status,
        [
            ("ok".to_owned(), in_period.len() as u64 - partial),
            ("partial".to_owned(), partial)
        ]
    );
    assert_eq!(data.history.len(), in_period.len().min(PDF_HISTORY_ROWS));
    assert_eq!(
        data.history_omitted,
        in_period.len().saturating_sub(PDF_HISTORY_ROWS) as u64
    );
    assert_eq!(data.history[0].id, BackupId::new(2_100), "newest first");
    assert_eq!(data.logical_bytes_in_period, 10 * in_period.len() as u64);
    assert_eq!(
        data.stored_bytes_added_in_period,
        2 * in_period.len() as u64
    );
    assert_eq!((data.stored_bytes, data.quota_bytes), (1_000, Some(10_000)));
    assert_eq!(data.catalog_logical_bytes, 21_000);
    assert_eq!(data.dedup_ratio(), Some(21.0));
    // One bar per day of the period, every day present, summing to the period.
    assert_eq!(data.days_per_bucket, 1);
    assert_eq!(data.daily.len(), 31);
    assert_eq!(
        data.daily
            .iter()
            .map(coffer_domain::reports::DailyBackups::total)
            .sum::<u64>(),
        in_period.len() as u64
    );
    assert_eq!(
        *w.history.listed.lock().unwrap(),
        [(
            (now() - TimeDelta::days(30)).date_naive(),
            now().date_naive()
        )]
    );
    // The trail of the period: the two logins; the export's own row is recorded at
    // `now`, which the period excludes.
    assert_eq!((data.audit.total, data.audit.failures), (2, 1));
    assert_eq!(data.audit.by_action[0].action, "login");
    assert_eq!(data.audit.by_action[0].failures, 1);
    assert_eq!(data.audit.recent.len(), 2);
    let last = w.trail.rows().pop().unwrap();
    assert_eq!(last.entry.resource.as_deref(), Some("report:pdf"));
    assert_eq!(data.generated_by, "admin");
}

#[test]
fn long_pdf_periods_group_days_into_at_most_92_bars() {
    let w = world(many(10));
    let admin = actor(Role::Admin);
    let f = BackupReportFilter {
        from: Some(now() - TimeDelta::days(365)),
        to: Some(now()),
        source: Some("s1".to_owned()),
    };
    pdf(&w, &admin, &f).unwrap();
    let data = w.renderer.0.lock().unwrap().clone().unwrap();
    assert_eq!(data.days_per_bucket, 4);
    assert!(data.daily.len() <= 92, "{}", data.daily.len());
    assert_eq!(data.source.as_deref(), Some("s1"));
    assert_eq!(data.backups_in_period(), 5, "source 1's snapshots only");
    let last = data.daily.last().unwrap();
    assert_eq!(last.total(), 5, "all in the last bucket");
}

/// An unsuccessful (or successful) `backup_create` row of source `source` at `at`.
fn backup_attempt(w: &World, source: i64, at: DateTime<Utc>, ok: bool) {
    let entry = AuditEntry::new(
        "system:scheduler",
        coffer_domain::audit::AuditAction::BackupCreate,
        &ClientInfo::default(),
    )
    .resource(format!("source:{source}"));
    let entry = if ok { entry } else { entry.failed() };
    block_on(w.trail.append(&entry, at)).unwrap();
}

#[test]
fn failed_backups_count_in_the_success_rate_and_the_daily_chart() {
    let two_days_ago = now() - TimeDelta::days(2);
    let w = world(vec![
        snapshot(1, 1, two_days_ago, "ok"),
        snapshot(2, 1, two_days_ago, "ok"),
        snapshot(3, 1, two_days_ago, "ok"),
        snapshot(4, 1, two_days_ago, "partial"),
        snapshot(5, 2, two_days_ago, "ok"),
    ]);
    let yesterday = now() - TimeDelta::days(1);
    backup_attempt(&w, 1, yesterday, false);
    backup_attempt(&w, 2, yesterday, false);
    backup_attempt(&w, 1, yesterday, true); // its snapshot is in the catalog
    backup_attempt(&w, 1, now() - TimeDelta::days(40), false); // before the period
    let admin = actor(Role::Admin);
    let bucket = |data: &ReportData, at: DateTime<Utc>| {
        data.daily
            .iter()
            .find(|d| d.day == at.date_naive())
            .unwrap()
            .by_status
            .clone()
    };

    pdf(&w, &admin, &BackupReportFilter::default()).unwrap();
    let data = w.renderer.0.lock().unwrap().clone().unwrap();
    assert_eq!(
        data.backups_by_status,
        [
            ("failed".to_owned(), 2),
            ("ok".to_owned(), 4),
            ("partial".to_owned(), 1)
        ]
    );
    assert_eq!(data.backups_in_period(), 7);
    assert_eq!(bucket(&data, yesterday), [("failed".to_owned(), 2)]);
    assert_eq!(
        bucket(&data, two_days_ago),
        [("ok".to_owned(), 4), ("partial".to_owned(), 1)]
    );

    // One source: only its own failures.
    let s1 = BackupReportFilter {
        source: Some("s1".to_owned()),
        ..BackupReportFilter::default()
    };
    pdf(&w, &admin, &s1).unwrap();
    let data = w.renderer.0.lock().unwrap().clone().unwrap();
    assert_eq!(
        data.backups_by_status,
        [
            ("failed".to_owned(), 1),
            ("ok".to_owned(), 3),
            ("partial".to_owned(), 1)
        ]
    );
    assert_eq!(
        data.success_rate_percent(),
        Some(60.0),
        "ok / (ok + partial + failed)"
    );
    assert_eq!(bucket(&data, yesterday), [("failed".to_owned(), 1)]);
    // The history table lists snapshots only, newest first.
    let ids: Vec<i64> = data.history.iter().map(|e| e.id.get()).collect();
    assert_eq!(ids, [4, 3, 2, 1]);
}

#[test]
fn a_quiet_period_carries_the_last_sample_forward_up_to_today() {
    let day = |back: i64| (now() - TimeDelta::days(back)).date_naive();
    // One sample long before the period, one change three days ago.
    let w = world_with(vec![], History::with(&[(day(45), 500), (day(3), 800)]));
    let admin = actor(Role::Admin);
    pdf(&w, &admin, &BackupReportFilter::default()).unwrap();
    let data = w.renderer.0.lock().unwrap().clone().unwrap();
    let days: Vec<(NaiveDate, u64)> = data
        .storage_history
        .iter()
        .map(|s| (s.day, s.stored_bytes))
        .collect();
    let want: Vec<(NaiveDate, u64)> = (0..=30)
        .rev()
        .map(|back| (day(back), if back > 3 { 500 } else { 800 }))
        .collect();
    assert_eq!(days, want, "every day of the period, none left empty");

    // A period reaching into the future stops at today.
    let ahead = BackupReportFilter {
        from: Some(now() - TimeDelta::days(2)),
        to: Some(now() + TimeDelta::days(10)),
        source: None,
    };
    pdf(&w, &admin, &ahead).unwrap();
    let data = w.renderer.0.lock().unwrap().clone().unwrap();
    assert_eq!(
        data.storage_history.last().map(|s| s.day),
        Some(now().date_naive())
    );
    assert_eq!(data.storage_history.len(), 3);
}

#[test]
fn the_audit_csv_filters_by_success() {
    let w = world(vec![]);
    let at = now() - TimeDelta::hours(1);
    backup_attempt(&w, 1, at, false);
    backup_attempt(&w, 1, at, true);
    backup_attempt(&w, 2, at, false);
    let admin = actor(Role::Admin);
    let failed = AuditReportFilter {
        success: Some(false),
        ..AuditReportFilter::default()
    };
    let export = block_on(w.service.prepare_audit_csv(&admin, &failed)).unwrap();
    let mut sink = Collect::default();
    let written = block_on(w.service.write_audit_csv(&export, &mut sink)).unwrap();
    assert_eq!(sink.lines()[1..], ["3", "1"]);
    assert_eq!(written.rows, 2);
    let last = w.trail.rows().pop().unwrap();
    assert_eq!(last.entry.detail.as_deref(), Some("success=false"));
    // The export's own (successful) row is in the `true` export, not the `false` one.
    let ok = AuditReportFilter {
        success: Some(true),
        ..AuditReportFilter::default()
    };
    let export = block_on(w.service.prepare_audit_csv(&admin, &ok)).unwrap();
    let mut sink = Collect::default();
    block_on(w.service.write_audit_csv(&export, &mut sink)).unwrap();
    assert_eq!(sink.lines()[1..], ["5", "4", "2"]);
}

mod sampling {
    //! The storage history's samples as [`StorageService`] records them.

    use std::path::Path;

    use coffer_domain::engine::{
        ArchiveFormat, BackupRequest, Cancel, CheckReport, CheckSlice, EngineFailure, EntryInfo,
        Progress, PruneOptions, PruneReport, RestoreReport, SnapshotEngine, VerifyReport,
    };
    use coffer_domain::ports::{BackgroundTask, CounterRepository, Spawner};
    use futures::channel::oneshot;
    use futures::executor::LocalPool;
    use futures::task::LocalSpawnExt as _;

    use super::*;
    use crate::alerts::tests::{FakeAlerts, FakeDisk};
    use crate::{AlertService, DiskGuard, Quota, StorageService};

    struct NoEngine;

    #[async_trait]
    impl SnapshotEngine for NoEngine {
        async fn backup(
            &self,
            _: BackupRequest,
            _: Arc<Progress>,
            _: Cancel,
        ) -> Result<SnapshotSummary, EngineFailure> {
            unreachable!()
        }
        async fn import_tree(
            &self,
            _: coffer_domain::engine::ImportRequest,
            _: Box<dyn coffer_domain::import::TreeSource>,
            _: Arc<Progress>,
            _: Cancel,
        ) -> Result<SnapshotSummary, EngineFailure> {
            unreachable!()
        }
        async fn snapshots(&self) -> Result<Vec<SnapshotSummary>, EngineFailure> {
            unreachable!()
        }
        async fn list_dir(&self, _: &str, _: &str) -> Result<Vec<EntryInfo>, EngineFailure> {
            unreachable!()
        }
        async fn stat(&self, _: &str, _: &str) -> Result<EntryInfo, EngineFailure> {
            unreachable!()
        }
        async fn restore(
            &self,
            _: &str,
            _: Option<&str>,
            _: &Path,
            _: Arc<Progress>,
            _: Cancel,
        ) -> Result<RestoreReport, EngineFailure> {
            unreachable!()
        }
        async fn verify(
            &self,
            _: &str,
            _: bool,
            _: Arc<Progress>,
            _: Cancel,
        ) -> Result<VerifyReport, EngineFailure> {
            unreachable!()
        }
        async fn export(
            &self,
            _: &str,
            _: Option<&str>,
            _: ArchiveFormat,
            _: Box<dyn std::io::Write + Send>,
        ) -> Result<u64, EngineFailure> {
            unreachable!()
        }
        async fn forget(&self, _: &str) -> Result<(), EngineFailure> {
            unreachable!()
        }
        async fn prune(
            &self,
            _: PruneOptions,
            _: Arc<Progress>,
            _: Cancel,
        ) -> Result<PruneReport, EngineFailure> {
            unreachable!()
        }
        async fn check(
            &self,
            _: Option<CheckSlice>,
            _: Arc<Progress>,
            _: Cancel,
        ) -> Result<CheckReport, EngineFailure> {
            unreachable!()
        }
        async fn stored_bytes(&self) -> Result<u64, EngineFailure> {
            unreachable!()
        }
    }

    struct NoTasks;

    impl Spawner for NoTasks {
        fn spawn(&self, _: BackgroundTask) {}
    }

    /// The bytes counter. Its first `add` pauses after changing the value, until
    /// released: where two backups committing at once interleave.
    #[derive(Default)]
    struct GatedCounter {
        value: Mutex<i64>,
        gate: Mutex<Option<oneshot::Receiver<()>>>,
    }

    #[async_trait]
    impl CounterRepository for GatedCounter {
        async fn get(&self, _: &str) -> Result<i64, RepoError> {
            Ok(*self.value.lock().unwrap())
        }
        async fn add(&self, _: &str, delta: i64) -> Result<i64, RepoError> {
            let value = {
                let mut v = self.value.lock().unwrap();
                *v += delta;
                *v
            };
            let gate = self.gate.lock().unwrap().take();
            if let Some(gate) = gate {
                let _ = gate.await;
            }
            Ok(value)
        }
        async fn set(&self, _: &str, value: i64) -> Result<(), RepoError> {
            *self.value.lock().unwrap() = value;
            Ok(())
        }
    }

    /// A clock that can be moved on.
    struct Moving(Mutex<DateTime<Utc>>);

    impl Clock for Moving {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn storage(
        counter: Arc<GatedCounter>,
        history: Arc<History>,
        clock: Arc<Moving>,
    ) -> StorageService {
        let log = AuditLog::new(Arc::new(Trail::default()), clock.clone());
        let alerts = Arc::new(AlertService::new(
            Arc::new(FakeAlerts::default()),
            None,
            Arc::new(NoTasks),
            clock.clone(),
            log.clone(),
        ));
        let disk = Arc::new(DiskGuard::new(
            Arc::new(FakeDisk::free_mb(100_000)),
            Some("/srv/coffer/repository".into()),
            crate::storage::DiskThresholds {
                warning_free_mb: 10,
                min_free_mb: 1,
            },
            alerts.clone(),
        ));
        StorageService::new(
            counter,
            Arc::new(NoEngine),
            alerts,
            disk,
            Quota::default(),
            log,
        )
        .with_history(history, clock)
    }

    #[test]
    fn concurrent_commits_leave_the_counters_last_value_as_the_days_sample() {
        let (release, gate) = oneshot::channel();
        let counter = Arc::new(GatedCounter {
            value: Mutex::new(0),
            gate: Mutex::new(Some(gate)),
        });
        let history = Arc::new(History::default());
        let clock = Arc::new(Moving(Mutex::new(now())));
        let storage = Arc::new(storage(counter.clone(), history.clone(), clock));
        let mut pool = LocalPool::new();
        // A commits 100 bytes and pauses right after the counter reads 100...
        let a = storage.clone();
        pool.spawner()
            .spawn_local(async move { a.added(100).await.unwrap() })
            .unwrap();
        pool.run_until_stalled();
        // ...B commits 50 meanwhile (the counter reads 150)...
        let b = storage.clone();
        pool.spawner()
            .spawn_local(async move { b.added(50).await.unwrap() })
            .unwrap();
        pool.run_until_stalled();
        // ...then A goes on.
        release.send(()).unwrap();
        pool.run();
        assert_eq!(*counter.value.lock().unwrap(), 150);
        let recorded = history.recorded.lock().unwrap().clone();
        assert_eq!(
            recorded.last(),
            Some(&(now().date_naive(), 150)),
            "the day's last sample is the counter's value: {recorded:?}"
        );
    }

    #[test]
    fn a_sample_is_taken_once_a_day_while_the_server_runs() {
        let counter = Arc::new(GatedCounter::default());
        let history = Arc::new(History::default());
        let clock = Arc::new(Moving(Mutex::new(now())));
        let storage = storage(counter.clone(), history.clone(), clock.clone());
        *counter.value.lock().unwrap() = 700;
        block_on(storage.sample_daily());
        block_on(storage.sample_daily());
        let today = now().date_naive();
        assert_eq!(*history.recorded.lock().unwrap(), [(today, 700)]);
        // A change is sampled as it happens; the daily tick then has nothing to add.
        block_on(storage.added(10)).unwrap();
        block_on(storage.sample_daily());
        assert_eq!(
            *history.recorded.lock().unwrap(),
            [(today, 700), (today, 710)]
        );
        // The next day, one more, with nothing changed.
        *clock.0.lock().unwrap() = now() + TimeDelta::days(1);
        block_on(storage.sample_daily());
        block_on(storage.sample_daily());
        assert_eq!(
            history.recorded.lock().unwrap().last(),
            Some(&(today.succ_opt().unwrap(), 710))
        );
        assert_eq!(history.recorded.lock().unwrap().len(), 3);
    }
}
