//! The restore plan: everything a restore will create, read from the snapshot's trees
//! and checked before anything is written.

use std::collections::HashMap;
use std::time::Instant;

use coffer_domain::engine::{Cancel, Phase, Progress};

use crate::Repository;
use crate::crypto::ChunkId;
use crate::error::EngineError;
use crate::index::Index;
use crate::pack::BlobEntry;
use crate::tree::{DirNames, Node, NodeKind, Xattr};

/// The metadata restored on an entry once its content is in place.
#[derive(Debug, Clone)]
pub struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub xattrs: Box<[Xattr]>,
}

impl Meta {
    fn of(node: &Node) -> Self {
        Self {
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            mtime_ns: node.mtime_ns,
            xattrs: node.xattrs.clone().into_boxed_slice(),
        }
    }
}

/// A directory to create. Directory 0 is the restore target itself, which exists.
#[derive(Debug)]
pub struct PlannedDir {
    pub parent: u32,
    pub name: Box<[u8]>,
    pub depth: u32,
    pub meta: Meta,
}

/// A regular file to write.
#[derive(Debug)]
pub struct PlannedFile {
    pub dir: u32,
    pub name: Box<[u8]>,
    pub size: u64,
    pub chunks: Box<[ChunkId]>,
    pub meta: Meta,
}

/// A symlink to create once every file is in place.
#[derive(Debug)]
pub struct PlannedSymlink {
    pub dir: u32,
    pub name: Box<[u8]>,
    pub target: Box<[u8]>,
    pub meta: Meta,
}

/// A further name of a file of the plan (a hard link in the snapshot).
#[derive(Debug)]
pub struct PlannedLink {
    pub dir: u32,
    pub name: Box<[u8]>,
    /// The file (index into `Plan::files`) it is another name of.
    pub file: u32,
}

/// Where one stored blob goes: its place in its pack, and every (file, offset) that
/// holds its plaintext.
#[derive(Debug)]
pub struct BlobTargets {
    pub entry: BlobEntry,
    pub targets: Vec<(u32, u64)>,
}

/// One pack's share of the restore: its blobs in pack order.
#[derive(Debug)]
pub struct PackJob {
    pub pack: [u8; 32],
    pub blobs: Vec<BlobTargets>,
}

/// Everything a restore creates, and the stored data it reads.
#[derive(Debug, Default)]
pub struct Plan {
    pub dirs: Vec<PlannedDir>,
    pub files: Vec<PlannedFile>,
    pub symlinks: Vec<PlannedSymlink>,
    pub links: Vec<PlannedLink>,
    /// Packs in the order the tree first needs them (files of one directory sit together
    /// in packs, so neighbouring work shares directories).
    pub packs: Vec<PackJob>,
    /// Logical bytes of the files (each file once, however many names it has).
    pub bytes: u64,
}

