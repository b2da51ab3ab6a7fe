//! `coffer report csv|audit-csv|pdf --output FILE`: the exports of the HTTP API, written
//! to a file as the local system administrator (audited as `system:<os user>`).
//!
//! The report is written to a new temporary file beside FILE (created exclusively, mode
//! 0600: it can hold usernames, client addresses and the audit trail's details), made
//! durable, and only then renamed to FILE. So FILE is never seen half-written, a failed
//! or interrupted (Ctrl-C) export leaves an existing FILE as it was and removes its
//! temporary file, and with `--force` an existing FILE is replaced, never written
//! through: a symlink is replaced by the report, not followed, and the report has mode
//! 0600 whatever the old file's. Without `--force` an existing FILE (a dangling symlink
//! included) is refused. The export is audited only once its temporary file exists.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use coffer_application::{AuditReportFilter, BackupReportFilter, ReportSink};

use super::{local_admin, services};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The backup history as CSV (RFC 4180; formula-like cells neutralised), newest
    /// first; all time unless --from/--to.
    Csv {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        period: Period,
        /// Only this source (name or id).
        #[arg(long)]
        source: Option<String>,
    },
    /// The audit trail as CSV, newest first; all time unless --from/--to.
    AuditCsv {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        period: Period,
        /// Only this user's events.
        #[arg(long)]
        username: Option<String>,
        /// Only this action (`login`, `backup_create`, `export`, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only successful (`true`) or failed (`false`) events.
        #[arg(long, value_name = "true|false")]
        success: Option<bool>,
    },
    /// The PDF report: summary, charts, backup history, audit summary; the last 30 days
    /// unless --from/--to.
    Pdf {
        #[command(flatten)]
        out: Output,
        #[command(flatten)]
        period: Period,
        /// Only this source (name or id).
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct Output {
    /// The file to write (mode 0600; written beside it, then renamed into place).
    #[arg(long, short, value_name = "FILE")]
    output: PathBuf,
    /// Replace the file if it exists (a symlink is replaced, not followed).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct Period {
    /// Start of the period, inclusive (RFC 3339, e.g. 2026-03-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    from: Option<DateTime<Utc>>,
    /// End of the period, exclusive (RFC 3339).
    #[arg(long, value_name = "TIME")]
    to: Option<DateTime<Utc>>,
}

fn exists_already(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} exists already; choose another file or pass --force to replace it",
        path.display()
    )
}

/// Whether `target` may be written: refused when anything is there (a dangling symlink
/// included) without `force`, and when it is not a regular file or a symlink (a
/// directory, a device) even with it.
fn check_target(target: &Path, force: bool) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot check {}", target.display()))),
        Ok(_) if !force => Err(exists_already(target)),
        Ok(m) if m.is_file() || m.file_type().is_symlink() => Ok(()),
        Ok(_) => anyhow::bail!(
            "{} is not a regular file; choose a file name for the report",
            target.display()
        ),
    }
}

/// A report being written: a temporary file in the target's directory, removed unless
/// [`Staged::commit`] puts it in place.
struct Staged {
    target: PathBuf,
    temp: PathBuf,
    file: File,
    force: bool,
    written: u64,
    committed: bool,
}

