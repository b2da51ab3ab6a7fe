//! Trees: one blob per directory, listing its entries (sorted by name) in a compact binary
//! form. Names are raw bytes: anything but `/` and NUL, UTF-8 or not.

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
}

impl Node {
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

const TREE_VERSION: u8 = 1;

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
    if r.u8()? != TREE_VERSION {
        return Err(EngineError::Corrupt("unknown tree version".into()));
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
            name,
            kind,
            mode,
            uid,
            gid,
            mtime_ns,
            ctime_ns,
            inode,
            size,
            content: Vec::new(),
            subtree: None,
            link_target: Vec::new(),
        };
        match kind {
            NodeKind::File => {
                let n = r.u32()? as usize;
                node.content = (0..n).map(|_| r.id()).collect::<Result<_, _>>()?;
            }
            NodeKind::Dir => node.subtree = Some(r.id()?),
            NodeKind::Symlink => node.link_target = r.bytes()?,
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
                name: vec![0xff, 0xfe, b'x'],
                kind: NodeKind::File,
                mode: 0o640,
                uid: 1000,
                gid: 1000,
                mtime_ns: -5,
                ctime_ns: 1_700_000_000_123_456_789,
                inode: 42,
                size: 3,
                content: vec![[7u8; 32], [8u8; 32]],
                subtree: None,
                link_target: vec![],
            },
            Node {
                name: b"dir with \n newline".to_vec(),
                kind: NodeKind::Dir,
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 1,
                size: 0,
                content: vec![],
                subtree: Some([9u8; 32]),
                link_target: vec![],
            },
            Node {
                name: b"link".to_vec(),
                kind: NodeKind::Symlink,
                mode: 0o777,
                uid: 0,
                gid: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 2,
                size: 0,
                content: vec![],
                subtree: None,
                link_target: b"../../nowhere".to_vec(),
            },
        ];
        assert_eq!(decode(&encode(&nodes)).expect("decode"), nodes);
    }

    #[test]
    fn truncation_is_detected() {
        let bytes = encode(&[Node {
            name: b"a".to_vec(),
            kind: NodeKind::Dir,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            size: 0,
            content: vec![],
            subtree: Some([1; 32]),
            link_target: vec![],
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
