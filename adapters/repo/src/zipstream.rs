//! A streaming zip writer for a non-seekable output (an HTTP response body): nothing
//! written is ever revisited, so file entries carry a data descriptor (bit 3) after their
//! content, whose CRC and sizes are only known once the content has passed through.
//!
//! What it writes (APPNOTE 6.3):
//! - files deflated (the method every streaming reader accepts with a data descriptor),
//!   chunk by chunk, at a level the caller picks (0 for incompressible data);
//! - empty files, directories (names ending in `/`) and symlinks (target as content)
//!   stored, with CRC and sizes in the local header and no descriptor;
//! - "made by" Unix, so the external attributes carry the Unix mode with its file type
//!   (`S_IFREG`, `S_IFDIR`, `S_IFLNK`); the extended timestamp (0x5455) carries the mtime
//!   in whole seconds and Info-ZIP's Unix field (0x7875) the owner;
//! - names as raw bytes, flagged UTF-8 (bit 11) when they are;
//! - ZIP64 where a field overflows: a file announced at 4 GiB or more gets a ZIP64 local
//!   header and descriptor; sizes and offsets of 4 GiB or more, and more than 65,534
//!   entries, go into ZIP64 fields of the central directory and its end records.
//!
//! Memory: one chunk at a time plus the deflate state; the central directory keeps a name
//! and a few numbers per entry, as every zip writer must until the end.

use std::io::{self, BufWriter, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;

use crate::error::EngineError;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL: u32 = 0x0605_4b50;
const ZIP64_END_OF_CENTRAL: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;

const EXTRA_ZIP64: u16 = 0x0001;
const EXTRA_TIMESTAMP: u16 = 0x5455;
const EXTRA_UNIX_OWNER: u16 = 0x7875;

/// Unix (3) in the high byte, spec version 6.3 in the low byte.
const VERSION_MADE_BY: u16 = 0x033f;
const VERSION_DEFAULT: u16 = 20;
const VERSION_ZIP64: u16 = 45;

const FLAG_DESCRIPTOR: u16 = 1 << 3;
const FLAG_UTF8: u16 = 1 << 11;

const METHOD_STORED: u16 = 0;
const METHOD_DEFLATED: u16 = 8;

const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
/// The MS-DOS directory attribute, for readers that ignore the Unix mode.
const DOS_DIRECTORY: u32 = 0x10;

const U32_MAX: u64 = 0xffff_ffff;
/// Files announced at this size or more are written with a ZIP64 local header: deflate
/// may expand incompressible data slightly, so the margin keeps a file just below 4 GiB
/// from overflowing a 32-bit descriptor.
const ZIP64_FROM: u64 = 0xf000_0000;

/// The metadata of an entry that the archive preserves.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub mtime_secs: i64,
    pub uid: u32,
    pub gid: u32,
}

/// What the central directory needs to know about an entry.
struct Central {
    name: Vec<u8>,
    flags: u16,
    method: u16,
    dos_time: u16,
    dos_date: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
    external: u32,
    meta: Meta,
    /// The local header used ZIP64 (so its descriptor has 64-bit sizes).
    zip64_local: bool,
}

/// Counts the bytes written, which are the offsets a zip needs.
struct Counted<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub struct ZipStream<W: Write> {
    out: Counted<BufWriter<W>>,
    entries: Vec<Central>,
    /// Writes every file and the end records as ZIP64, to test those paths without
    /// gigabytes of data.
    force_zip64: bool,
}

fn io_error(e: io::Error) -> EngineError {
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
        u16::try_from(date).unwrap_or(0),
    )
}

fn u16_of(n: usize, what: &str) -> Result<u16, EngineError> {
    u16::try_from(n).map_err(|_| EngineError::Invalid(format!("{what} is too long for a zip")))
}