impl Staged {
    /// Checks `target` and creates the temporary file beside it (exclusively, 0600).
    fn create(target: &Path, force: bool) -> anyhow::Result<Self> {
        check_target(target, force)?;
        let name = target
            .file_name()
            .with_context(|| format!("{} does not name a file", target.display()))?;
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..100u32 {
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(
                ".{}-{stamp:08x}-{attempt}.coffer-tmp",
                std::process::id()
            ));
            let temp = dir.join(temp_name);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(&temp) {
                Ok(file) => {
                    return Ok(Self {
                        target: target.to_owned(),
                        temp,
                        file,
                        force,
                        written: 0,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("cannot create a file in {}", dir.display())));
                }
            }
        }
        anyhow::bail!("cannot create a temporary file in {}", dir.display())
    }

    /// Makes the report durable and puts it at the target. Without `force`, a file that
    /// appeared at the target meanwhile is kept and the report refused.
    fn commit(mut self) -> anyhow::Result<u64> {
        let target = self.target.clone();
        let failed = |e: std::io::Error| {
            anyhow::Error::new(e).context(format!("cannot write {}", target.display()))
        };
        self.file.sync_all().map_err(failed)?;
        if self.force {
            std::fs::rename(&self.temp, &self.target).map_err(failed)?;
        } else {
            // A link fails when the name is taken, where a rename would replace it.
            match std::fs::hard_link(&self.temp, &self.target) {
                Ok(()) => {
                    let _ = std::fs::remove_file(&self.temp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(exists_already(&self.target));
                }
                // A filesystem without hard links: check again, then rename.
                Err(_) => {
                    check_target(&self.target, false)?;
                    std::fs::rename(&self.temp, &self.target).map_err(failed)?;
                }
            }
        }
        self.committed = true;
        // The new name made durable too (best effort: not every filesystem can).
        if let Some(dir) = self.target.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(self.written)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[async_trait]
impl ReportSink for Staged {
    async fn write(&mut self, bytes: Vec<u8>) -> std::io::Result<()> {
        self.file.write_all(&bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Runs `export` into `staged` and commits it; on failure, or on Ctrl-C, the temporary
/// file is removed and the target left as it was. Returns (rows, bytes).
async fn write_to<F>(mut staged: Staged, export: F) -> anyhow::Result<(u64, u64)>
where
    F: AsyncFnOnce(&mut Staged) -> anyhow::Result<u64>,
{
    let rows = tokio::select! {
        rows = export(&mut staged) => rows?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!(
            "interrupted; {} was left as it was",
            staged.target.display()
        ),
    };
    let bytes = staged.commit()?;
    Ok((rows, bytes))
}

pub async fn run(settings: &coffer_config::Settings, command: ReportCommand) -> anyhow::Result<()> {
    let (ReportCommand::Csv { out, .. }
    | ReportCommand::AuditCsv { out, .. }
    | ReportCommand::Pdf { out, .. }) = &command;
    // The file can be written (or the export is refused) before anything is exported
    // and audited.
    let staged = Staged::create(&out.output, out.force)?;
    let services = services(settings).await?;
    let actor = local_admin();
    let reports = &services.reports;
    let result = async {
        match &command {
            ReportCommand::Csv {
                out,
                period,
                source,
            } => {
                let filter = BackupReportFilter {
                    from: period.from,
                    to: period.to,
                    source: source.clone(),
                };
                let export = reports.prepare_backups_csv(&actor, &filter).await?;
                let (rows, bytes) = write_to(staged, async |sink: &mut Staged| {
                    Ok(reports.write_backups_csv(&export, sink).await?.rows)
                })
                .await?;
                out!(
                    "wrote {}: {rows} snapshots, {bytes} bytes (CSV)",
                    out.output.display()
                );
            }
            ReportCommand::AuditCsv {
                out,
                period,
                username,
                action,
                success,
            } => {
                let filter = AuditReportFilter {
                    from: period.from,
                    to: period.to,
                    username: username.clone(),
                    action: action.clone(),
                    success: *success,
                };
                let export = reports.prepare_audit_csv(&actor, &filter).await?;
                let (rows, bytes) = write_to(staged, async |sink: &mut Staged| {
                    Ok(reports.write_audit_csv(&export, sink).await?.rows)
                })
                .await?;
                out!(
                    "wrote {}: {rows} audit events, {bytes} bytes (CSV)",
                    out.output.display()
                );
            }
            ReportCommand::Pdf {
                out,
                period,
                source,
            } => {
                let filter = BackupReportFilter {
                    from: period.from,
                    to: period.to,
                    source: source.clone(),
                };
                let report = reports.prepare_pdf(&actor, &filter).await?;
                let (_, bytes) = write_to(staged, async |sink: &mut Staged| {
                    // Drawing is CPU work: off the async workers.
                    let renderer = std::sync::Arc::clone(reports);
                    let pdf = tokio::task::spawn_blocking(move || renderer.render_pdf(&report))
                        .await
                        .context("the PDF renderer stopped")??;
                    sink.write(pdf).await?;
                    Ok(0)
                })
                .await?;
                out!("wrote {}: PDF report, {bytes} bytes", out.output.display());
            }
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    services.db.close().await?;
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt as _, symlink};

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("coffer-tmp"))
            .collect()
    }

    async fn export(staged: Staged, body: &'static [u8]) -> anyhow::Result<(u64, u64)> {
        write_to(staged, async |sink: &mut Staged| {
            sink.write(body.to_vec()).await?;
            Ok(1)
        })
        .await
    }

    #[tokio::test]
    async fn a_new_report_is_private_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.csv");
        let staged = Staged::create(&target, false).unwrap();
        assert!(!target.exists(), "nothing at the target while writing");
        assert_eq!(export(staged, b"a,b\r\n").await.unwrap(), (1, 5));
        assert_eq!(std::fs::read(&target).unwrap(), b"a,b\r\n");
        assert_eq!(mode(&target), 0o600);
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_existing_file_or_link_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.csv");
        std::fs::write(&file, b"old").unwrap();
        let dangling = dir.path().join("dangling.csv");
        symlink(dir.path().join("missing"), &dangling).unwrap();
        for target in [&file, &dangling] {
            let err = Staged::create(target, false).err().unwrap().to_string();
            assert!(err.contains("exists already"), "{err}");
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
        assert!(!dir.path().join("missing").exists());
        // A directory is no place for a report, even with --force.
        let err = Staged::create(dir.path(), true).err().unwrap().to_string();
        assert!(
            err.contains("not a regular file") || err.contains("does not name"),
            "{err}"
        );
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_file_that_appears_meanwhile_is_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.csv");
        let staged = Staged::create(&target, false).unwrap();
        std::fs::write(&target, b"someone else's").unwrap();
        let err = export(staged, b"report").await.unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"someone else's");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn force_replaces_a_symlink_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        let target = dir.path().join("r.csv");
        symlink(&victim, &target).unwrap();
        export(Staged::create(&target, true).unwrap(), b"report")
            .await
            .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "not followed");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.is_file(), "the link itself was replaced");
        assert_eq!(std::fs::read(&target).unwrap(), b"report");
        assert_eq!(mode(&target), 0o600);
    }

    #[tokio::test]
    async fn force_gives_a_replaced_file_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.csv");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        export(Staged::create(&target, true).unwrap(), b"new")
            .await
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(mode(&target), 0o600, "not the old file's 0644");
    }

    #[tokio::test]
    async fn a_failed_export_keeps_the_old_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("r.csv");
        std::fs::write(&target, b"last month's").unwrap();
        let staged = Staged::create(&target, true).unwrap();
        let err = write_to(staged, async |sink: &mut Staged| {
            sink.write(b"half a rep".to_vec()).await?;
            anyhow::bail!("the database went away")
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("database went away"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"last month's");
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
        // Dropped unwritten (a panic, an early return): no temporary file either.
        drop(Staged::create(&target, true).unwrap());
        assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn a_missing_directory_fails_before_anything_is_exported() {
        let dir = tempfile::tempdir().unwrap();
        let err = Staged::create(&dir.path().join("no/such/dir/r.csv"), false)
            .err()
            .unwrap();
        assert!(
            format!("{err:#}").contains("cannot create a file in"),
            "{err:#}"
        );
    }
}
