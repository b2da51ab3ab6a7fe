//! Trees: one blob per directory, listing its entries (sorted by name) in a compact binary
//! form. Names are raw bytes: anything but `/` and NUL, UTF-8 or not.
//!
//! Version 1 (repositories written before hard links and extended attributes were kept)
//! is read as it is; every tree written now is version 2, which adds to each entry its
//! device, its link count and its extended attributes. See the crate documentation.

use crate::crypto::ChunkId;
use crate::error::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File = 0,
    Dir = 1,
    Symlink = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    /// File length in bytes (0 for others).
    pub size: u64,
    /// File content, in order.
    pub content: Vec<ChunkId>,
    /// A directory's tree.
    pub subtree: Option<ChunkId>,
    /// A symlink's target, as stored by the OS.
    pub link_target: Vec<u8>,
    /// The device the entry was on (`st_dev`); with `inode`, it tells which names of a
    /// snapshot are hard links to one file. 0 in version 1 trees.
    pub dev: u64,
    /// Hard links to the file when it was read (`st_nlink`). 0 in version 1 trees, which
    /// did not record it (nor the device or the attributes): see [`Node::is_version_1`].
    pub nlink: u32,
    /// Extended attributes (POSIX ACLs among them, as `system.posix_acl_*`), sorted by
    /// name.
    pub xattrs: Vec<Xattr>,
}

/// One extended attribute: its full name (`user.mime_type`) and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Xattr {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Node {
    /// An entry with nothing recorded yet but its name and kind.
    #[must_use]
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Self {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            size: 0,
            content: Vec::new(),
            subtree: None,
            link_target: Vec::new(),
            dev: 0,
            nlink: 1,
            xattrs: Vec::new(),
        }
    }

    /// Whether the entry comes from a version 1 tree, which did not record links and
    /// extended attributes: a backup re-reads such a file rather than trusting them.
    #[must_use]
    pub fn is_version_1(&self) -> bool {
        self.nlink == 0
    }

    /// The hard-link group of a file that had more than one name: names of a snapshot
    /// with the same key were one file.
    #[must_use]
    pub fn link_key(&self) -> Option<(u64, u64)> {
        (self.kind == NodeKind::File && self.nlink > 1 && self.inode != 0)
            .then_some((self.dev, self.inode))
    }

    /// Whether `name` can be created inside a directory without escaping it: not empty,
    /// not `.` or `..`, no `/` and no NUL.
    #[must_use]
    pub fn safe_name(name: &[u8]) -> bool {
        !name.is_empty()
            && name != b"."
            && name != b".."
            && !name.contains(&b'/')
            && !name.contains(&0)
    }

    #[must_use]
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// The names of one directory's entries, checked one by one before any is created
/// (restore) or written into an archive (export), and when a snapshot is checked: an
/// entry is admitted when its name is safe ([`Node::safe_name`]) and no earlier entry of
/// the directory had it. A tampered tree could name an entry `..`, or two alike so that
/// the second replaces the first when they are unpacked. One rule for every reader.
#[derive(Debug, Default)]
pub struct DirNames(std::collections::HashSet<Vec<u8>>);

impl DirNames {
    /// Whether `name` may be created in this directory, remembering it when it may.
    pub fn admit(&mut self, name: &[u8]) -> bool {
        Node::safe_name(name) && self.0.insert(name.to_vec())
    }
}

/// The version every tree is written in.
const TREE_VERSION: u8 = 2;
/// Trees of repositories written before version 2: read, never written.
const TREE_VERSION_1: u8 = 1;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