impl Plan {
    /// The path of an entry inside the restore, for messages (`docs/a.txt`).
    pub fn shown(&self, dir: u32, name: &[u8]) -> String {
        let mut parts = vec![String::from_utf8_lossy(name).into_owned()];
        let mut d = dir;
        while d != 0 {
            let planned = &self.dirs[d as usize];
            parts.push(String::from_utf8_lossy(&planned.name).into_owned());
            d = planned.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Directory indices by depth, shallowest level first (the target itself excluded).
    pub fn levels(&self) -> Vec<Vec<u32>> {
        let mut levels: Vec<Vec<u32>> = Vec::new();
        for (i, d) in self.dirs.iter().enumerate().skip(1) {
            let depth = d.depth as usize;
            if levels.len() < depth {
                levels.resize_with(depth, Vec::new);
            }
            levels[depth - 1].push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        levels
    }
}

fn index_u32(len: usize) -> Result<u32, EngineError> {
    u32::try_from(len).map_err(|_| EngineError::Invalid("too many entries to restore".into()))
}

/// Reads the trees under `node` (the restored path) into a plan. Names that could
/// escape the target or collide are collected and refused as a whole before anything
/// is written, as is data missing from the index.
pub async fn build(
    repo: &Repository,
    node: &Node,
    progress: &Progress,
    cancel: &Cancel,
) -> Result<Plan, EngineError> {
    let mut plan = Plan::default();
    plan.dirs.push(PlannedDir {
        parent: 0,
        name: Box::default(),
        depth: 0,
        meta: Meta::of(node),
    });
    let mut builder = Builder {
        plan,
        unsafe_entries: Vec::new(),
        linked: HashMap::new(),
    };
    match (node.kind, node.subtree) {
        (NodeKind::Dir, Some(subtree)) => {
            let mut stack = vec![(subtree, 0u32)];
            while let Some((tree, dir)) = stack.pop() {
                if cancel.is_cancelled() {
                    return Err(EngineError::Cancelled);
                }
                let started = Instant::now();
                let nodes = repo.tree(&tree).await?;
                progress.phases.add(Phase::Walk, started.elapsed());
                let mut names = DirNames::default();
                for child in nodes {
                    if !names.admit(&child.name) {
                        let shown = builder.plan.shown(dir, &child.name);
                        builder.unsafe_entries.push(shown);
                        continue;
                    }
                    if let Some(sub) = builder.add(dir, child)? {
                        stack.push(sub);
                    }
                }
            }
        }
        (NodeKind::Dir, None) => {}
        _ => {
            // One file or symlink, restored into the target under its own name.
            if Node::safe_name(&node.name) {
                builder.add(0, node.clone())?;
            } else {
                builder.unsafe_entries.push(node.display_name());
            }
        }
    }
    if !builder.unsafe_entries.is_empty() {
        return Err(EngineError::Invalid(format!(
            "refusing to restore: entries whose names would escape the target or collide: {}",
            builder.unsafe_entries.join(", ")
        )));
    }
    Ok(builder.plan)
}

struct Builder {
    plan: Plan,
    unsafe_entries: Vec<String>,
    /// Hard-link groups seen so far: (device, inode) → the file restored for them.
    linked: HashMap<(u64, u64), u32>,
}

impl Builder {
    /// Adds one entry of directory `dir`; a subdirectory is returned to be walked.
    fn add(&mut self, dir: u32, node: Node) -> Result<Option<(ChunkId, u32)>, EngineError> {
        let meta = Meta::of(&node);
        match node.kind {
            NodeKind::Dir => {
                let depth = self.plan.dirs[dir as usize].depth + 1;
                let index = index_u32(self.plan.dirs.len())?;
                self.plan.dirs.push(PlannedDir {
                    parent: dir,
                    name: node.name.into_boxed_slice(),
                    depth,
                    meta,
                });
                Ok(node.subtree.map(|t| (t, index)))
            }
            NodeKind::Symlink => {
                self.plan.symlinks.push(PlannedSymlink {
                    dir,
                    name: node.name.into_boxed_slice(),
                    target: node.link_target.into_boxed_slice(),
                    meta,
                });
                Ok(None)
            }
            NodeKind::File => {
                let key = node.link_key();
                if let Some(&file) = key.and_then(|k| self.linked.get(&k)) {
                    self.plan.links.push(PlannedLink {
                        dir,
                        name: node.name.into_boxed_slice(),
                        file,
                    });
                    return Ok(None);
                }
                let index = index_u32(self.plan.files.len())?;
                if let Some(k) = key {
                    self.linked.insert(k, index);
                }
                self.plan.bytes += node.size;
                self.plan.files.push(PlannedFile {
                    dir,
                    name: node.name.into_boxed_slice(),
                    size: node.size,
                    chunks: node.content.into_boxed_slice(),
                    meta,
                });
                Ok(None)
            }
        }
    }
}

/// What [`assign_packs`] found wrong.
#[derive(Debug, Default)]
pub struct Damage {
    /// Files whose data the index does not know, by their shown paths.
    pub missing: Vec<String>,
    /// Files whose chunks do not add up to their size: never written.
    pub mismatched: Vec<u32>,
}

/// Assigns every chunk of the plan's files to its pack.
pub fn assign_packs(plan: &mut Plan, index: &Index) -> Damage {
    let mut damage = Damage::default();
    let mut blobs: HashMap<ChunkId, (usize, usize)> = HashMap::new();
    let mut packs: Vec<PackJob> = Vec::new();
    let mut pack_slot: HashMap<[u8; 32], usize> = HashMap::new();
    for (number, file) in plan.files.iter().enumerate() {
        let number = u32::try_from(number).unwrap_or(u32::MAX);
        let mut offset = 0u64;
        for chunk in &*file.chunks {
            let Some((pack, entry)) = index.get(chunk) else {
                damage.missing.push(plan.shown(file.dir, &file.name));
                break;
            };
            let (p, b) = *blobs.entry(*chunk).or_insert_with(|| {
                let p = *pack_slot.entry(*pack).or_insert_with(|| {
                    packs.push(PackJob {
                        pack: *pack,
                        blobs: Vec::new(),
                    });
                    packs.len() - 1
                });
                packs[p].blobs.push(BlobTargets {
                    entry,
                    targets: Vec::new(),
                });
                (p, packs[p].blobs.len() - 1)
            });
            packs[p].blobs[b].targets.push((number, offset));
            offset += u64::from(entry.raw_length);
        }
        if offset != file.size {
            tracing::error!(
                file = plan.shown(file.dir, &file.name),
                "chunk sizes do not add up to the file size"
            );
            damage.mismatched.push(number);
        }
    }
    for job in &mut packs {
        job.blobs.sort_by_key(|b| b.entry.offset);
    }
    plan.packs = packs;
    damage
}
