//! Tar in the POSIX pax interchange format: a ustar header per entry, preceded by an
//! extended header (typeflag `x`, records `"<len> <key>=<value>\n"`) when the entry has
//! something ustar cannot hold. The `tar` crate writes the blocks; it has no pax support,
//! so the extended headers and the ustar name fields are filled in here.

use std::collections::HashMap;
use std::io::{Read, Write};

use ::tar::{EntryType, Header};

use super::{Content, Entries};
use crate::error::EngineError;
use crate::tree::Node;

/// Sizes of ustar's name, prefix and link name fields.
const NAME: usize = 100;
const PREFIX: usize = 155;
const LINK_NAME: usize = 100;
/// The largest values ustar's octal fields hold: 11 digits (size, mtime), 7 (ids).
const OCTAL_11: u64 = 0o777_7777_7777;
const OCTAL_7: u64 = 0o777_7777;
const NS: i64 = 1_000_000_000;

pub(super) struct TarEntries<W: Write> {
    builder: ::tar::Builder<W>,
    /// Hard-link groups met so far: (device, inode) → the archive path of the name whose
    /// entry holds the content.
    linked: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> TarEntries<W> {
    pub fn new(out: W) -> Self {
        Self {
            builder: ::tar::Builder::new(out),
            linked: HashMap::new(),
        }
    }

    /// Writes the end-of-archive blocks; returns the output, flushed.
    pub fn finish(self) -> Result<W, EngineError> {
        let mut out = self.builder.into_inner().map_err(io_error)?;
        out.flush().map_err(io_error)?;
        Ok(out)
    }

    /// Appends one entry: its extended header when it needs one, its ustar header, its
    /// data.
    fn append(
        &mut self,
        entry: &Entry<'_>,
        node: &Node,
        data: &mut dyn Read,
    ) -> Result<(), EngineError> {
        let Entry {
            kind,
            path,
            link,
            size,
            attributes,
        } = *entry;
        let mut header = Header::new_ustar();
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(node.mode);
        header.set_uid(u64::from(node.uid));
        header.set_gid(u64::from(node.gid));
        let secs = node.mtime_ns.div_euclid(NS);
        header.set_mtime(u64::try_from(secs).unwrap_or(0).min(OCTAL_11));
        let fields = header
            .as_ustar_mut()
            .ok_or_else(|| EngineError::Other("a ustar header without its fields".into()))?;
        let mut pax = Pax::default();
        let path_fits = set_name(&mut fields.name, &mut fields.prefix, path);
        let link_fits = link.is_none_or(|l| set_link_name(&mut fields.linkname, l));
        // Raw bytes in `path` or `linkpath`: pax values are UTF-8 unless this says not.
        let raw = (!path_fits && std::str::from_utf8(path).is_err())
            || (!link_fits && link.is_some_and(|l| std::str::from_utf8(l).is_err()));
        if raw {
            pax.record(b"hdrcharset", b"BINARY");
        }
        if !path_fits {
            pax.record(b"path", path);
        }
        if let Some(link) = link.filter(|_| !link_fits) {
            pax.record(b"linkpath", link);
        }
        if node.mtime_ns.rem_euclid(NS) != 0 || !(0..=OCTAL_11.cast_signed()).contains(&secs) {
            pax.record(b"mtime", pax_time(node.mtime_ns).as_bytes());
        }
        if size > OCTAL_11 {
            pax.record(b"size", size.to_string().as_bytes());
        }
        for (key, id) in [(&b"uid"[..], node.uid), (b"gid", node.gid)] {
            if u64::from(id) > OCTAL_7 {
                pax.record(key, id.to_string().as_bytes());
            }
        }
        if attributes {
            for x in &node.xattrs {
                let key = [&b"SCHILY.xattr."[..], &xattr_keyword(&x.name)].concat();
                pax.record(&key, &x.value);
            }
        }
        header.set_cksum();
        if !pax.0.is_empty() {
            let extended = pax_header(&pax.0, path, header.mtime().unwrap_or(0));
            self.builder
                .append(&extended, pax.0.as_slice())
                .map_err(io_error)?;
        }
        self.builder.append(&header, data).map_err(io_error)
    }
}

/// What an entry's header says besides the node's metadata.
#[derive(Clone, Copy)]
struct Entry<'a> {
    kind: EntryType,
    path: &'a [u8],
    /// A symlink's target, or the name a hard link's content is under.
    link: Option<&'a [u8]>,
    size: u64,
    /// Whether the entry carries the node's extended attributes: not a hard link's second
    /// name, as the attributes belong to the file, written once with its content.
    attributes: bool,
}