#[must_use]
pub fn encode(nodes: &[Node]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + nodes.len() * 96);
    out.push(TREE_VERSION);
    out.extend_from_slice(&u32::try_from(nodes.len()).unwrap_or(u32::MAX).to_le_bytes());
    for n in nodes {
        out.push(n.kind as u8);
        put_bytes(&mut out, &n.name);
        out.extend_from_slice(&n.mode.to_le_bytes());
        out.extend_from_slice(&n.uid.to_le_bytes());
        out.extend_from_slice(&n.gid.to_le_bytes());
        out.extend_from_slice(&n.mtime_ns.to_le_bytes());
        out.extend_from_slice(&n.ctime_ns.to_le_bytes());
        out.extend_from_slice(&n.inode.to_le_bytes());
        out.extend_from_slice(&n.size.to_le_bytes());
        match n.kind {
            NodeKind::File => {
                out.extend_from_slice(
                    &u32::try_from(n.content.len())
                        .unwrap_or(u32::MAX)
                        .to_le_bytes(),
                );
                for id in &n.content {
                    out.extend_from_slice(id);
                }
            }
            NodeKind::Dir => out.extend_from_slice(&n.subtree.unwrap_or([0u8; 32])),
            NodeKind::Symlink => put_bytes(&mut out, &n.link_target),
        }
        out.extend_from_slice(&n.dev.to_le_bytes());
        out.extend_from_slice(&n.nlink.to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(n.xattrs.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for x in &n.xattrs {
            put_bytes(&mut out, &x.name);
            put_bytes(&mut out, &x.value);
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EngineError> {
        if self.0.len() < n {
            return Err(EngineError::Corrupt("truncated tree".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, EngineError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, EngineError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, EngineError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> Result<i64, EngineError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, EngineError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn id(&mut self) -> Result<ChunkId, EngineError> {
        Ok(self.take(32)?.try_into().expect("32"))
    }
}

/// # Errors
/// `Corrupt` when the bytes are not a tree of this version.
pub fn decode(bytes: &[u8]) -> Result<Vec<Node>, EngineError> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != TREE_VERSION && version != TREE_VERSION_1 {
        return Err(EngineError::Corrupt(format!(
            "unknown tree version {version} (written by a newer Coffer?)"
        )));
    }
    let count = r.u32()? as usize;
    let mut nodes = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let kind = match r.u8()? {
            0 => NodeKind::File,
            1 => NodeKind::Dir,
            2 => NodeKind::Symlink,
            k => return Err(EngineError::Corrupt(format!("unknown node kind {k}"))),
        };
        let name = r.bytes()?;
        let mode = r.u32()?;
        let uid = r.u32()?;
        let gid = r.u32()?;
        let mtime_ns = r.i64()?;
        let ctime_ns = r.i64()?;
        let inode = r.u64()?;
        let size = r.u64()?;
        let mut node = Node {
            mode,
            uid,
            gid,
            mtime_ns,
            ctime_ns,
            inode,
            size,
            nlink: 0,
            ..Node::new(name, kind)
        };
        match kind {
            NodeKind::File => {
                let n = r.u32()? as usize;
                // Each id takes 32 bytes: a count the rest cannot hold is damage, not a
                // reason to reserve memory.
                if n > r.0.len() / 32 {
                    return Err(EngineError::Corrupt("truncated tree".into()));
                }
                node.content = (0..n).map(|_| r.id()).collect::<Result<_, _>>()?;
            }
            NodeKind::Dir => node.subtree = Some(r.id()?),
            NodeKind::Symlink => node.link_target = r.bytes()?,
        }
        if version >= 2 {
            node.dev = r.u64()?;
            node.nlink = r.u32()?;
            let n = r.u32()? as usize;
            if n > r.0.len() / 8 {
                return Err(EngineError::Corrupt("truncated tree".into()));
            }
            node.xattrs = (0..n)
                .map(|_| {
                    Ok(Xattr {
                        name: r.bytes()?,
                        value: r.bytes()?,
                    })
                })
                .collect::<Result<_, EngineError>>()?;
        }
        nodes.push(node);
    }
    if !r.0.is_empty() {
        return Err(EngineError::Corrupt("trailing bytes after tree".into()));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_odd_names() {
        let nodes = vec![
            Node {
                mode: 0o640,
                uid: 1000,
                gid: 1000,
                mtime_ns: -5,
                ctime_ns: 1_700_000_000_123_456_789,
                inode: 42,
                size: 3,
                content: vec![[7u8; 32], [8u8; 32]],
                dev: 0xfd01,
                nlink: 3,
                xattrs: vec![
                    Xattr {
                        name: b"system.posix_acl_access".to_vec(),
                        value: vec![2, 0, 0, 0, 1, 0, 6, 0],
                    },
                    Xattr {
                        name: b"user.empty".to_vec(),
                        value: Vec::new(),
                    },
                ],
                ..Node::new(vec![0xff, 0xfe, b'x'], NodeKind::File)
            },
            Node {
                mode: 0o755,
                inode: 1,
                subtree: Some([9u8; 32]),
                ..Node::new(b"dir with \n newline".to_vec(), NodeKind::Dir)
            },
            Node {
                mode: 0o777,
                inode: 2,
                mtime_ns: 1_600_000_000_000_000_001,
                link_target: b"../../nowhere".to_vec(),
                ..Node::new(b"link".to_vec(), NodeKind::Symlink)
            },
        ];
        assert_eq!(decode(&encode(&nodes)).expect("decode"), nodes);
    }

    #[test]
    fn version_1_trees_read_with_no_links_or_attributes() {
        // A version 1 tree with one file, written as version 1 wrote it.
        let mut v1 = vec![1u8];
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.push(0); // file
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.push(b'a');
        for field in [0o644u32, 1000, 1000] {
            v1.extend_from_slice(&field.to_le_bytes());
        }
        for field in [5i64, 6] {
            v1.extend_from_slice(&field.to_le_bytes());
        }
        for field in [77u64, 2] {
            v1.extend_from_slice(&field.to_le_bytes());
        }
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&[3u8; 32]);
        let nodes = decode(&v1).expect("a version 1 tree");
        assert_eq!(
            nodes,
            vec![Node {
                mode: 0o644,
                uid: 1000,
                gid: 1000,
                mtime_ns: 5,
                ctime_ns: 6,
                inode: 77,
                size: 2,
                content: vec![[3u8; 32]],
                nlink: 0,
                ..Node::new(b"a".to_vec(), NodeKind::File)
            }]
        );
        assert!(nodes[0].is_version_1());
        assert_eq!(nodes[0].link_key(), None);
        let mut unknown = v1.clone();
        unknown[0] = 3;
        assert!(decode(&unknown).is_err());
    }

    #[test]
    fn truncation_is_detected() {
        let bytes = encode(&[Node {
            subtree: Some([1; 32]),
            xattrs: vec![Xattr {
                name: b"user.a".to_vec(),
                value: b"b".to_vec(),
            }],
            ..Node::new(b"a".to_vec(), NodeKind::Dir)
        }]);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn unsafe_names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/etc", b"nul\0"] {
            assert!(!Node::safe_name(bad), "{bad:?}");
        }
        for ok in [&b"a"[..], b"...", b".hidden", b"\xff\xfe", b"a b"] {
            assert!(Node::safe_name(ok), "{ok:?}");
        }
    }
}
