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
    fn job_ids_display_as_uuid() {
        let raw = uuid::Uuid::nil();
        assert_eq!(
            JobId::from_uuid(raw).to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }
}
