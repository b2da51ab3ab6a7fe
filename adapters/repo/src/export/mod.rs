//! Streaming a snapshot, or a path inside it, as a tar or zip archive: entries are
//! written as the tree is walked and file data is fetched chunk by chunk, so nothing of
//! full size is ever held in memory or on disk. Every chunk is authenticated as it is
//! read; a damaged one aborts the stream with an error naming the file, and the archive
//! is then never finished (no end-of-archive blocks, no central directory), so a cut-off
//! download cannot pass for a whole one. Names that could escape the directory the
//! archive is unpacked into, or that repeat an earlier entry's in the same directory, are
//! refused by the same check as in a restore ([`DirNames`]); the archive then stops there,
//! unfinished.
//!
//! # What each format carries
//!
//! **tar** (POSIX pax): ustar headers, each preceded by a pax extended header (typeflag
//! `x`) when the entry needs one. It carries what a restore brings back except holes:
//! - names and symlink targets as raw bytes. Those that do not fit ustar's fields go in
//!   the `path` / `linkpath` records (with `hdrcharset=BINARY` when they are not UTF-8,
//!   which GNU tar does not know: it says it ignores it and unpacks the raw name), and
//!   the ustar header keeps a shortened name for readers that ignore pax;
//! - mode (with setuid, setgid and sticky bits), numeric owner (no user or group names),
//!   and mtime for files, directories and symlinks alike; to the nanosecond in an `mtime`
//!   record when it has a fractional part (as most have: such an entry takes 1 KiB more
//!   for its extended header);
//! - extended attributes, as `SCHILY.xattr.<name>` records with the raw value, as GNU
//!   tar's `--xattrs` writes and reads them. POSIX ACLs are among them
//!   (`system.posix_acl_access`, `system.posix_acl_default`, in the kernel's binary form):
//!   `tar --xattrs --xattrs-include='*' -xpf` puts everything back;
//! - hard links: the second and later names of a file (within the exported part) are link
//!   entries (typeflag `1`) to the first name, and the content is stored once;
//! - holes (sparse files) come out as zeros.
//!
//! **zip**: written by the `zip` crate's streaming writer (a data descriptor after each
//! file's content; ZIP64 where a size, an offset or the entry count needs it). It carries
//! names as raw bytes, the Unix mode with its file type, the mtime in whole seconds
//! (extended timestamp 0x5455, and the DOS fields for other readers), the numeric owner
//! (Info-ZIP's 0x7875 field), directories and symlinks (the target as content). Not
//! carried, for want of a standard field: extended attributes and ACLs, sub-second times,
//! and hard links (each name holds the content again).

mod tar_format;
mod zip_format;

use std::io::{BufRead, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use coffer_domain::engine::ArchiveFormat;

use crate::error::EngineError;
use crate::tree::{DirNames, Node, NodeKind};
use crate::{Repository, crypto};

/// The archive's writer, which passes nothing on once the export has failed: the
/// archive formats' own finishing touches (tar's end-of-archive blocks, zip's central
/// directory, both written when their writers are dropped) must never make a cut-off
/// stream look complete. A failed write fails the export too, so that no second try at
/// finishing (the zip writer's, on drop) can follow a first one cut short. Writes after a
/// failure are swallowed rather than refused, as the zip writer reports a failure to
/// finish on drop on stderr.
struct Guarded {
    out: Box<dyn Write + Send>,
    failed: Arc<AtomicBool>,
}

impl Guarded {
    fn check<T>(&self, result: std::io::Result<T>) -> std::io::Result<T> {
        if result
            .as_ref()
            .is_err_and(|e| e.kind() != std::io::ErrorKind::Interrupted)
        {
            self.failed.store(true, Ordering::Release);
        }
        result
    }
}

impl Write for Guarded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed.load(Ordering::Acquire) {
            return Ok(buf.len());
        }
        let result = self.out.write(buf);
        self.check(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let result = self.out.flush();
        self.check(result)
    }
}

/// Reads a file's content blob after blob, and insists on the size its entry declared
/// (the archive header already promised it).
struct ChunkReader<'a> {
    repo: &'a Repository,
    handle: &'a tokio::runtime::Handle,
    chunks: std::slice::Iter<'a, crypto::ChunkId>,
    current: Vec<u8>,
    pos: usize,
    name: String,
    expected: u64,
    /// Bytes of the chunks fetched so far.
    fetched: u64,
    /// Why reading stopped, when the content is at fault rather than the archive's writer:
    /// reported instead of the I/O error the writer passes on.
    failure: Option<EngineError>,
}

