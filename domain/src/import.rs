//! Importing an installation of the Python prototype Coffer replaces (`../shared/seed/`):
//! what such an installation holds, as read from it, and the rules that turn it into
//! Coffer's sources, snapshots, users and audit history.
//!
//! An installation is a directory with `config.json`, a Fernet key (`config/secret.key`),
//! a SQLite database (`backups`, `users`, `roles`, `audit_logs`) and
//! `storage/backups/*.zip[.enc]`: zip archives, encrypted as Fernet tokens when the row
//! says `encrypted = 1`. The prototype adapter reads them; the application decides what
//! becomes what; the engine stores each archive's tree as a snapshot dated with the
//! backup's original time.

use std::io::Read;

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};

use crate::auth::Role;
use crate::retention::Retention;

/// One row of the prototype's `backups` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrototypeBackup {
    pub id: i64,
    pub filename: String,
    /// The stored file's size as recorded.
    pub size: i64,
    /// `created_at` as written (the prototype wrote more than one format).
    pub created_at: String,
    pub status: String,
    /// SHA-256, hex: of the stored file or of the zip before encryption (installations
    /// differ).
    pub checksum: Option<String>,
    pub encrypted: bool,
}

impl PrototypeBackup {
    /// Whether the prototype finished this backup (only those have an archive).
    #[must_use]
    pub fn completed(&self) -> bool {
        self.status.eq_ignore_ascii_case("completed")
    }
}

/// One user of the prototype, with its role's name and permissions.
#[derive(Clone, PartialEq, Eq)]
pub struct PrototypeUser {
    pub username: String,
    /// A bcrypt hash (`$2b$...`).
    pub password_hash: String,
    pub role_name: Option<String>,
    pub permissions: Vec<String>,
    pub active: bool,
    pub created_at: String,
}

impl std::fmt::Debug for PrototypeUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrototypeUser")
            .field("username", &self.username)
            .field("role_name", &self.role_name)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// One row of the prototype's `audit_logs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrototypeAuditRow {
    pub id: i64,
    pub username: String,
    pub action: String,
    pub resource: Option<String>,
    pub timestamp: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub success: bool,
}

/// The retention and quota values of the prototype's `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrototypeSettings {
    pub max_backups: Option<u32>,
    pub max_age_days: Option<u32>,
    /// `retention.enabled`: `false` means the prototype kept everything.
    pub retention_enabled: bool,
    pub max_storage_mb: Option<u64>,
    pub warning_threshold_mb: Option<u64>,
}

impl PrototypeSettings {
    /// The source retention these values give: the brief's two rules, when retention was
    /// on; `None` when it was off or set nothing.
    #[must_use]
    pub fn retention(&self) -> Option<Retention> {
        if !self.retention_enabled || (self.max_backups.is_none() && self.max_age_days.is_none()) {
            return None;
        }
        Some(Retention {
            max_backups: self.max_backups.unwrap_or(0),
            max_age_days: self.max_age_days.unwrap_or(0),
            ..Retention::default()
        })
    }
}

/// Everything read from an installation but the archives' contents.
#[derive(Debug, Clone)]
pub struct PrototypeInstallation {
    /// The installation directory, absolute.
    pub dir: String,
    /// The database file read.
    pub database: String,
    /// Where the archives lie.
    pub archives: String,
    /// The Fernet key file, when there is one.
    pub key_file: Option<String>,
    /// Names the installation across runs (hex SHA-256 of its key, shortened): a re-run
    /// recognises what it imported before.
    pub fingerprint: String,
    pub backups: Vec<PrototypeBackup>,
    pub users: Vec<PrototypeUser>,
    pub audit: Vec<PrototypeAuditRow>,
    pub settings: PrototypeSettings,
}

/// Why an installation cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InstallationProblem(pub String);

/// Reads installations of the prototype.
#[async_trait::async_trait]
pub trait PrototypeReader: Send + Sync {
    /// Reads the database (`db`, or the one `config.json` names, or the brief's default
    /// name) and the key; touches no archive.
    async fn read(
        &self,
        dir: &str,
        db: Option<&str>,
    ) -> Result<PrototypeInstallation, InstallationProblem>;

    /// The archive of a completed backup, as a tree to store. Nothing is read until the
    /// engine asks; the source checks the archive whole (token, checksum) before it
    /// gives the first entry.
    fn archive(
        &self,
        installation: &PrototypeInstallation,
        backup: &PrototypeBackup,
    ) -> Box<dyn TreeSource>;
}

/// One entry of a tree that does not come from a file system (an archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative, `/`-separated, without `.` or `..` parts.
    pub path: String,
    pub dir: bool,
    pub mtime: DateTime<Utc>,
    /// Permission bits, when the archive recorded them.
    pub mode: Option<u32>,
}

/// Why a tree source stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeSourceError {
    /// The archive is not what it should be (fails its checksum or authentication, is
    /// not a zip): nothing of it may be stored.
    #[error("{0}")]
    Refused(String),
    /// It could not be read.
    #[error("{0}")]
    Io(String),
}

/// A tree given entry by entry, each file's content through a reader (an archive read as
/// a stream: nothing unpacked to disk, nothing held whole in memory).
pub trait TreeSource: Send {
    /// Calls `visit` for each entry in the archive's order; a file's content is read from
    /// the reader during the call. An error `visit` returns stops the walk and is
    /// returned. A source that finds, at the end, that what it gave was not authentic
    /// returns `Refused`: the caller must then not keep anything of it.
    fn entries(
        &mut self,
        visit: &mut dyn FnMut(&TreeEntry, &mut dyn Read) -> Result<(), TreeSourceError>,
    ) -> Result<(), TreeSourceError>;
}

