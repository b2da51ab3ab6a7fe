//! `coffer-system`: what Coffer asks of the host it runs on — questions about paths on
//! the server's own filesystem, the free space of its disks, the wall clock, and the
//! runtime that runs background jobs.

use std::io;
use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt as _;

use coffer_domain::excludes::{
    CACHEDIR_SIGNATURE, CACHEDIR_TAG, Entry, ExcludePreview, Excludes, is_cache_tag,
};
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

    fn preview_excludes(
        &self,
        dir: &str,
        excludes: &Excludes,
        sample: usize,
        max_entries: u64,
    ) -> Result<ExcludePreview, PathProblem> {
        let root = absolute(dir)?;
        let root_dev = std::fs::metadata(root)
            .map_err(|e| problem(dir, io_reason(&e)))?
            .dev();
        let mut preview = ExcludePreview::default();
        // Depth first, each directory in name order: the sample is the backup's order.
        let mut stack = vec![root.to_path_buf()];
        while let Some(current) = stack.pop() {
            let Ok(listing) = std::fs::read_dir(&current) else {
                continue;
            };
            // One past the limit at most: a huge directory is not held whole (its first
            // entries as listed are then looked at, not its first by name).
            let at_most = usize::try_from(max_entries)
                .unwrap_or(usize::MAX)
                .saturating_add(1);
            let mut entries: Vec<_> = listing.filter_map(Result::ok).take(at_most).collect();
            entries.sort_by_key(std::fs::DirEntry::file_name);
            let mut subdirs = Vec::new();
            for entry in entries {
                if preview.examined >= max_entries {
                    return Ok(preview);
                }
                preview.examined += 1;
                // Like `symlink_metadata`: a symlink is never followed.
                let (Ok(kind), Ok(meta)) = (entry.file_type(), entry.metadata()) else {
                    continue;
                };
                let path = entry.path();
                let relative = path
                    .strip_prefix(root)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let facts = Entry {
                    path: &relative,
                    is_dir: kind.is_dir(),
                    file_size: kind.is_file().then_some(meta.len()),
                    dev: meta.dev(),
                };
                let cache_tag = || has_cache_tag(&path);
                if let Some(why) = excludes.decide(facts, root_dev, cache_tag) {
                    preview.skipped += 1;
                    if preview.sample.len() < sample {
                        preview.sample.push((relative, why));
                    }
                } else if kind.is_dir() {
                    subdirs.push(path);
                }
            }
            stack.extend(subdirs.into_iter().rev());
        }
        preview.complete = true;
        Ok(preview)
    }
}

/// Whether the directory holds a `CACHEDIR.TAG` starting with the cache signature: only
/// its first bytes are read, never through a symlink, never waiting on a FIFO.
fn has_cache_tag(dir: &Path) -> bool {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK)
                .bits()
                .cast_signed(),
        )
        .open(dir.join(CACHEDIR_TAG))
    else {
        return false;
    };
    let mut head = Vec::with_capacity(CACHEDIR_SIGNATURE.len());
    file.take(CACHEDIR_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
        .is_ok_and(|_| is_cache_tag(&head))
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

/// Raises this process's soft limit on open files to its hard limit, as Go programs
/// (restic among them) do at start: systemd services and login shells usually start
/// with a soft limit of 1,024 and a hard one far above, and a restore keeps directory
/// handles and files open by the hundred. Returns the limit now in force (`None`: no
/// limit); a refusal leaves the limit as it was.
#[must_use]
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, getrlimit};
        let before = getrlimit(Resource::Nofile);
        let now = raise_open_files_limit();
        let after = getrlimit(Resource::Nofile);
        assert_eq!(now, after.current, "it returns the limit in force");
        assert_eq!(after.maximum, before.maximum, "the hard limit is untouched");
        if before.maximum.is_some() {
            assert_eq!(after.current, before.maximum, "raised to the hard limit");
        }
    }

    fn s(p: &Path) -> String {
        p.to_str().unwrap().to_owned()
    }

    fn filter(f: &coffer_domain::excludes::SourceFilter) -> Excludes {
        f.compile().unwrap()
    }

    #[test]
    fn the_preview_names_what_the_rules_leave_out_in_backup_order() {
        use coffer_domain::excludes::{Skip, SourceFilter};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("b/node_modules/x")).unwrap();
        std::fs::create_dir_all(root.join("c/cache")).unwrap();
        std::fs::write(root.join("c/cache/CACHEDIR.TAG"), CACHEDIR_SIGNATURE).unwrap();
        std::fs::create_dir_all(root.join("c/fake")).unwrap();
        std::fs::write(root.join("c/fake/CACHEDIR.TAG"), b"Signature: nope").unwrap();
        std::fs::write(root.join("a.tmp"), b"x").unwrap();
        std::fs::write(root.join("keep.tmp"), b"x").unwrap();
        std::fs::write(root.join("big"), [0u8; 21]).unwrap();
        std::fs::write(root.join("b/node_modules/x/deep.tmp"), b"x").unwrap();
        // A symlink to a directory is looked at, never followed.
        symlink(root.join("b"), root.join("link")).unwrap();
        let rules = filter(&SourceFilter {
            exclude: vec!["*.tmp".into(), "!keep.tmp".into(), "node_modules/".into()],
            exclude_caches: true,
            one_file_system: false,
            exclude_larger_than: Some(20),
        });
        let p = HostPaths
            .preview_excludes(&s(root), &rules, 10, 1000)
            .unwrap();
        assert_eq!(
            p.sample,
            [
                ("a.tmp".to_owned(), Skip::Pattern),
                ("big".to_owned(), Skip::TooLarge),
                ("b/node_modules".to_owned(), Skip::Pattern),
                ("c/cache".to_owned(), Skip::Cache),
            ]
        );
        assert_eq!(p.skipped, 4);
        assert!(p.complete);
        // a.tmp b big c keep.tmp link, node_modules, cache fake, fake/CACHEDIR.TAG
        assert_eq!(p.examined, 10);

        // The sample and the walk are bounded, and say so.
        let p = HostPaths.preview_excludes(&s(root), &rules, 1, 7).unwrap();
        assert_eq!(p.sample, [("a.tmp".to_owned(), Skip::Pattern)]);
        assert_eq!((p.skipped, p.examined, p.complete), (3, 7, false));

        let e = HostPaths
            .preview_excludes("relative", &rules, 1, 3)
            .unwrap_err();
        assert_eq!(e.reason, "must be an absolute path");
    }

    /// `/dev` holds other file systems (`/dev/shm`, `/dev/pts`) on the Linux systems this
    /// runs on: the real `one_file_system` decision, without a mount of our own.
    #[test]
    fn the_preview_leaves_out_other_file_systems_with_one_file_system() {
        use coffer_domain::excludes::{Skip, SourceFilter};
        let dev = std::fs::metadata("/dev").unwrap().dev();
        assert_ne!(
            std::fs::metadata("/dev/shm").unwrap().dev(),
            dev,
            "this test needs /dev/shm to be a file system of its own"
        );
        let one = filter(&SourceFilter {
            one_file_system: true,
            ..SourceFilter::default()
        });
        let p = HostPaths
            .preview_excludes("/dev", &one, 100, 100_000)
            .unwrap();
        assert!(
            p.sample
                .contains(&("shm".to_owned(), Skip::OtherFileSystem)),
            "{:?}",
            p.sample
        );
        let all = HostPaths
            .preview_excludes("/dev", &Excludes::none(), 100, 100_000)
            .unwrap();
        assert_eq!(all.skipped, 0);
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
