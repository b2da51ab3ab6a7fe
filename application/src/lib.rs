//! `coffer-application`: Coffer's use cases. Each one takes the ports it needs as
//! `Arc<dyn Port>`, checks the caller's permission first, does its work and records it in
//! the audit trail. The CLI and the HTTP API both call these services, so both obey the
//! same rules.
//!
//! This crate never names an adapter: no database, web framework, runtime or object store.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod dashboard;
pub mod disk;
pub mod error;
pub mod jobs;
pub mod maintenance;
pub mod reports;
pub mod scheduler;
pub mod settings;
pub mod sources;
pub mod storage;
pub mod system;
pub mod users;

pub use alerts::AlertService;
pub use audit::{AuditLog, AuditService, ChainReport};
pub use auth::{AuthService, Session};
pub use backups::{
    BackupPolicy, BackupService, BackupTarget, DirPage, DownloadPlan, MasterKeys, RetentionReport,
};
pub use dashboard::{Dashboard, DashboardService, RetentionStatus, SourceOverview};
pub use disk::{DiskGuard, DiskStatus, DiskThresholds};
pub use error::ServiceError;

/// Whether one directory is the other or lies inside it (whole path components:
/// `/a/bc` is not inside `/a/b`).
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    std::path::Path::new(a).starts_with(b) || std::path::Path::new(b).starts_with(a)
}
pub use jobs::{ActiveJobs, JobDurations, JobOptions, JobService, JobStatus};
pub use maintenance::MaintenanceService;
pub use reports::{
    AuditCsv, AuditReportFilter, BackupReportFilter, BackupsCsv, PdfReport, ReportService,
    ReportSink, StorageFigures, Written, export_filename,
};
pub use scheduler::{
    Dispatch, JobDispatch, Scheduler, SchedulerOptions, SchedulerStatus, SourceSchedule, Task,
    TaskSchedule, TickReport,
};
pub use settings::{Origin, QuotaMib, SettingsChange, SettingsService, SystemSettings};
pub use sources::{SchedulePreview, SourceChanges, SourceService};
pub use storage::{Quota, QuotaState, StorageService, StorageUsage};
pub use system::{ComponentHealth, HealthReport, SystemService};
pub use users::UserService;

#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
mod reports_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod test_fakes;
