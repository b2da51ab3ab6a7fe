//! Contract of what the reports read: the catalog's keyset pages (the default of the
//! port and the adapter's own query agree, ties in time included) and the daily storage
//! history.

use chrono::{NaiveDate, TimeDelta};
use coffer_domain::engine::{SnapshotStatus, SnapshotSummary};
use coffer_domain::ports::{BackupCatalog, BackupFilter, CatalogEntry, Page, RepoError};
use coffer_domain::reports::{StorageHistory, StorageSample};

use super::*;

fn summary(n: u8, started: i64) -> SnapshotSummary {
    SnapshotSummary {
        id: format!("{n:02x}").repeat(32),
        source: "s".to_owned(),
        path: "/data/s".to_owned(),
        hostname: "host".to_owned(),
        started_at: t(started),
        finished_at: t(started) + TimeDelta::seconds(1),
        status: SnapshotStatus::Ok,
        encrypted: true,
        parent: None,
        files: 1,
        dirs: 1,
        bytes: 1,
        bytes_added: 1,
        stored_bytes_added: 1,
        unchanged_files: 0,
        excluded: 0,
        warnings: Vec::new(),
        suspicious: None,
    }
}

/// The catalog with only the port's default `page_after` (paging through `query`).
struct DefaultPaging(crate::SeaBackupCatalog);

#[async_trait::async_trait]
impl BackupCatalog for DefaultPaging {
    async fn insert(
        &self,
        s: &SnapshotSummary,
        source_id: Option<coffer_domain::SourceId>,
    ) -> Result<CatalogEntry, RepoError> {
        self.0.insert(s, source_id).await
    }
    async fn list(&self, limit: u64) -> Result<Vec<CatalogEntry>, RepoError> {
        self.0.list(limit).await
    }
    async fn find(
        &self,
        id: &coffer_domain::SnapshotPrefix,
    ) -> Result<Option<CatalogEntry>, RepoError> {
        self.0.find(id).await
    }
    async fn latest_for_source(
        &self,
        id: coffer_domain::SourceId,
    ) -> Result<Option<CatalogEntry>, RepoError> {
        self.0.latest_for_source(id).await
    }
    async fn record_verification(
        &self,
        id: &coffer_domain::SnapshotId,
        at: chrono::DateTime<chrono::Utc>,
        result: &str,
    ) -> Result<(), RepoError> {
        self.0.record_verification(id, at, result).await
    }
    async fn query(&self, filter: &BackupFilter) -> Result<Page<CatalogEntry>, RepoError> {
        self.0.query(filter).await
    }
    async fn delete(&self, id: &coffer_domain::SnapshotId) -> Result<bool, RepoError> {
        self.0.delete(id).await
    }
    async fn set_protected(
        &self,
        id: &coffer_domain::SnapshotId,
        protected: bool,
    ) -> Result<bool, RepoError> {
        self.0.set_protected(id, protected).await
    }
    async fn stats(&self) -> Result<coffer_domain::ports::CatalogStats, RepoError> {
        self.0.stats().await
    }
    async fn latest_per_source(
        &self,
    ) -> Result<Vec<(coffer_domain::SourceId, CatalogEntry)>, RepoError> {
        self.0.latest_per_source().await
    }
}

async fn all_pages(catalog: &dyn BackupCatalog, filter: &BackupFilter, size: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = catalog.page_after(filter, after, size).await.expect("page");
        assert!(page.len() as u64 <= size);
        let Some(last) = page.last() else {
            return out;
        };
        after = Some((last.created_at, last.id));
        out.extend(page.iter().map(|e| e.snapshot_id.prefix(2).to_owned()));
    }
}

contract!(catalog_keyset_pages, |db: Database| async move {
    let catalog = db.catalog();
    // Five rows share one second, so pages split inside a tie.
    for (n, start) in [
        (1, 10),
        (2, 20),
        (3, 20),
        (4, 20),
        (5, 20),
        (6, 20),
        (7, 30),
        (8, 40),
    ] {
        catalog
            .insert(&summary(n, start), None)
            .await
            .expect("insert");
    }
    let newest_first = ["08", "07", "06", "05", "04", "03", "02", "01"];
    let fallback = DefaultPaging(db.catalog());
    for size in [1, 2, 3, 100] {
        let all = BackupFilter::default();
        assert_eq!(
            all_pages(&catalog, &all, size).await,
            newest_first,
            "size {size}"
        );
        assert_eq!(
            all_pages(&fallback, &all, size).await,
            newest_first,
            "default, size {size}"
        );
        let window = BackupFilter {
            from: Some(t(20)),
            to: Some(t(40)),
            ..BackupFilter::default()
        };
        let want = ["07", "06", "05", "04", "03", "02"];
        assert_eq!(
            all_pages(&catalog, &window, size).await,
            want,
            "size {size}"
        );
        assert_eq!(
            all_pages(&fallback, &window, size).await,
            want,
            "default, size {size}"
        );
    }
});

contract!(
    storage_history_keeps_one_sample_a_day,
    |db: Database| async move {
        let history = db.storage_history();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d).expect("date");
        assert_eq!(history.list(day(1), day(31)).await.expect("list"), []);
        history.record(day(2), 100).await.expect("record");
        history.record(day(2), 250).await.expect("replace");
        history.record(day(4), 300).await.expect("record");
        history.record(day(9), u64::MAX).await.expect("record");
        assert_eq!(
            history.list(day(1), day(4)).await.expect("list"),
            [
                StorageSample {
                    day: day(2),
                    stored_bytes: 250
                },
                StorageSample {
                    day: day(4),
                    stored_bytes: 300
                },
            ],
            "the last value of a day wins; `to` is inclusive"
        );
        assert_eq!(
            history.list(day(3), day(3)).await.expect("list"),
            [],
            "a day without a sample is absent"
        );
        assert_eq!(
            history.list(day(9), day(9)).await.expect("list")[0].stored_bytes,
            i64::MAX.unsigned_abs(),
            "beyond i64 is stored as the largest value"
        );
        // The sample a quiet period carries forward: the latest on or before a day.
        let latest = |d| {
            let history = history.clone();
            async move { history.latest_on_or_before(day(d)).await.expect("latest") }
        };
        assert_eq!(latest(1).await, None, "nothing before the first sample");
        assert_eq!(latest(2).await.map(|s| s.stored_bytes), Some(250));
        assert_eq!(
            latest(3).await,
            Some(StorageSample {
                day: day(2),
                stored_bytes: 250
            })
        );
        assert_eq!(latest(8).await.map(|s| s.day), Some(day(4)));
        assert_eq!(latest(30).await.map(|s| s.day), Some(day(9)));
    }
);
