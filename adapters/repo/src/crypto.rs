//! The repository's keys and sealing. See the crate documentation for the format.

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng as _;
use rand::rngs::SysRng;
use ring::aead;
use ring::error::Unspecified;
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

/// AES-256-GCM, ring's: its AES-NI and carry-less-multiply assembly runs at ~7 GB/s on
/// this project's VMs against ~2.1 GB/s for RustCrypto's `aes-gcm` (the same algorithm
/// and bytes; ring is the TLS provider already). SHA-256 stays RustCrypto's: with SHA-NI
/// both run at the same speed.
struct Cipher(aead::LessSafeKey);

impl Cipher {
    fn new(key: &[u8; 32]) -> Self {
        Self(aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, key).expect("32-byte key"),
        ))
    }

    /// Encrypts `buf` in place and appends the 16-byte tag.
    fn seal(&self, nonce: [u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), Unspecified> {
        self.0.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            buf,
        )
    }

    /// Encrypts `buf` in place; returns the tag.
    fn seal_detached(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; 16], Unspecified> {
        let tag = self.0.seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            buf,
        )?;
        Ok(tag.as_ref().try_into().expect("16-byte tag"))
    }

    /// Authenticates and decrypts `buf` (ciphertext and tag) in place, leaving the
    /// plaintext.
    fn open(&self, nonce: [u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), Unspecified> {
        let len = self.open_slice(nonce, aad, buf)?.len();
        buf.truncate(len);
        Ok(())
    }

    /// Authenticates and decrypts `buf` (ciphertext and tag) in place; returns the
    /// plaintext, the start of `buf`.
    fn open_slice<'b>(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        buf: &'b mut [u8],
    ) -> Result<&'b mut [u8], Unspecified> {
        self.0.open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            buf,
        )
    }
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

/// Whether a repository encrypts, recorded in its key material (so nobody without the
/// key can change it) and enforced on every object read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything is encrypted; an unencrypted object is refused.
    Encrypted,
    /// Objects are stored unencrypted, each authenticated by a keyed MAC (blobs by their
    /// keyed id); an object without one is refused.
    Plain,
    /// A repository created unencrypted before objects carried a keyed MAC: its snapshots
    /// and pack headers of that time end with a plain SHA-256 and are still read; its
    /// indexes were sealed again with a MAC when the repository was upgraded.
    PlainLegacy,
}

impl Mode {
    const fn byte(self) -> u8 {
        match self {
            Self::Plain => 0,
            Self::Encrypted => 1,
            Self::PlainLegacy => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Plain),
            1 => Some(Self::Encrypted),
            2 => Some(Self::PlainLegacy),
            _ => None,
        }
    }

    #[must_use]
    pub const fn encrypts(self) -> bool {
        matches!(self, Self::Encrypted)
    }
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
    /// `None` for key material of format 1, which did not record it (see `Repository::open`).
    pub mode: Option<Mode>,
    /// Keys the MACs of unencrypted objects (derived from `enc`).
    mac: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(***)")
    }
}

/// Key material of format 1 (no mode): still read, never written.
const WRAP_MAGIC_1: &[u8; 8] = b"CFRKEY01";
const KEY_MATERIAL_LEN_1: usize = 72;
/// Format 2: the material of format 1, then the mode (one byte).
const WRAP_MAGIC: &[u8; 8] = b"CFRKEY02";
const KEY_MATERIAL_LEN: usize = 73;

impl Keys {
    /// Fresh key material for a new repository.
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn generate(mode: Mode) -> Result<Self, EngineError> {
        Ok(Self::from_parts(
            random()?,
            random()?,
            u64::from_le_bytes(random()?),
            Some(mode),
        ))
    }

    fn from_parts(enc: [u8; 32], id: [u8; 32], chunker_seed: u64, mode: Option<Mode>) -> Self {
        Self {
            mac: hmac(&enc, &[b"coffer object mac"]),
            enc,
            id,
            chunker_seed,
            mode,
        }
    }

