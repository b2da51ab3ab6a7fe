//! Jobs: long work (backup, restore, verify, prune, check) run in the background and
//! recorded in the catalog so that their outcome outlives the request and the process.

use chrono::{DateTime, Utc};

use crate::engine::{
    CheckReport, CheckSlice, PruneReport, RestoreReport, SnapshotStatus, VerifyReport,
};
use crate::{JobId, SnapshotId, SourceId};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Backup,
    Restore,
    Verify,
    /// Garbage collection of the repository.
    Prune,
    /// A check of the whole repository (structure, and a share of the data).
    Check,
    /// A copy of the repository into a replica.
    Copy,
    /// An installation of the Python prototype brought over (`coffer import prototype`).
    Import,
}

impl JobKind {
    pub const ALL: [Self; 7] = [
        Self::Backup,
        Self::Restore,
        Self::Verify,
        Self::Prune,
        Self::Check,
        Self::Copy,
        Self::Import,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Verify => "verify",
            Self::Prune => "prune",
            Self::Check => "check",
            Self::Copy => "copy",
            Self::Import => "import",
        }
    }
}

/// Where a job is in its life. `Succeeded`, `Failed` and `Cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

named!(JobKind);
named!(JobState);

/// What a job was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobParams {
    Backup {
        source_id: SourceId,
        source_name: String,
    },
    Restore {
        snapshot_id: SnapshotId,
        /// A path inside the snapshot; everything when `None`.
        path: Option<String>,
        /// The resolved target directory on the server.
        target: String,
    },
    Verify {
        snapshot_id: SnapshotId,
        /// Also read and authenticate every data chunk (slow), not only the structure.
        read_data: bool,
    },
    Prune,
    Check {
        /// The share of the stored data to re-read, in percent (1–100).
        share_percent: u8,
    },
    /// A copy into the replica of that name.
    Copy {
        replica: String,
    },
    /// An import of the prototype installation in `dir` (see [`crate::import`]).
    Import {
        dir: String,
        db: Option<String>,
        source: Option<String>,
        dry_run: bool,
        adopt_settings: bool,
    },
}

impl JobParams {
    #[must_use]
    pub const fn kind(&self) -> JobKind {
        match self {
            Self::Backup { .. } => JobKind::Backup,
            Self::Restore { .. } => JobKind::Restore,
            Self::Verify { .. } => JobKind::Verify,
            Self::Prune => JobKind::Prune,
            Self::Check { .. } => JobKind::Check,
            Self::Copy { .. } => JobKind::Copy,
            Self::Import { .. } => JobKind::Import,
        }
    }

    /// What at most one queued or running job may work on at a time, when that is one
    /// name: a source's backups, the repository's prune, its check, one replica's copies.
    /// The catalog refuses a second active job with the same subject (so the rule holds
    /// across server instances). Restores conflict by overlapping targets instead, and
    /// verifications never conflict: both `None`.
    #[must_use]
    pub fn exclusive_subject(&self) -> Option<String> {
        match self {
            Self::Backup { source_id, .. } => Some(format!("backup:{}", source_id.get())),
            Self::Prune => Some("prune".to_owned()),
            Self::Check { .. } => Some("check".to_owned()),
            Self::Copy { replica } => Some(format!("copy:{replica}")),
            // One import at a time: two of one installation would race to add it twice.
            Self::Import { .. } => Some("import".to_owned()),
            Self::Restore { .. } | Self::Verify { .. } => None,
        }
    }
}

/// Counters of a job's work. Totals are `None` until known; `totals_final` says whether
/// they are still growing (a backup counts its source while it reads it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub files_done: u64,
    pub bytes_done: u64,
    pub files_total: Option<u64>,
    pub bytes_total: Option<u64>,
    pub totals_final: bool,
}

impl JobProgress {
    /// Bytes per second since `started`, when any time has passed.
    #[must_use]
    pub fn rate(&self, started: DateTime<Utc>, now: DateTime<Utc>) -> Option<f64> {
        let ms = (now - started).num_milliseconds();
        if ms <= 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        Some(self.bytes_done as f64 * 1000.0 / ms as f64)
    }

