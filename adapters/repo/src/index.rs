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
    /// Where the ids of each first-`bucket_bits`-bits value start in `slots` (one more
    /// entry at the end): a lookup searches one bucket of a few slots, not the whole
    /// index, whose binary search missed the cache at almost every step.
    buckets: Vec<u32>,
    bucket_bits: u32,
}

/// An id's first eight bytes as a number: ids sort as these do (then by the rest).
fn prefix(id: &ChunkId) -> u64 {
    u64::from_be_bytes(id[..8].try_into().expect("8 bytes"))
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
        // About four ids per bucket (ids are uniformly distributed hashes), at most 2^20
        // buckets (4 MiB).
        self.bucket_bits = (self.slots.len() / 4)
            .checked_next_power_of_two()
            .map_or(20, usize::trailing_zeros)
            .min(20);
        let buckets = 1usize << self.bucket_bits;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut i = 0;
        for b in 0..buckets {
            while i < self.slots.len() && self.bucket(&self.slots[i].id) < b {
                i += 1;
            }
            starts.push(u32::try_from(i).unwrap_or(u32::MAX));
        }
        starts.push(u32::try_from(self.slots.len()).unwrap_or(u32::MAX));
        self.buckets = starts;
    }

    /// The bucket of an id: its first `bucket_bits` bits.
    fn bucket(&self, id: &ChunkId) -> usize {
        if self.bucket_bits == 0 {
            0
        } else {
            usize::try_from(prefix(id) >> (64 - self.bucket_bits)).unwrap_or(usize::MAX)
        }
    }

    fn find(&self, id: &ChunkId) -> Option<&Slot> {
        let b = self.bucket(id);
        let (Some(&start), Some(&end)) = (self.buckets.get(b), self.buckets.get(b + 1)) else {
            return None; // not finished, or empty
        };
        let bucket = self.slots.get(start as usize..end as usize)?;
        // The first eight bytes, compared as one number, almost always decide; the whole
        // id is compared only on a tie.
        let wanted = prefix(id);
        bucket
            .binary_search_by(|s| prefix(&s.id).cmp(&wanted).then_with(|| s.id.cmp(id)))
            .ok()
            .map(|i| &bucket[i])
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

    /// Ids as the repository has them (hashes), in buckets of a few: every id is found,
    /// ids sharing their first bytes are told apart, absent ids are not found, and an
    /// index with nothing in it finds nothing.
    #[test]
    fn lookups_find_hashed_ids_and_only_them() {
        let id = |n: u32| crypto::sha256(&n.to_le_bytes());
        let mut index = Index::default();
        assert!(!index.contains(&id(0)));
        for n in 0..10_000u32 {
            index.insert([3; 32], entry(0, u64::from(n)).with_id(id(n)));
        }
        // Same first sixteen bytes as id(0), then different.
        let mut twin = id(0);
        twin[31] ^= 1;
        index.insert([4; 32], entry(0, 77).with_id(twin));
        index.finish();
        assert!(index.bucket_bits > 8, "{}", index.bucket_bits);
        for n in 0..10_000u32 {
            let (pack, e) = index.get(&id(n)).expect("indexed");
            assert_eq!((*pack, e.offset), ([3; 32], u64::from(n)));
        }
        assert_eq!(
            index.get(&twin).map(|(p, e)| (*p, e.offset)),
            Some(([4; 32], 77))
        );
        for n in 10_000..20_000u32 {
            assert!(!index.contains(&id(n)));
        }
        assert!(!index.contains(&[0; 32]) && !index.contains(&[0xff; 32]));
        let mut empty = Index::default();
        empty.finish();
        assert!(!empty.contains(&id(1)));
    }

    impl BlobEntry {
        fn with_id(mut self, id: ChunkId) -> Self {
            self.id = id;
            self
        }
    }
}
