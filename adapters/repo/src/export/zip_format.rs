//! Zip through the `zip` crate's streaming writer ([`ZipWriter::new_stream`]): nothing
//! written is revisited, so each file's CRC and sizes follow its content in a data
//! descriptor. What each entry holds:
//! - files deflated at the fastest level, or stored when their data did not shrink under
//!   zstd (compressing it again only costs time); chunk by chunk, never whole. A stored
//!   entry with a data descriptor is read by every reader that uses the central
//!   directory (unzip, 7-Zip, Python, libarchive), but not by a few that read the stream
//!   alone (Java's `ZipInputStream`). The crate's deflate has no level 0 (stored blocks
//!   inside deflate), which the hand-written writer before it used for such data;
//! - "made by" Unix, the external attributes holding the Unix mode with its file type
//!   (`S_IFREG`, `S_IFDIR`, `S_IFLNK`; setuid, setgid and sticky bits kept), plus the
//!   MS-DOS directory bit on directories for readers that ignore the Unix mode;
//! - the mtime in the extended timestamp (0x5455, whole seconds) and in the DOS fields
//!   (UTC, clamped to 1980–2107); the numeric owner in Info-ZIP's Unix field (0x7875);
//! - symlinks with their target as content (stored), directories as names ending in `/`;
//! - names and symlink targets as raw bytes, flagged UTF-8 when they are and not ASCII;
//! - ZIP64 where a field overflows: a file announced at [`ZIP64_FROM`] or more has ZIP64
//!   sizes from its local header on; offsets past 4 GiB and more than 65,535 entries get
//!   ZIP64 fields and end records (the crate decides those).
//!
//! Zip has no hard links: each name of a hard-linked file holds the content again. It has
//! no standard field for extended attributes or ACLs either, so they are left out.
//!
//! Memory: one chunk at a time plus the deflate state; the writer keeps a name and its
//! header's fields per entry for the central directory, as every zip writer must.

use std::io::{BufWriter, Cursor, Write};

use zip::result::ZipError;
use zip::write::{FullFileOptions, StreamWriter};
use zip::{CompressionMethod, DateTime, System, ZipArchive, ZipWriter};

use super::{Content, Entries};
use crate::error::EngineError;
use crate::tree::Node;

const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
/// The MS-DOS directory attribute, for readers that ignore the Unix mode.
const DOS_DIRECTORY: u32 = 0x10;

const EXTRA_TIMESTAMP: u16 = 0x5455;
const EXTRA_UNIX_OWNER: u16 = 0x7875;

/// Files announced at this size or more are written as ZIP64 from their local header on:
/// deflate may expand incompressible data slightly, so the margin keeps a file just below
/// 4 GiB from overflowing a 32-bit descriptor.
const ZIP64_FROM: u64 = 0xf000_0000;

/// Deflate's fastest level.
const FAST: i64 = 1;

/// When entries and the end of the archive take their ZIP64 form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zip64 {
    WhenNeeded,
    /// Every file and the end records, to test those paths without gigabytes of data.
    Always,
}

pub(super) struct ZipEntries<W: Write> {
    zip: ZipWriter<StreamWriter<BufWriter<W>>>,
    zip64: Zip64,
}

fn zip_error(e: ZipError) -> EngineError {
    match e {
        ZipError::Io(e) => io_error(e),
        other => EngineError::Invalid(format!("cannot write this entry into a zip: {other}")),
    }
}

fn io_error(e: std::io::Error) -> EngineError {
    EngineError::io("writing the archive")(e)
}

/// MS-DOS time and date fields (local time by definition; UTC here, as the extended
/// timestamp carries the real instant), clamped to the years the format can hold.
fn dos_time(secs: i64) -> (u16, u16) {
    use chrono::{Datelike as _, Timelike as _};
    // 1980-01-01 00:00:00 and 2107-12-31 23:59:58 UTC.
    const FIRST: i64 = 315_532_800;
    const LAST: i64 = 4_354_819_198;
    let Some(t) = chrono::DateTime::from_timestamp(secs.clamp(FIRST, LAST), 0) else {
        return (0, 0x21);
    };
    let year = u32::try_from(t.year() - 1980).unwrap_or(0);
    let time = (t.hour() << 11) | (t.minute() << 5) | (t.second() / 2);
    let date = (year << 9) | (t.month() << 5) | t.day();
    (
        u16::try_from(time).unwrap_or(0),
        u16::try_from(date).unwrap_or(0x21),
    )
}

