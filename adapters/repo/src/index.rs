//! The index: which pack holds each blob. Written as `index/<id>` objects after the packs
//! they describe are stored; loaded whole into memory when the repository is opened.
//!
//! In memory it is one array sorted by blob id, 56 bytes a blob (a hash map took about
//! four times that), searched by bisection: a repository of ten million blobs fits in
//! about 560 MB, one of the `/usr/share` kind (~50,000 blobs) in under 3 MB.

use std::collections::HashMap;

use coffer_domain::storage::ObjectStore;

use crate::crypto::{self, ChunkId, Keys, Legacy, open_object, open_object_with, seal_object};
use crate::error::EngineError;
use crate::pack::{BlobEntry, BlobKind, ENTRY_LEN, decode_entry, encode_entry};

const INDEX_PURPOSE: &[u8] = b"coffer index";

/// One blob's place: its pack (a number into `Index::packs`) and its entry there.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: ChunkId,
    offset: u64,
    pack: u32,
    length: u32,
    raw_length: u32,
    kind: BlobKind,
}

impl Slot {
    fn entry(&self) -> BlobEntry {
        BlobEntry {
            id: self.id,
            kind: self.kind,
            offset: self.offset,
            length: self.length,
            raw_length: self.raw_length,
        }
    }
}

/// Where every blob is. Built with [`Index::insert`] and [`Index::finish`] (or
/// [`Index::load_objects`]); the first listing of a blob wins, as it does for readers.
#[derive(Debug, Default)]
pub struct Index {
    pub packs: Vec<[u8; 32]>,
    pack_numbers: HashMap<[u8; 32], u32>,
    /// Sorted by id, each id once, after `finish`.
    slots: Vec<Slot>,
}

impl Index {
    fn pack_number(&mut self, pack: [u8; 32]) -> u32 {
        if let Some(n) = self.pack_numbers.get(&pack) {
            return *n;
        }
        let n = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
        self.packs.push(pack);
        self.pack_numbers.insert(pack, n);
        n
    }

    /// Adds a blob's place; [`Index::finish`] must follow before lookups.
    pub fn insert(&mut self, pack: [u8; 32], entry: BlobEntry) {
        let n = self.pack_number(pack);
        self.slots.push(Slot {
            id: entry.id,
            offset: entry.offset,
            pack: n,
            length: entry.length,
            raw_length: entry.raw_length,
            kind: entry.kind,
        });
    }

    /// Sorts what was inserted; of a blob listed more than once, the first listing stays.
    pub fn finish(&mut self) {
        // Stable: equal ids keep their order of insertion.
        self.slots.sort_by_key(|s| s.id);
        self.slots.dedup_by(|later, first| later.id == first.id);
        self.slots.shrink_to_fit();
    }

    fn find(&self, id: &ChunkId) -> Option<&Slot> {
        self.slots
            .binary_search_by(|s| s.id.cmp(id))
            .ok()
            .map(|i| &self.slots[i])
    }

    pub fn get(&self, id: &ChunkId) -> Option<(&[u8; 32], BlobEntry)> {
        self.find(id)
            .map(|s| (&self.packs[s.pack as usize], s.entry()))
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.find(id).is_some()
    }

    /// Every blob: its id, its pack and its entry, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&ChunkId, &[u8; 32], BlobEntry)> + '_ {
        self.slots
            .iter()
            .map(|s| (&s.id, &self.packs[s.pack as usize], s.entry()))
    }

    /// Adds the entries of stored index objects and sorts them.
    pub fn load_objects<'a>(
        &mut self,
        keys: &Keys,
        sealed: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), EngineError> {
        for object in sealed {
            for (pack, entries) in open_index(keys, object)? {
                for entry in entries {
                    self.insert(pack, entry);
                }
            }
        }
        self.finish();
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

/// Seals every index object of a legacy unencrypted repository again, with a MAC: a new
/// object first, then the old one goes (a reader in between sees both, which list the
/// same). The caller holds the exclusive lock.
pub async fn reseal_legacy(store: &dyn ObjectStore, keys: &Keys) -> Result<u64, EngineError> {
    let mut resealed = 0;
    for k in store.list("index/").await? {
        let Some(sealed) = store.get(&k).await? else {
            continue;
        };
        if !crypto::object_is_legacy(&sealed) {
            continue;
        }
        let (plain, _) = open_object_with(keys, INDEX_PURPOSE, &sealed, "index", Legacy::Allowed)?;
        let fresh = seal_object(keys, false, INDEX_PURPOSE, &plain)?;
        let name = crate::key(&format!("index/{}", hex::encode(crypto::random::<32>()?)))?;
        store.put(&name, bytes::Bytes::from(fresh)).await?;
        store.delete(&k).await?;
        resealed += 1;
    }
    Ok(resealed)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u8, offset: u64) -> BlobEntry {
        BlobEntry {
            id: [id; 32],
            kind: BlobKind::Data,
            offset,
            length: 10,
            raw_length: 20,
        }
    }

    #[test]
    fn the_first_listing_of_a_blob_wins_and_lookups_find_every_blob() {
        let mut index = Index::default();
        for i in (0..200u8).rev() {
            index.insert([1; 32], entry(i, u64::from(i)));
        }
        index.insert([2; 32], entry(7, 999));
        index.finish();
        for i in 0..200u8 {
            let (pack, e) = index.get(&[i; 32]).expect("indexed");
            assert_eq!((*pack, e), ([1; 32], entry(i, u64::from(i))));
        }
        assert!(!index.contains(&[200; 32]));
        assert_eq!(index.iter().count(), 200);
        assert!(index.iter().map(|(id, _, _)| *id).is_sorted());
    }
}
