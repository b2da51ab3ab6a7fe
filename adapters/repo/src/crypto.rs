//! The repository's keys and sealing. See the crate documentation for the format.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::TryRng as _;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

use coffer_domain::engine::{Phase, PhaseTimes};

use crate::error::EngineError;

/// A chunk (blob) id: HMAC-SHA256 of the plaintext under the repository's id key.
pub type ChunkId = [u8; 32];

/// Random bytes from the OS.
pub fn random<const N: usize>() -> Result<[u8; N], EngineError> {
    let mut out = [0u8; N];
    SysRng
        .try_fill_bytes(&mut out)
        .map_err(|e| EngineError::Other(format!("OS randomness failed: {e}")))?;
    Ok(out)
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The repository's secret key material, stored wrapped under the master key.
#[derive(Clone)]
pub struct Keys {
    /// Derives the per-object encryption keys.
    enc: [u8; 32],
    /// Keys chunk ids, so storage access alone cannot confirm a known file is stored.
    id: [u8; 32],
    /// XORed into the chunker's gear table: chunk boundaries reveal nothing either.
    pub chunker_seed: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

const WRAP_MAGIC: &[u8; 8] = b"CFRKEY01";
const KEY_MATERIAL_LEN: usize = 72;

impl Keys {
    /// Fresh key material for a new repository.
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn generate() -> Result<Self, EngineError> {
        Ok(Self {
            enc: random()?,
            id: random()?,
            chunker_seed: u64::from_le_bytes(random()?),
        })
    }

    #[must_use]
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        hmac(&self.id, &[data])
    }

    fn derive_blob(&self, salt: &[u8; 16]) -> Aes256Gcm {
        let key = hmac(&self.enc, &[b"coffer blob", salt]);
        Aes256Gcm::new_from_slice(&key).expect("32-byte key")
    }

    fn derive(&self, purpose: &[u8], object: &[u8; 32]) -> Aes256Gcm {
        let key = hmac(&self.enc, &[purpose, object]);
        Aes256Gcm::new_from_slice(&key).expect("32-byte key")
    }

    /// `WRAP_MAGIC || nonce(12) || AES-256-GCM(master, material)`.
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn wrap(&self, master: &[u8; 32]) -> Result<Vec<u8>, EngineError> {
        let mut material = Vec::with_capacity(KEY_MATERIAL_LEN + 16);
        material.extend_from_slice(&self.enc);
        material.extend_from_slice(&self.id);
        material.extend_from_slice(&self.chunker_seed.to_le_bytes());
        let nonce: [u8; 12] = random()?;
        let cipher = Aes256Gcm::new_from_slice(master).expect("32-byte key");
        cipher
            .encrypt_in_place(&Nonce::from(nonce), WRAP_MAGIC, &mut material)
            .map_err(|_| EngineError::Other("key wrapping failed".into()))?;
        let mut out = WRAP_MAGIC.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&material);
        Ok(out)
    }

    /// # Errors
    /// [`EngineError::WrongKey`] when `master` is not the key the material was wrapped with.
    pub fn unwrap(wrapped: &[u8], master: &[u8; 32]) -> Result<Self, EngineError> {
        if wrapped.len() != 8 + 12 + KEY_MATERIAL_LEN + 16 || &wrapped[..8] != WRAP_MAGIC {
            return Err(EngineError::Corrupt(
                "the repository key object is damaged".into(),
            ));
        }
        let nonce: [u8; 12] = wrapped[8..20].try_into().expect("12 bytes");
        let mut material = wrapped[20..].to_vec();
        let cipher = Aes256Gcm::new_from_slice(master).expect("32-byte key");
        cipher
            .decrypt_in_place(&Nonce::from(nonce), WRAP_MAGIC, &mut material)
            .map_err(|_| EngineError::WrongKey)?;
        Ok(Self {
            enc: material[..32].try_into().expect("32"),
            id: material[32..64].try_into().expect("32"),
            chunker_seed: u64::from_le_bytes(material[64..72].try_into().expect("8")),
        })
    }
}

