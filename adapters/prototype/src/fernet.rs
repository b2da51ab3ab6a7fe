//! Fernet tokens (the `cryptography` package's format, which the prototype wrote), read
//! as a stream: `base64url(0x80 ‖ timestamp(8) ‖ IV(16) ‖ AES-128-CBC ciphertext ‖
//! HMAC-SHA256(32))`, the key being `base64url(signing key(16) ‖ encryption key(16))`.
//!
//! [`FernetReader`] gives the plaintext while it authenticates the token; the last
//! block is given only once the whole token has authenticated, and a token that does not
//! is an error at its end. A caller that must not act on unauthenticated plaintext reads
//! the token through once (discarding or hashing what it gives) before it uses it.

use std::io::{self, Read};

use aes::Aes128;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::{Array, BlockModeDecrypt as _, KeyIvInit as _};
use hmac::{KeyInit as _, Mac as _};
use sha2::Sha256;

const URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

const VERSION: u8 = 0x80;
const HEADER: usize = 1 + 8 + 16;
const TAG: usize = 32;
const BLOCK: usize = 16;
/// Decoded bytes asked for at once.
const READ: usize = 64 * 1024;

/// A Fernet key: its signing and encryption halves.
#[derive(Clone)]
pub struct FernetKey {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl std::fmt::Debug for FernetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FernetKey(..)")
    }
}

impl FernetKey {
    /// Reads a key file's content (base64url of 32 bytes, surrounding whitespace allowed).
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let text = text.trim_ascii();
        let raw = URL_SAFE
            .decode(text)
            .map_err(|_| "is not a Fernet key (not base64url)".to_owned())?;
        let raw: [u8; 32] = raw
            .try_into()
            .map_err(|_| "is not a Fernet key (not 32 bytes)".to_owned())?;
        let mut signing = [0; 16];
        let mut encryption = [0; 16];
        signing.copy_from_slice(&raw[..16]);
        encryption.copy_from_slice(&raw[16..]);
        Ok(Self {
            signing,
            encryption,
        })
    }
}

/// Drops ASCII whitespace (a token file with a trailing newline is still a token).
struct NoWhitespace<R>(R);

impl<R: Read> Read for NoWhitespace<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if !buf[i].is_ascii_whitespace() {
                    buf[kept] = buf[i];
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// The plaintext of a Fernet token read from `R` (the token's text).
pub struct FernetReader<R: Read> {
    input: base64::read::DecoderReader<'static, GeneralPurpose, NoWhitespace<R>>,
    mac: hmac::Hmac<Sha256>,
    cipher: Option<cbc::Decryptor<Aes128>>,
    key: FernetKey,
    /// Decoded bytes not yet decrypted: fewer than a block plus the tag at the end.
    held: Vec<u8>,
    /// Plaintext ready to give, from `out_at`.
    out: Vec<u8>,
    out_at: usize,
    /// The last decrypted block, given only once the token has authenticated.
    last: Option<[u8; BLOCK]>,
    done: bool,
}

impl<R: Read> FernetReader<R> {
    pub fn new(input: R, key: &FernetKey) -> Self {
        Self {
            input: base64::read::DecoderReader::new(NoWhitespace(input), &URL_SAFE),
            mac: hmac::Hmac::<Sha256>::new_from_slice(&key.signing).expect("any key length"),
            cipher: None,
            key: key.clone(),
            held: Vec::with_capacity(READ + TAG + BLOCK),
            out: Vec::new(),
            out_at: 0,
            last: None,
            done: false,
        }
    }

    /// Reads the header (version, time, IV) and sets up the cipher.
    fn start(&mut self) -> io::Result<()> {
        let mut header = [0u8; HEADER];
        self.input.read_exact(&mut header).map_err(|_| {
            invalid("is damaged or not a Fernet token (too short, or not base64url)")
        })?;
        if header[0] != VERSION {
            return Err(invalid("is not a Fernet token (unknown version)"));
        }
        self.mac.update(&header);
        self.cipher = Some(
            cbc::Decryptor::<Aes128>::new_from_slices(&self.key.encryption, &header[9..])
                .expect("16-byte key and IV"),
        );
        Ok(())
    }

