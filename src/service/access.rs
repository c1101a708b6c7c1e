//! Who may do what: the one authorization function, and the caller it judges.

use serde::Serialize;

use super::ServiceError;
use crate::domain::Role;

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Caller {
    User {
        id: i64,
        username: String,
        role: Role,
    },
    Server {
        id: i64,
        name: String,
    },
    /// The operator running `keyportal` commands on the database host (`admin create`,
    /// `token create`, `server token`): may do what an admin may.
    CommandLine,
}

impl Caller {
    /// The name written into audit events.
    pub fn actor(&self) -> String {
        match self {
            Caller::User { username, .. } => username.clone(),
            Caller::Server { name, .. } => format!("server:{name}"),
            Caller::CommandLine => "cli".to_owned(),
        }
    }

    pub fn user_id(&self) -> Option<i64> {
        match self {
            Caller::User { id, .. } => Some(*id),
            Caller::Server { .. } | Caller::CommandLine => None,
        }
    }

    /// Admins and the command line may do and see everything.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Caller::User {
                role: Role::Admin,
                ..
            } | Caller::CommandLine
        )
    }
}

/// Everything a caller may ask to do.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// List or create users; change roles; disable; delete.
    ManageUsers,
    /// Read a user's profile.
    ReadUser { user_id: i64 },
    /// Change a user's own profile fields (display name, email, password).
    EditProfile { user_id: i64 },
    /// List, add, import, delete a user's keys.
    ManageKeysOf { user_id: i64 },
    /// Create, change, delete servers, grants and server tokens.
    ManageServers,
    /// See a server (admins: all; members: those they hold grants on, decided by the caller of this).
    ListServers,
    /// Read one server's authorized_keys (by server name), and the live principals of the
    /// certificates presented to it.
    ReadAuthorizedKeys { server: &'a str },
    /// Have one server's host keys certified by the host CA.
    SignHostKeys { server: &'a str },
    /// Read the KRL: every server, and admins.
    ReadRevocations,
    /// Change the validation policy.
    EditPolicy,
    /// Read the policy.
    ReadPolicy,
    /// Read the audit log.
    ReadAudit,
    /// Manage one's own personal tokens.
    ManageOwnTokens,
    /// Read and change the blocklist of compromised keys; run the shared-prime scan.
    ManageBlocklist,
    /// Create, change and delete user groups and server groups; change server groups'
    /// members; grant to groups.
    ManageGroups,
    /// Read a user group: its members and owners see it.
    ReadUserGroup { member: bool, owner: bool },
    /// Add or remove a user group's members: its owners may.
    ManageUserGroupMembers { member: bool, owner: bool },
}

/// Decides. Objects the caller may not see are `NotFound`, so names do not leak; actions the
/// caller's kind may never take are `Forbidden`.
pub fn authorize(caller: &Caller, action: Action<'_>) -> Result<(), ServiceError> {
    let not_found = |what| Err(ServiceError::NotFound { what });
    match (caller, action) {
        (
            Caller::User {
                role: Role::Admin, ..
            }
            | Caller::CommandLine,
            _,
        ) => Ok(()),
        (Caller::Server { .. }, Action::ReadRevocations) => Ok(()),
        (
            Caller::Server { name, .. },
            Action::ReadAuthorizedKeys { server } | Action::SignHostKeys { server },
        ) => {
            if name == server {
                Ok(())
            } else {
                not_found("server")
            }
        }
        (Caller::Server { .. }, _) => Err(ServiceError::Forbidden(
            "a server token may only read its own server's authorized_keys, principals, host certificates and the KRL",
        )),
        (
            Caller::User { id, .. },
            Action::ReadUser { user_id }
            | Action::EditProfile { user_id }
            | Action::ManageKeysOf { user_id },
        ) => {
            if *id == user_id {
                Ok(())
            } else {
                not_found("user")
            }
        }
        (
            Caller::User { .. },
            Action::ReadAuthorizedKeys { .. } | Action::SignHostKeys { .. },
        ) => not_found("server"),
        (Caller::User { .. }, Action::ReadRevocations) => Err(ServiceError::Forbidden(
            "the KRL is for servers (a server token) and admins",
        )),
        (Caller::User { .. }, Action::ReadUserGroup { member, owner }) => {
            if member || owner {
                Ok(())
            } else {
                not_found("group")
            }
        }
        (Caller::User { .. }, Action::ManageUserGroupMembers { member, owner }) => {
            if owner {
                Ok(())
            } else if member {
                Err(ServiceError::Forbidden(
                    "only the group's owners and admins change its members",
                ))
            } else {
                not_found("group")
            }
        }
        (
            Caller::User { .. },
            Action::ListServers | Action::ReadPolicy | Action::ManageOwnTokens,
        ) => Ok(()),
        (
            Caller::User { .. },
            Action::ManageUsers
            | Action::ManageServers
            | Action::EditPolicy
            | Action::ReadAudit
            | Action::ManageBlocklist
            | Action::ManageGroups,
        ) => Err(ServiceError::Forbidden("this needs the admin role")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: i64) -> Caller {
        Caller::User {
            id,
            username: format!("m{id}"),
            role: Role::Member,
        }
    }

    #[test]
    fn the_matrix() {
        let admin = Caller::User {
            id: 1,
            username: "root".into(),
            role: Role::Admin,
        };
        let server = Caller::Server {
            id: 7,
            name: "web".into(),
        };
        let ok = |c: &Caller, a| authorize(c, a).is_ok();
        let nf = |c: &Caller, a| matches!(authorize(c, a), Err(ServiceError::NotFound { .. }));
        let fb = |c: &Caller, a| matches!(authorize(c, a), Err(ServiceError::Forbidden(_)));
        // One assertion per decision, so a failure names the one that is wrong.
        let allowed = [
            (&admin, Action::ManageUsers),
            (&admin, Action::ReadAudit),
            (&admin, Action::ManageKeysOf { user_id: 5 }),
            (&member(5), Action::ManageKeysOf { user_id: 5 }),
            (&member(5), Action::ReadPolicy),
            (&member(5), Action::ManageOwnTokens),
            (&server, Action::ReadAuthorizedKeys { server: "web" }),
            (&Caller::CommandLine, Action::ManageUsers),
            (&Caller::CommandLine, Action::ManageServers),
        ];
        for (caller, action) in allowed {
            assert!(ok(caller, action), "{caller:?} may {action:?}");
        }
        let hidden = [
            (&member(5), Action::ManageKeysOf { user_id: 6 }),
            (&member(5), Action::ReadUser { user_id: 6 }),
            (&server, Action::ReadAuthorizedKeys { server: "db" }),
            (&member(5), Action::ReadAuthorizedKeys { server: "web" }),
        ];
        for (caller, action) in hidden {
            assert!(
                nf(caller, action),
                "{caller:?} gets not found for {action:?}"
            );
        }
        let forbidden = [
            (&member(5), Action::ManageUsers),
            (&member(5), Action::EditPolicy),
            (&member(5), Action::ManageServers),
            (&member(5), Action::ManageBlocklist),
            (&server, Action::ReadPolicy),
            (&server, Action::ManageKeysOf { user_id: 5 }),
        ];
        for (caller, action) in forbidden {
            assert!(fb(caller, action), "{caller:?} is forbidden {action:?}");
        }
    }
}