/// Flags of a sealed payload.
const FLAG_ENCRYPTED: u8 = 1;
const FLAG_COMPRESSED: u8 = 2;

/// zstd level: fast, and on par with restic's default in size.
const ZSTD_LEVEL: i32 = 3;

/// Seals one blob: zstd when that makes it smaller, then AES-256-GCM under a key
/// derived for this blob alone from 128 random bits stored in front of it (so the fixed
/// nonce never repeats under a key), with the chunk id as associated data. Sealing does
/// not depend on where the blob is stored, so blobs seal in parallel and can move
/// between packs (repacking) without re-encryption. Unencrypted repositories store the
/// (compressed) plaintext: the chunk id, a MAC of the plaintext, authenticates it on read.
///
/// Layout: `flags ‖ salt(16) ‖ ciphertext+tag`, or `flags ‖ body` unencrypted.
#[cfg(test)]
pub fn seal_blob(
    keys: &Keys,
    encrypt: bool,
    id: &ChunkId,
    plain: &[u8],
    phases: Option<&PhaseTimes>,
) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::new();
    seal_blob_into(keys, encrypt, id, plain, phases, &mut out)?;
    Ok(out)
}

/// [`seal_blob`] into `out` (emptied first): compressed straight into place and
/// encrypted there, so sealing needs no memory of its own beyond `out`, which the
/// caller reuses from blob to blob.
pub fn seal_blob_into(
    keys: &Keys,
    encrypt: bool,
    id: &ChunkId,
    plain: &[u8],
    phases: Option<&PhaseTimes>,
    out: &mut Vec<u8>,
) -> Result<(), EngineError> {
    let clock = Clock::start(phases);
    let header = if encrypt { 17 } else { 1 };
    out.clear();
    out.resize(header, 0);
    // Room for the compressed body: a body that would not be smaller is stored raw.
    let room = plain.len().saturating_sub(1);
    out.reserve_exact(room.max(plain.len()) + 16);
    let compressed = COMPRESSOR.with(|cell| -> Result<Option<usize>, EngineError> {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| EngineError::Other(format!("compression failed: {e}")))?,
            );
        }
        let compressor = slot.as_mut().expect("initialised above");
        out.resize(header + room, 0);
        // Too small a room ("destination too small") means it does not shrink.
        Ok(compressor
            .compress_to_buffer(plain, &mut out[header..])
            .ok()
            .filter(|&n| n < plain.len()))
    })?;
    let mut flags = if let Some(n) = compressed {
        out.truncate(header + n);
        FLAG_COMPRESSED
    } else {
        out.truncate(header);
        out.extend_from_slice(plain);
        0
    };
    let clock = clock.lap(Phase::Compress);
    if encrypt {
        flags |= FLAG_ENCRYPTED;
        let salt: [u8; 16] = random()?;
        out[1..17].copy_from_slice(&salt);
        let tag = keys
            .derive_blob(&salt)
            .encrypt_inout_detached(&Nonce::from([0u8; 12]), id, (&mut out[17..]).into())
            .map_err(|_| EngineError::Other("encryption failed".into()))?;
        out.extend_from_slice(&tag);
    }
    out[0] = flags;
    clock.lap(Phase::Seal);
    Ok(())
}

thread_local! {
    /// One zstd context (and its output buffer) per thread, reused for every blob:
    /// creating a context per small file costs more than compressing it.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress(body: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().ok()?);
        }
        slot.as_mut()?.decompress(body, raw_len).ok()
    })
}

/// Opens a sealed blob and checks that its plaintext has the expected id.
///
/// # Errors
/// [`EngineError::Damaged`] when authentication, decompression or the id check fails.
pub fn open_blob(
    keys: &Keys,
    id: &ChunkId,
    raw_len: usize,
    sealed: &[u8],
) -> Result<Vec<u8>, EngineError> {
    open_blob_timed(keys, id, raw_len, sealed, None)
}

