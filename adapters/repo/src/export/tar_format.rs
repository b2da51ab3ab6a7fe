//! Tar through the `tar` crate's builder: GNU headers (long names and link targets in
//! GNU's long-name entries), mode, numeric owner and mtime in whole seconds.

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use ::tar::{EntryType, Header};

use super::{Content, Entries};
use crate::error::EngineError;
use crate::tree::Node;

pub(super) struct TarEntries<W: Write> {
    builder: ::tar::Builder<W>,
}

impl<W: Write> TarEntries<W> {
    pub fn new(out: W) -> Self {
        let mut builder = ::tar::Builder::new(out);
        builder.follow_symlinks(false);
        Self { builder }
    }

    /// Writes the end-of-archive blocks; returns the output, flushed.
    pub fn finish(self) -> Result<W, EngineError> {
        let mut out = self.builder.into_inner().map_err(io_error)?;
        out.flush().map_err(io_error)?;
        Ok(out)
    }
}

fn io_error(e: std::io::Error) -> EngineError {
    EngineError::io("writing the archive")(e)
}

fn header(node: &Node, kind: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(node.mode);
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(u64::try_from(node.mtime_ns / 1_000_000_000).unwrap_or(0));
    h
}

impl<W: Write> Entries for TarEntries<W> {
    fn dir(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError> {
        let mut h = header(node, EntryType::Directory, 0);
        let path = Path::new(OsStr::from_bytes(path));
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .map_err(io_error)
    }

    fn symlink(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError> {
        let mut h = header(node, EntryType::Symlink, 0);
        let path = Path::new(OsStr::from_bytes(path));
        let target = Path::new(OsStr::from_bytes(&node.link_target));
        self.builder
            .append_link(&mut h, path, target)
            .map_err(io_error)
    }

    fn file(&mut self, path: &[u8], node: &Node, content: Content<'_>) -> Result<u64, EngineError> {
        let mut h = header(node, EntryType::Regular, node.size);
        let path = Path::new(OsStr::from_bytes(path));
        self.builder
            .append_data(&mut h, path, content.reader)
            .map_err(io_error)?;
        Ok(node.size)
    }
}
