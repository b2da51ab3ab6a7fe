//! `coffer-prototype`: reads an installation of the Python prototype Coffer replaces, for
//! `coffer import prototype` (see [`coffer_domain::import`]).
//!
//! - The database (SQLite, opened read-only; nothing in the installation is ever
//!   written) gives the `backups`, `users` with their `roles`, and `audit_logs` rows.
//! - The key file (`config/secret.key`, or the one `config.json` names) is a Fernet key.
//! - Each completed backup's archive (`storage/backups/<filename>`) is a zip, stored as a
//!   Fernet token when the row says it is encrypted. [`ArchiveSource`] reads it twice as a
//!   stream: once to check the token and the checksum column (SHA-256 of the stored file
//!   or of the zip inside: installations differ), then to give the zip's entries one by
//!   one to the engine — nothing is unpacked to disk or held whole in memory. The second
//!   read is checked against the first at its end, so an archive that changes between
//!   them is refused and nothing of it is kept.

mod fernet;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone as _, Utc};
use coffer_domain::import::{
    InstallationProblem, PrototypeAuditRow, PrototypeBackup, PrototypeInstallation,
    PrototypeReader, PrototypeSettings, PrototypeUser, TreeEntry, TreeSource, TreeSourceError,
    checksum_matches,
};
use sea_orm::{ConnectOptions, ConnectionTrait as _, DatabaseBackend, Statement};
use sha2::{Digest as _, Sha256};

pub use fernet::{FernetKey, FernetReader};

/// Reads prototype installations from the local file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrototypeFiles;

fn problem(message: impl Into<String>) -> InstallationProblem {
    InstallationProblem(message.into())
}

/// The database file: `db` (relative to the installation), the one `config.json` names,
/// or the brief's `backup_system.db`, or the only `*.db` file there.
fn find_database(
    dir: &Path,
    db: Option<&str>,
    config: &serde_json::Value,
) -> Result<PathBuf, InstallationProblem> {
    if let Some(db) = db {
        let path = dir.join(db);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(problem(format!(
                "the database {} does not exist",
                path.display()
            )))
        };
    }
    let named = [
        config.pointer("/database/path"),
        config.pointer("/database/file"),
        config.pointer("/database_path"),
        config.pointer("/db_path"),
        config.pointer("/database"),
    ];
    for name in named
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
    {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(path);
        }
    }
    let default = dir.join("backup_system.db");
    if default.is_file() {
        return Ok(default);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| problem(format!("{} cannot be listed: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|x| x == "db" || x == "sqlite" || x == "sqlite3")
        })
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(problem(format!(
            "no database in {}: name it with --db FILE",
            dir.display()
        ))),
        _ => {
            found.sort();
            let listed: Vec<String> = found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            Err(problem(format!(
                "more than one database in {} ({}): name one with --db FILE",
                dir.display(),
                listed.join(", ")
            )))
        }
    }
}

/// The key file `config.json` names, or `config/secret.key`; `None` when there is none.
fn find_key(dir: &Path, config: &serde_json::Value) -> Option<PathBuf> {
    let named = config
        .pointer("/security/encryption_key_file")
        .or_else(|| config.pointer("/backup/encryption_key_file"))
        .and_then(serde_json::Value::as_str)
        .map(|n| dir.join(n));
    named
        .into_iter()
        .chain([dir.join("config/secret.key"), dir.join("secret.key")])
        .find(|p| p.is_file())
}

/// Where the archives lie: the directory `config.json` names, or `storage/backups`.
fn archive_dir(dir: &Path, config: &serde_json::Value) -> PathBuf {
    [
        config.pointer("/backup/backup_dir"),
        config.pointer("/backup/directory"),
        config.pointer("/storage/backup_dir"),
        config.pointer("/storage/path"),
    ]
    .into_iter()
    .flatten()
    .filter_map(serde_json::Value::as_str)
    .map(|n| dir.join(n))
    .chain([dir.join("storage/backups"), dir.join("backups")])
    .find(|p| p.is_dir())
    .unwrap_or_else(|| dir.join("storage/backups"))
}