    /// Seconds left at the current rate; only once the totals are final and work has
    /// started moving.
    #[must_use]
    pub fn eta_secs(&self, started: DateTime<Utc>, now: DateTime<Utc>) -> Option<u64> {
        if !self.totals_final {
            return None;
        }
        let total = self.bytes_total?;
        let rate = self.rate(started, now).filter(|r| *r > 0.0)?;
        let left = total.saturating_sub(self.bytes_done);
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        Some((left as f64 / rate).ceil() as u64)
    }
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Backup {
        snapshot_id: SnapshotId,
        status: SnapshotStatus,
        files: u64,
        bytes: u64,
        bytes_added: u64,
        warnings: Vec<String>,
    },
    Restore {
        snapshot_id: SnapshotId,
        target: String,
        files: u64,
        dirs: u64,
        symlinks: u64,
        /// Names restored as hard links (counted in `files`).
        hardlinks: u64,
        bytes: u64,
        /// Metadata the target refused (extended attributes, ACLs); the data is there.
        warnings: Vec<String>,
    },
    Verify {
        snapshot_id: SnapshotId,
        ok: bool,
        problems: Vec<String>,
        damaged_files: Vec<String>,
        bytes_read: u64,
    },
    Prune {
        snapshots: u64,
        packs_deleted: u64,
        packs_repacked: u64,
        bytes_before: u64,
        bytes_after: u64,
    },
    Check {
        ok: bool,
        snapshots: u64,
        /// Which slice of the data was re-read: `slice` of `slices`.
        slice: u32,
        slices: u32,
        packs_read: u64,
        bytes_read: u64,
        problems: Vec<String>,
        damaged_snapshots: Vec<String>,
    },
    Copy {
        replica: String,
        /// Snapshots in the repository, and on the replica once the copy ended.
        snapshots: u64,
        replica_snapshots: u64,
        objects_copied: u64,
        bytes_copied: u64,
        /// Objects the replica held already (not sent again).
        objects_present: u64,
        /// Snapshots the repository's retention removed, deleted from the replica.
        snapshots_deleted: u64,
    },
    Import {
        dry_run: bool,
        source: String,
        /// Backups imported (or, in a dry run, that would be).
        imported: u64,
        /// Backups imported by an earlier run.
        already_imported: u64,
        /// `backup N (file): why` for each backup not imported.
        skipped: Vec<String>,
        /// Users imported (or that would be).
        users: u64,
        /// `username: what became of it` for users not imported as they were.
        user_notes: Vec<String>,
        audit_rows: u64,
        /// What `adopt_settings` changed (or would).
        settings: Vec<String>,
    },
}

impl JobResult {
    /// What a copy job into `replica` reports of `r`.
    #[must_use]
    pub fn of_copy(replica: String, r: &crate::replicas::CopyReport) -> Self {
        Self::Copy {
            replica,
            snapshots: r.snapshots,
            replica_snapshots: r.replica_snapshots,
            objects_copied: r.objects_copied,
            bytes_copied: r.bytes_copied,
            objects_present: r.objects_present,
            snapshots_deleted: r.snapshots_deleted,
        }
    }

    /// What a prune job reports of `r` (its deleted packs count the orphaned ones too).
    #[must_use]
    pub const fn of_prune(r: &PruneReport) -> Self {
        Self::Prune {
            snapshots: r.snapshots,
            packs_deleted: r.packs_deleted + r.orphan_packs_deleted,
            packs_repacked: r.packs_repacked,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
        }
    }

    /// What a check job reports of `r`, which read `slice`.
    #[must_use]
    pub fn of_check(r: CheckReport, slice: CheckSlice) -> Self {
        Self::Check {
            ok: r.ok(),
            snapshots: r.snapshots,
            slice: slice.index,
            slices: slice.count,
            packs_read: r.packs_read,
            bytes_read: r.bytes_read,
            problems: r.problems,
            damaged_snapshots: r.damaged_snapshots,
        }
    }