impl<W: Write> Entries for TarEntries<W> {
    fn dir(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError> {
        let entry = Entry {
            kind: EntryType::Directory,
            path,
            link: None,
            size: 0,
            attributes: true,
        };
        self.append(&entry, node, &mut std::io::empty())
    }

    fn symlink(&mut self, path: &[u8], node: &Node) -> Result<(), EngineError> {
        let entry = Entry {
            kind: EntryType::Symlink,
            path,
            link: Some(&node.link_target),
            size: 0,
            attributes: true,
        };
        self.append(&entry, node, &mut std::io::empty())
    }

    fn file(&mut self, path: &[u8], node: &Node, content: Content<'_>) -> Result<u64, EngineError> {
        if let Some(key) = node.link_key() {
            if let Some(first) = self.linked.get(&key).cloned() {
                let entry = Entry {
                    kind: EntryType::Link,
                    path,
                    link: Some(&first),
                    size: 0,
                    attributes: false,
                };
                self.append(&entry, node, &mut std::io::empty())?;
                return Ok(0);
            }
            self.linked.insert(key, path.to_vec());
        }
        let entry = Entry {
            kind: EntryType::Regular,
            path,
            link: None,
            size: node.size,
            attributes: true,
        };
        self.append(&entry, node, content.reader)?;
        Ok(node.size)
    }
}

fn io_error(e: std::io::Error) -> EngineError {
    EngineError::io("writing the archive")(e)
}

/// The records of one extended header.
#[derive(Default)]
struct Pax(Vec<u8>);

impl Pax {
    /// Appends `"<len> <key>=<value>\n"`, where `len` counts the whole record, its own
    /// digits included.
    fn record(&mut self, key: &[u8], value: &[u8]) {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + decimal_digits(len) {
            len = rest + decimal_digits(len);
        }
        self.0.extend_from_slice(len.to_string().as_bytes());
        self.0.push(b' ');
        self.0.extend_from_slice(key);
        self.0.push(b'=');
        self.0.extend_from_slice(value);
        self.0.push(b'\n');
    }
}

fn decimal_digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// A time in nanoseconds as pax writes it: decimal seconds with nine fractional digits.
fn pax_time(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

/// An attribute's name as a pax keyword part, escaped as GNU tar does: `%` and `=` (which
/// would end the keyword) as `%25` and `%3D`.
fn xattr_keyword(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    for &b in name {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'=' => out.extend_from_slice(b"%3D"),
            _ => out.push(b),
        }
    }
    out
}

/// The extended header announcing `records` for the entry at `path`; named, as GNU tar
/// names them, `PaxHeaders/<the entry's last name>` (shortened to fit).
fn pax_header(records: &[u8], path: &[u8], mtime: u64) -> Header {
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_size(records.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let name = [&b"PaxHeaders/"[..], base].concat();
    if let Some(fields) = header.as_ustar_mut() {
        set_name(&mut fields.name, &mut fields.prefix, &name);
    }
    header.set_cksum();
    header
}

/// Splits `path` at a `/` into ustar's prefix and name fields, when it fits them.
fn split_ustar(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= NAME {
        return Some((&[], path));
    }
    // The earliest `/` that leaves at most NAME bytes after it, if the prefix before it
    // fits.
    let first = path.len() - NAME - 1;
    (first..path.len().min(PREFIX + 1))
        .find(|&i| path[i] == b'/')
        .map(|i| (&path[..i], &path[i + 1..]))
}

/// `bytes` cut to at most `max` bytes, not inside a UTF-8 sequence.
fn cut(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut n = max;
    while n > 0 && bytes[n] & 0xc0 == 0x80 {
        n -= 1;
    }
    &bytes[..n]
}

/// Fills the name fields with `path`; returns false when only a shortened form fits (the
/// pax `path` record then carries the real one). The short form keeps the leading
/// directories that fit the prefix and the last name, cut: a reader that ignores pax
/// unpacks the entry there, never outside the directory it unpacks into (no name is
/// made up of anything but whole, safe names and a cut of one).
fn set_name(name: &mut [u8; NAME], prefix: &mut [u8; PREFIX], path: &[u8]) -> bool {
    let (fits, (dir, base)) = if let Some(split) = split_ustar(path) {
        (true, split)
    } else {
        let (dir, base) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&[][..], path),
        };
        let dir = if dir.len() <= PREFIX {
            dir
        } else {
            let end = dir[..=PREFIX].iter().rposition(|&b| b == b'/').unwrap_or(0);
            &dir[..end]
        };
        (false, (dir, cut(base, NAME)))
    };
    name.fill(0);
    name[..base.len()].copy_from_slice(base);
    prefix.fill(0);
    prefix[..dir.len()].copy_from_slice(dir);
    fits
}