fn settings(config: &serde_json::Value) -> PrototypeSettings {
    let n = |p: &str| config.pointer(p).and_then(serde_json::Value::as_u64);
    PrototypeSettings {
        max_backups: n("/retention/max_backups").and_then(|v| u32::try_from(v).ok()),
        max_age_days: n("/retention/max_age_days").and_then(|v| u32::try_from(v).ok()),
        retention_enabled: config
            .pointer("/retention/enabled")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true),
        max_storage_mb: n("/quota/max_storage_mb"),
        warning_threshold_mb: n("/quota/warning_threshold_mb"),
    }
}

/// A `sqlite:` URL opening `path` read-only.
fn read_only_url(path: &Path) -> String {
    let mut url = String::from("sqlite://");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => url.push_str("%25"),
            '?' => url.push_str("%3F"),
            '#' => url.push_str("%23"),
            c => url.push(c),
        }
    }
    url.push_str("?mode=ro");
    url
}

fn text(row: &sea_orm::QueryResult, column: &str) -> Option<String> {
    row.try_get::<Option<String>>("", column)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<i64>>("", column)
                .ok()
                .flatten()
                .map(|n| n.to_string())
        })
}

fn number(row: &sea_orm::QueryResult, column: &str) -> Option<i64> {
    row.try_get::<Option<i64>>("", column)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<Option<String>>("", column)
                .ok()
                .flatten()
                .and_then(|s| s.trim().parse().ok())
        })
}

