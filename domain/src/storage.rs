//! The object-storage port. Coffer's repository lives in an object store: whole objects
//! put, got, listed and deleted by key. No rename, no directories, no partial writes —
//! so that a local disk, a NAS mount and an S3 bucket are equal backends.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;

/// A validated object key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty, none
/// `.` or `..`, no leading or trailing `/`, at most 512 bytes. Keys carry no meaning for
/// the store; the repository format gives them one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// Why a string is not an [`ObjectKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectKeyError {
    #[error("object key is empty")]
    Empty,
    #[error("object key is longer than 512 bytes")]
    TooLong,
    #[error("object key `{0}` has an empty, `.` or `..` segment")]
    BadSegment(String),
    #[error("object key `{0}` has a character outside [A-Za-z0-9._-/]")]
    BadCharacter(String),
}

impl ObjectKey {
    pub const MAX_LEN: usize = 512;

    /// Parses a key.
    ///
    /// # Errors
    /// When the key breaks one of the rules in the type's documentation.
    pub fn parse(raw: &str) -> Result<Self, ObjectKeyError> {
        if raw.is_empty() {
            return Err(ObjectKeyError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(ObjectKeyError::TooLong);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
        {
            return Err(ObjectKeyError::BadCharacter(raw.to_owned()));
        }
        if raw
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(ObjectKeyError::BadSegment(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A failure of the storage backend. The message is for the log and the operator; it
/// never carries object contents.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend could not be reached or refused the operation (permissions, full disk,
    /// network). Retrying later may help.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reported.
    #[error("storage error: {0}")]
    Other(String),
}

/// Content-addressed object storage. Keys are opaque; there are no directory semantics.
///
/// Contract (checked by the storage adapter's contract tests):
/// - `put` stores the whole object or nothing: a reader never sees a partial object, also
///   after a crash. `put` of an existing key replaces it atomically.
/// - `get` of a missing key returns `Ok(None)`, not an error.
/// - `get_range` returns the bytes from `offset`, at most `len` of them (fewer when the
///   object is shorter), or `Ok(None)` for a missing key.
/// - `read_range` gives the same bytes as `get_range`, front to back in pieces as they
///   arrive: concatenated they equal what `get_range` returns.
/// - `delete` of a missing key succeeds.
/// - `list(prefix)` returns every key that starts with `prefix` (a plain string prefix),
///   sorted, without directories; `list_sized` the same keys with their sizes.
/// - `check` verifies that the backend is reachable and writable enough to serve; it is
///   what the health endpoint reports.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn put(&self, key: &ObjectKey, bytes: Bytes) -> Result<(), StorageError>;
    async fn get(&self, key: &ObjectKey) -> Result<Option<Bytes>, StorageError>;
    async fn get_range(
        &self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError>;
    /// Reads `len` bytes from `offset` front to back, in pieces as they arrive
    /// ([`RangeReader`]); `Ok(None)` for a missing key. A store across a network answers
    /// with one request for the whole range: a restore asks once per pack instead of once
    /// per piece, and decodes the first blobs while the rest are on their way. The
    /// default reads pieces of at most [`RANGE_PIECE`] bytes with `get_range`, one at a
    /// time as the reader asks for them.
    async fn read_range<'a>(
        &'a self,
        key: &ObjectKey,
        offset: u64,
        len: u64,
    ) -> Result<Option<Box<dyn RangeReader + 'a>>, StorageError> {
        read_in_pieces(self, key, offset, len).await
    }
    async fn exists(&self, key: &ObjectKey) -> Result<bool, StorageError>;
    async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, StorageError>;
    /// Like `list`, with each object's size in bytes.
    async fn list_sized(&self, prefix: &str) -> Result<Vec<(ObjectKey, u64)>, StorageError>;
    async fn check(&self) -> Result<(), StorageError>;
    /// Requests worth having in flight at once: a local disk gains little beyond two (one
    /// object's sync overlaps the next write), an object store across a network needs
    /// several to hide each request's latency.
    fn parallelism(&self) -> usize {
        2
    }
    /// Where the objects are, for operators' messages (a directory, `s3://bucket/prefix`).
    fn location(&self) -> String {
        "the repository's storage".to_owned()
    }
}

/// The most bytes one `get_range` of the default [`ObjectStore::read_range`] asks for.
pub const RANGE_PIECE: u64 = 1024 * 1024;

/// A byte range of an object, read front to back ([`ObjectStore::read_range`]).
#[async_trait]
pub trait RangeReader: Send {
    /// The next bytes of the range, never empty before its end; empty once all of it is
    /// read, or where the object ends early.
    ///
    /// # Errors
    /// A storage failure while reading; the reader is not usable afterwards.
    async fn next(&mut self) -> Result<Bytes, StorageError>;
}

/// [`ObjectStore::read_range`] by `get_range`s of at most [`RANGE_PIECE`] bytes, one at a
/// time as the reader asks for them: the port's default, for stores that override it only
/// for some of their backends.
///
/// # Errors
/// Those of the first `get_range`.
pub async fn read_in_pieces<'a, S: ObjectStore + ?Sized>(
    store: &'a S,
    key: &ObjectKey,
    offset: u64,
    len: u64,
) -> Result<Option<Box<dyn RangeReader + 'a>>, StorageError> {
    let first_len = len.min(RANGE_PIECE);
    let Some(first) = store.get_range(key, offset, first_len).await? else {
        return Ok(None);
    };
    let short = (first.len() as u64) < first_len;
    let next = offset + first.len() as u64;
    Ok(Some(Box::new(Pieces {
        store,
        key: key.clone(),
        next,
        end: if short {
            next
        } else {
            offset.saturating_add(len)
        },
        first: Some(first),
    })))
}

/// The default [`RangeReader`]: `get_range` piece by piece.
struct Pieces<'a, S: ?Sized> {
    store: &'a S,
    key: ObjectKey,
    /// Where the next piece starts, and where the range ends.
    next: u64,
    end: u64,
    /// The piece read to learn whether the object exists, not handed out yet.
    first: Option<Bytes>,
}