    /// The same keys, recording `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    fn mode_or_refuse(&self) -> Result<Mode, EngineError> {
        self.mode.ok_or_else(|| {
            EngineError::Other("the repository's mode is not known yet (open it first)".into())
        })
    }

    #[must_use]
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        hmac(&self.id, &[data])
    }

    fn derive_blob(&self, salt: &[u8; 16]) -> Cipher {
        Cipher::new(&hmac(&self.enc, &[b"coffer blob", salt]))
    }

    fn derive(&self, purpose: &[u8], object: &[u8; 32]) -> Cipher {
        Cipher::new(&hmac(&self.enc, &[purpose, object]))
    }

    /// `WRAP_MAGIC || nonce(12) || AES-256-GCM(master, material)`.
    ///
    /// # Errors
    /// When the OS has no randomness.
    pub fn wrap(&self, master: &[u8; 32]) -> Result<Vec<u8>, EngineError> {
        let mode = self.mode_or_refuse()?;
        let mut material = Vec::with_capacity(KEY_MATERIAL_LEN + 16);
        material.extend_from_slice(&self.enc);
        material.extend_from_slice(&self.id);
        material.extend_from_slice(&self.chunker_seed.to_le_bytes());
        material.push(mode.byte());
        let nonce: [u8; 12] = random()?;
        Cipher::new(master)
            .seal(nonce, WRAP_MAGIC, &mut material)
            .map_err(|_| EngineError::Other("key wrapping failed".into()))?;
        let mut out = WRAP_MAGIC.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&material);
        Ok(out)
    }

    /// # Errors
    /// [`EngineError::WrongKey`] when `master` is not the key the material was wrapped with.
    pub fn unwrap(wrapped: &[u8], master: &[u8; 32]) -> Result<Self, EngineError> {
        let damaged = || EngineError::Corrupt("the repository key object is damaged".into());
        let magic: &[u8; 8] = wrapped
            .get(..8)
            .and_then(|m| m.try_into().ok())
            .ok_or_else(damaged)?;
        let len = match magic {
            m if m == WRAP_MAGIC => KEY_MATERIAL_LEN,
            m if m == WRAP_MAGIC_1 => KEY_MATERIAL_LEN_1,
            _ => return Err(damaged()),
        };
        if wrapped.len() != 8 + 12 + len + 16 {
            return Err(damaged());
        }
        let nonce: [u8; 12] = wrapped[8..20].try_into().expect("12 bytes");
        let mut material = wrapped[20..].to_vec();
        Cipher::new(master)
            .open(nonce, magic, &mut material)
            .map_err(|_| EngineError::WrongKey)?;
        let mode = if len == KEY_MATERIAL_LEN {
            Some(Mode::from_byte(material[72]).ok_or_else(damaged)?)
        } else {
            None
        };
        Ok(Self::from_parts(
            material[..32].try_into().expect("32"),
            material[32..64].try_into().expect("32"),
            u64::from_le_bytes(material[64..72].try_into().expect("8")),
            mode,
        ))
    }

    /// The MAC of an unencrypted object: its header, its purpose and its body.
    fn object_mac(&self, flags: u8, object_id: &[u8; 32], purpose: &[u8], body: &[u8]) -> [u8; 32] {
        hmac(
            &self.mac,
            &[
                OBJECT_MAGIC,
                &[flags],
                object_id,
                &(purpose.len() as u64).to_le_bytes(),
                purpose,
                body,
            ],
        )
    }
}

/// Whether a stored object is an unencrypted one (`None`: not an object of this kind).
#[must_use]
pub fn object_is_unencrypted(sealed: &[u8]) -> Option<bool> {
    object_flags(sealed).map(|f| f & FLAG_ENCRYPTED == 0)
}