/// A 32-bit size or offset field, or the marker that sends readers to the ZIP64 field.
fn field32(n: u64, zip64: bool) -> u32 {
    if zip64 {
        u32::MAX
    } else {
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl<W: Write> ZipStream<W> {
    pub fn new(out: W) -> Self {
        Self {
            out: Counted {
                inner: BufWriter::with_capacity(64 * 1024, out),
                written: 0,
            },
            entries: Vec::new(),
            force_zip64: false,
        }
    }

    #[cfg(test)]
    pub fn forcing_zip64(mut self) -> Self {
        self.force_zip64 = true;
        self
    }

    /// Extra fields shared by the local and the central header.
    fn common_extra(meta: &Meta, out: &mut Vec<u8>) {
        if let Ok(mtime) = i32::try_from(meta.mtime_secs) {
            out.extend_from_slice(&EXTRA_TIMESTAMP.to_le_bytes());
            out.extend_from_slice(&5u16.to_le_bytes());
            out.push(1); // modification time present
            out.extend_from_slice(&mtime.to_le_bytes());
        }
        out.extend_from_slice(&EXTRA_UNIX_OWNER.to_le_bytes());
        out.extend_from_slice(&11u16.to_le_bytes());
        out.push(1); // version
        out.push(4);
        out.extend_from_slice(&meta.uid.to_le_bytes());
        out.push(4);
        out.extend_from_slice(&meta.gid.to_le_bytes());
    }

    /// Writes a local header and records the entry; returns its index.
    fn local_header(
        &mut self,
        name: Vec<u8>,
        unix_type: u32,
        meta: Meta,
        method: u16,
        known: Option<(u32, u64)>,
        zip64: bool,
    ) -> Result<usize, EngineError> {
        let name_len = u16_of(name.len(), "an entry name")?;
        let mut flags = if std::str::from_utf8(&name).is_ok() {
            FLAG_UTF8
        } else {
            0
        };
        if known.is_none() {
            flags |= FLAG_DESCRIPTOR;
        }
        let (dos_time, dos_date) = dos_time(meta.mtime_secs);
        let mut extra = Vec::with_capacity(48);
        if zip64 {
            // Sizes follow in the descriptor; the field's presence tells readers they are
            // 64-bit there.
            extra.extend_from_slice(&EXTRA_ZIP64.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&0u64.to_le_bytes());
            extra.extend_from_slice(&0u64.to_le_bytes());
        }
        Self::common_extra(&meta, &mut extra);
        let (crc, size) = known.unwrap_or((0, 0));
        let mut h = Vec::with_capacity(30 + name.len() + extra.len());
        h.extend_from_slice(&LOCAL_HEADER.to_le_bytes());
        h.extend_from_slice(
            &(if zip64 {
                VERSION_ZIP64
            } else {
                VERSION_DEFAULT
            })
            .to_le_bytes(),
        );
        h.extend_from_slice(&flags.to_le_bytes());
        h.extend_from_slice(&method.to_le_bytes());
        h.extend_from_slice(&dos_time.to_le_bytes());
        h.extend_from_slice(&dos_date.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        let size32 = if zip64 {
            u32::MAX
        } else {
            u32::try_from(size).unwrap_or(u32::MAX)
        };
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&name_len.to_le_bytes());
        h.extend_from_slice(&u16_of(extra.len(), "extra fields")?.to_le_bytes());
        h.extend_from_slice(&name);
        h.extend_from_slice(&extra);
        let offset = self.out.written;
        self.out.write_all(&h).map_err(io_error)?;
        let dos_attr = if unix_type == S_IFDIR {
            DOS_DIRECTORY
        } else {
            0
        };
        self.entries.push(Central {
            name,
            flags,
            method,
            dos_time,
            dos_date,
            crc,
            compressed: size,
            uncompressed: size,
            offset,
            external: ((unix_type | (meta.mode & 0o7777)) << 16) | dos_attr,
            meta,
            zip64_local: zip64,
        });
        Ok(self.entries.len() - 1)
    }

    /// An entry whose whole content is at hand: a directory (`name` gets its trailing
    /// `/`), a symlink (its target) or an empty file.
    fn stored(
        &mut self,
        name: Vec<u8>,
        unix_type: u32,
        meta: Meta,
        data: &[u8],
    ) -> Result<(), EngineError> {
        let crc = crc32fast::hash(data);
        self.local_header(
            name,
            unix_type,
            meta,
            METHOD_STORED,
            Some((crc, data.len() as u64)),
            false,
        )?;
        self.out.write_all(data).map_err(io_error)
    }

    pub fn add_dir(&mut self, name: &[u8], meta: Meta) -> Result<(), EngineError> {
        let mut name = name.to_vec();
        name.push(b'/');
        self.stored(name, S_IFDIR, meta, &[])
    }

    pub fn add_symlink(
        &mut self,
        name: &[u8],
        target: &[u8],
        meta: Meta,
    ) -> Result<(), EngineError> {
        self.stored(name.to_vec(), S_IFLNK, meta, target)
    }

    /// A file whose content comes chunk by chunk; `size` is what it is expected to hold
    /// (it decides whether the entry needs ZIP64 from the start). Returns the bytes of
    /// content written.
    pub fn add_file(
        &mut self,
        name: &[u8],
        meta: Meta,
        size: u64,
        level: Compression,
        chunks: impl Iterator<Item = Result<Vec<u8>, EngineError>>,
    ) -> Result<u64, EngineError> {
        let mut chunks = chunks.peekable();
        if size == 0 && chunks.peek().is_none() {
            self.stored(name.to_vec(), S_IFREG, meta, &[])?;
            return Ok(0);
        }
        let zip64 = self.force_zip64 || size >= ZIP64_FROM;
        let index =
            self.local_header(name.to_vec(), S_IFREG, meta, METHOD_DEFLATED, None, zip64)?;
        let start = self.out.written;
        let mut crc = crc32fast::Hasher::new();
        let mut uncompressed = 0u64;
        let mut encoder = DeflateEncoder::new(&mut self.out, level);
        for chunk in chunks {
            let chunk = chunk?;
            crc.update(&chunk);
            uncompressed += chunk.len() as u64;
            encoder.write_all(&chunk).map_err(io_error)?;
        }
        encoder.finish().map_err(io_error)?;
        let compressed = self.out.written - start;
        let crc = crc.finalize();
        if !zip64 && (compressed >= U32_MAX || uncompressed >= U32_MAX) {
            return Err(EngineError::Damaged(format!(
                "{}: holds more than the {size} bytes its entry announced",
                String::from_utf8_lossy(name)
            )));
        }
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&DATA_DESCRIPTOR.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        if zip64 {
            d.extend_from_slice(&compressed.to_le_bytes());
            d.extend_from_slice(&uncompressed.to_le_bytes());
        } else {
            d.extend_from_slice(&field32(compressed, false).to_le_bytes());
            d.extend_from_slice(&field32(uncompressed, false).to_le_bytes());
        }
        self.out.write_all(&d).map_err(io_error)?;
        let entry = &mut self.entries[index];
        entry.crc = crc;
        entry.compressed = compressed;
        entry.uncompressed = uncompressed;
        Ok(uncompressed)
    }

    /// Writes the central directory and its end records; returns the output, flushed.
    pub fn finish(mut self) -> Result<W, EngineError> {
        let cd_start = self.out.written;
        for e in &self.entries {
            let sizes64 = e.zip64_local || e.compressed >= U32_MAX || e.uncompressed >= U32_MAX;
            let offset64 = self.force_zip64 || e.offset >= U32_MAX;
            let mut extra = Vec::with_capacity(64);
            if sizes64 || offset64 {
                let mut fields = Vec::with_capacity(24);
                if sizes64 {
                    fields.extend_from_slice(&e.uncompressed.to_le_bytes());
                    fields.extend_from_slice(&e.compressed.to_le_bytes());
                }
                if offset64 {
                    fields.extend_from_slice(&e.offset.to_le_bytes());
                }
                extra.extend_from_slice(&EXTRA_ZIP64.to_le_bytes());
                extra.extend_from_slice(&u16_of(fields.len(), "extra fields")?.to_le_bytes());
                extra.extend_from_slice(&fields);
            }
            Self::common_extra(&e.meta, &mut extra);
            let version = if sizes64 || offset64 {
                VERSION_ZIP64
            } else {
                VERSION_DEFAULT
            };
            let mut h = Vec::with_capacity(46 + e.name.len() + extra.len());
            h.extend_from_slice(&CENTRAL_HEADER.to_le_bytes());
            h.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            h.extend_from_slice(&version.to_le_bytes());
            h.extend_from_slice(&e.flags.to_le_bytes());
            h.extend_from_slice(&e.method.to_le_bytes());
            h.extend_from_slice(&e.dos_time.to_le_bytes());
            h.extend_from_slice(&e.dos_date.to_le_bytes());
            h.extend_from_slice(&e.crc.to_le_bytes());
            h.extend_from_slice(&field32(e.compressed, sizes64).to_le_bytes());
            h.extend_from_slice(&field32(e.uncompressed, sizes64).to_le_bytes());
            h.extend_from_slice(&u16_of(e.name.len(), "an entry name")?.to_le_bytes());
            h.extend_from_slice(&u16_of(extra.len(), "extra fields")?.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // comment
            h.extend_from_slice(&0u16.to_le_bytes()); // disk
            h.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            h.extend_from_slice(&e.external.to_le_bytes());
            h.extend_from_slice(&field32(e.offset, offset64).to_le_bytes());
            h.extend_from_slice(&e.name);
            h.extend_from_slice(&extra);
            self.out.write_all(&h).map_err(io_error)?;
        }
        let cd_end = self.out.written;
        let cd_size = cd_end - cd_start;
        let count = self.entries.len() as u64;
        let zip64 =
            self.force_zip64 || count >= 0xffff || cd_size >= U32_MAX || cd_start >= U32_MAX;
        let mut end = Vec::with_capacity(98);
        if zip64 {
            end.extend_from_slice(&ZIP64_END_OF_CENTRAL.to_le_bytes());
            end.extend_from_slice(&44u64.to_le_bytes()); // size of the rest of this record
            end.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            end.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes()); // this disk
            end.extend_from_slice(&0u32.to_le_bytes()); // disk of the central directory
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&cd_size.to_le_bytes());
            end.extend_from_slice(&cd_start.to_le_bytes());
            end.extend_from_slice(&ZIP64_LOCATOR.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&cd_end.to_le_bytes());
            end.extend_from_slice(&1u32.to_le_bytes()); // disks
        }
        let count16 = if zip64 {
            u16::MAX
        } else {
            u16::try_from(count).unwrap_or(u16::MAX)
        };
        end.extend_from_slice(&END_OF_CENTRAL.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&count16.to_le_bytes());
        end.extend_from_slice(&count16.to_le_bytes());
        end.extend_from_slice(&field32(cd_size, zip64).to_le_bytes());
        end.extend_from_slice(&field32(cd_start, zip64).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes()); // comment
        self.out.write_all(&end).map_err(io_error)?;
        self.out.flush().map_err(io_error)?;
        self.out
            .inner
            .into_inner()
            .map_err(|e| io_error(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn meta(mode: u32) -> Meta {
        Meta {
            mode,
            mtime_secs: 1_700_000_000,
            uid: 1000,
            gid: 100,
        }
    }

    fn build(force_zip64: bool) -> Vec<u8> {
        let mut zip = ZipStream::new(Vec::new());
        if force_zip64 {
            zip = zip.forcing_zip64();
        }
        zip.add_dir(b"d", meta(0o750)).unwrap();
        let text = b"hello zip ".repeat(10_000);
        let n = zip
            .add_file(
                b"d/text",
                meta(0o640),
                text.len() as u64 * 2,
                Compression::fast(),
                [Ok(text.clone()), Ok(text.clone())].into_iter(),
            )
            .unwrap();
        assert_eq!(n, text.len() as u64 * 2);
        zip.add_file(
            b"empty",
            meta(0o600),
            0,
            Compression::fast(),
            std::iter::empty(),
        )
        .unwrap();
        zip.add_symlink(b"d/link", b"text", meta(0o777)).unwrap();
        zip.add_file(
            b"raw-\xff",
            meta(0o644),
            3,
            Compression::none(),
            std::iter::once(Ok(b"abc".to_vec())),
        )
        .unwrap();
        zip.finish().unwrap()
    }

    fn check(bytes: Vec<u8>) {
        let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 5);
        let want: [(&[u8], u32, &[u8]); 5] = [
            (b"d/", S_IFDIR | 0o750, b""),
            (b"d/text", S_IFREG | 0o640, b""),
            (b"empty", S_IFREG | 0o600, b""),
            (b"d/link", S_IFLNK | 0o777, b"text"),
            (b"raw-\xff", S_IFREG | 0o644, b"abc"),
        ];
        for (i, (name, mode, content)) in want.into_iter().enumerate() {
            let mut f = archive.by_index(i).unwrap();
            assert_eq!(f.name_raw(), name);
            assert_eq!(f.unix_mode(), Some(mode), "{:?}", f.name_raw());
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            if name == b"d/text" {
                assert_eq!(data, b"hello zip ".repeat(20_000));
                assert!(f.compressed_size() < 10_000, "deflated");
            } else {
                assert_eq!(data, content);
            }
            let ts = f
                .extra_data_fields()
                .find_map(|x| match x {
                    ::zip::extra_fields::ExtraField::ExtendedTimestamp(t) => t.mod_time(),
                    _ => None,
                })
                .unwrap();
            assert_eq!(ts, 1_700_000_000);
        }
    }

    #[test]
    fn a_streamed_archive_reads_back() {
        check(build(false));
    }

    #[test]
    fn zip64_fields_read_back() {
        let bytes = build(true);
        // The ZIP64 end record and locator are there.
        assert!(bytes.windows(4).any(|w| w == ZIP64_LOCATOR.to_le_bytes()));
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