#[async_trait]
impl<S: ObjectStore + ?Sized> RangeReader for Pieces<'_, S> {
    async fn next(&mut self) -> Result<Bytes, StorageError> {
        if let Some(first) = self.first.take()
            && !first.is_empty()
        {
            return Ok(first);
        }
        if self.next >= self.end {
            return Ok(Bytes::new());
        }
        let want = (self.end - self.next).min(RANGE_PIECE);
        let piece = self
            .store
            .get_range(&self.key, self.next, want)
            .await?
            .unwrap_or_default();
        if (piece.len() as u64) < want {
            self.end = self.next; // the object ends here (or went away)
        }
        self.next += piece.len() as u64;
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_repository_shaped_keys() {
        for ok in [
            "config",
            "data/ab/abcdef0123",
            "keys/master-1.json",
            "a_b-c.d",
        ] {
            assert_eq!(
                ObjectKey::parse(ok).map(|k| k.to_string()),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn rejects_escaping_and_odd_keys() {
        assert_eq!(ObjectKey::parse(""), Err(ObjectKeyError::Empty));
        for bad in ["/abs", "trailing/", "a//b", "../x", "a/./b", "a/.."] {
            assert!(
                matches!(ObjectKey::parse(bad), Err(ObjectKeyError::BadSegment(_))),
                "{bad}"
            );
        }
        for bad in ["sp ace", "nul\0", "back\\slash", "ünï"] {
            assert!(
                matches!(ObjectKey::parse(bad), Err(ObjectKeyError::BadCharacter(_))),
                "{bad}"
            );
        }
        assert_eq!(
            ObjectKey::parse(&"a".repeat(513)),
            Err(ObjectKeyError::TooLong)
        );
    }
}