impl<'a> ChunkReader<'a> {
    fn new(
        repo: &'a Repository,
        handle: &'a tokio::runtime::Handle,
        node: &'a Node,
        path: &[u8],
    ) -> Self {
        Self {
            repo,
            handle,
            chunks: node.content.iter(),
            current: Vec::new(),
            pos: 0,
            name: String::from_utf8_lossy(path).into_owned(),
            expected: node.size,
            fetched: 0,
            failure: None,
        }
    }

    fn fail(&mut self, e: EngineError) -> std::io::Error {
        let shown = std::io::Error::other(e.to_string());
        self.failure = Some(e);
        shown
    }
}

impl BufRead for ChunkReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.current.len() {
            let Some(id) = self.chunks.next() else {
                if self.fetched != self.expected {
                    return Err(self.fail(EngineError::Damaged(format!(
                        "{}: its chunks hold {} bytes, its entry says {}",
                        self.name, self.fetched, self.expected
                    ))));
                }
                return Ok(&[]);
            };
            let chunk = match self.handle.block_on(self.repo.blob(id)) {
                Ok(chunk) => chunk,
                Err(EngineError::Damaged(m) | EngineError::Corrupt(m)) => {
                    let e = EngineError::Damaged(format!("{}: {m}", self.name));
                    return Err(self.fail(e));
                }
                Err(other) => return Err(self.fail(other)),
            };
            self.fetched += chunk.len() as u64;
            if self.fetched > self.expected {
                return Err(self.fail(EngineError::Damaged(format!(
                    "{}: its chunks hold more than the {} bytes its entry says",
                    self.name, self.expected
                ))));
            }
            self.current = chunk;
            self.pos = 0;
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.current.len());
    }
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// A file's content as an archive format gets it.
struct Content<'r> {
    reader: &'r mut dyn BufRead,
    /// Its first chunk did not shrink under zstd when it was stored (already compressed
    /// data): compressing it again only costs time.
    incompressible: bool,
}

