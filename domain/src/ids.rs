//! Newtype identifiers. The fields are private so an id of one kind can never be passed
//! where another is expected.

use std::fmt;

macro_rules! row_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            #[must_use]
            pub const fn new(raw: i64) -> Self {
                Self(raw)
            }

            #[must_use]
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

row_id!(
    /// A user account (row of `users`).
    UserId
);
row_id!(
    /// A configured backup source (row of `sources`).
    SourceId
);
row_id!(
    /// A catalog row of `backups` (one snapshot).
    BackupId
);
row_id!(
    /// A persisted alert (row of `alerts`).
    AlertId
);
row_id!(
    /// A personal access token (row of `api_tokens`).
    ApiTokenId
);

/// A background job (backup, restore, verify, prune). Time-ordered (UUID v7) so that job
/// ids sort by creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(uuid::Uuid);

impl JobId {
    #[must_use]
    pub const fn from_uuid(raw: uuid::Uuid) -> Self {
        Self(raw)
    }

    #[must_use]
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Text that is not a job id (a UUID).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id")]
pub struct InvalidJobId(pub String);

impl std::str::FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<uuid::Uuid>()
            .map(Self)
            .map_err(|_| InvalidJobId(s.to_owned()))
    }
}

/// A snapshot: the hex SHA-256 of its stored object, 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(String);

/// Text that is not a snapshot id (64 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a snapshot id (64 hex digits)")]
pub struct InvalidSnapshotId(pub String);

impl SnapshotId {
    /// Hex digits in an id.
    pub const LEN: usize = 64;
    /// Digits shown to people where a short form will do.
    pub const SHORT: usize = 12;

    /// An id: 64 hex digits, in either case (kept lowercase).
    ///
    /// # Errors
    /// `InvalidSnapshotId` for anything else.
    pub fn parse(text: &str) -> Result<Self, InvalidSnapshotId> {
        if text.len() == Self::LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(InvalidSnapshotId(text.to_owned()))
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first `n` digits (all of them when `n` is larger).
    #[must_use]
    pub fn prefix(&self, n: usize) -> &str {
        &self.0[..n.min(self.0.len())]
    }

    /// The first [`SnapshotId::SHORT`] digits, as lists show it.
    #[must_use]
    pub fn short(&self) -> &str {
        self.prefix(Self::SHORT)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SnapshotId {
    type Err = InvalidSnapshotId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The start of a snapshot id, long enough to look one up: 8 to 64 hex digits,
/// lowercase. The whole id is a prefix too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotPrefix(String);

impl SnapshotPrefix {
    /// The fewest digits that name a snapshot.
    pub const MIN_LEN: usize = 8;

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&SnapshotId> for SnapshotPrefix {
    fn from(id: &SnapshotId) -> Self {
        Self(id.0.clone())
    }
}

/// How people name a snapshot wherever one is taken (API paths, CLI arguments): its id,
/// a unique prefix of at least 8 hex digits, or `latest` (the newest snapshot of any
/// source). Parsed here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRef {
    Latest,
    Prefix(SnapshotPrefix),
}

/// Text that names no snapshot: not `latest`, not 8 to 64 hex digits. Said as a
/// snapshot that is not in the catalog, which is what it means to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no snapshot `{0}` in the catalog")]
pub struct UnknownSnapshot(pub String);

impl SnapshotRef {
    /// `latest`, or an id or prefix of 8 to 64 hex digits (in either case).
    ///
    /// # Errors
    /// `UnknownSnapshot` for anything else.
    pub fn parse(text: &str) -> Result<Self, UnknownSnapshot> {
        if text == "latest" {
            return Ok(Self::Latest);
        }
        if (SnapshotPrefix::MIN_LEN..=SnapshotId::LEN).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Ok(Self::Prefix(SnapshotPrefix(text.to_ascii_lowercase())));
        }
        Err(UnknownSnapshot(text.to_owned()))
    }
}

impl From<&SnapshotId> for SnapshotRef {
    fn from(id: &SnapshotId) -> Self {
        Self::Prefix(id.into())
    }
}

impl fmt::Display for SnapshotRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Prefix(p) => f.write_str(&p.0),
        }
    }
}

impl std::str::FromStr for SnapshotRef {
    type Err = UnknownSnapshot;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_round_trip_and_display() {
        let id = UserId::new(42);
        assert_eq!(id.get(), 42);
        assert_eq!(id.to_string(), "42");
        assert!(SourceId::new(1) < SourceId::new(2));
    }

    #[test]
    fn snapshots_are_named_by_id_prefix_or_latest() {
        let hex = "0123456789abcdef".repeat(4);
        let id = SnapshotId::parse(&hex.to_uppercase()).unwrap();
        assert_eq!(id.as_str(), hex, "kept lowercase");
        assert_eq!(id.short(), &hex[..12]);
        assert_eq!(id.prefix(8), &hex[..8]);
        assert!(SnapshotId::parse(&hex[..63]).is_err());
        assert!(SnapshotId::parse(&format!("{}g", &hex[..63])).is_err());
        assert_eq!(SnapshotRef::parse("latest"), Ok(SnapshotRef::Latest));
        assert_eq!(SnapshotRef::parse(&hex), Ok(SnapshotRef::from(&id)));
        let SnapshotRef::Prefix(p) = SnapshotRef::parse("0123ABCD").unwrap() else {
            panic!("a prefix")
        };
        assert_eq!(p.as_str(), "0123abcd");
        for bad in [
            "",
            "1234567",
            "0123456g",
            "LATEST",
            "../etc",
            &format!("{hex}0"),
        ] {
            let err = SnapshotRef::parse(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("no snapshot `{bad}` in the catalog")
            );
        }
    }

    #[test]
    fn job_ids_display_as_uuid() {
        let raw = uuid::Uuid::nil();
        assert_eq!(
            JobId::from_uuid(raw).to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }
}
