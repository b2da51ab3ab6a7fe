//! Streaming a snapshot, or a path inside it, as a tar or zip archive: entries are
//! written as the tree is walked and file data is fetched chunk by chunk, so nothing of
//! full size is ever held in memory or on disk. Every chunk is authenticated as it is
//! read; a damaged one aborts the stream with an error naming the file. Names that could
//! escape the directory the archive is unpacked into are refused, as in a restore.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_domain::engine::ArchiveFormat;

use crate::error::EngineError;
use crate::tree::{Node, NodeKind};
use crate::zipstream::{Meta, ZipStream};
use crate::{Repository, crypto};

/// The archive's writer, which refuses every write once the export has failed: the
/// archive formats' own finishing touches (tar's end-of-archive blocks written when its
/// builder is dropped) must never make a cut-off stream look complete.
struct Guarded {
    out: Box<dyn Write + Send>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl Write for Guarded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(std::io::Error::other(
                "the archive failed; not finishing it",
            ));
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.failed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(std::io::Error::other(
                "the archive failed; not finishing it",
            ));
        }
        self.out.flush()
    }
}

/// Reads a file's content blob after blob, and insists on the size its entry declared.
struct ChunkReader<'a> {
    repo: &'a Repository,
    handle: &'a tokio::runtime::Handle,
    chunks: std::slice::Iter<'a, crypto::ChunkId>,
    current: Vec<u8>,
    pos: usize,
    name: String,
    /// Bytes the tree says the file has; the archive header already promised them.
    expected: u64,
    produced: u64,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.current.len() {
            let Some(id) = self.chunks.next() else {
                if self.produced != self.expected {
                    return Err(std::io::Error::other(format!(
                        "{}: damaged: its chunks hold {} bytes, its entry says {}",
                        self.name, self.produced, self.expected
                    )));
                }
                return Ok(0);
            };
            self.current = self
                .handle
                .block_on(self.repo.blob(id))
                .map_err(|e| std::io::Error::other(format!("{}: {e}", self.name)))?;
            self.pos = 0;
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        self.produced += n as u64;
        if self.produced > self.expected {
            return Err(std::io::Error::other(format!(
                "{}: damaged: its chunks hold more than the {} bytes its entry says",
                self.name, self.expected
            )));
        }
        Ok(n)
    }
}

fn header(node: &Node, kind: ::tar::EntryType, size: u64) -> ::tar::Header {
    let mut h = ::tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(node.mode);
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(u64::try_from(node.mtime_ns / 1_000_000_000).unwrap_or(0));
    h
}

/// Writes `path` of `snapshot` (everything when `None`) as an archive into `out`. A
/// path inside the snapshot keeps its own name as the archive's top entry; the whole
/// snapshot has its root's entries at the top. Returns the bytes of file content written.
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
    let doc = repo.load_snapshot(snapshot).await?;
    let node = repo.resolve(&doc.root()?, path.unwrap_or("")).await?;
    // The top entry is named after the path's last part, which a tampered tree could
    // have named "..": it passes the same test as every entry below it.
    if !node.name.is_empty() && !Node::safe_name(&node.name) {
        return Err(EngineError::Invalid(format!(
            "refusing entry `{}`: its name would escape the archive's directory",
            node.display_name()
        )));
    }
    let handle = tokio::runtime::Handle::current();
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out: Box<dyn Write + Send> = Box::new(Guarded {
        out,
        failed: Arc::clone(&failed),
    });
    tokio::task::spawn_blocking(move || match format {
        ArchiveFormat::Tar => write_tar(&repo, &handle, &node, out, &failed),
        ArchiveFormat::Zip => write_zip(&repo, &handle, &node, out, &failed),
    })
    .await
    .map_err(|e| EngineError::Other(format!("archive task failed: {e}")))?
}

fn write_tar(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    node: &Node,
    out: Box<dyn Write + Send>,
    failed: &std::sync::atomic::AtomicBool,
) -> Result<u64, EngineError> {
    let mut builder = ::tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut bytes = 0;
    let base = if node.name.is_empty() {
        PathBuf::new()
    } else {
        PathBuf::from(OsStr::from_bytes(&node.name))
    };
    if let Err(e) = write_node(repo, handle, &mut builder, node, &base, &mut bytes) {
        // Before the builder is dropped, which would append the end-of-archive blocks.
        failed.store(true, std::sync::atomic::Ordering::Release);
        return Err(e);
    }
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(EngineError::io("writing the archive"))?;
    Ok(bytes)
}

