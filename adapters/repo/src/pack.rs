//! Packs: many sealed blobs in one object, with a sealed header listing them.

use crate::crypto::{ChunkId, Keys, Legacy, open_object_with, seal_object};
use crate::error::EngineError;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlobKind {
    Data = 0,
    Tree = 1,
}

impl BlobKind {
    fn from_u8(v: u8) -> Result<Self, EngineError> {
        match v {
            0 => Ok(Self::Data),
            1 => Ok(Self::Tree),
            _ => Err(EngineError::Corrupt(format!("unknown blob kind {v}"))),
        }
    }
}

/// Where a blob is: its pack and its place in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: ChunkId,
    pub kind: BlobKind,
    pub offset: u64,
    pub length: u32,
    pub raw_length: u32,
}

pub const ENTRY_LEN: usize = 32 + 1 + 8 + 4 + 4;

pub fn encode_entry(out: &mut Vec<u8>, e: &BlobEntry) {
    out.extend_from_slice(&e.id);
    out.push(e.kind as u8);
    out.extend_from_slice(&e.offset.to_le_bytes());
    out.extend_from_slice(&e.length.to_le_bytes());
    out.extend_from_slice(&e.raw_length.to_le_bytes());
}

pub fn decode_entry(b: &[u8]) -> Result<BlobEntry, EngineError> {
    if b.len() < ENTRY_LEN {
        return Err(EngineError::Corrupt("truncated blob entry".into()));
    }
    Ok(BlobEntry {
        id: b[..32].try_into().expect("32"),
        kind: BlobKind::from_u8(b[32])?,
        offset: u64::from_le_bytes(b[33..41].try_into().expect("8")),
        length: u32::from_le_bytes(b[41..45].try_into().expect("4")),
        raw_length: u32::from_le_bytes(b[45..49].try_into().expect("4")),
    })
}

const PACK_TRAILER: &[u8; 4] = b"CFP1";
const HEADER_PURPOSE: &[u8] = b"coffer pack header";

/// A pack being filled.
pub struct PackWriter {
    pub id: [u8; 32],
    buf: Vec<u8>,
    entries: Vec<BlobEntry>,
}

impl PackWriter {
    pub fn new(id: [u8; 32], capacity: usize) -> Self {
        Self::with_buffer(id, Vec::with_capacity(capacity))
    }

    /// A pack filled into `buf` (emptied first), whose memory is reused.
    pub fn with_buffer(id: [u8; 32], mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            id,
            buf,
            entries: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a sealed blob.
    pub fn add_sealed(
        &mut self,
        id: ChunkId,
        kind: BlobKind,
        raw_len: usize,
        sealed: &[u8],
    ) -> Result<BlobEntry, EngineError> {
        let entry = BlobEntry {
            id,
            kind,
            offset: self.buf.len() as u64,
            length: u32::try_from(sealed.len())
                .map_err(|_| EngineError::Other("blob too large".into()))?,
            raw_length: u32::try_from(raw_len)
                .map_err(|_| EngineError::Other("blob too large".into()))?,
        };
        self.buf.extend_from_slice(sealed);
        self.entries.push(entry);
        Ok(entry)
    }

    /// Appends the sealed header and trailer: `blobs || header || len(header) u32 || "CFP1"`.
    pub fn finish(
        mut self,
        keys: &Keys,
        encrypt: bool,
    ) -> Result<(Vec<u8>, Vec<BlobEntry>), EngineError> {
        let mut header = Vec::with_capacity(32 + self.entries.len() * ENTRY_LEN);
        header.extend_from_slice(&self.id);
        for e in &self.entries {
            encode_entry(&mut header, e);
        }
        let sealed = seal_object(keys, encrypt, HEADER_PURPOSE, &header)?;
        let len = u32::try_from(sealed.len())
            .map_err(|_| EngineError::Other("pack header too large".into()))?;
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(PACK_TRAILER);
        Ok((self.buf, self.entries))
    }
}

/// Reads a pack's header (to verify or rebuild an index from the pack alone).
///
/// # Errors
/// `Damaged`/`Corrupt` when the pack is truncated or its header fails authentication.
pub fn read_header(
    keys: &Keys,
    pack: &[u8],
    expected_id: &[u8; 32],
) -> Result<Vec<BlobEntry>, EngineError> {
    let damaged =
        |why: &str| EngineError::Damaged(format!("pack {}: {why}", hex::encode(expected_id)));
    if pack.len() < 8 || &pack[pack.len() - 4..] != PACK_TRAILER {
        return Err(damaged("truncated (no trailer)"));
    }
    let len =
        u32::from_le_bytes(pack[pack.len() - 8..pack.len() - 4].try_into().expect("4")) as usize;
    let start = pack
        .len()
        .checked_sub(8 + len)
        .ok_or_else(|| damaged("truncated header"))?;
    let (header, _) = open_object_with(
        keys,
        HEADER_PURPOSE,
        &pack[start..pack.len() - 8],
        "pack header",
        Legacy::Allowed,
    )
    .map_err(|_| damaged("header fails authentication"))?;
    if header.len() < 32 || &header[..32] != expected_id || (header.len() - 32) % ENTRY_LEN != 0 {
        return Err(damaged("header does not belong to this pack"));
    }
    let entries = header[32..]
        .chunks(ENTRY_LEN)
        .map(decode_entry)
        .collect::<Result<Vec<_>, _>>()?;
    if entries
        .iter()
        .any(|e| e.offset + u64::from(e.length) > start as u64)
    {
        return Err(damaged("an entry points past the blobs"));
    }
    Ok(entries)
}

/// The storage key of a pack.
pub fn pack_key(id: &[u8; 32]) -> String {
    let hex = hex::encode(id);
    format!("data/{}/{hex}", &hex[..2])
}