/// Parses the prototype's timestamps: ISO 8601 with `T` or a space, with or without
/// fractional seconds and an offset. Times without an offset are the prototype host's
/// local time, which the database does not record: they are read as UTC.
#[must_use]
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
        "%Y%m%d_%H%M%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    None
}

/// The Coffer role of a prototype user: by the role's name, else by its permissions
/// (`manage_users` is an admin's, `backup` an operator's, anything else a viewer's).
#[must_use]
pub fn role_of(user: &PrototypeUser) -> Role {
    if let Some(role) = user
        .role_name
        .as_deref()
        .and_then(|n| n.trim().to_ascii_lowercase().parse::<Role>().ok())
    {
        return role;
    }
    let has = |p: &str| user.permissions.iter().any(|q| q == p);
    if has("manage_users") || has("manage_system") {
        Role::Admin
    } else if has("backup") || has("restore") {
        Role::Operator
    } else {
        Role::Viewer
    }
}

/// The prototype's well-known first account, which it created for every installation.
pub const DEFAULT_ADMIN: (&str, &str) = ("admin", "admin123");

/// Whether an archive's checksum column matches what was read: either digest is
/// accepted (the SHA-256 of the stored file, or of the zip before encryption).
#[must_use]
pub fn checksum_matches(recorded: &str, stored_file: &str, plain_zip: &str) -> bool {
    let recorded = recorded.trim().to_ascii_lowercase();
    recorded == stored_file || recorded == plain_zip
}

/// An entry's place in a snapshot: the archive's name made relative and clean, or why
/// it cannot be kept (absolute, `..`, empty parts are refused, not reinterpreted).
pub fn clean_entry_path(name: &str) -> Result<String, String> {
    let trimmed = name.trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(format!("{name:?}: an empty name"));
    }
    if trimmed.starts_with('/') || trimmed.contains('\\') || trimmed.contains('\0') {
        return Err(format!(
            "{name:?}: not a relative path (absolute, or with a backslash)"
        ));
    }
    let mut parts = Vec::new();
    for part in trimmed.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("{name:?}: climbs out of the archive with `..`")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!("{name:?}: an empty name"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prototypes_time_formats_are_read() {
        let t = |s| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(
            t("2025-10-02T02:13:00"),
            Some("2025-10-02T02:13:00+00:00".into())
        );
        assert_eq!(
            t("2025-10-02 02:13:00"),
            Some("2025-10-02T02:13:00+00:00".into())
        );
        assert_eq!(
            t("2025-10-02T02:13:00.123456"),
            Some("2025-10-02T02:13:00.123456+00:00".into())
        );
        assert_eq!(
            t("2025-10-02T04:13:00+02:00"),
            Some("2025-10-02T02:13:00+00:00".into())
        );
        assert_eq!(
            t("2025-10-02 04:13:00+02:00"),
            Some("2025-10-02T02:13:00+00:00".into())
        );
        assert_eq!(
            t("20251002_021300"),
            Some("2025-10-02T02:13:00+00:00".into())
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t(""), None);
    }

    fn user(role: Option<&str>, perms: &[&str]) -> PrototypeUser {
        PrototypeUser {
            username: "u".into(),
            password_hash: "$2b$10$x".into(),
            role_name: role.map(str::to_owned),
            permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
            active: true,
            created_at: String::new(),
        }
    }

    #[test]
    fn roles_come_by_name_then_by_permissions() {
        assert_eq!(role_of(&user(Some("admin"), &[])), Role::Admin);
        assert_eq!(role_of(&user(Some("Operator"), &[])), Role::Operator);
        assert_eq!(role_of(&user(Some("viewer"), &["backup"])), Role::Viewer);
        assert_eq!(
            role_of(&user(Some("superuser"), &["view", "manage_users"])),
            Role::Admin
        );
        assert_eq!(
            role_of(&user(Some("backup-team"), &["backup", "view"])),
            Role::Operator
        );
        assert_eq!(role_of(&user(None, &["view"])), Role::Viewer);
        // Never printed with its hash.
        assert!(!format!("{:?}", user(None, &[])).contains("$2b$"));
    }

    #[test]
    fn entry_paths_stay_inside_the_snapshot() {
        assert_eq!(clean_entry_path("a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(clean_entry_path("./a//b/").unwrap(), "a/b");
        assert_eq!(
            clean_entry_path("фото/снимок.jpg").unwrap(),
            "фото/снимок.jpg"
        );
        for bad in ["/etc/passwd", "../x", "a/../../x", "a\\b", "", "/", "./"] {
            assert!(clean_entry_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn either_checksum_is_accepted() {
        assert!(checksum_matches("AB", "ab", "cd"));
        assert!(checksum_matches("cd", "ab", "cd"));
        assert!(!checksum_matches("ef", "ab", "cd"));
    }

    #[test]
    fn retention_is_adopted_only_when_it_was_on() {
        let mut s = PrototypeSettings {
            max_backups: Some(10),
            max_age_days: Some(30),
            retention_enabled: true,
            ..PrototypeSettings::default()
        };
        let r = s.retention().unwrap();
        assert_eq!((r.max_backups, r.max_age_days), (10, 30));
        s.retention_enabled = false;
        assert_eq!(s.retention(), None);
    }
}