fn write_zip(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    node: &Node,
    out: Box<dyn Write + Send>,
    failed: &std::sync::atomic::AtomicBool,
) -> Result<u64, EngineError> {
    let mut zip = ZipStream::new(out);
    let mut bytes = 0;
    if let Err(e) = zip_node(repo, handle, &mut zip, node, &node.name, &mut bytes) {
        failed.store(true, std::sync::atomic::Ordering::Release);
        return Err(e);
    }
    zip.finish()?;
    Ok(bytes)
}

fn zip_meta(node: &Node) -> Meta {
    Meta {
        mode: node.mode,
        mtime_secs: node.mtime_ns.div_euclid(1_000_000_000),
        uid: node.uid,
        gid: node.gid,
    }
}

/// Deflate level for a file: none when its first chunk did not shrink under zstd when it
/// was stored (already compressed data: deflating it only costs time), fast otherwise.
fn zip_level(repo: &Repository, node: &Node) -> flate2::Compression {
    let index = repo.index();
    let incompressible = node
        .content
        .first()
        .and_then(|c| index.get(c))
        .is_some_and(|(_, e)| u64::from(e.length) * 16 >= u64::from(e.raw_length) * 15);
    if incompressible {
        flate2::Compression::none()
    } else {
        flate2::Compression::fast()
    }
}

fn zip_node<W: Write>(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    zip: &mut ZipStream<W>,
    node: &Node,
    name: &[u8],
    bytes: &mut u64,
) -> Result<(), EngineError> {
    match node.kind {
        NodeKind::Dir => {
            if !name.is_empty() {
                zip.add_dir(name, zip_meta(node))?;
            }
            if let Some(sub) = node.subtree {
                for child in handle.block_on(repo.tree(&sub))? {
                    if !Node::safe_name(&child.name) {
                        return Err(EngineError::Invalid(format!(
                            "refusing entry `{}`: its name would escape the archive's directory",
                            child.display_name()
                        )));
                    }
                    let child_name = if name.is_empty() {
                        child.name.clone()
                    } else {
                        [name, b"/", &child.name].concat()
                    };
                    zip_node(repo, handle, zip, &child, &child_name, bytes)?;
                }
            }
        }
        NodeKind::Symlink => zip.add_symlink(name, &node.link_target, zip_meta(node))?,
        NodeKind::File => {
            let shown = String::from_utf8_lossy(name);
            let chunks = node.content.iter().map(|id| {
                handle.block_on(repo.blob(id)).map_err(|e| match e {
                    EngineError::Damaged(m) | EngineError::Corrupt(m) => {
                        EngineError::Damaged(format!("{shown}: {m}"))
                    }
                    other => other,
                })
            });
            *bytes += zip.add_file(
                name,
                zip_meta(node),
                node.size,
                zip_level(repo, node),
                chunks,
            )?;
        }
    }
    Ok(())
}

fn write_node<W: Write>(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    builder: &mut ::tar::Builder<W>,
    node: &Node,
    path: &Path,
    bytes: &mut u64,
) -> Result<(), EngineError> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::Other && e.to_string().contains("damaged") {
            EngineError::Damaged(e.to_string())
        } else {
            EngineError::io("writing the archive")(e)
        }
    };
    match node.kind {
        NodeKind::Dir => {
            if !path.as_os_str().is_empty() {
                let mut h = header(node, ::tar::EntryType::Directory, 0);
                builder
                    .append_data(&mut h, path, std::io::empty())
                    .map_err(io)?;
            }
            if let Some(sub) = node.subtree {
                for child in handle.block_on(repo.tree(&sub))? {
                    if !Node::safe_name(&child.name) {
                        return Err(EngineError::Invalid(format!(
                            "refusing entry `{}`: its name would escape the archive's directory",
                            child.display_name()
                        )));
                    }
                    let child_path = path.join(OsStr::from_bytes(&child.name));
                    write_node(repo, handle, builder, &child, &child_path, bytes)?;
                }
            }
        }
        NodeKind::Symlink => {
            let mut h = header(node, ::tar::EntryType::Symlink, 0);
            builder
                .append_link(
                    &mut h,
                    path,
                    Path::new(OsStr::from_bytes(&node.link_target)),
                )
                .map_err(io)?;
        }
        NodeKind::File => {
            let mut h = header(node, ::tar::EntryType::Regular, node.size);
            let reader = ChunkReader {
                repo,
                handle,
                chunks: node.content.iter(),
                current: Vec::new(),
                pos: 0,
                name: path.display().to_string(),
                expected: node.size,
                produced: 0,
            };
            builder.append_data(&mut h, path, reader).map_err(io)?;
            *bytes += node.size;
        }
    }
    Ok(())
}
