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
    /// Read the audit trail.
    Audit,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::View,
        Self::Backup,
        Self::Restore,
        Self::Export,
        Self::ManageUsers,
        Self::ManageSystem,
        Self::Audit,
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
            Self::Audit => "audit",
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

/// A valid username: 1 to 64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// digit. Names are compared exactly (case matters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

/// Why a string is not a [`Username`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must be 1 to 64 characters")]
    Length,
    #[error(
        "username may contain only letters, digits, `.`, `_` and `-`, and must start with a letter or digit"
    )]
    Characters,
}

impl Username {
    pub const MAX_LEN: usize = 64;

    /// Parses a username.
    ///
    /// # Errors
    /// When the name breaks the rules in the type's documentation.
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(UsernameError::Length);
        }
        let mut bytes = raw.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
        if !first_ok
            || !raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(UsernameError::Characters);
        }
        Ok(Self(raw.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {min} characters", min = PASSWORD_MIN_CHARS)]
    TooShort,
    #[error("password must be at most {max} characters", max = PASSWORD_MAX_CHARS)]
    TooLong,
    #[error("password must not be the username")]
    EqualsUsername,
}

/// Minimum password length, in characters (not bytes).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Maximum password length, in characters. Far above what people type; it only bounds the
/// work a single login can ask of the hasher. Passwords are never truncated.
pub const PASSWORD_MAX_CHARS: usize = 1024;

/// The password rules: 12 to 1024 characters, not the username (in any case).
///
/// # Errors
/// The first rule broken.
pub fn check_password(password: &str, username: &Username) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(PasswordError::TooShort);
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(PasswordError::TooLong);
    }
    if password.eq_ignore_ascii_case(username.as_str()) {
        return Err(PasswordError::EqualsUsername);
    }
    Ok(())
}

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The credential the request was authorised by when it is not a password session,
    /// e.g. `token 7 "ci-deploy"`: every audit row written for it names it.
    pub credential: Option<String>,
}

impl ClientInfo {
    /// The local command line, run by `os_user`.
    #[must_use]
    pub fn local(os_user: &str) -> Self {
        Self {
            ip: None,
            user_agent: Some(format!("coffer-cli ({os_user})")),
            credential: None,
        }
    }
}

/// Who is asking: an authenticated user, or the local system administrator at the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The name recorded in the audit trail.
    pub username: String,
    /// The user's row, absent for the local system administrator.
    pub user_id: Option<crate::UserId>,
    pub role: Role,
    pub client: ClientInfo,
}

/// The caller lacks a permission.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("your role ({role}) does not allow {permission}")]
pub struct Forbidden {
    pub role: Role,
    pub permission: Permission,
}

impl Actor {
    /// The local system administrator (CLI on the server's machine): an admin, audited
    /// as `system:<os user>`.
    #[must_use]
    pub fn local_admin(os_user: &str) -> Self {
        Self {
            username: format!("system:{os_user}"),
            user_id: None,
            role: Role::Admin,
            client: ClientInfo::local(os_user),
        }
    }

    /// The first step of every use case.
    ///
    /// # Errors
    /// [`Forbidden`] when the actor's role does not grant `permission`.
    pub const fn require(&self, permission: Permission) -> Result<(), Forbidden> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(Forbidden {
                role: self.role,
                permission,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Audit, Backup, Export, ManageSystem, ManageUsers, Restore, View};

    #[test]
    fn permission_matrix_matches_the_brief() {
        // (role, permission, allowed) — the brief: admin everything; operator view,
        // backup, restore; viewer view only.
        let table = [
            (Role::Admin, [true, true, true, true, true, true, true]),
            (
                Role::Operator,
                [true, true, true, false, false, false, false],
            ),
            (
                Role::Viewer,
                [true, false, false, false, false, false, false],
            ),
        ];
        for (role, expected) in table {
            for (permission, allowed) in [
                View,
                Backup,
                Restore,
                Export,
                ManageUsers,
                ManageSystem,
                Audit,
            ]
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
    fn usernames() {
        for ok in ["admin", "a", "ops.team-1", "Bob_2", &"x".repeat(64)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Username::parse(""), Err(UsernameError::Length));
        assert_eq!(Username::parse(&"x".repeat(65)), Err(UsernameError::Length));
        for bad in ["-lead", ".hidden", "sp ace", "ünï", "a/b", "semi;colon"] {
            assert_eq!(
                Username::parse(bad),
                Err(UsernameError::Characters),
                "{bad}"
            );
        }
    }

    #[test]
    fn password_rules() {
        let user = Username::parse("administrator").expect("valid");
        assert_eq!(check_password("short", &user), Err(PasswordError::TooShort));
        assert_eq!(
            check_password("elevenchars", &user),
            Err(PasswordError::TooShort)
        );
        assert_eq!(check_password("twelve chars", &user), Ok(()));
        // Characters, not bytes: 12 multi-byte characters are enough, 11 are not.
        assert_eq!(check_password(&"é".repeat(12), &user), Ok(()));
        assert_eq!(
            check_password(&"é".repeat(11), &user),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            check_password("Administrator", &user),
            Err(PasswordError::EqualsUsername)
        );
        assert_eq!(check_password(&"p".repeat(1024), &user), Ok(()));
        assert_eq!(
            check_password(&"p".repeat(1025), &user),
            Err(PasswordError::TooLong)
        );
    }

    #[test]
    fn actors_are_checked_against_their_role() {
        let mut actor = Actor::local_admin("root");
        assert_eq!(actor.username, "system:root");
        assert!(actor.require(ManageUsers).is_ok());
        actor.role = Role::Viewer;
        assert_eq!(
            actor.require(Backup),
            Err(Forbidden {
                role: Role::Viewer,
                permission: Backup
            })
        );
    }

    #[test]
    fn permissions_lists_only_allowed() {
        assert_eq!(Role::Viewer.permissions(), vec![View]);
        assert_eq!(Role::Admin.permissions().len(), Permission::ALL.len());
    }
}
