//! `coffer-system`: what Coffer asks of the host it runs on — questions about paths on
//! the server's own filesystem, the free space of its disks, the wall clock, and the
//! runtime that runs background jobs.

use std::io;
use std::path::{Path, PathBuf};

use coffer_domain::ports::{BackgroundTask, Clock, LocalPaths, PathProblem, Spawner};

mod disk;

pub use disk::SysinfoDiskMonitor;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Paths on the local filesystem (a NAS mount is local here too).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostPaths;

fn problem(path: &str, reason: impl Into<String>) -> PathProblem {
    PathProblem {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "does not exist".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

fn absolute(path: &str) -> Result<&Path, PathProblem> {
    let p = Path::new(path);
    if path.is_empty() || !p.is_absolute() {
        return Err(problem(path, "must be an absolute path"));
    }
    Ok(p)
}

fn text(path: &str, p: PathBuf) -> Result<String, PathProblem> {
    p.into_os_string()
        .into_string()
        .map_err(|_| problem(path, "resolves to a path that is not valid UTF-8"))
}

impl LocalPaths for HostPaths {
    fn readable_dir(&self, path: &str) -> Result<String, PathProblem> {
        let p = absolute(path)?;
        let canonical = std::fs::canonicalize(p).map_err(|e| problem(path, io_reason(&e)))?;
        if !canonical.is_dir() {
            return Err(problem(path, "is not a directory"));
        }
        std::fs::read_dir(&canonical)
            .map_err(|e| problem(path, format!("cannot be listed: {}", io_reason(&e))))?;
        text(path, canonical)
    }

    fn resolve_target(&self, path: &str) -> Result<String, PathProblem> {
        let p = absolute(path)?;
        // The longest part that exists is resolved by the kernel (every symlink in it);
        // what is left will be created, so it must be plain names.
        let mut existing = p;
        let mut rest = Vec::new();
        loop {
            match std::fs::symlink_metadata(existing) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let Some(parent) = existing.parent() else {
                        return Err(problem(path, "no part of it exists"));
                    };
                    rest.push(existing.file_name().map(PathBuf::from));
                    existing = parent;
                }
                Err(e) => return Err(problem(path, io_reason(&e))),
            }
        }
        let mut resolved = std::fs::canonicalize(existing).map_err(|e| {
            problem(
                path,
                format!(
                    "{} cannot be resolved: {}",
                    existing.display(),
                    io_reason(&e)
                ),
            )
        })?;
        for name in rest.into_iter().rev() {
            // `file_name` is `None` for `..`: in the missing part it cannot be resolved.
            let Some(name) = name else {
                return Err(problem(
                    path,
                    "must not contain `..` in the part that does not exist yet",
                ));
            };
            resolved.push(name);
        }
        text(path, resolved)
    }

    fn is_free(&self, path: &str) -> bool {
        match std::fs::symlink_metadata(path) {
            Err(e) => e.kind() == io::ErrorKind::NotFound,
            Ok(m) if m.is_dir() => std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none()),
            Ok(_) => false,
        }
    }
}

/// Runs background jobs on the tokio runtime the server runs on.
#[derive(Debug, Clone)]
pub struct TokioSpawner {
    handle: tokio::runtime::Handle,
}

impl TokioSpawner {
    /// A spawner for the runtime this is called on.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    #[must_use]
    pub fn current() -> Self {
        Self {
            handle: tokio::runtime::Handle::current(),
        }
    }
}

impl Spawner for TokioSpawner {
    fn spawn(&self, task: BackgroundTask) {
        drop(self.handle.spawn(task));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn s(p: &Path) -> String {
        p.to_str().unwrap().to_owned()
    }

    #[test]
    fn readable_dir_resolves_links_and_refuses_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(real.join("data")).unwrap();
        std::fs::write(real.join("file"), b"x").unwrap();
        symlink(real.join("data"), real.join("link")).unwrap();
        let paths = HostPaths;
        assert_eq!(
            paths.readable_dir(&s(&real.join("link"))).unwrap(),
            s(&real.join("data"))
        );
        assert!(paths.readable_dir("relative/dir").is_err());
        assert!(paths.readable_dir("").is_err());
        let e = paths.readable_dir(&s(&real.join("file"))).unwrap_err();
        assert_eq!(e.reason, "is not a directory");
        let e = paths.readable_dir(&s(&real.join("missing"))).unwrap_err();
        assert_eq!(e.reason, "does not exist");
    }

    #[test]
    fn resolve_target_follows_links_in_the_existing_part_only() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let root = real.join("root");
        let outside = real.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("escape")).unwrap();
        let paths = HostPaths;
        assert_eq!(
            paths.resolve_target(&s(&root.join("new/deeper"))).unwrap(),
            s(&root.join("new/deeper"))
        );
        // A symlink inside the root leads out of it.
        assert_eq!(
            paths.resolve_target(&s(&root.join("escape/x"))).unwrap(),
            s(&outside.join("x"))
        );
        // `..` in the missing part is refused; in the existing part it is resolved.
        assert!(
            paths
                .resolve_target(&format!("{}/new/../../outside", s(&root)))
                .is_err()
        );
        assert_eq!(
            paths
                .resolve_target(&format!("{}/../outside", s(&root)))
                .unwrap(),
            s(&outside)
        );
        // A dangling link cannot be resolved.
        symlink(real.join("nowhere"), root.join("dangling")).unwrap();
        assert!(paths.resolve_target(&s(&root.join("dangling/x"))).is_err());
        assert!(paths.resolve_target("relative").is_err());
    }

    #[test]
    fn free_means_missing_or_an_empty_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let paths = HostPaths;
        assert!(paths.is_free(&s(&real.join("missing"))));
        std::fs::create_dir(real.join("empty")).unwrap();
        assert!(paths.is_free(&s(&real.join("empty"))));
        std::fs::write(real.join("empty/f"), b"x").unwrap();
        assert!(!paths.is_free(&s(&real.join("empty"))));
        assert!(!paths.is_free(&s(&real.join("empty/f"))));
        symlink(real.join("missing"), real.join("link")).unwrap();
        assert!(!paths.is_free(&s(&real.join("link"))));
    }
}