/// Whether a stored object is an unencrypted one sealed before objects carried a MAC.
#[must_use]
pub fn object_is_legacy(sealed: &[u8]) -> bool {
    object_flags(sealed).is_some_and(|f| f & (FLAG_ENCRYPTED | FLAG_MAC) == 0)
}

fn object_flags(sealed: &[u8]) -> Option<u8> {
    (sealed.len() > 4 && &sealed[..4] == OBJECT_MAGIC).then(|| sealed[4])
}

/// Flags of a sealed payload.
const FLAG_ENCRYPTED: u8 = 1;
const FLAG_COMPRESSED: u8 = 2;
/// An unencrypted object ends with a keyed MAC (not a plain SHA-256, which anybody can
/// compute).
const FLAG_MAC: u8 = 4;

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
    // Room for the compressed body, or the raw body and the tag.
    out.reserve_exact(plain.len() + 16);
    let compressed = COMPRESSOR.with(|cell| -> Result<bool, EngineError> {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Compressor::new(ZSTD_LEVEL)
                    .map_err(|e| EngineError::Other(format!("compression failed: {e}")))?,
            );
        }
        let compressor = slot.as_mut().expect("initialised above");
        // Compressed behind the header, into the spare capacity (not zeroed first); a
        // body that is not smaller than the plaintext, or does not fit, is stored raw.
        let mut body = std::io::Cursor::new(std::mem::take(out));
        body.set_position(header as u64);
        let fits = compressor.compress_to_buffer(plain, &mut body).is_ok();
        *out = body.into_inner();
        Ok(fits && out.len() - header < plain.len())
    })?;
    let mut flags = if compressed {
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
            .seal_detached([0u8; 12], id, &mut out[17..])
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
    open_blob_in_place(keys, id, raw_len, &mut sealed.to_vec(), None)
}

/// [`open_blob`] on sealed bytes it may overwrite (they are decrypted where they lie, with
/// no copy), adding the time of each step to `phases`.
///
/// # Errors
/// As [`open_blob`].
pub fn open_blob_in_place(
    keys: &Keys,
    id: &ChunkId,
    raw_len: usize,
    sealed: &mut [u8],
    phases: Option<&PhaseTimes>,
) -> Result<Vec<u8>, EngineError> {
    let damaged =
        |why: &str| EngineError::Damaged(format!("chunk {}: {why}", hex::encode(&id[..8])));
    let clock = Clock::start(phases);
    let (&mut flags, rest) = sealed.split_first_mut().ok_or_else(|| damaged("empty"))?;
    if flags & FLAG_ENCRYPTED == 0 && keys.mode_or_refuse()?.encrypts() {
        return Err(damaged(
            "not encrypted, in a repository that encrypts everything (refused)",
        ));
    }
    let body: &[u8] = if flags & FLAG_ENCRYPTED != 0 {
        if rest.len() < 16 {
            return Err(damaged("truncated"));
        }
        let (salt, ct) = rest.split_at_mut(16);
        keys.derive_blob(&(*salt).try_into().expect("16"))
            .open_slice([0u8; 12], id, ct)
            .map_err(|_| damaged("authentication failed"))?
    } else {
        rest
    };
    let clock = clock.lap(Phase::Seal);
    let plain = if flags & FLAG_COMPRESSED != 0 {
        decompress(body, raw_len).ok_or_else(|| damaged("does not decompress"))?
    } else {
        body.to_vec()
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

/// Seals a whole object (snapshot, index, pack header, config): `magic || flags || object
/// id(32) || body`, the body compressed when that helps and then encrypted under a key
/// derived for this object alone (so a fixed nonce is safe), or, in an unencrypted
/// repository, followed by an HMAC-SHA256 under a key derived from the key material.
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
        keys.derive(purpose, &object_id)
            .seal([0u8; 12], OBJECT_MAGIC, &mut body)
            .map_err(|_| EngineError::Other("encryption failed".into()))?;
    } else {
        flags |= FLAG_MAC;
        let mac = keys.object_mac(flags, &object_id, purpose, &body);
        body.extend_from_slice(&mac);
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
    open_object_with(keys, purpose, sealed, what, Legacy::Refused)
}

/// Whether an unencrypted object may end with the plain SHA-256 of format 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// In a `Mode::PlainLegacy` repository (snapshots and pack headers of that time).
    Allowed,
    Refused,
}

