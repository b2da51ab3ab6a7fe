//! Roles and permissions: the policy of who may do what. Pure data and functions; the
//! application layer asks `Role::allows` as the first step of every use case.

use std::fmt;
use std::str::FromStr;

/// Something a use case needs the caller to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// See the dashboard, snapshots, sources, jobs and alerts.
    View,
    /// Start a backup.
    Backup,
    /// Restore, verify, browse and download snapshot contents.
    Restore,
    /// Export reports (CSV, PDF) and the audit log.
    Export,
    /// Create, change and deactivate users.
    ManageUsers,
    /// Manage sources, retention policies, keys, snapshots (delete, protect) and maintenance.
    ManageSystem,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Self; 6] = [
        Self::View,
        Self::Backup,
        Self::Restore,
        Self::Export,
        Self::ManageUsers,
        Self::ManageSystem,
    ];

    /// The stable name used in the `roles` table and in API responses.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Backup => "backup",
            Self::Restore => "restore",
            Self::Export => "export",
            Self::ManageUsers => "manage_users",
            Self::ManageSystem => "manage_system",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permission name that Coffer does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// The three built-in roles of the product brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Operator,
    Viewer,
}

impl Role {
    /// Every role, in a stable order (most to least privileged).
    pub const ALL: [Self; 3] = [Self::Admin, Self::Operator, Self::Viewer];

    /// The stable name used in the `roles` table, the API and the CLI.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }

    /// The permissions this role grants, in `Permission::ALL` order.
    #[must_use]
    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .collect()
    }

    /// The policy itself: whether this role grants `permission`.
    #[must_use]
    pub const fn allows(self, permission: Permission) -> bool {
        match self {
            Self::Admin => true,
            Self::Operator => matches!(
                permission,
                Permission::View | Permission::Backup | Permission::Restore
            ),
            Self::Viewer => matches!(permission, Permission::View),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that Coffer does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (expected admin, operator or viewer)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Backup, Export, ManageSystem, ManageUsers, Restore, View};

    #[test]
    fn permission_matrix_matches_the_brief() {
        // (role, permission, allowed) — the brief: admin everything; operator view,
        // backup, restore; viewer view only.
        let table = [
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Operator, [true, true, true, false, false, false]),
            (Role::Viewer, [true, false, false, false, false, false]),
        ];
        for (role, expected) in table {
            for (permission, allowed) in [View, Backup, Restore, Export, ManageUsers, ManageSystem]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(
                    role.allows(permission),
                    allowed,
                    "{role} / {permission} should be {allowed}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for permission in Permission::ALL {
            assert_eq!(permission.as_str().parse::<Permission>(), Ok(permission));
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
        assert!("everything".parse::<Permission>().is_err());
    }

    #[test]
    fn permissions_lists_only_allowed() {
        assert_eq!(Role::Viewer.permissions(), vec![View]);
        assert_eq!(Role::Admin.permissions().len(), Permission::ALL.len());
    }
}
