//! Free disk space, from sysinfo. sysinfo lists mounted filesystems but has no "which
//! one holds this path": the answer is the mount point that is the longest (whole
//! component) prefix of the path with every symlink resolved, and of several filesystems
//! mounted on one point the last mounted, which hides the others.
//!
//! Only that one filesystem is asked for its size (`statvfs`): listing asks none, so an
//! unrelated network mount that stopped answering cannot hold the check up.

use std::path::{Path, PathBuf};

use coffer_domain::alerts::{DiskMonitor, DiskSpace, DiskSpaceError};
use sysinfo::{DiskRefreshKind, Disks};

/// `DiskMonitor` over sysinfo's list of mounted filesystems.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysinfoDiskMonitor;

impl SysinfoDiskMonitor {
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

/// The index of the mount point that holds `path` (absolute, symlinks resolved): the
/// longest prefix, the last listed among equals.
fn holding_mount<'a>(path: &Path, mounts: impl IntoIterator<Item = &'a Path>) -> Option<usize> {
    mounts
        .into_iter()
        .enumerate()
        .filter(|(_, m)| path.starts_with(m))
        .max_by_key(|(_, m)| m.components().count())
        .map(|(i, _)| i)
}

/// `path` with every symlink resolved; for a path that does not exist yet (a repository
/// not created yet), its nearest existing ancestor's.
fn resolve(path: &Path) -> Result<PathBuf, DiskSpaceError> {
    let absolute = std::path::absolute(path)
        .map_err(|e| DiskSpaceError(format!("cannot make {} absolute: {e}", path.display())))?;
    let mut candidate = absolute.as_path();
    loop {
        match std::fs::canonicalize(candidate) {
            Ok(resolved) => return Ok(resolved),
            Err(e) => match candidate.parent() {
                Some(parent) if e.kind() == std::io::ErrorKind::NotFound => candidate = parent,
                _ => {
                    return Err(DiskSpaceError(format!(
                        "cannot resolve {}: {e}",
                        candidate.display()
                    )));
                }
            },
        }
    }
}

impl DiskMonitor for SysinfoDiskMonitor {
    fn space(&self, path: &Path) -> Result<DiskSpace, DiskSpaceError> {
        let resolved = resolve(path)?;
        let mut disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing())
            .map_err(|e| DiskSpaceError(format!("cannot list mounted filesystems: {e}")))?;
        let index = holding_mount(&resolved, disks.iter().map(sysinfo::Disk::mount_point))
            .ok_or_else(|| {
                DiskSpaceError(format!(
                    "no mounted filesystem found for {}",
                    resolved.display()
                ))
            })?;
        let disk = &mut disks[index];
        disk.refresh_specifics(DiskRefreshKind::nothing().with_storage());
        if disk.total_space() == 0 {
            return Err(DiskSpaceError(format!(
                "cannot read the size of the filesystem mounted at {}",
                disk.mount_point().display()
            )));
        }
        Ok(DiskSpace {
            total_bytes: disk.total_space(),
            available_bytes: disk.available_space(),
            mount_point: disk.mount_point().to_path_buf(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_whole_component_prefix_wins() {
        let mounts = [
            Path::new("/"),
            Path::new("/srv"),
            Path::new("/srv/backup"),
            Path::new("/srv/back"),
            Path::new("/srv/backup/nas"),
        ];
        for (path, want) in [
            ("/srv/backup/repository", Some(2)),
            ("/srv/backup", Some(2)),
            ("/srv/backups/x", Some(1)),
            ("/srv/backup/nas/repo", Some(4)),
            ("/home/u", Some(0)),
            ("/", Some(0)),
        ] {
            assert_eq!(holding_mount(Path::new(path), mounts), want, "{path}");
        }
        assert_eq!(holding_mount(Path::new("/x"), [Path::new("/srv")]), None);
    }

    #[test]
    fn of_two_filesystems_on_one_point_the_last_mounted_wins() {
        let mounts = [Path::new("/"), Path::new("/mnt"), Path::new("/mnt")];
        assert_eq!(holding_mount(Path::new("/mnt/a"), mounts), Some(2));
    }

    #[test]
    fn a_missing_path_resolves_to_its_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(
            resolve(&dir.path().join("not/yet/there")).expect("resolve"),
            root
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_resolved() {
        let dir = tempfile::tempdir().expect("temp dir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("mkdir");
        std::os::unix::fs::symlink(&real, dir.path().join("link")).expect("symlink");
        assert_eq!(
            resolve(&dir.path().join("link")).expect("resolve"),
            std::fs::canonicalize(&real).expect("canonical")
        );
    }

    /// On the real machine: a temporary directory lies on some mounted filesystem with a
    /// size, and the root directory on the root mount.
    #[test]
    fn the_machine_reports_the_volume_of_a_temp_dir() {
        let dir = tempfile::tempdir().expect("temp dir");
        let space = SysinfoDiskMonitor::new()
            .space(dir.path())
            .expect("free space of a temporary directory");
        assert!(space.total_bytes > 0);
        assert!(space.available_bytes <= space.total_bytes);
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert!(
            canonical.starts_with(&space.mount_point),
            "{} is not under {}",
            canonical.display(),
            space.mount_point.display()
        );
        let missing = SysinfoDiskMonitor::new()
            .space(&dir.path().join("repository/not/created"))
            .expect("a path not created yet");
        assert_eq!(missing.mount_point, space.mount_point);

        let root = SysinfoDiskMonitor::new()
            .space(Path::new("/"))
            .expect("free space of /");
        assert_eq!(root.mount_point, PathBuf::from("/"));
        assert!(root.total_bytes > 0);
    }
}