/// The options every entry of `node` starts from: its name, Unix mode and type, times and
/// owner.
fn options<'n>(
    node: &Node,
    name: &'n [u8],
    unix_type: u32,
) -> Result<FullFileOptions<'static, 'n>, EngineError> {
    let secs = node.mtime_ns.div_euclid(1_000_000_000);
    let (time, date) = dos_time(secs);
    let dos_attributes = if unix_type == S_IFDIR {
        DOS_DIRECTORY
    } else {
        0
    };
    let mut options = FullFileOptions::default()
        .name(name)
        .system(System::Unix)
        .external_attributes(((unix_type | (node.mode & 0o7777)) << 16) | dos_attributes)
        .last_modified_time(DateTime::try_from_msdos(date, time).unwrap_or(DateTime::DEFAULT));
    // The extended timestamp's time is a signed 32-bit count of seconds: flags (bit 0:
    // the modification time is present), then the time.
    if let Ok(mtime) = i32::try_from(secs) {
        let mut field = vec![1u8];
        field.extend_from_slice(&mtime.to_le_bytes());
        options
            .add_extra_field(EXTRA_TIMESTAMP, field, false)
            .map_err(zip_error)?;
    }
    // Version 1, then the uid and the gid, each with its size.
    let mut owner = vec![1u8, 4];
    owner.extend_from_slice(&node.uid.to_le_bytes());
    owner.push(4);
    owner.extend_from_slice(&node.gid.to_le_bytes());
    options
        .add_extra_field(EXTRA_UNIX_OWNER, owner, false)
        .map_err(zip_error)?;
    Ok(options)
}

impl<W: Write> ZipEntries<W> {
    pub fn new(out: W, zip64: Zip64) -> Self {
        let mut zip = ZipWriter::new_stream(BufWriter::with_capacity(64 * 1024, out));
        if zip64 == Zip64::Always {
            // An (empty) extensible data sector is written in the ZIP64 end record, so
            // the writer ends the archive with the ZIP64 records.
            zip.set_raw_zip64_extensible_data_sector(Box::new([]));
        }
        Self { zip, zip64 }
    }

    /// Writes the central directory and the end records; returns the output, flushed.
    pub fn finish(self) -> Result<W, EngineError> {
        let buffered = self.zip.finish().map_err(zip_error)?.into_inner();
        let mut out = buffered
            .into_inner()
            .map_err(|e| io_error(e.into_error()))?;
        out.flush().map_err(io_error)?;
        Ok(out)
    }

    /// A directory whose name is not UTF-8. The crate's `add_directory` takes a `String`,
    /// and an entry begun with `start_file_with_options` without a data descriptor (as a
    /// directory is) ends by going back to its local header, which a stream cannot do. So
    /// the entry is written into a small archive in memory, which can, and copied over as
    /// it is (`raw_copy_file` writes it without going back).
    fn dir_with_raw_name(&mut self, options: FullFileOptions<'_, '_>) -> Result<(), ZipError> {
        let mut scratch = ZipWriter::new(Cursor::new(Vec::new()));
        scratch.start_file_with_options(options)?;
        let mut archive = ZipArchive::new(scratch.finish()?)?;
        self.zip.raw_copy_file(archive.by_index_raw(0)?)
    }
}

