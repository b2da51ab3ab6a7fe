//! One API struct per tag; each handler parses, calls a service and maps the result.
//! Every operation's description ends with the permission it needs; the
//! permission-matrix test reads it from the spec.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod charts;
pub mod dashboard;
pub mod dto;
pub mod import;
pub mod jobs;
pub mod maintenance;
pub mod replicas;
pub mod reports;
pub mod settings;
pub mod sources;
pub mod system;
pub mod tokens;
pub mod users;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum ApiTags {
    /// Server health and status.
    System,
    /// Sessions: log in and out, the caller, own password.
    Auth,
    /// User accounts and roles.
    Users,
    /// Personal access tokens for scripts and CI.
    Tokens,
    /// The tamper-evident audit trail.
    Audit,
    /// Directories on the server that Coffer backs up.
    Sources,
    /// Snapshots: start backups and restores, browse, download, verify, protect.
    Backups,
    /// Background work (backup, restore, verify): state, progress, cancel.
    Jobs,
    /// What needs an operator's attention: failed backups, quota and disk, damage.
    Alerts,
    /// Repository upkeep (garbage collection, checks) and storage use.
    Maintenance,
    /// Settings changed at run time: the quota, the retention defaults, the key reminder.
    Settings,
    /// Exports: the backup history and audit trail as CSV, the PDF report.
    Reports,
    /// Off-site copies of the repository: replicas, their copies and lag.
    Replicas,
    /// Bringing another system's data over (the Python prototype's installations).
    Import,
}