    /// Decodes more of the token and decrypts every whole block that is surely not the
    /// tag; at the end, authenticates and unpads.
    fn fill(&mut self) -> io::Result<()> {
        if self.cipher.is_none() {
            self.start()?;
        }
        let start = self.held.len();
        self.held.resize(start + READ, 0);
        let read = self.input.read(&mut self.held[start..]);
        self.held.truncate(start + *read.as_ref().unwrap_or(&0));
        let n = read.map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                invalid("is damaged or not a Fernet token (a character that is not base64url)")
            } else {
                e
            }
        })?;
        self.out.clear();
        self.out_at = 0;
        if n == 0 {
            return self.end();
        }
        // Keep the tag's worth back, and only whole blocks go on.
        let ready = self.held.len().saturating_sub(TAG) / BLOCK * BLOCK;
        if ready == 0 {
            return Ok(());
        }
        let blocks: Vec<u8> = self.held.drain(..ready).collect();
        self.mac.update(&blocks);
        self.decrypt(&blocks);
        Ok(())
    }

    fn decrypt(&mut self, blocks: &[u8]) {
        let cipher = self.cipher.as_mut().expect("started");
        for block in blocks.chunks_exact(BLOCK) {
            let mut b = Array::from(<[u8; BLOCK]>::try_from(block).expect("a block"));
            cipher.decrypt_block(&mut b);
            if let Some(previous) = self.last.replace(b.into()) {
                self.out.extend_from_slice(&previous);
            }
        }
    }

    fn end(&mut self) -> io::Result<()> {
        self.done = true;
        if self.held.len() < TAG || !(self.held.len() - TAG).is_multiple_of(BLOCK) {
            return Err(invalid("is not a Fernet token (truncated)"));
        }
        let tag = self.held.split_off(self.held.len() - TAG);
        let rest = std::mem::take(&mut self.held);
        self.mac.update(&rest);
        let mac = std::mem::replace(
            &mut self.mac,
            hmac::Hmac::<Sha256>::new_from_slice(&[0]).expect("any key length"),
        );
        if mac.verify_slice(&tag).is_err() {
            return Err(invalid(
                "is damaged, or was encrypted with another key: its Fernet token does not authenticate with the installation's key",
            ));
        }
        self.decrypt(&rest);
        let last = self
            .last
            .take()
            .ok_or_else(|| invalid("is not a Fernet token (no ciphertext)"))?;
        let pad = usize::from(last[BLOCK - 1]);
        if pad == 0 || pad > BLOCK || last[BLOCK - pad..].iter().any(|&b| usize::from(b) != pad) {
            return Err(invalid("is not a Fernet token (bad padding)"));
        }
        self.out.extend_from_slice(&last[..BLOCK - pad]);
        Ok(())
    }
}

impl<R: Read> Read for FernetReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_at == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = buf.len().min(self.out.len() - self.out_at);
        buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
        self.out_at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Fernet specification's test vector (github.com/fernet/spec, generate.json).
    const KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    const TOKEN: &str = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";

    fn plain(token: &[u8]) -> io::Result<Vec<u8>> {
        let key = FernetKey::parse(KEY.as_bytes()).unwrap();
        let mut out = Vec::new();
        FernetReader::new(token, &key).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn the_specifications_token_decrypts() {
        assert_eq!(plain(TOKEN.as_bytes()).unwrap(), b"hello");
        let mut with_newline = TOKEN.as_bytes().to_vec();
        with_newline.push(b'\n');
        assert_eq!(plain(&with_newline).unwrap(), b"hello");
    }

    #[test]
    fn a_changed_or_cut_token_is_refused() {
        let mut raw = URL_SAFE.decode(TOKEN).unwrap();
        raw[30] ^= 1;
        let damaged = URL_SAFE.encode(&raw);
        let e = plain(damaged.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("does not authenticate"), "{e}");
        let cut = &TOKEN[..TOKEN.len() - 8];
        assert!(plain(cut.as_bytes()).is_err());
        assert!(plain(b"PK\x03\x04 not a token").is_err());
        let other = FernetKey::parse(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").unwrap();
        let mut out = Vec::new();
        assert!(
            FernetReader::new(TOKEN.as_bytes(), &other)
                .read_to_end(&mut out)
                .is_err()
        );
    }

    #[test]
    fn keys_are_checked_and_never_printed() {
        assert!(FernetKey::parse(b"short").is_err());
        let key = FernetKey::parse(KEY.as_bytes()).unwrap();
        assert_eq!(format!("{key:?}"), "FernetKey(..)");
    }
}