impl<W: Write> Entries for ZipEntries<W> {
    fn dir(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError> {
        let name = [path, b"/"].concat();
        let options = options(node, &name, S_IFDIR)?.compression_method(CompressionMethod::Stored);
        match std::str::from_utf8(&name) {
            Ok(utf8) => self.zip.add_directory(utf8, options),
            Err(_) => self.dir_with_raw_name(options),
        }
        .map_err(zip_error)
    }

    fn symlink(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError> {
        let options = options(node, path, S_IFLNK)?.compression_method(CompressionMethod::Stored);
        // Not `add_symlink`, which takes the target as a string: the target's raw bytes
        // are the entry's content.
        self.zip
            .start_file_with_options(options)
            .map_err(zip_error)?;
        self.zip.write_all(&node.link_target).map_err(io_error)
    }

    fn file(&mut self, path: &[u8], node: &Node, content: Content<'_>) -> Result<u64, EngineError> {
        // Zip has no hard links: every name of a hard-linked file gets its content.
        let options = options(node, path, S_IFREG)?
            .large_file(self.zip64 == Zip64::Always || node.size >= ZIP64_FROM);
        let options = if content.incompressible || node.size == 0 {
            options.compression_method(CompressionMethod::Stored)
        } else {
            options
                .compression_method(CompressionMethod::Deflated)
                .compression_level(Some(FAST))
        };
        self.zip
            .start_file_with_options(options)
            .map_err(zip_error)?;
        let mut written = 0u64;
        loop {
            let chunk = content.reader.fill_buf().map_err(io_error)?;
            if chunk.is_empty() {
                break;
            }
            self.zip.write_all(chunk).map_err(io_error)?;
            let n = chunk.len();
            content.reader.consume(n);
            written += n as u64;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;
    use crate::tree::NodeKind;

    fn node(kind: NodeKind, mode: u32) -> Node {
        Node {
            mode,
            uid: 1000,
            gid: 100,
            mtime_ns: 1_700_000_000_600_000_000,
            ..Node::new(Vec::new(), kind)
        }
    }

    fn add_file(
        zip: &mut ZipEntries<Vec<u8>>,
        name: &[u8],
        mode: u32,
        data: &[u8],
        incompressible: bool,
    ) {
        let mut file = node(NodeKind::File, mode);
        file.size = data.len() as u64;
        let mut reader = data;
        let content = Content {
            reader: &mut reader,
            incompressible,
        };
        assert_eq!(zip.file(name, &file, content).unwrap(), data.len() as u64);
    }

    fn build(zip64: Zip64) -> Vec<u8> {
        let mut zip = ZipEntries::new(Vec::new(), zip64);
        zip.dir(b"d", &node(NodeKind::Dir, 0o2750)).unwrap();
        add_file(
            &mut zip,
            b"d/text",
            0o640,
            &b"hello zip ".repeat(20_000),
            false,
        );
        add_file(&mut zip, b"empty", 0o600, b"", false);
        let mut link = node(NodeKind::Symlink, 0o777);
        link.link_target = b"text-\xfe".to_vec();
        zip.symlink(b"d/link", &link).unwrap();
        add_file(&mut zip, b"raw-\xff", 0o4755, b"abc", true);
        zip.dir(b"raw-dir-\xfe", &node(NodeKind::Dir, 0o700))
            .unwrap();
        zip.finish().unwrap()
    }

    fn check(bytes: Vec<u8>) {
        let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 6);
        let want: [(&[u8], u32, &[u8]); 6] = [
            (b"d/", S_IFDIR | 0o2750, b""),
            (b"d/text", S_IFREG | 0o640, b""),
            (b"empty", S_IFREG | 0o600, b""),
            (b"d/link", S_IFLNK | 0o777, b"text-\xfe"),
            (b"raw-\xff", S_IFREG | 0o4755, b"abc"),
            (b"raw-dir-\xfe/", S_IFDIR | 0o700, b""),
        ];
        for (i, (name, mode, content)) in want.into_iter().enumerate() {
            let mut f = archive.by_index(i).unwrap();
            assert_eq!(f.name_raw(), name);
            // Read from the attributes, as `unix_mode()` drops the setuid, setgid and
            // sticky bits.
            assert_eq!(f.external_attributes() >> 16, mode, "{:?}", f.name_raw());
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            if name == b"d/text" {
                assert_eq!(data, b"hello zip ".repeat(20_000));
                assert!(f.compressed_size() < 10_000, "deflated");
            } else {
                assert_eq!(data, content);
            }
            if name == b"raw-\xff" {
                assert_eq!(f.compression(), CompressionMethod::Stored, "incompressible");
            }
            let ts = f
                .extra_data_fields()
                .find_map(|x| match x {
                    zip::ExtraField::ExtendedTimestamp(t) => t.mod_time(),
                    _ => None,
                })
                .unwrap();
            assert_eq!(ts, 1_700_000_000);
            let owner = f
                .extra_data_fields()
                .find_map(|x| match x {
                    zip::ExtraField::Custom(c) if c.header_id == EXTRA_UNIX_OWNER => {
                        Some(c.data.to_vec())
                    }
                    _ => None,
                })
                .unwrap();
            assert_eq!(owner, [1, 4, 0xe8, 3, 0, 0, 4, 100, 0, 0, 0]);
        }
    }

    #[test]
    fn a_streamed_archive_reads_back() {
        let bytes = build(Zip64::WhenNeeded);
        // No ZIP64 end record or locator.
        assert!(!bytes.windows(4).any(|w| w == 0x0706_4b50u32.to_le_bytes()));
        check(bytes);
    }

    #[test]
    fn zip64_fields_read_back() {
        let bytes = build(Zip64::Always);
        // The ZIP64 end record and locator are there.
        assert!(bytes.windows(4).any(|w| w == 0x0606_4b50u32.to_le_bytes()));
        assert!(bytes.windows(4).any(|w| w == 0x0706_4b50u32.to_le_bytes()));
        let mut archive = ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        let f = archive.by_name("d/text").unwrap();
        assert!(
            f.extra_data_fields()
                .any(|x| matches!(x, zip::ExtraField::Zip64ExtendedInformation(_))),
            "a ZIP64 file entry"
        );
        drop(f);
        check(bytes);
    }

    #[test]
    fn dos_times_clamp_to_the_format() {
        assert_eq!(dos_time(0), (0, 33), "1980-01-01 00:00");
        assert_eq!(dos_time(i64::MAX), dos_time(4_354_819_198));
        let (t, d) = dos_time(i64::MAX);
        assert_eq!((t >> 11, (t >> 5) & 63, (t & 31) * 2), (23, 59, 58));
        assert_eq!((1980 + (d >> 9), (d >> 5) & 15, d & 31), (2107, 12, 31));
        // 2020-02-29 13:45:58 UTC
        let (t, d) = dos_time(1_582_983_958);
        assert_eq!((t >> 11, (t >> 5) & 63, (t & 31) * 2), (13, 45, 58));
        assert_eq!((1980 + (d >> 9), (d >> 5) & 15, d & 31), (2020, 2, 29));
    }
}