/// [`open_object`], saying whether a legacy object may pass in a repository of
/// `Mode::PlainLegacy`.
///
/// # Errors
/// [`EngineError::Damaged`] when the object fails authentication, is unencrypted in an
/// encrypted repository, or carries no keyed MAC where one is required.
pub fn open_object_with(
    keys: &Keys,
    purpose: &[u8],
    sealed: &[u8],
    what: &str,
    legacy: Legacy,
) -> Result<(Vec<u8>, bool), EngineError> {
    let damaged = || EngineError::Damaged(format!("{what} is damaged"));
    let mode = keys.mode_or_refuse()?;
    if sealed.len() < 37 + 8 || &sealed[..4] != OBJECT_MAGIC {
        return Err(damaged());
    }
    let flags = sealed[4];
    let object_id: [u8; 32] = sealed[5..37].try_into().expect("32");
    let mut body = sealed[37..].to_vec();
    let encrypted = flags & FLAG_ENCRYPTED != 0;
    if encrypted {
        keys.derive(purpose, &object_id)
            .open([0u8; 12], OBJECT_MAGIC, &mut body)
            .map_err(|_| damaged())?;
    } else {
        // Whoever has write access to the storage can make an unencrypted object with a
        // plain checksum: only a MAC under the key material proves it is the repository's.
        if mode.encrypts() {
            return Err(EngineError::Damaged(format!(
                "{what} is not encrypted, in a repository that encrypts everything: refused \
                 (Coffer did not write it with this repository's key)"
            )));
        }
        let split = body.len().checked_sub(32).ok_or_else(damaged)?;
        let tag = body.split_off(split);
        if flags & FLAG_MAC != 0 {
            let mac = keys.object_mac(flags, &object_id, purpose, &body);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(&mac[..], &tag[..])) {
                return Err(damaged());
            }
        } else if mode == Mode::PlainLegacy && legacy == Legacy::Allowed {
            if sha256(&body)[..] != tag[..] {
                return Err(damaged());
            }
        } else {
            return Err(EngineError::Damaged(format!(
                "{what} carries no MAC under the repository's key: refused (Coffer did not \
                 write it with this repository's key)"
            )));
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
    fn keys_wrap_and_unwrap_only_with_the_master_key_and_keep_their_mode() {
        for mode in [Mode::Encrypted, Mode::Plain, Mode::PlainLegacy] {
            let keys = Keys::generate(mode).expect("keys");
            let wrapped = keys.wrap(&[1u8; 32]).expect("wrap");
            let back = Keys::unwrap(&wrapped, &[1u8; 32]).expect("unwrap");
            assert_eq!(back.chunk_id(b"x"), keys.chunk_id(b"x"));
            assert_eq!(back.mode, Some(mode));
            assert!(matches!(
                Keys::unwrap(&wrapped, &[2u8; 32]),
                Err(EngineError::WrongKey)
            ));
        }
    }

    #[test]
    fn key_material_of_format_1_reads_without_a_mode() {
        let keys = Keys::generate(Mode::Encrypted).expect("keys");
        let mut material = keys.enc.to_vec();
        material.extend_from_slice(&keys.id);
        material.extend_from_slice(&keys.chunker_seed.to_le_bytes());
        let nonce = [3u8; 12];
        Cipher::new(&[1u8; 32])
            .seal(nonce, WRAP_MAGIC_1, &mut material)
            .unwrap();
        let wrapped = [&WRAP_MAGIC_1[..], &nonce, &material].concat();
        let back = Keys::unwrap(&wrapped, &[1u8; 32]).expect("format 1");
        assert_eq!(back.mode, None);
        assert_eq!(back.chunk_id(b"x"), keys.chunk_id(b"x"));
        assert!(back.wrap(&[1u8; 32]).is_err(), "no mode, nothing to write");
    }

    #[test]
    fn blobs_round_trip_and_detect_tampering() {
        let data = b"hello hello hello hello hello hello hello".repeat(100);
        for (mode, encrypt) in [(Mode::Encrypted, true), (Mode::Plain, false)] {
            let keys = Keys::generate(mode).expect("keys");
            let id = keys.chunk_id(&data);
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
        let keys = Keys::generate(Mode::Encrypted).expect("keys");
        let id = keys.chunk_id(&data);
        let sealed = seal_blob(&keys, true, &id, &data, None).expect("seal");
        assert!(
            !sealed.windows(5).any(|w| w == b"hello"),
            "no plaintext in an encrypted blob"
        );
        // An unencrypted blob in an encrypted repository is refused.
        let plain = seal_blob(&keys, false, &id, &data, None).expect("seal");
        assert!(open_blob(&keys, &id, data.len(), &plain).is_err());
    }

    #[test]
    fn objects_round_trip_and_detect_tampering() {
        for (mode, encrypt) in [(Mode::Encrypted, true), (Mode::Plain, false)] {
            let keys = Keys::generate(mode).expect("keys");
            let sealed = seal_object(&keys, encrypt, b"t", b"{\"a\":1}").expect("seal");
            assert_eq!(
                open_object(&keys, b"t", &sealed, "x").expect("open"),
                (b"{\"a\":1}".to_vec(), encrypt)
            );
            let mut bad = sealed.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x40;
            assert!(open_object(&keys, b"t", &bad, "x").is_err());
            // Bound to its purpose: an index cannot pass for a snapshot.
            assert!(open_object(&keys, b"u", &sealed, "x").is_err());
        }
    }

    /// `magic ‖ flags ‖ id ‖ (len ‖ body) ‖ SHA-256`: what anybody can write.
    fn checksummed(plain: &[u8]) -> Vec<u8> {
        let mut body = (plain.len() as u64).to_le_bytes().to_vec();
        body.extend_from_slice(plain);
        let digest = sha256(&body);
        [&OBJECT_MAGIC[..], &[0], &[9u8; 32], &body, &digest].concat()
    }

    #[test]
    fn objects_anybody_could_write_are_refused_but_in_a_legacy_repository() {
        let forged = checksummed(b"{}");
        for mode in [Mode::Encrypted, Mode::Plain] {
            let keys = Keys::generate(mode).expect("keys");
            for legacy in [Legacy::Allowed, Legacy::Refused] {
                let err = open_object_with(&keys, b"t", &forged, "the object", legacy)
                    .expect_err("refused");
                assert!(matches!(err, EngineError::Damaged(m) if m.contains("refused")));
            }
        }
        let keys = Keys::generate(Mode::PlainLegacy).expect("keys");
        assert!(open_object_with(&keys, b"t", &forged, "x", Legacy::Allowed).is_ok());
        assert!(open_object_with(&keys, b"t", &forged, "x", Legacy::Refused).is_err());
        // What a legacy repository writes now carries a MAC.
        let sealed = seal_object(&keys, false, b"t", b"{}").expect("seal");
        assert!(open_object_with(&keys, b"t", &sealed, "x", Legacy::Refused).is_ok());
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = Keys::generate(Mode::Encrypted).expect("keys");
        let b = Keys::generate(Mode::Encrypted).expect("keys");
        assert_ne!(a.chunk_id(b"same"), b.chunk_id(b"same"));
        assert_ne!(a.chunk_id(b"same"), sha256(b"same"));
    }
}
