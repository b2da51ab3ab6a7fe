//! The index: which pack holds each blob. Written as `index/<id>` objects after the packs
//! they describe are stored; loaded whole into memory when the repository is opened.

use std::collections::HashMap;

use crate::crypto::{ChunkId, Keys, open_object, seal_object};
use crate::error::EngineError;
use crate::pack::{BlobEntry, ENTRY_LEN, decode_entry, encode_entry};

const INDEX_PURPOSE: &[u8] = b"coffer index";

/// A blob's location: pack number (into `Index::packs`) and entry.
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub pack: u32,
    pub entry: BlobEntry,
}

#[derive(Debug, Default)]
pub struct Index {
    pub packs: Vec<[u8; 32]>,
    pack_numbers: HashMap<[u8; 32], u32>,
    pub blobs: HashMap<ChunkId, Location>,
}

impl Index {
    pub fn pack_number(&mut self, pack: [u8; 32]) -> u32 {
        if let Some(n) = self.pack_numbers.get(&pack) {
            return *n;
        }
        let n = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }

    pub fn insert(&mut self, pack: [u8; 32], entry: BlobEntry) {
        let n = self.pack_number(pack);
        self.blobs
            .entry(entry.id)
            .or_insert(Location { pack: n, entry });
    }

    pub fn get(&self, id: &ChunkId) -> Option<(&[u8; 32], &BlobEntry)> {
        self.blobs
            .get(id)
            .map(|l| (&self.packs[l.pack as usize], &l.entry))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.blobs.contains_key(id)
    }

    /// Adds the entries of one stored index object.
    pub fn load_object(&mut self, keys: &Keys, sealed: &[u8]) -> Result<(), EngineError> {
        for (pack, entries) in open_index(keys, sealed)? {
            for entry in entries {
                self.insert(pack, entry);
            }
        }
        Ok(())
    }
}

/// The packs and blob entries one stored index object lists.
pub fn open_index(keys: &Keys, sealed: &[u8]) -> Result<Vec<IndexedPack>, EngineError> {
    let (plain, _) = open_object(keys, INDEX_PURPOSE, sealed, "index")?;
    let mut rest = &plain[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 36 {
            return Err(EngineError::Corrupt("truncated index".into()));
        }
        let pack: [u8; 32] = rest[..32].try_into().expect("32");
        let count = u32::from_le_bytes(rest[32..36].try_into().expect("4")) as usize;
        rest = &rest[36..];
        if rest.len() < count * ENTRY_LEN {
            return Err(EngineError::Corrupt("truncated index".into()));
        }
        let entries = rest[..count * ENTRY_LEN]
            .chunks(ENTRY_LEN)
            .map(decode_entry)
            .collect::<Result<Vec<_>, _>>()?;
        out.push((pack, entries));
        rest = &rest[count * ENTRY_LEN..];
    }
    Ok(out)
}

/// A pack and the blob entries an index lists for it.
pub type IndexedPack = ([u8; 32], Vec<BlobEntry>);

/// Encodes the packs written by one backup as an index object.
pub fn seal_index(
    keys: &Keys,
    encrypt: bool,
    packs: &[([u8; 32], Vec<BlobEntry>)],
) -> Result<Vec<u8>, EngineError> {
    let mut plain = Vec::new();
    for (pack, entries) in packs {
        plain.extend_from_slice(pack);
        plain.extend_from_slice(
            &u32::try_from(entries.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        for e in entries {
            encode_entry(&mut plain, e);
        }
    }
    seal_object(keys, encrypt, INDEX_PURPOSE, &plain)
}