    /// What a restore job reports of `r`: `snapshot_id` restored into `target`.
    #[must_use]
    pub fn of_restore(snapshot_id: SnapshotId, target: String, r: RestoreReport) -> Self {
        Self::Restore {
            snapshot_id,
            target,
            files: r.files,
            dirs: r.dirs,
            symlinks: r.symlinks,
            hardlinks: r.hardlinks,
            bytes: r.bytes,
            warnings: r.warnings,
        }
    }

    /// What a verify job reports of `r`, about `snapshot_id`.
    #[must_use]
    pub fn of_verify(snapshot_id: SnapshotId, r: VerifyReport) -> Self {
        Self::Verify {
            snapshot_id,
            ok: r.ok(),
            problems: r.problems,
            damaged_files: r.damaged_files,
            bytes_read: r.bytes_read,
        }
    }
}

/// What a caller without the `restore` permission sees instead of a name that reveals
/// what is in a backup (a file name, a path inside a snapshot, a restore target).
pub const HIDDEN: &str = "(hidden: needs the restore permission)";

/// Each entry replaced by [`HIDDEN`]: how many there were stays visible.
pub fn hide_all(items: &mut [String]) {
    for item in items {
        HIDDEN.clone_into(item);
    }
}

/// Why a job failed: a stable code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

impl JobError {
    #[must_use]
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One job, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub state: JobState,
    pub params: JobParams,
    /// The source a backup job is for (kept for filtering; `None` once it is deleted).
    pub source_id: Option<SourceId>,
    /// The snapshot the job made (backup) or works on (restore, verify).
    pub snapshot_id: Option<SnapshotId>,
    pub requested_by: String,
    pub progress: JobProgress,
    pub result: Option<JobResult>,
    pub error: Option<JobError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A cancel was asked for while the job ran; its runner stops at the next safe
    /// point (the runner may be another server instance).
    pub cancel_requested: bool,
}

impl Job {
    /// A new queued job.
    #[must_use]
    pub fn queued(id: JobId, params: JobParams, requested_by: &str, now: DateTime<Utc>) -> Self {
        let (source_id, snapshot_id) = match &params {
            JobParams::Backup { source_id, .. } => (Some(*source_id), None),
            JobParams::Restore { snapshot_id, .. } | JobParams::Verify { snapshot_id, .. } => {
                (None, Some(snapshot_id.clone()))
            }
            JobParams::Prune
            | JobParams::Check { .. }
            | JobParams::Copy { .. }
            | JobParams::Import { .. } => (None, None),
        };
        Self {
            id,
            state: JobState::Queued,
            params,
            source_id,
            snapshot_id,
            requested_by: requested_by.to_owned(),
            progress: JobProgress::default(),
            result: None,
            error: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            cancel_requested: false,
        }
    }

    #[must_use]
    pub const fn kind(&self) -> JobKind {
        self.params.kind()
    }

    /// This job as a caller without the `restore` permission may see it: browsing a
    /// snapshot needs that permission, so neither may a job's record name what is in one
    /// (paths inside a snapshot, file names in warnings and damage reports, failure
    /// messages of restores and verifications) or where a restore wrote. Kinds, states,
    /// counters and error codes stay.
    #[must_use]
    pub fn without_contents(mut self) -> Self {
        if let JobParams::Restore { path, target, .. } = &mut self.params {
            if path.is_some() {
                *path = Some(HIDDEN.to_owned());
            }
            HIDDEN.clone_into(target);
        }
        match &mut self.result {
            Some(JobResult::Backup { warnings, .. }) => hide_all(warnings),
            Some(JobResult::Restore {
                target, warnings, ..
            }) => {
                HIDDEN.clone_into(target);
                hide_all(warnings);
            }
            Some(JobResult::Verify {
                problems,
                damaged_files,
                ..
            }) => {
                hide_all(problems);
                hide_all(damaged_files);
            }
            Some(JobResult::Import { skipped, .. }) => hide_all(skipped),
            Some(JobResult::Prune { .. } | JobResult::Check { .. } | JobResult::Copy { .. })
            | None => {}
        }
        if let Some(error) = &mut self.error
            && matches!(self.params.kind(), JobKind::Restore | JobKind::Verify)
        {
            HIDDEN.clone_into(&mut error.message);
        }
        self
    }
}