/// [`open_blob`], adding the time of each step to `phases`.
///
/// # Errors
/// As [`open_blob`].
pub fn open_blob_timed(
    keys: &Keys,
    id: &ChunkId,
    raw_len: usize,
    sealed: &[u8],
    phases: Option<&PhaseTimes>,
) -> Result<Vec<u8>, EngineError> {
    let damaged =
        |why: &str| EngineError::Damaged(format!("chunk {}: {why}", hex::encode(&id[..8])));
    let clock = Clock::start(phases);
    let (&flags, rest) = sealed.split_first().ok_or_else(|| damaged("empty"))?;
    let body = if flags & FLAG_ENCRYPTED != 0 {
        if rest.len() < 16 {
            return Err(damaged("truncated"));
        }
        let (salt, ct) = rest.split_at(16);
        let mut body = ct.to_vec();
        keys.derive_blob(salt.try_into().expect("16"))
            .decrypt_in_place(&Nonce::from([0u8; 12]), id, &mut body)
            .map_err(|_| damaged("authentication failed"))?;
        body
    } else {
        rest.to_vec()
    };
    let clock = clock.lap(Phase::Seal);
    let plain = if flags & FLAG_COMPRESSED != 0 {
        decompress(&body, raw_len).ok_or_else(|| damaged("does not decompress"))?
    } else {
        body
    };
    let clock = clock.lap(Phase::Compress);
    let matches = plain.len() == raw_len && keys.chunk_id(&plain) == *id;
    clock.lap(Phase::Hash);
    if !matches {
        return Err(damaged("content does not match its id"));
    }
    Ok(plain)
}

/// Adds the time between laps to a phase, when there is anywhere to add it.
pub struct Clock<'a>(Option<(&'a PhaseTimes, std::time::Instant)>);

impl<'a> Clock<'a> {
    pub fn start(phases: Option<&'a PhaseTimes>) -> Self {
        Self(phases.map(|p| (p, std::time::Instant::now())))
    }

    /// Adds the time since the last lap to `phase` and starts the next lap (the last
    /// lap's result may be dropped).
    pub fn lap(self, phase: Phase) -> Self {
        Self(self.0.map(|(p, started)| {
            let now = std::time::Instant::now();
            p.add(phase, now - started);
            (p, now)
        }))
    }
}

const OBJECT_MAGIC: &[u8; 4] = b"CFO1";