/// Fills the link name field with `target`; returns false when only a cut fits.
fn set_link_name(field: &mut [u8; LINK_NAME], target: &[u8]) -> bool {
    let short = cut(target, LINK_NAME);
    field.fill(0);
    field[..short.len()].copy_from_slice(short);
    short.len() == target.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let mut pax = Pax::default();
        pax.record(b"path", b"abc");
        // "12 path=abc\n" is 12 bytes.
        assert_eq!(pax.0, b"12 path=abc\n");
        for value_len in 0..300 {
            let mut pax = Pax::default();
            let value = vec![b'v'; value_len];
            pax.record(b"k", &value);
            let text = String::from_utf8(pax.0.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), pax.0.len(), "{value_len}");
        }
    }

    #[test]
    fn times_have_nine_fractional_digits() {
        assert_eq!(pax_time(1_700_000_000_123_456_789), "1700000000.123456789");
        assert_eq!(pax_time(1_000_000_001), "1.000000001");
        assert_eq!(pax_time(-1_500_000_000), "-1.500000000");
    }

    #[test]
    fn xattr_names_escape_what_ends_a_keyword() {
        assert_eq!(xattr_keyword(b"user.a=b%c"), b"user.a%3Db%25c");
    }

    fn fields(path: &[u8]) -> (bool, Vec<u8>, Vec<u8>) {
        let mut name = [0u8; NAME];
        let mut prefix = [0u8; PREFIX];
        let fits = set_name(&mut name, &mut prefix, path);
        let trim = |f: &[u8]| f.iter().take_while(|&&b| b != 0).copied().collect();
        (fits, trim(&prefix), trim(&name))
    }

    #[test]
    fn names_split_into_the_prefix_or_are_shortened() {
        let short = b"dir/file".to_vec();
        assert_eq!(fields(&short), (true, Vec::new(), short));
        // 100 bytes exactly fill the name field.
        let full = vec![b'n'; 100];
        assert_eq!(fields(&full), (true, Vec::new(), full));
        // 150 bytes with a `/` that leaves 100 or fewer after it.
        let dir = vec![b'd'; 60];
        let base = vec![b'f'; 89];
        let path = [&dir[..], b"/", &base[..]].concat();
        assert_eq!(fields(&path), (true, dir.clone(), base.clone()));
        // One long name: no `/` to split at.
        let long = vec![b'x'; 101];
        let (fits, prefix, name) = fields(&long);
        assert!(!fits);
        assert!(prefix.is_empty());
        assert_eq!(name, vec![b'x'; 100]);
        // A deep path: the leading directories that fit, then the last name.
        let deep: Vec<u8> = [
            &[b'a'; 90][..],
            b"/",
            &[b'b'; 90],
            b"/",
            &[b'c'; 90],
            b"/end",
        ]
        .concat();
        let (fits, prefix, name) = fields(&deep);
        assert!(!fits);
        assert_eq!(prefix, [&[b'a'; 90][..]].concat());
        assert_eq!(name, b"end");
        // A cut never ends inside a UTF-8 sequence.
        let accents = "é".repeat(60);
        let (_, _, name) = fields(accents.as_bytes());
        assert_eq!(name, "é".repeat(50).as_bytes());
    }

    #[test]
    fn long_link_names_are_cut() {
        let mut field = [0u8; LINK_NAME];
        assert!(set_link_name(&mut field, b"target"));
        assert_eq!(&field[..7], b"target\0");
        assert!(!set_link_name(&mut field, &[b't'; 101]));
        assert_eq!(field, [b't'; 100]);
    }
}