/// An archive format, fed the entries in walk order (a directory before its entries).
/// `path` is the entry's path inside the archive, raw bytes joined with `/`.
trait Entries {
    fn dir(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError>;
    fn symlink(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError>;
    /// Returns the bytes of content written (none for a name the content is already in).
    fn file(&mut self, path: &[u8], node: &Node, content: Content<'_>) -> Result<u64, EngineError>;
}

/// Writes `path` of `snapshot` (everything when `None`) as an archive into `out`. A
/// path inside the snapshot keeps its own name as the archive's top entry; the whole
/// snapshot has its root's entries at the top. Returns the bytes of file content written
/// (in a tar, a hard-linked file's content counts once).
///
/// # Errors
/// `NotFound`, `Invalid` (a name that would escape), `Damaged` (naming the file), or the
/// writer's error (a client that went away).
pub async fn write(
    repo: Arc<Repository>,
    snapshot: &str,
    path: Option<&str>,
    format: ArchiveFormat,
    out: Box<dyn Write + Send>,
) -> Result<u64, EngineError> {
    let zip64 = zip_format::Zip64::WhenNeeded;
    write_with(repo, snapshot, path, format, zip64, out).await
}

/// [`write`], with every zip entry and the end records in ZIP64 form: the tests' way to
/// reach those paths without gigabytes of data.
#[cfg(test)]
pub async fn write_forcing_zip64(
    repo: Arc<Repository>,
    snapshot: &str,
    path: Option<&str>,
    out: Box<dyn Write + Send>,
) -> Result<u64, EngineError> {
    let zip64 = zip_format::Zip64::Always;
    write_with(repo, snapshot, path, ArchiveFormat::Zip, zip64, out).await
}

async fn write_with(
    repo: Arc<Repository>,
    snapshot: &str,
    path: Option<&str>,
    format: ArchiveFormat,
    zip64: zip_format::Zip64,
    out: Box<dyn Write + Send>,
) -> Result<u64, EngineError> {
    let doc = repo.load_snapshot(snapshot).await?;
    let node = repo.resolve(&doc.root()?, path.unwrap_or("")).await?;
    // The top entry is named after the path's last part, which a tampered tree could
    // have named "..": it passes the same test as every entry below it.
    if !node.name.is_empty() && !Node::safe_name(&node.name) {
        return Err(escaping(&node));
    }
    let handle = tokio::runtime::Handle::current();
    let failed = Arc::new(AtomicBool::new(false));
    let out = Guarded {
        out,
        failed: Arc::clone(&failed),
    };
    tokio::task::spawn_blocking(move || {
        let result = match format {
            ArchiveFormat::Tar => {
                let mut tar = tar_format::TarEntries::new(out);
                walk_all(&repo, &handle, &mut tar, &node, &failed).and_then(|n| {
                    tar.finish()?;
                    Ok(n)
                })
            }
            ArchiveFormat::Zip => {
                let mut zip = zip_format::ZipEntries::new(out, zip64);
                walk_all(&repo, &handle, &mut zip, &node, &failed).and_then(|n| {
                    zip.finish()?;
                    Ok(n)
                })
            }
        };
        // Whatever failed, the writers (dropped here at the latest) must not finish the
        // archive.
        if result.is_err() {
            failed.store(true, Ordering::Release);
        }
        result
    })
    .await
    .map_err(|e| EngineError::Other(format!("archive task failed: {e}")))?
}

/// Walks `node` into `entries`; on failure, marks the archive failed before its writer
/// can be dropped (which would finish it).
fn walk_all(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    entries: &mut dyn Entries,
    node: &Node,
    failed: &AtomicBool,
) -> Result<u64, EngineError> {
    let mut bytes = 0;
    let result = walk(repo, handle, entries, node, &node.name, &mut bytes);
    if result.is_err() {
        failed.store(true, Ordering::Release);
    }
    result.map(|()| bytes)
}

fn escaping(node: &Node) -> EngineError {
    EngineError::Invalid(format!(
        "refusing entry `{}`: its name would escape the archive's directory or collide \
         with another entry's",
        node.display_name()
    ))
}

fn walk(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    entries: &mut dyn Entries,
    node: &Node,
    path: &[u8],
    bytes: &mut u64,
) -> Result<(), EngineError> {
    match node.kind {
        NodeKind::Dir => {
            if !path.is_empty() {
                entries.dir(path, node)?;
            }
            if let Some(sub) = node.subtree {
                let mut names = DirNames::default();
                for child in handle.block_on(repo.tree(&sub))? {
                    if !names.admit(&child.name) {
                        return Err(escaping(&child));
                    }
                    let child_path = if path.is_empty() {
                        child.name.clone()
                    } else {
                        [path, b"/", &child.name].concat()
                    };
                    walk(repo, handle, entries, &child, &child_path, bytes)?;
                }
            }
        }
        NodeKind::Symlink => entries.symlink(path, node)?,
        NodeKind::File => {
            let mut reader = ChunkReader::new(repo, handle, node, path);
            let content = Content {
                reader: &mut reader,
                incompressible: incompressible(repo, node),
            };
            match entries.file(path, node, content) {
                Ok(n) => *bytes += n,
                // The content's own failure (a damaged chunk) rather than the archive
                // writer's report of it.
                Err(e) => return Err(reader.failure.take().unwrap_or(e)),
            }
        }
    }
    Ok(())
}

/// Whether a file's first chunk did not shrink under zstd when it was stored.
fn incompressible(repo: &Repository, node: &Node) -> bool {
    let index = repo.index();
    node.content
        .first()
        .and_then(|c| index.get(c))
        .is_some_and(|(_, e)| u64::from(e.length) * 16 >= u64::from(e.raw_length) * 15)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Refuses its first write and takes every later one, as no client does: a second try
    /// at finishing an archive must not get through either.
    struct FlakyClient {
        refused_once: bool,
        received: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for FlakyClient {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if !self.refused_once {
                self.refused_once = true;
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            self.received.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_a_failed_write_nothing_reaches_the_client() {
        let received = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicBool::new(false));
        let mut out = Guarded {
            out: Box::new(FlakyClient {
                refused_once: false,
                received: Arc::clone(&received),
            }),
            failed: Arc::clone(&failed),
        };
        assert!(out.write_all(b"local header").is_err());
        assert!(failed.load(Ordering::Acquire));
        // The writer's finishing touches, on drop: swallowed.
        out.write_all(b"central directory").unwrap();
        out.flush().unwrap();
        assert!(received.lock().unwrap().is_empty());
    }
}