/// Seals a whole object (snapshot, index, pack header): `magic || flags || object id(32)
/// || body`, the body compressed when that helps and then encrypted under a key derived
/// for this object alone (so a fixed nonce is safe), or followed by its SHA-256 when the
/// repository is unencrypted.
pub fn seal_object(
    keys: &Keys,
    encrypt: bool,
    purpose: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, EngineError> {
    let object_id: [u8; 32] = random()?;
    let compressed = zstd::bulk::compress(plain, ZSTD_LEVEL)
        .map_err(|e| EngineError::Other(format!("compression failed: {e}")))?;
    let (mut flags, mut body) = if compressed.len() < plain.len() {
        (FLAG_COMPRESSED, compressed)
    } else {
        (0, plain.to_vec())
    };
    // The uncompressed length travels inside the authenticated body.
    let mut framed = (plain.len() as u64).to_le_bytes().to_vec();
    framed.append(&mut body);
    let mut body = framed;
    if encrypt {
        flags |= FLAG_ENCRYPTED;
        let cipher = keys.derive(purpose, &object_id);
        cipher
            .encrypt_in_place(&Nonce::from([0u8; 12]), OBJECT_MAGIC, &mut body)
            .map_err(|_| EngineError::Other("encryption failed".into()))?;
    } else {
        let digest = sha256(&body);
        body.extend_from_slice(&digest);
    }
    let mut out = Vec::with_capacity(body.len() + 37);
    out.extend_from_slice(OBJECT_MAGIC);
    out.push(flags);
    out.extend_from_slice(&object_id);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Opens an object sealed by [`seal_object`]; returns the plaintext and whether it was
/// encrypted.
///
/// # Errors
/// [`EngineError::Damaged`] when the object fails authentication or its checksum.
pub fn open_object(
    keys: &Keys,
    purpose: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<(Vec<u8>, bool), EngineError> {
    let damaged = || EngineError::Damaged(format!("{what} is damaged"));
    if sealed.len() < 37 + 8 || &sealed[..4] != OBJECT_MAGIC {
        return Err(damaged());
    }
    let flags = sealed[4];
    let object_id: [u8; 32] = sealed[5..37].try_into().expect("32");
    let mut body = sealed[37..].to_vec();
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    if encrypted {
        let cipher = keys.derive(purpose, &object_id);
        cipher
            .decrypt_in_place(&Nonce::from([0u8; 12]), OBJECT_MAGIC, &mut body)
            .map_err(|_| damaged())?;
    } else {
        let split = body.len().checked_sub(32).ok_or_else(damaged)?;
        let digest = body.split_off(split);
        if sha256(&body)[..] != digest[..] {
            return Err(damaged());
        }
    }
    if body.len() < 8 {
        return Err(damaged());
    }
    let raw_len = usize::try_from(u64::from_le_bytes(body[..8].try_into().expect("8")))
        .map_err(|_| damaged())?;
    let payload = &body[8..];
    let plain = if flags & FLAG_COMPRESSED != 0 {
        zstd::bulk::decompress(payload, raw_len).map_err(|_| damaged())?
    } else {
        payload.to_vec()
    };
    if plain.len() != raw_len {
        return Err(damaged());
    }
    Ok((plain, encrypted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_wrap_and_unwrap_only_with_the_master_key() {
        let keys = Keys::generate().expect("keys");
        let wrapped = keys.wrap(&[1u8; 32]).expect("wrap");
        let back = Keys::unwrap(&wrapped, &[1u8; 32]).expect("unwrap");
        assert_eq!(back.chunk_id(b"x"), keys.chunk_id(b"x"));
        assert!(matches!(
            Keys::unwrap(&wrapped, &[2u8; 32]),
            Err(EngineError::WrongKey)
        ));
    }

    #[test]
    fn blobs_round_trip_and_detect_tampering() {
        let keys = Keys::generate().expect("keys");
        let data = b"hello hello hello hello hello hello hello".repeat(100);
        let id = keys.chunk_id(&data);
        for encrypt in [true, false] {
            let sealed = seal_blob(&keys, encrypt, &id, &data, None).expect("seal");
            assert_eq!(
                open_blob(&keys, &id, data.len(), &sealed).expect("open"),
                data
            );
            let other = keys.chunk_id(b"other");
            assert!(
                open_blob(&keys, &other, data.len(), &sealed).is_err(),
                "bound to its id"
            );
            let mut bad = sealed.clone();
            let mid = bad.len() / 2;
            bad[mid] ^= 1;
            assert!(
                open_blob(&keys, &id, data.len(), &bad).is_err(),
                "flip, encrypt={encrypt}"
            );
        }
        let sealed = seal_blob(&keys, true, &id, &data, None).expect("seal");
        assert!(
            !sealed.windows(5).any(|w| w == b"hello"),
            "no plaintext in an encrypted blob"
        );
    }

    #[test]
    fn objects_round_trip_and_detect_tampering() {
        let keys = Keys::generate().expect("keys");
        for encrypt in [true, false] {
            let sealed = seal_object(&keys, encrypt, b"t", b"{\"a\":1}").expect("seal");
            assert_eq!(
                open_object(&keys, b"t", &sealed, "x").expect("open"),
                (b"{\"a\":1}".to_vec(), encrypt)
            );
            let mut bad = sealed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            assert!(open_object(&keys, b"t", &bad, "x").is_err());
        }
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = Keys::generate().expect("keys");
        let b = Keys::generate().expect("keys");
        assert_ne!(a.chunk_id(b"same"), b.chunk_id(b"same"));
        assert_ne!(a.chunk_id(b"same"), sha256(b"same"));
    }
}