#[async_trait::async_trait]
impl PrototypeReader for PrototypeFiles {
    async fn read(
        &self,
        dir: &str,
        db: Option<&str>,
    ) -> Result<PrototypeInstallation, InstallationProblem> {
        let dir = std::fs::canonicalize(dir).map_err(|e| problem(format!("{dir}: {e}")))?;
        if !dir.is_dir() {
            return Err(problem(format!("{} is not a directory", dir.display())));
        }
        let config = match std::fs::read(dir.join("config.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| problem(format!("config.json is not JSON: {e}")))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(problem(format!("config.json cannot be read: {e}"))),
        };
        let database = find_database(&dir, db, &config)?;
        let key_file = find_key(&dir, &config);
        let fingerprint = match &key_file {
            Some(k) => {
                let key = std::fs::read(k)
                    .map_err(|e| problem(format!("{} cannot be read: {e}", k.display())))?;
                FernetKey::parse(&key).map_err(|e| problem(format!("{} {e}", k.display())))?;
                hex::encode(Sha256::digest(key.trim_ascii()))
            }
            None => hex::encode(Sha256::digest(dir.to_string_lossy().as_bytes())),
        };
        let mut options = ConnectOptions::new(read_only_url(&database));
        options.max_connections(1).sqlx_logging(false);
        let conn = sea_orm::Database::connect(options).await.map_err(|e| {
            problem(format!(
                "{} cannot be opened as SQLite: {e}",
                database.display()
            ))
        })?;
        let query = |sql: &str| Statement::from_string(DatabaseBackend::Sqlite, sql.to_owned());
        let tables: Vec<String> = conn
            .query_all_raw(query("SELECT name FROM sqlite_master WHERE type = 'table'"))
            .await
            .map_err(|e| {
                problem(format!(
                    "{} is not a SQLite database: {e}",
                    database.display()
                ))
            })?
            .iter()
            .filter_map(|r| text(r, "name"))
            .collect();
        if !tables.iter().any(|t| t == "backups") {
            return Err(problem(format!(
                "{} has no `backups` table: it is not the prototype's database",
                database.display()
            )));
        }
        let has = |t: &str| tables.iter().any(|x| x == t);
        let read_error =
            |what: &str, e: sea_orm::DbErr| problem(format!("the {what} cannot be read: {e}"));
        let backups = conn
            .query_all_raw(query(
                "SELECT id, filename, size, created_at, status, checksum, encrypted FROM backups ORDER BY id",
            ))
            .await
            .map_err(|e| read_error("backups", e))?
            .iter()
            .map(|r| PrototypeBackup {
                id: number(r, "id").unwrap_or_default(),
                filename: text(r, "filename").unwrap_or_default(),
                size: number(r, "size").unwrap_or_default(),
                created_at: text(r, "created_at").unwrap_or_default(),
                status: text(r, "status").unwrap_or_default(),
                checksum: text(r, "checksum").filter(|c| !c.trim().is_empty()),
                encrypted: number(r, "encrypted").unwrap_or(0) != 0,
            })
            .collect();
        let users = if has("users") {
            let sql = if has("roles") {
                "SELECT u.username, u.password_hash, u.created_at, u.is_active, r.name AS role_name, r.permissions \
                 FROM users u LEFT JOIN roles r ON r.id = u.role_id ORDER BY u.id"
            } else {
                "SELECT username, password_hash, created_at, is_active, NULL AS role_name, NULL AS permissions \
                 FROM users ORDER BY id"
            };
            conn.query_all_raw(query(sql))
                .await
                .map_err(|e| read_error("users", e))?
                .iter()
                .map(|r| PrototypeUser {
                    username: text(r, "username").unwrap_or_default(),
                    password_hash: text(r, "password_hash").unwrap_or_default(),
                    role_name: text(r, "role_name"),
                    permissions: text(r, "permissions")
                        .and_then(|p| serde_json::from_str::<Vec<String>>(&p).ok())
                        .unwrap_or_default(),
                    active: number(r, "is_active").unwrap_or(1) != 0,
                    created_at: text(r, "created_at").unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let audit = if has("audit_logs") {
            conn.query_all_raw(query(
                "SELECT id, username, action, resource, timestamp, ip_address, user_agent, success \
                 FROM audit_logs ORDER BY id",
            ))
            .await
            .map_err(|e| read_error("audit log", e))?
            .iter()
            .map(|r| PrototypeAuditRow {
                id: number(r, "id").unwrap_or_default(),
                username: text(r, "username").unwrap_or_default(),
                action: text(r, "action").unwrap_or_default(),
                resource: text(r, "resource"),
                timestamp: text(r, "timestamp").unwrap_or_default(),
                ip_address: text(r, "ip_address"),
                user_agent: text(r, "user_agent"),
                success: number(r, "success").unwrap_or(1) != 0,
            })
            .collect()
        } else {
            Vec::new()
        };
        let _ = conn.close().await;
        Ok(PrototypeInstallation {
            archives: archive_dir(&dir, &config).to_string_lossy().into_owned(),
            dir: dir.to_string_lossy().into_owned(),
            database: database.to_string_lossy().into_owned(),
            key_file: key_file.map(|k| k.to_string_lossy().into_owned()),
            fingerprint: fingerprint[..16].to_owned(),
            backups,
            users,
            audit,
            settings: settings(&config),
        })
    }

    fn archive(
        &self,
        installation: &PrototypeInstallation,
        backup: &PrototypeBackup,
    ) -> Box<dyn TreeSource> {
        Box::new(ArchiveSource {
            path: Path::new(&installation.archives).join(&backup.filename),
            key_file: installation.key_file.as_ref().map(PathBuf::from),
            backup: backup.clone(),
        })
    }
}

/// One archive of the prototype, as a tree.
pub struct ArchiveSource {
    path: PathBuf,
    key_file: Option<PathBuf>,
    backup: PrototypeBackup,
}

/// Counts what passes through into a SHA-256.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The two digests of an archive: of the stored file, and of the zip it holds.
#[derive(Debug, PartialEq, Eq)]
struct Digests {
    stored: String,
    zip: String,
}

impl ArchiveSource {
    fn refused(&self, why: impl std::fmt::Display) -> TreeSourceError {
        TreeSourceError::Refused(format!(
            "backup {} ({}): {why}",
            self.backup.id, self.backup.filename
        ))
    }

    fn key(&self) -> Result<Option<FernetKey>, TreeSourceError> {
        if !self.backup.encrypted {
            return Ok(None);
        }
        let Some(file) = &self.key_file else {
            return Err(self.refused("is encrypted and the installation has no key file"));
        };
        let text = std::fs::read(file)
            .map_err(|e| TreeSourceError::Io(format!("{} cannot be read: {e}", file.display())))?;
        FernetKey::parse(&text)
            .map(Some)
            .map_err(|e| self.refused(format!("the key file {e}")))
    }

    fn open(&self) -> Result<File, TreeSourceError> {
        File::open(&self.path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                self.refused(format!("its file {} is missing", self.path.display()))
            } else {
                TreeSourceError::Io(format!("{} cannot be read: {e}", self.path.display()))
            }
        })
    }

    /// Reads `plain` (the zip) to its end, and digests both layers.
    fn digest_through(
        &self,
        file: File,
        key: Option<&FernetKey>,
        use_zip: impl FnOnce(&mut dyn Read) -> Result<(), TreeSourceError>,
    ) -> Result<Digests, TreeSourceError> {
        let mut stored = Hashing {
            inner: io::BufReader::with_capacity(256 * 1024, file),
            hash: Sha256::new(),
        };
        let zip_hash = {
            let inner: Box<dyn Read + '_> = match key {
                Some(key) => Box::new(FernetReader::new(&mut stored, key)),
                None => Box::new(&mut stored),
            };
            let mut zip = Hashing {
                inner,
                hash: Sha256::new(),
            };
            use_zip(&mut zip)?;
            // Whatever the zip reader left (the central directory) is read too: the
            // token authenticates, and the digests cover, the whole file.
            io::copy(&mut zip, &mut io::sink()).map_err(|e| self.read_error(&e))?;
            zip.hash.finalize()
        };
        Ok(Digests {
            stored: hex::encode(stored.hash.finalize()),
            zip: hex::encode(zip_hash),
        })
    }

    fn read_error(&self, e: &io::Error) -> TreeSourceError {
        if e.kind() == io::ErrorKind::InvalidData {
            self.refused(e)
        } else {
            TreeSourceError::Io(format!("{}: {e}", self.path.display()))
        }
    }

    /// The first read: the token authenticates and the checksum matches.
    fn check(&self, key: Option<&FernetKey>) -> Result<Digests, TreeSourceError> {
        let digests = self.digest_through(self.open()?, key, |_| Ok(()))?;
        if let Some(recorded) = &self.backup.checksum
            && !checksum_matches(recorded, &digests.stored, &digests.zip)
        {
            return Err(self.refused(
                "its checksum matches neither the stored file nor the zip inside (damaged?)",
            ));
        }
        Ok(digests)
    }
}

/// An entry's time: the Unix time of an extended-timestamp field when the zip has one,
/// else its MS-DOS time (which carries no zone: read as UTC, like the prototype's own
/// timestamps).
fn entry_time(file: &zip::read::ZipFile<'_, impl Read>) -> DateTime<Utc> {
    for field in file.extra_data_fields() {
        if let zip::ExtraField::ExtendedTimestamp(ts) = field
            && let Some(t) = ts.mod_time()
            && let Some(t) = Utc.timestamp_opt(i64::from(t), 0).single()
        {
            return t;
        }
    }
    file.last_modified()
        .and_then(|d| {
            Utc.with_ymd_and_hms(
                i32::from(d.year()),
                u32::from(d.month()),
                u32::from(d.day()),
                u32::from(d.hour()),
                u32::from(d.minute()),
                u32::from(d.second()),
            )
            .single()
        })
        .unwrap_or_default()
}

impl TreeSource for ArchiveSource {
    fn entries(
        &mut self,
        visit: &mut dyn FnMut(&TreeEntry, &mut dyn Read) -> Result<(), TreeSourceError>,
    ) -> Result<(), TreeSourceError> {
        let key = self.key()?;
        let checked = self.check(key.as_ref())?;
        let file = self.open()?;
        let name = format!("backup {} ({})", self.backup.id, self.backup.filename);
        let streamed = self.digest_through(file, key.as_ref(), |mut zip| {
            loop {
                let entry = match zip::read::read_zipfile_from_stream(&mut zip) {
                    Ok(Some(entry)) => entry,
                    Ok(None) => return Ok(()),
                    Err(zip::result::ZipError::Io(e)) => return Err(self.read_error(&e)),
                    Err(e) => {
                        return Err(TreeSourceError::Refused(format!(
                            "{name}: not a zip this import reads: {e}"
                        )));
                    }
                };
                let mut entry = entry;
                let tree_entry = TreeEntry {
                    path: entry.name().map_or_else(
                        |_| String::from_utf8_lossy(entry.name_raw()).into_owned(),
                        std::borrow::Cow::into_owned,
                    ),
                    dir: entry.is_dir(),
                    mtime: entry_time(&entry),
                    mode: entry.unix_mode().map(|m| m & 0o7777),
                };
                visit(&tree_entry, &mut entry)?;
                // Whatever the visitor left of the entry is read (and its CRC checked).
                io::copy(&mut entry, &mut io::sink()).map_err(|e| {
                    TreeSourceError::Refused(format!("{name}: {}: {e}", tree_entry.path))
                })?;
            }
        })?;
        if streamed != checked {
            return Err(self.refused("changed while it was being imported"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