/// Which jobs to list. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<JobKind>,
    pub source_id: Option<SourceId>,
    /// Jobs of one requester (a username, or the scheduler's `scheduler`).
    pub requested_by: Option<String>,
    /// Jobs created at or after `from` and before `to`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: u64,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(k.as_str().parse::<JobKind>(), Ok(k));
        }
        for s in JobState::ALL {
            assert_eq!(s.to_string().parse::<JobState>(), Ok(s));
        }
        assert!("done".parse::<JobState>().is_err());
        assert!(JobState::Cancelled.is_final());
        assert!(!JobState::Running.is_final());
    }

    #[test]
    fn rate_and_eta_follow_the_counters() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = t0 + chrono::Duration::seconds(10);
        let mut p = JobProgress {
            bytes_done: 1000,
            bytes_total: Some(3000),
            ..JobProgress::default()
        };
        assert_eq!(p.rate(t0, t1), Some(100.0));
        assert_eq!(p.rate(t0, t0), None);
        // Totals still growing: no promise.
        assert_eq!(p.eta_secs(t0, t1), None);
        p.totals_final = true;
        assert_eq!(p.eta_secs(t0, t1), Some(20));
        p.bytes_done = 0;
        assert_eq!(p.eta_secs(t0, t1), None);
    }

    #[test]
    fn a_job_without_contents_names_no_file_and_no_target() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let snapshot = SnapshotId::parse(&"ab".repeat(32)).unwrap();
        let mut restore = Job::queued(
            JobId::from_uuid(uuid::Uuid::nil()),
            JobParams::Restore {
                snapshot_id: snapshot.clone(),
                path: Some("home/ann/diary.txt".into()),
                target: "/srv/restore/ann".into(),
            },
            "alice",
            now,
        );
        restore.error = Some(JobError::new("damaged", "home/ann/diary.txt: damaged"));
        let mut verify = Job::queued(
            JobId::from_uuid(uuid::Uuid::nil()),
            JobParams::Verify {
                snapshot_id: snapshot.clone(),
                read_data: true,
            },
            "alice",
            now,
        );
        verify.result = Some(JobResult::Verify {
            snapshot_id: snapshot,
            ok: false,
            problems: vec!["home/ann/diary.txt: chunk missing".into()],
            damaged_files: vec!["home/ann/diary.txt".into()],
            bytes_read: 5,
        });
        for job in [restore, verify] {
            let shown = format!("{:?}", job.clone().without_contents());
            assert!(!shown.contains("diary"), "{shown}");
            assert!(!shown.contains("/srv"), "{shown}");
            let hidden = job.without_contents();
            if let Some(JobResult::Verify { damaged_files, .. }) = &hidden.result {
                assert_eq!(damaged_files, &[HIDDEN]);
            }
            if let Some(error) = &hidden.error {
                assert_eq!(error.code, "damaged");
            }
        }
    }

    #[test]
    fn a_queued_job_knows_its_subject() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let id = JobId::from_uuid(uuid::Uuid::nil());
        let snapshot = SnapshotId::parse(&"ab".repeat(32)).unwrap();
        let job = Job::queued(
            id,
            JobParams::Verify {
                snapshot_id: snapshot.clone(),
                read_data: true,
            },
            "alice",
            now,
        );
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.kind(), JobKind::Verify);
        assert_eq!(job.snapshot_id.as_ref(), Some(&snapshot));
        assert_eq!(job.source_id, None);
    }
}
