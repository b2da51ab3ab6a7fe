//! `coffer-application`: Coffer's use cases. Each one takes the ports it needs as
//! `Arc<dyn Port>`, checks the caller's permission first, does its work and records it in
//! the audit trail. The CLI and the HTTP API both call these services, so both obey the
//! same rules.
//!
//! One folder per area (`catalog`, `backup`, `restore`, `retention`, `keys`, `jobs`,
//! `maintenance`, `storage`, `alerts`, `sources`, `settings`, `reports`, `users`, `auth`,
//! `audit`, `system`, `dashboard`), each with its ports, its service and its error enum
//! (one variant per stable error code). A service holds ports and applies domain
//! policies; it never holds another area's service: what it needs of another area is a
//! port that area implements (a backup reaches the quota through `storage::Admission`,
//! the job runner reaches the areas' work through `jobs::JobExecutor`). The dashboard is
//! a read model nothing imports. `.ci/layering` fails on a cycle of `use crate::<area>`
//! between areas.
//!
//! This crate never names an adapter: no database, web framework, runtime or object store.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod catalog;
pub mod dashboard;
pub mod digest;
pub mod error;
pub mod import;
pub mod jobs;
pub mod keys;
pub mod maintenance;
mod paths;
pub mod replicas;
pub mod reports;
pub mod restore;
pub mod retention;
pub mod settings;
pub mod sources;
pub mod storage;
pub mod system;
pub mod tokens;
pub mod users;

pub use alerts::{AlertService, AlertSink, NotifyTestError};
pub use audit::{AuditLog, AuditService, ChainReport};
pub use auth::{AuthError, AuthPorts, AuthService, Credential, Session};
pub use backup::{BackupError, BackupPorts, BackupService, BackupTarget};
pub use catalog::{CatalogError, CatalogService, DirPage, DownloadPlan, Paging};
pub use dashboard::charts::{Charts, SourceRuns, StorageChart};
pub use dashboard::{Dashboard, DashboardService, DashboardSources, SourceOverview};
pub use digest::{DigestPorts, DigestService, DigestTick};
pub use error::{CodedError, CommonError, EngineError, ErrorClass};
pub use import::{
    BackupOutcome, BackupReport, ImportError, ImportOptions, ImportPorts, ImportReport,
    ImportService, UserReport,
};
pub use jobs::{
    ActiveJobs, JobDurations, JobOptions, JobQueue, JobService, JobStatus, JobsError, MAX_LOG_PAGE,
    Scheduler, SchedulerOptions, SchedulerStatus, SubmitError,
};
pub use keys::{KeyService, KeyStatus};
pub use maintenance::{MaintenanceError, MaintenancePorts, MaintenanceService};
pub use replicas::{
    NewReplica, ReplicaChanges, ReplicaError, ReplicaPorts, ReplicaService, ReplicaStatus,
};
pub use reports::{
    AuditCsv, AuditReportFilter, BackupReportFilter, BackupsCsv, PdfReport, ReportError,
    ReportService, ReportSink, Written, export_filename,
};
pub use restore::{RestoreError, RestoreService, TargetRoom};
pub use retention::{
    RetentionDefaults, RetentionError, RetentionReport, RetentionService, RetentionStatus,
};
pub use settings::{
    AdoptQuota, Origin, QuotaMib, SettingsChange, SettingsError, SettingsPorts, SettingsService,
    SystemSettings,
};
pub use sources::{NewSource, SchedulePreview, SourceChanges, SourceError, SourceService};
pub use storage::{
    AdmissionError, DiskGuard, DiskStatus, DiskThresholds, Quota, QuotaState, StorageFigures,
    StorageService, StorageUsage,
};
pub use system::{ComponentHealth, HealthReport, SystemService};
pub use tokens::{TokenError, TokenRequest, TokenScope, TokenService};
pub use users::{UserError, UserService};

#[cfg(test)]
mod test_fakes;
